// Fuzz target: TCP offload (Sources/Platform/TCPOffload.swift). With IFF_VNET_HDR the kernel hands the
// TUN reader a virtio_net_hdr and a packet of up to 64 KiB; the reader splits TCP super-packets
// (`TCPSegmentation.segment`) and completes partial checksums (`InternetChecksum.completePartial`), and
// the writer merges runs of segments (`canFollow`, `finishMerge`). This target does what
// TunDevice.readVirtio and writeVirtio do with those, on fuzzed bytes.
//
// UDP segmentation offload (`UDPSegmentation`, gso_type UDP_L4) is checked the same way, and both over
// IPv6 too (gso_type TCPV6; UDP_L4 with a version-6 packet): checksums with the RFC 8200 section 8.1
// pseudo-header, payload lengths instead of total lengths and IDs.
//
// Input: a 10-byte virtio header, then the packet.
// Invariants:
//   - the header reads back as the bytes it came from, and writes the same 10 bytes;
//   - segmentation: each segment fits `ip + tcp + mss` bytes (the room the reader checks) and nothing is
//     written outside it (guard regions); its IPv4 total length, header checksum and TCP checksum are
//     right, its sequence number is where its payload starts, FIN/PSH only on the last and CWR only on
//     the first; the payloads put together are the super-packet's payload;
//   - merging those segments again (as the writer would) gives one packet whose payload is the same, and
//     whose checksum, completed as the kernel completes CHECKSUM_PARTIAL, is right;
//   - completePartial never writes outside the packet and, for a field at an even offset, leaves a
//     checksum that verifies, changing nothing else;
//   - the reader's `TunDevice.splitPlan` takes a super-packet exactly when one of the split branches
//     here does (anything else with a GSO type is dropped, never passed on), and no IPv6 packet whose
//     next header is not TCP or UDP (extension headers) is split or merged.
// Buffers that are only read are allocated to their exact size, so the address sanitizer reports any
// read past them.

import FuzzSupport
@testable import Platform

@_cdecl("FuzzTCPOffload_main")
public func main(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    runFuzzer(argc, argv) { data, size in fuzz(data, size) }
}

func tcpPacket(payload: Int, options: [UInt8] = [], flags: UInt8 = 0x18, ipOptions: [UInt8] = []) -> [UInt8] {
    let ihl = 20 + ipOptions.count
    let thl = 20 + options.count
    let total = ihl + thl + payload
    var p: [UInt8] = [UInt8(0x40 | ihl / 4), 0, UInt8(total >> 8), UInt8(total & 0xff), 0x12, 0x34, 0x40, 0, 64, 6, 0, 0,
        10, 8, 0, 2, 10, 8, 0, 1] + ipOptions
    p += [0x9c, 0x40, 0x14, 0x51, 0, 0, 0x10, 0, 0, 0, 0x20, 0, UInt8(thl / 4) << 4, flags, 0xff, 0xff, 0, 0, 0, 0] + options
    p += (0..<payload).map { UInt8(truncatingIfNeeded: $0 &* 7) }
    return p
}

/// A TCP/IPv6 packet from fd00:77::2 to fd00:77::1 with `payload` bytes; `nextHeader` other than 6 puts
/// an 8-byte extension header (of that type) in front of the TCP header.
func tcp6Packet(payload: Int, options: [UInt8] = [], flags: UInt8 = 0x18, nextHeader: UInt8 = 6) -> [UInt8] {
    let thl = 20 + options.count
    let extensionHeader: [UInt8] = nextHeader == 6 ? [] : [6, 0, 1, 4, 0, 0, 0, 0]
    let payloadLength = extensionHeader.count + thl + payload
    var p: [UInt8] = [0x62, 0x81, 0x23, 0x45, UInt8(payloadLength >> 8), UInt8(payloadLength & 0xff), nextHeader, 64]
    p += [0xfd, 0, 0, 0x77] + [UInt8](repeating: 0, count: 11) + [2] + [0xfd, 0, 0, 0x77] + [UInt8](repeating: 0, count: 11) + [1]
    p += extensionHeader
    p += [0x9c, 0x40, 0x14, 0x51, 0, 0, 0x10, 0, 0, 0, 0x20, 0, UInt8(thl / 4) << 4, flags, 0xff, 0xff, 0, 0, 0, 0] + options
    p += (0..<payload).map { UInt8(truncatingIfNeeded: $0 &* 7) }
    return p
}

