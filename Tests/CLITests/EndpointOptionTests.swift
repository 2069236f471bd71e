// The command line's address options: `--endpoint`, `--listen` and `--metrics` take `[IPV6]:PORT`, and an
// IPv6 address without brackets stops the command at validation with the one-line error (EndpointText).

import ArgumentParser
import Testing

@testable import tunvpn

/// The message ArgumentParser prints for the failure of parsing `arguments`, or nil if they parse.
private func message<C: ParsableCommand>(_ command: C.Type, _ arguments: [String]) -> String? {
    do {
        _ = try command.parse(arguments)
        return nil
    } catch { return command.message(for: error) }
}

@Suite struct EndpointOptionTests {
    @Test func theServerListensOnTheIPv6AnyAddressByDefaultAndTakesBracketedAddresses() throws {
        #expect(try Server.parse([]).listen == "[::]:51820")
        #expect(message(Server.self, ["--listen", "[::1]:51820"]) == nil)
        #expect(message(Server.self, ["--listen", "0.0.0.0:51820"]) == nil)
        #expect(message(Server.self, ["--listen", "localhost:51820"]) == nil)
        #expect(message(Server.self, ["--metrics", "[::1]:9586"]) == nil)
        #expect(message(Client.self, ["--peer-key", "k", "--endpoint", "[2001:db8::1]:51820"]) == nil)
        #expect(message(Client.self, ["--peer-key", "k", "--endpoint", "vpn.example.org:51820"]) == nil)
    }

    @Test func anUnbracketedIPv6AddressIsRefusedWithTheExample() {
        #expect(
            message(Client.self, ["--peer-key", "k", "--endpoint", "2001:db8::1:51820"])
                == "--endpoint 2001:db8::1:51820: put an IPv6 address in brackets, e.g. --endpoint [2001:db8::1]:51820")
        #expect(
            message(Server.self, ["--listen", "::1:51820"])
                == "--listen ::1:51820: put an IPv6 address in brackets, e.g. --listen [::1]:51820")
        #expect(
            message(Server.self, ["--metrics", "fd00::1:9586"])
                == "--metrics fd00::1:9586: put an IPv6 address in brackets, e.g. --metrics [fd00::1]:9586")
        #expect(
            message(Client.self, ["--peer-key", "k", "--endpoint", "vpn.example.org"])
                == "--endpoint vpn.example.org: no port, e.g. --endpoint vpn.example.org:51820")
    }
}

/// `--endpoint` repeated: every one is checked, in order; `--failover-after` is bounded.
@Suite struct SeveralEndpointsOptionTests {
    @Test func everyEndpointIsCheckedAndKeptInOrder() throws {
        let client = try Client.parse(["--peer-key", "k", "--endpoint", "vpn1.example.org:51820", "--endpoint", "[2001:db8::2]:443"])
        #expect(client.endpoint == ["vpn1.example.org:51820", "[2001:db8::2]:443"])
        #expect(client.failoverAfter == 15)
        #expect(
            message(Client.self, ["--peer-key", "k", "--endpoint", "vpn1.example.org:51820", "--endpoint", "2001:db8::2:443"])
                == "--endpoint 2001:db8::2:443: put an IPv6 address in brackets, e.g. --endpoint [2001:db8::2]:443")
        #expect(message(Client.self, ["--peer-key", "k"])?.contains("--endpoint") == true)
    }

    @Test func failoverAfterIsOneSecondToAnHour() {
        let base = ["--peer-key", "k", "--endpoint", "192.0.2.1:51820", "--endpoint", "192.0.2.2:51820"]
        #expect(message(Client.self, base + ["--failover-after", "1"]) == nil)
        #expect(message(Client.self, base + ["--failover-after", "3600"]) == nil)
        #expect(
            message(Client.self, base + ["--failover-after", "0"])
                == "--failover-after 0 is out of range: give 1 to 3600 seconds, e.g. --failover-after 15")
    }
}
