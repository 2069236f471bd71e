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

    /// The first of a seeded run of keys whose public key does not look clamped (15 in 16 do not).
    static func keyWithUnclampedPublicKey(_ random: inout SeededRandom) -> PrivateKey {
        while true {
            var bytes = (0..<4).flatMap { _ in withUnsafeBytes(of: random.next().littleEndian) { Array($0) } }
            bytes[0] &= 248
            bytes[31] = (bytes[31] & 127) | 64
            let key = PrivateKey(secret: SecretBytes(copying: bytes))
            if !PrivateKey(secret: SecretBytes(copying: key.publicKey.bytes)).isClamped { return key }
        }
    }

    @Test func aPublicKeyGivenAsAPrivateKeyIsRefusedNamingWhatToUseInstead() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let p = dir.path
        var random = SeededRandom(seed: 3)
        let key = Self.keyWithUnclampedPublicKey(&random)
        try write(key.publicKey.base64 + "\n", p + "/server.pub", mode: 0o600)
        #expect(
            loadError(p + "/server.pub")
                == "\(p)/server.pub: this looks like a public key: private keys made by `tunvpn keygen` or `wg genkey` are clamped (RFC 7748) and this one is not; give the private key file (e.g. \(p)/server.key), or make one with `tunvpn keygen`"
        )
        // The private key itself loads.
        try write(key.base64 + "\n", p + "/server.key", mode: 0o600)
        #expect(try KeyFiles.loadPrivateKey(p + "/server.key").publicKey == key.publicKey)
    }

    @Test func aPrivateKeyGivenAsAPublicKeyIsRefusedAndEveryRealPublicKeyLoads() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let p = dir.path
        // RFC 7748 section 6.1's Bob's private key, clamped as keygen would have it: not a prime-order point.
        var bob = try Hex.bytes("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
        bob[0] &= 248
        bob[31] = (bob[31] & 127) | 64
        try write(Base64.encode(bob) + "\n", p + "/client.key", mode: 0o600)
        var message = ""
        do { _ = try KeyFiles.loadPublicKey(p + "/client.key") } catch { message = error.description }
        #expect(
            message
                == "\(p)/client.key: this looks like a private key, not a public one (it is clamped as `tunvpn keygen` makes private keys, and no private key derives it); give the peer's public key file (e.g. \(p)/client.pub), made with `tunvpn pubkey` or `wg pubkey`, and keep this file secret"
        )
        #expect(!message.contains(Base64.encode(bob).prefix(20)), "no key material in the error")
        // Real public keys load, including those that happen to look clamped.
        var random = SeededRandom(seed: 4)
        for i in 0..<64 {
            var bytes = (0..<4).flatMap { _ in withUnsafeBytes(of: random.next().littleEndian) { Array($0) } }
            bytes[0] &= 248
            bytes[31] = (bytes[31] & 127) | 64
            let pub = PrivateKey(secret: SecretBytes(copying: bytes)).publicKey
            try write(pub.base64 + "\n", p + "/\(i).pub", mode: 0o644)
            #expect(try KeyFiles.loadPublicKey(p + "/\(i).pub") == pub)
        }
    }

    @Test func aPskFileIsCalledAPskFile() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let p = dir.path
        #expect(throws: KeyFileError(path: p + "/nosuch.psk", problem: "psk file not found")) {
            try KeyFiles.loadPresharedKey(p + "/nosuch.psk")
        }
        try write(Base64.encode([UInt8](repeating: 7, count: 32)), p + "/open.psk", mode: 0o644)
        #expect(throws: KeyFileError(path: p + "/open.psk", problem: "psk is accessible by group or others (mode 0644); run `chmod 600 \(p)/open.psk`")) {
            try KeyFiles.loadPresharedKey(p + "/open.psk")
        }
        // Any 32 bytes are a psk: it is not clamped, and loads.
        try write(Base64.encode([UInt8](repeating: 7, count: 32)), p + "/s.psk", mode: 0o600)
        _ = try KeyFiles.loadPresharedKey(p + "/s.psk")
    }
}

/// Files tunvpn trusts must be owned by root or the user running it and not be writable by group or others
/// (keys and psk: not accessible by them at all). Each refusal names the file and the command that fixes it.
@Suite struct FileTrustTests {
    func write(_ text: String, _ path: String, mode: Int) throws {
        try text.write(toFile: path, atomically: false, encoding: .utf8)
        chmod(path, mode_t(mode))
    }

