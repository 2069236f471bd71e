// Two protocol cores (a client and a server) talking in memory under a manual clock: handshakes, data
// both ways, cryptokey routing, rekeying without loss, expiry, retransmission, keepalives and roaming.
// Timers that take minutes in real life take microseconds here.

import Crypto
import Testing

@testable import Transport

let second: UInt64 = 1_000_000_000

/// A client core and a server core joined by an in-memory "network".
struct CorePair {
    let f = Fixture()
    var client: TunnelState
    var server: TunnelState
    var now: UInt64 = 1_000 * second
    var wall = WallTime(seconds: 1_700_000_000, nanoseconds: 0)
    var clientEndpoint = Endpoint(address: IPv4Address(10, 99, 0, 2), port: 40000)
    let serverEndpoint = Endpoint(address: IPv4Address(10, 99, 0, 1), port: 51820)
    var tunnelUps: [TunnelAssignment] = []
    var addressChanges: [TunnelAssignment] = []
    var refusals: [HandshakeFailure] = []
    var completions = 0
    /// Client keys the server refused as not on its allow-list (`ControlAction.unknownClientKey`).
    var unknownKeys: [PublicKey] = []
    /// Packets each side delivered to its TUN device.
    var deliveredToClient: [[UInt8]] = []
    var deliveredToServer: [[UInt8]] = []
    var drops: [DropReason] = []
    /// Packets the client wrote to its own TUN device (ICMPv6 unreachables), and how many queued
    /// packets were refused with them.
    var answeredQueued: [[UInt8]] = []
    var refusedQueued = 0

    init(
        allowList: AllowList? = nil, keepalive: UInt64? = nil, clientKey: PrivateKey? = nil, protocolMode: ProtocolMode = .tunvpn,
        psk: SecretBytes? = nil, serverPSK: SecretBytes? = nil, allowAnyClient: Bool = false
    ) {
        let key = clientKey ?? f.client
        let initiator = HandshakeInitiator(localStatic: key, serverKey: f.server.publicKey, settings: HandshakeSettings(psk: psk))
        // WireGuard mode: the client's own addressing, as `--address 10.8.0.2/16` gives it.
        let own = protocolMode == .wireguard ? TunnelAssignment(client: IPv4Prefix("10.8.0.2/16")!, server: .any) : nil
        client = TunnelState(role: .client(ClientSettings(
            initiator: initiator, endpoint: serverEndpoint, persistentKeepalive: keepalive, protocolMode: protocolMode,
            ownAddressing: own)))
        let list = allowList ?? AllowList(clients: [AllowedClient(key: f.client.publicKey, address: protocolMode == .wireguard ? clientIP : nil)])
        server = TunnelState(role: .server(ServerSettings(
            responder: HandshakeResponder(localStatic: f.server, settings: HandshakeSettings(psk: serverPSK ?? psk)),
            address: IPv4Prefix("10.8.0.1/16")!, allowList: list, allowAnyClient: allowAnyClient, protocolMode: protocolMode)))
    }

    mutating func advance(_ seconds: UInt64) {
        now += seconds * second
        wall.seconds += seconds
    }

    /// Seals `packet` with `session` into a frame.
    static func seal(_ packet: [UInt8], _ session: Session) -> [UInt8] {
        // Room for WireGuard's padding (at most 15 bytes) too.
        var buffer = [UInt8](repeating: 0, count: DataFrame.headerLength + packet.count + 15 + DataFrame.tagLength)
        buffer.replaceSubrange(DataFrame.headerLength..<(DataFrame.headerLength + packet.count), with: packet)
        let n = buffer.withUnsafeMutableBytes { DataFrame.seal($0.baseAddress!, packetLength: packet.count, session: session, mtu: 1420) }
        return Array(buffer.prefix(n!))
    }

