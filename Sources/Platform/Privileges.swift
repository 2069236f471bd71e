// Least privilege for a running tunvpn: once setup is done (device open and configured, socket bound, host
// plan applied, status socket bound), the process gives up uid 0 for a system user and keeps one
// capability, CAP_NET_ADMIN, which is all its remaining work needs: the open TUN device and socket need
// nothing, the client's routes at tunnel-up and the teardown's `ip`/`nft` children need CAP_NET_ADMIN
// (passed to them through the ambient set), and the net.* sysctls under /proc/sys/net grant the network
// administrator root's access (capabilities(7); the kernel's net_ctl_permissions).
//
// The steps, each reported by name when it fails (capabilities(7), prctl(2), setresuid(2)):
// PR_SET_KEEPCAPS; bounding set = {CAP_NET_ADMIN}; setgroups(0, NULL); setresgid; setresuid;
// effective = permitted = inheritable = {CAP_NET_ADMIN}; ambient += CAP_NET_ADMIN; PR_SET_NO_NEW_PRIVS.
// Capabilities are per thread, so this runs on the main thread before the engine's threads exist; the
// uid and gid changes apply to every thread (glibc's setxid broadcast).

import CLinux
import Glibc

/// Process privileges.
public enum Privileges {
    /// A user to run as: the name, uid and primary gid from the password database (getpwnam_r(3)).
    public struct Account: Equatable, Sendable {
        public var name: String
        public var uid: uid_t
        public var gid: gid_t

        public init(name: String, uid: uid_t, gid: gid_t) {
            self.name = name
            self.uid = uid
            self.gid = gid
        }

        /// The account called `name`, or nil when the password database has none.
        public static func named(_ name: String) -> Account? {
            var entry = passwd()
            var result: UnsafeMutablePointer<passwd>? = nil
            var buffer = [CChar](repeating: 0, count: 16_384)
            guard getpwnam_r(name, &entry, &buffer, buffer.count, &result) == 0, result != nil else { return nil }
            return Account(name: name, uid: entry.pw_uid, gid: entry.pw_gid)
        }

        /// The account of `uid`, or a placeholder named after the number when it has no entry.
        public static func withID(_ uid: uid_t) -> Account {
            var entry = passwd()
            var result: UnsafeMutablePointer<passwd>? = nil
            var buffer = [CChar](repeating: 0, count: 16_384)
            guard getpwuid_r(uid, &entry, &buffer, buffer.count, &result) == 0, result != nil, let name = entry.pw_name else {
                return Account(name: "uid \(uid)", uid: uid, gid: getegid())
            }
            return Account(name: String(cString: name), uid: uid, gid: entry.pw_gid)
        }
    }

    /// The system user the packages create for tunvpn.
    public static let serviceUserName = "tunvpn"

    /// The user to run as when none is chosen: `tunvpn` if that user exists, else `nobody`.
    public static var defaultUserName: String { Account.named(serviceUserName) != nil ? serviceUserName : "nobody" }

    /// A step of the drop that failed: one line naming the step, the errno text and what to do.
    public struct DropError: Error, Equatable, Sendable, CustomStringConvertible {
        /// The call that failed, as the operator would look it up (`setresuid(998)`).
        public var step: String
        public var errno: Int32
        public var hint: String

        public var description: String {
            "cannot drop privileges: \(step) failed: \(String(cString: strerror(errno))); \(hint)"
        }
    }

    /// What the drop left: the user, and the capability sets of the calling thread.
    public struct Outcome: Equatable, Sendable {
        /// The user the process runs as now.
        public var account: Account
        /// True when the uid and gid were changed (false for `--user root` and for a run not started as root).
        public var changedUser: Bool
        /// True when the bounding set holds CAP_NET_ADMIN alone.
        public var boundingSetReduced: Bool
        /// The effective set, as a bit mask (bit N: capability N).
        public var effective: UInt64

        /// The startup log line: `running as tunvpn (uid 998, gid 998), capabilities: CAP_NET_ADMIN`.
        public var description: String {
            var text = "running as \(account.name) (uid \(account.uid), gid \(account.gid)), capabilities: \(Privileges.names(effective))"
            if !boundingSetReduced { text += " (bounding set unchanged: no CAP_SETPCAP)" }
            return text
        }
    }

    /// The capability names of a mask: `CAP_NET_ADMIN`, other bits as `CAP_#N`, `none` for 0.
    static func names(_ mask: UInt64) -> String {
        let names = (0..<64).filter { mask & (1 << UInt64($0)) != 0 }.map { $0 == Int(clinux_cap_net_admin()) ? "CAP_NET_ADMIN" : "CAP_#\($0)" }
        return names.isEmpty ? "none" : names.joined(separator: ", ")
    }

    /// CAP_NET_ADMIN as a bit mask.
    public static var netAdminMask: UInt64 { 1 << UInt64(clinux_cap_net_admin()) }

