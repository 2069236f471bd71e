// Fuzz target: the state journal's line format (`JournalEntry(encoded:)` and `encoded`,
// Sources/Routing/Journal.swift). `tunvpn down` reads the journal back after a crash, so a torn or
// tampered file must never crash it, and whatever was written must read back the same.
//
// Input: a mode byte, then
//   0: journal file text, split into lines as FileJournal does. Every decoded entry must re-encode to a
//      line that decodes to the same entry.
//   1: entries built from fuzzed arguments (the writer's side). Written as FileJournal writes them (each
//      `encoded` plus a newline) and read back as it reads them, they must come back unchanged.

import FuzzSupport
import Routing

#if canImport(Glibc)
    import Glibc
#endif

@_cdecl("FuzzJournal_main")
public func main(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    runFuzzer(argc, argv) { data, size in fuzz(data, size) }
}

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutableRawPointer) -> Int32 {
    writeSeedsIfAsked {
        let entries = [
            JournalEntry(undo: ["ip", "route", "del", "0.0.0.0/1", "dev", "tun0"]),
            JournalEntry(undo: ["sysctl", "-w", "net.ipv4.ip_forward=0"]),
            JournalEntry(undo: ["nft", "-f", "-"], input: "delete table ip tunvpn\n"),
            JournalEntry(undo: ["echo", "50% done\there"]),
        ]
        let file = entries.map { $0.encoded + "\n" }.joined()
        func args(_ fields: [String], input: String?) -> [UInt8] {
            var out: [UInt8] = [1]
            for f in fields { out += [1] + chunk(Array(f.utf8)) }
            if let input { out += [2] + chunk(Array(input.utf8)) }
            return out
        }
        return [
            ("file", [0] + Array(file.utf8)),
            ("torn-escape", [0] + Array("ip\troute\tdel\t10.0.0.0%2".utf8)),
            ("bad-hex", [0] + Array("a\t%zz\n%GG\t<\tb".utf8)),
            ("writer", args(["ip", "link", "del", "tun0"], input: nil)),
            ("writer-input", args(["nft", "-f", "-"], input: "table ip t {\n}\n")),
            ("writer-specials", args(["%", "\t", "\n", "100%"], input: "%09")),
        ]
    }
    return 0
}

/// Lines as FileJournal.entries() splits them.
func readBack(_ file: String) -> [JournalEntry] {
    file.split(separator: "\n").filter { !$0.isEmpty }.compactMap { JournalEntry(encoded: $0) }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data, size > 0 else { return 0 }
    var input = FuzzInput(data, size)
    if input.byte() % 2 == 0 {
        let text = String(decoding: input.rest(), as: UTF8.self)
        for line in text.split(separator: "\n") where !line.isEmpty {
            guard let entry = JournalEntry(encoded: line) else { continue }
            require(!entry.undo.isEmpty, "an entry without a command")
            let encoded = entry.encoded
            require(JournalEntry(encoded: Substring(encoded)) == entry, "decode → encode → decode changed \(entry)")
        }
        return 0
    }
    // Writer's side: the format's contract (Journal.swift) is an argument list and an optional input; a
    // lone "<" as the second-to-last argument is the input marker, so a command cannot end in one; and a
    // command is not one empty argument (its line would be empty, which readers skip).
    var undo: [String] = []
    var stdinText: String? = nil
    while !input.isAtEnd && undo.count < 32 {
        let kind = input.byte()
        let text = String(decoding: input.chunk(), as: UTF8.self)
        if kind % 4 == 2 { stdinText = text } else { undo.append(text) }
    }
    guard !undo.isEmpty, undo != [""] || stdinText != nil, !(undo.count >= 2 && undo[undo.count - 2] == "<" && stdinText == nil) else { return 0 }
    // The escaper once worked on Characters, so "\r" and combining marks next to escapes did not survive
    // (the finding in Fuzz/README.md); it works on Unicode scalars now and every input is checked.
    let entry = JournalEntry(undo: undo, input: stdinText)
    let encoded = entry.encoded
    require(JournalEntry(encoded: Substring(encoded)) == entry, "encode → decode changed \(entry)")
    let file = [entry, entry].map { $0.encoded + "\n" }.joined()
    let back = readBack(file)
    require(back == [entry, entry], "written as a journal file, \(entry) reads back as \(back)")
    return 0
}


