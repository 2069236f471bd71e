// What `tunvpn demo` builds and must remove again: named network namespaces, background processes in
// them, and a temporary directory for keys and logs. `DemoLab` owns all three and its `tearDown()` removes
// every one of them, on success, failure and interruption alike (it is also called from `deinit`).
//
// Signals: the demo blocks SIGINT, SIGTERM, SIGHUP, SIGQUIT and SIGPIPE at its start (a single-threaded
// process, so sigprocmask covers it) and looks for them between commands and while it waits, with
// sigtimedwait(2). SIGPIPE is among them so that `tunvpn demo | head` does not kill the demo half way
// (leaving everything behind): a write to the closed pipe fails with EPIPE and the demo stops cleanly.
// A Ctrl-C therefore never interrupts a half-made change; it turns into `DemoStop.interrupted` at the
// next checkpoint and the teardown runs in full. Children start with an empty signal mask
// (`CommandRunner.spawn` sets it).
//
// Nothing here touches the root network namespace: every link is created inside a namespace
// (`ip -n A link add X type veth peer name Y netns B`), and every sysctl is written from inside one.

import Control
import Glibc
import NamespaceLab
import Platform
import Routing

/// Why the demo stopped before its end.
enum DemoStop: Error {
    /// A check or a step failed; the message is one line.
    case failed(String)
    /// SIGINT, SIGTERM, SIGHUP, SIGQUIT or SIGPIPE arrived.
    case interrupted(Int32)
}

/// The termination signals the demo watches for.
enum DemoSignals {
    static var set: sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        for s in [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE] { sigaddset(&set, s) }
        return set
    }

    /// Blocks the termination signals, so they wait for `check()` instead of killing the process.
    static func block() {
        var set = Self.set
        sigprocmask(SIG_BLOCK, &set, nil)
    }

    /// Throws `DemoStop.interrupted` if a termination signal is pending (consuming it).
    static func check() throws(DemoStop) {
        try pause(nanoseconds: 0)
    }

    /// Sleeps up to `nanoseconds`, returning early by throwing `DemoStop.interrupted` on a signal.
    static func pause(nanoseconds: UInt64) throws(DemoStop) {
        var set = Self.set
        var timeout = timespec(tv_sec: Int(nanoseconds / 1_000_000_000), tv_nsec: Int(nanoseconds % 1_000_000_000))
        let signal = sigtimedwait(&set, nil, &timeout)
        if signal > 0 { throw .interrupted(signal) }
    }

    static func name(_ signal: Int32) -> String {
        switch signal {
        case SIGINT: "SIGINT"
        case SIGTERM: "SIGTERM"
        case SIGHUP: "SIGHUP"
        case SIGQUIT: "SIGQUIT"
        case SIGPIPE: "SIGPIPE (its output was closed)"
        default: "signal \(signal)"
        }
    }
}

/// The namespaces, processes and files of one demo run, and their removal.
final class DemoLab {
    /// Prefix of every namespace name: `tvdemo-<pid>-`.
    let prefix: String
    /// Print each command before running it.
    let verbose: Bool
    /// The temporary directory (mode 0700) for keys and logs.
    let directory: String
    private(set) var namespaces: [String] = []
    private(set) var processes: [(label: String, process: SpawnedProcess)] = []
    /// The journal each tunvpn instance keeps under /run/tunvpn, keyed by its namespace's inode.
    var journals: [(owner: String, namespace: String, path: String)] = []
    /// The /etc/netns/NAME directories made for the namespaces' own resolv.conf, removed in `tearDown()`.
    private(set) var netnsDirectories: [String] = []
    /// This binary's real path, for `tunvpn down` when an instance left its journal behind.
    var binary: String?
    private var tornDown = false
    /// What could not be stopped or removed cleanly, one line each.
    private var problems: [String] = []

    /// Creates the temporary directory.
    init(verbose: Bool) throws(DemoStop) {
        self.verbose = verbose
        prefix = "tvdemo-\(getpid())-"
        let base = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
        var template = Array("\(base)/tunvpn-demo-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buffer -> Bool in
            guard let start = buffer.baseAddress else { return false }
            return mkdtemp(start) != nil
        }
        guard made else {
            throw .failed(
                "cannot create a temporary directory in \(base): \(String(cString: strerror(errno))); set TMPDIR to a writable directory"
            )
        }
        directory = template.withUnsafeBufferPointer { buffer in
            buffer.baseAddress.map { String(cString: $0) } ?? ""
        }
    }

    deinit { tearDown(report: false) }

    // MARK: Commands

    /// Runs `argv`, printing it first in verbose mode; a pending signal ends the demo right after.
    @discardableResult
    func run(_ argv: [String], input: String? = nil) throws(DemoStop) -> CommandOutput {
        if verbose { say("    $ " + argv.map(shellQuote).joined(separator: " ")) }
        let out = CommandRunner.run(argv, input: input)
        try DemoSignals.check()
        return out
    }

    /// Runs `argv` inside namespace `ns` (`ip netns exec`).
    @discardableResult
    func run(in ns: String, _ argv: [String]) throws(DemoStop) -> CommandOutput {
        try run(["ip", "netns", "exec", ns] + argv)
    }

