// A client's endpoint names, resolved again at each handshake attempt (docs/DEPLOYMENT.md, "Client
// failover"), so a server that moved to another address keeps being found. Resolution is IO that may
// block for seconds (getaddrinfo(3) asks the network), so the engine's threads only hand the work over
// (`attempted`, from the `endpointAttempted` hook) and one thread of its own resolves; the address
// reaches the core through `TunnelState.updateEndpoint` and is used from the next initiation on.

import Engine
import Glibc
import Logging
import Synchronization
import Transport

/// Re-resolves a client's endpoint names off the engine's threads.
///
/// Lifetime: its thread starts at the first name to resolve (from an engine thread, so it runs with the
/// engine's credentials after the privilege drop) and ends at `stop()`.
final class EndpointResolver: Sendable {
    private let texts: [EndpointText]
    /// The address each endpoint was last given to the core.
    private let known: Mutex<[Endpoint?]>
    /// Endpoints waiting to be resolved.
    private let wanted = Mutex<Set<Int>>([])
    private let thread = Mutex<EngineThread?>(nil)
    private let running = Atomic<Bool>(true)
    /// Makes a new address usable (its host route, if the client routes); false when it cannot be.
    private let admit: @Sendable (Endpoint) -> Bool
    /// Gives endpoint `index`'s new address to the core.
    private let deliver: @Sendable (Int, Endpoint) -> Void
    private let logger: Logger

    init(
        texts: [EndpointText], resolved: [Endpoint?], logger: Logger, admit: @escaping @Sendable (Endpoint) -> Bool,
        deliver: @escaping @Sendable (Int, Endpoint) -> Void
    ) {
        self.texts = texts
        known = Mutex(resolved)
        self.logger = logger
        self.admit = admit
        self.deliver = deliver
    }

    /// An initiation went to endpoint `index`: resolve it again if it is a name. Never blocks.
    func attempted(_ index: Int) {
        guard texts.indices.contains(index), case .name = texts[index], running.load(ordering: .acquiring) else { return }
        wanted.withLock { _ = $0.insert(index) }
        thread.withLock { t in
            if t == nil { t = EngineThread(name: "tunvpn-resolve") { [self] in loop() } }
        }
    }

    /// Stops the thread (waiting for a resolution in progress).
    func stop() {
        running.store(false, ordering: .releasing)
        thread.withLock { $0 }?.join()
    }

    private func loop() {
        while running.load(ordering: .acquiring) {
            let work = wanted.withLock { w -> Set<Int> in
                let copy = w
                w = []
                return copy
            }
            if work.isEmpty {
                usleep(50_000)
                continue
            }
            for index in work.sorted() { resolve(index) }
        }
    }

    private func resolve(_ index: Int) {
        guard case .name(let host, _) = texts[index] else { return }
        let endpoint: Endpoint
        do { endpoint = try texts[index].resolve(option: "--endpoint").endpoint } catch {
            // A name that fails now keeps its last address: a resolver's hiccup must not lose a server.
            logger.debug("\(error)")
            return
        }
        let previous = known.withLock { $0[index] }
        guard endpoint != previous, admit(endpoint) else { return }
        known.withLock { $0[index] = endpoint }
        deliver(index, endpoint)
        logger.notice(
            "endpoint \(index + 1) \(host) now resolves to \(endpoint) (was \(previous.map { "\($0)" } ?? "unresolved")); the next handshake goes there")
    }
}
