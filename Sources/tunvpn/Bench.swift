// `tunvpn bench`: each cipher suite's seal and open speed next to libsodium's (Sources/CipherBench has the
// measurement and why it is fair).

import ArgumentParser
import CipherBench
import Control
import Crypto

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure each cipher suite's seal and open speed here with each AEAD provider, next to libsodium's own.",
        discussion: """
            Seals and opens 1420-byte (a full tunnel MTU) and 64-byte packets in process, through the same \
            SessionCipher the tunnel uses, once with each AEAD provider (libsodium, OpenSSL's libcrypto), \
            and then through libsodium's C functions called directly in the same loop. The "vs libsodium" \
            columns are libsodium's time per packet over the provider's (above 1: faster); a few percent \
            either way is noise. GB/s counts packet bytes on one core. Nothing touches the network.

            Examples:
              tunvpn bench
              tunvpn bench --suite chacha20poly1305 --seconds 3
              tunvpn bench --suite xchacha20poly1305 --crypto-provider openssl
            """)

    @Option(help: ArgumentHelp("Seconds per measurement (four measurements per suite and size).", valueName: "SECONDS"))
    var seconds: Double = 1

    @Option(help: ArgumentHelp("Suite to measure, repeatable (default: every suite this machine runs).", valueName: "NAME"))
    var suite: [String] = []

    @Option(
        help: ArgumentHelp(
            "AEAD provider to measure, repeatable (default: libsodium and openssl).", valueName: "PROVIDER"))
    var cryptoProvider: [String] = []

    @Option(help: ArgumentHelp("Packet size to measure, repeatable, 0 to 65535 (default: 1420 and 64).", valueName: "BYTES"))
    var bytes: [Int] = []

    func validate() throws {
        guard seconds > 0, seconds <= 600 else { throw ValidationError("--seconds must be more than 0 and at most 600") }
        for name in suite where CipherSuites.named(name) == nil {
            let known = CipherSuites.all.map { $0.name }.joined(separator: ", ")
            throw ValidationError("unknown suite '\(name)' (known: \(known))")
        }
        for b in bytes where !(0...65535).contains(b) {
            throw ValidationError("--bytes \(b): a packet size is 0 to 65535 bytes (e.g. --bytes 512)")
        }
        for name in cryptoProvider where AEADProvider(rawValue: name) == nil {
            throw ValidationError("--crypto-provider '\(name)': not a provider; use libsodium or openssl (e.g. --crypto-provider openssl)")
        }
    }

    func run() throws {
        try reportingErrors {
            let providers = cryptoProvider.isEmpty ? AEADProvider.allCases : cryptoProvider.compactMap { AEADProvider(rawValue: $0) }
            try SuiteBenchmark.run(
                seconds: seconds, suites: suite.isEmpty ? CipherSuites.available : suite.compactMap { CipherSuites.named($0) },
                providers: providers, sizes: bytes.isEmpty ? BenchLoop.packetSizes : bytes)
        }
    }
}
