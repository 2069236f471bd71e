// An in-memory UDP network: sockets bound to endpoints, datagrams delivered by destination endpoint.
//
// Tests build two or more engines on one `MemoryNetwork` and let them talk without the kernel. The network
// can be told to drop, duplicate or reorder datagrams by a seeded policy, so loss tests are reproducible,
// and to move a socket to a new endpoint, so a peer can roam. Every socket keeps the `DatagramSocket`
// contract in Engine/Devices.swift (datagrams at offset 0, sources in `endpoints`, truncation reported as
// `slotSize + 1`, `close()` wakes a blocked receiver). Compare wireguard-go's conn/bindtest.

import Engine
import Synchronization
import Transport

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// One datagram in flight or waiting in a socket: its bytes and the endpoint it came from.
struct MemoryDatagram: Sendable {
    var source: Endpoint
    var bytes: [UInt8]
}

/// A simulated UDP network linking ``MemoryDatagramSocket``s by endpoint.
///
/// Delivery is immediate and in order unless an ``Impairment`` says otherwise. A datagram sent to an
/// endpoint with no socket bound is dropped and counted in ``Statistics/droppedUnbound``, as UDP would
/// drop it (without the ICMP error).
///
/// Concurrency: every method may be called from any thread. Decisions about loss are made under one lock,
/// in the order datagrams are sent, so a single-threaded sender sees the same outcome on every run.
public final class MemoryNetwork: Sendable {
    /// What the network does to each datagram, decided by a seeded generator.
    ///
    /// Each probability is checked in turn for every datagram: first drop; otherwise duplicate (deliver it
    /// twice); and, independently, reorder (hold it back until the next datagram to the same destination
    /// has been delivered, or until ``MemoryNetwork/releaseHeld()``).
    public struct Impairment: Sendable, Equatable {
        /// Chance in 0...1 that a datagram is lost.
        public var dropProbability: Double
        /// Chance in 0...1 that a datagram that was not lost arrives twice.
        public var duplicateProbability: Double
        /// Chance in 0...1 that a datagram that was not lost arrives after the next one to its destination.
        public var reorderProbability: Double

        /// Sets each probability (0 by default).
        public init(dropProbability: Double = 0, duplicateProbability: Double = 0, reorderProbability: Double = 0) {
            precondition(
                [dropProbability, duplicateProbability, reorderProbability].allSatisfy { (0...1).contains($0) },
                "probabilities must be within 0...1")
            self.dropProbability = dropProbability
            self.duplicateProbability = duplicateProbability
            self.reorderProbability = reorderProbability
        }

        /// A perfect network: nothing lost, duplicated or reordered.
        public static let none = Impairment()
    }

    /// Counts of what happened to datagrams sent on the network.
    public struct Statistics: Sendable, Equatable {
        /// Datagrams handed to the network by `send(from:)`.
        public var sent = 0
        /// Datagrams placed in a socket's receive queue (a duplicate counts twice).
        public var delivered = 0
        /// Datagrams dropped because no socket was bound at the destination (or it was closed).
        public var droppedUnbound = 0
        /// Datagrams dropped by the impairment policy.
        public var droppedByPolicy = 0
        /// Datagrams the policy delivered twice.
        public var duplicated = 0
        /// Datagrams the policy held back behind a later one.
        public var reordered = 0
        /// Datagrams whose destination a socket refused to send to (port 0, or address 0.0.0.0 or ::).
        public var refusedDestination = 0

        /// All zero.
        public init() {}
    }

    private struct Binding {
        weak var socket: MemoryDatagramSocket?
    }

    private struct State {
        var bindings: [Endpoint: Binding] = [:]
        var impairment: Impairment
        var random: SeededRandom
        var held: [Endpoint: [MemoryDatagram]] = [:]
        var statistics = Statistics()
        var nextEphemeralPort: UInt16 = 49152
    }

    private let state: Mutex<State>

    /// Makes an empty network.
    /// - Parameters:
    ///   - impairment: what to do to datagrams (``Impairment/none`` by default).
    ///   - seed: the seed of the generator that applies `impairment`.
    public init(impairment: Impairment = .none, seed: UInt64 = 0) {
        state = Mutex(State(impairment: impairment, random: SeededRandom(seed: seed)))
    }

    /// The policy in force for datagrams sent from now on.
    public var impairment: Impairment {
        get { state.withLock { $0.impairment } }
        set { state.withLock { $0.impairment = newValue } }
    }

    /// What has happened to datagrams so far.
    public var statistics: Statistics {
        state.withLock { $0.statistics }
    }

