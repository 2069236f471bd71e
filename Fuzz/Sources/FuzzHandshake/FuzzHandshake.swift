// Fuzz target: handshake messages. `HandshakeResponder.precheckInitiation`/`consumeInitiation` take every
// datagram of type 1 a server receives; `HandshakeInitiator.consumeResponse` every type 2 a client does.
//
// Input: a mode byte, then
//   0: a raw initiation, then a raw response to a real initiation in flight. Anything the prechecks pass
//      has the exact length, header (version 3), key ID and mac1; no forged response is ever consumed.
//   1: a 288-byte initiation (or, when the next byte is odd, a 160-byte one: versions 1 and 2) whose
//      type, key ID and mac1 are made valid and whose version byte is fuzzed, so the bytes reach the
//      version check (another version: `unsupportedVersion`; a 160-byte "version 3": `malformed`) and the
//      Noise decryption (a fuzzed ephemeral key, including low-order points).
//   2: an initiation that really is encrypted to the server, carrying a fuzzed 148-byte payload
//      (timestamp, suite offer and padding, whose value is ignored) from a fuzzed client key; if consumed,
//      the response must be 264 bytes and name one of the offered suites, or none.
//   3: a real initiation answered by a response encrypted for it with a fuzzed version byte, carrying a
//      fuzzed 172-byte payload (suite, flags, IPv4 and IPv6 addresses and prefix lengths, DNS block); if
//      consumed, the result must say what the payload said; another version is refused as
//      `unsupportedVersion`, a DNS block that `DNSSettings(block:)` refuses as `invalidDNSSettings`.
//   4: a real exchange with fuzzed suite lists and one flipped bit: a flip anywhere but mac2 (not checked
//      until cookies exist) must be refused.

import Crypto
import FuzzSupport
import Transport

@_cdecl("FuzzHandshake_main")
public func main(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    runFuzzer(argc, argv) { data, size in fuzz(data, size) }
}