/// A UDP/IPv6 packet from fd00:77::2 to fd00:77::1 with `payload` bytes.
func udp6Packet(payload: Int) -> [UInt8] {
    let length = 8 + payload
    var p: [UInt8] = [0x60, 0, 0, 0, UInt8(length >> 8), UInt8(length & 0xff), 17, 64]
    p += [0xfd, 0, 0, 0x77] + [UInt8](repeating: 0, count: 11) + [2] + [0xfd, 0, 0, 0x77] + [UInt8](repeating: 0, count: 11) + [1]
    p += [0x9c, 0x40, 0, 53, UInt8(length >> 8), UInt8(length & 0xff), 0, 0]
    p += (0..<payload).map { UInt8(truncatingIfNeeded: $0) }
    return p
}

func header(flags: UInt8, gso: UInt8, hdrLen: UInt16, gsoSize: UInt16, start: UInt16, offset: UInt16) -> [UInt8] {
    [flags, gso] + le16(hdrLen) + le16(gsoSize) + le16(start) + le16(offset)
}

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutableRawPointer) -> Int32 {
    writeSeedsIfAsked {
        let timestamps: [UInt8] = [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]
        return [
            ("gso-3-segments", header(flags: 1, gso: 1, hdrLen: 52, gsoSize: 100, start: 20, offset: 16)
                + tcpPacket(payload: 250, options: timestamps)),
            ("gso-exact", header(flags: 1, gso: 1, hdrLen: 40, gsoSize: 64, start: 20, offset: 16) + tcpPacket(payload: 128)),
            ("gso-ecn-fin", header(flags: 1, gso: 0x81, hdrLen: 40, gsoSize: 33, start: 20, offset: 16)
                + tcpPacket(payload: 100, flags: 0x99)),
            ("gso-mss-1", header(flags: 1, gso: 1, hdrLen: 40, gsoSize: 1, start: 20, offset: 16) + tcpPacket(payload: 9)),
            ("gso-no-payload", header(flags: 1, gso: 1, hdrLen: 40, gsoSize: 1400, start: 20, offset: 16) + tcpPacket(payload: 0)),
            ("gso-ip-options", header(flags: 1, gso: 1, hdrLen: 44, gsoSize: 50, start: 24, offset: 16)
                + tcpPacket(payload: 120, ipOptions: [1, 1, 1, 0])),
            ("partial-tcp", header(flags: 1, gso: 0, hdrLen: 0, gsoSize: 0, start: 20, offset: 16) + tcpPacket(payload: 31)),
            ("partial-udp", header(flags: 1, gso: 0, hdrLen: 0, gsoSize: 0, start: 20, offset: 6)
                + [0x45, 0, 0, 32, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 0, 53, 0, 53, 0, 12, 0, 0, 1, 2, 3, 4]),
            ("partial-past-end", header(flags: 1, gso: 0, hdrLen: 0, gsoSize: 0, start: 0xffff, offset: 0xffff) + tcpPacket(payload: 1)),
            ("uso-3-datagrams", header(flags: 1, gso: 5, hdrLen: 28, gsoSize: 100, start: 20, offset: 6)
                + [0x45, 0, 1, 0x2c, 0, 7, 0x40, 0, 64, 17, 0, 0, 10, 8, 0, 2, 10, 8, 0, 1, 0x9c, 0x40, 0, 53, 1, 0x18, 0, 0]
                + (0..<272).map { UInt8(truncatingIfNeeded: $0) }),
            ("uso-size-1", header(flags: 1, gso: 5, hdrLen: 28, gsoSize: 1, start: 20, offset: 6)
                + [0x45, 0, 0, 33, 0, 7, 0, 0, 64, 17, 0, 0, 10, 8, 0, 2, 10, 8, 0, 1, 0x9c, 0x40, 0, 53, 0, 13, 0, 0, 1, 2, 3, 4, 5]),
            ("plain", header(flags: 0, gso: 0, hdrLen: 0, gsoSize: 0, start: 0, offset: 0) + tcpPacket(payload: 10)),
            ("gso6-3-segments", header(flags: 1, gso: 4, hdrLen: 72, gsoSize: 100, start: 40, offset: 16)
                + tcp6Packet(payload: 250, options: timestamps)),
            ("gso6-ecn-fin", header(flags: 1, gso: 0x84, hdrLen: 60, gsoSize: 33, start: 40, offset: 16)
                + tcp6Packet(payload: 100, flags: 0x99)),
            ("gso6-hop-by-hop", header(flags: 1, gso: 4, hdrLen: 68, gsoSize: 50, start: 48, offset: 16)
                + tcp6Packet(payload: 120, nextHeader: 0)),
            ("gso6-as-tcpv4", header(flags: 1, gso: 1, hdrLen: 60, gsoSize: 50, start: 40, offset: 16) + tcp6Packet(payload: 120)),
            ("partial-tcp6", header(flags: 1, gso: 0, hdrLen: 0, gsoSize: 0, start: 40, offset: 16) + tcp6Packet(payload: 31)),
            ("uso6-3-datagrams", header(flags: 1, gso: 5, hdrLen: 48, gsoSize: 100, start: 40, offset: 6) + udp6Packet(payload: 272)),
        ]
    }
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    // The reader skips reads of no more than the header (TunDevice.readVirtio).
    guard let data, size > VirtioNetHeader.length, size <= VirtioNetHeader.length + 65535 else { return 0 }
    let raw = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 16)
    defer { raw.deallocate() }
    raw.copyMemory(from: data, byteCount: size)
    let header = VirtioNetHeader(reading: raw)
    checkHeader(header, bytes: Array(UnsafeBufferPointer(start: data, count: VirtioNetHeader.length)))
    let length = size - VirtioNetHeader.length
    // The packet alone, exactly sized (the reader's super buffer is larger, but reads must stay in the packet).
    let packet = UnsafeMutableRawPointer.allocate(byteCount: length, alignment: 16)
    defer { packet.deallocate() }
    packet.copyMemory(from: data + VirtioNetHeader.length, byteCount: length)
    let original = Array(UnsafeRawBufferPointer(start: packet, count: length))

    checkExtensionHeadersRefused(packet, length: length)
    let plan = TunDevice.splitPlan(header, packet, length: length)
    let tcpType = header.gsoType & ~VirtioNetHeader.gsoECN
    if tcpType == VirtioNetHeader.gsoTCPv4 || tcpType == VirtioNetHeader.gsoTCPv6, header.gsoSize > 0,
        let h = tcpType == VirtioNetHeader.gsoTCPv4
            ? TCPSegmentation.headers(packet, length: length) : TCPSegmentation.ipv6Headers(packet, length: length)
    {
        require(plan.map { $0.ip == h.ip && $0.transport == h.tcp && !$0.udp } == true, "splitPlan disagrees on a TCP super-packet")
        let segments = segmentAll(packet, length: length, headers: h, mss: Int(header.gsoSize), original: original)
        merge(segments, headers: h, mss: Int(header.gsoSize), original: original)
        return 0
    }
    if header.gsoType == UDPSegmentation.gsoUDPL4, header.gsoSize > 0,
        let ihl = UDPSegmentation.anyIPHeader(packet, length: length)
    {
        require(plan.map { $0.ip == ihl && $0.transport == 8 && $0.udp } == true, "splitPlan disagrees on a UDP super-packet")
        let datagrams = segmentUDP(packet, length: length, ip: ihl, size: Int(header.gsoSize), original: original)
        mergeUDP(datagrams, ip: ihl)
        return 0
    }
    require(plan == nil, "splitPlan takes a super-packet no split branch takes")
    if header.flags & VirtioNetHeader.needsChecksum != 0 {
        let buffer = GuardedBuffer(count: length)
        buffer.start.copyMemory(from: packet, byteCount: length)
        let start = Int(header.checksumStart)
        let offset = Int(header.checksumOffset)
        let done = InternetChecksum.completePartial(buffer.start, length: length, start: start, offset: offset)
        buffer.checkGuards("completePartial")
        require(done == (start + offset + 2 <= length), "completePartial's verdict on start \(start) offset \(offset) length \(length)")
        // A checksum field is a 16-bit word of the summed data, so it verifies only at an even offset
        // (TCP's 16 and UDP's 6 are; the kernel never sends an odd one).
        if done && offset % 2 == 0 {
            let pseudo = UInt64(UInt16(original[start + offset]) << 8 | UInt16(original[start + offset + 1]))
            let sum = InternetChecksum.sum(buffer.start + start, length - start, initial: pseudo)
            require(InternetChecksum.fold(sum) == 0xffff, "completePartial left a checksum that does not verify")
            var changed = Array(buffer.bytes)
            changed[start + offset] = original[start + offset]
            changed[start + offset + 1] = original[start + offset + 1]
            require(changed == original, "completePartial changed bytes other than the checksum field")
        } else if !done {
            require(Array(buffer.bytes) == original, "a refused completePartial changed the packet")
        }
    }
    return 0
}

