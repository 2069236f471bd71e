// `tunvpn keygen` and `tunvpn pubkey` run as a user would, output and errors asserted verbatim.

import Crypto
import Foundation
import Testing
import TestSupport

@Suite struct KeyCommandTests {
    @Test func keygenWritesAPrivateKeyWithMode0600AndAMatchingPublicKey() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let r = try runCommand(TestBinaries.tunvpn, ["keygen", "--out", dir.path, "--name", "server"])
        #expect(r.status == 0, "\(r.stderr)")
        let attributes = try FileManager.default.attributesOfItem(atPath: dir.path + "/server.key")
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        let privateText = try String(contentsOfFile: dir.path + "/server.key", encoding: .utf8)
        let publicText = try String(contentsOfFile: dir.path + "/server.pub", encoding: .utf8)
        #expect(privateText.count == 45 && publicText.count == 45)
        let key = try PrivateKey(base64: privateText)
        #expect(key.publicKey.base64 + "\n" == publicText)
        #expect(r.stdout == "wrote \(dir.path)/server.key (private, mode 0600) and \(dir.path)/server.pub (public): \(key.publicKey.base64)\n")
        // The private key never appears on stdout or stderr.
        #expect(!r.stdout.contains(key.base64) && !r.stderr.contains(key.base64))
    }

    @Test func keygenRefusesToOverwriteAnExistingKeyUnlessForced() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try runCommand(TestBinaries.tunvpn, ["keygen", "--out", dir.path])
        let before = try String(contentsOfFile: dir.path + "/tunvpn.key", encoding: .utf8)
        let refused = try runCommand(TestBinaries.tunvpn, ["keygen", "--out", dir.path])
        #expect(refused.status == 1)
        #expect(refused.stderr == "tunvpn: error: \(dir.path)/tunvpn.key: already exists; refusing to overwrite a key (use --force to replace it)\n")
        #expect(try String(contentsOfFile: dir.path + "/tunvpn.key", encoding: .utf8) == before)
        // --force replaces it, still with mode 0600 even though the old file was made world-readable.
        chmod(dir.path + "/tunvpn.key", 0o644)
        let forced = try runCommand(TestBinaries.tunvpn, ["keygen", "--out", dir.path, "--force"])
        #expect(forced.status == 0)
        #expect(try String(contentsOfFile: dir.path + "/tunvpn.key", encoding: .utf8) != before)
        let attributes = try FileManager.default.attributesOfItem(atPath: dir.path + "/tunvpn.key")
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
    }

    @Test func pubkeyPrintsThePublicKeyOfAKeyOnStdinAsWgPubkeyDoes() throws {
        // RFC 7748 §6.1's Alice: a published private/public pair.
        let alice = Base64.encode(try Hex.bytes("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"))
        let alicePublic = Base64.encode(try Hex.bytes("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"))
        let r = try runCommand(TestBinaries.tunvpn, ["pubkey"], stdin: alice + "\n")
        #expect(r.status == 0)
        #expect(r.stdout == alicePublic + "\n")
    }

    @Test func pubkeyRefusesTextThatIsNotAKey() throws {
        let r = try runCommand(TestBinaries.tunvpn, ["pubkey"], stdin: "hello\n")
        #expect(r.status == 1)
        #expect(r.stderr == "tunvpn: error: stdin: private key is not base64 (expected 44 characters, as `tunvpn keygen` or `wg genkey` write)\n")
        let short = try runCommand(TestBinaries.tunvpn, ["pubkey"], stdin: "AAAA\n")
        #expect(short.stderr == "tunvpn: error: stdin: private key decodes to 3 bytes, expected 32\n")
    }
}
