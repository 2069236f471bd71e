// Every mistake gets a precise answer: one `tunvpn: error: …` line naming the option or file at fault, exit
// status 64 for the command line's mistakes and 1 for failures while running (the root command's help says
// so), a range error for `--mtu -5`, key files given for the wrong option refused, and a missing privilege
// named as such before anything else can fail for it.

import ArgumentParser
import Control
import Crypto
import Foundation
import Platform
import Testing
import TestSupport

@testable import tunvpn

@Suite struct OptionAnswerTests {
    @Test func negativeNumbersGetTheRangeErrorNotMissingValue() {
        #expect(serverError(["--mtu", "-5"]) == "--mtu -5 is out of range: give 576 to 9000 bytes (1280 or more for IPv6), e.g. --mtu 1420")
        #expect(serverError(["--mtu", "100"]) == "--mtu 100 is out of range: give 576 to 9000 bytes (1280 or more for IPv6), e.g. --mtu 1420")
        #expect(serverError(["--txqueuelen", "-1"]) == "--txqueuelen -1 is out of range: give 16 to 100000 packets, e.g. --txqueuelen 1000")
        #expect(clientError(["--keepalive", "0"]) == "--keepalive 0 is out of range: give 1 to 65535 seconds, e.g. --keepalive 25")
        #expect(clientError(["--keepalive", "-5"]) == "The value '-5' is invalid for '--keepalive <SECONDS>'")
        #expect(serverError(["--mtu", "1380"]) == nil)
    }

    @Test func choicesAreListedAndDeviceNamesAreCheckedBeforeAnythingRuns() {
        #expect(
            serverError(["--log-level", "verbose"])
                == "unknown --log-level 'verbose': give one of trace, debug, info, notice, warning, error, critical, e.g. --log-level debug")
        #expect(serverError(["--firewall", "pf"]) == "--firewall 'pf' is not a backend: give nftables or iptables, e.g. --firewall nftables")
        // The name check is part of parsing, so --dry-run and the NAT preflight never see a bad name.
        #expect(
            serverError(["--dev", "uxtun_this_is_way_too_long", "--dry-run"])
                == "--dev 'uxtun_this_is_way_too_long' is 26 bytes long, the limit for an interface name is 15 (IFNAMSIZ - 1); e.g. --dev tun0")
        #expect(serverError(["--dev", "", "--dry-run"]) == "--dev is empty: give an interface name, e.g. --dev tun0")
        #expect(clientError(["--dev", "sixteen-chars-xx"])?.hasPrefix("--dev 'sixteen-chars-xx' is 16 bytes long") == true)
        #expect(serverError(["--egress", "a b"]) == "--egress 'a b' is not an interface name: use 1 to 15 of the characters A-Z a-z 0-9 _ . -, e.g. --egress eth0")
    }

    @Test func anIPv4NetworkOrBroadcastAddressIsNotTheServersAddress() {
        #expect(
            serverError(["--address", "10.9.0.0/24"])
                == "--address '10.9.0.0/24' is the prefix's own network address; give the server a host address in it, like 10.9.0.1/24")
        #expect(
            serverError(["--address", "10.9.0.255/24"])
                == "--address '10.9.0.255/24' is the prefix's own broadcast address; give the server a host address in it, like 10.9.0.1/24")
        #expect(serverError(["--address", "10.9.0.1/24"]) == nil)
    }

    @Test func metricsTakeHostNamesAsEndpointDoes() {
        #expect(serverError(["--metrics", "localhost:9586"]) == nil)
        #expect(clientError(["--metrics", "mon.example:9586"]) == nil)
        #expect(clientError(["--endpoint", "localhost:51820"]) == nil)
    }

    @Test func aMissingPrivilegeIsNamedAsSuch() {
        let admin = Privileges.netAdminMask
        #expect(missingPrivilegeProblem(command: "tunvpn server", effectiveCapabilities: admin, euid: 1000, user: "alice") == nil)
        #expect(
            missingPrivilegeProblem(command: "tunvpn server", effectiveCapabilities: 0, euid: 1000, user: "alice")
                == "tunvpn server needs root or CAP_NET_ADMIN to open the TUN device and change routes and firewall rules, and runs as alice (uid 1000) without CAP_NET_ADMIN; run it as root (sudo tunvpn server ...) or give it CAP_NET_ADMIN (systemd's AmbientCapabilities=CAP_NET_ADMIN, or `setcap cap_net_admin+ep`); --dry-run needs neither"
        )
        let rootWithout = missingPrivilegeProblem(command: "tunvpn client", effectiveCapabilities: ~admin, euid: 0, user: "root")
        #expect(rootWithout?.contains("runs as root without CAP_NET_ADMIN (a container or `capsh --drop` removed it)") == true)
    }
}

