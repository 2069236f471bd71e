// Tests for the anti-replay window: WireGuard's numbered self-test, a differential test against a naive
// set-based reference, far jumps, and counter exhaustion.
//
// The numbered table is ported case for case from WireGuard's src/selftest/counter.c
// (`packet_counter_selftest`), as wireguard-go's replay/replay_test.go ports it: cases 1-34 in one window,
// then the six bulk runs, numbered on from 35 as the C `test_num` counts them.

import Testing
import TestSupport
import Transport

/// The obviously correct replay filter the ring must agree with: every counter ever accepted, in a set.
private struct NaiveReplayFilter {
    var seen = Set<UInt64>()
    var greatest: UInt64?

    mutating func accept(_ counter: UInt64, limit: UInt64 = ReplayWindow.rejectAfterMessages) -> Bool {
        guard counter < limit else { return false }
        if let greatest, counter < greatest, greatest - counter > ReplayWindow.windowSize { return false }
        guard seen.insert(counter).inserted else { return false }
        greatest = max(greatest ?? counter, counter)
        return true
    }
}

/// Holds a window in a class so `#expect(w.accept(n))` can call the mutating method on a captured value.
private final class WindowBox {
    var window = ReplayWindow()

    func accept(_ counter: UInt64, limit: UInt64 = ReplayWindow.rejectAfterMessages) -> Bool {
        window.accept(counter, limit: limit)
    }

    func reset() { window.reset() }
}

/// Runs WireGuard-style numbered cases against one window, naming the case number in every failure.
private struct NumberedCases {
    var window = ReplayWindow()
    var number = 0

    mutating func check(_ counter: UInt64, _ expected: Bool, sourceLocation: SourceLocation = #_sourceLocation) {
        number += 1
        let actual = window.accept(counter)
        #expect(
            actual == expected, "counter.c case \(number): accept(\(counter)) should be \(expected)",
            sourceLocation: sourceLocation)
    }

    mutating func reset() { window.reset() }
}

@Suite("Replay window")
struct ReplayWindowTests {
    static let window = ReplayWindow.windowSize
    static let limit = ReplayWindow.rejectAfterMessages

    @Test func constantsMatchWireGuard() {
        #expect(ReplayWindow.totalBits == 8192)
        #expect(Self.window == 8128)
        #expect(Self.limit == 18_446_744_073_709_543_423)  // 2^64 - 2^13 - 1
    }

    @Test func theBitmapIsStoredInlineSoMakingAWindowDoesNotAllocate() {
        // 128 words held in the struct itself, not a reference to a heap buffer.
        #expect(MemoryLayout<ReplayWindow>.size >= 128 * MemoryLayout<UInt64>.size)
    }

    @Test func wireGuardCounterSelfTestCasesPass() {
        let tLim = Self.window + 1  // T_LIM
        let reject = Self.limit  // REJECT_AFTER_MESSAGES
        var t = NumberedCases()

        t.check(0, true)  // 1
        t.check(1, true)  // 2
        t.check(1, false)  // 3
        t.check(9, true)  // 4
        t.check(8, true)  // 5
        t.check(7, true)  // 6
        t.check(7, false)  // 7
        t.check(tLim, true)  // 8
        t.check(tLim - 1, true)  // 9
        t.check(tLim - 1, false)  // 10
        t.check(tLim - 2, true)  // 11
        t.check(2, true)  // 12
        t.check(2, false)  // 13
        t.check(tLim + 16, true)  // 14
        t.check(3, false)  // 15
        t.check(tLim + 16, false)  // 16
        t.check(tLim * 4, true)  // 17
        t.check(tLim * 4 - (tLim - 1), true)  // 18
        t.check(10, false)  // 19
        t.check(tLim * 4 - tLim, false)  // 20
        t.check(tLim * 4 - (tLim + 1), false)  // 21
        t.check(tLim * 4 - (tLim - 2), true)  // 22
        t.check(tLim * 4 + 1 - tLim, false)  // 23
        t.check(0, false)  // 24
        t.check(reject, false)  // 25
        t.check(reject - 1, true)  // 26
        t.check(reject, false)  // 27
        t.check(reject - 1, false)  // 28
        t.check(reject - 2, true)  // 29
        t.check(reject + 1, false)  // 30
        t.check(reject + 2, false)  // 31
        t.check(reject - 2, false)  // 32
        t.check(reject - 3, true)  // 33
        t.check(0, false)  // 34
        #expect(t.number == 34)

        // Bulk 1: a full window in order, then 0, exactly a window behind, once.
        t.reset()
        for i in 1...Self.window { t.check(i, true) }
        t.check(0, true)
        t.check(0, false)

        // Bulk 2: the same one higher, so 1 is the oldest acceptable and 0 is too old.
        t.reset()
        for i in 2...(Self.window + 1) { t.check(i, true) }
        t.check(1, true)
        t.check(0, false)

        // Bulk 3: a full window plus one, newest first.
        t.reset()
        for i in (0...Self.window).reversed() { t.check(i, true) }

        // Bulk 4: newest first from window + 1 down to 1; then 0 is too old.
        t.reset()
        for i in (1...(Self.window + 1)).reversed() { t.check(i, true) }
        t.check(0, false)

        // Bulk 5: window down to 1, then window + 1 slides past 0.
        t.reset()
        for i in (1...Self.window).reversed() { t.check(i, true) }
        t.check(Self.window + 1, true)
        t.check(0, false)

        // Bulk 6: window down to 1, then 0 while it still fits, then window + 1.
        t.reset()
        for i in (1...Self.window).reversed() { t.check(i, true) }
        t.check(0, true)
        t.check(Self.window + 1, true)
    }

