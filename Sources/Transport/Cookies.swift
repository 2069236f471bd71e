// Denial-of-service defences for handshakes, after WireGuard's cookie mechanism (whitepaper §5.4.4, §5.4.7).
//
// Every handshake message carries mac1 (keyed from the receiver's static public key), checked before any
// Diffie-Hellman work. When the server is under load, an initiation must also carry a valid mac2, keyed
// by a cookie that proves the sender can receive at its source address; one without it gets a 64-byte
// cookie reply and no DH work at all. Under load, initiations are also rate-limited per source address.
//
//   cookie reply: type=3 ‖ reserved(3) ‖ receiver index(4) ‖ nonce(24) ‖ XChaCha20-Poly1305(
//                 key = BLAKE2b-256("cookie--" ‖ server static public key), nonce,
//                 plaintext = cookie (16), associated data = mac1 of the initiation answered)
//   cookie      = BLAKE2b-128(key = server secret (32 random bytes, new every 120 s), source address ‖ port)
//   mac2        = BLAKE2b-128(key = cookie, initiation[0 ..< 144])

import Crypto

/// Where mac1 and mac2 sit in an initiation of one protocol, and the hash its MACs and cookies use:
/// tunvpn's own (BLAKE2b, 288-byte initiations) or WireGuard's (BLAKE2s, 148 bytes; whitepaper §5.4.4).
public struct InitiationMACLayout: Sendable, Equatable {
    public let hash: NoiseHash
    public let length: Int
    public let mac1Offset: Int
    public var mac2Offset: Int { mac1Offset + 16 }

    public static let tunvpn = InitiationMACLayout(
        hash: .blake2b, length: WireFormat.initiationLength, mac1Offset: WireFormat.initiationMAC1Offset)
    public static let wireGuard = InitiationMACLayout(
        hash: .blake2s, length: WireGuardFormat.initiationLength, mac1Offset: WireGuardFormat.initiationMAC1Offset)
}

/// Server side: makes cookies and cookie replies, checks mac2.
public struct CookieChecker: Sendable {
    private var secret: SecretBytes
    private var secretBornAt: UInt64?
    private let encryptionKey: SecretBytes
    public let layout: InitiationMACLayout

    public init(serverKey: PublicKey, layout: InitiationMACLayout = .tunvpn) {
        secret = SecretBytes(zeros: 32)
        self.layout = layout
        encryptionKey = cookieEncryptionKey(serverKey, hash: layout.hash)
    }

    /// The current secret, renewed when it is older than the cookie lifetime.
    private mutating func currentSecret(now: UInt64, random: any RandomSource) -> SecretBytes {
        if let born = secretBornAt, elapsed(now, since: born) < Limits.cookieLifetime * 1_000_000_000 { return secret }
        secret = SecretBytes(randomCount: 32, using: random)
        secretBornAt = now
        return secret
    }

    static func cookie(secret: SecretBytes, source: Endpoint, hash: NoiseHash = .blake2b) -> [UInt8] {
        // The source address in network order (4 bytes for IPv4, 16 for IPv6) ‖ the port, big-endian.
        let input = source.address.networkBytes + [UInt8(source.port >> 8), UInt8(source.port & 0xff)]
        var out = [UInt8](repeating: 0, count: 16)
        secret.withUnsafeBytes { k in input.withUnsafeBytes { i in out.withUnsafeMutableBytes { hash.hash([i], key: k, into: $0) } } }
        return out
    }

    /// True when `initiation` (`layout.length` bytes, mac1 already checked) carries the mac2 of `source`'s cookie.
    public mutating func verifyMAC2(_ initiation: [UInt8], source: Endpoint, now: UInt64, random: any RandomSource) -> Bool {
        guard initiation.count == layout.length else { return false }
        let cookie = Self.cookie(secret: currentSecret(now: now, random: random), source: source, hash: layout.hash)
        let expected = mac2(initiation, cookie: cookie, layout: layout)
        return Sodium.constantTimeEqual(expected, Array(initiation[layout.mac2Offset..<layout.length]))
    }

    /// The 64-byte cookie reply to `initiation` from `source`.
    public mutating func makeReply(to initiation: [UInt8], source: Endpoint, now: UInt64, random: any RandomSource) -> [UInt8] {
        let cookie = Self.cookie(secret: currentSecret(now: now, random: random), source: source, hash: layout.hash)
        var message: [UInt8] = [WireFormat.MessageType.cookieReply.rawValue, 0, 0, 0]
        message += initiation[4..<8]  // the initiation's sender index is our receiver index
        var nonce = [UInt8](repeating: 0, count: 24)
        nonce.withUnsafeMutableBytes { random.fill($0) }
        message += nonce
        var sealed = cookie + [UInt8](repeating: 0, count: 16)
        let ad = Array(initiation[layout.mac1Offset..<layout.mac2Offset])
        let n = sealed.withUnsafeMutableBytes { b in
            ad.withUnsafeBytes { a in
                nonce.withUnsafeBytes { nn in
                    XChaCha20Poly1305.seal(
                        key: encryptionKey.unsafePointer, nonce: nn.baseAddress.unsafelyUnwrapped,
                        buffer: b.baseAddress.unsafelyUnwrapped, length: 16, authenticating: a)
                }
            }
        }
        message += sealed.prefix(n)
        return message
    }
}

