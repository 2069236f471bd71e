// A client's list of server endpoints and the policy that moves between them (docs/DEPLOYMENT.md,
// "Client failover"). Pure: `TunnelState` asks it at each tick with `now`, and the addresses come from
// whoever resolves names (Control), never from here.
//
//   - The endpoints are tried in order. When the handshake with the one in use has failed for
//     `failoverAfter` (a run of unanswered initiations, `PeerTimers.handshakeAttemptsStarted`), the client
//     moves to the next one that has an address, wrapping after the last.
//   - While a later endpoint is in use, the first (preferred) one is probed with an initiation every
//     `probeInterval`; the session in use is left alone. When a probe is answered, the client moves back.

/// How a client moves between its endpoints.
public struct FailoverSettings: Sendable, Equatable {
    /// Nanoseconds of failed handshake attempts with the endpoint in use before the next one is tried.
    public var failoverAfter: UInt64
    /// Nanoseconds between probes of the preferred endpoint while a later one is in use.
    public var probeInterval: UInt64

    public init(failoverAfter: UInt64, probeInterval: UInt64) {
        self.failoverAfter = failoverAfter
        self.probeInterval = probeInterval
    }

    /// 15 s before moving on (three initiations at REKEY_TIMEOUT's pace), a probe every 10 s.
    public static let standard = FailoverSettings(failoverAfter: 15_000_000_000, probeInterval: 10_000_000_000)
}

/// Why the client moved to another endpoint.
public enum EndpointSwitchReason: Sendable, Equatable, CustomStringConvertible {
    /// The endpoint in use answered no initiation for this many seconds.
    case noResponse(seconds: UInt64)
    /// The endpoint in use has no address (its name did not resolve).
    case noAddress
    /// The preferred endpoint answered a probe.
    case preferredAnswered

    public var description: String {
        switch self {
        case .noResponse(let s): return "no handshake response for \(s) s"
        case .noAddress: return "its name has no address"
        case .preferredAnswered: return "the preferred endpoint answered again"
        }
    }

    /// A short word for metrics labels and JSON.
    public var name: String {
        switch self {
        case .noResponse: return "no_response"
        case .noAddress: return "no_address"
        case .preferredAnswered: return "preferred_answered"
        }
    }
}

/// One move between endpoints.
public struct EndpointSwitch: Sendable, Equatable {
    public var from: Int
    public var to: Int
    public var reason: EndpointSwitchReason
    /// Monotonic nanoseconds.
    public var at: UInt64
}

/// The endpoints of a client and which one is in use.
public struct EndpointFailover: Sendable {
    public let settings: FailoverSettings
    /// Each endpoint's latest address, in the operator's order; nil while a name has none.
    public private(set) var endpoints: [Endpoint?]
    /// The index of the endpoint in use.
    public private(set) var active: Int
    /// How many times the client moved.
    public private(set) var switches: UInt64 = 0
    public private(set) var lastSwitch: EndpointSwitch?
    /// When the next probe of the preferred endpoint is due (only while a later one is in use).
    private(set) var nextProbe: UInt64?

    /// Starts on the first endpoint that has an address (the first, when none has).
    public init(endpoints: [Endpoint?], settings: FailoverSettings = .standard) {
        self.endpoints = endpoints.isEmpty ? [nil] : endpoints
        self.settings = settings
        active = self.endpoints.firstIndex { $0 != nil } ?? 0
    }

    /// The address of the endpoint in use.
    public var current: Endpoint? { endpoints[active] }

    /// Records a fresh resolution of endpoint `index` (ignored when out of range).
    public mutating func update(_ index: Int, to endpoint: Endpoint?) {
        guard endpoints.indices.contains(index) else { return }
        endpoints[index] = endpoint
    }

    /// The next endpoint after the one in use that has an address, wrapping; nil when there is none.
    public func successor() -> Int? {
        guard endpoints.count > 1 else { return nil }
        for step in 1..<endpoints.count {
            let i = (active + step) % endpoints.count
            if endpoints[i] != nil { return i }
        }
        return nil
    }

    /// The move due at `now`, if any: given when the current run of handshake attempts began
    /// (`attemptsStarted`, nil when none is failing).
    public func failoverDue(now: UInt64, attemptsStarted: UInt64?) -> (to: Int, reason: EndpointSwitchReason)? {
        guard let next = successor() else { return nil }
        if endpoints[active] == nil { return (next, .noAddress) }
        guard let started = attemptsStarted, now >= started, now - started >= settings.failoverAfter else { return nil }
        return (next, .noResponse(seconds: (now - started) / 1_000_000_000))
    }

    /// Moves to endpoint `index` at `now`; probes start (or stop) with it.
    public mutating func move(to index: Int, reason: EndpointSwitchReason, now: UInt64) -> EndpointSwitch {
        let record = EndpointSwitch(from: active, to: index, reason: reason, at: now)
        active = index
        switches += 1
        lastSwitch = record
        nextProbe = index == 0 ? nil : now &+ settings.probeInterval
        return record
    }

    /// Whether a probe of the preferred endpoint is due at `now`; if so, the next is scheduled.
    public mutating func takeProbe(now: UInt64) -> Endpoint? {
        guard active != 0, let preferred = endpoints[0] else { return nil }
        if let due = nextProbe, now < due { return nil }
        nextProbe = now &+ settings.probeInterval
        return preferred
    }
}
