// The one funnel every system call in Platform goes through, and the few typed wrappers built on it.
//
// `Syscall.run` calls a C function until it stops failing with EINTR, reads errno at once (before
// anything else can overwrite it), and treats EBADF as a bug in tunvpn: a descriptor used after
// close or never opened means a lifetime rule was broken, and carrying on could read or write some
// other file that reused the number. Every other errno is handed back as a value so the hot paths can
// switch on EAGAIN without building an error; `Syscall.check` turns it into a thrown `IOError` that
// names the call. The shape follows apple/swift-nio's SystemCallHelpers.swift.

import CLinux
import Engine
import Glibc

/// An errno value as returned by a failed system call.
struct Errno: Error, Equatable, Sendable {
    var rawValue: Int32

    init(_ rawValue: Int32) { self.rawValue = rawValue }

    /// True for EAGAIN/EWOULDBLOCK: a non-blocking descriptor has nothing to give or no room yet.
    var isWouldBlock: Bool { rawValue == EAGAIN || rawValue == EWOULDBLOCK }

    /// strerror(3) text ("Device or resource busy"). glibc's strerror is thread-safe for known errnos.
    var message: String {
        guard let text = strerror(rawValue) else { return "errno \(rawValue)" }
        return String(cString: text)
    }
}

/// The system-call funnel (see the file comment).
enum Syscall {
    /// Calls `body` (a C function returning -1 and setting errno on failure) until it stops failing
    /// with EINTR. Returns the result, or the errno it failed with.
    ///
    /// - Parameter call: the C call's name, used in the EBADF trap and by `check` in thrown errors.
    /// - Precondition: the call does not fail with EBADF (that is a descriptor lifetime bug).
    @inline(__always)
    static func run<Value: FixedWidthInteger>(_ call: StaticString, _ body: () -> Value) -> Result<Value, Errno> {
        while true {
            let result = body()
            if result != -1 { return .success(result) }
            let code = errno  // read before anything else can change it
            if code == EINTR { continue }
            if code == EBADF {
                preconditionFailure("\(call) failed with EBADF: a descriptor was used after close or never opened")
            }
            return .failure(Errno(code))
        }
    }

    /// Like `run`, but throws an `IOError` naming the call (with the strerror text) on failure.
    @inline(__always)
    static func check<Value: FixedWidthInteger>(_ call: StaticString, _ body: () -> Value) throws(IOError) -> Value {
        switch run(call, body) {
        case .success(let value): return value
        case .failure(let code): throw IOError(call, code)
        }
    }
}

extension IOError {
    /// An error for C call `call` that failed with `code`, with strerror's text as the detail.
    init(_ call: StaticString, _ code: Errno) {
        self.init(call: "\(call)", errno: code.rawValue, detail: code.message)
    }
}

// MARK: - Typed wrappers

/// What `poll` saw.
enum Readiness: Equatable {
    /// The descriptor is ready (or has an error or hang-up the next call will report).
    case ready
    /// The wake eventfd fired: the owner was closed.
    case closed
}

extension Syscall {
    /// poll(2) on `fd` for `events` and on `wakeFD` for POLLIN, without a timeout.
    ///
    /// Returns `.closed` as soon as `wakeFD` is readable, even if `fd` is ready too, so that a closed
    /// device stops promptly. POLLERR/POLLHUP on `fd` count as ready: the following read or write
    /// reports the real error.
    static func waitUntilReady(_ fd: Int32, for events: Int16, orWoken wakeFD: Int32) throws(IOError) -> Readiness {
        var fds = (
            pollfd(fd: fd, events: events, revents: 0),
            pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0)
        )
        _ = try check("poll") {
            withUnsafeMutableBytes(of: &fds) { raw in
                poll(raw.baseAddress?.assumingMemoryBound(to: pollfd.self), 2, -1)
            }
        }
        if fds.0.revents & Int16(POLLNVAL) != 0 || fds.1.revents & Int16(POLLNVAL) != 0 {
            preconditionFailure("poll reported POLLNVAL: a descriptor was closed while still in use")
        }
        if fds.1.revents != 0 { return .closed }
        return .ready
    }

    /// close(2). Errors other than EBADF are ignored: after close(2) returns, even with EIO, the
    /// descriptor is gone on Linux and must not be closed again (close(2), "Dealing with error returns").
    static func close(_ fd: Int32) {
        let result = Glibc.close(fd)
        if result == -1 && errno == EBADF {
            preconditionFailure("close(\(fd)) failed with EBADF: a descriptor was closed twice")
        }
    }

    /// setsockopt(2) with an `Int32` value.
    static func setOption(_ fd: Int32, level: Int32, name: Int32, value: Int32) -> Result<Int32, Errno> {
        var value = value
        return run("setsockopt") {
            setsockopt(fd, level, name, &value, socklen_t(MemoryLayout<Int32>.size))
        }
    }

    /// getsockopt(2) for an `Int32` value.
    static func intOption(_ fd: Int32, level: Int32, name: Int32) throws(IOError) -> Int32 {
        var value: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        _ = try check("getsockopt") { getsockopt(fd, level, name, &value, &length) }
        return value
    }
}
