// Preallocated packet slots that every device call fills or drains in batches.
//
// The data path allocates nothing per packet: each loop owns a few `PacketBatch`es made at start and
// reuses them for the life of the process. A slot has room for headroom (so a frame header can be
// written in front of a TUN packet without copying), the largest packet, and the AEAD tag behind it.

import Transport

/// A fixed number of fixed-size packet slots in one aligned allocation.
///
/// Each slot `i` holds one packet at `offsets[i]` of length `lengths[i]`; datagram slots also carry the
/// remote `endpoints[i]` (the source after a receive, the destination for a send).
///
/// Concurrency: not thread-safe. A batch belongs to one thread at a time; it is `Sendable` only so a
/// loop can be handed its batches when it starts.
public final class PacketBatch: @unchecked Sendable {
    /// Number of slots.
    public let capacity: Int
    /// Bytes per slot.
    public let slotSize: Int
    /// Packets currently held (slots `0..<count`).
    public var count: Int = 0

    private let storage: UnsafeMutableRawPointer
    /// Start of each packet within its slot.
    public let offsets: UnsafeMutablePointer<Int>
    /// Length of each packet.
    public let lengths: UnsafeMutablePointer<Int>
    /// Remote endpoint of each datagram.
    public let endpoints: UnsafeMutablePointer<Endpoint>

    /// Makes `capacity` slots of `slotSize` bytes each, zero-filled.
    public init(capacity: Int, slotSize: Int) {
        precondition(capacity > 0 && slotSize > 0, "a batch needs at least one slot of at least one byte")
        self.capacity = capacity
        // Round slots to a cache line so neighbouring packets never share one.
        self.slotSize = (slotSize + 63) & ~63
        storage = UnsafeMutableRawPointer.allocate(byteCount: capacity * self.slotSize, alignment: 64)
        storage.initializeMemory(as: UInt8.self, repeating: 0, count: capacity * self.slotSize)
        offsets = .allocate(capacity: capacity)
        offsets.initialize(repeating: 0, count: capacity)
        lengths = .allocate(capacity: capacity)
        lengths.initialize(repeating: 0, count: capacity)
        endpoints = .allocate(capacity: capacity)
        endpoints.initialize(repeating: .none, count: capacity)
    }

    deinit {
        storage.deallocate()
        offsets.deallocate()
        lengths.deallocate()
        endpoints.deallocate()
    }

    /// The first byte of slot `index`.
    @inline(__always)
    public func slot(_ index: Int) -> UnsafeMutableRawPointer {
        storage + index * slotSize
    }

    /// The packet held in slot `index` (`offsets[index]`, `lengths[index]`).
    @inline(__always)
    public func packet(_ index: Int) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: slot(index) + offsets[index], count: lengths[index])
    }

    /// Replaces slot `index`'s packet with a copy of `bytes` placed at `offset` (tests and control messages).
    public func set(_ index: Int, bytes: some Collection<UInt8>, offset: Int = 0, endpoint: Endpoint = .none) {
        precondition(offset + bytes.count <= slotSize, "packet does not fit its slot")
        let start = slot(index) + offset
        var i = 0
        for b in bytes {
            start.storeBytes(of: b, toByteOffset: i, as: UInt8.self)
            i += 1
        }
        offsets[index] = offset
        lengths[index] = bytes.count
        endpoints[index] = endpoint
    }

    /// A copy of slot `index`'s packet (tests and diagnostics only; the data path never copies).
    public func bytes(_ index: Int) -> [UInt8] {
        Array(UnsafeRawBufferPointer(packet(index)))
    }
}
