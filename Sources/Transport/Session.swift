// A data session: the keys one handshake produced, with the send counter and the replay window.
//
// Sessions are shared between the thread that seals (TUN → UDP) and the one that opens (UDP → TUN), so
// everything mutable in them is atomic or behind its own lock; the keys themselves never change. A rekey
// makes a new Session; the old one keeps opening frames until it expires, so no packet in flight is lost.

import Crypto
import Synchronization

/// The keys and counters of one handshake's data session.
///
/// Concurrency: safe to use from any number of threads. Sealing takes a fresh counter atomically; opening
/// checks the replay window under a lock held only for the bitmap update.
public final class Session: Sendable {
    /// Our index: incoming frames name this session by it.
    public let localIndex: UInt32
    /// The peer's index, written into our frames.
    public let remoteIndex: UInt32
    /// The peer's static key.
    public let peerKey: PublicKey
    /// Whether we sent the initiation (only the initiator rekeys on age).
    public let isInitiator: Bool
    /// Monotonic time (ns) when the handshake completed.
    public let createdAt: UInt64
    /// Age (ns) from which the session neither seals nor opens (REJECT_AFTER_TIME).
    public let rejectAfter: UInt64
    /// The suite both ciphers use.
    public let suite: any CipherSuite.Type
    let sender: SessionCipher
    let receiver: SessionCipher
    /// Next counter to send.
    let sendCounter = Atomic<UInt64>(0)
    let replay = Mutex(ReplayWindow())

    /// The data-frame format: tunvpn's (header authenticated) or WireGuard's.
    public let frame: FrameFormat

    /// How data frames of a session are laid out around the AEAD (the header is the same 16 bytes in both).
    public enum FrameFormat: Sendable {
        /// tunvpn's: the 16-byte header is the AEAD's associated data.
        case tunvpn
        /// WireGuard's (whitepaper §5.4.6): empty associated data, plaintext zero-padded to a multiple of 16.
        case wireGuard
    }

    public convenience init(result: HandshakeResult, createdAt: UInt64, rejectAfter: UInt64 = ProtocolTimers.standard.rejectAfterTime) {
        self.init(
            localIndex: result.localIndex, remoteIndex: result.remoteIndex, peerKey: result.peerKey,
            isInitiator: result.isInitiator, suite: result.suite, sendKey: result.sendKey, receiveKey: result.receiveKey,
            createdAt: createdAt, rejectAfter: rejectAfter, frame: .tunvpn)
    }

    init(
        localIndex: UInt32, remoteIndex: UInt32, peerKey: PublicKey, isInitiator: Bool, suite: any CipherSuite.Type,
        sendKey: SecretBytes, receiveKey: SecretBytes, createdAt: UInt64, rejectAfter: UInt64, frame: FrameFormat
    ) {
        self.rejectAfter = rejectAfter
        self.localIndex = localIndex
        self.remoteIndex = remoteIndex
        self.peerKey = peerKey
        self.isInitiator = isInitiator
        self.createdAt = createdAt
        self.suite = suite
        self.frame = frame
        sender = SessionCipher(suite: suite, key: sendKey)
        receiver = SessionCipher(suite: suite, key: receiveKey)
    }

    /// The AEAD's associated data for a frame whose header is at `header`.
    @inline(__always)
    func associatedData(_ header: UnsafeRawPointer) -> UnsafeRawBufferPointer {
        switch frame {
        case .tunvpn: return UnsafeRawBufferPointer(start: header, count: WireFormat.dataHeaderLength)
        case .wireGuard: return UnsafeRawBufferPointer(start: nil, count: 0)
        }
    }

    /// Frames sealed so far.
    public var framesSent: UInt64 { sendCounter.load(ordering: .relaxed) }

    /// Age in nanoseconds at `now`.
    @inline(__always)
    public func age(at now: UInt64) -> UInt64 { elapsed(now, since: createdAt) }

    /// True when the session may no longer seal or open (REJECT_AFTER_TIME).
    @inline(__always)
    public func isExpired(at now: UInt64) -> Bool { age(at: now) >= rejectAfter }
}
