// Running a closure on a dedicated pthread with a bounded wait.
//
// Blocking calls (a TUN read, a recvmmsg) must not run on Swift Concurrency's cooperative pool, which
// is as wide as the machine has cores (two on the project VM), and a test that waits for one must not
// hang the whole run if the code under test is wrong. `runOnDedicatedThread` starts a pthread, waits
// for it up to a deadline, and on time-out detaches it and throws, so the test fails instead.

import Glibc
import Synchronization

/// Why a closure run on a dedicated thread did not produce its result.
public enum DedicatedThreadError: Error, Equatable, CustomStringConvertible {
    /// pthread_create failed with this errno.
    case couldNotStart(errno: Int32)
    /// The closure was still running at the deadline; its thread was detached and left running.
    case timedOut(seconds: Double)

    public var description: String {
        switch self {
        case .couldNotStart(let code): "pthread_create failed (errno \(code))"
        case .timedOut(let seconds): "the thread was still running after \(seconds) s"
        }
    }
}

/// The closure and its result, shared between the starter and the thread.
private final class ThreadJob<T: Sendable>: Sendable {
    let body: @Sendable () throws -> T
    let result = Mutex<Result<T, any Error>?>(nil)

    init(_ body: @escaping @Sendable () throws -> T) { self.body = body }

    func run() {
        let outcome: Result<T, any Error>
        do { outcome = .success(try body()) } catch { outcome = .failure(error) }
        result.withLock { $0 = outcome }
    }
}

/// Runs `body` on a new pthread and returns its result, or rethrows what it threw.
///
/// - Parameter timeout: how long to wait; after it the thread is detached and
///   `DedicatedThreadError.timedOut` is thrown.
public func runOnDedicatedThread<T: Sendable>(
    timeout: Duration = .seconds(10), _ body: @escaping @Sendable () throws -> T
) throws -> T {
    let job = ThreadJob(body)
    let thread = try startThread { job.run() }
    let deadline = ContinuousClock.now + timeout
    while true {
        if let outcome = job.result.withLock({ $0 }) {
            _ = pthread_join(thread, nil)
            return try outcome.get()
        }
        if ContinuousClock.now >= deadline {
            _ = pthread_detach(thread)
            let parts = timeout.components
            throw DedicatedThreadError.timedOut(seconds: Double(parts.seconds) + Double(parts.attoseconds) / 1e18)
        }
        usleep(1_000)
    }
}

/// Starts a joinable pthread running `body` (pthread_create(3)).
public func startThread(_ body: @escaping @Sendable () -> Void) throws -> pthread_t {
    final class Box: Sendable {
        let run: @Sendable () -> Void
        init(_ run: @escaping @Sendable () -> Void) { self.run = run }
    }
    let context = Unmanaged.passRetained(Box(body)).toOpaque()
    var thread = pthread_t()
    let code = pthread_create(
        &thread, nil,
        { raw in
            guard let raw else { return nil }
            Unmanaged<Box>.fromOpaque(raw).takeRetainedValue().run()
            return nil
        }, context)
    guard code == 0 else {
        Unmanaged<Box>.fromOpaque(context).release()
        throw DedicatedThreadError.couldNotStart(errno: code)
    }
    return thread
}
