// The status socket: a Unix stream socket under /run/tunvpn on which a running server or client reads
// one request line from each connection (`status` from `tunvpn show`, `reload` from `tunvpn reload`),
// hands back one reply and closes the connection; and the client side those commands use.
//
// Connections are served by a `StreamServer`: up to `maximumConnections` at once, more waiting in the
// listen backlog, each cut off at its deadline, so a client that connects and never reads its reply
// holds one thread for at most that long, never the others.
//
// Permissions: the directory is 0700 and the socket 0600, so only root (the owner) can connect
// (unix(7): connecting needs write permission on the socket file). The socket is named after the
// network namespace and the device, `/run/tunvpn/<netns id>-<dev>.sock`, so `tunvpn show` run in a
// namespace finds that namespace's instances only.

import CLinux
import Crypto
import Engine
import Glibc

/// A Unix stream socket answering each connection's request line with one reply and closing it.
///
/// Lifetime: `init` binds the socket file (replacing a stale one left by a process that died) and
/// starts the threads; `stop()` ends them and removes the socket file if it is still this server's.
/// Thread safety: the answering closure runs on the server's threads, up to `maximumConnections` calls at once;
/// `stop()` may be called from any thread.
public final class UnixSocketServer: Sendable {
    /// The socket file's path.
    public let path: String
    private let server: StreamServer
    /// Device and inode of the socket file bound, so that `stop()` never removes another one.
    public let identity: (device: UInt64, inode: UInt64)

    /// Longest path a sockaddr_un holds (108 bytes with the terminating zero; unix(7)).
    public static let maximumPathLength = MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1

    /// Binds `path` (mode 0600) and answers every connection with `respond()`, whatever it asks.
    public convenience init(
        path: String, maximumConnections: Int = StreamServer.defaultMaximumConnections,
        timeout: Double = StreamServer.defaultConnectionTimeout, threadStart: @escaping @Sendable () -> Void = {},
        respond: @escaping @Sendable () -> [UInt8]
    ) throws(IOError) {
        try self.init(
            path: path, maximumConnections: maximumConnections, timeout: timeout, threadStart: threadStart,
            answering: { _ in respond() })
    }

    /// Binds `path` (mode 0600) and starts answering: `answer` gets each connection's request line (without
    /// the newline; at most `maximumRequestLength` bytes, empty if the client sent none before the deadline)
    /// and returns the reply.
    ///
    /// A socket file at `path` that nobody listens on (ECONNREFUSED) is stale and removed first; one
    /// that accepts a connection belongs to a running instance, and `init` fails with EADDRINUSE.
    /// Anything else at `path` is left alone and `init` fails with EEXIST.
    /// `threadStart` runs first on each of the server's threads (see `StreamServer`); `maximumConnections`
    /// bounds the connections served at once, and `timeout` is the seconds from accept in which each must
    /// have taken its whole reply.
    public convenience init(
        path: String, maximumConnections: Int = StreamServer.defaultMaximumConnections,
        timeout: Double = StreamServer.defaultConnectionTimeout, threadStart: @escaping @Sendable () -> Void = {},
        answering answer: @escaping @Sendable ([UInt8]) -> [UInt8]
    ) throws(IOError) {
        try self.init(
            path: path, name: "status", maximumConnections: maximumConnections, timeout: timeout, threadStart: threadStart,
            replying: { .bytes(answer($0)) })
    }

    /// What a connection is answered with.
    public enum Reply: Sendable {
        case bytes([UInt8])
        /// An answer that holds keys: written from its wiped-when-freed memory.
        case secret(SecretBytes)
        /// No answer: the connection is closed.
        case none
    }