let serverKey = FuzzKeys.server.publicKey
let responder = HandshakeResponder(localStatic: FuzzKeys.server)
let initiator = HandshakeInitiator(localStatic: FuzzKeys.client, serverKey: serverKey)
let serverTags = StaticKeyTags(serverKey)
let clientTags = StaticKeyTags(FuzzKeys.client.publicKey)
let clients = [FuzzKeys.client, FuzzKeys.otherClient]

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutableRawPointer) -> Int32 {
    writeSeedsIfAsked {
        let (m1, _) = initiator.createInitiation(
            senderIndex: 7, timestamp: TAI64N(secondsSince1970: 1_700_000_000, nanoseconds: 0), random: FuzzRandom(seed: 3))
        let timestamp = TAI64N(secondsSince1970: 1_700_000_000, nanoseconds: 5).bytes
        let ids = CipherSuites.all.map { $0.wireID }
        let offer = ids + [UInt8](repeating: 0, count: 8 - ids.count)
        let v4: [UInt8] = [10, 8, 0, 2, 16, 10, 8, 0, 1]
        let no6 = [UInt8](repeating: 0, count: 33)
        let dual = v4 + IPv6Address("fd00::2")!.networkBytes + [64] + IPv6Address("fd00::1")!.networkBytes
        let dns = DNSSettings(
            resolvers: [.v4(IPv4Address(10, 8, 0, 1)), .v6(IPv6Address("fd00::1")!)], searchDomains: ["corp.example", "lab"]
        ).block
        var loopbackDNS = dns
        loopbackDNS[13] = 127
        return [
            ("raw-initiation", [0] + chunk(m1) + [UInt8](repeating: 0, count: WireFormat.responseLength)),
            ("raw-short", [0] + chunk([1, 0, 0, 0, 9])),
            ("mac-fixed-from-real", [1, 0] + m1),
            ("mac-fixed-version-1", [1, 0] + [1, 0] + m1[2...]),
            ("mac-fixed-legacy-version-2", [1, 1] + [1, 2] + m1[2..<160]),
            ("mac-fixed-legacy-version-1", [1, 1] + [1, 0] + m1[2..<160]),
            ("mac-fixed-low-order", [1, 0] + [UInt8](repeating: 0, count: WireFormat.initiationLength)),
            ("payload-allowed", [2, 0] + le64(9) + le32(5) + [0] + timestamp + offer),
            ("payload-padding-ignored", [2, 0] + le64(9) + le32(5) + [0] + timestamp + offer + [UInt8](repeating: 0xa5, count: 128)),
            ("payload-unknown-key", [2, 1] + le64(9) + le32(5) + [0] + timestamp + offer),
            ("payload-replayed", [2, 0] + le64(9) + le32(5) + [1] + timestamp + offer),
            ("payload-no-suite", [2, 0] + le64(9) + le32(5) + [0] + timestamp + [0x77, 0, 0, 0, 0, 0, 0, 0]),
            ("response-ok", [3] + le64(4) + le32(8) + le32(0) + [3] + [ids[0], 0] + v4 + no6),
            ("response-ipv6-egress", [3] + le64(4) + le32(8) + le32(0) + [2] + [ids[0], 1] + dual),
            ("response-dns", [3] + le64(4) + le32(8) + le32(0) + [3] + [ids[0], 1] + dual + dns),
            ("response-dns-loopback", [3] + le64(4) + le32(8) + le32(0) + [3] + [ids[0], 0] + v4 + no6 + loopbackDNS),
            ("response-version-1", [3] + le64(4) + le32(8) + le32(0) + [0] + [ids[0], 0] + v4 + no6),
            ("response-version-2", [3] + le64(4) + le32(8) + le32(0) + [2] + [ids[0], 0] + v4 + no6),
            ("response-no-suite", [3] + le64(4) + le32(8) + le32(0) + [3] + [0, 0] + v4 + no6),
            ("response-bad-prefix", [3] + le64(4) + le32(8) + le32(0) + [3] + [ids[0], 0, 10, 8, 0, 2, 33, 10, 8, 0, 1] + no6),
            ("response-bad-prefix6", [3] + le64(4) + le32(8) + le32(0) + [3] + [ids[0], 1] + dual.prefix(25) + [129] + dual.suffix(16)),
            ("exchange-clean", [4, 0xff, 0xff] + le64(5) + le16(0) + [0]),
            ("exchange-flip", [4, 0x01, 0x03] + le64(5) + le16(40) + [2]),
        ]
    }
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data, size > 0 else { return 0 }
    var input = FuzzInput(data, size)
    switch input.byte() % 5 {
    case 0: rawMessages(&input)
    case 1: macFixedInitiation(&input)
    case 2: encryptedInitiation(&input)
    case 3: encryptedResponse(&input)
    default: flippedExchange(&input)
    }
    return 0
}

