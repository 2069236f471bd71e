// `tunvpn bench` run as a user would, briefly: every suite this machine runs appears at both packet sizes,
// with every figure a positive number, and an unknown or unusable suite is refused in one line.

import Crypto
import Testing
import TestSupport

@Suite struct BenchCommandTests {
    @Test func benchListsEveryAvailableSuiteAtBothSizesWithPositiveFigures() throws {
        let r = try runCommand(TestBinaries.tunvpn, ["bench", "--seconds", "0.05"], timeout: 120)
        #expect(r.status == 0, "\(r.stderr)")
        let lines = r.stdout.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
        let header = try #require(lines.first { $0.first == "suite" }, "no table header in:\n\(r.stdout)")
        #expect(header.joined(separator: " ").contains("seal ns open ns seal Gbit/s open Gbit/s libsodium seal ns"))
        let rows = lines.filter { $0.count == 10 && CipherSuites.named($0[0]) != nil }
        #expect(rows.count == CipherSuites.available.count * 2, "\(r.stdout)")
        for suite in CipherSuites.available {
            for size in ["1420", "64"] {
                let row = try #require(rows.first { $0[0] == suite.name && $0[1] == size }, "\(suite.name) \(size) missing")
                // seal ns, open ns, seal Gbit/s, open Gbit/s, libsodium seal ns, libsodium open ns: all positive.
                for cell in row[2...7] {
                    let value = try #require(Double(cell), "\(suite.name) \(size): '\(cell)' is not a number")
                    #expect(value > 0, "\(suite.name) \(size): \(cell)")
                }
                // The overheads are signed percentages.
                for cell in row[8...9] {
                    #expect(cell.hasSuffix("%") && Double(cell.dropFirst().dropLast()) != nil, "\(cell)")
                }
            }
        }
    }

    @Test func benchRefusesAnUnknownSuite() throws {
        let r = try runCommand(TestBinaries.tunvpn, ["bench", "--suite", "rot13"])
        #expect(r.status == 64)
        #expect(r.stderr == "tunvpn: error: unknown suite 'rot13' (known: xchacha20poly1305, chacha20poly1305, aes256gcm)\n")
    }
}
