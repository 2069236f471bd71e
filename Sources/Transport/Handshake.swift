// tunvpn's handshake: Noise_IKpsk2_25519_ChaChaPoly_BLAKE2b wrapped in WireGuard-style messages.
//
// The client (initiator) knows the server's static key; the server (responder) learns the client's from
// message 1 and checks it against its allow-list. Payloads travel inside the Noise transcript, so they are
// encrypted and bound to the handshake: an attacker who rewrites the suite offer breaks message 1's AEAD.
//   initiation payload (148 B): TAI64N timestamp (12) ‖ offered suite IDs (8, preference order, 0-padded) ‖
//                             padding (128 zero bytes, so that no response is longer than its initiation)
//   response payload  (172 B): chosen suite ID (1, 0 = none in common) ‖ flags (1, bit 0 = IPv6 egress) ‖
//                             client IPv4 address (4, network order) ‖ IPv4 prefix length (1) ‖ server IPv4
//                             address (4) ‖ client IPv6 address (16) ‖ IPv6 prefix length (1, 0 = no IPv6) ‖
//                             server IPv6 address (16) ‖ DNS block (128, `DNSSettings`)
// Initiations and responses carry the protocol version in byte 1 (`WireFormat.protocolVersion`).
// Byte layouts are in docs/PROTOCOL.md. Every function here is pure: keys, randomness and time come in as
// parameters and bytes come out, so the whole exchange runs in tests without sockets.

import Crypto

/// What the server tells a client about its tunnel addressing.
public struct TunnelAssignment: Equatable, Sendable {
    /// The client's tunnel address and the tunnel's prefix length ("10.8.0.2/16").
    public var client: IPv4Prefix
    /// The server's tunnel address ("10.8.0.1").
    public var server: IPv4Address
    /// The client's IPv6 tunnel address and the tunnel's IPv6 prefix length ("fdXX:…::2/64"), or nil when
    /// the tunnel carries no IPv6.
    public var client6: IPv6Prefix?
    /// The server's IPv6 tunnel address, present exactly when `client6` is.
    public var server6: IPv6Address?
    /// True when the server forwards IPv6 beyond the tunnel; false makes the client answer IPv6 packets
    /// for other destinations itself with an ICMPv6 unreachable instead of sending them.
    public var ipv6Egress: Bool
    /// The resolvers and search domains the server pushes (empty when it pushes none).
    public var dns: DNSSettings

    public init(
        client: IPv4Prefix, server: IPv4Address, client6: IPv6Prefix? = nil, server6: IPv6Address? = nil,
        ipv6Egress: Bool = false, dns: DNSSettings = .none
    ) {
        self.client = client
        self.server = server
        self.client6 = client6
        self.server6 = server6
        self.ipv6Egress = ipv6Egress
        self.dns = dns
    }
}

extension TunnelAssignment {
    /// The 172-byte response payload with a zero suite ID (docs/PROTOCOL.md, "Message 2: response"): the
    /// addressing, then the DNS block.
    public var responsePayload: [UInt8] {
        var p = [UInt8](repeating: 0, count: WireFormat.responseAddressingLength)
        if client6 != nil, ipv6Egress { p[1] = WireFormat.responseFlagIPv6Egress }
        client.address.value.bigEndianBytes(into: &p, at: 2)
        p[6] = UInt8(client.length)
        server.value.bigEndianBytes(into: &p, at: 7)
        if let client6, let server6 {
            p.replaceSubrange(11..<27, with: client6.address.networkBytes)
            p[27] = UInt8(client6.length)
            p.replaceSubrange(28..<44, with: server6.networkBytes)
        }
        return p + dns.block
    }

