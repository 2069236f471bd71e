// Process-wide counters: drops by reason, handshake outcomes by reason, totals. Lock-free increments from
// any thread; `statsLine` renders them as one `key=value` line for logs, tests and scrapers.
//
// `CounterID` is the one list of counters. The `stats:` line, the status document (`show`, through
// `EngineSnapshot.counters`) and the metrics (through the typed families of `CounterValues`) are all
// made from it, so a counter cannot exist in one and be missing from another, and a family is found by
// its type, not by a name prefix that a rename would silently empty.

import Synchronization
import Transport

/// One atomic counter in a class box, so that counters can live in arrays.
public final class Counter: Sendable {
    private let value = Atomic<UInt64>(0)
    public init() {}
    @inline(__always) public func add(_ n: UInt64 = 1) { value.wrappingAdd(n, ordering: .relaxed) }
    public var current: UInt64 { value.load(ordering: .relaxed) }
}

/// The family of an inner IP packet.
public enum IPFamily: Int, CaseIterable, Hashable, Sendable, CustomStringConvertible {
    case ipv4
    case ipv6

    /// The family of a packet whose first byte is `firstByte` (its version nibble), or nil for neither.
    @inline(__always)
    public init?(firstByte: UInt8) {
        switch firstByte >> 4 {
        case 4: self = .ipv4
        case 6: self = .ipv6
        default: return nil
        }
    }

    /// `ipv4`, `ipv6`: the suffix of the per-family counters and the metrics' `family` label.
    public var description: String {
        switch self {
        case .ipv4: "ipv4"
        case .ipv6: "ipv6"
        }
    }
}

/// The traffic counters kept in total and per family.
public enum TrafficCounter: Int, CaseIterable, Hashable, Sendable {
    /// Total: authenticated data frames received, keepalives included. Per family: packets delivered.
    case rxPackets
    /// Total: data frames sent, keepalives included. Per family: packets sent through the tunnel.
    case txPackets
    /// Bytes of inner packets delivered to the device.
    case rxBytes
    /// Bytes of inner packets sent through the tunnel.
    case txBytes

    /// `rx_packets`, `tx_packets`, `rx_bytes`, `tx_bytes`.
    public var name: String {
        switch self {
        case .rxPackets: "rx_packets"
        case .txPackets: "tx_packets"
        case .rxBytes: "rx_bytes"
        case .txBytes: "tx_bytes"
        }
    }
}

/// Packets and bytes of each family moved in one batch, added to the shared counters once per batch.
public struct FamilyTraffic: Sendable, Equatable {
    public var packets: (Int, Int) = (0, 0)
    public var bytes: (Int, Int) = (0, 0)

    public init() {}

    /// Counts one packet of `bytes` bytes whose first byte is `firstByte`; neither IPv4 nor IPv6 counts nothing.
    @inline(__always)
    public mutating func add(firstByte: UInt8, bytes n: Int) {
        switch IPFamily(firstByte: firstByte) {
        case .ipv4:
            packets.0 += 1
            bytes.0 += n
        case .ipv6:
            packets.1 += 1
            bytes.1 += n
        case nil: break
        }
    }

    public static func == (a: FamilyTraffic, b: FamilyTraffic) -> Bool { a.packets == b.packets && a.bytes == b.bytes }
}

/// Every counter an engine keeps, in the order the `stats:` line lists them.
public enum CounterID: Hashable, Sendable, CaseIterable {
    case rxPackets
    case txPackets
    case rxBytes
    case txBytes
    /// One traffic counter of one family (`rx_packets.ipv6`).
    case traffic(TrafficCounter, IPFamily)
    /// Frames and packets dropped for this reason.
    case dropped(DropReason)
    case handshakesCompleted
    /// Handshakes refused or failed for this reason (its detail, if any, is not part of the counter).
    case handshakeFailed(HandshakeFailure)
    /// Sends of control packets (handshake messages, cookie replies, keepalives, queued packets sent
    /// once a session is up) that failed; the engine goes on, and a handshake is retried by its timers.
    case controlSendFailures

