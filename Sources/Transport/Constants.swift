// Every protocol constant in one place, named as in docs/PROTOCOL.md.
//
// `Protocol` holds what the wire format and the specification fix (changing one breaks
// interoperability); `Limits` holds implementation choices that follow WireGuard's timers and sizes
// (changing one changes behaviour, not the format).

/// Values fixed by the wire format (docs/PROTOCOL.md).
public enum WireFormat {
    /// Message type bytes (first byte of every datagram).
    public enum MessageType: UInt8, Sendable {
        case initiation = 1
        case response = 2
        case cookieReply = 3
        case data = 4
        /// Server → client: "I have no session with this index" (after a server restart).
        case sessionGone = 5
    }

    /// Noise prologue: binds every handshake to this protocol and version.
    public static let prologue: [UInt8] = Array("tunvpn v3".utf8)
    /// The protocol version this implementation speaks, carried in byte 1 of initiations and responses
    /// (docs/PROTOCOL.md, "Versions"). Version 1 carried zero there.
    public static let protocolVersion: UInt8 = 3
    /// Offset of the version byte in initiations and responses.
    public static let versionOffset = 1
    /// Label hashed with a static public key to make the mac1 key (as WireGuard's "mac1----").
    public static let mac1Label: [UInt8] = Array("mac1----".utf8)
    /// Label hashed with the server's static public key to make the 4-byte key ID in initiations.
    public static let keyIDLabel: [UInt8] = Array("keyid---".utf8)

    /// Initiation: type(1) version(1) reserved(2) sender(4) keyID(4) ephemeral(32) static(48) payload(164)
    /// mac1(16) mac2(16).
    public static let initiationLength = 288
    /// Initiation payload: timestamp(12) offer(8) padding(128).
    public static let initiationPayloadLength = 148
    /// Zero bytes at the end of the initiation payload: they make an initiation at least as long as the
    /// response it gets, so the server never amplifies (the server ignores their value).
    public static let initiationPaddingLength = 128
    /// Offset of mac1 in an initiation (mac1 covers every byte before it).
    public static let initiationMAC1Offset = 256
    /// Offset of mac2 in an initiation (mac2 covers every byte before it, mac1 included).
    public static let initiationMAC2Offset = 272
    /// The initiation of versions 1 and 2 (its mac1 was at 128), recognised only to be refused by name.
    public static let legacyInitiationLength = 160
    /// Response: type(1) version(1) reserved(2) sender(4) receiver(4) ephemeral(32) payload(188) mac1(16)
    /// mac2(16).
    public static let responseLength = 264
    /// Response payload: addressing(44) DNS block(128).
    public static let responsePayloadLength = 172
    public static let responseMAC1Offset = 232
    /// The addressing part at the start of the response payload (suite, flags, IPv4 and IPv6 addresses).
    public static let responseAddressingLength = 44
    /// Bit 0 of the response payload's flags byte: the server forwards IPv6 beyond the tunnel.
    public static let responseFlagIPv6Egress: UInt8 = 1
    /// The DNS block at the end of the response payload: count(1) resolvers(4 × 16) search length(1) search(62).
    public static let dnsBlockLength = 128
    /// The most resolvers a DNS block carries.
    public static let maxDNSResolvers = 4
    /// The longest search list a DNS block carries, in bytes (domains separated by single spaces).
    public static let maxDNSSearchLength = 62
    /// Cookie reply: type(1) reserved(3) receiver(4) nonce(24) encrypted cookie(16 + 16).
    public static let cookieReplyLength = 64
    /// Label hashed with the server's static public key to make the cookie-encryption key.
    public static let cookieLabel: [UInt8] = Array("cookie--".utf8)
    /// Session-gone hint: type(1) reserved(3) the unknown receiver index (4).
    public static let sessionGoneLength = 8
    /// The most suites an initiation can offer.
    public static let maxOfferedSuites = 8
    /// Data frame header: type(1) reserved(3) receiver(4) counter(8); authenticated as associated data.
    public static let dataHeaderLength = 16
    /// AEAD tag length of every suite.
    public static let tagLength = 16
    /// Suite ID a response carries when the server accepts none of the offered suites.
    public static let noSuite: UInt8 = 0
}

