// The Linux TUN device: `PacketDevice` over /dev/net/tun.
//
// `open(name:)` attaches to (or creates) a layer-3 TUN interface with IFF_TUN|IFF_NO_PI, so every
// read and write is exactly one IP packet with no prefix (Documentation/networking/tuntap.rst).
// `configure(address:mtu:)` sets the IPv4 address, netmask and MTU and brings the link up with the
// classic SIOCSIF* ioctls on an AF_INET datagram socket, so no `ip` command is needed.
//
// The descriptor is non-blocking: a reader blocks in poll(2) on it and on the close eventfd of
// `ClosableDescriptor`, then drains what is ready with read(2) until EAGAIN. A writer waits for
// POLLOUT on EAGAIN instead of dropping. Nothing is allocated per packet or per batch.

import CLinux
import Engine
import Glibc
import Routing
import Synchronization
import Transport

/// Counters kept by a `TunDevice`; a snapshot, readable from any thread through `TunDevice.stats`.
public struct TunDeviceStats: Sendable, Equatable {
    /// Packets longer than their slot (minus headroom); reported with length `room + 1`, per the
    /// oversized-packet convention of `DatagramSocket`.
    public var truncatedReads: Int = 0
    /// Packets the kernel refused on write(2) (EINVAL, EIO, EMSGSIZE, ENOMEM, ENOBUFS) and skipped.
    public var rejectedWrites: Int = 0
    /// Batch entries skipped because their offset or length did not fit their slot, or were empty.
    public var invalidWrites: Int = 0
    /// Times a writer found the device queue full (EAGAIN) and waited in poll(2) for POLLOUT.
    public var writeWaits: Int = 0
    /// TCP or UDP super-packets (IPv4 or IPv6) read and split into segments (offloads on).
    public var segmentedReads: Int = 0
    /// Writes that merged several TCP segments or UDP datagrams into one super-packet (offloads on).
    public var mergedWrites: Int = 0
    /// Super-packets read and dropped because they cannot be split: a GSO type this adapter does not
    /// split, a gso_size of 0, or headers that are not what the GSO type says (an IPv4 or IPv6 header
    /// that does not fit, a payload length that disagrees with the read, IPv6 extension headers).
    public var droppedSuperPackets: Int = 0

    public init() {}
}

/// A Linux TUN interface (IFF_TUN | IFF_NO_PI) opened through /dev/net/tun.
///
/// Reads use read(2) on a non-blocking descriptor after poll(2); writes use write(2), one packet per
/// call (TUN has no batched write without IFF_VNET_HDR offloads). A packet longer than its slot is
/// reported with length `slotSize - headroom + 1` (see `TunDeviceStats.truncatedReads`); packets the
/// engine does not route (the IPv6 router solicitations the kernel sends on link-up) are returned as
/// read: the engine decides what to drop.
///
/// Concurrency: one reader thread and one writer thread may use the device at the same time, and any
/// thread may call `close()` or read `stats`.
public final class TunDevice: PacketDevice {
    /// The path of the TUN clone device.
    public static let cloneDevicePath = "/dev/net/tun"

    /// The interface name the kernel gave the device (the requested one unless it held "%d").
    public let name: String

    private let io: ClosableDescriptor
    /// One byte behind each read's slot: read(2) fills it only for a packet that does not fit, which
    /// is how truncation is detected without trusting the kernel's return value alone. Written only
    /// by the reader thread and never read.
    private nonisolated(unsafe) let overflowByte: UnsafeMutablePointer<UInt8>