    /// Delivers a datagram to one side, as the engine's inbound path would.
    mutating func deliver(_ datagram: [UInt8], toServer: Bool, from: Endpoint) {
        var actions: [ControlAction] = []
        if datagram.first != 4 {
            if toServer {
                server.handleHandshake(datagram, from: from, now: now, wall: wall, random: f.random, actions: &actions)
            } else {
                client.handleHandshake(datagram, from: from, now: now, wall: wall, random: f.random, actions: &actions)
            }
            perform(actions, fromServer: toServer)
            return
        }
        var bytes = datagram
        let index = bytes.withUnsafeBytes { DataFrame.receiverIndex($0) }
        guard let index, let (session, peer) = (toServer ? server : client).session(forIndex: index) else {
            drops.append(.unknownSession)
            return
        }
        let opened = bytes.withUnsafeMutableBytes { DataFrame.open($0, session: session, now: now) }
        guard case .packet(let length) = opened else {
            if case .dropped(let r) = opened { drops.append(r) }
            return
        }
        let plaintext = Array(bytes[DataFrame.headerLength..<(DataFrame.headerLength + length)])
        let decision = plaintext.withUnsafeBytes { p in
            toServer
                ? server.received(p, on: session, peer: peer, from: from, now: now, wall: wall, random: f.random, actions: &actions)
                : client.received(p, on: session, peer: peer, from: from, now: now, wall: wall, random: f.random, actions: &actions)
        }
        switch decision {
        case .deliver(let n):
            if toServer { deliveredToServer.append(Array(plaintext.prefix(n))) } else { deliveredToClient.append(Array(plaintext.prefix(n))) }
        case .keepalive: break
        case .drop(let r): drops.append(r)
        }
        perform(actions, fromServer: toServer)
    }

    /// Carries out actions produced by one side: messages go to the other side at once.
    mutating func perform(_ actions: [ControlAction], fromServer: Bool) {
        let from = fromServer ? serverEndpoint : clientEndpoint
        for action in actions {
            switch action {
            case .sendHandshake(let bytes, _): deliver(bytes, toServer: !fromServer, from: from)
            case .sendKeepalive(let s, _, _): deliver(Self.seal([], s), toServer: !fromServer, from: from)
            case .sendQueued(let packets, let s, _, _):
                for p in packets { deliver(Self.seal(p, s), toServer: !fromServer, from: from) }
            case .answerQueued(let answers, let unreachable):
                answeredQueued += answers
                refusedQueued += unreachable
            case .tunnelUp(let a): tunnelUps.append(a)
            case .addressChanged(let a): addressChanges.append(a)
            case .handshakeCompleted: completions += 1
            case .handshakeRefused(let r, _): refusals.append(r)
            case .handshakeGaveUp: refusals.append(.timeout)
            case .unknownClientKey(let key, _): unknownKeys.append(key)
            case .keysZeroed, .handshakeUnanswered, .endpointSwitched, .endpointAttempted: break
            }
        }
    }

    /// Sends a packet from the client's TUN; returns the decision.
    @discardableResult
    mutating func clientSends(_ packet: [UInt8], deliver: Bool = true) -> SendDecision {
        var actions: [ControlAction] = []
        let d = packet.withUnsafeBytes { client.route($0, now: now, wall: wall, random: f.random, actions: &actions) }
        if case .send(let s, _, _) = d, deliver { self.deliver(Self.seal(packet, s), toServer: true, from: clientEndpoint) }
        perform(actions, fromServer: false)
        return d
    }

    @discardableResult
    mutating func serverSends(_ packet: [UInt8]) -> SendDecision {
        var actions: [ControlAction] = []
        let d = packet.withUnsafeBytes { server.route($0, now: now, wall: wall, random: f.random, actions: &actions) }
        if case .send(let s, _, _) = d { deliver(Self.seal(packet, s), toServer: false, from: serverEndpoint) }
        perform(actions, fromServer: true)
        return d
    }

    mutating func tickBoth() {
        var a: [ControlAction] = []
        client.tick(now: now, wall: wall, random: f.random, actions: &a)
        perform(a, fromServer: false)
        var b: [ControlAction] = []
        server.tick(now: now, wall: wall, random: f.random, actions: &b)
        perform(b, fromServer: true)
    }

    mutating func start() {
        var actions: [ControlAction] = []
        client.start(now: now, wall: wall, random: f.random, actions: &actions)
        perform(actions, fromServer: false)
    }
}

