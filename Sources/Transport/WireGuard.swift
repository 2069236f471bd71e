// WireGuard's handshake, exactly as on the wire (whitepaper §5.4, "Protocol & Cryptography"), for
// `--protocol wireguard`: Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s with the prologue
// "WireGuard v1 zx2c4 Jason@zx2c4.com", run by the same `NoiseHandshake` as tunvpn's own protocol with
// BLAKE2s as its hash.
//
//   initiation (148 B): type=1 ‖ reserved(3) ‖ sender(LE32) ‖ e(32) ‖ AEAD(s)(48) ‖ AEAD(TAI64N)(28) ‖ mac1 ‖ mac2
//   response    (92 B): type=2 ‖ reserved(3) ‖ sender(LE32) ‖ receiver(LE32) ‖ e(32) ‖ AEAD(empty)(16) ‖ mac1 ‖ mac2
//   cookie reply(64 B): as tunvpn's (Cookies.swift) with BLAKE2s keys
//   data  (32 + N B):   type=4 ‖ reserved(3) ‖ receiver(LE32) ‖ counter(LE64) ‖ ChaCha20-Poly1305(packet, ad = ∅)
//   mac1 = BLAKE2s(key = BLAKE2s-256("mac1----" ‖ receiver's static key), out = 16, bytes before mac1)
//   mac2 = BLAKE2s(key = cookie, out = 16, bytes before mac2), or zeros without a fresh cookie
// What differs from tunvpn's own protocol (docs/PROTOCOL.md, "WireGuard mode"): no version byte, key ID,
// suite offer or pushed addressing; the psk is per peer; the data frame's header is not associated data.
// Everything here is pure: keys, randomness and time come in as parameters.

import Crypto

/// WireGuard's constants (whitepaper §5.4 and wireguard-go's message sizes).
public enum WireGuardFormat {
    /// The Noise protocol name (CONSTRUCTION).
    public static let construction = NoisePattern.ikpsk2.protocolName(hash: .blake2s)
    /// The prologue (IDENTIFIER).
    public static let identifier: [UInt8] = Array("WireGuard v1 zx2c4 Jason@zx2c4.com".utf8)
    /// LABEL_MAC1 and LABEL_COOKIE (the same strings as tunvpn's).
    public static let mac1Label: [UInt8] = Array("mac1----".utf8)
    public static let cookieLabel: [UInt8] = Array("cookie--".utf8)

    public static let initiationLength = 148
    public static let initiationMAC1Offset = 116
    public static let responseLength = 92
    public static let responseMAC1Offset = 60
    public static let cookieReplyLength = 64
    /// Data frame header (type, reserved, receiver, counter) and the smallest frame (a keepalive).
    public static let dataHeaderLength = 16
    public static let minimumDataLength = 32
    /// Data plaintexts are zero-padded to a multiple of this (whitepaper §5.4.6), never past the MTU.
    public static let paddingMultiple = 16

    /// The plaintext length a packet of `length` bytes is padded to under `mtu`.
    @inline(__always)
    public static func paddedLength(_ length: Int, mtu: Int) -> Int {
        let padded = (length + paddingMultiple - 1) / paddingMultiple * paddingMultiple
        return max(length, min(padded, mtu))
    }
}

/// The keys of a completed WireGuard handshake, seen from one side.
public struct WireGuardKeys: Sendable {
    public let localIndex: UInt32
    public let remoteIndex: UInt32
    public let peerKey: PublicKey
    public let sendKey: SecretBytes
    public let receiveKey: SecretBytes
    public let isInitiator: Bool

    /// A data session for these keys: ChaCha20-Poly1305 with WireGuard's frame (header not authenticated).
    public func session(createdAt: UInt64, rejectAfter: UInt64 = ProtocolTimers.standard.rejectAfterTime) -> Session {
        Session(
            localIndex: localIndex, remoteIndex: remoteIndex, peerKey: peerKey, isInitiator: isInitiator,
            suite: ChaCha20Poly1305.self, sendKey: sendKey, receiveKey: receiveKey, createdAt: createdAt,
            rejectAfter: rejectAfter, frame: .wireGuard)
    }
}

/// The initiator's half of a WireGuard handshake with one peer.
public struct WireGuardInitiator: Sendable {
    public let localStatic: PrivateKey
    public let peerKey: PublicKey
    private let psk: SecretBytes
    private let peerTags: StaticKeyTags
    private let localTags: StaticKeyTags

