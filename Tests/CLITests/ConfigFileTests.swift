// `--config FILE`: the TOML → arguments conversion, command-line overrides, every error with its exact
// line, the key tables against the commands' real options, and the example files in config/ run
// through the real binary with --dry-run inside a throwaway network namespace.
//
//   root namespace (untouched)        tv<pid>n<k>H (one per test that runs the binary)
//   ──────────────────────────        ──────────────────────────────────────────────
//   test process                      lo up; tunvpn … --dry-run (prints its plan, changes nothing)

import ArgumentParser
import Foundation
import Testing
import TestSupport

@testable import Control
@testable import tunvpn

@Suite struct ConfigFileTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    var server: ConfigSchema { ConfigSchema(Server.self) }
    var client: ConfigSchema { ConfigSchema(Client.self) }

    /// The arguments `text` gives for `schema`'s command.
    func arguments(_ text: String, _ schema: ConfigSchema) throws -> [String] {
        try ConfigFile.settings(fromTOML: text, file: "t.toml", for: schema).flatMap(\.arguments)
    }

    /// The one-line error `text` gives, or nil if it is accepted.
    func error(_ text: String, _ schema: ConfigSchema, file: String = "t.toml") -> String? {
        do {
            _ = try ConfigFile.settings(fromTOML: text, file: file, for: schema)
            return nil
        } catch {
            return error.description
        }
    }

    // MARK: The key tables

    @Test func theServerKeysAreItsLongOptionNamesWithNoXFlagsAsX() {
        #expect(
            server.keyNames == [
                "address", "allow-any-client", "clients", "crypto-provider", "dev", "dns", "dns-search", "dry-run", "egress", "firewall", "ipv6", "key",
                "listen", "log-level", "metrics", "mtu", "nat", "offload", "protocol", "psk", "registry", "registry-cache",
                "registry-password-file", "suite", "txqueuelen", "user",
            ])
    }

    @Test func theClientKeysAreItsLongOptionNamesWithNoXFlagsAsX() {
        #expect(
            client.keyNames == [
                "address", "crypto-provider", "dev", "dns", "dry-run", "endpoint", "failover-after", "firewall", "gateway", "ipv6", "keepalive", "key", "lockdown", "log-level",
                "metrics", "mtu", "no-dns", "offload", "peer-key", "peer-public-key", "preshared-key", "private-key", "protocol", "psk", "route",
                "routes", "suite", "txqueuelen", "user",
            ])
    }

    @Test func hiddenOptionsAreNotKeys() {
        #expect(error("timer-scale = 2", server)?.hasPrefix("t.toml:1: key 'timer-scale': not an option of tunvpn server") == true)
    }

    @Test func onlyServerAndClientTakeConfigFiles() {
        #expect(ConfigFile.configurableCommands().map { CommandDump($0).commandName } == ["server", "client"])
    }

    /// Every option of the real commands has a key and a value type, and every key is a real option:
    /// the derived table cannot drift from the commands.
    @Test(arguments: ["server", "client"])
    func everyOptionInHelpHasAKeyWithAKnownValueType(command: String) throws {
        let type: any ParsableCommand.Type = command == "server" ? Server.self : Client.self
        let schema = ConfigSchema(type)
        #expect(schema.untyped.isEmpty, "options whose value type Mirror did not find: \(schema.untyped)")
        // With wide columns every option is one line: "  -h, --help   Show help information."
        // Hidden options (test hooks) are not keys.
        let help = type.helpMessage(includeHidden: false, columns: 1000)
        var helpNames: Set<String> = []
        for line in help.split(separator: "\n") where line.hasPrefix("  -") {
            for token in line.split(separator: " ").map({ $0.trimmingCharacters(in: [","]) }) {
                guard token.hasPrefix("-") else { break }
                if token.hasPrefix("--") { helpNames.insert(String(token.dropFirst(2))) }
            }
        }
        // A --no-X flag is the key X, unless X is also an option (the client's --dns and --no-dns).
        let expected = helpNames.subtracting(["help", "config"]).map {
            $0.hasPrefix("no-") && !helpNames.contains(String($0.dropFirst(3))) ? String($0.dropFirst(3)) : $0
        }
        #expect(Set(expected) == Set(schema.keyNames))
        for (name, key) in schema.keys {
            switch key.shape {
            case .option(let flag, _, _): #expect(helpNames.contains(String(flag.dropFirst(2))), "\(name)")
            case .flag(let whenTrue, let whenFalse):
                #expect(whenTrue != nil || whenFalse != nil)
                for flag in [whenTrue, whenFalse].compactMap({ $0 }) { #expect(helpNames.contains(String(flag.dropFirst(2)))) }
            }
        }
    }

    @Test func valueTypesComeFromTheOptionsSwiftTypes() throws {
        func type(_ schema: ConfigSchema, _ key: String) -> ValueType? {
            guard case .option(_, let value, _) = schema.keys[key]?.shape else { return nil }
            return value
        }
        #expect(type(server, "mtu")?.kind == .integer)
        #expect(type(server, "mtu")?.typeName == "Int")
        #expect(type(client, "keepalive")?.typeName == "UInt64")
        #expect(type(client, "route")?.kind == .string)
        #expect(type(server, "listen")?.kind == .string)
        guard case .option(_, _, let repeating) = try #require(client.keys["route"]).shape else {
            Issue.record("route is an option")
            return
        }
        #expect(repeating)
    }

    /// The options that name files are exactly those whose help mentions a file, so a new one cannot be
    /// left out of `pathOptions` (and so read from the working directory in a config file) unnoticed.
    @Test(arguments: ["server", "client"])
    func thePathOptionsAreTheOptionsWhoseHelpNamesAFile(command: String) {
        let type: any ParsableCommand.Type = command == "server" ? Server.self : Client.self
        let schema = ConfigSchema(type)
        var namingFiles: Set<String> = []
        for argument in CommandDump(type).arguments where argument.kind == "option" && argument.abstract.lowercased().contains("file") {
            namingFiles.formUnion(argument.names.filter { $0.kind == "long" }.map(\.name))
        }
        namingFiles.remove("config")
        #expect(Set(schema.keys.values.filter(\.isPath).map(\.key)) == namingFiles)
        #expect(namingFiles.isSubset(of: ConfigSchema.pathOptions))
    }

    @Test func aRelativePathInTheFileIsTakenFromItsDirectoryAndOnTheCommandLineFromTheWorkingDirectory() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try FileManager.default.createDirectory(atPath: dir.path + "/site", withIntermediateDirectories: true)
        let file = dir.path + "/site/c.toml"
        try "peer-key = \"/srv/server.pub\"\nkey = \"client.key\"\nendpoint = \"203.0.113.7:51820\"\n"
            .write(toFile: file, atomically: false, encoding: .utf8)
        #expect(
            try ConfigFile.expand(["client", "--config", file])
                == ["client", "--peer-key=/srv/server.pub", "--key=\(dir.path)/site/client.key", "--endpoint=203.0.113.7:51820", "--config", file])
        #expect(
            try ConfigFile.expand(["client", "--config", file, "--key", "keys/mine.key"])
                == ["client", "--peer-key=/srv/server.pub", "--endpoint=203.0.113.7:51820", "--config", file, "--key", "keys/mine.key"])
    }

    @Test func propertyNamesBecomeArgumentParsersLongNames() {
        #expect(ValueTypes.longName("logLevel") == "log-level")
        #expect(ValueTypes.longName("peerKey") == "peer-key")
        #expect(ValueTypes.longName("allowAnyClient") == "allow-any-client")
        #expect(ValueTypes.longName("mtu") == "mtu")
        #expect(ValueTypes.longName("udpGROBuffer") == "udp-gro-buffer")
    }

    @Test func theConfigReadmeNamesEveryKey() throws {
        let readme = try String(contentsOfFile: Self.repository + "/config/README.md", encoding: .utf8)
        for key in Set(server.keyNames + client.keyNames) {
            #expect(readme.contains("| `\(key)` |"), "config/README.md does not list '\(key)'")
        }
    }

    // MARK: Conversion

    @Test func optionsBecomeNameEqualsValueAndNumbersTheirDecimalText() throws {
        let text = """
            key = "/etc/tunvpn/server.key"
            mtu = 1380
            log-level = "debug"
            dev = "-odd"
            """
        #expect(
            try arguments(text, server) == ["--key=/etc/tunvpn/server.key", "--mtu=1380", "--log-level=debug", "--dev=-odd"])
    }

    @Test func flagsAreTrueAndNoXFlagsAreXFalse() throws {
        #expect(try arguments("allow-any-client = true\nnat = false\noffload = false\ndry-run = true", server) == [
            "--allow-any-client", "--no-nat", "--no-offload", "--dry-run",
        ])
        // The other value is the default: nothing to pass.
        #expect(try arguments("allow-any-client = false\nnat = true\noffload = true", server) == [])
        #expect(try arguments("routes = false\ngateway = true", client) == ["--no-routes", "--gateway"])
        #expect(try arguments("ipv6 = false", client) == ["--no-ipv6"])
        #expect(try arguments("ipv6 = false", server) == ["--no-ipv6"])
        #expect(error("no-ipv6 = true", server) == "t.toml:1: key 'no-ipv6': write 'ipv6 = false' for --no-ipv6")
    }

    @Test func theServersAddressTakesOnePrefixOrAListOfBothFamilies() throws {
        #expect(try arguments(#"address = "10.9.0.1/16""#, server) == ["--address=10.9.0.1/16"])
        #expect(try arguments(#"address = ["10.9.0.1/16", "fd00:9::1/64"]"#, server) == [
            "--address=10.9.0.1/16", "--address=fd00:9::1/64",
        ])
        #expect(try arguments(#"route = ["10.0.0.0/8", "2001:db8::/32"]"#, client) == ["--route=10.0.0.0/8", "--route=2001:db8::/32"])
    }

    @Test func arraysRepeatAnOptionAndAStringIsOneValue() throws {
        #expect(try arguments(#"route = ["10.0.0.0/8", "192.168.0.0/16"]"#, client) == [
            "--route=10.0.0.0/8", "--route=192.168.0.0/16",
        ])
        #expect(try arguments(#"suite = "chacha20poly1305""#, client) == ["--suite=chacha20poly1305"])
        #expect(try arguments("route = []", client) == [])
    }

    @Test func settingsFollowTheFilesOrder() throws {
        #expect(try arguments("mtu = 1300\ndev = \"tun7\"\nallow-any-client = true", server) == [
            "--mtu=1300", "--dev=tun7", "--allow-any-client",
        ])
    }

    // MARK: Overrides

    func expanded(_ toml: String, _ arguments: [String]) throws -> [String] {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try toml.write(toFile: dir.path + "/c.toml", atomically: false, encoding: .utf8)
        let out = try ConfigFile.expand(arguments.map { $0.replacingOccurrences(of: "FILE", with: dir.path + "/c.toml") })
        return out.map { $0.replacingOccurrences(of: dir.path + "/c.toml", with: "FILE") }
    }

    @Test func theFilesArgumentsGoBeforeTheUsersAndTheUsersOptionsDropTheFiles() throws {
        let toml = "mtu = 1300\ndev = \"tun7\"\nnat = false\n"
        #expect(try expanded(toml, ["server", "--config", "FILE"]) == ["server", "--mtu=1300", "--dev=tun7", "--no-nat", "--config", "FILE"])
        #expect(try expanded(toml, ["server", "--mtu", "1400", "--config=FILE", "--no-nat"]) == [
            "server", "--dev=tun7", "--mtu", "1400", "--config=FILE", "--no-nat",
        ])
        #expect(try expanded(toml, ["server", "--config", "FILE", "--mtu=1400"]) == [
            "server", "--dev=tun7", "--no-nat", "--config", "FILE", "--mtu=1400",
        ])
    }

    @Test func aRepeatableOptionOnTheCommandLineReplacesTheFilesList() throws {
        let toml = #"route = ["10.0.0.0/8", "192.168.0.0/16"]"# + "\nmtu = 1300\n"
        #expect(try expanded(toml, ["client", "--config", "FILE", "--route", "172.16.0.0/12"]) == [
            "client", "--mtu=1300", "--config", "FILE", "--route", "172.16.0.0/12",
        ])
    }

    @Test func withoutConfigOrForOtherCommandsTheArgumentsAreUnchanged() throws {
        #expect(try ConfigFile.expand(["server", "--mtu", "1400"]) == ["server", "--mtu", "1400"])
        #expect(try ConfigFile.expand(["keygen", "--config", "x.toml"]) == ["keygen", "--config", "x.toml"])
        // After `--` nothing is an option.
        #expect(try ConfigFile.expand(["server", "--", "--config", "x.toml"]) == ["server", "--", "--config", "x.toml"])
        // A missing value is left for ArgumentParser to report.
        #expect(try ConfigFile.expand(["server", "--config"]) == ["server", "--config"])
    }

    /// ArgumentParser keeps the last of repeated single-value options and accepts repeated flags, so
    /// even a value the merge left in twice would resolve to the user's.
    @Test func argumentParserKeepsTheLastValueOfARepeatedOption() throws {
        let parsed = try Server.parse(["--mtu=1300", "--dev=tun7", "--mtu", "1400", "--no-nat", "--no-nat"])
        #expect(parsed.common.mtu == 1400)
        #expect(parsed.common.dev == "tun7")
        #expect(parsed.noNat)
    }

    // MARK: Errors, one line each, with the line of the key

    @Test func aValueOfTheWrongTypeNamesTheLineAndKey() {
        #expect(error("dev = \"tun1\"\n\nmtu = \"big\"\n", server) == #"t.toml:3: key 'mtu': expected an integer, not a string ("big")"#)
        #expect(error("# c\nroutes = 3", client) == "t.toml:2: key 'routes': expected true or false, not an integer (3)")
        #expect(error("dev = 7", server) == "t.toml:1: key 'dev': expected a string, not an integer (7)")
        #expect(error("mtu = 1400.5", server) == "t.toml:1: key 'mtu': expected an integer, not a floating-point number (1400.5)")
        #expect(error("nat = \"no\"", server) == #"t.toml:1: key 'nat': expected true or false, not a string ("no")"#)
        #expect(error("mtu = [1400]", server) == "t.toml:1: key 'mtu': expected an integer, not an array (--mtu is given once)")
        #expect(error("route = 10", client) == "t.toml:1: key 'route': expected a string or an array of them, not an integer (10)")
        #expect(
            error("route = [\"10.0.0.0/8\",\n  5]", client) == "t.toml:1: key 'route': element 2: expected a string, not an integer (5)")
        #expect(error("keepalive = -5", client) == "t.toml:1: key 'keepalive': -5 is out of range for --keepalive (UInt64)")
        #expect(error("[mtu]\nx = 1", server) == "t.toml:1: key 'mtu': expected an integer, not a table")
        #expect(error("mtu.x = 1", server) == "t.toml:1: key 'mtu': expected an integer, not a table")
        #expect(error("  \"mtu\" = \"big\"", server) == #"t.toml:1: key 'mtu': expected an integer, not a string ("big")"#)
    }

    @Test func anUnknownKeyNamesTheLineAndTheKnownKeys() {
        #expect(
            error("mtu = 1400\ncolour = \"blue\"", client)
                == "t.toml:2: key 'colour': not an option of tunvpn client (keys: address, crypto-provider, dev, dns, dry-run, endpoint, failover-after, firewall, gateway, ipv6, keepalive, key, lockdown, log-level, metrics, mtu, no-dns, offload, peer-key, peer-public-key, preshared-key, private-key, protocol, psk, route, routes, suite, txqueuelen, user)"
        )
        // A client-only key in a server file.
        #expect(error("\n\nendpoint = \"a:1\"", server)?.hasPrefix("t.toml:3: key 'endpoint': not an option of tunvpn server (keys: ") == true)
        #expect(error("no-routes = true", client) == "t.toml:1: key 'no-routes': write 'routes = false' for --no-routes")
        #expect(error("config = \"other.toml\"", client) == "t.toml:1: key 'config': a config file cannot name another one; remove this key")
        #expect(error("help = true", client)?.hasPrefix("t.toml:1: key 'help': not an option of tunvpn client") == true)
    }

    @Test func theFirstBadKeyInTheFileIsReported() {
        #expect(error("zeta = 1\nalpha = 2", client)?.hasPrefix("t.toml:1: key 'zeta':") == true)
    }

    @Test func invalidTOMLNamesTheLineAndColumn() {
        #expect(
            error("mtu = 1400\nsuite = [\n", client) == "t.toml:2: invalid TOML at column 11: Error while parsing array: encountered end-of-file")
        #expect(
            error("mtu = 1400\nmtu = 1300\n", client)
                == "t.toml:2: invalid TOML at column 7: Error while parsing key-value pair: cannot redefine existing integer 'mtu'")
        #expect(error("dev = tun0\n", client) == "t.toml:1: invalid TOML at column 8: Error while parsing boolean: expected 'true', saw 'tu'")
    }

    @Test func configGivenTwiceIsRefused() {
        #expect(throws: ConfigFileError(file: "b.toml", line: nil, key: nil, problem: "--config given more than once; pass one file")) {
            try ConfigFile.configPath(in: ["--config", "a.toml", "--config=b.toml"])
        }
    }

    // MARK: The binary

    /// A directory with keys from `tunvpn keygen --name server` and `--name client`, the client's
    /// public key on the allow-list, and config/*.toml copied in beside keys/ (as in /etc/tunvpn).
    func keysDirectory() throws -> TemporaryDirectory {
        let dir = try TemporaryDirectory()
        for name in ["server", "client"] {
            let r = try runCommand(TestBinaries.tunvpn, ["keygen", "--out", dir.path + "/keys", "--name", name])
            #expect(r.status == 0, "\(r.stderr)")
        }
        let clientKey = try String(contentsOfFile: dir.path + "/keys/client.pub", encoding: .utf8)
        try clientKey.write(toFile: dir.path + "/keys/clients", atomically: false, encoding: .utf8)
        for file in ["server.toml", "client.toml"] {
            try FileManager.default.copyItem(atPath: Self.repository + "/config/" + file, toPath: dir.path + "/" + file)
        }
        return dir
    }

    /// Runs `tunvpn arguments…` in `directory`, inside a throwaway namespace.
    func tunvpn(_ arguments: [String], in directory: String) throws -> CommandResult {
        let topology = try Topology(hosts: ["H"]) { _ in [] }
        defer { topology.close() }
        return try topology["H"].exec(["env", "-C", directory, TestBinaries.tunvpn] + arguments)
    }

    @Test(.needsRoot("runs tunvpn inside a throwaway network namespace")) func theExampleServerFileWorksAsItIs() throws {
        let dir = try keysDirectory()
        defer { dir.remove() }
        let r = try tunvpn(["server", "--config", "server.toml", "--dry-run", "--egress", "lo"], in: dir.path)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.hasPrefix("ip addr add 10.8.0.1/16 dev tun0\nip link set tun0 mtu 1420 txqueuelen 1000 up\nsysctl -w net.ipv4.ip_forward=1\n"))
        #expect(r.stdout.contains(#"ip saddr 10.8.0.0/16 oifname "lo" masquerade"#))
    }

    @Test(.needsRoot("runs tunvpn inside a throwaway network namespace")) func theExampleClientFileWorksAsItIs() throws {
        let dir = try keysDirectory()
        defer { dir.remove() }
        let r = try tunvpn(["client", "--config", "client.toml", "--dry-run"], in: dir.path)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(
            r.stdout.hasPrefix(
                "# tun0: address assigned by the server at the handshake\nip link set tun0 mtu 1420 txqueuelen 1000 up\nip -4 route add 0.0.0.0/1 dev tun0\nip -4 route add 128.0.0.0/1 dev tun0\n"
            ))
    }

    @Test(.needsRoot("runs tunvpn inside a throwaway network namespace")) func fileValuesReachTheCommandAndTheCommandLineOverridesThem() throws {
        let dir = try keysDirectory()
        defer { dir.remove() }
        let toml = """
            peer-key = "keys/server.pub"
            endpoint = "203.0.113.7:51820"
            dev = "tunf"
            mtu = 1300
            txqueuelen = 2000
            route = ["10.1.0.0/16", "10.2.0.0/16"]
            dry-run = true
            """
        try toml.write(toFile: dir.path + "/c.toml", atomically: false, encoding: .utf8)
        let fromFile = try tunvpn(["client", "--config", "c.toml"], in: dir.path)
        #expect(fromFile.status == 0, "\(fromFile.stderr)")
        #expect(
            fromFile.stdout.hasPrefix(
                "# tunf: address assigned by the server at the handshake\nip link set tunf mtu 1300 txqueuelen 2000 up\nip -4 route add 10.1.0.0/16 dev tunf\nip -4 route add 10.2.0.0/16 dev tunf\n"
            ))
        let overridden = try tunvpn(["client", "--config=c.toml", "--mtu", "1400", "--route", "172.16.0.0/12"], in: dir.path)
        #expect(overridden.status == 0, "\(overridden.stderr)")
        #expect(
            overridden.stdout.hasPrefix(
                "# tunf: address assigned by the server at the handshake\nip link set tunf mtu 1400 txqueuelen 2000 up\nip -4 route add 172.16.0.0/12 dev tunf\n"
            ))
        // The server example with NAT switched off from the command line.
        let server = try tunvpn(["server", "--config", "server.toml", "--dry-run", "--no-nat", "--mtu=1280"], in: dir.path)
        #expect(server.stdout == "ip addr add 10.8.0.1/16 dev tun0\nip link set tun0 mtu 1280 txqueuelen 1000 up\n")
    }

    @Test(.needsRoot("runs tunvpn inside a throwaway network namespace")) func pathsInAFileAreFoundBesideItAndOnTheCommandLineFromTheWorkingDirectory() throws {
        let dir = try keysDirectory()
        defer { dir.remove() }
        // keys/s.toml names the files beside it: keys/server.key and keys/clients.
        try "key = \"server.key\"\nclients = \"clients\"\ndry-run = true\nnat = false\n"
            .write(toFile: dir.path + "/keys/s.toml", atomically: false, encoding: .utf8)
        let beside = try tunvpn(["server", "--config", "keys/s.toml"], in: dir.path)
        #expect(beside.status == 0, "\(beside.stderr)")
        #expect(beside.stdout == "ip addr add 10.8.0.1/16 dev tun0\nip link set tun0 mtu 1420 txqueuelen 1000 up\n")
        // The same option on the command line is taken from the working directory.
        let fromWorkingDirectory = try tunvpn(["server", "--config", "keys/s.toml", "--key", "keys/server.key"], in: dir.path)
        #expect(fromWorkingDirectory.status == 0, "\(fromWorkingDirectory.stderr)")
        let notBesideTheFile = try tunvpn(["server", "--config", "keys/s.toml", "--key", "server.key"], in: dir.path)
        #expect(notBesideTheFile.status != 0)
        #expect(notBesideTheFile.stderr.contains("server.key"), "\(notBesideTheFile.stderr)")
        // An absolute path is used as it is.
        try "key = \"\(dir.path)/keys/server.key\"\nclients = \"\(dir.path)/keys/clients\"\ndry-run = true\nnat = false\n"
            .write(toFile: dir.path + "/keys/a.toml", atomically: false, encoding: .utf8)
        let absolute = try tunvpn(["server", "--config", dir.path + "/keys/a.toml"], in: "/")
        #expect(absolute.status == 0, "\(absolute.stderr)")
    }

    @Test(.needsRoot("runs tunvpn inside a throwaway network namespace")) func anInvalidFileStopsTheProgramWithOneLineAndStatus64() throws {
        let dir = try keysDirectory()
        defer { dir.remove() }
        try "# settings\nmtu = \"big\"\ndry-run = true\n".write(toFile: dir.path + "/bad.toml", atomically: false, encoding: .utf8)
        let r = try tunvpn(["server", "--config", "bad.toml", "--egress", "lo"], in: dir.path)
        #expect(r.status == 64)
        #expect(r.stdout == "")
        #expect(r.stderr == "tunvpn: error: bad.toml:2: key 'mtu': expected an integer, not a string (\"big\")\n")
        let missing = try tunvpn(["client", "--config", "none.toml"], in: dir.path)
        #expect(missing.status == 64)
        #expect(missing.stderr.hasPrefix("tunvpn: error: none.toml: config file not found (relative to the working directory /"), "\(missing)")
    }

    @Test func aConfigFileOthersCouldChangeIsRefusedWithTheChmodThatFixesIt() throws {
        let dir = try keysDirectory()
        defer { dir.remove() }
        try "dry-run = true\n".write(toFile: dir.path + "/open.toml", atomically: false, encoding: .utf8)
        chmod(dir.path + "/open.toml", 0o666)
        let r = try tunvpn(["server", "--config", "open.toml", "--egress", "lo"], in: dir.path)
        #expect(r.status == 64)
        #expect(
            r.stderr
                == "tunvpn: error: open.toml: is writable by group or others (mode 0666), so they could change it; run `chmod 644 open.toml`\n")
    }

    @Test func anUnknownUserIsRefusedBeforeAnythingStarts() throws {
        let dir = try keysDirectory()
        defer { dir.remove() }
        try "user = \"no-such-user-tunvpn\"\ndry-run = true\n".write(toFile: dir.path + "/u.toml", atomically: false, encoding: .utf8)
        let r = try tunvpn(["server", "--config", "u.toml", "--egress", "lo"], in: dir.path)
        #expect(r.status != 0)
        #expect(
            r.stderr.contains(
                "--user 'no-such-user-tunvpn': no such user; create it (adduser --system --group --no-create-home no-such-user-tunvpn) or name an existing one"),
            "\(r.stderr)")
    }
}
