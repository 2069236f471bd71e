// The Linux UDP socket: `DatagramSocket` over an AF_INET or AF_INET6 datagram socket with
// recvmmsg/sendmmsg (the family follows the address bound; SocketAddress.swift).
//
// One recvmmsg(2) or sendmmsg(2) moves a whole batch, which is what lifts a user-space tunnel past
// one-syscall-per-packet (measured on this project's VM: per-packet syscalls, not the cipher, capped a
// naive tunnel near 1 Gbit/s while the cipher alone runs at about 7 Gbit/s per core). The socket is non-blocking: a receiver blocks in
// poll(2) on it and on the close eventfd, then takes what is ready with MSG_DONTWAIT; a sender that
// meets EAGAIN waits for POLLOUT and retries. A destination the kernel refuses (ICMP unreachable,
// firewall EPERM, EMSGSIZE) costs one datagram, counted in `UDPSocketStats`, never the batch.

import CLinux
import Engine
import Glibc
import Synchronization
import Transport

/// Counters kept by a `UDPSocket`; a snapshot, readable from any thread through `UDPSocket.stats`.
public struct UDPSocketStats: Sendable, Equatable {
    /// Datagrams longer than their slot (MSG_TRUNC), reported with length `slotSize + 1`.
    public var truncatedReceives: Int = 0
    /// Datagrams skipped because the destination is unreachable (ECONNREFUSED, EHOSTUNREACH,
    /// ENETUNREACH, EHOSTDOWN, ENETDOWN).
    public var unreachableSends: Int = 0
    /// Datagrams skipped because a firewall or the kernel denied them (EPERM, EACCES).
    public var deniedSends: Int = 0
    /// Datagrams skipped as too long for the path (EMSGSIZE).
    public var oversizedSends: Int = 0
    /// Datagrams skipped for lack of kernel memory (ENOBUFS, ENOMEM).
    public var noBufferSends: Int = 0
    /// Datagrams skipped as malformed: a bad destination (EINVAL, EADDRNOTAVAIL, EAFNOSUPPORT,
    /// EDESTADDRREQ) or an offset and length that do not fit the slot.
    public var invalidSends: Int = 0
    /// Times a sender found the send buffer full (EAGAIN) and waited in poll(2) for POLLOUT.
    public var sendWaits: Int = 0

    public init() {}

    /// All datagrams skipped on send, whatever the reason.
    public var skippedSends: Int { unreachableSends + deniedSends + oversizedSends + noBufferSends + invalidSends }
}

/// A UDP socket that receives with recvmmsg(2) and sends with sendmmsg(2), over IPv4, IPv6, or both.
///
/// Families: bound to an IPv4 address it is an AF_INET socket; bound to `[::]` it is one AF_INET6
/// socket serving both families (IPV6_V6ONLY off); bound to another IPv6 address, an IPv6-only one.
/// Sources are reported unmapped (an IPv4 peer of a dual-stack socket is `.v4`), and a `.v4` destination
/// is sent to in the IPv4-mapped form on an AF_INET6 socket.
///
/// Buffers: the receive arrays (mmsghdr, iovec, a sockaddr_in6-sized address per slot) are allocated on the first
/// `receive(into:)` at the batch's capacity and kept; they belong to the single receiving thread the
/// contract allows (a second concurrent receiver traps). The send arrays are one preallocated chunk of
/// `sendChunk` entries guarded by a `Mutex`, taken with `withLockIfAvailable`: the usual single sender
/// never allocates, and a sender that finds the lock held does not queue behind it (the kernel's UDP
/// send path runs in parallel for unconnected sockets) but uses a stack-allocated set for that call
/// (`withUnsafeTemporaryAllocation`, about 6 KB). So no path allocates on the heap per call.
///
/// Concurrency: one receiving thread and any number of sending threads; any thread may call `close()`
/// or read `stats`.
public final class UDPSocket: DatagramSocket {
    /// Datagrams per sendmmsg(2) call: a batch is sent in chunks of at most this many.
    public static let sendChunk = 64
    /// The kernel's limit on messages per recvmmsg(2)/sendmmsg(2) call (UIO_MAXIOV).
    static let maxMessagesPerCall = 1024

