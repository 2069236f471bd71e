// `tunvpn --version` and `tunvpn version`: what this build is and speaks.

import Crypto
import Transport

/// This build's version, protocol version and cipher suites.
public enum BuildInfo {
    /// The release version (packaging/ builds packages of it).
    public static let version = "0.9.0"

    /// Three lines: the version, the wire protocol version (docs/PROTOCOL.md, "Versions") and the cipher
    /// suites compiled in, each marked when this machine cannot run it (aes256gcm without AES-NI).
    public static var text: String {
        let suites = CipherSuites.all.map { $0.isAvailable ? $0.name : "\($0.name) (not on this CPU)" }
        return """
            tunvpn \(version)
            protocol version \(WireFormat.protocolVersion)
            cipher suites: \(suites.joined(separator: ", "))

            """
    }
}