/// The help texts: examples on one line each at 80 columns, placeholders in one style (upper case), and the
/// root command's help documents the error style and the exit statuses.
@Suite struct HelpTextTests {
    static var commands: [any ParsableCommand.Type] { TunVPN.configuration.subcommands + [TunVPN.self] }

    @Test func everyExampleIsOneLineOfTheHelpAtEightyColumns() {
        for command in Self.commands {
            let help = command.helpMessage(columns: 80)
            let lines = Set(help.split(separator: "\n", omittingEmptySubsequences: false).map(String.init))
            for line in command.configuration.discussion.split(separator: "\n").map(String.init) where line.hasPrefix("  ") {
                #expect(line.count <= 79, "\(command._commandName): \(line)")
                #expect(lines.contains(line), "\(command._commandName): an example is wrapped: \(line)")
            }
            // A blank line sets the examples apart from the text above them.
            if let range = help.range(of: "Example") {
                #expect(help[..<range.lowerBound].hasSuffix("\n\n"), "\(command._commandName)")
            }
        }
    }

    @Test func placeholdersAreUpperCase() throws {
        let placeholder = try Regex(#"<([^>]+)>"#)
        for command in Self.commands {
            for match in command.helpMessage(columns: 200).matches(of: placeholder) {
                let name = String(match.output[1].substring ?? "")
                // `<subcommand>` and `<options>` are ArgumentParser's own words for the usage line.
                guard !["subcommand", "options"].contains(name) else { continue }
                #expect(name == name.uppercased(), "\(command._commandName): <\(name)>")
            }
        }
    }

    @Test func theRootHelpDocumentsTheErrorStyleAndExitStatuses() {
        // Paragraphs are wrapped to the width: read them as one line.
        let help = TunVPN.helpMessage(columns: 80).replacingOccurrences(of: "\n", with: " ")
        #expect(help.contains("every error is one line on stderr, `tunvpn: error: WHAT: WHY; WHAT TO DO`"))
        #expect(help.contains("Exit status: 0 success; 64 (EX_USAGE) the command line or its --config file is wrong"))
        #expect(help.contains("1 a failure while running"))
        #expect(!help.contains("--allow-any-client"), "the quick start admits clients by their keys")
    }

    @Test func theReadmeQuickStartDoesNotSuggestAllowAnyClient() throws {
        let readme = try String(contentsOfFile: ConfigFileTests.repository + "/README.md", encoding: .utf8)
        for heading in ["## Quick start", "## Using it"] {
            let start = try #require(readme.range(of: heading + "\n"), "\(heading)")
            let rest = readme[start.upperBound...]
            // Up to the next heading (in "Using it", the options table under "### Options" lists the flag).
            let end = ["\n## ", "\n### "].compactMap { rest.range(of: $0)?.lowerBound }.min() ?? rest.endIndex
            let section = rest[..<end]
            #expect(section.contains("tunvpn server") || heading == "## Quick start", "\(heading)")
            #expect(!section.contains("--allow-any-client"), "\(heading)")
        }
        #expect(readme.contains("exit status 64"), "the README names the exit statuses too")
    }
}

/// The built binary: one error style and exit status across commands, and answers that name the right thing.
@Suite struct ErrorAnswerBinaryTests {
    /// A directory with keys/: server and client key pairs (fixed keys whose public keys do not look
    /// clamped), the client's public key on the allow-list.
    func keysDirectory() throws -> TemporaryDirectory {
        let dir = try TemporaryDirectory()
        try FileManager.default.createDirectory(atPath: dir.path + "/keys", withIntermediateDirectories: false)
        var random = SeededRandom(seed: 21)
        for name in ["server", "client"] {
            let key = KeyFileTests.keyWithUnclampedPublicKey(&random)
            try KeyFiles.write(key.base64 + "\n", to: dir.path + "/keys/\(name).key", mode: 0o600, overwrite: false)
            try KeyFiles.write(key.publicKey.base64 + "\n", to: dir.path + "/keys/\(name).pub", mode: 0o644, overwrite: false)
        }
        try FileManager.default.copyItem(atPath: dir.path + "/keys/client.pub", toPath: dir.path + "/keys/clients")
        return dir
    }

