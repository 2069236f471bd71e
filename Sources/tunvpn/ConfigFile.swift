// `--config FILE`: a TOML file whose keys are a command's long option names, turned into arguments
// before ArgumentParser sees the command line.
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
// Hidden options (test hooks) are not keys. Rules (config/README.md): an option `--X` is `X = value` (an array for a repeatable option, numbers
// as their decimal text); a flag `--X` is `X = true`; a flag `--no-X` is `X = false`. The file's
// arguments go before the user's own, and an option the user gives drops the file's value for it
// entirely, so a repeatable `--route` on the command line replaces the file's list instead of adding
// to it. Key options take file paths only, as on the command line (keys are never values).

import ArgumentParser
import FoundationEssentials
import Platform
import TOMLKit

/// The `--config` option itself, shared by the commands that read config files.
struct ConfigFileOption: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "TOML file of options: keys are the long option names, a --no-X flag is X = false; the command line overrides it.",
            valueName: "FILE"))
    var config: String?
}

/// A config file that cannot be used: printed as one line, and the program does not start.
struct ConfigFileError: Error, Equatable, CustomStringConvertible {
    var file: String
    /// 1-based line in the file, when known.
    var line: Int?
    /// The TOML key at fault, when there is one.
    var key: String?
    var problem: String

    var description: String {
        var text = file
        if let line { text += ":\(line)" }
        if let key { text += ": key '\(key)'" }
        return text + ": " + problem
    }
}

extension ConfigFileError: KeyFileErrorConvertible { var oneLine: String { description } }

/// How one TOML key becomes arguments for one command.
struct ConfigKey: Equatable {
    enum Shape: Equatable {
        /// `--name=VALUE`, once, or once per element when `repeating`.
        case option(name: String, value: ValueType, repeating: Bool)
        /// `whenTrue` for `key = true`, `whenFalse` for `key = false`; nil adds nothing (the default).
        case flag(whenTrue: String?, whenFalse: String?)
    }

    /// The TOML key (a long option name, or X for a `--no-X` flag).
    var key: String
    var shape: Shape
    /// Every spelling of the argument(s) behind the key (`--mtu`, `-m`): given by the user, they drop
    /// the file's value.
    var spellings: Set<String>
}

/// What an option's value must be in TOML, and the Swift type's own check of the text.
struct ValueType: Equatable {
    enum Kind: Equatable {
        /// Swift integer types: a TOML integer, checked against the type's range.
        case integer
        /// `String`: a TOML string.
        case string
        /// Other `ExpressibleByArgument` types (enums, Double, Bool): a TOML string, number or boolean.
        case other
    }
    var kind: Kind
    /// The Swift type's name, for messages (`UInt64`).
    var typeName: String
    /// `init(argument:)` of the option's type succeeds; always true where the type is unknown.
    var parses: (String) -> Bool

    static func == (a: ValueType, b: ValueType) -> Bool { a.kind == b.kind && a.typeName == b.typeName }

    /// For options whose type could not be found: anything scalar, checked by ArgumentParser later.
    static var unknown: ValueType { ValueType(kind: .other, typeName: "", parses: { _ in true }) }

    /// What the TOML value must be, for messages.
    var expected: String {
        switch kind {
        case .integer: "an integer"
        case .string: "a string"
        case .other: "a string, number or boolean"
        }
    }
}

/// The keys a command accepts in a config file.
struct ConfigSchema {
    var commandName: String
    var keys: [String: ConfigKey]
    /// Options whose value type Mirror could not find (custom names): checked only by ArgumentParser.
    var untyped: [String]

    /// Names that are not settings: a file never sets them.
    static let reserved: Set<String> = ["help", "version", "experimental-dump-help", "config"]

    init(_ command: any ParsableCommand.Type) {
        let info = CommandDump(command)
        commandName = info.commandName
        let types = ValueTypes.of(command)
        var keys: [String: ConfigKey] = [:]
        var untyped: [String] = []
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
                        spellings: spellings)
                }
            } else {
                for name in longNames {
                    let key = name.hasPrefix("no-") ? String(name.dropFirst(3)) : name
                    var entry = keys[key] ?? ConfigKey(key: key, shape: .flag(whenTrue: nil, whenFalse: nil), spellings: [])
                    guard case .flag(var whenTrue, var whenFalse) = entry.shape else { continue }
                    if name.hasPrefix("no-") { whenFalse = "--" + name } else { whenTrue = "--" + name }
                    entry.shape = .flag(whenTrue: whenTrue, whenFalse: whenFalse)
                    entry.spellings.formUnion(spellings)
                    keys[key] = entry
                }
            }
        }
        self.keys = keys
        self.untyped = untyped
    }

    /// The TOML keys, sorted.
    var keyNames: [String] { keys.keys.sorted() }
}

