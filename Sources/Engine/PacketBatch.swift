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
    /// Where each slot's bytes are: slot `i`'s own place in `storage`, another slot's after `swapSlots`, or a
    /// receiver's buffer after `lend`.
    private let bases: UnsafeMutablePointer<UnsafeMutableRawPointer>
    /// True when `bases` may differ from each slot's own place (`restoreSlots` then has work to do).
    private var rearranged = false
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
        bases = .allocate(capacity: capacity)
        for i in 0..<capacity { (bases + i).initialize(to: storage + i * self.slotSize) }
    }

    deinit {
        storage.deallocate()
        offsets.deallocate()
        lengths.deallocate()
        endpoints.deallocate()
        bases.deallocate()
    }

    /// The first byte of slot `index`.
    @inline(__always)
    public func slot(_ index: Int) -> UnsafeMutableRawPointer {
        bases[index]
    }

    /// Exchanges the bytes of slots `i` and `j` without copying them (their places are swapped): how a loop
    /// moves a packet to an earlier index. Offsets, lengths and endpoints are not swapped.
    @inline(__always)
    public func swapSlots(_ i: Int, _ j: Int) {
        guard i != j else { return }
        let t = bases[i]
        bases[i] = bases[j]
        bases[j] = t
        rearranged = true
    }

    /// Makes slot `index` the `length` bytes at `bytes`, a buffer its filler owns, instead of copying them in
    /// (a receiver that reads several packets into one buffer, `UDPSocket`'s GRO path). Until the filler
    /// calls `keepLentSlots` or `restoreSlots`, the slot is only `length` bytes long: whoever uses the batch
    /// may change its packet in place but must not write past it.
    @inline(__always)
    public func lend(_ index: Int, _ bytes: UnsafeMutableRawPointer) {
        bases[index] = bytes
        rearranged = true
    }

    /// Copies the lent slots among `0..<count` into their own places (`lengths[i]` bytes from offset 0), so
    /// that the lender may reuse its buffer. Only for slots lent since the last `restoreSlots`.
    public func keepLentSlots(_ count: Int) {
        guard rearranged else { return }
        for i in 0..<count {
            let own = storage + i * slotSize
            guard bases[i] != own else { continue }
            if lengths[i] > 0 && lengths[i] <= slotSize { own.copyMemory(from: bases[i], byteCount: lengths[i]) }
            bases[i] = own
        }
    }

    /// Puts every slot back in its own place (what a filler that lends does first).
    @inline(__always)
    public func restoreSlots() {
        guard rearranged else { return }
        for i in 0..<capacity { bases[i] = storage + i * slotSize }
        rearranged = false
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