/// A minimal IPv4 packet (header only is enough for the core) from `src` to `dst` with a payload.
func ipv4(_ src: IPv4Address, _ dst: IPv4Address, payload: [UInt8] = [1, 2, 3, 4]) -> [UInt8] {
    let total = 20 + payload.count
    var p: [UInt8] = [0x45, 0, UInt8(total >> 8), UInt8(total & 0xff), 0, 0, 0, 0, 64, 17, 0, 0]
    p += [0, 0, 0, 0, 0, 0, 0, 0]
    withUnsafeMutableBytes(of: &p) { _ in }
    p.withUnsafeMutableBytes { b in
        src.write(networkBytesTo: b.baseAddress! + 12)
        dst.write(networkBytesTo: b.baseAddress! + 16)
    }
    return p + payload
}

let clientIP = IPv4Address(10, 8, 0, 2)
let serverIP = IPv4Address(10, 8, 0, 1)

@Suite struct TunnelStateTests {
    @Test func theClientsFirstPacketIsQueuedAndDeliveredOnceTheHandshakeCompletes() throws {
        var pair = CorePair()
        let packet = ipv4(clientIP, serverIP)
        #expect({ if case .queued = pair.clientSends(packet) { return true } else { return false } }())
        #expect(pair.tunnelUps == [TunnelAssignment(client: IPv4Prefix("10.8.0.2/16")!, server: serverIP)])
        #expect(pair.completions == 2)
        #expect(pair.deliveredToServer == [packet])
        // The queued packet confirmed the session: the server can now send back.
        pair.serverSends(ipv4(serverIP, clientIP))
        #expect(pair.deliveredToClient == [ipv4(serverIP, clientIP)])
        #expect(pair.drops.isEmpty)
    }

    @Test func theServerUsesANewSessionOnlyAfterTheClientConfirmsIt() throws {
        var pair = CorePair()
        var actions: [ControlAction] = []
        pair.client.start(now: pair.now, wall: pair.wall, random: pair.f.random, actions: &actions)
        guard case .sendHandshake(let m1, _) = actions.first else { Issue.record("no initiation"); return }
        var serverActions: [ControlAction] = []
        pair.server.handleHandshake(m1, from: pair.clientEndpoint, now: pair.now, wall: pair.wall, random: pair.f.random, actions: &serverActions)
        // Before any frame from the client, the server has only an unconfirmed session and must not send.
        let d = ipv4(serverIP, clientIP).withUnsafeBytes {
            pair.server.route($0, now: pair.now, wall: pair.wall, random: pair.f.random, actions: &actions)
        }
        #expect({ if case .drop(.noSession) = d { return true } else { return false } }())
        pair.perform(serverActions, fromServer: true)  // response → client → keepalive → server
        #expect(pair.serverSends(ipv4(serverIP, clientIP)).isSend)
    }

    @Test func dataFlowsBothWaysAndKeepalivesCarryNothing() {
        var pair = CorePair()
        pair.start()
        for i in 0..<50 {
            pair.clientSends(ipv4(clientIP, IPv4Address(192, 0, 2, 9), payload: [UInt8(i)]))
            pair.serverSends(ipv4(IPv4Address(192, 0, 2, 9), clientIP, payload: [UInt8(i)]))
        }
        #expect(pair.deliveredToServer.count == 50 && pair.deliveredToClient.count == 50)
        #expect(pair.drops.isEmpty)
    }

    @Test func aPacketWhoseInnerSourceIsNotTheClientsAddressIsDropped() {
        var pair = CorePair()
        pair.start()
        pair.clientSends(ipv4(IPv4Address(10, 8, 0, 99), serverIP))
        #expect(pair.drops == [.sourceNotAllowed])
        #expect(pair.deliveredToServer.isEmpty)
    }

    @Test func aReplayedFrameIsDroppedAndAFrameWithAFlippedBitFailsAuthentication() throws {
        var pair = CorePair()
        pair.start()
        guard case .send(let session, _, _) = pair.clientSends(ipv4(clientIP, serverIP), deliver: false) else {
            Issue.record("no session")
            return
        }
        let frame = CorePair.seal(ipv4(clientIP, serverIP), session)
        pair.deliver(frame, toServer: true, from: pair.clientEndpoint)
        pair.deliver(frame, toServer: true, from: pair.clientEndpoint)
        var flipped = CorePair.seal(ipv4(clientIP, serverIP), session)
        flipped[30] ^= 0x04
        pair.deliver(flipped, toServer: true, from: pair.clientEndpoint)
        var wrongIndex = frame
        wrongIndex[5] ^= 0xff
        pair.deliver(wrongIndex, toServer: true, from: pair.clientEndpoint)
        #expect(pair.drops == [.replay, .authentication, .unknownSession])
        #expect(pair.deliveredToServer.count == 1)
    }

