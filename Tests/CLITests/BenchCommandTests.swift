// `tunvpn bench` run as a user would, briefly: every suite this machine runs appears at both packet sizes
// with each AEAD provider, with every figure a positive number, and an unknown or unusable suite is refused in one line.

import Crypto
import Testing
import TestSupport

@Suite struct BenchCommandTests {
    @Test func benchListsEveryAvailableSuiteAtBothSizesWithEachProviderAndPositiveFigures() throws {
        let r = try runCommand(TestBinaries.tunvpn, ["bench", "--seconds", "0.05"], timeout: 120)
        #expect(r.status == 0, "\(r.stderr)")
        let lines = r.stdout.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
        let header = try #require(lines.first { $0.first == "suite" }, "no table header in:\n\(r.stdout)")
        #expect(header.joined(separator: " ").contains("provider seal ns open ns seal GB/s open GB/s seal vs libsodium open vs libsodium"))
        let rows = lines.filter { $0.count == 9 && CipherSuites.named($0[0]) != nil }
        #expect(rows.count == CipherSuites.available.count * 2 * AEADProvider.allCases.count, "\(r.stdout)")
        for suite in CipherSuites.available {
            for size in ["1420", "64"] {
                for provider in AEADProvider.allCases {
                    let row = try #require(
                        rows.first { $0[0] == suite.name && $0[1] == size && $0[2] == provider.rawValue }, "\(suite.name) \(size) \(provider) missing")
                    // seal ns and open ns positive; seal GB/s and open GB/s numbers (three decimals: a loaded machine
                    // can take 64-byte packets below 0.0005 GB/s).
                    for (i, cell) in row[3...6].enumerated() {
                        let value = try #require(Double(cell), "\(suite.name) \(size): '\(cell)' is not a number")
                        #expect(i < 2 ? value > 0 : value >= 0, "\(suite.name) \(size): \(cell)")
                    }
                    // Speeds relative to libsodium called directly: positive factors.
                    for cell in row[7...8] {
                        #expect(cell.hasSuffix("×") && (Double(cell.dropLast()) ?? 0) > 0, "\(cell)")
                    }
                }
            }
        }
    }

    @Test func benchMeasuresOnlyTheProviderAskedFor() throws {
        let r = try runCommand(
            TestBinaries.tunvpn,
            ["bench", "--seconds", "0.05", "--suite", "xchacha20poly1305", "--crypto-provider", "openssl", "--bytes", "600", "--bytes", "0"],
            timeout: 120)
        #expect(r.status == 0, "\(r.stderr)")
        let rows = r.stdout.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }.filter { $0.first == "xchacha20poly1305" }
        #expect(rows.count == 2 && rows.allSatisfy { $0[2] == "openssl" }, "\(r.stdout)")
        #expect(rows.map { $0[1] } == ["600", "0"], "\(r.stdout)")
        let tooBig = try runCommand(TestBinaries.tunvpn, ["bench", "--bytes", "70000"])
        #expect(tooBig.status != 0)
        #expect(tooBig.stderr.contains("--bytes 70000: a packet size is 0 to 65535 bytes (e.g. --bytes 512)"), "\(tooBig.stderr)")
        let bad = try runCommand(TestBinaries.tunvpn, ["bench", "--crypto-provider", "gnutls"])
        #expect(bad.status != 0)
        #expect(bad.stderr.contains("--crypto-provider 'gnutls': not a provider; use libsodium or openssl"), "\(bad.stderr)")
    }

    @Test func benchRefusesAnUnknownSuite() throws {
        let r = try runCommand(TestBinaries.tunvpn, ["bench", "--suite", "rot13"])
        #expect(r.status == 64)
        #expect(r.stderr == "tunvpn: error: unknown suite 'rot13' (known: xchacha20poly1305, chacha20poly1305, aes256gcm)\n")
    }
}
