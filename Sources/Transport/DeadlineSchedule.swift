// Which peers need `TunnelState.tick`, and when: a min-heap (swift-collections' `Heap`) of (deadline, slot) with lazy deletion,
// so a tick costs O(due peers · log n) instead of a scan of every peer under the lock the data path takes.
//
// The schedule keeps, for each slot, one deadline `scheduled[slot]` that is never later than the moment
// the peer next needs attention (its earliest timer or session expiry). It may be earlier: a peer that
// wakes with nothing due is simply rescheduled. So the data path, whose timer changes mostly push
// deadlines later (a keepalive no longer needed, a persistent keepalive moved on), only pushes an entry
// when a deadline moves earlier than the one already scheduled: at most a few entries per peer per
// REJECT_AFTER_TIME, however many packets it carries. Entries whose deadline no longer equals their
// slot's are stale and are dropped when they reach the top (or when the heap is rebuilt, see `compact`).
// Nothing here reads a clock; times are monotonic nanoseconds passed in.

import HeapModule

/// Deadlines of slots `0..<n`, earliest first.
public struct DeadlineSchedule: Sendable {
    /// One heap entry; ordered by deadline, then slot (so due slots come out in a stable order).
    struct Entry: Comparable, Sendable {
        var deadline: UInt64
        var slot: Int

        static func < (a: Entry, b: Entry) -> Bool { (a.deadline, a.slot) < (b.deadline, b.slot) }
    }

    /// swift-collections' min-max heap; the lazy deletion on top of it is this file's.
    private var heap = Heap<Entry>()
    /// The deadline each slot is scheduled at (the one live heap entry of that slot), or nil.
    private var scheduled: [UInt64?] = []

    public init() {}

    /// Number of heap entries, stale ones included (for tests).
    public var entryCount: Int { heap.count }

    /// The earliest scheduled deadline (possibly a stale entry's: never later than the real earliest).
    public var earliest: UInt64? { heap.min?.deadline }

    /// The deadline `slot` is scheduled at, or nil.
    public func deadline(of slot: Int) -> UInt64? { slot < scheduled.count ? scheduled[slot] : nil }

    /// Makes sure `slot` wakes no later than `deadline` (nil: nothing new is due; whatever is scheduled
    /// stays, and a wakeup with nothing due is harmless). Cheap when nothing moves earlier: two compares.
    @inline(__always)
    public mutating func schedule(_ slot: Int, at deadline: UInt64?) {
        guard let deadline else { return }
        if slot < scheduled.count, let current = scheduled[slot], current <= deadline { return }
        insert(slot, at: deadline)
    }

    private mutating func insert(_ slot: Int, at deadline: UInt64) {
        if slot >= scheduled.count { scheduled.append(contentsOf: repeatElement(nil, count: slot + 1 - scheduled.count)) }
        scheduled[slot] = deadline
        heap.insert(Entry(deadline: deadline, slot: slot))
        // Stale entries are bounded by how often deadlines move earlier; rebuild if they ever dominate.
        if heap.count > 2 * scheduled.count + 64 { compact() }
    }

    /// Removes every slot whose deadline is at or before `now` and returns them once each, in slot order
    /// (so a tick handles due peers in the order a scan of every peer would). The caller handles each and
    /// schedules it again with its next deadline.
    public mutating func takeDue(now: UInt64) -> [Int] {
        var due: [Int] = []
        while let top = heap.min, top.deadline <= now {
            _ = heap.removeMin()
            if top.slot < scheduled.count, scheduled[top.slot] == top.deadline {
                scheduled[top.slot] = nil
                due.append(top.slot)
            }
        }
        due.sort()
        return due
    }

    /// Rebuilds the heap from the live deadlines only.
    mutating func compact() {
        heap = Heap(scheduled.enumerated().compactMap { slot, deadline in deadline.map { Entry(deadline: $0, slot: slot) } })
    }
}
