// Protocol version 3's DNS block (docs/PROTOCOL.md, "The DNS block"): its bytes, the round trip through a
// real handshake, every refusal on the client, the padded 288-byte initiation, and the server's check of
// its --dns/--dns-search settings.

import Crypto
import Testing

@testable import Transport

@Suite struct DNSSettingsTests {
    let f = Fixture()
    let pushed = DNSSettings(
        resolvers: [.v4(IPv4Address(10, 8, 0, 1)), .v6(IPv6Address("fd00:1:2:3::1")!)], searchDomains: ["corp.example", "lab.test"])

    @Test func theBlockHasTheDocumentedLayout() throws {
        let b = pushed.block
        #expect(b.count == 128 && WireFormat.dnsBlockLength == 128)
        #expect(b[0] == 2, "resolver count")
        #expect(Array(b[1..<17]) == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 8, 0, 1], "IPv4 as ::ffff:10.8.0.1")
        #expect(Array(b[17..<33]) == IPv6Address("fd00:1:2:3::1")!.networkBytes)
        #expect(b[33..<65].allSatisfy { $0 == 0 }, "unused slots zero")
        #expect(b[65] == 21, "search list length")
        #expect(Array(b[66..<87]) == Array("corp.example lab.test".utf8))
        #expect(b[87...].allSatisfy { $0 == 0 })
        #expect(DNSSettings.none.block == [UInt8](repeating: 0, count: 128))
        #expect(try DNSSettings(block: b[...]) == pushed)
        #expect(try DNSSettings(block: DNSSettings.none.block[...]) == .none)
    }

    @Test func theLargestSettingsFitAndRoundTrip() throws {
        let four = DNSSettings(
            resolvers: [.v4(IPv4Address(192, 0, 2, 53)), .v6(IPv6Address("2001:db8::53")!), .v4(IPv4Address(10, 0, 0, 2)),
                .v6(IPv6Address("fd00::35")!)],
            searchDomains: [String(repeating: "a", count: 30), String(repeating: "b", count: 31)])
        #expect(four.searchText.utf8.count == 62 && four.problem == nil)
        #expect(try DNSSettings(block: four.block[...]) == four)
        let upper = DNSSettings(resolvers: [], searchDomains: ["Corp-1.Example", "x"])
        #expect(try DNSSettings(block: upper.block[...]) == upper, "letters of either case, digits and inner hyphens")
    }

    /// `block` with bytes `at` replaced by `bytes`.
    func edited(_ block: [UInt8], _ at: Int, _ bytes: [UInt8]) -> ArraySlice<UInt8> {
        var b = block
        b.replaceSubrange(at..<(at + bytes.count), with: bytes)
        return b[...]
    }

    func refusal(_ block: ArraySlice<UInt8>) -> String? {
        do {
            _ = try DNSSettings(block: block)
            return nil
        } catch {
            return error.description
        }
    }

    func search(_ text: String) -> ArraySlice<UInt8> {
        let bytes = Array(text.utf8)
        return edited(DNSSettings.none.block, 65, [UInt8(bytes.count)] + bytes)
    }

    @Test func everyBrokenRuleIsRefusedByName() {
        let b = pushed.block
        #expect(refusal(edited(b, 0, [5])) == "5 resolvers (at most 4)")
        #expect(refusal(edited(b, 0, [1])) == "unused resolver slot 2 is not zero", "a count below the slots in use")
        #expect(refusal(edited(b, 40, [1])) == "unused resolver slot 3 is not zero")
        #expect(refusal(edited(b, 0, [3])) == "resolver 3: :: is the unspecified address", "a zero slot counted as used")
        #expect(refusal(edited(b, 1, IPv6Address(mapping: IPv4Address(0, 0, 0, 0)).networkBytes)) == "resolver 1: 0.0.0.0 is the unspecified address")
        #expect(refusal(edited(b, 1, IPv6Address(mapping: IPv4Address(127, 0, 0, 53)).networkBytes)) == "resolver 1: 127.0.0.53 is a loopback address")
        #expect(refusal(edited(b, 1, IPv6Address(mapping: IPv4Address(224, 0, 0, 251)).networkBytes)) == "resolver 1: 224.0.0.251 is a multicast address")
        #expect(refusal(edited(b, 17, IPv6Address("::1")!.networkBytes)) == "resolver 2: ::1 is the loopback address")
        #expect(refusal(edited(b, 17, IPv6Address("ff02::fb")!.networkBytes)) == "resolver 2: ff02::fb is a multicast address")
        #expect(refusal(edited(b, 65, [63])) == "a search list of 63 bytes (at most 62)")
        #expect(refusal(edited(b, 100, [1])) == "non-zero bytes after the search list")
        #expect(refusal(edited(b, 65, [20])) == "non-zero bytes after the search list", "the length cuts the list short")
        #expect(refusal(search("a..b")) == "search domain: an empty label in 'a..b'")
        #expect(refusal(search("example.com.")) == "search domain: an empty label in 'example.com.'", "a trailing dot is not sent")
        #expect(refusal(search("a  b")) == "an empty search domain (two spaces, or a space at an end)")
        #expect(refusal(search(" a")) == "an empty search domain (two spaces, or a space at an end)")
        #expect(refusal(search("a ")) == "an empty search domain (two spaces, or a space at an end)")
        #expect(refusal(search("-a.b")) == "search domain: a label starting or ending with '-' in '-a.b'")
        #expect(refusal(search("a-.b")) == "search domain: a label starting or ending with '-' in 'a-.b'")
        #expect(refusal(search("a_b.c")) == "search domain: a character other than letters, digits, '-' and '.' in 'a_b.c'")
        #expect(refusal(search("a;b\nc")) == "search domain: a character other than letters, digits, '-' and '.' in 'a;b?c'")
        var nonASCII = DNSSettings.none.block
        nonASCII.replaceSubrange(65..<69, with: [3, 0x61, 0xc3, 0xa9])
        #expect(refusal(nonASCII[...])?.hasPrefix("search domain: a character other than") == true)
        #expect(refusal(search(String(repeating: "a", count: 62))) == nil, "a 62-byte label is fine")
        #expect(refusal(b[1...]) == "a block of 127 bytes")
    }

