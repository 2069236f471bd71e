// The receive-side anti-replay check: a sliding-window bitmap over transport-message counters.
//
// This is the RFC 6479 ring of machine words, as WireGuard's kernel module uses it (counter.c,
// `counter_validate`) and wireguard-go ports it (replay/replay.go). The ring holds 8192 bits in 128
// 64-bit words; one word is always "redundant" (the one being recycled as the window slides), so the
// guaranteed window is 8192 - 64 = 8128 counters behind the greatest one accepted. Sliding forward clears
// at most the whole ring, so every call is O(1). The bitmap lives inline in the struct (an `InlineArray`),
// so creating a window and checking a counter never touch the heap.

/// A sliding-window replay filter for one receiving session (RFC 6479, as in WireGuard's counter.c).
///
/// `accept(_:limit:)` returns `true` at most once for each counter value. It returns `false` for a counter
/// already accepted, for one more than ``windowSize`` behind the greatest counter accepted so far, and for
/// any counter at or above the limit (by default ``rejectAfterMessages``).
///
/// **Call it only after the frame has authenticated.** An unauthenticated counter must never advance the
/// window: an attacker who could slide it forward with forged counters would make every genuine packet
/// "too old". Decrypt into the caller's buffer, check the tag, then ask the window, and drop the packet
/// if it says no.
///
/// Storage: 128 words of 64 bits held inline (1 KiB plus the greatest counter), so the struct allocates
/// nothing, either when it is made or per packet. It is a value type; keep one per session, mutate it in
/// place, and avoid copying it on the data path.
///
/// Concurrency: a plain value. It is `Sendable`, but concurrent callers must serialise access to the one
/// instance themselves (the kernel holds a spinlock around `counter_validate`).
public struct ReplayWindow: Sendable {
    /// Bits in one ring word.
    public static let bitsPerWord = 64
    /// Words in the ring (a power of two, so the ring index is a mask).
    public static let ringWords = 128
    /// Total bits in the ring: WireGuard's `COUNTER_BITS_TOTAL`.
    public static let totalBits = ringWords * bitsPerWord
    /// How far behind the greatest accepted counter a counter may be and still be accepted:
    /// WireGuard's `COUNTER_WINDOW_SIZE`, 8192 - 64 = 8128.
    public static let windowSize = UInt64(totalBits - bitsPerWord)
    /// The first counter refused outright: WireGuard's `REJECT_AFTER_MESSAGES`, 2^64 - 2^13 - 1.
    ///
    /// A protocol limit, not an implementation choice (WireGuard's messages.h; wireguard-go's
    /// device/constants.go `RejectAfterMessages`): a session must be replaced long before its counter gets
    /// here, and refusing every counter from here on keeps the receiver from ever accepting a wrapped nonce.
    public static let rejectAfterMessages: UInt64 = Limits.rejectAfterMessages

    private static let wordShift = 6  // log2(bitsPerWord)
    private static let ringMask = ringWords - 1

    /// The bitmap: bit `n % 64` of word `(n / 64) % 128` records counter `n - 1` (see `next`).
    private var ring = InlineArray<128, UInt64>(repeating: 0)
    /// One more than the greatest counter accepted, or 0 before the first. Storing `counter + 1`, as the
    /// kernel does, lets an all-zero window mean "nothing seen" while counter 0 is still a valid first packet.
    private var next: UInt64 = 0

    /// Makes an empty window: no counter has been seen, so any counter below the limit is accepted once.
    public init() {}

    /// Forgets every counter seen, as when a new session's keys are installed.
    public mutating func reset() {
        self = ReplayWindow()
    }

    /// Records `counter` as received and says whether the packet carrying it should be accepted.
    ///
    /// Call this only after the frame authenticated: an unauthenticated counter must never advance the
    /// window.
    ///
    /// - Parameters:
    ///   - counter: the counter from an authenticated transport frame.
    ///   - limit: counters at or above this are refused; defaults to ``rejectAfterMessages``.
    /// - Returns: `true` the first time a counter below `limit` and within ``windowSize`` of the greatest
    ///   accepted counter is seen; `false` for a duplicate, a counter too old to judge, or one at or above
    ///   `limit`. A `false` leaves the window unchanged.
    public mutating func accept(_ counter: UInt64, limit: UInt64 = ReplayWindow.rejectAfterMessages) -> Bool {
        guard counter < limit else { return false }
        // counter < limit <= UInt64.max, so this cannot overflow.
        let shifted = counter &+ 1
        // Too old: more than windowSize behind the greatest (written without `windowSize + shifted`, which
        // could overflow for a caller-supplied limit near UInt64.max).
        if shifted < next && next - shifted > Self.windowSize { return false }

        let wordIndex = shifted >> UInt64(Self.wordShift)
        if shifted > next {
            // Slide forward: clear the words between the current one and the new one. Clearing more than
            // the whole ring is pointless, so the loop runs at most ringWords times.
            let currentIndex = next >> UInt64(Self.wordShift)
            let gap = min(wordIndex - currentIndex, UInt64(Self.ringWords))
            var i: UInt64 = 1
            while i <= gap {
                ring[Int(truncatingIfNeeded: currentIndex &+ i) & Self.ringMask] = 0
                i += 1
            }
            next = shifted
        }

        let slot = Int(truncatingIfNeeded: wordIndex) & Self.ringMask
        let bit: UInt64 = 1 << (shifted & UInt64(Self.bitsPerWord - 1))
        let word = ring[slot]
        guard word & bit == 0 else { return false }
        ring[slot] = word | bit
        return true
    }
}