    @Test func theClientRekeysAfter120SecondsAndFramesSealedUnderTheOldKeyStillArrive() throws {
        var pair = CorePair()
        pair.start()
        guard case .send(let old, _, _) = pair.clientSends(ipv4(clientIP, serverIP)) else { Issue.record("no session"); return }
        pair.advance(119)
        pair.clientSends(ipv4(clientIP, serverIP))
        #expect(pair.completions == 2, "no rekey before 120 s")
        // A frame sealed under the old key, still in flight when the rekey happens.
        let inFlight = CorePair.seal(ipv4(clientIP, serverIP, payload: [9, 9]), old)
        pair.advance(2)
        guard case .send(let stillOld, _, _) = pair.clientSends(ipv4(clientIP, serverIP)) else { Issue.record("no send"); return }
        #expect(stillOld === old, "the packet that triggers the rekey still goes out on the old session")
        #expect(pair.completions == 4, "sending after 120 s started and completed a new handshake")
        guard case .send(let new, _, _) = pair.clientSends(ipv4(clientIP, serverIP)) else { Issue.record("no send"); return }
        #expect(new !== old)
        pair.deliver(inFlight, toServer: true, from: pair.clientEndpoint)
        #expect(pair.deliveredToServer.last == ipv4(clientIP, serverIP, payload: [9, 9]))
        #expect(pair.drops.isEmpty)
        // The server switched to the new session once the client used it.
        guard case .send(let serverSession, _, _) = pair.serverSends(ipv4(serverIP, clientIP)) else { Issue.record("no send"); return }
        #expect(serverSession.remoteIndex == new.localIndex)
    }

    @Test func keysAreRefusedAfter180Seconds() {
        var pair = CorePair()
        pair.start()
        guard case .send(let s, _, _) = pair.clientSends(ipv4(clientIP, serverIP), deliver: false) else { Issue.record("no session"); return }
        let late = CorePair.seal(ipv4(clientIP, serverIP), s)
        pair.advance(181)
        pair.deliver(late, toServer: true, from: pair.clientEndpoint)
        #expect(pair.drops == [.expired])
        #expect(pair.deliveredToServer.isEmpty, "the frame sealed before expiry is refused after it")
        // The server cannot send on an expired session.
        #expect(!pair.serverSends(ipv4(serverIP, clientIP)).isSend)
    }

    @Test func anUnansweredInitiationIsRetriedEvery5SecondsAndAbandonedAfter90() {
        var pair = CorePair()
        var actions: [ControlAction] = []
        pair.client.start(now: pair.now, wall: pair.wall, random: pair.f.random, actions: &actions)
        var initiations = actions.filter { if case .sendHandshake = $0 { return true } else { return false } }.count
        var gaveUp = false
        for _ in 0..<(95 * 10) {  // 95 s in 100 ms ticks, the server never answering
            pair.now += second / 10
            actions.removeAll()
            pair.client.tick(now: pair.now, wall: pair.wall, random: pair.f.random, actions: &actions)
            for a in actions {
                if case .sendHandshake = a { initiations += 1 }
                if case .handshakeGaveUp = a { gaveUp = true }
            }
        }
        #expect(gaveUp)
        // One every 5 s plus up to 333 ms of jitter over 90 s: 16 to 19 initiations.
        #expect((16...19).contains(initiations), "\(initiations) initiations")
    }

    /// The `handshakeUnanswered` reports of the client's ticks from `pair.now` for `seconds`, in 100 ms steps,
    /// with nothing delivered: how far into the run each came.
    func unansweredReports(_ pair: inout CorePair, seconds: UInt64) -> [UInt64] {
        var reports: [UInt64] = []
        var actions: [ControlAction] = []
        for _ in 0..<(seconds * 10) {
            pair.now += second / 10
            actions.removeAll()
            pair.client.tick(now: pair.now, wall: pair.wall, random: pair.f.random, actions: &actions)
            for case .handshakeUnanswered(let peer, let endpoint, let after) in actions {
                #expect(peer == pair.f.server.publicKey && endpoint == pair.serverEndpoint)
                reports.append(after)
            }
        }
        return reports
    }

