// The metrics endpoint's HTTP server on 127.0.0.1 (the test's own loopback: nothing is configured, so
// no private namespace is needed): idle and partial requests hold one thread each and are cut off at
// the request deadline, the bound on connections served at once holds, and a scrape gets through
// either way; the request limits (400, 405, 431) and the lingering close still apply.
//
// Waits are bounded polls with generous limits. The only timing assertions are lower bounds that the
// design guarantees (a connection cannot be cut off, nor a queued one served, before a deadline counted
// from an accept that came after the test's own start mark), so a loaded machine can only make them
// hold more easily.

import Engine
import Foundation
import Glibc
import TestSupport
import Testing
import Transport

@testable import Platform

private let loopback = IPv4Address(127, 0, 0, 1)

/// A test client's socket call failed.
private struct ClientFailed: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A blocking TCP client socket for the tests, closed by `close()`.
private struct TestClient {
    let fd: Int32

    /// Connects to `endpoint` (socket(2), connect(2)); reads wait at most `readTimeout` seconds each.
    init(_ endpoint: Endpoint, readTimeout: Double = 5) throws {
        fd = socket(endpoint.socketFamily, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ClientFailed("socket: errno \(errno)") }
        var address = SocketAddressSlot()
        let length = endpoint.write(to: &address, family: endpoint.socketFamily)
        let connected = withUnsafePointer(to: &address) {
            UnsafeRawPointer($0).withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, length) }
        }
        guard connected == 0 else {
            let code = errno
            Glibc.close(fd)
            throw ClientFailed("connect: errno \(code)")
        }
        var interval = timeval(tv_sec: Int(readTimeout), tv_usec: Int((readTimeout - Double(Int(readTimeout))) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &interval, socklen_t(MemoryLayout<timeval>.size))
    }

    func send(_ text: String) { send(Array(text.utf8)) }

    func send(_ bytes: [UInt8]) {
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { raw in
                Glibc.send(fd, raw.baseAddress! + sent, raw.count - sent, Int32(MSG_NOSIGNAL))
            }
            guard n > 0 else { return }
            sent += n
        }
    }

    /// Everything until the server closes the connection; nil if a read timed out or failed first. With
    /// `allowingReset`, a reset also counts as the end (tcp(7): closing with unread bytes sends RST, as
    /// the server does to a request it gave up on).
    func readToEnd(allowingReset: Bool = false) -> [UInt8]? {
        var reply: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n == 0 || (n < 0 && errno == ECONNRESET && allowingReset) { return reply }
            guard n > 0 else { return nil }
            reply += chunk[0..<n]
        }
    }

    /// True if nothing has arrived and the server has not closed: poll(2) for input with no wait.
    var isQuiet: Bool {
        var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&entry, 1, 0) == 0
    }

    func close() { Glibc.close(fd) }
}

/// Seconds from `start` to now, on the monotonic clock.
private func seconds(since start: ContinuousClock.Instant) -> Double {
    let elapsed = start.duration(to: .now).components
    return Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18
}

/// A server on `endpoint` answering `/metrics` with a fixed text, everything else with 404.
private func metricsServer(
    requestTimeout: Double, timeout: Double, on endpoint: Endpoint = Endpoint(address: loopback, port: 0)
) throws -> HTTPServer {
    try HTTPServer(endpoint: endpoint, requestTimeout: requestTimeout, timeout: timeout) {
        request in
        request.path == "/metrics" ? .text(200, "OK", "tunvpn_peers 1") : .text(404, "Not Found", "not found")
    }
}

private let scrape = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
private let answer = "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 15\r\n"
    + "Connection: close\r\n\r\ntunvpn_peers 1\n"

@Suite struct HTTPServerTests {
    @Test func aScrapeOverIPv6LoopbackIsAnswered() throws {
        let server = try metricsServer(requestTimeout: 5, timeout: 10, on: Endpoint(address: IPv6Address(high: 0, low: 1), port: 0))
        defer { server.stop() }
        #expect(server.endpoint.address == .v6(IPv6Address(high: 0, low: 1)))
        let scraper = try TestClient(server.endpoint)
        defer { scraper.close() }
        scraper.send(scrape)
        #expect(scraper.readToEnd().map { String(decoding: $0, as: UTF8.self) } == answer)
    }

    @Test func aServerOnTheIPv6AnyAddressAnswersBothFamilies() throws {
        let server = try metricsServer(requestTimeout: 5, timeout: 10, on: Endpoint(address: IPv6Address.any, port: 0))
        defer { server.stop() }
        #expect(server.endpoint.address == .v6(.any))
        for address in [IPAddress.v4(loopback), .v6(IPv6Address(high: 0, low: 1))] {
            let scraper = try TestClient(Endpoint(address: address, port: server.endpoint.port))
            defer { scraper.close() }
            scraper.send(scrape)
            #expect(scraper.readToEnd().map { String(decoding: $0, as: UTF8.self) } == answer, "over \(address)")
        }
    }

    @Test func aScrapeIsAnsweredWhileAnIdleClientAndAPartialRequestHoldTheirConnections() throws {
        // Deadlines far beyond the test's waits: a server that served one connection at a time would
        // leave the scrape unanswered for 30 s.
        let server = try metricsServer(requestTimeout: 30, timeout: 60)
        defer { server.stop() }
        let idle = try TestClient(server.endpoint)
        defer { idle.close() }
        let partial = try TestClient(server.endpoint)
        defer { partial.close() }
        partial.send("GET /metr")
        let accepted = waitUntil(timeout: 5, interval: 0.005) { server.connectionsBeingServed == 2 }
        #expect(accepted, "both connections were accepted")

        let scraper = try TestClient(server.endpoint)
        defer { scraper.close() }
        scraper.send(scrape)
        let reply = scraper.readToEnd()
        #expect(reply.map { String(decoding: $0, as: UTF8.self) } == answer)
        #expect(idle.isQuiet && partial.isQuiet, "the idle and the partial connection are still open")
        #expect(server.connectionsBeingServed >= 2)
    }

