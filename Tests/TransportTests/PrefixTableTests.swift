// The longest-prefix-match table of routed prefixes (PrefixTable.swift) and the family-agnostic prefix
// type it is keyed by.

import Testing

@testable import Transport

private func p(_ text: String) -> IPPrefix { IPPrefix(text)! }
private func a(_ text: String) -> IPAddress { IPAddress(text)! }

@Suite struct PrefixTableTests {
    @Test func theLongestPrefixHoldingAnAddressWinsInBothFamilies() {
        var table = PrefixTable<String>()
        table.insert(p("10.0.0.0/8"), "eight")
        table.insert(p("10.1.0.0/16"), "sixteen")
        table.insert(p("10.1.2.0/24"), "twenty-four")
        table.insert(p("10.1.2.3/32"), "host")
        table.insert(p("fd00::/16"), "six-sixteen")
        table.insert(p("fd00:1:2:3::/64"), "six-sixty-four")
        table.insert(p("fd00:1:2:3::80/121"), "six-121")
        #expect(table.lookup(a("10.1.2.3")) == "host")
        #expect(table.lookup(a("10.1.2.4")) == "twenty-four")
        #expect(table.lookup(a("10.1.3.4")) == "sixteen")
        #expect(table.lookup(a("10.200.0.1")) == "eight")
        #expect(table.lookup(a("11.0.0.1")) == nil)
        #expect(table.lookup(a("fd00:1:2:3::81")) == "six-121")
        #expect(table.lookup(a("fd00:1:2:3::7f")) == "six-sixty-four")
        #expect(table.lookup(a("fd00:9::1")) == "six-sixteen")
        #expect(table.lookup(a("fe80::1")) == nil)
        // The families never mix: ::a01:203 has the bits of 10.1.2.3 in its low word.
        #expect(table.lookup(a("::a01:203")) == nil)
        #expect(table.count == 7)
    }

    @Test func zeroLengthPrefixesHoldEveryAddressOfTheirFamilyOnly() {
        var table = PrefixTable<Int>()
        table.insert(p("0.0.0.0/0"), 0)
        #expect(table.lookup(a("203.0.113.9")) == 0)
        #expect(table.lookup(a("2001:db8::1")) == nil)
        table.insert(p("::/0"), 6)
        table.insert(p("2001:db8::/32"), 32)
        #expect(table.lookup(a("2001:db8::1")) == 32)
        #expect(table.lookup(a("2001:db9::1")) == 6)
        #expect(table.lookup(a("255.255.255.255")) == 0)
    }

    @Test func hostBitsAreIgnoredAndRemovingALengthFallsBackToShorterOnes() {
        var table = PrefixTable<Int>()
        #expect(table.isEmpty && table.lookup(a("10.0.0.1")) == nil)
        table.insert(p("192.168.50.77/24"), 1)
        #expect(table[exactly: p("192.168.50.0/24")] == 1)
        #expect(table.insert(p("192.168.50.0/24"), 2) == 1, "the same prefix replaces its value")
        table.insert(p("192.168.0.0/16"), 3)
        #expect(table.lookup(a("192.168.50.9")) == 2)
        #expect(table.remove(p("192.168.50.0/24")) == 2)
        #expect(table.remove(p("192.168.50.0/24")) == nil)
        #expect(table.lookup(a("192.168.50.9")) == 3)
        #expect(table[exactly: p("192.168.50.0/24")] == nil)
        #expect(table.entries.map(\.prefix) == [p("192.168.0.0/16")])
        table.remove(p("192.168.0.0/16"))
        #expect(table.isEmpty && table.count == 0)
    }

    @Test func entriesListLongerPrefixesFirstWithinEachFamily() {
        var table = PrefixTable<Int>()
        for (i, text) in ["fd00::/8", "10.0.0.0/8", "10.2.0.0/16", "10.1.0.0/16", "fd00:1::/32"].enumerated() { table.insert(p(text), i) }
        #expect(table.entries.map(\.prefix.description) == ["10.1.0.0/16", "10.2.0.0/16", "10.0.0.0/8", "fd00:1::/32", "fd00::/8"])
    }

    @Test func prefixesParseOverlapAndKnowTheirHostBits() {
        #expect(p("192.168.50.0/24").hasHostBits == false)
        #expect(p("192.168.50.1/24").hasHostBits == true)
        #expect(p("192.168.50.1/24").network == p("192.168.50.0/24"))
        #expect(p("10.8.0.5").isHost && p("fd00::5").isHost && !p("fd00::/64").isHost)
        #expect(IPPrefix("10.8.0.0/33") == nil && IPPrefix("fd00::/129") == nil && IPPrefix("nonsense/8") == nil)
        #expect(p("10.0.0.0/8").overlaps(p("10.8.0.0/16")) && p("10.8.0.0/16").overlaps(p("10.0.0.0/8")))
        #expect(!p("10.9.0.0/16").overlaps(p("10.8.0.0/16")))
        #expect(p("0.0.0.0/0").overlaps(p("10.8.0.0/16")))
        #expect(!p("0.0.0.0/0").overlaps(p("fd00::/64")), "families never overlap")
        #expect(p("fd00:8::/48").overlaps(p("fd00:8::/64")))
    }
}
