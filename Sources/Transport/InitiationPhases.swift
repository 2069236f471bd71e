// The values an initiation passes through on the server between the steps of `TunnelState`'s
// `prepareInitiation`, `admitInitiation` and `commitInitiation` (the list of steps is in TunnelState.swift,
// "Initiations in phases"). Each carries what the next step needs; the two steps that do the handshake's
// Diffie-Hellman work, `consume` and `respond`, are methods here and read no `TunnelState`, so the engine
// runs them without holding its lock.

import Crypto

/// An initiation that passed the server's cheap checks and load defences: its DH work may go ahead.
public struct PreparedInitiation: Sendable {
    public let message: [UInt8]
    public let source: Endpoint
    let responder: HandshakeResponder

    /// Step 2: message 1's DH and AEAD work (`-> e, es, s, ss`). Pure. On failure, appends the refusal to
    /// `actions` and returns nil.
    public func consume(random: any RandomSource, actions: inout [ControlAction]) -> ConsumedInitiation? {
        do {
            let consumed = try responder.consumeInitiation(message, random: random)
            return ConsumedInitiation(consumed: consumed, source: source, responder: responder)
        } catch {
            actions.append(.handshakeRefused(error, from: source))
            return nil
        }
    }
}

/// An authenticated initiation, not yet checked against the server's state (allow-list, timestamp).
public struct ConsumedInitiation: Sendable {
    public let consumed: HandshakeResponder.InitiationConsumed
    public let source: Endpoint
    let responder: HandshakeResponder
}

/// An initiation the server decided to answer, with the client's address and a reserved index.
public struct AdmittedInitiation: Sendable {
    let consumed: HandshakeResponder.InitiationConsumed
    public let source: Endpoint
    let responder: HandshakeResponder
    /// The client's slot in the peer table.
    let peer: Int
    /// The server's index for the new session (reserved until `commitInitiation`).
    public let localIndex: UInt32
    public let assignment: TunnelAssignment

    /// Step 4: message 2 (`<- e, ee, se, psk`) and the session keys. Pure.
    public func respond() -> AnsweredInitiation {
        let (response, result) = responder.createResponse(to: consumed, senderIndex: localIndex, assignment: assignment)
        return AnsweredInitiation(
            clientKey: consumed.clientKey, source: source, peer: peer, localIndex: localIndex, assignment: assignment,
            response: response, result: result)
    }
}

/// A response made for an admitted initiation, waiting for `commitInitiation` to send it and install its
/// session.
public struct AnsweredInitiation: Sendable {
    public let clientKey: PublicKey
    public let source: Endpoint
    let peer: Int
    public let localIndex: UInt32
    public let assignment: TunnelAssignment
    /// Message 2.
    public let response: [UInt8]
    /// The session's keys; nil when client and server share no suite (the response says so).
    public let result: HandshakeResult?
}
