// UDPSocket on loopback (127.0.0.1 in the test's own namespace: nothing is configured, so no
// private namespace is needed). Blocking receives run on dedicated threads with a deadline.

import Engine
import Glibc
import Synchronization
import TestSupport
import Testing
import Transport

@testable import Platform

private let loopback = IPv4Address(127, 0, 0, 1)

/// A deterministic payload for datagram `index` of `size` bytes.
private func payload(_ index: Int, size: Int) -> [UInt8] {
    (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ index &* 7 &+ 1) }
}

@Suite("UDPSocket on loopback")
struct UDPSocketTests {
    @Test func bindingPortZeroReportsTheKernelsPick() throws {
        let socket = try UDPSocket.bind(Endpoint(address: loopback, port: 0))
        defer { socket.close() }
        #expect(socket.localEndpoint.address == .v4(loopback))
        #expect(socket.localEndpoint.port != 0)
        #expect(socket.receiveBufferBytes > 0 && socket.sendBufferBytes > 0)
    }

    @Test func aBatchOf32DatagramsOfVariousSizesArrivesIntactWithItsSource() throws {
        let receiver = try UDPSocket.bind(Endpoint(address: loopback, port: 0))
        let sender = try UDPSocket.bind(Endpoint(address: loopback, port: 0))
        defer {
            receiver.close()
            sender.close()
        }
        let sizes = (0..<32).map { $0 == 0 ? 0 : 1 + $0 * 47 }  // 0, 48, 95, ... 1458 bytes
        let outgoing = PacketBatch(capacity: 32, slotSize: 1500)
        for (index, size) in sizes.enumerated() {
            outgoing.set(index, bytes: payload(index, size: size), endpoint: receiver.localEndpoint)
        }
        outgoing.count = 32
        #expect(try sender.send(from: outgoing) == 32)

        let received = try runOnDedicatedThread(timeout: .seconds(5)) {
            let incoming = PacketBatch(capacity: 16, slotSize: 1500)  // forces at least two calls
            var datagrams: [(bytes: [UInt8], source: Endpoint)] = []
            var calls = 0
            while datagrams.count < 32 {
                let count = try receiver.receive(into: incoming)
                calls += 1
                for index in 0..<count {
                    datagrams.append((incoming.bytes(index), incoming.endpoints[index]))
                }
            }
            return (datagrams.map(\.bytes), datagrams.map(\.source), calls)
        }
        #expect(received.0.count == 32)
        for index in 0..<32 {
            #expect(received.0[index] == payload(index, size: sizes[index]), "datagram \(index)")
        }
        #expect(received.1.allSatisfy { $0 == sender.localEndpoint })
        #expect(received.2 >= 2)
        #expect(sender.stats.skippedSends == 0)
    }

    @Test func anOversizedDatagramIsReportedAsOneByteLongerThanItsSlot() throws {
        let receiver = try UDPSocket.bind(Endpoint(address: loopback, port: 0))
        let sender = try UDPSocket.bind(Endpoint(address: loopback, port: 0))
        defer {
            receiver.close()
            sender.close()
        }
        let outgoing = PacketBatch(capacity: 2, slotSize: 1024)
        outgoing.set(0, bytes: payload(0, size: 200), endpoint: receiver.localEndpoint)
        outgoing.set(1, bytes: payload(1, size: 64), endpoint: receiver.localEndpoint)
        outgoing.count = 2
        #expect(try sender.send(from: outgoing) == 2)

        let lengths = try runOnDedicatedThread(timeout: .seconds(5)) {
            let incoming = PacketBatch(capacity: 4, slotSize: 64)  // 64 is already a multiple of 64
            var lengths: [Int] = []
            var firstBytes: [UInt8] = []
            while lengths.count < 2 {
                let count = try receiver.receive(into: incoming)
                for index in 0..<count { lengths.append(incoming.lengths[index]) }
                if firstBytes.isEmpty { firstBytes = Array(UnsafeRawBufferPointer(start: incoming.slot(0), count: 64)) }
            }
            return (lengths, firstBytes)
        }
        #expect(lengths.0 == [65, 64])
        #expect(lengths.1 == payload(0, size: 64), "the slot holds the datagram's first 64 bytes")
        #expect(receiver.stats.truncatedReceives == 1)
    }

    @Test func aDatagramTheKernelRefusesIsSkippedAndTheRestAreSent() throws {
        let receiver = try UDPSocket.bind(Endpoint(address: loopback, port: 0))
        let sender = try UDPSocket.bind(Endpoint(address: loopback, port: 0))
        defer {
            receiver.close()
            sender.close()
        }
        let outgoing = PacketBatch(capacity: 4, slotSize: 70_000)
        outgoing.set(0, bytes: payload(0, size: 100), endpoint: receiver.localEndpoint)
        outgoing.set(1, bytes: payload(1, size: 65_600), endpoint: receiver.localEndpoint)  // > 65507: EMSGSIZE
        outgoing.set(2, bytes: payload(2, size: 10), endpoint: Endpoint(address: loopback, port: 0))  // EINVAL
        outgoing.set(3, bytes: payload(3, size: 300), endpoint: receiver.localEndpoint)
        outgoing.count = 4
        #expect(try sender.send(from: outgoing) == 2)
        #expect(sender.stats.oversizedSends == 1)
        #expect(sender.stats.invalidSends == 1)

        let sizes = try runOnDedicatedThread(timeout: .seconds(5)) {
            let incoming = PacketBatch(capacity: 4, slotSize: 1500)
            var sizes: [Int] = []
            while sizes.count < 2 {
                let count = try receiver.receive(into: incoming)
                for index in 0..<count { sizes.append(incoming.lengths[index]) }
            }
            return sizes
        }
        #expect(sizes == [100, 300])
    }

