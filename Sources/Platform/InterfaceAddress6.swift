// The IPv6 address of a tunnel device: added and removed with ioctl SIOCSIFADDR/SIOCDIFADDR on an
// AF_INET6 socket (struct in6_ifreq, linux/ipv6.h; netdevice(7)), and listed from if_inet6 (proc(5)) of
// /proc/thread-self/net, the calling thread's network namespace (/proc/net is the process's). The device
// step of a plan (`DeviceSettings.address6`) uses it; like the IPv4 address, it needs no undo: the
// address goes with the device.

import CLinux
import Engine
import Glibc
import Transport

extension HostNetwork {
    /// One line of /proc/net/if_inet6: an address of an interface.
    struct InterfaceAddress6: Equatable {
        var address: IPv6Address
        var prefixLength: Int
        /// The scope as the kernel writes it: 0x00 global, 0x10 host, 0x20 link.
        var scope: Int
        var device: String
    }

    /// Parses /proc/net/if_inet6: "ADDRESS(32 hex) IFINDEX PREFIXLEN SCOPE FLAGS NAME", numbers in hex.
    /// Lines of another shape are skipped.
    static func parseInterfaceAddresses6(_ text: String) -> [InterfaceAddress6] {
        text.split(separator: "\n").compactMap { line in
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            guard f.count == 6, f[0].count == 32, let high = UInt64(f[0].prefix(16), radix: 16),
                let low = UInt64(f[0].suffix(16), radix: 16), let length = Int(f[2], radix: 16), length <= 128,
                let scope = Int(f[3], radix: 16)
            else { return nil }
            return InterfaceAddress6(
                address: IPv6Address(high: high, low: low), prefixLength: length, scope: scope, device: String(f[5]))
        }
    }

    /// Makes `wanted` the only global IPv6 address of `device`: removes the others (a client's previous
    /// assignment) and adds `wanted` unless it is there; with nil, only removes. Link-local addresses stay.
    ///
    /// - Throws: `IOError` naming the ioctl when the kernel refuses it (e.g. EPERM without CAP_NET_ADMIN).
    public static func setIPv6Address(_ wanted: IPv6Prefix?, device: String) throws(IOError) {
        let index = if_nametoindex(device)
        guard index != 0 else { throw IOError(call: "if_nametoindex(\(device))", errno: errno, detail: "no such device") }
        let text = (try? KeyFiles.readSmallFile("/proc/thread-self/net/if_inet6", what: "address list").text) ?? []
        let present = parseInterfaceAddresses6(String(decoding: text, as: UTF8.self)).filter { $0.device == device && $0.scope == 0 }
        let fd = socket(AF_INET6, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw IOError(call: "socket(AF_INET6)", errno: errno, detail: String(cString: strerror(errno))) }
        defer { close(fd) }
        for old in present where old.address != wanted?.address || old.prefixLength != wanted?.length {
            try request(fd, 0x8936, "SIOCDIFADDR", address: old.address, length: old.prefixLength, index: index)
        }
        if let wanted, !present.contains(where: { $0.address == wanted.address && $0.prefixLength == wanted.length }) {
            try request(fd, 0x8916, "SIOCSIFADDR", address: wanted.address, length: wanted.length, index: index)
        }
    }

    /// One in6_ifreq ioctl: 16 address bytes, the prefix length (u32), the interface index (int).
    private static func request(
        _ fd: Int32, _ number: UInt, _ name: String, address: IPv6Address, length: Int, index: UInt32
    ) throws(IOError) {
        var bytes = [UInt8](repeating: 0, count: 24)
        let addressBytes = address.networkBytes
        bytes.withUnsafeMutableBytes { raw in
            for (i, b) in addressBytes.enumerated() { raw[i] = b }
            raw.storeBytes(of: UInt32(length), toByteOffset: 16, as: UInt32.self)
            raw.storeBytes(of: Int32(bitPattern: index), toByteOffset: 20, as: Int32.self)
        }
        let rc = bytes.withUnsafeMutableBytes { raw in raw.baseAddress.map { ioctl(fd, number, $0) } ?? -1 }
        guard rc == 0 else {
            let code = errno
            throw IOError(call: "ioctl(\(name)) \(address)/\(length)", errno: code, detail: String(cString: strerror(code)))
        }
    }
}
