// `--config FILE`: a TOML file whose keys are a command's long option names, turned into arguments
// before ArgumentParser sees the command line (Sources/Control/ConfigFile.swift reads the TOML).
//
// The mapping is derived from the commands themselves, so an option added to `tunvpn server` or
// `tunvpn client` is a config key at once:
//   - names, kinds (option or flag) and repetition come from ArgumentParser's own description of the
//     command (`_dumpHelp()`, the JSON behind `--experimental-dump-help`);
//   - value types (integer, string, …) come from the property wrappers (`Option<Int>`), read with Mirror
//     and matched to the names by ArgumentParser's rule (`logLevel` → `log-level`).
// `ConfigFileTests` checks that every option of every config-capable command got a type, so the two
// sources cannot drift apart silently.
//
// Hidden options (test hooks) are not keys. The rules for values are in config/README.md. The options
// that name files are listed in `ConfigSchema.pathOptions` (a relative one in a file is taken from the
// file's directory); `ConfigFileTests` checks the list against the options whose help mentions a file.

import ArgumentParser
import Control
import FoundationEssentials

/// The `--config` option itself, shared by the commands that read config files.
struct ConfigFileOption: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "TOML file of options: keys are the long option names, a --no-X flag is X = false; the command line overrides it.",
            valueName: "FILE"))
    var config: String?
}

extension ConfigSchema {
    /// The options whose value is a file path.
    static let pathOptions: Set<String> = ["key", "clients", "peer-key", "psk", "registry-password-file", "registry-cache"]

    /// The keys of `command`: its visible long options and flags, typed from its property wrappers.
    init(_ command: any ParsableCommand.Type) {
        let info = CommandDump(command)
        let types = ValueTypes.of(command)
        var keys: [String: ConfigKey] = [:]
        var untyped: [String] = []
        // A --no-X flag is the key X = false, unless X is also an option's name (the client's --dns ADDR and
        // --no-dns): then the flag is the key no-X = true.
        let optionNames = Set(info.arguments.filter { $0.kind == "option" }.flatMap { $0.names.filter { $0.kind == "long" }.map(\.name) })
        for argument in info.arguments where argument.kind != "positional" && argument.shouldDisplay {
            let longNames = argument.names.filter { $0.kind == "long" }.map(\.name)
            let spellings = Set(
                argument.names.map { name in (name.kind == "short" || name.kind == "longWithSingleDash" ? "-" : "--") + name.name })
            guard longNames.allSatisfy({ !Self.reserved.contains($0) }) else { continue }
            if argument.kind == "option" {
                for name in longNames {
                    let value: ValueType
                    if let found = types[name] {
                        value = found
                    } else {
                        value = .unknown
                        untyped.append(name)
                    }
                    keys[name] = ConfigKey(
                        key: name, shape: .option(name: "--" + name, value: value, repeating: argument.isRepeating),
                        spellings: spellings, isPath: Self.pathOptions.contains(name))
                }
            } else {
                for name in longNames {
                    let stem = String(name.dropFirst(3))
                    let key = name.hasPrefix("no-") && !optionNames.contains(stem) ? stem : name
                    var entry = keys[key] ?? ConfigKey(key: key, shape: .flag(whenTrue: nil, whenFalse: nil), spellings: [])
                    guard case .flag(var whenTrue, var whenFalse) = entry.shape else { continue }
                    if name.hasPrefix("no-") && key != name { whenFalse = "--" + name } else { whenTrue = "--" + name }
                    entry.shape = .flag(whenTrue: whenTrue, whenFalse: whenFalse)
                    entry.spellings.formUnion(spellings)
                    keys[key] = entry
                }
            }
        }
        self.init(commandName: info.commandName, keys: keys, untyped: untyped)
    }

}

extension ConfigFile {
    /// The subcommands that take `--config` (those with a `ConfigFileOption` group; add-client's names the
    /// server's file, which it reads itself).
    static func configurableCommands() -> [any ParsableCommand.Type] {
        TunVPN.configuration.subcommands.filter { !($0 is any ReadsServerConfig.Type) && CommandDump($0).hasLongOption("config") }
    }

    /// Returns `arguments` (without the program name) with the `--config` file's settings inserted
    /// before the user's own; unchanged when there is no `--config` after a config-capable subcommand.
    static func expand(_ arguments: [String]) throws(ConfigFileError) -> [String] {
        try expand(arguments) { name in
            configurableCommands().first { CommandDump($0).commandName == name }.map { ConfigSchema($0) }
        }
    }
}

// MARK: - What ArgumentParser says about a command