    /// True when the device was opened with IFF_VNET_HDR: every read and write carries a virtio_net_hdr.
    public let usesVirtioHeader: Bool
    /// True when the kernel accepted TUNSETOFFLOAD(CSUM | TSO4 | TSO6): reads may be TCP super-packets
    /// over IPv4 or IPv6, and writes merge TCP runs of either family.
    public let offloadsEnabled: Bool
    /// True when it also accepted TUN_F_USO4 | TUN_F_USO6: UDP super-packets of either family both ways.
    public let udpOffloadEnabled: Bool
    /// Reader-only state for virtio reads: one buffer for a whole super-packet, and the segmentation
    /// cursor when a super-packet has more segments than the caller's batch had room for.
    private nonisolated(unsafe) let superBuffer: UnsafeMutableRawPointer
    private nonisolated(unsafe) var pendingSegments: (length: Int, ip: Int, tcp: Int, mss: Int, next: Int, udp: Bool)?
    /// Writer-only state: virtio headers and the iovec array for merged writes.
    private nonisolated(unsafe) let writeHeaders: UnsafeMutableRawPointer
    private nonisolated(unsafe) let writeVectors: UnsafeMutablePointer<iovec>
    /// Largest IPv4 packet (its total-length field's limit); a merged write of either family grows no
    /// larger, and a read super-packet larger than this is one the reader cannot split (`superBufferSize`
    /// holds one byte more, so such a read is seen, not cut short).
    static let maxPacketLength = 65535
    static let superBufferSize = VirtioNetHeader.length + maxPacketLength + 1
    static let maxMerge = 64

    private let truncatedReads = Atomic<Int>(0)
    private let mergedWrites = Atomic<Int>(0)
    private let segmentedReads = Atomic<Int>(0)
    private let droppedSuperPackets = Atomic<Int>(0)
    private let rejectedWrites = Atomic<Int>(0)
    private let invalidWrites = Atomic<Int>(0)
    private let writeWaits = Atomic<Int>(0)

    private init(name: String, io: ClosableDescriptor, virtioHeader: Bool, offloads: Bool, udpOffloads: Bool) {
        self.name = name
        self.io = io
        usesVirtioHeader = virtioHeader
        offloadsEnabled = offloads
        udpOffloadEnabled = udpOffloads
        overflowByte = .allocate(capacity: 1)
        overflowByte.initialize(to: 0)
        superBuffer = .allocate(byteCount: virtioHeader ? Self.superBufferSize : 1, alignment: 16)
        writeHeaders = .allocate(byteCount: VirtioNetHeader.length * 2, alignment: 8)
        writeHeaders.initializeMemory(as: UInt8.self, repeating: 0, count: VirtioNetHeader.length * 2)
        writeVectors = .allocate(capacity: Self.maxMerge + 1)
    }

    deinit {
        overflowByte.deallocate()
        superBuffer.deallocate()
        writeHeaders.deallocate()
        writeVectors.deallocate()
    }