func checkHeader(_ header: VirtioNetHeader, bytes: [UInt8]) {
    require(header.flags == bytes[0] && header.gsoType == bytes[1], "virtio header flags/gso type")
    require(header.headerLength == UInt16(bytes[2]) | UInt16(bytes[3]) << 8, "virtio hdr_len")
    require(header.gsoSize == UInt16(bytes[4]) | UInt16(bytes[5]) << 8, "virtio gso_size")
    require(header.checksumStart == UInt16(bytes[6]) | UInt16(bytes[7]) << 8, "virtio csum_start")
    require(header.checksumOffset == UInt16(bytes[8]) | UInt16(bytes[9]) << 8, "virtio csum_offset")
    let out = GuardedBuffer(count: VirtioNetHeader.length)
    header.write(to: out.start)
    out.checkGuards("VirtioNetHeader.write")
    require(Array(out.bytes) == bytes, "VirtioNetHeader.write does not give back the bytes read")
}

/// No IPv6 packet whose next header is neither TCP nor UDP (so one with extension headers, RFC 8200
/// section 4) is taken for splitting or merging.
func checkExtensionHeadersRefused(_ packet: UnsafeRawPointer, length: Int) {
    guard length >= 7, packet.load(as: UInt8.self) >> 4 == 6 else { return }
    let next = packet.load(fromByteOffset: 6, as: UInt8.self)
    if next != 6 {
        require(TCPSegmentation.anyHeaders(packet, length: length) == nil, "TCP headers found behind next header \(next)")
    }
    if next != 17 {
        require(UDPSegmentation.anyIPHeader(packet, length: length) == nil, "a UDP header found behind next header \(next)")
        require(!UDPSegmentation.mergeable(packet, length: length), "a datagram behind next header \(next) is mergeable")
    }
}

