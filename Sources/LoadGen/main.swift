// tunvpn-loadgen: a test tool that makes many clients do real handshakes with a tunvpn server at once
// (bench/README.md, bench/scale.sh), and reports how many completed and how fast.
//
//   tunvpn-loadgen --peer-key keys/server.pub --endpoint 10.60.7.1:51820 --clients 1000 --window 32 \
//       --sources 10.61.7.0/24 --timeout 120
// prints one line
//   loadgen: clients=1000 attempted=1000 completed=1000 cookie_replies=… retransmissions=… failed=0
//            elapsed=…s handshakes_per_s=… loadgen_cpu=…s
// and exits 0 only if every handshake completed. The server must admit the generated keys
// (`tunvpn server --allow-any-client`) and have room for them in its address pool.
//
// With --flood RATE it makes no handshakes: it writes forged initiations to --flood-file and sends them
// from --sources at RATE a second for --flood-seconds, with the end-to-end flood test's own generator
// (TestSupport's ForgedInitiations and InitiationFlood), and prints the sender's JSON report (bench/flood.sh).

import ArgumentParser
import Crypto
import Engine
import Glibc
import Platform
import TestSupport
import Transport

struct LoadGenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tunvpn-loadgen",
        abstract: "Make many clients do real tunvpn handshakes with a server at once, and report the rate.",
        discussion: """
            Each client has a fresh key and its own UDP socket, bound to one of --sources (round robin) and a \
            kernel-chosen port. It sends an initiation, answers a cookie reply with a fresh initiation stamped \
            with mac2 (at once, where a real client waits for its retransmit timer), and after the response \
            sends one keepalive, which confirms the session on the server.

            The server must run with --allow-any-client (the keys are random) and a pool with room for \
            --clients. Prints one summary line; exits 0 only if every handshake completed, 1 otherwise.

            Example:
              tunvpn-loadgen --peer-key keys/server.pub --endpoint 10.60.7.1:51820 --clients 1000 --sources 10.61.7.0/24
            """)

    @Option(help: "The server's public key file.")
    var peerKey: String

    @Option(help: "The server's UDP endpoint, ADDRESS:PORT (an IPv4 address).")
    var endpoint: String

    @Option(help: "Number of clients, each doing one handshake.")
    var clients: Int = 1000

    @Option(help: "Handshakes in flight at once (one worker thread each).")
    var window: Int = 32

    @Option(help: ArgumentHelp(
        "Local addresses to spread clients over: a comma-separated list of addresses and CIDR prefixes (a prefix stands for its host addresses). Each must be configured here.",
        valueName: "list"))
    var sources: String = "0.0.0.0"

    @Option(help: "Give up on the clients still unfinished after this many seconds.")
    var timeout: Double = 120

    @Option(help: "Seconds a client waits for an answer before it sends a fresh initiation.")
    var retransmit: Double = 1

    @Option(help: ArgumentHelp(
        "Make no handshakes: send forged initiations (half well-formed from random keys, half garbage) at this many datagrams a second instead.",
        valueName: "rate"))
    var flood: Int?

    @Option(help: "How long a --flood lasts, in seconds.")
    var floodSeconds: Double = 11

    @Option(help: "Where --flood writes its datagrams before sending them (a file it may replace).")
    var floodFile: String?

    func validate() throws {
        guard (1...1_000_000).contains(clients) else { throw ValidationError("--clients must be between 1 and 1000000") }
        guard (1...1024).contains(window) else { throw ValidationError("--window must be between 1 and 1024") }
        guard timeout > 0, timeout <= 3600 else { throw ValidationError("--timeout must be in (0, 3600] seconds") }
        guard retransmit >= 0.01, retransmit <= 60 else { throw ValidationError("--retransmit must be in [0.01, 60] seconds") }
        if let flood {
            guard (1...1_000_000).contains(flood) else { throw ValidationError("--flood must be between 1 and 1000000 datagrams a second") }
            guard floodSeconds > 0, floodSeconds <= 3600 else { throw ValidationError("--flood-seconds must be in (0, 3600]") }
            guard floodFile != nil else { throw ValidationError("--flood needs --flood-file PATH for its datagrams") }
        }
        guard Endpoint(endpoint) != nil else {
            throw ValidationError("--endpoint '\(endpoint)' must be ADDRESS:PORT, like 10.60.7.1:51820")
        }
    }

    func run() throws {
        do {
            guard let server = Endpoint(endpoint) else { throw LoadGenError("--endpoint: checked in validate()") }
            let serverKey = try KeyFiles.loadPublicKey(peerKey)
            let addresses = try SourceAddresses.parse(sources)
            try LoadGenerator.checkSources(addresses)
            if let flood, let floodFile {
                try sendFlood(rate: flood, file: floodFile, serverKey: serverKey, server: server, sources: addresses)
            }
            let settings = LoadSettings(
                serverKey: serverKey, server: server, clients: clients, window: min(window, clients),
                sources: addresses, timeout: UInt64(timeout * 1e9), retransmitAfter: UInt64(retransmit * 1e9))
            let report = try LoadGenerator(settings: settings).run()
            if let problem = report.firstError { printLine("tunvpn-loadgen: first error: \(problem)", to: 2) }
            printLine(report.line, to: 1)
            if report.completed != report.clients { throw ExitCode(1) }
        } catch let error as ExitCode {
            throw error
        } catch {
            printLine("tunvpn-loadgen: error: \(error)", to: 2)
            throw ExitCode(1)
        }
    }
}

extension LoadGenCommand {
    /// Writes the forged datagrams and replaces this process with their sender (python3), which prints
    /// one JSON line (`sent`, `errors`, `seconds`) when it stops. Returns only if python3 cannot start.
    func sendFlood(rate: Int, file: String, serverKey: PublicKey, server: Endpoint, sources: [IPv4Address]) throws {
        let summary = try ForgedInitiations.write(to: file, serverPublicKey: serverKey.base64)
        printLine("tunvpn-loadgen: flood of \(summary), \(rate)/s for \(floodSeconds) s", to: 2)
        let command = InitiationFlood.senderCommand(
            datagrams: file, to: "\(server.address)", port: Int(server.port), sources: sources.map { "\($0)" }, rate: rate,
            seconds: floodSeconds)
        var arguments: [UnsafeMutablePointer<CChar>?] = command.map { strdup($0) }
        arguments.append(nil)
        fflush(nil)  // ForgedInitiations printed a line; exec would drop what is still buffered
        execvp("python3", &arguments)
        throw LoadGenError("cannot run python3 for the flood's sender: \(String(cString: strerror(errno)))")
    }
}

/// A failure to report as one line.
struct LoadGenError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Writes one line to a descriptor at once (write(2)), so it is not lost in a buffer at exit.
func printLine(_ line: String, to fd: Int32) {
    let text = line + "\n"
    _ = text.utf8CString.withUnsafeBufferPointer { Glibc.write(fd, $0.baseAddress, $0.count - 1) }
}

LoadGenCommand.main()
