// Pluggable AEAD cipher suites for data frames, and the registry that names them.
//
// Every suite is a stateless type with written invariants, so the data path can hold an existential
// metatype and dispatch once per packet without allocating. Keys stay in `SecretBytes`; `SessionCipher`
// binds one key to one suite and derives each packet's nonce from the frame's 64-bit counter.

import CSodium

/// One AEAD construction that can protect data frames.
///
/// Invariants every suite keeps:
/// - `name` is the wire name operators type (`--suite`) and `wireID` the byte the handshake carries; both are
///   unique among suites and never reused for another construction.
/// - Keys are exactly `keyLength` (32) bytes; both transport keys come from the Noise `Split()`, and a rekey
///   is a new handshake, so a suite never derives keys itself.
/// - The nonce is a pure function of the 64-bit counter (`writeNonce`), and a (key, counter) pair is used
///   at most once: the transport never reuses a counter under one key.
/// - `seal` works in place: `buffer[0..<length]` holds the plaintext and must have `tagLength` spare bytes
///   after it; afterwards `buffer[0..<length + tagLength]` holds ciphertext ‖ tag. `open` is the inverse and
///   leaves the plaintext at `buffer[0..<result]`, or returns nil when authentication fails, in which case
///   the buffer's contents are unspecified and must be discarded.
/// - Neither allocates, and both are safe to call concurrently with different buffers.
public protocol CipherSuite: Sendable {
    static var name: String { get }
    static var wireID: UInt8 { get }
    static var keyLength: Int { get }
    static var nonceLength: Int { get }
    static var tagLength: Int { get }
    /// Whether this machine can run the suite (AES-GCM needs AES-NI and CLMUL in libsodium 1.0.18).
    static var isAvailable: Bool { get }

    /// Writes the nonce for `counter` into `nonce` (`nonceLength` bytes).
    static func writeNonce(counter: UInt64, into nonce: UnsafeMutableRawPointer)

    /// Seals in place with an explicit nonce; returns the sealed length (`length + tagLength`).
    static func seal(
        key: UnsafeRawPointer, nonce: UnsafeRawPointer, buffer: UnsafeMutableRawPointer, length: Int,
        authenticating ad: UnsafeRawBufferPointer
    ) -> Int

    /// Opens in place with an explicit nonce; returns the plaintext length, or nil when authentication fails
    /// or `length < tagLength`.
    static func open(
        key: UnsafeRawPointer, nonce: UnsafeRawPointer, buffer: UnsafeMutableRawPointer, length: Int,
        authenticating ad: UnsafeRawBufferPointer
    ) -> Int?

    /// `seal`, reading the plaintext from `input` and writing ciphertext ‖ tag to `output`, which is either
    /// `input` itself or does not overlap it.
    static func seal(
        key: UnsafeRawPointer, nonce: UnsafeRawPointer, from input: UnsafeRawPointer, into output: UnsafeMutableRawPointer,
        length: Int, authenticating ad: UnsafeRawBufferPointer
    ) -> Int

    /// `open`, reading ciphertext ‖ tag from `input` and writing the plaintext to `output` (`input` itself or
    /// not overlapping it).
    static func open(
        key: UnsafeRawPointer, nonce: UnsafeRawPointer, from input: UnsafeRawPointer, into output: UnsafeMutableRawPointer,
        length: Int, authenticating ad: UnsafeRawBufferPointer
    ) -> Int?
}

/// Writes `counter` little-endian at `offset` of an otherwise zero nonce of `length` bytes.
@inline(__always)
private func counterNonce(_ counter: UInt64, length: Int, offset: Int, into nonce: UnsafeMutableRawPointer) {
    nonce.initializeMemory(as: UInt8.self, repeating: 0, count: length)
    nonce.storeBytes(of: counter.littleEndian, toByteOffset: offset, as: UInt64.self)
}

/// libsodium's combined-mode AEAD encrypt and decrypt, which share one signature across constructions.
typealias SodiumEncrypt = (
    UnsafeMutablePointer<UInt8>, UnsafeMutablePointer<UInt64>?, UnsafePointer<UInt8>?, UInt64, UnsafePointer<UInt8>?,
    UInt64, UnsafePointer<UInt8>?, UnsafePointer<UInt8>, UnsafePointer<UInt8>
) -> Int32
typealias SodiumDecrypt = (
    UnsafeMutablePointer<UInt8>?, UnsafeMutablePointer<UInt64>?, UnsafeMutablePointer<UInt8>?, UnsafePointer<UInt8>,
    UInt64, UnsafePointer<UInt8>?, UInt64, UnsafePointer<UInt8>, UnsafePointer<UInt8>
) -> Int32

