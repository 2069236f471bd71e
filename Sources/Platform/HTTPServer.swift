// A deliberately tiny HTTP/1.1 server for the metrics endpoint: one request per connection
// (`Connection: close`), a request head of at most 8 KiB that must arrive within the request deadline
// (half a second from accept unless the caller says otherwise), no request bodies. That is all a
// Prometheus scraper needs (RFC 9112 §3 for the request line, §9.6 for closing). Connections are served
// by a `StreamServer`: up to `maximumConnections` at once, more waiting in the listen backlog, each cut
// off at its deadlines, so a slow or hostile client holds neither the endpoint nor memory for long.

import CLinux
import Engine
import Glibc
import Transport

/// A request line, as the handler sees it.
public struct HTTPRequest: Sendable, Equatable {
    /// The method, as sent (`GET`).
    public var method: String
    /// The path of the request target, without its query (`/metrics`).
    public var path: String

    public init(method: String, path: String) {
        self.method = method
        self.path = path
    }

    /// The request line of `head` (the bytes before the blank line), or nil if it is not
    /// `METHOD SP TARGET SP HTTP/1.x`. Only origin-form targets (starting with `/`) are accepted.
    static func parse(head: ArraySlice<UInt8>) -> HTTPRequest? {
        let line = head.prefix { $0 != UInt8(ascii: "\r") && $0 != UInt8(ascii: "\n") }
        let parts = line.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, parts[0].allSatisfy({ (65...90).contains($0) }),
            parts[1].first == UInt8(ascii: "/"),
            parts[2].elementsEqual("HTTP/1.1".utf8) || parts[2].elementsEqual("HTTP/1.0".utf8)
        else { return nil }
        let target = parts[1].prefix { $0 != UInt8(ascii: "?") && $0 != UInt8(ascii: "#") }
        return HTTPRequest(
            method: String(decoding: parts[0], as: UTF8.self), path: String(decoding: target, as: UTF8.self))
    }

    /// The index just past the blank line ending the head (CRLF CRLF, or LF LF as RFC 9112 §2.2 lets a
    /// server accept), or nil if it has not arrived yet.
    static func endOfHead(_ bytes: ArraySlice<UInt8>) -> Int? {
        var i = bytes.startIndex
        while i < bytes.endIndex {
            if bytes[i] == UInt8(ascii: "\n") {
                if i + 1 < bytes.endIndex, bytes[i + 1] == UInt8(ascii: "\n") { return i + 2 }
                if i + 2 < bytes.endIndex, bytes[i + 1] == UInt8(ascii: "\r"), bytes[i + 2] == UInt8(ascii: "\n") {
                    return i + 3
                }
            }
            i += 1
        }
        return nil
    }
}

/// A response: status, content type and the whole body.
public struct HTTPResponse: Sendable, Equatable {
    public var status: Int
    public var reason: String
    public var contentType: String
    public var body: [UInt8]

    public init(status: Int, reason: String, contentType: String = "text/plain; charset=utf-8", body: [UInt8]) {
        self.status = status
        self.reason = reason
        self.contentType = contentType
        self.body = body
    }

    /// A plain-text response whose body is `text` and a newline.
    public static func text(_ status: Int, _ reason: String, _ text: String) -> HTTPResponse {
        HTTPResponse(status: status, reason: reason, body: Array((text + "\n").utf8))
    }

    /// The bytes on the wire: status line, headers and, unless `includeBody` is false (HEAD), the body.
    func serialized(includeBody: Bool) -> [UInt8] {
        var head = "HTTP/1.1 \(status) \(reason)\r\n"
        head += "Content-Type: \(contentType)\r\n"
        head += "Content-Length: \(body.count)\r\n"
        head += "Connection: close\r\n\r\n"
        return Array(head.utf8) + (includeBody ? body : [])
    }
}

