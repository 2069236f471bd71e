// A small owner of one libpq connection (PostgreSQL's client library, libpq(3) / "libpq - C Library" in
// the PostgreSQL manual): connect, run a statement with text parameters, wait for notifications. Each
// connection belongs to one thread at a time (libpq allows a connection to be used by one thread only).

import CLibPQ
import Glibc

/// A connection URL (or `key=value` string) for libpq, checked and made safe to log.
public struct RegistryURL: Sendable, Equatable, CustomStringConvertible {
    /// The text as given.
    public let text: String
    /// `host=… port=… dbname=… user=…`: what may be logged (never a password).
    public let display: String

    /// Parses `text` with libpq's own parser (PQconninfoParse).
    ///
    /// - Throws: `ControlError` for text libpq cannot parse, and for a URL that holds a password: the
    ///   command line is readable by every user of the host (/proc/PID/cmdline) and a config file's value
    ///   becomes one, so a password belongs in --registry-password-file or ~/.pgpass.
    public init(_ text: String) throws(ControlError) {
        self.text = text
        let pq: LibPQ
        do { pq = try LibPQ.load() } catch { throw ControlError("--registry: \(error)") }
        var message: UnsafeMutablePointer<CChar>? = nil
        guard let options = pq.conninfoParse(text, &message) else {
            let reason = message.map { String(cString: $0).trimmingSuffix("\n") } ?? "out of memory"
            if let message { pq.freemem(message) }
            // libpq's message quotes nothing secret (a URL with a password is refused below, once parsed).
            throw ControlError(
                "--registry: not a PostgreSQL connection URL (\(reason)); e.g. --registry postgresql://tunvpn@db.example.net/tunvpn")
        }
        defer { pq.conninfoFree(options) }
        var fields: [String: String] = [:]
        var option = options
        while let keyword = option.pointee.keyword {
            if let value = option.pointee.val { fields[String(cString: keyword)] = String(cString: value) }
            option += 1
        }
        if fields["password"] != nil || fields["sslpassword"] != nil {
            throw ControlError(
                "--registry: the URL holds a password, which the process title and logs would show; drop it from the URL and put it in --registry-password-file FILE or ~/.pgpass, e.g. --registry postgresql://tunvpn@db.example.net/tunvpn")
        }
        display = ["host", "hostaddr", "port", "dbname", "user"].compactMap { k in fields[k].map { "\(k)=\($0)" } }
            .joined(separator: " ")
    }

    public var description: String { display }
}

/// A failed libpq call: one line (libpq's message, on one line).
public struct PostgresError: Error, Sendable, CustomStringConvertible {
    public var message: String
    /// The SQLSTATE of a failed statement (23505: unique violation), when there is one.
    public var sqlState: String?
    public var description: String { message }
}

/// One open connection. Not shared between threads.
public final class PostgresConnection: @unchecked Sendable {
    private var connection: OpaquePointer?
    private let pq: LibPQ

    /// Connects to `url`; `password` (from a file) overrides libpq's own sources (PGPASSWORD, ~/.pgpass).
    /// A connection attempt gives up after `timeout` seconds unless the URL sets `connect_timeout`.
    public init(_ url: RegistryURL, password: String?, timeout: Int = 5) throws(PostgresError) {
        pq = try LibPQ.load()
        let pq = self.pq
        // Later entries override earlier ones: the URL overrides the timeout and application name, the
        // password file overrides everything.
        var keywords = ["connect_timeout", "application_name", "dbname"]
        var values = [String(timeout), "tunvpn", url.text]
        if let password {
            keywords.append("password")
            values.append(password)
        }
        let conn = withCStrings(keywords) { k in withCStrings(values) { v in pq.connectdbParams(k, v, 1) } }
        guard let conn, pq.status(conn) == CONNECTION_OK else {
            let message = conn.map { Self.oneLine(pq.errorMessage($0)) } ?? "out of memory"
            if let conn { pq.finish(conn) }
            throw PostgresError(message: "cannot connect: \(message)")
        }
        // Notices (such as "relation already exists, skipping") are not errors: keep them off stderr.
        _ = pq.setNoticeProcessor(conn, { _, _ in }, nil)  // the previous processor (libpq's default) is not kept
        connection = conn
    }

    deinit { close() }

    public func close() {
        if let connection { pq.finish(connection) }
        connection = nil
    }

    /// The password the connection used (from the file, the environment or ~/.pgpass), so a reconnect after
    /// the privilege drop (when ~/.pgpass may be out of reach) uses it again; nil when none was needed.
    public var usedPassword: String? {
        guard let connection, let p = pq.pass(connection), p.pointee != 0 else { return nil }
        return String(cString: p)
    }