/// Seals `input[0..<length]` into `output` (the same memory, or not overlapping) with `encrypt`; returns the
/// sealed length.
@inline(__always)
func sodiumSeal(
    _ encrypt: SodiumEncrypt, key: UnsafeRawPointer, nonce: UnsafeRawPointer, input: UnsafeRawPointer,
    output: UnsafeMutableRawPointer, length: Int, ad: UnsafeRawBufferPointer
) -> Int {
    var out: UInt64 = 0
    _ = encrypt(
        output.assumingMemoryBound(to: UInt8.self), &out, input.assumingMemoryBound(to: UInt8.self), UInt64(length), ad.u8,
        UInt64(ad.count), nil, nonce.assumingMemoryBound(to: UInt8.self), key.assumingMemoryBound(to: UInt8.self))
    return Int(out)
}

/// Opens `input[0..<length]` into `output` (the same memory, or not overlapping) with `decrypt`; returns the
/// plaintext length or nil.
@inline(__always)
func sodiumOpen(
    _ decrypt: SodiumDecrypt, tagLength: Int, key: UnsafeRawPointer, nonce: UnsafeRawPointer, input: UnsafeRawPointer,
    output: UnsafeMutableRawPointer, length: Int, ad: UnsafeRawBufferPointer
) -> Int? {
    guard length >= tagLength else { return nil }
    var out: UInt64 = 0
    let rc = decrypt(
        output.assumingMemoryBound(to: UInt8.self), &out, nil, input.assumingMemoryBound(to: UInt8.self), UInt64(length),
        ad.u8, UInt64(ad.count), nonce.assumingMemoryBound(to: UInt8.self), key.assumingMemoryBound(to: UInt8.self))
    return rc == 0 ? Int(out) : nil
}

/// A suite that is one of libsodium's combined-mode AEADs: seal and open come from its two functions.
protocol LibsodiumAEAD: CipherSuite {
    static var encrypt: SodiumEncrypt { get }
    static var decrypt: SodiumDecrypt { get }
}

extension LibsodiumAEAD {
    public static func seal(
        key: UnsafeRawPointer, nonce: UnsafeRawPointer, buffer: UnsafeMutableRawPointer, length: Int,
        authenticating ad: UnsafeRawBufferPointer
    ) -> Int {
        sodiumSeal(encrypt, key: key, nonce: nonce, input: buffer, output: buffer, length: length, ad: ad)
    }

    public static func open(
        key: UnsafeRawPointer, nonce: UnsafeRawPointer, buffer: UnsafeMutableRawPointer, length: Int,
        authenticating ad: UnsafeRawBufferPointer
    ) -> Int? {
        sodiumOpen(decrypt, tagLength: tagLength, key: key, nonce: nonce, input: buffer, output: buffer, length: length, ad: ad)
    }

    public static func seal(
        key: UnsafeRawPointer, nonce: UnsafeRawPointer, from input: UnsafeRawPointer, into output: UnsafeMutableRawPointer,
        length: Int, authenticating ad: UnsafeRawBufferPointer
    ) -> Int {
        sodiumSeal(encrypt, key: key, nonce: nonce, input: input, output: output, length: length, ad: ad)
    }

    public static func open(
        key: UnsafeRawPointer, nonce: UnsafeRawPointer, from input: UnsafeRawPointer, into output: UnsafeMutableRawPointer,
        length: Int, authenticating ad: UnsafeRawBufferPointer
    ) -> Int? {
        sodiumOpen(decrypt, tagLength: tagLength, key: key, nonce: nonce, input: input, output: output, length: length, ad: ad)
    }
}

/// XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha), the default. Nonce: 16 zero bytes ‖ counter (LE64).
public enum XChaCha20Poly1305: LibsodiumAEAD {
    public static let name = "xchacha20poly1305"
    public static let wireID: UInt8 = 1
    public static let keyLength = 32
    public static let nonceLength = 24
    public static let tagLength = 16
    public static var isAvailable: Bool { true }

    @inline(__always)
    public static func writeNonce(counter: UInt64, into nonce: UnsafeMutableRawPointer) {
        counterNonce(counter, length: nonceLength, offset: 16, into: nonce)
    }

    static var encrypt: SodiumEncrypt { crypto_aead_xchacha20poly1305_ietf_encrypt }
    static var decrypt: SodiumDecrypt { crypto_aead_xchacha20poly1305_ietf_decrypt }
}

/// ChaCha20-Poly1305 (RFC 8439, IETF 96-bit nonce), as WireGuard uses. Nonce: 4 zero bytes ‖ counter (LE64).
public enum ChaCha20Poly1305: LibsodiumAEAD {
    public static let name = "chacha20poly1305"
    public static let wireID: UInt8 = 2
    public static let keyLength = 32
    public static let nonceLength = 12
    public static let tagLength = 16
    public static var isAvailable: Bool { true }

