// Every cipher suite against its published vector, plus the tamper property: flipping any single bit
// of ciphertext, tag or associated data makes `open` fail.

import Crypto
import TestSupport
import Testing

@Suite struct CipherSuiteTests {
    @Test func thereIsOnePublishedVectorPerSuite() throws {
        let names = try PrimitiveVectors.load().aead.map { $0["suite"] ?? "" }
        #expect(names.sorted() == CipherSuites.all.map { $0.name }.sorted(), "one published vector per suite")
    }

    /// Suites that run on every machine; AES-256-GCM has its own test, reported as skipped without AES-NI.
    @Test(arguments: CipherSuites.all.filter { $0.name != AES256GCM.name }.map { $0.name })
    func everyPortableSuiteReproducesItsPublishedVector(suiteName: String) throws {
        try Self.checkPublishedVector(suiteName)
    }

    @Test(.enabled(if: AES256GCM.isAvailable, "AES-256-GCM needs AES-NI, which this machine lacks"))
    func aes256gcmReproducesItsPublishedVector() throws {
        try Self.checkPublishedVector(AES256GCM.name)
    }

    static func checkPublishedVector(_ suiteName: String) throws {
        let vectors = try PrimitiveVectors.load().aead.filter { $0["suite"] == suiteName }
        #expect(vectors.count == 1, "one published vector for \(suiteName)")
        for v in vectors {
            let name = try #require(v["suite"])
            let suite = try #require(CipherSuites.named(name), "unknown suite \(name)")
            let available = suite.isAvailable
            try #require(available, "\(name) is not available here")
            let key = try Hex.bytes(v["key"] ?? "")
            let nonce = try Hex.bytes(v["nonce"] ?? "")
            let ad = try Hex.bytes(v["aad"] ?? "")
            let plaintext = try Hex.bytes(v["plaintext"] ?? "")
            let expected = try Hex.bytes((v["ciphertext"] ?? "") + (v["tag"] ?? ""))
            #expect(nonce.count == suite.nonceLength && key.count == suite.keyLength)
            var buffer = plaintext + [UInt8](repeating: 0, count: suite.tagLength)
            let sealed = buffer.withUnsafeMutableBytes { b in
                ad.withUnsafeBytes { a in
                    suite.seal(
                        key: key.withUnsafeBytes { $0.baseAddress! }, nonce: nonce.withUnsafeBytes { $0.baseAddress! },
                        buffer: b.baseAddress!, length: plaintext.count, authenticating: a)
                }
            }
            #expect(sealed == expected.count)
            #expect(Array(buffer.prefix(sealed)) == expected, "\(name): \(v["reference"] ?? "")")
            let opened = buffer.withUnsafeMutableBytes { b in
                ad.withUnsafeBytes { a in
                    suite.open(
                        key: key.withUnsafeBytes { $0.baseAddress! }, nonce: nonce.withUnsafeBytes { $0.baseAddress! },
                        buffer: b.baseAddress!, length: sealed, authenticating: a)
                }
            }
            #expect(opened == plaintext.count)
            #expect(Array(buffer.prefix(plaintext.count)) == plaintext)
        }
    }

    static func seal(_ cipher: SessionCipher, _ plaintext: [UInt8], counter: UInt64, ad: [UInt8]) -> [UInt8] {
        var buffer = plaintext + [UInt8](repeating: 0, count: cipher.suite.tagLength)
        let n = buffer.withUnsafeMutableBytes { b in
            ad.withUnsafeBytes { cipher.seal(b.baseAddress!, length: plaintext.count, counter: counter, authenticating: $0) }
        }
        return Array(buffer.prefix(n))
    }

    static func open(_ cipher: SessionCipher, _ sealed: [UInt8], counter: UInt64, ad: [UInt8]) -> [UInt8]? {
        var buffer = sealed
        let n = buffer.withUnsafeMutableBytes { b in
            ad.withUnsafeBytes { cipher.open(b.baseAddress!, length: sealed.count, counter: counter, authenticating: $0) }
        }
        return n.map { Array(buffer.prefix($0)) }
    }

