// UDPSocket over IPv6 and dual stack, on the test's own loopback (::1 and 127.0.0.1; nothing is
// configured, so no private namespace is needed): batches over ::1, a `[::]` socket serving an IPv4 peer
// as `.v4` and answering it, a v6-only socket refusing IPv4 destinations, UDP GSO/GRO on IPv6 with the
// family's own size limit, name resolution of either family, and the fallback to 0.0.0.0.

import Engine
import Glibc
import TestSupport
import Testing
import Transport

@testable import Platform

private let loopback4 = IPv4Address(127, 0, 0, 1)
private let loopback6 = IPv6Address(high: 0, low: 1)

/// A deterministic payload for datagram `index` of `size` bytes.
private func payload(_ index: Int, size: Int) -> [UInt8] {
    (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 29 &+ index &* 11 &+ 3) }
}

/// Receives on `socket` until `expected` datagrams have arrived (a dedicated thread, 5 s at most).
private func receive(_ socket: UDPSocket, _ expected: Int, slotSize: Int = 1500) throws -> [(bytes: [UInt8], source: Endpoint)] {
    try runOnDedicatedThread(timeout: .seconds(5)) {
        let incoming = PacketBatch(capacity: 16, slotSize: slotSize)
        var got: [(bytes: [UInt8], source: Endpoint)] = []
        while got.count < expected {
            let n = try socket.receive(into: incoming)
            for i in 0..<n { got.append((incoming.bytes(i), incoming.endpoints[i])) }
        }
        return got
    }
}

/// Sends `datagrams` from `socket` in one batch; returns the number the kernel took.
private func send(_ socket: UDPSocket, _ datagrams: [(bytes: [UInt8], to: Endpoint)], slotSize: Int = 1500) throws -> Int {
    let outgoing = PacketBatch(capacity: datagrams.count, slotSize: slotSize)
    for (i, d) in datagrams.enumerated() { outgoing.set(i, bytes: d.bytes, endpoint: d.to) }
    outgoing.count = datagrams.count
    return try socket.send(from: outgoing)
}

@Suite("UDPSocket over IPv6 and dual stack")
struct UDPSocketIPv6Tests {
    @Test func aBatchOverIPv6LoopbackArrivesIntactWithItsSource() throws {
        let receiver = try UDPSocket.bind(Endpoint(address: loopback6, port: 0))
        let sender = try UDPSocket.bind(Endpoint(address: loopback6, port: 0))
        defer {
            receiver.close()
            sender.close()
        }
        #expect(receiver.localEndpoint.address == .v6(loopback6) && receiver.localEndpoint.port != 0)
        #expect(sender.family == AF_INET6)
        let sizes = (0..<32).map { $0 == 0 ? 0 : 1 + $0 * 45 }  // 0 … 1396 bytes
        let sent = try send(sender, sizes.enumerated().map { (payload($0.offset, size: $0.element), receiver.localEndpoint) })
        #expect(sent == 32)
        let got = try receive(receiver, 32)
        #expect(got.map(\.bytes) == sizes.enumerated().map { payload($0.offset, size: $0.element) })
        #expect(got.allSatisfy { $0.source == sender.localEndpoint }, "every source is [::1]:\(sender.localEndpoint.port)")
        #expect(sender.stats.skippedSends == 0)
    }

    @Test func aDualStackSocketServesAnIPv4PeerAsV4AndAnIPv6PeerAsV6AndAnswersBoth() throws {
        let server = try UDPSocket.bind(Endpoint(address: IPv6Address.any, port: 0))
        let peer4 = try UDPSocket.bind(Endpoint(address: loopback4, port: 0))
        let peer6 = try UDPSocket.bind(Endpoint(address: loopback6, port: 0))
        defer {
            server.close()
            peer4.close()
            peer6.close()
        }
        #expect(server.localEndpoint.address == .v6(.any))
        #expect(peer4.family == AF_INET)
        let port = server.localEndpoint.port
        #expect(try send(peer4, [([4, 4, 4], Endpoint(address: loopback4, port: port))]) == 1)
        #expect(try send(peer6, [([6, 6, 6], Endpoint(address: loopback6, port: port))]) == 1)
        let got = try receive(server, 2)
        let from4 = got.first { $0.bytes == [4, 4, 4] }?.source
        let from6 = got.first { $0.bytes == [6, 6, 6] }?.source
        #expect(from4 == peer4.localEndpoint, "the IPv4 peer is .v4 127.0.0.1, not ::ffff:127.0.0.1")
        #expect(from6 == peer6.localEndpoint)
        // Answers go to the endpoints as received: the `.v4` one through the AF_INET6 socket, mapped.
        let answers = [(bytes: [UInt8]([1, 2, 3]), to: from4 ?? .none), (bytes: [UInt8]([4, 5, 6]), to: from6 ?? .none)]
        #expect(try send(server, answers) == 2)
        #expect(server.stats.skippedSends == 0)
        let at4 = try receive(peer4, 1)
        let at6 = try receive(peer6, 1)
        #expect(at4.map(\.bytes) == [[1, 2, 3]])
        #expect(at4.first?.source == Endpoint(address: loopback4, port: port))
        #expect(at6.map(\.bytes) == [[4, 5, 6]])
        #expect(at6.first?.source == Endpoint(address: loopback6, port: port))
    }

