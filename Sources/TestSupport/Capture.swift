// Packet captures for end-to-end tests: tcpdump on one interface inside a namespace, written to a pcap
// file, then read back three ways: the raw file bytes (to look for plaintext that must not be there),
// frames parsed from the pcap (to check protocols, ports and UDP payloads) and tcpdump's own one-line
// listing (`tcpdump -r FILE -nn`, for failure messages a person can read).
//
// tcpdump runs with `-U --immediate-mode` so every packet reaches the file as it is seen, `-B 65536`
// (a 64 MiB kernel buffer; the default 2 MiB lost about 2 % of a 4 MB veth transfer on this 2-core
// machine) and `-Z root` so it does not drop to the `tcpdump` user before opening the file in the
// test's directory. What the kernel still dropped is reported, so a check that something never
// appears can also check that nothing was missed.

import Foundation

/// A running tcpdump inside a namespace.
public final class Capture: @unchecked Sendable {
    public let file: String
    public let interface: String
    private let process: BackgroundProcess

    /// Starts capturing on `interface` in `namespace` into `file` (with an optional pcap `filter`,
    /// e.g. `["udp"]`), and waits until tcpdump says it is listening.
    public init(in namespace: NetworkNamespace, interface: String, file: String, filter: [String] = []) throws {
        self.file = file
        self.interface = interface
        process = try namespace.spawn(
            ["tcpdump", "-i", interface, "-nn", "-U", "--immediate-mode", "-B", "65536", "-Z", "root", "-w", file]
                + filter,
            logFile: file + ".log")
        guard process.waitForLog(containing: "listening on", timeout: 10) else {
            process.terminate()
            throw CaptureError.didNotStart(interface: interface, log: process.log)
        }
    }

    /// Stops tcpdump and reads the capture.
    public func stop() throws -> CaptureResult {
        process.terminate()
        let raw = [UInt8](try Data(contentsOf: URL(fileURLWithPath: file)))
        let listing = try runLoggedChecked(["tcpdump", "-r", file, "-nn"]).stdout
            .split(separator: "\n").map(String.init)
        // tcpdump's exit summary: "N packets dropped by kernel".
        let dropped = process.log.split(separator: "\n").first { $0.hasSuffix("packets dropped by kernel") }
            .flatMap { Int($0.prefix(while: \.isNumber)) }
        return CaptureResult(
            raw: raw, frames: try PcapFile.frames(in: raw), listing: listing, droppedByKernel: dropped)
    }
}

public enum CaptureError: Error, CustomStringConvertible {
    case didNotStart(interface: String, log: String)
    case malformedPcap(String)

    public var description: String {
        switch self {
        case .didNotStart(let interface, let log): "tcpdump did not start on \(interface): \(log)"
        case .malformedPcap(let what): "capture file is not a pcap file tcpdump writes: \(what)"
        }
    }
}

/// What a stopped capture holds.
public struct CaptureResult: Sendable {
    /// The pcap file, byte for byte.
    public var raw: [UInt8]
    /// Each captured frame, in order.
    public var frames: [CapturedFrame]
    /// tcpdump's one-line description of each frame, in the same order.
    public var listing: [String]
    /// Packets the kernel dropped before tcpdump could read them (nil if tcpdump did not say).
    public var droppedByKernel: Int?

    /// Whether `bytes` occur anywhere in the capture file.
    public func rawBytesContain(_ bytes: [UInt8]) -> Bool {
        Data(raw).range(of: Data(bytes)) != nil
    }

    /// tcpdump's line for frame `index`, for messages.
    public func line(_ index: Int) -> String { index < listing.count ? listing[index] : "frame \(index)" }
}

/// One captured frame, decoded as far as IPv4 or IPv6 and UDP (or the ICMPv6 type).
public struct CapturedFrame: Sendable {
    public enum Kind: Equatable, Sendable {
        case arp
        case ipv4
        case ipv6
        case other(etherType: UInt16)
    }

    public var kind: Kind
    /// The bytes as captured, from the link-layer header on.
    public var data: [UInt8]
    /// For IPv4: source and destination as dotted quads, and the protocol number. For IPv6: source and
    /// destination as inet_ntop(3) writes them, and the upper-layer protocol after any hop-by-hop,
    /// routing or destination options headers.
    public var source: String?
    public var destination: String?
    public var ipProtocol: UInt8?
    /// For UDP over either family: the ports and the payload.
    public var sourcePort: UInt16?
    public var destinationPort: UInt16?
    public var udpPayload: [UInt8]?
    /// For ICMPv6: the message type (RFC 4443 §2.1).
    public var icmpv6Type: UInt8?

    public var isUDP: Bool { ipProtocol == 17 && udpPayload != nil }

    /// IPv6 link-level control that carries no data, the counterpart of ARP: neighbour discovery (router
    /// and neighbour solicitations and advertisements, RFC 4861 §4) and multicast listener messages (MLD,
    /// RFC 2710 §3 and RFC 3810 §5, type 143 for version 2 reports).
    public var isNeighborDiscoveryOrMLD: Bool {
        guard kind == .ipv6, ipProtocol == 58, let type = icmpv6Type else { return false }
        return (130...136).contains(type) || type == 143
    }
}

