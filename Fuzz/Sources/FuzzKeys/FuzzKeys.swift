// Fuzz target: key files. `PrivateKey(base64:)` and `PublicKey(base64:)` parse what `.key` and `.pub`
// files (and the allow-list's first column) hold: 44 characters of standard base64, surrounding
// whitespace ignored.
//
// Invariants: both parsers agree on what they accept; an accepted text is, once trimmed, exactly the
// canonical encoding of its 32 bytes (so no two texts name one key); an error says "not base64" or gives a
// decoded length other than 32.

import Crypto
import FuzzSupport

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutableRawPointer) -> Int32 {
    writeSeedsIfAsked {
        [
            ("private", Array(FuzzKeys.server.base64.utf8)),
            ("public-newline", Array((FuzzKeys.client.publicKey.base64 + "\n").utf8)),
            ("public-spaces", Array(("  \t" + FuzzKeys.otherClient.publicKey.base64 + " \r\n").utf8)),
            ("all-zero", Array("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".utf8)),
            ("unpadded", Array("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".utf8)),
            ("too-long", Array("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".utf8)),
            ("url-alphabet", Array("-_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".utf8)),
            ("empty", []),
        ]
    }
    return 0
}

@_cdecl("FuzzKeys_main")
public func main(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    runFuzzer(argc, argv) { data, size in fuzz(data, size) }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data else { return 0 }
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    let trimmed = String(decoding: Array(text.utf8).trimmingKeySpaces(), as: UTF8.self)
    let publicResult = Result { () throws(KeyDecodingError) in try PublicKey(base64: text) }
    let privateResult = Result { () throws(KeyDecodingError) in try PrivateKey(base64: text) }
    switch (publicResult, privateResult) {
    case (.success(let pub), .success(let priv)):
        require(pub.bytes.count == 32, "a public key has 32 bytes")
        require(priv.secret.count == 32, "a private key has 32 bytes")
        require(pub.base64 == trimmed, "accepted '\(trimmed)' is not the canonical encoding \(pub.base64)")
        require(priv.base64 == trimmed, "private key text does not round-trip")
        require(try! PublicKey(base64: pub.base64) == pub, "canonical text parses to another key")
    case (.failure(let a), .failure(let b)):
        require(a == b, "public and private parsers disagree: \(a) vs \(b)")
        if case .wrongLength(let n) = a { require(n != 32, "wrongLength(32)") }
        _ = a.description
    default:
        fatalError("invariant broken: one parser accepted what the other refused: \(publicResult) \(privateResult)")
    }
    return 0
}

extension Array where Element == UInt8 {
    /// Drops the whitespace `Base64.decodeKey` ignores (space, tab, CR, LF) from both ends.
    func trimmingKeySpaces() -> ArraySlice<UInt8> {
        let isSpace: (UInt8) -> Bool = { $0 == 0x20 || $0 == 0x0a || $0 == 0x0d || $0 == 0x09 }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else {
            return []
        }
        return self[first...last]
    }
}