    @Test func theFirstRetransmissionOfARunSaysNoResponseOnceUntilAHandshakeCompletes() {
        var pair = CorePair()
        var actions: [ControlAction] = []
        pair.client.start(now: pair.now, wall: pair.wall, random: pair.f.random, actions: &actions)
        // The server never answers: one report at the first retransmission (5 s plus up to 333 ms of
        // jitter), none at the later ones, the give-up at 90 s or the runs after it.
        let silent = unansweredReports(&pair, seconds: 200)
        #expect(silent.count == 1, "\(silent)")
        #expect(silent.allSatisfy { (5 * second...5 * second + second / 2).contains($0) }, "\(silent)")

        // Once a handshake completes, a later run that goes unanswered is reported again.
        var answered = CorePair()
        answered.start()
        #expect(answered.completions >= 1 || answered.tunnelUps.count == 1)
        answered.clientSends(ipv4(clientIP, serverIP), deliver: false)  // data out, nothing back: rekey at 15 s
        let later = unansweredReports(&answered, seconds: 25)
        #expect(later.count == 1, "\(later)")
    }

    @Test func theServerNamesAnUnknownClientKey() {
        let other = PrivateKey(secret: SecretBytes(copying: [UInt8](repeating: 0x48, count: 32)))
        var pair = CorePair(allowList: AllowList(clients: [AllowedClient(key: other.publicKey)]))
        pair.start()
        #expect(pair.refusals == [.unknownClientKey])
        #expect(pair.unknownKeys == [pair.f.client.publicKey])
    }

    @Test func aPeerThatOnlyReceivesSendsAKeepaliveAfter10Seconds() {
        var pair = CorePair()
        pair.start()
        pair.serverSends(ipv4(serverIP, clientIP))
        var actions: [ControlAction] = []
        pair.advance(9)
        pair.client.tick(now: pair.now, wall: pair.wall, random: pair.f.random, actions: &actions)
        #expect(actions.isEmpty)
        pair.advance(2)
        pair.client.tick(now: pair.now, wall: pair.wall, random: pair.f.random, actions: &actions)
        #expect(actions.contains { if case .sendKeepalive = $0 { return true } else { return false } })
        pair.perform(actions, fromServer: false)
        #expect(pair.drops.isEmpty)
    }

    @Test func aPersistentKeepaliveGoesOutAtItsInterval() {
        var pair = CorePair(keepalive: 25)
        pair.start()
        var keepalives = 0
        for _ in 0..<(100 * 10) {
            pair.now += second / 10
            var actions: [ControlAction] = []
            pair.client.tick(now: pair.now, wall: pair.wall, random: pair.f.random, actions: &actions)
            keepalives += actions.filter { if case .sendKeepalive = $0 { return true } else { return false } }.count
            pair.perform(actions, fromServer: false)
        }
        #expect(keepalives == 4, "one per 25 s over 100 s")
    }

    @Test func theServerRepliesToTheLatestAuthenticatedSourceWhenAClientRoams() {
        var pair = CorePair()
        pair.start()
        pair.clientEndpoint = Endpoint(address: IPv4Address(10, 99, 7, 7), port: 50000)
        pair.clientSends(ipv4(clientIP, serverIP))
        guard case .send(_, let endpoint, _) = pair.serverSends(ipv4(serverIP, clientIP)) else { Issue.record("no send"); return }
        #expect(endpoint == pair.clientEndpoint)
        #expect(pair.completions == 2, "roaming needs no new handshake")
    }