/// A reader for the classic pcap format tcpdump writes (not pcapng), either byte order, micro- or
/// nanosecond timestamps, Ethernet, raw IP (TUN devices) and Linux cooked (v1, v2) link types.
public enum PcapFile {
    public static func frames(in bytes: [UInt8]) throws -> [CapturedFrame] {
        guard bytes.count >= 24 else { throw CaptureError.malformedPcap("\(bytes.count) bytes, shorter than its header") }
        let magicLE = UInt32(bytes[0]) | UInt32(bytes[1]) << 8 | UInt32(bytes[2]) << 16 | UInt32(bytes[3]) << 24
        let littleEndian: Bool
        switch magicLE {
        case 0xa1b2_c3d4, 0xa1b2_3c4d: littleEndian = true
        case 0xd4c3_b2a1, 0x4d3c_b2a1: littleEndian = false
        default: throw CaptureError.malformedPcap(String(format: "magic 0x%08x", magicLE))
        }
        func u32(_ at: Int) -> UInt32 {
            let b = bytes[at..<(at + 4)].map(UInt32.init)
            return littleEndian ? b[0] | b[1] << 8 | b[2] << 16 | b[3] << 24 : b[3] | b[2] << 8 | b[1] << 16 | b[0] << 24
        }
        let linkType = u32(20) & 0x0fff_ffff
        var frames: [CapturedFrame] = []
        var offset = 24
        while offset + 16 <= bytes.count {
            let length = Int(u32(offset + 8))
            let start = offset + 16
            guard start + length <= bytes.count else {
                throw CaptureError.malformedPcap("record at \(offset) runs past the end")
            }
            frames.append(decode(Array(bytes[start..<(start + length)]), linkType: linkType))
            offset = start + length
        }
        return frames
    }

    static func decode(_ data: [UInt8], linkType: UInt32) -> CapturedFrame {
        var frame = CapturedFrame(kind: .other(etherType: 0), data: data)
        let network: Int  // offset of the network-layer header
        var etherType: UInt16
        func be16(_ at: Int) -> UInt16 { at + 1 < data.count ? UInt16(data[at]) << 8 | UInt16(data[at + 1]) : 0 }
        switch linkType {
        case 1:  // LINKTYPE_ETHERNET
            network = 14
            etherType = be16(12)
            if etherType == 0x8100 { etherType = be16(16) }  // one 802.1Q tag
        case 101, 12, 14:  // LINKTYPE_RAW (and DLT_RAW's values on some systems)
            network = 0
            etherType = data.first.map { $0 >> 4 == 6 ? 0x86dd : 0x0800 } ?? 0
        case 113:  // LINKTYPE_LINUX_SLL
            network = 16
            etherType = be16(14)
        case 276:  // LINKTYPE_LINUX_SLL2
            network = 20
            etherType = be16(0)
        default:
            return frame
        }
        switch etherType {
        case 0x0806: frame.kind = .arp
        case 0x86dd: frame.kind = .ipv6
        case 0x0800: frame.kind = .ipv4
        default: frame.kind = .other(etherType: etherType)
        }
        if frame.kind == .ipv6 { return decodeIPv6(data, frame: frame, network: network) }
        guard frame.kind == .ipv4, data.count >= network + 20 else { return frame }
        let headerLength = Int(data[network] & 0x0f) * 4
        let totalLength = Int(be16(network + 2))
        func dotted(_ at: Int) -> String { data[at..<(at + 4)].map(String.init).joined(separator: ".") }
        frame.source = dotted(network + 12)
        frame.destination = dotted(network + 16)
        frame.ipProtocol = data[network + 9]
        let transport = network + headerLength
        let end = min(data.count, network + totalLength)
        if frame.ipProtocol == 17, transport + 8 <= end {
            frame.sourcePort = be16(transport)
            frame.destinationPort = be16(transport + 2)
            frame.udpPayload = Array(data[(transport + 8)..<end])
        }
        return frame
    }

    /// The IPv6 header (RFC 8200 §3), extension headers with the common length layout (§4.3–4.6), and UDP
    /// or the ICMPv6 type behind them.
    static func decodeIPv6(_ data: [UInt8], frame: CapturedFrame, network: Int) -> CapturedFrame {
        var frame = frame
        guard data.count >= network + 40 else { return frame }
        func be16(_ at: Int) -> UInt16 { UInt16(data[at]) << 8 | UInt16(data[at + 1]) }
        func text(_ at: Int) -> String {
            var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
            let bytes = Array(data[at..<(at + 16)])
            return bytes.withUnsafeBytes { raw in
                inet_ntop(AF_INET6, raw.baseAddress, &buffer, socklen_t(buffer.count)).map { String(cString: $0) } ?? "?"
            }
        }
        frame.source = text(network + 8)
        frame.destination = text(network + 24)
        let end = min(data.count, network + 40 + Int(be16(network + 4)))
        var next = data[network + 6]
        var offset = network + 40
        while [0, 43, 60].contains(next), offset + 8 <= end {
            next = data[offset]
            offset += (Int(data[offset + 1]) + 1) * 8
        }
        frame.ipProtocol = next
        if next == 17, offset + 8 <= end {
            frame.sourcePort = be16(offset)
            frame.destinationPort = be16(offset + 2)
            frame.udpPayload = Array(data[(offset + 8)..<end])
        } else if next == 58, offset < end {
            frame.icmpv6Type = data[offset]
        }
        return frame
    }
}
