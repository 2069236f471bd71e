// The AEAD providers against each other: OpenSSL's libcrypto must produce libsodium's exact frames for
// every suite (keys, nonces, associated data and lengths from a seeded generator, lengths 0–65535 with
// the block and size boundaries), in place and not, must open libsodium's frames and refuse tampered
// ones exactly as libsodium does, and must stay correct when threads share one session's cipher.

@testable import Crypto
import TestSupport
import Testing

@Suite struct AEADProviderTests {
    /// Suites both providers run here (every suite libsodium runs: OpenSSL runs ChaCha20-Poly1305 and
    /// AES-256-GCM everywhere).
    static var suites: [String] { CipherSuites.available.map { $0.name } }

    /// The self-test's boundary lengths, then 24 more from the generator across 0...65535.
    static func lengths(_ random: inout SeededRandom) -> [Int] {
        AEADProviders.testLengths + [65534, 65519, 65520] + (0..<24).map { _ in Int.random(in: 0...65535, using: &random) }
    }

    static func bytes(_ count: Int, _ random: inout SeededRandom) -> [UInt8] {
        (0..<count).map { _ in UInt8.random(in: 0...255, using: &random) }
    }

    /// Seals `plaintext` with `cipher`, in place or from a separate buffer.
    static func seal(_ cipher: SessionCipher, _ plaintext: [UInt8], counter: UInt64, ad: [UInt8], inPlace: Bool) -> [UInt8] {
        var out = (inPlace ? plaintext : [UInt8](repeating: 0xee, count: plaintext.count)) + [UInt8](repeating: 0, count: 16)
        let n = out.withUnsafeMutableBytes { o in
            ad.withUnsafeBytes { a in
                plaintext.withUnsafeBytes { p in
                    inPlace
                        ? cipher.seal(o.baseAddress!, length: plaintext.count, counter: counter, authenticating: a)
                        : cipher.seal(
                            from: p.baseAddress ?? UnsafeRawPointer(o.baseAddress!), into: o.baseAddress!, length: plaintext.count,
                            counter: counter, authenticating: a)
                }
            }
        }
        return Array(out.prefix(n))
    }

    /// Opens `sealed` with `cipher`, in place or into a separate buffer.
    static func open(_ cipher: SessionCipher, _ sealed: [UInt8], counter: UInt64, ad: [UInt8], inPlace: Bool) -> [UInt8]? {
        var buffer = sealed
        var out = [UInt8](repeating: 0xee, count: max(sealed.count, 1))
        let n = buffer.withUnsafeMutableBytes { b in
            out.withUnsafeMutableBytes { o in
                ad.withUnsafeBytes { a in
                    inPlace
                        ? cipher.open(b.baseAddress!, length: sealed.count, counter: counter, authenticating: a)
                        : cipher.open(from: b.baseAddress!, into: o.baseAddress!, length: sealed.count, counter: counter, authenticating: a)
                }
            }
        }
        guard let n else { return nil }
        return inPlace ? Array(buffer.prefix(n)) : Array(out.prefix(n))
    }

    @Test func openSSLIsPresentAndPassesItsSelfTest() throws {
        #expect(AEADProvider.openssl.runs(ChaCha20Poly1305.self))
        #expect(AEADProvider.openssl.runs(XChaCha20Poly1305.self))
        #expect(AEADProviders.selfTest(.openssl) == nil)
        let auto = try AEADProviders.select(.auto)
        #expect(auto.provider == .openssl)
        #expect(auto.summary.contains("self-test against libsodium passed"))
        #expect(try AEADProviders.select(.openssl).provider == .openssl)
        #expect(try AEADProviders.select(.libsodium).provider == .libsodium)
    }

