// Instance names and the kill switch across a restart, through the CLI's own setup functions: `--dev` and
// `--egress` take interface names only, and `HostSetup` (what `tunvpn client --lockdown` calls) keeps a
// crashed run's kill switch until one nft transaction replaces it.

import ArgumentParser
import Foundation
import Logging
import Platform
import Routing
import Testing
import TestSupport

@testable import Control
@testable import tunvpn

/// Records commands and their input; changes nothing.
final class RecordingExecutor: CommandExecutor {
    var ran: [(command: String, input: String?)] = []
    func run(_ command: [String], input: String?) -> String? {
        ran.append((command.joined(separator: " "), input))
        return nil
    }
    func readSysctl(_ key: String) -> String? { "0" }
}

@Suite struct InstanceCommandTests {
    @Test func devAndEgressTakeInterfaceNamesOnly() throws {
        for good in ["tun0", "wg-office.1", "a_b", "x"] {
            #expect(throws: Never.self) { try validateInterfaceName(good, option: "--dev") }
        }
        for bad in ["a\"}{", "tun 0", "", ".", "..", "../x", "a/b", "tun%d", "é", "sixteen-chars-xx", "a;b"] {
            #expect(throws: ValidationError.self, "\(bad)") { try validateInterfaceName(bad, option: "--dev") }
        }
        #expect(throws: (any Error).self) {
            try Client.parse(["--peer-key", "k", "--endpoint", "1.2.3.4:5", "--dev", "a\"}{"])
        }
        #expect(throws: (any Error).self) { try Server.parse(["--egress", "eth0\" accept"]) }
        #expect(throws: (any Error).self) { try Down.parse(["--dev", "../../etc/x"]) }
        #expect(throws: (any Error).self) { try Reload.parse(["--dev", "a b"]) }
        #expect(throws: (any Error).self) { try Show.parse(["--dev", "a/b"]) }
        do {
            try validateInterfaceName("a\"}{", option: "--egress")
        } catch let error as ValidationError {
            #expect(error.message == "--egress 'a\"}{' is not an interface name: use 1 to 15 of the characters A-Z a-z 0-9 _ . -, e.g. --egress eth0")
        }
    }

    /// `tunvpn client --lockdown` over the journal of a crashed run that held the kill switch: no
    /// `nft delete table inet tunvpn_lock_tun0` runs before the new table is loaded, in one transaction.
    @Test func aStartWithLockdownOverACrashedRunKeepsTheKillSwitchUntilItIsReplaced() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let journal = try FileJournal.open(path: dir.path + "/netns-1-tun0.journal")
        let lockdown = Planner.lockdown(tunDevice: "tun0", server: "203.0.113.7", port: 51820)
        let crashed = RecordingExecutor()
        try PlanExecutor(executor: crashed, journal: journal).apply(lockdown)
        try journal.append(JournalEntry(undo: ["ip", "-4", "route", "del", "203.0.113.7/32", "via", "192.168.1.1", "dev", "eth0"]))
        try journal.append(JournalEntry(undo: ["ip", "-4", "route", "del", "0.0.0.0/1", "dev", "tun0"]))

        let instance = InstanceFiles(device: "tun0", lock: nil, journal: journal)
        let executor = RecordingExecutor()
        try HostSetup.removeLeftovers(
            instance, keeping: [Planner.lockdownUndo(device: "tun0")], executor: executor, logger: nil)
        try HostSetup.apply(
            lockdown, to: instance, executor: executor, preflight: false, logger: Logger(label: "test"))

        let commands = executor.ran.map(\.command)
        #expect(commands == [
            "ip -4 route del 0.0.0.0/1 dev tun0",
            "ip -4 route del 203.0.113.7/32 via 192.168.1.1 dev eth0",
            "nft -f -",
        ])
        #expect(!commands.contains { $0.hasPrefix("nft delete table inet tunvpn_lock_") })
        let input = executor.ran.last?.input ?? ""
        #expect(input.hasPrefix("table inet tunvpn_lock_tun0 {}\ndelete table inet tunvpn_lock_tun0\ntable inet tunvpn_lock_tun0 {"))
        #expect(try journal.entries() == [JournalEntry(undo: Planner.lockdownUndo(device: "tun0"))])
    }
}