    /// Runs `argv` and throws with its error output when it fails.
    func mustRun(_ argv: [String], input: String? = nil) throws(DemoStop) {
        let out = try run(argv, input: input)
        guard out.succeeded else {
            let why = (out.stderr.isEmpty ? out.stdout : out.stderr).split(separator: "\n").first.map(String.init)
            throw .failed("`\(argv.joined(separator: " "))` failed: \(why ?? "exit status \(out.status)")")
        }
    }

    // MARK: Namespaces

    /// Builds `plan` (NamespaceLab, as the end-to-end tests do): each namespace with its loopback up and
    /// its sysctls (the demo's plan is dual stack: no router solicitations, addresses without duplicate
    /// address detection), then the veth pairs. A namespace is recorded for `tearDown()` as soon as it
    /// exists.
    func build(_ plan: LabPlan) throws(DemoStop) {
        for host in plan.hosts {
            let commands = plan.creationCommands(host)
            try mustRun(commands[0])
            namespaces.append(plan.namespace(host))
            for command in commands.dropFirst() + plan.sysctlCommands(host) { try mustRun(command) }
        }
        for link in plan.links {
            for command in plan.linkCommands(link) { try mustRun(command) }
        }
        // A link is used only once it is ready (LabPlan.isReady says why).
        for end in plan.links.flatMap({ [$0.a, $0.b] }) {
            let deadline = SpawnedProcess.monotonicNanoseconds() + 5_000_000_000
            while !plan.isReady(end, output: { CommandRunner.run($0).stdout }) {
                guard SpawnedProcess.monotonicNanoseconds() < deadline else {
                    throw .failed("\(end.interface) in \(plan.namespace(end.host)) was not ready 5 s after `ip link set up`")
                }
                try DemoSignals.pause(nanoseconds: 20_000_000)
            }
        }
    }

    // MARK: Processes

    /// Starts `argv` in namespace `ns` in the background, logging to `<directory>/<label>.log`.
    func start(_ label: String, in ns: String, _ argv: [String]) throws(DemoStop) -> SpawnedProcess {
        let full = ["ip", "netns", "exec", ns] + argv
        if verbose { say("    $ " + full.map(shellQuote).joined(separator: " ") + " >\(label).log 2>&1 &") }
        do {
            let p = try SpawnedProcess.start(full, logPath: "\(directory)/\(label).log")
            processes.append((label, p))
            return p
        } catch {
            throw .failed("cannot start \(label): \(error)")
        }
    }

    /// Waits (at most `seconds`) until `process`'s log contains `text`; returns the first matching line.
    /// Fails at once if the process exits, quoting the last line of its log.
    func waitForLog(_ process: SpawnedProcess, containing text: String, seconds: UInt64, what: String)
        throws(DemoStop)
        -> String
    {
        let deadline = SpawnedProcess.monotonicNanoseconds() + seconds * 1_000_000_000
        while true {
            if let line = readFile(process.logPath).split(separator: "\n").first(where: { $0.contains(text) }) {
                return String(line)
            }
            if !process.isRunning {
                let last = lastLines(of: process.logPath, count: 1).first ?? "(nothing in its log)"
                throw .failed(
                    "\(what): the process exited with status \(process.exitStatus ?? -1); its log ends with: \(last)")
            }
            if SpawnedProcess.monotonicNanoseconds() >= deadline {
                throw .failed("\(what): no '\(text)' in \(process.logPath) after \(seconds) s")
            }
            try DemoSignals.pause(nanoseconds: 50_000_000)
        }
    }

    // MARK: Files

    /// The contents of `path`, or "" if it cannot be read.
    func readFile(_ path: String) -> String {
        guard let bytes = try? KeyFiles.readSmallFile(path, what: "log", limit: 4 << 20).text else { return "" }
        return String(decoding: bytes, as: UTF8.self)
    }

    func lastLines(of path: String, count: Int) -> [String] {
        readFile(path).split(separator: "\n").suffix(count).map(String.init)
    }

    // MARK: A namespace's own resolv.conf