    /// Opens /dev/net/tun (open(2) with O_RDWR | O_CLOEXEC | O_NONBLOCK) and attaches it to the TUN
    /// interface `name` with ioctl(TUNSETIFF, IFF_TUN | IFF_NO_PI), creating the interface if it does
    /// not exist. A persistent device made beforehand (`ip tuntap add dev NAME mode tun`) is reused.
    ///
    /// - Parameter name: 1 to 15 bytes, no '/', ':' or white space, not "." or ".."; a "%d" in it lets
    ///   the kernel pick a number (read the result from `name`).
    /// - Throws: `TunError` with a one-line operator message.
    /// - Parameter offload: also ask for IFF_VNET_HDR with TCP segmentation offload (TUNSETOFFLOAD with
    ///   TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6, plus TUN_F_USO4 | TUN_F_USO6 where the kernel has them):
    ///   the device then reads and writes TCP (and UDP) super-packets over IPv4 and IPv6, which this
    ///   adapter splits and merges, so callers still see one IP packet per slot. If the kernel refuses the
    ///   offload flags, the device still works (with per-packet virtio headers).
    public static func open(name: String, offload: Bool = false) throws(TunError) -> TunDevice {
        if let reason = invalidNameReason(name) { throw TunError.invalidName(name, reason: reason) }

        let fd: Int32
        switch Syscall.run("open", { Glibc.open(cloneDevicePath, O_RDWR | O_CLOEXEC | O_NONBLOCK) }) {
        case .success(let opened):
            fd = opened
        case .failure(let code):
            switch code.rawValue {
            case ENOENT, ENODEV, ENXIO: throw TunError.tunModuleMissing(path: cloneDevicePath)
            case EPERM, EACCES: throw TunError.permissionDenied(device: name, call: "open \(cloneDevicePath)")
            default: throw TunError.systemCallFailed(device: name, IOError("open", code))
            }
        }

        var request = InterfaceRequest(name: name)
        request.flags = Int16(CLINUX_IFF_TUN | CLINUX_IFF_NO_PI | (offload ? CLINUX_IFF_VNET_HDR : 0))
        switch Syscall.run("ioctl(TUNSETIFF)", { request.ioctl(fd, clinux_TUNSETIFF()) }) {
        case .success:
            break
        case .failure(let code):
            Syscall.close(fd)
            switch code.rawValue {
            case EBUSY: throw TunError.deviceBusy(device: name)
            case EPERM, EACCES: throw TunError.permissionDenied(device: name, call: "TUNSETIFF")
            case EINVAL: throw TunError.notATunDevice(device: name)
            default: throw TunError.systemCallFailed(device: name, IOError("ioctl(TUNSETIFF)", code))
            }
        }

        var offloads = false
        var udpOffloads = false
        if offload {
            // The header size is 10 by default; set it anyway, then probe the offloads, UDP segmentation
            // (Linux 6.2+) first (a kernel that refuses them all still gives us headers, with no GSO in them).
            // The kernel takes USO only as the pair USO4 | USO6 (either alone is EINVAL); both families are
            // split on read and merged on write, for TCP and UDP alike.
            _ = clinux_tun_set_vnet_hdr_size(fd, Int32(VirtioNetHeader.length))
            let tcp = UInt32(CLINUX_TUN_F_CSUM | CLINUX_TUN_F_TSO4 | CLINUX_TUN_F_TSO6)
            if clinux_tun_set_offload(fd, tcp | UInt32(CLINUX_TUN_F_USO4 | CLINUX_TUN_F_USO6)) == 0 {
                offloads = true
                udpOffloads = true
            } else {
                offloads = clinux_tun_set_offload(fd, tcp) == 0
            }
        }
        let io: ClosableDescriptor
        do {
            io = try ClosableDescriptor(owning: fd)
        } catch {
            throw TunError.systemCallFailed(device: name, error)
        }
        return TunDevice(name: request.name, io: io, virtioHeader: offload, offloads: offloads, udpOffloads: udpOffloads)
    }

    /// The state of the interface `name` (SIOCGIFMTU, SIOCGIFTXQLEN, SIOCGIFFLAGS, SIOCGIFADDR and
    /// SIOCGIFNETMASK on an AF_INET socket), or nil when there is no such interface here. Read before
    /// `open` to tell a pre-created persistent device (found, and then opened) from one `open` creates.
    public static func foundState(of name: String) -> FoundDevice? {
        guard invalidNameReason(name) == nil else { return nil }
        let control = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard control >= 0 else { return nil }
        defer { Syscall.close(control) }
        var request = InterfaceRequest(name: name)
        guard request.ioctl(control, UInt(SIOCGIFMTU)) == 0 else { return nil }
        let mtu = Int(request.mtu)
        request = InterfaceRequest(name: name)
        guard request.ioctl(control, UInt(SIOCGIFTXQLEN)) == 0 else { return nil }
        let queueLength = Int(request.queueLength)
        request = InterfaceRequest(name: name)
        guard request.ioctl(control, UInt(SIOCGIFFLAGS)) == 0 else { return nil }
        let isUp = Int32(request.flags) & Int32(IFF_UP) != 0
        var address: String? = nil
        request = InterfaceRequest(name: name)
        if request.ioctl(control, UInt(SIOCGIFADDR)) == 0 {  // EADDRNOTAVAIL: no IPv4 address
            let host = request.ipv4Address
            request = InterfaceRequest(name: name)
            if request.ioctl(control, UInt(SIOCGIFNETMASK)) == 0 {
                address = "\(host)/\(request.ipv4Address.value.nonzeroBitCount)"
            }
        }
        return FoundDevice(mtu: mtu, transmitQueueLength: queueLength, isUp: isUp, address: address)
    }

