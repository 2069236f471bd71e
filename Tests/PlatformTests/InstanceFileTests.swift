// The files an instance keeps under the state directory and the commands it runs: the journal refuses
// symbolic links, foreign owners and open modes; the instance lock is exclusive and names its owner;
// commands are found in the trusted search path whatever PATH says.

import Foundation
import Glibc
import Routing
import TestSupport
import Testing

@testable import Platform

@Suite struct CommandSearchPathTests {
    /// Resolution and the children's environment, checked in this process without touching its PATH:
    /// PATH is process-wide and the other suites run in parallel, starting `ip` through PATH themselves.
    @Test func commandsAreFoundInTheTrustedPathAndChildrenGetOnlyThatPATH() {
        let environment = CommandRunner.run(["env"])
        let paths = environment.stdout.split(separator: "\n").filter { $0.hasPrefix("PATH=") }
        #expect(paths == ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "\(environment.stdout)")
        #expect(CommandRunner.childEnvironment().filter { $0.hasPrefix("PATH=") } == ["PATH=\(CommandRunner.trustedSearchPath)"])
        let found = CommandRunner.resolve("ip")
        #expect(["/usr/sbin/ip", "/usr/bin/ip", "/sbin/ip", "/bin/ip"].contains(found ?? ""), "\(String(describing: found))")
        #expect(CommandRunner.resolve("no-such-tool-\(getpid())") == nil)
        #expect(!CommandRunner.exists("no-such-tool-\(getpid())"))
    }
}

/// The real binary started with a PATH whose first directory holds a fake `ip`, `nft`, `sysctl` and
/// `resolvectl`: none of them runs. The PATH is the child's own (`env PATH=…`), never this process's.
///
///   root namespace (untouched)     tv<pid>n<k>H
///   ──────────────────────────     ─────────────────────────────────────────────────────
///   test process                   d0 192.0.2.2/24 (veth to d1), default via 192.0.2.1;
///                                  env PATH=FAKE:… tunvpn client --endpoint 198.51.100.1:51820 --dry-run
@Suite(.needsRoot("runs tunvpn inside a throwaway network namespace"))
struct FakeCommandsEarlierInPATHTests {
    @Test func aFakeIpEarlierInPATHIsNeverRun() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        for name in ["client", "server"] {
            try runLoggedChecked([TestBinaries.tunvpn, "keygen", "--out", dir.path, "--name", name])
        }
        let fakes = ["ip", "nft", "sysctl", "resolvectl"]
        for program in fakes {
            try "#!/bin/sh\ntouch \(dir.path)/\(program)-ran\necho fake \(program)\n".write(
                toFile: dir.path + "/" + program, atomically: false, encoding: .utf8)
            chmod(dir.path + "/" + program, 0o755)
        }
        let topology = try Topology(hosts: ["H"]) { _ in [] }
        defer { topology.close() }
        let host = topology["H"]
        try host.ip("link", "add", "d0", "type", "veth", "peer", "name", "d1")
        try host.ip("link", "set", "d0", "up")
        try host.ip("link", "set", "d1", "up")
        try host.ip("address", "add", "192.0.2.2/24", "dev", "d0")
        try host.ip("route", "add", "default", "via", "192.0.2.1", "dev", "d0")

        let r = try host.exec([
            "env", "PATH=\(dir.path):/usr/sbin:/usr/bin:/sbin:/bin", TestBinaries.tunvpn, "client",
            "--key", dir.path + "/client.key", "--peer-key", dir.path + "/server.pub",
            "--endpoint", "198.51.100.1:51820", "--dry-run",
        ], timeout: 30)
        #expect(r.status == 0, "\(r.stderr)")
        // The host route to the endpoint comes from `ip route get`: the real ip answered.
        #expect(r.stdout.contains("ip -4 route add 198.51.100.1/32 via 192.0.2.1 dev d0"), "\(r.stdout)")
        #expect(!r.stdout.contains("fake") && !r.stderr.contains("fake"))
        for program in fakes {
            #expect(!FileManager.default.fileExists(atPath: "\(dir.path)/\(program)-ran"), "the fake \(program) ran")
        }
    }
}

