// Process-wide counters: drops by reason, handshake outcomes by reason, totals. Lock-free increments from
// any thread; `statsLine` renders them as one `key=value` line for logs, tests and scrapers.

import Synchronization
import Transport

/// One atomic counter in a class box, so that counters can live in arrays.
public final class Counter: Sendable {
    private let value = Atomic<UInt64>(0)
    public init() {}
    @inline(__always) public func add(_ n: UInt64 = 1) { value.wrappingAdd(n, ordering: .relaxed) }
    public var current: UInt64 { value.load(ordering: .relaxed) }
}

/// Every counter of one engine.
public final class Counters: Sendable {
    public let rxPackets = Counter()
    public let txPackets = Counter()
    public let rxBytes = Counter()
    public let txBytes = Counter()
    public let handshakesCompleted = Counter()
    private let drops: [Counter] = DropReason.allCases.map { _ in Counter() }
    private let handshakeFailures: [HandshakeFailure: Counter] = Dictionary(
        uniqueKeysWithValues: HandshakeFailure.allCases.map { ($0, Counter()) })

    public init() {}

    @inline(__always) public func drop(_ reason: DropReason, _ n: UInt64 = 1) { drops[reason.rawValue].add(n) }
    public func dropped(_ reason: DropReason) -> UInt64 { drops[reason.rawValue].current }
    public func handshakeFailed(_ reason: HandshakeFailure) { handshakeFailures[reason]?.add() }
    public func handshakeFailures(_ reason: HandshakeFailure) -> UInt64 { handshakeFailures[reason]?.current ?? 0 }

    /// Every counter by name, in a fixed order: `rx_packets`, `tx_packets`, `rx_bytes`, `tx_bytes`,
    /// `drop.<reason>`, `handshakes.completed`, `handshake.failed.<reason>`.
    public var all: [(name: String, value: UInt64)] {
        var list: [(name: String, value: UInt64)] = [
            ("rx_packets", rxPackets.current), ("tx_packets", txPackets.current), ("rx_bytes", rxBytes.current),
            ("tx_bytes", txBytes.current),
        ]
        for reason in DropReason.allCases { list.append(("drop.\(reason)", dropped(reason))) }
        list.append(("handshakes.completed", handshakesCompleted.current))
        for reason in HandshakeFailure.allCases { list.append(("handshake.failed.\(reason.name)", handshakeFailures(reason))) }
        return list
    }

    /// `stats: rx_packets=… tx_packets=… … drop.<reason>=… handshakes.completed=… handshake.failed.<reason>=…`
    public var statsLine: String {
        "stats: " + all.map { "\($0.name)=\($0.value)" }.joined(separator: " ")
    }
}