    /// Why `name` cannot be an interface name, or nil if it can (the kernel's dev_valid_name()).
    public static func invalidNameReason(_ name: String) -> String? {
        let bytes = name.utf8
        if bytes.isEmpty { return "the name is empty" }
        if bytes.count >= Int(IFNAMSIZ) { return "it is \(bytes.count) bytes long, the limit is \(Int(IFNAMSIZ) - 1)" }
        if name == "." || name == ".." { return "\".\" and \"..\" are reserved" }
        let forbidden: Set<UInt8> = [0, UInt8(ascii: "/"), UInt8(ascii: ":"), 0x20, 0x09, 0x0a, 0x0b, 0x0c, 0x0d]
        if bytes.contains(where: forbidden.contains) { return "it contains '/', ':', white space or NUL" }
        return nil
    }

    /// Sets the interface's IPv4 address and netmask (ioctl SIOCSIFADDR, SIOCSIFNETMASK), its MTU
    /// (SIOCSIFMTU) and brings it up (SIOCGIFFLAGS, then SIOCSIFFLAGS with IFF_UP), all through an
    /// AF_INET datagram socket (socket(2)). Needs CAP_NET_ADMIN.
    ///
    /// - Parameters:
    ///   - address: the interface address and prefix length ("10.8.0.1/24" gives a 10.8.0.0/24 route).
    ///   - mtu: 68...65535.
    ///   - transmitQueueLength: packets the kernel holds for the reader before it drops (SIOCSIFTXQLEN;
    ///     a TUN device's ring has this many slots, 500 unless set); nil leaves it as it is.
    public func configure(address: IPv4Prefix, mtu: Int, transmitQueueLength: Int? = nil) throws(TunError) {
        guard (68...65535).contains(mtu) else { throw TunError.invalidMTU(device: name, mtu: mtu) }
        if let length = transmitQueueLength {
            precondition(length > 0 && length <= Int(Int32.max), "a transmit queue length is checked by the caller")
        }
        let socketType = Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        let control: Int32
        do {
            control = try Syscall.check("socket") { socket(AF_INET, socketType, 0) }
        } catch {
            throw TunError.systemCallFailed(device: name, error)
        }
        defer { Syscall.close(control) }

        var request = InterfaceRequest(name: name)
        request.mtu = Int32(mtu)
        try configureStep(control, SIOCSIFMTU, "SIOCSIFMTU", &request)

        if let length = transmitQueueLength {
            request = InterfaceRequest(name: name)
            request.queueLength = Int32(length)
            try configureStep(control, SIOCSIFTXQLEN, "SIOCSIFTXQLEN", &request)
        }

        request = InterfaceRequest(name: name)
        request.ipv4Address = address.address
        try configureStep(control, SIOCSIFADDR, "SIOCSIFADDR", &request)

        request = InterfaceRequest(name: name)
        request.ipv4Address = IPv4Address(address.mask)
        try configureStep(control, SIOCSIFNETMASK, "SIOCSIFNETMASK", &request)

        request = InterfaceRequest(name: name)
        try configureStep(control, SIOCGIFFLAGS, "SIOCGIFFLAGS", &request)
        request.flags |= Int16(IFF_UP)
        try configureStep(control, SIOCSIFFLAGS, "SIOCSIFFLAGS", &request)
    }

    private func configureStep(
        _ control: Int32, _ number: Int32, _ call: String, _ request: inout InterfaceRequest
    ) throws(TunError) {
        switch Syscall.run("ioctl", { request.ioctl(control, UInt(number)) }) {
        case .success:
            return
        case .failure(let code):
            if code.rawValue == EPERM || code.rawValue == EACCES {
                throw TunError.configurationDenied(device: name, call: call)
            }
            throw TunError.systemCallFailed(
                device: name, IOError(call: "ioctl(\(call))", errno: code.rawValue, detail: code.message))
        }
    }

