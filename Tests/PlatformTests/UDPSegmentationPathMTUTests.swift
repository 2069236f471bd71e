// UDP GSO on a path narrower than the segments: the kernel refuses the whole GSO send (EMSGSIZE; it does
// not fragment GSO segments), so the socket sends that run one datagram at a time, which the kernel
// fragments as it would without GSO. Checked for both families in a fresh network namespace whose
// loopback has an MTU of 1280 (the namespace dies with its thread; the root namespace is never touched).

import CLinux
import Engine
import Glibc
import TestSupport
import Testing
import Transport

@testable import Platform

/// A failed step inside a namespace body, reported by the test that ran it.
private struct StepFailed: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

@Suite("UDP GSO on a narrow path", .serialized, .needsRoot("needs root for a network namespace with a 1280-byte loopback"))
struct UDPSegmentationPathMTUTests {
    struct Observations: Sendable {
        var sent: Int
        var received: [[UInt8]]
        var skipped: Int
        var stillSegmenting: Bool
    }

    @Test(arguments: ["127.0.0.1", "::1"])
    func aGSORunTooWideForThePathIsSentSinglyAndArrivesFragmented(address text: String) throws {
        let payloads = (0..<6).map { i in [UInt8](repeating: UInt8(0x40 + i), count: i == 5 ? 200 : 1300) }
        let seen = try runInFreshNetworkNamespace { () throws -> Observations in
            // lo up with MTU 1280 (SIOCSIFMTU, SIOCGIFFLAGS/SIOCSIFFLAGS on a control socket).
            let control = socket(AF_INET, Int32(SOCK_DGRAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
            guard control >= 0 else { throw StepFailed("socket failed") }
            defer { Glibc.close(control) }
            var ifr = InterfaceRequest(name: "lo")
            ifr.mtu = 1280
            guard ifr.ioctl(control, UInt(SIOCSIFMTU)) == 0 else { throw StepFailed("SIOCSIFMTU failed: \(errno)") }
            guard ifr.ioctl(control, UInt(SIOCGIFFLAGS)) == 0 else { throw StepFailed("SIOCGIFFLAGS failed") }
            ifr.flags |= Int16(IFF_UP)
            guard ifr.ioctl(control, UInt(SIOCSIFFLAGS)) == 0 else { throw StepFailed("SIOCSIFFLAGS failed") }
            guard let address = IPAddress(text) else { throw StepFailed("\(text) did not parse") }
            let receiver = try UDPSocket.bind(Endpoint(address: address, port: 0))
            let sender = try UDPSocket.bind(Endpoint(address: address, port: 0), segmentationOffload: true)
            defer {
                receiver.close()
                sender.close()
            }
            guard sender.usesSegmentationOffload else { throw StepFailed("UDP_SEGMENT was not accepted") }
            let outgoing = PacketBatch(capacity: payloads.count, slotSize: 2048)
            for (i, p) in payloads.enumerated() { outgoing.set(i, bytes: p, endpoint: receiver.localEndpoint) }
            outgoing.count = payloads.count
            let sent = try sender.send(from: outgoing)
            var received: [[UInt8]] = []
            let incoming = PacketBatch(capacity: 16, slotSize: 2048)
            while received.count < sent {
                let n = try receiver.receive(into: incoming)
                guard n > 0 else { throw StepFailed("socket closed") }
                for i in 0..<n { received.append(incoming.bytes(i)) }
            }
            return Observations(
                sent: sent, received: received, skipped: sender.stats.skippedSends,
                stillSegmenting: sender.usesSegmentationOffload)
        }
        #expect(seen.sent == payloads.count)
        #expect(seen.received == payloads, "every datagram arrived, in order, reassembled")
        #expect(seen.skipped == 0)
        #expect(seen.stillSegmenting, "GSO stays on for runs that fit the path")
    }
}
