// The load generator's engine: many clients, each doing one real handshake with a tunvpn server.
//
// Every client is a fresh static key (`PrivateKey`), a `HandshakeInitiator` and a `CookieJar`, with its
// own `UDPSocket` bound to one of the source addresses and a kernel-chosen port, so the server sees each
// client at a different source address and port, as it would real ones. A client:
//   1. sends an initiation (message 1);
//   2. on a cookie reply (the server is under load), keeps the cookie and sends a fresh initiation
//      stamped with mac2, as `TunnelState` does (TunnelState waits for its retransmit timer; the
//      generator retransmits at once, so a run measures the server rather than REKEY_TIMEOUT);
//   3. on the response (message 2), derives the session and sends one keepalive on it, which confirms
//      the session on the server (key confirmation), and is done;
//   4. with nothing useful after `retransmitAfter` (the initiation or its answer lost, or the server's
//      per-source rate limit dropped it), sends a fresh initiation (stamped if a cookie is held).
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
        let receiveBatch = PacketBatch(capacity: 8, slotSize: 256)
        let sendBatch = PacketBatch(capacity: 1, slotSize: 256)
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
        var jar = CookieJar(serverKey: settings.serverKey)
        var lastTimestamp: TAI64N?

        // A fresh initiation (new index, ephemeral key and timestamp), stamped with mac2 if the jar holds a
        // cookie, as TunnelState.initiate does.
        func sendInitiation() throws(IOError) -> (sent: HandshakeInitiator.InitiationSent, message: [UInt8]) {
            let timestamp = nextTimestamp(after: lastTimestamp)
            lastTimestamp = timestamp
            var (message, sent) = initiator.createInitiation(
                senderIndex: random.nextUInt32(), timestamp: timestamp, random: random)
            let now = clock.monotonicNow()
            jar.stamp(&message, now: now)
            sendBatch.set(0, bytes: message, endpoint: settings.server)
            sendBatch.count = 1
            try socket.send(from: sendBatch)
            let deadline = now + settings.retransmitAfter
            waiters.withLock { $0[slot] = Waiter(endpoint: socket.localEndpoint, deadline: deadline) }
            return (sent, message)
        }

        var pending = try sendInitiation()
        while true {
            let n = try socket.receive(into: receiveBatch)
            if n == 0 { return false }  // closed: cannot happen while this function owns the socket
            let now = clock.monotonicNow()
            for i in 0..<n where receiveBatch.endpoints[i] == settings.server {
                let datagram = receiveBatch.bytes(i)
                switch datagram.first {
                case WireFormat.MessageType.cookieReply.rawValue:
                    guard jar.consumeReply(datagram, answering: pending.message, senderIndex: pending.sent.senderIndex, now: now)
                    else { continue }
                    cookieReplies.add(1, ordering: .relaxed)
                    retransmissions.add(1, ordering: .relaxed)
                    pending = try sendInitiation()
                case WireFormat.MessageType.response.rawValue:
                    // A response to an earlier initiation of ours (superseded by a retransmission) fails the
                    // index check and is ignored; the latest initiation gets its own answer.
                    guard let result = try? initiator.consumeResponse(datagram, for: pending.sent) else { continue }
                    let session = Session(result: result, createdAt: now)
                    // Key confirmation: one keepalive (an empty data frame) makes the server's new session
                    // current, as TunnelState's `.sendKeepalive` after a response does.
                    guard let frame = DataFrame.seal(sendBatch.slot(0), packetLength: 0, session: session) else {
                        preconditionFailure("a fresh session has all its counters")
                    }
                    sendBatch.offsets[0] = 0
                    sendBatch.lengths[0] = frame
                    sendBatch.endpoints[0] = settings.server
                    sendBatch.count = 1
                    try socket.send(from: sendBatch)
                    return true
                default:
                    continue
                }
            }
            // Woken by the watchdog (or by a datagram that did not finish the handshake).
            if stopping.load(ordering: .relaxed) { return false }
            let deadline = waiters.withLock { $0[slot].deadline }
            if now >= deadline {
                retransmissions.add(1, ordering: .relaxed)
                pending = try sendInitiation()
            }
        }
    }

    /// The wall clock as a TAI64N, strictly after `last` (TAI64N keeps 2^24 ns granules; a retransmission
    /// inside the same granule moves one granule on, as TunnelState's timestamps do).
    private func nextTimestamp(after last: TAI64N?) -> TAI64N {
        let wall = clock.wallNow()
        let t = TAI64N(secondsSince1970: wall.seconds, nanoseconds: wall.nanoseconds)
        guard let last, !(last < t) else { return t }
        let nanos = UInt32(last.bytes[8]) << 24 | UInt32(last.bytes[9]) << 16 | UInt32(last.bytes[10]) << 8 | UInt32(last.bytes[11])
        let granule: UInt32 = 1 << 24
        return nanos + granule < 1_000_000_000
            ? TAI64N(secondsSince1970: last.secondsSince1970, nanoseconds: nanos + granule)
            : TAI64N(secondsSince1970: last.secondsSince1970 + 1, nanoseconds: 0)
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