    @Test func closingFromAnotherThreadWakesABlockedReceiveWhichReturnsZero() throws {
        let socket = try UDPSocket.bind(Endpoint(address: loopback, port: 0))
        // The closer starts its 100 ms only once the receiver is about to call receive, and the receiver
        // measures how long its first receive took: at least 50 ms shows it blocked until the close
        // rather than finding the socket closed already.
        final class Flag: Sendable { let isSet = Atomic(false) }
        let receiving = Flag()
        let closer = try startThread {
            while !receiving.isSet.load(ordering: .acquiring) { usleep(1_000) }
            usleep(100_000)
            socket.close()
        }
        defer { _ = pthread_join(closer, nil) }
        let (results, waited) = try runOnDedicatedThread(timeout: .seconds(5)) { () throws -> ([Int], Double) in
            let batch = PacketBatch(capacity: 4, slotSize: 1500)
            let start = ContinuousClock.now
            receiving.isSet.store(true, ordering: .releasing)
            let first = try socket.receive(into: batch)
            let elapsed = start.duration(to: .now).components
            let second = try socket.receive(into: batch)
            return ([first, second, batch.count], Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18)
        }
        #expect(results == [0, 0, 0])
        #expect(waited >= 0.05 && waited < 5, "the receive blocked until close(), \(waited) s")
        let batch = PacketBatch(capacity: 1, slotSize: 64)
        batch.set(0, bytes: [1, 2, 3], endpoint: Endpoint(address: loopback, port: 9))
        batch.count = 1
        #expect(try socket.send(from: batch) == 0, "a closed socket sends nothing")
    }

    @Test func manyThreadsCanSendAtOnce() throws {
        let receiver = try UDPSocket.bind(Endpoint(address: loopback, port: 0))
        let sender = try UDPSocket.bind(Endpoint(address: loopback, port: 0))
        defer {
            receiver.close()
            sender.close()
        }
        let threads = 4
        let batches = 25
        let perBatch = 8
        var started: [pthread_t] = []
        for thread in 0..<threads {
            started.append(
                try startThread {
                    let outgoing = PacketBatch(capacity: perBatch, slotSize: 256)
                    for round in 0..<batches {
                        for index in 0..<perBatch {
                            outgoing.set(
                                index, bytes: [UInt8(thread), UInt8(round), UInt8(index)],
                                endpoint: receiver.localEndpoint)
                        }
                        outgoing.count = perBatch
                        _ = try? sender.send(from: outgoing)
                    }
                })
        }
        for thread in started { _ = pthread_join(thread, nil) }
        let total = threads * batches * perBatch
        let seen = try runOnDedicatedThread(timeout: .seconds(5)) {
            let incoming = PacketBatch(capacity: 64, slotSize: 256)
            var seen = Set<[UInt8]>()
            while seen.count < total {
                let count = try receiver.receive(into: incoming)
                for index in 0..<count { seen.insert(incoming.bytes(index)) }
            }
            return seen.count
        }
        #expect(seen == total)
    }

    @Test func aSenderThatFindsTheSharedArraysBusySendsWithItsOwn() throws {
        let receiver = try UDPSocket.bind(Endpoint(address: loopback, port: 0))
        let sender = try UDPSocket.bind(Endpoint(address: loopback, port: 0))
        defer {
            receiver.close()
            sender.close()
        }
        let count = UDPSocket.sendChunk + 6  // two chunks
        let outgoing = PacketBatch(capacity: count, slotSize: 128)
        for index in 0..<count { outgoing.set(index, bytes: payload(index, size: 100), endpoint: receiver.localEndpoint) }
        outgoing.count = count
        // Holding the lock makes withLockIfAvailable fail, as another sender would.
        let sent = try sender.sendStorage.withLock { _ throws(IOError) in try sender.send(from: outgoing) }
        #expect(sent == count)
        let received = try runOnDedicatedThread(timeout: .seconds(5)) {
            let incoming = PacketBatch(capacity: 128, slotSize: 128)
            var received: [[UInt8]] = []
            while received.count < count {
                let got = try receiver.receive(into: incoming)
                for index in 0..<got { received.append(incoming.bytes(index)) }
            }
            return received
        }
        #expect(received == (0..<count).map { payload($0, size: 100) })
    }

    @Test func resolvingANumericAddressOrLocalhostGivesAnIPv4Endpoint() throws {
        #expect(try UDPSocket.resolve(host: "192.0.2.7", port: 51820) == Endpoint(address: IPv4Address(192, 0, 2, 7), port: 51820))
        #expect(try UDPSocket.resolve(host: "localhost", port: 53) == Endpoint(address: loopback, port: 53))
        #expect(throws: IOError.self) { try UDPSocket.resolve(host: "", port: 1) }
    }
}
