// End-to-end tests of instance ownership: a running server or client owns its device in its namespace
// (the lock file `/run/tunvpn/<netns id>-<dev>.lock`), so a second start and `tunvpn down` change nothing
// of it; `down --stop` stops it and cleans up; the kill switch stays up across kill -9 and a restart;
// `tunvpn reload` answers with the outcome; and a state directory or journal that root must not trust
// is refused before any journal line runs.
//
// Topology: TunnelLab.routed()'s (RoutedTopology.swift): L ── C ── R ── S ── H, client in C, server in S,
// NAT out of s1. The state-directory tests run `tunvpn down` inside `unshare -m -n`: a mount namespace
// with a private tmpfs on /run (the host's /run/tunvpn is never seen or touched) and a network namespace
// of its own (so no journal line could touch the root namespace).

import Foundation
import TestSupport
import Testing

@Suite(
    .serialized,
    .needsRoot("needs root: it creates network namespaces, TUN devices and nftables tables"))
struct InstanceEndToEndTests {
    /// The routes, rules, nftables ruleset and ip_forward of `host`.
    func state(_ lab: TunnelLab, _ host: String) throws -> HostState { try lab[host].hostState() }

    /// The refusal a start or `down` gives for a device that tunvpn `pid` owns.
    func inUse(_ pid: pid_t) -> String {
        "tun0 is in use by tunvpn pid \(pid) in this network namespace; stop it first (kill \(pid), or systemctl stop its unit)"
    }

