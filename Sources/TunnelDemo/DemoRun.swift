// `tunvpn demo`'s run: checks the tools, builds the lab, runs the steps, and tears everything down on
// every way out (the topology is drawn in DemoSteps.swift).

import Control
import Glibc
import Platform

/// One run of the demo.
public enum DemoRun {
    /// Runs the demo, printing its steps; returns nil when every check passed, else the one-line failure.
    public static func run(verbose: Bool) -> String? {
        guard geteuid() == 0 else {
            return "the demo creates network namespaces and needs root: run `sudo \(CommandLine.arguments[0]) demo`"
        }
        let tools = ["ip", "ping", "python3", "tcpdump", "sysctl", "dnsmasq", "getent", "sha256sum"]
        let missing =
            tools.filter { !CommandRunner.exists($0) }
            + (CommandRunner.exists("nft") || CommandRunner.exists("iptables") ? [] : ["nft (or iptables)"])
        guard missing.isEmpty else {
            let list =
                missing.count == 1
                ? missing[0] : missing.dropLast().joined(separator: ", ") + " and " + (missing.last ?? "")
            return "the demo needs \(list), not found in PATH: run `sudo bash .ci/install-deps` (or apt-get install iproute2 iputils-ping python3 tcpdump procps nftables dnsmasq-base)"
        }
        DemoSignals.block()
        var stop: DemoStop?
        var lab: DemoLab?
        var steps: DemoSteps?
        do {
            let made = try DemoLab(verbose: verbose)
            lab = made
            let s = DemoSteps(lab: made)
            steps = s
            try s.run()
        } catch {
            stop = error
            if case .failed = error, let lab { DemoSteps.showLogs(lab) }
        }
        say()
        say("Tearing down")
        lab?.stopProcesses()
        if stop == nil, let steps {
            do { try steps.checkCleanExit() } catch { stop = error }
        }
        let problems = lab?.tearDown() ?? []
        for problem in problems { say("  problem: \(problem)") }
        if stop == nil, let problem = problems.first { stop = .failed(problem) }
        switch stop {
        case nil:
            say()
            say("Demo finished: all \(steps?.checksPassed ?? 0) checks passed, and everything it made is gone.")
            return nil
        case .failed(let reason):
            return "demo failed: \(reason)"
        case .interrupted(let signal):
            return "demo interrupted by \(DemoSignals.name(signal))"
                + (problems.isEmpty ? "; everything it made is removed" : "; see the problems listed above")
        }
    }
}
