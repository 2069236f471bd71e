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
/// two threads wide here; PLATFORM-NOTES §3).
public final class EngineThread: @unchecked Sendable {
    private var thread = pthread_t()
    private var joined = false

    private final class Body {
        let run: @Sendable () -> Void
        init(_ run: @escaping @Sendable () -> Void) { self.run = run }
    }

    /// Starts `body` on a new thread.
    public init(name: String, _ body: @escaping @Sendable () -> Void) {
        let box = Unmanaged.passRetained(Body(body)).toOpaque()
        let rc = pthread_create(&thread, nil, { raw in
            guard let raw else { return nil }
            Unmanaged<Body>.fromOpaque(raw).takeRetainedValue().run()
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
