// The state journal and the algorithm that applies a plan with it.
//
// Before each change is made, the command that undoes it is appended to the journal (and synced), so a
// crash at any point leaves a record of everything that may have been changed. Teardown replays the
// journal backwards. A change that fails half way is rolled back the same way, and the error names the
// step and the command. Storage and command execution are protocols implemented by Platform; this file
// does no IO of its own.

/// One journal line: a command that undoes one change, with its standard input.
public struct JournalEntry: Equatable, Sendable {
    public var undo: [String]
    public var input: String?

    public init(undo: [String], input: String? = nil) {
        self.undo = undo
        self.input = input
    }

    /// One line: arguments separated by tabs, each percent-escaped (%, tab, newline); the input, if any,
    /// follows a lone "<" field.
    public var encoded: String {
        var fields = undo.map(Self.escape)
        if let input { fields += ["<", Self.escape(input)] }
        return fields.joined(separator: "\t")
    }

    public init?(encoded line: Substring) {
        var fields = String(line).unicodeScalars.split(separator: "\t", omittingEmptySubsequences: false)
            .map { Self.unescape(Substring(String(String.UnicodeScalarView($0)))) }
        guard !fields.isEmpty, fields.allSatisfy({ $0 != nil }) else { return nil }
        var values = fields.compactMap { $0 }
        fields = []
        if values.count >= 2, values[values.count - 2] == "<" {
            input = values.removeLast()
            values.removeLast()
        } else {
            input = nil
        }
        guard !values.isEmpty else { return nil }
        undo = values
    }

    /// Percent-escapes %, tab, CR and LF, working on Unicode scalars (not Characters), so that a control
    /// character next to a combining mark, or "\r" before the line's "\n", cannot merge into one grapheme
    /// and slip past the escaping (found by FuzzJournal).
    static func escape(_ s: String) -> String {
        var out = String.UnicodeScalarView()
        for c in s.unicodeScalars {
            switch c {
            case "%": out.append(contentsOf: "%25".unicodeScalars)
            case "\t": out.append(contentsOf: "%09".unicodeScalars)
            case "\n": out.append(contentsOf: "%0A".unicodeScalars)
            case "\r": out.append(contentsOf: "%0D".unicodeScalars)
            default: out.append(c)
            }
        }
        return String(out)
    }

    static func unescape(_ s: Substring) -> String? {
        let scalars = Array(s.unicodeScalars)
        var out = String.UnicodeScalarView()
        var i = 0
        while i < scalars.count {
            if scalars[i] == "%" {
                guard i + 2 < scalars.count, scalars[i + 1].properties.isASCIIHexDigit,
                    scalars[i + 2].properties.isASCIIHexDigit,
                    let v = UInt8(String(String.UnicodeScalarView([scalars[i + 1], scalars[i + 2]])), radix: 16)
                else { return nil }
                out.append(Unicode.Scalar(v))
                i += 3
            } else {
                out.append(scalars[i])
                i += 1
            }
        }
        return String(out)
    }
}

/// Where journal entries are kept (a file under /run/tunvpn in Platform, memory in tests).
public protocol JournalStore {
    /// Appends one entry durably (synced before returning).
    func append(_ entry: JournalEntry) throws(RoutingError)
    /// Every entry, oldest first; empty when there is no journal.
    func entries() throws(RoutingError) -> [JournalEntry]
    /// Empties the journal: nothing is left to undo.
    func remove() throws(RoutingError)
}

