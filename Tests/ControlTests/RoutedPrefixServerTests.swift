// The server's side of prefixes routed behind clients (docs/PROTOCOL.md, "Allowed IPs"): a kernel route
// into the tunnel device for each, in the plan (so journaled and undone like every change), the file's
// check against the server's prefixes, and a reload that adds and removes those routes.

import Control
import Crypto
import Platform
import Routing
import Synchronization
import Testing
import Transport

@Suite struct ReloadRoutedPrefixTests {
    let a = PrivateKey(random: SeededKeys(seed: 41)).publicKey
    let b = PrivateKey(random: SeededKeys(seed: 42)).publicKey
    let prefix = IPv4Prefix("10.8.0.1/16")!
    let prefix6 = IPv6Prefix("fd00:8::1/64")!

    func routed(_ texts: String...) -> [IPPrefix] { texts.map { IPPrefix($0)! } }

    @Test func theServersPlanRoutesEachPrefixIntoItsDeviceAfterTheDeviceStep() throws {
        var c = ServerConfiguration(address: prefix)
        c.address6 = prefix6
        c.noNAT = true
        c.tunnel.firewall = "nftables"
        let plan = try ServerDaemon.plan(
            c, routed: routed("192.168.50.0/24", "fd00:50::/64", "192.168.50.0/24", "10.8.3.0/24", "172.16.0.0/12"))
        let routes = plan.changes.compactMap { change -> String? in
            if case .route(let destination, nil, "tun0") = change { return destination }
            return nil
        }
        let withIPv6 = HostNetwork.ipv6Available
        // Once each, and never inside the tunnel prefix (the file's check refuses that; the plan skips it).
        #expect(routes == ["192.168.50.0/24"] + (withIPv6 ? ["fd00:50::/64"] : []) + ["172.16.0.0/12"])
        #expect(plan.script.contains("ip -4 route add 192.168.50.0/24 dev tun0\n"))
        let device = try #require(plan.changes.firstIndex { if case .device = $0 { return true } else { return false } })
        let firstRoute = try #require(plan.changes.firstIndex { if case .route = $0 { return true } else { return false } })
        #expect(device < firstRoute, "routes go into the device once it is up")
        #expect(try ServerDaemon.plan(c).changes.allSatisfy { if case .route = $0 { return false } else { return true } })
    }

    @Test func theFileIsReadWithTheServersPrefixes() throws {
        let text = "\(a.base64) 10.8.0.5/32, 192.168.50.7/32, 192.168.60.0/24  # office\n\(b.base64) 10.9.0.7\n"
        do {
            _ = try AllowListFile.parseAllowList(Array(text.utf8), file: "keys/clients", prefix: prefix, prefix6: prefix6)
            Issue.record("a bare address outside the tunnel prefix is still refused")
        } catch {
            #expect("\(error)" == "keys/clients: line 2: address 10.9.0.7 for \(b.base64) is not a client address in 10.8.0.1/16")
        }
        let list = try AllowListFile.parseAllowList(
            Array("\(a.base64) 10.8.0.5/32, 192.168.50.7/32, 192.168.60.0/24  # office\n".utf8), file: "keys/clients", prefix: prefix,
            prefix6: prefix6)
        #expect(list.clients.first?.address == IPv4Address(10, 8, 0, 5))
        #expect(list.routedPrefixes == routed("192.168.50.7/32", "192.168.60.0/24"))
    }

    func list(_ routed: [String]) -> AllowList {
        AllowList(clients: [AllowedClient(key: a, address: IPv4Address(10, 8, 0, 5), routed: routed.map { IPPrefix($0)! })])
    }

    func routes(_ c: ServerConfiguration) -> @Sendable ([IPPrefix]) -> [Change] { { ServerDaemon.routedRoutes($0, c) } }

