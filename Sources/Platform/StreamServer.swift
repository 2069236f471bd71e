// A listening stream socket served by a small fixed pool of threads: the common part of the status
// socket (`UnixSocketServer`) and the metrics endpoint (`HTTPServer`).
//
// Concurrency and its bound: `maximumConnections` threads each sleep in poll(2) on the listening socket
// and a wake eventfd, accept one connection (accept4(2); the others, woken too, get EAGAIN and poll
// again), serve it to the end and close it. So at most that many connections are served at once, and a
// connection beyond them is not refused: it waits in the listen backlog (listen(2), accepted in arrival
// order) until a thread is free, which is at the latest one connection deadline later. A client that
// connects and sends nothing, or part of a request, holds one thread until its request deadline, never
// the others. (Refusing the connections beyond the bound would let a few idle clients, reconnecting as
// soon as they are cut off, refuse every scrape; waiting in arrival order lets a scrape through.)
//
// Deadlines, each counted from accept: reading the request (`StreamConnection.read`) gives up at the
// request deadline, short, as a request is one small segment from any honest client; writing the reply
// and the lingering close give up at the connection deadline. Writes use send(2) with MSG_NOSIGNAL, so a
// client that hangs up early cannot raise SIGPIPE.
//
// `stop()` signals the eventfd (it stays readable, so it wakes every thread, also inside a connection),
// joins the threads and closes both descriptors, so the descriptors are closed exactly once and never
// while a thread may still use them.
//
// The threads are created with the process's asynchronous signals (SIGINT, SIGTERM, SIGHUP, SIGUSR1,
// SIGUSR2, SIGPIPE) blocked, so they inherit a mask that leaves them to the main thread's sigtimedwait,
// however early they are started; each runs `threadStart` (which sheds privileges) before it accepts.

import CLinux
import Engine
import Glibc
import Synchronization

/// One accepted connection with a deadline for reading its request and one for all of it.
///
/// Valid only inside the `serve` closure given to `StreamServer`; the server closes it afterwards.
public struct StreamConnection: ~Copyable {
    /// The connected socket (non-blocking).
    let fd: Int32
    /// The server's wake eventfd: readable once the server is stopping.
    let wakeFD: Int32
    /// CLOCK_MONOTONIC nanoseconds after which `read` gives up (never later than `deadline`).
    let requestDeadline: UInt64
    /// CLOCK_MONOTONIC nanoseconds after which writes and the lingering close give up.
    let deadline: UInt64

    /// Waits (poll(2)) for `events` on the connection until `limit` or a stop. False if either came first.
    private func wait(for events: Int16, until limit: UInt64) -> Bool {
        let now = SystemClock().monotonicNow()
        guard now < limit else { return false }
        let milliseconds = Int32(clamping: (limit - now + 999_999) / 1_000_000)
        var fds = (pollfd(fd: fd, events: events, revents: 0), pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0))
        let result = Syscall.run("poll") {
            withUnsafeMutableBytes(of: &fds) { raw in
                poll(raw.baseAddress?.assumingMemoryBound(to: pollfd.self), 2, milliseconds)
            }
        }
        guard case .success(let ready) = result, ready > 0, fds.1.revents == 0 else { return false }
        return true
    }

    /// Reads part of the request: what is available (read(2)) into `buffer` from `offset`, waiting until
    /// the request deadline. Returns the byte count, 0 at end of stream, nil on timeout, stop or error.
    public func read(into buffer: inout [UInt8], at offset: Int) -> Int? {
        read(into: &buffer, at: offset, until: requestDeadline)
    }

    private func read(into buffer: inout [UInt8], at offset: Int, until limit: UInt64) -> Int? {
        precondition(offset < buffer.count, "read needs room in the buffer")
        while true {
            let result = buffer.withUnsafeMutableBytes { raw in
                Syscall.run("read") { Glibc.read(fd, raw.baseAddress.map { $0 + offset }, raw.count - offset) }
            }
            switch result {
            case .success(let n): return n
            case .failure(let code) where code.isWouldBlock:
                guard wait(for: Int16(POLLIN), until: limit) else { return nil }
            case .failure: return nil
            }
        }
    }

    /// Writes all of `bytes` (send(2) with MSG_NOSIGNAL), waiting until the connection deadline. False if
    /// the peer went away, the deadline passed or the server is stopping.
    @discardableResult
    public func write(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { write($0) }
    }

    /// `write(_:)` from memory the caller owns (an answer held in a `SecretBytes`).
    @discardableResult
    public func write(_ raw: UnsafeRawBufferPointer) -> Bool {
        var sent = 0
        while sent < raw.count {
            let result = Syscall.run("send") {
                send(fd, raw.baseAddress.map { $0 + sent }, raw.count - sent, Int32(MSG_NOSIGNAL))
            }
            switch result {
            case .success(let n): sent += n
            case .failure(let code) where code.isWouldBlock:
                guard wait(for: Int16(POLLOUT), until: deadline) else { return false }
            case .failure: return false
            }
        }
        return true
    }

    /// Ends the connection gracefully ("lingering close", RFC 9112 §9.6): shutdown(2) of the sending side,
    /// then reads and discards until the peer closes or the connection deadline passes, so that unread
    /// request bytes cannot make the kernel reset the connection before the peer has read the reply.
    public func finish() {
        _ = Syscall.run("shutdown") { shutdown(fd, Int32(SHUT_WR)) }
        var scratch = [UInt8](repeating: 0, count: 4096)
        var discarded = 0
        while discarded < 1 << 20, let n = read(into: &scratch, at: 0, until: deadline), n > 0 { discarded += n }
    }
}

