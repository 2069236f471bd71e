// A first-in, first-out queue whose readers sleep until there is something to read.
//
// The in-memory devices need what a kernel socket gives for free: a reader that blocks without spinning
// and a `close()` that wakes it. Synchronization's `Mutex` has no condition variable, so this wraps a
// pthread mutex and condition variable (pthread_cond_wait(3p)); timed waits use CLOCK_MONOTONIC
// (pthread_condattr_setclock(3p)) so a wall-clock step cannot stretch or cut them short.

import Engine

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// A thread-safe FIFO whose `take` blocks until an element arrives or the queue is closed.
///
/// Concurrency: any number of threads may append, take and close at once. Every method takes the one
/// internal lock; none calls back into caller code while holding it.
public final class BlockingQueue<Element: Sendable>: @unchecked Sendable {
    // @unchecked: `items`, `head` and `closed` are only touched with `mutex` held.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>
    private var items: [Element] = []
    private var head = 0
    private var closed = false

    /// Makes an empty, open queue.
    public init() {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        condition = .allocate(capacity: 1)
        condition.initialize(to: pthread_cond_t())
        guard pthread_mutex_init(mutex, nil) == 0 else { preconditionFailure("pthread_mutex_init failed") }
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        guard pthread_cond_init(condition, &attributes) == 0 else { preconditionFailure("pthread_cond_init failed") }
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deinitialize(count: 1)
        condition.deallocate()
        mutex.deinitialize(count: 1)
        mutex.deallocate()
    }

    private func locked<Result>(_ body: () throws -> Result) rethrows -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    /// The number of elements waiting.
    public var count: Int {
        locked { items.count - head }
    }

    /// Whether `close()` has been called.
    public var isClosed: Bool {
        locked { closed }
    }

    /// Adds `element` at the back and wakes waiting readers.
    /// - Returns: `false`, dropping the element, if the queue is closed.
    @discardableResult
    public func append(_ element: Element) -> Bool {
        append(contentsOf: CollectionOfOne(element))
    }

    /// Adds `elements` at the back, in order, and wakes waiting readers.
    /// - Returns: `false`, dropping the elements, if the queue is closed.
    @discardableResult
    public func append(contentsOf elements: some Sequence<Element>) -> Bool {
        locked {
            guard !closed else { return false }
            items.append(contentsOf: elements)
            pthread_cond_broadcast(condition)
            return true
        }
    }

    /// Removes up to `maximum` elements from the front, first waiting until there is at least one.
    ///
    /// - Parameters:
    ///   - maximum: the most elements to return; at least 1.
    ///   - timeout: how long to wait; `nil` waits until an element arrives or the queue is closed.
    /// - Returns: between 1 and `maximum` elements, or an empty array if the queue is closed (even if
    ///   elements remain) or the timeout passed first.
    public func take(max maximum: Int, timeout: Duration? = nil) -> [Element] {
        precondition(maximum > 0, "take at least one element")
        let deadline = timeout.map(Self.deadline(after:))
        return locked {
            while !closed && head == items.count {
                if var deadline {
                    if pthread_cond_timedwait(condition, mutex, &deadline) == ETIMEDOUT { break }
                } else {
                    pthread_cond_wait(condition, mutex)
                }
            }
            guard !closed else { return [] }
            return removeFront(Swift.min(maximum, items.count - head))
        }
    }

    /// Removes and returns every waiting element without blocking.
    public func takeAll() -> [Element] {
        locked { removeFront(items.count - head) }
    }

    /// Waits until at least `minimum` elements are waiting, the queue is closed, or `timeout` passes.
    /// - Returns: whether `minimum` elements are waiting.
    @discardableResult
    public func wait(forCount minimum: Int, timeout: Duration) -> Bool {
        var deadline = Self.deadline(after: timeout)
        return locked {
            while !closed && items.count - head < minimum {
                if pthread_cond_timedwait(condition, mutex, &deadline) == ETIMEDOUT { break }
            }
            return items.count - head >= minimum
        }
    }

    /// Closes the queue: wakes every waiting reader, and later appends are dropped. Idempotent.
    public func close() {
        locked {
            closed = true
            pthread_cond_broadcast(condition)
        }
    }

    /// Caller holds the lock.
    private func removeFront(_ n: Int) -> [Element] {
        let taken = Array(items[head..<head + n])
        head += n
        if head == items.count {
            items.removeAll(keepingCapacity: true)
            head = 0
        }
        return taken
    }

    /// The CLOCK_MONOTONIC time `timeout` from now, for pthread_cond_timedwait; a negative timeout is zero
    /// and a huge one is capped at about 68 years.
    private static func deadline(after timeout: Duration) -> timespec {
        let (seconds, attoseconds) = Swift.max(timeout, .zero).components
        let wait = UInt64(Swift.min(seconds, Int64(Int32.max))) * 1_000_000_000 + UInt64(attoseconds / 1_000_000_000)
        let at = SystemClock().monotonicNow() + wait
        return timespec(tv_sec: Int(at / 1_000_000_000), tv_nsec: Int(at % 1_000_000_000))
    }
}
