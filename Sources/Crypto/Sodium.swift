// libsodium initialisation and the few helpers every other Crypto file needs.
//
// `sodium_init()` must run once before any other libsodium call; `Sodium.ensureInitialized()` does it
// through a lazily initialised global, which Swift guarantees runs exactly once even across threads.

import CSodium

/// Entry point to libsodium's global state.
public enum Sodium {
    private static let initResult: Int32 = sodium_init()

    /// Initialises libsodium once. Safe to call from any thread, any number of times.
    ///
    /// `sodium_init()` returns 0 on the first call, 1 when already initialised and -1 on failure; only a
    /// failure stops the program, since no cryptography can be trusted without it.
    @inline(__always)
    public static func ensureInitialized() {
        guard initResult >= 0 else { preconditionFailure("sodium_init() failed: libsodium cannot be used") }
    }

    /// The libsodium version string ("1.0.18").
    public static var version: String {
        ensureInitialized()
        return String(cString: sodium_version_string())
    }

    /// Fills `buffer` with cryptographically secure random bytes (`randombytes_buf`).
    public static func randomBytes(into buffer: UnsafeMutableRawBufferPointer) {
        ensureInitialized()
        guard let base = buffer.baseAddress, buffer.count > 0 else { return }
        randombytes_buf(base, buffer.count)
    }

    /// Constant-time equality of two equal-length byte ranges (`sodium_memcmp`); false when lengths differ.
    public static func constantTimeEqual(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
        guard a.count == b.count else { return false }
        guard let pa = a.baseAddress, let pb = b.baseAddress else { return a.count == 0 }
        return sodium_memcmp(pa, pb, a.count) == 0
    }

    /// Constant-time equality of two byte arrays.
    public static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        a.withUnsafeBytes { pa in b.withUnsafeBytes { pb in constantTimeEqual(pa, pb) } }
    }

    /// Overwrites `buffer` with zeros in a way the compiler cannot elide (`sodium_memzero`).
    public static func wipe(_ buffer: UnsafeMutableRawBufferPointer) {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return }
        sodium_memzero(base, buffer.count)
    }

    /// Wipes an array's storage in place.
    public static func wipe(_ array: inout [UInt8]) {
        array.withUnsafeMutableBytes { wipe($0) }
    }

    /// Writes `bytes` as lowercase hex, in time independent of their values (`sodium_bin2hex`, for keys),
    /// into `out`, which must hold twice `bytes.count` plus one: the byte after the hex is set to zero.
    public static func hex(_ bytes: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer) {
        precondition(out.count >= bytes.count * 2 + 1, "hex needs two bytes per byte and a terminating zero")
        guard let source = bytes.baseAddress, let base = out.baseAddress, bytes.count > 0 else { return }
        _ = sodium_bin2hex(base.assumingMemoryBound(to: CChar.self), out.count, source.assumingMemoryBound(to: UInt8.self), bytes.count)
    }
}

/// A source of random bytes, passed to the handshake so tests can make it deterministic.
public protocol RandomSource: Sendable {
    /// Fills `buffer` entirely with random bytes.
    func fill(_ buffer: UnsafeMutableRawBufferPointer)
}

extension RandomSource {
    /// A random 32-bit value (session indexes, jitter).
    public func nextUInt32() -> UInt32 {
        var value: UInt32 = 0
        withUnsafeMutableBytes(of: &value) { fill($0) }
        return value
    }
}

/// The operating system's CSPRNG through libsodium (`randombytes_buf`).
public struct SystemRandom: RandomSource {
    public init() { Sodium.ensureInitialized() }
    public func fill(_ buffer: UnsafeMutableRawBufferPointer) { Sodium.randomBytes(into: buffer) }
}