    /// After setup: becomes `account` (unless it is root, or the process was not started as root) and keeps
    /// CAP_NET_ADMIN alone, in the effective, permitted, inheritable, ambient and bounding sets, with
    /// no_new_privs. Call it on the main thread before the threads that need CAP_NET_ADMIN are created.
    ///
    /// - Parameter account: the user to become; its uid and primary gid are used, and every supplementary
    ///   group is dropped. A uid of 0 keeps root (the caller warns), with CAP_NET_ADMIN alone.
    /// - Returns: the outcome, whose `description` is the startup log line.
    /// - Throws: `DropError` naming the step that failed; the process may then be part way (for example with
    ///   its gid changed), and should tear down and exit.
    public static func drop(to account: Account) throws(DropError) -> Outcome {
        let startedAsRoot = geteuid() == 0
        let changeIDs = startedAsRoot && account.uid != 0
        var step: Int32 = 0
        var boundingReduced: Int32 = 0
        if clinux_drop_privileges(changeIDs ? 1 : 0, account.uid, account.gid, &step, &boundingReduced) != 0 {
            let code = errno
            throw DropError(step: stepName(step, account), errno: code, hint: hint(step, account))
        }
        var effective: UInt64 = 0
        var permitted: UInt64 = 0
        var inheritable: UInt64 = 0
        var ambient: UInt64 = 0
        _ = clinux_capabilities(&effective, &permitted, &inheritable, &ambient)
        let now = changeIDs ? account : (startedAsRoot ? Account.withID(0) : Account.withID(geteuid()))
        return Outcome(account: now, changedUser: changeIDs, boundingSetReduced: boundingReduced == 1, effective: effective)
    }

    static func stepName(_ step: Int32, _ account: Account) -> String {
        switch step {
        case CLINUX_DROP_STEP_KEEPCAPS: "prctl(PR_SET_KEEPCAPS)"
        case CLINUX_DROP_STEP_BOUNDING: "prctl(PR_CAPBSET_DROP)"
        case CLINUX_DROP_STEP_SETGROUPS: "setgroups(0)"
        case CLINUX_DROP_STEP_SETRESGID: "setresgid(\(account.gid))"
        case CLINUX_DROP_STEP_SETRESUID: "setresuid(\(account.uid))"
        case CLINUX_DROP_STEP_CAPSET: "capset(CAP_NET_ADMIN)"
        case CLINUX_DROP_STEP_AMBIENT: "prctl(PR_CAP_AMBIENT_RAISE, CAP_NET_ADMIN)"
        case CLINUX_DROP_STEP_NO_NEW_PRIVS: "prctl(PR_SET_NO_NEW_PRIVS)"
        default: "step \(step)"
        }
    }

    static func hint(_ step: Int32, _ account: Account) -> String {
        switch step {
        case CLINUX_DROP_STEP_BOUNDING:
            "start tunvpn as root with CAP_SETPCAP (a systemd unit's CapabilityBoundingSet= must list CAP_SETPCAP)"
        case CLINUX_DROP_STEP_SETGROUPS, CLINUX_DROP_STEP_SETRESGID:
            "start tunvpn as root with CAP_SETGID (a systemd unit's CapabilityBoundingSet= must list CAP_SETGID)"
        case CLINUX_DROP_STEP_SETRESUID:
            "start tunvpn as root with CAP_SETUID (a systemd unit's CapabilityBoundingSet= must list CAP_SETUID)"
        case CLINUX_DROP_STEP_CAPSET, CLINUX_DROP_STEP_AMBIENT:
            "tunvpn needs CAP_NET_ADMIN in its permitted and inheritable sets (for a run as \(account.name), grant it with `setpriv --inh-caps=+net_admin --ambient-caps=+net_admin`)"
        default:
            "report this as a bug"
        }
    }

    /// For a process that stays uid 0 and needs no capability (the DNS agent): empties the bounding,
    /// effective, permitted, inheritable and ambient sets and sets no_new_privs, on the main thread before
    /// any other exists. Returns nil, or the step that failed with its errno text.
    public static func dropAllCapabilities() -> String? {
        let step = clinux_drop_all_capabilities()
        guard step != 0 else { return nil }
        let names = [1: "prctl(PR_CAPBSET_DROP)", 2: "capset(none)", 3: "prctl(PR_CAP_AMBIENT_CLEAR_ALL)", 4: "prctl(PR_SET_NO_NEW_PRIVS)"]
        return "\(names[Int(step)] ?? "step \(step)") failed: \(String(cString: strerror(errno)))"
    }

    /// The effective capability set of the calling thread, as a bit mask (0 when it cannot be read).
    public static var effectiveCapabilities: UInt64 {
        var effective: UInt64 = 0
        var permitted: UInt64 = 0
        var inheritable: UInt64 = 0
        var ambient: UInt64 = 0
        _ = clinux_capabilities(&effective, &permitted, &inheritable, &ambient)
        return effective
    }

    /// prctl(PR_SET_DUMPABLE, 0): the process writes no core dump (which would hold its keys) and other
    /// processes of the same non-root user cannot ptrace it. Returns false, with nothing changed, on failure.
    @discardableResult
    public static func disableCoreDumps() -> Bool { clinux_disable_core_dumps() == 0 }
}