    @Test func twoClientsGetTheirOwnPoolAddressesAndPacketsGoToTheOwner() throws {
        let second = PrivateKey(random: HashRandom(seed: 42))
        var a = CorePair(allowList: AllowList(clients: [AllowedClient(key: Fixture().client.publicKey), AllowedClient(key: second.publicKey)]))
        a.start()
        // A second client core talking to the same server core.
        var b = CorePair(clientKey: second)
        b.server = a.server
        b.clientEndpoint = Endpoint(address: IPv4Address(10, 99, 0, 3), port: 40001)
        b.start()
        a.server = b.server
        #expect(a.tunnelUps.first?.client.address == IPv4Address(10, 8, 0, 2))
        #expect(b.tunnelUps.first?.client.address == IPv4Address(10, 8, 0, 3))
        guard case .send(_, let toB, _) = a.serverSends(ipv4(serverIP, IPv4Address(10, 8, 0, 3))) else { Issue.record("no route to b"); return }
        #expect(toB == b.clientEndpoint)
        guard case .send(_, let toA, _) = a.serverSends(ipv4(serverIP, IPv4Address(10, 8, 0, 2))) else { Issue.record("no route to a"); return }
        #expect(toA == a.clientEndpoint)
        #expect({ if case .drop(.noRoute) = a.serverSends(ipv4(serverIP, IPv4Address(10, 8, 0, 4))) { return true } else { return false } }())
    }

    @Test func aReplayedInitiationIsRefusedByTheServer() {
        var pair = CorePair()
        var actions: [ControlAction] = []
        pair.client.start(now: pair.now, wall: pair.wall, random: pair.f.random, actions: &actions)
        guard case .sendHandshake(let m1, _) = actions.first else { Issue.record("no initiation"); return }
        pair.deliver(m1, toServer: true, from: pair.clientEndpoint)
        pair.deliver(m1, toServer: true, from: pair.clientEndpoint)
        #expect(pair.refusals == [.replayedInitiation])
    }

    @Test func aFixedAddressFromTheAllowListIsAssigned() {
        let list = AllowList(clients: [AllowedClient(key: Fixture().client.publicKey, address: IPv4Address(10, 8, 3, 3))])
        var pair = CorePair(allowList: list)
        pair.start()
        #expect(pair.tunnelUps.first?.client == IPv4Prefix("10.8.3.3/16"))
    }
}

extension SendDecision {
    var isSend: Bool { if case .send = self { return true } else { return false } }
}

@Suite struct ClockOrderTests {
    @Test func aTimeReadJustBeforeASessionWasMadeDoesNotExpireItOrCrash() {
        // Two engine threads can read the clock in one order and take the core's lock in the other.
        var pair = CorePair()
        pair.start()
        pair.now -= 1_000  // a microsecond "before" the handshake the other thread just completed
        #expect(pair.clientSends(ipv4(clientIP, serverIP)).isSend)
        #expect(pair.deliveredToServer.count == 1 && pair.drops.isEmpty)
        // The load meter takes such a time as part of the current window (no underflow, no new window).
        var meter = LoadMeter()
        var underLoad = [meter.record(now: 5 * second)]
        for _ in 0..<Limits.underLoadInitiationsPerSecond { underLoad.append(meter.record(now: 5 * second - 1)) }
        // 100 initiations in the window are not "under load"; the 101st, read a nanosecond earlier, is.
        #expect(underLoad.dropLast().allSatisfy { !$0 })
        #expect(underLoad.last == true, "the earlier reading counts in the same window")
    }
}

@Suite struct ScaledTimerTests {
    @Test func scaledTimersMakeTheClientRekeyAndTheServerExpireSessionsSooner() {
        let timers = ProtocolTimers.standard.scaled(by: 0.01)  // rekey after 1.2 s, reject after 1.8 s
        #expect(timers.rekeyAfterTime == 1_200_000_000 && timers.rejectAfterTime == 1_800_000_000)
        let f = Fixture()
        var pair = CorePair()
        pair.client = TunnelState(
            role: .client(ClientSettings(initiator: HandshakeInitiator(localStatic: f.client, serverKey: f.server.publicKey), endpoint: pair.serverEndpoint)),
            timers: timers)
        pair.server = TunnelState(
            role: .server(ServerSettings(
                responder: HandshakeResponder(localStatic: f.server), address: IPv4Prefix("10.8.0.1/16")!,
                allowList: AllowList(clients: [AllowedClient(key: f.client.publicKey)]), allowAnyClient: false)),
            timers: timers)
        pair.start()
        #expect(pair.completions == 2)
        pair.now += 1_300_000_000
        pair.clientSends(ipv4(clientIP, serverIP))
        #expect(pair.completions == 4, "rekeyed after 1.2 s instead of 120 s")
        pair.now += 1_900_000_000
        // Nothing happened for 1.9 s: the rekeyed session is past its 1.8 s and the server cannot send.
        #expect(!pair.serverSends(ipv4(serverIP, clientIP)).isSend)
        #expect(pair.completions == 4)
    }
}