@Suite struct FileJournalTests {
    func refusal(_ path: String) -> String? {
        do {
            _ = try FileJournal.open(path: path)
            return nil
        } catch {
            return error.description
        }
    }

    @Test func aJournalAppendsReadsBackEmptiesAndIsDeletedOnlyWhenEmpty() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.path + "/j.journal"
        let journal = try FileJournal.open(path: path)
        var st = stat()
        #expect(lstat(path, &st) == 0 && st.st_mode & 0o777 == 0o600)
        let entries = [JournalEntry(undo: ["ip", "-4", "route", "del", "0.0.0.0/1", "dev", "tun0"]), JournalEntry(undo: ["nft", "delete", "table", "ip", "t"])]
        for e in entries { try journal.append(e) }
        #expect(try journal.entries() == entries)
        #expect(try FileJournal.open(path: path).entries() == entries, "another opener reads the same lines")
        journal.unlinkIfEmpty()
        #expect(FileManager.default.fileExists(atPath: path), "a journal with entries stays")
        try journal.remove()
        #expect(lstat(path, &st) == 0 && st.st_size == 0)
        #expect(try journal.entries() == [])
        try journal.append(entries[0])
        #expect(try journal.entries() == [entries[0]], "appends after emptying start at the top")
        try journal.remove()
        journal.unlinkIfEmpty()
        #expect(!FileManager.default.fileExists(atPath: path))
    }

    @Test func aSymbolicLinkOrAFileOpenToOthersIsRefusedAndLeftAlone() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let target = dir.path + "/target"
        try "".write(toFile: target, atomically: false, encoding: .utf8)
        chmod(target, 0o600)
        symlink(target, dir.path + "/link.journal")
        #expect(
            refusal(dir.path + "/link.journal")
                == "journal: cannot open \(dir.path)/link.journal: it is a symbolic link; remove it after checking what it holds")
        try "x\n".write(toFile: dir.path + "/open.journal", atomically: false, encoding: .utf8)
        chmod(dir.path + "/open.journal", 0o620)
        #expect(
            refusal(dir.path + "/open.journal")
                == "journal: refusing \(dir.path)/open.journal: its mode is 0620, open to group or others (expected 0600); remove it after checking what it holds (tunvpn creates it root-owned, mode 0600)")
        mkfifo(dir.path + "/fifo.journal", 0o600)
        #expect(refusal(dir.path + "/fifo.journal")?.contains("it is not a regular file") == true)
        #expect(try String(contentsOfFile: target, encoding: .utf8) == "")
    }

    @Test(.needsRoot("needs root: gives a file to another user"))
    func aJournalOwnedByAnotherUserIsRefused() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.path + "/foreign.journal"
        try "touch\t/tmp/x\n".write(toFile: path, atomically: false, encoding: .utf8)
        chmod(path, 0o600)
        #expect(chown(path, 65534, 65534) == 0)
        #expect(
            refusal(path)
                == "journal: refusing \(path): it is owned by uid 65534, not root; remove it after checking what it holds (tunvpn creates it root-owned, mode 0600)")
    }
}

@Suite(.needsRoot("needs root: uses the state directory /run/tunvpn"))
struct InstanceLockTests {
    @Test func theLockIsExclusiveNamesItsOwnerAndGoesAtRelease() throws {
        // A device name no instance uses: this process's pid.
        let device = "tvlk\(getpid() % 100_000)"
        guard case .acquired(let lock) = try InstanceLock.acquire(device: device) else {
            Issue.record("the first acquire did not get the lock")
            return
        }
        let text = try String(contentsOfFile: lock.path, encoding: .utf8)
        #expect(text == "\(getpid())\n")
        var st = stat()
        #expect(lstat(lock.path, &st) == 0 && st.st_uid == 0 && st.st_mode & 0o777 == 0o600)
        // A second open file description conflicts even in the same process (flock(2)).
        guard case .held(let pid) = try InstanceLock.acquire(device: device) else {
            lock.release()
            Issue.record("a second acquire got the lock")
            return
        }
        #expect(pid == getpid())
        #expect(InstanceLock.owner(device: device) == getpid())
        #expect(try HostNetwork.instances().contains(InstanceRecord(device: device, owner: getpid(), hasLeftovers: false)))
        lock.release()
        #expect(!FileManager.default.fileExists(atPath: lock.path))
        #expect(InstanceLock.owner(device: device) == nil)
        #expect(try !HostNetwork.instances().contains { $0.device == device })
    }
}