    /// The bound local address and port (getsockname(2) after bind, so port 0 shows the kernel's pick).
    public let localEndpoint: Endpoint
    /// AF_INET or AF_INET6: the socket's family, which decides how destinations are written.
    let family: Int32
    /// SO_RCVBUF as the kernel reports it after setup (getsockopt(2); Linux doubles the requested value).
    public let receiveBufferBytes: Int
    /// SO_SNDBUF as the kernel reports it after setup.
    public let sendBufferBytes: Int

    private let io: ClosableDescriptor
    private let receiving = Atomic<Bool>(false)
    /// Receive arrays, touched only while `receiving` is held (see the type's comment).
    private nonisolated(unsafe) var receiveStorage: MessageStorage?
    /// Send arrays for the uncontended sender (internal so tests can hold the lock and force the
    /// stack-allocated path).
    let sendStorage: Mutex<MessageStorage>

    /// Whether sends group datagrams into UDP GSO messages (UDP_SEGMENT); probed at bind, switched off
    /// for good if the kernel or the route refuses a GSO send (EIO), as wireguard-go does.
    private let segmentationOffload = Atomic<Bool>(false)
    /// Most datagrams in one GSO send (the kernel's UDP_MAX_SEGMENTS is 64 on older kernels).
    static let maxSegments = 64
    /// Most payload bytes in one GSO send to `destination`, all its datagrams together: the kernel refuses
    /// a send larger than one UDP datagram of the destination's family can carry. IPv4: 65,535 bytes of
    /// total length less a 20-byte IPv4 header and the 8-byte UDP header (RFC 791, RFC 768). IPv6: the
    /// 65,535 bytes of payload length cover only the UDP header and data (RFC 8200 §3), so 65,527. A
    /// `.v4` destination is sent as IPv4 even from an AF_INET6 socket.
    static func maxGSOBytes(to destination: Endpoint) -> Int {
        destination.address.isIPv6 ? 65_535 - 8 : 65_535 - 20 - 8
    }
    private let gsoSends = Atomic<Int>(0)
    /// Whether the kernel hands this socket coalesced datagrams (UDP_GRO), which `receive` splits.
    private let receiveOffload = Atomic<Bool>(false)
    /// Receiver-only state for UDP GRO: large buffers, their control buffers, and what is left of
    /// them to hand out when a caller's batch filled up first.
    private nonisolated(unsafe) var groStorage: GROStorage?

    private let truncatedReceives = Atomic<Int>(0)
    private let unreachableSends = Atomic<Int>(0)
    private let deniedSends = Atomic<Int>(0)
    private let oversizedSends = Atomic<Int>(0)
    private let noBufferSends = Atomic<Int>(0)
    private let invalidSends = Atomic<Int>(0)
    private let sendWaits = Atomic<Int>(0)

    private init(
        io: ClosableDescriptor, family: Int32, localEndpoint: Endpoint, receiveBufferBytes: Int, sendBufferBytes: Int
    ) {
        self.io = io
        self.family = family
        self.localEndpoint = localEndpoint
        self.receiveBufferBytes = receiveBufferBytes
        self.sendBufferBytes = sendBufferBytes
        sendStorage = Mutex(MessageStorage(capacity: Self.sendChunk))
    }

    /// Creates a UDP socket (socket(2) with AF_INET for an IPv4 `endpoint`, AF_INET6 for an IPv6 one, with
    /// IPV6_V6ONLY off for `[::]` and on otherwise; SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK), sizes
    /// its buffers (setsockopt(2) SO_RCVBUFFORCE/SO_SNDBUFFORCE, which need CAP_NET_ADMIN, falling back
    /// to SO_RCVBUF/SO_SNDBUF, which the kernel caps at net.core.rmem_max/wmem_max) and binds it
    /// (bind(2)).
    ///
    /// - Parameters:
    ///   - endpoint: the local address and port; `[::]` for every address of both families, 0.0.0.0 for
    ///     every IPv4 address, port 0 for a kernel pick.
    ///   - receiveBufferBytes: requested SO_RCVBUF; 0 or less keeps the system default.
    ///   - sendBufferBytes: requested SO_SNDBUF; 0 or less keeps the system default.
    /// - Throws: `IOError` naming the failed call (EADDRINUSE from bind, for example; EAFNOSUPPORT from
    ///   socket on a host without IPv6, see `bindPreferringDualStack`).
    /// - Parameter segmentationOffload: group consecutive datagrams to one destination into UDP GSO
    ///   sends (setsockopt UDP_SEGMENT is probed; without kernel support the socket sends normally).
    public static func bind(
        _ endpoint: Endpoint, receiveBufferBytes: Int = 4 << 20, sendBufferBytes: Int = 4 << 20,
        segmentationOffload: Bool = false
    ) throws(IOError) -> UDPSocket {
        let type = Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue)
        let fd = try Syscall.openSocket(for: endpoint, type: type, protocol: Int32(IPPROTO_UDP))
        let io = try ClosableDescriptor(owning: fd)  // from here on, io closes fd on every path
        try setBufferSize(fd, force: SO_RCVBUFFORCE, plain: SO_RCVBUF, bytes: receiveBufferBytes)
        try setBufferSize(fd, force: SO_SNDBUFFORCE, plain: SO_SNDBUF, bytes: sendBufferBytes)

