// The in-process resolv.conf steps on a real file system, in a temporary directory (never /etc): a write
// by rename leaves no temporary file, a file comes back byte for byte, a symbolic link as the same link,
// a missing file as missing; and the DNS method detection.

import Glibc
import Platform
import Routing
import Testing
import TestSupport

@Suite struct ResolvConfFileTests {
    func mode(_ path: String) -> mode_t {
        var st = stat()
        return lstat(path, &st) == 0 ? st.st_mode : 0
    }

    func entries(_ dir: String) -> [String] {
        guard let d = opendir(dir) else { return [] }
        defer { closedir(d) }
        var names: [String] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    @Test func aFileIsReplacedByRenameAndComesBackByteForByte() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.path + "/resolv.conf"
        let original: [UInt8] = Array("nameserver 192.168.1.1\noptions edns0".utf8) + [0xff, 0x0d]
        #expect(ResolvConfFile.write(path, bytes: original) == nil)
        let saved = try #require(ResolvConfFile.read(path))
        #expect(saved == .file(original))
        #expect(ResolvConfFile.write(path, bytes: Array("nameserver 10.8.0.1\n".utf8)) == nil)
        #expect(ResolvConfFile.read(path) == .file(Array("nameserver 10.8.0.1\n".utf8)))
        #expect(mode(path) & 0o777 == 0o644)
        #expect(entries(dir.path) == ["resolv.conf"], "no temporary file left")
        #expect(ResolvConfFile.restore(path, saved: saved) == nil)
        #expect(ResolvConfFile.read(path) == .file(original))
    }

    @Test func aSymbolicLinkIsSavedAsALinkAndComesBackAsTheSameLink() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.path + "/resolv.conf"
        #expect(ResolvConfFile.write(dir.path + "/upstream.conf", bytes: Array("nameserver 192.0.2.53\n".utf8)) == nil)
        #expect(symlink("upstream.conf", path) == 0)
        let saved = try #require(ResolvConfFile.read(path))
        #expect(saved == .symlink(target: "upstream.conf", content: Array("nameserver 192.0.2.53\n".utf8)))
        // Writing replaces the link with a file and leaves its target alone.
        #expect(ResolvConfFile.write(path, bytes: Array("nameserver 10.8.0.1\n".utf8)) == nil)
        #expect(mode(path) & S_IFMT == S_IFREG)
        #expect(ResolvConfFile.read(dir.path + "/upstream.conf") == .file(Array("nameserver 192.0.2.53\n".utf8)))
        #expect(ResolvConfFile.restore(path, saved: saved) == nil)
        #expect(mode(path) & S_IFMT == S_IFLNK)
        #expect(ResolvConfFile.read(path) == saved)
        #expect(entries(dir.path) == ["resolv.conf", "upstream.conf"])
    }

    @Test func aMissingFileIsSavedAsAbsentAndRemovedAgain() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.path + "/resolv.conf"
        #expect(ResolvConfFile.read(path) == .absent)
        #expect(ResolvConfFile.write(path, bytes: Array("nameserver 10.8.0.1\n".utf8)) == nil)
        #expect(ResolvConfFile.restore(path, saved: .absent) == nil)
        #expect(ResolvConfFile.read(path) == .absent)
        #expect(ResolvConfFile.restore(path, saved: .absent) == nil, "already gone is no error")
    }

    @Test func theMethodIsSystemdResolvedOnlyForAFileInsideRunSystemdResolve() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        #expect(ResolvConfFile.write(dir.path + "/resolv.conf", bytes: Array("nameserver 10.0.0.1\n".utf8)) == nil)
        #expect(ResolvConfFile.method(path: dir.path + "/resolv.conf") == .resolvConf)
        #expect(ResolvConfFile.method(path: dir.path + "/missing") == .resolvConf)
    }
}
