// Two real engines (a client and a server, with their threads) over in-memory devices and an
// in-memory network: packets cross both ways, and hostile datagrams are dropped and counted, never fatal.

import Crypto
import Glibc
import Engine
import Logging
import Synchronization
import Testing
import TestSupport
import Transport

final class AssignmentBox: Sendable { let value = Mutex<TunnelAssignment?>(nil) }

/// A client engine and a server engine joined by a `MemoryNetwork`.
final class EnginePair: Sendable {
    let network = MemoryNetwork()
    let clientDevice = MemoryPacketDevice(name: "tun-client")
    let serverDevice = MemoryPacketDevice(name: "tun-server")
    let client: TunnelEngine
    let server: TunnelEngine
    let serverSocket: MemoryDatagramSocket
    let serverEndpoint = Endpoint(address: IPv4Address(10, 99, 0, 1), port: 51820)
    let clientEndpoint = Endpoint(address: IPv4Address(10, 99, 0, 2), port: 40000)
    let assignedBox = AssignmentBox()

    init(serverRandom: any RandomSource = SystemRandom(), protocolMode: ProtocolMode = .tunvpn) throws {
        let serverKey = PrivateKey()
        let clientKey = PrivateKey()
        var logger = Logger(label: "engine-test")
        logger.logLevel = .critical
        serverSocket = try network.bind(serverEndpoint)
        let clientSocket = try network.bind(clientEndpoint)
        server = TunnelEngine(
            state: TunnelState(role: .server(ServerSettings(
                responder: HandshakeResponder(localStatic: serverKey), address: IPv4Prefix(address: IPv4Address(10, 8, 0, 1), length: 16),
                allowList: AllowList(clients: [
                    AllowedClient(key: clientKey.publicKey, address: protocolMode == .wireguard ? IPv4Address(10, 8, 0, 2) : nil)
                ]),
                allowAnyClient: false, protocolMode: protocolMode))),
            device: serverDevice, socket: serverSocket, random: serverRandom, logger: logger)
        let initiator = HandshakeInitiator(localStatic: clientKey, serverKey: serverKey.publicKey)
        let box = assignedBox
        client = TunnelEngine(
            state: TunnelState(role: .client(ClientSettings(
                initiator: initiator, endpoint: serverEndpoint, protocolMode: protocolMode,
                ownAddressing: protocolMode == .wireguard
                    ? TunnelAssignment(client: IPv4Prefix(address: IPv4Address(10, 8, 0, 2), length: 16), server: .any) : nil))),
            device: clientDevice, socket: clientSocket, logger: logger,
            hooks: EngineHooks(tunnelUp: { a in box.value.withLock { $0 = a } }))
    }

    func start() {
        server.start()
        client.start()
    }

    func stop() {
        client.stop()
        server.stop()
    }

    /// Waits (bounded) until the client's tunnel is up.
    func waitForTunnel(timeout: Duration = .seconds(5)) -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while clock.now < deadline {
            if assignedBox.value.withLock({ $0 != nil }) && server.counters.rxPackets.current > 0 { return true }
            usleep(5_000)
        }
        return false
    }
}