    /// Reads a response payload's addressing (bytes 1..<44; byte 0, the suite, is the caller's; the DNS
    /// block after it is read by `DNSSettings(block:)`). Nil when a prefix length is out of range or a
    /// "no IPv6" payload carries IPv6 bytes: a server that sends such a payload is broken (the transcript
    /// authenticates it), and the handshake is refused as malformed.
    init?(responsePayload p: [UInt8]) {
        guard p.count >= WireFormat.responseAddressingLength else { return nil }
        let length4 = Int(p[6])
        let length6 = Int(p[27])
        guard length4 <= 32, length6 <= 128 else { return nil }
        let client = IPv4Prefix(address: IPv4Address(readBE32(p, 2)), length: length4)
        let server = IPv4Address(readBE32(p, 7))
        // Flag bits other than bit 0 are reserved: sent as zero, ignored.
        let egress = p[1] & WireFormat.responseFlagIPv6Egress != 0
        if length6 == 0 {
            guard !egress, p[11..<27].allSatisfy({ $0 == 0 }), p[28..<44].allSatisfy({ $0 == 0 }) else { return nil }
            self.init(client: client, server: server)
        } else {
            let client6 = IPv6Address(high: readBE64(p, 11), low: readBE64(p, 19))
            let server6 = IPv6Address(high: readBE64(p, 28), low: readBE64(p, 36))
            self.init(
                client: client, server: server, client6: IPv6Prefix(address: client6, length: length6), server6: server6,
                ipv6Egress: egress)
        }
    }
}

/// A completed handshake, seen from one side: the keys and parameters for a data session.
public struct HandshakeResult: Sendable {
    /// Our index: data frames sent to us carry it as their receiver index.
    public let localIndex: UInt32
    /// The peer's index: our data frames carry it.
    public let remoteIndex: UInt32
    /// The peer's static public key.
    public let peerKey: PublicKey
    /// The negotiated suite.
    public let suite: any CipherSuite.Type
    /// Key for frames we send.
    public let sendKey: SecretBytes
    /// Key for frames we receive.
    public let receiveKey: SecretBytes
    /// The tunnel addressing (the server's assignment).
    public let assignment: TunnelAssignment
    /// True for the side that sent the initiation.
    public let isInitiator: Bool

    /// The same keys with other addressing (a client that takes only part of what the server assigned).
    public func withAssignment(_ other: TunnelAssignment) -> HandshakeResult {
        HandshakeResult(
            localIndex: localIndex, remoteIndex: remoteIndex, peerKey: peerKey, suite: suite, sendKey: sendKey,
            receiveKey: receiveKey, assignment: other, isInitiator: isInitiator)
    }
}

/// Keys derived from a static public key for the cheap checks done before any Diffie-Hellman work, with
/// the protocol's hash: BLAKE2b in tunvpn's own protocol, BLAKE2s in WireGuard's (`wireGuard(_:)`).
public struct StaticKeyTags: Sendable {
    /// The hash the tags and MACs are made with.
    public let hash: NoiseHash
    /// HASH-256(mac1Label ‖ key): keys the mac1 of messages sent to the owner of `key` ("mac1----" in both
    /// protocols).
    public let mac1Key: [UInt8]
    /// First 4 bytes of HASH-256(keyIDLabel ‖ key): names the server key an initiation was made for
    /// (tunvpn's protocol only; WireGuard has no key ID).
    public let keyID: [UInt8]

    public init(_ key: PublicKey, hash: NoiseHash = .blake2b) {
        self.hash = hash
        var k = [UInt8](repeating: 0, count: 32)
        var id = [UInt8](repeating: 0, count: 32)
        WireFormat.mac1Label.withUnsafeBytes { l in key.bytes.withUnsafeBytes { kb in
            k.withUnsafeMutableBytes { hash.hash([l, kb], into: $0) }
        } }
        WireFormat.keyIDLabel.withUnsafeBytes { l in key.bytes.withUnsafeBytes { kb in
            id.withUnsafeMutableBytes { hash.hash([l, kb], into: $0) }
        } }
        mac1Key = k
        keyID = Array(id.prefix(4))
    }

    /// WireGuard's mac1 key for `key` (BLAKE2s; whitepaper §5.4.4).
    public static func wireGuard(_ key: PublicKey) -> StaticKeyTags { StaticKeyTags(key, hash: .blake2s) }

