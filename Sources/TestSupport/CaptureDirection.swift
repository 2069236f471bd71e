// Which way a captured frame went, and waiting for a frame while tcpdump still runs.
//
// tcpdump on an interface sees frames in both directions. A kill-switch test asks what *left* a host,
// whatever its IP source address claims (an IPv6 router solicitation carries none of the IPv4
// addresses), so the direction is read from the Ethernet source address: a frame sent by the host
// carries its interface's MAC address.

import Foundation

extension CapturedFrame {
    /// The Ethernet source address as lowercase `aa:bb:cc:dd:ee:ff`; nil for a frame too short to have one
    /// (or captured on a device without a link-layer header, such as a TUN device).
    public var ethernetSource: String? {
        guard data.count >= 14 else { return nil }
        return data[6..<12].map { String(format: "%02x", $0) }.joined(separator: ":")
    }
}

extension NetworkNamespace {
    /// The MAC address of `interface` here (`/sys/class/net/IF/address` as seen from inside the namespace).
    public func macAddress(of interface: String) throws -> String {
        try run(["cat", "/sys/class/net/\(interface)/address"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

extension Capture {
    /// Waits, while tcpdump keeps running, until a captured frame satisfies `condition` or `timeout`
    /// seconds pass; returns whether one did. Reads the pcap file directly (tcpdump writes each packet
    /// at once with `-U`); a record still being written is simply looked at again on the next round.
    public func waitForFrame(timeout: Double, _ condition: (CapturedFrame) -> Bool) -> Bool {
        waitUntil(timeout: timeout, interval: 0.1) {
            guard let bytes = FileManager.default.contents(atPath: file),
                let frames = try? PcapFile.frames(in: [UInt8](bytes))
            else { return false }
            return frames.contains(where: condition)
        }
    }
}
