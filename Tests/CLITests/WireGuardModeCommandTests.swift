// `--protocol wireguard` on the command line and in config files: the mode reaches the settings, what the
// mode refuses is refused with one line naming the option, the client's own --address becomes its
// addressing, and `add-client` writes a wg-quick file (the binary, in a throwaway network namespace).

import ArgumentParser
import Control
import Crypto
import Foundation
import Glibc
import Platform
import Testing
import TestSupport
import Transport

@testable import tunvpn

@Suite struct WireGuardModeOptionTests {
    @Test func anUnknownProtocolListsTheKnownOnes() {
        let answer = "unknown --protocol 'ipsec': give one of tunvpn, wireguard, e.g. --protocol wireguard"
        #expect(serverError(["--protocol", "ipsec"]) == answer)
        #expect(clientError(["--protocol", "ipsec"]) == answer)
        #expect(serverError(["--protocol", "wireguard", "--address", "10.8.0.1/24"]) == nil)
        #expect(serverError(["--protocol", "tunvpn"]) == nil)
    }

    @Test func theModeReachesTheSettingsAndTunvpnStaysTheDefault() throws {
        let host = try HostOptions.parse([])
        #expect(try Server.parse([]).common.settings(host).protocolMode == .tunvpn)
        #expect(try Server.parse(["--protocol", "wireguard"]).common.settings(host).protocolMode == .wireguard)
        let client = try Client.parse(["--peer-key", "s.pub", "--endpoint", "192.0.2.1:51820", "--protocol", "wireguard", "--address", "10.8.0.2/24"])
        #expect(client.common.settings(host).protocolMode == .wireguard)
        var t = TunnelSettings()
        t.protocolMode = .wireguard
        t.suites = ["xchacha20poly1305"]
        #expect(try t.cipherSuites().map { $0.name } == ["chacha20poly1305"])
    }