    /// `rx_packets`, `tx_packets`, `rx_bytes`, `tx_bytes`, `rx_packets.ipv4`, `rx_packets.ipv6`,
    /// `tx_packets.ipv4`, … `tx_bytes.ipv6`, `drop.<reason>`, `handshakes.completed`,
    /// `handshake.failed.<reason>`, `control.send_failures`.
    public static let allCases: [CounterID] =
        [.rxPackets, .txPackets, .rxBytes, .txBytes]
        + TrafficCounter.allCases.flatMap { t in IPFamily.allCases.map { .traffic(t, $0) } }
        + DropReason.allCases.map { .dropped($0) } + [.handshakesCompleted]
        + HandshakeFailure.allCases.map { .handshakeFailed($0) } + [.controlSendFailures]

    /// The number of per-family traffic counters.
    static let trafficCount = TrafficCounter.allCases.count * IPFamily.allCases.count

    /// The counter's name in the `stats:` line and the status document.
    public var name: String {
        switch self {
        case .rxPackets: "rx_packets"
        case .txPackets: "tx_packets"
        case .rxBytes: "rx_bytes"
        case .txBytes: "tx_bytes"
        case .traffic(let counter, let family): "\(counter.name).\(family)"
        case .dropped(let reason): "drop.\(reason)"
        case .handshakesCompleted: "handshakes.completed"
        case .handshakeFailed(let failure): "handshake.failed.\(failure.name)"
        case .controlSendFailures: "control.send_failures"
        }
    }

    /// The counter named `name`, or nil for a name no counter has.
    public init?(name: String) {
        guard let position = CounterID.positionByName[name] else { return nil }
        self = CounterID.allCases[position]
    }

    /// This counter's place in `allCases`.
    var position: Int {
        switch self {
        case .rxPackets: 0
        case .txPackets: 1
        case .rxBytes: 2
        case .txBytes: 3
        case .traffic(let counter, let family): 4 + counter.rawValue * IPFamily.allCases.count + family.rawValue
        case .dropped(let reason): 4 + CounterID.trafficCount + reason.rawValue
        case .handshakesCompleted: 4 + CounterID.trafficCount + DropReason.allCases.count
        case .handshakeFailed(let failure):
            5 + CounterID.trafficCount + DropReason.allCases.count + CounterID.failurePosition[failure.name]!
        case .controlSendFailures: 5 + CounterID.trafficCount + DropReason.allCases.count + HandshakeFailure.allCases.count
        }
    }

    private static let positionByName: [String: Int] = Dictionary(
        uniqueKeysWithValues: allCases.enumerated().map { ($0.element.name, $0.offset) })
    private static let failurePosition: [String: Int] = Dictionary(
        uniqueKeysWithValues: HandshakeFailure.allCases.enumerated().map { ($0.element.name, $0.offset) })
}

/// The value of every counter at one moment, with each family typed.
public struct CounterValues: Sendable, Equatable {
    /// Indexed like `CounterID.allCases`.
    private var values: [UInt64]

    /// Every counter at zero.
    public init() { values = Array(repeating: 0, count: CounterID.allCases.count) }

    /// Values by counter name, as the status document carries them: names no counter has are ignored,
    /// counters not named are zero.
    public init(named: [(name: String, value: UInt64)]) {
        self.init()
        for (name, value) in named { if let id = CounterID(name: name) { self[id] = value } }
    }

    public subscript(id: CounterID) -> UInt64 {
        get { values[id.position] }
        set { values[id.position] = newValue }
    }

    public var rxPackets: UInt64 { self[.rxPackets] }
    public var txPackets: UInt64 { self[.txPackets] }
    public var rxBytes: UInt64 { self[.rxBytes] }
    public var txBytes: UInt64 { self[.txBytes] }
    public var handshakesCompleted: UInt64 { self[.handshakesCompleted] }
    public var controlSendFailures: UInt64 { self[.controlSendFailures] }
    /// Every per-family traffic counter with its value, zeros included, in `CounterID.allCases` order.
    public var traffic: [(counter: TrafficCounter, family: IPFamily, value: UInt64)] {
        TrafficCounter.allCases.flatMap { t in IPFamily.allCases.map { (t, $0, self[.traffic(t, $0)]) } }
    }
    /// Every drop reason with its count, zeros included, in `DropReason.allCases` order.
    public var drops: [(reason: DropReason, value: UInt64)] { DropReason.allCases.map { ($0, self[.dropped($0)]) } }
    /// Every handshake failure with its count, zeros included, in `HandshakeFailure.allCases` order.
    public var handshakeFailures: [(reason: HandshakeFailure, value: UInt64)] {
        HandshakeFailure.allCases.map { ($0, self[.handshakeFailed($0)]) }
    }
    /// Every counter by name, in `CounterID.allCases` order.
    public var named: [(name: String, value: UInt64)] { CounterID.allCases.map { ($0.name, self[$0]) } }
}

