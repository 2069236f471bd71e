// Contract tests for the in-memory device fakes in TestSupport.
//
// Each test checks one clause of the `PacketDevice` or `DatagramSocket` contract in Engine/Devices.swift
// (headroom, batch capped at capacity, truncation reported as slotSize + 1, close waking a blocked reader,
// delivery by endpoint), so the engine tests built on these fakes cannot pass by relying on behaviour the
// real adapters lack. Blocking reads run on their own pthreads (`TestThread`), never on the test's task.

import Engine
import Testing
import TestSupport
import Transport

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Generous bound for "wakes promptly": long enough for a loaded 2-core CI machine, short enough to fail.
private let promptly = Duration.seconds(5)
/// How long a blocked reader is given to prove that it really is blocked.
private let briefly = Duration.milliseconds(100)

private func endpoint(_ d: UInt8, _ port: UInt16) -> Endpoint {
    Endpoint(address: IPv4Address(10, 0, 0, d), port: port)
}

/// Fills every byte of every slot with `marker`, so tests can see which bytes a read touched.
private func poison(_ batch: PacketBatch, with marker: UInt8 = 0xEE) {
    for i in 0..<batch.capacity {
        batch.slot(i).initializeMemory(as: UInt8.self, repeating: marker, count: batch.slotSize)
    }
}

@Suite("MemoryPacketDevice honours the PacketDevice contract")
struct MemoryPacketDeviceContractTests {
    @Test func readPlacesEachPacketAfterTheHeadroomAndLeavesTheHeadroomAlone() throws {
        let device = MemoryPacketDevice()
        device.inject([1, 2, 3])
        device.inject([4, 5])
        let batch = PacketBatch(capacity: 4, slotSize: 128)
        poison(batch)
        let n = try device.readPackets(into: batch, headroom: 32)
        #expect(n == 2)
        #expect(batch.count == 2)
        #expect(batch.offsets[0] == 32 && batch.offsets[1] == 32)
        #expect(batch.lengths[0] == 3 && batch.lengths[1] == 2)
        #expect(batch.bytes(0) == [1, 2, 3])
        #expect(batch.bytes(1) == [4, 5])
        for i in 0..<2 {
            let headroom = UnsafeRawBufferPointer(start: batch.slot(i), count: 32)
            #expect(headroom.allSatisfy { $0 == 0xEE }, "slot \(i) headroom was written")
        }
    }

    @Test func aReadReturnsAtMostCapacityPacketsAndKeepsTheRestInOrder() throws {
        let device = MemoryPacketDevice()
        for i in UInt8(0)..<5 { device.inject([i]) }
        let batch = PacketBatch(capacity: 3, slotSize: 64)
        #expect(try device.readPackets(into: batch, headroom: 0) == 3)
        #expect(batch.count == 3)
        #expect((0..<3).map { batch.bytes($0) } == [[0], [1], [2]])
        #expect(try device.readPackets(into: batch, headroom: 0) == 2)
        #expect(batch.count == 2)
        #expect((0..<2).map { batch.bytes($0) } == [[3], [4]])
    }

    @Test func aPacketLargerThanTheRoomAfterTheHeadroomIsReportedOneByteTooLong() throws {
        let device = MemoryPacketDevice()
        let big = (0..<100).map { UInt8($0) }
        device.inject(big)
        let batch = PacketBatch(capacity: 1, slotSize: 64)
        #expect(try device.readPackets(into: batch, headroom: 16) == 1)
        #expect(batch.lengths[0] == 64 - 16 + 1)
        // Read only what is inside the slot; the reported length runs one byte past it by design.
        let copied = Array(UnsafeRawBufferPointer(start: batch.slot(0) + 16, count: 48))
        #expect(copied == Array(big.prefix(48)))
    }

    @Test func aReadBlocksUntilAPacketIsInjected() throws {
        let device = MemoryPacketDevice()
        let results = BlockingQueue<[UInt8]>()
        let reader = TestThread {
            let batch = PacketBatch(capacity: 4, slotSize: 64)
            let n = (try? device.readPackets(into: batch, headroom: 0)) ?? -1
            results.append(n == 1 ? batch.bytes(0) : [])
        }
        #expect(results.take(max: 1, timeout: briefly).isEmpty, "read returned with nothing injected")
        device.inject([7, 7])
        #expect(results.take(max: 1, timeout: promptly) == [[7, 7]])
        reader.join()
    }

