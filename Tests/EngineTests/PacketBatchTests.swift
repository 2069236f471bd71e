// PacketBatch's slot moves: swapping two slots moves their bytes without copying, a lent slot reads from
// the lender's buffer, and keeping or restoring puts every slot back in its own place with the right bytes.

import Engine
import Testing

@Suite struct PacketBatchTests {
    @Test func swappingSlotsExchangesTheirBytesAndKeepsEverySlotDistinct() {
        let batch = PacketBatch(capacity: 4, slotSize: 64)
        for i in 0..<4 { batch.set(i, bytes: [UInt8(i), UInt8(i), UInt8(i)]) }
        let places = (0..<4).map { batch.slot($0) }
        batch.swapSlots(0, 2)
        batch.swapSlots(1, 1)
        #expect(batch.slot(0) == places[2])
        #expect(batch.slot(2) == places[0])
        #expect(batch.slot(1) == places[1])
        #expect(batch.bytes(0) == [2, 2, 2])
        #expect(batch.bytes(2) == [0, 0, 0])
        #expect(Set((0..<4).map { batch.slot($0) }) == Set(places))
        batch.restoreSlots()
        #expect((0..<4).map { batch.slot($0) } == places)
    }

    @Test func aLentSlotReadsTheLendersBytesUntilKept() {
        let batch = PacketBatch(capacity: 3, slotSize: 64)
        let places = (0..<3).map { batch.slot($0) }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 100, alignment: 8)
        defer { buffer.deallocate() }
        for i in 0..<100 { buffer[i] = UInt8(i) }
        guard let base = buffer.baseAddress else { Issue.record("no buffer"); return }
        batch.set(0, bytes: [9, 9])
        batch.lend(1, base + 10)
        batch.offsets[1] = 0
        batch.lengths[1] = 5
        batch.lend(2, base + 40)
        batch.offsets[2] = 0
        batch.lengths[2] = 65  // longer than a slot: reported truncated by a receiver, never copied
        #expect(batch.slot(1) == base + 10)
        #expect(batch.bytes(1) == [10, 11, 12, 13, 14])
        batch.keepLentSlots(3)
        for i in 0..<100 { buffer[i] = 0xFF }  // the lender reuses its buffer
        #expect((0..<3).map { batch.slot($0) } == places)
        #expect(batch.bytes(0) == [9, 9])
        #expect(batch.bytes(1) == [10, 11, 12, 13, 14])
    }

    @Test func keepingOnlyTheFirstSlotsLeavesLaterLentSlotsForRestore() {
        let batch = PacketBatch(capacity: 2, slotSize: 64)
        let places = (0..<2).map { batch.slot($0) }
        var outside: [UInt8] = [1, 2, 3]
        outside.withUnsafeMutableBytes { raw in
            guard let base = raw.baseAddress else { return }
            batch.lend(1, base)
            batch.offsets[1] = 0
            batch.lengths[1] = 3
            batch.keepLentSlots(1)
            #expect(batch.slot(1) == base)
            batch.restoreSlots()
        }
        #expect((0..<2).map { batch.slot($0) } == places)
    }
}