func consume(_ message: [UInt8], allowed: Set<PublicKey> = [FuzzKeys.client.publicKey], last: TAI64N? = nil,
    seed: UInt64 = 0) -> Result<HandshakeResponder.InitiationConsumed, HandshakeFailure>
{
    let prechecked = Result { () throws(HandshakeFailure) in try responder.precheckInitiation(message) }
    // The engine runs the raw form before taking the core's lock; both must say the same.
    let raw = message.withUnsafeBytes { responder.precheckInitiation(raw: $0) }
    switch prechecked {
    case .success: require(raw == nil, "precheckInitiation(raw:) refused what precheckInitiation passed: \(raw!)")
    case .failure(let f): require(raw == f, "precheckInitiation(raw:) says \(String(describing: raw)), the other \(f)")
    }
    let result = Result { () throws(HandshakeFailure) in
        try responder.consumeInitiation(
            message, isAllowed: { allowed.contains($0) }, lastTimestamp: { _ in last }, random: FuzzRandom(seed: seed))
    }
    if case .success = prechecked {
        require(message.count == WireFormat.initiationLength, "precheck passed a \(message.count)-byte initiation")
        require(message[0] == 1 && message[1] == WireFormat.protocolVersion && message[2] == 0 && message[3] == 0,
            "precheck passed a bad header")
        require(Array(message[8..<12]) == serverTags.keyID, "precheck passed another server's key ID")
        let mac1 = WireFormat.initiationMAC1Offset
        require(message.withUnsafeBytes { serverTags.mac1(UnsafeRawBufferPointer(rebasing: $0[0..<mac1])) } == Array(message[mac1..<(mac1 + 16)]),
            "precheck passed a bad mac1")
    } else if case .failure(let pre) = prechecked, case .failure(let full) = result {
        require(pre == full, "consumeInitiation did not fail as its precheck did: \(full) vs \(pre)")
    }
    if case .success(let consumed) = result {
        require(message.count == WireFormat.initiationLength, "consumed a \(message.count)-byte initiation")
        require(allowed.contains(consumed.clientKey), "consumed an initiation from a key not on the allow-list")
        if let last { require(last < consumed.timestamp, "consumed a timestamp not newer than the last one") }
        require(consumed.offeredSuiteIDs.allSatisfy { $0 != 0 && CipherSuites.withID($0) != nil }, "unknown suite kept")
        require(consumed.offeredSuiteIDs.count <= WireFormat.maxOfferedSuites, "more than 8 suites offered")
        require(consumed.senderIndex == UInt32(message[4]) | UInt32(message[5]) << 8 | UInt32(message[6]) << 16 | UInt32(message[7]) << 24,
            "sender index is not bytes 4..<8")
    }
    return result
}

/// Answers a consumed initiation and checks the response's shape.
func answer(_ consumed: HandshakeResponder.InitiationConsumed, index: UInt32) -> [UInt8] {
    let (response, result) = responder.createResponse(to: consumed, senderIndex: index, assignment: FuzzHandshakes.assignment)
    require(response.count == WireFormat.responseLength, "a response of \(response.count) bytes")
    let chosen = responder.chooseSuite(for: consumed.offeredSuiteIDs)
    require((result == nil) == (chosen == nil), "a session without a suite, or a suite without a session")
    if let result, let chosen {
        require(consumed.offeredSuiteIDs.contains(result.suite.wireID) && result.suite.wireID == chosen.wireID,
            "the server chose a suite the client did not offer")
        require(result.remoteIndex == consumed.senderIndex && result.localIndex == index, "session indexes")
    }
    require(response[0] == 2 && Array(response[8..<12]) == le32(consumed.senderIndex), "response header")
    return response
}

func rawMessages(_ input: inout FuzzInput) {
    let initiation = input.chunk()
    _ = consume(initiation)  // a seed holds a genuine one; consume() checks whatever it accepts
    let response = input.rest()
    let (_, sent) = initiator.createInitiation(
        senderIndex: 8, timestamp: TAI64N(secondsSince1970: 1, nanoseconds: 0), random: FuzzRandom(seed: 4))
    if let index = HandshakeInitiator.receiverIndex(ofResponse: response) {
        require(response.count == WireFormat.responseLength && response[0] == 2, "receiverIndex(ofResponse:) shape")
        require(index == UInt32(response[8]) | UInt32(response[9]) << 8 | UInt32(response[10]) << 16 | UInt32(response[11]) << 24,
            "receiverIndex(ofResponse:) bytes")
    }
    if (try? initiator.consumeResponse(response, for: sent)) != nil {
        fatalError("invariant broken: a raw response was consumed")
    }
}

