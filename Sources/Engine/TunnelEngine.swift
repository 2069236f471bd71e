// The engine: three threads that move bytes between a packet device, a datagram socket and the core.
//
//   outbound  TUN → route (one lock per batch) → seal in place → sendmmsg
//             client: IPv6 the tunnel does not carry → ICMPv6 unreachable → TUN (see `deviceWriter`)
//   inbound   recvmmsg → look up sessions (one lock) → open in place → account (one lock) → TUN write
//             server: initiations → load checks (with the lookup) → message 1's DH → admit (lock) →
//             message 2's DH → commit (lock) → responses; the DH work never holds the lock
//             client: responses → core (with the accounting)
//   timers    every 100 ms: core.tick → initiations, keepalives, expiries
// Each thread owns its batches, made once at start, so the steady-state data path allocates nothing; the
// cryptography runs outside the lock, on `Session`s that are safe to share. Control actions the core
// returns are carried out by whichever thread received them, through its own small control batch.

import Crypto
import Glibc
import Logging
import Synchronization
import Transport

/// Hooks the CLI gives the engine.
public struct EngineHooks: Sendable {
    /// Called (from the inbound thread) when a client's first session is up, before any packet is written
    /// to the device: configure the device's address here. A thrown error stops the engine.
    public var tunnelUp: @Sendable (TunnelAssignment) throws -> Void
    /// Called (from the inbound thread) when a later handshake gave a client other addressing: give the
    /// device the new address. A thrown error stops the engine.
    public var addressChanged: @Sendable (TunnelAssignment) throws -> Void
    /// Called when a client gives up on its handshake attempts.
    public var handshakeGaveUp: @Sendable () -> Void
    /// Called (from the engine's threads) after a client's initiation went to endpoint `index`: a name is
    /// resolved again here, off the engine's threads (the hook only hands the work over), and its address
    /// given back with `TunnelState.updateEndpoint`.
    public var endpointAttempted: @Sendable (Int) -> Void

    public init(
        tunnelUp: @escaping @Sendable (TunnelAssignment) throws -> Void = { _ in },
        addressChanged: @escaping @Sendable (TunnelAssignment) throws -> Void = { _ in },
        handshakeGaveUp: @escaping @Sendable () -> Void = {},
        endpointAttempted: @escaping @Sendable (Int) -> Void = { _ in }
    ) {
        self.tunnelUp = tunnelUp
        self.addressChanged = addressChanged
        self.handshakeGaveUp = handshakeGaveUp
        self.endpointAttempted = endpointAttempted
    }
}

/// Engine sizing.
public struct EngineSettings: Sendable {
    /// Largest IP packet carried (the device MTU).
    public var mtu: Int
    /// Packets per batch.
    public var batchSize: Int
    /// Timer resolution in milliseconds.
    public var tickMillis: UInt64

    public init(mtu: Int = 1420, batchSize: Int = 64, tickMillis: UInt64 = 100) {
        self.mtu = mtu
        self.batchSize = batchSize
        self.tickMillis = tickMillis
    }

    /// Slots of each thread's control batch (handshakes, keepalives, queued packets, ICMPv6 answers): these
    /// come a few at a time, and `perform` sends a full one and goes on, so a data batch's size would only
    /// add resident memory (every slot is touched when a batch is made).
    var controlBatchSize: Int { min(batchSize, 16) }

    /// Slot size: frame header + largest packet + tag.
    var slotSize: Int { DataFrame.headerLength + mtu + DataFrame.tagLength }
}

