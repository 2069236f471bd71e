// The status socket's server and client on a path in a temporary directory (a Unix socket on the file
// system involves no network namespace), and the HTTP server's request parsing. The HTTP server itself
// is exercised on loopback in HTTPServerTests.swift, and end to end inside a namespace
// (EndToEndTests/StatusEndToEndTests.swift).

import Crypto
import Engine
import Foundation
import Glibc
import TestSupport
import Testing

@testable import Platform

@Suite struct StatusSocketTests {
    @Test func everyConnectionGetsTheReplyAndTheFileIsRootOnlyAndRemovedAtStop() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.path + "/netns1-tun0.sock"
        let calls = Counter()
        let server = try UnixSocketServer(path: path) {
            calls.add()
            return Array("reply \(calls.current)\n".utf8)
        }
        var st = stat()
        #expect(lstat(path, &st) == 0)
        #expect(st.st_mode & S_IFMT == S_IFSOCK)
        #expect(st.st_mode & 0o777 == 0o600)
        for i in 1...3 {
            #expect(try UnixSocketClient.fetch(path) == Array("reply \(i)\n".utf8))
        }
        server.stop()
        #expect(lstat(path, &st) != 0 && errno == ENOENT)
        #expect(throws: IOError.self) { try UnixSocketClient.fetch(path) }
        server.stop()  // idempotent
    }

    @Test func aReplyMayComeFromSecretMemoryOrBeNothingAndTheThreadsCarryTheGivenName() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.path + "/uapi.sock"
        let server = try UnixSocketServer(path: path, name: "uapi-test", maximumConnections: 1) { request in
            switch String(decoding: request, as: UTF8.self) {
            case "secret": return .secret(SecretBytes(copying: Array("key=00ff\n\n".utf8)))
            case "bytes": return .bytes([1, 2])
            default: return .none
            }
        }
        defer { server.stop() }
        #expect(try UnixSocketClient.fetch(path, request: "secret") == Array("key=00ff\n\n".utf8))
        #expect(try UnixSocketClient.fetch(path, request: "bytes") == [1, 2])
        #expect(try UnixSocketClient.fetch(path, request: "other") == [], "closed without an answer")
        let names = try FileManager.default.contentsOfDirectory(atPath: "/proc/self/task").map {
            try String(contentsOfFile: "/proc/self/task/\($0)/comm", encoding: .utf8)
        }
        #expect(names.filter { $0 == "uapi-test\n" }.count == 1)
    }

    @Test func aLargeReplyArrivesWhole() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.path + "/big.sock"
        let big = (0..<3_000_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let server = try UnixSocketServer(path: path) { big }
        defer { server.stop() }
        #expect(try UnixSocketClient.fetch(path) == big)
    }

    @Test func aStaleSocketFileIsReplacedButALiveOneIsRefused() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.path + "/stale.sock"
        // A socket file nobody listens on any more, as a killed instance leaves behind.
        let first = try UnixSocketServer(path: path) { [1] }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        #expect(fd >= 0)
        _ = unlink(path)
        let bound = UnixSocketServer.withAddress(path) { bind(fd, $0, $1) }
        #expect(bound == 0)
        close(fd)
        first.stop()  // its file is gone already; the stale one (another inode) must be left alone
        var st = stat()
        #expect(lstat(path, &st) == 0)

        let second = try UnixSocketServer(path: path) { [2] }
        defer { second.stop() }
        #expect(try UnixSocketClient.fetch(path) == [2])
        #expect(throws: IOError(call: "bind", errno: EADDRINUSE, detail: "\(path) is served by another running process"))
        {
            try UnixSocketServer(path: path) { [3] }
        }
        #expect(try UnixSocketClient.fetch(path) == [2])
    }

    @Test func removeStaleRemovesOnlyASocketNobodyListensOn() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.path + "/down.sock"
        try UnixSocketServer.removeStale(path)  // nothing there: fine
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        #expect(UnixSocketServer.withAddress(path) { bind(fd, $0, $1) } == 0)
        close(fd)
        try UnixSocketServer.removeStale(path)
        var st = stat()
        #expect(lstat(path, &st) != 0 && errno == ENOENT)
        let live = try UnixSocketServer(path: path) { [1] }
        defer { live.stop() }
        #expect(throws: IOError.self) { try UnixSocketServer.removeStale(path) }
        #expect(try UnixSocketClient.fetch(path) == [1])
    }

    @Test func somethingOtherThanASocketAtThePathIsLeftAlone() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.path + "/file.sock"
        try "keep me".write(toFile: path, atomically: true, encoding: .utf8)
        #expect(throws: IOError(call: "bind", errno: EEXIST, detail: "\(path) exists and is not a socket; remove it")) {
            try UnixSocketServer(path: path) { [] }
        }
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "keep me")
    }

    @Test func aClientThatConnectsAndNeverReadsHoldsOneThreadAndTheNextIsServedMeanwhile() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.path + "/slow.sock"
        let big = [UInt8](repeating: 7, count: 8 << 20)  // far more than the socket buffers hold
        // A deadline far beyond the test's waits: a server that served one connection at a time would
        // leave the second client waiting for 30 s.
        let server = try UnixSocketServer(path: path, timeout: 30) { big }
        defer { server.stop() }
        guard case .success(let idle) = UnixSocketClient.connect(path) else {
            Issue.record("connect failed")
            return
        }
        defer { close(idle) }
        let accepted = waitUntil(timeout: 5, interval: 0.005) { server.connectionsBeingServed == 1 }
        #expect(accepted, "the idle client was accepted")
        #expect(try UnixSocketClient.fetch(path, timeout: 5).count == big.count)
        // The second connection's thread counts itself out just after the client read its last byte, so
        // the count comes back down to 1 (the idle client's) shortly after, never to 0.
        let settled = waitUntil(timeout: 5, interval: 0.005) { server.connectionsBeingServed == 1 }
        #expect(settled, "the idle client still holds its connection (\(server.connectionsBeingServed) being served)")
    }

    @Test func beyondTheBoundAClientWaitsInTheBacklogAndIsServedOnceTheIdleOnesAreCutOff() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.path + "/bound.sock"
        let big = [UInt8](repeating: 7, count: 8 << 20)
        let bound = StreamServer.defaultMaximumConnections
        let timeout = 2.0
        let server = try UnixSocketServer(path: path, timeout: timeout) { big }
        defer { server.stop() }
        let start = ContinuousClock.now
        var idle: [Int32] = []
        defer { for fd in idle { close(fd) } }
        for _ in 0..<bound {
            guard case .success(let fd) = UnixSocketClient.connect(path) else {
                Issue.record("connect failed")
                return
            }
            idle.append(fd)
        }
        let accepted = waitUntil(timeout: 5, interval: 0.005) { server.connectionsBeingServed == bound }
        #expect(accepted, "all \(bound) idle clients were accepted")
        // One more connects (the backlog takes it) and is served whole once a thread is free, which is
        // when an idle client's connection deadline passes: not before `timeout` after `start`.
        #expect(try UnixSocketClient.fetch(path, timeout: 10).count == big.count)
        let elapsed = start.duration(to: .now).components
        let waited = Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18
        #expect(waited >= timeout, "served after \(waited) s, while all threads were held")
        // The idle clients were cut off at their deadline: what each finds is part of the reply, then the end.
        let allCutOff = waitUntil(timeout: 5, interval: 0.005) { server.connectionsBeingServed == 0 }
        #expect(allCutOff)
        for fd in idle {
            var timeout = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            var total = 0
            var chunk = [UInt8](repeating: 0, count: 64 << 10)
            while true {
                let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                guard n > 0 else {
                    #expect(n == 0, "the idle client sees the end of the stream, not a read timeout")
                    break
                }
                total += n
            }
            #expect(total < big.count)
        }
    }

    @Test(.needsRoot("needs capabilities to drop"))
    func theServerThreadShedsEveryCapabilityButTheIDChangesWithoutTouchingTheOthers() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.path + "/caps.sock"
        /// The `CapEff:` and `NoNewPrivs:` lines of the calling thread.
        @Sendable func capabilityLines() -> String {
            let status = (try? String(contentsOfFile: "/proc/thread-self/status", encoding: .utf8)) ?? ""
            return status.split(separator: "\n").filter { $0.hasPrefix("CapEff:") || $0.hasPrefix("NoNewPrivs:") }
                .joined(separator: " ")
        }
        let before = capabilityLines()
        let server = try UnixSocketServer(path: path, threadStart: { _ = Privileges.enterServiceThread() }) {
            Array(capabilityLines().utf8)
        }
        defer { server.stop() }
        #expect(
            String(decoding: try UnixSocketClient.fetch(path), as: UTF8.self)
                == "CapEff:\t00000000000000c0 NoNewPrivs:\t1", "CAP_SETGID and CAP_SETUID alone, for the process's uid change")
        #expect(capabilityLines() == before)
    }

    @Test func aPathTooLongForSockaddrUnIsRefused() {
        let path = "/tmp/" + String(repeating: "x", count: 200)
        #expect(throws: IOError.self) { try UnixSocketServer(path: path) { [] } }
    }

    @Test func statusSocketsAreNamedAfterTheNamespaceAndDevice() {
        let path = HostNetwork.statusSocketPath(device: "tun7")
        #expect(path == "/run/tunvpn/\(HostNetwork.namespaceID())-tun7.sock")
    }
}