    /// `init(path:maximumConnections:timeout:threadStart:answering:)` with threads named `name` (at most
    /// 15 bytes show) and answers that may hold secrets or be nothing at all.
    public init(
        path: String, name: String, maximumConnections: Int = StreamServer.defaultMaximumConnections,
        timeout: Double = StreamServer.defaultConnectionTimeout, threadStart: @escaping @Sendable () -> Void = {},
        replying reply: @escaping @Sendable ([UInt8]) -> Reply
    ) throws(IOError) {
        guard path.utf8.count <= Self.maximumPathLength else {
            throw IOError(
                call: "bind", errno: ENAMETOOLONG, detail: "\(path) is longer than \(Self.maximumPathLength) bytes")
        }
        try Self.removeStale(path)
        let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue)
        let fd = try Syscall.check("socket") { socket(AF_UNIX, type, 0) }
        var st = stat()
        do throws(IOError) {
            // On Linux the socket file takes the socket inode's mode (less the umask) at bind(2), so
            // fchmod before bind leaves no moment in which the file is more open than 0600; chmod after
            // bind covers kernels that behave otherwise.
            _ = try Syscall.check("fchmod") { fchmod(fd, 0o600) }
            _ = try Syscall.check("bind") { Self.withAddress(path) { Glibc.bind(fd, $0, $1) } }
            _ = try Syscall.check("chmod") { chmod(path, 0o600) }
            _ = try Syscall.check("stat") { stat(path, &st) }
            _ = try Syscall.check("listen") { listen(fd, 16) }
        } catch {
            Syscall.close(fd)
            throw error
        }
        self.path = path
        identity = (UInt64(st.st_dev), UInt64(st.st_ino))
        do throws(IOError) {
            server = try StreamServer(
                owning: fd, name: name, maximumConnections: maximumConnections, connectionTimeout: timeout,
                threadStart: threadStart
            ) { connection in
                switch reply(Self.readRequest(connection)) {
                case .bytes(let bytes): connection.write(bytes)
                case .secret(let secret): secret.withUnsafeBytes { connection.write($0) }
                case .none: break
                }
                connection.finish()  // reads what is left of a longer request, so the close resets nothing
            }
        } catch {
            unlink(path)
            throw error
        }
    }

    deinit { stop() }

    /// The number of connections being served now (for tests of the bound).
    var connectionsBeingServed: Int { server.connectionsBeingServed }

    /// The longest request line read.
    public static let maximumRequestLength = 256
    /// The longest body a request line may announce (`NAME <byte count>`), as large as the largest
    /// configuration file tunvpn reads.
    public static let maximumBodyLength = 1 << 20

    /// Reads the request line: up to a newline, the end of the stream, `maximumRequestLength` bytes or the
    /// request deadline, whichever comes first. A line whose last word is a byte count of at most
    /// `maximumBodyLength` (`reload-file 1234`) announces a body of that many bytes, which follows the
    /// newline and is returned after it: `line + "\n" + body` (shorter if the client stopped early).
    /// What is left is drained after the reply (`finish()`): a unix(7) socket closed with unread data makes
    /// the peer's read fail with ECONNRESET.
    static func readRequest(_ connection: borrowing StreamConnection) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: maximumRequestLength)
        var count = 0
        while count < buffer.count, let n = connection.read(into: &buffer, at: count), n > 0 {
            count += n
            if buffer[0..<count].contains(UInt8(ascii: "\n")) { break }
        }
        let line = Array(buffer[0..<count].prefix { $0 != UInt8(ascii: "\n") })
        guard line.count < count, let announced = announcedBodyLength(line), announced <= maximumBodyLength else {
            return line
        }
        var body = Array(buffer[(line.count + 1)..<count].prefix(announced))
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        while body.count < announced, let n = connection.read(into: &chunk, at: 0), n > 0 {
            body += chunk[0..<min(n, announced - body.count)]
        }
        return line + [UInt8(ascii: "\n")] + body
    }

    /// The byte count a request line ends with (`NAME COUNT`), if it has one.
    static func announcedBodyLength(_ line: [UInt8]) -> Int? {
        guard let space = line.lastIndex(of: UInt8(ascii: " ")), space + 1 < line.count, line.count - space <= 9,
            line[(space + 1)...].allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) })
        else { return nil }
        return Int(String(decoding: line[(space + 1)...], as: UTF8.self))
    }

    /// Stops answering and removes the socket file (if it is still the one bound here). Idempotent.
    public func stop() {
        server.stop()
        var st = stat()
        if lstat(path, &st) == 0, UInt64(st.st_dev) == identity.device, UInt64(st.st_ino) == identity.inode {
            unlink(path)
        }
    }

    /// Removes a stale socket file at `path`: one nobody listens on (connect(2) fails with ECONNREFUSED),
    /// as a killed instance leaves. Nothing at `path` is fine.
    ///
    /// - Throws: `IOError` with EADDRINUSE if a running instance serves `path`, EEXIST if something other
    ///   than a socket is there; in both cases it is left alone.
    public static func removeStale(_ path: String) throws(IOError) {
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        guard st.st_mode & S_IFMT == S_IFSOCK else {
            throw IOError(call: "bind", errno: EEXIST, detail: "\(path) exists and is not a socket; remove it")
        }
        switch UnixSocketClient.connect(path) {
        case .success(let fd):
            Syscall.close(fd)
            throw IOError(call: "bind", errno: EADDRINUSE, detail: "\(path) is served by another running process")
        case .failure(let code) where code.rawValue == ECONNREFUSED:
            _ = try Syscall.check("unlink") { unlink(path) }
        case .failure(let code):
            throw IOError(call: "connect", errno: code.rawValue, detail: "\(path): \(code.message)")
        }
    }

    /// Calls `body` with a sockaddr_un for `path` and its length.
    static func withAddress<R>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8.prefix(maximumPathLength))
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + 1)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, length) }
        }
    }
}