/// Reading config files and merging them into a command line.
enum ConfigFile {
    /// The subcommands that take `--config` (those with a `ConfigFileOption` group).
    static func configurableCommands() -> [any ParsableCommand.Type] {
        TunVPN.configuration.subcommands.filter { CommandDump($0).hasLongOption("config") }
    }

    /// Returns `arguments` (without the program name) with the `--config` file's settings inserted
    /// before the user's own; unchanged when there is no `--config` after a config-capable subcommand.
    static func expand(_ arguments: [String]) throws(ConfigFileError) -> [String] {
        guard let subcommand = arguments.first, arguments.dropFirst().contains(where: { $0.hasPrefix("--config") }) else {
            return arguments
        }
        guard let command = configurableCommands().first(where: { CommandDump($0).commandName == subcommand }) else {
            return arguments
        }
        let user = Array(arguments.dropFirst())
        guard let path = try configPath(in: user) else { return arguments }
        let bytes: [UInt8]
        do { bytes = try KeyFiles.readConfigurationFile(path, what: "config file") } catch {
            throw ConfigFileError(file: path, line: nil, key: nil, problem: error.problem)
        }
        let text = String(decoding: bytes, as: UTF8.self)
        let fileArguments = try settings(fromTOML: text, file: path, for: ConfigSchema(command))
        return [subcommand] + merge(file: fileArguments, user: user)
    }

    /// The FILE of `--config FILE` or `--config=FILE` in `arguments` (before any `--`).
    static func configPath(in arguments: [String]) throws(ConfigFileError) -> String? {
        var found: String?
        var index = 0
        while index < arguments.count, arguments[index] != "--" {
            let argument = arguments[index]
            var value: String?
            if argument == "--config" {
                // A missing value is left to ArgumentParser, which says so in its own words.
                guard index + 1 < arguments.count else { return nil }
                value = arguments[index + 1]
                index += 1
            } else if argument.hasPrefix("--config=") {
                value = String(argument.dropFirst("--config=".count))
            }
            if let value {
                if found != nil {
                    throw ConfigFileError(file: value, line: nil, key: nil, problem: "--config given more than once; pass one file")
                }
                found = value
            }
            index += 1
        }
        return found
    }

    /// One key's arguments, with the spellings that let the user override them.
    struct Setting: Equatable {
        var key: String
        var arguments: [String]
        var spellings: Set<String>
    }

    /// Converts a TOML document into settings for the command described by `schema`.
    static func settings(fromTOML text: String, file: String, for schema: ConfigSchema) throws(ConfigFileError) -> [Setting] {
        let table: TOMLTable
        do { table = try TOMLTable(string: text) } catch let error as TOMLParseError {
            throw ConfigFileError(
                file: file, line: error.source.begin.line, key: nil,
                problem: "invalid TOML at column \(error.source.begin.column): \(error.description)")
        } catch {
            throw ConfigFileError(file: file, line: nil, key: nil, problem: "invalid TOML: \(error)")
        }
        var settings: [Setting] = []
        // Keys in the order they appear in the file, so the first bad one is reported.
        let ordered = table.keys.sorted { (keyLine($0, in: text) ?? .max, $0) < (keyLine($1, in: text) ?? .max, $1) }
        for key in ordered {
            guard let value = table[key] else { continue }
            let fail = { (problem: String) in ConfigFileError(file: file, line: keyLine(key, in: text), key: key, problem: problem) }
            guard let rule = schema.keys[key] else { throw fail(unknownKeyProblem(key, schema: schema)) }
            let arguments: [String]
            switch rule.shape {
            case .flag(let whenTrue, let whenFalse):
                guard let flag = value.bool else {
                    throw fail("expected true or false, not \(describe(value))")
                }
                // `routes = true` where only --no-routes exists is the default: nothing to add.
                arguments = (flag ? whenTrue : whenFalse).map { [$0] } ?? []
            case .option(let name, let type, let repeating):
                var values: [any TOMLValueConvertible] = [value]
                if let array = value.array {
                    guard repeating else { throw fail("expected \(type.expected), not an array (--\(key) is given once)") }
                    values = Array(array)
                }
                var out: [String] = []
                for (index, element) in values.enumerated() {
                    let isElement = value.array != nil
                    let at = isElement ? "element \(index + 1): " : ""
                    guard let text = argumentText(element, as: type) else {
                        let wanted = repeating && !isElement ? "\(type.expected) or an array of them" : type.expected
                        throw fail(at + "expected \(wanted), not \(describe(element))")
                    }
                    guard type.parses(text) else {
                        if type.kind == .integer { throw fail(at + "\(text) is out of range for \(name) (\(type.typeName))") }
                        throw fail(at + "'\(text)' is not a valid value for \(name)")
                    }
                    // `--name=value`, so a value that starts with '-' is not taken for an option.
                    out.append(name + "=" + text)
                }
                arguments = out
            }
            settings.append(Setting(key: key, arguments: arguments, spellings: rule.spellings))
        }
        return settings
    }

