// Fuzz target: the config file reader (`ConfigFile.settings(fromTOML:file:for:)` and `merge`,
// Sources/Control/ConfigFile.swift). `tunvpn server --config FILE` reads a file an operator edits, through
// TOMLKit, before anything starts; whatever the file holds, it must either be refused with one line that
// names a line of the file, or become arguments the command line's rules allow.
//
// Input: the TOML text, checked against a schema with every kind of key the real commands have (an
// integer option, a string option, a repeatable option, an option of another type with its own parse
// check, a flag, and a flag that exists only as --no-X).
//
// Invariants: a refusal's line, when given, is a line of the file, and its key one of the file's; every
// accepted key is in the schema; an option becomes `--name=value` once (or once per element when it
// repeats) with a value the option's type parses; a flag becomes its spelling for true or false, or
// nothing; and the file's arguments merged with no user arguments are the file's arguments.

import Control
import FuzzSupport

#if canImport(Glibc)
    import Glibc
#endif

@_cdecl("FuzzConfig_main")
public func main(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    runFuzzer(argc, argv) { data, size in fuzz(data, size) }
}

/// The file `path` (relative to the repository, where Fuzz/run.sh runs), or nil.
func readFile(_ path: String) -> [UInt8]? {
    guard let f = fopen(path, "rb") else { return nil }
    defer { fclose(f) }
    var out: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = fread(&buffer, 1, buffer.count, f)
        if n <= 0 { break }
        out += buffer[0..<n]
    }
    return out
}

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutableRawPointer) -> Int32 {
    writeSeedsIfAsked {
        var seeds: [(name: String, bytes: [UInt8])] = []
        for name in ["server.toml", "client.toml"] {
            guard let bytes = readFile("config/" + name) else { fatalError("config/\(name) not found: run from the repository") }
            seeds.append((name, bytes))
        }
        seeds += [
            ("every-kind", Array("mtu = 1400\ndev = \"tun1\"\nroute = [\"10.0.0.0/8\", \"192.168.0.0/16\"]\nlog-level = \"debug\"\nnat = false\nlockdown = true\n".utf8)),
            ("wrong-types", Array("mtu = \"big\"\nroute = 3\nnat = 1\n".utf8)),
            ("tables-and-quotes", Array("[mtu]\nx = 1\n\"dev\" = 'a'\nroutes.x = 1\n".utf8)),
            ("out-of-range", Array("mtu = 99999999999\nlog-level = \"loud\"\n".utf8)),
        ]
        return seeds
    }
    return 0
}

/// The keys the input is read against (a ConfigSchema is not Sendable: its types carry parse closures).
func makeSchema() -> ConfigSchema {
    ConfigSchema(
    commandName: "fuzz",
    keys: [
        "mtu": ConfigKey(
            key: "mtu", shape: .option(name: "--mtu", value: ValueType(kind: .integer, typeName: "Int", parses: { Int($0) != nil }), repeating: false),
            spellings: ["--mtu"]),
        "dev": ConfigKey(
            key: "dev", shape: .option(name: "--dev", value: ValueType(kind: .string, typeName: "String", parses: { _ in true }), repeating: false),
            spellings: ["--dev"]),
        "route": ConfigKey(
            key: "route", shape: .option(name: "--route", value: ValueType(kind: .string, typeName: "String", parses: { _ in true }), repeating: true),
            spellings: ["--route"]),
        "log-level": ConfigKey(
            key: "log-level",
            shape: .option(
                name: "--log-level",
                value: ValueType(kind: .other, typeName: "Level", parses: { ["trace", "debug", "info"].contains($0) }),
                repeating: false),
            spellings: ["--log-level"]),
        "lockdown": ConfigKey(key: "lockdown", shape: .flag(whenTrue: "--lockdown", whenFalse: nil), spellings: ["--lockdown"]),
        "nat": ConfigKey(key: "nat", shape: .flag(whenTrue: nil, whenFalse: "--no-nat"), spellings: ["--no-nat"]),
    ])
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data, size > 0 else { return 0 }
    let schema = makeSchema()
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    let lines = text.utf8.filter { $0 == UInt8(ascii: "\n") }.count + 1
    let settings: [ConfigFile.Setting]
    do {
        settings = try ConfigFile.settings(fromTOML: text, file: "f.toml", for: schema)
    } catch {
        require(!error.problem.isEmpty, "a refusal without a problem")
        if let line = error.line { require((1...max(1, lines)).contains(line), "line \(line) of a \(lines)-line file") }
        require(!error.description.contains("\n") || text.contains("\n"), "a multi-line message: \(error)")
        return 0
    }
    for setting in settings {
        guard let rule = schema.keys[setting.key] else {
            require(false, "accepted a key not in the schema: \(setting.key)")
            return 0
        }
        require(setting.spellings == rule.spellings, "\(setting.key): spellings changed")
        switch rule.shape {
        case .flag(let whenTrue, let whenFalse):
            let allowed = [[], whenTrue.map { [$0] }, whenFalse.map { [$0] }].compactMap { $0 }
            require(allowed.contains(setting.arguments), "\(setting.key): flag became \(setting.arguments)")
        case .option(let name, let type, let repeating):
            require(repeating || setting.arguments.count == 1, "\(setting.key): \(setting.arguments.count) values for a single option")
            for argument in setting.arguments {
                require(argument.hasPrefix(name + "="), "\(setting.key): \(argument) is not \(name)=VALUE")
                require(type.parses(String(argument.dropFirst(name.count + 1))), "\(setting.key): \(argument) does not parse")
            }
        }
    }
    require(ConfigFile.merge(file: settings, user: []) == settings.flatMap(\.arguments), "merge with no user arguments changed the file's")
    return 0
}
