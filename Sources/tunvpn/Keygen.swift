// `tunvpn keygen` and `tunvpn pubkey`: key pairs in WireGuard's format.

import ArgumentParser
import Control
import Crypto
import Glibc
import Platform

struct Keygen: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a new key pair: NAME.key (private, mode 0600) and NAME.pub (public).",
        discussion: """
            The format is WireGuard's (base64 of a 32-byte X25519 key), so `wg genkey` keys work too.
            Examples:
              tunvpn keygen --name server
              tunvpn keygen --out /etc/tunvpn --name client
            """)

    @Option(help: "Directory to write the keys into.")
    var out: String = "keys"

    @Option(help: "Base name of the key files.")
    var name: String = "tunvpn"

    @Flag(help: "Replace existing key files.")
    var force = false

    func validate() throws {
        guard !name.isEmpty, !name.contains("/") else { throw ValidationError("--name must be a file name without '/'") }
    }

    func run() throws {
        try reportingErrors {
            let (base, key) = try Self.writePair(out: out, name: name, force: force)
            print("wrote \(base).key (private, mode 0600) and \(base).pub (public): \(key.publicKey.base64)")
        }
    }

    /// Writes a new key pair as OUT/NAME.key (mode 0600) and OUT/NAME.pub (0644); returns OUT/NAME and the
    /// key. Also used by `tunvpn add-client`.
    static func writePair(out: String, name: String, force: Bool) throws -> (base: String, key: PrivateKey) {
        try KeyFiles.ensureDirectory(out)
        let base = out.hasSuffix("/") ? out + name : out + "/" + name
        if !force {
            for path in [base + ".key", base + ".pub"] where KeyFiles.exists(path) {
                throw ControlError("\(path): already exists; refusing to overwrite a key (use --force to replace it)")
            }
        }
        let key = PrivateKey()
        try KeyFiles.write(key.base64 + "\n", to: base + ".key", mode: 0o600, overwrite: force)
        try KeyFiles.write(key.publicKey.base64 + "\n", to: base + ".pub", mode: 0o644, overwrite: force)
        return (base, key)
    }
}

struct Pubkey: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Read a private key on stdin and print its public key (as `wg pubkey` does).",
        discussion: """
            Example:
              tunvpn pubkey < keys/client.key
            """)

    func run() throws {
        try reportingErrors {
            var buffer = [UInt8](repeating: 0, count: 4097)
            defer { Sodium.wipe(&buffer) }
            var total = 0
            while total < buffer.count {
                let n = buffer.withUnsafeMutableBytes { Glibc.read(0, $0.baseAddress.map { $0 + total }, $0.count - total) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                total += n
            }
            do {
                let key = try PrivateKey(base64: String(decoding: buffer.prefix(total), as: UTF8.self))
                print(key.publicKey.base64)
            } catch {
                throw ControlError("stdin: private key \(error)")
            }
        }
    }
}
