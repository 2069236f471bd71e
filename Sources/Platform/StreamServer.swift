// A listening stream socket served on its own thread, one connection at a time: the common part of the
// status socket (`UnixSocketServer`) and the metrics endpoint (`HTTPServer`).
//
// The thread sleeps in poll(2) on the listening socket and a wake eventfd; `stop()` signals the eventfd,
// joins the thread and closes both descriptors, so the descriptors are closed exactly once and never
// while the thread may still use them. Each accepted connection is non-blocking and has a deadline: a
// client that neither sends nor reads cannot hold the thread longer than that (the wake eventfd is
// polled during a connection too, so `stop()` is prompt). Writes use send(2) with MSG_NOSIGNAL, so a
// client that hangs up early cannot raise SIGPIPE.
//
// The thread is created with the process's asynchronous signals (SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2,
// SIGPIPE) blocked, so it inherits a mask that leaves them to the main thread's sigtimedwait, however
// early it is started.

import CLinux
import Engine
import Glibc
import Synchronization

/// One accepted connection with a deadline for all of its reads and writes.
///
/// Valid only inside the `serve` closure given to `StreamServer`; the server closes it afterwards.
public struct StreamConnection: ~Copyable {
    /// The connected socket (non-blocking).
    let fd: Int32
    /// The server's wake eventfd: readable once the server is stopping.
    let wakeFD: Int32
    /// CLOCK_MONOTONIC nanoseconds after which reads and writes give up.
    let deadline: UInt64

    /// Waits (poll(2)) for `events` on the connection until the deadline or a stop. False if either came
    /// first.
    private func wait(for events: Int16) -> Bool {
        let now = SystemClock().monotonicNow()
        guard now < deadline else { return false }
        let milliseconds = Int32(clamping: (deadline - now + 999_999) / 1_000_000)
        var fds = (pollfd(fd: fd, events: events, revents: 0), pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0))
        let result = Syscall.run("poll") {
            withUnsafeMutableBytes(of: &fds) { raw in
                poll(raw.baseAddress?.assumingMemoryBound(to: pollfd.self), 2, milliseconds)
            }
        }
        guard case .success(let ready) = result, ready > 0, fds.1.revents == 0 else { return false }
        return true
    }

    /// Reads what is available (read(2)) into `buffer` from `offset`, waiting until the deadline.
    /// Returns the byte count, 0 at end of stream, nil on timeout, stop or error.
    public func read(into buffer: inout [UInt8], at offset: Int) -> Int? {
        precondition(offset < buffer.count, "read needs room in the buffer")
        while true {
            let result = buffer.withUnsafeMutableBytes { raw in
                Syscall.run("read") { Glibc.read(fd, raw.baseAddress.map { $0 + offset }, raw.count - offset) }
            }
            switch result {
            case .success(let n): return n
            case .failure(let code) where code.isWouldBlock:
                guard wait(for: Int16(POLLIN)) else { return nil }
            case .failure: return nil
            }
        }
    }

    /// Writes all of `bytes` (send(2) with MSG_NOSIGNAL), waiting until the deadline. False if the
    /// peer went away, the deadline passed or the server is stopping.
    @discardableResult
    public func write(_ bytes: [UInt8]) -> Bool {
        var sent = 0
        while sent < bytes.count {
            let result = bytes.withUnsafeBytes { raw in
                Syscall.run("send") {
                    send(fd, raw.baseAddress.map { $0 + sent }, raw.count - sent, Int32(MSG_NOSIGNAL))
                }
            }
            switch result {
            case .success(let n): sent += n
            case .failure(let code) where code.isWouldBlock:
                guard wait(for: Int16(POLLOUT)) else { return false }
            case .failure: return false
            }
        }
        return true
    }

    /// Ends the connection gracefully ("lingering close", RFC 9112 §9.6): shutdown(2) of the sending side,
    /// then reads and discards until the peer closes or the deadline passes, so that unread request bytes
    /// cannot make the kernel reset the connection before the peer has read the reply.
    public func finish() {
        _ = Syscall.run("shutdown") { shutdown(fd, Int32(SHUT_WR)) }
        var scratch = [UInt8](repeating: 0, count: 4096)
        var discarded = 0
        while discarded < 1 << 20, let n = read(into: &scratch, at: 0), n > 0 { discarded += n }
    }
}

/// A thread accepting connections on a listening socket and handing each, in turn, to `serve`.
///
/// Lifetime: owns the listening descriptor from `init` on (it is closed if `init` throws); `stop()`
/// ends the thread and closes it, and runs at `deinit` if not called before. Thread safety: `stop()`
/// may be called from any thread, more than once.
public final class StreamServer: Sendable {
    private let listenFD: Int32
    private let wakeFD: Int32
    private let thread: EngineThread
    private let stopped = Mutex(false)

    /// Starts serving `listenFD` (a listening, non-blocking socket) on a thread named `name`.
    ///
    /// - Parameters:
    ///   - connectionTimeout: seconds each connection may take in all, reads and writes together.
    ///   - threadStart: run first on the new thread, before any connection is accepted (to shed privileges).
    ///   - serve: called on the server thread for each connection; it should not block otherwise.
    public init(
        owning listenFD: Int32, name: String, connectionTimeout: Double = 2,
        threadStart: @escaping @Sendable () -> Void = {},
        serve: @escaping @Sendable (borrowing StreamConnection) -> Void
    ) throws(IOError) {
        let wake = Syscall.run("eventfd") { clinux_eventfd_cloexec_nonblock(0) }
        guard case .success(let wakeFD) = wake else {
            Syscall.close(listenFD)
            if case .failure(let code) = wake { throw IOError("eventfd", code) }
            preconditionFailure("eventfd result is either success or failure")
        }
        self.listenFD = listenFD
        self.wakeFD = wakeFD
        let timeout = UInt64(max(connectionTimeout, 0.001) * 1e9)
        thread = Self.startThreadWithSignalsBlocked(name: name) {
            threadStart()
            Self.acceptLoop(listenFD: listenFD, wakeFD: wakeFD, timeout: timeout, serve: serve)
        }
    }

    deinit { stop() }

    /// Ends the thread (waking it through the eventfd), waits for it, and closes the descriptors.
    public func stop() {
        let first = stopped.withLock { stopped in
            defer { stopped = true }
            return !stopped
        }
        guard first else { return }
        var one: UInt64 = 1
        // The counter starts at 0 and is written once, so this cannot fail with EAGAIN.
        _ = Syscall.run("write") { Glibc.write(wakeFD, &one, MemoryLayout<UInt64>.size) }
        thread.join()
        Syscall.close(listenFD)
        Syscall.close(wakeFD)
    }

    /// The signals the main thread waits for (or that must not kill the process), blocked in server threads.
    private static let blockedSignals: [Int32] = [SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2, SIGPIPE]

    /// Creates the thread with `blockedSignals` blocked (pthread_sigmask(3) around pthread_create, as a
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

    private static func acceptLoop(
        listenFD: Int32, wakeFD: Int32, timeout: UInt64, serve: (borrowing StreamConnection) -> Void
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
                let connection = StreamConnection(
                    fd: fd, wakeFD: wakeFD, deadline: SystemClock().monotonicNow() + timeout)
                serve(connection)
                Syscall.close(fd)
            case .failure(let code) where code.isWouldBlock || code.rawValue == ECONNABORTED:
                continue
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
