// `tunvpn demo`'s reading of `tcpdump -nn -X` output (Sources/TunnelDemo/DemoOutput.swift), which decodes
// the hex groups with the shared `Hex` decoder (NamespaceLab).

import Testing

@testable import TunnelDemo

@Suite struct DemoCaptureTests {
    @Test func aDumpBecomesThePacketsBytesWithoutTheASCIIColumn() {
        let log = """
            tcpdump: listening on c0, link-type EN10MB (Ethernet), snapshot length 262144 bytes
            23:50:49.156264 IP 172.31.1.2.47333 > 172.31.2.2.51820: UDP, length 116
            \t0x0000:  4500 0090 efd3 4000 4011 ef46 ac1f 0102  E.....@.@..F....
            \t0x0010:  ac1f 02  ...
            23:50:49.156506 IP 172.31.2.2.51820 > 172.31.1.2.47333: UDP, length 116
            \t0x0000:  4500  E.
            """
        let capture = Capture(log)
        #expect(capture.packets.count == 2)
        #expect(
            capture.packets.first?.bytes
                == [0x45, 0x00, 0x00, 0x90, 0xef, 0xd3, 0x40, 0x00, 0x40, 0x11, 0xef, 0x46, 0xac, 0x1f, 0x01, 0x02, 0xac, 0x1f, 0x02])
        #expect(capture.packets.last?.bytes == [0x45, 0x00])
        #expect(Capture.hexBytes("0x0000:  45zz 00  E") == [0x00])
    }
}