    /// Writes /etc/netns/`ns`/resolv.conf, which `ip netns exec` mounts over /etc/resolv.conf for the
    /// commands it starts (only when the file exists, ip-netns(8)), and refuses to go on unless a command
    /// in `ns` really sees that file (same device and inode) rather than the host's: a tunvpn client that
    /// applies DNS by the resolv.conf method must never rewrite the host's file. Call it before anything
    /// starts in `ns`. The directory is removed in `tearDown()`. Returns the file's path.
    @discardableResult
    func installResolvConf(_ ns: String, _ text: String) throws(DemoStop) -> String {
        let dir = "/etc/netns/\(ns)"
        let file = dir + "/resolv.conf"
        for path in ["/etc/netns", dir] {
            var st = stat()
            if stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR { continue }
            guard mkdir(path, 0o755) == 0 else {
                throw .failed("cannot create \(path): \(String(cString: strerror(errno)))")
            }
            if path == dir { netnsDirectories.append(dir) }
        }
        if !netnsDirectories.contains(dir) { netnsDirectories.append(dir) }
        if verbose { say("    $ cat > \(file)     (\(text.split(separator: "\n").joined(separator: "; ")))") }
        do {
            try KeyFiles.write(text, to: file, mode: 0o644, overwrite: true)
        } catch {
            throw .failed("writing \(file): \(error)")
        }
        var st = stat()
        guard stat(file, &st) == 0 else { throw .failed("cannot stat \(file): \(String(cString: strerror(errno)))") }
        let seen = try run(in: ns, ["stat", "-L", "-c", "%d:%i", "/etc/resolv.conf"])
        let expected = "\(st.st_dev):\(st.st_ino)"
        let got = seen.stdout.split(separator: "\n").first.map(String.init) ?? ""
        guard seen.succeeded, got == expected else {
            throw .failed(
                "\(ns) sees /etc/resolv.conf as \(got.isEmpty ? "nothing" : got), not its own \(file) (\(expected)); refusing to go on, since a client there would change the host's file"
            )
        }
        return file
    }

    // MARK: Teardown

    /// Stops every process: SIGTERM to all at once, up to 5 s to exit (tunvpn removes its routes and
    /// rules then), SIGKILL after that. A process that had to be killed is recorded in `problems`.
    func stopProcesses(report: Bool = true) {
        let running = processes.filter { $0.process.isRunning }
        if report && !running.isEmpty {
            say("  stopping " + running.map { "\($0.label) (pid \($0.process.pid))" }.joined(separator: ", "))
        }
        for p in running { kill(p.process.pid, SIGTERM) }
        let deadline = SpawnedProcess.monotonicNanoseconds() + 5_000_000_000
        for p in running where !p.process.waitForExit(until: deadline) {
            problems.append("\(p.label) (pid \(p.process.pid)) ignored SIGTERM for 5 s and was killed")
            p.process.terminate(graceSeconds: 0)
        }
    }

    /// Stops every process (if `stopProcesses` has not), deletes the namespaces and the temporary
    /// directory. Idempotent. Returns one line per thing that could not be stopped or removed.
    @discardableResult
    func tearDown(report: Bool = true) -> [String] {
        guard !tornDown else { return [] }
        tornDown = true
        stopProcesses(report: report)
        removeLeftJournals()
        for ns in namespaces.reversed() {
            let out = CommandRunner.run(["ip", "netns", "del", ns])
            if !out.succeeded {
                problems.append("cannot delete namespace \(ns): \(out.stderr.split(separator: "\n").first ?? "")")
            }
        }
        if report && !namespaces.isEmpty {
            say(
                "  deleted namespaces \(prefix){\(namespaces.map { String($0.dropFirst(prefix.count)) }.joined(separator: ","))}"
            )
        }
        namespaces.removeAll()
        for dir in netnsDirectories.reversed() {
            if let problem = removeTree(dir) {
                problems.append(problem)
            } else if report {
                say("  removed \(dir)")
            }
        }
        netnsDirectories.removeAll()
        if let problem = removeTree(directory) {
            problems.append(problem)
        } else if report {
            say("  removed \(directory)")
        }
        return problems
    }

    /// Runs `tunvpn down` in the namespace of each instance that left its journal (killed, or stopped
    /// half way through its setup), while the namespace still exists: a journal that outlived its
    /// namespace could be replayed by a later instance in a new namespace that reuses the inode number.
    private func removeLeftJournals() {
        for journal in journals where KeyFiles.exists(journal.path) {
            var outcome = "this binary's path is unknown"
            if let binary {
                let out = CommandRunner.run(["ip", "netns", "exec", journal.namespace, binary, "down", "--dev", "tun0"])
                let text = (out.stdout + out.stderr).split(separator: "\n").joined(separator: "; ")
                outcome =
                    "`tunvpn down` in \(journal.namespace) said: \(text.isEmpty ? "exit status \(out.status)" : text)"
            }
            problems.append("the \(journal.owner) left its journal \(journal.path) behind; \(outcome)")
            if KeyFiles.exists(journal.path) { problems.append("\(journal.path) is still there") }
        }
    }

    /// Removes `path` and everything under it without following symbolic links; nil on success.
    private func removeTree(_ path: String) -> String? {
        var st = stat()
        guard lstat(path, &st) == 0 else {
            return errno == ENOENT ? nil : "cannot inspect \(path): \(String(cString: strerror(errno)))"
        }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            guard let dir = opendir(path) else { return "cannot read \(path): \(String(cString: strerror(errno)))" }
            var names: [String] = []
            while let entry = readdir(dir) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                    String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
                }
                if name != "." && name != ".." { names.append(name) }
            }
            closedir(dir)
            for name in names { if let problem = removeTree(path + "/" + name) { return problem } }
            guard rmdir(path) == 0 else { return "cannot remove \(path): \(String(cString: strerror(errno)))" }
        } else {
            guard unlink(path) == 0 else { return "cannot remove \(path): \(String(cString: strerror(errno)))" }
        }
        return nil
    }
}

/// Prints one line to stdout at once.
func say(_ line: String = "") { printLine(line) }