/// A fixed pool of threads accepting connections on a listening socket and handing each to `serve`; see
/// the file comment for the bound and the deadlines.
///
/// Lifetime: owns the listening descriptor from `init` on (it is closed if `init` throws); `stop()`
/// ends the threads and closes it, and runs at `deinit` if not called before. Thread safety: `serve`
/// runs on up to `maximumConnections` threads at once; `stop()` may be called from any thread, more
/// than once.
public final class StreamServer: Sendable {
    /// Connections served at once unless the caller asks for another bound.
    public static let defaultMaximumConnections = 8
    /// Seconds from accept in which a client must send its request, unless the caller says otherwise.
    public static let defaultRequestTimeout = 0.5
    /// Seconds from accept in which a connection must be done with (reply written, close seen).
    public static let defaultConnectionTimeout = 2.0

    private let listenFD: Int32
    private let wakeFD: Int32
    private let threads: [EngineThread]
    private let stopped = Mutex(false)
    private let activity: Activity

    /// The number of connections being served now (accepted and not yet closed).
    public var connectionsBeingServed: Int { activity.serving.load(ordering: .relaxed) }

    /// Starts serving `listenFD` (a listening, non-blocking socket) on `maximumConnections` threads
    /// named `name`.
    ///
    /// - Parameters:
    ///   - maximumConnections: connections served at once (at least 1); more wait in the listen backlog.
    ///   - requestTimeout: seconds from accept in which `StreamConnection.read` may wait for the request
    ///     (capped at `connectionTimeout`).
    ///   - connectionTimeout: seconds from accept each connection may take in all.
    ///   - threadStart: run first on each new thread, before any connection is accepted (to shed privileges); the initializer returns only once every thread has run it.
    ///   - serve: called for each connection, on one of the threads; it should not block otherwise.
    public init(
        owning listenFD: Int32, name: String, maximumConnections: Int = defaultMaximumConnections,
        requestTimeout: Double = defaultRequestTimeout, connectionTimeout: Double = defaultConnectionTimeout,
        threadStart: @escaping @Sendable () -> Void = {},
        serve: @escaping @Sendable (borrowing StreamConnection) -> Void
    ) throws(IOError) {
        precondition(maximumConnections >= 1, "a server needs at least one thread")
        let wake = Syscall.run("eventfd") { clinux_eventfd_cloexec_nonblock(0) }
        guard case .success(let wakeFD) = wake else {
            Syscall.close(listenFD)
            if case .failure(let code) = wake { throw IOError("eventfd", code) }
            preconditionFailure("eventfd result is either success or failure")
        }
        self.listenFD = listenFD
        self.wakeFD = wakeFD
        let connection = UInt64(max(connectionTimeout, 0.001) * 1e9)
        let limits = (request: min(UInt64(max(requestTimeout, 0.001) * 1e9), connection), connection: connection)
        let activity = Activity()
        self.activity = activity
        threads = (0..<maximumConnections).map { _ in
            Self.startThreadWithSignalsBlocked(name: name) {
                Self.nameThisThread(name)
                threadStart()
                activity.started.add(1, ordering: .releasing)
                Self.acceptLoop(listenFD: listenFD, wakeFD: wakeFD, limits: limits, activity: activity, serve: serve)
            }
        }
        // Every thread has run `threadStart` (shed its privileges) before the server is handed back, so a
        // caller that announces its privileges afterwards ("running as …") never races a thread's own drop.
        while activity.started.load(ordering: .acquiring) < maximumConnections { usleep(100) }
    }

