// The client configures only tunnel addressing inside its bounds: not wider than /8, not a special-use
// address, not over its LANs, the server's endpoint, or wider than a --route prefix it covers.

import Crypto
import Testing

@testable import Transport

@Suite struct AssignmentBoundsTests {
    /// A client and server pair where the server hands out `serverAddress`'s prefix and the client has `bounds`.
    func pair(serverAddress: String, bounds: AssignmentBounds) -> CorePair {
        var pair = CorePair()
        pair.client = TunnelState(role: .client(ClientSettings(
            initiator: HandshakeInitiator(localStatic: pair.f.client, serverKey: pair.f.server.publicKey),
            endpoint: pair.serverEndpoint, assignmentBounds: bounds)))
        pair.server = TunnelState(role: .server(ServerSettings(
            responder: HandshakeResponder(localStatic: pair.f.server), address: IPv4Prefix(serverAddress)!,
            allowList: AllowList(clients: [AllowedClient(key: pair.f.client.publicKey)]), allowAnyClient: false)))
        return pair
    }

    let lan = AssignmentBounds.Network(IPv4Prefix("192.168.1.0/24")!, name: "the local network 192.168.1.0/24 on eth0")

    @Test func aSlashOneFromTheServerIsRefusedAndCounted() {
        var p = pair(serverAddress: "172.16.0.1/1", bounds: AssignmentBounds())
        p.start()
        #expect(p.tunnelUps.isEmpty, "accepting it would route 128.0.0.0/1 into the tunnel")
        #expect(p.refusals == [.unsafeAssignment("")])
        #expect(p.refusals.first?.name == "unsafeAssignment")
        #expect("\(p.refusals[0])" == "refused the server's tunnel address: 128.0.0.1/1 is wider than /8 (a misconfigured or malicious server; check its --address)")
        #expect(p.client.liveSessionCount == 0)
        // It keeps trying (and refusing) at the retransmit pace, never bringing the tunnel up.
        p.advance(6)
        p.tickBoth()
        #expect(p.refusals.count == 2 && p.tunnelUps.isEmpty)
    }

    @Test func anAssignmentInsideTheClientsLANIsRefused() {
        var p = pair(serverAddress: "192.168.1.1/24", bounds: AssignmentBounds(localNetworks: [lan]))
        p.start()
        #expect(p.tunnelUps.isEmpty)
        #expect(p.refusals.map(\.description) == [
            "refused the server's tunnel address: 192.168.1.0/24 overlaps the local network 192.168.1.0/24 on eth0 (a misconfigured or malicious server; check its --address)"
        ])
    }

    @Test func anAssignmentWiderThanTheClientsLANIsRefusedToo() {
        var p = pair(serverAddress: "192.168.0.1/16", bounds: AssignmentBounds(localNetworks: [lan]))
        p.start()
        #expect(p.tunnelUps.isEmpty && p.refusals.count == 1)
    }

    @Test func aNormalAssignmentBesideTheLANAndInsideTheRouteIsAccepted() {
        var p = pair(serverAddress: "10.8.0.1/16", bounds: AssignmentBounds(localNetworks: [lan], routes: [IPv4Prefix("10.8.0.0/16")!]))
        p.start()
        #expect(p.refusals.isEmpty)
        #expect(p.tunnelUps.first?.client == IPv4Prefix("10.8.0.2/16"))
        p.clientSends(ipv4(clientIP, serverIP))
        #expect(p.deliveredToServer.last == ipv4(clientIP, serverIP))
    }

    @Test func theBoundsNameEachConflict() {
        let bounds = AssignmentBounds(localNetworks: [lan], routes: [IPv4Prefix("10.8.0.0/16")!])
        let endpoint = Endpoint(address: IPv4Address(203, 0, 113, 7), port: 51820)
        func check(_ client: String) -> String? {
            bounds.violation(of: TunnelAssignment(client: IPv4Prefix(client)!, server: IPv4Address(10, 8, 0, 1)), endpoint: endpoint)
        }
        #expect(check("10.8.0.2/16") == nil)
        #expect(check("10.8.3.2/24") == nil, "inside the route")
        #expect(check("172.20.0.2/16") == nil, "beside everything")
        #expect(check("10.8.0.2/32") == nil)
        #expect(check("10.8.0.2/7") == "10.8.0.2/7 is wider than /8")
        #expect(check("10.8.0.2/8") == "10.0.0.0/8 is wider than --route 10.8.0.0/16")
        #expect(check("127.0.0.2/8") == "127.0.0.2 is loopback (127.0.0.0/8)")
        #expect(check("0.0.0.2/24") == "0.0.0.2 is \"this network\" (0.0.0.0/8)")
        #expect(check("169.254.1.2/16") == "169.254.1.2 is link-local (169.254.0.0/16)")
        #expect(check("224.1.1.1/24") == "224.1.1.1 is multicast (224.0.0.0/4)")
        #expect(check("255.255.255.255/32") == "255.255.255.255 is reserved or broadcast (240.0.0.0/4)")
        #expect(check("203.0.113.9/24") == "203.0.113.0/24 contains the server's endpoint 203.0.113.7")
        #expect(check("192.168.1.77/24") == "192.168.1.0/24 overlaps the local network 192.168.1.0/24 on eth0")
        #expect(check("192.168.1.77/32") == "192.168.1.77/32 overlaps the local network 192.168.1.0/24 on eth0")
    }
}