/// Which journal entries a root process may replay.
///
/// A journal is read back by `tunvpn down` and by the next start, both running as root, while the instance
/// that wrote it may have run unprivileged, so a compromised instance could have appended lines of its own.
/// Only the shapes of undo command that plans produce are run:
/// - `ip [-4|-6] route|rule|address|addr|link …`, never with `netns`, `-n`, `-netns`, `-batch`, `-b` or
///   `-force` (ip(8): those run other commands or act on other namespaces), and with no input;
/// - `nft delete table FAMILY NAME`, or `nft -f -` whose input starts with a table statement and holds no
///   `include` (nft(8): include reads other files);
/// - `iptables …` or `ip6tables …` without `--modprobe` (iptables(8): it names a program to run), and with
///   no input;
/// - `sysctl -w net.KEY=VALUE`, with a key and value of letters, digits, `_`, `-` and `.` only;
/// - `resolvectl revert DEVICE`;
/// - `tunvpn-resolv-conf restore /etc/resolv.conf file|symlink TARGET|absent` (run in process, never as a
///   program; `ResolvConf`), for that one path only.
public enum ReplayPolicy {
    /// Why `entry` must not be run, or nil when it may.
    public static func refusal(_ entry: JournalEntry) -> String? {
        let argv = entry.undo
        guard let program = argv.first else { return "empty command" }
        switch program {
        case "ip":
            guard entry.input == nil else { return "ip takes no input" }
            let forbidden: Set<String> = ["netns", "-n", "-netns", "--netns", "-batch", "--batch", "-b", "-force", "--force"]
            if let bad = argv.first(where: { forbidden.contains($0) }) { return "ip with \(bad) is never replayed" }
            var i = 1
            while i < argv.count, argv[i] == "-4" || argv[i] == "-6" { i += 1 }
            guard i < argv.count, ["route", "rule", "address", "addr", "link"].contains(argv[i]) else {
                return "ip is replayed only with route, rule, address or link"
            }
            return nil
        case "nft":
            if argv.count == 5, argv[1] == "delete", argv[2] == "table" {
                guard ["ip", "ip6", "inet", "arp", "bridge", "netdev"].contains(argv[3]) else {
                    return "nft delete table: unknown family \(argv[3])"
                }
                guard isName(argv[4]) else { return "nft delete table: bad table name" }
                return entry.input == nil ? nil : "nft delete table takes no input"
            }
            guard argv == ["nft", "-f", "-"], let input = entry.input else {
                return "nft is replayed only as `nft delete table FAMILY NAME` or `nft -f -`"
            }
            let statements = input.split(whereSeparator: { $0 == "\n" || $0 == ";" })
                .map { $0.drop(while: { $0 == " " || $0 == "\t" }) }
                .filter { !$0.isEmpty && !$0.hasPrefix("#") }
            guard let first = statements.first,
                first.hasPrefix("table ") || first.hasPrefix("add table ") || first.hasPrefix("delete table ")
            else { return "nft -f - input must start with a table statement" }
            let words = input.split(whereSeparator: { " \t\n;{}\"".contains($0) })
            if words.contains("include") { return "nft input with include is never replayed" }
            return nil
        case "iptables", "ip6tables":
            guard entry.input == nil else { return "\(program) takes no input" }
            if argv.contains(where: { $0.hasPrefix("--modprobe") }) { return "\(program) with --modprobe is never replayed" }
            return nil
        case "sysctl":
            guard entry.input == nil, argv.count == 3, argv[1] == "-w", let eq = argv[2].firstIndex(of: "=") else {
                return "sysctl is replayed only as `sysctl -w net.KEY=VALUE`"
            }
            let key = argv[2][..<eq]
            let value = argv[2][argv[2].index(after: eq)...]
            guard key.hasPrefix("net."), !key.contains(".."), isName(key, extra: "."), isName(value, extra: ".") else {
                return "sysctl is replayed only for net.* keys with plain values"
            }
            return nil
        case "resolvectl":
            guard entry.input == nil, argv.count == 3, argv[1] == "revert", isName(argv[2], extra: ".") else {
                return "resolvectl is replayed only as `resolvectl revert DEVICE`"
            }
            return nil
        case ResolvConf.program:
            guard let (path, _) = ResolvConf.saved(in: entry) else {
                return "\(program) is replayed only as `restore PATH file|symlink TARGET|absent` with hex input"
            }
            guard path == ResolvConf.path else { return "\(program) restores only \(ResolvConf.path)" }
            return nil
        default:
            return "\(program) is not one of ip, nft, iptables, ip6tables, sysctl, resolvectl, \(ResolvConf.program)"
        }
    }

    /// True for a non-empty string of ASCII letters, digits, `_`, `-` and the characters in `extra`.
    static func isName(_ s: some StringProtocol, extra: String = "") -> Bool {
        !s.isEmpty && s.unicodeScalars.allSatisfy { c in
            c.isASCII && (c.properties.isAlphabetic || ("0"..."9").contains(c) || c == "_" || c == "-" || extra.unicodeScalars.contains(c))
        }
    }
}

/// Runs host commands (a real one in Platform; a recording fake in tests).
public protocol CommandExecutor {
    /// Runs `command` with `input` on stdin; nil on success, else the command's error output.
    func run(_ command: [String], input: String?) -> String?
    /// The current value of a sysctl, or nil if it cannot be read.
    func readSysctl(_ key: String) -> String?
    /// What is at `path` now (a file's bytes, a symbolic link, nothing), or nil if it cannot be read: the
    /// original a resolv.conf step saves before it writes.
    func readFile(_ path: String) -> SavedFile?
}

extension CommandExecutor {
    /// Executors that never write files read none.
    public func readFile(_ path: String) -> SavedFile? { nil }
}

/// Why applying or undoing a plan failed.
public struct RoutingError: Error, Equatable, Sendable, CustomStringConvertible {
    public var step: String
    public var command: String
    public var message: String

    public init(step: String, command: String, message: String) {
        self.step = step
        self.command = command
        self.message = message
    }

    public var description: String {
        command.isEmpty ? "\(step): \(message)" : "\(step) failed: `\(command)`: \(message)"
    }
}

/// Applies and undoes plans through a journal.
public struct PlanExecutor {
    public let executor: any CommandExecutor
    public let journal: any JournalStore

    public init(executor: any CommandExecutor, journal: any JournalStore) {
        self.executor = executor
        self.journal = journal
    }

