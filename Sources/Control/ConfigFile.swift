// `--config FILE`: a TOML file whose keys are a command's long option names, turned into arguments
// before the command line is parsed. The keys (`ConfigSchema`) come from the command line's own option
// definitions (Sources/tunvpn/ConfigFile.swift derives them); this file reads the TOML and checks it
// against them.
//
// Rules (config/README.md): an option `--X` is `X = value` (an array for a repeatable option, numbers
// as their decimal text); a flag `--X` is `X = true`; a flag `--no-X` is `X = false`. The file's
// arguments go before the user's own, and an option the user gives drops the file's value for it
// entirely, so a repeatable `--route` on the command line replaces the file's list instead of adding
// to it. Key options take file paths only, as on the command line (keys are never values). A relative
// path in the file (a key whose `isPath` is set) is taken from the file's own directory, so a file
// moved together with its keys keeps working; the same option on the command line stays relative to
// the working directory.

import Platform
import TOMLKit

/// A config file that cannot be used: printed as one line, and the program does not start.
public struct ConfigFileError: Error, Equatable, CustomStringConvertible {
    public var file: String
    /// 1-based line in the file, when known.
    public var line: Int?
    /// The TOML key at fault, when there is one.
    public var key: String?
    public var problem: String

    public init(file: String, line: Int?, key: String?, problem: String) {
        self.file = file
        self.line = line
        self.key = key
        self.problem = problem
    }

    public var description: String {
        var text = file
        if let line { text += ":\(line)" }
        if let key { text += ": key '\(key)'" }
        return text + ": " + problem
    }
}

extension ConfigFileError: OneLineError { public var oneLine: String { description } }

/// How one TOML key becomes arguments for one command.
public struct ConfigKey: Equatable {
    public enum Shape: Equatable {
        /// `--name=VALUE`, once, or once per element when `repeating`.
        case option(name: String, value: ValueType, repeating: Bool)
        /// `whenTrue` for `key = true`, `whenFalse` for `key = false`; nil adds nothing (the default).
        case flag(whenTrue: String?, whenFalse: String?)
    }

    /// The TOML key (a long option name, or X for a `--no-X` flag).
    public var key: String
    public var shape: Shape
    /// Every spelling of the argument(s) behind the key (`--mtu`, `-m`): given by the user, they drop
    /// the file's value.
    public var spellings: Set<String>
    /// The value names a file: a relative one is resolved against the config file's directory.
    public var isPath: Bool

    public init(key: String, shape: Shape, spellings: Set<String>, isPath: Bool = false) {
        self.key = key
        self.shape = shape
        self.spellings = spellings
        self.isPath = isPath
    }
}

/// What an option's value must be in TOML, and the Swift type's own check of the text.
public struct ValueType: Equatable {
    public enum Kind: Equatable {
        /// Swift integer types: a TOML integer, checked against the type's range.
        case integer
        /// `String`: a TOML string.
        case string
        /// Other `ExpressibleByArgument` types (enums, Double, Bool): a TOML string, number or boolean.
        case other
    }
    public var kind: Kind
    /// The Swift type's name, for messages (`UInt64`).
    public var typeName: String
    /// `init(argument:)` of the option's type succeeds; always true where the type is unknown.
    public var parses: (String) -> Bool

    public init(kind: Kind, typeName: String, parses: @escaping (String) -> Bool) {
        self.kind = kind
        self.typeName = typeName
        self.parses = parses
    }

    public static func == (a: ValueType, b: ValueType) -> Bool { a.kind == b.kind && a.typeName == b.typeName }

    /// For options whose type could not be found: anything scalar, checked by ArgumentParser later.
    public static var unknown: ValueType { ValueType(kind: .other, typeName: "", parses: { _ in true }) }

    /// What the TOML value must be, for messages.
    public var expected: String {
        switch kind {
        case .integer: "an integer"
        case .string: "a string"
        case .other: "a string, number or boolean"
        }
    }
}

/// The keys a command accepts in a config file.
public struct ConfigSchema {
    public var commandName: String
    public var keys: [String: ConfigKey]
    /// Options whose value type Mirror could not find (custom names): checked only by ArgumentParser.
    public var untyped: [String]

    /// Names that are not settings: a file never sets them.
    public static let reserved: Set<String> = ["help", "version", "experimental-dump-help", "config"]

    public init(commandName: String, keys: [String: ConfigKey], untyped: [String] = []) {
        self.commandName = commandName
        self.keys = keys
        self.untyped = untyped
    }

    /// The TOML keys, sorted.
    public var keyNames: [String] { keys.keys.sorted() }
}

/// Reading config files and merging them into a command line.
public enum ConfigFile {
    /// Returns `arguments` (without the program name) with the `--config` file's settings inserted
    /// before the user's own; unchanged when there is no `--config` after a subcommand `schema` knows.
    ///
    /// - Parameter schema: the keys of a config-capable subcommand, by its name; nil for other subcommands.
    public static func expand(
        _ arguments: [String], schema: (String) -> ConfigSchema?
    ) throws(ConfigFileError) -> [String] {
        guard let subcommand = arguments.first, arguments.dropFirst().contains(where: { $0.hasPrefix("--config") }) else {
            return arguments
        }
        guard let keys = schema(subcommand) else { return arguments }
        let user = Array(arguments.dropFirst())
        guard let path = try configPath(in: user) else { return arguments }
        let bytes: [UInt8]
        do { bytes = try KeyFiles.readConfigurationFile(path, what: "config file") } catch {
            throw ConfigFileError(file: path, line: nil, key: nil, problem: error.problem)
        }
        let text = String(decoding: bytes, as: UTF8.self)
        let fileArguments = try settings(fromTOML: text, file: path, for: keys)
        return [subcommand] + merge(file: fileArguments, user: user)
    }