func macFixedInitiation(_ input: inout FuzzInput) {
    let legacy = input.byte() & 1 == 1
    var message = input.fixed(legacy ? WireFormat.legacyInitiationLength : WireFormat.initiationLength)
    // Byte 1 is left as fuzzed, so mostly 3 (the seeds) and sometimes another version.
    message.replaceSubrange(0..<4, with: [1, message[1], 0, 0])
    message.replaceSubrange(8..<12, with: serverTags.keyID)
    let mac1 = message.count - 32  // every version's mac1 is 32 bytes before the end
    let mac = message.withUnsafeBytes { serverTags.mac1(UnsafeRawBufferPointer(rebasing: $0[0..<mac1])) }
    message.replaceSubrange(mac1..<(mac1 + 16), with: mac)
    if legacy && message[1] == WireFormat.protocolVersion {
        // Versions 1 and 2 were 160 bytes long: a 160-byte "version 3" is no message of any version.
        guard case .failure(let f) = consume(message), f == .malformed else {
            fatalError("invariant broken: a 160-byte initiation claiming version 3 was not refused as malformed")
        }
        return
    }
    if message[1] != WireFormat.protocolVersion {
        let precheck = Result { () throws(HandshakeFailure) in try responder.precheckInitiation(message) }
        guard case .failure(let f) = precheck, f == .unsupportedVersion("") else {
            fatalError("invariant broken: an initiation of version byte \(message[1]) was not refused as unsupportedVersion")
        }
        guard case .failure(let g) = consume(message), g == .unsupportedVersion("") else {
            fatalError("invariant broken: an initiation of version byte \(message[1]) was consumed")
        }
        return
    }
    require((try? responder.precheckInitiation(message)) != nil, "a well-formed initiation with a valid mac1 failed the precheck")
    switch consume(message) {
    case .success: break  // only a genuine initiation (a seed's) gets here; consume() checked what it returned
    case .failure(let f):
        require(f == .corrupted || f == .invalidPublicKey, "an undecryptable initiation was refused as \(f)")
    }
}

func encryptedInitiation(_ input: inout FuzzInput) {
    let key = clients[Int(input.byte()) % clients.count]
    let ephemeralSeed = input.uint64()
    let senderIndex = input.uint32()
    let withLast = input.byte()
    let payload = input.fixed(WireFormat.initiationPayloadLength)
    let last = withLast & 1 == 1 ? TAI64N(bytes: Array(payload[0..<12])) : nil
    var noise = NoiseHandshake(
        pattern: .ikpsk2, initiator: true, prologue: WireFormat.prologue, localStatic: key,
        localEphemeral: PrivateKey(random: FuzzRandom(seed: ephemeralSeed)), remoteStatic: serverKey,
        psk: SecretBytes(zeros: 32))
    guard let body = try? noise.writeMessage(payload: payload) else { fatalError("writing message 1 failed") }
    var message = [1, WireFormat.protocolVersion, 0, 0] + le32(senderIndex) + serverTags.keyID + body
    message += message.withUnsafeBytes { serverTags.mac1($0) }
    message += [UInt8](repeating: 0, count: 16)
    let result = consume(message, last: last, seed: ephemeralSeed)
    let timestamp = TAI64N(bytes: Array(payload[0..<12]))
    switch result {
    case .success(let consumed):
        require(key.publicKey == FuzzKeys.client.publicKey, "consumed an initiation from a key not allowed")
        require(timestamp != nil && consumed.timestamp == timestamp, "the consumed timestamp is not the payload's")
        // Only the 8 offer bytes count; the padding after them is ignored whatever its value.
        let expectedOffer = payload[12..<20].filter { $0 != 0 && CipherSuites.withID($0) != nil }
        require(consumed.offeredSuiteIDs == Array(expectedOffer), "the offer is not the payload's, in order")
        _ = answer(consumed, index: senderIndex ^ 0xffff)
    case .failure(let f):
        switch f {
        case .unknownClientKey: require(key.publicKey != FuzzKeys.client.publicKey, "the allowed key was refused")
        case .replayedInitiation: require(last != nil, "a replay without an earlier timestamp")
        case .malformed: require(timestamp == nil, "a well-formed payload refused as malformed")
        default: fatalError("invariant broken: a genuine initiation was refused as \(f)")
        }
    }
}

