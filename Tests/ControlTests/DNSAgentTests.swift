// The DNS agent's line protocol (Control/DNSAgent.swift, docs/ROUTING.md "DNS"): what the client sends
// parses back to the same request; garbage, overlong lines, bad addresses, domains, devices and counts are
// refused by name; the line splitter reports an overlong line once and goes on with the next.

import Control
import Routing
import Testing
import Transport

struct DNSAgentTests {
    func parse(_ line: String, device: String = "tun0") -> Result<DNSAgentRequest, DNSAgentRefusal> {
        DNSAgentRequest.parse(Array(line.utf8), device: device)
    }

    func refusal(_ line: String, device: String = "tun0") -> String? {
        if case .failure(let r) = parse(line, device: device) { return r.description }
        return nil
    }

    let full = DNSAgentApply(
        method: .resolvConf, device: "tun0",
        dns: DNSSettings(resolvers: [IPAddress("10.8.0.1")!, IPAddress("fd00::53")!], searchDomains: ["corp.example", "tunvpn.test"]),
        fullTunnel: true)

    @Test func whatTheClientSendsParsesBackToTheSameRequest() {
        #expect(DNSAgentRequest.apply(full).line == "apply resolv.conf tun0 full 10.8.0.1,fd00::53 corp.example,tunvpn.test\n")
        #expect(parse(String(DNSAgentRequest.apply(full).line.dropLast())) == .success(.apply(full)))
        let split = DNSAgentApply(
            method: .systemdResolved, device: "tun0", dns: DNSSettings(resolvers: [], searchDomains: ["corp.example"]), fullTunnel: false)
        #expect(DNSAgentRequest.apply(split).line == "apply systemd-resolved tun0 split - corp.example\n")
        #expect(parse("apply systemd-resolved tun0 split - corp.example") == .success(.apply(split)))
        let noSearch = DNSAgentApply(method: .resolvConf, device: "tun0", dns: DNSSettings(resolvers: [IPAddress("10.8.0.1")!]), fullTunnel: true)
        #expect(parse("apply resolv.conf tun0 full 10.8.0.1 -") == .success(.apply(noSearch)))
        #expect(parse("revert") == .success(.revert))
        #expect(DNSAgentRequest.revert.line == "revert\n")
    }

    @Test func garbageAndMalformedRequestsAreRefusedByName() {
        #expect(refusal("") == "unknown request ''")
        #expect(refusal("rm -rf /") == "unknown request 'rm'")
        #expect(refusal("revert now") == "revert takes no arguments")
        #expect(refusal("apply resolv.conf tun0 full 10.8.0.1") == "apply takes 5 arguments, not 4")
        #expect(refusal("apply resolv.conf tun0 full 10.8.0.1 - extra") == "apply takes 5 arguments, not 6")
        #expect(refusal("apply  resolv.conf tun0 full 10.8.0.1 -") == "apply takes 5 arguments, not 6", "double spaces are empty words")
        #expect(refusal("apply resolvconf tun0 full 10.8.0.1 -") == "unknown method 'resolvconf'")
        #expect(refusal("apply resolv.conf tun0 both 10.8.0.1 -") == "tunnel mode 'both' (full or split)")
        #expect(refusal("apply resolv.conf tun0 full - -") == "nothing to apply (no resolvers and no search domains)")
        #expect(refusal("apply resolv.conf tun0 full 10.8.0.1\t-") == "a line with bytes other than printable ASCII")
        #expect(refusal("apply resolv.conf tun0 full 10.8.0.1 -\r") == "a line with bytes other than printable ASCII")
        #expect(refusal("revert\u{0}") == "a line with bytes other than printable ASCII")
        #expect(refusal("apply resolv.conf tun0 full 10.8.0.1 é.example") == "a line with bytes other than printable ASCII")
        let long = "apply resolv.conf tun0 full 10.8.0.1 " + String(repeating: "a", count: 600)
        #expect(refusal(long) == "a line of \(long.utf8.count) bytes (at most 511)")
    }

