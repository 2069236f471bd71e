// Instance ownership: the lock file `/run/tunvpn/<netns id>-<dev>.lock` that a server or client holds
// (flock(2), exclusive) for its whole life, and the discovery of the instances of this network namespace.
//
// The lock decides who may touch the host changes journaled for a device: a start that finds it held
// changes nothing, and `tunvpn down` leaves a live instance alone. Leftovers of a killed instance are swept
// only by whoever holds the lock, i.e. once the previous owner is provably gone (the kernel releases an
// flock when its last descriptor closes, however the process ended). The owner writes its pid into the
// file, so "lock held" means "this pid is alive".

import Glibc
import Routing

/// The exclusive lock of one instance (a device in this network namespace).
///
/// Lifetime: `acquire` opens and locks the file and writes the pid; the lock is held until `release()` or
/// `deinit` closes the descriptor. The descriptor is close-on-exec, so no child (`ip`, `nft`) inherits it.
public final class InstanceLock: Sendable {
    /// What `acquire` found.
    public enum Outcome {
        /// This process owns the instance now.
        case acquired(InstanceLock)
        /// A running process owns it (its pid, if the file names one).
        case held(by: Int32?)
    }

    public let device: String
    public let path: String
    private let fd: Int32

    private init(device: String, path: String, fd: Int32) {
        self.device = device
        self.path = path
        self.fd = fd
    }

    deinit { close(fd) }

    /// Takes the lock of `device` in this network namespace (after checking the state directory).
    ///
    /// A holder that is not a running tunvpn (a `tunvpn show` probing the lock for a moment, or an
    /// instance that took it a moment ago and has not written its pid yet) is waited for up to 0.5 s.
    ///
    /// - Throws: `RoutingError` if the state directory or the lock file fails its checks.
    public static func acquire(device: String) throws(RoutingError) -> Outcome {
        let path = try HostNetwork.runtimePath(device: device, suffix: "lock")
        var holder: Int32? = nil
        for _ in 0..<25 {
            let fd = try openChecked(path, flags: O_RDWR | O_CREAT)
            if flock(fd, LOCK_EX | LOCK_NB) == 0 {
                // The previous owner may have unlinked the file between our open and flock: then the lock
                // taken is on a file nobody else will ever open; start over with the one at the path.
                var mine = stat()
                var there = stat()
                guard fstat(fd, &mine) == 0, lstat(path, &there) == 0, mine.st_dev == there.st_dev,
                    mine.st_ino == there.st_ino
                else {
                    close(fd)
                    continue
                }
                let text = "\(getpid())\n"
                _ = ftruncate(fd, 0)
                _ = text.utf8CString.withUnsafeBufferPointer { pwrite(fd, $0.baseAddress, $0.count - 1, 0) }
                return .acquired(InstanceLock(device: device, path: path, fd: fd))
            }
            let code = errno
            holder = readPID(fd)
            close(fd)
            guard code == EWOULDBLOCK else {
                throw RoutingError(step: "instance lock", command: "", message: "cannot lock \(path): \(String(cString: strerror(code)))")
            }
            if let pid = holder, isRunningTunvpn(pid) { return .held(by: pid) }
            var pause = timespec(tv_sec: 0, tv_nsec: 20_000_000)
            _ = nanosleep(&pause, nil)
        }
        return .held(by: holder)
    }

    /// The pid of the running owner of `device`'s instance, or nil when nobody holds its lock (or there is
    /// no lock file). Probes with a shared lock taken and dropped at once.
    public static func owner(device: String) -> Int32? {
        let path = HostNetwork.runtimeName(device: device, suffix: "lock")
        // O_NONBLOCK: a FIFO planted at the path must not block the probe (open(2)); it is no lock file.
        let fd = Glibc.open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        guard HostNetwork.ownershipProblem(fd: fd) == nil else { return nil }
        if flock(fd, LOCK_SH | LOCK_NB) == 0 {
            flock(fd, LOCK_UN)
            return nil
        }
        return readPID(fd) ?? 0
    }

