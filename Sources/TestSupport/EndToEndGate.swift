// One gate for all end-to-end tests in a run.
//
// Swift Testing runs suites side by side, so the end-to-end suites share the project VM's two cores. Most
// of them only need their packets to arrive; a few compare throughput under two conditions (a flood, a
// thousand peers) and need the cores to themselves while they measure. Those take the gate alone; every
// other end-to-end test shares it. Writers are preferred: once a measuring test waits, tests that start
// after it wait too, so it runs as soon as the ones already running finish.
//
// The gate blocks the calling thread. End-to-end tests are synchronous, so a test holding the gate never
// needs another thread of the cooperative pool to finish, and blocked waiters cannot deadlock it. The gate
// is not reentrant: take it once per test, in the lab's `use`.

import Glibc

public enum EndToEndGate {
    nonisolated(unsafe) private static let lock: UnsafeMutablePointer<pthread_rwlock_t> = {
        let lock = UnsafeMutablePointer<pthread_rwlock_t>.allocate(capacity: 1)
        var attributes = pthread_rwlockattr_t()
        pthread_rwlockattr_init(&attributes)
        pthread_rwlockattr_setkind_np(&attributes, Int32(PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP))
        let rc = pthread_rwlock_init(lock, &attributes)
        precondition(rc == 0, "pthread_rwlock_init failed (\(rc))")
        pthread_rwlockattr_destroy(&attributes)
        return lock
    }()

    /// Runs `body` alongside other end-to-end tests that share the gate.
    public static func shared<T>(_ body: () throws -> T) rethrows -> T {
        pthread_rwlock_rdlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        return try body()
    }

    /// Runs `body` once no other end-to-end test holds the gate, and keeps them out until it returns.
    public static func alone<T>(_ body: () throws -> T) rethrows -> T {
        pthread_rwlock_wrlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        return try body()
    }

    /// `alone` when `exclusive`, `shared` otherwise.
    public static func enter<T>(alone exclusive: Bool, _ body: () throws -> T) rethrows -> T {
        exclusive ? try alone(body) : try shared(body)
    }
}
