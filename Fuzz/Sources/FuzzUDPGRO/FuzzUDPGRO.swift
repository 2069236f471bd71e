// Fuzz target: UDP GRO splitting (`GROStorage` in Sources/Platform/UDPSocket.swift). With UDP_GRO the
// kernel hands recvmmsg(2) up to 64 KiB per message, a run of equal-sized datagrams from one source,
// with a UDP_GRO control message giving their size; `load` reads what recvmmsg left and `drain` cuts the
// runs into a PacketBatch's slots.
//
// Input: batch capacity and slot size, then per message: its length, a flag byte (bit 0: it carries a
// UDP_GRO cmsg; bit 1: the socket is AF_INET6, so the source is written IPv4-mapped), the segment size
// (any Int32, as a hostile or buggy kernel might send), the source address, and its bytes. The messages are written where recvmmsg would write them.
// Invariants: draining hands out every byte of every message exactly once, in order, each datagram
// min(segment, left) long (or marked truncated as slotSize + 1 when it does not fit), from the message's
// source, and never writes past a slot.

import CLinux
import Engine
import FuzzSupport
@testable import Platform
import Transport

#if canImport(Glibc)
    import Glibc
#endif

@_cdecl("FuzzUDPGRO_main")
public func main(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    runFuzzer(argc, argv) { data, size in fuzz(data, size) }
}

/// One message as the seed writer and the target describe it.
func message(length: Int, gro: Bool, segment: Int32, address: [UInt8] = [10, 0, 0, 1], port: UInt16 = 51820,
    fill: UInt8 = 0x5a, dualStack: Bool = false) -> [UInt8]
{
    le16(UInt16(length)) + [(gro ? 1 : 0) | (dualStack ? 2 : 0)] + le32(UInt32(bitPattern: segment)) + address + le16(port)
        + chunk((0..<min(length, 64)).map { UInt8(truncatingIfNeeded: $0) ^ fill })
}

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutableRawPointer) -> Int32 {
    writeSeedsIfAsked {
        [
            ("one-run", [8] + le16(1500) + message(length: 4000, gro: true, segment: 1400)),
            ("exact-runs", [64] + le16(2048) + message(length: 2800, gro: true, segment: 1400)
                + message(length: 100, gro: false, segment: 0, address: [192, 0, 2, 7])),
            ("oversized-segment", [4] + le16(512) + message(length: 3000, gro: true, segment: 1500)),
            ("bad-segment", [4] + le16(1500) + message(length: 3000, gro: true, segment: -1)
                + message(length: 10, gro: true, segment: 0)),
            ("small-batch", [1] + le16(64) + message(length: 300, gro: true, segment: 7)
                + message(length: 65535, gro: true, segment: 65535)),
            ("empty-message", [2] + le16(100) + message(length: 0, gro: false, segment: 0)),
            ("dual-stack", [8] + le16(1500) + message(length: 2800, gro: true, segment: 1400, dualStack: true)
                + message(length: 100, gro: false, segment: 0, address: [192, 0, 2, 7], dualStack: true)),
        ]
    }
    return 0
}

