// X25519 (RFC 7748) and BLAKE2b (RFC 7693) against their published vectors; key text round trips.

import Crypto
import TestSupport
import Testing

@Suite struct PrimitiveTests {
    static func key(_ hex: String) throws -> PrivateKey { PrivateKey(secret: SecretBytes(copying: try Hex.bytes(hex))) }

    @Test func x25519MatchesRFC7748() throws {
        let vectors = try PrimitiveVectors.load().x25519
        #expect(vectors.count == 3)
        for v in vectors {
            if let scalar = v["scalar"], let u = v["u"], let output = v["output"] {
                let shared = try Self.key(scalar).sharedSecret(with: try #require(PublicKey(bytes: try Hex.bytes(u))))
                #expect(try shared.withUnsafeBytes { Array($0) } == Hex.bytes(output), "\(v["reference"] ?? "")")
            } else {
                let alice = try Self.key(try #require(v["alice_private"]))
                let bob = try Self.key(try #require(v["bob_private"]))
                #expect(try alice.publicKey.bytes == Hex.bytes(v["alice_public"] ?? ""))
                #expect(try bob.publicKey.bytes == Hex.bytes(v["bob_public"] ?? ""))
                let k1 = try alice.sharedSecret(with: bob.publicKey)
                let k2 = try bob.sharedSecret(with: alice.publicKey)
                #expect(try k1.withUnsafeBytes { Array($0) } == Hex.bytes(v["shared"] ?? ""))
                #expect(k1.constantTimeEquals(k2))
            }
        }
    }

    @Test func aLowOrderPublicKeyIsRefused() throws {
        let zero = try #require(PublicKey(bytes: [UInt8](repeating: 0, count: 32)))
        #expect(throws: KeyDecodingError.weakPublicKey) { try PrivateKey().sharedSecret(with: zero) }
    }

    @Test func blake2bMatchesRFC7693() throws {
        let vectors = try PrimitiveVectors.load().blake2b
        #expect(!vectors.isEmpty)
        for v in vectors {
            #expect(try Blake2b.hash(Hex.bytes(v["input"] ?? "")) == Hex.bytes(v["output"] ?? ""))
        }
    }

    @Test func keysRoundTripThroughTheirBase64Form() throws {
        let k = PrivateKey()
        let text = k.base64
        #expect(text.count == 44 && text.hasSuffix("="))
        let back = try PrivateKey(base64: text + "\n")
        #expect(back.publicKey == k.publicKey)
        #expect(try PublicKey(base64: k.publicKey.base64) == k.publicKey)
        // A fresh key is clamped as X25519 expects (as `wg genkey` does).
        let raw = k.secret.withUnsafeBytes { Array($0) }
        #expect(raw[0] & 7 == 0 && raw[31] & 0x80 == 0 && raw[31] & 0x40 != 0)
    }

    @Test func badKeyTextIsRefusedWithItsReason() {
        #expect(throws: KeyDecodingError.notBase64) { try PrivateKey(base64: "not base64 at all!") }
        #expect(throws: KeyDecodingError.notBase64) { try PrivateKey(base64: "") }
        // libsodium 1.0.18 would decode a byte >= 0x80 as '/' (found by Fuzz/FuzzKeys): this is not ".../////...".
        #expect(throws: KeyDecodingError.notBase64) { try PublicKey(base64: "2U8zB8hXEy+cLkryh\u{FFFD}/FYFNfvn29hkWO5XUz1xATA=") }
        #expect(throws: KeyDecodingError.wrongLength(3)) { try PublicKey(base64: "AAAA") }
        #expect(throws: KeyDecodingError.wrongLength(33)) {
            try PublicKey(base64: Base64.encode([UInt8](repeating: 1, count: 33)))
        }
    }

    /// Equality only: the comparison is libsodium's sodium_memcmp, constant time by its contract, which a test cannot
    /// measure reliably here.
    @Test func secretsCompareEqualAndKnowWhenTheyAreZero() {
        let a = SecretBytes(copying: [1, 2, 3])
        #expect(a.constantTimeEquals(SecretBytes(copying: [1, 2, 3])))
        #expect(!a.constantTimeEquals(SecretBytes(copying: [1, 2, 4])))
        #expect(SecretBytes(zeros: 8).isAllZero && !a.isAllZero)
    }
}