func encryptedResponse(_ input: inout FuzzInput) {
    let seed = input.uint64()
    let senderIndex = input.uint32()
    let receiverXor = input.uint32()
    let version = input.byte()
    let payload = input.fixed(WireFormat.responsePayloadLength)
    let (m1, sent) = initiator.createInitiation(
        senderIndex: 0x0102_0304, timestamp: TAI64N(secondsSince1970: 2, nanoseconds: 0), random: FuzzRandom(seed: seed))
    var noise = NoiseHandshake(
        pattern: .ikpsk2, initiator: false, prologue: WireFormat.prologue, localStatic: FuzzKeys.server,
        localEphemeral: PrivateKey(random: FuzzRandom(seed: seed &+ 1)), remoteStatic: nil, psk: SecretBytes(zeros: 32))
    guard (try? noise.readMessage(Array(m1[12..<WireFormat.initiationMAC1Offset]))) != nil,
        let body = try? noise.writeMessage(payload: payload)
    else {
        fatalError("a real initiation must be readable")
    }
    var message = [2, version, 0, 0] + le32(senderIndex) + le32(sent.senderIndex ^ receiverXor) + body
    message += message.withUnsafeBytes { clientTags.mac1($0) }
    message += [UInt8](repeating: 0, count: 16)
    require(message.count == WireFormat.responseLength, "test response layout")
    let result = Result { () throws(HandshakeFailure) in try initiator.consumeResponse(message, for: sent) }
    switch result {
    case .success(let r):
        require(receiverXor == 0, "a response for another initiation was consumed")
        require(version == WireFormat.protocolVersion, "a response of version byte \(version) was consumed")
        require(payload[0] != 0 && r.suite.wireID == payload[0], "the session's suite is not the response's")
        require(initiator.offeredSuites.contains { $0.wireID == payload[0] }, "a suite that was never offered")
        require(Int(payload[6]) == r.assignment.client.length && payload[6] <= 32, "prefix length")
        require(r.assignment.client.address.value == UInt32(payload[2]) << 24 | UInt32(payload[3]) << 16 | UInt32(payload[4]) << 8 | UInt32(payload[5]),
            "client address")
        require(r.assignment.server.value == UInt32(payload[7]) << 24 | UInt32(payload[8]) << 16 | UInt32(payload[9]) << 8 | UInt32(payload[10]),
            "server address")
        if payload[27] == 0 {
            require(r.assignment.client6 == nil && r.assignment.server6 == nil && !r.assignment.ipv6Egress, "IPv6 without a length")
        } else {
            require(r.assignment.client6?.length == Int(payload[27]) && payload[27] <= 128, "IPv6 prefix length")
            require(r.assignment.client6?.address.networkBytes == Array(payload[11..<27]), "client IPv6 address")
            require(r.assignment.server6?.networkBytes == Array(payload[28..<44]), "server IPv6 address")
            require(r.assignment.ipv6Egress == (payload[1] & 1 == 1), "the egress flag is not bit 0")
        }
        let block = payload[WireFormat.responseAddressingLength...]
        require((try? DNSSettings(block: block)) == r.assignment.dns, "the DNS settings are not the block's")
        require(r.assignment.dns.problem == nil, "accepted DNS settings a server could not push")
        // What the client read, written again, is the payload (the reserved flag bits aside).
        var written = r.assignment.responsePayload
        written[0] = payload[0]
        written[1] |= payload[1] & 0xfe
        require(written == payload, "the payload does not round-trip")
        require(r.remoteIndex == senderIndex && r.localIndex == sent.senderIndex && r.isInitiator, "indexes")
        let (i2r, r2i) = noise.split()
        guard let k1 = i2r.key, let k2 = r2i.key else { fatalError("split yields keys") }
        require(r.sendKey.constantTimeEquals(k1) && r.receiveKey.constantTimeEquals(k2), "the two sides' keys differ")
    case .failure(let f):
        switch f {
        case .unexpectedResponse: require(receiverXor != 0, "the right receiver index was refused")
        case .unsupportedVersion: require(version != WireFormat.protocolVersion && receiverXor == 0, "version 3 refused by version")
        case .invalidDNSSettings:
            require(version == WireFormat.protocolVersion && receiverXor == 0 && payload[0] != 0, "a DNS refusal before the other checks")
            require((try? DNSSettings(block: payload[WireFormat.responseAddressingLength...])) == nil, "a valid DNS block refused")
        case .noCommonSuite: require(payload[0] == 0 && version == WireFormat.protocolVersion, "a chosen suite refused as none in common")
        case .malformed:
            let no6Junk = payload[27] == 0 && (payload[1] & 1 != 0 || payload[11..<27].contains { $0 != 0 } || payload[28..<44].contains { $0 != 0 })
            require(!initiator.offeredSuites.contains { $0.wireID == payload[0] } || payload[6] > 32 || payload[27] > 128 || no6Junk,
                "a well-formed response refused as malformed")
        default: fatalError("invariant broken: a genuine response was refused as \(f)")
        }
    }
}

