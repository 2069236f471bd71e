// Loading key files: every way a key file can be wrong gives one line naming the file and the problem.

import Crypto
import Foundation
import Platform
import Testing
import TestSupport

@Suite struct KeyFileTests {
    func write(_ text: String, _ path: String, mode: Int) throws {
        try text.write(toFile: path, atomically: false, encoding: .utf8)
        chmod(path, mode_t(mode))
    }

    func loadError(_ path: String) -> String? {
        do {
            _ = try KeyFiles.loadPrivateKey(path)
            return nil
        } catch {
            return error.description
        }
    }

    @Test func aValidPrivateKeyLoads() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let key = PrivateKey()
        try write(key.base64 + "\n", dir.path + "/k.key", mode: 0o600)
        #expect(try KeyFiles.loadPrivateKey(dir.path + "/k.key").publicKey == key.publicKey)
    }

    @Test func missingUnreadableBadAndOpenKeyFilesEachGiveTheirOneLineError() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let p = dir.path
        #expect(loadError(p + "/missing.key") == "\(p)/missing.key: private key file not found")
        try write("this is not a key\n", p + "/text.key", mode: 0o600)
        #expect(loadError(p + "/text.key") == "\(p)/text.key: private key is not base64 (expected 44 characters, as `tunvpn keygen` or `wg genkey` write)")
        try write(Base64.encode([UInt8](repeating: 1, count: 16)), p + "/short.key", mode: 0o600)
        #expect(loadError(p + "/short.key") == "\(p)/short.key: private key decodes to 16 bytes, expected 32")
        try write(PrivateKey().base64, p + "/open.key", mode: 0o644)
        #expect(loadError(p + "/open.key") == "\(p)/open.key: private key is accessible by group or others (mode 0644); run `chmod 600 \(p)/open.key`")
        try write(PrivateKey().base64, p + "/group.key", mode: 0o640)
        #expect(loadError(p + "/group.key")?.contains("mode 0640") == true)
        try FileManager.default.createDirectory(atPath: p + "/dir.key", withIntermediateDirectories: false)
        #expect(loadError(p + "/dir.key") == "\(p)/dir.key: is not a regular file")
        // No error ever echoes key material.
        let secret = PrivateKey().base64
        try write(secret + "x", p + "/long.key", mode: 0o600)
        let message = try #require(loadError(p + "/long.key"))
        #expect(!message.contains(secret.prefix(20)))
    }

    @Test func publicKeyFilesNeedNoSpecialModeButMustHoldAKey() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let key = PrivateKey().publicKey
        try write(key.base64 + "\n", dir.path + "/s.pub", mode: 0o644)
        #expect(try KeyFiles.loadPublicKey(dir.path + "/s.pub") == key)
        try write("no!pe", dir.path + "/bad.pub", mode: 0o644)
        #expect(throws: KeyFileError(path: dir.path + "/bad.pub", problem: "public key is not base64 (expected 44 characters, as `tunvpn keygen` or `wg genkey` write)")) {
            try KeyFiles.loadPublicKey(dir.path + "/bad.pub")
        }
    }
}
