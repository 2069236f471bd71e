// Telling private from public keys by their bytes (KeyKinds.swift): a real public key is never taken for a
// private one, and most private keys given as public keys are caught.

@testable import Crypto
import Testing
import TestSupport

@Suite struct KeyKindTests {
    /// A clamped private key from a seeded generator (RFC 7748 section 5 clamping, as `wg genkey` does).
    static func seededKey(_ random: inout SeededRandom) -> PrivateKey {
        var bytes = (0..<4).flatMap { _ in withUnsafeBytes(of: random.next().littleEndian) { Array($0) } }
        bytes[0] &= 248
        bytes[31] = (bytes[31] & 127) | 64
        return PrivateKey(secret: SecretBytes(copying: bytes))
    }

    static func u(_ small: UInt8) -> [UInt8] { [small] + [UInt8](repeating: 0, count: 31) }

    @Test func uAtOrAbovePAndBit255AreReducedAsX25519ReadsThem() throws {
        // 9 + p (bit 255 clear) is the base point's u again; so is 9 with bit 255 set, which X25519 ignores.
        let ninePlusP = [0xf6] + [UInt8](repeating: 0xff, count: 30) + [0x7f]
        #expect(KeyKinds.isPrimeOrderPoint(u: ninePlusP))
        #expect(KeyKinds.isPrimeOrderPoint(u: [9] + [UInt8](repeating: 0, count: 30) + [0x80]))
        // p - 1: u + 1 = 0, no Edwards y; a short or long input is no point either.
        #expect(!KeyKinds.isPrimeOrderPoint(u: [0xec] + [UInt8](repeating: 0xff, count: 30) + [0x7f]))
        #expect(!KeyKinds.isPrimeOrderPoint(u: [9]))
        #expect(!KeyKinds.isPrimeOrderPoint(u: Self.u(9) + [0]))
    }

    @Test func theBasePointAndTheRFCPublicKeysArePrimeOrderPointsAndSmallOrderOnesAreNot() throws {
        #expect(KeyKinds.isPrimeOrderPoint(u: Self.u(9)))
        // RFC 7748 section 6.1: Alice's and Bob's public keys.
        for hex in [
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a",
            "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f",
        ] {
            #expect(KeyKinds.isPrimeOrderPoint(u: try Hex.bytes(hex)), "\(hex)")
        }
        // u = 0 (order 2) and u = 1 (order 4) are points of small order.
        #expect(!KeyKinds.isPrimeOrderPoint(u: Self.u(0)))
        #expect(!KeyKinds.isPrimeOrderPoint(u: Self.u(1)))
    }

    @Test func noRealPublicKeyLooksLikeAPrivateKey() {
        var random = SeededRandom(seed: 15)
        var clampedLooking = 0
        for _ in 0..<400 {
            let key = Self.seededKey(&random)
            #expect(key.isClamped)
            let pub = key.publicKey
            #expect(pub.isPrimeOrderPoint)
            #expect(!pub.looksLikePrivateKey)
            if pub.bytes.withUnsafeBytes({ KeyKinds.isClamped($0) }) { clampedLooking += 1 }
        }
        // About 1 public key in 16 looks clamped (bits 0-2 clear: 1/8; bit 254 set: 1/2): clamping alone
        // would refuse those, the subgroup test does not.
        #expect(clampedLooking > 0)
    }

    @Test func mostPrivateKeysGivenAsPublicKeysAreCaughtAndPublicKeysAreNotClamped() throws {
        var random = SeededRandom(seed: 16)
        var caught = 0
        var unclampedPublic = 0
        let rounds = 1000
        for _ in 0..<rounds {
            let key = Self.seededKey(&random)
            let asPublic = try #require(key.secret.withUnsafeBytes { PublicKey(bytes: Array($0)) })
            if asPublic.looksLikePrivateKey { caught += 1 }
            if !PrivateKey(secret: SecretBytes(copying: key.publicKey.bytes)).isClamped { unclampedPublic += 1 }
        }
        // A clamped scalar read as u is a prime-order point with probability about 1/16 (half the u are on
        // the curve, one point in 8 is in the subgroup): about 937 of 1000 caught; the seed fixes the count.
        #expect((900...970).contains(caught), "\(caught)")
        // A public key passes as a private key only when it happens to look clamped, about 1 in 16.
        #expect((900...970).contains(unclampedPublic), "\(unclampedPublic)")
    }
}