    @inline(__always)
    public static func writeNonce(counter: UInt64, into nonce: UnsafeMutableRawPointer) {
        counterNonce(counter, length: nonceLength, offset: 4, into: nonce)
    }

    static var encrypt: SodiumEncrypt { crypto_aead_chacha20poly1305_ietf_encrypt }
    static var decrypt: SodiumDecrypt { crypto_aead_chacha20poly1305_ietf_decrypt }
}

/// AES-256-GCM, offered only where libsodium reports hardware support. Nonce: 4 zero bytes ‖ counter (LE64).
public enum AES256GCM: LibsodiumAEAD {
    public static let name = "aes256gcm"
    public static let wireID: UInt8 = 3
    public static let keyLength = 32
    public static let nonceLength = 12
    public static let tagLength = 16
    public static var isAvailable: Bool {
        Sodium.ensureInitialized()
        return crypto_aead_aes256gcm_is_available() == 1
    }

    @inline(__always)
    public static func writeNonce(counter: UInt64, into nonce: UnsafeMutableRawPointer) {
        counterNonce(counter, length: nonceLength, offset: 4, into: nonce)
    }

    static var encrypt: SodiumEncrypt { crypto_aead_aes256gcm_encrypt }
    static var decrypt: SodiumDecrypt { crypto_aead_aes256gcm_decrypt }
}

/// The suites tunvpn knows, by name and by wire ID.
public enum CipherSuites {
    /// Every known suite, in default preference order.
    public static let all: [any CipherSuite.Type] = [XChaCha20Poly1305.self, ChaCha20Poly1305.self, AES256GCM.self]

    /// The default suite.
    public static let `default`: any CipherSuite.Type = XChaCha20Poly1305.self

    /// The suites this machine can run, in preference order.
    public static var available: [any CipherSuite.Type] { all.filter { $0.isAvailable } }

    /// The suite with this wire name, if known (whether or not available here).
    public static func named(_ name: String) -> (any CipherSuite.Type)? { all.first { $0.name == name } }

    /// The suite with this wire ID, if known.
    public static func withID(_ id: UInt8) -> (any CipherSuite.Type)? { all.first { $0.wireID == id } }

    /// The largest nonce any suite uses (for stack buffers).
    public static let maxNonceLength = 24
}

/// One direction's key bound to one suite: seals or opens frames whose nonce comes from a counter.
///
/// Concurrency: any number of threads may seal or open with it at once, each on its own buffer. The key
/// never changes; with OpenSSL as the provider, each call borrows an EVP context from a pool no other
/// thread uses it from at the same time (`OpenSSLKeyedAEAD`).
public final class SessionCipher: Sendable {
    /// The suite.
    public let suite: any CipherSuite.Type
    /// The library that computes the AEAD (libsodium unless OpenSSL was asked for and runs the suite).
    public let provider: AEADProvider
    /// The construction actually run per packet (see `init`).
    private let engine: any CipherSuite.Type
    private let key: SecretBytes
    /// The EVP contexts under `key`, when OpenSSL is the provider.
    private let openssl: OpenSSLKeyedAEAD?

    /// The construction a session of `suite` runs per packet: XChaCha20-Poly1305 runs as ChaCha20-Poly1305
    /// under its HChaCha20 subkey (see `init`), every other suite as itself.
    static func perPacketSuite(_ suite: any CipherSuite.Type) -> any CipherSuite.Type {
        suite == XChaCha20Poly1305.self ? ChaCha20Poly1305.self : suite
    }

    /// Binds `key` (exactly `suite.keyLength` bytes) to `suite`, computed by `provider` (the process's
    /// default unless given; libsodium when OpenSSL does not run the suite). The frames are the same bytes
    /// either way.
    ///
    /// For XChaCha20-Poly1305 the first 16 nonce bytes are always zero (the counter is in the last 8), so
    /// its HChaCha20 subkey is the same for every packet of a session. It is derived once here (always by
    /// libsodium), and each packet then runs IETF ChaCha20-Poly1305 under that subkey with nonce
    /// 0^4 ‖ counter, which is exactly what libsodium's XChaCha20-Poly1305 computes per call
    /// (draft-irtf-cfrg-xchacha §2.3), minus the per-packet HChaCha20.
    public init(suite: any CipherSuite.Type, key: SecretBytes, provider: AEADProvider = AEADProviders.processDefault) {
        precondition(key.count == suite.keyLength, "key length must match the suite")
        self.suite = suite
        if suite == XChaCha20Poly1305.self {
            Sodium.ensureInitialized()
            let zeros = [UInt8](repeating: 0, count: 16)
            self.key = SecretBytes(count: 32) { out in
                key.withUnsafeBytes { k in
                    zeros.withUnsafeBytes { n in _ = crypto_core_hchacha20(out.u8, n.u8, k.u8, nil) }
                }
            }
        } else {
            self.key = key
        }
        engine = Self.perPacketSuite(suite)
        openssl = provider == .openssl ? OpenSSLKeyedAEAD(suite: engine, key: self.key) : nil
        self.provider = openssl == nil ? .libsodium : .openssl
    }

