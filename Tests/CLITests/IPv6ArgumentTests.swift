// Bad IPv6 input to the real binary: an allow-list address outside the server's prefix of its family is
// refused with one error line naming the file, the line, the address and the prefix. (The flags' own
// errors, `--address` and `--endpoint`, are checked where they are parsed: AddressOptionTests and
// EndpointOptionTests.) Every command runs with --dry-run inside a throwaway network namespace, so even
// a wrongly accepted one changes nothing.
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
        let topology = try Topology(hosts: ["H"], enableIPv6: true) { _ in [] }
        defer { topology.close() }
        let r = try topology["H"].exec([TestBinaries.tunvpn] + arguments + ["--dry-run"], timeout: 30)
        #expect(r.status != 0, "accepted: \(r.stdout)", sourceLocation: sourceLocation)
        let errors = r.stderr.split(separator: "\n").filter { $0.hasPrefix("Error: ") || $0.hasPrefix("tunvpn: error: ") }
        #expect(errors.count == 1, "one error line: \(r.stderr)", sourceLocation: sourceLocation)
        return errors.first.map(String.init) ?? ""
    }

    func server(_ dir: TemporaryDirectory, _ addresses: [String]) -> [String] {
        ["server", "--key", dir.path + "/server.key", "--clients", dir.path + "/clients", "--no-nat"]
            + addresses.flatMap { ["--address", $0] }
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
}
