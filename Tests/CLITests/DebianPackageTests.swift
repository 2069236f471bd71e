// packaging/build-deb.sh, run on the debug binary the tests already have (a release build here would
// take too long), and the package it makes installed into a throwaway root with
// `dpkg --root DIR --force-script-chrootless`, so the postinst runs with DPKG_ROOT=DIR (dpkg(1)).
//
// What this proves: the script builds a package dpkg accepts; its file list, modes, owners and control
// fields are as packaging/README.md says; the completions and the man page are generated from the
// binary's help text; the maintainer scripts parse (sh -n) and, run by dpkg, create the system user
// tunvpn (no home, no login shell) and /etc/tunvpn once, also on a reinstall; a purge removes the files.
// What it does not: that the binary runs on a machine without Swift (this one links the Swift runtime;
// the release binary's check on a fresh Debian is written down in packaging/README.md), that apt
// resolves the Depends line, or that the systemd units start.

import Foundation
import Testing
import TestSupport

@Suite(.serialized) struct DebianPackageTests {
    /// The repository root (this file is Tests/CLITests/DebianPackageTests.swift).
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    @Test(.needsRoot("dpkg --root installs root-owned files and its postinst creates a user in that root"))
    func theScriptBuildsAPackageThatInstallsIntoAThrowawayRoot() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let arch = try runCommand("dpkg", ["--print-architecture"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let build = try runCommand(
            "bash",
            [
                Self.repo + "/packaging/build-deb.sh", "--binary", TestBinaries.tunvpn, "--allow-swift-runtime",
                "--version", "1.2.3~test", "--out", dir.path + "/out",
            ], timeout: 600)
        #expect(build.status == 0, "\(build.stderr)")
        let deb = dir.path + "/out/tunvpn_1.2.3~test_\(arch).deb"
        try #require(build.stdout.hasSuffix(deb + "\n"), "\(build.stdout)")

        // The file list: every file with its mode, all owned by root.
        let listing = try runCommand("dpkg-deb", ["--contents", deb])
        try #require(listing.status == 0, "\(listing.stderr)")
        var files: [String: String] = [:]
        for line in listing.stdout.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            #expect(fields[1] == "root/root", "\(line)")
            if fields[0].hasPrefix("-") { files[String(fields[5])] = String(fields[0]) }
        }
        let expected: [String: String] = [
            "./usr/bin/tunvpn": "-rwxr-xr-x",
            "./lib/systemd/system/tunvpn-server.service": "-rw-r--r--",
            "./lib/systemd/system/tunvpn-client@.service": "-rw-r--r--",
            "./usr/lib/sysusers.d/tunvpn.conf": "-rw-r--r--",
            "./usr/share/bash-completion/completions/tunvpn": "-rw-r--r--",
            "./usr/share/zsh/vendor-completions/_tunvpn": "-rw-r--r--",
            "./usr/share/fish/vendor_completions.d/tunvpn.fish": "-rw-r--r--",
            "./usr/share/man/man1/tunvpn.1.gz": "-rw-r--r--",
            "./usr/share/doc/tunvpn/README.md": "-rw-r--r--",
            "./usr/share/doc/tunvpn/README.packaging.md": "-rw-r--r--",
            "./usr/share/doc/tunvpn/changelog.gz": "-rw-r--r--",  // a native version: no "-REVISION"
            "./usr/share/doc/tunvpn/copyright": "-rw-r--r--",
            "./usr/share/doc/tunvpn/examples/README.md": "-rw-r--r--",
            "./usr/share/doc/tunvpn/examples/server.toml": "-rw-r--r--",
            "./usr/share/doc/tunvpn/examples/client.toml": "-rw-r--r--",
        ]
        #expect(files == expected)

        // The control file: Depends computed from the binary's libraries, plus the tools tunvpn runs.
        let field = { (name: String) throws -> String in
            try runCommand("dpkg-deb", ["--field", deb, name]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        #expect(try field("Package") == "tunvpn")
        #expect(try field("Version") == "1.2.3~test")
        #expect(try field("Architecture") == arch)
        #expect(try field("Section") == "net")
        #expect(try !field("Maintainer").isEmpty)
        #expect(try field("Description").hasPrefix("encrypted layer-3 VPN for Linux\n"))
        let depends = try field("Depends").components(separatedBy: ", ")
        #expect(depends.contains { $0.hasPrefix("libsodium23 (>= ") }, "\(depends)")
        #expect(depends.contains { $0.hasPrefix("libc6 (>= ") }, "\(depends)")
        #expect(depends.suffix(3) == ["iproute2", "nftables | iptables", "adduser"], "\(depends)")
        #expect(try field("Recommends") == "iputils-ping, python3, tcpdump, procps, dnsmasq-base, libpq5")

        // The maintainer scripts: executable, and valid sh.
        let control = dir.path + "/control"
        try #require(try runCommand("dpkg-deb", ["--control", deb, control]).status == 0)
        for script in ["postinst", "postrm"] {
            let mode = try FileManager.default.attributesOfItem(atPath: "\(control)/\(script)")[.posixPermissions] as? Int
            #expect(mode == 0o755, "\(script)")
            let check = try runCommand("sh", ["-n", "\(control)/\(script)"])
            #expect(check.status == 0, "\(script): \(check.stderr)")
        }

        // Install into an empty dpkg database under a throwaway root that has only root in its user files.
        let root = dir.path + "/root"
        for sub in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "etc"] {
            try FileManager.default.createDirectory(atPath: "\(root)/\(sub)", withIntermediateDirectories: true)
        }
        try "".write(toFile: root + "/var/lib/dpkg/status", atomically: false, encoding: .utf8)
        try "root:x:0:0:root:/root:/bin/sh\n".write(toFile: root + "/etc/passwd", atomically: false, encoding: .utf8)
        try "root:x:0:\n".write(toFile: root + "/etc/group", atomically: false, encoding: .utf8)
        let dpkg = { (arguments: [String]) throws -> CommandResult in
            try runCommand(
                "dpkg", ["--root=\(root)", "--force-script-chrootless", "--force-depends", "--log=/dev/null"] + arguments,
                timeout: 120)
        }
        for round in 1...2 {  // the second round is a reinstall over the first
            let install = try dpkg(["--install", deb])
            try #require(install.status == 0, "round \(round): \(install.stdout)\(install.stderr)")
            let passwd = try String(contentsOfFile: root + "/etc/passwd", encoding: .utf8)
                .split(separator: "\n").map { $0.split(separator: ":", omittingEmptySubsequences: false) }
            let users = passwd.filter { $0[0] == "tunvpn" }
            try #require(users.count == 1, "round \(round): \(passwd)")
            let user = users[0]
            let uid = Int(user[2]) ?? -1
            #expect(uid > 0 && uid < 1000, "a system user: \(user)")
            #expect(user[5] == "/" && user[6] == "/usr/sbin/nologin", "no home, no login: \(user)")
            let groups = try String(contentsOfFile: root + "/etc/group", encoding: .utf8)
                .split(separator: "\n").filter { $0.hasPrefix("tunvpn:") }
            #expect(groups.count == 1 && groups[0].split(separator: ":")[2] == user[3], "\(groups)")
            for path in ["/etc/tunvpn", "/etc/tunvpn/keys"] {
                let attributes = try FileManager.default.attributesOfItem(atPath: root + path)
                #expect(attributes[.posixPermissions] as? Int == 0o750, "\(path)")
                #expect(attributes[.ownerAccountID] as? Int == 0, "\(path)")
                #expect((attributes[.groupOwnerAccountID] as? Int).map(String.init) == String(user[3]), "\(path)")
            }
        }

        // What was installed: the binary answers, the units start the packaged path, the completions and
        // the man page describe this binary's commands.
        let help = try runCommand(root + "/usr/bin/tunvpn", ["--help"])
        #expect(help.status == 0 && help.stdout.contains("USAGE: tunvpn <subcommand>"), "\(help.stdout)\(help.stderr)")
        let server = try String(contentsOfFile: root + "/lib/systemd/system/tunvpn-server.service", encoding: .utf8)
        #expect(server.contains("\nExecStart=/usr/bin/tunvpn server --config /etc/tunvpn/server.toml\n"))
        #expect(!server.contains("/usr/local/bin"))
        let bash = try String(contentsOfFile: root + "/usr/share/bash-completion/completions/tunvpn", encoding: .utf8)
        #expect(!bash.hasPrefix("#!") && bash.contains("complete -o filenames -F _tunvpn tunvpn"), "\(bash.prefix(200))")
        let zsh = try String(contentsOfFile: root + "/usr/share/zsh/vendor-completions/_tunvpn", encoding: .utf8)
        #expect(zsh.hasPrefix("#compdef tunvpn"))
        let fish = try String(contentsOfFile: root + "/usr/share/fish/vendor_completions.d/tunvpn.fish", encoding: .utf8)
        #expect(fish.contains("complete -c 'tunvpn' -n '__tunvpn_should_offer_completions_for_flags_or_options \"tunvpn demo\" verbose' -l 'verbose'"))
        let man = try runCommand("gzip", ["-dc", root + "/usr/share/man/man1/tunvpn.1.gz"])
        #expect(man.stdout.contains(".Dt TUNVPN 1") && man.stdout.contains(".Nm tunvpn"))
        for command in ["server", "client", "keygen", "demo"] {
            #expect(bash.contains(command) && man.stdout.contains(".It Em \(command)"), "\(command)")
        }

        // A purge removes the files and the then empty /etc/tunvpn; the user stays (as Debian keeps system users).
        let purge = try dpkg(["--purge", "tunvpn"])
        #expect(purge.status == 0, "\(purge.stdout)\(purge.stderr)")
        for path in ["/usr/bin/tunvpn", "/lib/systemd/system/tunvpn-server.service", "/etc/tunvpn"] {
            #expect(!FileManager.default.fileExists(atPath: root + path), "\(path)")
        }
        #expect(try String(contentsOfFile: root + "/etc/passwd", encoding: .utf8).contains("\ntunvpn:"))
    }

    @Test func theScriptRefusesABinaryThatNeedsTheSwiftRuntime() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let r = try runCommand(
            "bash", [Self.repo + "/packaging/build-deb.sh", "--binary", TestBinaries.tunvpn, "--out", dir.path])
        #expect(r.status == 1)
        #expect(
            r.stderr.hasPrefix("build-deb.sh: \(TestBinaries.tunvpn) needs the Swift runtime (libswift"), "\(r.stderr)")
        #expect(r.stderr.hasSuffix("build it with --static-swift-stdlib, or pass --allow-swift-runtime for a test package\n"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).isEmpty)
    }
}