@Suite struct StatusRequestTests {
    @Test func theServerGetsEachRequestLineAndAnswersIt() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.path + "/requests.sock"
        let server = try UnixSocketServer(path: path) { request in
            Array("got \(String(decoding: request, as: UTF8.self))\n".utf8)
        }
        defer { server.stop() }
        #expect(try UnixSocketClient.fetch(path) == Array("got status\n".utf8))
        #expect(try UnixSocketClient.fetch(path, request: "reload") == Array("got reload\n".utf8))
        let long = String(repeating: "x", count: 1000)
        let reply = String(decoding: try UnixSocketClient.fetch(path, request: long), as: UTF8.self)
        #expect(reply == "got \(String(repeating: "x", count: UnixSocketServer.maximumRequestLength))\n", "cut at the limit")
    }

    @Test func aLineEndingInAByteCountBringsThatManyBytesOfBodyUpToTheLimit() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.path + "/bodies.sock"
        let server = try UnixSocketServer(path: path) { request in
            let line = String(decoding: request.prefix { $0 != UInt8(ascii: "\n") }, as: UTF8.self)
            let body = request.drop { $0 != UInt8(ascii: "\n") }.dropFirst()
            return Array("\(line): \(body.count) bytes, sum \(body.reduce(0) { $0 &+ Int($1) })\n".utf8)
        }
        defer { server.stop() }
        let body = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let sum = body.reduce(0) { $0 &+ Int($1) }
        let reply = String(decoding: try UnixSocketClient.fetch(path, request: "reload-file", body: body), as: UTF8.self)
        #expect(reply == "reload-file 300000: 300000 bytes, sum \(sum)\n")
        #expect(UnixSocketServer.announcedBodyLength(Array("reload-file 12".utf8)) == 12)
        #expect(UnixSocketServer.announcedBodyLength(Array("reload-file".utf8)) == nil)
        #expect(UnixSocketServer.announcedBodyLength(Array("reload-file 1x".utf8)) == nil)
        #expect(UnixSocketServer.announcedBodyLength(Array("reload-file 1234567890".utf8)) == nil, "more than 8 digits")
        // Over the limit: the line alone reaches the handler, and the body is drained, not read.
        let tooLong = "reload-file \(UnixSocketServer.maximumBodyLength + 1)"
        let refused = String(decoding: try UnixSocketClient.fetch(path, request: tooLong), as: UTF8.self)
        #expect(refused == "\(tooLong): 0 bytes, sum 0\n")
    }
}

@Suite struct LockedJournalTests {
    /// The DNS agent's journal (HostNetwork.dnsJournal): one holder at a time; a second opener waits and
    /// gives up naming the path; a file the holder deleted is not the one a later opener locks.
    @Test func aLockedJournalHasOneHolderAndALaterOpenerGetsTheFileAtThePath() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.path + "/j.dns.journal"
        var first: FileJournal? = try FileJournal.openLocked(path: path, timeoutSeconds: 1)
        try first?.append(JournalEntry(undo: ["resolvectl", "revert", "tun0"]))
        #expect(throws: RoutingError.self) { _ = try FileJournal.openLocked(path: path, timeoutSeconds: 1) }
        do {
            _ = try FileJournal.openLocked(path: path, timeoutSeconds: 1)
        } catch {
            #expect(error.message.contains("\(path) is still locked after 1 s"), "\(error)")
        }
        // The holder empties and deletes its journal, then lets go: the next opener gets a new file at the path.
        try first?.remove()
        first?.unlinkIfEmpty()
        first = nil
        let second = try FileJournal.openLocked(path: path, timeoutSeconds: 1)
        #expect(try second.entries().isEmpty)
        try second.append(JournalEntry(undo: ["resolvectl", "revert", "tun0"]))
        #expect(FileManager.default.fileExists(atPath: path), "the journal written is the one at the path")
    }
}
