// Throwaway network topologies for end-to-end tests: namespaces joined by veth pairs, built from a
// `LabPlan` (NamespaceLab, shared with `tunvpn demo`, which holds the building rules) and torn down on
// every way out of a test.
//
// The standard one, `Topology.clientServerInternet()`, with k from `subnetIndex`:
//
//     client ns (C)                server ns (S)                  internet host ns (H)
//     c0 10.100.k.2/24 ─────────── s0 10.100.k.1/24
//                                  s1 10.200.k.1/24 ───────────── h0 10.200.k.2/24
//
// Dual stack (`clientServerInternet(dualStack: true)`): the same, IPv6 on in every namespace, and each
// link also carries a unique local /64 (RFC 4193) whose third group is k written as its decimal digits
// (so the text stays canonical): c0 fd00:100:k::2/64 – s0 fd00:100:k::1/64, s1 fd00:200:k::1/64 – h0
// fd00:200:k::2/64. Only static routes; the namespaces send no router solicitations (LabPlan).
//
// Rules kept here, besides the plan's:
// - Names are unique per test: `tv<pid>n<counter><host>`, e.g. `tv4242n3C`; k differs between the
//   topologies of one process and usually between processes, though addresses in separate namespaces
//   cannot collide anyway.
// - Cleanup: `close()` (idempotent; also run on release) stops the processes in each namespace and
//   deletes it, which removes its veths. If the test process dies without running it (a crash, a
//   SIGKILL, Ctrl-C), a guardian shell started with the topology notices within half a second and
//   does the same. The guardian only signals processes inside this topology's namespaces.

import Foundation
import NamespaceLab
import Synchronization

/// Why a topology could not be made (besides a command that failed).
public enum TopologyError: Error, CustomStringConvertible {
    case linkNotUp(namespace: String, interface: String)

    public var description: String {
        switch self {
        case .linkNotUp(let namespace, let interface):
            "\(interface) in \(namespace) was not ready (state UP, a link-local IPv6 address in a dual-stack lab) 5 s after `ip link set \(interface) up`"
        }
    }
}

/// Namespaces joined by veth pairs, deleted (with every process in them) by `close()`.
public final class Topology: @unchecked Sendable {
    private static let counter = Atomic<Int>(0)

    /// The name prefix of this topology's namespaces, `tv<pid>n<counter>`.
    public let tag: String
    /// The per-topology number k that the standard topology puts in its subnets (1...250).
    public let subnetIndex: Int
    /// The hosts, links and building commands.
    public let plan: LabPlan
    public var links: [VethLink] { plan.links }
    private let namespaces: [(host: String, namespace: NetworkNamespace)]
    private let guardian: ChildProcess
    private let closed = Mutex(false)

    /// Builds the hosts and links. `links` gets `subnetIndex` to choose per-topology subnets.
    ///
    /// - Parameters:
    ///   - hosts: role names; each becomes a namespace `tag + name` with its loopback up.
    ///   - enableIPv6: leave IPv6 on in the namespaces (off by default, see the file comment).
    ///   - links: the veth pairs, given the subnet index k.
    public init(hosts: [String], enableIPv6: Bool = false, links: (Int) -> [VethLink]) throws {
        let n = Topology.counter.add(1, ordering: .relaxed).newValue
        let pid = Int(getpid())
        let tag = "tv\(pid)n\(n)"
        self.tag = tag
        subnetIndex = (pid &* 7 &+ n) % 250 + 1
        let plan = LabPlan(prefix: tag, hosts: hosts, links: links(subnetIndex), enableIPv6: enableIPv6)
        self.plan = plan
        guardian = try Topology.startGuardian(namespaces: hosts.map(plan.namespace))
        var created: [(String, NetworkNamespace)] = []
        do {
            for host in hosts {
                // NetworkNamespace runs the plan's creation commands (add, loopback up) itself.
                created.append((host, try NetworkNamespace(name: plan.namespace(host))))
                for command in plan.sysctlCommands(host) { try runLoggedChecked(command) }
            }
            namespaces = created
            for link in plan.links {
                for command in plan.linkCommands(link) { try runLoggedChecked(command) }
            }
            for end in plan.links.flatMap({ [$0.a, $0.b] }) {
                let up = try waitUntil(timeout: 5, interval: 0.02) {
                    try plan.isReady(end) { try runChild($0, timeout: 10).stdout }
                }
                guard up else { throw TopologyError.linkNotUp(namespace: plan.namespace(end.host), interface: end.interface) }
            }
        } catch {
            for (_, namespace) in created.reversed() { namespace.delete() }
            Topology.stopGuardian(guardian)
            throw error
        }
    }

