// A wg-quick(8) configuration file for a stock WireGuard client of a server in WireGuard mode: the
// [Interface] (PrivateKey, Address, DNS) and one [Peer] (PublicKey, PresharedKey, Endpoint, AllowedIPs,
// PersistentKeepalive), as wg-quick(8) and wg(8) "CONFIGURATION FILE FORMAT" define them. The official
// mobile apps import the same text (as a file or a QR code).

import Crypto
import Transport

/// A wg-quick file, checked field by field before it is written.
public struct WgQuickFile: Sendable {
    /// The client's private key.
    public var privateKey: PrivateKey
    /// The client's tunnel addresses with their prefix lengths, e.g. `10.8.0.5/32`, `fd00::5/128`.
    public var addresses: [String]
    /// Resolvers for the client (wg-quick's DNS), possibly none.
    public var dns: [String]
    /// The server's public key.
    public var peerKey: PublicKey
    /// The preshared key, or nil for none.
    public var presharedKey: SecretBytes?
    /// The server's endpoint, HOST:PORT or [IPv6]:PORT.
    public var endpoint: String
    /// What the client routes to the server, e.g. `0.0.0.0/0, ::/0` or the tunnel prefix.
    public var allowedIPs: [String]
    /// PersistentKeepalive in seconds (1...65535), or nil for off.
    public var persistentKeepalive: Int?

    public init(
        privateKey: PrivateKey, addresses: [String], dns: [String] = [], peerKey: PublicKey, presharedKey: SecretBytes? = nil,
        endpoint: String, allowedIPs: [String], persistentKeepalive: Int? = nil
    ) {
        self.privateKey = privateKey
        self.addresses = addresses
        self.dns = dns
        self.peerKey = peerKey
        self.presharedKey = presharedKey
        self.endpoint = endpoint
        self.allowedIPs = allowedIPs
        self.persistentKeepalive = persistentKeepalive
    }

    /// The first problem that would make wg-quick refuse the file (or write something else than meant),
    /// as one line naming the field, or nil.
    public var problem: String? {
        func isPrefix(_ s: String) -> Bool { s.contains("/") && (IPv4Prefix(s) != nil || IPv6Prefix(s) != nil) }
        func isAddress(_ s: String) -> Bool { IPv4Address(s) != nil || IPv6Address(s) != nil }
        if addresses.isEmpty { return "Address: at least one tunnel address is needed, e.g. 10.8.0.5/32" }
        if let bad = addresses.first(where: { !isPrefix($0) }) {
            return "Address: '\(bad)' is not an address with a prefix length, e.g. 10.8.0.5/32 or fd00::5/128"
        }
        if let bad = dns.first(where: { !isAddress($0) }) { return "DNS: '\(bad)' is not an IP address, e.g. 10.8.0.1" }
        if allowedIPs.isEmpty { return "AllowedIPs: at least one prefix is needed, e.g. 0.0.0.0/0" }
        if let bad = allowedIPs.first(where: { !isPrefix($0) }) {
            return "AllowedIPs: '\(bad)' is not a prefix, e.g. 10.8.0.0/24 or ::/0"
        }
        do {
            _ = try EndpointText(endpoint, option: "Endpoint", allowsPortZero: false, examplePort: 51820)
        } catch {
            return error.message
        }
        if let k = persistentKeepalive, !(1...65535).contains(k) {
            return "PersistentKeepalive: \(k) is outside 1...65535 seconds, e.g. 25"
        }
        if let psk = presharedKey, psk.count != 32 { return "PresharedKey: \(psk.count) bytes, not 32" }
        return nil
    }

    /// The file's text; throws `ControlError` naming the field when `problem` is not nil.
    public func render() throws(ControlError) -> String {
        if let problem { throw ControlError("wg-quick file: \(problem)") }
        var lines = ["[Interface]", "PrivateKey = \(privateKey.base64)", "Address = \(addresses.joined(separator: ", "))"]
        if !dns.isEmpty { lines.append("DNS = \(dns.joined(separator: ", "))") }
        lines += ["", "[Peer]", "PublicKey = \(peerKey.base64)"]
        if let psk = presharedKey { lines.append("PresharedKey = \(psk.withUnsafeBytes { Base64.encode($0) })") }
        lines.append("Endpoint = \(endpoint)")
        lines.append("AllowedIPs = \(allowedIPs.joined(separator: ", "))")
        if let k = persistentKeepalive { lines.append("PersistentKeepalive = \(k)") }
        return lines.joined(separator: "\n") + "\n"
    }
}
