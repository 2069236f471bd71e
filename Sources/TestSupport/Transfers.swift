// Traffic for end-to-end tests: files of random bytes and their SHA-256, TCP transfers between
// namespaces with netcat (netcat-openbsd: `nc -l -p PORT > FILE` receives, `nc -q 1 -N HOST PORT <
// FILE` sends and half-closes at the end), and single UDP datagrams sent with python3.

import Foundation

public enum TransferError: Error, CustomStringConvertible {
    case listenerNotReady(port: Int, namespace: String, log: String)
    case receiverDidNotFinish(port: Int, namespace: String, log: String)

    public var description: String {
        switch self {
        case .listenerNotReady(let port, let namespace, let log):
            "nc in \(namespace) did not listen on TCP port \(port) within 10 s: \(log)"
        case .receiverDidNotFinish(let port, let namespace, let log):
            "nc in \(namespace) receiving on TCP port \(port) did not finish in time: \(log)"
        }
    }
}

/// How a TCP transfer went.
public struct TransferReport: Sendable, CustomStringConvertible {
    /// Whether the sending `nc` exited with status 0.
    public var senderSucceeded: Bool
    public var bytesReceived: Int
    public var seconds: Double
    public var megabitsPerSecond: Double { seconds > 0 ? Double(bytesReceived) * 8 / seconds / 1e6 : 0 }
    public var description: String {
        String(format: "%d bytes in %.2f s (%.0f Mbit/s)", bytesReceived, seconds, megabitsPerSecond)
    }
}

public enum TestFiles {
    /// Writes `megabytes` MiB from /dev/urandom to `path`.
    public static func makeRandom(at path: String, megabytes: Int) throws {
        try runLoggedChecked(["sh", "-c", "head -c \(megabytes)M /dev/urandom > \"$1\"", "make-random-file", path])
    }

    /// The SHA-256 of the file at `path`, in lowercase hex (`sha256sum`).
    public static func sha256(of path: String) throws -> String {
        let out = try runLoggedChecked(["sha256sum", path]).stdout
        return String(out.prefix(while: { !$0.isWhitespace }))
    }

    /// The size of the file at `path` in bytes, 0 if it does not exist.
    public static func size(of path: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int) ?? 0
    }
}

/// Sends the file at `path` over TCP from `sender` to `address`:`port`, where an `nc` started in
/// `receiver` writes what arrives to `output`. The time is taken from the connection to the receiver
/// having everything (the sender's `-q 1` linger is not counted); at most `timeout` seconds. An IPv6
/// `address` makes the receiver listen on IPv6 (`nc -6 -l`: without it netcat-openbsd listens on
/// 0.0.0.0 only).
public func transferFile(
    _ path: String, from sender: NetworkNamespace, to address: String, port: Int,
    receiver: NetworkNamespace, into output: String, timeout: Double = 120
) throws -> TransferReport {
    let family = address.contains(":") ? "-6 " : ""
    let listener = try receiver.spawn(
        ["sh", "-c", "exec nc \(family)-l -p \"$1\" > \"$2\"", "nc-receive", "\(port)", output],
        logFile: output + ".nc.log")
    defer { listener.terminate() }
    guard try receiver.waitForListener(port: port) else {
        throw TransferError.listenerNotReady(port: port, namespace: receiver.name, log: listener.log)
    }
    let start = Date()
    let client = try sender.spawn(
        ["sh", "-c", "exec nc -q 1 -N \"$1\" \"$2\" < \"$3\"", "nc-send", address, "\(port)", path],
        logFile: output + ".nc-send.log")
    defer { client.terminate() }
    // The receiver exits once the sender half-closes after the last byte.
    guard listener.waitForExit(timeout: timeout) else {
        throw TransferError.receiverDidNotFinish(
            port: port, namespace: receiver.name, log: "receiver: \(listener.log)\nsender: \(client.log)")
    }
    let seconds = Date().timeIntervalSince(start)
    let senderSucceeded = client.waitForExit(timeout: 5) && client.exitStatus == 0
    let report = TransferReport(
        senderSucceeded: senderSucceeded, bytesReceived: TestFiles.size(of: output), seconds: seconds)
    print("  \(report)")
    return report
}

/// Sends `text` over one TCP connection from `sender` to `address`:`port` (`nc -q 1 -N`); returns
/// whether `nc` exited with status 0.
@discardableResult
public func sendText(_ text: String, from sender: NetworkNamespace, to address: String, port: Int) throws -> Bool {
    try sender.exec(["nc", "-q", "1", "-N", "-w", "5", address, "\(port)"], stdin: text, timeout: 15).status == 0
}

/// Sends one UDP datagram carrying `payload` from `namespace` to `address`:`port` (python3's
/// `socket.sendto`, from an ephemeral port).
public func sendUDPDatagram(_ payload: [UInt8], from namespace: NetworkNamespace, to address: String, port: Int)
    throws
{
    let hex = payload.map { String(format: "%02x", $0) }.joined()
    let script = "import socket,sys; socket.socket(socket.AF_INET, socket.SOCK_DGRAM)"
        + ".sendto(bytes.fromhex(sys.argv[1]), (sys.argv[2], int(sys.argv[3])))"
    try namespace.run(["python3", "-c", script, hex, address, "\(port)"])
}
