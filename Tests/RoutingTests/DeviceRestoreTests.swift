// What puts a persistent TUN device back as it was found, in the order teardown runs it.

import Routing
import Testing

@Suite struct DeviceRestoreTests {
    @Test func teardownRemovesTunvpnsAddressesThenGivesBackTheFoundOnesTheMTUAndTheDownState() {
        let found = FoundDevice(mtu: 1400, transmitQueueLength: 700, isUp: false, address: "192.168.77.1/24")
        // Journaled in this order; teardown runs them last to first.
        let undone = Planner.restoreDevice("tvp0", found: found, ipv6: true).reversed().map { $0.undo.joined(separator: " ") }
        #expect(
            undone == [
                "ip -6 addr flush dev tvp0 scope global", "ip -4 addr flush dev tvp0", "ip -4 addr add 192.168.77.1/24 dev tvp0",
                "ip link set tvp0 mtu 1400 txqueuelen 700", "ip link set tvp0 down",
            ])
        let bare = FoundDevice(mtu: 1500, transmitQueueLength: 500, isUp: true, address: nil)
        #expect(
            Planner.restoreDevice("tun0", found: bare, ipv6: false).reversed().map { $0.undo.joined(separator: " ") }
                == ["ip -4 addr flush dev tun0", "ip link set tun0 mtu 1500 txqueuelen 500"])
    }
}
