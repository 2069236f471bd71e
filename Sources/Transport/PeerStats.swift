// Per-peer traffic counters, updated lock-free by the data-path threads and read by status commands.

import Synchronization

/// Bytes and packets moved for one peer, plus when its latest handshake completed.
///
/// Concurrency: every field is atomic; writers use relaxed increments, readers get a consistent-enough
/// snapshot for display.
public final class PeerStats: Sendable {
    public let rxBytes = Atomic<UInt64>(0)
    public let txBytes = Atomic<UInt64>(0)
    public let rxPackets = Atomic<UInt64>(0)
    public let txPackets = Atomic<UInt64>(0)
    /// Wall-clock seconds since 1970 of the latest completed handshake, 0 if none.
    public let lastHandshakeWallSeconds = Atomic<UInt64>(0)

    public init() {}

    @inline(__always)
    public func received(bytes: Int) {
        rxBytes.wrappingAdd(UInt64(bytes), ordering: .relaxed)
        rxPackets.wrappingAdd(1, ordering: .relaxed)
    }

    @inline(__always)
    public func sent(bytes: Int) {
        txBytes.wrappingAdd(UInt64(bytes), ordering: .relaxed)
        txPackets.wrappingAdd(1, ordering: .relaxed)
    }
}
