// End-to-end: `tunvpn demo`, the README's first command, passes every one of its checks (IPv4 and IPv6)
// and leaves nothing behind: no namespace, no journal under /run/tunvpn, no temporary directory.
//
//   lan host ── client ══ router ══ server ── internet host      (tvdemo-<pid>-*, made by the demo)
//                 └ tunvpn client --gateway    └ tunvpn server --egress s1
//
// The demo builds and removes its own namespaces; this test only runs it and looks at what is left.

import Foundation
import TestSupport
import Testing

@Suite(.serialized, .needsRoot("needs root for network namespaces"))
struct DemoTests {
    @Test func demoPassesEveryCheckAndLeavesNothingBehind() throws {
        let result = try EndToEndGate.shared { try runCommand(TestBinaries.tunvpn, ["demo"], timeout: 120) }
        #expect(result.status == 0, "tunvpn demo failed:\n\(result.stdout)\n\(result.stderr)")
        #expect(result.stderr == "")
        #expect(result.stdout.contains("the internet host saw the request come from 198.18.0.1"))
        // IPv6: through the tunnel and masqueraded, then refused at once by a client whose server has no
        // IPv6 way out, with nothing outside the tunnel.
        #expect(result.stdout.contains("ok: 3 of 3 IPv6 replies came back through the tunnel"))
        #expect(result.stdout.contains("the internet host saw the request come from 2001:db8:18::1"))
        #expect(result.stdout.contains("Destination unreachable: Administratively prohibited"))
        #expect(result.stdout.contains("nothing left outside the tunnel"))
        // DNS: by name through the tunnel, nothing to the LAN's resolver, resolv.conf restored exactly.
        #expect(result.stdout.contains("ok: the client fetched the page by name through the tunnel"))
        #expect(result.stdout.contains("ok: the LAN resolver logged no query from the client while the tunnel was up"))
        #expect(result.stdout.contains("ok: the client's resolv.conf is byte for byte what it was before the tunnel"))
        #expect(result.stdout.contains("Demo finished: all"))

        let prefix = try #require(result.stdout.firstMatch(of: /tvdemo-\d+-/)).output
        let namespaces = try runCommand("/usr/bin/env", ["ip", "netns", "list"]).stdout
        #expect(!namespaces.contains(prefix), "namespaces \(prefix)* are left:\n\(namespaces)")

        let journals = Set(result.stdout.matches(of: /\/run\/tunvpn\/netns-?\d+-tun0\.journal/).map { String($0.output) })
        #expect(journals.count == 2, "the demo names the client's and the server's journal")
        for journal in journals {
            #expect(!FileManager.default.fileExists(atPath: journal), "\(journal) is left")
        }

        let netns = Set(result.stdout.matches(of: /\/etc\/netns\/tvdemo-\d+-[a-z]+/).map { String($0.output) })
        #expect(netns.count == 2, "the demo gives the client and the LAN host their own resolv.conf")
        for dir in netns {
            #expect(!FileManager.default.fileExists(atPath: dir), "\(dir) is left")
        }

        let directory = try #require(result.stdout.firstMatch(of: /removed (\/\S*tunvpn-demo-\S+)/)).output.1
        #expect(!FileManager.default.fileExists(atPath: String(directory)), "\(directory) is left")
    }

    @Test func demoRefusesToRunWithoutRootInOneLine() throws {
        // A copy in a directory anyone may enter, since the build directory may sit under /root.
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let binary = dir.path + "/tunvpn"
        try FileManager.default.copyItem(atPath: TestBinaries.tunvpn, toPath: binary)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: dir.path)
        let result = try runCommand(
            "/usr/bin/env", ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", binary, "demo"])
        #expect(result.status == 1)
        #expect(
            result.stderr
                == "tunvpn: error: the demo creates network namespaces and needs root: run `sudo \(binary) demo`\n")
        #expect(result.stdout == "")
    }
}