    /// Applies `plan` step by step, journaling each undo first. On failure, undoes what was done, empties
    /// the journal, and throws an error naming the step and the command.
    ///
    /// An undo the journal already holds is not journaled twice: a kill-switch table kept from the previous
    /// run (see `tearDown(keeping:)`) is replaced in place by its new version and has one undo.
    public func apply(_ plan: Plan) throws(RoutingError) {
        for change in plan.changes {
            if case .device = change {
                rollBack(dropLast: false)
                throw RoutingError(
                    step: change.summary, command: "", message: "a device step is applied by the device, not by a command")
            }
            if case .resolvConf(let settings) = change {
                try applyResolvConf(settings, change: change)
                continue
            }
            var previous: String? = nil
            if case .sysctl(let key, _) = change {
                previous = executor.readSysctl(key)
                if previous == nil {
                    rollBack(dropLast: false)
                    throw RoutingError(step: change.summary, command: "", message: "cannot read \(key)")
                }
            }
            let entry = JournalEntry(undo: change.undoCommand(previousValue: previous), input: nil)
            let journaled = try journal.entries().contains(entry)
            if !journaled { try journal.append(entry) }
            if let failure = executor.run(change.applyCommand, input: change.applyInput) {
                // The failed step made no change (commands are atomic), so only the earlier ones are undone.
                rollBack(dropLast: !journaled)
                throw RoutingError(
                    step: change.summary, command: change.applyCommand.map(shellQuote).joined(separator: " "),
                    message: failure)
            }
        }
    }

    /// Writes a resolv.conf, after journaling the original unless the journal already holds it (a later
    /// handshake with other DNS settings rewrites the file; the original stays the one to restore).
    private func applyResolvConf(_ settings: ResolvConfSettings, change: Change) throws(RoutingError) {
        let held = try journal.entries().compactMap(ResolvConf.saved(in:)).first { $0.path == settings.path }
        var original: [UInt8]?
        if let held {
            switch held.saved {
            case .file(let bytes): original = bytes
            case .symlink(let target, _):
                // A relative target is relative to the link's directory (symlink(7)).
                let directory = settings.path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
                let resolved = target.hasPrefix("/") ? target : directory + "/" + target
                if case .file(let bytes)? = executor.readFile(resolved) { original = bytes }
            case .absent: original = nil
            }
        } else {
            guard let saved = executor.readFile(settings.path) else {
                rollBack(dropLast: false)
                throw RoutingError(step: change.summary, command: "", message: "cannot read \(settings.path)")
            }
            switch saved {
            case .file(let bytes): original = bytes
            case .symlink(_, let content): original = content
            case .absent: original = nil
            }
            try journal.append(ResolvConf.restoreEntry(path: settings.path, saved: saved))
        }
        let text = ResolvConf.render(settings, original: original)
        if let failure = executor.run(change.applyCommand, input: text) {
            // An in-place write may have failed half way: the original is put back in any case.
            rollBack(dropLast: false)
            throw RoutingError(step: change.summary, command: change.applyCommand.joined(separator: " "), message: failure)
        }
    }

    /// Undoes what the journal records (all but the newest entry with `dropLast`) and empties it.
    private func rollBack(dropLast: Bool) {
        let entries = (try? journal.entries()) ?? []
        for entry in (dropLast ? entries.dropLast() : entries[...]).reversed() where ReplayPolicy.refusal(entry) == nil {
            _ = executor.run(entry.undo, input: entry.input)
        }
        try? journal.remove()
    }

    /// Undoes everything the journal records, newest first, then empties it. Undo commands that find
    /// nothing to remove (a crash before the change was made) are not errors. Entries that `ReplayPolicy`
    /// refuses are not run and count as failures.
    ///
    /// - Parameter keeping: undo commands that are not run but stay in the journal (a client starting with
    ///   `--lockdown` keeps the previous run's kill-switch table until its new version replaces it).
    /// - Returns: the number of entries replayed and the failures that remain.
    @discardableResult
    public func tearDown(keeping: [[String]] = []) throws(RoutingError) -> (undone: Int, failures: [String]) {
        let entries = try journal.entries()
        var failures: [String] = []
        var kept: [JournalEntry] = []
        var undone = 0
        for entry in entries.reversed() {
            if keeping.contains(entry.undo) {
                if !kept.contains(entry) { kept.insert(entry, at: 0) }
                continue
            }
            undone += 1
            let text = entry.undo.map(shellQuote).joined(separator: " ")
            if let refusal = ReplayPolicy.refusal(entry) {
                failures.append("`\(text)`: not run: \(refusal)")
                continue
            }
            if let failure = executor.run(entry.undo, input: entry.input), !Self.isAlreadyGone(failure) {
                failures.append("`\(text)`: \(failure)")
            }
        }
        try journal.remove()
        for entry in kept { try journal.append(entry) }
        return (undone, failures)
    }

    /// Error texts that mean "the thing to remove is not there", from ip, nft, iptables and resolvectl
    /// (whose `revert` after a crash finds the TUN device gone: `Failed to resolve interface "tun0": No such
    /// device`).
    public static func isAlreadyGone(_ message: String) -> Bool {
        let m = message.lowercased()
        return m.contains("no such process") || m.contains("no such file or directory")
            || m.contains("does a matching rule exist") || m.contains("bad rule") || m.contains("cannot find device")
            || m.contains("no such device")
    }
}
