// A flood of forged handshake initiations for the denial-of-service end-to-end test
// (docs/PROTOCOL.md, "Denial of service").
//
// Two halves:
// - `ForgedInitiations` makes the datagrams in the test process, with the project's own
//   `HandshakeInitiator`: well-formed initiations from random client keys (so their mac1 is valid and
//   they reach the server's load meter and cookie path, as an attacker who knows the server's public
//   key could make them), and garbage of initiation size that a server must refuse before any
//   Diffie-Hellman work. They are written to one file, 288 bytes each (`WireFormat.initiationLength`), interleaved.
// - `InitiationFlood` sends them from a namespace with python3 (`socket.sendto` in a loop paced against
//   `time.monotonic()`), cycling over several source addresses, at a fixed rate for a fixed time. It
//   stops by itself: at most `rate × seconds` datagrams, and never after `seconds`. It prints one JSON
//   line with what it sent, so the test can check and report the rate it really reached.
// `tunvpn-loadgen --flood` runs the same two halves for bench/flood.sh.
//
// The source addresses are plain aliases on the generator's veth (`addAddresses`), so the cookie
// replies the server sends to them come back to the generator's namespace (and are never read: its
// sockets just drop them once their buffers fill).

import Crypto
import Foundation
import Transport

/// The datagrams of a flood of forged initiations.
public enum ForgedInitiations {
    /// How many datagrams of each kind a file holds.
    public struct Summary: Sendable, CustomStringConvertible {
        /// Initiations from random (unlisted) client keys with a valid mac1 and a zero mac2.
        public var wellFormed: Int
        /// Random bytes after an initiation header (type 1, reserved 0): refused as `wrongServerKey`.
        public var wrongKeyID: Int
        /// Random bytes after an initiation header carrying the server's key ID: refused as `corrupted`
        /// (mac1 fails), the dearest refusal before Diffie-Hellman.
        public var badMAC1: Int
        public var total: Int { wellFormed + wrongKeyID + badMAC1 }
        public var description: String {
            "\(total) datagrams: \(wellFormed) well-formed (valid mac1), \(wrongKeyID) garbage with a wrong key ID, \(badMAC1) garbage with the server's key ID"
        }
    }

    /// Writes `count` initiation-sized datagrams to `path` for the server whose public key is `serverPublicKey`
    /// (base64): every even one a well-formed initiation from a fresh random client key, every odd one
    /// garbage (alternately with a wrong key ID and with the server's key ID and a wrong mac1).
    public static func write(to path: String, serverPublicKey: String, count: Int = 2000) throws -> Summary {
        let serverKey = try PublicKey(base64: serverPublicKey)
        let tags = StaticKeyTags(serverKey)
        let random = SystemRandom()
        var summary = Summary(wellFormed: 0, wrongKeyID: 0, badMAC1: 0)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count * WireFormat.initiationLength)
        let now = UInt64(Date().timeIntervalSince1970)
        for i in 0..<count {
            var message: [UInt8]
            if i % 2 == 0 {
                let initiator = HandshakeInitiator(localStatic: PrivateKey(random: random), serverKey: serverKey)
                message = initiator.createInitiation(
                    senderIndex: random.nextUInt32(), timestamp: TAI64N(secondsSince1970: now, nanoseconds: 0),
                    random: random
                ).message
                precondition(tags.verifyMAC1(message, offset: WireFormat.initiationMAC1Offset), "mac1 of a fresh initiation")
                summary.wellFormed += 1
            } else {
                message = [UInt8](repeating: 0, count: WireFormat.initiationLength)
                message.withUnsafeMutableBytes { random.fill($0) }
                message.replaceSubrange(0..<4, with: [WireFormat.MessageType.initiation.rawValue, 0, 0, 0])
                if i % 4 == 3 {
                    message.replaceSubrange(8..<12, with: tags.keyID)
                    summary.badMAC1 += 1
                } else {
                    if Array(message[8..<12]) == tags.keyID { message[8] ^= 0xff }
                    summary.wrongKeyID += 1
                }
            }
            bytes += message
        }
        print("+ # wrote \(summary) to \(path)")
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return summary
    }

    /// Writes `count` WireGuard initiations (`WireGuardFormat.initiationLength` bytes each, the message
    /// layout of a server in WireGuard mode) to `path`, each from a fresh random key, with a valid mac1
    /// for the server whose public key is `serverPublicKey` (base64) and a zero mac2: each reaches that
    /// server's load meter and, under load, earns a cookie reply. Send them with `InitiationFlood`'s
    /// `messageLength: WireGuardFormat.initiationLength`.
    public static func writeWireGuard(to path: String, serverPublicKey: String, count: Int = 2000) throws {
        let serverKey = try PublicKey(base64: serverPublicKey)
        let tags = StaticKeyTags.wireGuard(serverKey)
        let random = SystemRandom()
        let now = UInt64(Date().timeIntervalSince1970)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count * WireGuardFormat.initiationLength)
        for _ in 0..<count {
            let message = WireGuardInitiator(localStatic: PrivateKey(random: random), peerKey: serverKey)
                .createInitiation(
                    senderIndex: random.nextUInt32(), timestamp: TAI64N(secondsSince1970: now, nanoseconds: 0),
                    random: random
                ).message
            precondition(
                message.withUnsafeBytes { tags.verifyMAC1($0, offset: WireGuardFormat.initiationMAC1Offset) },
                "mac1 of a fresh WireGuard initiation")
            bytes += message
        }
        print("+ # wrote \(count) WireGuard initiations from random keys (valid mac1) to \(path)")
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }
}

