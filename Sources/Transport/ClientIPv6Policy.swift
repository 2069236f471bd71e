// What a client does with an IPv6 packet read from its TUN device (docs/PROTOCOL.md, "Data frames").
//
// A full-tunnel client routes all of IPv6 (::/1 and 8000::/1) into the device even when the tunnel cannot
// carry it, so that nothing leaves the host outside the tunnel. Such packets are answered locally with an
// ICMPv6 destination unreachable, code 1 (`ICMPv6Unreachable`), so applications fall back to IPv4 at once:
// when the client runs with --no-ipv6; when the server gave it no IPv6 address; or when the server has no
// IPv6 egress and the destination is outside the tunnel's IPv6 prefix. Packets to multicast or link-local
// destinations never leave the host and are not answered (`noRoute`).

/// A client's IPv6 rules and its rate limit for answers.
struct ClientIPv6Policy: Sendable {
    /// --no-ipv6: every IPv6 packet is answered, whatever the server offers.
    var ipv6Disabled: Bool
    /// At most `Limits.ipv6UnreachablesPerSecond` answers a second, `Limits.ipv6UnreachableBurst` at once.
    var answers = TokenBucket(perSecond: Limits.ipv6UnreachablesPerSecond, burst: Limits.ipv6UnreachableBurst)

    init(ipv6Disabled: Bool) { self.ipv6Disabled = ipv6Disabled }

    enum Verdict: Equatable {
        /// Send it (or queue it until a session is up).
        case carry
        /// The tunnel does not carry it: answer it locally.
        case unreachable
        /// A multicast or link-local destination: drop it.
        case noRoute
    }

    /// The verdict for a packet to `destination` under `assignment` (nil: no handshake yet, so the
    /// packet waits with the others and is judged again when the first session's addressing is known).
    func verdict(destination: IPv6Address, assignment: TunnelAssignment?) -> Verdict {
        if ICMPv6Unreachable.isMulticast(destination) || ICMPv6Unreachable.isLinkLocal(destination) { return .noRoute }
        if ipv6Disabled { return .unreachable }
        guard let assignment else { return .carry }
        guard let client6 = assignment.client6 else { return .unreachable }
        if !assignment.ipv6Egress && !client6.contains(destination) { return .unreachable }
        return .carry
    }

    /// The answer to `packet` (whose verdict was `unreachable`), or `.drop(.ipv6Unreachable)` when RFC 4443
    /// §2.4 or the rate limit forbids one.
    mutating func answer(_ packet: UnsafeRawBufferPointer, assignment: TunnelAssignment?, now: UInt64) -> SendDecision {
        guard let bytes = ICMPv6Unreachable.answer(to: packet, from: assignment?.server6), answers.take(now: now) else {
            return .drop(.ipv6Unreachable)
        }
        return .answer(bytes)
    }

    /// Sorts the packets queued before the first handshake by the verdict for the addressing it brought:
    /// those to send, and the answers to write to the device for the ones it does not carry (`refused`
    /// counts those, answered or not).
    mutating func sortQueued(
        _ queue: [[UInt8]], assignment: TunnelAssignment?, now: UInt64
    ) -> (send: [[UInt8]], answers: [[UInt8]], refused: Int) {
        var send: [[UInt8]] = []
        var answers: [[UInt8]] = []
        var refused = 0
        send.reserveCapacity(queue.count)
        for packet in queue {
            let destination = packet.withUnsafeBytes { IPv6Header.destination($0) }
            guard let destination, verdict(destination: destination, assignment: assignment) != .carry else {
                send.append(packet)
                continue
            }
            refused += 1
            if case .answer(let bytes) = packet.withUnsafeBytes({ answer($0, assignment: assignment, now: now) }) {
                answers.append(bytes)
            }
        }
        return (send, answers, refused)
    }
}
