// --allow-any-client admits any key, but each admitted key takes an address from the pool and a key that
// finds the pool empty is refused without becoming a peer: the pool's size caps the peer table.

import Crypto
import Testing

@testable import Transport

@Suite struct AddressPoolTests {
    @Test func allowAnyClientAdmitsAtMostThePoolsSizeOfPeers() {
        var server = TunnelState(role: .server(ServerSettings(
            responder: HandshakeResponder(localStatic: Fixture().server), address: IPv4Prefix("10.8.0.1/29")!,
            allowList: AllowList(), allowAnyClient: true)))
        var admitted: [IPv4Address] = []
        var refused: [HandshakeFailure] = []
        for seed in UInt8(120)..<UInt8(128) {
            var pair = CorePair(clientKey: PrivateKey(random: HashRandom(seed: seed)))
            pair.server = server
            pair.start()
            server = pair.server
            admitted += pair.tunnelUps.map(\.client.address)
            refused += pair.refusals
        }
        #expect(admitted == (2...6).map { IPv4Address(10, 8, 0, $0) }, "the five addresses of a /29 besides the server's")
        #expect(refused == Array(repeating: .addressPoolExhausted, count: 3))
        #expect(server.peers.count == 5, "a refused key does not become a peer")
        #expect(server.addressOwnershipViolation() == nil)
    }
}
