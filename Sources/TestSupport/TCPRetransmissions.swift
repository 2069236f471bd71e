// The kernel's count of retransmitted TCP segments in a namespace: whether a tunnel lost any of a TCP
// transfer's segments. /proc/net/snmp is per network namespace, so `cat` run inside one reads its own
// counters. (Throughput itself is measured by bench/, not by tests.)

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