func ipv4Packet(_ src: IPv4Address, _ dst: IPv4Address, payload: [UInt8]) -> [UInt8] {
    let total = 20 + payload.count
    var p: [UInt8] = [0x45, 0, UInt8(total >> 8), UInt8(total & 0xff), 0, 0, 0, 0, 64, 17, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    p.withUnsafeMutableBytes { b in
        src.write(networkBytesTo: b.baseAddress! + 12)
        dst.write(networkBytesTo: b.baseAddress! + 16)
    }
    return p + payload
}

/// A socket whose every send fails, as sendmmsg(2) does when the route to the peer is gone.
final class RefusingSocket: DatagramSocket {
    let inner: MemoryDatagramSocket
    init(_ inner: MemoryDatagramSocket) { self.inner = inner }
    var localEndpoint: Endpoint { inner.localEndpoint }
    func receive(into batch: PacketBatch) throws(IOError) -> Int { try inner.receive(into: batch) }
    func send(from batch: PacketBatch) throws(IOError) -> Int {
        throw IOError(call: "sendmmsg", errno: ENETUNREACH, detail: "refused by the test")
    }
    func close() { inner.close() }
}

@Suite(.serialized) struct EngineTests {
    let client = IPv4Address(10, 8, 0, 2)
    let server = IPv4Address(10, 8, 0, 1)

    @Test func packetsCrossTheTunnelBothWaysThroughRealEngineThreads() throws {
        let pair = try EnginePair()
        pair.start()
        defer { pair.stop() }
        #expect(pair.waitForTunnel())
        #expect(pair.assignedBox.value.withLock { $0 }?.client == IPv4Prefix(address: client, length: 16))
        let outbound = (0..<200).map { ipv4Packet(client, server, payload: Array(repeating: UInt8($0 & 0xff), count: 1 + $0 * 5)) }
        for p in outbound { _ = pair.clientDevice.inject(p) }
        #expect(pair.serverDevice.waitForWritten(count: 200) == outbound)
        let inbound = (0..<200).map { ipv4Packet(server, client, payload: Array(repeating: UInt8($0 & 0xff), count: 1400 - $0)) }
        for p in inbound { _ = pair.serverDevice.inject(p) }
        #expect(pair.clientDevice.waitForWritten(count: 200) == inbound)
        #expect(pair.server.counters.dropped(.authentication) == 0)
    }

    /// WireGuard mode through the same engine: padded frames (up to the MTU, 1420) come out of the device
    /// trimmed to the packets that went in.
    @Test func packetsCrossTheTunnelBothWaysInWireGuardMode() throws {
        let pair = try EnginePair(protocolMode: .wireguard)
        pair.start()
        defer { pair.stop() }
        #expect(pair.waitForTunnel())
        let outbound = (0..<200).map { ipv4Packet(client, server, payload: Array(repeating: UInt8($0 & 0xff), count: 1 + $0 * 7)) }
        for p in outbound { _ = pair.clientDevice.inject(p) }
        #expect(pair.serverDevice.waitForWritten(count: 200) == outbound)
        let inbound = (0..<200).map { ipv4Packet(server, client, payload: Array(repeating: UInt8($0 & 0xff), count: 1400 - $0)) }
        for p in inbound { _ = pair.serverDevice.inject(p) }
        #expect(pair.clientDevice.waitForWritten(count: 200) == inbound)
        #expect(pair.server.counters.dropped(.authentication) == 0 && pair.client.counters.dropped(.authentication) == 0)
    }

    @Test func aFailedControlSendIsCountedAndTheEngineKeepsRunning() throws {
        let network = MemoryNetwork()
        var logger = Logger(label: "engine-test")
        logger.logLevel = .critical
        let socket = RefusingSocket(try network.bind(Endpoint(address: IPv4Address(10, 99, 0, 2), port: 40000)))
        let initiator = HandshakeInitiator(localStatic: PrivateKey(), serverKey: PrivateKey().publicKey)
        let engine = TunnelEngine(
            state: TunnelState(role: .client(ClientSettings(
                initiator: initiator, endpoint: Endpoint(address: IPv4Address(10, 99, 0, 1), port: 51820)))),
            device: MemoryPacketDevice(name: "tun-client"), socket: socket, logger: logger)
        #expect(engine.counters.controlSendFailures.current == 0)
        engine.start()
        defer { engine.stop() }
        // The client's first initiation goes out through a control send at start.
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(5)
        while engine.counters.controlSendFailures.current == 0 && clock.now < deadline { usleep(5_000) }
        #expect(engine.counters.controlSendFailures.current >= 1)
        #expect(engine.isRunning)
        #expect(engine.counters.statsLine.split(separator: " ").contains { $0.hasPrefix("control.send_failures=") })
    }

    @Test func hostileDatagramsAreDroppedAndCountedAndTheTunnelKeepsWorking() throws {
        let pair = try EnginePair()
        pair.start()
        defer { pair.stop() }
        #expect(pair.waitForTunnel())
        var random = SeededRandom(seed: 7)
        let attacker = Endpoint(address: IPv4Address(10, 99, 0, 66), port: 6666)
        var sent = 0
        for i in 0..<3000 {
            var datagram: [UInt8]
            switch i % 6 {
            case 0: datagram = (0..<Int(random.next() % 200)).map { _ in UInt8(truncatingIfNeeded: random.next()) }  // random
            case 1: datagram = [4, 0, 0, 0] + (0..<Int(random.next() % 40)).map { _ in UInt8(truncatingIfNeeded: random.next()) }  // data, random index
            case 2: datagram = [1] + [UInt8](repeating: 0, count: Int(random.next() % 170))  // initiation-shaped, wrong size or zeroes
            case 3: datagram = [2] + [UInt8](repeating: 0xff, count: 101)  // a response to nobody
            case 4: datagram = [UInt8](repeating: 9, count: 1 + Int(random.next() % 3000))  // unknown type, up to oversized
            default: datagram = []  // empty
            }
            if pair.serverSocket.inject(datagram, from: attacker) { sent += 1 }
        }
        #expect(sent == 3000)
        // Everything was read and refused; nothing reached the device.
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(10)
        func refused() -> UInt64 {
            let c = pair.server.counters
            return [DropReason.malformed, .oversized, .unknownSession, .handshake].map { c.dropped($0) }.reduce(0, +)
        }
        while refused() < 3000 && clock.now < deadline { usleep(10_000) }
        #expect(refused() == 3000)
        #expect(pair.serverDevice.takeWritten().isEmpty)
        #expect(pair.server.isRunning)
        // The legitimate client is unaffected.
        _ = pair.clientDevice.inject(ipv4Packet(client, server, payload: [1, 2, 3]))
        #expect(pair.serverDevice.waitForWritten(count: 1) == [ipv4Packet(client, server, payload: [1, 2, 3])])
    }
}
