// The tests' one hex decoder (TestSupport.Hex): a typo in a vector fails, it does not become a wrong byte.

import TestSupport
import Testing

@Suite struct HexTests {
    @Test func decodesUpperAndLowerCaseDigits() throws {
        #expect(try Hex.bytes("00ff7Fa0") == [0x00, 0xff, 0x7f, 0xa0])
        #expect(try Hex.bytes("") == [])
    }

    @Test func aCharacterThatIsNotAHexDigitIsAnErrorNamingItsOffset() {
        #expect(throws: HexError.self) { try Hex.bytes("00fg") }
        do {
            _ = try Hex.bytes("0a1 ")
            Issue.record("a space decoded")
        } catch {
            #expect(error.offset == 3)
            #expect(error.description.contains("' ' at offset 3"))
        }
    }

    @Test func anOddNumberOfDigitsIsAnError() {
        #expect(throws: HexError.self) { try Hex.bytes("abc") }
    }
}