    @Test func badAddressesAndCountsAreRefused() {
        #expect(refusal("apply resolv.conf tun0 full 10.8.0.300 -") == "'10.8.0.300' is not an IP address")
        #expect(refusal("apply resolv.conf tun0 full dns.example -") == "'dns.example' is not an IP address")
        #expect(refusal("apply resolv.conf tun0 full 10.8.0.1, -") == "'' is not an IP address")
        #expect(refusal("apply resolv.conf tun0 full 127.0.0.1 -") == "127.0.0.1 is a loopback address")
        #expect(refusal("apply resolv.conf tun0 full 224.0.0.1 -") == "224.0.0.1 is a multicast address")
        #expect(refusal("apply resolv.conf tun0 full 0.0.0.0 -") == "0.0.0.0 is the unspecified address")
        #expect(refusal("apply resolv.conf tun0 full ::1 -") == "::1 is the loopback address")
        #expect(refusal("apply resolv.conf tun0 full 10.0.0.1,10.0.0.2,10.0.0.3,10.0.0.4,10.0.0.5 -") == "5 resolvers (at most 4)")
        #expect(refusal("apply resolv.conf tun0 full 10.0.0.1,10.0.0.2,10.0.0.3,10.0.0.4 -") == nil)
    }

    @Test func badDomainsAreRefused() {
        #expect(refusal("apply resolv.conf tun0 full - corp..example")?.hasPrefix("an empty label") == true)
        #expect(refusal("apply resolv.conf tun0 full - -corp.example")?.hasPrefix("a label starting or ending with '-'") == true)
        #expect(refusal("apply resolv.conf tun0 full - corp.example.")?.hasPrefix("an empty label") == true)
        #expect(refusal("apply resolv.conf tun0 full - corp_x.example")?.hasPrefix("a character other than letters") == true)
        #expect(refusal("apply resolv.conf tun0 full - a,,b") == "an empty domain")
        #expect(refusal("apply resolv.conf tun0 full - nameserver;x")?.hasPrefix("a character other than letters") == true)
        let many = (0..<20).map { "d\($0)" }.joined(separator: ",")
        #expect(refusal("apply resolv.conf tun0 full - \(many)")?.contains("the protocol carries at most 62") == true)
        let long = String(repeating: "a", count: 64) + ".example"
        #expect(refusal("apply resolv.conf tun0 full - \(long)")?.hasPrefix("a label of 64 characters") == true)
    }

    @Test func aDeviceOtherThanTheAgentsOrNoInterfaceNameIsRefused() {
        #expect(refusal("apply resolv.conf tun1 full 10.8.0.1 -") == "device tun1 is not this agent's (tun0)")
        #expect(refusal("apply resolv.conf ../../etc full 10.8.0.1 -")?.hasPrefix("bad device name") == true)
        #expect(refusal("apply resolv.conf averyveryverylongname full 10.8.0.1 -")?.hasPrefix("bad device name") == true)
        #expect(refusal("apply resolv.conf tun:0 full 10.8.0.1 -", device: "tun:0")?.hasPrefix("bad device name") == true)
        #expect(refusal("apply resolv.conf vpn0 full 10.8.0.1 -", device: "vpn0") == nil)
    }

    @Test func theLineSplitterReportsAnOverlongLineOnceAndGoesOn() {
        var splitter = LineSplitter(limit: 8)
        #expect(splitter.feed(Array("rev".utf8)) == [])
        #expect(splitter.feed(Array("ert\nok\n".utf8)) == [.line(Array("revert".utf8)), .line(Array("ok".utf8))])
        #expect(splitter.feed(Array("0123456789abcdef".utf8)) == [.overlong])
        #expect(splitter.feed(Array("more\nnext\n".utf8)) == [.line(Array("next".utf8))])
        #expect(splitter.feed(Array("1234567\n".utf8)) == [.line(Array("1234567".utf8))], "8 bytes with the newline")
        #expect(splitter.feed(Array("12345678\n".utf8)) == [.overlong], "9 with the newline")
        #expect(splitter.feed(Array("ok\n".utf8)) == [.line(Array("ok".utf8))])
    }
}