/// Runs one tunvpn instance's data path.
public final class TunnelEngine: Sendable {
    public let counters = Counters()
    private let state: Mutex<TunnelState>
    private let device: any PacketDevice
    private let socket: any DatagramSocket
    private let clock: any EngineClock
    private let random: any RandomSource
    private let logger: Logger
    private let hooks: EngineHooks
    private let settings: EngineSettings
    private let running = Atomic<Bool>(false)
    private let threads = Mutex<[EngineThread]>([])
    /// At most 5 refusal log lines at once and 5 a second, so floods of bad input cannot flood logs.
    private let logLimiter = Mutex(TokenBucket(perSecond: 5, burst: 5))
    /// The server's lines naming a refused client key: one per key a minute, 10 distinct keys a minute.
    private let unknownKeyLimiter = Mutex(KeyedLogLimiter<PublicKey>(interval: 60_000_000_000, maxKeys: 10))
    /// Set when the engine stopped because of an error (for the CLI's exit status).
    public let failure = Mutex<String?>(nil)
    /// A server's responder, for the checks that need no state (key ID, mac1), run before the lock.
    private let initiationFilter: ServerHandshake?
    /// Held for every write to the device: the inbound thread writes the packets it delivers, and a
    /// client's outbound thread writes the ICMPv6 unreachables it answers IPv6 packets with, while the
    /// device allows one writer at a time (`PacketDevice`). Uncontended on a server (one lock per batch).
    private let deviceWriter = Mutex<Void>(())

    public init(
        state: TunnelState, device: any PacketDevice, socket: any DatagramSocket, clock: any EngineClock = SystemClock(),
        random: any RandomSource = SystemRandom(), logger: Logger, hooks: EngineHooks = EngineHooks(),
        settings: EngineSettings = EngineSettings()
    ) {
        self.state = Mutex(state)
        self.device = device
        self.socket = socket
        self.clock = clock
        self.random = random
        self.logger = logger
        self.hooks = hooks
        self.settings = settings
        initiationFilter = state.serverHandshake
    }

    /// Reads the core's state under its lock (status, tests). The data path waits meanwhile, so `body`
    /// should be short: `snapshot` reads the peers a chunk per call.
    public func withState<R>(_ body: (TunnelState) -> R) -> R { state.withLock { body($0) } }

    /// Changes the core's state under its lock (reload).
    public func withStateMutation<R>(_ body: (inout TunnelState) -> R) -> R { state.withLock { body(&$0) } }

    /// Starts the threads; a client sends its first initiation at once.
    public func start() {
        guard !running.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let outbound = EngineThread(name: "tunvpn-out") { [self] in outboundLoop() }
        let inbound = EngineThread(name: "tunvpn-in") { [self] in inboundLoop() }
        let timers = EngineThread(name: "tunvpn-timers") { [self] in timerLoop() }
        threads.withLock { $0 = [outbound, inbound, timers] }
    }

    /// Stops every thread and waits for them. Safe to call more than once and from any thread except the
    /// engine's own.
    public func stop() {
        running.store(false, ordering: .releasing)
        device.close()
        socket.close()
        let all = threads.withLock { t -> [EngineThread] in
            let copy = t
            t = []
            return copy
        }
        for t in all { t.join() }
    }

    public var isRunning: Bool { running.load(ordering: .acquiring) }

    private func fail(_ message: String) {
        failure.withLock { if $0 == nil { $0 = message } }
        logger.error("\(message)")
        running.store(false, ordering: .releasing)
        device.close()
        socket.close()
    }

    // MARK: Outbound: TUN → UDP