    /// Binds a new socket at `endpoint`; a port of 0 picks a free port from 49152 up, as the kernel does.
    /// - Throws: `IOError` with `EADDRINUSE` if an open socket is already bound there.
    public func bind(_ endpoint: Endpoint) throws(IOError) -> MemoryDatagramSocket {
        let result: Result<MemoryDatagramSocket, IOError> = state.withLock { state in
            let chosen: Endpoint
            switch Self.choose(endpoint, in: &state) {
            case .success(let endpoint): chosen = endpoint
            case .failure(let error): return .failure(error)
            }
            let socket = MemoryDatagramSocket(network: self, endpoint: chosen)
            state.bindings[chosen] = Binding(socket: socket)
            return .success(socket)
        }
        return try result.get()
    }

    /// Moves `socket` to `endpoint`, as when a peer roams to a new address: datagrams to the old endpoint
    /// are dropped from now on, those already queued stay, and the socket's later sends come from
    /// `endpoint`. A port of 0 picks a free port.
    /// - Throws: `IOError` with `EADDRINUSE` if another open socket is bound there, or `EBADF` if `socket`
    ///   is closed or belongs to another network.
    public func rebind(_ socket: MemoryDatagramSocket, to endpoint: Endpoint) throws(IOError) {
        let failure: IOError? = state.withLock { state in
            let old = socket.localEndpoint
            guard socket.network === self, state.bindings[old]?.socket === socket else {
                return IOError(call: "bind", errno: EBADF, detail: "socket \(old) is not bound on this network")
            }
            if endpoint == old { return nil }
            let chosen: Endpoint
            switch Self.choose(endpoint, in: &state) {
            case .success(let endpoint): chosen = endpoint
            case .failure(let error): return error
            }
            state.bindings[old] = nil
            state.bindings[chosen] = Binding(socket: socket)
            socket.setLocalEndpoint(chosen)
            return nil
        }
        if let failure { throw failure }
    }

    /// Delivers every datagram the reorder policy is still holding back, in the order they were held.
    public func releaseHeld() {
        state.withLock { state in
            let held = state.held
            state.held = [:]
            for (destination, datagrams) in held.sorted(by: { $0.key.description < $1.key.description }) {
                for datagram in datagrams { Self.deliver(datagram, to: destination, in: &state) }
            }
        }
    }

    /// Picks the endpoint to bind: `endpoint` itself, or a free ephemeral port if its port is 0.
    private static func choose(_ endpoint: Endpoint, in state: inout State) -> Result<Endpoint, IOError> {
        func isFree(_ candidate: Endpoint) -> Bool {
            guard let socket = state.bindings[candidate]?.socket else { return true }
            return socket.isClosed
        }
        if endpoint.port != 0 {
            guard isFree(endpoint) else {
                return .failure(IOError(call: "bind", errno: EADDRINUSE, detail: "\(endpoint) is already bound"))
            }
            return .success(endpoint)
        }
        for _ in 0..<16384 {
            let candidate = Endpoint(address: endpoint.address, port: state.nextEphemeralPort)
            state.nextEphemeralPort = state.nextEphemeralPort == 65535 ? 49152 : state.nextEphemeralPort + 1
            if isFree(candidate) { return .success(candidate) }
        }
        let detail = "no free ephemeral port on \(endpoint.address)"
        return .failure(IOError(call: "bind", errno: EADDRINUSE, detail: detail))
    }

    /// Called by a closing socket: frees its endpoint.
    func unbind(_ socket: MemoryDatagramSocket) {
        state.withLock { state in
            let endpoint = socket.localEndpoint
            if state.bindings[endpoint]?.socket === socket { state.bindings[endpoint] = nil }
        }
    }

    /// Called by a socket for each datagram it sends; applies the impairment policy and delivers.
    func transmit(_ bytes: [UInt8], from socket: MemoryDatagramSocket, to destination: Endpoint) {
        state.withLock { state in
            // Read the source under the network lock so a concurrent rebind is seen entirely or not at all.
            let datagram = MemoryDatagram(source: socket.localEndpoint, bytes: bytes)
            state.statistics.sent += 1
            // Draw the same three numbers for every datagram, so one decision never shifts the others.
            let impairment = state.impairment
            let drop = Double.random(in: 0..<1, using: &state.random) < impairment.dropProbability
            let duplicate = Double.random(in: 0..<1, using: &state.random) < impairment.duplicateProbability
            let reorder = Double.random(in: 0..<1, using: &state.random) < impairment.reorderProbability
            if drop {
                state.statistics.droppedByPolicy += 1
                return
            }
            if duplicate { state.statistics.duplicated += 1 }
            let copies = duplicate ? [datagram, datagram] : [datagram]
            if reorder && state.held[destination] == nil {
                state.statistics.reordered += 1
                state.held[destination] = copies
                return
            }
            for copy in copies { Self.deliver(copy, to: destination, in: &state) }
            if let held = state.held.removeValue(forKey: destination) {
                for copy in held { Self.deliver(copy, to: destination, in: &state) }
            }
        }
    }

