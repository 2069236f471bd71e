// The local addresses the load generator spreads its clients over (`--sources`).
//
// A comma-separated list whose items are single IPv4 addresses ("10.61.7.3") or prefixes
// ("10.61.7.0/24", standing for every host address in it: network and broadcast are left out for
// prefixes of /30 and wider). Every address must be configured on this host (in this namespace): the
// generator binds one socket per client to ADDRESS:0, so clients differ in source address and port.

import Transport

/// Why `--sources` could not be read.
struct SourceListError: Error, CustomStringConvertible {
    var item: String
    var problem: String
    var description: String { "--sources: '\(item)' \(problem)" }
}

enum SourceAddresses {
    /// Most addresses one `--sources` may name (a /20), so a typo such as /8 cannot allocate millions.
    static let limit = 4096

    /// Parses the list, in order, without duplicates.
    static func parse(_ text: String) throws(SourceListError) -> [IPv4Address] {
        var result: [IPv4Address] = []
        var seen = Set<IPv4Address>()
        for raw in text.split(separator: ",") {
            let item = raw.filter { !$0.isWhitespace }
            if item.isEmpty { continue }
            var addresses: [IPv4Address] = []
            if item.contains("/") {
                guard let prefix = IPv4Prefix(item) else {
                    throw SourceListError(item: item, problem: "is not an IPv4 prefix like 10.61.7.0/24")
                }
                let size = UInt64(1) << UInt64(32 - prefix.length)
                guard size <= UInt64(limit) + 2 else {
                    throw SourceListError(item: item, problem: "has more than \(limit) addresses; use /20 or narrower")
                }
                var first = prefix.network.value
                var last = prefix.broadcast.value
                if prefix.length <= 30 {
                    first += 1
                    last -= 1
                }
                for value in first...last { addresses.append(IPv4Address(value)) }
            } else {
                guard let address = IPv4Address(item) else {
                    throw SourceListError(item: item, problem: "is not an IPv4 address or prefix")
                }
                addresses.append(address)
            }
            for a in addresses where seen.insert(a).inserted { result.append(a) }
            guard result.count <= limit else {
                throw SourceListError(item: item, problem: "brings the list past \(limit) addresses")
            }
        }
        guard !result.isEmpty else { throw SourceListError(item: text, problem: "names no address") }
        return result
    }
}