/// Every counter of one engine.
public final class Counters: Sendable {
    public let rxPackets = Counter()
    public let txPackets = Counter()
    public let rxBytes = Counter()
    public let txBytes = Counter()
    public let handshakesCompleted = Counter()
    public let controlSendFailures = Counter()
    /// Indexed like `CounterID.traffic`'s position: counter × family.
    private let trafficCounters: [Counter] = (0..<CounterID.trafficCount).map { _ in Counter() }
    private let dropCounters: [Counter] = DropReason.allCases.map { _ in Counter() }
    private let failureCounters: [HandshakeFailure: Counter] = Dictionary(
        uniqueKeysWithValues: HandshakeFailure.allCases.map { ($0, Counter()) })

    public init() {}

    @inline(__always) public func drop(_ reason: DropReason, _ n: UInt64 = 1) { dropCounters[reason.rawValue].add(n) }
    public func dropped(_ reason: DropReason) -> UInt64 { dropCounters[reason.rawValue].current }
    public func handshakeFailed(_ reason: HandshakeFailure) { failureCounters[reason]?.add() }
    public func handshakeFailures(_ reason: HandshakeFailure) -> UInt64 { failureCounters[reason]?.current ?? 0 }

    /// The traffic counter `counter` of `family`.
    public func traffic(_ counter: TrafficCounter, _ family: IPFamily) -> Counter {
        trafficCounters[counter.rawValue * IPFamily.allCases.count + family.rawValue]
    }

    /// Adds one batch's packets sent through the tunnel, per family (the totals are counted apart).
    @inline(__always) public func add(sent t: FamilyTraffic) { add(t, packets: .txPackets, bytes: .txBytes) }

    /// Adds one batch's packets delivered to the device, per family (the totals are counted apart).
    @inline(__always) public func add(received t: FamilyTraffic) { add(t, packets: .rxPackets, bytes: .rxBytes) }

    @inline(__always)
    private func add(_ t: FamilyTraffic, packets: TrafficCounter, bytes: TrafficCounter) {
        if t.packets.0 > 0 {
            traffic(packets, .ipv4).add(UInt64(t.packets.0))
            traffic(bytes, .ipv4).add(UInt64(t.bytes.0))
        }
        if t.packets.1 > 0 {
            traffic(packets, .ipv6).add(UInt64(t.packets.1))
            traffic(bytes, .ipv6).add(UInt64(t.bytes.1))
        }
    }

    /// The counter `id`.
    public func counter(_ id: CounterID) -> Counter {
        switch id {
        case .rxPackets: rxPackets
        case .txPackets: txPackets
        case .rxBytes: rxBytes
        case .txBytes: txBytes
        case .traffic(let counter, let family): traffic(counter, family)
        case .dropped(let reason): dropCounters[reason.rawValue]
        case .handshakesCompleted: handshakesCompleted
        case .handshakeFailed(let failure): failureCounters[failure]!  // every failure has one (allCases)
        case .controlSendFailures: controlSendFailures
        }
    }

    /// Every counter's current value.
    public var values: CounterValues {
        var values = CounterValues()
        for id in CounterID.allCases { values[id] = counter(id).current }
        return values
    }

    /// Every drop reason with its count (see `CounterValues.drops`).
    public var drops: [(reason: DropReason, value: UInt64)] { values.drops }
    /// Every handshake failure with its count (see `CounterValues.handshakeFailures`).
    public var handshakeFailures: [(reason: HandshakeFailure, value: UInt64)] { values.handshakeFailures }

    /// Every counter by name, in a fixed order: `rx_packets`, `tx_packets`, `rx_bytes`, `tx_bytes`, the
    /// same per family (`rx_packets.ipv4`, `rx_packets.ipv6`, …), `drop.<reason>`, `handshakes.completed`, `handshake.failed.<reason>`, `control.send_failures`.
    public var all: [(name: String, value: UInt64)] { values.named }

    /// `stats: rx_packets=… tx_packets=… … rx_packets.ipv4=… … drop.<reason>=… handshakes.completed=… handshake.failed.<reason>=…
    /// control.send_failures=…`
    public var statsLine: String {
        "stats: " + all.map { "\($0.name)=\($0.value)" }.joined(separator: " ")
    }
}
