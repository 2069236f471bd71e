// A fresh network namespace for one test body, without touching the root namespace or any other thread.
//
// unshare(CLONE_NEWNET) moves only the calling thread (task) into a new network namespace on Linux
// (unshare(2)); sockets and TUN devices created by that thread live there. So the helper starts a
// dedicated pthread, unshares it, checks that /proc/thread-self/ns/net really changed, and runs the
// body there. The namespace holds no name in /run/netns: it disappears once the thread has exited
// and every socket and TUN descriptor made in it is closed, so there is nothing to delete on any exit
// path. Threads the body starts inherit its namespace.
//
//   root namespace (untouched)      fresh namespace (this thread only)
//   ──────────────────────────      ─────────────────────────────────
//   test threads                    lo (down), devices the body creates

import CLinux
import Glibc

/// Why a fresh network namespace could not be entered.
public enum NamespaceError: Error, Equatable, CustomStringConvertible {
    /// unshare(CLONE_NEWNET) failed (EPERM without CAP_SYS_ADMIN).
    case unshareFailed(errno: Int32)
    /// stat of /proc/thread-self/ns/net failed.
    case cannotInspect(errno: Int32)
    /// The thread's namespace inode did not change after unshare.
    case namespaceUnchanged

    public var description: String {
        switch self {
        case .unshareFailed(let code): "unshare(CLONE_NEWNET) failed (errno \(code)): run the tests as root"
        case .cannotInspect(let code): "stat /proc/thread-self/ns/net failed (errno \(code))"
        case .namespaceUnchanged: "unshare(CLONE_NEWNET) returned 0 but the thread's namespace did not change"
        }
    }
}

/// The inode number of the calling thread's network namespace (stat of /proc/thread-self/ns/net).
public func currentNetworkNamespaceInode() throws -> UInt64 {
    var info = stat()
    guard stat("/proc/thread-self/ns/net", &info) == 0 else { throw NamespaceError.cannotInspect(errno: errno) }
    return UInt64(info.st_ino)
}

/// Runs `body` on a dedicated thread that first moved into a new, empty network namespace.
///
/// - Parameter timeout: see `runOnDedicatedThread`.
/// - Throws: `NamespaceError`, `DedicatedThreadError`, or what `body` threw.
public func runInFreshNetworkNamespace<T: Sendable>(
    timeout: Duration = .seconds(10), _ body: @escaping @Sendable () throws -> T
) throws -> T {
    try runOnDedicatedThread(timeout: timeout) {
        let before = try currentNetworkNamespaceInode()
        guard clinux_unshare_network_namespace() == 0 else { throw NamespaceError.unshareFailed(errno: errno) }
        guard try currentNetworkNamespaceInode() != before else { throw NamespaceError.namespaceUnchanged }
        return try body()
    }
}
