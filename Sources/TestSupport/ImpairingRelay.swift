// An impaired underlay for tunnel tests on kernels without `tc netem` (the project VM's kernel is built
// without CONFIG_NET_SCH_NETEM): a UDP relay in a middle namespace that loses, duplicates and reorders
// datagrams, as netem's `loss`, `duplicate` and `reorder` would on each direction of a link.
//
//     client ──UDP──▶ relay (listen address:port) ──UDP from its own port──▶ server
//            ◀──────  (back to the client's latest source)  ◀────────────
//
// The relay is python3. Each datagram, independently, with a seeded generator:
// - is dropped with probability `loss`;
// - otherwise is sent twice with probability `duplicate`;
// - and, with probability `reorder`, is held back and sent after the next datagram of the same
//   direction (or after 1 ms if none comes), so that one overtakes it.
// Data frames (type 4) are counted per direction, so a test can check the tunnel's accounting exactly:
// the receiver's replay drops against the duplicates sent, its authenticated frames against the unique
// frames delivered. It runs until terminated (at most `maxSeconds`) and prints one JSON line.

import Foundation

/// A running impairing UDP relay.
public final class ImpairingRelay: @unchecked Sendable {
    /// The relay's count of data frames (type 4) for one direction.
    public struct Direction: Sendable, CustomStringConvertible {
        /// Data frames received from the sender.
        public var received: Int
        public var lost: Int
        /// Extra copies sent.
        public var duplicated: Int
        /// Frames held back and sent after a later one.
        public var reordered: Int
        /// Distinct frames sent on: `received - lost`.
        public var delivered: Int { received - lost }
        public var description: String {
            "\(received) data frames in, \(lost) lost, \(duplicated) duplicated, \(reordered) reordered"
        }
    }

    public struct Report: Sendable, CustomStringConvertible {
        public var toServer: Direction
        public var toClient: Direction
        public var description: String { "to the server: \(toServer); to the client: \(toClient)" }
    }

    public enum RelayError: Error, CustomStringConvertible {
        case didNotStart(log: String)
        case noReport(log: String)
        public var description: String {
            switch self {
            case .didNotStart(let log): "the relay did not start: \(log)"
            case .noReport(let log): "the relay printed no report: \(log)"
            }
        }
    }

    static let script = """
        import json, random, select, signal, socket, sys, time
        listen, lport, server, sport = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
        loss, dup, reorder, seed, max_seconds = float(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7]), int(sys.argv[8]), float(sys.argv[9])
        rng = random.Random(seed)
        def sock(addr):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
            s.bind(addr)
            s.setblocking(False)
            return s
        front = sock((listen, lport))
        back = sock(("0.0.0.0", 0))
        names = {id(back): "toServer", id(front): "toClient"}
        counts = {n: {"received": 0, "lost": 0, "duplicated": 0, "reordered": 0} for n in names.values()}
        held = {id(front): None, id(back): None}
        client = None
        def send(out, data, dst):
            try:
                out.sendto(data, dst)
            except OSError:
                pass
        def forward(out, data, dst):
            c = counts[names[id(out)]] if data[:1] == b"\\x04" else None
            if c is not None:
                c["received"] += 1
            if rng.random() < loss:
                if c is not None:
                    c["lost"] += 1
                return
            copies = 2 if rng.random() < dup else 1
            if c is not None and copies == 2:
                c["duplicated"] += 1
            if held[id(out)] is None and rng.random() < reorder:
                held[id(out)] = (data, dst, copies, time.monotonic())
                if c is not None:
                    c["reordered"] += 1
                return
            for _ in range(copies):
                send(out, data, dst)
            release(out)
        def release(out, older_than=None):
            h = held[id(out)]
            if h is None or (older_than is not None and h[3] > older_than):
                return
            held[id(out)] = None
            for _ in range(h[2]):
                send(out, h[0], h[1])
        def report(*_):
            print(json.dumps(counts), flush=True)
            sys.exit(0)
        signal.signal(signal.SIGTERM, report)
        print("relaying", listen, lport, "to", server, sport, flush=True)
        deadline = time.monotonic() + max_seconds
        while time.monotonic() < deadline:
            ready, _, _ = select.select([front, back], [], [], 0.001)
            for s in ready:
                for _ in range(256):
                    try:
                        data, src = s.recvfrom(65535)
                    except BlockingIOError:
                        break
                    if s is front:
                        client = src
                        forward(back, data, (server, sport))
                    elif client is not None:
                        forward(front, data, client)
            now = time.monotonic()
            release(front, now - 0.001)
            release(back, now - 0.001)
        report()
        """

    private let process: BackgroundProcess

    /// Starts the relay in `namespace`: datagrams to `listen`:`port` go to `server`:`serverPort`, and
    /// the server's answers back to the client's latest source address.
    public init(
        in namespace: NetworkNamespace, listen: String, port: Int, server: String, serverPort: Int, loss: Double,
        duplicate: Double, reorder: Double, seed: Int = 7, maxSeconds: Double = 300, logFile: String
    ) throws {
        process = try namespace.spawn(
            ["python3", "-c", Self.script, listen, "\(port)", server, "\(serverPort)", "\(loss)", "\(duplicate)",
             "\(reorder)", "\(seed)", "\(maxSeconds)"],
            logFile: logFile)
        guard process.waitForLog(containing: "relaying", timeout: 10) else {
            process.terminate()
            throw RelayError.didNotStart(log: process.log)
        }
    }

    deinit { process.terminate() }

    /// Stops the relay (SIGTERM) and returns its counts.
    public func stop() throws -> Report {
        process.terminate()
        let line = process.log.split(separator: "\n").last { $0.hasPrefix("{") }
        guard let line, let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: [String: Int]]
        else { throw RelayError.noReport(log: process.log) }
        func direction(_ name: String) -> Direction {
            let c = object[name] ?? [:]
            return Direction(
                received: c["received"] ?? 0, lost: c["lost"] ?? 0, duplicated: c["duplicated"] ?? 0,
                reordered: c["reordered"] ?? 0)
        }
        let report = Report(toServer: direction("toServer"), toClient: direction("toClient"))
        print("  relay: \(report)")
        return report
    }
}