    /// Reads packets with read(2)/readv(2), blocking in poll(2) until the first one, then draining
    /// without blocking until EAGAIN or `batch.capacity`. See `PacketDevice` for the contract.
    ///
    /// - Parameter headroom: bytes left free in front of each packet; must leave room in the slot.
    /// - Returns: the number of packets, 0 only after `close()`.
    /// - Throws: `IOError` if the first read fails (for example EBADFD once the interface was deleted).
    ///   A failure after the first packet ends the batch; it recurs, and is thrown, on the next call.
    public func readPackets(into batch: PacketBatch, headroom: Int) throws(IOError) -> Int {
        precondition(headroom >= 0 && headroom < batch.slotSize, "headroom must leave room for a packet in the slot")
        batch.count = 0
        guard io.enter() else { return 0 }
        defer { io.leave() }

        if usesVirtioHeader { return try readVirtio(into: batch, headroom: headroom) }
        var count = 0
        while count == 0 {
            switch readOne(into: batch, index: 0, headroom: headroom) {
            case .success:
                count = 1
            case .failure(let code) where code.isWouldBlock:
                if try io.wait(for: Int16(POLLIN)) == .closed { return 0 }
            case .failure(let code):
                throw IOError("read", code)
            }
        }
        drain: while count < batch.capacity {
            switch readOne(into: batch, index: count, headroom: headroom) {
            case .success: count += 1
            case .failure: break drain  // EAGAIN ends the batch; anything else is thrown next time
            }
        }
        batch.count = count
        return count
    }

    /// Reads with virtio headers: each read(2) may be a TCP or UDP super-packet (IPv4 or IPv6), split into
    /// MSS-sized packets, one per slot; a packet waiting for its checksum (NEEDS_CSUM) gets it. A
    /// super-packet that cannot be split is dropped and counted (`TunDeviceStats.droppedSuperPackets`).
    private func readVirtio(into batch: PacketBatch, headroom: Int) throws(IOError) -> Int {
        let room = batch.slotSize - headroom
        var count = 0
        let packet = superBuffer + VirtioNetHeader.length
        while count < batch.capacity {
            if let p = pendingSegments {
                // Continue a super-packet that did not fit the previous batch.
                var next = p.next
                while count < batch.capacity {
                    guard p.tcp + p.ip + p.mss <= room else {
                        truncatedReads.wrappingAdd(1, ordering: .relaxed)
                        batch.offsets[count] = headroom
                        batch.lengths[count] = room + 1
                        count += 1
                        next = Int.max
                        break
                    }
                    let n = p.udp
                        ? UDPSegmentation.segment(
                            packet, length: p.length, ipHeader: p.ip, size: p.mss, index: next, into: batch.slot(count) + headroom)
                        : TCPSegmentation.segment(
                            packet, length: p.length, ipHeader: p.ip, tcpHeader: p.tcp, mss: p.mss, index: next,
                            into: batch.slot(count) + headroom)
                    if n == 0 {
                        next = Int.max
                        break
                    }
                    batch.offsets[count] = headroom
                    batch.lengths[count] = n
                    count += 1
                    next += 1
                }
                pendingSegments = next == Int.max ? nil : (p.length, p.ip, p.tcp, p.mss, next, p.udp)
                if pendingSegments != nil { break }
                continue
            }
            let result = Syscall.run("read") { read(io.fd, superBuffer, Self.superBufferSize) }
            let total: Int
            switch result {
            case .success(let n): total = n
            case .failure(let code) where code.isWouldBlock:
                if count > 0 { batch.count = count; return count }
                if try io.wait(for: Int16(POLLIN)) == .closed { return 0 }
                continue
            case .failure(let code):
                if count > 0 { batch.count = count; return count }
                throw IOError("read", code)
            }
            guard total > VirtioNetHeader.length else { continue }
            let header = VirtioNetHeader(reading: superBuffer)
            let length = total - VirtioNetHeader.length
            if header.gsoType & ~VirtioNetHeader.gsoECN != 0 {
                if let split = Self.splitPlan(header, packet, length: length) {
                    segmentedReads.wrappingAdd(1, ordering: .relaxed)
                    pendingSegments = (length, split.ip, split.transport, Int(header.gsoSize), 0, split.udp)
                } else {
                    droppedSuperPackets.wrappingAdd(1, ordering: .relaxed)
                }
                continue
            }
            if header.flags & VirtioNetHeader.needsChecksum != 0 {
                _ = InternetChecksum.completePartial(
                    packet, length: length, start: Int(header.checksumStart), offset: Int(header.checksumOffset))
            }
            batch.offsets[count] = headroom
            if length > room {
                truncatedReads.wrappingAdd(1, ordering: .relaxed)
                batch.lengths[count] = room + 1
            } else {
                (batch.slot(count) + headroom).copyMemory(from: packet, byteCount: length)
                batch.lengths[count] = length
            }
            count += 1
        }
        batch.count = count
        return count
    }

