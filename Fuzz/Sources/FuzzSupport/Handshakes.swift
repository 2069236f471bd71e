// Real handshakes between the fuzzers' fixed keys, for targets that need sessions or valid messages.

import Crypto
import Transport

public enum FuzzHandshakes {
    /// The assignment every fuzz server hands out.
    public static let assignment = TunnelAssignment(
        client: IPv4Prefix(address: IPv4Address(10, 8, 0, 2), length: 16), server: IPv4Address(10, 8, 0, 1))

    /// A completed handshake with `suite`: the client's and the server's results.
    public static func results(suite: any CipherSuite.Type, seed: UInt64 = 1)
        -> (client: HandshakeResult, server: HandshakeResult)
    {
        let random = FuzzRandom(seed: seed)
        let initiator = HandshakeInitiator(
            localStatic: FuzzKeys.client, serverKey: FuzzKeys.server.publicKey, offeredSuites: [suite])
        let responder = HandshakeResponder(localStatic: FuzzKeys.server)
        let (m1, sent) = initiator.createInitiation(
            senderIndex: 0x1111_1111, timestamp: TAI64N(secondsSince1970: 1_700_000_000, nanoseconds: 0), random: random)
        guard
            let consumed = try? responder.consumeInitiation(
                m1, isAllowed: { _ in true }, lastTimestamp: { _ in nil }, random: random)
        else { fatalError("a fresh initiation must be accepted") }
        let (m2, server) = responder.createResponse(to: consumed, senderIndex: 0x2222_2222, assignment: assignment)
        guard let server, let client = try? initiator.consumeResponse(m2, for: sent) else {
            fatalError("a fresh response must complete the handshake")
        }
        return (client, server)
    }

    /// One client → server result pair per suite this machine runs, made once.
    public static let perSuite: [(client: HandshakeResult, server: HandshakeResult)] = CipherSuites.available.map {
        results(suite: $0)
    }
}
