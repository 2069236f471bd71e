// `--endpoint`, `--listen` and `--metrics` as operators type them (EndpointText): the three forms, the
// one-line errors with an example (the bracket error word for word), and the note that says which
// address of a name was picked. Resolution touches only loopback names and literals.

import Engine
import Testing
import Transport

@testable import Control

private func parse(_ text: String, _ option: String = "--endpoint", allowsPortZero: Bool = false) throws(ControlError) -> EndpointText {
    try EndpointText(text, option: option, allowsPortZero: allowsPortZero, examplePort: option == "--metrics" ? 9586 : 51820)
}

/// The message of the error parsing `text` gives, or nil if it parses.
private func failure(_ text: String, _ option: String = "--endpoint", allowsPortZero: Bool = false) -> String? {
    do {
        _ = try parse(text, option, allowsPortZero: allowsPortZero)
        return nil
    } catch { return error.message }
}

@Suite struct EndpointTextTests {
    @Test func theThreeFormsParse() throws {
        #expect(try parse("[::1]:5") == .address(Endpoint(address: IPv6Address(high: 0, low: 1), port: 5)))
        #expect(try parse("[2001:db8::1]:51820") == .address(Endpoint(address: IPv6Address("2001:db8::1")!, port: 51820)))
        #expect(try parse("192.0.2.7:51820") == .address(Endpoint(address: IPv4Address(192, 0, 2, 7), port: 51820)))
        #expect(try parse("vpn.example.org:51820") == .name("vpn.example.org", port: 51820))
        #expect(try parse("localhost:9586", "--metrics") == .name("localhost", port: 9586))
        #expect(try parse("[::]:51820", "--listen", allowsPortZero: true) == .address(Endpoint(address: IPv6Address.any, port: 51820)))
        #expect(try parse("[::]:0", "--listen", allowsPortZero: true) == .address(Endpoint(address: IPv6Address.any, port: 0)))
    }

