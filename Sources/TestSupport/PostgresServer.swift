// A real PostgreSQL server for the peer-registry tests: Debian's `postgresql` binaries
// (/usr/lib/postgresql/<version>/bin), a cluster made by `initdb` and run by `pg_ctl` as the unprivileged
// `postgres` user in a temporary directory, listening only on a Unix socket in that directory (no TCP),
// with password authentication. `PostgresServer.use` stops it and removes the directory however the
// body ends; no system PostgreSQL service is used or touched. Needs root (to run as `postgres`).
//
// The cluster has the superuser `postgres` and a login role `tunvpn` owning the database `tunvpn`, each
// with its own random password; `passwordFile` holds tunvpn's (mode 0600), as an operator would give it
// with --registry-password-file.

import Foundation

public final class PostgresServer: @unchecked Sendable {
    public let directory: TemporaryDirectory
    /// The directory of the server's Unix socket (also reachable from other network namespaces).
    public let socketDirectory: String
    public let dataDirectory: String
    public let logFile: String
    /// tunvpn's password, and the file that holds it.
    public let password: String
    public let passwordFile: String
    private let superuserPassword: String
    private let binaries: String
    private var running = false

    /// The URL tunvpn is given: the database `tunvpn` as user `tunvpn` over the socket (no password in it).
    public var url: String { url(socketDirectory: socketDirectory) }

    /// The same URL with another socket directory (one where nothing listens: an unreachable database).
    public func url(socketDirectory: String) -> String { "postgresql:///tunvpn?host=\(socketDirectory)&user=tunvpn" }

    /// The directory of the newest PostgreSQL installed, e.g. /usr/lib/postgresql/15/bin.
    public static func binaryDirectory() -> String? {
        let base = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: base)) ?? []).compactMap(Int.init).sorted()
        return versions.last.map { "\(base)/\($0)/bin" }
    }

    /// Makes and starts the cluster (with the role and database); closes everything if a step fails.
    public init() throws {
        guard let binaries = Self.binaryDirectory(), FileManager.default.isExecutableFile(atPath: binaries + "/initdb")
        else {
            throw PostgresFixtureError("no PostgreSQL under /usr/lib/postgresql: apt-get install postgresql (it is in .ci/packages)")
        }
        self.binaries = binaries
        directory = try TemporaryDirectory()
        socketDirectory = directory.path + "/socket"
        dataDirectory = directory.path + "/data"
        logFile = directory.path + "/postgres.log"
        password = Self.randomHex()
        superuserPassword = Self.randomHex()
        passwordFile = directory.path + "/tunvpn.password"
        do {
            chmod(directory.path, 0o755)
            try FileManager.default.createDirectory(atPath: socketDirectory, withIntermediateDirectories: false)
            try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: false)
            let superuserFile = directory.path + "/postgres.password"
            try superuserPassword.write(toFile: superuserFile, atomically: false, encoding: .utf8)
            try password.write(toFile: passwordFile, atomically: false, encoding: .utf8)
            chmod(passwordFile, 0o600)
            for path in [socketDirectory, dataDirectory, superuserFile, logFile] {
                if path == logFile { FileManager.default.createFile(atPath: logFile, contents: nil) }
                try runChecked(["chown", "postgres:postgres", path])
            }
            chmod(superuserFile, 0o600)
            chmod(dataDirectory, 0o700)
            try asPostgres([
                binaries + "/initdb", "-D", dataDirectory, "-U", "postgres", "--pwfile", superuserFile, "--auth-local=scram-sha-256",
                "--auth-host=reject", "--no-sync", "-E", "UTF8", "--locale=C",
            ])
            try start()
            try superuser("CREATE ROLE tunvpn LOGIN PASSWORD '\(password)'", database: "postgres")
            try superuser("CREATE DATABASE tunvpn OWNER tunvpn", database: "postgres")
        } catch {
            close()
            throw error
        }
    }

    /// Runs `body` with a new server, then stops it and removes its directory, however `body` ends.
    public static func use<T>(_ body: (PostgresServer) throws -> T) throws -> T {
        let server = try PostgresServer()
        defer { server.close() }
        return try body(server)
    }

    /// Starts the server (listening on `socketDirectory`, or on `elsewhere` to hide it from tunvpn while the
    /// test itself can still change it), and waits until it accepts connections.
    public func start(socketDirectory elsewhere: String? = nil) throws {
        let socket = elsewhere ?? socketDirectory
        if let elsewhere {
            try? FileManager.default.createDirectory(atPath: elsewhere, withIntermediateDirectories: false)
            try runChecked(["chown", "postgres:postgres", elsewhere])
        }
        try asPostgres([
            binaries + "/pg_ctl", "-D", dataDirectory, "-l", logFile, "-w", "-t", "30", "-o",
            "-c listen_addresses='' -c unix_socket_directories='\(socket)' -c fsync=off", "start",
        ])
        running = true
        activeSocket = socket
    }

    /// Where the running server listens.
    public private(set) var activeSocket = ""

    /// Stops the server (fast shutdown: open connections are closed) and waits for it.
    public func stop() throws {
        guard running else { return }
        try asPostgres([binaries + "/pg_ctl", "-D", dataDirectory, "-m", "fast", "-w", "-t", "30", "stop"])
        running = false
    }

    /// Stops the server if it runs and removes its directory.
    public func close() {
        if running { try? stop() }
        directory.remove()
    }

    /// Runs SQL as the superuser in `database` (default: tunvpn's) and returns psql's unaligned output.
    @discardableResult
    public func superuser(_ sql: String, database: String = "tunvpn") throws -> String {
        let result = try runChild([
            "env", "PGPASSWORD=\(superuserPassword)", binaries + "/psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h",
            activeSocket, "-U", "postgres", "-d", database, "-c", sql,
        ])
        guard result.status == 0 else { throw PostgresFixtureError("psql \(sql): \(result.stderr)") }
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The server's log (for a failing test's output).
    public var log: String { (try? String(contentsOfFile: logFile, encoding: .utf8)) ?? "" }

    private func asPostgres(_ command: [String]) throws {
        let result = try runChild(["runuser", "-u", "postgres", "--"] + command, timeout: 60)
        guard result.status == 0 else {
            throw PostgresFixtureError("\(command.joined(separator: " ")) failed (\(result.status)): \(result.stdout) \(result.stderr) \(log)")
        }
    }

    private func runChecked(_ command: [String]) throws {
        let result = try runChild(command)
        guard result.status == 0 else { throw PostgresFixtureError("\(command.joined(separator: " ")): \(result.stderr)") }
    }

    private static func randomHex() -> String {
        (0..<16).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
    }
}

public struct PostgresFixtureError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
