// The dnsmasq command line of a lab resolver, shared by the end-to-end tests (TestSupport's `Dnsmasq`)
// and `tunvpn demo`. dnsmasq here is Debian's dnsmasq-base binary (no system service), run only inside a
// lab namespace, in the foreground (so the runner's pid is dnsmasq's and it is stopped by that pid), with
// no configuration file, no upstream servers and no /etc/hosts: it answers only its `--host-record`s,
// listens only on `address` (`--bind-interfaces`), and logs every query to `queryLog` (dnsmasq(8)).
//
// No Testing and no Foundation here (see LabPlan.swift).

public enum DnsmasqPlan {
    /// dnsmasq's arguments (argv[0] included). `records` maps a name to its addresses (IPv4 and/or IPv6),
    /// one `--host-record=NAME,ADDR[,ADDR]` each.
    public static func arguments(address: String, records: [(name: String, addresses: [String])], queryLog: String, pidFile: String)
        -> [String]
    {
        [
            "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--bind-interfaces",
            "--listen-address=\(address)", "--log-queries", "--log-facility=\(queryLog)", "--pid-file=\(pidFile)", "--user=root",
        ] + records.map { "--host-record=" + ([$0.name] + $0.addresses).joined(separator: ",") }
    }
}
