// Data frames: the codec that turns an IP packet into an authenticated UDP payload and back, in place.
//
//   0      1..3       4..7             8..15         16..
//   type=4 reserved=0 receiver (LE32)  counter (LE64) AEAD(packet) ‖ tag(16)
// The 16-byte header is the AEAD's associated data, so every header bit is authenticated (in WireGuard
// mode the associated data is empty, as WireGuard's; `Session.frame`); the nonce comes from the counter. A keepalive is a frame with an empty packet. Everything works on the caller's
// buffers: `seal` expects the packet already `dataHeaderLength` bytes into the buffer (the engine reads
// TUN packets there), writes the header in front and the tag behind, and allocates nothing.

/// Why a datagram or packet was dropped. Every drop is counted under one of these.
public enum DropReason: Int, CaseIterable, Sendable, CustomStringConvertible {
    /// Too short, unknown type, or non-zero reserved bytes (a datagram of type 4 that is not a data frame
    /// is this, never a handshake failure).
    case malformed
    /// Longer than any frame we accept.
    case oversized
    /// No live session has the frame's receiver index.
    case unknownSession
    /// The AEAD tag did not verify.
    case authentication
    /// The counter was seen before or is too old for the window.
    case replay
    /// The session is past REJECT_AFTER_TIME or its counter limit.
    case expired
    /// The inner packet's source is not the sending peer's tunnel address (cryptokey routing).
    case sourceNotAllowed
    /// The inner packet is neither a well-formed IPv4 nor IPv6 packet.
    case notIP
    /// No peer owns the packet's destination.
    case noRoute
    /// The peer owning the destination has no usable session (only clients start handshakes).
    case noSession
    /// The peer has no session and the packet queue is full.
    case queueFull
    /// A handshake message that was refused (the handshake failure counters say why).
    case handshake
    /// Too many handshake messages from one source (rate limit).
    case rateLimited
    /// Client: an IPv6 packet read from the TUN device that the tunnel does not carry (IPv6 turned off,
    /// no IPv6 from the server, or no IPv6 egress at the server for its destination); the client answered
    /// it itself with an ICMPv6 destination unreachable (unless RFC 4443 §2.4 or the rate limit forbade one).
    case ipv6Unreachable

    public var description: String {
        switch self {
        case .malformed: return "malformed"
        case .oversized: return "oversized"
        case .unknownSession: return "unknownSession"
        case .authentication: return "authentication"
        case .replay: return "replay"
        case .expired: return "expired"
        case .sourceNotAllowed: return "sourceNotAllowed"
        case .notIP: return "notIP"
        case .noRoute: return "noRoute"
        case .noSession: return "noSession"
        case .queueFull: return "queueFull"
        case .handshake: return "handshake"
        case .rateLimited: return "rateLimited"
        case .ipv6Unreachable: return "ipv6Unreachable"
        }
    }
}

/// The data-frame codec.
public enum DataFrame {
    public static let headerLength = WireFormat.dataHeaderLength
    public static let tagLength = WireFormat.tagLength

    /// Seals the packet at `buffer + headerLength` (`length` bytes) in place and writes the header at
    /// `buffer`. The buffer needs `headerLength + max(length, mtu) + tagLength` bytes. In WireGuard's frame
    /// format the packet is first zero-padded to a multiple of 16 bytes, never past `mtu` (whitepaper
    /// §5.4.6); tunvpn's frames are not padded. Returns the frame length, or nil when the session has used
    /// up its counters (the caller must rekey).
    @inline(__always)
    public static func seal(_ buffer: UnsafeMutableRawPointer, packetLength length: Int, session: Session, mtu: Int) -> Int? {
        let counter = session.sendCounter.wrappingAdd(1, ordering: .relaxed).oldValue
        guard counter < Limits.rejectAfterMessages else {
            // Put the counter back at the limit, so that refused seals can never wrap it to 0 and reuse a
            // nonce (wireguard-go does the same).
            session.sendCounter.store(Limits.rejectAfterMessages, ordering: .relaxed)
            return nil
        }
        buffer.storeBytes(of: UInt32(WireFormat.MessageType.data.rawValue).littleEndian, as: UInt32.self)
        buffer.storeBytes(of: session.remoteIndex.littleEndian, toByteOffset: 4, as: UInt32.self)
        buffer.storeBytes(of: counter.littleEndian, toByteOffset: 8, as: UInt64.self)
        var plaintext = length
        if case .wireGuard = session.frame {
            plaintext = WireGuardFormat.paddedLength(length, mtu: mtu)
            if plaintext > length {
                (buffer + headerLength + length).initializeMemory(as: UInt8.self, repeating: 0, count: plaintext - length)
            }
        }
        let sealed = session.sender.seal(
            buffer + headerLength, length: plaintext, counter: counter, authenticating: session.associatedData(buffer))
        return headerLength + sealed
    }

