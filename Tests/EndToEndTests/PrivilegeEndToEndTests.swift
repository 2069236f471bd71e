// Least privilege, end to end (issue 7):
//
//   C (client)  c0 ──── s0  S (server)
//
// 1. With a TUN device pre-created for it and routing left to the operator (--no-routes), a client runs
//    as the unprivileged user `nobody` with CAP_NET_ADMIN alone, and the tunnel works.
// 2. A server started as root keeps only CAP_NET_ADMIN once setup is done (effective, permitted and
//    bounding sets, in every thread), and that is still enough to tear its host changes down on SIGTERM.

import Foundation
import Testing
import TestSupport

/// The capability lines of /proc/PID/status, and the uid.
func capabilities(of pid: pid_t) throws -> [String: String] {
    let text = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
    var result: [String: String] = [:]
    for line in text.split(separator: "\n") {
        let parts = line.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
        if parts.count == 2, ["Uid", "CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb"].contains(parts[0]) { result[parts[0]] = parts[1] }
    }
    return result
}

let netAdminOnly = "0000000000001000"  // bit 12: CAP_NET_ADMIN
let nothing = "0000000000000000"

@Suite(.serialized, .needsRoot("needs root: builds network namespaces"))
struct PrivilegeEndToEndTests {
    @Test func aClientRunsAsNobodyWithOnlyNetAdminOnAPreCreatedDevice() throws {
        try TunnelLab.standard().use { lab in
            try lab.keygen("server")
            let clientKey = try lab.keygen("client")
            try lab.writeAllowList([clientKey])
            _ = try lab.startServer()
            // The operator's part: a persistent TUN device the user may open, and readable key files.
            try lab["C"].ip("tuntap", "add", "dev", "tun0", "mode", "tun", "user", "nobody")
            chmod(lab.path("keys"), 0o755)
            let pw = try #require(getpwnam("nobody"))
            #expect(chown(lab.path("keys/client.key"), pw.pointee.pw_uid, pw.pointee.pw_gid) == 0)
            let client = try lab.startClient(
                endpoint: lab.topology.address("S", "s0"),
                wrapper: [
                    // Opening /dev/net/tun is also checked against its mode, which is 0600 on some hosts (no
                    // udev rule making it 0666): the client gets its own 0666 node in a private mount
                    // namespace over a tmpfs on /dev/net, so the host's /dev is never touched.
                    "unshare", "--mount", "sh", "-c",
                    "mount -t tmpfs -o mode=0755 tunvpn-test /dev/net && mknod -m 666 /dev/net/tun c 10 200 && exec \"$@\"",
                    "sh",
                    "setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--inh-caps=-all,+net_admin",
                    "--ambient-caps=-all,+net_admin", "--bounding-set=-all,+net_admin",
                ])
            let address = try lab.waitForTunnelUp(client)
            #expect(address == "10.8.0.2")
            #expect(try lab["C"].ping(TunnelLab.serverTunnelAddress).status == 0, "the tunnel works")
            let caps = try capabilities(of: client.pid)
            #expect(caps["Uid"]?.hasPrefix("65534") == true, "runs as nobody: \(caps)")
            #expect(caps["CapEff"] == netAdminOnly && caps["CapBnd"] == netAdminOnly, "\(caps)")
            #expect(client.terminate() == 0)
        }
    }

    @Test func aRootServerKeepsOnlyNetAdminAfterSetupAndStillTearsDown() throws {
        try TunnelLab.standard().use { lab in
            try lab.keygen("server")
            try lab.writeAllowList([try lab.keygen("client")])
            let forwardingBefore = try lab["S"].exec(["sysctl", "-n", "net.ipv4.ip_forward"]).stdout
            let server = try lab.start(
                "server", in: "S",
                [
                    "server", "--key", lab.path("keys/server.key"), "--clients", lab.path("keys/clients"),
                    "--egress", "s1", "--log-level", "debug",
                ])
            let dropped = server.waitForLog(containing: "capabilities reduced to CAP_NET_ADMIN", timeout: 10)
            #expect(dropped, "\(server.log)")
            #expect(try lab["S"].exec(["nft", "list", "tables"]).stdout.contains("tunvpn_tun0"), "NAT is set up")
            // Every thread keeps CAP_NET_ADMIN and nothing more, except the status-socket thread, which keeps
            // nothing at all (it drops every capability itself, being created before the main thread drops).
            var withoutAny = 0
            for task in try FileManager.default.contentsOfDirectory(atPath: "/proc/\(server.pid)/task") {
                let caps = try capabilities(of: pid_t(task) ?? 0)
                if caps["CapEff"] == nothing && caps["CapPrm"] == nothing && caps["CapBnd"] == nothing {
                    withoutAny += 1
                    continue
                }
                #expect(caps["CapEff"] == netAdminOnly && caps["CapPrm"] == netAdminOnly, "thread \(task): \(caps)")
                #expect(caps["CapBnd"] == netAdminOnly, "thread \(task): \(caps)")
            }
            #expect(withoutAny == 1, "the status-socket thread")
            #expect(server.terminate() == 0)
            #expect(server.log.contains("removed 2 host change(s)"), "teardown needed nothing more: \(server.log)")
            #expect(!(try lab["S"].exec(["nft", "list", "tables"]).stdout.contains("tunvpn")))
            #expect(try lab["S"].exec(["sysctl", "-n", "net.ipv4.ip_forward"]).stdout == forwardingBefore)
        }
    }
}
