// The named reasons a handshake message is refused, in the operator's words.

/// Why a handshake message was refused. Each case is a distinct reason the caller logs and counts.
///
/// Two failures are equal (and hash alike) when their reason is: the details of `unsafeAssignment`,
/// `unsupportedVersion` and `invalidDNSSettings` are for the log, and each counts under one name.
public enum HandshakeFailure: Error, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    /// Wrong length, type or reserved bytes: not a handshake message of this protocol.
    case malformed
    /// The initiation was made for another server's public key (the client has the wrong `--peer-key`).
    case wrongServerKey
    /// A MAC or an AEAD check failed: the message was altered in transit or forged.
    case corrupted
    /// The client's static key is not on the server's allow-list.
    case unknownClientKey
    /// The initiation's timestamp is not newer than the last one accepted from this client.
    case replayedInitiation
    /// Client and server share no cipher suite.
    case noCommonSuite
    /// A response that answers no initiation we have in flight.
    case unexpectedResponse
    /// A peer's ephemeral or static key is a low-order point.
    case invalidPublicKey
    /// No response arrived within the handshake attempt time.
    case timeout
    /// The server has no tunnel address left to give this client.
    case addressPoolExhausted
    /// Under load: the initiation carried no valid mac2, so it got a cookie reply instead of an answer.
    case cookieRequired
    /// Too many initiations from this source address or for this client.
    case rateLimited
    /// The server assigned a tunnel address or prefix this client refuses to configure; the detail names
    /// the address and what it conflicts with (`AssignmentBounds`).
    case unsafeAssignment(String)
    /// An initiation or response of another protocol version than `WireFormat.protocolVersion` (byte 1;
    /// zero is version 1). The detail says which version came and which side refused it, for the log.
    case unsupportedVersion(String)
    /// (Client) an authenticated response whose DNS block breaks a rule of docs/PROTOCOL.md ("The DNS
    /// block"); the detail says what was wrong, never the block's bytes.
    case invalidDNSSettings(String)

    /// A server's refusal of an initiation carrying protocol version `received`.
    public static func unsupportedVersion(initiation received: UInt8) -> HandshakeFailure {
        .unsupportedVersion(
            "protocol version \(Self.version(byte: received)) (this server speaks version \(WireFormat.protocolVersion); upgrade the client)")
    }

    /// A client's refusal of a response carrying protocol version `received`.
    public static func unsupportedVersion(response received: UInt8) -> HandshakeFailure {
        .unsupportedVersion(
            "protocol version \(Self.version(byte: received)) (this client speaks version \(WireFormat.protocolVersion); run the same tunvpn version on client and server)")
    }

    /// The version a version byte names: version 1 left the byte zero.
    static func version(byte: UInt8) -> Int { byte == 0 ? 1 : Int(byte) }

    public static let allCases: [HandshakeFailure] = [
        .malformed, .wrongServerKey, .corrupted, .unknownClientKey, .replayedInitiation, .noCommonSuite,
        .unexpectedResponse, .invalidPublicKey, .timeout, .addressPoolExhausted, .cookieRequired, .rateLimited,
        .unsafeAssignment(""), .unsupportedVersion(""), .invalidDNSSettings(""),
    ]

    public static func == (a: HandshakeFailure, b: HandshakeFailure) -> Bool { a.name == b.name }
    public func hash(into hasher: inout Hasher) { hasher.combine(name) }

    /// The reason's name as logs and metrics spell it.
    public var name: String {
        switch self {
        case .malformed: return "malformed"
        case .wrongServerKey: return "wrongServerKey"
        case .corrupted: return "corrupted"
        case .unknownClientKey: return "unknownClientKey"
        case .replayedInitiation: return "replayedInitiation"
        case .noCommonSuite: return "noCommonSuite"
        case .unexpectedResponse: return "unexpectedResponse"
        case .invalidPublicKey: return "invalidPublicKey"
        case .timeout: return "timeout"
        case .addressPoolExhausted: return "addressPoolExhausted"
        case .cookieRequired: return "cookieRequired"
        case .rateLimited: return "rateLimited"
        case .unsafeAssignment: return "unsafeAssignment"
        case .unsupportedVersion: return "unsupportedVersion"
        case .invalidDNSSettings: return "invalidDNSSettings"
        }
    }

    public var description: String {
        switch self {
        case .malformed: return "malformed handshake message"
        case .wrongServerKey: return "initiation made for another server key (client has the wrong --peer-key)"
        case .corrupted: return "handshake message failed authentication (altered in transit, forged, or a --psk mismatch)"
        case .unknownClientKey: return "client key is not on the allow-list"
        case .replayedInitiation: return "replayed initiation (timestamp not newer than the last accepted)"
        case .noCommonSuite: return "no common cipher suite"
        case .unexpectedResponse: return "response to no handshake in flight"
        case .invalidPublicKey: return "peer sent a low-order public key"
        case .timeout: return "no response from the server"
        case .addressPoolExhausted: return "no tunnel address left in the server's pool"
        case .cookieRequired: return "server under load: answered with a cookie instead"
        case .rateLimited: return "too many initiations from this source or for this client"
        case .unsafeAssignment(let detail):
            return "refused the server's tunnel address: \(detail) (a misconfigured or malicious server; check its --address)"
        case .unsupportedVersion(let detail):
            return detail.isEmpty ? "another protocol version" : detail
        case .invalidDNSSettings(let detail):
            return "refused the server's DNS settings: \(detail.isEmpty ? "invalid DNS block" : detail) (a misconfigured or malicious server; check its --dns and --dns-search)"
        }
    }
}
