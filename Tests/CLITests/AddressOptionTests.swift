// The IPv6 options of `tunvpn server` and `tunvpn client`: `--address` (repeatable, one prefix of each
// family), `--no-ipv6` and IPv6 `--route` prefixes, and the one-line errors for bad values.

import ArgumentParser
import Testing

@testable import tunvpn

@Suite struct AddressOptionTests {
    @Test func oneAddressOfEachFamilyIsAcceptedInEitherOrder() throws {
        let server = try Server.parse(["--address", "fd00:8::1/64", "--address", "10.9.0.1/24"])
        let (v4, v6) = try server.tunnelAddresses()
        #expect("\(v4)" == "10.9.0.1/24" && v6.map { "\($0)" } == "fd00:8::1/64")
        let defaults = try Server.parse([]).tunnelAddresses()
        #expect("\(defaults.0)" == "10.8.0.1/16" && defaults.1 == nil, "the IPv6 default comes from the key at start")
        #expect(serverError(["--address", "fd00:8::1/120"]) == nil)
    }

    @Test func badAddressesAreOneLineErrorsNamingTheOptionWithAnExample() {
        let cases: [([String], String)] = [
            (["--address", "fd00:8::1/56"], "--address 'fd00:8::1/56' must be an IPv6 address with a prefix of /64 to /120, like fd00:8::1/64"),
            (["--address", "fd00:8::1/121"], "--address 'fd00:8::1/121' must be an IPv6 address with a prefix of /64 to /120, like fd00:8::1/64"),
            (["--address", "fd00:8::1"], "--address 'fd00:8::1' is not an address with a prefix length: use e.g. --address 10.8.0.1/16 or --address fd00:8::1/64"),
            (
                ["--address", "10.8.0.1/16", "--address", "10.9.0.1/16"],
                "--address given two IPv4 prefixes, 10.8.0.1/16 and 10.9.0.1/16: give one IPv4 and at most one IPv6 prefix, e.g. --address 10.8.0.1/16 --address fd00:8::1/64"
            ),
            (
                ["--address", "fd00:8::1/64", "--address", "fd00:9::1/64"],
                "--address given two IPv6 prefixes, fd00:8::1/64 and fd00:9::1/64: give one IPv4 and at most one IPv6 prefix, e.g. --address 10.8.0.1/16 --address fd00:8::1/64"
            ),
            (
                ["--address", "fe80::1/64"],
                "--address 'fe80::1/64' is in ::/8, link-local fe80::/10 or multicast ff00::/8; use a unique local or global prefix, like fd00:8::1/64"
            ),
            (
                ["--address", "fd00:8::/64"],
                "--address 'fd00:8::/64' is the prefix's own network address; give the server a host address in it, like fd00:8::1/64"
            ),
            (
                ["--address", "fd00:8::1/64", "--no-ipv6"],
                "--address fd00:8::1/64 and --no-ipv6 cannot be combined: drop one (e.g. --address 10.8.0.1/16 --no-ipv6)"
            ),
            (
                ["--address", "fd00:8::1/64", "--mtu", "1200"],
                "--address fd00:8::1/64 needs --mtu 1280 or more (IPv6's minimum link MTU), or use --no-ipv6; e.g. --mtu 1420"
            ),
        ]
        for (arguments, message) in cases {
            #expect(serverError(arguments) == message, "\(arguments)")
            #expect(message.contains("--address") && !message.contains("\n"))
        }
        #expect(serverError(["--no-ipv6"]) == nil)
    }

    @Test func routesTakeIPv6PrefixesAndABadOneIsNamed() throws {
        let client = try Client.parse(["--peer-key", "s.pub", "--endpoint", "203.0.113.7:51820", "--route", "2001:db8::/32", "--route", "10.0.0.0/8", "--no-ipv6"])
        #expect(client.route == ["2001:db8::/32", "10.0.0.0/8"] && client.noIPv6)
        #expect(
            clientError(["--route", "2001:db8::/32", "--mtu", "1200"])
                == "--route 2001:db8::/32 needs --mtu 1280 or more (IPv6's minimum link MTU); e.g. --mtu 1420")
        #expect(clientError(["--route", "10.0.0.0/8", "--mtu", "1200"]) == nil)
        for bad in ["2001:db8::", "2001:db8::/129", "10.0.0.0/33", "fd00::x/64"] {
            #expect(
                clientError(["--route", bad])
                    == "--route '\(bad)' is not a network with a prefix length, like 10.0.0.0/8 or 2001:db8::/32")
        }
    }
}
