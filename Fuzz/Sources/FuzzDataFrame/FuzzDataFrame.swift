// Fuzz target: data frames. `DataFrame.receiverIndex` and `DataFrame.open` take every UDP datagram of
// type 4; `IPv4Header`/`IPv6Header`/`IPPacket` take the decrypted inner packet (cryptokey routing), and a
// client answers an IPv6 packet its tunnel does not carry with `ICMPv6Unreachable`.
//
// Input: a mode byte, then
//   0: a raw datagram. receiverIndex must agree with the frame layout; open must never authenticate it;
//      the IPv4 and IPv6 parsers must agree with naive references; an ICMPv6 answer to it, if one is
//      allowed, is well formed (at most 1280 bytes, checksum, body).
//   1: suite, counter, tamper position and an inner packet, sealed with a real session and opened by its
//      peer. Untouched, it must open to the same bytes exactly once (the second open is a replay);
//      with any bit flipped it must never open. Seal must write neither before nor past its buffer.
//   2: a sequence of counters, each sealed and opened in turn; the replay window's verdicts must match a
//      naive reference (a set of seen counters and the 8128-counter window of docs/PROTOCOL.md).

import Crypto
import FuzzSupport
@testable import Transport

@_cdecl("FuzzDataFrame_main")
public func main(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    runFuzzer(argc, argv) { data, size in fuzz(data, size) }
}

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutableRawPointer) -> Int32 {
    writeSeedsIfAsked {
        let ping = ipv4Packet(source: [10, 8, 0, 2], destination: [10, 8, 0, 1], payload: Array("ping".utf8))
        var seeds: [(name: String, bytes: [UInt8])] = []
        // A real frame as the raw mode sees it (it must not open: the fuzz session has other keys).
        let (client, _) = FuzzHandshakes.perSuite[0]
        let sender = Session(result: client, createdAt: 0)
        var frame = [UInt8](repeating: 0, count: DataFrame.headerLength + ping.count + DataFrame.tagLength)
        frame.replaceSubrange(DataFrame.headerLength..<(DataFrame.headerLength + ping.count), with: ping)
        _ = frame.withUnsafeMutableBytes { DataFrame.seal($0.baseAddress!, packetLength: ping.count, session: sender, mtu: ping.count) }
        seeds.append(("raw-frame", [0] + frame))
        seeds.append(("raw-ipv4", [0] + ping))
        let ping6 = ipv6Packet(source: [0xfd] + Array(repeating: 0, count: 14) + [2],
            destination: [0x20, 0x01, 0x0d, 0xb8] + Array(repeating: 0, count: 11) + [1], nextHeader: 58,
            payload: [128, 0, 0, 0, 0, 1, 0, 1])
        seeds.append(("raw-ipv6", [0] + ping6))
        seeds.append(("raw-ipv6-error", [0] + ipv6Packet(source: Array(ping6[8..<24]), destination: Array(ping6[24..<40]),
            nextHeader: 58, payload: [1, 1, 0, 0, 0, 0, 0, 0] + ping6)))
        seeds.append(("raw-ipv6-fragment", [0] + ipv6Packet(source: Array(ping6[8..<24]), destination: Array(ping6[24..<40]),
            nextHeader: 44, payload: [17, 0, 0, 8, 0, 0, 0, 1] + Array(repeating: 7, count: 16))))
        seeds.append(("raw-ipv6-big", [0] + ipv6Packet(source: Array(ping6[8..<24]), destination: Array(ping6[24..<40]),
            nextHeader: 17, payload: Array(repeating: 0x5a, count: 1400))))
        seeds.append(("raw-short", [0, 4, 0, 0, 0, 1, 2, 3, 4]))
        for suite in 0..<FuzzHandshakes.perSuite.count {
            seeds.append(("sealed-\(suite)", [1, UInt8(suite)] + le64(0) + [0, 0, 0, 0] + ping))
            seeds.append(("sealed-ipv6-\(suite)", [1, UInt8(suite)] + le64(0) + [0, 0, 0, 0] + ping6))
            seeds.append(("sealed-keepalive-\(suite)", [1, UInt8(suite)] + le64(7) + [0, 0, 0, 0]))
        }
        seeds.append(("sealed-tampered", [1, 0] + le64(1) + [1, 20, 0, 3] + ping))
        seeds.append(("sealed-counter-limit", [1, 0] + le64(Limits.rejectAfterMessages) + [0, 0, 0, 0] + ping))
        seeds.append(("sealed-expired", [1, 0] + le64(2) + [0, 0, 0, 1] + ping))
        seeds.append(("replay-window", [2, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0xc0, 0x1f, 0, 0x40, 0xc0, 0xe0, 0, 0, 0, 0]))
        return seeds
    }
    return 0
}