/// HASH-256("cookie--" ‖ server static public key): the key cookie replies are sealed with (BLAKE2b-256 in
/// tunvpn's protocol, BLAKE2s-256 in WireGuard's).
func cookieEncryptionKey(_ serverKey: PublicKey, hash: NoiseHash = .blake2b) -> SecretBytes {
    SecretBytes(count: 32) { out in
        WireFormat.cookieLabel.withUnsafeBytes { l in serverKey.bytes.withUnsafeBytes { k in hash.hash([l, k], into: out) } }
    }
}

/// mac2 of a message under `cookie`: keyed HASH-128 of every byte before mac2.
func mac2(_ initiation: [UInt8], cookie: [UInt8], layout: InitiationMACLayout = .tunvpn) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: 16)
    cookie.withUnsafeBytes { k in
        initiation.withUnsafeBytes { m in
            out.withUnsafeMutableBytes {
                layout.hash.hash([UnsafeRawBufferPointer(rebasing: m[0..<layout.mac2Offset])], key: k, into: $0)
            }
        }
    }
    return out
}

/// Client side: keeps the latest cookie from the server and stamps mac2 on initiations with it.
public struct CookieJar: Sendable {
    private let decryptionKey: SecretBytes
    private var cookie: [UInt8]?
    private var receivedAt: UInt64 = 0
    public let layout: InitiationMACLayout

    public init(serverKey: PublicKey, layout: InitiationMACLayout = .tunvpn) {
        self.layout = layout
        decryptionKey = cookieEncryptionKey(serverKey, hash: layout.hash)
    }

    /// Consumes a cookie reply to the initiation `sent` (whose sender index it must name). Returns false
    /// for anything malformed, misaddressed or forged.
    public mutating func consumeReply(_ reply: [UInt8], answering sent: [UInt8], senderIndex: UInt32, now: UInt64) -> Bool {
        guard reply.count == WireFormat.cookieReplyLength, reply[0] == WireFormat.MessageType.cookieReply.rawValue,
            reply[1] == 0, reply[2] == 0, reply[3] == 0, readLE32(reply, 4) == senderIndex,
            sent.count == layout.length
        else { return false }
        var sealed = Array(reply[32..<64])
        let ad = Array(sent[layout.mac1Offset..<layout.mac2Offset])
        let nonce = Array(reply[8..<32])
        let opened = sealed.withUnsafeMutableBytes { b in
            ad.withUnsafeBytes { a in
                nonce.withUnsafeBytes { n in
                    XChaCha20Poly1305.open(
                        key: decryptionKey.unsafePointer, nonce: n.baseAddress.unsafelyUnwrapped,
                        buffer: b.baseAddress.unsafelyUnwrapped, length: 32, authenticating: a)
                }
            }
        }
        guard opened == 16 else { return false }
        cookie = Array(sealed.prefix(16))
        receivedAt = now
        return true
    }

    /// Writes mac2 into `initiation` if a fresh cookie is held (otherwise mac2 stays zero).
    public func stamp(_ initiation: inout [UInt8], now: UInt64) {
        guard let cookie, elapsed(now, since: receivedAt) < Limits.cookieLifetime * 1_000_000_000,
            initiation.count == layout.length
        else { return }
        initiation.replaceSubrange(layout.mac2Offset..<layout.length, with: mac2(initiation, cookie: cookie, layout: layout))
    }
}

/// Per-source-address token buckets (WireGuard's ratelimiter): initiations under load, and the server's
/// session-gone hints. The table is bounded, so spoofed sources cannot grow it without limit.
public struct SourceRateLimiter: Sendable {
    private var buckets: [IPAddress: TokenBucket] = [:]
    private let perSecond: Double
    private let burst: Double

    /// A token bucket per source address; by default the initiation limits under load.
    public init(
        perSecond: Double = Limits.initiationsPerSecondPerSource, burst: Double = Limits.initiationBurstPerSource
    ) {
        self.perSecond = perSecond
        self.burst = burst
    }

    /// Takes one token for `source`; false when it has none left. IPv6 sources share a bucket per /64,
    /// as WireGuard's ratelimiter does: one host usually holds a whole /64 and could otherwise draw a
    /// fresh bucket for every address in it.
    public mutating func allow(_ source: IPAddress, now: UInt64) -> Bool {
        var source = source.unmapped
        if case .v6(let a) = source { source = .v6(IPv6Address(high: a.high, low: 0)) }
        if buckets.count >= Limits.rateLimiterEntries {
            // Forget sources idle for a second (their buckets are full again anyway); if that frees
            // nothing, start over rather than grow without bound.
            buckets = buckets.filter { elapsed(now, since: $0.value.last) < 1_000_000_000 }
            if buckets.count >= Limits.rateLimiterEntries { buckets.removeAll(keepingCapacity: true) }
        }
        var bucket = buckets[source] ?? TokenBucket(perSecond: perSecond, burst: burst, now: now)
        let allowed = bucket.take(now: now)
        buckets[source] = bucket
        return allowed
    }
}

/// Counts initiations in one-second windows to tell whether the server is under load.
public struct LoadMeter: Sendable {
    private var windowStart: UInt64 = 0
    private var inWindow = 0
    private var previousWindow = 0

    public init() {}

    /// Records one initiation and says whether the server is under load (the rate in this or the
    /// previous second exceeds the threshold).
    public mutating func record(now: UInt64) -> Bool {
        if elapsed(now, since: windowStart) >= 1_000_000_000 {
            previousWindow = elapsed(now, since: windowStart) >= 2_000_000_000 ? 0 : inWindow
            windowStart = now
            inWindow = 0
        }
        inWindow += 1
        return max(inWindow, previousWindow) > Limits.underLoadInitiationsPerSecond
    }
}