func isIPv6(_ b: [UInt8]) -> Bool { b[0] >> 4 == 6 }

func be16(_ b: [UInt8], _ at: Int) -> Int { Int(b[at]) << 8 | Int(b[at + 1]) }
func be32(_ b: [UInt8], _ at: Int) -> UInt32 { (0..<4).reduce(UInt32(0)) { $0 << 8 | UInt32(b[at + $1]) } }

/// A TCP/IPv4 packet's IPv4 header and TCP checksums verify (for TCP/IPv6: the TCP checksum over the
/// IPv6 pseudo-header; there is no header checksum).
func checksumsVerify(_ p: UnsafeRawPointer, length: Int, ip: Int) -> (ip: Bool, tcp: Bool) {
    let v6 = p.load(as: UInt8.self) >> 4 == 6
    let ipOK = v6 || InternetChecksum.fold(InternetChecksum.sum(p, ip)) == 0xffff
    let pseudo = v6
        ? InternetChecksum.pseudoHeader6(p, protocol: 6, length: length - ip)
        : InternetChecksum.pseudoHeader(p, protocol: 6, length: length - ip)
    let tcpOK = InternetChecksum.fold(InternetChecksum.sum(p + ip, length - ip, initial: pseudo)) == 0xffff
    return (ipOK, tcpOK)
}

