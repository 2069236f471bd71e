// Fuzz target: cookie replies and the other DoS defences (Sources/Transport/Cookies.swift). A client
// consumes type-3 datagrams from anyone (`CookieJar.consumeReply`); a server under load checks mac2
// (`CookieChecker.verifyMAC2`) on initiations from anyone, and keeps per-source rate limits.
//
// Input: a mode byte, then
//   0: a raw cookie reply to a real initiation in flight: never accepted unless the server made it.
//   1: a fuzzed initiation and source: the server's reply is 64 bytes and accepted by the client that
//      sent that initiation, and the mac2 it then stamps verifies for that source only; with one bit of
//      the reply flipped, the reply is refused.
//   2: a rate-limit script (sources and time steps): no source gets more than the burst plus the refill
//      over the elapsed time, and the load meter says "under load" only after more than the threshold
//      of initiations in the last few seconds.

import Crypto
import FuzzSupport
@testable import Transport

@_cdecl("FuzzCookie_main")
public func main(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    runFuzzer(argc, argv) { data, size in fuzz(data, size) }
}

let serverKey = FuzzKeys.server.publicKey
let initiator = HandshakeInitiator(localStatic: FuzzKeys.client, serverKey: serverKey)

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutableRawPointer) -> Int32 {
    writeSeedsIfAsked {
        let (m1, _) = initiator.createInitiation(
            senderIndex: 0x0a0b0c0d, timestamp: TAI64N(secondsSince1970: 1, nanoseconds: 0), random: FuzzRandom(seed: 1))
        var checker = CookieChecker(serverKey: serverKey)
        let reply = checker.makeReply(
            to: m1, source: Endpoint(address: IPv4Address(198, 51, 100, 7), port: 40000), now: 1, random: FuzzRandom(seed: 2))
        return [
            ("raw-reply", [0] + reply),
            ("raw-short", [0, 3, 0, 0, 0, 0x0d, 0x0c, 0x0b, 0x0a]),
            ("round-trip", [1] + le64(7) + [198, 51, 100, 7] + le16(40000) + [0] + le16(0) + m1),
            ("round-trip-flip", [1] + le64(7) + [198, 51, 100, 7] + le16(40000) + [3] + le16(40) + m1),
            ("round-trip-zeros", [1] + le64(0) + [0, 0, 0, 0] + le16(0) + [0] + le16(0)),
            ("rate-one-source", [2] + Array(repeating: [0, 0, 0], count: 30).flatMap { $0 }),
            ("rate-many", [2] + (0..<60).flatMap { [UInt8($0 % 7), UInt8($0 % 3), 1] }),
        ]
    }
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data, size > 0 else { return 0 }
    var input = FuzzInput(data, size)
    switch input.byte() % 3 {
    case 0: rawReply(input.rest())
    case 1: roundTrip(&input)
    default: rateLimits(&input)
    }
    return 0
}

func rawReply(_ reply: [UInt8]) {
    // The jar's initiation in flight: made with another seed than the seeds' reply answers.
    let (m1, sent) = initiator.createInitiation(
        senderIndex: 0x0a0b0c0d, timestamp: TAI64N(secondsSince1970: 1, nanoseconds: 0), random: FuzzRandom(seed: 99))
    var jar = CookieJar(serverKey: serverKey)
    if jar.consumeReply(reply, answering: m1, senderIndex: sent.senderIndex, now: 0) {
        fatalError("invariant broken: a cookie reply the server never made was accepted (\(reply.count) bytes)")
    }
    var stamped = m1
    jar.stamp(&stamped, now: 0)
    require(stamped == m1, "a jar without a cookie changed mac2")
}

