// `tunvpn bench`: each cipher suite's seal and open speed next to libsodium's (Sources/CipherBench has the
// measurement and why it is fair).

import ArgumentParser
import CipherBench
import Control
import Crypto

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure each cipher suite's seal and open speed here, next to libsodium's own.",
        discussion: """
            Seals and opens 1420-byte (a full tunnel MTU) and 64-byte packets in process, through the same \
            SessionCipher the tunnel uses, and then through libsodium's C functions called directly in the \
            same loop. The overhead column is tunvpn's cost over libsodium's; a few percent either way is \
            noise. Gbit/s counts packet bytes on one core. Nothing touches the network.

            Examples:
              tunvpn bench
              tunvpn bench --suite chacha20poly1305 --seconds 3
            """)

    @Option(help: ArgumentHelp("Seconds per measurement (four measurements per suite and size).", valueName: "SECONDS"))
    var seconds: Double = 1

    @Option(help: ArgumentHelp("Suite to measure, repeatable (default: every suite this machine runs).", valueName: "NAME"))
    var suite: [String] = []

    func validate() throws {
        guard seconds > 0, seconds <= 600 else { throw ValidationError("--seconds must be more than 0 and at most 600") }
        for name in suite where CipherSuites.named(name) == nil {
            let known = CipherSuites.all.map { $0.name }.joined(separator: ", ")
            throw ValidationError("unknown suite '\(name)' (known: \(known))")
        }
    }

    func run() throws {
        try reportingErrors {
            try SuiteBenchmark.run(seconds: seconds, suites: suite.isEmpty ? CipherSuites.available : suite.compactMap { CipherSuites.named($0) })
        }
    }
}
