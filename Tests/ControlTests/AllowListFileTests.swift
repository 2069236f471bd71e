// The server's allow-list file as the daemon reads it: addresses of both families checked against the
// server's prefixes, each error one line naming the file and the line.

import Control
import Crypto
import Testing
import Transport

@Suite struct AllowListFileTests {
    let a = PrivateKey(random: SeededKeys(seed: 31)).publicKey
    let b = PrivateKey(random: SeededKeys(seed: 32)).publicKey
    let prefix = IPv4Prefix("10.8.0.1/16")!
    let prefix6 = IPv6Prefix("fd00:1:2:3::1/64")!

    func parse(_ text: String, prefix6: IPv6Prefix?) throws -> AllowList {
        try AllowListFile.parseAllowList(Array(text.utf8), file: "keys/clients", prefix: prefix, prefix6: prefix6)
    }

    func message(_ text: String, prefix6: IPv6Prefix?) -> String? {
        do {
            _ = try parse(text, prefix6: prefix6)
            return nil
        } catch {
            return "\(error)"
        }
    }

    @Test func addressesOfBothFamiliesInsideTheirPrefixesLoad() throws {
        let list = try parse("\(a.base64) fd00:1:2:3::7 10.8.0.7  # laptop\n\(b.base64)\n", prefix6: prefix6)
        #expect(list.clients.map(\.address6) == [IPv6Address("fd00:1:2:3::7"), nil])
        #expect(list.clients.map(\.address) == [IPv4Address(10, 8, 0, 7), nil])
    }

    @Test func eachBadAddressIsOneLineNamingTheFileAndLine() {
        #expect(
            message("\(b.base64)\n\(a.base64) 10.8.0.7 fd00:9::7\n", prefix6: prefix6)
                == "keys/clients: line 2: address fd00:9::7 for \(a.base64) is not a client address in fd00:1:2:3::1/64")
        #expect(
            message("\(a.base64) 10.9.0.7\n", prefix6: prefix6)
                == "keys/clients: line 1: address 10.9.0.7 for \(a.base64) is not a client address in 10.8.0.1/16")
        #expect(
            message("\(a.base64) fd00:1:2:3::7\n", prefix6: nil)
                == "keys/clients: line 1: IPv6 address fd00:1:2:3::7 for \(a.base64), but the server's tunnel carries no IPv6 (--no-ipv6); remove it or drop --no-ipv6")
        #expect(
            message("\(a.base64) fd00:1:2:3::7 fd00:1:2:3::8\n", prefix6: prefix6)
                == "keys/clients: line 1: two IPv6 addresses (fd00:1:2:3::7 and fd00:1:2:3::8); give at most one of each family")
        for text in [message("\(a.base64) fd00:9::7\n", prefix6: prefix6), message("\(a.base64) 10.8.0.1 fd00:1:2:3::7\n", prefix6: prefix6)] {
            #expect(text?.contains("\n") == false)
        }
    }
}

/// Deterministic key material for these tests.
struct SeededKeys: RandomSource {
    let seed: UInt8
    func fill(_ buffer: UnsafeMutableRawBufferPointer) {
        for i in buffer.indices { buffer[i] = UInt8(truncatingIfNeeded: Int(seed) &* 131 &+ i &* 7) }
    }
}
