// How often the server logs one client key it refused (`ControlAction.unknownClientKey`): at most one line
// per key per interval, and lines for at most `maxKeys` distinct keys per interval, so a flood of
// initiations under fresh keys cannot flood the log, and the table never holds more than `maxKeys` entries.
//
// Time is the caller's monotonic nanoseconds, as everywhere in the core.

/// At most one event per key per `interval`, and at most `maxKeys` distinct keys within any `interval`.
public struct KeyedLogLimiter<Key: Hashable & Sendable>: Sendable {
    /// The window, in nanoseconds.
    public let interval: UInt64
    /// Most distinct keys allowed within one window.
    public let maxKeys: Int
    /// Each key allowed within the last `interval`, with when.
    private var allowed: [Key: UInt64] = [:]

    public init(interval: UInt64, maxKeys: Int) {
        self.interval = interval
        self.maxKeys = maxKeys
    }

    /// True when an event for `key` may be logged at `now` (and records it).
    public mutating func take(_ key: Key, now: UInt64) -> Bool {
        let window = interval
        allowed = allowed.filter { elapsed(now, since: $0.value) < window }
        guard allowed[key] == nil, allowed.count < maxKeys else { return false }
        allowed[key] = now
        return true
    }
}