    /// The receiver index of a datagram that is shaped like a data frame, or nil (→ `.malformed`).
    @inline(__always)
    public static func receiverIndex(_ datagram: UnsafeRawBufferPointer) -> UInt32? {
        guard datagram.count >= headerLength + tagLength, let base = datagram.baseAddress else { return nil }
        // type 4 followed by three zero bytes, read as one little-endian word.
        guard UInt32(littleEndian: base.loadUnaligned(as: UInt32.self)) == UInt32(WireFormat.MessageType.data.rawValue)
        else { return nil }
        return UInt32(littleEndian: base.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
    }

    /// The outcome of opening a frame.
    public enum Opened: Equatable, Sendable {
        /// The packet is at `datagram + headerLength`, `length` bytes (0 for a keepalive).
        case packet(length: Int)
        case dropped(DropReason)
    }

    /// Opens a data frame in place under `session` at monotonic time `now`: authenticates it, then checks
    /// the replay window (only authenticated counters may move it) and the session's age.
    @inline(__always)
    public static func open(_ datagram: UnsafeMutableRawBufferPointer, session: Session, now: UInt64) -> Opened {
        guard datagram.count >= headerLength + tagLength, let base = datagram.baseAddress else { return .dropped(.malformed) }
        let counter = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        guard counter < Limits.rejectAfterMessages else { return .dropped(.expired) }
        guard let length = session.receiver.open(
            base + headerLength, length: datagram.count - headerLength, counter: counter,
            authenticating: session.associatedData(base))
        else { return .dropped(.authentication) }
        guard session.replay.withLock({ $0.accept(counter) }) else { return .dropped(.replay) }
        guard !session.isExpired(at: now) else { return .dropped(.expired) }
        return .packet(length: length)
    }
}

/// Minimal IPv4 header checks for cryptokey routing.
public enum IPv4Header {
    /// Source and destination of a well-formed IPv4 packet, and its total length (which may be shorter
    /// than `packet.count` if the sender padded); nil for anything else.
    @inline(__always)
    public static func parse(_ packet: UnsafeRawBufferPointer) -> (source: IPv4Address, destination: IPv4Address, totalLength: Int)? {
        guard packet.count >= 20, let p = packet.baseAddress else { return nil }
        let versionIHL = p.load(as: UInt8.self)
        guard versionIHL >> 4 == 4, Int(versionIHL & 0x0f) * 4 >= 20 else { return nil }
        let total = Int(p.load(fromByteOffset: 2, as: UInt8.self)) << 8 | Int(p.load(fromByteOffset: 3, as: UInt8.self))
        guard total >= Int(versionIHL & 0x0f) * 4, total <= packet.count else { return nil }
        return (IPv4Address(networkBytes: p + 12), IPv4Address(networkBytes: p + 16), total)
    }

    /// The destination of something that looks like IPv4 (cheap check for the send path), else nil.
    @inline(__always)
    public static func destination(_ packet: UnsafeRawBufferPointer) -> IPv4Address? {
        guard packet.count >= 20, let p = packet.baseAddress, p.load(as: UInt8.self) >> 4 == 4 else { return nil }
        return IPv4Address(networkBytes: p + 16)
    }
}
