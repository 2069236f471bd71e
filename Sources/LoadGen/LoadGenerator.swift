// The load generator's engine: many clients, each doing one real handshake with a tunvpn server.
//
// Every client is a real protocol core, a `TunnelState(role: .client(...))` with a fresh static key, and
// its own `UDPSocket` bound to one of the source addresses and a kernel-chosen port, so the server sees
// each client at a different source address and port, as it would real ones. The generator does the IO
// the engine would do for that core (`TunnelEngine.perform`): it sends its `.sendHandshake` messages,
// feeds it what the server sends (`handleHandshake`), and seals its `.sendKeepalive` with `DataFrame`.
// So the handshake, the cookie (mac2) handling, key confirmation and the timestamps are TunnelState's own.
// A client:
//   1. `start`s: the core's initiation (message 1) goes out;
//   2. on a cookie reply (the server is under load), the core keeps the cookie, and the generator calls
//      `start` again at once, which sends a fresh initiation stamped with mac2 (a real client waits for its
//      retransmit timer, REKEY_TIMEOUT plus jitter; the generator does not, so a run measures the server);
//   3. on the response (message 2), the core derives the session and asks for a keepalive on it
//      (`.sendKeepalive`), which confirms the session on the server (key confirmation); once it is sent,
//      the client is done;
//   4. with nothing useful after `retransmitAfter` (the initiation or its answer lost, or the server's
//      per-source rate limit dropped it), the generator calls `start` again: a fresh initiation, stamped
//      if a cookie is held (again faster than the core's own retransmit timer, which is not ticked).
// `window` worker threads run one client each at a time, so at most `window` handshakes are in flight.
// A worker blocks in `UDPSocket.receive`; a watchdog thread wakes it when its retransmit deadline or the
// run's deadline passes by sending a one-byte datagram to its socket from a socket of its own (UDPSocket
// receives have no timeout, and closing the socket would lose the source port the cookie is bound to).

import Crypto
import Engine
import Glibc
import Platform
import Synchronization
import Transport

/// What a run needs to know.
struct LoadSettings: Sendable {
    var serverKey: PublicKey
    var server: Endpoint
    var clients: Int
    var window: Int
    var sources: [IPv4Address]
    /// The whole run's deadline, in nanoseconds from its start.
    var timeout: UInt64
    /// How long a client waits for an answer before it sends a fresh initiation, in nanoseconds.
    var retransmitAfter: UInt64
}

/// The outcome of a run.
struct LoadReport: Sendable {
    var clients: Int
    var attempted: Int
    var completed: Int
    var cookieReplies: Int
    var retransmissions: Int
    var failed: Int
    /// Seconds from the first initiation to the last client's end.
    var elapsed: Double
    /// CPU seconds this process used (getrusage(2), user + system).
    var cpuSeconds: Double
    /// The first error a client met (a bind or send failure), if any.
    var firstError: String?

    var handshakesPerSecond: Double { elapsed > 0 ? Double(completed) / elapsed : 0 }

    /// The one-line summary (`key=value` fields, for people and scripts alike).
    var line: String {
        "loadgen: clients=\(clients) attempted=\(attempted) completed=\(completed) cookie_replies=\(cookieReplies)"
            + " retransmissions=\(retransmissions) failed=\(failed) elapsed=\(fixed(elapsed, 3))s"
            + " handshakes_per_s=\(fixed(handshakesPerSecond, 1)) loadgen_cpu=\(fixed(cpuSeconds, 2))s"
    }
}

/// `value` with `digits` decimals (no Foundation here for `String(format:)`).
func fixed(_ value: Double, _ digits: Int) -> String {
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let scaled = (value * scale).rounded()
    guard scaled.isFinite, abs(scaled) < 1e15 else { return "\(value)" }
    let whole = Int64(scaled)
    let sign = whole < 0 ? "-" : ""
    let magnitude = whole.magnitude
    let integer = magnitude / UInt64(scale)
    guard digits > 0 else { return "\(sign)\(integer)" }
    let fraction = String(magnitude % UInt64(scale))
    return "\(sign)\(integer)." + String(repeating: "0", count: digits - fraction.count) + fraction
}

/// Runs the clients of one `LoadSettings` and reports.
final class LoadGenerator: Sendable {
    private let settings: LoadSettings
    private let clock = SystemClock()
    private let random = SystemRandom()

    private let nextClient = Atomic<Int>(0)
    private let completed = Atomic<Int>(0)
    private let cookieReplies = Atomic<Int>(0)
    private let retransmissions = Atomic<Int>(0)
    private let failed = Atomic<Int>(0)
    private let stopping = Atomic<Bool>(false)
    private let firstError = Mutex<String?>(nil)
    /// When the last worker finished (monotonic ns).
    private let lastFinish = Mutex<UInt64>(0)