    @Test func theServerRefusesWhatWireGuardModeCannotDo() {
        let wg = ["--protocol", "wireguard"]
        #expect(
            serverError(wg + ["--allow-any-client"])
                == "--allow-any-client cannot be used with --protocol wireguard: each peer's allowed IPs come from its allow-list line; list it in --clients, e.g. KEY 10.8.0.5/32 # laptop")
        #expect(
            serverError(wg + ["--dns", "10.8.0.1"])
                == "--dns cannot be used with --protocol wireguard: nothing is pushed in WireGuard mode; put DNS in the client's config (e.g. tunvpn add-client laptop --dns 10.8.0.1)")
        #expect(serverError(wg + ["--dns-search", "corp.example"])?.hasPrefix("--dns-search cannot be used with --protocol wireguard: nothing is pushed") == true)
        #expect(
            serverError(wg + ["--suite", "xchacha20poly1305"])
                == "--suite xchacha20poly1305 cannot be used with --protocol wireguard: WireGuard's frames are chacha20poly1305 only; drop --suite or give --suite chacha20poly1305")
        #expect(serverError(wg + ["--suite", "chacha20poly1305"]) == nil)
        // The same options stay fine in tunvpn mode.
        #expect(serverError(["--allow-any-client", "--dns", "10.8.0.1", "--suite", "xchacha20poly1305"]) == nil)
    }

    @Test func theClientsAddressIsRequiredInWireGuardModeAndRefusedInTunvpnMode() {
        #expect(
            clientError(["--address", "10.8.0.2/24"])
                == "--address 10.8.0.2/24 cannot be used with --protocol tunvpn: the server assigns addresses in tunvpn mode; drop --address, or add --protocol wireguard for a WireGuard server")
        let wg = ["--protocol", "wireguard"]
        #expect(
            clientError(wg)
                == "Missing --address: --protocol wireguard needs this client's own tunnel address (a WireGuard server pushes none; wg-quick's Address), e.g. --address 10.8.0.2/24 --address fd00:8::2/64")
        #expect(clientError(wg + ["--address", "fd00:8::2/64"])?.hasPrefix("--address gives no IPv4 prefix: --protocol wireguard needs") == true)
        #expect(
            clientError(wg + ["--address", "10.8.0.2"])
                == "--address '10.8.0.2' is not an address with a prefix length: e.g. --address 10.8.0.2/24 --address fd00:8::2/64")
        #expect(clientError(wg + ["--address", "10.8.0.2/24", "--address", "10.9.0.2/24"])?.hasPrefix("--address given two IPv4 prefixes, 10.8.0.2/24 and 10.9.0.2/24") == true)
        #expect(clientError(wg + ["--address", "10.8.0.0/24"])?.hasPrefix("--address '10.8.0.0/24' is the prefix's network or broadcast address") == true)
        #expect(clientError(wg + ["--address", "127.0.0.2/8"])?.hasPrefix("--address '127.0.0.2/8' is in 0.0.0.0/8, loopback") == true)
        #expect(clientError(wg + ["--address", "fe80::2/64", "--address", "10.8.0.2/24"])?.hasPrefix("--address 'fe80::2/64' is in ::/8, link-local") == true)
        #expect(
            clientError(wg + ["--address", "10.8.0.2/24", "--address", "fd00:8::2/64", "--no-ipv6"])
                == "--address fd00:8::2/64 and --no-ipv6 cannot be combined: drop one, e.g. --address 10.8.0.2/24 --address fd00:8::2/64")
        #expect(clientError(wg + ["--address", "10.8.0.2/24", "--address", "fd00:8::2/64", "--mtu", "1200"])?.contains("needs --mtu 1280 or more") == true)
        #expect(clientError(wg + ["--address", "10.8.0.2/32"]) == nil)
        #expect(clientError(wg + ["--address", "10.8.0.2/24", "--address", "fd00:8::2/128", "--dns", "10.8.0.1"]) == nil)
        #expect(clientError(wg + ["--address", "10.8.0.2/24", "--suite", "aes256gcm"])?.hasPrefix("--suite aes256gcm cannot be used with --protocol wireguard") == true)
    }

    @Test func theClientsOwnAddressingIsItsAddressesAndResolvers() throws {
        let client = try Client.parse([
            "--peer-key", "s.pub", "--endpoint", "192.0.2.1:51820", "--protocol", "wireguard", "--address", "fd00:8::2/64",
            "--address", "10.8.0.2/24", "--dns", "10.8.0.1",
        ])
        let own = try #require(try client.ownAddresses())
        #expect("\(own.0)" == "10.8.0.2/24" && own.1.map { "\($0)" } == "fd00:8::2/64")
        var c = ClientConfiguration(peerKeyFile: "s.pub", endpoint: "192.0.2.1:51820")
        c.tunnel.protocolMode = .wireguard
        c.address = own.0
        c.address6 = own.1
        c.dns = [try #require(IPAddress("10.8.0.1"))]
        let a = try #require(ClientDaemon.ownAddressing(c))
        #expect("\(a.client)" == "10.8.0.2/24" && a.client6.map { "\($0)" } == "fd00:8::2/64")
        #expect(a.server == IPv4Address(0, 0, 0, 0) && a.server6 == nil && a.ipv6Egress)
        #expect(a.dns.resolvers.map(\.description) == ["10.8.0.1"] && a.dns.searchDomains.isEmpty)
        // The pushed-DNS rules give the same resolvers from this addressing.
        #expect(ClientDaemon.dnsInForce(c, pushed: a.dns).resolvers.map(\.description) == ["10.8.0.1"])
        c.noIPv6 = true
        #expect(ClientDaemon.ownAddressing(c)?.client6 == nil && ClientDaemon.ownAddressing(c)?.ipv6Egress == false)
        c.tunnel.protocolMode = .tunvpn
        #expect(ClientDaemon.ownAddressing(c) == nil)
        #expect(try Client.parse(["--peer-key", "s.pub", "--endpoint", "192.0.2.1:51820"]).ownAddresses() == nil)
    }

    // MARK: - Config files

    var server: ConfigSchema { ConfigSchema(Server.self) }
    var client: ConfigSchema { ConfigSchema(Client.self) }

    @Test func protocolAndTheClientsAddressAreConfigKeys() throws {
        let serverArguments = try ConfigFile.settings(fromTOML: "protocol = \"wireguard\"\n", file: "s.toml", for: server).flatMap(\.arguments)
        #expect(serverArguments == ["--protocol=wireguard"])
        let text = """
            protocol = "wireguard"
            address = ["10.8.0.2/24", "fd00:8::2/64"]
            dns = "10.8.0.1"
            """
        let clientArguments = try ConfigFile.settings(fromTOML: text, file: "c.toml", for: client).flatMap(\.arguments)
        #expect(clientArguments == ["--protocol=wireguard", "--address=10.8.0.2/24", "--address=fd00:8::2/64", "--dns=10.8.0.1"])
        let parsed = try Client.parse(["--peer-key", "s.pub", "--endpoint", "192.0.2.1:51820"] + clientArguments)
        #expect(parsed.common.protocolMode == .wireguard && parsed.address.count == 2)
        // A wrong value in a file gets the command line's answer, through the file's arguments.
        let wrong = try ConfigFile.settings(fromTOML: "protocol = \"wg\"\n", file: "s.toml", for: server).flatMap(\.arguments)
        #expect(serverError(wrong) == "unknown --protocol 'wg': give one of tunvpn, wireguard, e.g. --protocol wireguard")
    }

    // MARK: - add-client

    func message(_ body: () throws -> Void) -> String? {
        do {
            try body()
            return nil
        } catch {
            return AddClient.message(for: error)
        }
    }

    @Test func addClientChecksItsWireGuardOptions() throws {
        #expect(message { _ = try AddClient.parse(["x", "--protocol", "ipsec"]) } == "unknown --protocol 'ipsec': give one of tunvpn, wireguard, e.g. --protocol wireguard")
        #expect(message { _ = try AddClient.parse(["x", "--dns", "nowhere"]) }?.hasPrefix("--dns 'nowhere' is not an IPv4 or IPv6 address") == true)
        #expect(message { _ = try AddClient.parse(["x", "--route", "10.0.0.0"]) }?.hasPrefix("--route '10.0.0.0' is not a network with a prefix length") == true)
        let withKey = try AddClient.parse(["x", "--public-key", "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0="])
        #expect(message { try withKey.checkWireGuardMode(.wireguard) }?.hasPrefix("--public-key cannot be used in WireGuard mode: NAME.conf (wg-quick) holds the client's private key") == true)
        #expect(message { try withKey.checkWireGuardMode(.tunvpn) } == nil)
        let inline = try AddClient.parse(["x", "--inline-key"])
        #expect(message { try inline.checkWireGuardMode(.wireguard) }?.hasPrefix("--inline-key is for NAME.toml") == true)
        let dns = try AddClient.parse(["x", "--dns", "10.8.0.1"])
        #expect(message { try dns.checkWireGuardMode(.tunvpn) }?.hasPrefix("--dns is for WireGuard mode's NAME.conf") == true)
        #expect(message { try dns.checkWireGuardMode(.wireguard) } == nil)
    }

    func tunvpn(_ arguments: [String], in directory: String) throws -> CommandResult {
        let topology = try Topology(hosts: ["H"]) { _ in [] }
        defer { topology.close() }
        return try topology["H"].exec(["env", "-C", directory, TestBinaries.tunvpn] + arguments)
    }

    func read(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }

    func mode(_ path: String) -> mode_t? {
        var st = stat()
        return stat(path, &st) == 0 ? st.st_mode & 0o7777 : nil
    }

    /// add-client on a server whose config says protocol = "wireguard" writes NAME.conf and NAME.pub (no
    /// NAME.toml, NAME.key or NAME.psk), the usual allow-list line, and --qr prints the file's QR code; on a
    /// tunvpn-mode server, --protocol wireguard does the same.
    @Test(.needsRoot("runs tunvpn add-client inside a throwaway network namespace"))
    func addClientWritesAWgQuickFileInWireGuardMode() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        #expect(try runCommand(TestBinaries.tunvpn, ["keygen", "--out", dir.path + "/keys", "--name", "server"]).status == 0)
        // A psk as genpsk makes them: 32 bytes, not clamped as a private key is (0x33 has its low bits set).
        let psk = Base64.encode([UInt8](repeating: 0x33, count: 32))
        try KeyFiles.write(psk + "\n", to: dir.path + "/psk.key", mode: 0o600, overwrite: false)
        let server = read(dir.path + "/keys/server.pub").trimmingCharacters(in: .whitespacesAndNewlines)
        try """
            protocol = "wireguard"
            key = "keys/server.key"
            address = ["10.8.0.1/24", "fd00:8::1/64"]
            listen = "0.0.0.0:51999"
            psk = "psk.key"
            """.write(toFile: dir.path + "/server.toml", atomically: false, encoding: .utf8)

        let added = try tunvpn(
            ["add-client", "phone", "--config", "server.toml", "--endpoint", "vpn.example.com", "--dns", "10.8.0.1", "--qr", "--out", "out",
             "--dev", "tunprovwg0"],
            in: dir.path)
        #expect(added.status == 0, "\(added.stderr)")
        let conf = read(dir.path + "/out/phone.conf")
        let pub = read(dir.path + "/out/phone.pub").trimmingCharacters(in: .whitespacesAndNewlines)
        let privateLine = try #require(conf.split(separator: "\n").first { $0.hasPrefix("PrivateKey = ") })
        let privateKey = try PrivateKey(base64: String(privateLine.dropFirst("PrivateKey = ".count)))
        #expect(privateKey.publicKey.base64 == pub)
        // The IPv6 address is allocated only where this host carries IPv6 in the tunnel (as the server decides).
        let six = read(dir.path + "/keys/clients").contains("fd00:8::2")
        #expect(read(dir.path + "/keys/clients") == "\(pub) 10.8.0.2\(six ? " fd00:8::2" : "")  # phone\n")
        #expect(
            conf == """
                [Interface]
                PrivateKey = \(privateKey.base64)
                Address = 10.8.0.2/24\(six ? ", fd00:8::2/64" : "")
                DNS = 10.8.0.1

                [Peer]
                PublicKey = \(server)
                PresharedKey = \(psk)
                Endpoint = vpn.example.com:51999
                AllowedIPs = 0.0.0.0/0, ::/0
                PersistentKeepalive = 25

                """)
        #expect(mode(dir.path + "/out/phone.conf") == 0o600)
        for absent in ["phone.toml", "phone.key", "phone.psk"] { #expect(!FileManager.default.fileExists(atPath: dir.path + "/out/" + absent)) }
        #expect(added.stdout.contains("wrote out/phone.conf (wg-quick, mode 0600), out/phone.pub\n"))
        #expect(added.stdout.contains(try QRCode(bytes: Array(conf.utf8)).terminalText))

        // A tunvpn-mode server's config, --protocol wireguard on the command line, a split tunnel, no psk.
        try """
            key = "keys/server.key"
            address = "10.9.0.1/16"
            listen = "0.0.0.0:51998"
            clients = "keys/others"
            ipv6 = false
            """.write(toFile: dir.path + "/plain.toml", atomically: false, encoding: .utf8)
        let split = try tunvpn(
            ["add-client", "desk", "--config", "plain.toml", "--protocol", "wireguard", "--route", "10.9.0.0/16", "--endpoint", "203.0.113.7",
             "--out", "out", "--dev", "tunprovwg0"],
            in: dir.path)
        #expect(split.status == 0, "\(split.stderr)")
        let desk = read(dir.path + "/out/desk.conf")
        #expect(desk.contains("\nAddress = 10.9.0.2/16\n") && desk.contains("\nAllowedIPs = 10.9.0.0/16\n"))
        #expect(desk.contains("\nEndpoint = 203.0.113.7:51998\n") && !desk.contains("PresharedKey") && !desk.contains("DNS"))

        // Without the mode, --dns is refused and nothing is written.
        let plain = try tunvpn(
            ["add-client", "lab", "--config", "plain.toml", "--dns", "10.9.0.1", "--endpoint", "e:1", "--out", "o2", "--dev", "tunprovwg0"], in: dir.path)
        #expect(plain.status == 1 && plain.stderr.hasPrefix("tunvpn: error: --dns is for WireGuard mode's NAME.conf"), "\(plain)")
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/o2"))
    }

    /// The binary's --dry-run in WireGuard mode: the server refuses an allow-list line without an address
    /// (naming the line) and otherwise prints its plan; the client's plan already has its --address.
    @Test(.needsRoot("runs tunvpn --dry-run inside a throwaway network namespace"))
    func aWireGuardServerAndClientDryRun() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        for name in ["server", "client"] {
            #expect(try runCommand(TestBinaries.tunvpn, ["keygen", "--out", dir.path + "/keys", "--name", name]).status == 0)
        }
        let client = read(dir.path + "/keys/client.pub").trimmingCharacters(in: .whitespacesAndNewlines)
        try "\(client)  # laptop\n".write(toFile: dir.path + "/keys/peers", atomically: false, encoding: .utf8)
        let server = ["server", "--protocol", "wireguard", "--address", "10.8.0.1/24", "--clients", "keys/peers", "--no-ipv6", "--dry-run", "--egress", "lo"]
        let bare = try tunvpn(server, in: dir.path)
        #expect(bare.status == 1, "\(bare)")
        #expect(bare.stderr.hasPrefix("tunvpn: error: keys/peers: line 1: the key (laptop) has no address, and --protocol wireguard assigns none from a pool"), "\(bare)")
        try "\(client) 10.8.0.2/32  # laptop\n".write(toFile: dir.path + "/keys/peers", atomically: false, encoding: .utf8)
        let served = try tunvpn(server, in: dir.path)
        #expect(served.status == 0, "\(served)")
        #expect(served.stdout.contains("ip addr add 10.8.0.1/24 dev tun0\nip link set tun0 mtu 1420 txqueuelen 1000 up\n"), "\(served.stdout)")

        let r = try tunvpn(
            ["client", "--protocol", "wireguard", "--address", "10.8.0.2/24", "--peer-key", "keys/server.pub", "--endpoint", "203.0.113.7:51820",
             "--dns", "10.8.0.1", "--dry-run"],
            in: dir.path)
        #expect(r.status == 0, "\(r)")
        #expect(r.stdout.contains("ip addr add 10.8.0.2/24 dev tun0\nip link set tun0 mtu 1420 txqueuelen 1000 up\n"), "\(r.stdout)")
        #expect(!r.stdout.contains("address assigned by the server"), "\(r.stdout)")
        #expect(r.stdout.contains("the resolvers of --dns (below; WireGuard mode pushes none)"), "\(r.stdout)")
    }
}
