// DNS in lab namespaces: each namespace's own resolv.conf, with the guard that keeps the host's
// /etc/resolv.conf out of reach, and dnsmasq resolvers that run only inside lab namespaces.
//
// `ip netns exec NAME` bind-mounts /etc/netns/NAME/resolv.conf over /etc/resolv.conf in the mount
// namespace it makes for the command, and only when that file exists (ip-netns(8)). A tunvpn client that
// applies DNS by the resolv.conf method in a namespace without it would rewrite the host's file, so every
// namespace that runs a client gets its file first (`install`), and `requireIsolated` refuses to go on
// unless the namespace really sees that file (same device and inode) and not the host's. `remove` deletes
// /etc/netns/NAME when the namespace goes.

import Foundation
import NamespaceLab

public enum NamespaceResolvConf {
    /// /etc/netns/NAME, the directory whose files `ip netns exec` mounts over /etc.
    public static func directory(_ namespace: NetworkNamespace) -> String { "/etc/netns/\(namespace.name)" }

    /// The namespace's own resolv.conf (/etc/netns/NAME/resolv.conf).
    public static func path(_ namespace: NetworkNamespace) -> String { directory(namespace) + "/resolv.conf" }

    /// Writes `text` as the namespace's resolv.conf (mode 0644), creating /etc/netns/NAME; returns its path.
    /// Call it before anything that reads or changes /etc/resolv.conf starts in the namespace.
    @discardableResult
    public static func install(_ namespace: NetworkNamespace, _ text: String) throws -> String {
        try FileManager.default.createDirectory(atPath: directory(namespace), withIntermediateDirectories: true)
        let file = path(namespace)
        print("+ cat > \(file) <<EOF\n\(text)EOF")
        try Data(text.utf8).write(to: URL(fileURLWithPath: file))
        chmod(file, 0o644)
        return file
    }

    /// The bytes of the namespace's resolv.conf as the host sees them (nil if it cannot be read).
    public static func bytes(_ namespace: NetworkNamespace) -> [UInt8]? {
        FileManager.default.contents(atPath: path(namespace)).map { Array($0) }
    }

    public struct NotIsolated: Error, CustomStringConvertible {
        public let description: String
    }

    /// Refuses (throws) unless `namespace` has its own resolv.conf and a command started in it by
    /// `ip netns exec` sees that file at /etc/resolv.conf, not the host's: the guard of every DNS test.
    public static func requireIsolated(_ namespace: NetworkNamespace) throws {
        let own = path(namespace)
        var st = stat()
        guard stat(own, &st) == 0, st.st_mode & S_IFMT == S_IFREG else {
            throw NotIsolated(description: "\(own) does not exist: a DNS test in \(namespace.name) would change the host's /etc/resolv.conf; install it first")
        }
        let seen = try namespace.exec(["stat", "-L", "-c", "%d:%i", "/etc/resolv.conf"], timeout: 10)
        let expected = "\(st.st_dev):\(st.st_ino)"
        guard seen.status == 0, seen.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == expected else {
            throw NotIsolated(
                description: "\(namespace.name) sees /etc/resolv.conf as \(seen.stdout.trimmingCharacters(in: .whitespacesAndNewlines)), not its own \(own) (\(expected)); refusing to run a DNS test there")
        }
    }

    /// Deletes /etc/netns/NAME (after the namespace is gone, or when the test ends).
    public static func remove(_ namespace: NetworkNamespace) {
        let dir = directory(namespace)
        guard FileManager.default.fileExists(atPath: dir) else { return }
        print("+ rm -rf \(dir)")
        try? FileManager.default.removeItem(atPath: dir)
    }
}

/// dnsmasq (Debian's dnsmasq-base: the binary, no system service) answering on one address inside a lab
/// namespace, with no upstream servers: it knows only its `--host-record`s and refuses other names, and
/// logs every query it receives. Stopped by its pid.
public final class Dnsmasq {
    public let process: BackgroundProcess
    public let queryLog: String
    public let address: String

    /// Starts dnsmasq in `namespace` on `address` (UDP and TCP port 53), knowing `records` (name → address),
    /// logging queries to `directory`/`name`.queries; waits until it listens.
    public init(in namespace: NetworkNamespace, address: String, records: [(name: String, address: String)], directory: String, name: String)
        throws
    {
        self.address = address
        queryLog = directory + "/\(name).queries"
        let arguments = DnsmasqPlan.arguments(
            address: address, records: records.map { ($0.name, [$0.address]) }, queryLog: queryLog,
            pidFile: "\(directory)/\(name).pid")
        process = try namespace.spawn(arguments, logFile: directory + "/\(name).log")
        let listening = try namespace.waitForListener(port: 53, udp: true)
        guard listening, process.isRunning else {
            _ = process.terminate()
            throw NamespaceResolvConf.NotIsolated(description: "dnsmasq did not start in \(namespace.name): \(process.log)")
        }
    }

    /// The queries logged (`query[A] NAME from ADDR`): record type, name and the asking address.
    public var queries: [(type: String, name: String, from: String)] {
        let text = (try? String(contentsOfFile: queryLog, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { line in
            guard let q = line.range(of: "query[") else { return nil }
            let words = line[q.lowerBound...].split(separator: " ")
            guard words.count >= 4, words[2] == "from" else { return nil }
            let type = words[0].dropFirst("query[".count).dropLast()
            return (String(type), String(words[1]), String(words[3]))
        }
    }

    /// Stops dnsmasq by its pid.
    public func stop() { _ = process.terminate() }
}
