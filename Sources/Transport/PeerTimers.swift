// Per-peer timers as deadlines, after WireGuard's timers.c: the core tells them what happened
// ("data sent", "handshake complete") and they answer with the next instant something must be done.
//
//   retransmitHandshake  an initiation went unanswered: resend after REKEY_TIMEOUT + jitter, give up after
//                        REKEY_ATTEMPT_TIME (initiator only)
//   sendKeepalive        data arrived and we sent nothing back for KEEPALIVE_TIMEOUT: send a keepalive
//   newHandshake         we sent data and heard nothing for KEEPALIVE + REKEY_TIMEOUT: start a handshake
//                        (initiator only)
//   persistentKeepalive  optional: something is sent at least this often, to keep NAT mappings open
//   zeroKeys             no new session for 3 × REJECT_AFTER_TIME: forget every key
// Times are monotonic nanoseconds; nothing here reads a clock.

/// What a timer asks for when it fires.
public enum TimerEvent: Equatable, Sendable {
    case retransmitHandshake
    case giveUpHandshake
    case sendKeepalive
    case newHandshake
    case persistentKeepalive
    case zeroKeys
}

/// The deadlines of one peer.
public struct PeerTimers: Sendable {
    static let second: UInt64 = 1_000_000_000
    /// Persistent keepalive interval in ns, or nil.
    public var persistentKeepaliveInterval: UInt64?
    /// Whether this side initiates handshakes (the client).
    public let isInitiator: Bool
    /// The timer lengths.
    public let lengths: ProtocolTimers

    public private(set) var retransmitHandshake: UInt64?
    /// When the current run of handshake attempts began.
    public private(set) var handshakeAttemptsStarted: UInt64?
    public private(set) var sendKeepalive: UInt64?
    private var needAnotherKeepalive = false
    public private(set) var newHandshake: UInt64?
    public private(set) var persistentKeepalive: UInt64?
    public private(set) var zeroKeys: UInt64?

    public init(isInitiator: Bool, persistentKeepaliveSeconds: UInt64? = nil, lengths: ProtocolTimers = .standard) {
        self.isInitiator = isInitiator
        self.lengths = lengths
        persistentKeepaliveInterval = persistentKeepaliveSeconds.map { $0 * Self.second }
    }

    /// A data packet (not a keepalive) was sent.
    public mutating func dataSent(now: UInt64) {
        if isInitiator && newHandshake == nil {
            newHandshake = now + lengths.keepaliveTimeout + lengths.rekeyTimeout
        }
    }

    /// A data packet (not a keepalive) was received.
    public mutating func dataReceived(now: UInt64) {
        if sendKeepalive == nil {
            sendKeepalive = now + lengths.keepaliveTimeout
        } else {
            needAnotherKeepalive = true
        }
    }

    /// Any authenticated frame (data or keepalive) was sent: a pending keepalive is no longer needed.
    public mutating func anyAuthenticatedSent(now: UInt64) {
        sendKeepalive = nil
        if let interval = persistentKeepaliveInterval { persistentKeepalive = now + interval }
    }

    /// Any authenticated frame was received: the peer is alive, so no new handshake is needed for silence.
    public mutating func anyAuthenticatedReceived(now: UInt64) {
        newHandshake = nil
        if let interval = persistentKeepaliveInterval, persistentKeepalive == nil { persistentKeepalive = now + interval }
    }

    /// An initiation was sent. `jitter` is in ns (0 ..< REKEY_TIMEOUT_JITTER).
    public mutating func handshakeInitiated(now: UInt64, jitter: UInt64) {
        if handshakeAttemptsStarted == nil { handshakeAttemptsStarted = now }
        retransmitHandshake = now + lengths.rekeyTimeout + jitter
    }

    /// A handshake completed: stop retransmitting and arm key zeroing.
    public mutating func handshakeCompleted(now: UInt64) {
        retransmitHandshake = nil
        handshakeAttemptsStarted = nil
        zeroKeys = now + 3 * lengths.rejectAfterTime
        if let interval = persistentKeepaliveInterval { persistentKeepalive = now + interval }
    }

    /// The client moved to another endpoint: a new run of attempts starts with the next initiation, so
    /// the give-up and failover clocks count from there.
    public mutating func restartAttempts() {
        retransmitHandshake = nil
        handshakeAttemptsStarted = nil
    }

    /// True while an initiation is awaiting its response.
    public var handshakeInFlight: Bool { retransmitHandshake != nil }

    /// The earliest deadline, if any.
    /// (Without an array: `TunnelState` asks this on the data path, after every change of a peer's timers.)
    public var nextDeadline: UInt64? {
        var earliest = retransmitHandshake
        earliest = Self.earlier(earliest, sendKeepalive)
        earliest = Self.earlier(earliest, newHandshake)
        earliest = Self.earlier(earliest, persistentKeepalive)
        return Self.earlier(earliest, zeroKeys)
    }

    @inline(__always)
    static func earlier(_ a: UInt64?, _ b: UInt64?) -> UInt64? {
        guard let a else { return b }
        guard let b else { return a }
        return min(a, b)
    }

    /// Fires every deadline at or before `now` and returns what each asks for, in a fixed order.
    public mutating func fire(now: UInt64) -> [TimerEvent] {
        var events: [TimerEvent] = []
        if let t = retransmitHandshake, t <= now {
            if let started = handshakeAttemptsStarted, elapsed(now, since: started) >= lengths.rekeyAttemptTime {
                retransmitHandshake = nil
                handshakeAttemptsStarted = nil
                sendKeepalive = nil
                newHandshake = nil
                events.append(.giveUpHandshake)
            } else {
                retransmitHandshake = nil  // re-armed by handshakeInitiated when the initiation goes out
                events.append(.retransmitHandshake)
            }
        }
        if let t = sendKeepalive, t <= now {
            sendKeepalive = nil
            if needAnotherKeepalive {
                needAnotherKeepalive = false
                sendKeepalive = now + lengths.keepaliveTimeout
            }
            events.append(.sendKeepalive)
        }
        if let t = newHandshake, t <= now {
            newHandshake = nil
            events.append(.newHandshake)
        }
        if let t = persistentKeepalive, t <= now {
            persistentKeepalive = persistentKeepaliveInterval.map { now + $0 }
            events.append(.persistentKeepalive)
        }
        if let t = zeroKeys, t <= now {
            zeroKeys = nil
            events.append(.zeroKeys)
        }
        return events
    }
}
