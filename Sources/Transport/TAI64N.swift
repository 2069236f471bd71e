// TAI64N timestamps, as WireGuard puts in every initiation so that a replayed one is refused.
//
// 12 bytes: 8-byte big-endian TAI64 label (2^62 + seconds since 1970, leap seconds ignored as WireGuard
// does) and 4-byte big-endian nanoseconds. Big-endian makes byte order equal time order, so two stamps
// compare with a plain lexicographic comparison. The core never reads the clock: callers pass wall time in.

/// A 12-byte TAI64N timestamp.
public struct TAI64N: Comparable, Hashable, Sendable {
    public static let length = 12
    /// The encoded bytes.
    public let bytes: [UInt8]

    /// Encodes wall-clock time. Nanoseconds are rounded down to a multiple of 2^24 ns (≈ 16.8 ms), as
    /// WireGuard does, so an initiation does not reveal the sender's precise clock.
    public init(secondsSince1970 seconds: UInt64, nanoseconds: UInt32) {
        let label = (UInt64(1) << 62) &+ seconds
        let nanos = nanoseconds & ~UInt32(0xFF_FFFF)
        var b = [UInt8](repeating: 0, count: TAI64N.length)
        for i in 0..<8 { b[i] = UInt8(truncatingIfNeeded: label >> (56 - 8 * UInt64(i))) }
        for i in 0..<4 { b[8 + i] = UInt8(truncatingIfNeeded: nanos >> (24 - 8 * UInt32(i))) }
        bytes = b
    }

    /// Wraps 12 encoded bytes.
    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == TAI64N.length else { return nil }
        self.bytes = Array(bytes)
    }

    /// Seconds since 1970 encoded in the label.
    public var secondsSince1970: UInt64 {
        var label: UInt64 = 0
        for i in 0..<8 { label = label << 8 | UInt64(bytes[i]) }
        return label &- (UInt64(1) << 62)
    }

    /// Nanoseconds encoded after the label (a multiple of `granule`).
    public var nanoseconds: UInt32 {
        UInt32(bytes[8]) << 24 | UInt32(bytes[9]) << 16 | UInt32(bytes[10]) << 8 | UInt32(bytes[11])
    }

    /// The step between two encodable timestamps: 2^24 ns (nanoseconds are rounded down to it).
    public static let granule: UInt32 = 1 << 24

    /// The timestamp one granule later (the next second once the nanoseconds would reach 10^9).
    public var nextGranule: TAI64N {
        nanoseconds + TAI64N.granule < 1_000_000_000
            ? TAI64N(secondsSince1970: secondsSince1970, nanoseconds: nanoseconds + TAI64N.granule)
            : TAI64N(secondsSince1970: secondsSince1970 + 1, nanoseconds: 0)
    }

    /// This timestamp if it is later than `last` (or there is none), else the one a granule after `last`.
    /// A sender's initiations stay strictly increasing, as a responder's replay check requires, even when
    /// two fall in one granule or the wall clock steps back.
    public func after(_ last: TAI64N?) -> TAI64N {
        guard let last, !(last < self) else { return self }
        return last.nextGranule
    }

    public static func < (a: TAI64N, b: TAI64N) -> Bool { a.bytes.lexicographicallyPrecedes(b.bytes) }
}