    @Test func closeWakesABlockedReaderWhichThenReturnsZero() throws {
        let device = MemoryPacketDevice()
        let results = BlockingQueue<Int>()
        let reader = TestThread {
            let batch = PacketBatch(capacity: 4, slotSize: 64)
            results.append((try? device.readPackets(into: batch, headroom: 0)) ?? -1)
        }
        #expect(results.take(max: 1, timeout: briefly).isEmpty, "read returned before close")
        device.close()
        #expect(results.take(max: 1, timeout: promptly) == [0])
        reader.join()

        let batch = PacketBatch(capacity: 1, slotSize: 64)
        batch.count = 1
        #expect(try device.readPackets(into: batch, headroom: 0) == 0)
        #expect(batch.count == 0)
        #expect(!device.inject([1]), "a closed device took a packet")
        #expect(throws: IOError.self) { try device.writePackets(from: batch) }
    }

    @Test func writesAreKeptInOrderAndRefusedPacketsAreSkippedAndCounted() throws {
        let device = MemoryPacketDevice(refusing: { $0.first == 0xFF })
        let batch = PacketBatch(capacity: 4, slotSize: 64)
        batch.set(0, bytes: [1, 2], offset: 8)
        batch.set(1, bytes: [0xFF], offset: 0)
        batch.set(2, bytes: [3], offset: 16)
        batch.set(3, bytes: [9, 9, 9])  // beyond count: must not be written
        batch.count = 3
        #expect(try device.writePackets(from: batch) == 2)
        #expect(device.refusedCount == 1)
        #expect(device.takeWritten() == [[1, 2], [3]])
        #expect(device.takeWritten().isEmpty)
    }

    @Test func waitForWrittenReturnsWhatArrivedWhenTheTimeoutPasses() throws {
        let device = MemoryPacketDevice()
        let batch = PacketBatch(capacity: 1, slotSize: 64)
        batch.set(0, bytes: [5])
        batch.count = 1
        try device.writePackets(from: batch)
        #expect(device.waitForWritten(count: 2, timeout: .milliseconds(20)) == [[5]])
    }
}

@Suite("MemoryDatagramSocket honours the DatagramSocket contract")
struct MemoryDatagramSocketContractTests {
    @Test func aDatagramReachesTheSocketBoundAtItsDestinationWithTheSenderAsSource() throws {
        let network = MemoryNetwork()
        let a = try network.bind(endpoint(1, 51820))
        let b = try network.bind(endpoint(2, 51820))
        let c = try network.bind(endpoint(3, 51820))
        let out = PacketBatch(capacity: 2, slotSize: 64)
        out.set(0, bytes: [1, 2, 3], offset: 4, endpoint: b.localEndpoint)
        out.count = 1
        #expect(try a.send(from: out) == 1)

        let batch = PacketBatch(capacity: 2, slotSize: 64)
        #expect(try b.receive(into: batch) == 1)
        #expect(batch.count == 1)
        #expect(batch.offsets[0] == 0)
        #expect(batch.bytes(0) == [1, 2, 3])
        #expect(batch.endpoints[0] == a.localEndpoint)
        #expect(c.pendingCount == 0)
        #expect(a.pendingCount == 0)
        #expect(network.statistics.delivered == 1)
    }

    @Test func aDatagramToAnEndpointWithNothingBoundIsDroppedAndCounted() throws {
        let network = MemoryNetwork()
        let a = try network.bind(endpoint(1, 1000))
        let out = PacketBatch(capacity: 1, slotSize: 64)
        out.set(0, bytes: [1], endpoint: endpoint(9, 9))
        out.count = 1
        #expect(try a.send(from: out) == 1, "UDP takes a datagram even when nobody listens")
        #expect(network.statistics.droppedUnbound == 1)
        #expect(network.statistics.delivered == 0)
    }

    @Test func aDestinationWithPortZeroIsRefusedAndLeftOutOfTheCount() throws {
        let network = MemoryNetwork()
        let a = try network.bind(endpoint(1, 1000))
        let b = try network.bind(endpoint(2, 1000))
        let out = PacketBatch(capacity: 2, slotSize: 64)
        out.set(0, bytes: [1], endpoint: endpoint(2, 0))
        out.set(1, bytes: [2], endpoint: b.localEndpoint)
        out.count = 2
        #expect(try a.send(from: out) == 1)
        #expect(network.statistics.refusedDestination == 1)
        #expect(b.pendingCount == 1)
    }