    /// `psk` is the peer's 32-byte preshared key, or nil for none (32 zero bytes, as WireGuard does).
    public init(localStatic: PrivateKey, peerKey: PublicKey, psk: SecretBytes? = nil) {
        self.localStatic = localStatic
        self.peerKey = peerKey
        self.psk = psk ?? SecretBytes(zeros: 32)
        peerTags = StaticKeyTags.wireGuard(peerKey)
        localTags = StaticKeyTags.wireGuard(localStatic.publicKey)
    }

    /// An initiation in flight.
    public struct InitiationSent: Sendable {
        public let senderIndex: UInt32
        fileprivate let noise: NoiseHandshake
    }

    /// Message 1 (`-> e, es, s, ss` with the TAI64N timestamp as payload). mac2 is zero: a `CookieJar`
    /// with the WireGuard layout stamps it when a cookie is held.
    public func createInitiation(senderIndex: UInt32, timestamp: TAI64N, random: some RandomSource)
        -> (message: [UInt8], state: InitiationSent)
    {
        var noise = NoiseHandshake(
            pattern: .ikpsk2, hash: .blake2s, initiator: true, prologue: WireGuardFormat.identifier,
            localStatic: localStatic, localEphemeral: PrivateKey(random: random), remoteStatic: peerKey, psk: psk)
        var message: [UInt8] = [WireFormat.MessageType.initiation.rawValue, 0, 0, 0]
        appendLE32(&message, senderIndex)
        do {
            message += try noise.writeMessage(payload: timestamp.bytes)
        } catch {
            preconditionFailure("writing message 1 with a known peer key cannot fail: \(error)")
        }
        message += message.withUnsafeBytes { peerTags.mac1($0) }
        message += [UInt8](repeating: 0, count: 16)
        precondition(message.count == WireGuardFormat.initiationLength, "initiation layout")
        return (message, InitiationSent(senderIndex: senderIndex, noise: noise))
    }

    /// The receiver index of something shaped like a response, or nil.
    public static func receiverIndex(ofResponse message: [UInt8]) -> UInt32? {
        guard message.count == WireGuardFormat.responseLength, message[0] == WireFormat.MessageType.response.rawValue
        else { return nil }
        return readLE32(message, 8)
    }

    /// Consumes message 2 (`<- e, ee, se, psk` with an empty payload) and derives the transport keys.
    public func consumeResponse(_ message: [UInt8], for sent: InitiationSent) throws(HandshakeFailure) -> WireGuardKeys {
        guard message.count == WireGuardFormat.responseLength, message[0] == WireFormat.MessageType.response.rawValue,
            message[1] == 0, message[2] == 0, message[3] == 0
        else { throw .malformed }
        guard readLE32(message, 8) == sent.senderIndex else { throw .unexpectedResponse }
        guard message.withUnsafeBytes({ localTags.verifyMAC1($0, offset: WireGuardFormat.responseMAC1Offset) })
        else { throw .corrupted }
        var noise = sent.noise
        let payload: [UInt8]
        do {
            payload = try noise.readMessage(Array(message[12..<WireGuardFormat.responseMAC1Offset]))
        } catch .invalidPublicKey {
            throw .invalidPublicKey
        } catch {
            throw .corrupted
        }
        guard payload.isEmpty else { throw .malformed }
        let (send, receive) = noise.split()
        guard let sendKey = send.key, let receiveKey = receive.key else { preconditionFailure("Split() yields two keys") }
        return WireGuardKeys(
            localIndex: sent.senderIndex, remoteIndex: readLE32(message, 4), peerKey: peerKey, sendKey: sendKey,
            receiveKey: receiveKey, isInitiator: true)
    }
}

/// The responder's half: checks and consumes initiations, makes responses.
public struct WireGuardResponder: Sendable {
    public let localStatic: PrivateKey
    public let localKey: PublicKey
    private let localTags: StaticKeyTags

    public init(localStatic: PrivateKey) {
        self.localStatic = localStatic
        localKey = localStatic.publicKey
        localTags = StaticKeyTags.wireGuard(localKey)
    }

    /// An authenticated initiation, not yet checked against the peer list or answered.
    public struct InitiationConsumed: Sendable {
        public let peerKey: PublicKey
        public let senderIndex: UInt32
        public let timestamp: TAI64N
        fileprivate var noise: NoiseHandshake
    }