/// The reading side of the status socket, for `tunvpn show`.
public enum UnixSocketClient {
    /// Connects a blocking Unix stream socket to `path` (socket(2), connect(2)).
    static func connect(_ path: String) -> Result<Int32, Errno> {
        let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        let opened = Syscall.run("socket") { socket(AF_UNIX, type, 0) }
        guard case .success(let fd) = opened else { return opened }
        let connected = Syscall.run("connect") { UnixSocketServer.withAddress(path) { Glibc.connect(fd, $0, $1) } }
        if case .failure(let code) = connected {
            Syscall.close(fd)
            return .failure(code)
        }
        return .success(fd)
    }

    /// Connects to `path`, sends `request` and a newline (and `body`, announced by its length on that line),
    /// and reads until the server closes the connection.
    ///
    /// - Parameters:
    ///   - request: what to ask for (`status`, `reload`).
    ///   - body: bytes that go with the request (`reload-file`), at most `maximumBodyLength`.
    ///   - timeout: seconds each read may wait (SO_RCVTIMEO).
    ///   - limit: the most bytes accepted.
    /// - Throws: `IOError` naming the call: ECONNREFUSED from connect for a stale socket, EAGAIN from
    ///   read on timeout, EMSGSIZE past `limit`.
    public static func fetch(
        _ path: String, request: String = "status", body: [UInt8]? = nil, timeout: Double = 3, limit: Int = 16 << 20
    ) throws(IOError) -> [UInt8] {
        let fd: Int32
        switch connect(path) {
        case .success(let connected): fd = connected
        case .failure(let code):
            throw IOError(call: "connect", errno: code.rawValue, detail: "\(path): \(code.message)")
        }
        defer { Syscall.close(fd) }
        let seconds = max(timeout, 0.001)
        var interval = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - Double(Int(seconds))) * 1e6))
        _ = try Syscall.check("setsockopt") {
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &interval, socklen_t(MemoryLayout<timeval>.size))
        }
        // With a body, the line announces its length (`request COUNT`), as `readRequest` expects.
        let line = Array((body.map { "\(request) \($0.count)" } ?? request).utf8) + [UInt8(ascii: "\n")] + (body ?? [])
        var sent = 0
        while sent < line.count {
            let n = try Syscall.check("send") {
                line[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            }
            sent += n
        }
        _ = try Syscall.check("shutdown") { shutdown(fd, Int32(SHUT_WR)) }
        var reply: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let result = chunk.withUnsafeMutableBytes { raw in
                Syscall.run("read") { Glibc.read(fd, raw.baseAddress, raw.count) }
            }
            let n: Int
            switch result {
            case .success(let count): n = count
            case .failure(let code):
                throw IOError(call: "read", errno: code.rawValue, detail: "\(path): \(code.message)")
            }
            if n == 0 { return reply }
            guard reply.count + n <= limit else {
                throw IOError(call: "read", errno: EMSGSIZE, detail: "\(path): reply longer than \(limit) bytes")
            }
            reply += chunk[0..<n]
        }
    }
}

extension HostNetwork {
    /// The status socket of the instance using `device` in this network namespace:
    /// `/run/tunvpn/<netns id>-<device>.sock`.
    public static func statusSocketPath(device: String) -> String {
        "\(stateDirectory)/\(namespaceID())-\(device).sock"
    }

    /// The status sockets of this network namespace's instances, as (device, path), sorted by device;
    /// empty if the state directory does not exist.
    ///
    /// - Throws: `IOError` from opendir(3) (EACCES when not run as root).
    public static func statusSockets() throws(IOError) -> [(device: String, path: String)] {
        guard let dir = opendir(stateDirectory) else {
            let code = errno
            if code == ENOENT { return [] }
            throw IOError(call: "opendir", errno: code, detail: "\(stateDirectory): \(Errno(code).message)")
        }
        defer { closedir(dir) }
        let prefix = "\(namespaceID())-"
        let suffix = ".sock"
        var found: [(device: String, path: String)] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard name.hasPrefix(prefix), name.hasSuffix(suffix), name.count > prefix.count + suffix.count else {
                continue
            }
            let device = String(name.dropFirst(prefix.count).dropLast(suffix.count))
            found.append((device, "\(stateDirectory)/\(name)"))
        }
        return found.sorted { $0.device < $1.device }
    }
}
