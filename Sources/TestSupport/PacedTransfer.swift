// Long TCP transfers for fault tests: a file sent at a steady rate, so that it is still running when
// the test restarts the server, moves the client's address or waits for rekeys.
//
// The receiver is `nc -l -p PORT > FILE` as in `transferFile`; the sender is python3, which writes
// 64 KiB at a time and sleeps whenever it is ahead of `bytesPerSecond` (after a stall it catches up at
// full speed), half-closes, and waits for the receiver to close. Its socket gives up after 120 s
// without progress, so a broken tunnel fails the test instead of hanging it.

import Foundation

/// A paced TCP transfer in progress.
public final class PacedTransfer: @unchecked Sendable {
    public let output: String
    private let port: Int
    private let receiverName: String
    private let listener: BackgroundProcess
    private let sender: BackgroundProcess
    private let started: Date

    static let script = """
        import socket, sys, time
        path, host, port, rate = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
        s = socket.create_connection((host, port), timeout=120)
        sent = 0
        start = time.monotonic()
        with open(path, "rb") as f:
            while True:
                chunk = f.read(65536)
                if not chunk:
                    break
                s.sendall(chunk)
                sent += len(chunk)
                ahead = sent / rate - (time.monotonic() - start)
                if ahead > 0:
                    time.sleep(ahead)
        s.shutdown(socket.SHUT_WR)
        while s.recv(65536):
            pass
        s.close()
        print("sent", sent, "bytes in", round(time.monotonic() - start, 2), "s", flush=True)
        """

    /// Starts `nc -l` in `receiver` writing to `output`, waits for it to listen, then starts sending
    /// `path` from `sender` to `address`:`port` at `bytesPerSecond`.
    public init(
        _ path: String, from sender: NetworkNamespace, to address: String, port: Int, receiver: NetworkNamespace,
        into output: String, bytesPerSecond: Int
    ) throws {
        self.output = output
        self.port = port
        receiverName = receiver.name
        listener = try receiver.spawn(
            ["sh", "-c", "exec nc -l -p \"$1\" > \"$2\"", "nc-receive", "\(port)", output], logFile: output + ".nc.log")
        guard try receiver.waitForListener(port: port) else {
            listener.terminate()
            throw TransferError.listenerNotReady(port: port, namespace: receiver.name, log: listener.log)
        }
        started = Date()
        self.sender = try sender.spawn(
            ["python3", "-c", Self.script, path, address, "\(port)", "\(bytesPerSecond)"], logFile: output + ".send.log")
    }

    deinit {
        sender.terminate()
        listener.terminate()
    }

    /// Bytes written to `output` so far.
    public var bytesReceived: Int { TestFiles.size(of: output) }

    /// Waits until at least `count` bytes have arrived; returns whether they did within `timeout` s.
    public func waitForBytes(_ count: Int, timeout: Double) -> Bool {
        waitUntil(timeout: timeout, interval: 0.1) { bytesReceived >= count }
    }

    /// Waits for the receiver to get everything (the sender's half-close ends it) and for the sender to
    /// exit; at most `timeout` seconds from now.
    public func wait(timeout: Double) throws -> TransferReport {
        guard listener.waitForExit(timeout: timeout) else {
            let log = "receiver (\(bytesReceived) bytes): \(listener.log)\nsender: \(sender.log)"
            sender.terminate()
            listener.terminate()
            throw TransferError.receiverDidNotFinish(port: port, namespace: receiverName, log: log)
        }
        let seconds = Date().timeIntervalSince(started)
        let senderSucceeded = sender.waitForExit(timeout: 10) && sender.exitStatus == 0
        let report = TransferReport(senderSucceeded: senderSucceeded, bytesReceived: bytesReceived, seconds: seconds)
        print("  \(report); sender: \(sender.log.trimmingCharacters(in: .whitespacesAndNewlines))")
        return report
    }
}
