// The DNS options: the server's --dns and --dns-search, the client's --dns and --no-dns, and the one-line
// errors for bad values (docs/PROTOCOL.md, "The DNS block").

import ArgumentParser
import Control
import Testing
import Transport

@testable import tunvpn

@Suite struct DNSOptionTests {
    @Test func theServersSettingsAreParsedAsTheHandshakeCarriesThem() throws {
        let server = try Server.parse(["--dns", "10.8.0.1", "--dns", "fd00:8::1", "--dns-search", "corp.example.", "--dns-search", "lab"])
        #expect(try server.pushedDNS() == DNSSettings(
            resolvers: [.v4(IPv4Address(10, 8, 0, 1)), .v6(IPv6Address("fd00:8::1")!)], searchDomains: ["corp.example", "lab"]))
        #expect(try Server.parse(["--dns", "::ffff:10.8.0.1"]).pushedDNS().resolvers == [.v4(IPv4Address(10, 8, 0, 1))])
        #expect(try Server.parse([]).pushedDNS() == .none)
    }

    @Test func badServerValuesAreOneLineErrorsNamingTheOptionWithAnExample() {
        let cases: [([String], String)] = [
            (["--dns", "resolver.lan"], "--dns 'resolver.lan' is not an IPv4 or IPv6 address, e.g. --dns 10.8.0.1 --dns fd00:8::1"),
            (["--dns", "10.8.0.1/24"], "--dns '10.8.0.1/24' is not an IPv4 or IPv6 address, e.g. --dns 10.8.0.1 --dns fd00:8::1"),
            (["--dns", "127.0.0.53"],
             "--dns 127.0.0.53: 127.0.0.53 is a loopback address, which names no resolver a client can use through the tunnel; e.g. --dns 10.8.0.1 --dns fd00:8::1"),
            (["--dns", "ff02::1"],
             "--dns ff02::1: ff02::1 is a multicast address, which names no resolver a client can use through the tunnel; e.g. --dns 10.8.0.1 --dns fd00:8::1"),
            (["--dns", "1.1.1.1", "--dns", "1.0.0.1", "--dns", "8.8.8.8", "--dns", "8.8.4.4", "--dns", "9.9.9.9"],
             "--dns given 5 times: at most 4 resolvers fit in the protocol, e.g. --dns 10.8.0.1 --dns fd00:8::1"),
            (["--dns-search", "corp_example.com"],
             "--dns-search 'corp_example.com': a character other than letters, digits, '-' and '.' in 'corp_example.com'; give a domain name, e.g. --dns-search corp.example"),
            (["--dns-search=-corp.example"],
             "--dns-search '-corp.example': a label starting or ending with '-' in '-corp.example'; give a domain name, e.g. --dns-search corp.example"),
            (["--dns-search", "a..b"], "--dns-search 'a..b': an empty label in 'a..b'; give a domain name, e.g. --dns-search corp.example"),
            (["--dns-search", String(repeating: "a", count: 40) + ".example", "--dns-search", "second.example"],
             "--dns-search: the domains take 63 bytes as sent (one space between them), more than the protocol's 62; give fewer or shorter ones, e.g. --dns-search corp.example"),
        ]
        for (arguments, message) in cases {
            #expect(serverError(arguments) == message, "\(arguments)")
            #expect(serverError(arguments)?.contains("\n") == false)
        }
    }

    @Test func theClientTakesItsOwnResolversOrNone() throws {
        #expect(clientError(["--dns", "10.8.0.53", "--dns", "fd00::53"]) == nil)
        #expect(clientError(["--no-dns"]) == nil)
        #expect(clientError(["--dns", "dns.example"]) == "--dns 'dns.example' is not an IPv4 or IPv6 address, e.g. --dns 10.8.0.1 --dns fd00:8::1")
        #expect(clientError(["--dns", "10.8.0.1", "--no-dns"])
            == "--dns and --no-dns cannot be combined: drop one (e.g. --dns 10.8.0.1, or --no-dns alone)")
    }

    @Test func theConfigKeysAreTheOptionNamesAndNoDnsIsItsOwnKey() throws {
        let client = ConfigSchema(Client.self)
        guard case .flag(let whenTrue, let whenFalse)? = client.keys["no-dns"]?.shape else {
            Issue.record("no-dns is no flag key")
            return
        }
        #expect(whenTrue == "--no-dns" && whenFalse == nil)
        guard case .option(let name, _, let repeating)? = client.keys["dns"]?.shape else {
            Issue.record("dns is no option key")
            return
        }
        #expect(name == "--dns" && repeating)
        let server = ConfigSchema(Server.self)
        guard case .option(let search, _, true)? = server.keys["dns-search"]?.shape else {
            Issue.record("dns-search is no repeatable option key")
            return
        }
        #expect(search == "--dns-search")
    }
}