    /// Whether the connection still works as far as libpq knows.
    public var isOK: Bool { connection.map { pq.status($0) == CONNECTION_OK } ?? false }

    /// Runs one statement with text parameters (nil is NULL) and returns its rows as text (nil for NULL).
    @discardableResult
    public func query(_ sql: String, _ parameters: [String?] = []) throws(PostgresError) -> [[String?]] {
        guard let connection else { throw PostgresError(message: "the connection is closed") }
        // Without parameters, PQexec, which also runs several statements (a migration) at once.
        let result =
            parameters.isEmpty
            ? pq.exec(connection, sql)
            : withOptionalCStrings(parameters) { p in pq.execParams(connection, sql, Int32(parameters.count), nil, p, nil, nil, 0) }
        guard let result else { throw PostgresError(message: Self.oneLine(pq.errorMessage(connection))) }
        defer { pq.clear(result) }
        let status = pq.resultStatus(result)
        guard status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK else {
            let state = pq.resultErrorField(result, Int32(UInt8(ascii: "C"))).map { String(cString: $0) }
            throw PostgresError(message: Self.oneLine(pq.resultErrorMessage(result)), sqlState: state)
        }
        var rows: [[String?]] = []
        let rowCount = pq.ntuples(result)
        let columnCount = pq.nfields(result)
        rows.reserveCapacity(Int(rowCount))
        for r in 0..<rowCount {
            var row: [String?] = []
            row.reserveCapacity(Int(columnCount))
            for c in 0..<columnCount {
                row.append(pq.getisnull(result, r, c) == 1 ? nil : pq.getvalue(result, r, c).map { String(cString: $0) } ?? "")
            }
            rows.append(row)
        }
        return rows
    }

    /// Runs `body` in a transaction: COMMIT when it returns, ROLLBACK when it throws.
    public func transaction<T>(_ body: () throws(PostgresError) -> T) throws(PostgresError) -> T {
        try query("BEGIN")
        do {
            let value = try body()
            try query("COMMIT")
            return value
        } catch {
            _ = try? query("ROLLBACK")
            throw error
        }
    }

    /// Waits up to `timeout` milliseconds for notifications and returns how many arrived (0 on timeout).
    ///
    /// - Throws: when the connection broke (the server stopped, the network failed).
    public func waitForNotifications(timeout: Int32) throws(PostgresError) -> Int {
        guard let connection else { throw PostgresError(message: "the connection is closed") }
        var count = drain(connection)
        if count > 0 { return count }
        var fd = pollfd(fd: pq.socket(connection), events: Int16(POLLIN), revents: 0)
        guard fd.fd >= 0 else { throw PostgresError(message: "the connection is closed") }
        let ready = poll(&fd, 1, timeout)
        if ready < 0 && errno != EINTR { throw PostgresError(message: "poll: \(String(cString: strerror(errno)))") }
        if ready > 0 {
            guard pq.consumeInput(connection) == 1 else {
                throw PostgresError(message: Self.oneLine(pq.errorMessage(connection)))
            }
            count = drain(connection)
        }
        guard pq.status(connection) == CONNECTION_OK else {
            throw PostgresError(message: Self.oneLine(pq.errorMessage(connection)))
        }
        return count
    }

    private func drain(_ connection: OpaquePointer) -> Int {
        var count = 0
        while let notify = pq.notifies(connection) {
            pq.freemem(notify)
            count += 1
        }
        return count
    }

    /// libpq's message on one line, without its trailing newline.
    static func oneLine(_ text: UnsafePointer<CChar>?) -> String {
        guard let text else { return "unknown error" }
        return String(cString: text).split(whereSeparator: \.isNewline).map { $0.trimmingCharacters() }
            .filter { !$0.isEmpty }.joined(separator: "; ")
    }
}

extension Substring {
    fileprivate func trimmingCharacters() -> String {
        String(self.drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
    }
}

/// Calls `body` with a C array of C strings (valid only inside it).
private func withCStrings<T>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> T) -> T {
    let copies = strings.map { strdup($0) }
    defer { copies.forEach { free($0) } }
    let pointers: [UnsafePointer<CChar>?] = copies.map { $0.map { UnsafePointer($0) } } + [nil]
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}

/// The same, with nil entries passed as NULL.
private func withOptionalCStrings<T>(_ strings: [String?], _ body: (UnsafePointer<UnsafePointer<CChar>?>?) -> T) -> T {
    let copies = strings.map { $0.map { strdup($0) } ?? nil }
    defer { copies.forEach { free($0) } }
    let pointers: [UnsafePointer<CChar>?] = copies.map { $0.map { UnsafePointer($0) } }
    if pointers.isEmpty { return body(nil) }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress) }
}