    @Test func aSocketOnOneIPv6AddressIsIPv6OnlyAndCountsAnIPv4DestinationAsUnreachable() throws {
        let receiver = try UDPSocket.bind(Endpoint(address: loopback4, port: 0))
        let sender = try UDPSocket.bind(Endpoint(address: loopback6, port: 0))
        defer {
            receiver.close()
            sender.close()
        }
        // IPV6_V6ONLY refuses the mapped destination with ENETUNREACH (ipv6(7)); the batch goes on.
        let sent = try send(sender, [([1], receiver.localEndpoint), ([2], Endpoint(address: loopback6, port: sender.localEndpoint.port))])
        #expect(sent == 1)
        #expect(sender.stats.unreachableSends == 1)
        #expect(try receive(sender, 1).map(\.bytes) == [[2]])
    }

    @Test func anIPv4SocketCountsAnIPv6DestinationAsInvalidInsteadOfSendingItElsewhere() throws {
        let sender = try UDPSocket.bind(Endpoint(address: loopback4, port: 0))
        defer { sender.close() }
        let sent = try send(
            sender, [([1], Endpoint(address: loopback6, port: 9)), ([2], Endpoint(address: loopback4, port: sender.localEndpoint.port))])
        #expect(sent == 1)
        #expect(sender.stats.invalidSends == 1, "EAFNOSUPPORT for the IPv6 destination")
        #expect(try receive(sender, 1).map(\.bytes) == [[2]])
    }

    @Test(arguments: [false, true])
    func datagramsSentAsGSORunsOverIPv6ArriveAsTheOriginalDatagrams(receiverCoalesces: Bool) throws {
        // The IPv6 twin of UDPSegmentationTests: three GSO runs over ::1.
        let a = try UDPSocket.bind(Endpoint(address: loopback6, port: 0), segmentationOffload: receiverCoalesces)
        let b = try UDPSocket.bind(Endpoint(address: loopback6, port: 0), segmentationOffload: receiverCoalesces)
        let sender = try UDPSocket.bind(Endpoint(address: loopback6, port: 0), segmentationOffload: true)
        defer {
            a.close()
            b.close()
            sender.close()
        }
        #expect(a.usesReceiveOffload == receiverCoalesces, "UDP_GRO is set on an AF_INET6 socket")
        #expect(sender.usesSegmentationOffload, "UDP_SEGMENT is set on an AF_INET6 socket")
        var plan: [(Endpoint, Int)] = Array(repeating: (a.localEndpoint, 1432), count: 40) + [(a.localEndpoint, 700)]
        plan += Array(repeating: (b.localEndpoint, 100), count: 3) + Array(repeating: (a.localEndpoint, 1432), count: 20)
        let datagrams = plan.enumerated().map { (bytes: payload($0.offset, size: $0.element.1), to: $0.element.0) }
        #expect(try send(sender, datagrams) == plan.count)
        #expect(sender.segmentedSends == 3, "one GSO send per run")
        let atA = try receive(a, 61)
        let atB = try receive(b, 3)
        #expect(atA.map(\.bytes) == datagrams.filter { $0.to == a.localEndpoint }.map(\.bytes))
        #expect(atB.map(\.bytes) == datagrams.filter { $0.to == b.localEndpoint }.map(\.bytes))
        #expect(atA.allSatisfy { $0.source == sender.localEndpoint })
        #expect(sender.stats.skippedSends == 0)
    }

    /// 64 datagrams totalling exactly the largest UDP payload of one family: 63 of 1024 bytes and a last one
    /// of `total - 63 * 1024`.
    private static func fullGSORun(total: Int, to endpoint: Endpoint) -> [(bytes: [UInt8], to: Endpoint)] {
        (0..<64).map { (payload($0, size: $0 == 63 ? total - 63 * 1024 : 1024), endpoint) }
    }

