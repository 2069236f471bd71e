// A token bucket: at most `burst` events at once and `perSecond` sustained. The one rate limiter of the
// code base: the engine's log limiter, the per-source initiation limiter under load and the per-source
// session-gone hint limiter (`SourceRateLimiter`, a table of these) all take tokens from one.
//
// Time is the caller's monotonic nanoseconds, as everywhere in the core. A clock that goes backwards
// refills nothing (and the bucket keeps its latest time, so the same interval is never counted twice);
// any gap, however long, refills at most to `burst`.

/// Up to `burst` tokens, refilled at `perSecond`; each allowed event takes one.
public struct TokenBucket: Sendable, Equatable {
    /// Tokens added per second.
    public let perSecond: Double
    /// Most tokens held (a full bucket allows this many events at once).
    public let burst: Double
    /// Tokens held as of `last`.
    public private(set) var tokens: Double
    /// The latest time the bucket was refilled at (monotonic nanoseconds).
    public private(set) var last: UInt64

    /// A full bucket as of `now`.
    public init(perSecond: Double, burst: Double, now: UInt64 = 0) {
        self.perSecond = perSecond
        self.burst = burst
        tokens = burst
        last = now
    }

    /// Refills for the time since the last call, then takes one token; false when there is none.
    public mutating func take(now: UInt64) -> Bool {
        refill(now: now)
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }

    /// Adds the tokens earned since `last`, up to `burst`.
    public mutating func refill(now: UInt64) {
        guard now > last else { return }
        // In Double: an elapsed time of any size (up to 2^64 ns) cannot overflow, and `min` caps it.
        tokens = min(burst, tokens + Double(now - last) / 1e9 * perSecond)
        last = now
    }
}
