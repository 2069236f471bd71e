// Who computes the per-packet AEAD: libsodium (the reference, always present) or OpenSSL 3's libcrypto
// (EVP), which is faster per core on most x86-64 machines. Both compute the same constructions, so the
// frames on the wire are byte for byte the same whichever provider runs; a provider is a local choice,
// never negotiated. The handshake and all key handling stay on libsodium; OpenSSL only ever sees the
// data keys, inside EVP contexts that `OpenSSLKeyedAEAD` owns and frees (EVP_CIPHER_CTX_free(3) wipes them).
//
// `auto` picks OpenSSL only when libcrypto runs the constructions here and a known-answer self-test against
// libsodium passes at startup (`AEADProviders.select`).

import COpenSSL
import CSodium
import Synchronization

/// A library that computes the per-packet AEAD.
public enum AEADProvider: String, CaseIterable, Sendable, CustomStringConvertible {
    /// libsodium: the reference, always present.
    case libsodium
    /// OpenSSL 3's libcrypto, through EVP.
    case openssl

    public var description: String { rawValue }

    /// The library and its version ("libsodium 1.0.18", "OpenSSL 3.0.19 …").
    public var version: String {
        switch self {
        case .libsodium: return "libsodium \(Sodium.version)"
        case .openssl: return OpenSSLAEAD.version
        }
    }

    /// Whether the provider runs `suite` on this machine. libsodium is the reference: a suite it cannot run
    /// (AES-256-GCM without AES-NI) is never negotiated, so OpenSSL is asked only about suites libsodium runs.
    public func runs(_ suite: any CipherSuite.Type) -> Bool {
        guard suite.isAvailable else { return false }
        switch self {
        case .libsodium: return true
        case .openssl: return OpenSSLAEAD.cipher(for: SessionCipher.perPacketSuite(suite)) != nil
        }
    }
}

/// What the operator asked for with `--crypto-provider` (or `crypto-provider` in a config file).
public enum AEADProviderChoice: String, CaseIterable, Sendable, CustomStringConvertible {
    /// OpenSSL when it is present and passes the self-test, libsodium otherwise.
    case auto
    case libsodium
    case openssl

    public var description: String { rawValue }
}

/// The provider a process chose, and why (one line for the log).
public struct AEADProviderSelection: Sendable {
    public let provider: AEADProvider
    /// "OpenSSL 3.0.19 … (auto: self-test against libsodium passed)", for the startup log.
    public let summary: String
}

/// Why the asked-for provider cannot run.
public struct AEADProviderError: Error, CustomStringConvertible, Sendable {
    public let description: String
}

/// Choosing a provider, the self-test, and the process's default.
public enum AEADProviders {
    private static let current = Atomic<UInt8>(0)  // 0: libsodium, 1: OpenSSL

    /// The provider a `SessionCipher` uses unless told otherwise: libsodium until a daemon sets it once at
    /// startup, before any session exists (`setProcessDefault`).
    public static var processDefault: AEADProvider {
        current.load(ordering: .acquiring) == 1 ? .openssl : .libsodium
    }

    /// Sets the process's default provider (a daemon does this once, after `select`).
    public static func setProcessDefault(_ provider: AEADProvider) {
        current.store(provider == .openssl ? 1 : 0, ordering: .releasing)
    }

    /// Resolves `choice`: `libsodium` always works; `openssl` needs libcrypto's constructions and a passing
    /// self-test, or throws; `auto` takes OpenSSL only when both hold, and libsodium otherwise.
    public static func select(_ choice: AEADProviderChoice) throws(AEADProviderError) -> AEADProviderSelection {
        let sodium = AEADProvider.libsodium.version
        switch choice {
        case .libsodium:
            return AEADProviderSelection(provider: .libsodium, summary: "\(sodium) (chosen)")
        case .openssl, .auto:
            let problem: String?
            if !OpenSSLAEAD.isAvailable {
                problem = "libcrypto (\(OpenSSLAEAD.version)) does not provide ChaCha20-Poly1305"
            } else {
                problem = selfTest(.openssl)
            }
            if let problem {
                if choice == .openssl {
                    throw AEADProviderError(
                        description: "--crypto-provider openssl: \(problem); use --crypto-provider libsodium (or auto)")
                }
                return AEADProviderSelection(provider: .libsodium, summary: "\(sodium) (auto: OpenSSL not used: \(problem))")
            }
            let how = choice == .auto ? "auto: " : ""
            return AEADProviderSelection(
                provider: .openssl, summary: "\(OpenSSLAEAD.version) (\(how)self-test against libsodium passed)")
        }
    }

    /// Lengths the self-test and the tests cover: empty, around the 16- and 64-byte block edges, a full
    /// tunnel MTU and the largest frame.
    public static let testLengths = [0, 1, 15, 16, 17, 63, 64, 65, 255, 256, 1420, 1500, 8192, 65535]

