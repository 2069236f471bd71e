// CPU time of processes and of the whole machine, read from /proc, so that a test measuring throughput
// under load can say where the processor went (proc(5): /proc/PID/stat fields 14–15, /proc/stat).

import Foundation

public enum ProcessCPU {
    /// User plus system CPU seconds `pid` has used so far (0 if it is gone).
    public static func seconds(of pid: pid_t) -> Double {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = text.lastIndex(of: ")")
        else { return 0 }
        // After "pid (comm) ": field 3 is the state, so utime (14) and stime (15) are at 11 and 12.
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// Busy and total CPU seconds of the whole machine since boot (first line of /proc/stat; idle and
    /// iowait count as not busy).
    public static func machine() -> (busy: Double, total: Double) {
        guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
            let line = text.split(separator: "\n").first
        else { return (0, 0) }
        let values = line.split(separator: " ").dropFirst().compactMap { Double($0) }
        guard values.count >= 5 else { return (0, 0) }
        let total = values.reduce(0, +)
        let idle = values[3] + values[4]
        let tick = Double(sysconf(Int32(_SC_CLK_TCK)))
        return ((total - idle) / tick, total / tick)
    }
}