    @Test func aReloadAddsTheRoutesOfNewPrefixesJournaledAndRemovesThoseOfPrefixesGone() throws {
        let c = ServerConfiguration(address: prefix)
        let recorder = RouteRecorder()
        let journal = ListJournal()
        let start = ServerDaemon.routedRoutes(routed("192.168.50.0/24"), c)
        let live = RoutedPrefixRoutes(installed: start, routes: routes(c), journal: journal, executor: recorder)
        try live.add(for: list(["192.168.50.0/24", "192.168.60.0/24"]))
        #expect(recorder.commands == ["ip -4 route add 192.168.60.0/24 dev tun0"])
        #expect(journal.undos == ["ip -4 route del 192.168.60.0/24 dev tun0"], "journaled")
        #expect(live.removeStale(keeping: list(["192.168.50.0/24", "192.168.60.0/24"])) == ", routes: +192.168.60.0/24")
        // The LAN moves to another client: no route changes.
        let moved = AllowList(clients: [
            AllowedClient(key: a, address: IPv4Address(10, 8, 0, 5), routed: routed("192.168.60.0/24")),
            AllowedClient(key: b, routed: routed("192.168.50.0/24")),
        ])
        try live.add(for: moved)
        #expect(live.removeStale(keeping: moved) == "")
        #expect(recorder.commands.count == 1)
        // 192.168.50.0/24 goes: its route is deleted; the journal keeps its entries (an undo that finds
        // nothing is no error at teardown).
        try live.add(for: list(["192.168.60.0/24"]))
        #expect(live.removeStale(keeping: list(["192.168.60.0/24"])) == ", routes: -192.168.50.0/24")
        #expect(recorder.commands.last == "ip -4 route del 192.168.50.0/24 dev tun0")
        #expect(live.installed == ServerDaemon.routedRoutes(routed("192.168.60.0/24"), c))
        #expect(journal.undos == ["ip -4 route del 192.168.60.0/24 dev tun0"])
    }

    @Test func aRouteThatCannotBeAddedFailsTheReloadAndTakesBackTheOthers() {
        let c = ServerConfiguration(address: prefix)
        let recorder = RouteRecorder(failing: "ip -4 route add 192.168.70.0/24 dev tun0")
        let live = RoutedPrefixRoutes(installed: [], routes: routes(c), journal: ListJournal(), executor: recorder)
        do {
            try live.add(for: list(["192.168.60.0/24", "192.168.70.0/24"]))
            Issue.record("the reload goes on without its route")
        } catch {
            #expect(
                error.message
                    == "add route 192.168.70.0/24 dev tun0 failed: RTNETLINK answers: File exists; fix the route or remove the prefix from the allow-list")
        }
        #expect(recorder.commands == [
            "ip -4 route add 192.168.60.0/24 dev tun0", "ip -4 route add 192.168.70.0/24 dev tun0", "ip -4 route del 192.168.60.0/24 dev tun0",
        ])
        #expect(live.installed.isEmpty)
        let unjournaled = RoutedPrefixRoutes(installed: [], routes: routes(c), journal: nil, executor: RouteRecorder())
        #expect(throws: ControlError.self) { try unjournaled.add(for: list(["192.168.60.0/24"])) }
        #expect(throws: Never.self) { try unjournaled.add(for: list([])) }
    }
}

/// Records the commands it is asked to run; fails the one named `failing`.
final class RouteRecorder: CommandExecutor, Sendable {
    private let log = Mutex<[String]>([])
    let failing: String?
    init(failing: String? = nil) { self.failing = failing }
    var commands: [String] { log.withLock { $0 } }
    func run(_ command: [String], input: String?) -> String? {
        let line = command.joined(separator: " ")
        log.withLock { $0.append(line) }
        return line == failing ? "RTNETLINK answers: File exists" : nil
    }
    func readSysctl(_ key: String) -> String? { nil }
}

/// A journal in memory.
final class ListJournal: JournalStore, Sendable {
    private let list = Mutex<[JournalEntry]>([])
    var undos: [String] { list.withLock { $0.map { $0.undo.joined(separator: " ") } } }
    func append(_ entry: JournalEntry) throws(RoutingError) { list.withLock { $0.append(entry) } }
    func entries() throws(RoutingError) -> [JournalEntry] { list.withLock { $0 } }
    func remove() throws(RoutingError) { list.withLock { $0 = [] } }
}
