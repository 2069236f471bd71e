// A longest-prefix-match table of both families: the cryptokey routing table of the prefixes routed
// behind peers (docs/PROTOCOL.md, "Allowed IPs").
//
// One hash table of masked addresses per prefix length present, searched from the longest length down:
// a lookup costs one hash lookup per distinct length (a handful in practice) and allocates nothing.
// Written here rather than taken from a library: what is needed is these few lines over the standard
// Dictionary, with no per-packet allocation; the tries of general routing libraries are built for
// full internet tables.

/// Maps prefixes of both families to values; `lookup` finds the longest prefix holding an address.
public struct PrefixTable<Value: Sendable>: Sendable {
    /// The entries of one IPv4 prefix length, keyed by network address.
    struct Level4: Sendable {
        var length: Int
        var mask: UInt32
        var entries: [UInt32: Value]
    }

    /// The entries of one IPv6 prefix length, keyed by network address.
    struct Level6: Sendable {
        var length: Int
        var mask: (high: UInt64, low: UInt64)
        var entries: [IPv6Address: Value]
    }

    /// Longest length first.
    private var levels4: [Level4] = []
    private var levels6: [Level6] = []

    public init() {}

    /// Number of prefixes in the table.
    public var count: Int { levels4.reduce(0) { $0 + $1.entries.count } + levels6.reduce(0) { $0 + $1.entries.count } }

    public var isEmpty: Bool { levels4.isEmpty && levels6.isEmpty }

    /// Sets `prefix`'s value (host bits are ignored); returns the value it replaced.
    @discardableResult
    public mutating func insert(_ prefix: IPPrefix, _ value: Value) -> Value? {
        switch prefix.network {
        case .v4(let p):
            let i = levels4.firstIndex { $0.length <= p.length }
            if let i, levels4[i].length == p.length { return levels4[i].entries.updateValue(value, forKey: p.address.value) }
            levels4.insert(Level4(length: p.length, mask: p.mask, entries: [p.address.value: value]), at: i ?? levels4.count)
        case .v6(let p):
            let i = levels6.firstIndex { $0.length <= p.length }
            if let i, levels6[i].length == p.length { return levels6[i].entries.updateValue(value, forKey: p.address) }
            levels6.insert(Level6(length: p.length, mask: p.mask, entries: [p.address: value]), at: i ?? levels6.count)
        }
        return nil
    }

    /// Removes `prefix` (host bits are ignored); returns its value.
    @discardableResult
    public mutating func remove(_ prefix: IPPrefix) -> Value? {
        switch prefix.network {
        case .v4(let p):
            guard let i = levels4.firstIndex(where: { $0.length == p.length }),
                let old = levels4[i].entries.removeValue(forKey: p.address.value)
            else { return nil }
            if levels4[i].entries.isEmpty { levels4.remove(at: i) }
            return old
        case .v6(let p):
            guard let i = levels6.firstIndex(where: { $0.length == p.length }),
                let old = levels6[i].entries.removeValue(forKey: p.address)
            else { return nil }
            if levels6[i].entries.isEmpty { levels6.remove(at: i) }
            return old
        }
    }

    /// The value of exactly `prefix` (host bits are ignored), not of a shorter one holding it.
    public subscript(exactly prefix: IPPrefix) -> Value? {
        switch prefix.network {
        case .v4(let p): return levels4.first(where: { $0.length == p.length })?.entries[p.address.value]
        case .v6(let p): return levels6.first(where: { $0.length == p.length })?.entries[p.address]
        }
    }

    /// The value of the longest prefix holding `address`.
    @inline(__always)
    public func lookup(_ address: IPv4Address) -> Value? {
        for level in levels4 {
            if let value = level.entries[address.value & level.mask] { return value }
        }
        return nil
    }

    /// The value of the longest prefix holding `address`.
    @inline(__always)
    public func lookup(_ address: IPv6Address) -> Value? {
        for level in levels6 {
            let key = IPv6Address(high: address.high & level.mask.high, low: address.low & level.mask.low)
            if let value = level.entries[key] { return value }
        }
        return nil
    }

    /// The value of the longest prefix holding `address`.
    public func lookup(_ address: IPAddress) -> Value? {
        switch address {
        case .v4(let a): return lookup(a)
        case .v6(let a): return lookup(a)
        }
    }

    /// Every prefix and its value, longest first within each family (IPv4 first).
    public var entries: [(prefix: IPPrefix, value: Value)] {
        var all: [(prefix: IPPrefix, value: Value)] = []
        for level in levels4 {
            for (network, value) in level.entries.sorted(by: { $0.key < $1.key }) {
                all.append((.v4(IPv4Prefix(address: IPv4Address(network), length: level.length)), value))
            }
        }
        for level in levels6 {
            for (network, value) in level.entries.sorted(by: { $0.key < $1.key }) {
                all.append((.v6(IPv6Prefix(address: network, length: level.length)), value))
            }
        }
        return all
    }
}
