// UDP GSO sends on loopback: runs of equal-sized datagrams to one destination go out as one
// segmented send, and arrive as the same datagrams, in order, with the same contents.

import Engine
import Glibc
import TestSupport
import Testing
import Transport

@testable import Platform

@Suite("UDPSocket with UDP GSO")
struct UDPSegmentationTests {
    @Test(arguments: [false, true])
    func datagramsSentAsGSORunsArriveAsTheOriginalDatagrams(receiverCoalesces: Bool) throws {
        let loopback = IPv4Address(127, 0, 0, 1)
        let a = try UDPSocket.bind(Endpoint(address: loopback, port: 0), segmentationOffload: receiverCoalesces)
        let b = try UDPSocket.bind(Endpoint(address: loopback, port: 0), segmentationOffload: receiverCoalesces)
        #expect(a.usesReceiveOffload == receiverCoalesces)
        let sender = try UDPSocket.bind(Endpoint(address: loopback, port: 0), segmentationOffload: true)
        defer {
            a.close()
            b.close()
            sender.close()
        }
        #expect(sender.usesSegmentationOffload, "loopback on this kernel supports UDP_SEGMENT")
        // 40 full datagrams and a short one to a, then 3 to b, then 20 more to a: three GSO runs.
        var plan: [(Endpoint, Int)] = Array(repeating: (a.localEndpoint, 1452), count: 40) + [(a.localEndpoint, 700)]
        plan += Array(repeating: (b.localEndpoint, 100), count: 3) + Array(repeating: (a.localEndpoint, 1452), count: 20)
        let outgoing = PacketBatch(capacity: plan.count, slotSize: 1500)
        for (i, (endpoint, size)) in plan.enumerated() {
            outgoing.set(i, bytes: (0..<size).map { UInt8(truncatingIfNeeded: $0 &+ i &* 13) }, endpoint: endpoint)
        }
        outgoing.count = plan.count
        #expect(try sender.send(from: outgoing) == plan.count)
        func receiveAll(_ socket: UDPSocket, _ expected: Int) throws -> [[UInt8]] {
            try runOnDedicatedThread(timeout: .seconds(5)) {
                let incoming = PacketBatch(capacity: 16, slotSize: 1500)  // smaller than a coalesced run
                var got: [[UInt8]] = []
                while got.count < expected {
                    let n = try socket.receive(into: incoming)
                    for i in 0..<n { got.append(incoming.bytes(i)) }
                }
                return got
            }
        }
        let atA = try receiveAll(a, 61)
        let atB = try receiveAll(b, 3)
        let expectedA = plan.indices.filter { plan[$0].0 == a.localEndpoint }.map { outgoing.bytes($0) }
        let expectedB = plan.indices.filter { plan[$0].0 == b.localEndpoint }.map { outgoing.bytes($0) }
        #expect(atA == expectedA)
        #expect(atB == expectedB)
        #expect(sender.stats.skippedSends == 0)
    }
}
