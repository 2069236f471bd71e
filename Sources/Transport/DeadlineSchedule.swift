// Which peers need `TunnelState.tick`, and when: a binary min-heap of (deadline, slot) with lazy deletion,
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

/// Deadlines of slots `0..<n`, earliest first.
public struct DeadlineSchedule: Sendable {
    // Written by hand: the package depends on nothing beyond swift-log, TOMLKit and the argument parser,
    // and a heap of (UInt64, Int) pairs is 40 lines (swift-collections' `Heap` would be the library).
    private var heap: [(deadline: UInt64, slot: Int)] = []
    /// The deadline each slot is scheduled at (the one live heap entry of that slot), or nil.
    private var scheduled: [UInt64?] = []

    public init() {}

    /// Number of heap entries, stale ones included (for tests).
    public var entryCount: Int { heap.count }

    /// The earliest scheduled deadline (possibly a stale entry's: never later than the real earliest).
    public var earliest: UInt64? { heap.first?.deadline }

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
        push((deadline, slot))
        // Stale entries are bounded by how often deadlines move earlier; rebuild if they ever dominate.
        if heap.count > 2 * scheduled.count + 64 { compact() }
    }

    /// Removes every slot whose deadline is at or before `now` and returns them once each, in slot order
    /// (so a tick handles due peers in the order a scan of every peer would). The caller handles each and
    /// schedules it again with its next deadline.
    public mutating func takeDue(now: UInt64) -> [Int] {
        var due: [Int] = []
        while let top = heap.first, top.deadline <= now {
            popTop()
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
        heap.removeAll(keepingCapacity: true)
        for (slot, deadline) in scheduled.enumerated() {
            if let deadline { heap.append((deadline, slot)) }
        }
        var i = heap.count / 2
        while i > 0 {
            i -= 1
            siftDown(i)
        }
    }

    private static func less(_ a: (deadline: UInt64, slot: Int), _ b: (deadline: UInt64, slot: Int)) -> Bool {
        a.deadline < b.deadline || (a.deadline == b.deadline && a.slot < b.slot)
    }

    private mutating func push(_ entry: (deadline: UInt64, slot: Int)) {
        heap.append(entry)
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard Self.less(heap[child], heap[parent]) else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    private mutating func popTop() {
        let last = heap.removeLast()
        guard !heap.isEmpty else { return }
        heap[0] = last
        siftDown(0)
    }

    private mutating func siftDown(_ start: Int) {
        var parent = start
        while true {
            let left = 2 * parent + 1
            guard left < heap.count else { return }
            var smallest = left
            if left + 1 < heap.count, Self.less(heap[left + 1], heap[left]) { smallest = left + 1 }
            guard Self.less(heap[smallest], heap[parent]) else { return }
            heap.swapAt(smallest, parent)
            parent = smallest
        }
    }
}