@Suite struct HTTPRequestTests {
    @Test(arguments: [
        ("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", "GET", "/metrics"),
        ("HEAD /metrics?name[]=x HTTP/1.0\r\n\r\n", "HEAD", "/metrics"),
        ("GET / HTTP/1.1\n\n", "GET", "/"),
    ])
    func requestLinesAreRead(text: String, method: String, path: String) {
        #expect(HTTPRequest.parse(head: ArraySlice(text.utf8)) == HTTPRequest(method: method, path: path))
    }

    @Test(arguments: [
        "GET /metrics\r\n\r\n", "GET  /metrics HTTP/1.1\r\n\r\n", "get /metrics HTTP/1.1\r\n\r\n",
        "GET http://x/metrics HTTP/1.1\r\n\r\n", "GET /metrics HTTP/2\r\n\r\n", "\r\n\r\n", "",
    ])
    func malformedRequestLinesAreRefused(text: String) {
        #expect(HTTPRequest.parse(head: ArraySlice(text.utf8)) == nil)
    }

    @Test func theHeadEndsAtTheFirstBlankLine() {
        #expect(HTTPRequest.endOfHead(ArraySlice("GET / HTTP/1.1\r\nA: b\r\n\r\nbody".utf8)) == 24)
        #expect(HTTPRequest.endOfHead(ArraySlice("GET / HTTP/1.1\n\n".utf8)) == 16)
        #expect(HTTPRequest.endOfHead(ArraySlice("GET / HTTP/1.1\r\nA: b\r\n".utf8)) == nil)
        let bytes = Array("xxGET / HTTP/1.1\r\n\r\n".utf8)
        #expect(HTTPRequest.endOfHead(bytes[2...]) == bytes.count)
    }

    @Test func responsesCloseTheConnectionAndHEADLeavesOutTheBody() {
        let response = HTTPResponse.text(404, "Not Found", "nope")
        #expect(
            String(decoding: response.serialized(includeBody: true), as: UTF8.self)
                == "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 5\r\nConnection: close\r\n\r\nnope\n"
        )
        #expect(
            String(decoding: response.serialized(includeBody: false), as: UTF8.self)
                == "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 5\r\nConnection: close\r\n\r\n"
        )
    }
}