    /// Runs `PREFIX… tunvpn ARGUMENTS…` in `directory`, inside a throwaway namespace; `binary` instead of the
    /// built one when given.
    func tunvpn(_ arguments: [String], in directory: String, as prefix: [String] = [], binary: String = TestBinaries.tunvpn) throws
        -> CommandResult
    {
        let topology = try Topology(hosts: ["H"]) { _ in [] }
        defer { topology.close() }
        return try topology["H"].exec(["env", "-C", directory] + prefix + [binary] + arguments)
    }

    @Test func usageErrorsAreOneLineWithStatus64AndNoUsageBlock() throws {
        for arguments in [["server", "--mtu", "-5"], ["client", "--peer-key", "k"], ["server", "--lisen", "1"], ["reload", "--pid", "x"]] {
            let r = try runCommand(TestBinaries.tunvpn, arguments)
            #expect(r.status == 64, "\(arguments): \(r)")
            #expect(r.stdout == "")
            #expect(r.stderr.hasPrefix("tunvpn: error: ") && r.stderr.filter { $0 == "\n" }.count == 1, "\(arguments): \(r.stderr)")
            #expect(!r.stderr.contains("USAGE") && !r.stderr.contains("See '"), "\(r.stderr)")
        }
        let help = try runCommand(TestBinaries.tunvpn, ["server", "--help"])
        #expect(help.status == 0 && help.stdout.contains("USAGE: tunvpn server"))
    }

    @Test(.needsRoot("runs tunvpn inside a throwaway network namespace"))
    func runtimeErrorsHaveStatus1AndTheBadNameIsRefusedBeforeAnyPreflight() throws {
        let dir = try keysDirectory()
        defer { dir.remove() }
        let missing = try tunvpn(["server", "--key", "keys/none.key", "--dry-run", "--egress", "lo"], in: dir.path)
        // A relative path names the directory it was looked for in.
        #expect(missing.status == 1, "\(missing)")
        #expect(missing.stderr.hasPrefix("tunvpn: error: keys/none.key: private key file not found (relative to the working directory /"), "\(missing)")
        #expect(missing.stderr.hasSuffix("\(URL(fileURLWithPath: dir.path).lastPathComponent))\n"), "\(missing)")
        let long = try tunvpn(["server", "--dev", "uxtun_this_is_way_too_long", "--dry-run"], in: dir.path)
        #expect(
            long.status == 64 && long.stdout == ""
                && long.stderr
                    == "tunvpn: error: --dev 'uxtun_this_is_way_too_long' is 26 bytes long, the limit for an interface name is 15 (IFNAMSIZ - 1); e.g. --dev tun0\n",
            "\(long)")
    }