    @Test func anIPv6AddressWithoutBracketsIsTheOneLineBracketError() {
        #expect(
            failure("2001:db8::1:51820")
                == "--endpoint 2001:db8::1:51820: put an IPv6 address in brackets, e.g. --endpoint [2001:db8::1]:51820")
        #expect(failure("::1", "--metrics") == "--metrics ::1: put an IPv6 address in brackets, e.g. --metrics [::1]:9586")
        #expect(
            failure("fe80::1%eth0:5", "--listen", allowsPortZero: true)
                == "--listen fe80::1%eth0:5: put an IPv6 address in brackets, e.g. --listen [2001:db8::1]:51820")
    }

    @Test func otherMistakesAreOneLineErrorsWithAnExample() {
        #expect(failure("[2001:db8::1]") == "--endpoint [2001:db8::1]: no port after the address, e.g. --endpoint [2001:db8::1]:51820")
        #expect(failure("[2001:db8::1:51820") == "--endpoint [2001:db8::1:51820: no ']' after the IPv6 address, e.g. --endpoint [2001:db8::1]:51820")
        #expect(failure("[192.0.2.7]:5") == "--endpoint [192.0.2.7]:5: '192.0.2.7' is not an IPv6 address, e.g. --endpoint [2001:db8::1]:51820")
        #expect(failure("vpn.example.org") == "--endpoint vpn.example.org: no port, e.g. --endpoint vpn.example.org:51820")
        #expect(failure("192.0.2.7:0") == "--endpoint 192.0.2.7:0: port 0 cannot be sent to, e.g. --endpoint 192.0.2.7:51820")
        #expect(failure("[::1]:65536") == "--endpoint [::1]:65536: '65536' is not a port (1 to 65535), e.g. --endpoint [::1]:51820")
        #expect(failure("192.0.2.7:") == "--endpoint 192.0.2.7:: '' is not a port (1 to 65535), e.g. --endpoint 192.0.2.7:51820")
        #expect(failure(":51820", "--listen", allowsPortZero: true) == "--listen :51820: no host, e.g. --listen [::]:51820")
        #expect(
            failure("vpn example:1")
                == "--endpoint vpn example:1: 'vpn example' is neither an IPv4 address, a bracketed IPv6 address nor a host name, e.g. --endpoint vpn.example.org:51820")
        #expect(failure("-x:1") != nil, "a name may not start with '-'")
    }

    @Test func addressesResolveToThemselvesWithoutANote() throws {
        let (endpoint, note) = try parse("[::1]:5").resolve(option: "--endpoint")
        #expect(endpoint == Endpoint(address: IPv6Address(high: 0, low: 1), port: 5))
        #expect(note == nil)
        #expect(try resolveEndpoint("192.0.2.7:51820", option: "--endpoint") == Endpoint(address: IPv4Address(192, 0, 2, 7), port: 51820))
    }

    @Test func aNameResolvesToItsFirstAddressAndSaysWhichFamily() throws {
        // localhost is loopback only; /etc/hosts decides whether it has 127.0.0.1, ::1 or both.
        let (endpoint, note) = try parse("localhost:53").resolve(option: "--endpoint")
        #expect([IPAddress.v4(IPv4Address(127, 0, 0, 1)), .v6(IPv6Address(high: 0, low: 1))].contains(endpoint.address))
        #expect(endpoint.port == 53)
        #expect(note?.hasPrefix("endpoint localhost is \(endpoint) (\(endpoint.address.isIPv6 ? "IPv6" : "IPv4")") == true, "\(note ?? "nil")")
    }

    @Test func theNoteCountsTheNamesOtherAddressesByFamily() {
        let v6 = IPAddress.v6(IPv6Address("2001:db8::1")!)
        let v6b = IPAddress.v6(IPv6Address("2001:db8::2")!)
        let v4 = IPAddress.v4(IPv4Address(192, 0, 2, 1))
        let v4b = IPAddress.v4(IPv4Address(192, 0, 2, 2))
        #expect(
            EndpointText.resolutionNote(
                option: "--endpoint", name: "vpn.example.org", picked: Endpoint(address: v6, port: 51820), addresses: [v6, v4])
                == "endpoint vpn.example.org is [2001:db8::1]:51820 (IPv6; it also has 1 IPv4 address)")
        #expect(
            EndpointText.resolutionNote(
                option: "--endpoint", name: "vpn.example.org", picked: Endpoint(address: v4, port: 51820), addresses: [v4])
                == "endpoint vpn.example.org is 192.0.2.1:51820 (IPv4)")
        #expect(
            EndpointText.resolutionNote(
                option: "--metrics", name: "mon", picked: Endpoint(address: v4, port: 9586), addresses: [v4, v6, v4b, v6b])
                == "metrics mon is 192.0.2.1:9586 (IPv4; it also has 1 other IPv4 address and 2 IPv6 addresses)")
    }
}

@Suite struct ListenFailureTests {
    @Test func aListenAddressThatCannotBeBoundIsNamedWithWhatToDo() {
        let inUse = IOError(call: "bind", errno: 98, detail: "Address already in use")
        #expect(
            listenFailure(Endpoint(address: IPv6Address.any, port: 51820), inUse)
                == "--listen [::]:51820: bind failed: Address already in use (errno 98); another process (another tunvpn or WireGuard?) uses that UDP port (`ss -lunp` names it): stop it or choose another, e.g. --listen [::]:51821")
        let notHere = IOError(call: "bind", errno: 99, detail: "Cannot assign requested address")
        #expect(
            listenFailure(Endpoint(address: IPv4Address(10, 1, 1, 1), port: 51820), notHere)
                == "--listen 10.1.1.1:51820: bind failed: Cannot assign requested address (errno 99); that address is not on this host (`ip addr` lists them), e.g. --listen [::]:51820")
    }
}
