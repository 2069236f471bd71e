// What a throwaway namespace lab is made of, and the `ip` commands that make it: the one description
// both the end-to-end tests (TestSupport's `Topology`) and `tunvpn demo` (TunnelDemo's `DemoLab`) build
// their namespaces from. Each runs the commands its own way (the tests through Foundation's Process
// with every command logged; the demo through Platform's `CommandRunner`, checking for Ctrl-C between
// commands), and each owns the namespaces' removal.
//
// Rules, as in `WireGuard/wireguard-linux-compat:src/tests/netns.sh`:
// - Nothing touches the root namespace. A veth pair is created inside its first namespace with its
//   peer placed directly in the second (`ip -n A link add … peer name … netns B`); sysctls are written
//   from inside the namespace.
// - Namespace names are a per-lab prefix plus the host's role name; interface names live in their
//   namespace, so short fixed ones (`c0`, `s0`) never collide.
// - IPv6 is off in every namespace unless asked for, so router solicitations and MLD reports do not
//   show up in captures that check what the underlay carries.
//
// No Testing and no Foundation here: the tunvpn executable links this target for its demo.

/// One veth pair: an interface and address in each of two namespaces.
public struct VethLink: Sendable {
    /// One end of the pair.
    public struct End: Sendable {
        /// The host (role) name in the topology, e.g. "C".
        public var host: String
        /// The interface name inside that host (at most 15 characters).
        public var interface: String
        /// The address with its prefix length, e.g. "10.100.7.2/24".
        public var address: String

        public init(_ host: String, _ interface: String, _ address: String) {
            precondition(interface.utf8.count <= 15, "interface names are at most 15 bytes (IFNAMSIZ - 1)")
            self.host = host
            self.interface = interface
            self.address = address
        }
    }

    public var a: End
    public var b: End

    public init(_ a: End, _ b: End) {
        self.a = a
        self.b = b
    }
}

/// The hosts and links of a lab and the commands that build it.
public struct LabPlan: Sendable {
    /// Prefix of every namespace name; a host's namespace is `prefix + host`.
    public var prefix: String
    /// The hosts' role names, in the order their namespaces are made.
    public var hosts: [String]
    public var links: [VethLink]
    /// Leave IPv6 on in the namespaces (off by default, see the file comment).
    public var enableIPv6: Bool

    public init(prefix: String, hosts: [String], links: [VethLink], enableIPv6: Bool = false) {
        self.prefix = prefix
        self.hosts = hosts
        self.links = links
        self.enableIPv6 = enableIPv6
    }

    /// The namespace name of `host`.
    public func namespace(_ host: String) -> String { prefix + host }

    /// Creating the namespace of `host` and bringing its loopback up.
    public func creationCommands(_ host: String) -> [[String]] {
        let name = namespace(host)
        return [["ip", "netns", "add", name], ["ip", "-n", name, "link", "set", "lo", "up"]]
    }

    /// The sysctls of `host`'s namespace that every lab sets: IPv6 off unless `enableIPv6`.
    public func sysctlCommands(_ host: String) -> [[String]] {
        guard !enableIPv6 else { return [] }
        return ["net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"].map { key in
            ["ip", "netns", "exec", namespace(host), "sysctl", "-q", "-w", "\(key)=1"]
        }
    }

    /// Making `link`: the veth pair inside its first namespace with the peer placed in the second, then
    /// each end's address and link up.
    public func linkCommands(_ link: VethLink) -> [[String]] {
        var commands = [
            ["ip", "-n", namespace(link.a.host), "link", "add", link.a.interface, "type", "veth", "peer", "name", link.b.interface,
             "netns", namespace(link.b.host)]
        ]
        for end in [link.a, link.b] {
            commands.append(["ip", "-n", namespace(end.host), "address", "add", end.address, "dev", end.interface])
            commands.append(["ip", "-n", namespace(end.host), "link", "set", end.interface, "up"])
        }
        return commands
    }

    /// Every command that builds the lab, in order: each namespace with its sysctls, then the links.
    public var commands: [[String]] {
        hosts.flatMap { creationCommands($0) + sysctlCommands($0) } + links.flatMap { linkCommands($0) }
    }

    /// The address (without prefix length) of `interface` on `host`, as given in the links; nil if the
    /// plan has no such interface.
    public func address(_ host: String, _ interface: String) -> String? {
        for link in links {
            for end in [link.a, link.b] where end.host == host && end.interface == interface {
                return String(end.address.prefix(while: { $0 != "/" }))
            }
        }
        return nil
    }
}
