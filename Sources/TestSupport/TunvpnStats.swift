// The `stats:` line tunvpn prints on SIGUSR1 and at exit, parsed for end-to-end tests.
//
// Format: one line whose text starts with `stats:` (a log prefix before it is tolerated),
// followed by space-separated `key=value` counters, e.g.
//     stats: rx_packets=12 tx_packets=12 rx_bytes=1008 tx_bytes=1008 drop.replay=1 drop.authentication=0
//            handshakes.completed=1 handshake.failed.unknownClientKey=0 …

import Foundation

/// The counters of one `stats:` line.
public struct TunvpnStats: Equatable, Sendable, CustomStringConvertible {
    /// Every `key=value` pair whose value is an unsigned integer.
    public var counters: [String: UInt64]

    /// Parses one line; nil if it has no `stats:`.
    public init?(line: some StringProtocol) {
        guard let marker = line.range(of: "stats:") else { return nil }
        var counters: [String: UInt64] = [:]
        for field in line[marker.upperBound...].split(whereSeparator: \.isWhitespace) {
            guard let equals = field.firstIndex(of: "=") else { continue }
            let key = String(field[..<equals])
            if let value = UInt64(field[field.index(after: equals)...]) { counters[key] = value }
        }
        self.counters = counters
    }

    /// The last complete (newline-terminated) `stats:` line in `log`, parsed; nil if there is none.
    public static func last(in log: String) -> TunvpnStats? {
        completeLines(log).reversed().lazy.compactMap { TunvpnStats(line: $0) }.first
    }

    /// The number of complete `stats:` lines in `log`.
    public static func count(in log: String) -> Int {
        completeLines(log).count { $0.contains("stats:") }
    }

    /// The lines of `log` up to its last newline (a line being written is left out).
    private static func completeLines(_ log: String) -> [Substring] {
        guard let lastNewline = log.lastIndex(of: "\n") else { return [] }
        return log[..<lastNewline].split(separator: "\n")
    }

    /// The counter `key`, or nil if the line did not have it.
    public subscript(key: String) -> UInt64? { counters[key] }

    public var description: String {
        counters.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
    }
}

public enum StatsError: Error, CustomStringConvertible {
    case noStatsLine(process: String, log: String)

    public var description: String {
        switch self {
        case .noStatsLine(let process, let log):
            "\(process) printed no new stats: line after SIGUSR1 within 5 s; its log ends:\n\(log.suffix(2000))"
        }
    }
}

extension BackgroundProcess {
    /// Sends SIGUSR1 and returns the `stats:` line it prints (waiting at most `timeout` seconds).
    public func requestStats(timeout: Double = 5) throws -> TunvpnStats {
        let before = TunvpnStats.count(in: log)
        print("+ kill -USR1 \(pid)")
        sendSignal(SIGUSR1)
        guard waitUntil(timeout: timeout, { TunvpnStats.count(in: log) > before }),
            let stats = TunvpnStats.last(in: log)
        else { throw StatsError.noStatsLine(process: description, log: log) }
        print("  \(stats)")
        return stats
    }
}