    /// Known-answer self-test of `provider` against libsodium: for every suite both run, keys and nonces
    /// from a fixed pattern, each of `testLengths`, sealing must give libsodium's exact bytes, opening must
    /// return the plaintext, and a frame with one tag bit flipped must be refused. Returns nil when all
    /// pass, else what failed.
    public static func selfTest(_ provider: AEADProvider) -> String? {
        for suite in CipherSuites.all where provider.runs(suite) {
            let key = SecretBytes(count: suite.keyLength) { k in
                for i in 0..<k.count { k[i] = UInt8(truncatingIfNeeded: i &* 7 &+ Int(suite.wireID)) }
            }
            let reference = SessionCipher(suite: suite, key: key, provider: .libsodium)
            // OpenSSL itself at every length (a SessionCipher would give short texts to libsodium).
            let tested: any FrameCipher
            if provider == .openssl {
                guard let direct = reference.openSSLDirect() else { return "OpenSSL cannot key \(suite.name)" }
                tested = direct
            } else {
                tested = SessionCipher(suite: suite, key: key, provider: provider)
            }
            let ad = (0..<16).map { UInt8(truncatingIfNeeded: $0 &* 13) }
            for (i, length) in testLengths.enumerated() {
                let counter = UInt64(i) &* 0x0101_0101_0101 &+ 3
                var expected = (0..<(length + suite.tagLength)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 5) }
                var got = expected
                let ok: Bool = expected.withUnsafeMutableBytes { e in
                    got.withUnsafeMutableBytes { g in
                        ad.withUnsafeBytes { a in
                            guard let eb = e.baseAddress, let gb = g.baseAddress else { return false }
                            let n1 = reference.seal(eb, length: length, counter: counter, authenticating: a)
                            let n2 = tested.seal(gb, length: length, counter: counter, authenticating: a)
                            guard n1 == n2, memcmpEqual(eb, gb, n1) else { return false }
                            guard tested.open(gb, length: n2, counter: counter, authenticating: a) == length else { return false }
                            // Back to the sealed frame, then one tag bit flipped: both must refuse it.
                            gb.copyMemory(from: eb, byteCount: n1)
                            gb.storeBytes(of: gb.load(fromByteOffset: n1 - 1, as: UInt8.self) ^ 0x80, toByteOffset: n1 - 1, as: UInt8.self)
                            return tested.open(gb, length: n2, counter: counter, authenticating: a) == nil
                        }
                    }
                }
                if !ok { return "self-test against libsodium failed for \(suite.name) at \(length) bytes" }
            }
        }
        return nil
    }
}

/// What the self-test needs of a cipher: in-place seal and open under a counter.
protocol FrameCipher {
    func seal(_ buffer: UnsafeMutableRawPointer, length: Int, counter: UInt64, authenticating ad: UnsafeRawBufferPointer) -> Int
    func open(_ buffer: UnsafeMutableRawPointer, length: Int, counter: UInt64, authenticating ad: UnsafeRawBufferPointer) -> Int?
}

extension SessionCipher: FrameCipher {}

@inline(__always)
private func memcmpEqual(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, _ n: Int) -> Bool {
    n == 0 || sodium_memcmp(a, b, n) == 0
}

/// OpenSSL's EVP ciphers, fetched once per process.
enum OpenSSLAEAD {
    // EVP_CIPHER objects are immutable once fetched and may be shared by threads (EVP_CIPHER_fetch(3)).
    nonisolated(unsafe) private static let chacha: OpaquePointer? = EVP_CIPHER_fetch(nil, "ChaCha20-Poly1305", nil)
    nonisolated(unsafe) private static let aesGCM: OpaquePointer? = EVP_CIPHER_fetch(nil, "AES-256-GCM", nil)

    /// Whether libcrypto provides ChaCha20-Poly1305 (the construction of the default suite).
    static var isAvailable: Bool { chacha != nil }

    static var version: String { String(cString: OpenSSL_version(Int32(OPENSSL_VERSION))) }

    /// The EVP cipher for a per-packet suite (never XChaCha20-Poly1305 itself: `SessionCipher` runs it as
    /// ChaCha20-Poly1305 under the HChaCha20 subkey).
    static func cipher(for suite: any CipherSuite.Type) -> OpaquePointer? {
        if suite == ChaCha20Poly1305.self { return chacha }
        if suite == AES256GCM.self { return aesGCM }
        return nil
    }
}