/// An IPv6 packet with a 40-byte header and `payload` after it.
func ipv6Packet(source: [UInt8], destination: [UInt8], nextHeader: UInt8, payload: [UInt8]) -> [UInt8] {
    [0x60, 0, 0, 0, UInt8(payload.count >> 8), UInt8(payload.count & 0xff), nextHeader, 64] + source + destination + payload
}

/// A minimal IPv4 packet (header checksum left zero: the core does not check it).
func ipv4Packet(source: [UInt8], destination: [UInt8], payload: [UInt8]) -> [UInt8] {
    let total = 20 + payload.count
    return [0x45, 0, UInt8(total >> 8), UInt8(total & 0xff), 0, 0, 0x40, 0, 64, 17, 0, 0] + source + destination
        + payload
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data, size > 0 else { return 0 }
    var input = FuzzInput(data, size)
    switch input.byte() % 3 {
    case 0: raw(input.rest())
    case 1: sealed(&input)
    default: replaySequence(&input)
    }
    return 0
}

/// The raw mode's receiving keys: another handshake than the one that sealed the seeds, so a seed frame
/// (like every other raw datagram) is a forgery to it.
let rawSessionServer = FuzzHandshakes.results(suite: CipherSuites.available[0], seed: 2).server

func sessions(_ which: UInt8) -> (sender: Session, receiver: Session) {
    let pair = FuzzHandshakes.perSuite[Int(which) % FuzzHandshakes.perSuite.count]
    return (Session(result: pair.client, createdAt: 0), Session(result: pair.server, createdAt: 0))
}

func raw(_ datagram: [UInt8]) {
    // Exactly sized, so the address sanitizer sees any read past the datagram.
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: datagram.count, alignment: 8)
    defer { buffer.deallocate() }
    buffer.copyBytes(from: datagram)
    let shaped = datagram.count >= 32 && datagram[0] == 4 && datagram[1] == 0 && datagram[2] == 0 && datagram[3] == 0
    if let index = DataFrame.receiverIndex(UnsafeRawBufferPointer(buffer)) {
        require(shaped, "receiverIndex accepted a datagram not shaped like a data frame")
        require(index == UInt32(datagram[4]) | UInt32(datagram[5]) << 8 | UInt32(datagram[6]) << 16 | UInt32(datagram[7]) << 24,
            "receiverIndex is not bytes 4..<8, little-endian")
    } else {
        require(!shaped, "receiverIndex refused a datagram shaped like a data frame")
    }
    let receiver = Session(result: rawSessionServer, createdAt: 0)
    if case .packet = DataFrame.open(buffer, session: receiver, now: 0) {
        fatalError("invariant broken: a datagram not sealed under the session's key opened")
    }
    buffer.copyBytes(from: datagram)
    checkIPv4(datagram, buffer: UnsafeRawBufferPointer(buffer))
    checkIPv6(datagram, buffer: UnsafeRawBufferPointer(buffer))
}

/// IPv4Header against a naive reading of RFC 791's header.
func checkIPv4(_ packet: [UInt8], buffer: UnsafeRawBufferPointer) {
    let parsed = IPv4Header.parse(buffer)
    var expected: (source: UInt32, destination: UInt32, total: Int)? = nil
    if packet.count >= 20, packet[0] >> 4 == 4 {
        let ihl = Int(packet[0] & 0x0f) * 4
        let total = Int(packet[2]) << 8 | Int(packet[3])
        if ihl >= 20, total >= ihl, total <= packet.count {
            let s = packet[12..<16].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
            let d = packet[16..<20].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
            expected = (s, d, total)
        }
    }
    switch (parsed, expected) {
    case (nil, nil): break
    case (let p?, let e?):
        require(p.source.value == e.source && p.destination.value == e.destination && p.totalLength == e.total,
            "IPv4Header.parse read the wrong fields: \(p) vs \(e)")
    default:
        fatalError("invariant broken: IPv4Header.parse says \(String(describing: parsed)), reference \(String(describing: expected))")
    }
    if let destination = IPv4Header.destination(buffer) {
        require(packet.count >= 20 && packet[0] >> 4 == 4, "destination() of a packet that is not IPv4")
        require(destination.value == packet[16..<20].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }, "destination() bytes")
    } else {
        require(!(packet.count >= 20 && packet[0] >> 4 == 4), "destination() refused an IPv4 packet")
    }
}