/// An HTTP server on a TCP endpoint; see the file comment for its limits.
///
/// Lifetime and threads as `StreamServer`: `handle` runs on the server's threads, up to
/// `maximumConnections` calls at once; `stop()` from any thread.
public final class HTTPServer: Sendable {
    /// The largest request head read; longer requests get 431.
    public static let maximumHeadBytes = 8192

    /// The address and port bound (the kernel's pick if port 0 was asked for).
    public let endpoint: Endpoint
    private let server: StreamServer

    /// Binds `endpoint` (socket(2), SO_REUSEADDR, bind(2), listen(2)) and starts answering with `handle`.
    /// An IPv6 endpoint is served as the UDP socket is (SocketAddress.swift): `[::]` takes both families,
    /// another IPv6 address IPv6 alone.
    ///
    /// - Parameters:
    ///   - maximumConnections: connections served at once; more wait in the listen backlog.
    ///   - requestTimeout: seconds from accept in which the whole request head must arrive.
    ///   - timeout: seconds from accept in which the connection must be done (reply written, close seen).
    ///   - threadStart: run first on each of the server's threads (see `StreamServer`).
    public init(
        endpoint: Endpoint, maximumConnections: Int = StreamServer.defaultMaximumConnections,
        requestTimeout: Double = StreamServer.defaultRequestTimeout,
        timeout: Double = StreamServer.defaultConnectionTimeout, threadStart: @escaping @Sendable () -> Void = {},
        handle: @escaping @Sendable (HTTPRequest) -> HTTPResponse
    ) throws(IOError) {
        let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue)
        let fd = try Syscall.openSocket(for: endpoint, type: type, protocol: Int32(IPPROTO_TCP))
        do throws(IOError) {
            if case .failure(let code) = Syscall.setOption(fd, level: SOL_SOCKET, name: SO_REUSEADDR, value: 1) {
                throw IOError("setsockopt", code)
            }
            self.endpoint = try Syscall.bind(fd, to: endpoint)
            _ = try Syscall.check("listen") { listen(fd, 16) }
        } catch {
            Syscall.close(fd)
            throw error
        }
        server = try StreamServer(
            owning: fd, name: "metrics", maximumConnections: maximumConnections, requestTimeout: requestTimeout,
            connectionTimeout: timeout, threadStart: threadStart
        ) { connection in
            // A client that hung up or missed the request deadline is closed at once, without lingering.
            guard let reply = Self.answer(connection, handle) else { return }
            connection.write(reply)
            connection.finish()
        }
    }

    deinit { stop() }

    /// Stops answering and closes the socket. Idempotent.
    public func stop() { server.stop() }

    /// The number of connections being served now (for tests of the bound).
    var connectionsBeingServed: Int { server.connectionsBeingServed }

    /// Reads one request head and returns the bytes of the response, or nil if the client hung up or
    /// missed the request deadline.
    private static func answer(
        _ connection: borrowing StreamConnection, _ handle: (HTTPRequest) -> HTTPResponse
    ) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: maximumHeadBytes)
        var filled = 0
        var headEnd: Int? = nil
        while headEnd == nil {
            guard filled < buffer.count else {
                return HTTPResponse.text(431, "Request Header Fields Too Large", "request head too large").serialized(
                    includeBody: true)
            }
            guard let n = connection.read(into: &buffer, at: filled), n > 0 else { return nil }  // timeout or hang-up
            // Look again from a little before the new bytes, in case the blank line straddles reads.
            let from = max(0, filled - 3)
            filled += n
            headEnd = HTTPRequest.endOfHead(buffer[from..<filled])
        }
        guard let request = HTTPRequest.parse(head: buffer[0..<filled]) else {
            return HTTPResponse.text(400, "Bad Request", "malformed request line").serialized(includeBody: true)
        }
        let response: HTTPResponse
        if request.method == "GET" || request.method == "HEAD" {
            response = handle(request)
        } else {
            response = .text(405, "Method Not Allowed", "only GET and HEAD are served")
        }
        return response.serialized(includeBody: request.method != "HEAD")
    }
}
