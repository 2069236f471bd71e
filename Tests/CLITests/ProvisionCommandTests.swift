// `tunvpn add-client`, `remove-client`, `genpsk` and `version` as an operator runs them, and the client's
// inline keys in a config file.

import ArgumentParser
import Control
import Crypto
import Foundation
import Glibc
import Testing
import TestSupport
import Transport

@testable import tunvpn

@Suite struct ProvisionCommandTests {
    let serverKey = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="
    let clientKey = "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0="

    // MARK: - The client reads what add-client writes

    @Test func theWrittenConfigParsesIntoTheClientWithTheKeyBesideIt() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let file = ClientConfigFile(
            name: "laptop", serverKey: try PublicKey(base64: serverKey), endpoint: "vpn.example.com:51820",
            keyFile: "laptop.key", psk: "laptop.psk", address: IPv4Address("10.8.0.2")!)
        try file.text.write(toFile: dir.path + "/laptop.toml", atomically: false, encoding: .utf8)
        let arguments = try ConfigFile.expand(["client", "--config", dir.path + "/laptop.toml"])
        let client = try Client.parse(Array(arguments.dropFirst()))
        #expect(client.peerPublicKey == serverKey && client.peerKey == nil)
        #expect(client.endpoint == ["vpn.example.com:51820"])
        #expect(client.key == dir.path + "/laptop.key")
        #expect(client.common.psk == dir.path + "/laptop.psk")
        #expect(client.privateKey == nil)
    }

    @Test func anInlineKeyConfigParsesAndItsSecretsAreRefusedOnTheCommandLine() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let file = ClientConfigFile(
            name: "phone", serverKey: try PublicKey(base64: serverKey), endpoint: "[2001:db8::7]:51820", keyFile: nil,
            inlinePrivateKey: clientKey, psk: serverKey, inlinePSK: true, address: IPv4Address("10.8.0.3")!)
        try file.text.write(toFile: dir.path + "/phone.toml", atomically: false, encoding: .utf8)
        let arguments = try ConfigFile.expand(["client", "--config", dir.path + "/phone.toml"])
        let client = try Client.parse(Array(arguments.dropFirst()))
        #expect(client.privateKey == clientKey && client.presharedKey == serverKey)
        // The process's own command line is what is checked: the file's values pass, the same on argv do not.
        #expect(throws: Never.self) { try client.validateInlineKeys(["tunvpn", "client", "--config", "phone.toml"]) }
        for argv in [["tunvpn", "client", "--private-key", clientKey], ["tunvpn", "client", "--private-key=\(clientKey)"]] {
            #expect(message { try client.validateInlineKeys(argv) }
                == "--private-key is read from a config file only (a command line is visible in ps); put it in the file, e.g. tunvpn client --config laptop.toml")
        }
        #expect(message { try client.validateInlineKeys(["tunvpn", "--preshared-key=x"]) }?.hasPrefix("--preshared-key is read from a config file only") == true)
        #expect(clientError(["--peer-public-key", serverKey]) == "--peer-key and --peer-public-key cannot be combined: give the server's key once")
        #expect(message { _ = try Client.parse(["--endpoint", "203.0.113.7:51820", "--peer-public-key", "nope"]) }
            == "--peer-public-key is not a base64 X25519 public key (44 characters), e.g. the text of keys/server.pub")
        #expect(message { _ = try Client.parse(["--endpoint", "203.0.113.7:51820"]) }
            == "Missing expected argument '--peer-key <peer-key>' (the server's public key file, e.g. --peer-key keys/server.pub)")
    }

    func message(_ body: () throws -> Void) -> String? {
        do {
            try body()
            return nil
        } catch {
            return Client.message(for: error)
        }
    }

    @Test func addClientIsNotAConfigCapableCommandOfItsOwn() {
        #expect(!ConfigFile.configurableCommands().contains { $0 == AddClient.self })
        #expect(message { _ = try AddClient.parse(["two words"]) }
            == "NAME 'two words' may hold only letters, digits, '-', '_' and '.'; e.g. tunvpn add-client laptop")
        #expect(message { _ = try AddClient.parse(["x", "--public-key", clientKey, "--inline-key"]) }
            == "--inline-key needs the private key, which stays on the client with --public-key: drop one")
    }

    // MARK: - The binary, in a throwaway namespace (so no running instance is found or reloaded)
    // The server file says ipv6 = false, so the lines do not depend on whether this host runs IPv6
    // (ProvisioningTests covers IPv6 allocation).

    func tunvpn(_ arguments: [String], in directory: String) throws -> CommandResult {
        let topology = try Topology(hosts: ["H"]) { _ in [] }
        defer { topology.close() }
        return try topology["H"].exec(["env", "-C", directory, TestBinaries.tunvpn] + arguments)
    }

    func mode(_ path: String) -> mode_t? {
        var st = stat()
        return stat(path, &st) == 0 ? st.st_mode & 0o7777 : nil
    }

    func read(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }

    @Test(.needsRoot("runs tunvpn add-client inside a throwaway network namespace"))
    func addClientWritesTheLineTheKeysAndTheConfigAndRemoveClientTakesTheLineOut() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        #expect(try runCommand(TestBinaries.tunvpn, ["keygen", "--out", dir.path + "/keys", "--name", "server"]).status == 0)
        #expect(try runCommand(TestBinaries.tunvpn, ["keygen", "--out", dir.path, "--name", "psk"]).status == 0)
        let server = read(dir.path + "/keys/server.pub").trimmingCharacters(in: .whitespacesAndNewlines)
        try "# office\n".write(toFile: dir.path + "/keys/clients", atomically: false, encoding: .utf8)
        #expect(chmod(dir.path + "/keys/clients", 0o640) == 0)
        try """
            key = "keys/server.key"
            address = "10.8.0.1/24"
            listen = "0.0.0.0:51999"
            psk = "psk.key"
            ipv6 = false
            """.write(toFile: dir.path + "/server.toml", atomically: false, encoding: .utf8)

        let added = try tunvpn(
            ["add-client", "laptop", "--config", "server.toml", "--endpoint", "vpn.example.com", "--out", "out", "--dev", "tunprov0"],
            in: dir.path)
        #expect(added.status == 0, "\(added.stderr)")
        let pub = read(dir.path + "/out/laptop.pub").trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(read(dir.path + "/keys/clients") == "# office\n\(pub) 10.8.0.2  # laptop\n")
        #expect(mode(dir.path + "/keys/clients") == 0o640)
        #expect(mode(dir.path + "/out/laptop.toml") == 0o600 && mode(dir.path + "/out/laptop.key") == 0o600)
        #expect(mode(dir.path + "/out/laptop.psk") == 0o600)
        #expect(read(dir.path + "/out/laptop.psk") == read(dir.path + "/psk.key"))
        // TOMLKit writes the keys sorted, each value as a literal string.
        #expect(read(dir.path + "/out/laptop.toml").contains("endpoint = 'vpn.example.com:51999'\nkey = 'laptop.key'\npeer-public-key = '\(server)'\npsk = 'laptop.psk'\n"))
        #expect(added.stdout.contains("added laptop to keys/clients: \(pub) 10.8.0.2\n"))
        #expect(added.stdout.hasSuffix("no tunvpn server is running in this network namespace on tunprov0; it reads the allow-list when it starts\n"))
        // The private key in laptop.key is the one behind the line's public key.
        let derived = try runCommand(TestBinaries.tunvpn, ["pubkey"], stdin: read(dir.path + "/out/laptop.key"))
        #expect(derived.stdout == pub + "\n")

        // The same name again, and the same key under another name: one line each, nothing written.
        let again = try tunvpn(["add-client", "laptop", "--config", "server.toml", "--endpoint", "e:1", "--out", "o2", "--dev", "tunprov0"], in: dir.path)
        #expect(again.status == 1)
        #expect(again.stderr == "tunvpn: error: add-client laptop: keys/clients:2 already has a client named laptop; pick another name or `tunvpn remove-client laptop` first\n")
        let sameKey = try tunvpn(
            ["add-client", "desk", "--config", "server.toml", "--public-key", pub, "--endpoint", "e:1", "--out", "o2", "--dev", "tunprov0"], in: dir.path)
        #expect(sameKey.stderr == "tunvpn: error: add-client desk: keys/clients:2 already lists key \(pub) (named laptop); each client needs its own key\n")
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/o2"))

        // A key made on the client, an inline key with a QR code, a fixed address.
        let fixed = try tunvpn(
            ["add-client", "desk", "--config", "server.toml", "--public-key", clientKey, "--address", "10.8.0.77", "--endpoint", "203.0.113.7:1",
             "--out", "out", "--dev", "tunprov0"], in: dir.path)
        #expect(fixed.status == 0, "\(fixed.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/out/desk.key"))
        let phone = try tunvpn(
            ["add-client", "phone", "--config", "server.toml", "--inline-key", "--qr", "--endpoint", "203.0.113.7:1", "--out", "out", "--dev", "tunprov0"],
            in: dir.path)
        #expect(phone.status == 0, "\(phone.stderr)")
        let phoneConfig = read(dir.path + "/out/phone.toml")
        #expect(phoneConfig.contains("# WARNING: this file holds a secret key") && phoneConfig.contains("\nprivate-key = '"))
        #expect(phoneConfig.contains("\npreshared-key = '") && !phoneConfig.contains("\nkey = "))
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/out/phone.key"))
        #expect(phone.stdout.contains("warning: out/phone.toml holds the client's private key and the psk"))
        #expect(phone.stdout.contains(try QRCode(bytes: Array(phoneConfig.utf8)).terminalText))
        #expect(read(dir.path + "/keys/clients").hasSuffix("\(clientKey) 10.8.0.77  # desk\n\(pubOf(phoneConfig)) 10.8.0.3  # phone\n"))

        let removed = try tunvpn(["remove-client", "desk", "--config", "server.toml", "--dev", "tunprov0"], in: dir.path)
        #expect(removed.status == 0, "\(removed.stderr)")
        #expect(removed.stdout.hasPrefix("removed desk (\(clientKey), line 3) from keys/clients\n"))
        #expect(read(dir.path + "/keys/clients") == "# office\n\(pub) 10.8.0.2  # laptop\n\(pubOf(phoneConfig)) 10.8.0.3  # phone\n")
        #expect(mode(dir.path + "/keys/clients") == 0o640)
        let unknown = try tunvpn(["remove-client", "desk", "--clients", "keys/clients", "--dev", "tunprov0"], in: dir.path)
        #expect(unknown.stderr == "tunvpn: error: remove-client desk: no client named desk in keys/clients (names there: laptop, phone)\n")
    }

    /// The public key of the private key inline in a client config.
    func pubOf(_ config: String) -> String {
        guard let line = config.split(separator: "\n").first(where: { $0.hasPrefix("private-key = ") }),
            let key = try? PrivateKey(base64: String(line.dropFirst("private-key = '".count).dropLast()))
        else { return "(no private-key)" }
        return key.publicKey.base64
    }

    @Test func genpskAndVersionPrintWhatTheySay() throws {
        let psk = try runCommand(TestBinaries.tunvpn, ["genpsk"])
        #expect(psk.status == 0)
        let text = psk.stdout.trimmingCharacters(in: .newlines)
        #expect(text.count == 44 && (try? PrivateKey(base64: text)) != nil)
        #expect(try runCommand(TestBinaries.tunvpn, ["genpsk"]).stdout != psk.stdout)
        let expected = "tunvpn \(BuildInfo.version)\nprotocol version \(WireFormat.protocolVersion)\ncipher suites: "
        for arguments in [["--version"], ["version"]] {
            let r = try runCommand(TestBinaries.tunvpn, arguments)
            #expect(r.status == 0)
            #expect(r.stdout.hasPrefix(expected), "\(r.stdout)")
            for suite in CipherSuites.all { #expect(r.stdout.contains(suite.name)) }
        }
        #expect(BuildInfo.text.hasPrefix("tunvpn \(BuildInfo.version)\nprotocol version 3\ncipher suites: xchacha20poly1305, chacha20poly1305, aes256gcm"))
    }
}
