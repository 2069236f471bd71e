// Leaving a pre-created persistent TUN device (`ip tuntap add dev NAME mode tun`) as it was found: a device
// tunvpn creates goes away when tunvpn closes it, but a persistent one keeps whatever tunvpn set on it (its
// IPv4 address and prefix route, IPv6 address, MTU, queue length, up state). The device step is made with
// ioctls, not commands, so what undoes it is journaled before it is applied, from the state found.

/// What a persistent device was like before tunvpn opened it (SIOCGIFMTU, SIOCGIFTXQLEN, SIOCGIFFLAGS,
/// SIOCGIFADDR and SIOCGIFNETMASK).
public struct FoundDevice: Equatable, Sendable {
    public var mtu: Int
    public var transmitQueueLength: Int
    public var isUp: Bool
    /// Its IPv4 address as `ADDRESS/LENGTH`, or nil for none.
    public var address: String?

    public init(mtu: Int, transmitQueueLength: Int, isUp: Bool, address: String?) {
        self.mtu = mtu
        self.transmitQueueLength = transmitQueueLength
        self.isUp = isUp
        self.address = address
    }
}

extension Planner {
    /// The journal entries, in the order to journal them (teardown undoes the last first), that put the
    /// persistent `device` back as `found`: flush the global IPv6 addresses (with `ipv6`; the device step
    /// leaves it no global IPv6 address but tunvpn's own) and the IPv4 addresses tunvpn set (SIOCSIFADDR
    /// replaced the one found), give back the address found, then the MTU and queue length, and take it
    /// down if it was down. Each undo is idempotent, so it may run whether or not the device step ran.
    public static func restoreDevice(_ device: String, found: FoundDevice, ipv6: Bool) -> [JournalEntry] {
        var entries: [JournalEntry] = []
        if !found.isUp { entries.append(JournalEntry(undo: ["ip", "link", "set", device, "down"])) }
        entries.append(
            JournalEntry(undo: ["ip", "link", "set", device, "mtu", "\(found.mtu)", "txqueuelen", "\(found.transmitQueueLength)"]))
        if let address = found.address { entries.append(JournalEntry(undo: ["ip", "-4", "addr", "add", address, "dev", device])) }
        entries.append(JournalEntry(undo: ["ip", "-4", "addr", "flush", "dev", device]))
        if ipv6 { entries.append(JournalEntry(undo: ["ip", "-6", "addr", "flush", "dev", device, "scope", "global"])) }
        return entries
    }
}