    @Test(arguments: CipherSuites.available.map { $0.name })
    func flippingAnySingleBitOfCiphertextTagOrAssociatedDataMakesOpenFail(suiteName: String) throws {
        let suite = try #require(CipherSuites.named(suiteName))
        let cipher = SessionCipher(suite: suite, key: SecretBytes(copying: [UInt8](repeating: 0x42, count: 32)))
        let plaintext = Array("an IPv4 packet with a marker in it".utf8)
        let ad: [UInt8] = [4, 0, 0, 0, 1, 2, 3, 4, 9, 0, 0, 0, 0, 0, 0, 0]
        let sealed = Self.seal(cipher, plaintext, counter: 9, ad: ad)
        #expect(sealed.count == plaintext.count + suite.tagLength)
        #expect(Self.open(cipher, sealed, counter: 9, ad: ad) == plaintext)
        for bit in 0..<(sealed.count * 8) {
            var tampered = sealed
            tampered[bit / 8] ^= 1 << UInt8(bit % 8)
            #expect(Self.open(cipher, tampered, counter: 9, ad: ad) == nil, "\(suiteName): bit \(bit) of ciphertext/tag")
        }
        for bit in 0..<(ad.count * 8) {
            var tamperedAD = ad
            tamperedAD[bit / 8] ^= 1 << UInt8(bit % 8)
            #expect(Self.open(cipher, sealed, counter: 9, ad: tamperedAD) == nil, "\(suiteName): bit \(bit) of AD")
        }
        #expect(Self.open(cipher, sealed, counter: 10, ad: ad) == nil, "another counter is another nonce")
        #expect(Self.open(cipher, Array(sealed.prefix(suite.tagLength - 1)), counter: 9, ad: ad) == nil)
    }

    @Test(arguments: CipherSuites.available.map { $0.name })
    func aSessionCipherSealsExactlyAsTheSuiteDoesWithTheCounterNonce(suiteName: String) throws {
        // SessionCipher may take a faster route (XChaCha's subkey derived once); the bytes must not change.
        let suite = try #require(CipherSuites.named(suiteName))
        let key = [UInt8](repeating: 0x5a, count: 32)
        let cipher = SessionCipher(suite: suite, key: SecretBytes(copying: key))
        let ad: [UInt8] = [4, 0, 0, 0, 9, 9, 9, 9]
        for counter: UInt64 in [0, 1, 77, 1 << 40, UInt64.max - 1] {
            let plaintext = (0..<(Int(counter % 300) + 1)).map { UInt8(truncatingIfNeeded: $0) }
            var nonce = [UInt8](repeating: 0, count: suite.nonceLength)
            nonce.withUnsafeMutableBytes { suite.writeNonce(counter: counter, into: $0.baseAddress!) }
            var reference = plaintext + [UInt8](repeating: 0, count: suite.tagLength)
            let n = reference.withUnsafeMutableBytes { b in
                ad.withUnsafeBytes { a in
                    suite.seal(key: key.withUnsafeBytes { $0.baseAddress! }, nonce: nonce.withUnsafeBytes { $0.baseAddress! },
                        buffer: b.baseAddress!, length: plaintext.count, authenticating: a)
                }
            }
            #expect(Self.seal(cipher, plaintext, counter: counter, ad: ad) == Array(reference.prefix(n)), "counter \(counter)")
        }
    }

    @Test func theNonceCarriesTheCounterLittleEndianWhereEachSuiteDocumentsIt() {
        var nonce = [UInt8](repeating: 0xff, count: 24)
        nonce.withUnsafeMutableBytes { XChaCha20Poly1305.writeNonce(counter: 0x0102_0304_0506_0708, into: $0.baseAddress!) }
        #expect(nonce == [UInt8](repeating: 0, count: 16) + [8, 7, 6, 5, 4, 3, 2, 1])
        var short = [UInt8](repeating: 0xff, count: 12)
        short.withUnsafeMutableBytes { ChaCha20Poly1305.writeNonce(counter: 0x0102_0304_0506_0708, into: $0.baseAddress!) }
        #expect(short == [0, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1])
    }

    @Test func suitesAreFoundByNameAndWireIDAndTheDefaultIsXChaCha() {
        #expect(CipherSuites.default.name == "xchacha20poly1305")
        for suite in CipherSuites.all {
            #expect(CipherSuites.named(suite.name)?.wireID == suite.wireID)
            #expect(CipherSuites.withID(suite.wireID)?.name == suite.name)
        }
        #expect(Set(CipherSuites.all.map { $0.wireID }).count == CipherSuites.all.count)
        #expect(CipherSuites.named("rot13") == nil && CipherSuites.withID(0) == nil)
        #expect(CipherSuites.available.contains { $0.name == "chacha20poly1305" })
    }
}
