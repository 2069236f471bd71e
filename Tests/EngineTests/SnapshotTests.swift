// The engine's snapshot of a server with 5,000 clients on its allow-list: it holds the core's lock for
// one chunk of at most `TunnelEngine.snapshotChunkSize` peers at a time (checked structurally, through
// the count of peers copied in each hold, not by timing), and still shows every peer once, in order.

import Crypto
import Glibc
import Logging
import Testing
import TestSupport
import Transport

@testable import Engine

@Suite struct SnapshotTests {
    /// A server engine (not started) whose allow-list holds `clients` keys, each with a fixed address
    /// (10.8.0.0/16 from .2 on), and those keys.
    static func server(clients: Int) throws -> (TunnelEngine, [PublicKey]) {
        // Distinct keys from their index; the snapshot never uses them for cryptography.
        let keys = try (0..<clients).map { i in
            try #require(PublicKey(bytes: [UInt8(i & 0xff), UInt8(i >> 8)] + [UInt8](repeating: 0x5a, count: 30)))
        }
        let clients = keys.indices.map { AllowedClient(key: keys[$0], address: Self.address($0)) }
        var logger = Logger(label: "snapshot-test")
        logger.logLevel = .critical
        let network = MemoryNetwork()
        let engine = TunnelEngine(
            state: TunnelState(
                role: .server(
                    ServerSettings(
                        responder: HandshakeResponder(localStatic: PrivateKey()),
                        address: IPv4Prefix(address: IPv4Address(10, 8, 0, 1), length: 16),
                        allowList: AllowList(clients: clients), allowAnyClient: false))),
            device: MemoryPacketDevice(name: "tun-snapshot"),
            socket: try network.bind(Endpoint(address: IPv4Address(10, 99, 0, 1), port: 51820)), logger: logger)
        return (engine, keys)
    }

    /// Client `index`'s fixed address.
    static func address(_ index: Int) -> IPv4Address { IPv4Address(IPv4Address(10, 8, 0, 2).value + UInt32(index)) }

    @Test func aSnapshotOf5000PeersHoldsTheLockForAtMostOneChunkAtATime() throws {
        let (engine, keys) = try Self.server(clients: 5000)
        var perHold: [Int] = []
        let snapshot = engine.snapshot(now: 1, device: "tun0", listenPort: 51820) { perHold.append($0) }

        #expect(TunnelEngine.snapshotChunkSize == 256)
        #expect(perHold.allSatisfy { $0 <= TunnelEngine.snapshotChunkSize }, "peers per hold: \(Set(perHold))")
        #expect(perHold.reduce(0, +) == 5000, "every peer was copied, once")
        #expect(perHold.count == (5000 + 255) / 256)
        #expect(snapshot.peers.map(\.publicKey) == keys.map(\.base64))
        #expect(snapshot.peers.map(\.tunnelAddress) == keys.indices.map { Self.address($0) })
        #expect(snapshot.role == "server" && snapshot.device == "tun0" && snapshot.listenPort == 51820)
        #expect(snapshot.peers.allSatisfy { $0.sessionAge == nil && $0.latestHandshake == nil && $0.rxBytes == 0 })
    }

    @Test func peersTakenOffTheAllowListAreLeftOutButStillReadAChunkAtATime() throws {
        let (engine, keys) = try Self.server(clients: 600)
        let kept = Array(100..<600)
        let outcome = engine.reload(
            allowList: AllowList(clients: kept.map { AllowedClient(key: keys[$0], address: Self.address($0)) }))
        #expect(outcome.removed == 100)
        var perHold: [Int] = []
        let snapshot = engine.snapshot(now: 1, device: "tun0", listenPort: 51820) { perHold.append($0) }
        #expect(perHold == [256, 256, 88], "the table keeps the removed peers' slots")
        #expect(snapshot.peers.map(\.publicKey) == kept.map { keys[$0].base64 })
    }
}
