// The privilege drop, in a forked child (it changes the ids of the whole process, which the test runner
// must keep): after `Privileges.drop(to: nobody)` the child runs as 65534 with no supplementary group and
// CAP_NET_ADMIN alone, cannot write root's files or create files in root's directories, and still does
// what a tunvpn instance needs afterwards in its own network namespace: write a net.* sysctl and run `ip`
// and `nft` children (which get CAP_NET_ADMIN from the ambient set).
//
// The child runs only C calls and code whose metadata the parent has already used, with every string it
// needs made before fork(2), and reports through its exit status.

import CLinux
import Foundation
import Glibc
import Testing
import TestSupport

@testable import Platform

/// A NULL-terminated argv made before fork.
private func cArguments(_ arguments: [String]) -> [UnsafeMutablePointer<CChar>?] { arguments.map { strdup($0) } + [nil] }

/// /proc/PID/status as key → value.
private func statusLines(_ pid: pid_t) throws -> [String: String] {
    let text = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
    var result: [String: String] = [:]
    for line in text.split(separator: "\n") {
        let parts = line.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        if parts.count == 2 { result[String(parts[0])] = parts[1].trimmingCharacters(in: .whitespaces) }
    }
    return result
}

@Suite(.serialized, .needsRoot("needs root: changes its user in a forked child"))
struct PrivilegeTests {
    // Bits of the child's exit status.
    static let openRefused: Int32 = 1
    static let createRefused: Int32 = 2
    static let sysctlWritten: Int32 = 4
    static let ipRan: Int32 = 8
    static let nftRan: Int32 = 16
    static let dropFailed: Int32 = 64