    /// `SessionCipher` falls back to libsodium when OpenSSL cannot seal (no context), which would hide a
    /// broken OpenSSL path from the tests above; so OpenSSL's own seal and open are checked here directly.
    @Test(arguments: [ChaCha20Poly1305.name, AES256GCM.name])
    func openSSLItselfSealsAndOpensWithoutFallingBack(suiteName: String) throws {
        let suite = try #require(CipherSuites.named(suiteName))
        let key = SecretBytes(copying: (0..<32).map { UInt8($0 &* 3) })
        let evp = try #require(OpenSSLKeyedAEAD(suite: suite, key: key))
        let sodium = SessionCipher(suite: suite, key: key, provider: .libsodium)
        let ad = [UInt8](repeating: 9, count: 16)
        for length in AEADProviders.testLengths {
            let plaintext = (0..<length).map { UInt8(truncatingIfNeeded: $0) }
            var buffer = plaintext + [UInt8](repeating: 0, count: 16)
            var nonce = [UInt8](repeating: 0, count: suite.nonceLength)
            nonce.withUnsafeMutableBytes { suite.writeNonce(counter: 42, into: $0.baseAddress!) }
            let sealed = buffer.withUnsafeMutableBytes { b in
                nonce.withUnsafeBytes { n in
                    ad.withUnsafeBytes { a in evp.seal(nonce: n.baseAddress!, from: b.baseAddress!, into: b.baseAddress!, length: length, ad: a) }
                }
            }
            #expect(sealed == length + 16, "\(suiteName) \(length)")
            #expect(buffer == Self.seal(sodium, plaintext, counter: 42, ad: ad, inPlace: true), "\(suiteName) \(length)")
            let opened = buffer.withUnsafeMutableBytes { b in
                nonce.withUnsafeBytes { n in
                    ad.withUnsafeBytes { a in evp.open(nonce: n.baseAddress!, from: b.baseAddress!, into: b.baseAddress!, length: length + 16, ad: a) }
                }
            }
            #expect(opened == length && Array(buffer.prefix(length)) == plaintext, "\(suiteName) \(length)")
        }
    }

    @Test(arguments: suites)
    func aSessionCipherRunsTheProviderItWasGiven(suiteName: String) throws {
        let suite = try #require(CipherSuites.named(suiteName))
        let key = SecretBytes(copying: [UInt8](repeating: 7, count: 32))
        #expect(SessionCipher(suite: suite, key: key, provider: .openssl).provider == .openssl)
        #expect(SessionCipher(suite: suite, key: key, provider: .libsodium).provider == .libsodium)
    }

    @Test(arguments: suites)
    func bothProvidersSealTheSameBytesAndOpenEachOthersFrames(suiteName: String) throws {
        let suite = try #require(CipherSuites.named(suiteName))
        var random = SeededRandom(seed: 0x5eed_0000 &+ UInt64(suite.wireID))
        for length in Self.lengths(&random) {
            let key = SecretBytes(copying: Self.bytes(suite.keyLength, &random))
            let sodium = SessionCipher(suite: suite, key: key, provider: .libsodium)
            let openssl = SessionCipher(suite: suite, key: key, provider: .openssl)
            let counter = UInt64.random(in: 0...UInt64.max - 1, using: &random)
            let ad = Self.bytes([0, 1, 16, 32][Int.random(in: 0...3, using: &random)], &random)
            let plaintext = Self.bytes(length, &random)
            let reference = Self.seal(sodium, plaintext, counter: counter, ad: ad, inPlace: true)
            #expect(reference.count == length + suite.tagLength)
            for inPlace in [true, false] {
                let what = "\(suiteName), \(length) bytes, \(inPlace ? "in place" : "not in place")"
                #expect(Self.seal(openssl, plaintext, counter: counter, ad: ad, inPlace: inPlace) == reference, "seal: \(what)")
                #expect(Self.seal(sodium, plaintext, counter: counter, ad: ad, inPlace: inPlace) == reference, "libsodium seal: \(what)")
                #expect(Self.open(openssl, reference, counter: counter, ad: ad, inPlace: inPlace) == plaintext, "open: \(what)")
                #expect(Self.open(sodium, reference, counter: counter, ad: ad, inPlace: inPlace) == plaintext, "libsodium open: \(what)")
            }
        }
    }

