// wg(8)'s cross-platform userspace configuration protocol ("UAPI", https://www.wireguard.com/xplatform/),
// as much of it as `wg show`, `wg showconf` and WireGuard exporters need: the pure part, from an
// `EngineSnapshot` to the bytes of an answer, with no IO (the socket is `UAPIService`).
//
// A request is an operation line and a blank line. `get=1` is answered with `key=value` lines, the
// interface's first, then one group per peer, each group opened by its `public_key`:
//
//   private_key=HEX  listen_port=N  [fwmark=N]
//   public_key=HEX  preshared_key=HEX  protocol_version=1  [endpoint=IP:PORT | [IPV6]:PORT]
//   last_handshake_time_sec=N  last_handshake_time_nsec=N  tx_bytes=N  rx_bytes=N
//   persistent_keepalive_interval=N  allowed_ip=CIDR (one line each)
//
// and `errno=0` and a blank line. Keys are 64 lowercase hex digits; a handshake never made is 0 seconds.
// `set=1` is refused: `errno=-95` (-EOPNOTSUPP; wg(8) reads the negated errno, as wireguard-go sends it,
// and prints "Operation not supported"), and nothing changes: tunvpn's configuration is its own files and
// `tunvpn reload`.

import Crypto
import Engine
import Glibc
import Transport

/// The operations of the configuration protocol.
public enum UAPIOperation: Equatable, Sendable {
    case get
    case set
    /// Anything else: the connection is closed without an answer, as wireguard-go does.
    case unknown

    /// The operation a request's first line names (`get=1`, `set=1`; the newline already taken off).
    public init(requestLine line: some Collection<UInt8>) {
        switch String(decoding: line, as: UTF8.self) {
        case "get=1": self = .get
        case "set=1": self = .set
        default: self = .unknown
        }
    }
}

/// The answers of the configuration protocol, built from a snapshot.
public enum UAPIText {
    /// The answer to `set=1`: refused with EOPNOTSUPP, negated as wg(8) expects; nothing is changed.
    public static let setRefused: [UInt8] = Array("errno=-\(EOPNOTSUPP)\n\n".utf8)

    /// A peer's allowed IPs as `allowed_ip` lines give them: its tunnel addresses, as /32 and /128. The one
    /// place to extend when the snapshot carries the prefixes routed behind a peer (`AllowedClient.routed`).
    public static func allowedIPs(_ p: PeerSnapshot) -> [String] {
        [p.tunnelAddress.map { "\($0)/32" }, p.tunnelAddress6.map { "\($0)/128" }].compactMap { $0 } + p.routed
    }

    /// The answer to `get=1` for `s`, ending in `errno=0` and a blank line.
    ///
    /// The private key and the pre-shared key are in it, as WireGuard's own implementations answer (wg(8)
    /// shows them only as "(hidden)"; `wg showconf` needs them): the socket is root's, mode 0600. So the
    /// whole answer is a `SecretBytes`, wiped when freed, and the keys never pass through a `String`.
    ///
    /// - Parameters:
    ///   - privateKey: the interface's private key (the 32 bytes), nil to leave the line out.
    ///   - presharedKey: the pre-shared key every peer shares (32 zero bytes when none, as WireGuard
    ///     reports "no pre-shared key").
    ///   - allowedIPs: each peer's `allowed_ip` values (a client gives its routes for its server).
    public static func get(
        _ s: EngineSnapshot, privateKey: SecretBytes?, presharedKey: SecretBytes,
        allowedIPs: (PeerSnapshot) -> [String] = allowedIPs
    ) -> SecretBytes {
        var pieces: [Piece] = []
        if let privateKey { pieces.append(.key("private_key", .secret(privateKey))) }
        pieces.append(.text("listen_port=\(s.listenPort)\n"))
        // tunvpn marks no packets, so `fwmark` is left out (wg(8) reads its absence as off).
        for p in s.peers {
            guard let key = try? PublicKey(base64: p.publicKey) else { continue }
            pieces.append(.key("public_key", .public(key.bytes)))
            pieces.append(.key("preshared_key", .secret(presharedKey)))
            var lines = "protocol_version=1\n"
            if let e = p.endpoint { lines += "endpoint=\(e)\n" }
            lines += "last_handshake_time_sec=\(p.latestHandshake ?? 0)\n"
            lines += "last_handshake_time_nsec=0\n"
            lines += "tx_bytes=\(p.txBytes)\n"
            lines += "rx_bytes=\(p.rxBytes)\n"
            lines += "persistent_keepalive_interval=\(p.persistentKeepalive ?? 0)\n"
            for prefix in allowedIPs(p) { lines += "allowed_ip=\(prefix)\n" }
            pieces.append(.text(lines))
        }
        pieces.append(.text("errno=0\n\n"))
        return assemble(pieces)
    }

    /// Part of an answer: plain text, or a key line (`NAME=HEX\n`) whose hex is written straight into the
    /// answer's secret memory.
    private enum Piece {
        enum Key {
            case secret(SecretBytes)
            case `public`([UInt8])
        }
        case text(String)
        case key(String, Key)

        var count: Int {
            switch self {
            case .text(let t): return t.utf8.count
            case .key(let name, let key):
                let length: Int
                switch key {
                case .secret(let s): length = s.count
                case .public(let b): length = b.count
                }
                return name.utf8.count + 1 + 2 * length + 1
            }
        }
    }

    /// The pieces, one after another, in one allocation of exactly their length.
    private static func assemble(_ pieces: [Piece]) -> SecretBytes {
        let total = pieces.reduce(0) { $0 + $1.count }
        return SecretBytes(count: total) { out in
            var at = 0
            func put(_ bytes: some Collection<UInt8>) {
                for b in bytes {
                    out[at] = b
                    at += 1
                }
            }
            for piece in pieces {
                switch piece {
                case .text(let t): put(t.utf8)
                case .key(let name, let key):
                    put(name.utf8)
                    put(CollectionOfOne(UInt8(ascii: "=")))
                    // The hex and its terminating zero; the zero's place then takes the newline.
                    let write = { (raw: UnsafeRawBufferPointer) in
                        Sodium.hex(raw, into: UnsafeMutableRawBufferPointer(rebasing: out[at..<(at + 2 * raw.count + 1)]))
                        at += 2 * raw.count
                    }
                    switch key {
                    case .secret(let s): s.withUnsafeBytes(write)
                    case .public(let b): b.withUnsafeBytes(write)
                    }
                    put(CollectionOfOne(UInt8(ascii: "\n")))
                }
            }
            precondition(at == total, "every piece was counted")
        }
    }
}
