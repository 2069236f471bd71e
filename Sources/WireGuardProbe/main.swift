// tunvpn-wgprobe: a test tool that runs tunvpn's WireGuard-mode core (Transport's WireGuardInitiator,
// WireGuardResponder, cookies and data frames) against a real WireGuard peer over one UDP socket, and
// exchanges pings through the tunnel with it: the interop oracle of the end-to-end tests
// (Tests/EndToEndTests/WireGuardInteropTests.swift), with Debian's wireguard-go on the other side.
//
//   tunvpn-wgprobe --private-key K --peer-key P --listen-port 51000 [--endpoint 10.70.1.1:51820] \
//       --address 10.9.0.2 --ping 10.9.0.1 --count 3 --answer 3 [--psk F]
// With --endpoint it initiates (answering a cookie reply with a fresh initiation carrying mac2); without
// it waits for the peer's initiation; --flood N first sends N initiations from unknown keys at once, so that
// the peer is under load and answers the real one with a cookie reply. It then sends --count echo requests from --address to --ping and
// answers echo requests sent to --address, and exits 0 once it has --count replies and has answered
// --answer requests; it prints one line per event (`handshake completed`, `reply seq=N`, `answered seq=N`,
// `refused REASON`; with --replay, `replay refused REASON`).

import ArgumentParser
import Crypto
import Foundation
import Glibc
import TestSupport
import Transport

func readLE32(_ m: [UInt8], _ at: Int) -> UInt32 {
    UInt32(m[at]) | UInt32(m[at + 1]) << 8 | UInt32(m[at + 2]) << 16 | UInt32(m[at + 3]) << 24
}