/// Bytes of message `index` as the kernel would leave them: the fuzzed prefix, then a pattern.
func contents(_ prefix: [UInt8], length: Int, index: Int) -> [UInt8] {
    var out = prefix.prefix(length).map { $0 }
    var i = out.count
    while i < length {
        out.append(UInt8(truncatingIfNeeded: i &* 31 &+ index))
        i += 1
    }
    return out
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data, size > 0 else { return 0 }
    var input = FuzzInput(data, size)
    let capacity = Int(input.byte() % 64) + 1
    let slotSize = Int(input.uint16() % 4096) + 1
    let gro = GROStorage()
    let v = gro.vectors
    var expected: [(bytes: [UInt8], segment: Int, source: Endpoint)] = []
    var received = 0
    // What receiveCoalesced sets up before recvmmsg(2): with no buffer lent to a batch, message i goes
    // into buffer i.
    require(gro.prepareFreeBuffers() == GROStorage.buffers, "a fresh GRO storage has every buffer free")
    while !input.isAtEnd && received < GROStorage.buffers {
        let i = received
        let length = Int(input.uint16())  // the kernel never reports more than the 64 KiB buffer
        let flags = input.byte()
        let hasGRO = flags & 1 == 1
        // Bit 1: the socket is AF_INET6 (dual stack), so the kernel reports the IPv4 source v4-mapped; it
        // must come back out as the same IPv4 endpoint.
        let family = flags & 2 == 2 ? AF_INET6 : AF_INET
        let segment = Int32(bitPattern: input.uint32())
        let address = input.fixed(4)
        let port = UInt16(input.byte()) << 8 | UInt16(input.byte())
        let bytes = contents(input.chunk(), length: length, index: i)
        // What the kernel leaves: the datagram, its length, the source and the control messages.
        gro.buffer(i).copyMemory(from: bytes, byteCount: length)
        v.messages[i].msg_len = UInt32(length)
        let source = Endpoint(
            address: IPv4Address(address[0], address[1], address[2], address[3]), port: port)
        v.setAddress(i, to: source, family: family)
        if hasGRO {
            let header = gro.control(i).assumingMemoryBound(to: cmsghdr.self)
            header.pointee.cmsg_level = Int32(IPPROTO_UDP)
            header.pointee.cmsg_type = Int32(CLINUX_UDP_GRO)
            header.pointee.cmsg_len = clinux_cmsg_len(4)
            UnsafeMutableRawPointer(clinux_cmsg_data(header)).storeBytes(of: segment, as: Int32.self)
        } else {
            v.messages[i].msg_hdr.msg_controllen = 0
        }
        expected.append((bytes, hasGRO && segment > 0 ? Int(segment) : max(length, 1), source))
        received += 1
    }
    guard received > 0 else { return 0 }
    gro.load(received)

    // The batch's storage is one exactly sized allocation, so the address sanitizer reports a write past
    // its last slot; every datagram's bytes are compared, which catches one slot spilling into the next.
    let batch = PacketBatch(capacity: capacity, slotSize: slotSize)
    var rounds = 0
    var runIndex = 0
    var runLeft = expected.first.map { $0.bytes.count } ?? 0
    var runOffset = 0
    while !gro.isEmpty {
        rounds += 1
        require(rounds <= 70_000, "drain does not make progress")
        let (count, truncated) = gro.drain(into: batch, startingAt: 0)
        require(count >= 0 && count <= capacity, "drain returned \(count) for a batch of \(capacity)")
        if count == 0 {
            // Only zero-length messages are left: load records them, drain skips them.
            require(expected[runIndex...].allSatisfy { $0.bytes.isEmpty } || runLeft == 0, "drain stalled")
        }
        var truncatedSeen = 0
        for slot in 0..<count {
            while runLeft == 0 {
                runIndex += 1
                require(runIndex < expected.count, "drain handed out more datagrams than the messages hold")
                runLeft = expected[runIndex].bytes.count
                runOffset = 0
            }
            let run = expected[runIndex]
            let length = min(run.segment, runLeft)
            require(batch.endpoints[slot] == run.source, "datagram source \(batch.endpoints[slot]) is not \(run.source)")
            require(batch.offsets[slot] == 0, "datagram offset")
            if length > batch.slotSize {
                truncatedSeen += 1
                require(batch.lengths[slot] == batch.slotSize + 1, "an oversized datagram is marked slotSize + 1")
            } else {
                require(batch.lengths[slot] == length, "datagram length \(batch.lengths[slot]), expected \(length)")
                let bytes = Array(UnsafeRawBufferPointer(start: batch.slot(slot), count: length))
                require(bytes == Array(run.bytes[runOffset..<(runOffset + length)]), "datagram bytes differ")
            }
            runOffset += length
            runLeft -= length
        }
        require(truncated == truncatedSeen, "drain counted \(truncated) truncated, \(truncatedSeen) seen")
        if count == 0 { break }
    }
    // Everything was handed out.
    while runLeft == 0 && runIndex + 1 < expected.count {
        runIndex += 1
        runLeft = expected[runIndex].bytes.count
    }
    require(runLeft == 0 && runIndex == expected.count - 1, "drain left bytes of message \(runIndex) behind")
    return 0
}