    private func outboundLoop() {
        let batch = PacketBatch(capacity: settings.batchSize, slotSize: settings.slotSize)
        let control = PacketBatch(capacity: settings.controlBatchSize, slotSize: settings.slotSize)
        var decisions: [SendDecision] = []
        decisions.reserveCapacity(settings.batchSize)
        var actions: [ControlAction] = []
        /// A client's ICMPv6 unreachables for this batch's IPv6 packets that the tunnel does not carry.
        var answers: [[UInt8]] = []
        let headroom = DataFrame.headerLength
        while isRunning {
            let n: Int
            do { n = try device.readPackets(into: batch, headroom: headroom) } catch {
                if isRunning { fail("reading from \(device.name): \(error)") }
                return
            }
            if n == 0 { return }  // closed
            let now = clock.monotonicNow()
            let wall = clock.wallNow()
            decisions.removeAll(keepingCapacity: true)
            state.withLock { core in
                for i in 0..<n {
                    let length = batch.lengths[i]
                    if length > settings.mtu {
                        decisions.append(.drop(.oversized))
                        continue
                    }
                    let packet = UnsafeRawBufferPointer(start: batch.slot(i) + headroom, count: length)
                    decisions.append(core.route(packet, now: now, wall: wall, random: random, actions: &actions))
                }
            }
            var out = 0
            var traffic = FamilyTraffic()
            for i in 0..<n {
                switch decisions[i] {
                case .send(let session, let endpoint, let stats):
                    let length = batch.lengths[i]
                    // `route` read the version nibble already: the family is known before sealing hides it.
                    let version = length > 0 ? (batch.slot(i) + headroom).load(as: UInt8.self) : 0
                    guard let frame = DataFrame.seal(batch.slot(i), packetLength: length, session: session, mtu: settings.mtu) else {
                        counters.drop(.expired)
                        continue
                    }
                    if out != i { (batch.slot(out)).copyMemory(from: batch.slot(i), byteCount: frame) }
                    batch.offsets[out] = 0
                    batch.lengths[out] = frame
                    batch.endpoints[out] = endpoint
                    stats.sent(bytes: length)
                    traffic.add(firstByte: version, bytes: length)
                    out += 1
                case .queued:
                    continue
                case .answer(let bytes):
                    counters.drop(.ipv6Unreachable)
                    answers.append(bytes)
                case .drop(let reason):
                    counters.drop(reason)
                }
            }
            decisions.removeAll(keepingCapacity: true)
            batch.count = out
            if out > 0 {
                do { try socket.send(from: batch) } catch {
                    if isRunning { fail("sending on \(socket.localEndpoint): \(error)") }
                    return
                }
                counters.txPackets.add(UInt64(out))
                counters.txBytes.add(UInt64(traffic.bytes.0 + traffic.bytes.1))
                counters.add(sent: traffic)
            }
            if !answers.isEmpty {
                guard writeAnswers(answers, using: control) else { return }
                answers.removeAll(keepingCapacity: true)
            }
            if !actions.isEmpty { perform(&actions, using: control) }
        }
    }

    // MARK: Inbound: UDP → TUN

    /// What the inbound loop made of one datagram.
    private enum Kind: UInt8 {
        case data, handshake, oversized, malformed, unknownSession, dropped, refusedInitiation
    }

    /// The inbound thread's buffers, made once at start and reused for every batch.
    private struct InboundScratch {
        var kinds: [Kind]
        /// The session and peer of each `.data` datagram.
        var found: [(session: Session, peer: Int)?]
        /// Why a server refused each initiation before the lock (step 0), or nil.
        var refusals: [HandshakeFailure?]
        /// Copies of handshake messages other than a server's initiations.
        var handshakes: [(bytes: [UInt8], from: Endpoint)] = []
        var initiations: [PreparedInitiation] = []
        var actions: [ControlAction] = []

        init(batchSize: Int) {
            kinds = [Kind](repeating: .malformed, count: batchSize)
            found = Array(repeating: nil, count: batchSize)
            refusals = Array(repeating: nil, count: batchSize)
        }
    }

    private func inboundLoop() {
        let batch = PacketBatch(capacity: settings.batchSize, slotSize: settings.slotSize)
        let control = PacketBatch(capacity: settings.controlBatchSize, slotSize: settings.slotSize)
        var scratch = InboundScratch(batchSize: settings.batchSize)
        while isRunning {
            let n: Int
            do { n = try socket.receive(into: batch) } catch {
                if isRunning { fail("receiving on \(socket.localEndpoint): \(error)") }
                return
            }
            if n == 0 { return }
            let now = clock.monotonicNow()
            let wall = clock.wallNow()
            if let filter = initiationFilter { precheckInitiations(batch, count: n, filter: filter, &scratch) }
            classify(batch, count: n, now: now, &scratch)
            openFrames(batch, count: n, now: now, &scratch)
            let out = account(batch, count: n, now: now, wall: wall, &scratch)
            // 4. Handshake results first (a client's first session configures the device), then the packets.
            if !scratch.actions.isEmpty { perform(&scratch.actions, using: control) }
            batch.count = out
            if out > 0 {
                do { _ = try deviceWriter.withLock { _ throws(IOError) in try device.writePackets(from: batch) } } catch {
                    if isRunning { fail("writing to \(device.name): \(error)") }
                    return
                }
            }
            // 5. Initiations (server), once this batch's packets are delivered.
            if !scratch.initiations.isEmpty {
                answer(&scratch.initiations, now: now, actions: &scratch.actions)
                if !scratch.actions.isEmpty { perform(&scratch.actions, using: control) }
            }
        }
    }