        let local = try Syscall.bind(fd, to: endpoint)
        let receiveBytes = try Syscall.intOption(fd, level: SOL_SOCKET, name: SO_RCVBUF)
        let sendBytes = try Syscall.intOption(fd, level: SOL_SOCKET, name: SO_SNDBUF)
        let udp = UDPSocket(
            io: io, family: endpoint.socketFamily, localEndpoint: local,
            receiveBufferBytes: Int(receiveBytes), sendBufferBytes: Int(sendBytes))
        if segmentationOffload,
            case .success = Syscall.setOption(fd, level: Int32(IPPROTO_UDP), name: Int32(CLINUX_UDP_SEGMENT), value: 0)
        {
            // UDP_SEGMENT 0 on the socket means "no default segmentation"; a per-send cmsg sets the size.
            udp.segmentationOffload.store(true, ordering: .relaxed)
            if case .success = Syscall.setOption(fd, level: Int32(IPPROTO_UDP), name: Int32(CLINUX_UDP_GRO), value: 1) {
                udp.receiveOffload.store(true, ordering: .relaxed)
                udp.groStorage = GROStorage()
            }
        }
        return udp
    }

    /// setsockopt(2) with the privileged `force` option, then the capped `plain` one if that is denied.
    private static func setBufferSize(_ fd: Int32, force: Int32, plain: Int32, bytes: Int) throws(IOError) {
        guard bytes > 0 else { return }
        let value = Int32(clamping: bytes)
        if case .success = Syscall.setOption(fd, level: SOL_SOCKET, name: force, value: value) { return }
        if case .failure(let code) = Syscall.setOption(fd, level: SOL_SOCKET, name: plain, value: value) {
            throw IOError("setsockopt", code)
        }
    }

    /// The addresses of `host`: a dotted quad or IPv6 text directly, anything else with getaddrinfo(3)
    /// (AF_UNSPEC, SOCK_DGRAM), in the order it answers (glibc sorts by RFC 6724, so the address to try
    /// first is first), IPv4-mapped addresses folded to IPv4 and duplicates dropped. Blocks while the
    /// resolver works.
    ///
    /// - Throws: `IOError` with call "getaddrinfo"; its `errno` is the EAI_* code (negative), or the
    ///   errno for EAI_SYSTEM, and its detail names the host.
    public static func addresses(of host: String) throws(IOError) -> [IPAddress] {
        if let address = IPAddress(host) { return [address.unmapped] }
        guard !host.isEmpty else {
            throw IOError(call: "getaddrinfo", errno: EAI_NONAME, detail: "empty host name")
        }
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_DGRAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let code = getaddrinfo(host, nil, &hints, &list)
        guard code == 0 else {
            if code == EAI_SYSTEM {
                let saved = Errno(errno)
                throw IOError(call: "getaddrinfo", errno: saved.rawValue, detail: "\(host): \(saved.message)")
            }
            let text = gai_strerror(code).map { String(cString: $0) } ?? "error \(code)"
            throw IOError(call: "getaddrinfo", errno: code, detail: "\(host): \(text)")
        }
        defer { freeaddrinfo(list) }
        var found: [IPAddress] = []
        var entry = list
        while let info = entry {
            if let address = info.pointee.ai_addr,
                let endpoint = Endpoint(socketAddress: UnsafeRawPointer(address), length: Int(info.pointee.ai_addrlen)),
                !found.contains(endpoint.address)
            {
                found.append(endpoint.address)
            }
            entry = info.pointee.ai_next
        }
        guard !found.isEmpty else {
            throw IOError(call: "getaddrinfo", errno: EAI_NONAME, detail: "\(host): no IPv4 or IPv6 address")
        }
        return found
    }

    /// Resolves `host` to an endpoint with `port`: the first of `addresses(of:)`, of either family.
    ///
    /// - Throws: `IOError` as `addresses(of:)`.
    public static func resolve(host: String, port: UInt16) throws(IOError) -> Endpoint {
        Endpoint(address: try addresses(of: host)[0], port: port)
    }

    /// Whether `error`, met while setting up a socket on `[::]`, means this host has no IPv6: socket(2)
    /// fails with EAFNOSUPPORT on a kernel without IPv6 (booted with ipv6.disable=1, or built without it),
    /// and bind(2) with EADDRNOTAVAIL when `::` cannot be bound.
    public static func meansNoIPv6(_ error: IOError) -> Bool {
        error.errno == EAFNOSUPPORT || (error.call == "bind" && error.errno == EADDRNOTAVAIL)
    }

    /// Binds `endpoint` with `bind`; when it is `[::]` (dual stack) and the host has no IPv6
    /// (`meansNoIPv6`), binds 0.0.0.0 with the same port instead and returns a notice saying so, for the
    /// caller to log. Any other failure is thrown as it is.
    ///
    /// - Parameter bind: the binding (`UDPSocket.bind` with the caller's options; tests pass their own).
    public static func bindPreferringDualStack<Bound>(
        _ endpoint: Endpoint, _ bind: (Endpoint) throws(IOError) -> Bound
    ) throws(IOError) -> (bound: Bound, notice: String?) {
        do {
            return (try bind(endpoint), nil)
        } catch let error where endpoint.bindsDualStack && meansNoIPv6(error) {
            let fallback = Endpoint(address: IPv4Address.any, port: endpoint.port)
            let bound = try bind(fallback)
            return (bound, "this host has no IPv6 (\(error)), so UDP uses \(fallback) instead of \(endpoint): IPv4 only")
        }
    }

    // MARK: Receiving

    /// Receives datagrams with recvmmsg(2): blocks in poll(2) until one is ready, then takes up to
    /// `batch.capacity` (at most 1024) with MSG_DONTWAIT. See `DatagramSocket` for the contract.
    ///
    /// - Returns: the number received, 0 only after `close()`.
    /// - Throws: `IOError` for a failure of the socket itself. Pending ICMP errors (ECONNREFUSED and
    ///   the like, which only a connected socket reports) are consumed and the wait goes on.
    /// - Precondition: no other thread is inside `receive(into:)` on this socket.
    public func receive(into batch: PacketBatch) throws(IOError) -> Int {
        batch.count = 0
        guard receiving.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
            preconditionFailure("UDPSocket.receive(into:) was called from two threads at once")
        }
        defer { receiving.store(false, ordering: .releasing) }
        guard io.enter() else { return 0 }
        defer { io.leave() }

        if let gro = groStorage { return try receiveCoalesced(into: batch, using: gro) }
        let wanted = min(batch.capacity, Self.maxMessagesPerCall)
        let vectors = receiveVectors(capacity: wanted)
        while true {
            for index in 0..<wanted {
                vectors.prepare(index, base: batch.slot(index), length: batch.slotSize)
            }
            let result = Syscall.run("recvmmsg") {
                clinux_recvmmsg(io.fd, vectors.messages, UInt32(wanted), Int32(MSG_DONTWAIT), nil)
            }
            switch result {
            case .success(let received) where received > 0:
                let count = Int(received)
                for index in 0..<count {
                    batch.offsets[index] = 0
                    batch.endpoints[index] = vectors.sourceEndpoint(index)
                    if vectors.messages[index].msg_hdr.msg_flags & Int32(MSG_TRUNC) != 0 {
                        truncatedReceives.wrappingAdd(1, ordering: .relaxed)
                        batch.lengths[index] = batch.slotSize + 1
                    } else {
                        batch.lengths[index] = Int(vectors.messages[index].msg_len)
                    }
                }
                batch.count = count
                return count
            case .success, .failure(Errno(EAGAIN)), .failure(Errno(EWOULDBLOCK)):
                if try io.wait(for: Int16(POLLIN)) == .closed { return 0 }
            case .failure(let code) where Self.reportsUnreachable(code):
                continue
            case .failure(let code):
                throw IOError("recvmmsg", code)
            }
        }
    }

    /// True when receives take coalesced datagrams (UDP_GRO).
    public var usesReceiveOffload: Bool { receiveOffload.load(ordering: .relaxed) }

    /// Receives with UDP GRO: recvmmsg(2) into 64 KiB buffers, each holding one datagram or a run of
    /// equal-sized ones from one source (the UDP_GRO cmsg gives their size), split into the batch's slots.
    private func receiveCoalesced(into batch: PacketBatch, using gro: GROStorage) throws(IOError) -> Int {
        var count = 0
        // The batch's slots point into the GRO buffers (`GROStorage.drain`) until the next receive: the
        // previous batch is done with them now.
        batch.restoreSlots()
        gro.releaseLent()
        while true {
            let drained = gro.drain(into: batch, startingAt: count)
            count = drained.count
            if drained.truncated > 0 { truncatedReceives.wrappingAdd(drained.truncated, ordering: .relaxed) }
            if count == batch.capacity || (count > 0 && !gro.isEmpty) { break }
            // Everything buffered was handed out: read more (without blocking once we have something) into
            // the buffers this batch holds no slot in; when it holds one in each, its slots are copied out first.
            var free = gro.prepareFreeBuffers()
            if free == 0 {
                batch.keepLentSlots(count)
                gro.releaseLent()
                free = gro.prepareFreeBuffers()
            }
            let vectors = gro.vectors
            let result = Syscall.run("recvmmsg") {
                clinux_recvmmsg(io.fd, vectors.messages, UInt32(free), Int32(MSG_DONTWAIT), nil)
            }
            switch result {
            case .success(let received) where received > 0:
                gro.load(Int(received))
            case .success, .failure(Errno(EAGAIN)), .failure(Errno(EWOULDBLOCK)):
                if count > 0 { break }
                if try io.wait(for: Int16(POLLIN)) == .closed { return 0 }
                continue
            case .failure(let code) where Self.reportsUnreachable(code):
                continue
            case .failure(let code):
                if count > 0 { break }
                throw IOError("recvmmsg", code)
            }
            if count > 0 && gro.isEmpty { break }
        }
        batch.count = count
        return count
    }

    /// The receive arrays, grown to `capacity` if a larger batch arrives (only the first call allocates).
    private func receiveVectors(capacity: Int) -> MessageVectors {
        if let storage = receiveStorage, storage.vectors.capacity >= capacity { return storage.vectors }
        let storage = MessageStorage(capacity: capacity)
        receiveStorage = storage
        return storage.vectors
    }

    private static func reportsUnreachable(_ code: Errno) -> Bool {
        switch code.rawValue {
        case ECONNREFUSED, EHOSTUNREACH, ENETUNREACH, EHOSTDOWN, ENETDOWN: return true
        default: return false
        }
    }

    // MARK: Sending

    /// Sends `batch.packet(i)` to `batch.endpoints[i]` for `i in 0..<batch.count` with sendmmsg(2),
    /// in chunks of `sendChunk`, resuming after partial sends. A datagram the kernel refuses for its
    /// destination or size is skipped and counted in `stats`; on EAGAIN the sender waits in poll(2)
    /// for POLLOUT and retries. See `DatagramSocket` for the contract.
    ///
    /// - Returns: the number of datagrams the kernel took; after `close()`, those sent before it.
    /// - Throws: `IOError` for a failure of the socket itself.
    @discardableResult
    public func send(from batch: PacketBatch) throws(IOError) -> Int {
        guard batch.count > 0, io.enter() else { return 0 }
        defer { io.leave() }

        let shared = try sendStorage.withLockIfAvailable { (storage) throws(IOError) -> Int in
            try send(batch, using: storage.vectors)
        }
        if let sent = shared { return sent }
        return try withTemporaryVectors(capacity: Self.sendChunk) { (vectors) throws(IOError) -> Int in
            try send(batch, using: vectors)
        }
    }

    /// True when sends use UDP GSO.
    public var usesSegmentationOffload: Bool { segmentationOffload.load(ordering: .relaxed) }

    /// The number of sendmmsg(2) messages that carried more than one datagram (UDP GSO), for tests.
    var segmentedSends: Int { gsoSends.load(ordering: .relaxed) }

    private func send(_ batch: PacketBatch, using vectors: MessageVectors) throws(IOError) -> Int {
        var sent = 0
        var next = 0
        var gso = segmentationOffload.load(ordering: .relaxed)
        // Entries before this index go out one per message: a GSO message of theirs was refused.
        var singlyUntil = 0
        while next < batch.count {
            // Fill messages from consecutive well-formed entries starting at `next`. With GSO, a run of
            // datagrams to one endpoint, all of one size but the last (which may be shorter), is one message.
            var messages = 0
            var vectorsUsed = 0
            var cursor = next
            while messages < vectors.capacity, vectorsUsed < vectors.capacity, cursor < batch.count {
                let offset = batch.offsets[cursor]
                let length = batch.lengths[cursor]
                guard offset >= 0, length >= 0, length <= batch.slotSize - offset else { break }
                let endpoint = batch.endpoints[cursor]
                var group = 1
                vectors.iovecs[vectorsUsed] = iovec(iov_base: batch.slot(cursor) + offset, iov_len: length)
                if gso && length > 0 && cursor >= singlyUntil {
                    let gsoLimit = Self.maxGSOBytes(to: endpoint)
                    var groupBytes = length
                    while group < Self.maxSegments, vectorsUsed + group < vectors.capacity, cursor + group < batch.count {
                        let j = cursor + group
                        let o = batch.offsets[j]
                        let l = batch.lengths[j]
                        guard o >= 0, l > 0, l <= length, l <= batch.slotSize - o, batch.endpoints[j] == endpoint,
                            groupBytes + l <= gsoLimit
                        else { break }
                        vectors.iovecs[vectorsUsed + group] = iovec(iov_base: batch.slot(j) + o, iov_len: l)
                        group += 1
                        groupBytes += l
                        if l < length { break }  // only the last segment may be shorter
                    }
                }
                vectors.prepareGroup(messages, firstVector: vectorsUsed, count: group, segmentSize: length)
                vectors.setAddress(messages, to: endpoint, family: family)
                if group > 1 { gsoSends.wrappingAdd(1, ordering: .relaxed) }
                messages += 1
                vectorsUsed += group
                cursor += group
            }
            if messages == 0 {  // the entry at `next` does not fit its slot
                invalidSends.wrappingAdd(1, ordering: .relaxed)
                next += 1
                continue
            }
            let result = Syscall.run("sendmmsg") {
                clinux_sendmmsg(io.fd, vectors.messages, UInt32(messages), Int32(MSG_DONTWAIT))
            }
            switch result {
            case .success(let accepted) where accepted > 0:
                // After a partial send the kernel drops the error of the first refused message
                // (sendmmsg(2)); the next call starts there and reports it.
                var datagrams = 0
                for m in 0..<Int(accepted) { datagrams += vectors.datagramsPerMessage[m] }
                sent += datagrams
                next += datagrams
            case .success, .failure(Errno(EAGAIN)), .failure(Errno(EWOULDBLOCK)):
                sendWaits.wrappingAdd(1, ordering: .relaxed)
                if try io.wait(for: Int16(POLLOUT)) == .closed { return sent }
            case .failure(Errno(EIO)) where vectors.datagramsPerMessage[0] > 1:
                // The kernel or the outgoing device cannot segment: stop using GSO and resend singly.
                segmentationOffload.store(false, ordering: .relaxed)
                gso = false
            case .failure(Errno(EMSGSIZE)) where vectors.datagramsPerMessage[0] > 1,
                .failure(Errno(EINVAL)) where vectors.datagramsPerMessage[0] > 1:
                // A GSO message whose segments do not fit the path's MTU (EMSGSIZE: the kernel does not
                // fragment GSO segments) or whose destination is bad (EINVAL): send its datagrams one by
                // one, so each gets its own fate, as without GSO (a datagram larger than the path is
                // fragmented by the kernel rather than the whole run being lost), and is counted alone.
                singlyUntil = next + vectors.datagramsPerMessage[0]
            case .failure(let code):
                guard countSkippedSend(code) else { throw IOError("sendmmsg", code) }
                next += vectors.datagramsPerMessage[0]
            }
        }
        return sent
    }

    /// Counts a sendmmsg(2) error that concerns one datagram (its destination or size) and returns
    /// true; returns false for an error that concerns the socket itself.
    private func countSkippedSend(_ code: Errno) -> Bool {
        switch code.rawValue {
        case ECONNREFUSED, EHOSTUNREACH, ENETUNREACH, EHOSTDOWN, ENETDOWN:
            unreachableSends.wrappingAdd(1, ordering: .relaxed)
        case EPERM, EACCES:
            deniedSends.wrappingAdd(1, ordering: .relaxed)
        case EMSGSIZE:
            oversizedSends.wrappingAdd(1, ordering: .relaxed)
        case ENOBUFS, ENOMEM:
            noBufferSends.wrappingAdd(1, ordering: .relaxed)
        case EINVAL, EADDRNOTAVAIL, EAFNOSUPPORT, EDESTADDRREQ:
            invalidSends.wrappingAdd(1, ordering: .relaxed)
        default:
            return false
        }
        return true
    }

    /// Runs `body` over message arrays allocated on the stack for this call only.
    private func withTemporaryVectors<R>(
        capacity: Int, _ body: (MessageVectors) throws(IOError) -> R
    ) throws(IOError) -> R {
        try withUnsafeTemporaryAllocation(of: clinux_mmsghdr.self, capacity: capacity) {
            (messages) throws(IOError) -> R in
            try withUnsafeTemporaryAllocation(of: iovec.self, capacity: capacity) { (iovecs) throws(IOError) -> R in
                try withUnsafeTemporaryAllocation(of: SocketAddressSlot.self, capacity: capacity) {
                    (addresses) throws(IOError) -> R in
                    try withUnsafeTemporaryAllocation(
                        byteCount: capacity * MessageVectors.controlSpace, alignment: 8
                    ) { (control) throws(IOError) -> R in
                        try withUnsafeTemporaryAllocation(of: Int.self, capacity: capacity) { (groups) throws(IOError) -> R in
                            guard let m = messages.baseAddress, let i = iovecs.baseAddress, let a = addresses.baseAddress,
                                let c = control.baseAddress, let g = groups.baseAddress
                            else {
                                preconditionFailure("a temporary allocation of \(capacity) > 0 elements has a base address")
                            }
                            return try body(
                                MessageVectors(
                                    capacity: capacity, messages: m, iovecs: i, addresses: a, control: c,
                                    datagramsPerMessage: g))
                        }
                    }
                }
            }
        }
    }

    // MARK: Closing and counters

    /// Closes the socket: wakes a blocked receiver or sender (which then return), and closes the
    /// descriptor once they have left (close(2)). Idempotent and callable from any thread.
    public func close() {
        io.close()
    }

    /// A snapshot of the counters (relaxed atomic loads).
    public var stats: UDPSocketStats {
        var stats = UDPSocketStats()
        stats.truncatedReceives = truncatedReceives.load(ordering: .relaxed)
        stats.unreachableSends = unreachableSends.load(ordering: .relaxed)
        stats.deniedSends = deniedSends.load(ordering: .relaxed)
        stats.oversizedSends = oversizedSends.load(ordering: .relaxed)
        stats.noBufferSends = noBufferSends.load(ordering: .relaxed)
        stats.invalidSends = invalidSends.load(ordering: .relaxed)
        stats.sendWaits = sendWaits.load(ordering: .relaxed)
        return stats
    }
}