func flippedExchange(_ input: inout FuzzInput) {
    let offerBits = input.byte()
    let acceptBits = input.byte()
    let seed = input.uint64()
    let flipAt = Int(input.uint16())
    let flip = input.byte()
    let suites = CipherSuites.available
    var offered = suites.enumerated().filter { offerBits & (1 << $0.offset) != 0 }.map(\.element)
    if offered.isEmpty { offered = [suites[0]] }
    let accepted = suites.enumerated().filter { acceptBits & (1 << $0.offset) != 0 }.map(\.element)
    let client = HandshakeInitiator(localStatic: FuzzKeys.client, serverKey: serverKey, offeredSuites: offered)
    let server = HandshakeResponder(localStatic: FuzzKeys.server, acceptedSuites: accepted)
    var (m1, sent) = client.createInitiation(
        senderIndex: 1, timestamp: TAI64N(secondsSince1970: 3, nanoseconds: 0), random: FuzzRandom(seed: seed))
    let flipInitiation = flip & 0x80 == 0
    let bit = UInt8(1) << (flip % 8)
    if flip != 0 && flipInitiation { m1[flipAt % m1.count] ^= bit }
    let consumed = try? server.consumeInitiation(
        m1, isAllowed: { $0 == FuzzKeys.client.publicKey }, lastTimestamp: { _ in nil }, random: FuzzRandom(seed: seed))
    if flip != 0 && flipInitiation {
        let inMAC2 = flipAt % m1.count >= WireFormat.initiationMAC2Offset
        require((consumed != nil) == inMAC2, "an initiation with bit \(flip % 8) of byte \(flipAt % m1.count) flipped: consumed=\(consumed != nil)")
        if consumed == nil { return }
    }
    guard let consumed else { fatalError("invariant broken: a genuine initiation was refused") }
    var (m2, serverResult) = server.createResponse(to: consumed, senderIndex: 2, assignment: FuzzHandshakes.assignment)
    require(m2.count == WireFormat.responseLength, "response length")
    if flip != 0 && !flipInitiation { m2[flipAt % m2.count] ^= bit }
    let result = Result { () throws(HandshakeFailure) in try client.consumeResponse(m2, for: sent) }
    let common = offered.contains { o in accepted.contains { $0.wireID == o.wireID } }
    require((serverResult != nil) == common, "a session exactly when a suite is in common")
    if flip != 0 && !flipInitiation && flipAt % m2.count < WireFormat.responseMAC1Offset + 16 {
        if case .success = result { fatalError("invariant broken: a response with a flipped bit (byte \(flipAt % m2.count)) was consumed") }
        return
    }
    switch result {
    case .success(let r):
        guard let s = serverResult else { fatalError("invariant broken: the client has a session the server lacks") }
        require(r.suite.wireID == s.suite.wireID, "the two sides chose different suites")
        require(r.sendKey.constantTimeEquals(s.receiveKey) && r.receiveKey.constantTimeEquals(s.sendKey), "keys differ")
        require(r.assignment == FuzzHandshakes.assignment, "assignment differs")
    case .failure(let f):
        require(f == .noCommonSuite && !common, "a genuine response was refused as \(f)")
    }
}