    /// Removes the lock file if it is still the one locked here and this process may (root only: after
    /// giving up root the state directory is closed to it, and the file stays for the next owner), then
    /// releases the lock.
    public func release() {
        var mine = stat()
        var there = stat()
        if fstat(fd, &mine) == 0, lstat(path, &there) == 0, mine.st_dev == there.st_dev, mine.st_ino == there.st_ino {
            unlink(path)
        }
        flock(fd, LOCK_UN)
    }

    /// Opens `path` with O_NOFOLLOW and checks it (`HostNetwork.ownershipProblem`).
    static func openChecked(_ path: String, flags: Int32) throws(RoutingError) -> Int32 {
        let fd = Glibc.open(path, flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            let code = errno
            let why = code == ELOOP ? "it is a symbolic link" : String(cString: strerror(code))
            let hint = code == EACCES || code == EPERM ? "; run as root" : ""
            throw RoutingError(step: "instance lock", command: "", message: "cannot open \(path): \(why)\(hint)")
        }
        if let problem = HostNetwork.ownershipProblem(fd: fd) {
            close(fd)
            throw RoutingError(
                step: "instance lock", command: "", message: "refusing \(path): \(problem); remove it after checking no tunvpn runs")
        }
        return fd
    }

    /// The pid written in the lock file open as `fd`, if any.
    static func readPID(_ fd: Int32) -> Int32? {
        var buffer = [UInt8](repeating: 0, count: 32)
        let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { return nil }
        return Int32(String(decoding: buffer[0..<n], as: UTF8.self).split(separator: "\n").first ?? "")
    }

    /// True when `pid` runs a program whose name starts with "tunvpn" (proc(5), /proc/PID/comm).
    static func isRunningTunvpn(_ pid: Int32) -> Bool {
        guard pid > 0, let comm = try? KeyFiles.readSmallFile("/proc/\(pid)/comm", what: "process").text else {
            return false
        }
        return String(decoding: comm, as: UTF8.self).hasPrefix("tunvpn")
    }
}

/// A device of this network namespace that a tunvpn instance runs on or left host changes for.
public struct InstanceRecord: Equatable, Sendable {
    public var device: String
    /// The pid of the running owner; nil when none runs.
    public var owner: Int32?
    /// True when a journal with host changes to undo is left (a killed instance's).
    public var hasLeftovers: Bool
}

extension HostNetwork {
    /// The devices of this network namespace with a running instance or a non-empty journal, sorted,
    /// from the `<netns id>-<dev>.lock` and `.journal` files of the state directory. Empty when the
    /// directory does not exist.
    ///
    /// - Throws: `RoutingError` when the directory cannot be read (not root).
    public static func instances() throws(RoutingError) -> [InstanceRecord] {
        try devicesWithFiles().compactMap { device in
            var st = stat()
            let journal = runtimeName(device: device, suffix: "journal")
            let dnsJournal = runtimeName(device: device, suffix: dnsJournalSuffix)
            let leftovers = (lstat(journal, &st) == 0 && st.st_size > 0) || (lstat(dnsJournal, &st) == 0 && st.st_size > 0)
            let owner = InstanceLock.owner(device: device)
            return owner != nil || leftovers ? InstanceRecord(device: device, owner: owner, hasLeftovers: leftovers) : nil
        }
    }

    /// The devices of this network namespace with a lock file or a journal in the state directory,
    /// sorted (an instance that gave up root before it exited cannot delete its own).
    ///
    /// - Throws: `RoutingError` when the directory cannot be read (not root).
    public static func devicesWithFiles() throws(RoutingError) -> [String] {
        guard let dir = opendir(stateDirectory) else {
            let code = errno
            if code == ENOENT { return [] }
            let hint = code == EACCES || code == EPERM ? "; run as root" : ""
            throw RoutingError(
                step: "state directory", command: "", message: "cannot list \(stateDirectory): \(String(cString: strerror(code)))\(hint)")
        }
        defer { closedir(dir) }
        let prefix = "\(namespaceID())-"
        var devices = Set<String>()
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            // The DNS agent's journal first: its name also ends in ".journal".
            for suffix in [".\(dnsJournalSuffix)", ".lock", ".journal"] where name.hasPrefix(prefix) && name.hasSuffix(suffix) {
                let device = String(name.dropFirst(prefix.count).dropLast(suffix.count))
                if !device.isEmpty { devices.insert(device) }
                break
            }
        }
        return devices.sorted()
    }
}