    /// Keyed HASH-128 of `message` under `mac1Key`.
    public func mac1(_ message: UnsafeRawBufferPointer) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 16)
        mac1Key.withUnsafeBytes { key in out.withUnsafeMutableBytes { hash.hash([message], key: key, into: $0) } }
        return out
    }

    /// True when `message` carries a valid mac1 at `offset` (constant-time comparison).
    public func verifyMAC1(_ message: [UInt8], offset: Int) -> Bool {
        message.withUnsafeBytes { verifyMAC1($0, offset: offset) }
    }

    /// True when the raw `message` carries a valid mac1 at `offset`, without allocating.
    public func verifyMAC1(_ message: UnsafeRawBufferPointer, offset: Int) -> Bool {
        guard offset >= 0, message.count >= offset + 16 else { return false }
        return withUnsafeTemporaryAllocation(byteCount: 16, alignment: 8) { expected in
            mac1Key.withUnsafeBytes { key in
                hash.hash([UnsafeRawBufferPointer(rebasing: message[0..<offset])], key: key, into: expected)
            }
            return Sodium.constantTimeEqual(
                UnsafeRawBufferPointer(expected), UnsafeRawBufferPointer(rebasing: message[offset..<(offset + 16)]))
        }
    }
}

@inline(__always)
func readLE32(_ m: [UInt8], _ at: Int) -> UInt32 {
    UInt32(m[at]) | UInt32(m[at + 1]) << 8 | UInt32(m[at + 2]) << 16 | UInt32(m[at + 3]) << 24
}

@inline(__always)
func appendLE32(_ out: inout [UInt8], _ v: UInt32) {
    for i in 0..<4 { out.append(UInt8(truncatingIfNeeded: v >> (8 * UInt32(i)))) }
}

/// Shared settings of both sides of a handshake.
public struct HandshakeSettings: Sendable {
    /// Noise pattern: IKpsk2 unless a test asks for plain IK.
    public var pattern: NoisePattern = .ikpsk2
    /// The 32-byte pre-shared key; 32 zero bytes when none is configured, as WireGuard does.
    public var psk: SecretBytes = SecretBytes(zeros: 32)

    public init(psk: SecretBytes? = nil) {
        if let psk { self.psk = psk }
    }
}

/// The client's half: makes initiations and consumes the server's response.
public struct HandshakeInitiator: Sendable {
    public let localStatic: PrivateKey
    public let serverKey: PublicKey
    public let settings: HandshakeSettings
    /// Suites offered, in preference order (at most `WireFormat.maxOfferedSuites`).
    public let offeredSuites: [any CipherSuite.Type]
    private let serverTags: StaticKeyTags
    private let localTags: StaticKeyTags

    public init(
        localStatic: PrivateKey, serverKey: PublicKey, settings: HandshakeSettings = HandshakeSettings(),
        offeredSuites: [any CipherSuite.Type] = CipherSuites.available
    ) {
        precondition(
            !offeredSuites.isEmpty && offeredSuites.count <= WireFormat.maxOfferedSuites, "offer 1...8 suites")
        self.localStatic = localStatic
        self.serverKey = serverKey
        self.settings = settings
        self.offeredSuites = offeredSuites
        serverTags = StaticKeyTags(serverKey)
        localTags = StaticKeyTags(localStatic.publicKey)
    }

    /// An initiation in flight: what consuming its response needs.
    public struct InitiationSent: Sendable {
        public let senderIndex: UInt32
        fileprivate let noise: NoiseHandshake
    }

    /// Creates message 1 (`-> e, es, s, ss` + payload).
    public func createInitiation(senderIndex: UInt32, timestamp: TAI64N, random: some RandomSource)
        -> (message: [UInt8], state: InitiationSent)
    {
        var noise = NoiseHandshake(
            pattern: settings.pattern, initiator: true, prologue: WireFormat.prologue, localStatic: localStatic,
            localEphemeral: PrivateKey(random: random), remoteStatic: serverKey, psk: settings.psk)
        var payload = timestamp.bytes
        for i in 0..<WireFormat.maxOfferedSuites { payload.append(i < offeredSuites.count ? offeredSuites[i].wireID : 0) }
        payload += [UInt8](repeating: 0, count: WireFormat.initiationPaddingLength)
        var message: [UInt8] = [WireFormat.MessageType.initiation.rawValue, WireFormat.protocolVersion, 0, 0]
        appendLE32(&message, senderIndex)
        message += serverTags.keyID
        do {
            message += try noise.writeMessage(payload: payload)
        } catch {
            preconditionFailure("writing message 1 with a known server key cannot fail: \(error)")
        }
        message += message.withUnsafeBytes { serverTags.mac1($0) }
        message += [UInt8](repeating: 0, count: 16)  // mac2: empty until cookies are in use
        precondition(message.count == WireFormat.initiationLength, "initiation layout")
        return (message, InitiationSent(senderIndex: senderIndex, noise: noise))
    }

