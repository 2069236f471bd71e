// The privilege drop of `tunvpn server` and `tunvpn client` after setup (`--user`), with its log lines.

import Glibc
import Logging
import Platform

/// Becomes `user` (default: `tunvpn` if it exists, else `nobody`) with CAP_NET_ADMIN alone, and logs
/// `running as NAME (uid N, gid N), capabilities: CAP_NET_ADMIN`. A process not started as root keeps its
/// user (it could not change it) and says so; `--user root` keeps uid 0 with a warning.
///
/// - Throws: `ControlError` naming the step that failed; the caller then tears down and exits 1.
public func dropPrivileges(user: String?, logger: Logger) throws {
    let startedAsRoot = geteuid() == 0
    let name = user ?? Privileges.defaultUserName
    let account: Privileges.Account
    if startedAsRoot {
        guard let found = Privileges.Account.named(name) else {
            throw ControlError(
                "--user \(name): no such user; create it (adduser --system --group --no-create-home \(name)) or pass --user with an existing one")
        }
        account = found
    } else {
        account = Privileges.Account.withID(geteuid())
    }
    let outcome: Privileges.Outcome
    do { outcome = try Privileges.drop(to: account) } catch { throw ControlError(error.description) }
    logger.info("\(outcome.description)")
    if !startedAsRoot {
        let ignored = user.map { $0 == account.name ? "" : " (--user \($0) ignored)" } ?? ""
        logger.notice("not started as root, so the user stays \(outcome.account.name)\(ignored)")
    } else if account.uid == 0 {
        logger.warning(
            "--user \(name) keeps uid 0: code run through a flaw in tunvpn could write every root-owned file; leave --user unset to run as \(Privileges.serviceUserName) or nobody")
    }
}
