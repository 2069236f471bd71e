// Where wg(8) looks for a userspace WireGuard implementation's configuration socket: `/var/run/wireguard/
// DEV.sock` (https://www.wireguard.com/xplatform/; wireguard-go binds the same path). The directory is
// shared with wireguard-go and every other such implementation on the host, and it is not per network
// namespace, so a device name must be unique on the host for its socket to be.

import Glibc
import Routing

extension HostNetwork {
    /// The directory of userspace WireGuard configuration sockets.
    public static let uapiDirectory = "/var/run/wireguard"

    /// `/var/run/wireguard/<device>.sock`.
    public static func uapiSocketPath(device: String) -> String { "\(uapiDirectory)/\(device).sock" }

    /// Checks the UAPI directory before a socket is bound in it, creating it (root, mode 0755, as
    /// wireguard-go does) if it is missing: it must be a real directory (lstat(2)) owned by root, with no
    /// group or other write permission, so that nobody but root can put a socket of their own there.
    ///
    /// - Throws: `RoutingError` naming the directory, what is wrong and the commands that fix it.
    public static func checkUAPIDirectory() throws(RoutingError) {
        try checkRootDirectory(uapiDirectory, mode: 0o755, step: "uapi directory")
    }

    /// Removes the socket file at `path` if it is still the one with `identity` (device and inode, as
    /// `UnixSocketServer.identity` gives them); true if it did.
    @discardableResult
    public static func removeSocketFile(_ path: String, identity: (device: UInt64, inode: UInt64)) -> Bool {
        var st = stat()
        guard lstat(path, &st) == 0, st.st_mode & S_IFMT == S_IFSOCK, UInt64(st.st_dev) == identity.device,
            UInt64(st.st_ino) == identity.inode
        else { return false }
        return unlink(path) == 0
    }
}
