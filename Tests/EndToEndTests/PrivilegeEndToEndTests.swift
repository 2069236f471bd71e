// Least privilege, end to end:
//
//   C (client)  c0 ──── s0  S (server)
//
// 1. With a TUN device pre-created for it and routing left to the operator (--no-routes), a client runs
//    as the unprivileged user `nobody` with CAP_NET_ADMIN alone: it keeps its user, says so, and the
//    tunnel works.
// 2. A server and a client started as root become an unprivileged user once setup is done: every thread
//    runs as that user with no supplementary group, keeps CAP_NET_ADMIN alone (effective, permitted,
//    inheritable, ambient and bounding sets) with no_new_privs, and the tunnel works between them.
// 3. A client started as root applies its routes at tunnel-up, after the drop, through `ip` children that
//    inherit CAP_NET_ADMIN from the ambient set.
//
// The tests run as root, so `nobody` (uid 65534) is the user when none is chosen unless the machine has
// a `tunvpn` system user; the server names `--user nobody` so its ids are known.

import Foundation
import Testing
import TestSupport

/// The identity and capability lines of /proc/PID/status (PID may be a thread id).
func capabilities(of pid: pid_t) throws -> [String: String] {
    let text = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
    var result: [String: String] = [:]
    let wanted = ["Uid", "Gid", "Groups", "CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb", "NoNewPrivs"]
    for line in text.split(separator: "\n") {
        let parts = line.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
            .map { $0.trimmingCharacters(in: .whitespaces) }
        if parts.count == 2, wanted.contains(parts[0]) { result[parts[0]] = parts[1] }
    }
    return result
}

/// The status lines of every thread of `pid` (/proc/PID/task/*/status).
func threadCapabilities(of pid: pid_t) throws -> [String: [String: String]] {
    var result: [String: [String: String]] = [:]
    for task in try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task") {
        result[task] = try capabilities(of: pid_t(task) ?? 0)
    }
    return result
}

let netAdminOnly = "0000000000001000"  // bit 12: CAP_NET_ADMIN
let nothing = "0000000000000000"
/// Threads of the status socket's server, which hold no capability: StreamServer.defaultMaximumConnections.
let statusThreads = 8

/// The `Uid:`/`Gid:` value of a process whose real, effective, saved and filesystem ids are all `id`.
func allFour(_ id: UInt32) -> String { "\(id)\t\(id)\t\(id)\t\(id)" }

/// Checks the threads of a process that dropped to `uid`/`gid`: every thread runs as that user with no
/// supplementary group and no_new_privs; each keeps CAP_NET_ADMIN alone in every set, except the status
/// threads (status socket, metrics), which gave up everything. Returns how many threads had nothing.
@discardableResult
func expectDropped(_ pid: pid_t, uid: UInt32, gid: UInt32, _ name: String) throws -> Int {
    var withoutAny = 0
    let threads = try threadCapabilities(of: pid)
    #expect(threads.count >= 3, "\(name): the main thread and the engine's threads: \(threads)")
    for (task, caps) in threads {
        #expect(caps["Uid"] == allFour(uid) && caps["Gid"] == allFour(gid), "\(name) thread \(task): \(caps)")
        #expect(caps["Groups"] == "", "\(name) thread \(task) has no supplementary group: \(caps)")
        #expect(caps["NoNewPrivs"] == "1", "\(name) thread \(task): \(caps)")
        if caps["CapEff"] == nothing && caps["CapPrm"] == nothing && caps["CapAmb"] == nothing {
            #expect(caps["CapInh"] == nothing, "\(name) thread \(task): \(caps)")
            #expect(caps["CapBnd"] == nothing || caps["CapBnd"] == netAdminOnly, "\(name) thread \(task): \(caps)")
            withoutAny += 1
            continue
        }
        #expect(caps["CapEff"] == netAdminOnly && caps["CapPrm"] == netAdminOnly, "\(name) thread \(task): \(caps)")
        #expect(caps["CapInh"] == netAdminOnly && caps["CapAmb"] == netAdminOnly, "\(name) thread \(task): \(caps)")
        #expect(caps["CapBnd"] == netAdminOnly, "\(name) thread \(task): \(caps)")
    }
    return withoutAny
}

