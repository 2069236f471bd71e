// A pre-created persistent TUN device (`ip tuntap add dev NAME mode tun`) is left as tunvpn found it: its
// addresses, MTU, queue length and up state, after a clean exit and after kill -9 and `tunvpn down`.

import Crypto
import Foundation
import Platform
import Routing
import Testing
import TestSupport

@Suite(.serialized, .needsRoot("needs root: it creates network namespaces and TUN devices"))
struct PersistentDeviceEndToEndTests {
    /// `ip -o link` and `ip -o addr` of the device, without the counters and indexes that change by
    /// themselves (the link-local address `addr_gen_mode` removes, and the NO-CARRIER flag).
    func state(_ host: NetworkNamespace, _ device: String) throws -> String {
        let link = try host.exec(["ip", "-o", "link", "show", "dev", device]).stdout
        let addresses = try host.exec(["ip", "-o", "addr", "show", "dev", device, "scope", "global"]).stdout
        let mtu = link.firstMatch(of: /mtu (\d+)/).map { String($0.1) } ?? "?"
        let queue = link.firstMatch(of: /qlen (\d+)/).map { String($0.1) } ?? "?"
        let up = link.firstMatch(of: /<([^>]*)>/).map { $0.1.split(separator: ",").contains("UP") } ?? false
        let inet = addresses.split(separator: "\n").compactMap { $0.firstMatch(of: /inet6? (\S+)/).map { String($0.1) } }
        return "mtu \(mtu) qlen \(queue) \(up ? "up" : "down") addresses \(inet.sorted())"
    }

    func startServer(_ host: NetworkNamespace, _ dir: TemporaryDirectory, log: String) throws -> BackgroundProcess {
        let server = try host.spawn(
            [
                TestBinaries.tunvpn, "server", "--dev", "tvp0", "--key", dir.path + "/server.key", "--allow-any-client",
                "--no-nat", "--listen", "127.0.0.1:51820", "--address", "10.8.0.1/16", "--address", "fd00:8::1/64",
            ], logFile: dir.path + "/" + log)
        #expect(server.waitForLog(containing: "server listening", timeout: 20), "\(server.log)")
        return server
    }

    @Test func aPersistentDeviceIsLeftAsItWasFound() throws {
        let topology = try Topology(hosts: ["H"], enableIPv6: true) { _ in [] }
        defer { topology.close() }
        let host = topology["H"]
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try KeyFiles.write(PrivateKey().base64 + "\n", to: dir.path + "/server.key", mode: 0o600, overwrite: false)
        try host.ip("tuntap", "add", "dev", "tvp0", "mode", "tun")

        // Down, no address, the kernel's MTU and queue length.
        let bare = try state(host, "tvp0")
        #expect(bare == "mtu 1500 qlen 500 down addresses []", "\(bare)")
        let server = try startServer(host, dir, log: "bare.log")
        #expect(try state(host, "tvp0") == "mtu 1420 qlen 1000 up addresses [\"10.8.0.1/16\", \"fd00:8::1/64\"]")
        #expect(server.terminate() == 0, "\(server.log)")
        #expect(try state(host, "tvp0") == bare, "\(server.log)")

        // Up, with an address of its own and another MTU: the same after a kill -9 and `tunvpn down`.
        try host.ip("link", "set", "tvp0", "mtu", "1400", "txqueuelen", "700", "up")
        try host.ip("addr", "add", "192.168.77.1/24", "dev", "tvp0")
        let configured = try state(host, "tvp0")
        #expect(configured == "mtu 1400 qlen 700 up addresses [\"192.168.77.1/24\"]", "\(configured)")
        let killed = try startServer(host, dir, log: "killed.log")
        killed.sendSignal(SIGKILL)
        #expect(killed.waitForExit(timeout: 10))
        let down = try host.exec([TestBinaries.tunvpn, "down", "--dev", "tvp0"])
        #expect(down.status == 0, "\(down)")
        #expect(try state(host, "tvp0") == configured, "\(down)")
        // And after a clean exit.
        let clean = try startServer(host, dir, log: "clean.log")
        #expect(clean.terminate() == 0, "\(clean.log)")
        #expect(try state(host, "tvp0") == configured, "\(clean.log)")
    }
}