    private static func deliver(_ datagram: MemoryDatagram, to destination: Endpoint, in state: inout State) {
        guard let socket = state.bindings[destination]?.socket, socket.enqueue(datagram) else {
            state.statistics.droppedUnbound += 1
            return
        }
        state.statistics.delivered += 1
    }

    /// Called by a socket that refused a destination.
    func countRefusedDestination() {
        state.withLock { $0.statistics.refusedDestination += 1 }
    }
}

/// A UDP socket on a ``MemoryNetwork``, made by ``MemoryNetwork/bind(_:)``.
///
/// Sends go through the network (and its impairment policy); receives come from the socket's own queue.
/// Datagrams longer than a slot are truncated and reported with length `slotSize + 1`, as the contract
/// says. A destination with port 0 or address 0.0.0.0 or :: is refused, as the kernel refuses it: skipped and
/// left out of the count `send(from:)` returns.
///
/// Concurrency: one receiving thread and any number of sending threads, as the contract allows; `close()`
/// and ``inject(_:from:)`` from any thread.
public final class MemoryDatagramSocket: DatagramSocket {
    let network: MemoryNetwork
    private let endpoint: Mutex<Endpoint>
    private let inbox = BlockingQueue<MemoryDatagram>()

    init(network: MemoryNetwork, endpoint: Endpoint) {
        self.network = network
        self.endpoint = Mutex(endpoint)
    }

    /// The endpoint the socket is bound to now (it changes on ``MemoryNetwork/rebind(_:to:)``).
    public var localEndpoint: Endpoint {
        endpoint.withLock { $0 }
    }

    func setLocalEndpoint(_ new: Endpoint) {
        endpoint.withLock { $0 = new }
    }

    /// Whether `close()` has been called.
    public var isClosed: Bool { inbox.isClosed }

    /// Datagrams waiting to be received.
    public var pendingCount: Int { inbox.count }

    /// Queues a datagram for this socket; `false` if the socket is closed.
    func enqueue(_ datagram: MemoryDatagram) -> Bool {
        inbox.append(datagram)
    }

    /// Makes `bytes` receivable as if sent from `source`, bypassing the network and its policy (for forged
    /// or spoofed datagrams).
    /// - Returns: `false`, dropping the datagram, if the socket is closed.
    @discardableResult
    public func inject(_ bytes: [UInt8], from source: Endpoint) -> Bool {
        inbox.append(MemoryDatagram(source: source, bytes: bytes))
    }

    /// Blocks until at least one datagram has arrived or the socket is closed, then moves up to
    /// `batch.capacity` datagrams into `batch`, each at offset 0 with its source in `endpoints[i]`.
    /// - Returns: the number moved (also stored in `batch.count`); 0 only after `close()`.
    public func receive(into batch: PacketBatch) throws(IOError) -> Int {
        let datagrams = inbox.take(max: batch.capacity)
        for (i, datagram) in datagrams.enumerated() {
            batch.set(i, bytes: datagram.bytes.prefix(batch.slotSize), offset: 0, endpoint: datagram.source)
            if datagram.bytes.count > batch.slotSize { batch.lengths[i] = batch.slotSize + 1 }
        }
        batch.count = datagrams.count
        return datagrams.count
    }

    /// Sends `batch.packet(i)` to `batch.endpoints[i]` for `i in 0..<batch.count`, from ``localEndpoint``.
    /// - Returns: how many datagrams the network took (a datagram later lost or undeliverable still counts,
    ///   as with UDP); refused destinations are left out.
    /// - Throws: `IOError` with `EBADF` once the socket is closed.
    @discardableResult
    public func send(from batch: PacketBatch) throws(IOError) -> Int {
        guard !inbox.isClosed else {
            throw IOError(call: "sendmmsg", errno: EBADF, detail: "socket \(localEndpoint) is closed")
        }
        var taken = 0
        for i in 0..<batch.count {
            let destination = batch.endpoints[i]
            guard destination.port != 0, !destination.address.isUnspecified else {
                network.countRefusedDestination()
                continue
            }
            network.transmit(batch.bytes(i), from: self, to: destination)
            taken += 1
        }
        return taken
    }

    /// Closes the socket: frees its endpoint, wakes a blocked receiver (which then returns 0, as do later
    /// receives) and drops datagrams still queued. Idempotent.
    public func close() {
        inbox.close()
        network.unbind(self)
    }
}