    /// Step 0 (server): initiations that fail the stateless checks (key ID, mac1) are refused before the
    /// lock and without a copy, so a flood of forgeries costs one MAC each.
    private func precheckInitiations(
        _ batch: PacketBatch, count n: Int, filter: ServerHandshake, _ scratch: inout InboundScratch
    ) {
        for i in 0..<n {
            scratch.refusals[i] = nil
            guard batch.lengths[i] <= settings.slotSize, batch.lengths[i] > 0,
                batch.slot(i).load(fromByteOffset: batch.offsets[i], as: UInt8.self)
                    == WireFormat.MessageType.initiation.rawValue
            else { continue }
            scratch.refusals[i] = filter.precheckInitiation(raw: UnsafeRawBufferPointer(batch.packet(i)))
        }
    }

    /// Step 1: classifies every datagram and looks up data sessions, under one lock. Handshake messages
    /// are copied out now, before any slot is reused; a server's initiations go through their load checks
    /// (step 1 of the list in TunnelState.swift), their DH work comes later, outside the lock.
    private func classify(_ batch: PacketBatch, count n: Int, now: UInt64, _ scratch: inout InboundScratch) {
        state.withLock { core in
            for i in 0..<n {
                scratch.found[i] = nil
                if initiationFilter != nil, scratch.refusals[i] != nil {
                    scratch.kinds[i] = .refusedInitiation
                    continue
                }
                if batch.lengths[i] > settings.slotSize {
                    scratch.kinds[i] = .oversized
                    continue
                }
                let datagram = UnsafeRawBufferPointer(batch.packet(i))
                let endpoint = batch.endpoints[i]
                if let index = DataFrame.receiverIndex(datagram) {
                    let found = core.session(forIndex: index)
                    scratch.found[i] = found
                    scratch.kinds[i] = found == nil ? .unknownSession : .data
                    if found == nil, let hint = core.sessionGoneHint(index: index, from: endpoint.address, now: now) {
                        scratch.actions.append(.sendHandshake(hint, to: endpoint))
                    }
                } else if datagram.first == WireFormat.MessageType.data.rawValue {
                    // Type 4 is always the data path: one that is too short or has a non-zero reserved byte
                    // is a malformed frame, never a handshake message (docs/PROTOCOL.md, "Data frames").
                    scratch.kinds[i] = .malformed
                } else if let first = datagram.first, let type = WireFormat.MessageType(rawValue: first),
                    datagram.count <= WireFormat.initiationLength
                {
                    scratch.kinds[i] = .handshake
                    if initiationFilter != nil, type == .initiation {
                        if let prepared = core.prepareInitiation(
                            Array(datagram), from: endpoint, now: now, random: random, actions: &scratch.actions)
                        {
                            scratch.initiations.append(prepared)
                        }
                    } else {
                        scratch.handshakes.append((Array(datagram), endpoint))
                    }
                } else {
                    scratch.kinds[i] = .malformed
                }
            }
        }
    }

    /// Step 2: opens data frames in place, outside the lock, and counts what step 1 dropped.
    private func openFrames(_ batch: PacketBatch, count n: Int, now: UInt64, _ scratch: inout InboundScratch) {
        for i in 0..<n {
            switch scratch.kinds[i] {
            case .data:
                guard let (session, _) = scratch.found[i] else { continue }
                switch DataFrame.open(batch.packet(i), session: session, now: now) {
                case .packet(let length): batch.lengths[i] = length
                case .dropped(let reason):
                    counters.drop(reason)
                    scratch.kinds[i] = .dropped
                }
            case .oversized: counters.drop(.oversized)
            case .malformed: counters.drop(.malformed)
            case .unknownSession: counters.drop(.unknownSession)
            case .refusedInitiation:
                if let reason = scratch.refusals[i] {
                    counters.handshakeFailed(reason)
                    counters.drop(.handshake)
                    if logLimiter.withLock({ $0.take(now: now) }) {
                        logger.warning("handshake refused from \(batch.endpoints[i]): \(reason.name) (\(reason))")
                    }
                }
            case .handshake, .dropped: break
            }
        }
    }