    deinit { stop() }

    /// Ends the threads (waking them through the eventfd), waits for them, and closes the descriptors.
    public func stop() {
        let first = stopped.withLock { stopped in
            defer { stopped = true }
            return !stopped
        }
        guard first else { return }
        var one: UInt64 = 1
        // The counter starts at 0 and is written once, so this cannot fail with EAGAIN. Nobody reads it,
        // so it stays readable and wakes every thread.
        _ = Syscall.run("write") { Glibc.write(wakeFD, &one, MemoryLayout<UInt64>.size) }
        for thread in threads { thread.join() }
        Syscall.close(listenFD)
        Syscall.close(wakeFD)
    }

    /// The count behind `connectionsBeingServed`, shared with the threads.
    private final class Activity: Sendable {
        let serving = Atomic<Int>(0)
        /// The threads that have run `threadStart`.
        let started = Atomic<Int>(0)
    }

    /// The signals the main thread waits for (or that must not kill the process), blocked in server threads.
    private static let blockedSignals: [Int32] = [SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2, SIGPIPE]

    /// Creates a thread with `blockedSignals` blocked (pthread_sigmask(3) around pthread_create, as a
    /// new thread inherits its creator's mask), then restores the caller's mask.
    private static func startThreadWithSignalsBlocked(
        name: String, _ body: @escaping @Sendable () -> Void
    ) -> EngineThread {
        var blocked = sigset_t()
        var previous = sigset_t()
        sigemptyset(&blocked)
        for signal in blockedSignals { sigaddset(&blocked, signal) }
        pthread_sigmask(SIG_BLOCK, &blocked, &previous)
        defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
        return EngineThread(name: name, body)
    }

    /// Names the calling thread as `ps -L` and /proc/<pid>/task/<tid>/comm show it, by writing its comm
    /// file (proc(5): a thread may set its own; at most 15 bytes are kept). Best effort.
    private static func nameThisThread(_ name: String) {
        let fd = open("/proc/thread-self/comm", O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return }
        let bytes = Array(name.utf8.prefix(15))
        _ = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        Syscall.close(fd)
    }

    /// One thread's life: accept a connection, serve it, close it, until the wake eventfd is readable.
    private static func acceptLoop(
        listenFD: Int32, wakeFD: Int32, limits: (request: UInt64, connection: UInt64), activity: Activity,
        serve: (borrowing StreamConnection) -> Void
    ) {
        while true {
            var fds = (
                pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0),
                pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0)
            )
            let polled = Syscall.run("poll") {
                withUnsafeMutableBytes(of: &fds) { raw in
                    poll(raw.baseAddress?.assumingMemoryBound(to: pollfd.self), 2, -1)
                }
            }
            if fds.1.revents != 0 { return }
            guard case .success = polled, fds.0.revents != 0 else {
                usleep(10_000)  // poll fails only with ENOMEM/EINVAL: do not spin
                continue
            }
            switch Syscall.run("accept4", { clinux_accept_cloexec_nonblock(listenFD) }) {
            case .success(let fd):
                let accepted = SystemClock().monotonicNow()
                activity.serving.add(1, ordering: .relaxed)
                serve(
                    StreamConnection(
                        fd: fd, wakeFD: wakeFD, requestDeadline: accepted + limits.request,
                        deadline: accepted + limits.connection))
                Syscall.close(fd)
                activity.serving.subtract(1, ordering: .relaxed)
            case .failure(let code) where code.isWouldBlock || code.rawValue == ECONNABORTED:
                continue  // another thread took it, or the client gave up while queued
            case .failure:
                usleep(10_000)  // EMFILE, ENOBUFS…: the connection stays queued; retry a little later
            }
        }
    }
}

extension Privileges {
    /// For a thread that serves already-bound sockets and needs no privilege of its own, created before the
    /// main thread's `drop(to:)`: gives up, in the calling thread only, every capability but CAP_SETUID and
    /// CAP_SETGID (bounding set as far as CAP_SETPCAP allows, capset(2)) and sets no_new_privs. Those two
    /// stay because glibc carries the main thread's setgroups/setresgid/setresuid out in every thread and
    /// aborts the process if one is refused; the uid change then clears them in this thread (it has no
    /// PR_SET_KEEPCAPS). With `--user root` no uid change happens and the thread keeps them. Returns false
    /// if capset failed.
    public static func enterServiceThread() -> Bool { clinux_enter_service_thread() == 0 }
}
