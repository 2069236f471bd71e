// The server's default IPv6 tunnel prefix: an RFC 4193 unique local /64 derived from its public key.

import Crypto

extension IPv6Prefix {
    /// Label hashed with the server's static public key to make the prefix's Global ID.
    public static let ulaLabel: [UInt8] = Array("ula-----".utf8)

    /// `fd` ‖ Global ID ‖ subnet 0 ‖ `::1`, length 64: the Global ID (40 bits, RFC 4193 §3.1) is the first
    /// five bytes of BLAKE2b-256("ula-----" ‖ serverKey) (BLAKE2b with a 32-byte digest). RFC 4193 §3.2.2
    /// derives it from a hash so that two sites are unlikely to pick the same one; hashing the key keeps
    /// that and makes the prefix stable across restarts of one server without storing anything.
    public static func defaultTunnelPrefix(serverKey: PublicKey) -> IPv6Prefix {
        var digest = [UInt8](repeating: 0, count: 32)
        ulaLabel.withUnsafeBytes { label in serverKey.bytes.withUnsafeBytes { key in
            digest.withUnsafeMutableBytes { Blake2b.hash([label, key], into: $0) }
        } }
        var high: UInt64 = 0xfd
        for byte in digest[0..<5] { high = high << 8 | UInt64(byte) }
        high <<= 16  // subnet ID 0
        return IPv6Prefix(address: IPv6Address(high: high, low: 1), length: 64)
    }
}