    @Test func aReceiveReturnsAtMostCapacityDatagramsEachAtOffsetZero() throws {
        let network = MemoryNetwork()
        let a = try network.bind(endpoint(1, 1))
        let b = try network.bind(endpoint(2, 2))
        let out = PacketBatch(capacity: 5, slotSize: 64)
        for i in 0..<5 { out.set(i, bytes: [UInt8(i)], offset: 8, endpoint: b.localEndpoint) }
        out.count = 5
        #expect(try a.send(from: out) == 5)

        let batch = PacketBatch(capacity: 3, slotSize: 64)
        #expect(try b.receive(into: batch) == 3)
        #expect(batch.count == 3)
        #expect((0..<3).allSatisfy { batch.offsets[$0] == 0 && batch.endpoints[$0] == a.localEndpoint })
        #expect((0..<3).map { batch.bytes($0) } == [[0], [1], [2]])
        #expect(try b.receive(into: batch) == 2)
        #expect((0..<2).map { batch.bytes($0) } == [[3], [4]])
    }

    @Test func aDatagramLongerThanASlotIsTruncatedAndReportedAsSlotSizePlusOne() throws {
        let network = MemoryNetwork()
        let b = try network.bind(endpoint(2, 2))
        let big = (0..<100).map { UInt8($0) }
        b.inject(big, from: endpoint(7, 7))
        b.inject([1], from: endpoint(7, 7))
        let batch = PacketBatch(capacity: 2, slotSize: 64)
        #expect(try b.receive(into: batch) == 2)
        #expect(batch.lengths[0] == batch.slotSize + 1)
        let copied = Array(UnsafeRawBufferPointer(start: batch.slot(0), count: batch.slotSize))
        #expect(copied == Array(big.prefix(batch.slotSize)))
        #expect(batch.bytes(1) == [1], "truncating one datagram spoiled its neighbour")
    }

    @Test func aReceiveBlocksUntilADatagramArrives() throws {
        let network = MemoryNetwork()
        let a = try network.bind(endpoint(1, 1))
        let b = try network.bind(endpoint(2, 2))
        let results = BlockingQueue<[UInt8]>()
        let receiver = TestThread {
            let batch = PacketBatch(capacity: 4, slotSize: 64)
            let n = (try? b.receive(into: batch)) ?? -1
            results.append(n == 1 ? batch.bytes(0) : [])
        }
        #expect(results.take(max: 1, timeout: briefly).isEmpty, "receive returned with nothing sent")
        let out = PacketBatch(capacity: 1, slotSize: 64)
        out.set(0, bytes: [42], endpoint: b.localEndpoint)
        out.count = 1
        try a.send(from: out)
        #expect(results.take(max: 1, timeout: promptly) == [[42]])
        receiver.join()
    }

    @Test func closeWakesABlockedReceiverAndFreesTheEndpoint() throws {
        let network = MemoryNetwork()
        let b = try network.bind(endpoint(2, 2))
        let results = BlockingQueue<Int>()
        let receiver = TestThread {
            let batch = PacketBatch(capacity: 4, slotSize: 64)
            results.append((try? b.receive(into: batch)) ?? -1)
        }
        #expect(results.take(max: 1, timeout: briefly).isEmpty, "receive returned before close")
        b.close()
        #expect(results.take(max: 1, timeout: promptly) == [0])
        receiver.join()

        let out = PacketBatch(capacity: 1, slotSize: 64)
        out.set(0, bytes: [1], endpoint: endpoint(2, 2))
        out.count = 1
        #expect(throws: IOError.self) { try b.send(from: out) }
        let rebound = try network.bind(endpoint(2, 2))
        #expect(rebound.localEndpoint == endpoint(2, 2))
    }