/// Timers and limits, as WireGuard's (whitepaper §6.1, wireguard-go device/constants.go).
public enum Limits {
    /// The initiator starts a new handshake when its current session is this old (seconds) and it sends.
    public static let rekeyAfterTime: UInt64 = 120
    /// No session is used to send or receive once it is this old (seconds).
    public static let rejectAfterTime: UInt64 = 180
    /// The initiator gives up on a handshake after trying for this long (seconds).
    public static let rekeyAttemptTime: UInt64 = 90
    /// An unanswered initiation is retransmitted after this long (seconds), plus jitter.
    public static let rekeyTimeout: UInt64 = 5
    /// Up to this much random jitter (milliseconds) is added to each retransmission.
    public static let rekeyTimeoutJitterMillis: UInt64 = 333
    /// A peer that received data and sent nothing for this long sends a keepalive (seconds).
    public static let keepaliveTimeout: UInt64 = 10
    /// The initiator rekeys after sending this many frames under one key.
    public static let rekeyAfterMessages: UInt64 = 1 << 60
    /// No key seals or opens this many frames (2^64 − 2^13 − 1, WireGuard's REJECT_AFTER_MESSAGES).
    public static let rejectAfterMessages: UInt64 = UInt64.max - (1 << 13)
    /// A cookie secret (server) or a received cookie (client) is used for this long (seconds).
    public static let cookieLifetime: UInt64 = 120
    /// Initiations per second above which the server is "under load" and asks for cookies.
    public static let underLoadInitiationsPerSecond = 100
    /// Per source address under load: sustained initiations per second and burst (WireGuard's ratelimiter).
    public static let initiationsPerSecondPerSource: Double = 20
    public static let initiationBurstPerSource: Double = 5
    /// Most source addresses the rate limiter tracks at once; past this it forgets the idle ones.
    public static let rateLimiterEntries = 8192
    /// A client's initiations are admitted at most this often (per second), as WireGuard does: one that
    /// arrives less than 1 s / this (20 ms) after the last one admitted from its key is refused
    /// (`rateLimited`), checked after message 1's Diffie-Hellman work (docs/PROTOCOL.md, "Denial of service").
    public static let initiationsPerSecondPerPeer: UInt64 = 50
    /// Session-gone hints the server sends at most, per second and in a burst.
    public static let sessionGoneHintsPerSecond: Double = 20
    public static let sessionGoneHintBurst: Double = 10
    /// ICMPv6 unreachables a client answers IPv6 packets with, at most, per second and in a burst
    /// (RFC 4443 §2.4 (f)); past them such packets are dropped unanswered.
    public static let ipv6UnreachablesPerSecond: Double = 1000
    public static let ipv6UnreachableBurst: Double = 200
    /// Frames queued per peer while a handshake is in flight; older ones are dropped first.
    public static let maxQueuedPackets = 1024
    /// Largest IP packet carried (the tunnel MTU can be at most this).
    public static let maxPacketLength = 65535 - 28 - dataOverhead
    /// Bytes a data frame adds to an IP packet (header + tag).
    public static let dataOverhead = WireFormat.dataHeaderLength + WireFormat.tagLength
}

/// Nanoseconds from `start` to `now`, or 0 if `now` is earlier. Monotonic time never goes back, but two
/// threads may read it in one order and take the core's lock in the other, so a "now" a little older
/// than a stored instant is normal and must not underflow.
@inline(__always)
public func elapsed(_ now: UInt64, since start: UInt64) -> UInt64 { now > start ? now - start : 0 }

/// The protocol's timers in nanoseconds. `standard` is WireGuard's (the `Limits` values); tests and the
/// hidden `--timer-scale` option shrink them so that rekeys and timeouts happen in seconds.
public struct ProtocolTimers: Sendable, Equatable {
    public var rekeyAfterTime: UInt64
    public var rejectAfterTime: UInt64
    public var rekeyAttemptTime: UInt64
    public var rekeyTimeout: UInt64
    public var keepaliveTimeout: UInt64

    public static let standard = ProtocolTimers(
        rekeyAfterTime: Limits.rekeyAfterTime * 1_000_000_000, rejectAfterTime: Limits.rejectAfterTime * 1_000_000_000,
        rekeyAttemptTime: Limits.rekeyAttemptTime * 1_000_000_000, rekeyTimeout: Limits.rekeyTimeout * 1_000_000_000,
        keepaliveTimeout: Limits.keepaliveTimeout * 1_000_000_000)

    public init(rekeyAfterTime: UInt64, rejectAfterTime: UInt64, rekeyAttemptTime: UInt64, rekeyTimeout: UInt64, keepaliveTimeout: UInt64) {
        self.rekeyAfterTime = rekeyAfterTime
        self.rejectAfterTime = rejectAfterTime
        self.rekeyAttemptTime = rekeyAttemptTime
        self.rekeyTimeout = rekeyTimeout
        self.keepaliveTimeout = keepaliveTimeout
    }

    /// Every timer multiplied by `factor` (0 < factor ≤ 1 in tests).
    public func scaled(by factor: Double) -> ProtocolTimers {
        func s(_ v: UInt64) -> UInt64 { UInt64(max(1, (Double(v) * factor).rounded())) }
        return ProtocolTimers(
            rekeyAfterTime: s(rekeyAfterTime), rejectAfterTime: s(rejectAfterTime), rekeyAttemptTime: s(rekeyAttemptTime),
            rekeyTimeout: s(rekeyTimeout), keepaliveTimeout: s(keepaliveTimeout))
    }
}
