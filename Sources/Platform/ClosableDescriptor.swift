// A descriptor that any thread may close while other threads are blocked on it.
//
// Closing a descriptor that another thread is polling or reading is a race: the number can be reused
// by the next open() anywhere in the process, and the blocked thread would then read someone else's
// file. So `close()` does not close at once. It marks the owner closed and signals an eventfd that
// every blocking wait also polls; waiters wake and return, and the descriptors are really closed when
// the last operation in flight leaves (or at once when none is). Operations bracket themselves with
// `enter()`/`leave()`, one uncontended lock each per batch, never per packet. `deinit` closes what
// `close()` did not, so each descriptor is closed exactly once.

import CLinux
import Engine
import Glibc
import Synchronization

/// Owns `fd` and a wake eventfd; see the file comment for the closing protocol.
final class ClosableDescriptor: Sendable {
    /// The owned descriptor. Valid between a successful `enter()` and the matching `leave()`.
    let fd: Int32
    /// eventfd(2) that becomes readable, for good, once `close()` was called.
    private let wakeFD: Int32

    private struct State {
        var closeRequested = false
        var inFlight = 0
        var released = false
    }

    private let state = Mutex(State())

    /// Takes ownership of `fd` and creates the wake eventfd (eventfd(2) with EFD_CLOEXEC|EFD_NONBLOCK).
    /// If that fails, `fd` is closed before the error is thrown.
    init(owning fd: Int32) throws(IOError) {
        let wake = Syscall.run("eventfd") { clinux_eventfd_cloexec_nonblock(0) }
        switch wake {
        case .success(let wakeFD):
            self.fd = fd
            self.wakeFD = wakeFD
        case .failure(let code):
            Syscall.close(fd)
            throw IOError("eventfd", code)
        }
    }

    deinit {
        // No operation can be in flight: each holds a strong reference to the owner.
        let mustRelease = state.withLock { state in
            let release = !state.released
            state.released = true
            return release
        }
        if mustRelease { releaseDescriptors() }
    }

    /// Starts an operation. Returns false if `close()` was already called (the caller then returns 0).
    @inline(__always)
    func enter() -> Bool {
        state.withLock { state in
            guard !state.closeRequested else { return false }
            state.inFlight += 1
            return true
        }
    }

    /// Ends an operation begun by a successful `enter()`; closes the descriptors if a close is pending
    /// and this was the last operation in flight.
    @inline(__always)
    func leave() {
        let mustRelease = state.withLock { state in
            state.inFlight -= 1
            guard state.closeRequested, state.inFlight == 0, !state.released else { return false }
            state.released = true
            return true
        }
        if mustRelease { releaseDescriptors() }
    }

    /// True once `close()` was called.
    var isClosed: Bool { state.withLock { $0.closeRequested } }

    /// Requests the close: wakes every waiter through the eventfd (write(2) of 1) and closes the
    /// descriptors now if no operation is in flight, else when the last one leaves. Idempotent.
    func close() {
        let mustRelease = state.withLock { state in
            guard !state.closeRequested else { return false }
            state.closeRequested = true
            var one: UInt64 = 1
            // The counter starts at 0 and is never read, so this write cannot fail with EAGAIN;
            // the eventfd stays readable from now on, so later waits return at once too.
            _ = Syscall.run("write") { write(wakeFD, &one, MemoryLayout<UInt64>.size) }
            guard state.inFlight == 0, !state.released else { return false }
            state.released = true
            return true
        }
        if mustRelease { releaseDescriptors() }
    }

    /// Blocks in poll(2) until `fd` has `events` or `close()` was called.
    func wait(for events: Int16) throws(IOError) -> Readiness {
        try Syscall.waitUntilReady(fd, for: events, orWoken: wakeFD)
    }

    private func releaseDescriptors() {
        Syscall.close(fd)
        Syscall.close(wakeFD)
    }
}
