// `struct ifreq` as a value: the argument of TUNSETIFF and the SIOC[GS]IF* ioctls (netdevice(7)).
//
// Glibc imports `ifreq` with its unions as nested tuples; this wrapper writes the name, flags, MTU
// and an AF_INET address into the right union member, so the adapters never touch the layout.

import CLinux
import Glibc
import Transport

/// A zero-initialized `struct ifreq` for one interface.
struct InterfaceRequest {
    private var raw = ifreq()

    /// Makes a request for interface `name`, which must be shorter than IFNAMSIZ (checked by callers).
    init(name: String) {
        precondition(name.utf8.count < Int(IFNAMSIZ), "interface names are checked before use")
        withUnsafeMutableBytes(of: &raw.ifr_ifrn.ifrn_name) { $0.copyBytes(from: name.utf8) }
    }

    /// ifr_name, as the kernel left it (TUNSETIFF replaces a "%d" pattern with the chosen number).
    var name: String {
        withUnsafeBytes(of: raw.ifr_ifrn.ifrn_name) { bytes in
            String(decoding: bytes.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
    }

    /// ifr_flags.
    var flags: Int16 {
        get { raw.ifr_ifru.ifru_flags }
        set { raw.ifr_ifru.ifru_flags = newValue }
    }

    /// ifr_mtu.
    var mtu: Int32 {
        get { raw.ifr_ifru.ifru_mtu }
        set { raw.ifr_ifru.ifru_mtu = newValue }
    }

    /// ifr_qlen (the transmit queue length: SIOCGIFTXQLEN/SIOCSIFTXQLEN).
    var queueLength: Int32 {
        get { raw.ifr_ifru.ifru_ivalue }
        set { raw.ifr_ifru.ifru_ivalue = newValue }
    }

    /// ifr_addr (or ifr_netmask, the same union member) as an AF_INET sockaddr_in.
    var ipv4Address: IPv4Address {
        get {
            withUnsafeBytes(of: raw.ifr_ifru) { bytes in
                IPv4Address(UInt32(bigEndian: bytes.loadUnaligned(as: sockaddr_in.self).sin_addr.s_addr))
            }
        }
        set {
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = newValue.value.bigEndian
            withUnsafeMutableBytes(of: &raw.ifr_ifru) { $0.storeBytes(of: address, as: sockaddr_in.self) }
        }
    }

    /// ioctl(fd, request, &ifr) through the shim; returns -1 with errno set on failure.
    mutating func ioctl(_ fd: Int32, _ request: UInt) -> Int32 {
        clinux_ioctl_ifreq(fd, request, &raw)
    }
}
