// Noise's HASH, HMAC and HKDF (Noise revision 34, §4.3 and §5.2), written once for both hashes tunvpn
// uses: BLAKE2b-512 (tunvpn's own protocol) and BLAKE2s-256 (WireGuard's; whitepaper §5.4, "HASH",
// "HMAC", "KDF_n").
//
// HMAC is RFC 2104 over the hash (not BLAKE2's built-in keyed mode); HKDF is Noise's form with one to three
// outputs of HASHLEN bytes (WireGuard's KDF_1, KDF_2 and KDF_3 are the same function). BLAKE2s comes from
// libb2 (the BLAKE2 authors' library), because libsodium has only BLAKE2b; its state is a packed C struct,
// so it lives in a raw allocation of `tunvpn_blake2s_state_size()` bytes.

import CBlake2
import CSodium

/// BLAKE2s (RFC 7693) through libb2.
public enum Blake2s {
    /// HASHLEN for BLAKE2s-256.
    public static let hashLength = 32
    /// BLAKE2s's block length, which HMAC pads its key to.
    public static let blockLength = 64
    /// The longest key BLAKE2s's keyed mode takes.
    public static let maxKeyLength = 32

    static let stateSize = tunvpn_blake2s_state_size()

    /// Hashes the concatenation of `parts` into `out` (1...32 bytes), optionally keyed with BLAKE2s's own
    /// keyed mode (1...32 bytes; WireGuard's MAC); a nil or empty key is the unkeyed hash.
    public static func hash(
        _ parts: [UnsafeRawBufferPointer], key: UnsafeRawBufferPointer? = nil, into out: UnsafeMutableRawBufferPointer
    ) {
        precondition((1...hashLength).contains(out.count), "BLAKE2s output is 1...32 bytes")
        precondition((key?.count ?? 0) <= maxKeyLength, "BLAKE2s keys are at most 32 bytes")
        withUnsafeTemporaryAllocation(byteCount: stateSize, alignment: 16) { raw in
            guard let base = raw.baseAddress else { preconditionFailure("stack allocation has an address") }
            defer { sodium_memzero(base, raw.count) }
            let state = base.assumingMemoryBound(to: blake2s_state.self)
            if let key, key.count > 0 {
                _ = blake2s_init_key(state, out.count, key.baseAddress, key.count)
            } else {
                _ = blake2s_init(state, out.count)
            }
            for part in parts where part.count > 0 { _ = blake2s_update(state, part.u8, part.count) }
            _ = blake2s_final(state, out.u8, out.count)
        }
    }

    /// BLAKE2s-256 of `bytes`.
    public static func hash(_ bytes: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: hashLength)
        bytes.withUnsafeBytes { b in out.withUnsafeMutableBytes { hash([b], into: $0) } }
        return out
    }
}

/// The hash a Noise handshake runs over, with the HMAC and HKDF built on it.
public enum NoiseHash: Sendable, Equatable, CaseIterable {
    /// BLAKE2b-512 (HASHLEN 64, BLOCKLEN 128): tunvpn's own protocol.
    case blake2b
    /// BLAKE2s-256 (HASHLEN 32, BLOCKLEN 64): WireGuard.
    case blake2s

    /// The name as a Noise protocol name spells it.
    public var name: String {
        switch self {
        case .blake2b: return "BLAKE2b"
        case .blake2s: return "BLAKE2s"
        }
    }

    /// HASHLEN.
    public var hashLength: Int {
        switch self {
        case .blake2b: return Blake2b.hashLength
        case .blake2s: return Blake2s.hashLength
        }
    }

    /// BLOCKLEN.
    public var blockLength: Int {
        switch self {
        case .blake2b: return Blake2b.blockLength
        case .blake2s: return Blake2s.blockLength
        }
    }

    /// HASH of the concatenation of `parts` (`out.count` bytes of digest; keyed with the hash's own keyed
    /// mode when `key` is given).
    public func hash(
        _ parts: [UnsafeRawBufferPointer], key: UnsafeRawBufferPointer? = nil, into out: UnsafeMutableRawBufferPointer
    ) {
        switch self {
        case .blake2b: Blake2b.hash(parts, key: key, into: out)
        case .blake2s: Blake2s.hash(parts, key: key, into: out)
        }
    }

    /// HASH(bytes), HASHLEN bytes.
    public func hash(_ bytes: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: hashLength)
        bytes.withUnsafeBytes { b in out.withUnsafeMutableBytes { hash([b], into: $0) } }
        return out
    }

    /// HMAC-HASH (RFC 2104 with B = BLOCKLEN, L = HASHLEN) of the concatenation of `parts` under `key`
    /// (at most HASHLEN bytes), written to `out` (HASHLEN bytes).
    public func hmac(key: UnsafeRawBufferPointer, _ parts: [UnsafeRawBufferPointer], into out: UnsafeMutableRawBufferPointer) {
        let blockLength = self.blockLength
        precondition(key.count <= hashLength && out.count == hashLength, "HMAC key ≤ HASHLEN bytes, output HASHLEN bytes")
        withUnsafeTemporaryAllocation(byteCount: blockLength * 2 + hashLength, alignment: 16) { scratch in
            defer { Sodium.wipe(scratch) }
            let ipad = UnsafeMutableRawBufferPointer(rebasing: scratch[0..<blockLength])
            let opad = UnsafeMutableRawBufferPointer(rebasing: scratch[blockLength..<(2 * blockLength)])
            let inner = UnsafeMutableRawBufferPointer(rebasing: scratch[(2 * blockLength)...])
            for i in 0..<blockLength {
                let k: UInt8 = i < key.count ? key[i] : 0
                ipad[i] = k ^ 0x36
                opad[i] = k ^ 0x5c
            }
            hash([UnsafeRawBufferPointer(ipad)] + parts, into: inner)
            hash([UnsafeRawBufferPointer(opad), UnsafeRawBufferPointer(inner)], into: out)
        }
    }

    /// HKDF(chaining_key, input_key_material, num_outputs) for 1...3 outputs of HASHLEN bytes each:
    /// temp = HMAC(ck, ikm); out1 = HMAC(temp, 0x01); out_i = HMAC(temp, out_{i-1} ‖ i). Every output is a
    /// secret (chaining keys, cipher keys) and is returned as `SecretBytes`.
    public func hkdf(chainingKey: SecretBytes, inputKeyMaterial ikm: UnsafeRawBufferPointer, outputs: Int) -> [SecretBytes] {
        precondition((1...3).contains(outputs), "HKDF here has 1, 2 or 3 outputs")
        let tempKey = SecretBytes(count: hashLength) { t in
            chainingKey.withUnsafeBytes { ck in hmac(key: ck, [ikm], into: t) }
        }
        var results: [SecretBytes] = []
        var counter: UInt8 = 1
        for _ in 0..<outputs {
            let previous = results.last
            let next = SecretBytes(count: hashLength) { o in
                tempKey.withUnsafeBytes { tk in
                    withUnsafeBytes(of: counter) { c in
                        if let previous {
                            previous.withUnsafeBytes { p in hmac(key: tk, [p, c], into: o) }
                        } else {
                            hmac(key: tk, [c], into: o)
                        }
                    }
                }
            }
            results.append(next)
            counter += 1
        }
        return results
    }
}
