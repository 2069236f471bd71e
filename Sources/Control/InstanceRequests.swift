// Talking to the running instances of this network namespace over their status sockets
// (`/run/tunvpn/<netns id>-<dev>.sock`, StatusServices.swift): `tunvpn show` asks each for its status,
// `tunvpn reload` asks a server to reload its allow-list.

import Engine
import Glibc
import Platform

/// Requests to running instances, as `tunvpn show` and `tunvpn reload` make them.
public enum InstanceRequests {
    /// One instance's status reply: the status JSON.
    public typealias Reply = (device: String, path: String, bytes: [UInt8])

    /// The status of every instance running in this network namespace (or of the one on `device`).
    ///
    /// - Throws: `ControlError` when none answers (mentioning a killed instance's leftovers), or a socket
    ///   cannot be read.
    public static func statusReplies(device dev: String?) throws(ControlError) -> [Reply] {
        let sockets: [(device: String, path: String)]
        if let dev {
            sockets = [(dev, HostNetwork.statusSocketPath(device: dev))]
        } else {
            do throws(IOError) { sockets = try HostNetwork.statusSockets() } catch {
                throw ControlError("cannot list \(HostNetwork.stateDirectory): \(reason(error))")
            }
        }
        var replies: [(device: String, path: String, bytes: [UInt8])] = []
        for socket in sockets {
            do throws(IOError) {
                replies.append((socket.device, socket.path, try UnixSocketClient.fetch(socket.path)))
            } catch  where error.errno == ECONNREFUSED || error.errno == ENOENT {
                continue  // a socket left by an instance that was killed, or none for --dev
            } catch {
                throw ControlError(
                    "cannot read the status of \(socket.device) from \(socket.path): \(reason(error))")
            }
        }
        guard !replies.isEmpty else {
            // A killed instance's host changes (a kill switch, routes) are worth a word.
            let left = ((try? HostNetwork.instances()) ?? []).filter { $0.hasLeftovers && $0.owner == nil }
                .filter { dev == nil || $0.device == dev }.map(\.device)
            let note = left.isEmpty
                ? ""
                : "; a killed instance left host changes on \(left.joined(separator: ", ")): `tunvpn down --dev \(left[0])` removes them"
            if let dev { throw ControlError("no tunvpn server or client uses \(dev) in this network namespace" + note) }
            throw ControlError("no tunvpn server or client is running in this network namespace" + note)
        }
        return replies
    }

    /// The replies as `wg show` text, blocks separated by blank lines.
    public static func statusText(_ replies: [Reply]) throws(ControlError) -> String {
        let now = SystemClock().wallNow().seconds
        var blocks: [String] = []
        for reply in replies {
            let snapshot: EngineSnapshot
            do { snapshot = try StatusDocument.snapshot(fromJSON: reply.bytes) } catch {
                throw ControlError("status of \(reply.device) (\(reply.path)): \(error)")
            }
            blocks.append(StatusText.render(snapshot, now: now))
        }
        return blocks.joined(separator: "\n")
    }

    /// Asks the server on `device` (or the one run by `pid`, or the only instance here) to reload its
    /// allow-list, handing over the file's text when this process can read it; returns the outcome line.
    ///
    /// - Throws: `ControlError` with the server's reason when the reload failed or no server answered.
    public static func reload(device dev: String?, pid: Int32?) throws -> String {
        try requireStateDirectory("reload", why: "the servers' status sockets")
        let device: String
        if let dev {
            device = dev
        } else if let pid {
            guard let owned = try HostNetwork.instances().first(where: { $0.owner == pid }) else {
                throw ControlError("pid \(pid) runs no tunvpn instance in this network namespace")
            }
            device = owned.device
        } else {
            let running = try HostNetwork.instances().filter { $0.owner != nil }
            device = try soleInstance(of: running, "the server to reload").device
        }
        let path = HostNetwork.statusSocketPath(device: device)
        let reply: [UInt8]
        // The server may run as a user that cannot read its allow-list: read it here, as root, with the
        // same checks, and hand over its text. Without a path (a client) it answers for itself.
        var allowList: [UInt8]? = nil
        if let asked = try? UnixSocketClient.fetch(path, request: "allow-list-path", timeout: 10) {
            let answer = String(decoding: asked, as: UTF8.self).trimmingSuffix("\n")
            if answer.hasPrefix("ok /") {
                let file = String(answer.dropFirst(3))
                if KeyFiles.exists(file) { allowList = try KeyFiles.readConfigurationFile(file, what: "allow-list") }
            }
        }
        do throws(IOError) {
            if let allowList {
                reply = try UnixSocketClient.fetch(path, request: "reload-file", body: allowList, timeout: 30)
            } else {
                reply = try UnixSocketClient.fetch(path, request: "reload", timeout: 30)
            }
        } catch {
            if error.errno == ENOENT || error.errno == ECONNREFUSED {
                if let pid = InstanceLock.owner(device: device), pid > 0 {
                    throw ControlError(
                        "tunvpn pid \(pid) on \(device) has no status socket to answer; `kill -HUP \(pid)` reloads it, with the outcome in its log")
                }
                throw ControlError("no tunvpn instance on \(device) in this network namespace")
            }
            throw ControlError("cannot ask the instance on \(device) to reload (\(path)): \(reason(error))")
        }
        let text = String(decoding: reply, as: UTF8.self).trimmingSuffix("\n")
        if text.hasPrefix("ok ") {
            return String(text.dropFirst(3))
        } else if text.hasPrefix("error ") {
            throw ControlError(String(text.dropFirst(6)))
        } else {
            throw ControlError("the instance on \(device) gave no reload outcome (an older tunvpn?): \(text.prefix(200))")
        }
    }

    /// The absolute path of the allow-list the server on `device` reads, or nil when it does not say (a
    /// client, or an older tunvpn).
    public static func allowListPath(device: String) -> String? {
        guard let asked = try? UnixSocketClient.fetch(HostNetwork.statusSocketPath(device: device), request: "allow-list-path", timeout: 10)
        else { return nil }
        let answer = String(decoding: asked, as: UTF8.self).trimmingSuffix("\n")
        return answer.hasPrefix("ok /") ? String(answer.dropFirst(3)) : nil
    }

    /// Refuses `tunvpn COMMAND` when this process cannot use the state directory (`/run/tunvpn`, root's):
    /// otherwise it would report "no instance" or a journal it cannot remove, blaming the wrong thing.
    static func requireStateDirectory(_ command: String, why: String) throws(ControlError) {
        guard !HostNetwork.stateDirectoryUsable else { return }
        throw ControlError(
            "tunvpn \(command) needs root: \(why) are in \(HostNetwork.stateDirectory), which \(Privileges.Account.withID(geteuid()).name) (uid \(geteuid())) cannot use; run `sudo tunvpn \(command)`")
    }

    /// strerror(3)'s words for `error`, with what to do about a permission error.
    public static func reason(_ error: IOError, command: String = "show") -> String {
        let text = String(cString: strerror(error.errno))
        return error.errno == EACCES || error.errno == EPERM ? "\(text); run tunvpn \(command) as root" : text
    }
}