    @Test func aGSOSendCarriesUpTo65527BytesOverIPv6But65507OverIPv4() throws {
        #expect(UDPSocket.maxGSOBytes(to: Endpoint(address: loopback6, port: 1)) == 65_527)
        #expect(UDPSocket.maxGSOBytes(to: Endpoint(address: loopback4, port: 1)) == 65_507)
        let receiver6 = try UDPSocket.bind(Endpoint(address: loopback6, port: 0))
        let receiver4 = try UDPSocket.bind(Endpoint(address: loopback4, port: 0))
        // One dual-stack sender for both: an IPv4 destination is sent as IPv4, so its limit is IPv4's.
        let sender = try UDPSocket.bind(Endpoint(address: IPv6Address.any, port: 0), segmentationOffload: true)
        defer {
            receiver6.close()
            receiver4.close()
            sender.close()
        }
        #expect(sender.usesSegmentationOffload)
        let to6 = Endpoint(address: loopback6, port: receiver6.localEndpoint.port)
        let run6 = Self.fullGSORun(total: 65_527, to: to6)
        #expect(try send(sender, run6) == 64)
        #expect(sender.segmentedSends == 1, "65,527 bytes fit one IPv6 GSO send")
        // The same bytes to an IPv4 peer exceed 65,507: a GSO send of the 63 full datagrams and the last one
        // alone, neither refused.
        let to4 = Endpoint(address: loopback4, port: receiver4.localEndpoint.port)
        let run4 = Self.fullGSORun(total: 65_527, to: to4)
        #expect(try send(sender, run4) == 64)
        #expect(sender.segmentedSends == 2)
        // And exactly 65,507 bytes to it are one send.
        let exact4 = Self.fullGSORun(total: 65_507, to: to4)
        #expect(try send(sender, exact4) == 64)
        #expect(sender.segmentedSends == 3)
        #expect(sender.stats.skippedSends == 0)
        #expect(try receive(receiver6, 64).map(\.bytes) == run6.map(\.bytes))
        let at4 = try receive(receiver4, 128)
        #expect(at4.map(\.bytes) == (run4 + exact4).map(\.bytes))
        #expect(at4.allSatisfy { $0.source == Endpoint(address: loopback4, port: sender.localEndpoint.port) })
    }

    @Test func aDualStackReceiverWithGROSplitsCoalescedIPv4Datagrams() throws {
        let receiver = try UDPSocket.bind(Endpoint(address: IPv6Address.any, port: 0), segmentationOffload: true)
        let sender = try UDPSocket.bind(Endpoint(address: loopback4, port: 0), segmentationOffload: true)
        defer {
            receiver.close()
            sender.close()
        }
        #expect(receiver.usesReceiveOffload)
        let datagrams = (0..<30).map { (bytes: payload($0, size: $0 == 29 ? 300 : 1200), to: Endpoint(address: loopback4, port: receiver.localEndpoint.port)) }
        #expect(try send(sender, datagrams) == 30)
        let got = try receive(receiver, 30)
        #expect(got.map(\.bytes) == datagrams.map(\.bytes))
        #expect(got.allSatisfy { $0.source == sender.localEndpoint }, "the source is .v4 127.0.0.1")
    }

    // MARK: Socket addresses

    @Test func socketAddressesRoundTripAndShortOrForeignOnesAreRefused() {
        var slot = SocketAddressSlot()
        let v6 = Endpoint(address: IPv6Address("2001:db8::7")!, port: 51820)
        let v4 = Endpoint(address: IPv4Address(192, 0, 2, 7), port: 40000)
        func read(_ length: Int) -> Endpoint? { withUnsafeBytes(of: &slot) { Endpoint(socketAddress: $0.baseAddress!, length: length) } }
        #expect(v6.write(to: &slot, family: AF_INET6) == socklen_t(MemoryLayout<sockaddr_in6>.size))
        #expect(read(MemoryLayout<sockaddr_in6>.size) == v6)
        #expect(read(MemoryLayout<sockaddr_in6>.size - 1) == nil, "a truncated sockaddr_in6")
        // An IPv4 endpoint on an AF_INET6 socket is written mapped and read back as IPv4.
        #expect(v4.write(to: &slot, family: AF_INET6) == socklen_t(MemoryLayout<sockaddr_in6>.size))
        #expect(slot.sin6_family == sa_family_t(AF_INET6))
        #expect(read(MemoryLayout<sockaddr_in6>.size) == v4)
        #expect(v4.write(to: &slot, family: AF_INET) == socklen_t(MemoryLayout<sockaddr_in>.size))
        #expect(read(MemoryLayout<sockaddr_in>.size) == v4)
        #expect(read(MemoryLayout<sockaddr_in>.size - 1) == nil)
        #expect(read(0) == nil)
        slot.sin6_family = sa_family_t(AF_UNIX)
        #expect(read(MemoryLayout<sockaddr_in6>.size) == nil, "another family")
    }