    /// Seals `buffer[0..<length]` in place under the nonce for `counter`; returns `length + tagLength`.
    @inline(__always)
    public func seal(
        _ buffer: UnsafeMutableRawPointer, length: Int, counter: UInt64, authenticating ad: UnsafeRawBufferPointer
    ) -> Int {
        seal(from: buffer, into: buffer, length: length, counter: counter, authenticating: ad)
    }

    /// Opens `buffer[0..<length]` in place; returns the plaintext length or nil when authentication fails.
    @inline(__always)
    public func open(
        _ buffer: UnsafeMutableRawPointer, length: Int, counter: UInt64, authenticating ad: UnsafeRawBufferPointer
    ) -> Int? {
        open(from: buffer, into: buffer, length: length, counter: counter, authenticating: ad)
    }

    /// Seals `input[0..<length]` into `output` (`input` itself, or memory not overlapping it, with room for
    /// `length + tagLength` bytes); returns `length + tagLength`.
    @inline(__always)
    public func seal(
        from input: UnsafeRawPointer, into output: UnsafeMutableRawPointer, length: Int, counter: UInt64,
        authenticating ad: UnsafeRawBufferPointer
    ) -> Int {
        withUnsafeTemporaryAllocation(byteCount: CipherSuites.maxNonceLength, alignment: 8) { nonce in
            guard let n = nonce.baseAddress else { preconditionFailure("stack allocation has an address") }
            engine.writeNonce(counter: counter, into: n)
            // OpenSSL fails only when it cannot make a context; libsodium then gives the same bytes.
            if let openssl, length >= OpenSSLKeyedAEAD.minimumLength,
                let sealed = openssl.seal(nonce: n, from: input, into: output, length: length, ad: ad)
            {
                return sealed
            }
            return engine.seal(key: key.unsafePointer, nonce: n, from: input, into: output, length: length, authenticating: ad)
        }
    }

    /// This key and suite in OpenSSL alone, at every length (for the self-test), or nil without OpenSSL.
    func openSSLDirect() -> OpenSSLDirectCipher? {
        guard let evp = OpenSSLKeyedAEAD(suite: engine, key: key) else { return nil }
        return OpenSSLDirectCipher(engine: engine, evp: evp)
    }

    /// Opens `input[0..<length]` (ciphertext ‖ tag) into `output` (`input` itself, or not overlapping it);
    /// returns the plaintext length or nil when authentication fails (`output`'s bytes are then unspecified).
    @inline(__always)
    public func open(
        from input: UnsafeRawPointer, into output: UnsafeMutableRawPointer, length: Int, counter: UInt64,
        authenticating ad: UnsafeRawBufferPointer
    ) -> Int? {
        withUnsafeTemporaryAllocation(byteCount: CipherSuites.maxNonceLength, alignment: 8) { nonce in
            guard let n = nonce.baseAddress else { preconditionFailure("stack allocation has an address") }
            engine.writeNonce(counter: counter, into: n)
            if let openssl, length - engine.tagLength >= OpenSSLKeyedAEAD.minimumLength {
                return openssl.open(nonce: n, from: input, into: output, length: length, ad: ad)
            }
            return engine.open(key: key.unsafePointer, nonce: n, from: input, into: output, length: length, authenticating: ad)
        }
    }
}

/// One key in OpenSSL at every length, with `SessionCipher`'s nonces: what the provider self-test checks.
struct OpenSSLDirectCipher: FrameCipher {
    let engine: any CipherSuite.Type
    let evp: OpenSSLKeyedAEAD

    func seal(_ buffer: UnsafeMutableRawPointer, length: Int, counter: UInt64, authenticating ad: UnsafeRawBufferPointer) -> Int {
        withUnsafeTemporaryAllocation(byteCount: CipherSuites.maxNonceLength, alignment: 8) { nonce in
            guard let n = nonce.baseAddress else { preconditionFailure("stack allocation has an address") }
            engine.writeNonce(counter: counter, into: n)
            return evp.seal(nonce: n, from: buffer, into: buffer, length: length, ad: ad) ?? -1
        }
    }

    func open(_ buffer: UnsafeMutableRawPointer, length: Int, counter: UInt64, authenticating ad: UnsafeRawBufferPointer) -> Int? {
        withUnsafeTemporaryAllocation(byteCount: CipherSuites.maxNonceLength, alignment: 8) { nonce in
            guard let n = nonce.baseAddress else { preconditionFailure("stack allocation has an address") }
            engine.writeNonce(counter: counter, into: n)
            return evp.open(nonce: n, from: buffer, into: buffer, length: length, ad: ad)
        }
    }
}
