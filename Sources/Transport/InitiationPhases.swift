// The values an initiation passes through on the server between the steps of `TunnelState`'s
// `prepareInitiation`, `admitInitiation` and `commitInitiation` (the list of steps is in TunnelState.swift,
// "Initiations in phases"). Each carries what the next step needs; the two steps that do the handshake's
// Diffie-Hellman work, `consume` and `respond`, are methods here and read no `TunnelState`, so the engine
// runs them without holding its lock.
//
// Both wire protocols (`ProtocolMode`) go through the same steps: `ServerHandshake` and `ClientHandshake`
// pick tunvpn's messages (Handshake.swift) or WireGuard's (WireGuard.swift); everything around them (the
// phases, cookies, rate limits, sessions and timers) is shared.

import Crypto

/// The server's handshake of one wire protocol, with its static key (and, in WireGuard mode, the psk every
/// peer shares; tunvpn's responder carries its psk in its settings).
public enum ServerHandshake: Sendable {
    case tunvpn(HandshakeResponder)
    case wireGuard(WireGuardResponder, psk: SecretBytes)

    /// The handshake `settings` ask for.
    public init(_ settings: ServerSettings) {
        switch settings.protocolMode {
        case .tunvpn: self = .tunvpn(settings.responder)
        case .wireguard:
            self = .wireGuard(WireGuardResponder(localStatic: settings.responder.localStatic), psk: settings.responder.settings.psk)
        }
    }

    /// The checks before any Diffie-Hellman work (shape, key ID where the protocol has one, mac1), on a
    /// raw datagram without allocating: the engine runs them before it takes the core's lock.
    public func precheckInitiation(raw m: UnsafeRawBufferPointer) -> HandshakeFailure? {
        switch self {
        case .tunvpn(let r): return r.precheckInitiation(raw: m)
        case .wireGuard(let r, _): return r.precheckInitiation(raw: m)
        }
    }

    /// Where mac1 and mac2 sit in this protocol's initiations, and the hash of its cookies.
    public var macLayout: InitiationMACLayout {
        switch self {
        case .tunvpn: return .tunvpn
        case .wireGuard: return .wireGuard
        }
    }
}

/// The client's handshake of one wire protocol, with both static keys and the psk.
public enum ClientHandshake: Sendable {
    case tunvpn(HandshakeInitiator)
    case wireGuard(WireGuardInitiator)

    /// The handshake `settings` ask for.
    public init(_ settings: ClientSettings) {
        let i = settings.initiator
        switch settings.protocolMode {
        case .tunvpn: self = .tunvpn(i)
        case .wireguard: self = .wireGuard(WireGuardInitiator(localStatic: i.localStatic, peerKey: i.serverKey, psk: i.settings.psk))
        }
    }

    /// Message 1 and what the response will be checked against. mac2 is zero; the caller's cookie jar
    /// stamps it when it holds a cookie.
    func createInitiation(senderIndex: UInt32, timestamp: TAI64N, random: any RandomSource) -> ([UInt8], SentInitiation) {
        switch self {
        case .tunvpn(let i):
            let (m, sent) = i.createInitiation(senderIndex: senderIndex, timestamp: timestamp, random: random)
            return (m, .tunvpn(sent))
        case .wireGuard(let i):
            let (m, sent) = i.createInitiation(senderIndex: senderIndex, timestamp: timestamp, random: random)
            return (m, .wireGuard(sent))
        }
    }

    /// Where mac1 and mac2 sit in this protocol's initiations, and the hash of its cookies.
    var macLayout: InitiationMACLayout {
        switch self {
        case .tunvpn: return .tunvpn
        case .wireGuard: return .wireGuard
        }
    }
}

/// A client's initiation in flight, of either protocol.
enum SentInitiation: Sendable {
    case tunvpn(HandshakeInitiator.InitiationSent)
    case wireGuard(WireGuardInitiator.InitiationSent)

    var senderIndex: UInt32 {
        switch self {
        case .tunvpn(let s): return s.senderIndex
        case .wireGuard(let s): return s.senderIndex
        }
    }
}

/// An initiation that passed the server's cheap checks and load defences: its DH work may go ahead.
public struct PreparedInitiation: Sendable {
    public let message: [UInt8]
    public let source: Endpoint
    let handshake: ServerHandshake