    @Test func aSecondStartAndDownLeaveALiveLockdownClientAsItIs() throws {
        try TunnelLab.routed().use { lab in
            try lab.makeKeys()
            let (_, client) = try lab.startTunnel(client: ["--lockdown"])
            #expect(try lab["C"].waitForPing(lab.internetHost))
            let before = try state(lab, "C")
            #expect(before.ruleset.contains("table inet tunvpn_lock_tun0"), "\(before.ruleset)")
            #expect(before.routes.contains("0.0.0.0/1 dev tun0"), "\(before.routes)")

            let second = try lab.tunvpn(in: "C", lab.clientArguments() + ["--lockdown"])
            #expect(second.status == 1 && second.stdout == "", "\(second)")
            #expect(second.stderr == "tunvpn: error: \(inUse(client.pid))\n", "\(second)")
            for arguments in [["down"], ["down", "--dev", "tun0"], ["down", "--dev", "tun0", "--keep-lockdown"]] {
                let down = try lab.tunvpn(in: "C", arguments)
                #expect(down.status == 1 && down.stdout == "", "\(down)")
                #expect(
                    down.stderr
                        == "tunvpn: error: \(inUse(client.pid)); or run `tunvpn down --dev tun0 --stop` to stop it and clean up\n",
                    "\(down)")
            }

            let after = try state(lab, "C")
            #expect(after == before, "\(after.differences(from: before))")
            #expect(client.isRunning, "the first client keeps running: \(client.log)")
            // Traffic still goes through the tunnel only.
            #expect(try lab["C"].ping(lab.internetHost, count: 2).status == 0, "the tunnel still works")
            #expect(try lab["C"].ping(lab.router, count: 1).status != 0, "the kill switch still blocks the underlay")
        }
    }

    @Test func aSecondStartAndDownLeaveALiveServerAsItIs() throws {
        try TunnelLab.routed().use { lab in
            try lab.makeKeys()
            let (server, client) = try lab.startTunnel()
            #expect(try lab["C"].waitForPing(lab.internetHost))
            let before = try state(lab, "S")
            #expect(before.ruleset.contains("table ip tunvpn_tun0") && before.sysctls["net.ipv4.ip_forward"] == "1")

            let second = try lab.tunvpn(in: "S", lab.serverArguments + ["--egress", "s1", "--listen", "0.0.0.0:51821"])
            #expect(second.status == 1 && second.stderr == "tunvpn: error: \(inUse(server.pid))\n", "\(second)")
            for arguments in [["down"], ["down", "--dev", "tun0"]] {
                let down = try lab.tunvpn(in: "S", arguments)
                #expect(down.status == 1 && down.stderr.contains(inUse(server.pid)), "\(down)")
            }

            let after = try state(lab, "S")
            #expect(after == before, "\(after.differences(from: before))")
            #expect(server.isRunning && client.isRunning)
            #expect(try lab["C"].ping(lab.internetHost, count: 2).status == 0, "NAT and forwarding still work")
            #expect(!server.log.contains("removed"), "the live server's changes were not touched: \(server.log)")
        }
    }

    @Test func downWithStopEndsTheInstanceAndLeavesTheHostAsItWas() throws {
        try TunnelLab.routed().use { lab in
            try lab.makeKeys()
            let before = try state(lab, "C")
            let (_, client) = try lab.startTunnel(client: ["--lockdown"])
            #expect(try lab["C"].waitForPing(lab.internetHost))

            let down = try lab.tunvpn(in: "C", ["down", "--stop"])
            #expect(down.status == 0, "\(down)")
            #expect(down.stdout == "stopped tunvpn pid \(client.pid) on tun0\nnothing to remove for tun0\n", "\(down)")
            #expect(client.waitForExit(timeout: 5) && client.exitStatus == 0, "\(client.log)")
            let after = try state(lab, "C")
            #expect(after == before, "\(after.differences(from: before))")
            #expect(try lab["C"].ping(lab.router, count: 1).status == 0, "the kill switch is gone")
            let none = try lab.tunvpn(in: "C", ["down"])
            #expect(
                none.status == 0 && none.stdout == "nothing to remove: no tunvpn instance or leftovers in this network namespace\n",
                "\(none)")
        }
    }

    @Test func theKillSwitchStaysUpThroughKillNineAndARestart() throws {
        try TunnelLab.routed().use { lab in
            try lab.makeKeys()
            let before = try state(lab, "C")
            let (_, first) = try lab.startTunnel(client: ["--lockdown"])
            lab.kill9(first)
            #expect(try state(lab, "C").ruleset.contains("table inet tunvpn_lock_tun0"), "a crash leaves the kill switch up")
            #expect(try lab["C"].ping(lab.router, count: 1).status != 0, "and it blocks")
            let show = try lab.tunvpn(in: "C", ["show"])
            #expect(
                show.status == 1
                    && show.stderr
                        == "tunvpn: error: no tunvpn server or client is running in this network namespace; a killed instance left host changes on tun0: `tunvpn down --dev tun0` removes them\n",
                "\(show)")

            // What the client unit's ExecStopPost does before systemd restarts it: everything but the kill switch goes.
            let kept = try lab.tunvpn(in: "C", ["down", "--keep-lockdown"])
            #expect(
                kept.status == 0
                    && kept.stdout
                        == "removed 3 change(s) for tun0\nkept the kill switch of tun0 (--keep-lockdown); the next start replaces it\n",
                "\(kept)")
            let between = try state(lab, "C")
            #expect(between.ruleset.contains("table inet tunvpn_lock_tun0"), "\(between.ruleset)")
            #expect(!between.routes.contains("\(lab.serverUnderlay) via"), "the host route to the server went: \(between.routes)")
            #expect(try lab["C"].ping(lab.router, count: 1).status != 0, "still blocked")

            // Sample `nft list tables` as fast as it runs while the client restarts.
            let samples = lab.path("tables.log")
            let poller = try lab["C"].spawn(
                ["sh", "-c", "while :; do nft list tables; echo ---; done"], logFile: samples)
            defer { _ = poller.terminate() }
            #expect(waitUntil(timeout: 5) { ((try? String(contentsOfFile: samples, encoding: .utf8)) ?? "").contains("---") })
            let restarted = try lab.startClient(extra: ["--lockdown"])
            try lab.waitForTunnelUp(restarted)
            // A few more samples after the tunnel is up.
            usleep(300_000)
            _ = poller.terminate()
            let text = try String(contentsOfFile: samples, encoding: .utf8)
            let blocks = text.components(separatedBy: "---\n").dropLast()
            print("  \(blocks.count) samples of `nft list tables` during the restart")
            #expect(blocks.count >= 10, "too few samples to say anything: \(blocks.count)")
            let without = blocks.filter { !$0.contains("table inet tunvpn_lock_tun0") }
            #expect(without.isEmpty, "\(without.count) of \(blocks.count) samples had no kill switch: \(without.prefix(3))")
            #expect(
                restarted.log.contains("kept the kill switch left by a previous run on tun0 until the new one replaces it"),
                "\(restarted.log)")
            let during = try state(lab, "C")
            #expect(during.ruleset.components(separatedBy: "table inet tunvpn_lock_tun0").count == 2, "one table")
            #expect(try lab["C"].ping(lab.internetHost, count: 2).status == 0, "the restarted tunnel works")
            #expect(try lab["C"].ping(lab.router, count: 1).status != 0, "the underlay stays blocked")

            #expect(restarted.terminate() == 0)
            let after = try state(lab, "C")
            #expect(after == before, "\(after.differences(from: before))")
        }
    }

    @Test func reloadAnswersWithTheOutcome() throws {
        try TunnelLab.routed().use { lab in
            try lab.makeKeys()
            let (server, _) = try lab.startTunnel()
            let clients = lab.path("keys/clients")
            try runLoggedChecked([TestBinaries.tunvpn, "keygen", "--out", lab.path("keys"), "--name", "laptop"])
            let laptop = try String(contentsOfFile: lab.path("keys/laptop.pub"), encoding: .utf8)
                .trimmingCharacters(in: .whitespacesAndNewlines)
            let handle = try #require(FileHandle(forWritingAtPath: clients))
            handle.seekToEndOfFile()
            handle.write(Data("\(laptop) 10.8.0.9  # laptop\n".utf8))

            let added = try lab.tunvpn(in: "S", ["reload"])
            #expect(added.status == 0, "\(added)")
            #expect(added.stdout.hasPrefix("reloaded \(clients): 2 client(s), 1 added, 0 removed, 0 readdressed"), "\(added)")
            #expect(server.waitForLog(containing: "reloaded \(clients): 2 client(s), 1 added", timeout: 5))

            handle.write(Data("garbage-line\n".utf8))
            try handle.close()
            let refused = try lab.tunvpn(in: "S", ["reload", "--dev", "tun0"])
            #expect(refused.status == 1 && refused.stdout == "", "\(refused)")
            #expect(
                refused.stderr.hasPrefix("tunvpn: error: reload failed, kept the current allow-list: \(clients): line 3: "),
                "the file and the line: \(refused)")

            let client = try lab.tunvpn(in: "C", ["reload"])
            #expect(client.status == 1 && client.stderr == "tunvpn: error: clients have no allow-list; nothing to reload\n", "\(client)")
            let nobody = try lab.tunvpn(in: "H", ["reload"])
            #expect(
                nobody.status == 1
                    && nobody.stderr == "tunvpn: error: no tunvpn server or client is running in this network namespace\n",
                "\(nobody)")

            // SIGHUP still reloads, with the outcome in the log.
            let offset = server.logBytes.count
            server.sendSignal(SIGHUP)
            #expect(server.waitForLog(containing: "reload failed, kept the current allow-list", after: offset, timeout: 5))
        }
    }

    @Test func commandsWithoutDevNameTheInstancesWhenThereAreSeveral() throws {
        try TunnelLab.routed().use { lab in
            try lab.makeKeys()
            // No server runs: both clients keep retrying their handshakes, each on its own device.
            let first = try lab.startClient(extra: ["--no-routes"])
            let second = try lab.startClient(extra: ["--no-routes", "--dev", "tun1"])
            for client in [first, second] {
                let up = client.waitForLog(containing: "client connecting to", timeout: 10)
                #expect(up, "\(client.log)")
            }
            let choices = "tun0 (pid \(first.pid)), tun1 (pid \(second.pid))"
            let down = try lab.tunvpn(in: "C", ["down"])
            #expect(
                down.status == 1
                    && down.stderr
                        == "tunvpn: error: 2 tunvpn instances in this network namespace: \(choices); pass --dev to choose the one to clean up after\n",
                "\(down)")
            let reload = try lab.tunvpn(in: "C", ["reload"])
            #expect(
                reload.status == 1
                    && reload.stderr
                        == "tunvpn: error: 2 tunvpn instances in this network namespace: \(choices); pass --dev to choose the server to reload\n",
                "\(reload)")
            let show = try lab.tunvpn(in: "C", ["show"])
            #expect(show.status == 0 && show.stdout.contains("interface: tun0") && show.stdout.contains("interface: tun1"), "\(show)")
            #expect(first.isRunning && second.isRunning)
        }
    }

    // MARK: The state directory and journals (unshare -m -n, private /run)

    /// Runs `setup` (sh) and then `tunvpn down --dev tunx` in a new mount and network namespace with a
    /// tmpfs on /run. In `setup`, `$journal` is the journal's path there and `$marker` a file that a
    /// journal line `touch $marker` would create.
    func downInPrivateRun(_ setup: String, marker: String) throws -> CommandResult {
        let script = """
            set -e
            mount -t tmpfs -o mode=0755 tunvpn-test /run
            journal=$("$0" down --print-journal-path --dev tunx)
            marker="$1"
            \(setup)
            set +e
            "$0" down --dev tunx
            """
        return try runLogged(["unshare", "-m", "-n", "sh", "-c", script, TestBinaries.tunvpn, marker])
    }

    @Test func aStateDirectoryOrJournalRootMustNotTrustIsRefusedAndNoLineRuns() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let marker = dir.path + "/ran"
        let plant = #"printf 'touch\t%s\n' "$marker" > "$journal"; chmod 600 "$journal""#
        let fix = "check what it holds, then run `chown root:root /run/tunvpn && chmod 700 /run/tunvpn`"
        let cases: [(what: String, setup: String, error: String)] = [
            (
                "a state directory owned by another user",
                "mkdir -m 0700 /run/tunvpn; \(plant); chown 65534 /run/tunvpn",
                "state directory: /run/tunvpn is owned by uid 65534, not root; \(fix)"
            ),
            (
                "a group- and other-writable state directory",
                "mkdir -m 0777 /run/tunvpn; \(plant)",
                "state directory: /run/tunvpn is writable by group or others (mode 0777); \(fix)"
            ),
            (
                "a symbolic link as the state directory",
                "mkdir -m 0700 /run/elsewhere; ln -s /run/elsewhere /run/tunvpn; \(plant)",
                "state directory: /run/tunvpn is a symbolic link; remove it"
            ),
        ]
        for c in cases {
            print("# \(c.what)")
            let result = try downInPrivateRun(c.setup, marker: marker)
            #expect(result.status == 1 && result.stderr == "tunvpn: error: \(c.error)\n", "\(c.what): \(result)")
            #expect(!FileManager.default.fileExists(atPath: marker), "\(c.what): the planted line ran")
        }

        print("# a journal that is a symbolic link")
        let linked = try downInPrivateRun(
            #"mkdir -m 0700 /run/tunvpn; printf 'touch\t%s\n' "$marker" > "$marker.target"; chmod 600 "$marker.target"; ln -s "$marker.target" "$journal""#,
            marker: marker)
        #expect(linked.status == 1 && linked.stderr.contains("it is a symbolic link"), "\(linked)")

        print("# a journal owned by another user")
        let foreign = try downInPrivateRun("mkdir -m 0700 /run/tunvpn; \(plant); chown 65534 \"$journal\"", marker: marker)
        #expect(foreign.status == 1 && foreign.stderr.contains("it is owned by uid 65534, not root"), "\(foreign)")

        print("# a root-owned journal with a line no plan writes")
        let planted = try downInPrivateRun("mkdir -m 0700 /run/tunvpn; \(plant)", marker: marker)
        #expect(planted.status == 1, "\(planted)")
        #expect(
            planted.stderr
                == "tunvpn: error: could not undo: `touch \(marker)`: not run: touch is not one of ip, nft, iptables, ip6tables, sysctl, resolvectl, tunvpn-resolv-conf\n",
            "\(planted)")
        #expect(!FileManager.default.fileExists(atPath: marker), "the planted line ran")
    }
}
