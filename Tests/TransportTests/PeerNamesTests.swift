// A server's peer names (`TunnelState.peerNames`): the allow-list's names at start and after each reload.

import Crypto
import Testing

@testable import Transport

@Suite struct PeerNamesTests {
    @Test func theNamesFollowTheAllowListInForce() {
        let a = PrivateKey(random: HashRandom(seed: 191)).publicKey
        let b = PrivateKey(random: HashRandom(seed: 192)).publicKey
        var pair = CorePair(allowList: AllowList(clients: [AllowedClient(key: a, comment: "laptop of Anna"), AllowedClient(key: b)]))
        #expect(pair.server.peerNames == [a: "laptop"])
        _ = pair.server.replaceAllowList(AllowList(clients: [AllowedClient(key: b, comment: "phone")]))
        #expect(pair.server.peerNames == [b: "phone"])
        _ = pair.server.replaceAllowList(AllowList())
        #expect(pair.server.peerNames.isEmpty)
        // A client core has none.
        #expect(CorePair(clientKey: PrivateKey(random: HashRandom(seed: 193))).client.peerNames.isEmpty)
    }
}