    /// The file's arguments first, minus every setting the user gives on the command line, then the
    /// user's. Dropping (rather than relying on ArgumentParser keeping the last value) makes repeatable
    /// options replace the file's list.
    static func merge(file: [Setting], user: [String]) -> [String] {
        var given: Set<String> = []
        for argument in user {
            if argument == "--" { break }
            given.insert(argument.split(separator: "=", maxSplits: 1).first.map(String.init) ?? argument)
        }
        return file.filter { $0.spellings.isDisjoint(with: given) }.flatMap(\.arguments) + user
    }

    /// The problem text for a key the command does not have.
    static func unknownKeyProblem(_ key: String, schema: ConfigSchema) -> String {
        if key == "config" { return "a config file cannot name another one; remove this key" }
        if key.hasPrefix("no-"), schema.keys[String(key.dropFirst(3))] != nil {
            return "write '\(key.dropFirst(3)) = false' for --\(key)"
        }
        return "not an option of tunvpn \(schema.commandName) (keys: \(schema.keyNames.joined(separator: ", ")))"
    }

    /// The 1-based line where `key` is set (`key =`, `"key" =`, `key.x =` or `[key]`), if found.
    static func keyLine(_ key: String, in text: String) -> Int? {
        let quotedForms = [key, "\"\(key)\"", "'\(key)'"]
        for (number, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            var line = Substring(rawLine.drop { $0 == " " || $0 == "\t" })
            if line.hasPrefix("[") {
                line = line.drop { $0 == "[" || $0 == " " || $0 == "\t" }
            }
            for form in quotedForms where line.hasPrefix(form) {
                let rest = line.dropFirst(form.count).drop { $0 == " " || $0 == "\t" }
                if let next = rest.first, next == "=" || next == "." || next == "]" { return number + 1 }
            }
        }
        return nil
    }

    /// A TOML scalar as command-line text, if it has the kind `type` wants.
    static func argumentText(_ value: any TOMLValueConvertible, as type: ValueType) -> String? {
        switch type.kind {
        case .integer: return value.int.map { String($0) }
        case .string: return value.string
        case .other:
            if let s = value.string { return s }
            if let i = value.int { return String(i) }
            if let d = value.double { return String(d) }
            if let b = value.bool { return String(b) }
            return nil
        }
    }

    /// "a string (\"big\")", "an integer (3)", "an array", … for messages.
    static func describe(_ value: any TOMLValueConvertible) -> String {
        switch value.type {
        case .string: return "a string (\"\(value.string ?? "")\")"
        case .int: return "an integer (\(value.int.map { String($0) } ?? ""))"
        case .double: return "a floating-point number (\(value.double.map { String($0) } ?? ""))"
        case .bool: return "a boolean (\(value.bool.map { String($0) } ?? ""))"
        case .array: return "an array"
        case .table: return "a table"
        case .date, .time, .dateTime: return "a date or time"
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
        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            kind = try c.decode(String.self, forKey: .kind)
            names = try c.decodeIfPresent([Name].self, forKey: .names) ?? []
            isRepeating = try c.decodeIfPresent(Bool.self, forKey: .isRepeating) ?? false
            shouldDisplay = try c.decodeIfPresent(Bool.self, forKey: .shouldDisplay) ?? true
        }
        enum CodingKeys: String, CodingKey { case kind, names, isRepeating, shouldDisplay }
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