    /// The checks before any Diffie-Hellman work: shape (`malformed`) and mac1 (`corrupted`).
    public func precheckInitiation(raw m: UnsafeRawBufferPointer) -> HandshakeFailure? {
        guard m.count == WireGuardFormat.initiationLength, m[0] == WireFormat.MessageType.initiation.rawValue,
            m[1] == 0, m[2] == 0, m[3] == 0
        else { return .malformed }
        guard localTags.verifyMAC1(m, offset: WireGuardFormat.initiationMAC1Offset) else { return .corrupted }
        return nil
    }

    /// Consumes message 1: prechecks, then `-> e, es, s, ss` and the timestamp. The peer list, the
    /// timestamp's freshness and the per-peer rate are the caller's to check against its state.
    public func consumeInitiation(_ message: [UInt8], random: some RandomSource) throws(HandshakeFailure)
        -> InitiationConsumed
    {
        if let failure = message.withUnsafeBytes({ precheckInitiation(raw: $0) }) { throw failure }
        // The psk is mixed only in message 2 (pattern IKpsk2), after the peer is known, so a per-peer psk
        // is set then (`createResponse`); zeros stand in until that token.
        var noise = NoiseHandshake(
            pattern: .ikpsk2, hash: .blake2s, initiator: false, prologue: WireGuardFormat.identifier,
            localStatic: localStatic, localEphemeral: PrivateKey(random: random), remoteStatic: nil,
            psk: SecretBytes(zeros: 32))
        let payload: [UInt8]
        do {
            payload = try noise.readMessage(Array(message[8..<WireGuardFormat.initiationMAC1Offset]))
        } catch .invalidPublicKey {
            throw .invalidPublicKey
        } catch {
            throw .corrupted
        }
        guard let peerKey = noise.remoteStatic, payload.count == TAI64N.length, let timestamp = TAI64N(bytes: payload)
        else { throw .malformed }
        return InitiationConsumed(peerKey: peerKey, senderIndex: readLE32(message, 4), timestamp: timestamp, noise: noise)
    }

    /// Consumes message 1 and checks it against the caller's state, as tunvpn's responder does: a key not
    /// on the peer list is `unknownClientKey`, a timestamp not newer than the last admitted from that key
    /// is `replayedInitiation`.
    public func consumeInitiation(
        _ message: [UInt8], isAllowed: (PublicKey) -> Bool, lastTimestamp: (PublicKey) -> TAI64N?, random: some RandomSource
    ) throws(HandshakeFailure) -> InitiationConsumed {
        let consumed = try consumeInitiation(message, random: random)
        guard isAllowed(consumed.peerKey) else { throw .unknownClientKey }
        if let last = lastTimestamp(consumed.peerKey), !(last < consumed.timestamp) { throw .replayedInitiation }
        return consumed
    }

    /// Message 2 for a consumed initiation, with the peer's psk (nil: none), and the session keys.
    public func createResponse(to consumed: InitiationConsumed, senderIndex: UInt32, psk: SecretBytes?)
        -> (message: [UInt8], keys: WireGuardKeys)
    {
        var noise = consumed.noise
        noise.setPSK(psk ?? SecretBytes(zeros: 32))
        var message: [UInt8] = [WireFormat.MessageType.response.rawValue, 0, 0, 0]
        appendLE32(&message, senderIndex)
        appendLE32(&message, consumed.senderIndex)
        do {
            message += try noise.writeMessage(payload: [])
        } catch {
            preconditionFailure("writing message 2 after reading message 1 cannot fail: \(error)")
        }
        let peerTags = StaticKeyTags.wireGuard(consumed.peerKey)
        message += message.withUnsafeBytes { peerTags.mac1($0) }
        message += [UInt8](repeating: 0, count: 16)
        precondition(message.count == WireGuardFormat.responseLength, "response layout")
        let (initiatorToResponder, responderToInitiator) = noise.split()
        guard let receiveKey = initiatorToResponder.key, let sendKey = responderToInitiator.key else {
            preconditionFailure("Split() yields two keys")
        }
        return (
            message,
            WireGuardKeys(
                localIndex: senderIndex, remoteIndex: consumed.senderIndex, peerKey: consumed.peerKey, sendKey: sendKey,
                receiveKey: receiveKey, isInitiator: false)
        )
    }
}