    @Test func theRingAgreesWithANaiveSetOn200000MixedCounters() {
        var random = SeededRandom(seed: 0x7475_6E76_706E)  // "tunvpn"
        var ring = ReplayWindow()
        var naive = NaiveReplayFilter()
        var cursor: UInt64 = 0  // the sender's counter
        var recent: [UInt64] = []  // recently sent counters, for duplicates
        var mismatches = 0
        var firstMismatch = ""
        var accepted = 0
        var kinds = [Int](repeating: 0, count: 9)

        func saturatingAdd(_ a: UInt64, _ b: UInt64) -> UInt64 {
            let (sum, overflow) = a.addingReportingOverflow(b)
            return overflow ? .max : sum
        }
        func saturatingSub(_ a: UInt64, _ b: UInt64) -> UInt64 { a > b ? a - b : 0 }

        for step in 0..<200_000 {
            if step == 195_000 {  // near the end, leap close to the limit to exercise exhaustion
                kinds[8] += 1
                cursor = Self.limit - 50_000
            }
            let roll = random.next(upperBound: UInt64(1000))
            let greatest = naive.greatest ?? 0
            let counter: UInt64
            switch roll {
            case 0..<500:  // in order
                kinds[0] += 1
                cursor = saturatingAdd(cursor, 1)
                counter = cursor
            case 500..<650:  // reordered: up to a little past the window behind the sender
                kinds[1] += 1
                counter = saturatingSub(cursor, random.next(upperBound: Self.window + 128))
            case 650..<750:  // duplicate of something recent
                kinds[2] += 1
                counter = recent.isEmpty ? cursor : recent[Int(random.next(upperBound: UInt64(recent.count)))]
            case 750..<850:  // right at the edge of the window
                kinds[3] += 1
                counter = saturatingAdd(saturatingSub(greatest, Self.window + 2), random.next(upperBound: 5))
            case 850..<900:  // small jump ahead, leaving gaps
                kinds[4] += 1
                cursor = saturatingAdd(cursor, 2 + random.next(upperBound: 300))
                counter = cursor
            case 900..<940:  // far jump ahead, up to three windows
                kinds[5] += 1
                cursor = saturatingAdd(cursor, 1 + random.next(upperBound: Self.window * 3))
                counter = cursor
            case 940..<980:  // anything ever sent, mostly far too old
                kinds[6] += 1
                counter = random.next(upperBound: saturatingAdd(cursor, 1))
            default:  // a word-aligned jump, so recycled ring words must be cleared
                kinds[7] += 1
                cursor = saturatingAdd(cursor, 64 * (1 + random.next(upperBound: 256)))
                counter = cursor
            }
            recent.append(counter)
            if recent.count > 256 { recent.removeFirst() }

            let expected = naive.accept(counter)
            let actual = ring.accept(counter)
            if expected { accepted += 1 }
            if actual != expected {
                if mismatches == 0 {
                    firstMismatch = "step \(step): accept(\(counter)) gave \(actual), reference \(expected)"
                }
                mismatches += 1
            }
        }
        #expect(mismatches == 0, "\(mismatches) mismatches; first at \(firstMismatch)")
        // The mix must actually exercise both answers and every kind of move, or the comparison proves little.
        #expect(accepted > 50_000 && accepted < 190_000, "accepted \(accepted) of 200000")
        #expect(kinds.allSatisfy { $0 > 0 }, "move kinds used: \(kinds)")
    }

