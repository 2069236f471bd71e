// Telling a private key from a public key by its 32 bytes, so a key file given for the wrong option is
// refused with a precise answer instead of failing later in the handshake.
//
// A private key made by `tunvpn keygen` or `wg genkey` is clamped (RFC 7748, section 5): bits 0-2 clear,
// bit 255 clear, bit 254 set. A public key is X25519(private, 9): the u-coordinate of a point of the
// prime-order subgroup of Curve25519 (the base point's subgroup), always below p = 2^255 - 19, so bit 255
// is always clear too; bits 0-2 are all clear for about 1 key in 8 and bit 254 is set for about half, so
// about 1 public key in 16 looks clamped. Clamping alone therefore cannot refuse a `--peer-key`.
//
// The sound rule for a public key: refuse it only when it is clamped AND is not the u-coordinate of a point
// of the prime-order subgroup. Every public key X25519 derives is such a point, so a real public key is
// never refused (the probability of a false refusal is zero, not merely small). A clamped random scalar
// read as a u-coordinate is such a point with probability about 1/16 (half of all u are on the curve
// rather than its twist, and one point in 8 of the curve is in the subgroup), so about 15 private keys in
// 16 given as `--peer-key` are caught; the rest fail at the handshake as before.
//
// The subgroup test maps u to the Edwards y = (u - 1) / (u + 1) (RFC 7748, section 4.1: the birational
// map between Curve25519 and edwards25519, which keeps the subgroup; computed with OpenSSL's BIGNUM, as
// libsodium exposes the map only the other way round) and asks libsodium's
// `crypto_core_ed25519_is_valid_point` (canonical, on the curve, not of small order, in the prime-order
// subgroup); the sign of x does not matter, as -P is in the subgroup exactly when P is.

import COpenSSL
import CSodium

extension PrivateKey {
    /// The key is clamped as RFC 7748 section 5 clamps a scalar, as every key `tunvpn keygen` and
    /// `wg genkey` make is. A key that is not is most likely a public key given where a private one belongs.
    public var isClamped: Bool { secret.withUnsafeBytes { s in KeyKinds.isClamped(s) } }
}

extension PublicKey {
    /// The key is the u-coordinate of a point of Curve25519's prime-order subgroup, as every public key
    /// X25519 derives from a private key is.
    public var isPrimeOrderPoint: Bool { KeyKinds.isPrimeOrderPoint(u: bytes) }

    /// These bytes cannot be a public key derived from a private key and look like a private key: clamped,
    /// and not a point of the prime-order subgroup. Never true for a real public key.
    public var looksLikePrivateKey: Bool { bytes.withUnsafeBytes { KeyKinds.isClamped($0) } && !isPrimeOrderPoint }
}

/// The checks behind `PrivateKey.isClamped` and `PublicKey.looksLikePrivateKey`.
enum KeyKinds {
    static func isClamped(_ k: UnsafeRawBufferPointer) -> Bool {
        k.count == 32 && k[0] & 7 == 0 && k[31] & 0x80 == 0 && k[31] & 0x40 != 0
    }

    static func isPrimeOrderPoint(u bytes: [UInt8]) -> Bool {
        guard bytes.count == 32 else { return false }
        Sodium.ensureInitialized()
        var y = [UInt8](repeating: 0, count: 32)  // the sign bit of x (bit 255) stays 0
        guard tunvpn_curve25519_u_to_edwards_y(bytes, &y) == 1 else { return false }
        return y.withUnsafeBytes { crypto_core_ed25519_is_valid_point($0.u8) == 1 }
    }
}
