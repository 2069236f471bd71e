// Fuzz target: the server's allow-list (`AllowList(parsing:)`, Sources/Transport/AllowList.swift), read
// from a file the operator edits.
//
// Invariants: a parsed list has no key or address twice, and its text form parses back to the same
// keys, addresses of both families, routed prefixes and comments; an error names a line of the input; checking the
// addresses against the server's prefixes (`outOfPrefix`) names a client's line, and passes only
// addresses inside their family's prefix.

import Crypto
import FuzzSupport
import Transport

@_cdecl("FuzzAllowList_main")
public func main(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    runFuzzer(argc, argv) { data, size in fuzz(data, size) }
}

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutableRawPointer) -> Int32 {
    writeSeedsIfAsked {
        let a = FuzzKeys.client.publicKey.base64
        let b = FuzzKeys.otherClient.publicKey.base64
        let list = AllowList(clients: [
            AllowedClient(key: FuzzKeys.client.publicKey, address: IPv4Address(10, 8, 0, 7), comment: "laptop"),
            AllowedClient(key: FuzzKeys.otherClient.publicKey),
        ])
        return [
            ("text-form", Array(list.text.utf8)),
            ("comments", Array("# clients\n\n\(a) 10.8.0.2/32\t# phone\n   \n\(b)\n".utf8)),
            ("duplicate-key", Array("\(a)\n\(a) 10.8.0.3\n".utf8)),
            ("duplicate-address", Array("\(a) 10.8.0.3\n\(b) 10.8.0.3\n".utf8)),
            ("bad-address", Array("\(a) 10.8.0.256\n".utf8)),
            ("three-fields", Array("\(a) 10.8.0.2 extra\n".utf8)),
            ("crlf", Array("\(a) 10.8.0.2\r\n\(b)\r\n".utf8)),
            ("dual-stack", Array("\(a) 10.8.0.2 fd00::2  # laptop\n\(b) fd00::3/128 10.8.0.3/32\n".utf8)),
            ("two-ipv6", Array("\(a) fd00::2 fd00::3\n".utf8)),
            ("ipv6-outside", Array("\(a) 2001:db8::2\n\(b) ::ffff:10.8.0.4\n".utf8)),
            ("routed", Array("\(a) 10.8.0.5/32,fd00:8::5/128,192.168.50.0/24 # office\n\(b) 192.168.60.7/32 10.8.0.6, 192.168.50.0/24\n".utf8)),
        ]
    }
    return 0
}

let prefix = IPv4Prefix(address: IPv4Address(10, 8, 0, 1), length: 16)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data else { return 0 }
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    switch Result(catching: { () throws(AllowListError) in try AllowList(parsing: text) }) {
    case .success(let list):
        require(Set(list.clients.map(\.key)).count == list.clients.count, "a key is listed twice")
        let addresses = list.clients.compactMap(\.address)
        require(Set(addresses).count == addresses.count, "an address is given twice")
        let again: AllowList
        do { again = try AllowList(parsing: list.text) } catch {
            fatalError("invariant broken: the text form of a parsed list does not parse: \(error)\n\(list.text)")
        }
        require(again.clients.map(\.key) == list.clients.map(\.key), "keys change on a round trip")
        require(again.clients.map(\.address) == list.clients.map(\.address), "addresses change on a round trip")
        require(again.clients.map(\.address6) == list.clients.map(\.address6), "IPv6 addresses change on a round trip")
        require(again.clients.map(\.routed) == list.clients.map(\.routed), "routed prefixes change on a round trip")
        let addresses6 = list.clients.compactMap(\.address6)
        require(Set(addresses6).count == addresses6.count, "an IPv6 address is given twice")
        for prefix6 in [nil, IPv6Prefix(address: IPv6Address(high: 0xfd00 << 48, low: 1), length: 64)] {
            if let error = list.outOfPrefix(prefix, prefix6) {
                require(list.clients.contains { $0.line == error.line }, "a prefix error on line \(error.line), which has no client")
            } else {
                require(list.clients.allSatisfy { c in c.address.map { prefix.contains($0) && $0 != prefix.address } ?? true },
                    "an IPv4 address outside \(prefix) passed")
                require(list.clients.allSatisfy { c in
                    c.address6.map { a in prefix6.map { $0.contains(a) && a != $0.address } ?? false } ?? true
                }, "an IPv6 address outside \(String(describing: prefix6)) passed")
            }
        }
        require(again.clients.map(\.comment) == list.clients.map(\.comment),
            "comments change on a round trip: \(list.clients.map(\.comment)) → \(again.clients.map(\.comment))")
    case .failure(let error):
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).count
        require(error.line >= 1 && error.line <= lines, "error on line \(error.line) of \(lines)")
        _ = error.description
    }
    return 0
}
