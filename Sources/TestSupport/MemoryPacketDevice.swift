// An in-memory TUN device: tests inject the IP packets "the kernel" would hand the VPN, and read back the
// packets the VPN hands to the kernel.
//
// It keeps the `PacketDevice` contract in Engine/Devices.swift to the letter (packets at `headroom`, at
// most `batch.capacity` per read, 0 only after `close()`, `close()` wakes a blocked reader), so the engine
// cannot come to rely on anything the real TUN adapter would not do. Compare wireguard-go's tun/tuntest.

import Engine
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// A fake TUN device backed by two queues: injected packets to read, written packets to inspect.
///
/// Beyond the `PacketDevice` contract, which is silent on packets larger than the room after the headroom,
/// this fake treats such a packet as the `DatagramSocket` contract treats an oversized datagram: it copies
/// what fits and reports the length as one more than the room (`slotSize - headroom + 1`), so an engine that
/// sizes its slots wrongly sees an oversized packet rather than a silently cut one.
///
/// Concurrency: one reader and one writer may use it at once, as the contract allows; tests may inject,
/// take written packets and close from any thread.
public final class MemoryPacketDevice: PacketDevice {
    /// The interface name given at creation.
    public let name: String
    private let inbox = BlockingQueue<[UInt8]>()
    private let outbox = BlockingQueue<[UInt8]>()
    private let refuses: @Sendable ([UInt8]) -> Bool
    private let refused = Atomic<Int>(0)

    /// Makes an open device.
    /// - Parameters:
    ///   - name: the interface name to report.
    ///   - refusing: packets for which this returns `true` are refused by `writePackets(from:)`, as the kernel
    ///     refuses a malformed packet: skipped, counted in ``refusedCount``, and not in the return value.
    public init(name: String = "tun-test", refusing: @escaping @Sendable ([UInt8]) -> Bool = { _ in false }) {
        self.name = name
        self.refuses = refusing
    }

    /// Makes `packet` readable, after any packets injected before it.
    /// - Returns: `false`, dropping the packet, if the device is closed.
    @discardableResult
    public func inject(_ packet: [UInt8]) -> Bool {
        inbox.append(packet)
    }

    /// Blocks until at least one packet was injected or the device is closed, then moves up to
    /// `batch.capacity` packets into `batch`, each at `batch.slot(i) + headroom`.
    /// - Returns: the number of packets moved (also stored in `batch.count`); 0 only after `close()`.
    public func readPackets(into batch: PacketBatch, headroom: Int) throws(IOError) -> Int {
        precondition(headroom >= 0 && headroom < batch.slotSize, "headroom must leave room in the slot")
        let packets = inbox.take(max: batch.capacity)
        let room = batch.slotSize - headroom
        for (i, packet) in packets.enumerated() {
            batch.set(i, bytes: packet.prefix(room), offset: headroom)
            if packet.count > room { batch.lengths[i] = room + 1 }
        }
        batch.count = packets.count
        return packets.count
    }

    /// Records `batch.packet(i)` for `i in 0..<batch.count` as written to the kernel.
    /// - Returns: the number of packets written, leaving out refused ones.
    /// - Throws: `IOError` with `EBADF` once the device is closed, as a write on a closed descriptor fails.
    @discardableResult
    public func writePackets(from batch: PacketBatch) throws(IOError) -> Int {
        guard !inbox.isClosed else {
            throw IOError(call: "write", errno: EBADF, detail: "device \(name) is closed")
        }
        var written = 0
        for i in 0..<batch.count {
            let packet = batch.bytes(i)
            if refuses(packet) {
                refused.add(1, ordering: .relaxed)
                continue
            }
            outbox.append(packet)
            written += 1
        }
        return written
    }

    /// Closes the device: wakes a blocked reader, which then returns 0, as do later reads. Idempotent.
    public func close() {
        inbox.close()
    }

    /// Removes and returns every packet written so far, oldest first, without waiting.
    public func takeWritten() -> [[UInt8]] {
        outbox.takeAll()
    }

    /// Waits until at least `count` written packets are waiting or `timeout` passes, then removes and
    /// returns all that are waiting (which may be fewer than `count` after a timeout, or more).
    public func waitForWritten(count: Int, timeout: Duration = .seconds(5)) -> [[UInt8]] {
        outbox.wait(forCount: count, timeout: timeout)
        return outbox.takeAll()
    }

    /// Packets injected and not yet read.
    public var pendingCount: Int { inbox.count }

    /// Packets refused by `writePackets(from:)` so far.
    public var refusedCount: Int { refused.load(ordering: .relaxed) }
}