    @Test(.needsRoot("runs tunvpn inside a throwaway network namespace"))
    func keyFilesGivenForTheWrongOptionAreRefusedNamingTheFile() throws {
        let dir = try keysDirectory()
        defer { dir.remove() }
        // The server's public key, made private-looking by its mode, as --key.
        chmod(dir.path + "/keys/server.pub", 0o600)
        let server = try tunvpn(["server", "--key", "keys/server.pub", "--dry-run", "--egress", "lo"], in: dir.path)
        #expect(server.status == 1, "\(server)")
        #expect(
            server.stderr
                == "tunvpn: error: keys/server.pub: this looks like a public key: private keys made by `tunvpn keygen` or `wg genkey` are clamped (RFC 7748) and this one is not; give the private key file (e.g. keys/server.key), or make one with `tunvpn keygen`\n"
        )
        // A private key as --peer-key (RFC 7748's Bob, clamped: not a point a private key derives).
        var bob = try Hex.bytes("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
        bob[0] &= 248
        bob[31] = (bob[31] & 127) | 64
        try KeyFiles.write(Base64.encode(bob) + "\n", to: dir.path + "/keys/bob.key", mode: 0o600, overwrite: false)
        let client = try tunvpn(["client", "--peer-key", "keys/bob.key", "--endpoint", "192.0.2.1:51820", "--dry-run"], in: dir.path)
        #expect(client.status == 1, "\(client)")
        #expect(client.stderr.hasPrefix("tunvpn: error: keys/bob.key: this looks like a private key, not a public one"), "\(client)")
        #expect(client.stderr.contains("give the peer's public key file (e.g. keys/bob.pub)"))
        // A missing psk is a psk file.
        let psk = try tunvpn(["server", "--psk", "nosuch.psk", "--dry-run", "--egress", "lo"], in: dir.path)
        #expect(psk.status == 1 && psk.stderr.hasPrefix("tunvpn: error: nosuch.psk: psk file not found (relative to the working directory /"), "\(psk)")
    }

    @Test(.needsRoot("runs tunvpn as nobody inside a throwaway network namespace"))
    func runningWithoutPrivilegesSaysExactlyThat() throws {
        let dir = try keysDirectory()
        defer { dir.remove() }
        // A copy in a directory anyone may enter, since the build directory may sit under /root.
        let binary = dir.path + "/tunvpn"
        try FileManager.default.copyItem(atPath: TestBinaries.tunvpn, toPath: binary)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: dir.path)
        let nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        let user = Privileges.Account.withID(65534).name
        for command in ["server", "client"] {
            let extra = command == "client" ? ["--peer-key", "keys/server.pub", "--endpoint", "192.0.2.1:51820"] : []
            let r = try tunvpn([command] + extra, in: dir.path, as: nobody, binary: binary)
            #expect(r.status == 1, "\(r)")
            #expect(
                r.stderr.hasPrefix(
                    "tunvpn: error: tunvpn \(command) needs root or CAP_NET_ADMIN to open the TUN device and change routes and firewall rules, and runs as \(user) (uid 65534) without CAP_NET_ADMIN;"
                ), "\(r)")
        }
        // Root without CAP_NET_ADMIN (dropped from the inheritable and bounding sets before exec).
        let dropped = ["setpriv", "--inh-caps=-net_admin", "--bounding-set=-net_admin"]
        let root = try tunvpn(["server", "--egress", "lo"], in: dir.path, as: dropped, binary: binary)
        #expect(root.status == 1 && root.stderr.contains("runs as root without CAP_NET_ADMIN"), "\(root)")
        // The same unprivileged run with --dry-run only prints the plan.
        let dry = try tunvpn(["client", "--peer-key", "keys/server.pub", "--endpoint", "192.0.2.1:51820", "--dry-run"], in: dir.path, as: nobody, binary: binary)
        #expect(!dry.stderr.contains("CAP_NET_ADMIN"), "\(dry)")
        for command in ["reload", "down"] {
            let r = try tunvpn([command], in: dir.path, as: nobody, binary: binary)
            #expect(r.status == 1, "\(r)")
            #expect(r.stderr.hasPrefix("tunvpn: error: tunvpn \(command) needs root: "), "\(r)")
            #expect(r.stderr.hasSuffix("which \(user) (uid 65534) cannot use; run `sudo tunvpn \(command)`\n"), "\(r)")
        }
    }
}
