// The config file reader on its own (Sources/Control/ConfigFile.swift), with a schema built by hand: the
// table headers toml++ (inside TOMLKit) cannot report are refused with a line and column first.

import Control
import Testing

@Suite struct ConfigFileReaderTests {
    let schema = ConfigSchema(
        commandName: "test",
        keys: [
            "mtu": ConfigKey(
                key: "mtu",
                shape: .option(name: "--mtu", value: ValueType(kind: .integer, typeName: "Int", parses: { Int($0) != nil }), repeating: false),
                spellings: ["--mtu"])
        ])

    func problem(_ text: String) -> String? {
        do {
            _ = try ConfigFile.settings(fromTOML: text, file: "t.toml", for: schema)
            return nil
        } catch {
            return error.description
        }
    }

    @Test(arguments: [
        ("[!]", "t.toml:1: invalid TOML at column 2: a table header starts with a key (a letter, digit, _, - or quote), not '!'"),
        ("mtu = 1\n  [[ \u{FFFD}]]", "t.toml:2: invalid TOML at column 6: a table header starts with a key (a letter, digit, _, - or quote), not '\u{FFFD}'"),
        ("[[[1]]]", "t.toml:1: invalid TOML at column 3: a table header starts with a key (a letter, digit, _, - or quote), not '['"),
        ("[\n \u{FFFD}", "t.toml:1: invalid TOML at column 2: a table header starts with a key (a letter, digit, _, - or quote), not '\\n'"),
        ("[[ \r\nmtu = 1", "t.toml:1: invalid TOML at column 4: a table header starts with a key (a letter, digit, _, - or quote), not '\\n'"),
        ("\u{FEFF}[\u{FFFD}", "t.toml:1: invalid TOML at column 3: a table header starts with a key (a letter, digit, _, - or quote), not '\u{FFFD}'"),
        ("[\u{7}]", "t.toml:1: invalid TOML at column 2: a table header starts with a key (a letter, digit, _, - or quote), not '\\u{07}'"),
    ])
    func aTableHeaderWithoutAKeyIsRefusedWithItsLineAndColumn(text: String, message: String) {
        #expect(problem(text) == message)
    }

    @Test func headersWithKeysAndLinesInsideMultiLineStringsAreLeftToTOMLKit() {
        #expect(problem("mtu = 1400\n[\"quoted\"]\n") == "t.toml:2: key 'quoted': not an option of tunvpn test (keys: mtu)")
        #expect(problem("mtu = 1400\nx = \"\"\"\n[!]\n\"\"\"\n")?.hasPrefix("t.toml:2: key 'x'") == true)
        #expect(problem("mtu = 1400\n[]\n")?.hasPrefix("t.toml:2: invalid TOML at column 2:") == true)
        #expect(problem("mtu = 1400\n") == nil)
        #expect(problem("mtu = 1400\n[")?.hasPrefix("t.toml:2: invalid TOML at column 2:") == true)
    }
}

extension ConfigFileReaderTests {
    @Test func aFileWithCRLFLineEndsNamesTheRightLine() {
        #expect(problem("# x\r\n\r\nmtu = \"big\"\r\n") == "t.toml:3: key 'mtu': expected an integer, not a string (\"big\")")
    }
}

/// Relative paths in a config file are taken from the file's directory.
@Suite struct ConfigFilePathTests {
    let schema = ConfigSchema(
        commandName: "test",
        keys: [
            "key": ConfigKey(
                key: "key", shape: .option(name: "--key", value: ValueType(kind: .string, typeName: "String", parses: { _ in true }), repeating: false),
                spellings: ["--key"], isPath: true),
            "dev": ConfigKey(
                key: "dev", shape: .option(name: "--dev", value: ValueType(kind: .string, typeName: "String", parses: { _ in true }), repeating: false),
                spellings: ["--dev"]),
        ])

    func arguments(_ text: String, file: String) throws -> [String] {
        try ConfigFile.settings(fromTOML: text, file: file, for: schema).flatMap(\.arguments)
    }

    @Test func aRelativePathIsJoinedToTheFilesDirectory() throws {
        #expect(try arguments("key = \"server.key\"", file: "site/server.toml") == ["--key=site/server.key"])
        #expect(try arguments("key = \"keys/server.key\"", file: "/etc/tunvpn/server.toml") == ["--key=/etc/tunvpn/keys/server.key"])
        #expect(try arguments("key = \"../server.key\"", file: "/etc/tunvpn/server.toml") == ["--key=/etc/tunvpn/../server.key"])
        #expect(try arguments("key = \"server.key\"", file: "/server.toml") == ["--key=/server.key"])
    }

    @Test func absolutePathsAFileInTheWorkingDirectoryAndOtherKeysAreUnchanged() throws {
        #expect(try arguments("key = \"/srv/server.key\"", file: "/etc/tunvpn/server.toml") == ["--key=/srv/server.key"])
        #expect(try arguments("key = \"server.key\"", file: "server.toml") == ["--key=server.key"])
        #expect(try arguments("dev = \"tun1\"", file: "/etc/tunvpn/server.toml") == ["--dev=tun1"])
    }
}