    @Test func bindingAnEndpointTwiceFailsAndPortZeroPicksAFreePort() throws {
        let network = MemoryNetwork()
        let a = try network.bind(endpoint(1, 5000))
        #expect(throws: IOError(call: "bind", errno: EADDRINUSE, detail: "10.0.0.1:5000 is already bound")) {
            _ = try network.bind(endpoint(1, 5000))
        }
        let e1 = try network.bind(endpoint(1, 0))
        let e2 = try network.bind(endpoint(1, 0))
        #expect(e1.localEndpoint.port >= 49152 && e2.localEndpoint.port >= 49152)
        #expect(e1.localEndpoint != e2.localEndpoint)
        #expect(a.localEndpoint.port == 5000)
    }

    @Test func aRebindedSocketSendsFromItsNewEndpointAndTheOldOneGoesDead() throws {
        let network = MemoryNetwork()
        let roamer = try network.bind(endpoint(1, 1))
        let server = try network.bind(endpoint(2, 2))
        try network.rebind(roamer, to: endpoint(3, 3))
        #expect(roamer.localEndpoint == endpoint(3, 3))

        let out = PacketBatch(capacity: 1, slotSize: 64)
        out.set(0, bytes: [1], endpoint: server.localEndpoint)
        out.count = 1
        try roamer.send(from: out)
        let batch = PacketBatch(capacity: 1, slotSize: 64)
        #expect(try server.receive(into: batch) == 1)
        #expect(batch.endpoints[0] == endpoint(3, 3))

        out.set(0, bytes: [2], endpoint: endpoint(1, 1))
        try server.send(from: out)
        #expect(network.statistics.droppedUnbound == 1)
        #expect(roamer.pendingCount == 0)
        #expect(throws: IOError.self) { try network.rebind(roamer, to: server.localEndpoint) }
    }
}

@Suite("MemoryNetwork impairments")
struct MemoryNetworkImpairmentTests {
    /// Sends `count` one-byte datagrams numbered 0..<count from a fresh socket pair and returns what arrived.
    private func run(_ impairment: MemoryNetwork.Impairment, seed: UInt64, count: Int = 200) throws
        -> (received: [UInt8], statistics: MemoryNetwork.Statistics)
    {
        let network = MemoryNetwork(impairment: impairment, seed: seed)
        let a = try network.bind(endpoint(1, 1))
        let b = try network.bind(endpoint(2, 2))
        let out = PacketBatch(capacity: 1, slotSize: 64)
        for i in 0..<count {
            out.set(0, bytes: [UInt8(truncatingIfNeeded: i)], endpoint: b.localEndpoint)
            out.count = 1
            try a.send(from: out)
        }
        network.releaseHeld()
        var received: [UInt8] = []
        let batch = PacketBatch(capacity: 64, slotSize: 64)
        while b.pendingCount > 0 {
            let n = try b.receive(into: batch)
            received += (0..<n).map { batch.bytes($0)[0] }
        }
        return (received, network.statistics)
    }

    @Test func theSameSeedGivesTheSameLossesDuplicatesAndOrder() throws {
        let lossy = MemoryNetwork.Impairment(dropProbability: 0.2, duplicateProbability: 0.1, reorderProbability: 0.2)
        let first = try run(lossy, seed: 42)
        let second = try run(lossy, seed: 42)
        let other = try run(lossy, seed: 43)
        #expect(first.received == second.received)
        #expect(first.statistics == second.statistics)
        #expect(first.received != other.received, "the seed made no difference")
        let s = first.statistics
        #expect(s.droppedByPolicy > 0 && s.duplicated > 0 && s.reordered > 0)
        #expect(s.delivered == 200 - s.droppedByPolicy + s.duplicated)
        #expect(first.received.count == s.delivered)
    }

    @Test func aPerfectNetworkDeliversEverythingOnceInOrder() throws {
        let result = try run(.none, seed: 1)
        #expect(result.received == (0..<200).map { UInt8($0) })
    }

    @Test func certainDropLosesEverythingAndCertainDuplicationDoublesIt() throws {
        #expect(try run(.init(dropProbability: 1), seed: 1).received.isEmpty)
        let doubled = try run(.init(duplicateProbability: 1), seed: 1, count: 3).received
        #expect(doubled == [0, 0, 1, 1, 2, 2])
    }

    @Test func certainReorderingSwapsEachPairOfDatagrams() throws {
        #expect(try run(.init(reorderProbability: 1), seed: 1, count: 4).received == [1, 0, 3, 2])
    }
}
