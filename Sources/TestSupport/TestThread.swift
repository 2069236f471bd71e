// A plain operating-system thread for tests that must block.
//
// Device reads block a thread until data or `close()` arrives. Doing that on Swift concurrency's
// cooperative pool (two threads on a two-core machine, shared by every test running in parallel) could
// starve other tests, so contract and engine tests run blocking loops on their own pthreads instead.

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif
import Synchronization

/// A pthread running one closure, which a test can join.
///
/// Concurrency: `join()` may be called from any thread; only the first call waits, later calls return
/// at once.
public final class TestThread: Sendable {
    private final class Start {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }

    private let thread: pthread_t
    private let joined = Mutex(false)

    /// Starts a thread running `body`.
    public init(_ body: @escaping @Sendable () -> Void) {
        let start = Unmanaged.passRetained(Start(body)).toOpaque()
        var thread = pthread_t()
        let status = pthread_create(
            &thread, nil,
            { argument in
                guard let argument else { return nil }
                Unmanaged<Start>.fromOpaque(argument).takeRetainedValue().body()
                return nil
            }, start)
        guard status == 0 else {
            Unmanaged<Start>.fromOpaque(start).release()
            preconditionFailure("pthread_create failed (errno \(status))")
        }
        self.thread = thread
    }

    /// Waits for the thread to finish (pthread_join(3)).
    public func join() {
        let first = joined.withLock { already in
            defer { already = true }
            return !already
        }
        if first { pthread_join(thread, nil) }
    }
}