func roundTrip(_ input: inout FuzzInput) {
    let seed = input.uint64()
    let address = input.fixed(4)
    let port = input.uint16()
    let flip = input.byte()
    let flipAt = Int(input.uint16())
    // Any 160 bytes as the initiation: the cookie path runs after mac1, but its code takes what it gets.
    let initiation = input.fixed(WireFormat.initiationLength)
    let source = Endpoint(address: IPv4Address(address[0], address[1], address[2], address[3]), port: port)
    let random = FuzzRandom(seed: seed)
    var checker = CookieChecker(serverKey: serverKey)
    let now: UInt64 = 5_000_000_000
    var reply = checker.makeReply(to: initiation, source: source, now: now, random: random)
    require(reply.count == WireFormat.cookieReplyLength, "a \(reply.count)-byte cookie reply")
    require(reply[0] == 3 && reply[1] == 0 && reply[2] == 0 && reply[3] == 0 && Array(reply[4..<8]) == Array(initiation[4..<8]),
        "cookie reply header")
    let senderIndex = UInt32(initiation[4]) | UInt32(initiation[5]) << 8 | UInt32(initiation[6]) << 16 | UInt32(initiation[7]) << 24
    var jar = CookieJar(serverKey: serverKey)
    if flip != 0 {
        reply[flipAt % reply.count] ^= 1 << (flip % 8)
        require(!jar.consumeReply(reply, answering: initiation, senderIndex: senderIndex, now: now),
            "a cookie reply with byte \(flipAt % reply.count) flipped was accepted")
        return
    }
    require(!jar.consumeReply(reply, answering: initiation, senderIndex: senderIndex &+ 1, now: now),
        "a cookie reply for another sender index was accepted")
    require(jar.consumeReply(reply, answering: initiation, senderIndex: senderIndex, now: now), "a genuine cookie reply was refused")
    var stamped = initiation
    jar.stamp(&stamped, now: now)
    require(Array(stamped[0..<WireFormat.initiationMAC2Offset]) == Array(initiation[0..<WireFormat.initiationMAC2Offset]),
        "stamping changed more than mac2")
    require(checker.verifyMAC2(stamped, source: source, now: now, random: random), "mac2 from a fresh cookie does not verify")
    let other = Endpoint(address: source.address, port: source.port &+ 1)
    require(!checker.verifyMAC2(stamped, source: other, now: now, random: random), "mac2 verifies for another source")
    // Past the cookie's lifetime the jar stamps nothing and the server's secret has changed.
    let later = now + (Limits.cookieLifetime + 1) * 1_000_000_000
    var stale = initiation
    jar.stamp(&stale, now: later)
    require(stale == initiation, "an expired cookie was stamped")
    require(!checker.verifyMAC2(stamped, source: source, now: later, random: random), "mac2 verified after the secret changed")
}

func rateLimits(_ input: inout FuzzInput) {
    var limiter = SourceRateLimiter()
    var meter = LoadMeter()
    var now: UInt64 = 1_000_000_000
    var granted: [UInt8: [UInt64]] = [:]
    var recorded: [UInt64] = []
    var steps = 0
    while !input.isAtEnd && steps < 2000 {
        steps += 1
        let who = input.byte() % 8
        let step = UInt64(input.byte())
        let scale = input.byte()
        // 0.1 ms or 10 ms units. `now` is the monotonic clock in the engine, so it never steps back.
        now &+= step * (scale & 1 == 1 ? 10_000_000 : 100_000)
        let source = IPAddress.v4(IPv4Address(10, 0, 0, who))
        if limiter.allow(source, now: now) { granted[who, default: []].append(now) }
        recorded.append(now)
        let loaded = meter.record(now: now)
        // Under load means more than the threshold in this or the previous window; a window starts at its
        // first initiation and the previous one is kept while it began less than 2 s before this one
        // started, so those initiations all lie within the last 3 s.
        if loaded {
            let recent = recorded.filter { now - $0 < 3_000_000_000 }.count
            require(recent > Limits.underLoadInitiationsPerSecond, "under load after \(recent) initiations in three seconds")
        }
    }
    for (_, times) in granted {
        guard let first = times.first, let last = times.last else { continue }
        let seconds = Double(last - first) / 1e9
        let allowed = Limits.initiationBurstPerSource + seconds * Limits.initiationsPerSecondPerSource + 1
        require(Double(times.count) <= allowed, "\(times.count) initiations granted in \(seconds) s to one source")
    }
}
