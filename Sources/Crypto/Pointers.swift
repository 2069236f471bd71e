// Small pointer helpers that state the invariants the C calls rely on, instead of force unwraps.

extension UnsafeRawBufferPointer {
    /// The first byte as `UInt8`, for libsodium's `const unsigned char *` parameters. A zero-length
    /// buffer may have no base address; libsodium accepts any pointer for zero lengths, so a dangling
    /// but non-null one stands in.
    @inline(__always)
    var u8: UnsafePointer<UInt8> {
        guard let base = baseAddress else { return UnsafePointer(bitPattern: 1).unsafelyUnwrapped }
        return base.assumingMemoryBound(to: UInt8.self)
    }
}

extension UnsafeMutableRawBufferPointer {
    /// The first byte as `UInt8`, for libsodium's `unsigned char *` parameters (see the read-only twin).
    @inline(__always)
    var u8: UnsafeMutablePointer<UInt8> {
        guard let base = baseAddress else { return UnsafeMutablePointer(bitPattern: 1).unsafelyUnwrapped }
        return base.assumingMemoryBound(to: UInt8.self)
    }
}
