// Socket addresses of both families: an `Endpoint` as a sockaddr_in or sockaddr_in6 and back (ip(7),
// ipv6(7)), and opening and binding a socket for one, which the UDP socket and the metrics endpoint share.
//
// The family follows the address bound: an IPv4 address gets an AF_INET socket; `::` gets one AF_INET6
// socket with IPV6_V6ONLY off, which also serves IPv4 peers under their IPv4-mapped addresses (RFC 3493
// §3.7, RFC 4291 §2.5.5.2); any other IPv6 address gets an AF_INET6 socket with IPV6_V6ONLY on. Addresses
// the kernel reports are folded back (`Endpoint.unmapped`), so an IPv4 peer is `.v4` whatever socket it
// came in on; an IPv4 destination on an AF_INET6 socket is written in the mapped form.

import Engine
import Glibc
import Transport

/// Room for the socket address of either family: a sockaddr_in fits in a sockaddr_in6.
typealias SocketAddressSlot = sockaddr_in6

extension Endpoint {
    /// The socket family that binds this endpoint: AF_INET6 for an IPv6 address, AF_INET for IPv4.
    var socketFamily: Int32 { address.isIPv6 ? AF_INET6 : AF_INET }

    /// Whether a socket bound to this endpoint serves both families: `[::]` (IPV6_V6ONLY off).
    var bindsDualStack: Bool { address == .v6(.any) }

    /// Writes the endpoint at `slot` as a destination for a socket of `family` and returns its length.
    /// On an AF_INET6 socket an IPv4 endpoint takes the IPv4-mapped form `::ffff:a.b.c.d`. On an AF_INET
    /// socket an IPv6 endpoint is written as an AF_INET6 address, which the kernel refuses for the one
    /// datagram (EAFNOSUPPORT), rather than silently becoming some IPv4 address.
    @inline(__always)
    func write(to slot: UnsafeMutablePointer<SocketAddressSlot>, family: Int32) -> socklen_t {
        switch (address, family == AF_INET6) {
        case (.v4(let v4), false):
            var a = sockaddr_in()
            a.sin_family = sa_family_t(AF_INET)
            a.sin_port = port.bigEndian
            a.sin_addr.s_addr = v4.value.bigEndian
            UnsafeMutableRawPointer(slot).storeBytes(of: a, as: sockaddr_in.self)
            return socklen_t(MemoryLayout<sockaddr_in>.size)
        case (.v4(let v4), true):
            slot.pointee = Self.socketAddress6(IPv6Address(mapping: v4), port: port)
            return socklen_t(MemoryLayout<sockaddr_in6>.size)
        case (.v6(let v6), _):
            slot.pointee = Self.socketAddress6(v6, port: port)
            return socklen_t(MemoryLayout<sockaddr_in6>.size)
        }
    }

    /// A sockaddr_in6 for `address` and `port` (network byte order; flow label and scope zero).
    static func socketAddress6(_ address: IPv6Address, port: UInt16) -> sockaddr_in6 {
        var a = sockaddr_in6()
        a.sin6_family = sa_family_t(AF_INET6)
        a.sin6_port = port.bigEndian
        withUnsafeMutableBytes(of: &a.sin6_addr) { address.write(networkBytesTo: $0.baseAddress!) }
        return a
    }

    /// The endpoint in the socket address at `address` of `length` bytes (as recvmmsg(2), getsockname(2)
    /// or getaddrinfo(3) report one), an IPv4-mapped IPv6 address folded to IPv4; nil for another family
    /// or a length too short for its family.
    init?(socketAddress address: UnsafeRawPointer, length: Int) {
        guard length >= MemoryLayout<sa_family_t>.size else { return nil }
        switch Int32(address.loadUnaligned(as: sa_family_t.self)) {
        case AF_INET where length >= MemoryLayout<sockaddr_in>.size:
            let a = address.loadUnaligned(as: sockaddr_in.self)
            self.init(address: IPv4Address(UInt32(bigEndian: a.sin_addr.s_addr)), port: UInt16(bigEndian: a.sin_port))
        case AF_INET6 where length >= MemoryLayout<sockaddr_in6>.size:
            var a = address.loadUnaligned(as: sockaddr_in6.self)
            let v6 = withUnsafeBytes(of: &a.sin6_addr) { IPv6Address(networkBytes: $0.baseAddress!) }
            self = Endpoint(address: v6, port: UInt16(bigEndian: a.sin6_port)).unmapped
        default:
            return nil
        }
    }
}

extension Syscall {
    /// Opens a socket of `type` and `proto` for binding `endpoint` (socket(2) in `endpoint.socketFamily`,
    /// SOCK_CLOEXEC and SOCK_NONBLOCK added by the caller in `type`); an AF_INET6 socket gets IPV6_V6ONLY
    /// off for `[::]` (dual stack) and on for any other address (setsockopt(2), ipv6(7)). The caller owns
    /// the descriptor.
    ///
    /// - Throws: `IOError` naming socket (EAFNOSUPPORT on a kernel without IPv6) or setsockopt.
    static func openSocket(for endpoint: Endpoint, type: Int32, protocol proto: Int32) throws(IOError) -> Int32 {
        let fd = try check("socket") { socket(endpoint.socketFamily, type, proto) }
        guard endpoint.socketFamily == AF_INET6 else { return fd }
        let v6only: Int32 = endpoint.bindsDualStack ? 0 : 1
        if case .failure(let code) = setOption(fd, level: Int32(IPPROTO_IPV6), name: IPV6_V6ONLY, value: v6only) {
            close(fd)
            throw IOError("setsockopt", code)
        }
        return fd
    }

    /// Binds `fd` (opened by `openSocket(for: endpoint, …)`) to `endpoint` (bind(2)) and returns the
    /// endpoint bound (getsockname(2)), which has the kernel's pick for port 0.
    ///
    /// - Throws: `IOError` naming bind (EADDRINUSE, EADDRNOTAVAIL…) or getsockname.
    static func bind(_ fd: Int32, to endpoint: Endpoint) throws(IOError) -> Endpoint {
        var address = SocketAddressSlot()
        let length = endpoint.write(to: &address, family: endpoint.socketFamily)
        _ = try check("bind") {
            withUnsafePointer(to: &address) {
                UnsafeRawPointer($0).withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, length) }
            }
        }
        var bound = SocketAddressSlot()
        var boundLength = socklen_t(MemoryLayout<SocketAddressSlot>.size)
        _ = try check("getsockname") {
            withUnsafeMutablePointer(to: &bound) {
                UnsafeMutableRawPointer($0).withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    getsockname(fd, $0, &boundLength)
                }
            }
        }
        guard let local = withUnsafeBytes(of: &bound, { Endpoint(socketAddress: $0.baseAddress!, length: Int(boundLength)) })
        else {
            throw IOError(call: "getsockname", errno: EAFNOSUPPORT, detail: "the socket has no IPv4 or IPv6 address")
        }
        return local
    }
}
