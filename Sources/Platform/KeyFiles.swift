// Reading and writing key files, as `wg genkey`/`wg pubkey` format them (base64 of 32 bytes, one line).
//
// A private key file is created with mode 0600 from its first instant (open(2) with O_CREAT|O_EXCL and
// mode 0600; umask can only remove bits), and one that group or others can read is refused, as ssh does.
// Files tunvpn trusts (keys, psk, allow-list, config) must also be owned by root or by the user running
// tunvpn, and not be writable by group or others; all of it is checked with fstat(2) on the opened
// descriptor.
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

    /// How far a file must be protected before tunvpn trusts its contents. Checked with fstat(2) on the
    /// opened descriptor, before reading, so the file checked is the file read.
    public enum Trust: Sendable {
        /// Private keys and pre-shared keys: owned by root or by the user running tunvpn, and no access at
        /// all for group or others.
        case secret
        /// Files that decide who may connect or how tunvpn runs (allow-list, config, public keys): owned by
        /// root or by the user running tunvpn, and not writable by group or others.
        case configuration
    }

    /// Reads a file of up to `limit` bytes that tunvpn trusts for its settings (allow-list, config file),
    /// refusing it unless `Trust.configuration` holds; errors name the file and the command that fixes it.
    public static func readConfigurationFile(_ path: String, what: String, limit: Int = 1 << 20) throws(KeyFileError) -> [UInt8] {
        try readChecked(path, what: what, limit: limit) { st throws(KeyFileError) in try check(st, of: path, trust: .configuration) }.text
    }

    /// Reads a whole small file; errors name the file.
    public static func readSmallFile(_ path: String, what: String = "file", limit: Int = maxFileSize) throws(KeyFileError) -> (
        text: [UInt8], mode: mode_t
    ) {
        try readChecked(path, what: what, limit: limit) { _ throws(KeyFileError) in }
    }

    /// Refuses a file, given its fstat(2), that does not meet `trust`: with one line naming the file, what is
    /// wrong, and the `chown` or `chmod` that fixes it. The owner is checked first.
    public static func check(_ st: stat, of path: String, trust: Trust, what: String = "private key") throws(KeyFileError) {
        let euid = geteuid()
        if st.st_uid != 0 && st.st_uid != euid {
            let owner = Privileges.Account.withID(st.st_uid).name
            let runner = euid == 0 ? "root" : Privileges.Account.withID(euid).name
            let who = euid == 0 ? "root" : "root or \(runner), the user running tunvpn"
            throw KeyFileError(
                path: path, problem: "owned by \(owner) (uid \(st.st_uid)), not by \(who); run `chown \(runner) \(path)`")
        }
        let mode = st.st_mode & 0o777
        switch trust {
        case .secret:
            if mode & (S_IRWXG | S_IRWXO) != 0 {
                throw KeyFileError(
                    path: path,
                    problem: "\(what) is accessible by group or others (mode 0\(octal(mode))); run `chmod 600 \(path)`")
            }
        case .configuration:
            if mode & (S_IWGRP | S_IWOTH) != 0 {
                throw KeyFileError(
                    path: path,
                    problem: "is writable by group or others (mode 0\(octal(mode))), so they could change it; run `chmod \(octal(mode & ~(S_IWGRP | S_IWOTH))) \(path)`")
            }
        }
    }

    /// For a relative `path`, the working directory it is relative to (" (relative to the working
    /// directory /etc)"), since a command run from elsewhere, or a unit, looks for it there; "" otherwise.
    static func relativeNote(_ path: String) -> String {
        guard !path.hasPrefix("/") else { return "" }
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        guard getcwd(&buffer, buffer.count) != nil else { return " (relative to the working directory)" }
        return " (relative to the working directory \(String(cString: buffer)))"
    }

    /// Permission bits as three octal digits, as chmod(1) takes them (`644`, `004`).
    static func octal(_ mode: mode_t) -> String {
        let digits = String(mode & 0o777, radix: 8)
        return String(repeating: "0", count: max(0, 3 - digits.count)) + digits
    }

    /// Opens `path`, fstat(2)s the descriptor, passes the result to `check`, then reads up to `limit` bytes.
    private static func readChecked(_ path: String, what: String, limit: Int, check: (stat) throws(KeyFileError) -> Void)
        throws(KeyFileError) -> (text: [UInt8], mode: mode_t)
    {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)
        if fd < 0 {
            let e = errno
            switch e {
            case ENOENT: throw KeyFileError(path: path, problem: "\(what) not found\(relativeNote(path))")
            case EACCES:
                let user = Privileges.Account.withID(geteuid()).name
                throw KeyFileError(
                    path: path,
                    problem: "permission denied for \(user) (uid \(geteuid())); make it and its directories readable by that user, or run as root")
            default: throw KeyFileError(path: path, problem: "cannot open: \(String(cString: strerror(e)))")
            }
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw KeyFileError(path: path, problem: "cannot stat: \(String(cString: strerror(errno)))") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw KeyFileError(path: path, problem: "is not a regular file") }
        try check(st)
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

    /// Loads a private key: the file must exist, be owned by root or the user running tunvpn, be accessible
    /// by its owner only, and hold one base64 key, clamped as every key `tunvpn keygen` and `wg genkey`
    /// make (`PrivateKey.isClamped`): one that is not is almost surely a public key given by mistake. The
    /// key is decoded straight from the file's bytes, which are wiped afterwards.
    public static func loadPrivateKey(_ path: String) throws(KeyFileError) -> PrivateKey {
        let key = try loadSecret(path, what: "private key")
        guard key.isClamped else {
            let hint = path.hasSuffix(".pub") ? " (e.g. \(path.dropLast(4)).key)" : ""
            throw KeyFileError(
                path: path,
                problem: "this looks like a public key: private keys made by `tunvpn keygen` or `wg genkey` are clamped (RFC 7748) and this one is not; give the private key file\(hint), or make one with `tunvpn keygen`")
        }
        return key
    }

    /// Loads a pre-shared key (`--psk`): checked like a private key file, but any 32 bytes are a valid psk.
    public static func loadPresharedKey(_ path: String) throws(KeyFileError) -> PrivateKey {
        try loadSecret(path, what: "psk")
    }

    /// A secret key file (`what`: "private key" or "psk") read as `Trust.secret` asks, decoded from the
    /// file's bytes, which are wiped afterwards.
    private static func loadSecret(_ path: String, what: String) throws(KeyFileError) -> PrivateKey {
        var (bytes, _) = try readChecked(path, what: "\(what) file", limit: maxFileSize) { st throws(KeyFileError) in
            try check(st, of: path, trust: .secret, what: what)
        }
        defer { Sodium.wipe(&bytes) }
        let result = bytes.withUnsafeBytes { b in Result { () throws(KeyDecodingError) in try PrivateKey(base64UTF8: b) } }
        do {
            return try result.get()
        } catch {
            throw KeyFileError(path: path, problem: "\(what) \(error)")
        }
    }

    /// Loads a public key file. Public keys are not secret, but the peer's key decides whom tunvpn trusts, so
    /// the file must meet `Trust.configuration` (owner root or the user running tunvpn, not group/other-writable).
    /// A key that cannot be a public key and looks like a private one (`PublicKey.looksLikePrivateKey`, which
    /// never refuses a real public key) is refused: the private key was given by mistake.
    public static func loadPublicKey(_ path: String) throws(KeyFileError) -> PublicKey {
        let bytes = try readConfigurationFile(path, what: "public key file", limit: maxFileSize)
        let key: PublicKey
        do {
            key = try PublicKey(base64: String(decoding: bytes, as: UTF8.self))
        } catch {
            throw KeyFileError(path: path, problem: "public key \(error)")
        }
        guard !key.looksLikePrivateKey else {
            let hint = path.hasSuffix(".key") ? " (e.g. \(path.dropLast(4)).pub)" : ""
            throw KeyFileError(
                path: path,
                problem: "this looks like a private key, not a public one (it is clamped as `tunvpn keygen` makes private keys, and no private key derives it); give the peer's public key file\(hint), made with `tunvpn pubkey` or `wg pubkey`, and keep this file secret")
        }
        return key
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
