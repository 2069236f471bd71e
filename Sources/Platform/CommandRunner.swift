// Running host commands (ip, nft, iptables) with posix_spawn(3), capturing their output.
//
// Programs are found in a fixed, trusted search path (`trustedSearchPath`), never in the PATH tunvpn was
// started with (`sudo -E`, an operator's own bin directory), and children get that path as their PATH:
// a root process must not run whatever `ip` comes first in a directory someone else can write.
//
// The daemon imports no Foundation, so this is the small spawn-and-collect loop it needs: stdin from a
// string, stdout and stderr collected through pipes with poll(2) so neither can fill up and block the
// child, and the exit status from waitpid(2). Background processes (the demo's servers) are started
// with `spawn` and ended by PID.

import CLinux
import Glibc

/// The result of a finished command.
public struct CommandOutput: Sendable, Equatable {
    public var status: Int32
    public var stdout: String
    public var stderr: String
    public var succeeded: Bool { status == 0 }
}

/// Runs commands.
public enum CommandRunner {
    /// Where programs are looked up, and the PATH children get.
    public static let trustedSearchPath = "/usr/sbin:/usr/bin:/sbin:/bin"

    /// The absolute path of `program`: itself when it contains a slash, else the first executable of that
    /// name in `trustedSearchPath`; nil when there is none.
    public static func resolve(_ program: String) -> String? {
        if program.contains("/") { return program }
        for dir in trustedSearchPath.split(separator: ":") where access("\(dir)/\(program)", X_OK) == 0 {
            return "\(dir)/\(program)"
        }
        return nil
    }

    /// Runs `argv` (found in `trustedSearchPath`) with `input` on stdin and waits for it.
    public static func run(_ argv: [String], input: String? = nil) -> CommandOutput {
        var inPipe: [Int32] = [-1, -1]
        var outPipe: [Int32] = [-1, -1]
        var errPipe: [Int32] = [-1, -1]
        guard clinux_pipe_cloexec(&inPipe) == 0, clinux_pipe_cloexec(&outPipe) == 0, clinux_pipe_cloexec(&errPipe) == 0 else {
            return CommandOutput(status: 127, stdout: "", stderr: "pipe failed: \(String(cString: strerror(errno)))")
        }
        let pid: pid_t
        switch spawn(argv, stdin: inPipe[0], stdout: outPipe[1], stderr: errPipe[1]) {
        case .success(let p): pid = p
        case .failure(let message):
            for fd in inPipe + outPipe + errPipe { close(fd) }
            return CommandOutput(status: 127, stdout: "", stderr: message)
        }
        close(inPipe[0])
        close(outPipe[1])
        close(errPipe[1])
        if let input {
            var bytes = Array(input.utf8)
            var written = 0
            while written < bytes.count {
                let n = bytes.withUnsafeMutableBytes { Glibc.write(inPipe[1], $0.baseAddress.map { $0 + written }, $0.count - written) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                written += n
            }
            bytes.removeAll()
        }
        close(inPipe[1])
        var out: [UInt8] = []
        var err: [UInt8] = []
        var fds = [pollfd(fd: outPipe[0], events: Int16(POLLIN), revents: 0), pollfd(fd: errPipe[0], events: Int16(POLLIN), revents: 0)]
        var open = 2
        var chunk = [UInt8](repeating: 0, count: 4096)
        while open > 0 {
            let r = poll(&fds, nfds_t(fds.count), -1)
            if r < 0 {
                if errno == EINTR { continue }
                break
            }
            for i in 0..<fds.count where fds[i].fd >= 0 && fds[i].revents != 0 {
                let n = chunk.withUnsafeMutableBytes { read(fds[i].fd, $0.baseAddress, $0.count) }
                if n > 0 {
                    if i == 0 { out += chunk.prefix(n) } else { err += chunk.prefix(n) }
                } else if n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN) {
                    close(fds[i].fd)
                    fds[i].fd = -1
                    open -= 1
                }
            }
        }
        let status = wait(pid)
        return CommandOutput(status: status, stdout: String(decoding: out, as: UTF8.self), stderr: String(decoding: err, as: UTF8.self))
    }

