// Which handshake and frame format an instance speaks on the wire (`--protocol`).
//
// `tunvpn` is this project's own protocol (docs/PROTOCOL.md): BLAKE2b, suite negotiation, pushed
// addressing. `wireguard` is WireGuard's exactly (docs/PROTOCOL.md, "WireGuard mode"; WireGuard.swift): a
// stock WireGuard peer talks to it. Both run on the same Noise, session, replay-window and timer code.

/// The wire protocol of one tunvpn instance.
public enum ProtocolMode: String, Sendable, CaseIterable, Equatable {
    case tunvpn
    case wireguard
}
