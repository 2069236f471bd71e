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

/// Every counter an engine keeps, in the order the `stats:` line lists them.
public enum CounterID: Hashable, Sendable, CaseIterable {
    case rxPackets
    case txPackets
    case rxBytes
    case txBytes
    /// Frames and packets dropped for this reason.
    case dropped(DropReason)
    case handshakesCompleted
    /// Handshakes refused or failed for this reason (its detail, if any, is not part of the counter).
    case handshakeFailed(HandshakeFailure)
    /// Sends of control packets (handshake messages, cookie replies, keepalives, queued packets sent
    /// once a session is up) that failed; the engine goes on, and a handshake is retried by its timers.
    case controlSendFailures

    /// `rx_packets`, `tx_packets`, `rx_bytes`, `tx_bytes`, `drop.<reason>`, `handshakes.completed`,
    /// `handshake.failed.<reason>`, `control.send_failures`.
    public static let allCases: [CounterID] =
        [.rxPackets, .txPackets, .rxBytes, .txBytes] + DropReason.allCases.map { .dropped($0) } + [.handshakesCompleted]
        + HandshakeFailure.allCases.map { .handshakeFailed($0) } + [.controlSendFailures]

    /// The counter's name in the `stats:` line and the status document.
    public var name: String {
        switch self {
        case .rxPackets: "rx_packets"
        case .txPackets: "tx_packets"
        case .rxBytes: "rx_bytes"
        case .txBytes: "tx_bytes"
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
        case .dropped(let reason): 4 + reason.rawValue
        case .handshakesCompleted: 4 + DropReason.allCases.count
        case .handshakeFailed(let failure): 5 + DropReason.allCases.count + CounterID.failurePosition[failure.name]!
        case .controlSendFailures: 5 + DropReason.allCases.count + HandshakeFailure.allCases.count
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
    private let dropCounters: [Counter] = DropReason.allCases.map { _ in Counter() }
    private let failureCounters: [HandshakeFailure: Counter] = Dictionary(
        uniqueKeysWithValues: HandshakeFailure.allCases.map { ($0, Counter()) })

    public init() {}

    @inline(__always) public func drop(_ reason: DropReason, _ n: UInt64 = 1) { dropCounters[reason.rawValue].add(n) }
    public func dropped(_ reason: DropReason) -> UInt64 { dropCounters[reason.rawValue].current }
    public func handshakeFailed(_ reason: HandshakeFailure) { failureCounters[reason]?.add() }
    public func handshakeFailures(_ reason: HandshakeFailure) -> UInt64 { failureCounters[reason]?.current ?? 0 }

    /// The counter `id`.
    public func counter(_ id: CounterID) -> Counter {
        switch id {
        case .rxPackets: rxPackets
        case .txPackets: txPackets
        case .rxBytes: rxBytes
        case .txBytes: txBytes
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

    /// Every counter by name, in a fixed order: `rx_packets`, `tx_packets`, `rx_bytes`, `tx_bytes`,
    /// `drop.<reason>`, `handshakes.completed`, `handshake.failed.<reason>`, `control.send_failures`.
    public var all: [(name: String, value: UInt64)] { values.named }

    /// `stats: rx_packets=… tx_packets=… … drop.<reason>=… handshakes.completed=… handshake.failed.<reason>=…
    /// control.send_failures=…`
    public var statsLine: String {
        "stats: " + all.map { "\($0.name)=\($0.value)" }.joined(separator: " ")
    }
}
