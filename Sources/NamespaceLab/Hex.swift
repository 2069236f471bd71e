// Hexadecimal text to bytes, for test vectors, expected packet contents and `tunvpn demo`'s reading of
// tcpdump's hex dump: the project's one decoder. A character that is not a hex digit, or an odd number of digits, is an error naming where, never
// a silently wrong byte (a vector with a typo must fail, not test something else).

/// Why a string is not hexadecimal bytes.
public struct HexError: Error, Equatable, CustomStringConvertible {
    /// The offset (in UTF-8 bytes) of the offending character, or the string's length if it is odd.
    public var offset: Int
    public var description: String
}

public enum Hex {
    /// The bytes `text` spells, two digits each (upper or lower case; no spaces or prefix).
    public static func bytes(_ text: some StringProtocol) throws(HexError) -> [UInt8] {
        let digits = Array(text.utf8)
        guard digits.count % 2 == 0 else {
            throw HexError(offset: digits.count, description: "odd number of hex digits (\(digits.count)) in \"\(text)\"")
        }
        var out: [UInt8] = []
        out.reserveCapacity(digits.count / 2)
        for pair in stride(from: 0, to: digits.count, by: 2) {
            var byte: UInt8 = 0
            for offset in pair..<pair + 2 {
                let c = digits[offset]
                let value: UInt8
                switch c {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): value = c - UInt8(ascii: "0")
                case UInt8(ascii: "a")...UInt8(ascii: "f"): value = c - UInt8(ascii: "a") + 10
                case UInt8(ascii: "A")...UInt8(ascii: "F"): value = c - UInt8(ascii: "A") + 10
                default:
                    throw HexError(
                        offset: offset,
                        description: "'\(Character(Unicode.Scalar(c)))' at offset \(offset) is not a hex digit in \"\(text)\"")
                }
                byte = byte << 4 | value
            }
            out.append(byte)
        }
        return out
    }
}