func segmentAll(_ packet: UnsafeRawPointer, length: Int, headers h: (ip: Int, tcp: Int), mss: Int, original: [UInt8])
    -> [[UInt8]]
{
    let headerLength = h.ip + h.tcp
    let payloadTotal = length - headerLength
    let expectedCount = payloadTotal == 0 ? 1 : (payloadTotal + mss - 1) / mss
    // The reader hands segments to slots of `room` bytes only when ip + tcp + mss fits; the tightest
    // such slot is what every segment gets here.
    let room = headerLength + mss
    let out = GuardedBuffer(count: room)
    var segments: [[UInt8]] = []
    var payload: [UInt8] = []
    let seq0 = be32(original, h.ip + 4)
    let flags0 = original[h.ip + 13]
    var rewritten = [Bool](repeating: false, count: headerLength)
    let v6 = isIPv6(original)
    // IPv6: payload length; IPv4: total length, ID, header checksum; TCP: sequence number, flags, checksum.
    let ipFields = v6 ? [4, 5] : [2, 3, 4, 5, 10, 11]
    for i in ipFields + [h.ip + 4, h.ip + 5, h.ip + 6, h.ip + 7, h.ip + 13, h.ip + 16, h.ip + 17] { rewritten[i] = true }
    var index = 0
    while true {
        let n = TCPSegmentation.segment(
            packet, length: length, ipHeader: h.ip, tcpHeader: h.tcp, mss: mss, index: index, into: out.start)
        out.checkGuards("segment \(index) (mss \(mss), \(length)-byte packet)")
        if n == 0 { break }
        require(index < expectedCount, "segment \(index) exists; expected \(expectedCount)")
        require(n > 0 && n <= room, "segment \(index) is \(n) bytes, room for \(room)")
        let s = Array(out.bytes.prefix(n))
        if v6 {
            require(be16(s, 4) == n - 40, "segment \(index): IPv6 payload length \(be16(s, 4)) for \(n) bytes")
        } else {
            require(be16(s, 2) == n, "segment \(index): IPv4 total length \(be16(s, 2)) for \(n) bytes")
        }
        let verified = s.withUnsafeBytes { checksumsVerify($0.baseAddress!, length: n, ip: h.ip) }
        require(verified.ip, "segment \(index): IPv4 header checksum")
        require(verified.tcp, "segment \(index): TCP checksum")
        require(be32(s, h.ip + 4) == seq0 &+ UInt32(truncatingIfNeeded: index * mss), "segment \(index): sequence number")
        let isLast = index == expectedCount - 1
        let flags = s[h.ip + 13]
        let expectedFlags = flags0 & (isLast ? 0xff : ~UInt8(0x09)) & (index == 0 ? 0xff : ~UInt8(0x80))
        require(flags == expectedFlags, "segment \(index): flags \(flags) for \(flags0)")
        // Everything else in the headers is copied: bytes other than length, ID, checksums, seq, flags.
        for i in 0..<headerLength where !rewritten[i] && s[i] != original[i] {
            fatalError("invariant broken: segment \(index): header byte \(i) changed")
        }
        payload += s[headerLength...]
        segments.append(s)
        index += 1
        if index > expectedCount { break }
    }
    require(index == expectedCount, "\(index) segments, expected \(expectedCount)")
    require(payload == Array(original[headerLength...]), "the segments' payloads are not the super-packet's")
    return segments
}