    @Test func anIdleClientIsClosedWithoutAReplyAtTheRequestDeadline() throws {
        let requestTimeout = 0.3
        let server = try metricsServer(requestTimeout: requestTimeout, timeout: 30)
        defer { server.stop() }
        let start = ContinuousClock.now
        let idle = try TestClient(server.endpoint)
        defer { idle.close() }
        #expect(idle.readToEnd() == [], "closed by the server, without a reply")
        let waited = seconds(since: start)
        #expect(waited >= requestTimeout && waited < 5, "closed after \(waited) s")
    }

    @Test func aRequestTrickledByteByByteIsClosedAtTheRequestDeadlineNotEachReadsDeadline() throws {
        let requestTimeout = 0.3
        let server = try metricsServer(requestTimeout: requestTimeout, timeout: 30)
        defer { server.stop() }
        let start = ContinuousClock.now
        let slow = try TestClient(server.endpoint)
        defer { slow.close() }
        slow.send("GET /metrics HTTP/1.1\r\n")
        var reply: [UInt8]? = nil
        var sent = 0
        // One byte every 20 ms, never the blank line: every read gets something, the head never ends.
        while reply == nil && start.duration(to: .now) < .seconds(5) {
            slow.send("x")
            sent += 1
            usleep(20_000)
            if !slow.isQuiet { reply = slow.readToEnd(allowingReset: true) }
        }
        let waited = seconds(since: start)
        #expect(reply == [], "the server closed the connection without a reply")
        #expect(waited >= requestTimeout && waited < 5, "closed after \(waited) s and \(sent) bytes")
    }

    @Test func beyondTheBoundAScrapeWaitsInTheBacklogAndIsServedOnceTheIdleOnesAreCutOff() throws {
        let bound = StreamServer.defaultMaximumConnections
        let requestTimeout = 1.0
        let server = try metricsServer(requestTimeout: requestTimeout, timeout: 30)
        defer { server.stop() }
        let start = ContinuousClock.now
        let idle = try (0..<bound).map { _ in try TestClient(server.endpoint) }
        defer { for client in idle { client.close() } }
        let accepted = waitUntil(timeout: 5, interval: 0.005) { server.connectionsBeingServed == bound }
        #expect(accepted, "all \(bound) idle clients were accepted")

        // The connection beyond the bound is not refused: connect succeeds and the request is taken...
        let scraper = try TestClient(server.endpoint, readTimeout: 10)
        scraper.send(scrape)
        // ...and answered once the idle ones reach their deadline, which cannot come before 1 s after
        // `start`.
        let reply = scraper.readToEnd()
        scraper.close()  // which ends the server's lingering close
        let waited = seconds(since: start)
        #expect(reply.map { String(decoding: $0, as: UTF8.self) } == answer)
        #expect(waited >= requestTimeout, "answered after \(waited) s, while all threads were held")
        for client in idle { #expect(client.readToEnd() == [], "an idle client was closed without a reply") }
        #expect(waitUntil(timeout: 5, interval: 0.005) { server.connectionsBeingServed == 0 })
    }

    @Test(arguments: [
        ("POST /metrics HTTP/1.1\r\n\r\n", "HTTP/1.1 405 Method Not Allowed\r\n"),
        ("GET /metrics\r\n\r\n", "HTTP/1.1 400 Bad Request\r\n"),
        ("GET /metrics HTTP/1.1\r\nX: " + String(repeating: "a", count: 9000) + "\r\n\r\n",
         "HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        ("HEAD /metrics HTTP/1.1\r\n\r\n", "HTTP/1.1 200 OK\r\n"),
        ("GET /other HTTP/1.1\r\n\r\n", "HTTP/1.1 404 Not Found\r\n"),
    ])
    func requestsOutsideTheLimitsGetTheirStatus(request: String, statusLine: String) throws {
        let server = try metricsServer(requestTimeout: 5, timeout: 10)
        defer { server.stop() }
        let client = try TestClient(server.endpoint)
        defer { client.close() }
        client.send(request)
        let reply = String(decoding: try #require(client.readToEnd()), as: UTF8.self)
        #expect(reply.hasPrefix(statusLine), "\(reply.prefix(80))")
        if request.hasPrefix("HEAD") { #expect(reply.hasSuffix("\r\n\r\n"), "HEAD has no body") }
    }

    @Test func unreadBytesAfterTheHeadDoNotResetTheReply() throws {
        // Lingering close: the server drains what the client sent beyond the head, so closing does not
        // reset the connection (tcp(7): close with unread data sends RST) before the reply is read.
        let server = try metricsServer(requestTimeout: 5, timeout: 10)
        defer { server.stop() }
        let client = try TestClient(server.endpoint)
        defer { client.close() }
        client.send(Array(scrape.utf8) + [UInt8](repeating: 0x41, count: 256 << 10))
        usleep(100_000)  // let the server answer and close before this client reads
        #expect(client.readToEnd().map { String(decoding: $0, as: UTF8.self) } == answer)
    }
}
