// The AEAD provider is a local choice that never shows on the wire: a server sealing and opening with
// OpenSSL and a client doing so with libsodium (and the other way round) carry files intact, each logging
// the provider it runs. Standard topology of TunnelEndToEndTests (C ── S ── H), traffic C ⇄ H via S.

import Foundation
import Testing
import TestSupport

@Suite(.serialized, .needsRoot("needs root: it creates network namespaces and TUN devices"))
struct CryptoProviderEndToEndTests {
    @Test(arguments: [("openssl", "libsodium"), ("libsodium", "openssl")])
    func aServerAndAClientWithDifferentProvidersCarryFilesIntact(server serverProvider: String, client clientProvider: String) throws {
        try TunnelLab.standard().use { lab in
            try lab.keygen("server")
            let clientKey = try lab.keygen("client")
            try lab.writeAllowList(["\(clientKey)  # the test's client"])
            let server = try lab.startServer(extra: ["--crypto-provider", serverProvider])
            let client = try lab.startClient(endpoint: lab.topology.address("S", "s0"), extra: ["--crypto-provider", clientProvider])
            try lab.waitForTunnelUp(client)
            #expect(server.log.contains("crypto provider: \(serverProvider)"), "\(server.log)")
            #expect(client.log.contains("crypto provider: \(clientProvider)"), "\(client.log)")
            let internetHost = try lab.routeClientToInternetHost()

            try TestFiles.makeRandom(at: lab.path("up"), megabytes: 8)
            try TestFiles.makeRandom(at: lab.path("down"), megabytes: 8)
            let up = try transferFile(
                lab.path("up"), from: lab["C"], to: internetHost, port: 5001, receiver: lab["H"],
                into: lab.path("up.received"), timeout: 60)
            try lab.expectIntact(up, "up", megabytes: 8)
            let down = try transferFile(
                lab.path("down"), from: lab["H"], to: "10.8.0.2", port: 5002, receiver: lab["C"],
                into: lab.path("down.received"), timeout: 60)
            try lab.expectIntact(down, "down", megabytes: 8)

            let serverStats = try server.requestStats()
            let clientStats = try client.requestStats()
            #expect(serverStats["drop.authentication"] == 0 && clientStats["drop.authentication"] == 0)
        }
    }

    @Test func anUnknownProviderIsRefusedInOneLine() throws {
        let r = try runCommand(TestBinaries.tunvpn, ["server", "--crypto-provider", "gnutls", "--dry-run"])
        #expect(r.status != 0)
        #expect(
            r.stderr == "tunvpn: error: unknown --crypto-provider 'gnutls': give one of auto, libsodium, openssl, e.g. --crypto-provider openssl\n",
            "\(r.stderr)")
    }
}
