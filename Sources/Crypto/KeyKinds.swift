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
// map between Curve25519 and edwards25519, which keeps the subgroup) and asks libsodium's
// `crypto_core_ed25519_is_valid_point` (canonical, on the curve, not of small order, in the prime-order
// subgroup); the sign of x does not matter, as -P is in the subgroup exactly when P is.

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
        let u = FieldElement(bytes: bytes)
        let one = FieldElement(small: 1)
        let y = (u - one) * (u + one).inverse
        let encoded = y.bytes  // the sign bit of x (bit 255) stays 0
        return encoded.withUnsafeBytes { crypto_core_ed25519_is_valid_point($0.u8) == 1 }
    }
}

/// An element of GF(2^255 - 19) in five 51-bit limbs, enough for one inversion; written by hand because
/// libsodium exposes no map from a Curve25519 u-coordinate to edwards25519 (only the other way round).
/// Speed and constant time do not matter here: it runs once per key file, on a key meant to be public.
struct FieldElement {
    static let mask: UInt64 = (1 << 51) - 1
    var l: (UInt64, UInt64, UInt64, UInt64, UInt64)

    init(_ l0: UInt64, _ l1: UInt64, _ l2: UInt64, _ l3: UInt64, _ l4: UInt64) { l = (l0, l1, l2, l3, l4) }

    init(small v: UInt64) { self.init(v, 0, 0, 0, 0) }

    /// 32 little-endian bytes; bit 255 is ignored, as X25519 ignores it (RFC 7748, section 5).
    init(bytes b: [UInt8]) {
        func load(_ i: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(b[i + $1]) << (8 * UInt64($1)) } }
        self.init(
            load(0) & Self.mask, (load(6) >> 3) & Self.mask, (load(12) >> 6) & Self.mask, (load(19) >> 1) & Self.mask,
            (load(24) >> 12) & Self.mask)
    }

    /// Carries every limb into the next (the top one wraps round times 19, as 2^255 = 19 mod p).
    static func carried(_ r: (UInt128, UInt128, UInt128, UInt128, UInt128)) -> FieldElement {
        let m = UInt128(mask)
        var (r0, r1, r2, r3, r4) = r
        r1 += r0 >> 51
        r0 &= m
        r2 += r1 >> 51
        r1 &= m
        r3 += r2 >> 51
        r2 &= m
        r4 += r3 >> 51
        r3 &= m
        r0 += (r4 >> 51) * 19
        r4 &= m
        r1 += r0 >> 51
        r0 &= m
        return FieldElement(UInt64(r0), UInt64(r1), UInt64(r2), UInt64(r3), UInt64(r4))
    }

    static func + (a: FieldElement, b: FieldElement) -> FieldElement {
        carried((
            UInt128(a.l.0 + b.l.0), UInt128(a.l.1 + b.l.1), UInt128(a.l.2 + b.l.2), UInt128(a.l.3 + b.l.3),
            UInt128(a.l.4 + b.l.4)
        ))
    }

    /// a - b as a + 2p - b, limb by limb (every limb of a carried b is below 2p's).
    static func - (a: FieldElement, b: FieldElement) -> FieldElement {
        let low: UInt64 = 0xF_FFFF_FFFF_FFDA  // 2 × (2^51 - 19)
        let high: UInt64 = 0xF_FFFF_FFFF_FFFE  // 2 × (2^51 - 1)
        return carried((
            UInt128(a.l.0 + low - b.l.0), UInt128(a.l.1 + high - b.l.1), UInt128(a.l.2 + high - b.l.2),
            UInt128(a.l.3 + high - b.l.3), UInt128(a.l.4 + high - b.l.4)
        ))
    }

    static func * (a: FieldElement, b: FieldElement) -> FieldElement {
        func m(_ x: UInt64, _ y: UInt64) -> UInt128 { UInt128(x) * UInt128(y) }
        let (a0, a1, a2, a3, a4) = a.l
        let (b0, b1, b2, b3, b4) = b.l
        let (c1, c2, c3, c4) = (b1 * 19, b2 * 19, b3 * 19, b4 * 19)
        return carried((
            m(a0, b0) + m(a1, c4) + m(a2, c3) + m(a3, c2) + m(a4, c1),
            m(a0, b1) + m(a1, b0) + m(a2, c4) + m(a3, c3) + m(a4, c2),
            m(a0, b2) + m(a1, b1) + m(a2, b0) + m(a3, c4) + m(a4, c3),
            m(a0, b3) + m(a1, b2) + m(a2, b1) + m(a3, b0) + m(a4, c4),
            m(a0, b4) + m(a1, b3) + m(a2, b2) + m(a3, b1) + m(a4, b0)
        ))
    }

    /// a^(p-2), which is 1/a for a ≠ 0 (Fermat) and 0 for 0. p - 2 = 2^255 - 21: bits 0-254 set except 2 and 4.
    var inverse: FieldElement {
        var r = FieldElement(small: 1)
        for bit in (0...254).reversed() {
            r = r * r
            if bit != 2 && bit != 4 { r = r * self }
        }
        return r
    }

    /// The canonical 32 little-endian bytes (fully reduced below p; bit 255 clear).
    var bytes: [UInt8] {
        var t = l
        // Carry until every limb is below 2^51 (the value is then below 2^255).
        while (t.0 | t.1 | t.2 | t.3 | t.4) >> 51 != 0 {
            t.1 += t.0 >> 51
            t.0 &= Self.mask
            t.2 += t.1 >> 51
            t.1 &= Self.mask
            t.3 += t.2 >> 51
            t.2 &= Self.mask
            t.4 += t.3 >> 51
            t.3 &= Self.mask
            t.0 += (t.4 >> 51) * 19
            t.4 &= Self.mask
        }
        // q = 1 exactly when the value is p or more: then adding 19 carries out of bit 255.
        var q = (t.0 + 19) >> 51
        q = (t.1 + q) >> 51
        q = (t.2 + q) >> 51
        q = (t.3 + q) >> 51
        q = (t.4 + q) >> 51
        t.0 += 19 * q
        t.1 += t.0 >> 51
        t.0 &= Self.mask
        t.2 += t.1 >> 51
        t.1 &= Self.mask
        t.3 += t.2 >> 51
        t.2 &= Self.mask
        t.4 += t.3 >> 51
        t.3 &= Self.mask
        t.4 &= Self.mask
        let words = [t.0 | t.1 << 51, t.1 >> 13 | t.2 << 38, t.2 >> 26 | t.3 << 25, t.3 >> 39 | t.4 << 12]
        return words.flatMap { w in (0..<8).map { UInt8(truncatingIfNeeded: w >> (8 * UInt64($0))) } }
    }
}
