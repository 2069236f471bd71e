// TunDevice in a fresh network namespace per test.
//
// Each test body runs on a dedicated pthread that unshared its network namespace
// (TestSupport.runInFreshNetworkNamespace), so the device, its address and route, and the UDP socket
// that talks through it exist only there; the root namespace is never changed, which the tests
// check afterwards. Nothing needs deleting: the namespace dies with its thread and descriptors.
//
//   fresh namespace
//   ┌───────────────────────────────────────────────────────────┐
//   │ UDPSocket 10.77.0.1:port ──kernel route 10.77.0.0/24──▶ tvtest0 ──read──▶ test (plays 10.77.0.2) │
//   │ UDPSocket ◀────────────── kernel ◀──────────────────── tvtest0 ◀─write── crafted reply      │
//   └───────────────────────────────────────────────────────────┘
//
// Assertions run on the test's thread, on values the body returns: Swift Testing attributes issues
// through task-local state that a foreign pthread does not have.

import CLinux
import Engine
import Glibc
import TestSupport
import Testing
import Transport

@testable import Platform

private let local = IPv4Address(10, 77, 0, 1)
private let peer = Endpoint(address: IPv4Address(10, 77, 0, 2), port: 9999)

/// A failed step inside a namespace body, reported by the test that ran it.
private struct StepFailed: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// True when the running kernel's release (uname) is at least `major.minor`.
private func kernelAtLeast(_ major: Int, _ minor: Int) -> Bool {
    var name = utsname()
    guard uname(&name) == 0 else { return false }
    let release = withUnsafeBytes(of: name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    let parts = release.split(whereSeparator: { !$0.isNumber }).prefix(2).compactMap { Int($0) }
    guard parts.count == 2 else { return false }
    return (parts[0], parts[1]) >= (major, minor)
}

/// True if the root namespace (the test's own thread) has an interface called `name`.
private func rootNamespaceHasInterface(_ name: String) -> Bool {
    if_nametoindex(name) != 0
}

/// Reads packets until `matches` accepts one; gives up after `reads` calls.
private func readUntil(
    _ device: TunDevice, _ batch: PacketBatch, headroom: Int, reads: Int = 50,
    _ matches: (_ index: Int) -> Bool
) throws -> Int {
    for _ in 0..<reads {
        let count = try device.readPackets(into: batch, headroom: headroom)
        guard count > 0 else { throw StepFailed("readPackets returned 0 on an open device") }
        for index in 0..<count where matches(index) { return index }
    }
    throw StepFailed("no matching packet in \(reads) reads")
}

@Suite(
    "TunDevice in a fresh network namespace", .serialized,
    .needsRoot("needs root for network namespaces"))
struct TunDeviceTests {
    struct EchoObservations: Sendable {
        var mtu: Int32
        var queueLength: Int32
        var up: Bool
        var address: IPv4Address
        var netmask: IPv4Address
        var packet: PacketBuilder.IPv4UDP?
        var offset: Int
        var written: Int
        var stats: TunDeviceStats
        var reply: [UInt8]
        var replySource: Endpoint
    }

    @Test func aDatagramToThePeerIsReadFromTheDeviceAndAWrittenReplyReachesTheSocket() throws {
        let request = Array("ping through tvtest0".utf8)
        let answer = Array("pong from 10.77.0.2".utf8)
        let seen = try runInFreshNetworkNamespace { () throws -> EchoObservations in
            let device = try TunDevice.open(name: "tvtest0")
            defer { device.close() }
            guard let prefix = IPv4Prefix("10.77.0.1/24") else { throw StepFailed("prefix did not parse") }
            try device.configure(address: prefix, mtu: 1420, transmitQueueLength: 1234)

            // Read the configuration back with the SIOCGIF* ioctls.
            let control = socket(AF_INET, Int32(SOCK_DGRAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
            guard control >= 0 else { throw StepFailed("socket failed") }
            defer { Glibc.close(control) }
            var ifr = InterfaceRequest(name: "tvtest0")
            guard ifr.ioctl(control, UInt(SIOCGIFMTU)) == 0 else { throw StepFailed("SIOCGIFMTU failed") }
            let mtu = ifr.mtu
            guard ifr.ioctl(control, UInt(SIOCGIFTXQLEN)) == 0 else { throw StepFailed("SIOCGIFTXQLEN failed") }
            let queueLength = ifr.queueLength
            guard ifr.ioctl(control, UInt(SIOCGIFFLAGS)) == 0 else { throw StepFailed("SIOCGIFFLAGS failed") }
            let up = ifr.flags & Int16(IFF_UP) != 0
            guard ifr.ioctl(control, UInt(SIOCGIFADDR)) == 0 else { throw StepFailed("SIOCGIFADDR failed") }
            let address = ifr.ipv4Address
            guard ifr.ioctl(control, UInt(SIOCGIFNETMASK)) == 0 else { throw StepFailed("SIOCGIFNETMASK failed") }
            let netmask = ifr.ipv4Address

            let socket = try UDPSocket.bind(Endpoint(address: local, port: 0))
            defer { socket.close() }
            let outgoing = PacketBatch(capacity: 1, slotSize: 256)
            outgoing.set(0, bytes: request, endpoint: peer)
            outgoing.count = 1
            guard try socket.send(from: outgoing) == 1 else { throw StepFailed("the request was not sent") }

            // Other packets (IPv6 router solicitations, MLD reports) may come first: skip them here,
            // as the engine would; the adapter must return them as read.
            let headroom = 32
            let batch = PacketBatch(capacity: 8, slotSize: 2048)
            let index = try readUntil(device, batch, headroom: headroom) { index in
                PacketBuilder.parseIPv4UDP(batch.bytes(index))?.destination == peer
            }
            let packet = PacketBuilder.parseIPv4UDP(batch.bytes(index))
            let offset = batch.offsets[index]

            // Write back: a malformed packet (skipped), an entry longer than its slot (skipped), the reply.
            let reply = PacketBuilder.ipv4UDP(from: peer, to: socket.localEndpoint, payload: answer)
            let writes = PacketBatch(capacity: 3, slotSize: 256)
            writes.set(0, bytes: [0x00, 0x01, 0x02, 0x03])
            writes.set(1, bytes: [0x45])
            writes.lengths[1] = 1000
            writes.set(2, bytes: reply, offset: 16)
            writes.count = 3
            let written = try device.writePackets(from: writes)

            let incoming = PacketBatch(capacity: 4, slotSize: 1500)
            guard try socket.receive(into: incoming) >= 1 else { throw StepFailed("socket closed") }
            return EchoObservations(
                mtu: mtu, queueLength: queueLength, up: up, address: address, netmask: netmask, packet: packet, offset: offset,
                written: written, stats: device.stats, reply: incoming.bytes(0), replySource: incoming.endpoints[0])
        }
        #expect(seen.mtu == 1420)
        #expect(seen.queueLength == 1234)
        #expect(seen.up)
        #expect(seen.address == local)
        #expect(seen.netmask == IPv4Address(255, 255, 255, 0))
        let packet = try #require(seen.packet)
        #expect(packet.source.address == .v4(local))
        #expect(packet.destination == peer)
        #expect(packet.payload == request)
        #expect(packet.headerChecksumValid)
        #expect(packet.udpChecksumValid)
        #expect(seen.offset == 32, "packets start after the headroom")
        #expect(seen.written == 1)
        #expect(seen.stats.rejectedWrites == 1)
        #expect(seen.stats.invalidWrites == 1)
        #expect(seen.reply == answer)
        #expect(seen.replySource == peer)
        #expect(!rootNamespaceHasInterface("tvtest0"), "the root namespace is untouched")
    }

    @Test func openingADeviceAnotherDescriptorHoldsReportsItBusy() throws {
        let outcome = try runInFreshNetworkNamespace { () throws -> (TunError?, String) in
            let first = try TunDevice.open(name: "tvtest0")
            var busy: TunError?
            do throws(TunError) {
                _ = try TunDevice.open(name: "tvtest0")
            } catch {
                busy = error
            }
            first.close()
            // Once the holder is closed the name is free again.
            let again = try TunDevice.open(name: "tvtest0")
            defer { again.close() }
            return (busy, again.name)
        }
        let error = try #require(outcome.0)
        #expect(error == .deviceBusy(device: "tvtest0"))
        #expect(
            error.description
                == "TUN device tvtest0 is busy: another process has it open; stop that process or choose another --dev")
        #expect(outcome.1 == "tvtest0")
    }

    @Test func aPersistentDeviceMadeBeforehandIsReusedAndAPatternNameIsFilledIn() throws {
        let names = try runInFreshNetworkNamespace { () throws -> (String, String) in
            // What `ip tuntap add dev tvpersist0 mode tun` does: TUNSETIFF, then TUNSETPERSIST 1.
            let raw = Glibc.open("/dev/net/tun", O_RDWR | O_CLOEXEC)
            guard raw >= 0 else { throw StepFailed("open /dev/net/tun failed (errno \(errno))") }
            var request = InterfaceRequest(name: "tvpersist0")
            request.flags = Int16(CLINUX_IFF_TUN | CLINUX_IFF_NO_PI)
            guard request.ioctl(raw, clinux_TUNSETIFF()) == 0, clinux_tun_set_persist(raw, 1) == 0 else {
                Glibc.close(raw)
                throw StepFailed("creating the persistent device failed (errno \(errno))")
            }
            Glibc.close(raw)
            guard if_nametoindex("tvpersist0") != 0 else { throw StepFailed("the persistent device is gone") }

            let persistent = try TunDevice.open(name: "tvpersist0")
            defer { persistent.close() }
            guard let prefix = IPv4Prefix("10.78.0.1/30") else { throw StepFailed("prefix did not parse") }
            try persistent.configure(address: prefix, mtu: 1280)

            let patterned = try TunDevice.open(name: "tvpat%d")
            defer { patterned.close() }
            return (persistent.name, patterned.name)
        }
        #expect(names.0 == "tvpersist0")
        #expect(names.1 == "tvpat0")
        #expect(!rootNamespaceHasInterface("tvpersist0"))
    }

    @Test func closingFromAnotherThreadWakesABlockedReader() throws {
        let outcome = try runInFreshNetworkNamespace { () throws -> ([Int], Double, String) in
            let device = try TunDevice.open(name: "tvtest0")  // link down: nothing will arrive
            let closer = try startThread {
                usleep(100_000)
                device.close()
            }
            let batch = PacketBatch(capacity: 4, slotSize: 2048)
            let start = ContinuousClock.now
            let first = try device.readPackets(into: batch, headroom: 0)
            let waited = ContinuousClock.now - start
            _ = pthread_join(closer, nil)
            let second = try device.readPackets(into: batch, headroom: 0)
            batch.set(0, bytes: PacketBuilder.ipv4UDP(from: peer, to: peer, payload: [1]))
            batch.count = 1
            let written = try device.writePackets(from: batch)
            device.close()  // idempotent
            // The descriptor really was closed: the single-queue name can be opened again.
            let reopened = try TunDevice.open(name: "tvtest0")
            defer { reopened.close() }
            let seconds = Double(waited.components.seconds) + Double(waited.components.attoseconds) / 1e18
            return ([first, second, written, batch.count], seconds, reopened.name)
        }
        #expect(outcome.0 == [0, 0, 0, 1])
        #expect(outcome.1 >= 0.05 && outcome.1 < 5, "the reader blocked until close(), \(outcome.1) s")
        #expect(outcome.2 == "tvtest0")
    }

    @Test func aPacketLongerThanItsRoomIsReportedAsOneByteTooLong() throws {
        let outcome = try runInFreshNetworkNamespace { () throws -> (Int, [UInt8], Int) in
            let device = try TunDevice.open(name: "tvtest0")
            defer { device.close() }
            guard let prefix = IPv4Prefix("10.77.0.1/24") else { throw StepFailed("prefix did not parse") }
            try device.configure(address: prefix, mtu: 1420)
            let socket = try UDPSocket.bind(Endpoint(address: local, port: 0))
            defer { socket.close() }
            let outgoing = PacketBatch(capacity: 1, slotSize: 512)
            outgoing.set(0, bytes: [UInt8](repeating: 0xab, count: 200), endpoint: peer)  // a 228-byte packet
            outgoing.count = 1
            guard try socket.send(from: outgoing) == 1 else { throw StepFailed("the datagram was not sent") }

            let headroom = 32
            let batch = PacketBatch(capacity: 4, slotSize: 128)  // room for 96 bytes
            let index = try readUntil(device, batch, headroom: headroom) { index in
                let start = batch.slot(index) + headroom
                return batch.lengths[index] > 20 && start.load(as: UInt8.self) == 0x45
                    && .v4(IPv4Address(networkBytes: start + 16)) == peer.address
            }
            let slotTail = Array(UnsafeRawBufferPointer(start: batch.slot(index) + headroom + 28, count: 68))
            return (batch.lengths[index], slotTail, device.stats.truncatedReads)
        }
        #expect(outcome.0 == 97)
        #expect(outcome.1 == [UInt8](repeating: 0xab, count: 68), "the room holds the packet's first 96 bytes")
        #expect(outcome.2 == 1)
    }

    struct OffloadObservations: Sendable {
        var tcp: Bool
        var udp: Bool
        var written: Int
        var merged: Int
        var received: [[UInt8]]
        var read: [[UInt8]]
        var segmented: Int
    }

    /// UDP segmentation offload both ways: the kernel takes USO only as USO4 and USO6 together, and a
    /// device that probed it wrong silently fell back to one write per datagram. Written: 8 datagrams of
    /// one flow become one merged write that the socket receives as the same 8 datagrams, in order. Read:
    /// a socket's GSO send of 8 datagrams arrives from the device as 8 packets with valid checksums.
    @Test(.enabled(if: kernelAtLeast(6, 2), "USO on TUN devices needs Linux 6.2"))
    func udpSegmentationOffloadWorksInBothDirections() throws {
        let payloads = (0..<8).map { i in [UInt8](repeating: UInt8(0x30 + i), count: i == 7 ? 300 : 1000) }
        let seen = try runInFreshNetworkNamespace { () throws -> OffloadObservations in
            let device = try TunDevice.open(name: "tvtest0", offload: true)
            defer { device.close() }
            guard let prefix = IPv4Prefix("10.77.0.1/24") else { throw StepFailed("prefix did not parse") }
            try device.configure(address: prefix, mtu: 1420)
            let socket = try UDPSocket.bind(Endpoint(address: local, port: 0), segmentationOffload: true)
            defer { socket.close() }

            // Device → socket: 8 datagrams from the peer, merged into one write.
            let writes = PacketBatch(capacity: 8, slotSize: 2048)
            for (i, payload) in payloads.enumerated() {
                writes.set(i, bytes: PacketBuilder.ipv4UDP(from: peer, to: socket.localEndpoint, payload: payload))
            }
            writes.count = payloads.count
            let written = try device.writePackets(from: writes)
            var received: [[UInt8]] = []
            let incoming = PacketBatch(capacity: 16, slotSize: 2048)
            while received.count < payloads.count {
                let n = try socket.receive(into: incoming)
                guard n > 0 else { throw StepFailed("socket closed") }
                for i in 0..<n { received.append(incoming.bytes(i)) }
            }

            // Socket → device: one GSO send of 8 datagrams to the peer.
            let outgoing = PacketBatch(capacity: 8, slotSize: 2048)
            for (i, payload) in payloads.enumerated() { outgoing.set(i, bytes: payload, endpoint: peer) }
            outgoing.count = payloads.count
            guard try socket.send(from: outgoing) == payloads.count else { throw StepFailed("the datagrams were not sent") }
            var read: [[UInt8]] = []
            let batch = PacketBatch(capacity: 16, slotSize: 2048)
            for _ in 0..<50 where read.count < payloads.count {
                let n = try device.readPackets(into: batch, headroom: 16)
                for i in 0..<n where PacketBuilder.parseIPv4UDP(batch.bytes(i))?.destination == peer {
                    read.append(batch.bytes(i))
                }
            }
            let stats = device.stats
            return OffloadObservations(
                tcp: device.offloadsEnabled, udp: device.udpOffloadEnabled, written: written,
                merged: stats.mergedWrites, received: received, read: read, segmented: stats.segmentedReads)
        }
        // Plain values, so a failure prints them and not every payload byte.
        let (tcp, udp, written, merged, segmented) = (seen.tcp, seen.udp, seen.written, seen.merged, seen.segmented)
        #expect(tcp, "TUNSETOFFLOAD accepted TSO")
        #expect(udp, "TUNSETOFFLOAD accepted USO (USO4 | USO6)")
        #expect(written == payloads.count)
        #expect(merged == 1, "the 8 datagrams went in one write")
        #expect(seen.received == payloads)
        #expect(segmented >= 1, "the device handed over a UDP super-packet")
        let parsed = seen.read.compactMap(PacketBuilder.parseIPv4UDP)
        #expect(parsed.map(\.payload) == payloads)
        #expect(parsed.allSatisfy { $0.headerChecksumValid && $0.udpChecksumValid })
    }
}

// IPv6 through an offloading device: the device gets fd00:77::1/64 (RFC 4193 unique local), the test
// plays fd00:77::2 at the far end of the TUN device, and a plain AF_INET6 socket of the namespace talks
// to it. (UDPSocket is still IPv4 only, so these tests use the socket calls directly.)
private let local6 = IPv6Address("fd00:77::1")!
private let peer6 = IPv6Address("fd00:77::2")!

/// Adds `address/length` to interface `name` (ioctl SIOCSIFADDR on an AF_INET6 socket with a struct
/// in6_ifreq: the address, a u32 prefix length and an int interface index; linux/ipv6.h, netdevice(7)).
/// A TUN device is IFF_NOARP, so the address skips duplicate address detection and is usable at once.
private func addIPv6Address(_ address: IPv6Address, length: UInt32, to name: String) throws {
    let index = if_nametoindex(name)
    guard index != 0 else { throw StepFailed("no interface \(name)") }
    let control = socket(AF_INET6, Int32(SOCK_DGRAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
    guard control >= 0 else { throw StepFailed("socket(AF_INET6) failed (errno \(errno))") }
    defer { Glibc.close(control) }
    var request = address.networkBytes
    withUnsafeBytes(of: length) { request += $0 }
    withUnsafeBytes(of: Int32(index)) { request += $0 }
    let result = request.withUnsafeMutableBytes { ioctl(control, UInt(SIOCSIFADDR), $0.baseAddress!) }
    guard result == 0 else { throw StepFailed("SIOCSIFADDR \(address)/\(length) on \(name) failed (errno \(errno))") }
}

/// `sockaddr_in6` for `address` and `port`.
private func socketAddress(_ address: IPv6Address, _ port: UInt16) -> sockaddr_in6 {
    var a = sockaddr_in6()
    a.sin6_family = sa_family_t(AF_INET6)
    a.sin6_port = port.bigEndian
    withUnsafeMutableBytes(of: &a.sin6_addr) { $0.copyBytes(from: address.networkBytes) }
    return a
}

/// An AF_INET6 socket of `type` bound to [fd00:77::1]:0, and the port it got. A new address is tentative
/// (bind gives EADDRNOTAVAIL) until the kernel's address configuration work has run, even where it skips
/// duplicate address detection, so bind is tried again for up to 2 s while that is the answer.
private func boundSocket6(_ type: Int32) throws -> (Int32, UInt16) {
    let fd = socket(AF_INET6, type | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw StepFailed("socket(AF_INET6) failed (errno \(errno))") }
    var address = socketAddress(local6, 0)
    var bound: Int32 = -1
    for _ in 0..<200 {
        bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
        }
        if bound == 0 || errno != EADDRNOTAVAIL { break }
        usleep(10_000)
    }
    var length = socklen_t(MemoryLayout<sockaddr_in6>.size)
    let named = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    guard bound == 0, named == 0 else {
        Glibc.close(fd)
        throw StepFailed("bind to [\(local6)]:0 failed (errno \(errno))")
    }
    return (fd, UInt16(bigEndian: address.sin6_port))
}

/// recv(2) of up to `capacity` bytes after waiting at most 3 s in poll(2) for them.
private func receive(_ fd: Int32, capacity: Int) throws -> [UInt8] {
    var ready = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
    guard poll(&ready, 1, 3000) == 1 else { throw StepFailed("nothing to receive within 3 s") }
    var buffer = [UInt8](repeating: 0, count: capacity)
    let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, capacity, 0) }
    guard n > 0 else { throw StepFailed("recv failed (\(n), errno \(errno))") }
    return Array(buffer.prefix(n))
}

/// A device with offloads in a fresh namespace, IPv4 10.77.0.1/24 and IPv6 fd00:77::1/64, MTU 1420.
private func openOffloadingDevice6() throws -> TunDevice {
    let device = try TunDevice.open(name: "tvtest0", offload: true)
    do {
        guard let prefix = IPv4Prefix("10.77.0.1/24") else { throw StepFailed("prefix did not parse") }
        try device.configure(address: prefix, mtu: 1420)
        try addIPv6Address(local6, length: 64, to: "tvtest0")
    } catch {
        device.close()
        throw error
    }
    return device
}

/// The far end's initial sequence number in the TCP tests.
private let peerInitialSequence: UInt32 = 0x7000_0000

/// Connects the non-blocking TCP socket `fd` to `peer` through `device`, the test playing the peer: it
/// reads the SYN and writes a SYN-ACK with an MSS option of 1360 (1420 − 40 − 20). Returns the socket's
/// endpoint and its SYN.
private func connectThroughDevice(
    _ device: TunDevice, _ fd: Int32, to peer: Endpoint, batch: PacketBatch, headroom: Int
) throws -> (Endpoint, PacketBuilder.IPv6TCP) {
    guard let address = peer.address.ipv6 else { throw StepFailed("the peer is not IPv6") }
    var peerAddress = socketAddress(address, peer.port)
    let connecting = withUnsafePointer(to: &peerAddress) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
    }
    guard connecting == 0 || errno == EINPROGRESS else { throw StepFailed("connect failed (errno \(errno))") }
    func syn(_ index: Int) -> PacketBuilder.IPv6TCP? {
        guard let s = PacketBuilder.parseIPv6TCP(batch.bytes(index)), s.destination == peer, s.flags & 0x02 != 0 else { return nil }
        return s
    }
    let synIndex = try readUntil(device, batch, headroom: headroom) { syn($0) != nil }
    guard let request = syn(synIndex) else { throw StepFailed("the SYN did not parse") }
    let synAck = PacketBuilder.ipv6TCP(
        from: peer, to: request.source, sequence: peerInitialSequence, acknowledgment: request.sequence &+ 1, flags: 0x12,
        options: [2, 4, 0x05, 0x50], payload: [])
    let writes = PacketBatch(capacity: 1, slotSize: 2048)
    writes.set(0, bytes: synAck)
    writes.count = 1
    guard try device.writePackets(from: writes) == 1 else { throw StepFailed("the SYN-ACK was not written") }
    var ready = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
    guard poll(&ready, 1, 3000) == 1 else { throw StepFailed("the connection did not complete") }
    return (request.source, request)
}