/// A running flood: python3 sending the datagrams of a file to one UDP endpoint from several sources.
public final class InitiationFlood: @unchecked Sendable {
    /// What the sender reported when it stopped.
    public struct Report: Sendable, CustomStringConvertible {
        /// Datagrams the kernel accepted.
        public var sent: Int
        /// sendto calls that failed (ENOBUFS, EAGAIN); not retried.
        public var errors: Int
        /// From the first send to the last.
        public var seconds: Double
        public var rate: Double { seconds > 0 ? Double(sent) / seconds : 0 }
        public var description: String {
            String(format: "%d datagrams in %.2f s (%.0f/s), %d send errors", sent, seconds, rate, errors)
        }
    }

    public enum FloodError: Error, CustomStringConvertible {
        case didNotFinish(log: String)
        case noReport(log: String)
        public var description: String {
            switch self {
            case .didNotFinish(let log): "the flood sender did not stop by itself: \(log)"
            case .noReport(let log): "the flood sender printed no report: \(log)"
            }
        }
    }

    static let script = """
        import json, socket, sys, time
        path, host, port, rate, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
        size = int(sys.argv[6])
        data = open(path, "rb").read()
        messages = [data[i:i + size] for i in range(0, len(data), size)]
        sockets = []
        for source in sys.argv[7:]:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
            s.bind((source, 0))
            s.setblocking(False)
            sockets.append(s)
        destination = (host, port)
        limit = int(rate * seconds)
        ns, nm = len(sockets), len(messages)
        i = sent = errors = 0
        start = time.monotonic()
        end = start + seconds
        while i < limit:
            now = time.monotonic()
            if now >= end:
                break
            due = min(limit, int((now - start) * rate) + 1)
            while i < due:
                try:
                    sockets[i % ns].sendto(messages[i % nm], destination)
                    sent += 1
                except OSError:
                    errors += 1
                i += 1
            time.sleep(0.0005)
        print(json.dumps({"sent": sent, "errors": errors, "seconds": time.monotonic() - start}), flush=True)
        """

    private let process: BackgroundProcess
    private let seconds: Double

    /// Starts sending the datagrams in `file` (`messageLength` bytes each) to `address`:`port` from
    /// `namespace`, `rate` per second for `seconds`, each from the next address of `sources` (which must
    /// be configured there).
    public init(
        in namespace: NetworkNamespace, datagrams file: String, messageLength: Int = WireFormat.initiationLength,
        to address: String, port: Int, sources: [String], rate: Int, seconds: Double, logFile: String
    ) throws {
        precondition(!sources.isEmpty, "a flood needs at least one source address")
        self.seconds = seconds
        process = try namespace.spawn(
            Self.senderCommand(
                datagrams: file, messageLength: messageLength, to: address, port: port, sources: sources, rate: rate,
                seconds: seconds),
            logFile: logFile)
    }

    /// The sender's command line (python3 and its arguments), for a caller that runs it itself, as
    /// `tunvpn-loadgen --flood` does for bench/flood.sh.
    public static func senderCommand(
        datagrams file: String, messageLength: Int = WireFormat.initiationLength, to address: String, port: Int,
        sources: [String], rate: Int, seconds: Double
    ) -> [String] {
        ["python3", "-c", script, file, address, "\(port)", "\(rate)", "\(seconds)", "\(messageLength)"] + sources
    }

    public var isRunning: Bool { process.isRunning }

    /// The sender's pid (python3's: `ip netns exec` execs it).
    public var pid: pid_t { process.pid }

    /// Waits for the sender to stop by itself (it runs `seconds`, so this waits at most that plus
    /// `slack`), then returns its report.
    public func wait(slack: Double = 10) throws -> Report {
        guard process.waitForExit(timeout: seconds + slack) else {
            process.terminate()
            throw FloodError.didNotFinish(log: process.log)
        }
        let line = process.log.split(separator: "\n").last { $0.hasPrefix("{") }
        guard let line, let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
            let sent = object["sent"] as? Int, let errors = object["errors"] as? Int,
            let elapsed = object["seconds"] as? Double
        else { throw FloodError.noReport(log: process.log) }
        let report = Report(sent: sent, errors: errors, seconds: elapsed)
        print("  flood: \(report)")
        return report
    }
}

extension NetworkNamespace {
    /// Adds every address of `addresses` (with prefix length) to `device`, in one `ip -batch` run.
    public func addAddresses(_ addresses: [String], device: String) throws {
        let commands = addresses.map { "address add \($0) dev \(device)" }.joined(separator: "\n") + "\n"
        print("+ # \(addresses.count) addresses for \(device): \(addresses.first ?? "") … \(addresses.last ?? "")")
        try runLoggedChecked(["ip", "-n", name, "-batch", "-"], stdin: commands)
    }
}
