// The arrays recvmmsg(2) and sendmmsg(2) read: one mmsghdr, iovec and socket address per datagram, the
// address slot a sockaddr_in6 so that either family fits (SocketAddress.swift).
//
// `MessageVectors` is a non-owning view over the three arrays, filled from a `PacketBatch` before each
// call; `MessageStorage` owns one set for the life of a socket, so the data path allocates nothing.
// Each header points at its own iovec and address slot; only those pointers' targets change per call.

import CLinux
import Engine
import Glibc
import Transport

/// Non-owning pointers to `capacity` message headers, iovecs and socket address slots.
struct MessageVectors {
    let capacity: Int
    let messages: UnsafeMutablePointer<clinux_mmsghdr>
    let iovecs: UnsafeMutablePointer<iovec>
    let addresses: UnsafeMutablePointer<SocketAddressSlot>
    /// One control buffer of `controlSpace` bytes per message (a UDP_SEGMENT cmsg), and the number of
    /// datagrams each message carries, for sends that use UDP GSO.
    let control: UnsafeMutableRawPointer
    let datagramsPerMessage: UnsafeMutablePointer<Int>

    /// CMSG_SPACE(sizeof(uint16_t)): room for one UDP_SEGMENT control message.
    static let controlSpace = Int(clinux_cmsg_space(2))

    /// Sets message `index` to send `count` datagrams of `segmentSize` bytes (the last may be shorter),
    /// whose bytes are described by `iovecs[firstVector ..< firstVector + count]`, to address slot `index`,
    /// as one UDP GSO send (a UDP_SEGMENT cmsg) when `count > 1`. `setAddress` fills the slot after.
    @inline(__always)
    func prepareGroup(_ index: Int, firstVector: Int, count: Int, segmentSize: Int) {
        var controlPointer: UnsafeMutableRawPointer? = nil
        var controlLength = 0
        if count > 1 {
            let c = control + index * Self.controlSpace
            c.initializeMemory(as: UInt8.self, repeating: 0, count: Self.controlSpace)
            let header = c.assumingMemoryBound(to: cmsghdr.self)
            header.pointee.cmsg_len = clinux_cmsg_len(2)
            header.pointee.cmsg_level = Int32(IPPROTO_UDP)
            header.pointee.cmsg_type = Int32(CLINUX_UDP_SEGMENT)
            clinux_cmsg_data(header).withMemoryRebound(to: UInt16.self, capacity: 1) { $0.pointee = UInt16(segmentSize) }
            controlPointer = c
            controlLength = Self.controlSpace
        }
        messages[index] = clinux_mmsghdr(
            msg_hdr: msghdr(
                msg_name: UnsafeMutableRawPointer(addresses + index),
                msg_namelen: socklen_t(MemoryLayout<SocketAddressSlot>.size),
                msg_iov: iovecs + firstVector, msg_iovlen: count,
                msg_control: controlPointer, msg_controllen: controlLength, msg_flags: 0),
            msg_len: 0)
        datagramsPerMessage[index] = count
    }

    /// Sets message `index` to read or write `length` bytes at `base`, with address slot `index`.
    @inline(__always)
    func prepare(_ index: Int, base: UnsafeMutableRawPointer, length: Int) {
        iovecs[index] = iovec(iov_base: base, iov_len: length)
        messages[index] = clinux_mmsghdr(
            msg_hdr: msghdr(
                msg_name: UnsafeMutableRawPointer(addresses + index),
                msg_namelen: socklen_t(MemoryLayout<SocketAddressSlot>.size),
                msg_iov: iovecs + index, msg_iovlen: 1,
                msg_control: nil, msg_controllen: 0, msg_flags: 0),
            msg_len: 0)
    }

    /// Address slot `index` set to `endpoint` as a destination for a socket of `family` (an IPv4 endpoint
    /// IPv4-mapped on an AF_INET6 socket), and message `index`'s name length to match.
    @inline(__always)
    func setAddress(_ index: Int, to endpoint: Endpoint, family: Int32) {
        messages[index].msg_hdr.msg_namelen = endpoint.write(to: addresses + index, family: family)
    }

    /// The source recvmmsg(2) left in message `index` (an IPv4-mapped address folded to IPv4), or `.none`
    /// if it is of neither family.
    @inline(__always)
    func sourceEndpoint(_ index: Int) -> Endpoint {
        Endpoint(socketAddress: UnsafeRawPointer(addresses + index), length: Int(messages[index].msg_hdr.msg_namelen))
            ?? .none
    }
}

/// Owns one set of message arrays (allocated once, zero-filled, freed in `deinit`).
final class MessageStorage {
    let vectors: MessageVectors

    init(capacity: Int) {
        precondition(capacity > 0, "message arrays need at least one entry")
        let messages = UnsafeMutablePointer<clinux_mmsghdr>.allocate(capacity: capacity)
        messages.initialize(repeating: clinux_mmsghdr(), count: capacity)
        let iovecs = UnsafeMutablePointer<iovec>.allocate(capacity: capacity)
        iovecs.initialize(repeating: iovec(), count: capacity)
        let addresses = UnsafeMutablePointer<SocketAddressSlot>.allocate(capacity: capacity)
        addresses.initialize(repeating: SocketAddressSlot(), count: capacity)
        let control = UnsafeMutableRawPointer.allocate(byteCount: capacity * MessageVectors.controlSpace, alignment: 8)
        control.initializeMemory(as: UInt8.self, repeating: 0, count: capacity * MessageVectors.controlSpace)
        let groups = UnsafeMutablePointer<Int>.allocate(capacity: capacity)
        groups.initialize(repeating: 0, count: capacity)
        vectors = MessageVectors(
            capacity: capacity, messages: messages, iovecs: iovecs, addresses: addresses, control: control,
            datagramsPerMessage: groups)
    }

    deinit {
        vectors.messages.deallocate()
        vectors.iovecs.deallocate()
        vectors.addresses.deallocate()
        vectors.control.deallocate()
        vectors.datagramsPerMessage.deallocate()
    }
}