/// The writer's merge (TunDevice.writeVirtio), on the segments just made.
func merge(_ segments: [[UInt8]], headers h: (ip: Int, tcp: Int), mss: Int, original: [UInt8]) {
    guard let firstBytes = segments.first else { return }
    let headerLength = h.ip + h.tcp
    // Exactly sized copies, as batch slots would hold them.
    let copies = segments.map { s -> UnsafeMutableRawPointer in
        let p = UnsafeMutableRawPointer.allocate(byteCount: s.count, alignment: 16)
        p.copyMemory(from: s, byteCount: s.count)
        return p
    }
    defer { copies.forEach { $0.deallocate() } }
    let first = copies[0]
    let firstLength = firstBytes.count
    guard TCPSegmentation.canStartRun(first, h, length: firstLength), firstBytes[h.ip + 13] & 0x08 == 0 else { return }
    let runMSS = firstLength - headerLength
    var total = firstLength
    var expected = be32(firstBytes, h.ip + 4) &+ UInt32(runMSS)
    var push = false
    var end = 1
    var merged = Array(firstBytes[headerLength...])
    while end < segments.count && end < 64 {
        let l = segments[end].count
        let next = copies[end]
        guard let nh = TCPSegmentation.headers(next, length: l) else { break }
        let payload = l - headerLength
        guard payload > 0, payload <= runMSS, total + payload <= 65535,
            TCPSegmentation.canFollow(first, h, next, nh, expectedSequence: expected)
        else { break }
        merged += segments[end][headerLength...]
        total += payload
        expected &+= UInt32(payload)
        end += 1
        if segments[end - 1][h.ip + 13] & 0x08 != 0 {
            push = true
            break
        }
        if payload < runMSS { break }
    }
    guard end > 1 else { return }
    let head = GuardedBuffer(count: headerLength)
    head.start.copyMemory(from: first, byteCount: headerLength)
    let virtio = TCPSegmentation.finishMerge(head.start, headers: h, totalLength: total, mss: runMSS, pushLast: push)
    head.checkGuards("finishMerge")
    require(virtio.gsoSize == UInt16(runMSS) && virtio.headerLength == UInt16(headerLength), "merge virtio header")
    let v6 = isIPv6(firstBytes)
    require(virtio.gsoType == (v6 ? VirtioNetHeader.gsoTCPv6 : VirtioNetHeader.gsoTCPv4), "merge gso type")
    // The super-packet the kernel receives: merged head, then the payloads; it completes the checksum.
    var superPacket = Array(head.bytes) + merged
    require(superPacket.count == total && (v6 ? be16(superPacket, 4) == total - 40 : be16(superPacket, 2) == total),
        "merged IP length")
    let completed = superPacket.withUnsafeMutableBytes {
        InternetChecksum.completePartial(
            $0.baseAddress!, length: total, start: Int(virtio.checksumStart), offset: Int(virtio.checksumOffset))
    }
    require(completed, "the merged packet's checksum field is inside it")
    let verified = superPacket.withUnsafeBytes { checksumsVerify($0.baseAddress!, length: total, ip: h.ip) }
    require(verified.ip && verified.tcp, "merged packet checksums (ip \(verified.ip), tcp \(verified.tcp))")
    // The merged payload is a prefix of the original super-packet's payload.
    require(Array(superPacket[headerLength...]) == Array(original[headerLength..<(headerLength + merged.count)]),
        "the merged payload is not the original's")
}

/// A UDP/IPv4 packet's IPv4 header and UDP checksums verify (a zero UDP checksum means none); for UDP/IPv6
/// the UDP checksum over the IPv6 pseudo-header.
func udpChecksumsVerify(_ p: UnsafeRawPointer, length: Int, ip: Int) -> (ip: Bool, udp: Bool) {
    let v6 = p.load(as: UInt8.self) >> 4 == 6
    let ipOK = v6 || InternetChecksum.fold(InternetChecksum.sum(p, ip)) == 0xffff
    let pseudo = v6
        ? InternetChecksum.pseudoHeader6(p, protocol: 17, length: length - ip)
        : InternetChecksum.pseudoHeader(p, protocol: 17, length: length - ip)
    let udpOK = InternetChecksum.fold(InternetChecksum.sum(p + ip, length - ip, initial: pseudo)) == 0xffff
    return (ipOK, udpOK)
}

/// The reader's UDP split (TunDevice.readVirtio with gso_type UDP_L4).
func segmentUDP(_ packet: UnsafeRawPointer, length: Int, ip: Int, size: Int, original: [UInt8]) -> [[UInt8]] {
    let headerLength = ip + 8
    let payloadTotal = length - headerLength
    let expectedCount = (payloadTotal + size - 1) / size
    let room = headerLength + size  // the reader's check: ip + 8 + gso_size must fit the slot
    let out = GuardedBuffer(count: room)
    var datagrams: [[UInt8]] = []
    var payload: [UInt8] = []
    var index = 0
    while index <= expectedCount {
        let n = UDPSegmentation.segment(packet, length: length, ipHeader: ip, size: size, index: index, into: out.start)
        out.checkGuards("UDP segment \(index) (size \(size), \(length)-byte packet)")
        if n == 0 { break }
        require(n > headerLength && n <= room, "UDP segment \(index) is \(n) bytes, room for \(room)")
        let d = Array(out.bytes.prefix(n))
        if isIPv6(original) {
            require(be16(d, 4) == n - 40 && be16(d, ip + 4) == n - ip, "UDP segment \(index): IPv6/UDP lengths")
        } else {
            require(be16(d, 2) == n && be16(d, ip + 4) == n - ip, "UDP segment \(index): IPv4/UDP lengths")
        }
        let verified = d.withUnsafeBytes { udpChecksumsVerify($0.baseAddress!, length: n, ip: ip) }
        require(verified.ip && verified.udp, "UDP segment \(index): checksums (ip \(verified.ip), udp \(verified.udp))")
        if isIPv6(original) {
            require(Array(d[0..<4]) == Array(original[0..<4]) && Array(d[6..<(ip + 4)]) == Array(original[6..<(ip + 4)]),
                "UDP segment \(index): copied header fields")
        } else {
            require(Array(d[0..<2]) == Array(original[0..<2]) && Array(d[6..<10]) == Array(original[6..<10])
                && Array(d[12..<(ip + 4)]) == Array(original[12..<(ip + 4)]), "UDP segment \(index): copied header fields")
        }
        payload += d[headerLength...]
        datagrams.append(d)
        index += 1
    }
    require(index == expectedCount, "\(index) UDP segments, expected \(expectedCount)")
    require(payload == Array(original[headerLength...]), "the UDP segments' payloads are not the super-packet's")
    return datagrams
}

