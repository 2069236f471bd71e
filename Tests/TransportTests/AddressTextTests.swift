import Testing

import TestSupport

@testable import Transport

@Suite struct AddressTextTests {
    @Test func ipv6TextParsesAndPrintsInCanonicalForm() throws {
        let a = try #require(IPv6Address("2001:DB8:0:0:0:0:0:1"))
        #expect(a.high == 0x2001_0db8_0000_0000 && a.low == 1)
        #expect(a.description == "2001:db8::1", "RFC 5952: lower case, longest zero run compressed")
        #expect(IPv6Address("fd00::1")?.description == "fd00::1")
        #expect(IPv6Address("::")?.description == "::")
        for bad in ["", "1.2.3.4", "fd00::1%eth0", "[fd00::1]", "fd00:::1", "12345::", "g::1"] {
            #expect(IPv6Address(bad) == nil, "\(bad)")
        }
        let bytes = a.networkBytes
        #expect(bytes.count == 16 && bytes[0] == 0x20 && bytes[1] == 0x01 && bytes[15] == 1)
        #expect(bytes.withUnsafeBytes { IPv6Address(networkBytes: $0.baseAddress!) } == a)
    }

    @Test func ipv4MappedAddressesFoldToIPv4() throws {
        let mapped = try #require(IPAddress("::ffff:192.0.2.7"))
        #expect(mapped.isIPv6)
        #expect(mapped.unmapped == .v4(IPv4Address(192, 0, 2, 7)))
        #expect(IPv6Address(mapping: IPv4Address(192, 0, 2, 7)).ipv4Mapped == IPv4Address(192, 0, 2, 7))
        #expect(IPAddress("fd00::1")?.unmapped == IPAddress("fd00::1"))
    }

    @Test func ipv6PrefixesMaskAndContain() throws {
        let p = try #require(IPv6Prefix("fd12:3456:789a:1::1/64"))
        #expect(p.network.description == "fd12:3456:789a:1::")
        #expect(p.last.description == "fd12:3456:789a:1:ffff:ffff:ffff:ffff")
        #expect(p.contains(try #require(IPv6Address("fd12:3456:789a:1::abcd"))))
        #expect(!p.contains(try #require(IPv6Address("fd12:3456:789a:2::1"))))
        let narrow = try #require(IPv6Prefix("fd00::100/120"))
        #expect(narrow.network.description == "fd00::100" && narrow.last.description == "fd00::1ff")
        #expect(IPv6Prefix("fd00::1")?.length == 128)
        #expect(IPv6Prefix("fd00::1/129") == nil && IPv6Prefix("fd00::1/") == nil && IPv6Prefix("10.0.0.1/8") == nil)
        #expect(IPv6Prefix("::/0")?.contains(try #require(IPv6Address("2001:db8::1"))) == true)
    }

    @Test func endpointsNeedBracketsAroundIPv6() throws {
        let v6 = try #require(Endpoint("[2001:db8::1]:51820"))
        #expect(v6.address == .v6(try #require(IPv6Address("2001:db8::1"))) && v6.port == 51820)
        #expect(v6.description == "[2001:db8::1]:51820")
        #expect(Endpoint("192.0.2.1:51820")?.description == "192.0.2.1:51820")
        #expect(Endpoint("2001:db8::1:51820") == nil, "without brackets the port is ambiguous")
        #expect(Endpoint("[2001:db8::1]") == nil && Endpoint("[]:1") == nil && Endpoint("[1.2.3.4]:1") == nil)
        #expect(Endpoint("[::ffff:192.0.2.1]:9")?.unmapped == Endpoint("192.0.2.1:9"))
    }

    @Test func ipv6SourcesShareARateLimitBucketPerSlash64() throws {
        var limiter = SourceRateLimiter(perSecond: 1, burst: 1)
        let a = IPAddress.v6(try #require(IPv6Address("2001:db8:1:2::1")))
        let sameNet = IPAddress.v6(try #require(IPv6Address("2001:db8:1:2:ffff::9")))
        let otherNet = IPAddress.v6(try #require(IPv6Address("2001:db8:1:3::1")))
        let first = limiter.allow(a, now: 1_000_000_000)
        let neighbour = limiter.allow(sameNet, now: 1_000_000_000)
        let elsewhere = limiter.allow(otherNet, now: 1_000_000_000)
        #expect(first && !neighbour && elsewhere, "one /64 is one bucket")
    }
}

@Suite struct IPv6PacketBuilderTests {
    @Test func ipv6UDPRoundTripsWithAValidChecksum() throws {
        let from = try #require(Endpoint("[fd00::2]:4000"))
        let to = try #require(Endpoint("[2001:db8::9]:53"))
        var packet = PacketBuilder.ipv6UDP(from: from, to: to, payload: Array("hello".utf8))
        #expect(packet.count == 53 && packet[0] >> 4 == 6)
        let parsed = try #require(PacketBuilder.parseIPv6UDP(packet))
        #expect(parsed.source == from && parsed.destination == to && parsed.payload == Array("hello".utf8))
        #expect(parsed.udpChecksumValid)
        packet[50] ^= 1
        #expect(PacketBuilder.parseIPv6UDP(packet)?.udpChecksumValid == false)
    }
}
