// Memory for secrets: private keys, chaining keys, session keys, pre-shared keys.
//
// A `SecretBytes` owns one heap allocation that is wiped with `sodium_memzero` when the last reference
// goes away, so no key outlives its use in freed memory. It is a class (not an array) so that copying a
// reference never copies the secret, and so that nothing in Swift's copy-on-write machinery leaves stray
// copies behind. Compare `apple/swift-crypto`'s SecureBytes.

import CSodium

/// A fixed-length secret that wipes itself when freed.
///
/// Concurrency: the bytes are written only while the value is being built (by its creator, before it is
/// shared); afterwards they are read-only, which makes sharing across threads safe.
public final class SecretBytes: @unchecked Sendable {
    /// Number of bytes.
    public let count: Int
    private let storage: UnsafeMutableRawPointer

    /// `count` zero bytes.
    public init(zeros count: Int) {
        precondition(count > 0, "a secret has at least one byte")
        self.count = count
        storage = UnsafeMutableRawPointer.allocate(byteCount: count, alignment: 16)
        storage.initializeMemory(as: UInt8.self, repeating: 0, count: count)
    }

    /// `count` random bytes from `random`.
    public convenience init(randomCount count: Int, using random: some RandomSource = SystemRandom()) {
        self.init(zeros: count)
        random.fill(UnsafeMutableRawBufferPointer(start: storage, count: count))
    }

    /// A copy of `bytes`. The caller remains responsible for wiping its own copy.
    public convenience init(copying bytes: UnsafeRawBufferPointer) {
        self.init(zeros: max(bytes.count, 1))
        if let base = bytes.baseAddress, bytes.count > 0 { storage.copyMemory(from: base, byteCount: bytes.count) }
    }

    /// A copy of `bytes`. The caller remains responsible for wiping its own copy.
    public convenience init(copying bytes: [UInt8]) {
        self.init(zeros: max(bytes.count, 1))
        bytes.withUnsafeBytes { if let b = $0.baseAddress { storage.copyMemory(from: b, byteCount: bytes.count) } }
    }

    /// Builds a secret by letting `body` write all of its bytes.
    public convenience init(count: Int, initializingWith body: (UnsafeMutableRawBufferPointer) throws -> Void)
        rethrows
    {
        self.init(zeros: count)
        try body(UnsafeMutableRawBufferPointer(start: storage, count: count))
    }

    deinit {
        sodium_memzero(storage, count)
        storage.deallocate()
    }

    /// Read access to the secret; the pointer must not escape `body`.
    @inline(__always)
    public func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(UnsafeRawBufferPointer(start: storage, count: count))
    }

    /// The first byte, for callers that need a raw pointer for the lifetime of `self` (the AEAD hot path).
    /// Valid only while `self` is alive.
    @inline(__always)
    public var unsafePointer: UnsafeRawPointer { UnsafeRawPointer(storage) }

    /// Constant-time comparison with another secret (`sodium_memcmp`).
    public func constantTimeEquals(_ other: SecretBytes) -> Bool {
        withUnsafeBytes { a in other.withUnsafeBytes { b in Sodium.constantTimeEqual(a, b) } }
    }

    /// True when every byte is zero, checked in constant time (`sodium_is_zero`).
    public var isAllZero: Bool { sodium_is_zero(storage, count) == 1 }
}
