// Handshake refusals are counted by reason name, including a reason that carries a detail for the log.

import Engine
import Testing
import Transport

@Suite struct CountersTests {
    @Test func anUnsafeAssignmentIsCountedUnderOneNameWhateverItsDetail() {
        let counters = Counters()
        counters.handshakeFailed(.unsafeAssignment("10.8.0.2/1 is wider than /8"))
        counters.handshakeFailed(.unsafeAssignment("192.168.1.0/24 overlaps the local network 192.168.1.0/24 on eth0"))
        #expect(counters.handshakeFailures(.unsafeAssignment("")) == 2)
        #expect(counters.all.filter { $0.name == "handshake.failed.unsafeAssignment" }.map(\.value) == [2])
        #expect(counters.statsLine.hasSuffix("handshake.failed.unsafeAssignment=2"))
    }
}