    /// Step 2: message 1's DH and AEAD work (`-> e, es, s, ss`). Pure. On failure, appends the refusal to
    /// `actions` and returns nil.
    public func consume(random: any RandomSource, actions: inout [ControlAction]) -> ConsumedInitiation? {
        do {
            let consumed: ConsumedHandshake
            switch handshake {
            case .tunvpn(let r): consumed = .tunvpn(try r.consumeInitiation(message, random: random))
            case .wireGuard(let r, _): consumed = .wireGuard(try r.consumeInitiation(message, random: random))
            }
            return ConsumedInitiation(consumed: consumed, source: source, handshake: handshake)
        } catch {
            actions.append(.handshakeRefused(error, from: source))
            return nil
        }
    }
}

/// Message 1 after its DH work, of either protocol.
public enum ConsumedHandshake: Sendable {
    case tunvpn(HandshakeResponder.InitiationConsumed)
    case wireGuard(WireGuardResponder.InitiationConsumed)

    /// The initiator's static key (authenticated by message 1).
    public var clientKey: PublicKey {
        switch self {
        case .tunvpn(let c): return c.clientKey
        case .wireGuard(let c): return c.peerKey
        }
    }

    /// The initiation's TAI64N timestamp.
    public var timestamp: TAI64N {
        switch self {
        case .tunvpn(let c): return c.timestamp
        case .wireGuard(let c): return c.timestamp
        }
    }
}

/// An authenticated initiation, not yet checked against the server's state (allow-list, timestamp).
public struct ConsumedInitiation: Sendable {
    public let consumed: ConsumedHandshake
    public let source: Endpoint
    let handshake: ServerHandshake
}

/// An initiation the server decided to answer, with the client's address and a reserved index.
public struct AdmittedInitiation: Sendable {
    let consumed: ConsumedHandshake
    public let source: Endpoint
    let handshake: ServerHandshake
    /// The client's slot in the peer table.
    let peer: Int
    /// The server's index for the new session (reserved until `commitInitiation`).
    public let localIndex: UInt32
    /// The addressing message 2 carries (tunvpn's protocol); nil in WireGuard mode, which pushes nothing.
    public let assignment: TunnelAssignment?

    /// Step 4: message 2 (`<- e, ee, se, psk`) and the session keys. Pure.
    public func respond() -> AnsweredInitiation {
        let response: [UInt8]
        let keys: AnsweredInitiation.Keys?
        switch (handshake, consumed) {
        case (.tunvpn(let r), .tunvpn(let c)):
            guard let assignment else { preconditionFailure("tunvpn's admission always assigns addresses") }
            let (message, result) = r.createResponse(to: c, senderIndex: localIndex, assignment: assignment)
            response = message
            keys = result.map { .tunvpn($0) }
        case (.wireGuard(let r, let psk), .wireGuard(let c)):
            let (message, result) = r.createResponse(to: c, senderIndex: localIndex, psk: psk)
            response = message
            keys = .wireGuard(result)
        default:
            preconditionFailure("an initiation is consumed by the handshake that prepared it")
        }
        return AnsweredInitiation(
            clientKey: consumed.clientKey, source: source, peer: peer, localIndex: localIndex, assignment: assignment,
            response: response, keys: keys)
    }
}

/// A response made for an admitted initiation, waiting for `commitInitiation` to send it and install its
/// session.
public struct AnsweredInitiation: Sendable {
    public let clientKey: PublicKey
    public let source: Endpoint
    let peer: Int
    public let localIndex: UInt32
    public let assignment: TunnelAssignment?
    /// Message 2.
    public let response: [UInt8]
    /// The session's keys; nil when client and server share no suite (tunvpn's protocol; the response
    /// says so).
    let keys: Keys?

    enum Keys: Sendable {
        case tunvpn(HandshakeResult)
        case wireGuard(WireGuardKeys)
    }

    /// The tunvpn handshake's result (nil in WireGuard mode, or with no common suite).
    public var result: HandshakeResult? {
        if case .tunvpn(let r) = keys { return r }
        return nil
    }

    /// The data session these keys make, or nil with no common suite.
    func session(createdAt: UInt64, rejectAfter: UInt64) -> Session? {
        switch keys {
        case .tunvpn(let r): return Session(result: r, createdAt: createdAt, rejectAfter: rejectAfter)
        case .wireGuard(let k): return k.session(createdAt: createdAt, rejectAfter: rejectAfter)
        case nil: return nil
        }
    }
}