/// Buffers for UDP GRO receives, owned by the receiving thread.
final class GROStorage {
    /// Messages per recvmmsg(2). A coalesced message holds up to 64 KB (about 45 full-size frames), so 8 of
    /// them cover several data batches; each buffer is resident once a coalesced message filled it, so this
    /// count is the receiver's largest memory cost (8 × 64 KB).
    static let buffers = 8
    static let bufferSize = 65536
    static let controlSpace = Int(clinux_cmsg_space(4))
    private let storage: MessageStorage
    private let data: UnsafeMutableRawPointer
    private let controls: UnsafeMutableRawPointer
    /// Runs still to hand out: buffer, offset, bytes left, segment size, source.
    private var runs: [(buffer: Int, offset: Int, left: Int, segment: Int, source: Endpoint)] = []
    private var nextRun = 0
    /// Buffers holding a slot of the batch being filled (bit i: buffer i), and the buffer each message of
    /// the next recvmmsg(2) goes to (message j → `order[j]`).
    private var lent: UInt64 = 0
    private let order: UnsafeMutablePointer<Int>

    init() {
        storage = MessageStorage(capacity: Self.buffers)
        data = .allocate(byteCount: Self.buffers * Self.bufferSize, alignment: 64)
        controls = .allocate(byteCount: Self.buffers * Self.controlSpace, alignment: 8)
        controls.initializeMemory(as: UInt8.self, repeating: 0, count: Self.buffers * Self.controlSpace)
        order = .allocate(capacity: Self.buffers)
        order.initialize(repeating: 0, count: Self.buffers)
        runs.reserveCapacity(Self.buffers)
    }

