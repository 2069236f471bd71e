// Starting commands for end-to-end tests as a shell would: with no signal blocked and every signal at
// its default disposition.
//
// Why not Foundation's `Process` (or `runCommand`, which uses it): on Linux it starts the child with
// the signal mask of the calling thread, and test threads are libdispatch workers, which block almost
// every signal (a child showed `SigBlk: fffffffe3bfbea27` in /proc/PID/status). A child started that
// way never sees SIGTERM, SIGINT, SIGUSR1 or SIGALRM unless it unblocks them itself: `sleep` and
// tcpdump ignored SIGTERM, and `nc -q 1` (an alarm) never quit. So the daemon under test would not be
// started the way an operator starts it. `posix_spawn` with POSIX_SPAWN_SETSIGMASK (empty) and
// POSIX_SPAWN_SETSIGDEF (all) gives the child a clean slate (posix_spawn(3)).
//
// The child is reaped here with waitpid(2) on its own pid, never waitpid(-1), so Foundation's
// bookkeeping of its own children is untouched.

import Foundation
import Synchronization

/// A child process started with posix_spawnp, stdin/stdout/stderr redirected to files.
///
/// Concurrency: the status is kept under a lock; any thread may poll or wait.
public final class ChildProcess: Sendable {
    public let pid: pid_t
    private let status = Mutex<Int32?>(nil)

    /// Starts `arguments` (the first is looked up on PATH) with stdin read from `stdin` (or
    /// /dev/null), stdout written to `stdout` and stderr to `stderr` (the same file if they are equal;
    /// files are created or truncated).
    public init(_ arguments: [String], stdin: String? = nil, stdout: String, stderr: String) throws {
        precondition(!arguments.isEmpty, "a command needs at least the program name")
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attributes, &none)
        var all = sigset_t()
        sigfillset(&all)
        sigdelset(&all, SIGKILL)
        sigdelset(&all, SIGSTOP)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, stdin ?? "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0o644)
        if stderr == stdout {
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        } else {
            posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0o644)
        }
        // Descriptors the test process holds stay out of the child. glibc 2.34+ has the call, but its
        // declaration needs _GNU_SOURCE and does not import, so it is looked up at run time.
        if let closeFrom = ChildProcess.addCloseFrom { _ = closeFrom(&actions, 3) }

        let argv = arguments.map { strdup($0) } + [nil]
        let envp = ProcessInfo.processInfo.environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var pid = pid_t()
        let error = posix_spawnp(&pid, arguments[0], &actions, &attributes, argv, envp)
        guard error == 0 else {
            throw POSIXError(POSIXErrorCode(rawValue: error) ?? .EINVAL, userInfo: [
                NSLocalizedDescriptionKey: "posix_spawnp \(arguments[0]): \(String(cString: strerror(error)))"
            ])
        }
        self.pid = pid
    }

    private typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    private static let addCloseFrom: AddCloseFrom? = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np")
        .map { unsafeBitCast($0, to: AddCloseFrom.self) }

    /// Reaps the child if it has ended (waitpid with WNOHANG); returns its raw wait status then.
    private func poll() -> Int32? {
        status.withLock { status in
            if status != nil { return status }
            var raw: Int32 = 0
            if waitpid(pid, &raw, WNOHANG) == pid { status = raw }
            return status
        }
    }

    public var isRunning: Bool { poll() == nil }

    /// Waits at most `timeout` seconds for the child to end; returns whether it has.
    @discardableResult
    public func wait(timeout: Double) -> Bool {
        waitUntil(timeout: timeout, interval: 0.01) { poll() != nil }
    }

    /// Waits for the child to end, however long it takes.
    public func wait() {
        while poll() == nil { usleep(10_000) }
    }

    /// The exit code, or the number of the signal that ended it; nil while it runs.
    public var exitStatus: Int32? {
        guard let raw = poll() else { return nil }
        return raw & 0x7f == 0 ? (raw >> 8) & 0xff : raw & 0x7f
    }

    /// Whether a signal ended it; nil while it runs.
    public var endedBySignal: Bool? {
        guard let raw = poll() else { return nil }
        return raw & 0x7f != 0
    }

    /// Sends `signal` unless the child has already been reaped (so a recycled pid is never signalled).
    public func send(_ signal: Int32) {
        status.withLock { status in
            if status == nil { kill(pid, signal) }
        }
    }
}

/// Runs `arguments` (looked up on PATH) as `ChildProcess` starts it, feeding `stdin`, and waits at most
/// `timeout` seconds, after which it is killed and the status is -9. The counterpart of `runCommand`
/// for commands that must see signals, as every end-to-end command may.
@discardableResult
public func runChild(_ arguments: [String], stdin: String? = nil, timeout: Double = 60) throws -> CommandResult {
    let base = FileManager.default.temporaryDirectory
        .appendingPathComponent("tunvpn-cmd-\(getpid())-\(UUID().uuidString.prefix(8))").path
    let (inPath, outPath, errPath) = (base + ".in", base + ".out", base + ".err")
    defer { for path in [inPath, outPath, errPath] { try? FileManager.default.removeItem(atPath: path) } }
    if let stdin { try Data(stdin.utf8).write(to: URL(fileURLWithPath: inPath)) }
    let child = try ChildProcess(arguments, stdin: stdin == nil ? nil : inPath, stdout: outPath, stderr: errPath)
    var status: Int32
    if child.wait(timeout: timeout) {
        status = child.exitStatus ?? -1
        if child.endedBySignal == true { status = -status }
    } else {
        child.send(SIGKILL)
        child.wait()
        status = -9
    }
    func read(_ path: String) -> String { String(decoding: FileManager.default.contents(atPath: path) ?? Data(), as: UTF8.self) }
    return CommandResult(status: status, stdout: read(outPath), stderr: read(errPath))
}