    /// Step 3: accounts for authenticated frames and handles the other handshake messages (the client's
    /// responses) under one lock, and moves deliverable packets to the front of `batch` (by swapping slots,
    /// when something before them was not delivered).
    ///
    /// - Returns: the number of packets to deliver, now at `0..<count`.
    private func account(
        _ batch: PacketBatch, count n: Int, now: UInt64, wall: WallTime, _ scratch: inout InboundScratch
    ) -> Int {
        let headerLength = DataFrame.headerLength
        var out = 0
        var traffic = FamilyTraffic()
        state.withLock { core in
            for i in 0..<n where scratch.kinds[i] == .data {
                guard let (session, peer) = scratch.found[i] else { continue }
                let length = batch.lengths[i]
                let plaintext = UnsafeRawBufferPointer(start: batch.slot(i) + headerLength, count: length)
                let decision = core.received(
                    plaintext, on: session, peer: peer, from: batch.endpoints[i], now: now, wall: wall,
                    random: random, actions: &scratch.actions)
                counters.rxPackets.add()
                let stats = core.peers[peer].stats
                switch decision {
                case .deliver(let packetLength):
                    stats.received(bytes: packetLength)
                    counters.rxBytes.add(UInt64(packetLength))
                    traffic.add(firstByte: plaintext[0], bytes: packetLength)  // `received` parsed ≥ 20 bytes
                    batch.swapSlots(out, i)  // a slot may be lent (`PacketBatch.lend`): moved, never copied into
                    batch.offsets[out] = headerLength
                    batch.lengths[out] = packetLength
                    out += 1
                case .keepalive:
                    stats.received(bytes: 0)
                case .drop(let reason):
                    counters.drop(reason)
                }
            }
            for (bytes, from) in scratch.handshakes {
                core.handleHandshake(bytes, from: from, now: now, wall: wall, random: random, actions: &scratch.actions)
            }
        }
        scratch.handshakes.removeAll(keepingCapacity: true)
        counters.add(received: traffic)
        return out
    }

    /// Steps 2 to 5 of the server's initiations (the list is in TunnelState.swift): the Diffie-Hellman
    /// work of both messages runs outside the lock, so the outbound thread's `route` and the timer thread
    /// never wait for it; the lock is held only for the checks against the state and the commit. (This
    /// thread still does the work itself, so its own next batch waits for it.)
    private func answer(_ initiations: inout [PreparedInitiation], now: UInt64, actions: inout [ControlAction]) {
        var consumed: [ConsumedInitiation] = []
        for prepared in initiations {
            if let c = prepared.consume(random: random, actions: &actions) { consumed.append(c) }
        }
        initiations.removeAll(keepingCapacity: true)
        guard !consumed.isEmpty else { return }
        var admitted: [AdmittedInitiation] = []
        state.withLock { core in
            for c in consumed {
                if let a = core.admitInitiation(c, now: now, random: random, actions: &actions) { admitted.append(a) }
            }
        }
        guard !admitted.isEmpty else { return }
        let answered = admitted.map { $0.respond() }
        state.withLock { core in
            for a in answered { core.commitInitiation(a, now: now, actions: &actions) }
        }
    }

    // MARK: Timers

    private func timerLoop() {
        let control = PacketBatch(capacity: settings.controlBatchSize, slotSize: settings.slotSize)
        var actions: [ControlAction] = []
        do {
            let now = clock.monotonicNow()
            let wall = clock.wallNow()
            state.withLock { $0.start(now: now, wall: wall, random: random, actions: &actions) }
            perform(&actions, using: control)
        }
        var request = timespec(tv_sec: 0, tv_nsec: Int(settings.tickMillis) * 1_000_000)
        while isRunning {
            var remaining = timespec()
            _ = nanosleep(&request, &remaining)
            request = timespec(tv_sec: 0, tv_nsec: Int(settings.tickMillis) * 1_000_000)
            let now = clock.monotonicNow()
            let wall = clock.wallNow()
            state.withLock { $0.tick(now: now, wall: wall, random: random, actions: &actions) }
            if !actions.isEmpty { perform(&actions, using: control) }
        }
    }