    /// How to split the super-packet `packet` (`length` bytes, after `header`): its IP and transport
    /// header lengths and whether it is UDP; nil when it cannot be split. The GSO type names the family
    /// for TCP (TCPV4 or TCPV6) and the packet's version does for UDP_L4; either way the packet must be
    /// TCP or UDP directly behind its IP header (no IPv6 extension headers), with a read no longer than
    /// `maxPacketLength` and, for IPv6, a payload length that agrees with the read.
    @inline(__always)
    static func splitPlan(_ header: VirtioNetHeader, _ packet: UnsafeRawPointer, length: Int) -> (ip: Int, transport: Int, udp: Bool)? {
        guard header.gsoSize > 0, length <= maxPacketLength else { return nil }
        switch header.gsoType & ~VirtioNetHeader.gsoECN {
        case VirtioNetHeader.gsoTCPv4:
            guard let h = TCPSegmentation.headers(packet, length: length) else { return nil }
            return (h.ip, h.tcp, false)
        case VirtioNetHeader.gsoTCPv6:
            guard let h = TCPSegmentation.ipv6Headers(packet, length: length) else { return nil }
            return (h.ip, h.tcp, false)
        case UDPSegmentation.gsoUDPL4 where header.gsoType == UDPSegmentation.gsoUDPL4:
            guard let ip = UDPSegmentation.anyIPHeader(packet, length: length) else { return nil }
            return (ip, 8, true)
        default:
            return nil
        }
    }

    /// readv(2) of one packet into slot `index`, with `overflowByte` as a second iovec to detect a
    /// packet that does not fit.
    @inline(__always)
    private func readOne(into batch: PacketBatch, index: Int, headroom: Int) -> Result<Int, Errno> {
        let room = batch.slotSize - headroom
        var vectors = (
            iovec(iov_base: batch.slot(index) + headroom, iov_len: room),
            iovec(iov_base: UnsafeMutableRawPointer(overflowByte), iov_len: 1)
        )
        let result = Syscall.run("readv") {
            withUnsafeMutableBytes(of: &vectors) { raw in
                readv(io.fd, raw.baseAddress?.assumingMemoryBound(to: iovec.self), 2)
            }
        }
        guard case .success(let length) = result else { return result }
        batch.offsets[index] = headroom
        if length > room {
            truncatedReads.wrappingAdd(1, ordering: .relaxed)
            batch.lengths[index] = room + 1
        } else {
            batch.lengths[index] = length
        }
        return .success(length)
    }

