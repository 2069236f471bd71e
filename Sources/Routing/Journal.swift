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
    /// Deletes the journal.
    func remove() throws(RoutingError)
}

/// Runs host commands (a real one in Platform; a recording fake in tests).
public protocol CommandExecutor {
    /// Runs `command` with `input` on stdin; nil on success, else the command's error output.
    func run(_ command: [String], input: String?) -> String?
    /// The current value of a sysctl, or nil if it cannot be read.
    func readSysctl(_ key: String) -> String?
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

    /// Applies `plan` step by step, journaling each undo first. On failure, undoes what was done, removes
    /// the journal, and throws an error naming the step and the command.
    public func apply(_ plan: Plan) throws(RoutingError) {
        for change in plan.changes {
            var previous: String? = nil
            if case .sysctl(let key, _) = change {
                previous = executor.readSysctl(key)
                if previous == nil {
                    rollBack()
                    throw RoutingError(step: change.summary, command: "", message: "cannot read \(key)")
                }
            }
            let undoInput: String? = nil
            try journal.append(JournalEntry(undo: change.undoCommand(previousValue: previous), input: undoInput))
            if let failure = executor.run(change.applyCommand, input: change.applyInput) {
                // The failed step made no change (commands are atomic), so only the earlier ones are undone.
                let entries = (try? journal.entries()) ?? []
                for entry in entries.dropLast().reversed() { _ = executor.run(entry.undo, input: entry.input) }
                try? journal.remove()
                throw RoutingError(
                    step: change.summary, command: change.applyCommand.map(shellQuote).joined(separator: " "),
                    message: failure)
            }
        }
    }

    private func rollBack() {
        let entries = (try? journal.entries()) ?? []
        for entry in entries.reversed() { _ = executor.run(entry.undo, input: entry.input) }
        try? journal.remove()
    }

    /// Undoes everything the journal records, newest first, then removes it. Undo commands that find
    /// nothing to remove (a crash before the change was made) are not errors. Returns the number of
    /// entries replayed and the failures that remain.
    @discardableResult
    public func tearDown() throws(RoutingError) -> (undone: Int, failures: [String]) {
        let entries = try journal.entries()
        var failures: [String] = []
        for entry in entries.reversed() {
            if let failure = executor.run(entry.undo, input: entry.input), !Self.isAlreadyGone(failure) {
                failures.append("`\(entry.undo.map(shellQuote).joined(separator: " "))`: \(failure)")
            }
        }
        try journal.remove()
        return (entries.count, failures)
    }

    /// Error texts that mean "the thing to remove is not there", from ip, nft and iptables.
    static func isAlreadyGone(_ message: String) -> Bool {
        let m = message.lowercased()
        return m.contains("no such process") || m.contains("no such file or directory")
            || m.contains("does a matching rule exist") || m.contains("bad rule") || m.contains("cannot find device")
    }
}
