// The TUN device's IPv6 address (`HostNetwork.setIPv6Address`), in a fresh network namespace per test
// (TestSupport.runInFreshNetworkNamespace, as TunDeviceTests): added, replaced by another, removed.

import Glibc
import TestSupport
import Testing
import Transport

@testable import Platform

@Suite(.needsRoot("creates a TUN device in a fresh network namespace")) struct InterfaceAddress6Tests {
    @Test func theDeviceKeepsExactlyTheGlobalIPv6AddressItIsGiven() throws {
        let seen = try runInFreshNetworkNamespace { () throws -> [String] in
            let device = try TunDevice.open(name: "tvtest6")
            defer { device.close() }
            try device.configure(address: IPv4Prefix(address: IPv4Address(10, 77, 0, 1), length: 24), mtu: 1420)
            func globals() throws -> String {
                let text = try KeyFiles.readSmallFile("/proc/thread-self/net/if_inet6").text
                return HostNetwork.parseInterfaceAddresses6(String(decoding: text, as: UTF8.self))
                    .filter { $0.device == "tvtest6" && $0.scope == 0 }.map { "\($0.address)/\($0.prefixLength)" }.sorted()
                    .joined(separator: " ")
            }
            var out: [String] = []
            try HostNetwork.setIPv6Address(IPv6Prefix("fd00:8::2/64"), device: "tvtest6")
            out.append(try globals())
            try HostNetwork.setIPv6Address(IPv6Prefix("fd00:8::2/64"), device: "tvtest6")  // already there
            out.append(try globals())
            try HostNetwork.setIPv6Address(IPv6Prefix("fd00:9::7/120"), device: "tvtest6")
            out.append(try globals())
            try HostNetwork.setIPv6Address(nil, device: "tvtest6")
            out.append(try globals())
            return out
        }
        #expect(seen == ["fd00:8::2/64", "fd00:8::2/64", "fd00:9::7/120", ""])
    }
}