    /// Per worker: the socket a client is waiting on and when it wants waking (0 = idle).
    private struct Waiter {
        var endpoint: Endpoint = .none
        var deadline: UInt64 = 0
    }
    private let waiters: Mutex<[Waiter]>

    init(settings: LoadSettings) {
        self.settings = settings
        waiters = Mutex(Array(repeating: Waiter(), count: settings.window))
    }

    /// Checks that every source address can be bound here (bind(2) to ADDRESS:0), so a missing address
    /// fails the run at once with its name rather than half way through.
    static func checkSources(_ sources: [IPv4Address]) throws(IOError) {
        for address in sources {
            do {
                let probe = try UDPSocket.bind(Endpoint(address: address, port: 0), receiveBufferBytes: 0, sendBufferBytes: 0)
                probe.close()
            } catch {
                throw IOError(call: error.call, errno: error.errno, detail: "source address \(address): \(error.detail)")
            }
        }
    }

    /// Runs every client; returns when each has completed or the deadline passed.
    func run() throws(IOError) -> LoadReport {
        let kicker = try UDPSocket.bind(Endpoint(address: settings.sources[0], port: 0), receiveBufferBytes: 0, sendBufferBytes: 0)
        defer { kicker.close() }
        let cpuBefore = Self.cpuSeconds()
        let start = clock.monotonicNow()
        let workersDone = Atomic<Int>(0)
        var workers: [EngineThread] = []
        for slot in 0..<settings.window {
            workers.append(EngineThread(name: "loadgen-\(slot)") { [self] in
                work(slot: slot)
                let now = clock.monotonicNow()
                lastFinish.withLock { $0 = max($0, now) }
                workersDone.add(1, ordering: .releasing)
            })
        }
        // This thread is the watchdog; it returns when every worker is done (or, if one never wakes,
        // 30 s after the deadline: then the workers are left to the process exit rather than joined).
        let allStopped = watch(start: start, kicker: kicker) { workersDone.load(ordering: .acquiring) == settings.window }
        let end = allStopped ? lastFinish.withLock { $0 } : clock.monotonicNow()
        if allStopped { for w in workers { w.join() } }
        let attempted = min(nextClient.load(ordering: .relaxed), settings.clients)
        return LoadReport(
            clients: settings.clients, attempted: attempted, completed: completed.load(ordering: .relaxed),
            cookieReplies: cookieReplies.load(ordering: .relaxed), retransmissions: retransmissions.load(ordering: .relaxed),
            failed: failed.load(ordering: .relaxed) + (settings.clients - attempted),
            elapsed: Double(elapsed(end, since: start)) / 1e9, cpuSeconds: Self.cpuSeconds() - cpuBefore,
            firstError: firstError.withLock { $0 })
    }

    // MARK: Workers

    private func work(slot: Int) {
        // Handshake messages only: an initiation is the longest (a response is never longer, docs/PROTOCOL.md).
        let slotSize = WireFormat.initiationLength + 32
        let receiveBatch = PacketBatch(capacity: 8, slotSize: slotSize)
        let sendBatch = PacketBatch(capacity: 1, slotSize: slotSize)
        while !stopping.load(ordering: .relaxed) {
            let number = nextClient.add(1, ordering: .relaxed).oldValue
            guard number < settings.clients else { return }
            do {
                if try handshake(number, slot: slot, receiveBatch: receiveBatch, sendBatch: sendBatch) {
                    completed.add(1, ordering: .relaxed)
                } else {
                    failed.add(1, ordering: .relaxed)
                }
            } catch {
                failed.add(1, ordering: .relaxed)
                firstError.withLock { if $0 == nil { $0 = "client \(number): \(error)" } }
            }
            waiters.withLock { $0[slot] = Waiter() }
        }
    }

