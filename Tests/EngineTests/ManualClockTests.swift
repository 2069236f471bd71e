// Tests for the manual clock and seeded generator that engine tests use in place of time and randomness.

import Testing
import TestSupport

@Suite("Manual clock and seeded randomness")
struct ManualClockTests {
    @Test func theClockMovesOnlyWhenAdvanced() {
        let clock = ManualClock(start: 1_000)
        #expect(clock.now == 1_000)
        #expect(clock.now == 1_000)
        #expect(clock.advance(nanoseconds: 500) == 1_500)
        #expect(clock.advance(by: 1.5) == 1_500_001_500)
        #expect(clock.now == 1_500_001_500)
    }

    @Test func seededRandomReproducesSplitMix64() {
        var a = SeededRandom(seed: 0)
        var b = SeededRandom(seed: 0)
        // First outputs of splitmix64.c seeded with 0.
        #expect(a.next() == 0xE220_A839_7B1D_CDAF)
        #expect(a.next() == 0x6E78_9E6A_A1B9_65F4)
        _ = b.next()
        _ = b.next()
        #expect((0..<100).map { _ in a.next() } == (0..<100).map { _ in b.next() })
        var one = SeededRandom(seed: 1)
        var zero = SeededRandom(seed: 0)
        let (x, y) = (one.next(), zero.next())
        #expect(x != y)
    }
}
