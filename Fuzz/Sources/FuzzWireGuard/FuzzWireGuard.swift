// Fuzz target: WireGuard mode's parsers of datagrams from anyone (Sources/Transport/WireGuard.swift, the
// cookie layout in Cookies.swift and WireGuard data frames in DataFrame.swift).
//
// Input: a mode byte, then
//   0: a raw initiation to the responder: refused by name, or (only for the real one in the seeds, whatever
//      its mac2, which only a server under load checks) accepted with the client's key and timestamp.
//   1: a raw response to a real initiation in flight: refused by name unless it is the responder's real
//      answer up to mac1 (an initiator does not check mac2).
//   2: a raw data frame under a WireGuard session: dropped, or opened to at most its length − 32 bytes;
//      never accepted unless its counter and ciphertext are those of the frame the seeds sealed.
//   3: a packet sealed (WireGuard padding) and opened again: the same bytes come back.
//   4: a raw cookie reply (WireGuard layout) to a real initiation: never accepted unless the server made it.

import Crypto
import FuzzSupport
@testable import Transport

@_cdecl("FuzzWireGuard_main")
public func main(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    runFuzzer(argc, argv) { data, size in fuzz(data, size) }
}

let initiator = WireGuardInitiator(localStatic: FuzzKeys.client, peerKey: FuzzKeys.server.publicKey)
let responder = WireGuardResponder(localStatic: FuzzKeys.server)
let stamp = TAI64N(secondsSince1970: 1_700_000_000, nanoseconds: 0)

/// The real exchange every mode compares against.
struct Exchange {
    let m1: [UInt8]
    let sent: WireGuardInitiator.InitiationSent
    let m2: [UInt8]
    let client: Session
    let server: Session
    let frame: [UInt8]
    let cookieReply: [UInt8]

    init() {
        let (m1, sent) = initiator.createInitiation(senderIndex: 0x0102_0304, timestamp: stamp, random: FuzzRandom(seed: 1))
        guard let consumed = try? responder.consumeInitiation(m1, random: FuzzRandom(seed: 2)) else {
            fatalError("the real initiation was refused")
        }
        let (m2, serverKeys) = responder.createResponse(to: consumed, senderIndex: 0x0a0b_0c0d, psk: nil)
        guard let clientKeys = try? initiator.consumeResponse(m2, for: sent) else { fatalError("the real response was refused") }
        self.m1 = m1
        self.sent = sent
        self.m2 = m2
        client = clientKeys.session(createdAt: 0)
        server = serverKeys.session(createdAt: 0)
        let packet: [UInt8] = [0x45, 0, 0, 28] + [UInt8](repeating: 0, count: 24)
        frame = sealFrame(packet, session: client)
        var checker = CookieChecker(serverKey: FuzzKeys.server.publicKey, layout: .wireGuard)
        cookieReply = checker.makeReply(
            to: m1, source: Endpoint(address: IPv4Address(198, 51, 100, 7), port: 40000), now: 1, random: FuzzRandom(seed: 3))
    }
}

func sealFrame(_ packet: [UInt8], session: Session) -> [UInt8] {
    let padded = WireGuardFormat.paddedLength(packet.count, mtu: 1420)
    var buffer = [UInt8](repeating: 0, count: 16) + packet + [UInt8](repeating: 0, count: padded - packet.count + 16)
    let n = buffer.withUnsafeMutableBytes { DataFrame.seal($0.baseAddress.unsafelyUnwrapped, packetLength: padded, session: session, mtu: padded) }
    return Array(buffer.prefix(n ?? 0))
}

let exchange = Exchange()

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutableRawPointer) -> Int32 {
    writeSeedsIfAsked {
        var flipped: [UInt8] = exchange.m2
        flipped[50] ^= 1
        let zeros: [UInt8] = [UInt8](repeating: 0, count: 24)
        let keepaliveShape: [UInt8] = [2, 4, 0, 0, 0, 0x0d, 0x0c, 0x0b, 0x0a] + zeros
        let packet: [UInt8] = [3, 0x45, 0, 0, 20] + [UInt8](repeating: 7, count: 16)
        var seeds: [(name: String, bytes: [UInt8])] = []
        seeds.append(("initiation", [0] + exchange.m1))
        seeds.append(("initiation-short", [0] + Array(exchange.m1.prefix(40))))
        seeds.append(("response", [1] + exchange.m2))
        seeds.append(("response-flip", [1] + flipped))
        seeds.append(("frame", [2] + exchange.frame))
        seeds.append(("frame-keepalive-shape", keepaliveShape))
        seeds.append(("round-trip", packet))
        seeds.append(("round-trip-empty", [3]))
        seeds.append(("cookie-reply", [4] + exchange.cookieReply))
        return seeds
    }
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data, size > 0 else { return 0 }
    var input = FuzzInput(data, size)
    let mode = input.byte() % 5
    let bytes = input.rest()
    switch mode {
    case 0:
        if let consumed = try? responder.consumeInitiation(bytes, random: FuzzRandom(seed: 2)) {
            // mac2 is checked only under load, by the caller: every byte before it must be the real one's.
            let covered = WireGuardFormat.initiationMAC1Offset + 16
            require(Array(bytes.prefix(covered)) == Array(exchange.m1.prefix(covered)), "a raw initiation other than the real one was accepted")
            require(consumed.peerKey == FuzzKeys.client.publicKey && consumed.timestamp == stamp, "wrong key or timestamp")
        }
    case 1:
        if (try? initiator.consumeResponse(bytes, for: exchange.sent)) != nil {
            let covered = WireGuardFormat.responseMAC1Offset + 16  // mac2 is not checked by an initiator
            require(Array(bytes.prefix(covered)) == Array(exchange.m2.prefix(covered)), "a response the responder never made was accepted")
        }
    case 2:
        var frame = bytes
        let opened = frame.withUnsafeMutableBytes { DataFrame.open($0, session: exchange.server, now: 1) }
        if case .packet(let length) = opened {
            require(length <= bytes.count - 32, "opened more than the frame carried")
            // WireGuard authenticates no header byte (the receiver index only picks the session), but the
            // counter is the nonce: only the sealed counter and ciphertext open.
            require(Array(bytes.dropFirst(8)) == Array(exchange.frame.dropFirst(8)), "a frame nobody sealed was opened")
        }
    case 3:
        let packet = Array(bytes.prefix(1420))
        var frame = sealFrame(packet, session: exchange.client)
        require(frame.count == 32 + WireGuardFormat.paddedLength(packet.count, mtu: 1420), "frame length")
        let opened = frame.withUnsafeMutableBytes { DataFrame.open($0, session: exchange.server, now: 0) }
        guard case .packet(let length) = opened else { fatalError("a frame we sealed did not open: \(opened)") }
        require(Array(frame[16..<(16 + packet.count)]) == packet, "the packet changed on the way")
        require(frame[(16 + packet.count)..<(16 + length)].allSatisfy { $0 == 0 }, "padding is zeros")
    default:
        var jar = CookieJar(serverKey: FuzzKeys.server.publicKey, layout: .wireGuard)
        if jar.consumeReply(bytes, answering: exchange.m1, senderIndex: exchange.sent.senderIndex, now: 0) {
            require(bytes == exchange.cookieReply, "a cookie reply the server never made was accepted")
        }
    }
    return 0
}