    @Test(arguments: suites)
    func bothProvidersRefuseTamperedFrames(suiteName: String) throws {
        let suite = try #require(CipherSuites.named(suiteName))
        var random = SeededRandom(seed: 0x7a3b_0000 &+ UInt64(suite.wireID))
        for length in Self.lengths(&random) {
            let key = SecretBytes(copying: Self.bytes(suite.keyLength, &random))
            let ciphers = [SessionCipher(suite: suite, key: key, provider: .libsodium), SessionCipher(suite: suite, key: key, provider: .openssl)]
            let counter = UInt64.random(in: 0...UInt64.max - 1, using: &random)
            let ad = Self.bytes(16, &random)
            let sealed = Self.seal(ciphers[0], Self.bytes(length, &random), counter: counter, ad: ad, inPlace: true)
            var tag = sealed
            let tagBit = Int.random(in: (length * 8)..<(sealed.count * 8), using: &random)
            tag[tagBit / 8] ^= 1 << UInt8(tagBit % 8)
            var text = sealed
            if length > 0 {
                let bit = Int.random(in: 0..<(length * 8), using: &random)
                text[bit / 8] ^= 1 << UInt8(bit % 8)
            }
            var badAD = ad
            badAD[Int.random(in: 0..<16, using: &random)] ^= 0x01
            for cipher in ciphers {
                for inPlace in [true, false] {
                    let what = "\(suiteName) via \(cipher.provider), \(length) bytes, \(inPlace ? "in place" : "not in place")"
                    #expect(Self.open(cipher, tag, counter: counter, ad: ad, inPlace: inPlace) == nil, "tag bit \(tagBit): \(what)")
                    if length > 0 { #expect(Self.open(cipher, text, counter: counter, ad: ad, inPlace: inPlace) == nil, "text: \(what)") }
                    #expect(Self.open(cipher, sealed, counter: counter, ad: badAD, inPlace: inPlace) == nil, "ad: \(what)")
                    #expect(Self.open(cipher, sealed, counter: counter &+ 1, ad: ad, inPlace: inPlace) == nil, "counter: \(what)")
                    #expect(Self.open(cipher, Array(sealed.prefix(15)), counter: counter, ad: ad, inPlace: inPlace) == nil, "short: \(what)")
                }
            }
        }
    }

    /// Threads sharing one OpenSSL-backed cipher each borrow their own EVP context: every frame they seal
    /// at once must still be libsodium's.
    @Test(arguments: suites)
    func threadsSharingOneOpenSSLCipherSealLibsodiumsBytes(suiteName: String) async throws {
        let suite = try #require(CipherSuites.named(suiteName))
        let key = SecretBytes(copying: (0..<32).map { UInt8($0) })
        let shared = SessionCipher(suite: suite, key: key, provider: .openssl)
        let sodium = SessionCipher(suite: suite, key: key, provider: .libsodium)
        let ad = [UInt8](repeating: 4, count: 16)
        let mismatches = await withTaskGroup(of: Int.self) { group in
            for worker in 0..<4 {
                group.addTask {
                    var bad = 0
                    for i in 0..<300 {
                        let counter = UInt64(worker * 1000 + i)
                        let plaintext = [UInt8](repeating: UInt8(truncatingIfNeeded: i), count: 64 + (i * 37) % 1400)
                        let sealed = Self.seal(shared, plaintext, counter: counter, ad: ad, inPlace: true)
                        if sealed != Self.seal(sodium, plaintext, counter: counter, ad: ad, inPlace: true) { bad += 1 }
                        if Self.open(shared, sealed, counter: counter, ad: ad, inPlace: i % 2 == 0) != plaintext { bad += 1 }
                    }
                    return bad
                }
            }
            return await group.reduce(0, +)
        }
        #expect(mismatches == 0)
    }
}