/// The parts of ArgumentParser's command description (`--experimental-dump-help`) the mapping uses.
struct CommandDump: Decodable {
    struct Name: Decodable {
        var kind: String
        var name: String
    }
    struct Argument: Decodable {
        var kind: String
        var names: [Name]
        var isRepeating: Bool
        /// False for hidden options (test hooks such as --timer-scale), which are no config keys.
        var shouldDisplay: Bool
        /// The help text's first part.
        var abstract: String
        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            kind = try c.decode(String.self, forKey: .kind)
            names = try c.decodeIfPresent([Name].self, forKey: .names) ?? []
            isRepeating = try c.decodeIfPresent(Bool.self, forKey: .isRepeating) ?? false
            shouldDisplay = try c.decodeIfPresent(Bool.self, forKey: .shouldDisplay) ?? true
            abstract = try c.decodeIfPresent(String.self, forKey: .abstract) ?? ""
        }
        enum CodingKeys: String, CodingKey { case kind, names, isRepeating, shouldDisplay, abstract }
    }
    struct Command: Decodable {
        var commandName: String
        var arguments: [Argument]?
    }
    struct Root: Decodable { var command: Command }

    var commandName: String
    var arguments: [Argument]

    init(_ command: any ParsableCommand.Type) {
        guard let root = try? JSONDecoder().decode(Root.self, from: Data(command._dumpHelp().utf8)) else {
            preconditionFailure("ArgumentParser's _dumpHelp() is JSON with a command name (ToolInfoV0)")
        }
        commandName = root.command.commandName
        arguments = root.command.arguments ?? []
    }

    func hasLongOption(_ name: String) -> Bool {
        arguments.contains { $0.kind == "option" && $0.names.contains { $0.kind == "long" && $0.name == name } }
    }
}

// MARK: - Value types, read from the property wrappers

/// Gives the `Value` of `Option<Value>` without an instance of it.
private protocol OptionValueProbe { static var valueType: Any.Type { get } }
extension Option: OptionValueProbe { fileprivate static var valueType: Any.Type { Value.self } }

/// Gives the group type of `OptionGroup<Value>`.
private protocol OptionGroupProbe { static var groupType: any ParsableArguments.Type { get } }
extension OptionGroup: OptionGroupProbe { fileprivate static var groupType: any ParsableArguments.Type { Value.self } }

/// Unwraps `T?` and `[T]` to `T`.
private protocol WrapperProbe { static var wrappedType: Any.Type { get } }
extension Optional: WrapperProbe { fileprivate static var wrappedType: Any.Type { Wrapped.self } }
extension Array: WrapperProbe { fileprivate static var wrappedType: Any.Type { Element.self } }

enum ValueTypes {
    /// Long option name → value type, for every `@Option` of `command` and its option groups.
    static func of(_ command: any ParsableArguments.Type) -> [String: ValueType] {
        var found: [String: ValueType] = [:]
        collect(command.init(), into: &found)
        return found
    }

    private static func collect(_ instance: any ParsableArguments, into found: inout [String: ValueType]) {
        for child in Mirror(reflecting: instance).children {
            guard let label = child.label, label.hasPrefix("_") else { continue }
            let wrapper = type(of: child.value)
            if let group = wrapper as? any OptionGroupProbe.Type {
                collect(group.groupType.init(), into: &found)
            } else if let option = wrapper as? any OptionValueProbe.Type {
                var value = option.valueType
                while let wrapped = value as? any WrapperProbe.Type { value = wrapped.wrappedType }
                found[longName(String(label.dropFirst()))] = valueType(value)
            }
        }
    }

    private static func valueType(_ type: Any.Type) -> ValueType {
        guard let parsable = type as? any ExpressibleByArgument.Type else { return .unknown }
        let name = String(describing: type)
        let parses: (String) -> Bool = { parsable.init(argument: $0) != nil }
        if type == String.self { return ValueType(kind: .string, typeName: name, parses: parses) }
        if type is any FixedWidthInteger.Type { return ValueType(kind: .integer, typeName: name, parses: parses) }
        return ValueType(kind: .other, typeName: name, parses: parses)
    }

    /// ArgumentParser's default long name for a property: `logLevel` → `log-level`, `peerKey` → `peer-key`.
    static func longName(_ property: String) -> String {
        var out = ""
        let characters = Array(property)
        for (i, c) in characters.enumerated() {
            if c.isUppercase {
                let previousIsLower = i > 0 && (characters[i - 1].isLowercase || characters[i - 1].isNumber)
                let nextIsLower = i + 1 < characters.count && characters[i + 1].isLowercase
                let previousIsUpper = i > 0 && characters[i - 1].isUppercase
                if i > 0 && (previousIsLower || (previousIsUpper && nextIsLower)) { out += "-" }
                out += c.lowercased()
            } else {
                out.append(c)
            }
        }
        return out
    }
}
