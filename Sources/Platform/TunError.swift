// Why a TUN device could not be opened or configured, in the operator's words.
//
// Each case carries what the message needs (the device name, the failing call, the errno), and each
// description is one line that names the device, says what is wrong and what to do, in the manner of
// wireguard-tools' config.c. The CLI prints `description` as is.

import Engine

/// A failure of `TunDevice.open(name:)` or `TunDevice.configure(address:mtu:)`.
public enum TunError: Error, Sendable, Equatable, CustomStringConvertible {
    /// open(2) of the clone device failed with ENOENT/ENODEV/ENXIO: the tun module is not loaded, or a
    /// container was started without the device node.
    case tunModuleMissing(path: String)
    /// open(2) or ioctl(TUNSETIFF) failed with EPERM/EACCES.
    case permissionDenied(device: String, call: String)
    /// ioctl(TUNSETIFF) failed with EBUSY: a single-queue device already has a reader.
    case deviceBusy(device: String)
    /// The name is not a valid interface name; `reason` says which rule it breaks.
    case invalidName(String, reason: String)
    /// ioctl(TUNSETIFF) failed with EINVAL: an interface of that name exists but is not a TUN device
    /// with these flags (a TAP device, a multi-queue device, or another kind of link).
    case notATunDevice(device: String)
    /// The MTU is outside what an IPv4 interface can carry (68...65535).
    case invalidMTU(device: String, mtu: Int)
    /// A SIOCSIF* ioctl failed with EPERM/EACCES.
    case configurationDenied(device: String, call: String)
    /// Any other failure, with the call and errno.
    case systemCallFailed(device: String, IOError)

    public var description: String {
        switch self {
        case .tunModuleMissing(let path):
            return "\(path) is missing: load the tun module with 'modprobe tun', or in a container pass --device \(path)"
        case .permissionDenied(let device, let call):
            return "cannot open TUN device \(device) (\(call): permission denied): run as root or with CAP_NET_ADMIN, "
                + "or pre-create it with 'ip tuntap add dev \(device) mode tun user USER'"
        case .deviceBusy(let device):
            return "TUN device \(device) is busy: another process has it open; stop that process or choose another --dev"
        case .invalidName(let name, let reason):
            return "invalid TUN device name \"\(name)\": \(reason); choose another --dev"
        case .notATunDevice(let device):
            return "interface \(device) exists but is not a single-queue TUN device: choose another --dev "
                + "or remove it with 'ip link del \(device)'"
        case .invalidMTU(let device, let mtu):
            return "MTU \(mtu) for TUN device \(device) is out of range: choose a value from 68 to 65535"
        case .configurationDenied(let device, let call):
            return "cannot configure TUN device \(device) (\(call): permission denied): run as root or with CAP_NET_ADMIN"
        case .systemCallFailed(let device, let error):
            return "TUN device \(device): \(error)"
        }
    }
}
