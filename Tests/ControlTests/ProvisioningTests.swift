// `tunvpn add-client` / `remove-client` logic: address allocation, the allow-list line and the edited file,
// names, the client's TOML, the atomic rewrite, and the QR code.

import Control
import Crypto
import Foundation
import Glibc
import Testing
import TestSupport
import Transport

/// The message of the `ControlError` `body` throws, nil when it throws none (any other error described).
func controlMessage(_ body: () throws -> Void) -> String? {
    do {
        try body()
        return nil
    } catch let error as ControlError {
        return error.message
    } catch {
        return "not a ControlError: \(error)"
    }
}

@Suite struct ProvisioningTests {
    let keyA = try! PublicKey(base64: "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=")
    let keyB = try! PublicKey(base64: "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=")
    let keyC = try! PublicKey(base64: "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=")
    let prefix = IPv4Prefix("10.8.0.1/16")!
    let prefix6 = IPv6Prefix("fd00:8::1/64")!

    // MARK: - Address allocation

    @Test func theNextFreeIPv4AddressSkipsTheServerTheNetworkTheBroadcastAndTakenOnes() {
        let a = { (text: String) in IPv4Address(text)! }
        #expect(Provisioning.nextFreeAddress(in: prefix, taken: []) == a("10.8.0.2"))
        #expect(Provisioning.nextFreeAddress(in: prefix, taken: [a("10.8.0.2"), a("10.8.0.4")]) == a("10.8.0.3"))
        // Server in the middle of a /29: .0 network, .7 broadcast, .5 the server's.
        let small = IPv4Prefix("10.9.0.5/29")!
        #expect(Provisioning.nextFreeAddress(in: small, taken: [a("10.9.0.1"), a("10.9.0.2"), a("10.9.0.3"), a("10.9.0.4")]) == a("10.9.0.6"))
        #expect(
            Provisioning.nextFreeAddress(in: small, taken: [a("10.9.0.1"), a("10.9.0.2"), a("10.9.0.3"), a("10.9.0.4"), a("10.9.0.6")]) == nil)
        #expect(Provisioning.nextFreeAddress(in: IPv4Prefix("10.9.0.2/30")!, taken: []) == a("10.9.0.1"))
        #expect(Provisioning.nextFreeAddress(in: IPv4Prefix("10.9.0.1/30")!, taken: [a("10.9.0.2")]) == nil)
    }

    @Test func theNextFreeIPv6AddressSkipsTheSubnetRouterAnycastAndTheServer() {
        let a = { (text: String) in IPv6Address(text)! }
        #expect(Provisioning.nextFreeAddress6(in: prefix6, taken: []) == a("fd00:8::2"))
        let p = IPv6Prefix("fd00:8::3/120")!
        #expect(Provisioning.nextFreeAddress6(in: p, taken: [a("fd00:8::1"), a("fd00:8::2")]) == a("fd00:8::4"))
        #expect(Provisioning.nextFreeAddress6(in: p, taken: [], limit: 1) == a("fd00:8::1"))
        #expect(Provisioning.nextFreeAddress6(in: p, taken: [a("fd00:8::1"), a("fd00:8::2")], limit: 3) == nil)
    }

    @Test func allocationTakesTheNextFreeAddressesAfterTheListsOwn() throws {
        let list = try AllowList(parsing: "\(keyA.base64) 10.8.0.2 fd00:8::2  # laptop\n\(keyB.base64)  # phone\n")
        let got = try Provisioning.allocate(name: "desk", key: keyC, list: list, file: "clients", prefix: prefix, prefix6: prefix6)
        #expect(got.address == IPv4Address("10.8.0.3"))
        #expect(got.address6 == IPv6Address("fd00:8::3"))
        #expect(got.line == "\(keyC.base64) 10.8.0.3 fd00:8::3  # desk\n")
        let v4only = try Provisioning.allocate(name: "desk", key: keyC, list: list, file: "clients", prefix: prefix, prefix6: nil)
        #expect(v4only.address6 == nil && v4only.line == "\(keyC.base64) 10.8.0.3  # desk\n")
        let fixed = try Provisioning.allocate(
            name: "desk", key: keyC, list: list, file: "clients", prefix: prefix, prefix6: prefix6,
            address: IPv4Address("10.8.3.4"), address6: IPv6Address("fd00:8::77"))
        #expect(fixed.line == "\(keyC.base64) 10.8.3.4 fd00:8::77  # desk\n")
    }

    @Test func allocationRefusesDuplicatesAndBadAddressesInOneLine() throws {
        let list = try AllowList(parsing: "\(keyA.base64) 10.8.0.2 fd00:8::2  # laptop\n")
        func message(_ name: String, _ key: PublicKey, _ a: IPv4Address? = nil, _ a6: IPv6Address? = nil, prefix6: IPv6Prefix? = IPv6Prefix("fd00:8::1/64")) -> String? {
            controlMessage {
                _ = try Provisioning.allocate(name: name, key: key, list: list, file: "keys/clients", prefix: prefix, prefix6: prefix6, address: a, address6: a6)
            }
        }
        #expect(message("laptop", keyB) == "add-client laptop: keys/clients:1 already has a client named laptop; pick another name or `tunvpn remove-client laptop` first")
        #expect(message("desk", keyA) == "add-client desk: keys/clients:1 already lists key \(keyA.base64) (named laptop); each client needs its own key")
        #expect(message("desk", keyB, IPv4Address("10.8.0.2")) == "--address 10.8.0.2 is taken by keys/clients:1; e.g. --address 10.8.0.3")
        #expect(message("desk", keyB, IPv4Address("10.8.0.1")) == "--address 10.8.0.1 is not a client address in the server's 10.8.0.1/16; e.g. --address 10.8.0.3")
        #expect(message("desk", keyB, IPv4Address("10.9.0.1"))?.hasPrefix("--address 10.9.0.1 is not a client address") == true)
        #expect(message("desk", keyB, nil, IPv6Address("fd00:8::2")) == "--address fd00:8::2 is taken by keys/clients:1; pick another one in fd00:8::1/64")
        #expect(message("desk", keyB, nil, IPv6Address("fd00:8::"))?.hasPrefix("--address fd00:8:: is not a client address") == true)
        #expect(message("desk", keyB, nil, IPv6Address("fd00:9::5"), prefix6: nil) == "--address fd00:9::5: the server carries no IPv6 (--no-ipv6); give an IPv4 address, e.g. --address 10.8.0.7")
        #expect(message("two words", keyB) == "add-client NAME 'two words' may hold only letters, digits, '-', '_' and '.'; give one word, e.g. tunvpn add-client laptop")
        let full = try AllowList(parsing: "\(keyA.base64) 10.9.0.2\n")
        #expect(
            controlMessage { _ = try Provisioning.allocate(name: "x", key: keyB, list: full, file: "c", prefix: IPv4Prefix("10.9.0.1/30")!, prefix6: nil) }
                == "c: no free IPv4 address left in 10.9.0.1/30; widen the server's --address prefix (e.g. 10.8.0.1/16)")
    }

    // MARK: - Names and lines

    @Test func aClientsNameIsTheFirstWordOfItsComment() throws {
        let list = try AllowList(parsing: "\(keyA.base64) 10.8.0.2  #  laptop\tAnna's, 2026\n\(keyB.base64)\n\(keyC.base64) # phone\n")
        #expect(list.clients.map(\.name) == ["laptop", "", "phone"])
        #expect(AllowedClient(key: keyA, comment: "").name == "")
        #expect(Provisioning.nameProblem("laptop-2_x.y") == nil)
        #expect(Provisioning.nameProblem("") == "is empty")
        #expect(Provisioning.nameProblem("-x") == "starts with '-'")
        #expect(Provisioning.nameProblem("a/b") != nil)
        #expect(Provisioning.nameProblem("caf\u{e9}") != nil)
    }

    @Test func aWrittenLineParsesBackToTheSameClient() throws {
        let line = Provisioning.line(key: keyA, address: IPv4Address("10.8.0.9"), address6: IPv6Address("fd00:8::9"), name: "laptop")
        #expect(line == "\(keyA.base64) 10.8.0.9 fd00:8::9  # laptop\n")
        let back = try AllowList(parsing: line).clients
        #expect(back == [AllowedClient(key: keyA, address: IPv4Address("10.8.0.9"), address6: IPv6Address("fd00:8::9"), comment: "laptop")])
        #expect(back.first?.name == "laptop")
    }

    @Test func appendingAndRemovingKeepEveryOtherByte() throws {
        let original = "# our clients\n\(keyA.base64) 10.8.0.2  # laptop\n\n\(keyB.base64) 10.8.0.3 # phone of Bo\n# end"
        let line = Provisioning.line(key: keyC, address: IPv4Address("10.8.0.4"), address6: nil, name: "desk")
        let added = Provisioning.appending(line, to: original)
        #expect(added == original + "\n" + line)
        #expect(Provisioning.appending(line, to: "") == line)
        #expect(Provisioning.appending(line, to: "x\n") == "x\n" + line)
        let (removed, gone) = try Provisioning.removing(name: "phone", from: added, file: "clients")
        #expect(gone.map(\.key) == [keyB])
        #expect(removed == "# our clients\n\(keyA.base64) 10.8.0.2  # laptop\n\n# end\n" + line)
        let (again, _) = try Provisioning.removing(name: "desk", from: removed, file: "clients")
        #expect(again == "# our clients\n\(keyA.base64) 10.8.0.2  # laptop\n\n# end\n")
        #expect(
            controlMessage { _ = try Provisioning.removing(name: "tablet", from: added, file: "clients") }
                == "remove-client tablet: no client named tablet in clients (names there: laptop, phone, desk)")
    }

    // MARK: - The client's config file

    @Test func theClientConfigNamesTheServerKeyTheEndpointAndTheKeyFile() {
        let file = ClientConfigFile(
            name: "laptop", serverKey: keyA, endpoint: "vpn.example.com:51820", keyFile: "laptop.key",
            address: IPv4Address("10.8.0.2")!, address6: IPv6Address("fd00:8::2"))
        #expect(
            file.text == """
                # tunvpn client config for laptop, written by tunvpn add-client.
                # Tunnel address 10.8.0.2 and fd00:8::2, fixed by the server's allow-list.
                # Run: tunvpn client --config laptop.toml
                peer-public-key = "\(keyA.base64)"
                endpoint = "vpn.example.com:51820"
                key = "laptop.key"

                """)
        let inline = ClientConfigFile(
            name: "phone", serverKey: keyA, endpoint: "[2001:db8::7]:51820", keyFile: nil, inlinePrivateKey: keyB.base64,
            psk: keyC.base64, inlinePSK: true, address: IPv4Address("10.8.0.3")!)
        #expect(
            inline.text == """
                # tunvpn client config for phone, written by tunvpn add-client.
                # Tunnel address 10.8.0.3, fixed by the server's allow-list.
                # Run: tunvpn client --config phone.toml
                # WARNING: this file holds a secret key: keep it mode 0600, never share or commit it.
                peer-public-key = "\(keyA.base64)"
                endpoint = "[2001:db8::7]:51820"
                private-key = "\(keyB.base64)"
                preshared-key = "\(keyC.base64)"

                """)
        let withPSKFile = ClientConfigFile(
            name: "a\"b", serverKey: keyA, endpoint: "e:1", keyFile: "a\\b.key", psk: "a.psk", address: IPv4Address("10.8.0.3")!)
        #expect(withPSKFile.text.contains("key = \"a\\\\b.key\"\npsk = \"a.psk\"\n"))
    }

    @Test func theEndpointComesFromTheFlagOrAConcreteListenAddress() throws {
        #expect(try Provisioning.clientEndpoint("vpn.example.com:4000", listen: "[::]:51820") == "vpn.example.com:4000")
        #expect(try Provisioning.clientEndpoint("vpn.example.com", listen: "[::]:51821") == "vpn.example.com:51821")
        #expect(try Provisioning.clientEndpoint("2001:db8::7", listen: "0.0.0.0:51820") == "[2001:db8::7]:51820")
        #expect(try Provisioning.clientEndpoint(nil, listen: "203.0.113.7:51820") == "203.0.113.7:51820")
        #expect(
            controlMessage { _ = try Provisioning.clientEndpoint(nil, listen: "[::]:51820") }
                == "--endpoint missing: the server listens on [::]:51820, which names no address a client can reach; give the server's public name or address, e.g. --endpoint vpn.example.com:51820")
    }

    @Test func genpskPrintsBase64Of32RandomBytesUnclamped() throws {
        struct Fixed: RandomSource {
            func fill(_ buffer: UnsafeMutableRawBufferPointer) { for i in buffer.indices { buffer[i] = 0xff } }
        }
        let text = Provisioning.newPresharedKey(random: Fixed())
        #expect(text == Base64.encode([UInt8](repeating: 0xff, count: 32)))
        #expect(text.count == 44)
        #expect(Provisioning.newPresharedKey() != Provisioning.newPresharedKey())
    }

    // MARK: - The atomic rewrite

    @Test(.needsRoot("chowns a file to another user to check the owner is kept"))
    func theRewriteKeepsTheModeAndOwnerAndLeavesNoTemporaryFile() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.path + "/clients"
        try Provisioning.replaceAtomically(path, with: "first\n")
        var st = stat()
        #expect(stat(path, &st) == 0 && st.st_mode & 0o7777 == 0o600)
        #expect(chmod(path, 0o640) == 0 && chown(path, 65534, 65534) == 0)
        try Provisioning.replaceAtomically(path, with: "second\n")
        #expect(stat(path, &st) == 0 && st.st_mode & 0o7777 == 0o640 && st.st_uid == 65534 && st.st_gid == 65534)
        #expect(String(decoding: FileManager.default.contents(atPath: path) ?? Data(), as: UTF8.self) == "second\n")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["clients"])
    }
}

