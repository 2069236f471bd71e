// Fuzz target: the server's allow-list (`AllowList(parsing:)`, Sources/Transport/AllowList.swift), read
// from a file the operator edits.
//
// Invariants: a parsed list has no key or address twice, and its text form parses back to the same
// keys, addresses and comments; an error names a line of the input.

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
        ]
    }
    return 0
}

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
        require(again.clients.map(\.comment) == list.clients.map(\.comment),
            "comments change on a round trip: \(list.clients.map(\.comment)) → \(again.clients.map(\.comment))")
    case .failure(let error):
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).count
        require(error.line >= 1 && error.line <= lines, "error on line \(error.line) of \(lines)")
        _ = error.description
    }
    return 0
}
