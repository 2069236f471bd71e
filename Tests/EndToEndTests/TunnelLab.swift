// The fixture of the tunnel end-to-end tests: a topology, a directory of keys and logs, and the real
// `tunvpn` binary started in the namespaces as an operator would start it.
//
// Issue 3's tunnel only: the server runs with `--no-nat` and the clients with `--no-routes`, and the
// tests add the routes and the forwarding sysctl themselves (issue 4 automates that). Every process log
// is printed (its last lines) when the lab closes, so a failing test shows what tunvpn said.

import Foundation
import Testing
import TestSupport

final class TunnelLab {
    static let port = 51820
    static let serverTunnelAddress = "10.8.0.1"

    let topology: Topology
    let directory: TemporaryDirectory
    private var processes: [(name: String, process: BackgroundProcess)] = []

    init(_ topology: Topology) throws {
        self.topology = topology
        directory = try TemporaryDirectory()
    }

    /// A lab on the standard client–server–internet topology.
    static func standard() throws -> TunnelLab { try TunnelLab(Topology.clientServerInternet()) }

    /// Runs `body` with the lab, then prints the process logs, stops everything and removes the
    /// namespaces and files, however `body` ends. It holds the end-to-end gate (`EndToEndGate`) meanwhile:
    /// `alone` for a test that compares throughput and needs the cores to itself.
    func use<T>(alone: Bool = false, _ body: (TunnelLab) throws -> T) throws -> T {
        defer { close() }
        return try EndToEndGate.enter(alone: alone) { try body(self) }
    }

    func path(_ name: String) -> String { directory.path + "/" + name }

    subscript(host: String) -> NetworkNamespace { topology[host] }

    // MARK: Keys and the allow-list

    /// `tunvpn keygen --out DIR --name NAME`; returns the public key (base64).
    @discardableResult
    func keygen(_ name: String) throws -> String {
        try runLoggedChecked([TestBinaries.tunvpn, "keygen", "--out", path("keys"), "--name", name])
        return try String(contentsOfFile: path("keys/\(name).pub"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Writes the server's allow-list (`keys/clients` format) and returns its path.
    @discardableResult
    func writeAllowList(_ lines: [String]) throws -> String {
        let file = path("keys/clients")
        let text = lines.joined(separator: "\n") + "\n"
        print("+ cat > \(file) <<EOF\n\(text)EOF")
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        return file
    }

    // MARK: Processes

    /// Starts `tunvpn server` in `host` and waits until its UDP socket is bound. `logName` names its log
    /// file (a test that restarts the server gives each run its own).
    func startServer(in host: String = "S", extra: [String] = [], logLevel: String = "debug", logName: String = "server")
        throws -> BackgroundProcess
    {
        let server = try start(
            logName, in: host,
            [
                "server", "--key", path("keys/server.key"), "--listen", "0.0.0.0:\(Self.port)",
                "--address", "\(Self.serverTunnelAddress)/16", "--clients", path("keys/clients"), "--dev", "tun0",
                "--no-nat", "--log-level", logLevel,
            ] + extra)
        let bound = try topology[host].waitForListener(port: Self.port, udp: true)
        try #require(bound, "tunvpn server did not bind UDP port \(Self.port) within 10 s; its log:\n\(server.log)")
        return server
    }

    /// Starts `tunvpn client` in `host` with key `key` and the server key file `serverKey`, towards
    /// `endpoint` (an address of the server's underlay). `logName` defaults to `client-<host>`.
    func startClient(
        in host: String = "C", key: String = "client", serverKey: String = "server", endpoint: String,
        extra: [String] = [], logLevel: String = "debug", wrapper: [String] = [], logName: String? = nil
    ) throws -> BackgroundProcess {
        try start(
            logName ?? "client-\(host)", in: host, wrapper: wrapper,
            [
                "client", "--key", path("keys/\(key).key"), "--peer-key", path("keys/\(serverKey).pub"),
                "--endpoint", "\(endpoint):\(Self.port)", "--dev", "tun0", "--no-routes", "--log-level", logLevel,
            ] + extra)
    }

    /// Starts tunvpn with `arguments` in `host`, behind `wrapper` (e.g. a `setpriv …` prefix) if given.
    func start(_ name: String, in host: String, wrapper: [String] = [], _ arguments: [String]) throws -> BackgroundProcess {
        let process = try topology[host].spawn(wrapper + [TestBinaries.tunvpn] + arguments, logFile: path("\(name).log"))
        processes.append((name, process))
        return process
    }

    /// Waits for the client's `tunnel up` line and returns the tunnel address it names (10.8.x.y).
    func waitForTunnelUp(_ client: BackgroundProcess, timeout: Double = 15) throws -> String {
        let up = client.waitForLog(containing: "tunnel up", timeout: timeout)
        try #require(up, "no `tunnel up` from the client within \(timeout) s; its log:\n\(client.log)")
        let line = try #require(client.log.split(separator: "\n").first { $0.contains("tunnel up") })
        let address = line.split(whereSeparator: { " ,=:/\"".contains($0) }).first { $0.hasPrefix("10.8.") }
        return String(try #require(address, "no 10.8.x.y address in \(line)"))
    }

    /// The IPv4 addresses (with prefix length) configured on `device` in `host`.
    func addresses(of device: String, in host: String) throws -> [String] {
        let out = try topology[host].ip("-4", "-o", "address", "show", "dev", device).stdout
        return out.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ")
            return fields.firstIndex(of: "inet").map { String(fields[$0 + 1]) }
        }
    }

    /// The transmit queue length (`qlen`) of `device` in `host`, as `ip link show` reports it.
    func queueLength(of device: String, in host: String) throws -> Int? {
        let fields = try topology[host].ip("-o", "link", "show", "dev", device).stdout
            .split(whereSeparator: { $0 == " " || $0 == "\\" })
        return fields.firstIndex(of: "qlen").flatMap { $0 + 1 < fields.count ? Int(fields[$0 + 1]) : nil }
    }

    /// Prints the last lines of each tunvpn log, stops every process and removes namespaces and files.
    func close() {
        for (name, process) in processes {
            process.terminate()
            let lines = process.log.split(separator: "\n", omittingEmptySubsequences: false)
            print("--- \(name) log (\(process.logFile), last \(min(lines.count, 40)) of \(lines.count) lines) ---")
            print(lines.suffix(40).joined(separator: "\n"))
        }
        processes = []
        topology.close()
        directory.remove()
    }
}