    func configurationError(_ path: String) -> String? {
        do {
            _ = try KeyFiles.readConfigurationFile(path, what: "allow-list")
            return nil
        } catch {
            return error.description
        }
    }

    @Test func aConfigurationFileWritableByGroupOrOthersIsRefusedWithTheChmodThatFixesIt() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let p = dir.path
        try write("# nobody yet\n", p + "/clients", mode: 0o644)
        #expect(configurationError(p + "/clients") == nil, "0644: readable by all, writable by the owner only")
        try write("# nobody yet\n", p + "/shared", mode: 0o664)
        #expect(
            configurationError(p + "/shared")
                == "\(p)/shared: is writable by group or others (mode 0664), so they could change it; run `chmod 644 \(p)/shared`")
        try write("# nobody yet\n", p + "/open", mode: 0o606)
        #expect(
            configurationError(p + "/open")
                == "\(p)/open: is writable by group or others (mode 0606), so they could change it; run `chmod 604 \(p)/open`")
        try write("# nobody yet\n", p + "/private", mode: 0o600)
        #expect(configurationError(p + "/private") == nil)
    }

    @Test func aPublicKeyFileWritableByOthersIsRefused() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try write(PrivateKey().publicKey.base64 + "\n", dir.path + "/server.pub", mode: 0o666)
        #expect(throws: KeyFileError(
            path: dir.path + "/server.pub",
            problem: "is writable by group or others (mode 0666), so they could change it; run `chmod 644 \(dir.path)/server.pub`")
        ) {
            try KeyFiles.loadPublicKey(dir.path + "/server.pub")
        }
    }

    @Test(.needsRoot("needs root: gives files to another user"))
    func filesOwnedByAnotherUserAreRefusedWithTheChownThatFixesIt() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let p = dir.path
        try write(PrivateKey().base64 + "\n", p + "/server.key", mode: 0o600)
        try write("# nobody yet\n", p + "/clients", mode: 0o644)
        try write(PrivateKey().publicKey.base64 + "\n", p + "/server.pub", mode: 0o644)
        for file in ["server.key", "clients", "server.pub"] { #expect(chown(p + "/" + file, 65534, 65534) == 0) }
        let name = try #require(getpwuid(65534)).pointee.pw_name.map { String(cString: $0) } ?? "uid 65534"
        func expected(_ file: String) -> KeyFileError {
            KeyFileError(path: p + "/" + file, problem: "owned by \(name) (uid 65534), not by root; run `chown root \(p)/\(file)`")
        }
        #expect(throws: expected("server.key")) { try KeyFiles.loadPrivateKey(p + "/server.key") }
        #expect(throws: expected("clients")) { try KeyFiles.readConfigurationFile(p + "/clients", what: "allow-list") }
        #expect(throws: expected("server.pub")) { try KeyFiles.loadPublicKey(p + "/server.pub") }
        // Given back to root, all three load.
        for file in ["server.key", "clients", "server.pub"] { #expect(chown(p + "/" + file, 0, 0) == 0) }
        _ = try KeyFiles.loadPrivateKey(p + "/server.key")
        _ = try KeyFiles.readConfigurationFile(p + "/clients", what: "allow-list")
        _ = try KeyFiles.loadPublicKey(p + "/server.pub")
    }

    @Test(.needsRoot("needs root: gives files to another user"))
    func aKeyOwnedByAnotherUserIsRefusedBeforeItsModeOrContentsAreLookedAt() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.path + "/psk"
        try write("not even a key", path, mode: 0o644)
        #expect(chown(path, 65534, 65534) == 0)
        var message = ""
        do { _ = try KeyFiles.loadPrivateKey(path) } catch { message = error.description }
        #expect(message.hasPrefix("\(path): owned by "), "\(message)")
        #expect(message.hasSuffix("run `chown root \(path)`"))
    }

    @Test func aKeyDecodesFromTheFileBytesWithoutAString() throws {
        let key = PrivateKey()
        let text = Array((" " + key.base64 + "\n").utf8)
        let decoded = try text.withUnsafeBytes { b in try PrivateKey(base64UTF8: b) }
        #expect(decoded.publicKey == key.publicKey)
        let bad = Array("!!!!".utf8)
        #expect(throws: KeyDecodingError.notBase64) { try bad.withUnsafeBytes { b in _ = try PrivateKey(base64UTF8: b) } }
    }
}