    /// Writes `batch.packet(i)` for each `i in 0..<batch.count` with writev(2), one packet per call, or,
    /// with offloads on, one merged run of consecutive segments of a TCP or UDP flow per call (a virtio
    /// header in front, as GRO would build it) so the kernel's receive path handles one large packet.
    ///
    /// A packet the kernel refuses (EINVAL, EIO, EMSGSIZE, ENOMEM, ENOBUFS) or whose offset and length
    /// do not fit its slot is skipped and counted in `stats`. On EAGAIN the writer waits in poll(2)
    /// for POLLOUT and retries the same packet, so nothing is lost under load.
    ///
    /// - Returns: the number of packets written; after `close()`, those written before it (0 if the
    ///   device was already closed).
    /// - Throws: `IOError` for a failure that is not about one packet (EBADFD: the interface is gone).
    @discardableResult
    public func writePackets(from batch: PacketBatch) throws(IOError) -> Int {
        guard io.enter() else { return 0 }
        defer { io.leave() }

        var written = 0
        var index = 0
        while index < batch.count {
            guard let (first, length) = Self.packet(batch, index) else {
                invalidWrites.wrappingAdd(1, ordering: .relaxed)
                index += 1
                continue
            }
            // With virtio headers, vector 0 is the header: all zero (no offload for this packet) unless a
            // run builder below rewrites it for a merged run.
            var vectors = 0
            if usesVirtioHeader {
                writeVectors[0] = iovec(iov_base: writeHeaders, iov_len: VirtioNetHeader.length)
                vectors = 1
            }
            writeVectors[vectors] = iovec(iov_base: first, iov_len: length)
            vectors += 1
            var end = index + 1
            if offloadsEnabled, let h = TCPSegmentation.anyHeaders(first, length: length),
                TCPSegmentation.canStartRun(first, h, length: length),
                first.load(fromByteOffset: h.ip + 13, as: UInt8.self) & TCPSegmentation.tcpPSH == 0
            {
                end = collectTCPRun(batch, from: index, first: first, length: length, headers: h, vectors: &vectors)
            } else if udpOffloadEnabled, UDPSegmentation.mergeable(first, length: length),
                length > UDPSegmentation.mergeHeaderLength(first)
            {
                end = collectUDPRun(batch, from: index, first: first, length: length, vectors: &vectors)
            }
            switch try writeRun(vectors: vectors) {
            case .written: written += end - index
            case .refused: rejectedWrites.wrappingAdd(end - index, ordering: .relaxed)
            case .closed: return written
            }
            index = end
        }
        return written
    }

    /// Batch entry `index` as a pointer and length, or nil if its offset and length do not fit its slot.
    @inline(__always)
    private static func packet(_ batch: PacketBatch, _ index: Int) -> (UnsafeMutableRawPointer, Int)? {
        let offset = batch.offsets[index]
        let length = batch.lengths[index]
        guard offset >= 0, length > 0, length <= batch.slotSize - offset else { return nil }
        return (batch.slot(index) + offset, length)
    }

    /// Extends a write that starts with TCP segment `first` (entry `index`, already in `writeVectors`)
    /// with the payloads of the entries after it that continue its flow in sequence, as GRO would
    /// (wireguard-go's tcpGRO): at most `maxMerge` segments and `maxPacketLength` bytes, none with more
    /// payload than the first, and the run ends after a short segment or one with PSH. If more than one
    /// segment joined, `first` becomes the head of a TCP super-packet and vector 0 its virtio header.
    ///
    /// - Returns: the index after the run's last entry.
    @inline(__always)
    private func collectTCPRun(
        _ batch: PacketBatch, from index: Int, first: UnsafeMutableRawPointer, length: Int,
        headers h: (ip: Int, tcp: Int), vectors: inout Int
    ) -> Int {
        let headerLength = h.ip + h.tcp
        let mss = length - headerLength
        var total = length
        var expected = UInt32(bigEndian: first.loadUnaligned(fromByteOffset: h.ip + 4, as: UInt32.self)) &+ UInt32(mss)
        var push = false
        var end = index + 1
        while end < batch.count && end - index < Self.maxMerge {
            guard let (next, l) = Self.packet(batch, end), let nh = TCPSegmentation.anyHeaders(next, length: l) else { break }
            let payload = l - headerLength
            guard payload > 0, payload <= mss, total + payload <= Self.maxPacketLength,
                TCPSegmentation.canFollow(first, h, next, nh, expectedSequence: expected)
            else { break }
            writeVectors[vectors] = iovec(iov_base: next + headerLength, iov_len: payload)
            vectors += 1
            total += payload
            expected &+= UInt32(payload)
            end += 1
            if next.load(fromByteOffset: h.ip + 13, as: UInt8.self) & TCPSegmentation.tcpPSH != 0 {
                push = true
                break
            }
            if payload < mss { break }
        }
        if end - index > 1 {
            let header = TCPSegmentation.finishMerge(first, headers: h, totalLength: total, mss: mss, pushLast: push)
            useMergeHeader(header)
        }
        return end
    }