/// The writer's UDP merge (TunDevice.writePackets with USO), on the datagrams just made; `ip` is their IP
/// header length (the writer merges only 20-byte IPv4 headers and 40-byte IPv6 ones).
func mergeUDP(_ datagrams: [[UInt8]], ip: Int) {
    let hl = ip + 8
    guard let firstBytes = datagrams.first, firstBytes.count > hl,
        firstBytes.withUnsafeBytes({ UDPSegmentation.mergeable($0.baseAddress!, length: firstBytes.count) })
    else { return }
    require(ip == 20 || ip == 40, "a datagram with a \(ip)-byte IP header is mergeable")
    let copies = datagrams.map { d -> UnsafeMutableRawPointer in
        let p = UnsafeMutableRawPointer.allocate(byteCount: d.count, alignment: 16)
        p.copyMemory(from: d, byteCount: d.count)
        return p
    }
    defer { copies.forEach { $0.deallocate() } }
    require(UDPSegmentation.mergeHeaderLength(copies[0]) == hl, "mergeHeaderLength")
    let size = firstBytes.count - hl
    var total = firstBytes.count
    var merged = Array(firstBytes[hl...])
    var end = 1
    while end < datagrams.count && end < 64 {
        let l = datagrams[end].count
        guard l > hl else { break }
        let payload = l - hl
        guard payload <= size, total + payload <= 65535, UDPSegmentation.mergeable(copies[end], length: l),
            UDPSegmentation.canFollow(copies[0], copies[end])
        else { break }
        merged += datagrams[end][hl...]
        total += payload
        end += 1
        if payload < size { break }
    }
    guard end > 1 else { return }
    let head = GuardedBuffer(count: hl)
    head.start.copyMemory(from: copies[0], byteCount: hl)
    let virtio = UDPSegmentation.finishMerge(head.start, totalLength: total, size: size)
    head.checkGuards("UDPSegmentation.finishMerge")
    require(virtio.headerLength == UInt16(hl) && virtio.checksumStart == UInt16(ip), "merged UDP virtio header")
    var superPacket = Array(head.bytes) + merged
    let ipLengthOK = ip == 40 ? be16(superPacket, 4) == total - 40 : be16(superPacket, 2) == total
    require(ipLengthOK && be16(superPacket, ip + 4) == total - ip, "merged UDP lengths")
    let completed = superPacket.withUnsafeMutableBytes {
        InternetChecksum.completePartial($0.baseAddress!, length: total, start: Int(virtio.checksumStart), offset: Int(virtio.checksumOffset))
    }
    require(completed, "the merged UDP checksum field is inside the packet")
    let verified = superPacket.withUnsafeBytes { udpChecksumsVerify($0.baseAddress!, length: total, ip: ip) }
    require(verified.ip && verified.udp, "merged UDP packet checksums (ip \(verified.ip), udp \(verified.udp))")
    // Split again as the kernel would at delivery, the datagrams come back.
    let again = superPacket.withUnsafeBytes { p in
        (0..<end).map { i -> [UInt8] in
            let out = UnsafeMutableRawPointer.allocate(byteCount: hl + size, alignment: 16)
            defer { out.deallocate() }
            let n = UDPSegmentation.segment(p.baseAddress!, length: total, ipHeader: ip, size: size, index: i, into: out)
            return Array(UnsafeRawBufferPointer(start: out, count: n)[hl...])
        }
    }
    require(again == datagrams[0..<end].map { Array($0[hl...]) }, "a merged UDP run splits back into other datagrams")
}