@Suite(
    "TunDevice offloads over IPv6 in a fresh network namespace", .serialized,
    .needsRoot("needs root for network namespaces"))
struct TunDeviceIPv6OffloadTests {
    struct TCPObservations: Sendable {
        var offloads: Bool
        var segmentedReads: Int
        var droppedSuperPackets: Int
        var mergedWrites: Int
        var largest: Int
        var invalid: [String]
        var sent: [UInt8]
        var read: [UInt8]
        var written: Int
        var received: [UInt8]
    }

    /// TSO over IPv6 both ways, against the kernel's own TCP. A socket connects to the peer through the
    /// device (the test answers the SYN); one 12,000-byte send comes out of the device as TCPV6
    /// super-packets that the reader splits into segments of at most the MTU, each with a valid checksum
    /// and the right sequence number; then the peer's 8 in-order segments go in as one merged write, and
    /// the socket receives their bytes in order.
    @Test func tcpOverIPv6IsSplitOnReadAndMergedOnWrite() throws {
        var random = SeededRandom(seed: 66)
        let upload = (0..<12_000).map { _ in UInt8(truncatingIfNeeded: random.next()) }
        let download = (0..<8).map { i in [UInt8](repeating: UInt8(0x41 + i), count: i == 7 ? 500 : 1000) }
        let seen = try runInFreshNetworkNamespace { () throws -> TCPObservations in
            let device = try openOffloadingDevice6()
            defer { device.close() }
            let (fd, _) = try boundSocket6(Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue))
            defer { Glibc.close(fd) }
            let peer = Endpoint(address: peer6, port: 7000)
            let batch = PacketBatch(capacity: 64, slotSize: 2048)
            let headroom = 16
            func segmentToPeer(_ index: Int) -> PacketBuilder.IPv6TCP? {
                guard let s = PacketBuilder.parseIPv6TCP(batch.bytes(index)), s.destination == peer else { return nil }
                return s
            }
            let (local, syn) = try connectThroughDevice(device, fd, to: peer, batch: batch, headroom: headroom)
            let peerISN = peerInitialSequence
            let writes = PacketBatch(capacity: 8, slotSize: 2048)

            // Socket → device: one send, read back as segments.
            let sent = upload.withUnsafeBytes { send(fd, $0.baseAddress!, $0.count, 0) }
            guard sent == upload.count else { throw StepFailed("send took \(sent) of \(upload.count) bytes (errno \(errno))") }
            let firstByte = syn.sequence &+ 1
            var pieces: [UInt32: [UInt8]] = [:]
            var invalid: [String] = []
            var largest = 0
            var contiguous = 0
            for _ in 0..<200 where contiguous < upload.count {
                let n = try device.readPackets(into: batch, headroom: headroom)
                for i in 0..<n {
                    guard let s = segmentToPeer(i), !s.payload.isEmpty else { continue }
                    largest = max(largest, batch.lengths[i])
                    if !s.checksumValid { invalid.append("segment at \(s.sequence &- firstByte) has a bad checksum") }
                    if s.flags & 0x02 != 0 { invalid.append("data with SYN") }
                    pieces[s.sequence &- firstByte] = s.payload
                }
                while let piece = pieces[UInt32(contiguous)] { contiguous += piece.count }
            }
            var read: [UInt8] = []
            while let piece = pieces[UInt32(read.count)], read.count < upload.count { read += piece }
            let segmented = device.stats.segmentedReads

            // Device → socket: 8 segments of the peer's data (acknowledging all of ours) in one merged write.
            let ack = firstByte &+ UInt32(upload.count)
            var sequence = peerISN &+ 1
            for (i, chunk) in download.enumerated() {
                writes.set(i, bytes: PacketBuilder.ipv6TCP(
                    from: peer, to: local, sequence: sequence, acknowledgment: ack, flags: i == 7 ? 0x18 : 0x10, payload: chunk))
                sequence &+= UInt32(chunk.count)
            }
            writes.count = download.count
            let mergedBefore = device.stats.mergedWrites
            let written = try device.writePackets(from: writes)
            let expectedBytes = download.reduce(0) { $0 + $1.count }
            var received: [UInt8] = []
            while received.count < expectedBytes { received += try receive(fd, capacity: 65536) }
            let stats = device.stats
            return TCPObservations(
                offloads: device.offloadsEnabled, segmentedReads: segmented, droppedSuperPackets: stats.droppedSuperPackets,
                mergedWrites: stats.mergedWrites - mergedBefore, largest: largest, invalid: invalid, sent: upload, read: read,
                written: written, received: received)
        }
        let (offloads, segmented, dropped, merged, largest, written) =
            (seen.offloads, seen.segmentedReads, seen.droppedSuperPackets, seen.mergedWrites, seen.largest, seen.written)
        #expect(offloads, "TUNSETOFFLOAD accepted CSUM | TSO4 | TSO6")
        #expect(segmented >= 1, "the device handed over a TCPV6 super-packet")
        #expect(dropped == 0)
        #expect(largest <= 1420, "no segment is longer than the MTU")
        #expect(seen.invalid == [])
        #expect(seen.read == seen.sent, "the segments carry the sent bytes in order")
        #expect(written == 8)
        #expect(merged == 1, "the 8 segments went in one write")
        #expect(seen.received == download.flatMap { $0 })
        #expect(!rootNamespaceHasInterface("tvtest0"))
    }

    struct ExtensionHeaderObservations: Sendable {
        var dropped: Int
        var segmented: Int
        var markers: Int
        var splitWithExtensionHeaders: Int
    }

    /// A TCP super-packet whose IPv6 header is followed by an extension header (here a destination
    /// options header the socket adds to every packet, IPV6_DSTOPTS in ipv6(7)) is not split: the reader
    /// drops and counts it and goes on reading. After the send, a UDP datagram to the peer ("marker")
    /// gives each read something to return; the drop is looked for after each marker, at most 20 times.
    @Test func aTCPv6SuperPacketWithExtensionHeadersIsDroppedAndCounted() throws {
        let seen = try runInFreshNetworkNamespace { () throws -> ExtensionHeaderObservations in
            let device = try openOffloadingDevice6()
            defer { device.close() }
            let (fd, _) = try boundSocket6(Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue))
            defer { Glibc.close(fd) }
            let (marker, _) = try boundSocket6(Int32(SOCK_DGRAM.rawValue))
            defer { Glibc.close(marker) }
            let peer = Endpoint(address: peer6, port: 7000)
            let markerPeer = Endpoint(address: peer6, port: 7001)
            let batch = PacketBatch(capacity: 64, slotSize: 2048)
            _ = try connectThroughDevice(device, fd, to: peer, batch: batch, headroom: 0)
            // From now on every packet of the connection carries an 8-byte destination options header
            // holding one PadN option (RFC 8200 section 4.6); the kernel fills in its next header byte.
            var options: [UInt8] = [0, 0, 1, 4, 0, 0, 0, 0]
            guard setsockopt(fd, Int32(IPPROTO_IPV6), 59 /* IPV6_DSTOPTS, linux/in6.h */, &options, socklen_t(options.count)) == 0 else {
                throw StepFailed("IPV6_DSTOPTS failed (errno \(errno))")
            }
            let upload = [UInt8](repeating: 0x5a, count: 12_000)
            let sent = upload.withUnsafeBytes { send(fd, $0.baseAddress!, $0.count, 0) }
            guard sent == upload.count else { throw StepFailed("send took \(sent) of \(upload.count) bytes (errno \(errno))") }
            var markers = 0
            var splitWithExtensionHeaders = 0
            var markerAddress = socketAddress(peer6, markerPeer.port)
            for _ in 0..<20 where device.stats.droppedSuperPackets == 0 {
                let one: [UInt8] = [1]
                let n = one.withUnsafeBytes { bytes in
                    withUnsafePointer(to: &markerAddress) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                            sendto(marker, bytes.baseAddress!, 1, 0, $0, socklen_t(MemoryLayout<sockaddr_in6>.size))
                        }
                    }
                }
                guard n == 1 else { throw StepFailed("the marker was not sent (errno \(errno))") }
                _ = try readUntil(device, batch, headroom: 0) { index in
                    let bytes = batch.bytes(index)
                    // A packet of the TCP flow that is longer than one segment would be a super-packet
                    // passed on whole.
                    if bytes.count > 1420 { splitWithExtensionHeaders += 1 }
                    if PacketBuilder.parseIPv6UDP(bytes)?.destination == markerPeer {
                        markers += 1
                        return true
                    }
                    return false
                }
                usleep(50_000)
            }
            let stats = device.stats
            return ExtensionHeaderObservations(
                dropped: stats.droppedSuperPackets, segmented: stats.segmentedReads, markers: markers,
                splitWithExtensionHeaders: splitWithExtensionHeaders)
        }
        let (dropped, segmented, markers, whole) = (seen.dropped, seen.segmented, seen.markers, seen.splitWithExtensionHeaders)
        #expect(dropped >= 1, "the super-packet with a destination options header was dropped and counted")
        #expect(segmented == 0, "nothing was split")
        #expect(markers >= 1, "the reader went on reading after the drop")
        #expect(whole == 0, "no super-packet was passed on whole")
    }

    struct UDPObservations: Sendable {
        var udpOffloads: Bool
        var written: Int
        var merged: Int
        var received: [[UInt8]]
        var read: [[UInt8]]
        var segmented: Int
        var dropped: Int
    }

    /// USO over IPv6 both ways: 8 datagrams of one flow written as one merged write reach the socket as
    /// the same 8 datagrams; one UDP_SEGMENT send of 8 datagrams comes out of the device as a UDP/IPv6
    /// super-packet that the reader splits into 8 packets with valid checksums.
    @Test(.enabled(if: kernelAtLeast(6, 2), "USO on TUN devices needs Linux 6.2"))
    func udpOverIPv6IsSplitOnReadAndMergedOnWrite() throws {
        let payloads = (0..<8).map { i in [UInt8](repeating: UInt8(0x30 + i), count: i == 7 ? 300 : 1000) }
        let seen = try runInFreshNetworkNamespace { () throws -> UDPObservations in
            let device = try openOffloadingDevice6()
            defer { device.close() }
            let (fd, port) = try boundSocket6(Int32(SOCK_DGRAM.rawValue))
            defer { Glibc.close(fd) }
            let local = Endpoint(address: local6, port: port)
            let peer = Endpoint(address: peer6, port: 9999)

            // Device → socket.
            let writes = PacketBatch(capacity: 8, slotSize: 2048)
            for (i, payload) in payloads.enumerated() {
                writes.set(i, bytes: PacketBuilder.ipv6UDP(from: peer, to: local, payload: payload))
            }
            writes.count = payloads.count
            let written = try device.writePackets(from: writes)
            var received: [[UInt8]] = []
            while received.count < payloads.count { received.append(try receive(fd, capacity: 65536)) }

            // Socket → device: one send of all 8 payloads, cut into 1000-byte datagrams (UDP_SEGMENT).
            var size = Int32(1000)
            guard setsockopt(fd, Int32(CLINUX_SOL_UDP), Int32(CLINUX_UDP_SEGMENT), &size, socklen_t(MemoryLayout<Int32>.size)) == 0 else {
                throw StepFailed("UDP_SEGMENT failed (errno \(errno))")
            }
            var peerAddress = socketAddress(peer6, peer.port)
            let all = payloads.flatMap { $0 }
            let sent = all.withUnsafeBytes { bytes in
                withUnsafePointer(to: &peerAddress) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        sendto(fd, bytes.baseAddress!, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in6>.size))
                    }
                }
            }
            guard sent == all.count else { throw StepFailed("sendto took \(sent) of \(all.count) bytes (errno \(errno))") }
            var read: [[UInt8]] = []
            let batch = PacketBatch(capacity: 16, slotSize: 2048)
            for _ in 0..<50 where read.count < payloads.count {
                let n = try device.readPackets(into: batch, headroom: 16)
                for i in 0..<n where PacketBuilder.parseIPv6UDP(batch.bytes(i))?.destination == peer {
                    read.append(batch.bytes(i))
                }
            }
            let stats = device.stats
            return UDPObservations(
                udpOffloads: device.udpOffloadEnabled, written: written, merged: stats.mergedWrites, received: received, read: read,
                segmented: stats.segmentedReads, dropped: stats.droppedSuperPackets)
        }
        let (udp, written, merged, segmented, dropped) = (seen.udpOffloads, seen.written, seen.merged, seen.segmented, seen.dropped)
        #expect(udp, "TUNSETOFFLOAD accepted USO (USO4 | USO6)")
        #expect(written == payloads.count)
        #expect(merged == 1, "the 8 datagrams went in one write")
        #expect(seen.received == payloads)
        #expect(segmented >= 1, "the device handed over a UDP/IPv6 super-packet")
        #expect(dropped == 0)
        let parsed = seen.read.compactMap(PacketBuilder.parseIPv6UDP)
        #expect(parsed.count == seen.read.count)
        #expect(parsed.map(\.payload) == payloads)
        #expect(parsed.allSatisfy { $0.udpChecksumValid })
        #expect(seen.read.allSatisfy { Int($0[4]) << 8 | Int($0[5]) == $0.count - 40 }, "payload lengths")
        #expect(!rootNamespaceHasInterface("tvtest0"))
    }
}

