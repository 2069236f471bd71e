// The engine's side of dual stack: a client writes its ICMPv6 unreachables to its own device, traffic is
// counted per family, and a datagram of type 4 that is not a data frame is a malformed frame (never a
// handshake failure).

import Crypto
import Engine
import Glibc
import Logging
import Testing
import TestSupport
import Transport

/// Polls `condition` every 5 ms for at most `timeout`; true once it holds.
func eventually(timeout: Duration = .seconds(5), _ condition: () -> Bool) -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    while clock.now < deadline {
        if condition() { return true }
        usleep(5_000)
    }
    return condition()
}

func udp6(_ src: String, _ dst: String, payload: [UInt8] = [1, 2, 3]) -> [UInt8] {
    PacketBuilder.ipv6UDP(
        from: Endpoint(address: IPv6Address(src)!, port: 5000), to: Endpoint(address: IPv6Address(dst)!, port: 53),
        payload: payload)
}

@Suite(.serialized) struct IPv6EngineTests {
    let client = IPv4Address(10, 8, 0, 2)
    let server = IPv4Address(10, 8, 0, 1)

    @Test func aClientWithoutIPv6WritesTheUnreachableToItsDeviceAtOnce() throws {
        let network = MemoryNetwork()
        var logger = Logger(label: "engine-test")
        logger.logLevel = .critical
        let device = MemoryPacketDevice(name: "tun-client")
        let initiator = HandshakeInitiator(localStatic: PrivateKey(), serverKey: PrivateKey().publicKey)
        // No server answers: the answer cannot depend on a session.
        let engine = TunnelEngine(
            state: TunnelState(role: .client(ClientSettings(
                initiator: initiator, endpoint: Endpoint(address: IPv4Address(10, 99, 0, 1), port: 51820), ipv6Disabled: true))),
            device: device, socket: try network.bind(Endpoint(address: IPv4Address(10, 99, 0, 2), port: 40000)), logger: logger)
        engine.start()
        defer { engine.stop() }
        let packet = udp6("fd00:8::2", "2001:db8::7", payload: Array(0..<64))
        _ = device.inject(packet)
        let written = device.waitForWritten(count: 1)
        #expect(written.count == 1)
        let answer = try #require(written.first)
        #expect(answer[6] == 58 && answer[40] == 1 && answer[41] == 1, "ICMPv6 destination unreachable, code 1")
        #expect(Array(answer[24..<40]) == IPv6Address("fd00:8::2")!.networkBytes, "back to the sender")
        #expect(Array(answer[48...]) == packet)
        #expect(engine.counters.dropped(.ipv6Unreachable) == 1)
        #expect(engine.counters.traffic(.txPackets, .ipv6).current == 0)
    }

    @Test func aTunnelWithoutIPv6AnswersIPv6AndCarriesIPv4CountedPerFamily() throws {
        let pair = try EnginePair()
        pair.start()
        defer { pair.stop() }
        #expect(pair.waitForTunnel())
        #expect(pair.assignedBox.value.withLock { $0 }?.client6 == nil, "this server gives no IPv6")
        let six = udp6("fd00:8::2", "2001:db8::7")
        _ = pair.clientDevice.inject(six)
        let answers = pair.clientDevice.waitForWritten(count: 1)
        #expect(answers.count == 1 && answers.first.map { Array($0[48...]) } == six)
        #expect(pair.client.counters.dropped(.ipv6Unreachable) == 1)

        let outbound = (0..<10).map { ipv4Packet(client, server, payload: Array(repeating: UInt8($0), count: 10 + $0)) }
        for p in outbound { _ = pair.clientDevice.inject(p) }
        #expect(pair.serverDevice.waitForWritten(count: 10) == outbound)
        let bytes = UInt64(outbound.map(\.count).reduce(0, +))
        let s = pair.server.counters
        let c = pair.client.counters
        #expect(eventually { c.traffic(.txPackets, .ipv4).current == 10 })
        #expect(c.traffic(.txBytes, .ipv4).current == bytes)
        #expect(s.traffic(.rxPackets, .ipv4).current == 10 && s.traffic(.rxBytes, .ipv4).current == bytes)
        #expect(s.traffic(.rxPackets, .ipv6).current == 0 && c.traffic(.txPackets, .ipv6).current == 0)
        #expect(pair.serverDevice.takeWritten().isEmpty, "the IPv6 packet never reached the server")
        let inbound = ipv4Packet(server, client, payload: [9, 9])
        _ = pair.serverDevice.inject(inbound)
        #expect(pair.clientDevice.waitForWritten(count: 1) == [inbound])
        #expect(eventually { s.traffic(.txPackets, .ipv4).current == 1 })
        #expect(c.traffic(.rxPackets, .ipv4).current == 1 && c.traffic(.rxBytes, .ipv4).current == UInt64(inbound.count))
        #expect(c.statsLine.contains(" tx_packets.ipv4=10 tx_packets.ipv6=0 "))
    }

    @Test func aType4DatagramThatIsNotADataFrameIsAMalformedDropNotAHandshakeFailure() throws {
        let pair = try EnginePair()
        pair.start()
        defer { pair.stop() }
        #expect(pair.waitForTunnel())
        let c = pair.server.counters
        let (malformed, handshake, failed) = (c.dropped(.malformed), c.dropped(.handshake), c.handshakeFailures(.malformed))
        let attacker = Endpoint(address: IPv4Address(10, 99, 0, 66), port: 6666)
        let datagrams: [[UInt8]] = [
            [4, 1, 0, 0] + [UInt8](repeating: 0, count: 28),  // 32 bytes, reserved byte 1 set
            [4, 0, 0, 9] + [UInt8](repeating: 0, count: 140),  // reserved byte 3 set, handshake-sized
            [4, 0, 0, 0] + [UInt8](repeating: 0, count: 27),  // 31 bytes: shorter than any frame
            [4],
        ]
        for d in datagrams { #expect(pair.serverSocket.inject(d, from: attacker)) }
        #expect(eventually { c.dropped(.malformed) - malformed == 4 })
        #expect(c.dropped(.handshake) == handshake)
        #expect(c.handshakeFailures(.malformed) == failed)
        #expect(pair.serverDevice.takeWritten().isEmpty)
    }
}
