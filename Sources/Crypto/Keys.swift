// X25519 key types and their text form.
//
// Keys are written as standard base64 of the 32 raw bytes, exactly as WireGuard's `wg genkey` and
// `wg pubkey` do, so keys from either tool work with the other. Private keys live in `SecretBytes`;
// decoding goes through libsodium's constant-time base64 decoder (`sodium_base642bin`) so a private key's
// bytes do not leak through timing while being parsed.

import CSodium

/// Why a key's text could not be used.
public enum KeyDecodingError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Not valid standard base64.
    case notBase64
    /// Decoded to this many bytes instead of 32.
    case wrongLength(Int)
    /// A public key that is a low-order point (all-zero shared secret) and can never be used safely.
    case weakPublicKey

    public var description: String {
        switch self {
        case .notBase64: return "is not base64 (expected 44 characters, as `tunvpn keygen` or `wg genkey` write)"
        case .wrongLength(let n): return "decodes to \(n) bytes, expected 32"
        case .weakPublicKey: return "is a weak (low-order) X25519 public key"
        }
    }
}

/// Base64 helpers over libsodium (standard alphabet, with padding).
public enum Base64 {
    /// Encodes `bytes` as standard padded base64 (`sodium_bin2base64`).
    public static func encode(_ bytes: UnsafeRawBufferPointer) -> String {
        Sodium.ensureInitialized()
        let variant = sodium_base64_VARIANT_ORIGINAL
        let length = sodium_base64_encoded_len(bytes.count, variant)
        var out = [UInt8](repeating: 0, count: length)
        defer { Sodium.wipe(&out) }
        out.withUnsafeMutableBytes { o in
            _ = sodium_bin2base64(
                UnsafeMutableRawPointer(o.u8).assumingMemoryBound(to: CChar.self), length, bytes.u8, bytes.count,
                variant)
        }
        return String(decoding: out.prefix { $0 != 0 }, as: UTF8.self)
    }

    /// Encodes an array.
    public static func encode(_ bytes: [UInt8]) -> String { bytes.withUnsafeBytes { encode($0) } }

    private static func isSpace(_ c: UInt8) -> Bool { c == 0x20 || c == 0x0a || c == 0x0d || c == 0x09 }

    /// Decodes exactly 32 bytes of standard base64 into `out`, ignoring surrounding whitespace.
    /// Uses `sodium_base642bin`, whose running time does not depend on the decoded bytes.
    public static func decodeKey(_ text: String, into out: UnsafeMutableRawBufferPointer) throws(KeyDecodingError) {
        var chars = Array(text.utf8)
        defer { Sodium.wipe(&chars) }
        let result = chars.withUnsafeBytes { c in Result { () throws(KeyDecodingError) in try decodeKey(utf8: c, into: out) } }
        try result.get()
    }

    /// Decodes exactly 32 bytes of standard base64 text, given as its UTF-8 bytes, into `out`, ignoring
    /// surrounding whitespace. For key files: the text goes from the file's (wiped) buffer to the key without
    /// a `String` in between, whose storage could not be wiped.
    public static func decodeKey(utf8 chars: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer) throws(KeyDecodingError) {
        Sodium.ensureInitialized()
        precondition(out.count == 32, "keys are 32 bytes")
        let first = chars.firstIndex { !isSpace($0) } ?? chars.count
        let last = (chars.lastIndex { !isSpace($0) } ?? -1) + 1
        guard first < last else { throw .notBase64 }
        // libsodium 1.0.18 reads the text as (signed) `char`, so bytes >= 0x80 decode as '/' (found by FuzzKeys).
        guard chars[first..<last].allSatisfy({ $0 < 0x80 }) else { throw .notBase64 }
        // Decode into a scratch buffer large enough for any input, so an over-long key is reported by length.
        var scratch = [UInt8](repeating: 0, count: (last - first) / 4 * 3 + 3)
        defer { Sodium.wipe(&scratch) }
        var decoded = 0
        var end: UnsafePointer<CChar>? = nil
        let (rc, consumed) = scratch.withUnsafeMutableBytes { s -> (Int32, Int) in
            let begin = UnsafeRawPointer(chars.u8 + first).assumingMemoryBound(to: CChar.self)
            let rc = sodium_base642bin(
                s.u8, s.count, begin, last - first, nil, &decoded, &end, sodium_base64_VARIANT_ORIGINAL)
            return (rc, end.map { begin.distance(to: $0) } ?? -1)
        }
        // sodium_base642bin stops at the first invalid character; it must have consumed everything.
        guard rc == 0, consumed == last - first else { throw .notBase64 }
        guard decoded == 32 else { throw .wrongLength(decoded) }
        scratch.withUnsafeBytes { s in out.u8.update(from: s.u8, count: 32) }
    }
}

