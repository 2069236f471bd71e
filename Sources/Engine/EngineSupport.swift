// What the engine needs from its surroundings besides devices: time, and threads it can join.

import Glibc
import Transport

/// Time sources. The core never reads a clock; the engine asks this one and passes the values in.
public protocol EngineClock: Sendable {
    /// Monotonic nanoseconds (CLOCK_MONOTONIC).
    func monotonicNow() -> UInt64
    /// Wall-clock time (CLOCK_REALTIME), for handshake timestamps.
    func wallNow() -> WallTime
}

/// The operating system's clocks (`clock_gettime`).
public struct SystemClock: EngineClock {
    /// Seconds added to the wall clock (testing clock steps; 0 in normal use).
    public let wallOffset: Int64

    public init(wallOffset: Int64 = 0) { self.wallOffset = wallOffset }
    public func monotonicNow() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
    public func wallNow() -> WallTime {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return WallTime(seconds: UInt64(max(Int64(ts.tv_sec) + wallOffset, 0)), nanoseconds: UInt32(ts.tv_nsec))
    }
}

/// A joinable POSIX thread running a closure (the data path stays off Swift's cooperative pool, which is
/// only as wide as the machine has cores, two on a small VM).
public final class EngineThread: @unchecked Sendable {
    private var thread = pthread_t()
    private var joined = false

    private final class Body {
        let name: String
        let run: @Sendable () -> Void
        init(_ name: String, _ run: @escaping @Sendable () -> Void) {
            self.name = name
            self.run = run
        }
    }

    /// Longest thread name Linux keeps (16 bytes with the terminating NUL; pthread_setname_np(3)).
    public static let maximumNameBytes = 15

    /// `name` cut to `maximumNameBytes` UTF-8 bytes, on a character boundary.
    public static func threadName(_ name: String) -> String {
        var cut = ""
        for c in name {
            guard cut.utf8.count + String(c).utf8.count <= maximumNameBytes else { break }
            cut.append(c)
        }
        return cut
    }

    /// Names the calling thread by writing /proc/thread-self/comm (proc(5); what pthread_setname_np(3)
    /// does, which Swift's Glibc module does not declare). A failure leaves the inherited name.
    static func nameCurrentThread(_ name: String) {
        let fd = open("/proc/thread-self/comm", O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return }
        defer { close(fd) }
        let bytes = Array(name.utf8)
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    }

    /// Starts `body` on a new thread named `name` (cut to 15 bytes), the name `top -H` and
    /// /proc/PID/task/TID/comm show.
    public init(name: String, _ body: @escaping @Sendable () -> Void) {
        let box = Unmanaged.passRetained(Body(Self.threadName(name), body)).toOpaque()
        let rc = pthread_create(&thread, nil, { raw in
            guard let raw else { return nil }
            let body = Unmanaged<Body>.fromOpaque(raw).takeRetainedValue()
            EngineThread.nameCurrentThread(body.name)
            body.run()
            return nil
        }, box)
        precondition(rc == 0, "pthread_create failed (\(rc)): cannot start the \(name) thread")
    }

    /// Waits for the thread to finish (once).
    public func join() {
        guard !joined else { return }
        joined = true
        pthread_join(thread, nil)
    }
}