@Suite("TunDevice names and messages")
struct TunErrorTests {
    @Test func anOverlongNameIsRefusedBeforeAnyCall() {
        #expect(throws: TunError.invalidName("abcdefghijklmnop", reason: "it is 16 bytes long, the limit is 15")) {
            _ = try TunDevice.open(name: "abcdefghijklmnop")
        }
        let error = TunError.invalidName("abcdefghijklmnop", reason: "it is 16 bytes long, the limit is 15")
        #expect(
            error.description
                == "invalid TUN device name \"abcdefghijklmnop\": it is 16 bytes long, the limit is 15; choose another --dev")
    }

    @Test func emptyReservedAndSlashedNamesAreRefused() {
        #expect(throws: TunError.invalidName("", reason: "the name is empty")) { _ = try TunDevice.open(name: "") }
        #expect(TunDevice.invalidNameReason("..") != nil)
        #expect(TunDevice.invalidNameReason("tun/0") != nil)
        #expect(TunDevice.invalidNameReason("tun 0") != nil)
        #expect(TunDevice.invalidNameReason("tun:0") != nil)
        #expect(TunDevice.invalidNameReason("abcdefghijklmno") == nil, "15 bytes is the limit")
    }

    @Test func everyMessageIsOneLineThatSaysWhatToDo() {
        let messages = [
            TunError.tunModuleMissing(path: "/dev/net/tun"),
            .permissionDenied(device: "tun0", call: "TUNSETIFF"),
            .deviceBusy(device: "tun0"),
            .notATunDevice(device: "tun0"),
            .invalidMTU(device: "tun0", mtu: 20),
            .configurationDenied(device: "tun0", call: "SIOCSIFADDR"),
        ].map(\.description)
        #expect(messages.allSatisfy { !$0.contains("\n") })
        #expect(
            messages[0]
                == "/dev/net/tun is missing: load the tun module with 'modprobe tun', or in a container pass --device /dev/net/tun")
        #expect(
            messages[1]
                == "cannot open TUN device tun0 (TUNSETIFF: permission denied): run as root or with CAP_NET_ADMIN, "
                + "or pre-create it with 'ip tuntap add dev tun0 mode tun user USER'")
    }
}