    /// The receiver index of a response, or nil if `message` is not shaped like one (cheap pre-check).
    public static func receiverIndex(ofResponse message: [UInt8]) -> UInt32? {
        guard message.count == WireFormat.responseLength, message[0] == WireFormat.MessageType.response.rawValue
        else { return nil }
        return readLE32(message, 8)
    }

    /// Consumes message 2 (`<- e, ee, se, psk` + payload) and derives the session keys.
    public func consumeResponse(_ message: [UInt8], for sent: InitiationSent) throws(HandshakeFailure)
        -> HandshakeResult
    {
        // A response of another version has another length (version 1's was 102 bytes, version 2's 136),
        // so the version byte is read before the length is checked. Every version ends with mac1 and mac2,
        // so such a response still gets the usual checks first (receiver index, mac1 at 32 bytes from the
        // end) and junk stays `malformed`, `unexpectedResponse` or `corrupted` (docs/PROTOCOL.md, "Versions").
        guard message.count >= 12 + 32, message[0] == WireFormat.MessageType.response.rawValue,
            message[2] == 0, message[3] == 0
        else { throw .malformed }
        let version = message[WireFormat.versionOffset]
        if version != WireFormat.protocolVersion {
            guard readLE32(message, 8) == sent.senderIndex else { throw .unexpectedResponse }
            guard localTags.verifyMAC1(message, offset: message.count - 32) else { throw .corrupted }
            throw .unsupportedVersion(response: version)
        }
        guard message.count == WireFormat.responseLength else { throw .malformed }
        guard readLE32(message, 8) == sent.senderIndex else { throw .unexpectedResponse }
        guard localTags.verifyMAC1(message, offset: WireFormat.responseMAC1Offset) else { throw .corrupted }
        var noise = sent.noise
        let payload: [UInt8]
        do {
            payload = try noise.readMessage(Array(message[12..<WireFormat.responseMAC1Offset]))
        } catch .invalidPublicKey {
            throw .invalidPublicKey
        } catch {
            throw .corrupted
        }
        guard payload.count == WireFormat.responsePayloadLength else { throw .malformed }
        if payload[0] == WireFormat.noSuite { throw .noCommonSuite }
        // The server must pick one of the suites we offered; the transcript binds both, so this only fails
        // for a broken server, never for an attacker.
        guard let suite = offeredSuites.first(where: { $0.wireID == payload[0] }) else { throw .malformed }
        guard var assignment = TunnelAssignment(responsePayload: payload) else { throw .malformed }
        // The DNS block is authenticated too, so a bad one comes from a broken or hostile server: refused by
        // name, with what was wrong (docs/PROTOCOL.md, "The DNS block").
        do {
            assignment.dns = try DNSSettings(block: payload[WireFormat.responseAddressingLength...])
        } catch {
            throw .invalidDNSSettings(error.description)
        }
        let (send, receive) = noise.split()
        guard let sendKey = send.key, let receiveKey = receive.key else {
            preconditionFailure("Split() always yields two keys")
        }
        return HandshakeResult(
            localIndex: sent.senderIndex, remoteIndex: readLE32(message, 4), peerKey: serverKey, suite: suite,
            sendKey: sendKey, receiveKey: receiveKey, assignment: assignment, isInitiator: true)
    }
}

@inline(__always)
func readBE64(_ m: [UInt8], _ at: Int) -> UInt64 {
    var v: UInt64 = 0
    for i in 0..<8 { v = v << 8 | UInt64(m[at + i]) }
    return v
}

