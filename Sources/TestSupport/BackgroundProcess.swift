// A long-running process an end-to-end test starts (a tunvpn server or client, tcpdump, an nc
// listener), with its stdout and stderr going to one log file the test can read at any moment.
//
// The process is started by `ChildProcess` (a clean signal mask, as from a shell) and stopped in
// `terminate()` or, failing that, when the object is released, so a test that throws or fails half-way
// never leaves it behind. Only the process this object started is ever signalled, by its pid.

import Foundation

/// A process running in the background with its output captured to a log file.
///
/// Concurrency: meant to be used from one test at a time; the log may be read while the process writes.
public final class BackgroundProcess: CustomStringConvertible, @unchecked Sendable {
    /// The command line as started (for `ip netns exec` processes, including that prefix).
    public let command: [String]
    /// Where stdout and stderr go, interleaved as written.
    public let logFile: String
    private let process: ChildProcess

    /// Starts `arguments` (the first is looked up on PATH), printing `+ command &` first.
    public init(_ arguments: [String], logFile: String) throws {
        command = arguments
        self.logFile = logFile
        print("+ \(shellQuoted(arguments)) > \(logFile) 2>&1 &")
        process = try ChildProcess(arguments, stdout: logFile, stderr: logFile)
    }

    deinit { terminate() }

    /// The process id; `ip netns exec` execs its command, so this is also the command's own pid.
    public var pid: pid_t { process.pid }

    public var isRunning: Bool { process.isRunning }

    /// The exit status once the process has ended (the signal number if a signal ended it), else nil.
    public var exitStatus: Int32? { process.exitStatus }

    /// Whether the process ended by a signal rather than by exiting; nil while it runs.
    public var endedBySignal: Bool? { process.endedBySignal }

    /// Everything the process has written so far.
    public var log: String { String(decoding: logBytes, as: UTF8.self) }

    /// The log as bytes; its count can serve as an offset for `waitForLog(containing:after:timeout:)`.
    public var logBytes: Data { FileManager.default.contents(atPath: logFile) ?? Data() }

    /// Waits until the log contains `text` (searching from byte offset `after`) or `timeout` seconds
    /// pass. Returns early with false if the process has ended without writing it.
    public func waitForLog(containing text: String, after offset: Int = 0, timeout: Double) -> Bool {
        let needle = Data(text.utf8)
        func found() -> Bool {
            let bytes = logBytes
            guard bytes.count > offset else { return false }
            return bytes[(bytes.startIndex + offset)...].range(of: needle) != nil
        }
        // Once the process has ended its log is complete, so one more look decides.
        _ = waitUntil(timeout: timeout) { found() || !isRunning }
        return found()
    }

    /// Waits for the process to end by itself; returns whether it did within `timeout` seconds.
    @discardableResult
    public func waitForExit(timeout: Double) -> Bool {
        process.wait(timeout: timeout)
    }

    /// Sends `signal` to the process if it is still running.
    public func sendSignal(_ signal: Int32) {
        process.send(signal)
    }

    /// Stops the process: SIGTERM, up to `grace` seconds to exit, then SIGKILL. Returns the exit status
    /// (see `exitStatus`). Does nothing to a process that has already ended.
    @discardableResult
    public func terminate(grace: Double = 5) -> Int32 {
        if process.isRunning {
            print("+ kill -TERM \(pid)  # \(shellQuoted(command))")
            process.send(SIGTERM)
            if !process.wait(timeout: grace) {
                print("+ kill -KILL \(pid)  # did not exit within \(grace) s of SIGTERM")
                process.send(SIGKILL)
            }
        }
        process.wait()
        return process.exitStatus ?? -1
    }

    public var description: String { "`\(shellQuoted(command))` (pid \(pid))" }
}
