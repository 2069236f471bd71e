// TCP throughput between namespaces with iperf3, and the kernel's count of retransmitted TCP segments
// in a namespace: the one says how fast a tunnel carries traffic, the other whether it lost any.
//
// iperf3 runs as `iperf3 -s -1` (one test, then exit) in the receiving namespace and `iperf3 -c … -J`
// in the sending one; the JSON report gives the bits per second the receiver saw and the sender's
// retransmissions. /proc/net/snmp is per network namespace, so `cat` run inside one reads its own
// counters.

import Foundation

/// What one iperf3 run measured.
public struct ThroughputReport: Sendable, CustomStringConvertible {
    /// One of iperf3's one-second reports (`intervals[].sum`), in seconds from the start of the test.
    public struct Interval: Sendable {
        public var start: Double
        public var end: Double
        public var bitsPerSecond: Double
    }

    /// Bits per second as received (iperf3's `end.sum_received`).
    public var bitsPerSecond: Double
    public var bytesReceived: Int
    public var seconds: Double
    /// Segments the sender retransmitted (`end.sum_sent.retransmits`).
    public var retransmits: Int
    /// The sender's reports, one a second.
    public var intervals: [Interval] = []
    public var megabitsPerSecond: Double { bitsPerSecond / 1e6 }

    /// The mean rate, in Mbit/s, of the intervals that lie wholly inside one of `windows` (seconds from
    /// the start of the test); nil if none does.
    public func megabitsPerSecond(within windows: [ClosedRange<Double>]) -> Double? {
        let chosen = intervals.filter { i in windows.contains { $0.contains(i.start) && $0.contains(i.end) } }
        guard !chosen.isEmpty else { return nil }
        return chosen.reduce(0) { $0 + $1.bitsPerSecond } / Double(chosen.count) / 1e6
    }
    public var description: String {
        String(format: "%.0f Mbit/s (%d bytes in %.2f s), %d retransmits", megabitsPerSecond, bytesReceived, seconds, retransmits)
    }
}

public enum ThroughputError: Error, CustomStringConvertible {
    case serverNotReady(log: String)
    case didNotFinish(log: String)
    case unreadableReport(String)
    public var description: String {
        switch self {
        case .serverNotReady(let log): "iperf3 -s did not listen within 10 s: \(log)"
        case .didNotFinish(let log): "iperf3 -c did not finish in time: \(log)"
        case .unreadableReport(let text): "iperf3 -J printed no report with end.sum_received: \(text.suffix(2000))"
        }
    }
}

/// One iperf3 TCP test in progress, from `sender` to `address`:`port` (an `iperf3 -s -1` in `receiver`).
public final class ThroughputRun: @unchecked Sendable {
    private let server: BackgroundProcess
    private let client: BackgroundProcess
    private let report: String
    private let seconds: Int
    /// The pids of iperf3's server and client.
    public var pids: (server: pid_t, client: pid_t) { (server.pid, client.pid) }
    /// When the client was started (iperf3's time 0 is a few tens of milliseconds later).
    public let startedAt: Date

    /// Starts the server, waits for it to listen, and starts a `seconds`-long test; `files` is the prefix
    /// of its log and report files.
    public init(
        from sender: NetworkNamespace, to address: String, port: Int, receiver: NetworkNamespace, seconds: Int,
        files: String
    ) throws {
        self.seconds = seconds
        report = files + ".json"
        server = try receiver.spawn(["iperf3", "-s", "-1", "-p", "\(port)"], logFile: files + ".server.log")
        guard try receiver.waitForListener(port: port) else {
            server.terminate()
            throw ThroughputError.serverNotReady(log: server.log)
        }
        startedAt = Date()
        client = try sender.spawn(
            ["sh", "-c", "exec iperf3 -c \"$1\" -p \"$2\" -t \"$3\" -J > \"$4\"", "iperf3-client", address, "\(port)",
             "\(seconds)", report],
            logFile: files + ".client.log")
    }

    deinit {
        client.terminate()
        server.terminate()
    }

    /// Waits for the test to end (its length plus `slack` seconds at most) and reads the report.
    public func wait(slack: Double = 15) throws -> ThroughputReport {
        guard client.waitForExit(timeout: Double(seconds) + slack) else {
            client.terminate()
            throw ThroughputError.didNotFinish(log: client.log)
        }
        server.waitForExit(timeout: 5)
        let text = (try? String(contentsOfFile: report, encoding: .utf8)) ?? ""
        guard let json = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
            let end = json["end"] as? [String: Any], let received = end["sum_received"] as? [String: Any],
            let bits = (received["bits_per_second"] as? NSNumber)?.doubleValue,
            let bytes = (received["bytes"] as? NSNumber).map({ Int($0.int64Value) }),
            let elapsed = (received["seconds"] as? NSNumber)?.doubleValue
        else { throw ThroughputError.unreadableReport(text + client.log) }
        let sent = end["sum_sent"] as? [String: Any]
        let retransmits = (sent?["retransmits"] as? NSNumber)?.intValue ?? 0
        let intervals = (json["intervals"] as? [[String: Any]] ?? []).compactMap { entry -> ThroughputReport.Interval? in
            guard let sum = entry["sum"] as? [String: Any], let start = (sum["start"] as? NSNumber)?.doubleValue,
                let end = (sum["end"] as? NSNumber)?.doubleValue, let bps = (sum["bits_per_second"] as? NSNumber)?.doubleValue
            else { return nil }
            return ThroughputReport.Interval(start: start, end: end, bitsPerSecond: bps)
        }
        let result = ThroughputReport(
            bitsPerSecond: bits, bytesReceived: bytes, seconds: elapsed, retransmits: retransmits, intervals: intervals)
        print("  iperf3: \(result); per second (Mbit/s): "
            + intervals.map { String(format: "%.0f", $0.bitsPerSecond / 1e6) }.joined(separator: " "))
        return result
    }
}

/// Runs one `seconds`-long iperf3 TCP test and returns what it measured.
public func measureTCPThroughput(
    from sender: NetworkNamespace, to address: String, port: Int, receiver: NetworkNamespace, seconds: Int,
    files: String
) throws -> ThroughputReport {
    try ThroughputRun(from: sender, to: address, port: port, receiver: receiver, seconds: seconds, files: files).wait()
}

extension NetworkNamespace {
    /// The namespace's `Tcp: RetransSegs` counter (/proc/net/snmp): TCP segments retransmitted so far.
    public func tcpRetransmittedSegments() throws -> Int {
        let lines = try run(["cat", "/proc/net/snmp"]).stdout.split(separator: "\n").filter { $0.hasPrefix("Tcp:") }
        guard lines.count >= 2 else { return 0 }
        let names = lines[0].split(separator: " ")
        let values = lines[1].split(separator: " ")
        guard let i = names.firstIndex(of: "RetransSegs"), i < values.count else { return 0 }
        return Int(values[i]) ?? 0
    }
}
