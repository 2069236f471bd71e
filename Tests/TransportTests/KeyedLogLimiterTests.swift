// The server's log of refused client keys: one line per key a minute, a bounded number of keys a minute.

import Testing
import Transport

@Suite struct KeyedLogLimiterTests {
    static let second: UInt64 = 1_000_000_000

    /// Whether each (key, time in ms) event may be logged, in order, with one limiter.
    func allowed(_ events: [(Int, UInt64)], maxKeys: Int = 10) -> [Bool] {
        var limiter = KeyedLogLimiter<Int>(interval: 60 * Self.second, maxKeys: maxKeys)
        return events.map { limiter.take($0.0, now: $0.1 * 1_000_000) }
    }

    @Test func oneLinePerKeyPerMinute() {
        // Key 1 at 0 s, 1 s, 59 s; key 2 at 59 s; key 1 again at 60 s, key 2 at 60 s.
        let events: [(Int, UInt64)] = [(1, 0), (1, 1_000), (1, 59_000), (2, 59_000), (1, 60_000), (2, 60_000)]
        #expect(allowed(events) == [true, false, false, true, true, false])
    }

    @Test func atMostMaxKeysDistinctKeysPerMinute() {
        // A flood of 1000 fresh keys within 10 s: ten are logged; no new key until their minute is over.
        let flood = (0..<1000).map { ($0, UInt64($0) * 10) }
        let results = allowed(flood + [(5000, 59_000), (5000, 61_000), (5, 61_000)])
        #expect(results.prefix(1000).enumerated().filter { $0.element }.map(\.offset) == Array(0..<10))
        #expect(Array(results.suffix(3)) == [false, true, true])
    }

    @Test func aClockThatGoesBackwardsLogsNothingTwice() {
        #expect(allowed([(1, 100_000), (1, 10_000)], maxKeys: 2) == [true, false])
    }
}