    // MARK: Control actions

    /// Carries out `actions` (and empties the array), sending through `control`.
    private func perform(_ actions: inout [ControlAction], using control: PacketBatch) {
        var used = 0
        func flush() {
            guard used > 0 else { return }
            control.count = used
            do { try socket.send(from: control) } catch { counters.controlSendFailures.add() }
            used = 0
        }
        func sealInto(_ packet: UnsafeRawBufferPointer, _ session: Session, _ to: Endpoint, _ stats: PeerStats) {
            guard packet.count <= settings.mtu else {
                counters.drop(.oversized)
                return
            }
            if used == control.capacity { flush() }
            let slot = control.slot(used)
            if let base = packet.baseAddress, packet.count > 0 {
                (slot + DataFrame.headerLength).copyMemory(from: base, byteCount: packet.count)
            }
            guard let frame = DataFrame.seal(slot, packetLength: packet.count, session: session, mtu: settings.mtu) else {
                counters.drop(.expired)
                return
            }
            control.offsets[used] = 0
            control.lengths[used] = frame
            control.endpoints[used] = to
            stats.sent(bytes: packet.count)
            counters.txBytes.add(UInt64(packet.count))
            counters.txPackets.add()  // data frames and keepalives only, as rx_packets counts them
            if let first = packet.first {
                var traffic = FamilyTraffic()
                traffic.add(firstByte: first, bytes: packet.count)
                counters.add(sent: traffic)
            }
            used += 1
        }
        var answers: [[UInt8]] = []
        for action in actions {
            switch action {
            case .sendHandshake(let bytes, let to):
                if used == control.capacity { flush() }
                control.set(used, bytes: bytes, endpoint: to)
                used += 1
            case .sendKeepalive(let session, let to, let stats):
                sealInto(UnsafeRawBufferPointer(start: nil, count: 0), session, to, stats)
            case .sendQueued(let packets, let session, let to, let stats):
                for p in packets { p.withUnsafeBytes { sealInto($0, session, to, stats) } }
            case .answerQueued(let packets, let unreachable):
                counters.drop(.ipv6Unreachable, UInt64(unreachable))
                answers += packets
            case .tunnelUp(let assignment):
                do {
                    try hooks.tunnelUp(assignment)
                    logger.info("tunnel up: address \(assignment.client)\(Self.serverText(assignment))\(Self.ipv6Text(assignment))")
                } catch {
                    fail("configuring \(device.name) with \(assignment.client): \(error)")
                }
            case .addressChanged(let assignment):
                do {
                    try hooks.addressChanged(assignment)
                    logger.notice(
                        "tunnel address changed by the server: address \(assignment.client), server \(assignment.server)\(Self.ipv6Text(assignment))")
                } catch {
                    fail("reconfiguring \(device.name) with \(assignment.client): \(error)")
                }
            case .handshakeCompleted(let peer, let address, let address6, let endpoint, let suite):
                counters.handshakesCompleted.add()
                logger.info(
                    "handshake completed with peer \(peer.base64) at \(endpoint), tunnel address \(address.map { "\($0)" } ?? "-")\(address6.map { ", \($0)" } ?? ""), suite \(suite)")
            case .handshakeRefused(let reason, let from):
                counters.handshakeFailed(reason)
                counters.drop(.handshake)
                // An unknown key is logged with the key itself (`.unknownClientKey`, which follows).
                if reason != .unknownClientKey, logLimiter.withLock({ $0.take(now: clock.monotonicNow()) }) {
                    logger.warning("handshake refused from \(from): \(reason.name) (\(reason))")
                }
            case .unknownClientKey(let key, let from):
                if unknownKeyLimiter.withLock({ $0.take(key, now: clock.monotonicNow()) }) {
                    logger.warning("\(Self.unknownKeyLine(key, from: from))")
                }
            case .handshakeUnanswered(let peer, let endpoint, let after):
                logger.warning("\(Self.unansweredLine(peer, endpoint: endpoint, after: after))")
            case .handshakeGaveUp(let peer):
                counters.handshakeFailed(.timeout)
                logger.error(
                    "handshake with \(peer.base64) gave up after \(withState { $0.timers.rekeyAttemptTime } / 1_000_000_000) s without a response: \(HandshakeFailure.timeout.name) (check --peer-key, that this client's public key is on the server's allow-list, and that UDP reaches the server)")
                hooks.handshakeGaveUp()
            case .keysZeroed(let peer):
                logger.info("keys for peer \(peer.base64) zeroed after \(3 * withState { $0.timers.rejectAfterTime } / 1_000_000_000) s without a new session")
            case .endpointSwitched(let change, let to):
                logger.notice("switching from endpoint \(change.from + 1) to endpoint \(change.to + 1) (\(to)): \(change.reason)")
            case .endpointAttempted(let index):
                hooks.endpointAttempted(index)
            }
        }
        actions.removeAll(keepingCapacity: true)
        flush()
        if !answers.isEmpty { _ = writeAnswers(answers, using: control) }
    }

