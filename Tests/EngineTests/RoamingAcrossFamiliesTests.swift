// Roaming between address families, through two real engines over a `MemoryNetwork`: a client first seen
// at an IPv4 endpoint that reappears at an IPv6 one (as a laptop moving from an IPv4-only network to an
// IPv6 one does, its dual-stack socket sending from the new family) is followed by the server after its
// next authenticated frame, without a new handshake, exactly as within one family (docs/PROTOCOL.md).

import Crypto
import Engine
import Glibc
import Logging
import Testing
import TestSupport
import Transport

@Suite(.serialized) struct RoamingAcrossFamiliesTests {
    @Test func theServerFollowsAClientFromAnIPv4ToAnIPv6EndpointAfterAnAuthenticatedFrame() throws {
        let network = MemoryNetwork()
        let clientDevice = MemoryPacketDevice(name: "tun-client")
        let serverDevice = MemoryPacketDevice(name: "tun-server")
        let serverEndpoint = Endpoint(address: IPv4Address(10, 99, 0, 1), port: 51820)
        let firstEndpoint = Endpoint(address: IPv4Address(10, 99, 0, 2), port: 40000)
        let roamedEndpoint = Endpoint(address: IPv6Address("2001:db8:99::2")!, port: 40000)
        let serverKey = PrivateKey()
        let clientKey = PrivateKey()
        var logger = Logger(label: "roaming-test")
        logger.logLevel = .critical
        let serverSocket = try network.bind(serverEndpoint)
        let clientSocket = try network.bind(firstEndpoint)
        let server = TunnelEngine(
            state: TunnelState(role: .server(ServerSettings(
                responder: HandshakeResponder(localStatic: serverKey),
                address: IPv4Prefix(address: IPv4Address(10, 8, 0, 1), length: 16),
                allowList: AllowList(clients: [AllowedClient(key: clientKey.publicKey)]), allowAnyClient: false))),
            device: serverDevice, socket: serverSocket, logger: logger)
        let box = AssignmentBox()
        let client = TunnelEngine(
            state: TunnelState(role: .client(ClientSettings(
                initiator: HandshakeInitiator(localStatic: clientKey, serverKey: serverKey.publicKey), endpoint: serverEndpoint))),
            device: clientDevice, socket: clientSocket, logger: logger,
            hooks: EngineHooks(tunnelUp: { a in box.value.withLock { $0 = a } }))
        server.start()
        client.start()
        defer {
            client.stop()
            server.stop()
        }
        let clientAddress = IPv4Address(10, 8, 0, 2)
        let serverAddress = IPv4Address(10, 8, 0, 1)
        func serverSeesClientAt() -> Endpoint? {
            server.snapshot(now: 0, device: "tun-server", listenPort: 51820).peers.first?.endpoint
        }

        // Up over IPv4: a packet each way.
        let up = ipv4Packet(clientAddress, serverAddress, payload: [1, 2, 3])
        var sent = false
        for _ in 0..<500 where !sent {  // the tunnel comes up on the first packet's handshake
            if box.value.withLock({ $0 != nil }) { sent = clientDevice.inject(up) } else { usleep(10_000) }
        }
        #expect(sent, "the tunnel came up")
        #expect(serverDevice.waitForWritten(count: 1) == [up])
        #expect(serverSeesClientAt() == firstEndpoint)
        let handshakes = server.counters.handshakesCompleted.current

        // The client's socket now sends from an IPv6 address; the old IPv4 endpoint is gone.
        try network.rebind(clientSocket, to: roamedEndpoint)
        let fromIPv6 = ipv4Packet(clientAddress, serverAddress, payload: [4, 5, 6])
        #expect(clientDevice.inject(fromIPv6))
        #expect(serverDevice.waitForWritten(count: 1) == [fromIPv6])
        #expect(serverSeesClientAt() == roamedEndpoint, "the server follows the authenticated frame to IPv6")

        // Replies reach the client at its IPv6 endpoint (nothing is bound at the IPv4 one any more).
        let reply = ipv4Packet(serverAddress, clientAddress, payload: [7, 8, 9])
        #expect(serverDevice.inject(reply))
        #expect(clientDevice.waitForWritten(count: 1) == [reply])
        #expect(server.counters.handshakesCompleted.current == handshakes, "roaming needs no new handshake")
        #expect(network.statistics.droppedUnbound == 0)
    }
}