@Suite struct ClockStepTests {
    @Test func aClientWhoseClockSteppedBackIsRefusedOnlyUntilTheServerForgetsItsKeys() {
        var pair = CorePair()
        pair.start()
        #expect(pair.completions == 2)
        // The client restarts with its wall clock an hour behind.
        let f = Fixture()
        pair.client = TunnelState(role: .client(ClientSettings(
            initiator: HandshakeInitiator(localStatic: f.client, serverKey: f.server.publicKey), endpoint: pair.serverEndpoint)))
        pair.wall.seconds -= 3600
        pair.refusals = []
        pair.start()
        #expect(pair.refusals == [.replayedInitiation])
        #expect(pair.tunnelUps.count == 1, "not connected again yet")
        // 3 × REJECT_AFTER_TIME later the server has zeroed the old keys and forgotten the timestamp.
        for _ in 0..<110 {
            pair.advance(5)
            pair.tickBoth()
            pair.clientSends(ipv4(clientIP, serverIP))  // traffic keeps asking for a session after a give-up
            if pair.tunnelUps.count == 2 { break }
        }
        #expect(pair.now < 1_000 * second + 620 * second, "within about 3 × REJECT_AFTER_TIME")
        #expect(pair.tunnelUps.count == 2, "the client got back in without its clock catching up")
    }
}

@Suite struct SessionGoneTests {
    @Test func aRestartedServerHintsAndTheClientHandshakesAtOnceButOnlyForItsOwnSession() throws {
        var pair = CorePair()
        pair.start()
        guard case .send(let session, _, _) = pair.clientSends(ipv4(clientIP, serverIP), deliver: false) else {
            Issue.record("no session")
            return
        }
        // The server restarts: same key and allow-list, no sessions.
        let f = Fixture()
        pair.server = TunnelState(role: .server(ServerSettings(
            responder: HandshakeResponder(localStatic: f.server), address: IPv4Prefix("10.8.0.1/16")!,
            allowList: AllowList(clients: [AllowedClient(key: f.client.publicKey)]), allowAnyClient: false)))
        let completions = pair.completions
        // A hint naming some other index is ignored.
        let wrongHint = pair.server.sessionGoneHint(index: session.remoteIndex &+ 1, from: pair.clientEndpoint.address, now: pair.now)
        var wrong = try #require(wrongHint)
        pair.deliver(wrong, toServer: false, from: pair.serverEndpoint)
        #expect(pair.completions == completions)
        wrong[1] = 1
        pair.deliver(wrong, toServer: false, from: pair.serverEndpoint)
        // The real one makes the client handshake immediately (not after 15 s of silence).
        pair.advance(6)
        let maybeHint = pair.server.sessionGoneHint(index: session.remoteIndex, from: pair.clientEndpoint.address, now: pair.now)
        let hint = try #require(maybeHint)
        #expect(hint.count == WireFormat.sessionGoneLength && hint[0] == 5)
        pair.deliver(hint, toServer: false, from: pair.serverEndpoint)
        #expect(pair.completions == completions + 2, "a new handshake completed at once")
        pair.clientSends(ipv4(clientIP, serverIP))
        #expect(pair.deliveredToServer.last == ipv4(clientIP, serverIP))
    }

    @Test func hintsAreRateLimitedPerSourceAddress() {
        var server = CorePair().server
        let spoofed = IPAddress.v4(IPv4Address(198, 51, 100, 66))
        let client = IPAddress.v4(IPv4Address(10, 99, 0, 2))
        var sent = 0
        for _ in 0..<100 where server.sessionGoneHint(index: 1, from: spoofed, now: 5 * second) != nil { sent += 1 }
        #expect(sent == Int(Limits.sessionGoneHintBurst))
        #expect(server.sessionGoneHint(index: 1, from: spoofed, now: 5 * second) == nil)
        // A flood from one address leaves another's hints alone (the bucket was global once).
        #expect(server.sessionGoneHint(index: 2, from: client, now: 5 * second) != nil)
        let later = server.sessionGoneHint(index: 1, from: spoofed, now: 5 * second + second / 10)
        #expect(later != nil, "tokens come back at 20 a second")
    }
}