/// The user a root tunvpn runs as by default: `tunvpn` if it exists, else `nobody`.
func defaultUser() throws -> (name: String, uid: UInt32, gid: UInt32) {
    let entry = try #require(getpwnam("tunvpn") ?? getpwnam("nobody"))
    return (String(cString: entry.pointee.pw_name), entry.pointee.pw_uid, entry.pointee.pw_gid)
}

@Suite(.serialized, .needsRoot("needs root: builds network namespaces"))
struct PrivilegeEndToEndTests {
    /// Keys and an allow-list holding the client, then `tunvpn server` in S with its default port, address
    /// and device, NAT out of s1 (host changes for the dropped user's teardown to undo) and `extra`.
    /// Returns the server and S's ip_forward before it started.
    func startServerWithNAT(_ lab: TunnelLab, _ extra: [String]) throws -> (server: BackgroundProcess, forwardingBefore: String) {
        try lab.keygen("server")
        try lab.writeAllowList([try lab.keygen("client")])
        let forwardingBefore = try lab["S"].exec(["sysctl", "-n", "net.ipv4.ip_forward"]).stdout
        let server = try lab.start(
            "server", in: "S",
            ["server", "--key", lab.path("keys/server.key"), "--clients", lab.path("keys/clients"), "--egress", "s1"] + extra)
        return (server, forwardingBefore)
    }

    @Test func aClientRunsAsNobodyWithOnlyNetAdminOnAPreCreatedDevice() throws {
        try TunnelLab.standard().use { lab in
            try lab.keygen("server")
            let clientKey = try lab.keygen("client")
            try lab.writeAllowList([clientKey])
            _ = try lab.startServer()
            // The operator's part (a persistent TUN device the user may open, readable key files) and the
            // unprivileged start.
            let client = try lab.startClientAsNobody()
            let address = try lab.waitForTunnelUp(client)
            #expect(address == "10.8.0.2")
            #expect(try lab["C"].ping(TunnelLab.serverTunnelAddress).status == 0, "the tunnel works")
            #expect(client.log.contains("running as nobody (uid 65534, gid 65534), capabilities: CAP_NET_ADMIN"), "\(client.log)")
            #expect(client.log.contains("not started as root, so the user stays nobody"), "\(client.log)")
            try expectDropped(client.pid, uid: 65534, gid: 65534, "client")
            // Not dumpable (PR_SET_DUMPABLE 0, set before the key was read): the kernel then gives the
            // process's /proc entries to root, although the process runs as nobody.
            var st = stat()
            #expect(stat("/proc/\(client.pid)/status", &st) == 0 && st.st_uid == 0, "no core dumps of key material")
            #expect(client.terminate() == 0)
        }
    }