    @Test func domainsAndResolversAreCheckedAsTheServerSendsThem() throws {
        #expect(DNSSettings.domainProblem(String(repeating: "a", count: 64)) == "a label of 64 characters in '\(String(repeating: "a", count: 64))' (at most 63)")
        let long = Array(repeating: String(repeating: "a", count: 63), count: 4).joined(separator: ".") + ".ab"
        #expect(long.utf8.count == 258)
        #expect(DNSSettings.domainProblem(long) == "a domain of 258 characters (at most 253)")
        #expect(DNSSettings.domainProblem("") == "an empty domain")
        #expect(DNSSettings.domainProblem("corp.example") == nil)
        #expect(DNSSettings(resolvers: Array(repeating: .v4(IPv4Address(10, 0, 0, 1)), count: 5)).problem
            == "5 resolvers (the protocol carries at most 4)")
        #expect(DNSSettings(searchDomains: [String(repeating: "a", count: 31), String(repeating: "b", count: 31)]).problem
            == "search domains of 63 bytes together (the protocol carries at most 62, counting one space between domains)")
        #expect(DNSSettings(resolvers: [.v4(IPv4Address(127, 0, 0, 53))]).problem == "127.0.0.53 is a loopback address")
        // An IPv4-mapped IPv6 resolver is the IPv4 address it maps, as the block writes IPv4.
        #expect(try DNSSettings(block: DNSSettings(resolvers: [.v6(IPv6Address("::ffff:10.0.0.1")!)]).block[...]).resolvers
            == [.v4(IPv4Address(10, 0, 0, 1))])
    }

    @Test func theSettingsTravelInTheHandshakeAndGarbageIsRefusedByName() throws {
        var assignment = f.assignment
        assignment.dns = pushed
        let initiator = f.initiator()
        let (m1, sent) = initiator.createInitiation(senderIndex: 9, timestamp: f.t1, random: f.random)
        let (m2, _) = f.responder().createResponse(to: try f.consume(f.responder(), m1), senderIndex: 10, assignment: assignment)
        #expect(try initiator.consumeResponse(m2, for: sent).assignment.dns == pushed)

        // A response the server encrypts with a broken DNS block: authentic, and refused by name.
        func respond(dnsBlock: [UInt8]) throws -> HandshakeResult {
            let (m1, sent) = initiator.createInitiation(senderIndex: 11, timestamp: f.t2, random: f.random)
            var noise = NoiseHandshake(
                pattern: .ikpsk2, initiator: false, prologue: WireFormat.prologue, localStatic: f.server,
                localEphemeral: PrivateKey(random: HashRandom(seed: 9)), remoteStatic: nil, psk: SecretBytes(zeros: 32))
            _ = try noise.readMessage(Array(m1[12..<WireFormat.initiationMAC1Offset]))
            var payload = f.assignment.responsePayload
            payload[0] = CipherSuites.available[0].wireID
            payload.replaceSubrange(44..<172, with: dnsBlock)
            var message: [UInt8] = [2, WireFormat.protocolVersion, 0, 0, 1, 0, 0, 0, 11, 0, 0, 0]
            message += try noise.writeMessage(payload: payload)
            message += message.withUnsafeBytes { StaticKeyTags(f.client.publicKey).mac1($0) }
            message += [UInt8](repeating: 0, count: 16)
            #expect(message.count == WireFormat.responseLength)
            return try initiator.consumeResponse(message, for: sent)
        }
        #expect(try respond(dnsBlock: pushed.block).assignment.dns == pushed)
        var loopback = pushed.block
        loopback.replaceSubrange(1..<17, with: IPv6Address(mapping: IPv4Address(127, 0, 0, 1)).networkBytes)
        expectFailure(.invalidDNSSettings(""), { _ = try respond(dnsBlock: loopback) })
        do {
            _ = try respond(dnsBlock: loopback)
        } catch let failure as HandshakeFailure {
            #expect(failure.name == "invalidDNSSettings")
            #expect("\(failure)" == "refused the server's DNS settings: resolver 1: 127.0.0.1 is a loopback address (a misconfigured or malicious server; check its --dns and --dns-search)")
        }
        #expect(HandshakeFailure.allCases.contains(.invalidDNSSettings("")))
    }

    @Test func theClientCoreTakesThePushedSettingsAndALaterHandshakeWithOthersIsAChange() {
        func server(_ dns: DNSSettings) -> TunnelState {
            TunnelState(role: .server(ServerSettings(
                responder: HandshakeResponder(localStatic: f.server), address: IPv4Prefix("10.8.0.1/16")!,
                allowList: AllowList(clients: [AllowedClient(key: f.client.publicKey)]), allowAnyClient: false, dns: dns)))
        }
        var pair = CorePair()
        pair.server = server(pushed)
        pair.start()
        #expect(pair.tunnelUps.map(\.dns) == [pushed])
        // The server restarts with other --dns: the client's next handshake brings them as a change.
        let other = DNSSettings(resolvers: [.v4(IPv4Address(10, 8, 0, 53))])
        pair.server = server(other)
        pair.advance(121)
        _ = pair.clientSends(ipv4(IPv4Address(10, 8, 0, 2), IPv4Address(10, 8, 0, 1)))
        pair.tickBoth()
        #expect(pair.addressChanges.map(\.dns) == [other])
        #expect(pair.addressChanges.first?.client == pair.tunnelUps.first?.client, "the same address: only DNS changed")
    }

    @Test func theInitiationIsPaddedSoNoResponseIsLongerThanItsInitiation() throws {
        #expect(WireFormat.initiationLength == 288 && WireFormat.initiationPayloadLength == 148)
        #expect(WireFormat.initiationMAC1Offset == 256 && WireFormat.initiationMAC2Offset == 272)
        #expect(WireFormat.responseLength <= WireFormat.initiationLength, "no amplification")
        #expect(WireFormat.prologue == Array("tunvpn v3".utf8) && WireFormat.protocolVersion == 3)
        let (m1, _) = f.initiator().createInitiation(senderIndex: 1, timestamp: f.t1, random: f.random)
        #expect(m1.count == 288)
        #expect(StaticKeyTags(f.server.publicKey).verifyMAC1(m1, offset: 256), "mac1 over 0..<256")
        #expect(m1[272..<288].allSatisfy { $0 == 0 }, "mac2 zero without a cookie")
        // The payload decrypts to timestamp ‖ offer ‖ 128 zero bytes.
        var noise = NoiseHandshake(
            pattern: .ikpsk2, initiator: false, prologue: WireFormat.prologue, localStatic: f.server,
            localEphemeral: PrivateKey(random: HashRandom(seed: 9)), remoteStatic: nil, psk: SecretBytes(zeros: 32))
        let payload = try noise.readMessage(Array(m1[12..<256]))
        #expect(payload.count == 148 && Array(payload[0..<12]) == f.t1.bytes && payload[20...].allSatisfy { $0 == 0 })
        // The server ignores the padding's value.
        let client = NoiseHandshake(
            pattern: .ikpsk2, initiator: true, prologue: WireFormat.prologue, localStatic: f.client,
            localEphemeral: PrivateKey(random: HashRandom(seed: 8)), remoteStatic: f.server.publicKey, psk: SecretBytes(zeros: 32))
        var writer = client
        var padded: [UInt8] = [1, WireFormat.protocolVersion, 0, 0, 5, 0, 0, 0] + StaticKeyTags(f.server.publicKey).keyID
        padded += try writer.writeMessage(payload: Array(payload[0..<20]) + [UInt8](repeating: 0xa5, count: 128))
        padded += padded.withUnsafeBytes { StaticKeyTags(f.server.publicKey).mac1($0) }
        padded += [UInt8](repeating: 0, count: 16)
        #expect(padded.count == 288)
        #expect(try f.consume(f.responder(), padded).offeredSuiteIDs == CipherSuites.available.map { $0.wireID })
    }
}