    /// The server's line for a refused client key, with the key (public keys are no secret) and how to admit
    /// it. Logged at most once per key a minute (`unknownKeyLimiter`).
    public static func unknownKeyLine(_ key: PublicKey, from: Endpoint) -> String {
        "handshake refused from \(from): \(HandshakeFailure.unknownClientKey.name) (client key \(key.base64) is not on the allow-list); to admit it, add a line `\(key.base64)` to the allow-list (--clients) and run `tunvpn reload` (at most one line per key a minute)"
    }

    /// The client's line at its first retransmission: no response yet, and the likely causes.
    public static func unansweredLine(_ peer: PublicKey, endpoint: Endpoint, after: UInt64) -> String {
        let seconds = (after + 500_000_000) / 1_000_000_000
        return "no response from the server at \(endpoint) (key \(peer.base64)) \(seconds) s after the handshake began; still trying. Likely causes: --peer-key is not the server's public key, this client's public key is not on the server's allow-list, or UDP to \(endpoint) is blocked or --endpoint is wrong"
    }

    /// ", server 10.8.0.1" for the log, or "" for a client's own addressing in WireGuard mode, which names
    /// no server address (0.0.0.0, `ClientSettings.ownAddressing`).
    static func serverText(_ a: TunnelAssignment) -> String {
        a.server == IPv4Address(0, 0, 0, 0) ? "" : ", server \(a.server)"
    }

    /// The IPv6 half of a client's addressing for the log: "; IPv6 fd…::2/64, server fd…::1, IPv6 egress
    /// yes", or "; no IPv6 from the server" (in WireGuard mode, without the server's words).
    static func ipv6Text(_ a: TunnelAssignment) -> String {
        let own = a.server == IPv4Address(0, 0, 0, 0)
        guard let client6 = a.client6 else { return own ? "; no IPv6" : "; no IPv6 from the server" }
        if own { return "; IPv6 \(client6)" }
        return "; IPv6 \(client6), server \(a.server6.map { "\($0)" } ?? "-"), IPv6 egress \(a.ipv6Egress ? "yes" : "no")"
    }

    /// Writes a client's ICMPv6 answers to the device through `scratch` (plain packets, so the device
    /// merges none of them), taking turns with the inbound thread's writes. An answer too long for a slot
    /// (a device MTU under 1,248 bytes, on which Linux turns IPv6 off anyway) is left out.
    ///
    /// - Returns: false when the engine failed (and stopped).
    private func writeAnswers(_ packets: [[UInt8]], using scratch: PacketBatch) -> Bool {
        var next = 0
        while next < packets.count {
            var used = 0
            while next < packets.count && used < scratch.capacity {
                if packets[next].count <= scratch.slotSize {
                    scratch.set(used, bytes: packets[next])
                    used += 1
                }
                next += 1
            }
            scratch.count = used
            guard used > 0 else { continue }
            do { _ = try deviceWriter.withLock { _ throws(IOError) in try device.writePackets(from: scratch) } } catch {
                if isRunning { fail("writing to \(device.name): \(error)") }
                return false
            }
        }
        return true
    }
}