/// An X25519 public key (32 bytes). Public keys are not secret; they compare in constant time anyway,
/// since an allow-list lookup should not reveal how close a guess came.
public struct PublicKey: Hashable, Sendable, CustomStringConvertible {
    /// Key length in bytes.
    public static let length = 32
    /// The raw key.
    public let bytes: [UInt8]

    /// Wraps 32 raw bytes; nil for any other length.
    public init?(bytes: [UInt8]) {
        guard bytes.count == PublicKey.length else { return nil }
        self.bytes = bytes
    }

    init(exactly bytes: [UInt8]) {
        precondition(bytes.count == PublicKey.length, "X25519 public keys are 32 bytes")
        self.bytes = bytes
    }

    /// Wraps 32 raw bytes read from `pointer`.
    public init(copying pointer: UnsafeRawPointer) {
        bytes = Array(UnsafeRawBufferPointer(start: pointer, count: PublicKey.length))
    }

    /// Parses the base64 text form.
    public init(base64 text: String) throws(KeyDecodingError) {
        var raw = [UInt8](repeating: 0, count: 32)
        let result = raw.withUnsafeMutableBytes { b in
            Result { () throws(KeyDecodingError) in try Base64.decodeKey(text, into: b) }
        }
        try result.get()
        bytes = raw
    }

    /// The base64 text form (what `.pub` files hold).
    public var base64: String { Base64.encode(bytes) }

    public var description: String { base64 }

    public static func == (a: PublicKey, b: PublicKey) -> Bool { Sodium.constantTimeEqual(a.bytes, b.bytes) }

    public func hash(into hasher: inout Hasher) { hasher.combine(bytes) }
}

/// An X25519 private key, held in wiped-on-free memory.
public struct PrivateKey: Sendable {
    /// Key length in bytes.
    public static let length = 32
    /// The secret scalar.
    public let secret: SecretBytes

    /// Wraps an existing secret of 32 bytes.
    public init(secret: SecretBytes) {
        precondition(secret.count == PrivateKey.length, "X25519 private keys are 32 bytes")
        self.secret = secret
    }

    /// A fresh random key, clamped as X25519 expects (as `wg genkey` does).
    public init(random: some RandomSource = SystemRandom()) {
        let s = SecretBytes(randomCount: PrivateKey.length, using: random)
        // Freshly made and not yet shared, so writing through the pointer is safe.
        let p = UnsafeMutablePointer(mutating: s.unsafePointer.assumingMemoryBound(to: UInt8.self))
        p[0] &= 248
        p[31] = (p[31] & 127) | 64
        secret = s
    }

    /// Parses the base64 text form (what `.key` files hold).
    public init(base64 text: String) throws(KeyDecodingError) {
        let s = SecretBytes(zeros: PrivateKey.length)
        // Freshly made and not yet shared, so writing through the pointer is safe.
        try Base64.decodeKey(
            text, into: UnsafeMutableRawBufferPointer(start: UnsafeMutableRawPointer(mutating: s.unsafePointer), count: 32))
        secret = s
    }

    /// Parses the base64 text form from its UTF-8 bytes (a key file's contents), with no `String` copy.
    public init(base64UTF8 text: UnsafeRawBufferPointer) throws(KeyDecodingError) {
        let s = SecretBytes(zeros: PrivateKey.length)
        // Freshly made and not yet shared, so writing through the pointer is safe.
        try Base64.decodeKey(
            utf8: text, into: UnsafeMutableRawBufferPointer(start: UnsafeMutableRawPointer(mutating: s.unsafePointer), count: 32))
        secret = s
    }

    /// The base64 text form. Only key files should ever see this.
    public var base64: String { secret.withUnsafeBytes { Base64.encode($0) } }

    /// The matching public key (`crypto_scalarmult_base`).
    public var publicKey: PublicKey {
        Sodium.ensureInitialized()
        var out = [UInt8](repeating: 0, count: 32)
        secret.withUnsafeBytes { s in out.withUnsafeMutableBytes { o in _ = crypto_scalarmult_base(o.u8, s.u8) } }
        return PublicKey(exactly: out)
    }

    /// X25519(self, peer) (`crypto_scalarmult`). Throws when the result is all zero, which happens exactly
    /// when `peer` is a low-order point; Noise and WireGuard both reject that.
    public func sharedSecret(with peer: PublicKey) throws(KeyDecodingError) -> SecretBytes {
        Sodium.ensureInitialized()
        let out = SecretBytes(zeros: 32)
        let o = UnsafeMutablePointer(mutating: out.unsafePointer.assumingMemoryBound(to: UInt8.self))
        let rc = secret.withUnsafeBytes { s in peer.bytes.withUnsafeBytes { p in crypto_scalarmult(o, s.u8, p.u8) } }
        guard rc == 0 else { throw .weakPublicKey }
        return out
    }
}
