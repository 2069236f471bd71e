// Reading and writing key files, as `wg genkey`/`wg pubkey` format them (base64 of 32 bytes, one line).
//
// A private key file is created with mode 0600 from its first instant (open(2) with O_CREAT|O_EXCL and
// mode 0600; umask can only remove bits), and one that group or others can read is refused, as ssh does.
// Every error is one line that names the file, says what is wrong and what to do; none ever contains key
// material.

import Crypto
import Glibc

/// Why a key file could not be read or written.
public struct KeyFileError: Error, Equatable, Sendable, CustomStringConvertible {
    public var path: String
    public var problem: String

    public init(path: String, problem: String) {
        self.path = path
        self.problem = problem
    }

    public var description: String { "\(path): \(problem)" }
}

/// Key file IO.
public enum KeyFiles {
    /// Largest key file read (a key is 44 characters; the rest allows comments-free whitespace).
    public static let maxFileSize = 4096

    /// Reads a text file of up to 1 MiB (allow-lists); errors name the file.
    public static func readSmallFileAllowingLarge(_ path: String) throws(KeyFileError) -> (text: [UInt8], mode: mode_t) {
        try readSmallFile(path, what: "file", limit: 1 << 20)
    }

    /// Reads a whole small file; errors name the file.
    public static func readSmallFile(_ path: String, what: String = "file", limit: Int = maxFileSize) throws(KeyFileError) -> (
        text: [UInt8], mode: mode_t
    ) {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)
        if fd < 0 {
            let e = errno
            switch e {
            case ENOENT: throw KeyFileError(path: path, problem: "\(what) not found")
            case EACCES: throw KeyFileError(path: path, problem: "permission denied (run as root or as the file's owner)")
            default: throw KeyFileError(path: path, problem: "cannot open: \(String(cString: strerror(e)))")
            }
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw KeyFileError(path: path, problem: "cannot stat: \(String(cString: strerror(errno)))") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw KeyFileError(path: path, problem: "is not a regular file") }
        guard st.st_size <= limit else { throw KeyFileError(path: path, problem: "is too large (more than \(limit) bytes)") }
        var buffer = [UInt8](repeating: 0, count: limit + 1)
        var total = 0
        while total < buffer.count {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress.map { $0 + total }, $0.count - total) }
            if n < 0 {
                if errno == EINTR { continue }
                Sodium.wipe(&buffer)
                throw KeyFileError(path: path, problem: "cannot read: \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            total += n
        }
        let text = Array(buffer.prefix(total))
        Sodium.wipe(&buffer)
        return (text, st.st_mode)
    }

    /// Loads a private key: the file must exist, be readable by its owner only, and hold one base64 key.
    public static func loadPrivateKey(_ path: String) throws(KeyFileError) -> PrivateKey {
        var (bytes, mode) = try readSmallFile(path, what: "private key file")
        defer { Sodium.wipe(&bytes) }
        if mode & (S_IRWXG | S_IRWXO) != 0 {
            let octal = String(mode & 0o777, radix: 8)
            throw KeyFileError(
                path: path, problem: "private key is accessible by group or others (mode 0\(octal)); run `chmod 600 \(path)`")
        }
        do {
            return try PrivateKey(base64: String(decoding: bytes, as: UTF8.self))
        } catch {
            throw KeyFileError(path: path, problem: "private key \(error)")
        }
    }

    /// Loads a public key file (no permission requirement: public keys are not secret).
    public static func loadPublicKey(_ path: String) throws(KeyFileError) -> PublicKey {
        let (bytes, _) = try readSmallFile(path, what: "public key file")
        do {
            return try PublicKey(base64: String(decoding: bytes, as: UTF8.self))
        } catch {
            throw KeyFileError(path: path, problem: "public key \(error)")
        }
    }

    /// Writes `text` to `path` with `mode`, never exposing it with a looser mode.
    ///
    /// Without `overwrite`, the file is created with O_EXCL and an existing file is an error. With it, a
    /// temporary file is created beside the target (O_EXCL, `mode`) and renamed over it, so the old file's
    /// permissions never apply to the new contents.
    public static func write(_ text: String, to path: String, mode: mode_t, overwrite: Bool) throws(KeyFileError) {
        var bytes = Array(text.utf8)
        defer { Sodium.wipe(&bytes) }
        let target = overwrite ? path + ".tmp-\(getpid())" : path
        let fd = open(target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode)
        if fd < 0 {
            let e = errno
            if e == EEXIST {
                throw KeyFileError(path: path, problem: "already exists; refusing to overwrite a key (use --force to replace it)")
            }
            throw KeyFileError(path: target, problem: "cannot create: \(String(cString: strerror(e)))")
        }
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress.map { $0 + written }, $0.count - written) }
            if n < 0 {
                if errno == EINTR { continue }
                let e = errno
                close(fd)
                unlink(target)
                throw KeyFileError(path: target, problem: "cannot write: \(String(cString: strerror(e)))")
            }
            written += n
        }
        // fchmod makes the mode exact even if the process umask removed bits we want (0644 for .pub).
        _ = fchmod(fd, mode)
        guard fsync(fd) == 0, close(fd) == 0 else {
            unlink(target)
            throw KeyFileError(path: target, problem: "cannot write: \(String(cString: strerror(errno)))")
        }
        if overwrite, rename(target, path) != 0 {
            let e = errno
            unlink(target)
            throw KeyFileError(path: path, problem: "cannot replace: \(String(cString: strerror(e)))")
        }
    }

    /// True when `path` exists (any file type).
    public static func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    /// Creates `path` as a directory (mode 0700) if missing.
    public static func ensureDirectory(_ path: String) throws(KeyFileError) {
        var st = stat()
        if stat(path, &st) == 0 {
            guard (st.st_mode & S_IFMT) == S_IFDIR else { throw KeyFileError(path: path, problem: "is not a directory") }
            return
        }
        guard mkdir(path, 0o700) == 0 else {
            throw KeyFileError(path: path, problem: "cannot create directory: \(String(cString: strerror(errno)))")
        }
    }
}