    deinit { close() }

    /// The namespace of `host`. Asking for a host the topology does not have is a test bug.
    public subscript(host: String) -> NetworkNamespace {
        guard let entry = namespaces.first(where: { $0.host == host }) else {
            preconditionFailure("topology \(tag) has no host \(host)")
        }
        return entry.namespace
    }

    /// The IPv4 address (without prefix length) of `interface` on `host`, as given in the links.
    public func address(_ host: String, _ interface: String) -> String {
        guard let address = plan.address(host, interface) else {
            preconditionFailure("topology \(tag) has no IPv4 address on \(interface) in \(host)")
        }
        return address
    }

    /// The IPv6 address (without prefix length) of `interface` on `host`, as given in the links.
    public func address6(_ host: String, _ interface: String) -> String {
        guard let address = plan.address6(host, interface) else {
            preconditionFailure("topology \(tag) has no IPv6 address on \(interface) in \(host)")
        }
        return address
    }

    /// The unique local /64 of a dual-stack lab link, `fd00:<net>:<k>::/64`, with host part `host`
    /// (e.g. `ula(100, 7, 2)` is "fd00:100:7::2/64"). The groups are decimal digits read as hex, so the
    /// text is what inet_ntop prints back.
    public static func ula(_ net: Int, _ k: Int, _ host: Int) -> String { "fd00:\(net):\(k)::\(host)/64" }

    /// Stops every process in the namespaces and deletes them (with their veths). Idempotent.
    public func close() {
        let first = closed.withLock { wasClosed in
            defer { wasClosed = true }
            return !wasClosed
        }
        guard first else { return }
        for (_, namespace) in namespaces.reversed() { namespace.delete() }
        Topology.stopGuardian(guardian)
    }

    /// Runs `body` with the topology and closes it afterwards, however `body` ends, holding the
    /// end-to-end gate shared (`EndToEndGate`).
    public func use<T>(_ body: (Topology) throws -> T) rethrows -> T {
        defer { close() }
        return try EndToEndGate.shared { try body(self) }
    }

    // MARK: The standard topology

    /// The client, server and internet host of the file comment: C–S on 10.100.k.0/24 (C is .2, S is
    /// .1), S–H on 10.200.k.0/24 (S is .1, H is .2); with `dualStack`, fd00:100:k::/64 and
    /// fd00:200:k::/64 beside them, numbered alike.
    public static func clientServerInternet(dualStack: Bool = false) throws -> Topology {
        func v6(_ net: Int, _ k: Int, _ host: Int) -> String? { dualStack ? ula(net, k, host) : nil }
        return try Topology(hosts: ["C", "S", "H"], enableIPv6: dualStack) { k in
            [
                VethLink(
                    .init("C", "c0", "10.100.\(k).2/24", v6(100, k, 2)), .init("S", "s0", "10.100.\(k).1/24", v6(100, k, 1))),
                VethLink(
                    .init("S", "s1", "10.200.\(k).1/24", v6(200, k, 1)), .init("H", "h0", "10.200.\(k).2/24", v6(200, k, 2))),
            ]
        }
    }

    // MARK: The guardian

    /// Starts `sh` polling the test process; if it dies before `close()`, the shell stops what is left
    /// in the namespaces and deletes them. It ignores SIGINT/SIGTERM/SIGHUP (a Ctrl-C reaches the whole
    /// process group), so `close()` ends it with SIGKILL.
    private static func startGuardian(namespaces: [String]) throws -> ChildProcess {
        let script = """
            trap '' INT TERM HUP
            parent=$1; shift
            while kill -0 "$parent" 2>/dev/null; do sleep 0.5; done
            for ns in "$@"; do for p in $(ip netns pids "$ns" 2>/dev/null); do kill -TERM "$p"; done; done
            sleep 2
            for ns in "$@"; do
              for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p"; done
              ip netns delete "$ns" 2>/dev/null
            done
            """
        return try ChildProcess(
            ["sh", "-c", script, "tunvpn-netns-guardian", "\(getpid())"] + namespaces,
            stdout: "/dev/null", stderr: "/dev/null")
    }

    private static func stopGuardian(_ guardian: ChildProcess) {
        guardian.send(SIGKILL)
        guardian.wait()
    }
}