/// One key in EVP contexts: a pool of contexts for sealing and one for opening, each context keyed once
/// (the key schedule is computed when a context is made, not per packet; each packet sets only its nonce).
///
/// Concurrency: a context is used by one thread at a time. A call takes a context out of its pool under the
/// pool's lock, uses it without the lock, and puts it back; when the pool is empty (more threads at once than
/// ever before) it makes a new one. So no context is shared between threads while in use, and the pools hold
/// at most as many contexts as threads that ever sealed or opened with this key concurrently (one or two on
/// the data path). Keys: each context holds the only copies OpenSSL makes of the key (its key schedule);
/// `deinit` frees every context with EVP_CIPHER_CTX_free, which wipes them. The key bytes themselves stay in
/// the `SecretBytes` that the owning `SessionCipher` holds; nothing here copies them.
final class OpenSSLKeyedAEAD: @unchecked Sendable {
    /// Shorter texts go to libsodium even when OpenSSL is the provider (same bytes): EVP's per-call setup
    /// (nonce, tag and final through the provider's parameter interface) costs more than its faster cipher
    /// saves on a TCP ACK. The crossover measured with bench/README.md's `tunvpn bench --bytes` lay between
    /// 192 and 768 bytes on a 2-core EPYC VM.
    static let minimumLength = 512

    /// An EVP_CIPHER_CTX pointer; it crosses threads only through the pools' locks, used by one at a time.
    struct Context: @unchecked Sendable { let pointer: OpaquePointer }

    private let cipher: OpaquePointer
    private let key: SecretBytes
    private let tagLength: Int32
    private let sealers = Mutex<[Context]>([])
    private let openers = Mutex<[Context]>([])

    init?(suite: any CipherSuite.Type, key: SecretBytes) {
        guard let cipher = OpenSSLAEAD.cipher(for: suite), suite.tagLength == 16 else { return nil }
        self.cipher = cipher
        self.key = key
        tagLength = Int32(suite.tagLength)
        sealers.withLock { $0.reserveCapacity(4) }
        openers.withLock { $0.reserveCapacity(4) }
    }

    deinit {
        for ctx in sealers.withLock({ $0 }) { EVP_CIPHER_CTX_free(ctx.pointer) }
        for ctx in openers.withLock({ $0 }) { EVP_CIPHER_CTX_free(ctx.pointer) }
    }

    /// A new context keyed for `encrypt`ion or decryption, or nil when OpenSSL fails.
    private func makeContext(encrypt: Bool) -> Context? {
        guard let ctx = EVP_CIPHER_CTX_new() else { return nil }
        let k = key.unsafePointer.assumingMemoryBound(to: UInt8.self)
        guard EVP_CipherInit_ex(ctx, cipher, nil, k, nil, encrypt ? 1 : 0) == 1 else {
            EVP_CIPHER_CTX_free(ctx)
            return nil
        }
        return Context(pointer: ctx)
    }

    /// Seals `input[0..<length]` into `output` (may be `input`), the tag behind it; nil when OpenSSL fails
    /// (the caller then seals with libsodium, which gives the same bytes).
    @inline(__always)
    func seal(
        nonce: UnsafeRawPointer, from input: UnsafeRawPointer, into output: UnsafeMutableRawPointer, length: Int,
        ad: UnsafeRawBufferPointer
    ) -> Int? {
        guard length <= Int(Int32.max) - 64, ad.count <= Int(Int32.max) else { return nil }
        guard let ctx = sealers.withLock({ $0.popLast() }) ?? makeContext(encrypt: true) else { return nil }
        let ok = tunvpn_evp_seal(
            ctx.pointer, nonce.assumingMemoryBound(to: UInt8.self), ad.u8, Int32(ad.count), input.assumingMemoryBound(to: UInt8.self),
            output.assumingMemoryBound(to: UInt8.self), Int32(length), tagLength)
        sealers.withLock { $0.append(ctx) }
        return ok == 1 ? length + Int(tagLength) : nil
    }

    /// Opens `input[0..<length]` (ciphertext ‖ tag) into `output` (may be `input`); the plaintext length, or
    /// nil when the tag does not verify, `length` is shorter than the tag, or OpenSSL fails.
    @inline(__always)
    func open(
        nonce: UnsafeRawPointer, from input: UnsafeRawPointer, into output: UnsafeMutableRawPointer, length: Int,
        ad: UnsafeRawBufferPointer
    ) -> Int? {
        let textLength = length - Int(tagLength)
        guard textLength >= 0, length <= Int(Int32.max) - 64, ad.count <= Int(Int32.max) else { return nil }
        guard let ctx = openers.withLock({ $0.popLast() }) ?? makeContext(encrypt: false) else { return nil }
        let ok = tunvpn_evp_open(
            ctx.pointer, nonce.assumingMemoryBound(to: UInt8.self), ad.u8, Int32(ad.count), input.assumingMemoryBound(to: UInt8.self),
            output.assumingMemoryBound(to: UInt8.self), Int32(textLength), tagLength)
        openers.withLock { $0.append(ctx) }
        return ok == 1 ? textLength : nil
    }
}
