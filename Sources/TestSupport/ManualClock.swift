// A monotonic clock that moves only when a test says so.
//
// The core takes `now` as a parameter on every event (docs/ARCHITECTURE.md), so tests drive rekeys
// and timeouts by advancing this clock instead of sleeping, as `advanceTime` does in swift-nio's
// NIOEmbedded. Times are nanoseconds on an arbitrary monotonic origin, like CLOCK_MONOTONIC.

import Synchronization

/// A manually advanced monotonic clock, in nanoseconds.
///
/// Concurrency: safe to read and advance from any thread; every operation is atomic under a mutex.
public final class ManualClock: Sendable {
    private let nanoseconds: Mutex<UInt64>

    /// Makes a clock reading `start` nanoseconds.
    public init(start: UInt64 = 0) {
        nanoseconds = Mutex(start)
    }

    /// The current time in nanoseconds.
    public var now: UInt64 {
        nanoseconds.withLock { $0 }
    }

    /// Moves the clock forward by `nanoseconds` (the clock never goes back).
    /// - Returns: the new time.
    @discardableResult
    public func advance(nanoseconds delta: UInt64) -> UInt64 {
        nanoseconds.withLock { value in
            let (sum, overflow) = value.addingReportingOverflow(delta)
            precondition(!overflow, "ManualClock overflowed UInt64 nanoseconds")
            value = sum
            return sum
        }
    }

    /// Moves the clock forward by `seconds`, rounded to the nearest nanosecond.
    /// - Parameter seconds: a finite, non-negative number of seconds.
    /// - Returns: the new time.
    @discardableResult
    public func advance(by seconds: Double) -> UInt64 {
        precondition(seconds.isFinite && seconds >= 0, "a monotonic clock only moves forward")
        return advance(nanoseconds: UInt64((seconds * 1e9).rounded()))
    }
}