    // MARK: Resolution

    @Test func numericAddressesOfEitherFamilyResolveWithoutTheResolver() throws {
        #expect(try UDPSocket.resolve(host: "::1", port: 5) == Endpoint(address: loopback6, port: 5))
        #expect(try UDPSocket.resolve(host: "192.0.2.7", port: 51820) == Endpoint(address: IPv4Address(192, 0, 2, 7), port: 51820))
        #expect(try UDPSocket.addresses(of: "2001:db8::1") == [.v6(IPv6Address("2001:db8::1")!)])
        #expect(try UDPSocket.addresses(of: "::ffff:192.0.2.1") == [.v4(IPv4Address(192, 0, 2, 1))], "mapped folds to IPv4")
        #expect(throws: IOError.self) { try UDPSocket.resolve(host: "", port: 1) }
    }

    @Test func localhostResolvesToLoopbackAddressesOnlyAndTheFirstIsPicked() throws {
        // /etc/hosts may give 127.0.0.1, ::1 or both for localhost; whichever, they are loopback and the
        // endpoint is the first.
        let addresses = try UDPSocket.addresses(of: "localhost")
        #expect(!addresses.isEmpty)
        #expect(Set(addresses).isSubset(of: [.v4(loopback4), .v6(loopback6)]), "\(addresses)")
        #expect(try UDPSocket.resolve(host: "localhost", port: 53) == Endpoint(address: addresses[0], port: 53))
    }

    // MARK: Falling back to IPv4

    @Test func aHostWithoutIPv6FallsBackFromTheIPv6AnyAddressTo0000WithTheSamePortAndANotice() throws {
        for failure in [
            IOError(call: "socket", errno: EAFNOSUPPORT, detail: "Address family not supported by protocol"),
            IOError(call: "bind", errno: EADDRNOTAVAIL, detail: "Cannot assign requested address"),
        ] {
            var tried: [Endpoint] = []
            let (bound, notice) = try UDPSocket.bindPreferringDualStack(Endpoint(address: IPv6Address.any, port: 51820)) {
                (e) throws(IOError) -> Endpoint in
                tried.append(e)
                if e.address.isIPv6 { throw failure }
                return e
            }
            #expect(tried == [Endpoint(address: IPv6Address.any, port: 51820), Endpoint(address: IPv4Address.any, port: 51820)])
            #expect(bound == Endpoint(address: IPv4Address.any, port: 51820))
            #expect(
                notice == "this host has no IPv6 (\(failure)), so UDP uses 0.0.0.0:51820 instead of [::]:51820: IPv4 only")
        }
    }

    @Test func otherFailuresAndOtherAddressesDoNotFallBack() throws {
        let inUse = IOError(call: "bind", errno: EADDRINUSE, detail: "Address already in use")
        #expect(throws: inUse) {
            _ = try UDPSocket.bindPreferringDualStack(Endpoint(address: IPv6Address.any, port: 51820)) {
                (_) throws(IOError) -> Int in throw inUse
            }
        }
        let noIPv6 = IOError(call: "socket", errno: EAFNOSUPPORT, detail: "")
        var tried = 0
        #expect(throws: noIPv6, "an explicit IPv6 address is not replaced by IPv4") {
            _ = try UDPSocket.bindPreferringDualStack(Endpoint(address: loopback6, port: 51820)) {
                (_) throws(IOError) -> Int in
                tried += 1
                throw noIPv6
            }
        }
        #expect(tried == 1)
        #expect(!UDPSocket.meansNoIPv6(IOError(call: "socket", errno: EMFILE, detail: "")))
        #expect(!UDPSocket.meansNoIPv6(IOError(call: "setsockopt", errno: EADDRNOTAVAIL, detail: "")))
    }

    @Test func onThisHostTheIPv6AnyAddressBindsDualStackWithoutANotice() throws {
        let (socket, notice) = try UDPSocket.bindPreferringDualStack(Endpoint(address: IPv6Address.any, port: 0)) {
            (e) throws(IOError) in try UDPSocket.bind(e)
        }
        defer { socket.close() }
        #expect(notice == nil)
        #expect(socket.localEndpoint.address == .v6(.any) && socket.family == AF_INET6)
    }
}
