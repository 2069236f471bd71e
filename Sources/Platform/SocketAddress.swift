// IPv4 socket addresses: an `Endpoint` as a sockaddr_in, and binding a socket to one, which the UDP
// socket and the metrics endpoint share (ip(7) for the address layout).

import Engine
import Glibc
import Transport

extension Endpoint {
    /// The endpoint as a `sockaddr_in` (AF_INET, fields in network byte order).
    var socketAddress: sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = (self.address.ipv4 ?? .any).value.bigEndian
        return address
    }
}

extension Syscall {
    /// Binds the IPv4 socket `fd` to `endpoint` (bind(2)) and returns the endpoint bound (getsockname(2)),
    /// which has the kernel's pick for port 0.
    ///
    /// - Throws: `IOError` naming bind (EADDRINUSE, EADDRNOTAVAIL…) or getsockname.
    static func bind(_ fd: Int32, to endpoint: Endpoint) throws(IOError) -> Endpoint {
        var address = endpoint.socketAddress
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = try check("bind") {
            withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, length) }
            }
        }
        var bound = sockaddr_in()
        _ = try check("getsockname") {
            withUnsafeMutablePointer(to: &bound) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
            }
        }
        return Endpoint(sockaddr: bound)
    }
}