    /// One client's handshake; true once its keepalive went out, false if the run's deadline passed first.
    private func handshake(_ number: Int, slot: Int, receiveBatch: PacketBatch, sendBatch: PacketBatch) throws(IOError) -> Bool {
        let source = settings.sources[number % settings.sources.count]
        let socket = try UDPSocket.bind(Endpoint(address: source, port: 0), receiveBufferBytes: 0, sendBufferBytes: 0)
        defer { socket.close() }
        let initiator = HandshakeInitiator(localStatic: PrivateKey(random: random), serverKey: settings.serverKey)
        var client = TunnelState(role: .client(ClientSettings(initiator: initiator, endpoint: settings.server)))
        var actions: [ControlAction] = []

        /// Does what the core asked, as the engine would; true once the keepalive confirming a session
        /// went out.
        func perform() throws(IOError) -> Bool {
            defer { actions.removeAll(keepingCapacity: true) }
            for action in actions {
                switch action {
                case .sendHandshake(let message, let to):
                    sendBatch.set(0, bytes: message, endpoint: to)
                    sendBatch.count = 1
                    try socket.send(from: sendBatch)
                case .sendKeepalive(let session, let to, _):
                    guard let frame = DataFrame.seal(sendBatch.slot(0), packetLength: 0, session: session, mtu: 0) else {
                        preconditionFailure("a fresh session has all its counters")
                    }
                    sendBatch.offsets[0] = 0
                    sendBatch.lengths[0] = frame
                    sendBatch.endpoints[0] = to
                    sendBatch.count = 1
                    try socket.send(from: sendBatch)
                    return true
                default:
                    continue  // tunnelUp, handshakeCompleted, a refused (superseded) response: nothing to do
                }
            }
            return false
        }

        /// A fresh initiation from the core (new index, ephemeral key and timestamp, mac2 if it holds a
        /// cookie), and the next retransmit deadline.
        func sendInitiation() throws(IOError) {
            let now = clock.monotonicNow()
            client.start(now: now, wall: clock.wallNow(), random: random, actions: &actions)
            _ = try perform()
            let deadline = now + settings.retransmitAfter
            waiters.withLock { $0[slot] = Waiter(endpoint: socket.localEndpoint, deadline: deadline) }
        }

        try sendInitiation()
        while true {
            let n = try socket.receive(into: receiveBatch)
            if n == 0 { return false }  // closed: cannot happen while this function owns the socket
            let now = clock.monotonicNow()
            for i in 0..<n where receiveBatch.endpoints[i] == settings.server {
                let datagram = receiveBatch.bytes(i)
                // A response to an earlier initiation of ours (superseded by a retransmission) fails the
                // core's index check and comes back as a refusal, which is ignored; the latest initiation
                // gets its own answer.
                client.handleHandshake(
                    datagram, from: settings.server, now: now, wall: clock.wallNow(), random: random, actions: &actions)
                let accepted = !actions.contains { if case .handshakeRefused = $0 { true } else { false } }
                if try perform() { return true }
                if accepted, datagram.first == WireFormat.MessageType.cookieReply.rawValue {
                    // The core holds the cookie now; its next initiation carries mac2.
                    cookieReplies.add(1, ordering: .relaxed)
                    retransmissions.add(1, ordering: .relaxed)
                    try sendInitiation()
                }
            }
            // Woken by the watchdog (or by a datagram that did not finish the handshake).
            if stopping.load(ordering: .relaxed) { return false }
            let deadline = waiters.withLock { $0[slot].deadline }
            if now >= deadline {
                retransmissions.add(1, ordering: .relaxed)
                try sendInitiation()
            }
        }
    }

    // MARK: Watchdog

    /// Every 10 ms: wakes workers whose retransmit deadline passed; at the run's deadline, stops them all.
    /// Returns true when every worker has finished (after the deadline each ends at its next wake), false
    /// if some had not 30 s after the deadline.
    private func watch(start: UInt64, kicker: UDPSocket, allDone: () -> Bool) -> Bool {
        let batch = PacketBatch(capacity: max(settings.window, 1), slotSize: 64)
        let hardStop = start + settings.timeout + 30_000_000_000
        var request = timespec(tv_sec: 0, tv_nsec: 10_000_000)
        while !allDone() {
            var remaining = timespec()
            _ = nanosleep(&request, &remaining)
            request = timespec(tv_sec: 0, tv_nsec: 10_000_000)
            let now = clock.monotonicNow()
            if now >= start + settings.timeout { stopping.store(true, ordering: .relaxed) }
            let stop = stopping.load(ordering: .relaxed)
            var count = 0
            waiters.withLock { all in
                for w in all where w.deadline != 0 && (stop || now >= w.deadline) {
                    batch.set(count, bytes: [0xff], endpoint: w.endpoint)
                    count += 1
                }
            }
            batch.count = count
            if count > 0 { _ = try? kicker.send(from: batch) }
            if now >= hardStop {
                firstError.withLock { if $0 == nil { $0 = "workers did not stop within 30 s of the deadline" } }
                return false
            }
        }
        return true
    }

    /// CPU seconds used by this process so far (getrusage(2) RUSAGE_SELF, user + system).
    static func cpuSeconds() -> Double {
        var usage = rusage()
        guard getrusage(RUSAGE_SELF.rawValue, &usage) == 0 else { return 0 }
        func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
        return seconds(usage.ru_utime) + seconds(usage.ru_stime)
    }
}
