// Handshake refusals are counted by reason name, including a reason that carries a detail for the log;
// and every counter shows in the stats line, the status document's names and its typed family alike.

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
        #expect(counters.statsLine.split(separator: " ").contains("handshake.failed.unsafeAssignment=2"))
    }

    @Test func everyCounterIsInTheStatsLineUnderItsNameAndInExactlyOneTypedPlace() {
        let counters = Counters()
        // A distinct value per counter, so a counter shown under another's name is caught too.
        for (position, id) in CounterID.allCases.enumerated() { counters.counter(id).add(UInt64(1_000 + position)) }
        let line = counters.statsLine
        #expect(line.hasPrefix("stats: "))
        let fields = line.dropFirst("stats: ".count).split(separator: " ").map(String.init)
        #expect(fields.count == CounterID.allCases.count)
        #expect(Set(CounterID.allCases.map(\.name)).count == CounterID.allCases.count, "names are unique")

        let values = counters.values
        var typedPlaces = 0
        for (position, id) in CounterID.allCases.enumerated() {
            let expected = UInt64(1_000 + position)
            #expect(fields[position] == "\(id.name)=\(expected)", "the stats line lists \(id.name) in its place")
            #expect(CounterID(name: id.name) == id)
            #expect(values[id] == expected)
            switch id {
            case .rxPackets: #expect(values.rxPackets == expected); typedPlaces += 1
            case .txPackets: #expect(values.txPackets == expected); typedPlaces += 1
            case .rxBytes: #expect(values.rxBytes == expected); typedPlaces += 1
            case .txBytes: #expect(values.txBytes == expected); typedPlaces += 1
            case .handshakesCompleted: #expect(values.handshakesCompleted == expected); typedPlaces += 1
            case .controlSendFailures: #expect(values.controlSendFailures == expected); typedPlaces += 1
            case .traffic(let counter, let family):
                let found = values.traffic.filter { $0.counter == counter && $0.family == family }.map(\.value)
                #expect(found == [expected], "\(id.name) in the per-family traffic family")
                #expect(counters.traffic(counter, family).current == expected)
                typedPlaces += 1
            case .dropped(let reason):
                let found = counters.drops.filter { $0.reason == reason }.map(\.value)
                #expect(found == [expected], "drop.\(reason) in the drops family")
                typedPlaces += 1
            case .handshakeFailed(let failure):
                let found = counters.handshakeFailures.filter { $0.reason == failure }.map(\.value)
                #expect(found == [expected], "\(failure.name) in the handshake failures family")
                typedPlaces += 1
            }
        }
        #expect(typedPlaces == CounterID.allCases.count)
        #expect(counters.drops.count + counters.handshakeFailures.count + counters.values.traffic.count + 6
            == CounterID.allCases.count,
            "no counter is in two families or none")
        #expect(counters.drops.map(\.reason) == DropReason.allCases)
        #expect(counters.handshakeFailures.map(\.reason) == HandshakeFailure.allCases)
        // The status document carries the counters by name; read back, every typed family is whole again.
        #expect(CounterValues(named: counters.all) == values)
        let snapshot = EngineSnapshot(
            role: "server", publicKey: "", listenPort: 0, device: "d", suites: [], peers: [], counters: counters.all)
        #expect(snapshot.counterValues == values)
        #expect(CounterValues(named: [("no.such.counter", 5)]) == CounterValues(), "unknown names are ignored")
    }

    @Test func trafficIsCountedPerFamilyByTheVersionNibble() {
        let counters = Counters()
        var batch = FamilyTraffic()
        batch.add(firstByte: 0x45, bytes: 84)
        batch.add(firstByte: 0x60, bytes: 104)
        batch.add(firstByte: 0x6f, bytes: 1280)
        batch.add(firstByte: 0x50, bytes: 999)  // neither family: not counted
        batch.add(firstByte: 0x00, bytes: 0)
        counters.add(sent: batch)
        counters.add(received: batch)
        counters.add(received: batch)
        let fields = Set(counters.statsLine.split(separator: " ").map(String.init))
        for expected in [
            "tx_packets.ipv4=1", "tx_bytes.ipv4=84", "tx_packets.ipv6=2", "tx_bytes.ipv6=1384",
            "rx_packets.ipv4=2", "rx_bytes.ipv4=168", "rx_packets.ipv6=4", "rx_bytes.ipv6=2768",
        ] {
            #expect(fields.contains(expected), "\(expected) in \(counters.statsLine)")
        }
        #expect(IPFamily(firstByte: 0x45) == .ipv4 && IPFamily(firstByte: 0x60) == .ipv6 && IPFamily(firstByte: 0x10) == nil)
        #expect(counters.values.traffic.map { "\($0.counter.name).\($0.family)" } == [
            "rx_packets.ipv4", "rx_packets.ipv6", "tx_packets.ipv4", "tx_packets.ipv6",
            "rx_bytes.ipv4", "rx_bytes.ipv6", "tx_bytes.ipv4", "tx_bytes.ipv6",
        ])
    }
}