    @Test func aRootServerAndClientBecomeAnUnprivilegedUserWithOnlyNetAdmin() throws {
        try TunnelLab.standard().use { lab in
            let (server, forwardingBefore) = try startServerWithNAT(lab, ["--log-level", "debug", "--user", "nobody"])
            let dropped = server.waitForLog(
                containing: "running as nobody (uid 65534, gid 65534), capabilities: CAP_NET_ADMIN", timeout: 10)
            #expect(dropped, "\(server.log)")
            #expect(try lab["S"].exec(["nft", "list", "tables"]).stdout.contains("tunvpn_tun0"), "NAT is set up")
            #expect(try expectDropped(server.pid, uid: 65534, gid: 65534, "server") == statusThreads, "the status-socket threads")

            // A root client with the default user: the tunnel works with both ends unprivileged (DNS on: its
            // DNS agent keeps uid 0 instead, docs/ROUTING.md "DNS").
            let user = try defaultUser()
            let client = try lab.startClient(endpoint: lab.topology.address("S", "s0"))
            #expect(try lab.waitForTunnelUp(client) == "10.8.0.2")
            #expect(
                client.log.contains("running as \(user.name) (uid \(user.uid), gid \(user.gid)), capabilities: CAP_NET_ADMIN"),
                "\(client.log)")
            #expect(try expectDropped(client.pid, uid: user.uid, gid: user.gid, "client") == statusThreads, "the status-socket threads")
            #expect(try lab["C"].ping(TunnelLab.serverTunnelAddress).status == 0, "the tunnel works")
            #expect(client.terminate() == 0)

            #expect(server.terminate() == 0)
            // Teardown as the dropped user: nft through an `nft` child with the ambient CAP_NET_ADMIN, the
            // ip_forward restore through /proc/sys/net, and the journal through the descriptor opened while root.
            #expect(server.log.contains("removed 2 host change(s)"), "\(server.log)")
            #expect(!(try lab["S"].exec(["nft", "list", "tables"]).stdout.contains("tunvpn")))
            #expect(try lab["S"].exec(["sysctl", "-n", "net.ipv4.ip_forward"]).stdout == forwardingBefore)
            // What the dropped user could not delete (its emptied journal, lock and socket files) goes now.
            let down = try lab["S"].exec([TestBinaries.tunvpn, "down", "--dev", "tun0"])
            #expect(down.status == 0 && down.stdout.contains("nothing to remove"), "\(down.stdout)\(down.stderr)")
            #expect(!(try lab["S"].exec(["nft", "list", "tables"]).stdout.contains("tunvpn")))
            #expect(try lab["S"].exec(["sysctl", "-n", "net.ipv4.ip_forward"]).stdout == forwardingBefore)
        }
    }

    @Test func userRootKeepsUidZeroWithOnlyNetAdminAndAWarning() throws {
        try TunnelLab.standard().use { lab in
            let (server, forwardingBefore) = try startServerWithNAT(lab, ["--user", "root"])
            #expect(
                server.waitForLog(containing: "running as root (uid 0, gid 0), capabilities: CAP_NET_ADMIN", timeout: 10),
                "\(server.log)")
            #expect(server.log.contains("--user root keeps uid 0"), "the warning: \(server.log)")
            // Every thread keeps CAP_NET_ADMIN alone, except the status threads: with no uid change to clear
            // them, they keep the CAP_SETGID and CAP_SETUID (0xc0) they held for one.
            var serviceThreads = 0
            for (task, caps) in try threadCapabilities(of: server.pid) {
                #expect(caps["Uid"] == allFour(0) && caps["NoNewPrivs"] == "1", "thread \(task): \(caps)")
                if caps["CapEff"] == "00000000000000c0" && caps["CapPrm"] == "00000000000000c0" && caps["CapBnd"] == nothing {
                    serviceThreads += 1
                    continue
                }
                #expect(caps["CapEff"] == netAdminOnly && caps["CapPrm"] == netAdminOnly, "thread \(task): \(caps)")
                #expect(caps["CapAmb"] == netAdminOnly && caps["CapBnd"] == netAdminOnly, "thread \(task): \(caps)")
            }
            #expect(serviceThreads == statusThreads, "the status-socket threads")
            // Still uid 0, which owns /run/tunvpn: teardown reads its journal and undoes NAT and ip_forward.
            #expect(server.terminate() == 0)
            #expect(server.log.contains("removed 2 host change(s)"), "\(server.log)")
            #expect(!(try lab["S"].exec(["nft", "list", "tables"]).stdout.contains("tunvpn")))
            #expect(try lab["S"].exec(["sysctl", "-n", "net.ipv4.ip_forward"]).stdout == forwardingBefore)
        }
    }

    @Test func aRootClientAddsItsRoutesAtTunnelUpAfterTheDrop() throws {
        try TunnelLab.standard().use { lab in
            try lab.keygen("server")
            try lab.writeAllowList([try lab.keygen("client")])
            _ = try lab.startServer()
            let client = try lab.start(
                "client-C", in: "C", lab.clientArguments() + ["--route", "10.9.0.0/16", "--log-level", "debug"])
            #expect(client.waitForLog(containing: "capabilities: CAP_NET_ADMIN", timeout: 10), "\(client.log)")
            _ = try lab.waitForTunnelUp(client)
            let routes = try lab["C"].ip("-4", "route", "show", "10.9.0.0/16").stdout
            #expect(routes.contains("dev tun0"), "the split route, added by an `ip` child as the dropped user: \(routes)")
            #expect(client.terminate() == 0)
            #expect(try lab["C"].ip("-4", "route", "show", "10.9.0.0/16").stdout.isEmpty, "removed at exit")
            client.terminate()
            _ = try lab["C"].exec([TestBinaries.tunvpn, "down", "--dev", "tun0"])
        }
    }
}
