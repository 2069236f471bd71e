// A command left running in the background (the demo's tunvpn server and client, a web server, a packet
// capture), with its stdout and stderr appended to a log file, remembered by PID and ended by that PID.
//
// The child is started with posix_spawnp(3) through `CommandRunner.spawn`: stdin is /dev/null, the signal
// mask is empty (the caller may block SIGINT/SIGTERM to poll for them), and it leads a process group of
// its own, so a Ctrl-C typed at the terminal reaches only the caller, which then stops its children in
// the order it chooses. Ending it follows the usual contract: SIGTERM, up to a grace period for a clean
// exit (tunvpn removes its routes and rules then), and SIGKILL after that.

import Glibc

/// Why a background command could not be started.
public struct SpawnedProcessError: Error, Equatable, Sendable, CustomStringConvertible {
    public var command: String
    public var problem: String

    public var description: String { "\(command): \(problem)" }
}

/// A child process running in the background, logging to a file. Not thread-safe: one owner.
///
/// The owner ends it with `terminate(grace:)`; `deinit` does the same for one that is still running, so
/// no child outlives its owner on an unexpected path.
public final class SpawnedProcess {
    /// The child's PID (the command itself: `ip netns exec` and the like replace themselves with exec).
    public let pid: pid_t
    /// The file its stdout and stderr are appended to.
    public let logPath: String
    /// Its exit status once reaped (128 + signal when a signal ended it).
    public private(set) var exitStatus: Int32?

    private init(pid: pid_t, logPath: String) {
        self.pid = pid
        self.logPath = logPath
    }

    deinit {
        if exitStatus == nil { terminate() }
    }

    /// Starts `argv` (found in `CommandRunner.trustedSearchPath` unless its first word is a path) with stdout and stderr appended to `logPath` (created 0600).
    public static func start(_ argv: [String], logPath: String) throws(SpawnedProcessError) -> SpawnedProcess {
        let name = argv.first ?? "(empty command)"
        let log = open(logPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard log >= 0 else {
            throw SpawnedProcessError(
                command: name, problem: "cannot open log \(logPath): \(String(cString: strerror(errno)))")
        }
        defer { close(log) }
        let null = open("/dev/null", O_RDONLY | O_CLOEXEC)
        guard null >= 0 else {
            throw SpawnedProcessError(
                command: name, problem: "cannot open /dev/null: \(String(cString: strerror(errno)))")
        }
        defer { close(null) }
        switch CommandRunner.spawn(argv, stdin: null, stdout: log, stderr: log, newProcessGroup: true) {
        case .success(let pid): return SpawnedProcess(pid: pid, logPath: logPath)
        case .failure(let message): throw SpawnedProcessError(command: name, problem: message)
        }
    }

    /// True while the child runs; reaps it (waitpid with WNOHANG) and records its status once it ended.
    public var isRunning: Bool {
        guard exitStatus == nil else { return false }
        var status: Int32 = 0
        while true {
            let r = waitpid(pid, &status, WNOHANG)
            if r == 0 { return true }
            if r == pid {
                exitStatus = Self.decode(status)
                return false
            }
            if errno == EINTR { continue }
            // ECHILD: not our child any more (reaped elsewhere); nothing left to wait for.
            exitStatus = -1
            return false
        }
    }

    /// Sends `signal` to the child if it still runs (kill(2) on its PID only).
    public func send(_ signal: Int32) {
        if isRunning { kill(pid, signal) }
    }

    /// Waits until the child exits or `deadline` (CLOCK_MONOTONIC nanoseconds) passes; true when it exited.
    public func waitForExit(until deadline: UInt64) -> Bool {
        while isRunning {
            let now = Self.monotonicNanoseconds()
            if now >= deadline { return false }
            var pause = timespec(tv_sec: 0, tv_nsec: Int(min(20_000_000, deadline - now)))
            _ = nanosleep(&pause, nil)
        }
        return true
    }

    /// Ends the child: SIGTERM, up to `graceSeconds` for it to exit, then SIGKILL. Returns its exit status.
    @discardableResult
    public func terminate(graceSeconds: UInt64 = 5) -> Int32 {
        send(SIGTERM)
        if !waitForExit(until: Self.monotonicNanoseconds() + graceSeconds * 1_000_000_000) {
            kill(pid, SIGKILL)
            exitStatus = CommandRunner.wait(pid)
        }
        return exitStatus ?? -1
    }

    /// CLOCK_MONOTONIC in nanoseconds, for deadlines.
    public static func monotonicNanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// The exit status (or 128 + signal) from a waitpid status word (WIFEXITED and friends are macros).
    private static func decode(_ status: Int32) -> Int32 {
        let termSignal = status & 0x7f
        return termSignal == 0 ? (status >> 8) & 0xff : 128 + termSignal
    }
}
