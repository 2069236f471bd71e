// Reading, writing and restoring /etc/resolv.conf for the resolv.conf DNS method (docs/ROUTING.md, "DNS"):
// the in-process steps `tunvpn-resolv-conf write|restore` of Routing's `ResolvConf`.
//
// A write goes to a temporary file in the same directory, is synced, and renamed over the file (rename(2)
// is atomic: a reader sees the old or the new file, never a part). Where the file is a mount point, as
// `ip netns exec` makes /etc/resolv.conf (a bind mount of /etc/netns/NAME/resolv.conf; ip-netns(8)), the
// rename fails with EBUSY, and the file is written in place instead (O_TRUNC, write, fsync). A symbolic
// link comes back as the same link, made beside it and renamed over.

import Glibc
import Routing

public enum ResolvConfFile {
    /// What is at `path`: a file's bytes, a symbolic link (and what reading through it gives), or nothing;
    /// nil if it cannot be read.
    public static func read(_ path: String) -> SavedFile? {
        var st = stat()
        if lstat(path, &st) != 0 { return errno == ENOENT ? .absent : nil }
        if st.st_mode & S_IFMT == S_IFLNK {
            var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            let n = readlink(path, &buffer, buffer.count - 1)
            guard n > 0 else { return nil }
            let target = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            return .symlink(target: target, content: contents(path))
        }
        guard st.st_mode & S_IFMT == S_IFREG, let bytes = contents(path) else { return nil }
        return .file(bytes)
    }

    /// The bytes of the file at `path` (following links), at most 64 KiB (their hex form must fit in a
    /// journal line, and a resolv.conf is a few hundred bytes); nil if it cannot be read or is larger.
    static func contents(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while out.count <= 1 << 16 {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { return nil }
            if n == 0 { return out }
            out += chunk[0..<n]
        }
        return nil
    }

    /// Replaces the file at `path` with `bytes` (mode 0644): atomically by rename, or in place where
    /// `path` is a mount point. Nil on success, else what failed.
    public static func write(_ path: String, bytes: [UInt8]) -> String? {
        let temporary = temporaryPath(path)
        unlink(temporary)  // one a killed process of the same pid left
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return "cannot create \(temporary): \(String(cString: strerror(errno)))" }
        if let failure = writeAll(fd, bytes, name: temporary) ?? (fchmod(fd, 0o644) == 0 ? nil : "fchmod: \(String(cString: strerror(errno)))") {
            close(fd)
            unlink(temporary)
            return failure
        }
        close(fd)
        if rename(temporary, path) == 0 { return nil }
        let code = errno
        unlink(temporary)
        guard code == EBUSY else { return "cannot rename \(temporary) over \(path): \(String(cString: strerror(code)))" }
        // A mount point cannot be replaced: write it in place.
        let inPlace = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC)
        guard inPlace >= 0 else { return "cannot open \(path): \(String(cString: strerror(errno)))" }
        defer { close(inPlace) }
        return writeAll(inPlace, bytes, name: path)
    }

    /// Puts back what `saved` says was at `path`. Nil on success, else what failed.
    public static func restore(_ path: String, saved: SavedFile) -> String? {
        switch saved {
        case .file(let bytes):
            return write(path, bytes: bytes)
        case .symlink(let target, _):
            let temporary = temporaryPath(path)
            unlink(temporary)
            guard symlink(target, temporary) == 0 else {
                return "cannot create the link \(temporary): \(String(cString: strerror(errno)))"
            }
            guard rename(temporary, path) == 0 else {
                let code = errno
                unlink(temporary)
                return "cannot rename \(temporary) over \(path): \(String(cString: strerror(code)))"
            }
            return nil
        case .absent:
            return unlink(path) == 0 || errno == ENOENT ? nil : "cannot remove \(path): \(String(cString: strerror(errno)))"
        }
    }

    /// `.NAME.tunvpn-PID` beside `path`.
    static func temporaryPath(_ path: String) -> String {
        let slash = path.lastIndex(of: "/")
        let directory = slash.map { String(path[...$0]) } ?? ""
        let name = slash.map { String(path[path.index(after: $0)...]) } ?? path
        return "\(directory).\(name).tunvpn-\(getpid())"
    }

    static func writeAll(_ fd: Int32, _ bytes: [UInt8], name: String) -> String? {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return "cannot write \(name): \(String(cString: strerror(errno)))" }
            offset += n
        }
        return fsync(fd) == 0 ? nil : "cannot sync \(name): \(String(cString: strerror(errno)))"
    }

    /// The DNS method for this host: systemd-resolved when /etc/resolv.conf resolves into
    /// /run/systemd/resolve/ (its stub or its list of upstream servers, systemd-resolved.service(8)) and
    /// `resolvectl` is installed; otherwise resolv.conf.
    public static func method(path: String = ResolvConf.path) -> DNSMethod {
        guard let resolved = realpath(path, nil) else { return .resolvConf }
        defer { free(resolved) }
        let target = String(cString: resolved)
        return target.hasPrefix("/run/systemd/resolve/") && CommandRunner.exists("resolvectl") ? .systemdResolved : .resolvConf
    }
}