struct ProbeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tunvpn-wgprobe", abstract: "Ping through a WireGuard tunnel with tunvpn's WireGuard-mode core.")

    @Option(help: "Our private key file (base64, as `wg genkey` writes).") var privateKey: String
    @Option(help: "The peer's public key file.") var peerKey: String
    @Option(help: "A preshared key file (base64), or none.") var psk: String?
    @Option(help: "Our UDP port.") var listenPort: UInt16
    @Option(help: "The peer's endpoint ADDRESS:PORT; without it we wait for its initiation.") var endpoint: String?
    @Option(help: "Our tunnel address (the inner source of our pings).") var address: String
    @Option(help: "The tunnel address to ping.") var ping: String
    @Option(help: "Echo replies to wait for.") var count: Int = 3
    @Option(help: "Echo requests to answer before exiting.") var answer: Int = 0
    @Option(help: "Seconds before giving up.") var timeout: Double = 30
    @Option(help: "As initiator: first send this many initiations from fresh keys in one burst, to put the peer under load.")
    var flood: Int = 0
    @Flag(help: "As responder: consume the peer's first initiation twice (the second is a replay to refuse).")
    var replay = false

    func run() throws {
        let key = try PrivateKey(base64: String(contentsOfFile: privateKey, encoding: .utf8))
        let peer = try PublicKey(base64: String(contentsOfFile: peerKey, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines))
        let pskBytes = try psk.map { path -> SecretBytes in
            let k = try PrivateKey(base64: String(contentsOfFile: path, encoding: .utf8))
            return k.secret
        }
        guard let local = IPv4Address(address), let target = IPv4Address(ping) else {
            throw ValidationError("--address and --ping take IPv4 addresses, e.g. 10.9.0.2")
        }
        let socket = try ProbeSocket(port: listenPort, timeout: timeout)
        let random = SystemRandom()
        let deadline = Date().addingTimeInterval(timeout)
        var session: Session
        var peerAddress: sockaddr_in
        var first: [UInt8] = []
        if let endpoint {
            let parts = endpoint.split(separator: ":")
            guard parts.count == 2, let a = IPv4Address(parts[0]), let p = UInt16(parts[1]) else {
                throw ValidationError("--endpoint takes ADDRESS:PORT, e.g. 10.70.1.1:51820")
            }
            peerAddress = ProbeSocket.address(a, p)
            (session, peerAddress) = try initiate(
                key: key, peer: peer, psk: pskBytes, socket: socket, to: peerAddress, random: random, deadline: deadline)
        } else {
            (session, peerAddress, first) = try respond(
                key: key, peer: peer, psk: pskBytes, socket: socket, random: random, deadline: deadline)
        }
        print("handshake completed")
        fflush(nil)
        try exchangePings(
            session: session, socket: socket, peer: &peerAddress, local: local, target: target, first: first,
            deadline: deadline)
    }

    func initiate(
        key: PrivateKey, peer: PublicKey, psk: SecretBytes?, socket: ProbeSocket, to address: sockaddr_in,
        random: SystemRandom, deadline: Date
    ) throws -> (Session, sockaddr_in) {
        let initiator = WireGuardInitiator(localStatic: key, peerKey: peer, psk: psk)
        var jar = CookieJar(serverKey: peer, layout: .wireGuard)
        var last: TAI64N?
        // Initiations from keys the peer does not know, with valid mac1: each costs it Diffie-Hellman work
        // and fills its handshake queue, which is what puts WireGuard "under load". One burst goes before
        // every attempt until a cookie came, so the peer is still under load when the real initiation arrives.
        let burst = (0..<flood).map { i in
            WireGuardInitiator(localStatic: PrivateKey(random: random), peerKey: peer)
                .createInitiation(senderIndex: UInt32(i), timestamp: TAI64N(secondsSince1970: 1, nanoseconds: 0), random: random)
                .message
        }
        var haveCookie = false
        while Date() < deadline {
            if !haveCookie {
                for m in burst { socket.send(m, to: address) }
            }
            let index = random.nextUInt32()
            let now = Date().timeIntervalSince1970
            let stamp = TAI64N(secondsSince1970: UInt64(now), nanoseconds: UInt32((now - now.rounded(.down)) * 1e9)).after(last)
            last = stamp
            var (message, sent) = initiator.createInitiation(senderIndex: index, timestamp: stamp, random: random)
            jar.stamp(&message, now: monotonic())
            socket.send(message, to: address)
            let retry = Date().addingTimeInterval(flood > 0 ? 0.5 : 2)
            while Date() < retry {
                guard let (reply, from) = socket.receive() else { continue }
                if reply.first == WireFormat.MessageType.cookieReply.rawValue {
                    // Cookie replies to the flood name other sender indexes.
                    if reply.count == WireGuardFormat.cookieReplyLength, readLE32(reply, 4) != index { continue }
                    if jar.consumeReply(reply, answering: message, senderIndex: index, now: monotonic()) {
                        print("cookie received")
                        haveCookie = true
                        break  // initiate again at once, now with mac2
                    }
                    print("refused corrupted")
                    continue
                }
                do {
                    let keys = try initiator.consumeResponse(reply, for: sent)
                    let session = keys.session(createdAt: monotonic())
                    // Key confirmation: a keepalive at once, as WireGuard's initiator sends.
                    socket.send(seal([], session: session), to: from)
                    return (session, from)
                } catch {
                    print("refused \(error.name)")
                }
            }
        }
        throw ValidationError("no handshake before the timeout")
    }

    func respond(
        key: PrivateKey, peer: PublicKey, psk: SecretBytes?, socket: ProbeSocket, random: SystemRandom, deadline: Date
    ) throws -> (Session, sockaddr_in, [UInt8]) {
        let responder = WireGuardResponder(localStatic: key)
        var lastTimestamp: TAI64N?
        var pending: (Session, sockaddr_in)?
        while Date() < deadline {
            guard let (message, from) = socket.receive() else { continue }
            if message.first == WireFormat.MessageType.initiation.rawValue {
                do {
                    let consumed = try responder.consumeInitiation(
                        message, isAllowed: { $0 == peer }, lastTimestamp: { _ in lastTimestamp }, random: random)
                    lastTimestamp = consumed.timestamp
                    if replay {
                        do {
                            _ = try responder.consumeInitiation(
                                message, isAllowed: { $0 == peer }, lastTimestamp: { _ in lastTimestamp }, random: random)
                            print("replay admitted")
                        } catch {
                            print("replay refused \(error.name)")
                        }
                    }
                    let (response, keys) = responder.createResponse(to: consumed, senderIndex: random.nextUInt32(), psk: psk)
                    socket.send(response, to: from)
                    pending = (keys.session(createdAt: monotonic()), from)
                } catch {
                    print("refused \(error.name)")
                    fflush(nil)
                }
                continue
            }
            // The session counts only once the initiator used it (WireGuard's key confirmation).
            if let (session, _) = pending, var frame = Optional(message),
                frame.withUnsafeBytes({ DataFrame.receiverIndex($0) }) == session.localIndex
            {
                let opened = frame.withUnsafeMutableBytes { DataFrame.open($0, session: session, now: monotonic()) }
                if case .packet(let length) = opened { return (session, from, Array(frame[16..<(16 + length)])) }
            }
        }
        throw ValidationError("no handshake before the timeout")
    }

    func exchangePings(
        session: Session, socket: ProbeSocket, peer: inout sockaddr_in, local: IPv4Address, target: IPv4Address,
        first: [UInt8], deadline: Date
    ) throws {
        var replies = Set<UInt16>()
        var answered = 0
        var nextSend = Date()
        var seq: UInt16 = 0
        var firstPacket: [UInt8]? = first.isEmpty ? nil : first
        while Date() < deadline {
            if replies.count >= count && answered >= answer {
                return
            }
            if replies.count < count, Date() >= nextSend {
                seq += 1
                socket.send(seal(icmpEcho(type: 8, from: local, to: target, id: 0x7777, seq: seq), session: session), to: peer)
                nextSend = Date().addingTimeInterval(0.2)
            }
            let p: [UInt8]
            if let firstPacket {
                p = firstPacket  // the frame that confirmed the session
            } else {
                guard let (received, from) = socket.receive(waitMillis: 100) else { continue }
                var frame = received
                let opened = frame.withUnsafeMutableBytes { DataFrame.open($0, session: session, now: monotonic()) }
                guard case .packet(let length) = opened else { continue }
                if from.sin_port != peer.sin_port || from.sin_addr.s_addr != peer.sin_addr.s_addr {
                    let a = IPv4Address(UInt32(bigEndian: from.sin_addr.s_addr))
                    print("roamed to \(a):\(UInt16(bigEndian: from.sin_port))")
                }
                peer = from  // roaming: answer where authenticated frames come from
                p = Array(frame[16..<(16 + length)])
            }
            firstPacket = nil
            guard p.count >= 28 else { continue }
            guard p[0] >> 4 == 4, p[9] == 1 else { continue }
            let ihl = Int(p[0] & 0x0f) * 4
            guard p.count >= ihl + 8 else { continue }
            let type = p[ihl]
            let id = UInt16(p[ihl + 4]) << 8 | UInt16(p[ihl + 5])
            let s = UInt16(p[ihl + 6]) << 8 | UInt16(p[ihl + 7])
            if type == 0, id == 0x7777 {
                if replies.insert(s).inserted { print("reply seq=\(s)") }
            } else if type == 8 {
                let src = IPv4Address(UInt32(p[12]) << 24 | UInt32(p[13]) << 16 | UInt32(p[14]) << 8 | UInt32(p[15]))
                let total = Int(p[2]) << 8 | Int(p[3])
                let payload = Array(p[(ihl + 8)..<min(total, p.count)])
                socket.send(seal(icmpEcho(type: 0, from: local, to: src, id: id, seq: s, payload: payload), session: session), to: peer)
                answered += 1
                print("answered seq=\(s)")
            }
            fflush(nil)
        }
        throw ValidationError("only \(replies.count) of \(count) replies and \(answered) of \(answer) answers before the timeout")
    }

    /// A data frame carrying `packet`, padded as WireGuard pads (to a multiple of 16, MTU 1420).
    func seal(_ packet: [UInt8], session: Session) -> [UInt8] {
        let padded = WireGuardFormat.paddedLength(packet.count, mtu: 1420)
        var buffer = [UInt8](repeating: 0, count: 16) + packet + [UInt8](repeating: 0, count: padded - packet.count + 16)
        let n = buffer.withUnsafeMutableBytes {
            DataFrame.seal($0.baseAddress.unsafelyUnwrapped, packetLength: packet.count, session: session, mtu: 1420)
        }
        return Array(buffer.prefix(n ?? 0))
    }
}