    /// Extends a write that starts with UDP datagram `first` (entry `index`, already in `writeVectors`)
    /// with the payloads of the entries after it in the same flow (wireguard-go's udpGRO): all of the
    /// first one's size but the last, which may be shorter, at most `maxMerge` datagrams and
    /// `maxPacketLength` bytes. If more than one joined, `first` becomes the head of a UDP super-packet
    /// and vector 0 its virtio header.
    ///
    /// - Returns: the index after the run's last entry.
    @inline(__always)
    private func collectUDPRun(
        _ batch: PacketBatch, from index: Int, first: UnsafeMutableRawPointer, length: Int, vectors: inout Int
    ) -> Int {
        let headerLength = UDPSegmentation.mergeHeaderLength(first)
        let size = length - headerLength
        var total = length
        var end = index + 1
        while end < batch.count && end - index < Self.maxMerge {
            guard let (next, l) = Self.packet(batch, end), l > headerLength else { break }
            let payload = l - headerLength
            guard payload <= size, total + payload <= Self.maxPacketLength, UDPSegmentation.mergeable(next, length: l),
                UDPSegmentation.canFollow(first, next)
            else { break }
            writeVectors[vectors] = iovec(iov_base: next + headerLength, iov_len: payload)
            vectors += 1
            total += payload
            end += 1
            if payload < size { break }
        }
        if end - index > 1 {
            useMergeHeader(UDPSegmentation.finishMerge(first, totalLength: total, size: size))
        }
        return end
    }

    /// Makes `header` the virtio header of the write being built (vector 0) and counts the merge.
    @inline(__always)
    private func useMergeHeader(_ header: VirtioNetHeader) {
        let mergeHeader = writeHeaders + VirtioNetHeader.length
        header.write(to: mergeHeader)
        writeVectors[0] = iovec(iov_base: mergeHeader, iov_len: VirtioNetHeader.length)
        mergedWrites.wrappingAdd(1, ordering: .relaxed)
    }

    /// What became of one writev(2) of a packet or merged run.
    private enum RunOutcome {
        case written
        /// The kernel refused this packet or run (`refusesOnePacket`).
        case refused
        /// The device was closed while waiting for room.
        case closed
    }

    /// Writes `writeVectors[0..<vectors]` with one writev(2). On EAGAIN it waits in poll(2) for POLLOUT
    /// and retries the very same vectors (a merged run's head has already been rewritten).
    ///
    /// - Throws: `IOError` for a failure that is not about this packet.
    @inline(__always)
    private func writeRun(vectors: Int) throws(IOError) -> RunOutcome {
        let count = Int32(vectors)
        while true {
            switch Syscall.run("writev", { writev(io.fd, writeVectors, count) }) {
            case .success:
                return .written
            case .failure(let code) where code.isWouldBlock:
                writeWaits.wrappingAdd(1, ordering: .relaxed)
                if try io.wait(for: Int16(POLLOUT)) == .closed { return .closed }
            case .failure(let code) where Self.refusesOnePacket(code):
                return .refused
            case .failure(let code):
                throw IOError("writev", code)
            }
        }
    }

    /// Errors of write(2) on a TUN descriptor that concern one packet, not the device.
    private static func refusesOnePacket(_ code: Errno) -> Bool {
        switch code.rawValue {
        case EINVAL, EIO, EMSGSIZE, ENOMEM, ENOBUFS: return true
        default: return false
        }
    }

    /// Closes the device: wakes a blocked reader or writer (which then return), and closes the
    /// descriptor once they have left (close(2)); a non-persistent interface then disappears.
    /// Idempotent and callable from any thread.
    public func close() {
        io.close()
    }

    /// A snapshot of the counters (relaxed atomic loads).
    public var stats: TunDeviceStats {
        var stats = TunDeviceStats()
        stats.truncatedReads = truncatedReads.load(ordering: .relaxed)
        stats.rejectedWrites = rejectedWrites.load(ordering: .relaxed)
        stats.invalidWrites = invalidWrites.load(ordering: .relaxed)
        stats.writeWaits = writeWaits.load(ordering: .relaxed)
        stats.segmentedReads = segmentedReads.load(ordering: .relaxed)
        stats.mergedWrites = mergedWrites.load(ordering: .relaxed)
        stats.droppedSuperPackets = droppedSuperPackets.load(ordering: .relaxed)
        return stats
    }
}
