// TokenBucket: the one rate limiter behind the log limiter, the initiation limiter and the hint limiter.

import Testing

@testable import Transport

@Suite struct TokenBucketTests {
    /// How many of `attempts` takes at `now` succeed.
    func takes(_ bucket: inout TokenBucket, _ attempts: Int, now: UInt64) -> Int {
        var allowed = 0
        for _ in 0..<attempts where bucket.take(now: now) { allowed += 1 }
        return allowed
    }

    @Test func aFullBucketAllowsItsBurstAtOnceAndThenNothing() {
        var bucket = TokenBucket(perSecond: 20, burst: 5, now: 7 * second)
        #expect(takes(&bucket, 8, now: 7 * second) == 5)
        #expect(bucket.tokens < 1)
    }

    @Test func tokensComeBackAtTheSustainedRateAndNeverPastTheBurst() {
        var bucket = TokenBucket(perSecond: 20, burst: 5, now: 0)
        #expect(takes(&bucket, 5, now: 0) == 5)
        // One token every 50 ms: 49 ms is not enough, 50 ms is.
        #expect(takes(&bucket, 1, now: 49_000_000) == 0)
        #expect(takes(&bucket, 2, now: 50_000_000) == 1)
        // 200 ms more earns four tokens.
        #expect(takes(&bucket, 10, now: 250_000_000) == 4)
        // An hour of silence refills to the burst, not to 72,000.
        #expect(takes(&bucket, 100, now: 3_600 * second) == 5)
    }

    @Test func aClockThatGoesBackwardsRefillsNothingAndDoesNotCountTheSameIntervalTwice() {
        var bucket = TokenBucket(perSecond: 1, burst: 2, now: 10 * second)
        #expect(takes(&bucket, 2, now: 10 * second) == 2)
        // Back to 5 s, then forward to 10 s again: no time passed after 10 s, so no token.
        #expect(takes(&bucket, 1, now: 5 * second) == 0)
        #expect(takes(&bucket, 1, now: 10 * second) == 0)
        #expect(bucket.last == 10 * second)
        // A real second after 10 s earns one.
        #expect(takes(&bucket, 2, now: 11 * second) == 1)
    }

    @Test func theLongestElapsedTimeDoesNotOverflowAndRefillsToTheBurst() {
        var bucket = TokenBucket(perSecond: 1e9, burst: 3, now: 0)
        #expect(takes(&bucket, 3, now: 0) == 3)
        #expect(takes(&bucket, 10, now: UInt64.max) == 3)
        #expect(bucket.tokens == 0)
        #expect(bucket.last == UInt64.max)
    }

    @Test func aFractionalRateAccumulatesAcrossCalls() {
        // 0.5 tokens a second: two calls a second apart earn one token between them.
        var bucket = TokenBucket(perSecond: 0.5, burst: 1, now: 0)
        #expect(takes(&bucket, 1, now: 0) == 1)
        #expect(takes(&bucket, 1, now: second) == 0)
        #expect(takes(&bucket, 1, now: 2 * second) == 1)
    }

    @Test func theSourceLimiterGivesEachSourceItsOwnBucketFromTheLimitsItWasMadeWith() {
        var hints = SourceRateLimiter(perSecond: Limits.sessionGoneHintsPerSecond, burst: Limits.sessionGoneHintBurst)
        let a = IPAddress.v4(IPv4Address(10, 0, 0, 1))
        let b = IPAddress.v4(IPv4Address(10, 0, 0, 2))
        var allowed = 0
        for _ in 0..<30 where hints.allow(a, now: second) { allowed += 1 }
        #expect(allowed == Int(Limits.sessionGoneHintBurst))
        let other = hints.allow(b, now: second)
        #expect(other, "another source has its own bucket")
        let refilled = hints.allow(a, now: second + second / UInt64(Limits.sessionGoneHintsPerSecond))
        #expect(refilled)
    }
}