@inline(__always)
func readBE32(_ m: [UInt8], _ at: Int) -> UInt32 {
    UInt32(m[at]) << 24 | UInt32(m[at + 1]) << 16 | UInt32(m[at + 2]) << 8 | UInt32(m[at + 3])
}

/// The server's half: consumes initiations and makes responses.
public struct HandshakeResponder: Sendable {
    public let localStatic: PrivateKey
    public let settings: HandshakeSettings
    /// Suites the server accepts, in its preference order (used only to break no ties: the client's order wins).
    public let acceptedSuites: [any CipherSuite.Type]
    private let localTags: StaticKeyTags
    public let localKey: PublicKey

    public init(
        localStatic: PrivateKey, settings: HandshakeSettings = HandshakeSettings(),
        acceptedSuites: [any CipherSuite.Type] = CipherSuites.available
    ) {
        self.localStatic = localStatic
        self.settings = settings
        self.acceptedSuites = acceptedSuites
        localKey = localStatic.publicKey
        localTags = StaticKeyTags(localKey)
    }

    /// An authenticated initiation from an allowed client, not yet answered.
    public struct InitiationConsumed: Sendable {
        public let clientKey: PublicKey
        public let senderIndex: UInt32
        public let timestamp: TAI64N
        /// The client's offer, in its preference order (unknown IDs dropped).
        public let offeredSuiteIDs: [UInt8]
        fileprivate let noise: NoiseHandshake
    }

    /// Cheap checks before any Diffie-Hellman work: shape, server key ID and mac1.
    public func precheckInitiation(_ message: [UInt8]) throws(HandshakeFailure) {
        let failure = message.withUnsafeBytes { precheckInitiation(raw: $0) }
        if let failure { throw failure }
    }

    /// The same checks on a raw datagram, without allocating (the engine runs them before taking the
    /// core's lock, so a flood of forged initiations costs little more than the MAC over each).
    /// An initiation of another protocol version (byte 1; version 1 had zero there; versions 1 and 2 were
    /// 160 bytes long with mac1 at 128, and every version ends with mac1 and mac2) passes the same checks
    /// first, so junk is still `malformed`, `wrongServerKey` or `corrupted`, and is then refused as
    /// `unsupportedVersion` (docs/PROTOCOL.md, "Versions").
    public func precheckInitiation(raw m: UnsafeRawBufferPointer) -> HandshakeFailure? {
        guard m.count == WireFormat.initiationLength || m.count == WireFormat.legacyInitiationLength,
            m[0] == WireFormat.MessageType.initiation.rawValue, m[2] == 0, m[3] == 0
        else { return .malformed }
        let id = localTags.keyID
        guard m[8] == id[0], m[9] == id[1], m[10] == id[2], m[11] == id[3] else { return .wrongServerKey }
        guard localTags.verifyMAC1(m, offset: m.count - 32) else { return .corrupted }
        let version = m[WireFormat.versionOffset]
        if m.count == WireFormat.legacyInitiationLength {
            // Only versions 1 (byte 1 zero) and 2 had this length: a "version 3" of 160 bytes is no message.
            guard version != WireFormat.protocolVersion else { return .malformed }
            return .unsupportedVersion(initiation: version)
        }
        guard version == WireFormat.protocolVersion else { return .unsupportedVersion(initiation: version) }
        return nil
    }

    /// Consumes message 1. `isAllowed` says whether a client key is on the allow-list; `lastTimestamp`
    /// gives the newest timestamp already accepted from that key (nil if none). The caller records the
    /// returned timestamp only once it has decided to answer.
    public func consumeInitiation(
        _ message: [UInt8], isAllowed: (PublicKey) -> Bool, lastTimestamp: (PublicKey) -> TAI64N?,
        random: some RandomSource
    ) throws(HandshakeFailure) -> InitiationConsumed {
        let consumed = try consumeInitiation(message, random: random)
        guard isAllowed(consumed.clientKey) else { throw .unknownClientKey }
        if let last = lastTimestamp(consumed.clientKey), !(last < consumed.timestamp) { throw .replayedInitiation }
        return consumed
    }

