// BLAKE2b and the HMAC/HKDF built on it, as the Noise specification defines them (§4.3, §5.2).
//
// Noise's HASH is BLAKE2b-512 (HASHLEN 64, BLOCKLEN 128). HMAC is RFC 2104 over that hash, not
// BLAKE2b's built-in keyed mode; HKDF is Noise's two/three-output form. libsodium's incremental
// `crypto_generichash` state is not imported into Swift (it is a 64-byte-aligned packed struct), so the
// state is kept in an aligned raw allocation of `crypto_generichash_statebytes()` bytes.

import CSodium

/// BLAKE2b through libsodium's `crypto_generichash`.
public enum Blake2b {
    /// Noise's HASHLEN for BLAKE2b.
    public static let hashLength = 64
    /// BLAKE2b's block length, which HMAC pads its key to.
    public static let blockLength = 128

    /// Hashes the concatenation of `parts` into `out` (1...64 bytes), optionally keyed (BLAKE2b's own keyed
    /// mode, used for MACs; Noise's HMAC below does not use it).
    public static func hash(
        _ parts: [UnsafeRawBufferPointer], key: UnsafeRawBufferPointer? = nil, into out: UnsafeMutableRawBufferPointer
    ) {
        Sodium.ensureInitialized()
        precondition((1...64).contains(out.count), "BLAKE2b output is 1...64 bytes")
        // The state lives on the stack (384 bytes, 64-byte aligned): MACs are checked per handshake message,
        // including every message of a flood, so no heap allocation here.
        withUnsafeTemporaryAllocation(byteCount: stateSize, alignment: 64) { state in
            guard let base = state.baseAddress else { preconditionFailure("stack allocation has an address") }
            defer { sodium_memzero(base, state.count) }
            let op = OpaquePointer(base)
            _ = crypto_generichash_init(op, key?.u8, key?.count ?? 0, out.count)
            for part in parts where part.count > 0 { _ = crypto_generichash_update(op, part.u8, UInt64(part.count)) }
            _ = crypto_generichash_final(op, out.u8, out.count)
        }
    }

    /// crypto_generichash_statebytes() (384 in libsodium 1.0.18), read once.
    static let stateSize = crypto_generichash_statebytes()

    /// BLAKE2b-512 of `bytes`.
    public static func hash(_ bytes: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: hashLength)
        bytes.withUnsafeBytes { b in out.withUnsafeMutableBytes { hash([b], into: $0) } }
        return out
    }

    /// HMAC-BLAKE2b (RFC 2104 with B = 128, L = 64) of the concatenation of `parts` under `key` (≤ 64 bytes),
    /// written to `out` (64 bytes). The construction is `NoiseHash.hmac`, shared with BLAKE2s.
    public static func hmac(
        key: UnsafeRawBufferPointer, _ parts: [UnsafeRawBufferPointer], into out: UnsafeMutableRawBufferPointer
    ) {
        NoiseHash.blake2b.hmac(key: key, parts, into: out)
    }

    /// Noise's HKDF(chaining_key, input_key_material, num_outputs) for 2 or 3 outputs of 64 bytes each
    /// (`NoiseHash.hkdf`, shared with BLAKE2s).
    public static func hkdf(chainingKey: SecretBytes, inputKeyMaterial ikm: UnsafeRawBufferPointer, outputs: Int)
        -> [SecretBytes]
    {
        precondition(outputs == 2 || outputs == 3, "Noise's HKDF has 2 or 3 outputs")
        return NoiseHash.blake2b.hkdf(chainingKey: chainingKey, inputKeyMaterial: ikm, outputs: outputs)
    }
}