    enum SpawnResult {
        case success(pid_t)
        case failure(String)
    }

    /// Starts `argv` with the given descriptors as its stdin/stdout/stderr (-1: inherit); with
    /// `newProcessGroup` the child leads a process group of its own, so a terminal's Ctrl-C reaches only us.
    static func spawn(
        _ argv: [String], stdin: Int32, stdout: Int32, stderr: Int32, newProcessGroup: Bool = false,
        passing extra: (descriptor: Int32, as: Int32)? = nil
    ) -> SpawnResult {
        guard let program = argv.first else { return .failure("empty command") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if stdin >= 0 { posix_spawn_file_actions_adddup2(&actions, stdin, 0) }
        if stdout >= 0 { posix_spawn_file_actions_adddup2(&actions, stdout, 1) }
        if stderr >= 0 { posix_spawn_file_actions_adddup2(&actions, stderr, 2) }
        // dup2 clears FD_CLOEXEC on the copy (with equal descriptors too, posix_spawn_file_actions_adddup2(3)).
        if let extra { posix_spawn_file_actions_adddup2(&actions, extra.descriptor, extra.as) }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // The child must not inherit the daemon's blocked signal mask (SIGTERM etc. are blocked for sigwait).
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var flags = Int16(POSIX_SPAWN_SETSIGMASK)
        if newProcessGroup {
            posix_spawnattr_setpgroup(&attributes, 0)
            flags |= Int16(POSIX_SPAWN_SETPGROUP)
        }
        posix_spawnattr_setflags(&attributes, flags)
        guard let path = resolve(program) else { return .failure("\(program): command not found in \(trustedSearchPath)") }
        var cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) }
        cArgs.append(nil)
        defer { for a in cArgs { free(a) } }
        var cEnvironment: [UnsafeMutablePointer<CChar>?] = childEnvironment().map { strdup($0) }
        cEnvironment.append(nil)
        defer { for e in cEnvironment { free(e) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, &attributes, cArgs, cEnvironment)
        guard rc == 0 else {
            return .failure(rc == ENOENT ? "\(program): command not found" : "cannot run \(program): \(String(cString: strerror(rc)))")
        }
        return .success(pid)
    }

    /// Starts `argv` (a path, or found in `trustedSearchPath`) with this process's stdout and stderr, stdin
    /// /dev/null, an empty signal mask, and `descriptor` as descriptor `target` (every other descriptor of
    /// this process is close-on-exec); returns its PID, or the reason it could not start.
    public static func spawn(_ argv: [String], passing descriptor: Int32, as target: Int32) -> Result<pid_t, SpawnedProcessError> {
        let null = open("/dev/null", O_RDONLY | O_CLOEXEC)
        guard null >= 0 else {
            return .failure(SpawnedProcessError(command: argv.first ?? "", problem: "cannot open /dev/null: \(String(cString: strerror(errno)))"))
        }
        defer { close(null) }
        switch spawn(argv, stdin: null, stdout: -1, stderr: -1, passing: (descriptor, target)) {
        case .success(let pid): return .success(pid)
        case .failure(let message): return .failure(SpawnedProcessError(command: argv.first ?? "", problem: message))
        }
    }

    /// This process's environment with PATH replaced by `trustedSearchPath`.
    static func childEnvironment() -> [String] {
        var result: [String] = []
        var entry = environ
        while let variable = entry.pointee {
            let text = String(cString: variable)
            if !text.hasPrefix("PATH=") { result.append(text) }
            entry += 1
        }
        return result + ["PATH=\(trustedSearchPath)"]
    }

    /// Waits for `pid` and returns its exit status (128 + signal if it was killed).
    @discardableResult
    public static func wait(_ pid: pid_t) -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            if errno != EINTR { return -1 }
        }
        // WIFEXITED / WEXITSTATUS / WTERMSIG are macros; decode the status word directly.
        let termSignal = status & 0x7f
        return termSignal == 0 ? (status >> 8) & 0xff : 128 + termSignal
    }

    /// True when `program` is found in `trustedSearchPath` (used for preflight checks).
    public static func exists(_ program: String) -> Bool { resolve(program) != nil }
}
