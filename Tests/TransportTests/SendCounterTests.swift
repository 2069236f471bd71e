// The send counter stops at REJECT_AFTER_MESSAGES: a refused seal puts it back at the limit, so no number
// of further seals can wrap it to 0 and reuse a nonce.

import Testing

@testable import Transport

@Suite struct SendCounterTests {
    func session() throws -> Session {
        var pair = CorePair()
        pair.start()
        return try #require(pair.client.peers[0].current)
    }

    func seal(_ session: Session) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: DataFrame.headerLength + 4 + DataFrame.tagLength)
        let n = buffer.withUnsafeMutableBytes { DataFrame.seal($0.baseAddress!, packetLength: 4, session: session, mtu: 1420) }
        return n.map { Array(buffer.prefix($0)) }
    }

    @Test func theLastCounterSealsAndEveryLaterSealIsRefusedWithoutWrapping() throws {
        let s = try session()
        s.sendCounter.store(Limits.rejectAfterMessages - 1, ordering: .relaxed)
        let last = try #require(seal(s))
        #expect(Array(last[8..<16]) == withUnsafeBytes(of: (Limits.rejectAfterMessages - 1).littleEndian) { Array($0) })
        for _ in 0..<3 { #expect(seal(s) == nil) }
        #expect(s.framesSent == Limits.rejectAfterMessages)
    }

    /// The review's case: one seal at the top of the range would wrap the counter to 0 for the next one.
    @Test func aCounterAtTheTopOfItsRangeDoesNotWrapToZero() throws {
        let s = try session()
        s.sendCounter.store(.max, ordering: .relaxed)
        #expect(seal(s) == nil)
        #expect(seal(s) == nil, "the second seal would reuse counter 0")
        #expect(s.framesSent == Limits.rejectAfterMessages)
    }
}
