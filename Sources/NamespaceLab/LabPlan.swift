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
// - A dual-stack lab (`enableIPv6`, IPv6 addresses on the link ends) keeps that noise down instead:
//   no router solicitations (`router_solicitations=0`, `accept_ra=0`: the labs route statically), and
//   no duplicate address detection (`accept_dad=0`, and IPv6 addresses added with `nodad`,
//   ip-address(8)), so every address, link-local ones included, is usable at once instead of a second
//   or two later. Forwarding stays a per-namespace sysctl the lab's builder sets.
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
        /// The IPv4 address with its prefix length, e.g. "10.100.7.2/24"; empty for an IPv6-only end.
        public var address: String
        /// The IPv6 address with its prefix length, e.g. "fd00:100:7::2/64"; nil for an IPv4-only end.
        public var address6: String?

        /// An end with an IPv4 address and, for a dual-stack link, an IPv6 one.
        public init(_ host: String, _ interface: String, _ address: String, _ address6: String? = nil) {
            precondition(interface.utf8.count <= 15, "interface names are at most 15 bytes (IFNAMSIZ - 1)")
            self.host = host
            self.interface = interface
            self.address = address
            self.address6 = address6
        }

        /// An IPv6-only end.
        public init(_ host: String, _ interface: String, ipv6 address6: String) {
            self.init(host, interface, "", address6)
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

    /// The sysctls of `host`'s namespace that every lab sets: IPv6 off unless `enableIPv6`; with it, no
    /// router solicitations, no router advertisements accepted (every route in a lab is static) and no
    /// duplicate address detection, for link-local addresses too (see the file comment).
    public func sysctlCommands(_ host: String) -> [[String]] {
        let settings: [(String, String)] =
            enableIPv6
            ? [
                ("net.ipv6.conf.all.router_solicitations", "0"), ("net.ipv6.conf.default.router_solicitations", "0"),
                ("net.ipv6.conf.all.accept_ra", "0"), ("net.ipv6.conf.default.accept_ra", "0"),
                ("net.ipv6.conf.all.accept_dad", "0"), ("net.ipv6.conf.default.accept_dad", "0"),
            ]
            : [("net.ipv6.conf.all.disable_ipv6", "1"), ("net.ipv6.conf.default.disable_ipv6", "1")]
        return settings.map { key, value in
            ["ip", "netns", "exec", namespace(host), "sysctl", "-q", "-w", "\(key)=\(value)"]
        }
    }

    /// Making `link`: the veth pair inside its first namespace with the peer placed in the second, then
    /// each end's addresses (IPv6 ones `nodad`, see the file comment) and link up.
    public func linkCommands(_ link: VethLink) -> [[String]] {
        var commands = [
            ["ip", "-n", namespace(link.a.host), "link", "add", link.a.interface, "type", "veth", "peer", "name", link.b.interface,
             "netns", namespace(link.b.host)]
        ]
        for end in [link.a, link.b] {
            if !end.address.isEmpty {
                commands.append(["ip", "-n", namespace(end.host), "address", "add", end.address, "dev", end.interface])
            }
            if let address6 = end.address6 {
                precondition(enableIPv6, "an IPv6 address on \(end.host) \(end.interface) needs a lab with enableIPv6")
                commands.append(
                    ["ip", "-n", namespace(end.host), "-6", "address", "add", address6, "dev", end.interface, "nodad"])
            }
            commands.append(["ip", "-n", namespace(end.host), "link", "set", end.interface, "up"])
        }
        return commands
    }

    /// Whether `end`'s interface is ready for traffic, asking through `output` (which runs a command and
    /// returns its standard output): in state UP, i.e. the kernel has seen the link's carrier and
    /// activated its transmit queue (until then, a few milliseconds after `link set up`, what it sends is
    /// dropped); and in a dual-stack lab, with its link-local address, without which a router cannot send
    /// the neighbour solicitation for a packet it forwards (RFC 4861 §7.2.2) and retries only a second
    /// later. A builder polls this for every end before the lab is used.
    public func isReady(_ end: VethLink.End, output: ([String]) throws -> String) rethrows -> Bool {
        let ns = namespace(end.host)
        guard try output(["ip", "-n", ns, "-o", "link", "show", "dev", end.interface]).contains(" state UP ") else {
            return false
        }
        guard enableIPv6 else { return true }
        return try output(["ip", "-n", ns, "-o", "-6", "address", "show", "dev", end.interface, "scope", "link"])
            .contains("inet6 fe80:")
    }

    /// Every command that builds the lab, in order: each namespace with its sysctls, then the links.
    public var commands: [[String]] {
        hosts.flatMap { creationCommands($0) + sysctlCommands($0) } + links.flatMap { linkCommands($0) }
    }

    /// The IPv4 address (without prefix length) of `interface` on `host`, as given in the links; nil if
    /// the plan has no such interface or it has no IPv4 address.
    public func address(_ host: String, _ interface: String) -> String? {
        end(host, interface).flatMap { $0.address.isEmpty ? nil : String($0.address.prefix(while: { $0 != "/" })) }
    }

    /// The IPv6 address (without prefix length) of `interface` on `host`, as given in the links; nil if
    /// the plan has no such interface or it has no IPv6 address.
    public func address6(_ host: String, _ interface: String) -> String? {
        end(host, interface)?.address6.map { String($0.prefix(while: { $0 != "/" })) }
    }

    /// The link end `interface` on `host`.
    public func end(_ host: String, _ interface: String) -> VethLink.End? {
        for link in links {
            for end in [link.a, link.b] where end.host == host && end.interface == interface { return end }
        }
        return nil
    }
}