    /// The FILE of `--config FILE` or `--config=FILE` in `arguments` (before any `--`).
    public static func configPath(in arguments: [String]) throws(ConfigFileError) -> String? {
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
    public struct Setting: Equatable {
        public var key: String
        public var arguments: [String]
        public var spellings: Set<String>
    }

    /// Converts a TOML document into settings for the command described by `schema`.
    public static func settings(fromTOML text: String, file: String, for schema: ConfigSchema) throws(ConfigFileError) -> [Setting] {
        if let (line, column, found) = tableHeaderWithoutKey(in: text) {
            throw ConfigFileError(
                file: file, line: line, key: nil,
                problem: "invalid TOML at column \(column): a table header starts with a key (a letter, digit, _, - or quote), not '\(found)'")
        }
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
                    out.append(name + "=" + (rule.isPath ? resolve(text, besideFile: file) : text))
                }
                arguments = out
            }
            settings.append(Setting(key: key, arguments: arguments, spellings: rule.spellings))
        }
        return settings
    }

    /// `path` as written in the config file `file`: unchanged when absolute or empty, or when `file`
    /// has no directory part (it is in the working directory); otherwise joined to `file`'s directory.
    public static func resolve(_ path: String, besideFile file: String) -> String {
        guard !path.isEmpty, !path.hasPrefix("/"), let slash = file.lastIndex(of: "/") else { return path }
        return String(file[..<slash]) + "/" + path
    }

    /// The file's arguments first, minus every setting the user gives on the command line, then the
    /// user's. Dropping (rather than relying on ArgumentParser keeping the last value) makes repeatable
    /// options replace the file's list.
    public static func merge(file: [Setting], user: [String]) -> [String] {
        var given: Set<String> = []
        for argument in user {
            if argument == "--" { break }
            given.insert(argument.split(separator: "=", maxSplits: 1).first.map(String.init) ?? argument)
        }
        return file.filter { $0.spellings.isDisjoint(with: given) }.flatMap(\.arguments) + user
    }

    /// The problem text for a key the command does not have.
    public static func unknownKeyProblem(_ key: String, schema: ConfigSchema) -> String {
        if key == "config" { return "a config file cannot name another one; remove this key" }
        if key.hasPrefix("no-"), schema.keys[String(key.dropFirst(3))] != nil {
            return "write '\(key.dropFirst(3)) = false' for --\(key)"
        }
        return "not an option of tunvpn \(schema.commandName) (keys: \(schema.keyNames.joined(separator: ", ")))"
    }

    /// The first table header (`[` or `[[` at the start of a line, outside multi-line strings) whose key
    /// does not start on that line with a bare-key character, a quote or `]`: its line, column and what is
    /// there instead (escaped, so the message stays one line).
    ///
    /// The toml++ parser inside TOMLKit 0.6.0 asserts on such a header instead of reporting it (an abort in a
    /// debug build, undefined behaviour where assertions become assumptions), so it is refused here first;
    /// FuzzConfig found it (Fuzz/README.md, Findings). A line of a multi-line array that starts with `[[` or
    /// `[{` is refused too, with this message instead of TOMLKit's; no option's value is a nested array.
    static func tableHeaderWithoutKey(in text: String) -> (line: Int, column: Int, found: String)? {
        var inString: String? = nil
        let lines = text.split(omittingEmptySubsequences: false) { $0 == "\n" || $0 == "\r\n" }
        for (number, rawLine) in lines.enumerated() {
            var rest = Substring(rawLine)
            if let delimiter = inString {
                guard let end = rest.firstRange(of: delimiter) else { continue }
                rest = rest[end.upperBound...]
                inString = nil
            }
            // toml++ skips a UTF-8 byte order mark at the start of the file.
            let body = (number == 0 ? rest.drop { $0 == "\u{FEFF}" } : rest).drop { $0 == " " || $0 == "\t" }
            if body.hasPrefix("[") {
                var key = body.dropFirst()
                if key.hasPrefix("[") { key = key.dropFirst() }
                key = key.drop { $0 == " " || $0 == "\t" }
                let column = rawLine.distance(from: rawLine.startIndex, to: key.startIndex) + 1
                if let first = key.first {
                    if !(first.isASCII && (first.isLetter || first.isNumber || "_-\"']".contains(first))) {
                        return (number + 1, column, String(first).unicodeScalars.map { $0.escaped(asASCII: false) }.joined())
                    }
                } else if number + 1 < lines.count {
                    return (number + 1, column, "\\n")  // the header goes on to the next line
                }
            }
            // A multi-line string opened (and not closed) on this line hides the lines after it.
            for delimiter in ["\"\"\"", "'''"] where rest.ranges(of: delimiter).count % 2 == 1 {
                inString = delimiter
                break
            }
        }
        return nil
    }

    /// The 1-based line where `key` is set (`key =`, `"key" =`, `key.x =` or `[key]`), if found.
    public static func keyLine(_ key: String, in text: String) -> Int? {
        let quotedForms = [key, "\"\(key)\"", "'\(key)'"]
        // "\r\n" is one Character in Swift, so a file with CRLF line ends is split on both.
        for (number, rawLine) in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }).enumerated() {
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
    public static func argumentText(_ value: any TOMLValueConvertible, as type: ValueType) -> String? {
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
    public static func describe(_ value: any TOMLValueConvertible) -> String {
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