@Suite struct QRCodeTests {
    @Test func aShortTextIsAVersion1SymbolOf21Modules() throws {
        // 11 bytes fit version 1 at level L in 8-bit mode (17 bytes, ISO/IEC 18004 table 7).
        let code = try QRCode(bytes: Array("hello world".utf8))
        #expect(code.version == 1 && code.width == 21 && code.modules.count == 441)
        // The finder patterns: dark corners, with the light ring one module in.
        for (r, c) in [(0, 0), (0, 20), (20, 0), (6, 6), (3, 3)] { #expect(code[r, c]) }
        for (r, c) in [(1, 1), (5, 5), (7, 7), (1, 19)] { #expect(!code[r, c]) }
        // 18 bytes need version 2 (25 modules).
        #expect(try QRCode(bytes: Array(repeating: 0x41, count: 18)).width == 25)
        #expect(
            controlMessage { _ = try QRCode(bytes: Array(repeating: 0x41, count: 3000)) }
                == "the QR code cannot hold 3000 bytes (at most 2953); leave out --qr and copy the file instead")
    }

    @Test func theRenderingHasAQuietZoneAndOnlyHalfBlocks() throws {
        let code = try QRCode(bytes: Array("hello world".utf8))
        let lines = code.terminalText.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(Array.init)
        let side = 21 + 2 * QRCode.quietZone
        #expect(lines.count == (side + 1) / 2)
        for line in lines {
            #expect(line.count == side)
            #expect(line.allSatisfy { "█▀▄ ".contains($0) })
            #expect(line.prefix(4).allSatisfy { $0 != " " } && line.suffix(4).allSatisfy { $0 != " " })
        }
        // Rows 0 to 3 are light: two full lines of █; the odd last row is light over the terminal's dark.
        #expect(lines[0].allSatisfy { $0 == "█" } && lines[1].allSatisfy { $0 == "█" })
        #expect(lines[lines.count - 1].allSatisfy { $0 == "▀" })
        #expect(QRCodeTests.modules(fromTerminalText: code.terminalText) == code.modules)
    }

    /// Decodes the terminal rendering with zbarimg (Debian's zbar-tools, in .ci/packages): the text is read
    /// back into modules, drawn as a PGM image (4 pixels a module) and scanned.
    @Test func zbarimgReadsTheRenderingBackToTheData() throws {
        let text = ClientConfigFile(
            name: "phone", serverKey: try PublicKey(base64: "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="),
            endpoint: "vpn.example.com:51820", keyFile: nil,
            inlinePrivateKey: "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=", address: IPv4Address("10.8.0.3")!
        ).text
        let code = try QRCode(bytes: Array(text.utf8))
        let modules = QRCodeTests.modules(fromTerminalText: code.terminalText)
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let scale = 4
        let side = code.width + 2 * QRCode.quietZone
        var pixels = [UInt8]()
        for y in 0..<(side * scale) {
            for x in 0..<(side * scale) {
                let (r, c) = (y / scale - QRCode.quietZone, x / scale - QRCode.quietZone)
                let dark = r >= 0 && r < code.width && c >= 0 && c < code.width && modules[r * code.width + c]
                pixels.append(dark ? 0 : 255)
            }
        }
        let image = Data(Array("P5 \(side * scale) \(side * scale) 255\n".utf8) + pixels)
        try image.write(to: URL(fileURLWithPath: dir.path + "/qr.pgm"))
        let result = try runCommand("/usr/bin/zbarimg", ["--raw", "-q", dir.path + "/qr.pgm"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout == text + "\n")  // zbarimg ends each symbol's data with a newline
    }

    /// The modules a terminal rendering shows, quiet zone removed (light drawn, dark blank).
    static func modules(fromTerminalText text: String) -> [Bool] {
        let lines = text.split(separator: "\n").map(Array.init)
        let side = lines.first?.count ?? 0
        let q = QRCode.quietZone
        let width = side - 2 * q
        var out: [Bool] = []
        for row in q..<(q + width) {
            let char = lines[row / 2]
            for column in q..<(q + width) {
                let light = row % 2 == 0 ? "█▀".contains(char[column]) : "█▄".contains(char[column])
                out.append(!light)
            }
        }
        return out
    }
}