    /// Consumes message 1 without the allow-list and timestamp checks, which the caller makes against its
    /// own state afterwards: this part needs no state, so a server can run it outside its lock.
    public func consumeInitiation(_ message: [UInt8], random: some RandomSource) throws(HandshakeFailure)
        -> InitiationConsumed
    {
        try precheckInitiation(message)
        // The ephemeral key is ours for message 2; it is chosen now because Noise fixes it at Initialize().
        var noise = NoiseHandshake(
            pattern: settings.pattern, initiator: false, prologue: WireFormat.prologue, localStatic: localStatic,
            localEphemeral: PrivateKey(random: random), remoteStatic: nil, psk: settings.psk)
        let payload: [UInt8]
        do {
            payload = try noise.readMessage(Array(message[12..<WireFormat.initiationMAC1Offset]))
        } catch .invalidPublicKey {
            throw .invalidPublicKey
        } catch {
            throw .corrupted
        }
        guard let clientKey = noise.remoteStatic, payload.count == WireFormat.initiationPayloadLength,
            let timestamp = TAI64N(bytes: payload[0..<TAI64N.length])
        else { throw .malformed }
        // The padding after the offer is ignored, whatever its value (docs/PROTOCOL.md, "Message 1").
        let offer = payload[TAI64N.length..<(TAI64N.length + WireFormat.maxOfferedSuites)]
        let offered = offer.filter { $0 != 0 && CipherSuites.withID($0) != nil }
        return InitiationConsumed(
            clientKey: clientKey, senderIndex: readLE32(message, 4), timestamp: timestamp,
            offeredSuiteIDs: Array(offered), noise: noise)
    }

    /// The suite for an offer: the client's most preferred suite that the server accepts and can run.
    public func chooseSuite(for offer: [UInt8]) -> (any CipherSuite.Type)? {
        for id in offer {
            if let s = acceptedSuites.first(where: { $0.wireID == id }), s.isAvailable { return s }
        }
        return nil
    }

    /// Creates message 2. With no common suite the response still goes out, authenticated, carrying suite 0
    /// so the client learns why, and no session results (`result` is nil).
    public func createResponse(
        to consumed: InitiationConsumed, senderIndex: UInt32, assignment: TunnelAssignment
    ) -> (message: [UInt8], result: HandshakeResult?) {
        let suite = chooseSuite(for: consumed.offeredSuiteIDs)
        // With no common suite, every byte after the suite ID is zero (docs/PROTOCOL.md, "Message 2").
        var payload = suite == nil ? [UInt8](repeating: 0, count: WireFormat.responsePayloadLength) : assignment.responsePayload
        payload[0] = suite?.wireID ?? WireFormat.noSuite
        var noise = consumed.noise
        var message: [UInt8] = [WireFormat.MessageType.response.rawValue, WireFormat.protocolVersion, 0, 0]
        appendLE32(&message, senderIndex)
        appendLE32(&message, consumed.senderIndex)
        do {
            message += try noise.writeMessage(payload: payload)
        } catch {
            preconditionFailure("writing message 2 after reading message 1 cannot fail: \(error)")
        }
        let clientTags = StaticKeyTags(consumed.clientKey)
        message += message.withUnsafeBytes { clientTags.mac1($0) }
        message += [UInt8](repeating: 0, count: 16)
        precondition(message.count == WireFormat.responseLength, "response layout")
        guard let suite else { return (message, nil) }
        let (initiatorToResponder, responderToInitiator) = noise.split()
        guard let receiveKey = initiatorToResponder.key, let sendKey = responderToInitiator.key else {
            preconditionFailure("Split() always yields two keys")
        }
        return (
            message,
            HandshakeResult(
                localIndex: senderIndex, remoteIndex: consumed.senderIndex, peerKey: consumed.clientKey,
                suite: suite, sendKey: sendKey, receiveKey: receiveKey, assignment: assignment, isInitiator: false)
        )
    }
}

extension UInt32 {
    func bigEndianBytes(into out: inout [UInt8], at offset: Int) {
        for i in 0..<4 { out[offset + i] = UInt8(truncatingIfNeeded: self >> (24 - 8 * UInt32(i))) }
    }
}
