// The two OS seams of the data path: a packet device (TUN) and a datagram socket (UDP).
//
// Both take batches from the first day (as wireguard-go's tun.Device and conn.Bind do) so that the
// Linux adapters can use recvmmsg/sendmmsg, and later offloads, without the engine changing shape.
// Platform implements them over the kernel; TestSupport implements them in memory.

import Transport

/// Why a device or socket call failed: the call's name and the errno it returned.
public struct IOError: Error, Sendable, Equatable, CustomStringConvertible {
    public var call: String
    public var errno: Int32
    public var detail: String

    public init(call: String, errno: Int32, detail: String = "") {
        self.call = call
        self.errno = errno
        self.detail = detail
    }

    public var description: String {
        detail.isEmpty ? "\(call) failed (errno \(errno))" : "\(call) failed: \(detail) (errno \(errno))"
    }
}

/// A layer-3 packet device such as a TUN interface: IP packets in, IP packets out.
///
/// Contract:
/// - `readPackets(into:headroom:)` blocks until at least one packet is available, then returns as many as
///   are ready without blocking again (up to `batch.capacity`). Packet `i` is placed at
///   `batch.slot(i) + headroom`, with `offsets[i] = headroom` and `lengths[i]` set; `batch.count` is set to
///   the number returned. It returns 0 only after `close()`.
/// - `writePackets(from:)` writes `batch.packet(i)` for `i in 0..<batch.count`. A packet the kernel refuses
///   (for example a malformed one) is skipped, not fatal; the return value counts packets written.
/// - `close()` may be called from any thread and wakes a blocked reader.
/// - One reader thread and one writer thread may use a device at the same time.
public protocol PacketDevice: AnyObject, Sendable {
    /// The interface name ("tun0").
    var name: String { get }
    func readPackets(into batch: PacketBatch, headroom: Int) throws(IOError) -> Int
    @discardableResult func writePackets(from batch: PacketBatch) throws(IOError) -> Int
    func close()
}

/// A UDP socket that moves datagrams in batches.
///
/// Contract:
/// - `receive(into:)` blocks until at least one datagram is available, then returns as many as are ready
///   (up to `batch.capacity`), each at offset 0 of its slot with `lengths[i]` and its source in
///   `endpoints[i]`; `batch.count` is set. A datagram longer than a slot is truncated, and its length is
///   reported as `slotSize + 1` so the caller can drop it as oversized. Returns 0 only after `close()`.
/// - `send(from:)` sends `batch.packet(i)` to `batch.endpoints[i]` for `i in 0..<batch.count` and returns
///   how many the kernel took. A destination the kernel refuses is skipped, not fatal.
/// - `close()` may be called from any thread and wakes a blocked receiver.
/// - One receiving thread and any number of sending threads may use a socket at the same time.
public protocol DatagramSocket: AnyObject, Sendable {
    /// The bound local endpoint.
    var localEndpoint: Endpoint { get }
    func receive(into batch: PacketBatch) throws(IOError) -> Int
    @discardableResult func send(from batch: PacketBatch) throws(IOError) -> Int
    func close()
}