    @Test func afterTheDropRootFilesAreOutOfReachButNetworkAdministrationStillWorks() throws {
        let nobody = try #require(Privileges.Account.named("nobody"))
        #expect(nobody.uid == 65534)
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        #expect(chmod(dir.path, 0o755) == 0)
        let file = dir.path + "/root-owned"
        try "root's\n".write(toFile: file, atomically: false, encoding: .utf8)
        #expect(chmod(file, 0o644) == 0)
        let fileC = strdup(file)!
        let newC = strdup(dir.path + "/created")!
        let forwardC = strdup("/proc/sys/net/ipv4/ip_forward")!
        let ip = try #require((["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip"] as [String]).first { access($0, X_OK) == 0 })
        let nft = (["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"] as [String]).first { access($0, X_OK) == 0 }
        let ipArgv = cArguments([ip, "link", "add", "tvpn-v0", "type", "veth", "peer", "name", "tvpn-v1"])
        let nftArgv = cArguments([nft ?? "/nonexistent", "add", "table", "inet", "tvpn_test"])
        defer { for p in [fileC, newC, forwardC] { free(p) }; for p in ipArgv + nftArgv { free(p) } }
        var ready: [Int32] = [0, 0]
        var release: [Int32] = [0, 0]
        #expect(pipe(&ready) == 0 && pipe(&release) == 0)
        _ = Privileges.netAdminMask  // metadata the child uses, made in the parent

        let pid = fork()
        if pid == 0 {
            // First of all, let go of the parent's files (tests running in parallel may be waiting for
            // theirs to close): the two pipe ends move to 3 and 4 (by way of numbers above 100, so neither
            // overwrites the other), everything from 5 on is closed.
            let up = (fcntl(ready[1], F_DUPFD, 100), fcntl(release[0], F_DUPFD, 100))
            guard up.0 >= 100, up.1 >= 100, dup2(up.0, 3) == 3, dup2(up.1, 4) == 4, clinux_close_descriptors_from(5) == 0 else {
                _exit(Self.dropFailed)
            }
            ready[1] = 3
            release[0] = 4
            var code: Int32 = 0
            // A private network namespace, so the sysctl, the link and the table touch nothing else.
            if clinux_unshare_network_namespace() != 0 { _exit(Self.dropFailed | 32) }
            do { _ = try Privileges.drop(to: nobody) } catch { _exit(Self.dropFailed) }
            if open(fileC, O_WRONLY) < 0 && errno == EACCES { code |= Self.openRefused }
            if creat(newC, 0o644) < 0 && errno == EACCES { code |= Self.createRefused }
            let fd = open(forwardC, O_WRONLY)
            if fd >= 0 && write(fd, "1\n", 2) == 2 { code |= Self.sysctlWritten }
            func run(_ argv: [UnsafeMutablePointer<CChar>?]) -> Bool {
                var child: pid_t = 0
                guard let path = argv[0], posix_spawn(&child, path, nil, nil, argv, environ) == 0 else { return false }
                var status: Int32 = 0
                return waitpid(child, &status, 0) == child && status == 0
            }
            if run(ipArgv) { code |= Self.ipRan }
            if nft != nil && run(nftArgv) { code |= Self.nftRan }
            var byte: UInt8 = 1
            _ = write(ready[1], &byte, 1)
            _ = read(release[0], &byte, 1)
            _exit(code)
        }
        try #require(pid > 0, "fork: \(String(cString: strerror(errno)))")
        close(ready[1])
        close(release[0])
        var byte: UInt8 = 0
        // At most 10 s for the child to report; a child that hangs is killed (by its pid) and the test fails.
        var waitFor = pollfd(fd: ready[0], events: Int16(POLLIN), revents: 0)
        let told = poll(&waitFor, 1, 10_000) == 1 && read(ready[0], &byte, 1) == 1
        if !told { kill(pid, SIGKILL) }
        let status = told ? try statusLines(pid) : [:]
        _ = write(release[1], &byte, 1)
        close(ready[0])
        close(release[1])
        var exit: Int32 = 0
        #expect(waitpid(pid, &exit, 0) == pid)
        let code = (exit >> 8) & 0xff
        #expect(told, "the child dropped privileges and reported (exit status \(code))")
        #expect(code & Self.dropFailed == 0, "Privileges.drop failed in the child")

        #expect(status["Uid"] == "65534\t65534\t65534\t65534", "\(status)")
        #expect(status["Gid"] == "65534\t65534\t65534\t65534", "\(status)")
        #expect(status["Groups"] == "", "no supplementary group: \(status)")
        for set in ["CapEff", "CapPrm", "CapInh", "CapAmb", "CapBnd"] {
            #expect(status[set] == "0000000000001000", "\(set) is CAP_NET_ADMIN alone: \(status)")
        }
        #expect(status["NoNewPrivs"] == "1")
        #expect(code & Self.openRefused != 0, "open(O_WRONLY) of a root-owned 0644 file fails with EACCES")
        #expect(code & Self.createRefused != 0, "creat() in a root-owned 0755 directory fails with EACCES")
        #expect(!KeyFiles.exists(dir.path + "/created"))
        #expect(code & Self.sysctlWritten != 0, "net.ipv4.ip_forward is writable with CAP_NET_ADMIN")
        #expect(code & Self.ipRan != 0, "`ip link add ... type veth` works in a child through the ambient CAP_NET_ADMIN")
        if nft != nil { #expect(code & Self.nftRan != 0, "`nft add table` works in a child through the ambient CAP_NET_ADMIN") }
    }

    @Test func aFailedStepIsNamedInOneLine() throws {
        let nobody = try #require(Privileges.Account.named("nobody"))
        var report: [Int32] = [0, 0]
        #expect(pipe(&report) == 0)
        let pid = fork()
        if pid == 0 {
            guard dup2(report[1], 3) == 3, clinux_close_descriptors_from(4) == 0 else { _exit(2) }
            report[1] = 3
            // Without CAP_SETPCAP (a service thread keeps CAP_SETUID and CAP_SETGID alone), reducing the
            // bounding set is the first step to fail.
            _ = clinux_enter_service_thread()
            do {
                _ = try Privileges.drop(to: nobody)
                _exit(1)
            } catch {
                let line = error.description
                _ = line.withCString { write(report[1], $0, strlen($0)) }
                _exit(0)
            }
        }
        try #require(pid > 0)
        close(report[1])
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 512)
        while true {
            let n = read(report[0], &buffer, buffer.count)
            if n <= 0 { break }
            bytes += buffer.prefix(n)
        }
        close(report[0])
        var exit: Int32 = 0
        #expect(waitpid(pid, &exit, 0) == pid)
        #expect(exit == 0, "the drop failed, as it must without capabilities")
        #expect(
            String(decoding: bytes, as: UTF8.self)
                == "cannot drop privileges: prctl(PR_CAPBSET_DROP) failed: Operation not permitted; start tunvpn as root with CAP_SETPCAP (a systemd unit's CapabilityBoundingSet= must list CAP_SETPCAP)"
        )
    }

    @Test func theLogLineNamesTheUserTheIdsAndTheCapabilities() {
        let outcome = Privileges.Outcome(
            account: .init(name: "tunvpn", uid: 998, gid: 997), changedUser: true, boundingSetReduced: true,
            effective: Privileges.netAdminMask)
        #expect(outcome.description == "running as tunvpn (uid 998, gid 997), capabilities: CAP_NET_ADMIN")
        let partial = Privileges.Outcome(
            account: .init(name: "alice", uid: 1000, gid: 1000), changedUser: false, boundingSetReduced: false,
            effective: Privileges.netAdminMask | 1)
        #expect(
            partial.description
                == "running as alice (uid 1000, gid 1000), capabilities: CAP_#0, CAP_NET_ADMIN (bounding set unchanged: no CAP_SETPCAP)")
    }
}
