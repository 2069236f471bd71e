// The server's handshake cryptography runs without the core's lock: while the inbound thread generates
// the ephemeral key of a response (inside message 1's Diffie-Hellman step), another thread can take the
// lock the data path needs for every batch. No timing bound: the probe waits for the other thread's
// answer, and only a lock held across the DH work leaves it waiting until its deadline.

import Crypto
import Engine
import Synchronization
import Testing
import TestSupport
import Transport

/// The system's randomness, plus a probe on every 32-byte request (a private key; on a server not under
/// load, only the ephemeral key made while consuming an initiation asks for 32 bytes): it asks a helper
/// thread to take the engine's state lock, and records whether that thread got it.
final class LockProbeRandom: RandomSource, Sendable {
    final class EngineSlot: Sendable { let engine = Mutex<TunnelEngine?>(nil) }
    /// The engine whose lock the probe tries; nil until the test sets it (no probing before).
    let slot = EngineSlot()
    /// One entry per probe: true if the helper took the lock while the probe waited.
    let lockWasFree = Mutex<[Bool]>([])
    private let requests = BlockingQueue<Int>()
    private let grants = BlockingQueue<Int>()
    private let system = SystemRandom()
    private let helper: TestThread

    init() {
        let (requests, grants, slot) = (self.requests, self.grants, self.slot)
        helper = TestThread {
            while let request = requests.take(max: 1).first {
                _ = slot.engine.withLock { $0 }?.withState { _ in 0 }
                _ = grants.append(request)
            }
        }
    }

    func fill(_ buffer: UnsafeMutableRawBufferPointer) {
        system.fill(buffer)
        guard buffer.count == 32, slot.engine.withLock({ $0 != nil }) else { return }
        _ = grants.takeAll()  // a late grant of an earlier probe
        _ = requests.append(1)
        let granted = !grants.take(max: 1, timeout: .seconds(10)).isEmpty
        lockWasFree.withLock { $0.append(granted) }
    }

    func stop() {
        requests.close()
        helper.join()
    }
}

@Suite(.serialized) struct HandshakeLockTests {
    @Test func theServerConsumesAnInitiationWithoutHoldingTheCoreLock() throws {
        let probe = LockProbeRandom()
        defer { probe.stop() }
        let pair = try EnginePair(serverRandom: probe)
        probe.slot.engine.withLock { $0 = pair.server }
        pair.start()
        defer { pair.stop() }
        #expect(pair.waitForTunnel(timeout: .seconds(30)))
        let results = probe.lockWasFree.withLock { $0 }
        #expect(!results.isEmpty, "the server made no ephemeral key")
        #expect(results.allSatisfy { $0 }, "another thread could not take the core's lock during the DH work: \(results)")
        #expect(pair.server.counters.handshakesCompleted.current == 1)
    }
}