    deinit {
        data.deallocate()
        controls.deallocate()
        order.deallocate()
    }

    /// Forgets which buffers hold slots: the batch that held them is done with them (or copied them out).
    func releaseLent() { lent = 0 }

    /// Sets up the receive vectors for the buffers that hold no slot of the batch being filled (message j
    /// into buffer `order[j]`) and returns how many there are; 0 when every buffer holds one.
    func prepareFreeBuffers() -> Int {
        let v = storage.vectors
        var free = 0
        for b in 0..<Self.buffers where lent & (1 << UInt64(b)) == 0 {
            order[free] = b
            v.prepare(free, base: buffer(b), length: Self.bufferSize)
            v.messages[free].msg_hdr.msg_control = control(b)
            v.messages[free].msg_hdr.msg_controllen = Self.controlSpace
            free += 1
        }
        return free
    }

    var vectors: MessageVectors { storage.vectors }
    var isEmpty: Bool { nextRun >= runs.count }
    func buffer(_ i: Int) -> UnsafeMutableRawPointer { data + i * Self.bufferSize }
    func control(_ i: Int) -> UnsafeMutableRawPointer { controls + i * Self.controlSpace }

    /// Records the `received` messages recvmmsg(2) just filled (message j in buffer `order[j]`).
    func load(_ received: Int) {
        runs.removeAll(keepingCapacity: true)
        nextRun = 0
        let v = storage.vectors
        for i in 0..<received {
            let length = Int(v.messages[i].msg_len)
            var segment = length
            var header = clinux_cmsg_firsthdr(&v.messages[i].msg_hdr)
            while let h = header {
                if h.pointee.cmsg_level == Int32(IPPROTO_UDP), h.pointee.cmsg_type == Int32(CLINUX_UDP_GRO) {
                    let size = UnsafeRawPointer(clinux_cmsg_data(h)).loadUnaligned(as: Int32.self)
                    if size > 0 { segment = Int(size) }
                }
                header = clinux_cmsg_nxthdr(&v.messages[i].msg_hdr, h)
            }
            runs.append((order[i], 0, length, max(segment, 1), v.sourceEndpoint(i)))
        }
    }

    /// Hands datagrams to `batch` from slot `start` on, as slots lent from the buffers (`PacketBatch.lend`);
    /// returns the new count.
    func drain(into batch: PacketBatch, startingAt start: Int) -> (count: Int, truncated: Int) {
        var count = start
        var truncated = 0
        while count < batch.capacity && nextRun < runs.count {
            var run = runs[nextRun]
            if run.left == 0 {
                nextRun += 1
                continue
            }
            let length = min(run.segment, run.left)
            batch.offsets[count] = 0
            batch.endpoints[count] = run.source
            if length > batch.slotSize {
                truncated += 1
                batch.lengths[count] = batch.slotSize + 1
            } else {
                // Lent, not copied: the buffer is not read into again while this batch is in use.
                batch.lend(count, buffer(run.buffer) + run.offset)
                lent |= 1 << UInt64(run.buffer)
                batch.lengths[count] = length
            }
            count += 1
            run.offset += length
            run.left -= length
            runs[nextRun] = run
            if run.left == 0 { nextRun += 1 }
        }
        return (count, truncated)
    }
}
