// Bad IPv6 input to the real binary: each is refused with one error line that names the option (or the
// allow-list file and line), says what is wrong and gives an example of what is right. Every command
// runs with --dry-run inside a throwaway network namespace, so even a wrongly accepted one changes
// nothing.
//
//   root namespace (untouched)        tv<pid>n<k>H
//   ──────────────────────────        ─────────────────────────────────────────────
//   test process                      lo up; tunvpn server|client … --dry-run

import Foundation
import Testing
import TestSupport

@Suite(.serialized, .needsRoot("runs tunvpn inside a throwaway network namespace"))
struct IPv6ArgumentTests {
    /// Keys for a server and a client in a temporary directory, and an allow-list with `line` (the
    /// client's key, then `line`).
    func keys(allowListLine line: String = "") throws -> TemporaryDirectory {
        let dir = try TemporaryDirectory()
        for name in ["server", "client"] {
            try runLoggedChecked([TestBinaries.tunvpn, "keygen", "--out", dir.path, "--name", name])
        }
        let key = try String(contentsOfFile: dir.path + "/client.pub", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        try "\(key) \(line)\n".write(toFile: dir.path + "/clients", atomically: true, encoding: .utf8)
        return dir
    }

    /// Runs `tunvpn ARGUMENTS --dry-run` in a throwaway namespace and returns the one error line it printed
    /// (`Error: …` from the argument parser's checks, `tunvpn: error: …` from later ones), expecting it
    /// to fail and to print no other error.
    func error(_ arguments: [String], sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        let topology = try Topology(hosts: ["H"]) { _ in [] }
        defer { topology.close() }
        let r = try topology["H"].exec([TestBinaries.tunvpn] + arguments + ["--dry-run"], timeout: 30)
        #expect(r.status != 0, "accepted: \(r.stdout)", sourceLocation: sourceLocation)
        let errors = r.stderr.split(separator: "\n").filter { $0.hasPrefix("Error: ") || $0.hasPrefix("tunvpn: error: ") }
        #expect(errors.count == 1, "one error line: \(r.stderr)", sourceLocation: sourceLocation)
        return errors.first.map(String.init) ?? ""
    }

    /// Expects `line` to name `option`, to contain each of `words`, and to give an example.
    func expectNamesAndExample(
        _ line: String, _ option: String, _ words: [String] = [], sourceLocation: SourceLocation = #_sourceLocation
    ) {
        #expect(line.contains(option), "does not name \(option): \(line)", sourceLocation: sourceLocation)
        for word in words { #expect(line.contains(word), "does not say \(word): \(line)", sourceLocation: sourceLocation) }
        #expect(
            ["e.g.", "like ", "for example"].contains { line.contains($0) }, "gives no example: \(line)",
            sourceLocation: sourceLocation)
    }

    func server(_ dir: TemporaryDirectory, _ addresses: [String]) -> [String] {
        ["server", "--key", dir.path + "/server.key", "--clients", dir.path + "/clients", "--no-nat"]
            + addresses.flatMap { ["--address", $0] }
    }

    @Test func anIPv6AddressOutsideSlash64ToSlash120IsRefused() throws {
        let dir = try keys()
        defer { dir.remove() }
        for bad in ["fd00:8::1/48", "fd00:8::1/63", "fd00:8::1/121", "fd00:8::1/128", "fd00:8::1"] {
            let line = try error(server(dir, ["10.8.0.1/16", bad]))
            expectNamesAndExample(line, "--address", [bad])
        }
    }

    @Test func twoPrefixesOfOneFamilyAreRefused() throws {
        let dir = try keys()
        defer { dir.remove() }
        for pair in [["10.8.0.1/16", "10.9.0.1/16"], ["fd00:8::1/64", "fd00:9::1/64"]] {
            let line = try error(server(dir, pair))
            expectNamesAndExample(line, "--address")
        }
    }

    @Test func anAllowListAddressOutsideTheServersPrefixIsRefusedNamingTheLine() throws {
        for (line, address) in [("10.8.0.5 fd00:9::5", "fd00:9::5"), ("fd00:8::5 10.9.0.5", "10.9.0.5")] {
            let dir = try keys(allowListLine: line + "  # outside")
            defer { dir.remove() }
            let message = try error(server(dir, ["10.8.0.1/16", "fd00:8::1/64"]))
            #expect(message.hasPrefix("tunvpn: error: \(dir.path)/clients: line 1: "), "names the file and line: \(message)")
            #expect(message.contains(address), "names the address: \(message)")
            let prefix = address.contains(":") ? "fd00:8::1/64" : "10.8.0.1/16"
            #expect(message.contains(prefix), "names the prefix: \(message)")
        }
    }

    @Test func anIPv6EndpointWithoutBracketsIsRefusedWithTheBracketedForm() throws {
        let dir = try keys()
        defer { dir.remove() }
        let line = try error([
            "client", "--key", dir.path + "/client.key", "--peer-key", dir.path + "/server.pub", "--endpoint",
            "2001:db8::1:51820",
        ])
        #expect(
            line.hasSuffix(
                "--endpoint 2001:db8::1:51820: put an IPv6 address in brackets, e.g. --endpoint [2001:db8::1]:51820"),
            "\(line)")
    }
}
