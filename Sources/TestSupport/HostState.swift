// What tunvpn may change in a namespace, read as text so a test can compare it before a start and
// after a stop: the routes of every table, the policy rules, the nftables ruleset (which also shows
// iptables-nft rules), the interfaces, and chosen sysctls. Issue 4: "identical before start and after
// SIGTERM; the same after kill -9 followed by `tunvpn down`".

import Foundation

/// A snapshot of one namespace's routing and filtering state.
public struct HostState: Equatable, Sendable, CustomStringConvertible {
    /// `ip route show table all` (IPv4 and IPv6, local tables included).
    public var routes: String
    /// `ip -4 rule show` and `ip -6 rule show`.
    public var rules: String
    /// `nft list ruleset`.
    public var ruleset: String
    /// Interface names (`ip -o link show`), sorted.
    public var interfaces: [String]
    /// Each sysctl asked for, with its value.
    public var sysctls: [String: String]

    /// The sections that differ from `other`, each with both versions, for a failure message.
    public func differences(from other: HostState) -> String {
        var out: [String] = []
        func compare(_ name: String, _ mine: String, _ theirs: String) {
            if mine != theirs { out.append("\(name) was:\n\(theirs)\n\(name) is now:\n\(mine)") }
        }
        compare("routes", routes, other.routes)
        compare("rules", rules, other.rules)
        compare("nft ruleset", ruleset, other.ruleset)
        compare("interfaces", interfaces.joined(separator: " "), other.interfaces.joined(separator: " "))
        compare("sysctls", sysctlText, other.sysctlText)
        return out.isEmpty ? "no differences" : out.joined(separator: "\n")
    }

    private var sysctlText: String {
        sysctls.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
    }

    public var description: String {
        [
            "routes:", routes, "rules:", rules, "nft ruleset:", ruleset,
            "interfaces: " + interfaces.joined(separator: " "), "sysctls: " + sysctlText,
        ].joined(separator: "\n")
    }
}

extension NetworkNamespace {
    /// Reads the namespace's `HostState`, with the values of `sysctls` (read from /proc/sys).
    public func hostState(sysctls: [String] = ["net.ipv4.ip_forward"]) throws -> HostState {
        let routes = try run(["ip", "route", "show", "table", "all"]).stdout
        let rules = try run(["ip", "-4", "rule", "show"]).stdout + (try exec(["ip", "-6", "rule", "show"]).stdout)
        let ruleset = try run(["nft", "list", "ruleset"]).stdout
        let links = try run(["ip", "-o", "link", "show"]).stdout
        // "3: c0@if2: <BROADCAST,…" → "c0"
        let interfaces = links.split(separator: "\n").compactMap { line -> String? in
            let fields = line.split(separator: ":", maxSplits: 2)
            guard fields.count >= 2 else { return nil }
            return String(fields[1].trimmingCharacters(in: .whitespaces).prefix(while: { $0 != "@" }))
        }.sorted()
        var values: [String: String] = [:]
        for key in sysctls {
            values[key] = try run(["sysctl", "-n", key]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        return HostState(routes: routes, rules: rules, ruleset: ruleset, interfaces: interfaces, sysctls: values)
    }
}