/// An ICMP echo request (type 8) or reply (type 0) in an IPv4 packet.
func icmpEcho(type: UInt8, from: IPv4Address, to: IPv4Address, id: UInt16, seq: UInt16, payload: [UInt8] = Array("tunvpn-wgprobe".utf8)) -> [UInt8] {
    var icmp: [UInt8] = [type, 0, 0, 0, UInt8(id >> 8), UInt8(id & 0xff), UInt8(seq >> 8), UInt8(seq & 0xff)] + payload
    let c = PacketBuilder.internetChecksum(icmp)
    icmp[2] = UInt8(c >> 8)
    icmp[3] = UInt8(c & 0xff)
    let total = 20 + icmp.count
    var ip: [UInt8] = [0x45, 0, UInt8(total >> 8), UInt8(total & 0xff), 0, 0, 0x40, 0, 64, 1, 0, 0]
    for a in [from, to] { ip += [UInt8(a.value >> 24), UInt8((a.value >> 16) & 0xff), UInt8((a.value >> 8) & 0xff), UInt8(a.value & 0xff)] }
    let h = PacketBuilder.internetChecksum(ip)
    ip[10] = UInt8(h >> 8)
    ip[11] = UInt8(h & 0xff)
    return ip + icmp
}

func monotonic() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// One IPv4 UDP socket with a receive timeout.
final class ProbeSocket {
    let fd: Int32

    init(port: UInt16, timeout: Double) throws {
        fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw ValidationError("socket: errno \(errno)") }
        var a = ProbeSocket.address(IPv4Address(0), port)
        let rc = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard rc == 0 else { throw ValidationError("bind to port \(port): errno \(errno)") }
    }

    deinit { close(fd) }

    static func address(_ a: IPv4Address, _ port: UInt16) -> sockaddr_in {
        var s = sockaddr_in()
        s.sin_family = sa_family_t(AF_INET)
        s.sin_port = port.bigEndian
        s.sin_addr.s_addr = a.value.bigEndian
        return s
    }

    func send(_ bytes: [UInt8], to address: sockaddr_in) {
        var a = address
        _ = bytes.withUnsafeBytes { b in
            withUnsafePointer(to: &a) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, b.baseAddress, b.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        }
    }

    /// One datagram, or nil after `waitMillis` without one.
    func receive(waitMillis: Int32 = 200) -> ([UInt8], sockaddr_in)? {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, waitMillis) > 0 else { return nil }
        var buffer = [UInt8](repeating: 0, count: 65536)
        var from = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let n = buffer.withUnsafeMutableBytes { b in
            withUnsafeMutablePointer(to: &from) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd, b.baseAddress, b.count, 0, $0, &length) }
            }
        }
        guard n > 0 else { return nil }
        return (Array(buffer.prefix(n)), from)
    }
}

ProbeCommand.main()