func sealed(_ input: inout FuzzInput) {
    let (sender, receiver) = sessions(input.byte())
    let counter = input.uint64()
    let tamper = input.byte()
    let tamperAt = Int(input.uint16())
    let expired = input.byte() & 1 == 1
    let packet = Array(input.rest().prefix(Limits.maxPacketLength))
    sender.sendCounter.store(counter, ordering: .relaxed)

    let capacity = DataFrame.headerLength + packet.count + DataFrame.tagLength
    let buffer = GuardedBuffer(count: capacity)
    (buffer.start + DataFrame.headerLength).copyMemory(from: packet, byteCount: packet.count)
    let length = DataFrame.seal(buffer.start, packetLength: packet.count, session: sender, mtu: packet.count)
    buffer.checkGuards("DataFrame.seal")
    guard counter < Limits.rejectAfterMessages else {
        require(length == nil, "seal used counter \(counter) at or past REJECT_AFTER_MESSAGES")
        return
    }
    require(length == capacity, "seal returned \(String(describing: length)) for a \(packet.count)-byte packet")
    let frame = Array(buffer.bytes)
    require(DataFrame.receiverIndex(UnsafeRawBufferPointer(buffer.bytes)) == receiver.localIndex,
        "a sealed frame names the receiver's index")

    var copy = frame
    if tamper != 0 {
        copy[tamperAt % copy.count] ^= 1 << (tamper % 8)
    }
    let opened = copy.withUnsafeMutableBytes { DataFrame.open($0, session: receiver, now: expired ? 181_000_000_000 : 0) }
    if tamper != 0 {
        if case .packet = opened { fatalError("invariant broken: a frame with a flipped bit opened") }
        return
    }
    if expired {
        require(opened == .dropped(.expired), "a frame opened on an expired session: \(opened)")
        return
    }
    require(opened == .packet(length: packet.count), "a sealed frame did not open: \(opened)")
    require(Array(copy[DataFrame.headerLength..<(DataFrame.headerLength + packet.count)]) == packet,
        "the opened packet differs from the sealed one")
    var again = frame
    let replayed = again.withUnsafeMutableBytes { DataFrame.open($0, session: receiver, now: 0) }
    require(replayed == .dropped(.replay), "a frame opened twice: \(replayed)")
}

/// Reference replay filter: every accepted counter remembered, window as in docs/PROTOCOL.md.
struct NaiveReplay {
    var seen = Set<UInt64>()
    var next: UInt64 = 0  // one more than the greatest accepted counter

    mutating func accept(_ counter: UInt64) -> Bool {
        guard counter < Limits.rejectAfterMessages else { return false }
        let shifted = counter + 1
        if shifted < next && next - shifted > ReplayWindow.windowSize { return false }
        guard seen.insert(counter).inserted else { return false }
        next = max(next, shifted)
        return true
    }
}

func replaySequence(_ input: inout FuzzInput) {
    let (sender, receiver) = sessions(input.byte())
    var reference = NaiveReplay()
    var counter: UInt64 = 0
    var steps = 0
    let packet = [UInt8](repeating: 0x45, count: 8)
    var frame = [UInt8](repeating: 0, count: DataFrame.headerLength + packet.count + DataFrame.tagLength)
    while !input.isAtEnd && steps < 512 {
        steps += 1
        let op = input.byte()
        let delta = Int64(Int16(bitPattern: input.uint16()))
        if op & 0x80 != 0 {
            counter = input.uint64()  // anywhere, including near the limit
        } else {
            counter = counter &+ UInt64(bitPattern: delta &* Int64(op & 0x7f | 1))
        }
        sender.sendCounter.store(counter, ordering: .relaxed)
        frame.replaceSubrange(DataFrame.headerLength..<(DataFrame.headerLength + packet.count), with: packet)
        let sealed = frame.withUnsafeMutableBytes { DataFrame.seal($0.baseAddress!, packetLength: packet.count, session: sender, mtu: packet.count) }
        guard sealed != nil else {
            require(counter >= Limits.rejectAfterMessages, "seal refused counter \(counter)")
            continue
        }
        let opened = frame.withUnsafeMutableBytes { DataFrame.open($0, session: receiver, now: 0) }
        let expected = reference.accept(counter)
        require((opened == .packet(length: packet.count)) == expected,
            "replay window: counter \(counter) gave \(opened), reference says \(expected ? "accept" : "refuse")")
        if !expected { require(opened == .dropped(.replay), "a refused counter is dropped as a replay, not \(opened)") }
    }
}
