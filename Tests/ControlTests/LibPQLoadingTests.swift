// libpq is opened only when a registry is used (Control/Registry/LibPQ.swift): the binary does not link it,
// so a server or client without --registry never maps it and the libraries it pulls in.

import Testing
import TestSupport

@testable import Control

@Suite struct LibPQLoadingTests {
    @Test func theBinaryDoesNotLinkLibpqOrWhatItPullsIn() throws {
        let ldd = try runChild(["ldd", TestBinaries.tunvpn])
        #expect(ldd.status == 0, "\(ldd.stderr)")
        for library in ["libpq", "libkrb5", "libldap", "libgnutls"] {
            #expect(!ldd.stdout.contains(library), "\(library) is linked:\n\(ldd.stdout)")
        }
        // The crypto and sodium libraries the data path uses are linked as before.
        #expect(ldd.stdout.contains("libsodium") && ldd.stdout.contains("libcrypto"), "\(ldd.stdout)")
    }

    @Test func aRegistryURLOpensLibpqAndItsParserAnswers() throws {
        // libpq's own parser (PQconninfoParse), reached through the opened library.
        let url = try RegistryURL("postgresql://tunvpn@db.example.net:5433/peers")
        #expect(url.display == "host=db.example.net port=5433 dbname=peers user=tunvpn")
        #expect(LibPQ.isMapped)
        #expect(throws: ControlError.self) { try RegistryURL("postgresql://tunvpn:secret@db.example.net/peers") }
    }
}