    @Test func farJumpsAheadAcceptTheNewCounterAndRefuseWhatFellOutOfTheWindow() {
        let w = WindowBox()
        for i in UInt64(0)...100 { #expect(w.accept(i)) }
        var greatest: UInt64 = 10_000
        #expect(w.accept(greatest))
        let jumps: [UInt64] = [1, 63, 64, Self.window, Self.window + 1, 8192, Self.window * 3, 1 << 40, 8192 * 5]
        for jump in jumps {
            let previous = greatest
            greatest += jump
            #expect(w.accept(greatest), "jump +\(jump) to \(greatest) is new")
            #expect(!w.accept(greatest), "jump +\(jump): \(greatest) twice")
            #expect(!w.accept(greatest - Self.window - 1), "jump +\(jump): one past the window is too old")
            if jump > Self.window {
                #expect(!w.accept(previous), "jump +\(jump): the old greatest is out of the window")
                #expect(w.accept(greatest - Self.window), "jump +\(jump): the oldest counter in the window is new")
            } else {
                #expect(!w.accept(previous), "jump +\(jump): the old greatest is a duplicate")
            }
            #expect(!w.accept(0), "jump +\(jump): counter 0 was seen long ago")
        }
    }

    @Test func aJumpOfExactlyTheRingSizeFindsItsRecycledWordCleared() {
        // Counter c and c + 8192 share a ring bit; the slide must clear it or c + 8192 looks replayed.
        let w = WindowBox()
        for i in UInt64(0)..<200 { #expect(w.accept(i)) }
        for k in UInt64(1)...3 {
            let counter = 199 + 8192 * k
            #expect(w.accept(counter), "199 + 8192 * \(k)")
            #expect(w.accept(counter - 1), "neighbour of 199 + 8192 * \(k) shares a recycled word")
        }
    }

    @Test func countersAtTheLimitAreRefusedAndTheOneBelowIsAcceptedOnce() {
        let w = WindowBox()
        #expect(w.accept(Self.limit - 1))
        #expect(!w.accept(Self.limit - 1))
        #expect(!w.accept(Self.limit))
        #expect(!w.accept(Self.limit + 1))
        #expect(!w.accept(.max))
        #expect(w.accept(Self.limit - 1 - Self.window))
        #expect(!w.accept(Self.limit - 2 - Self.window))

        let small = WindowBox()
        #expect(small.accept(99, limit: 100))
        #expect(!small.accept(99, limit: 100))
        #expect(!small.accept(100, limit: 100))
        #expect(small.accept(98, limit: 100))
    }

    @Test func aLimitOfUInt64MaxDoesNotOverflowTheWindowArithmetic() {
        let w = WindowBox()
        #expect(w.accept(.max - 1, limit: .max))
        #expect(!w.accept(.max, limit: .max))
        #expect(w.accept(.max - 1 - Self.window, limit: .max))
        #expect(!w.accept(.max - 2 - Self.window, limit: .max))
        #expect(!w.accept(0, limit: .max))
    }

    @Test func refusedCountersLeaveTheWindowUnchanged() {
        let w = WindowBox()
        #expect(w.accept(10))
        #expect(!w.accept(Self.limit))  // refused: must not slide the window up to the limit
        #expect(w.accept(5))  // still inside the window anchored at 10
    }

    @Test func resetForgetsEveryCounterSeen() {
        let w = WindowBox()
        for i in UInt64(0)..<10_000 { _ = w.accept(i) }
        #expect(!w.accept(9_999))
        w.reset()
        #expect(w.accept(0))
        #expect(w.accept(9_999))
    }
}
