// libpq's entry points, looked up with dlopen(3) the first time a registry is used, so that a server or
// client without --registry never maps libpq and what it links (Kerberos, LDAP, GnuTLS, p11-kit: about
// 3 MB of resident memory in every process otherwise). Written by hand because SwiftPM links a system
// library at start-up; the declarations (types, enum values) still come from libpq-fe.h through CLibPQ.

import CLibPQ
import Glibc

/// The libpq functions PostgresConnection and RegistryURL call, resolved from libpq.so.5.
struct LibPQ: @unchecked Sendable {
    // Strings libpq returns are `char *` or `const char *` in libpq-fe.h; both are a pointer in the C ABI.
    typealias CString = UnsafePointer<CChar>?
    typealias CStrings = UnsafePointer<UnsafePointer<CChar>?>?

    let conninfoParse: @convention(c) (CString, UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> UnsafeMutablePointer<PQconninfoOption>?
    let conninfoFree: @convention(c) (UnsafeMutablePointer<PQconninfoOption>?) -> Void
    let freemem: @convention(c) (UnsafeMutableRawPointer?) -> Void
    let connectdbParams: @convention(c) (CStrings, CStrings, Int32) -> OpaquePointer?
    let status: @convention(c) (OpaquePointer?) -> ConnStatusType
    let errorMessage: @convention(c) (OpaquePointer?) -> CString
    let finish: @convention(c) (OpaquePointer?) -> Void
    let setNoticeProcessor: @convention(c) (OpaquePointer?, PQnoticeProcessor?, UnsafeMutableRawPointer?) -> PQnoticeProcessor?
    let pass: @convention(c) (OpaquePointer?) -> CString
    let exec: @convention(c) (OpaquePointer?, CString) -> OpaquePointer?
    let execParams: @convention(c) (
        OpaquePointer?, CString, Int32, UnsafePointer<Oid>?, CStrings, UnsafePointer<Int32>?, UnsafePointer<Int32>?, Int32
    ) -> OpaquePointer?
    let clear: @convention(c) (OpaquePointer?) -> Void
    let resultStatus: @convention(c) (OpaquePointer?) -> ExecStatusType
    let resultErrorField: @convention(c) (OpaquePointer?, Int32) -> CString
    let resultErrorMessage: @convention(c) (OpaquePointer?) -> CString
    let ntuples: @convention(c) (OpaquePointer?) -> Int32
    let nfields: @convention(c) (OpaquePointer?) -> Int32
    let getisnull: @convention(c) (OpaquePointer?, Int32, Int32) -> Int32
    let getvalue: @convention(c) (OpaquePointer?, Int32, Int32) -> CString
    let socket: @convention(c) (OpaquePointer?) -> Int32
    let consumeInput: @convention(c) (OpaquePointer?) -> Int32
    let notifies: @convention(c) (OpaquePointer?) -> UnsafeMutablePointer<PGnotify>?

    /// The library's soname (Debian's libpq5 package).
    static let soname = "libpq.so.5"

    /// The functions, opened once per process on first use (Swift initialises a global once, thread-safely).
    static func load() throws(PostgresError) -> LibPQ { try loaded.get() }

    /// True when libpq is mapped into this process (for tests: not before a registry is used).
    static var isMapped: Bool { dlopen(soname, RTLD_NOW | RTLD_NOLOAD).map { dlclose($0) } != nil }

    private static let loaded: Result<LibPQ, PostgresError> = Result { () throws(PostgresError) -> LibPQ in
        guard let handle = dlopen(soname, RTLD_NOW | RTLD_LOCAL) else {
            let reason = dlerror().map { String(cString: $0) } ?? "not found"
            throw PostgresError(message: "the registry needs PostgreSQL's client library: \(reason) (install libpq5)")
        }
        // The handle stays open for the life of the process: the functions are used until it ends.
        // Each function's type is the one its field declares (inferred from the memberwise initialiser).
        func symbol<T>(_ name: String) throws(PostgresError) -> T {
            guard let p = dlsym(handle, name) else { throw PostgresError(message: "\(soname) has no \(name): a libpq too old") }
            return unsafeBitCast(p, to: T.self)
        }
        return LibPQ(
            conninfoParse: try symbol("PQconninfoParse"),
            conninfoFree: try symbol("PQconninfoFree"),
            freemem: try symbol("PQfreemem"),
            connectdbParams: try symbol("PQconnectdbParams"),
            status: try symbol("PQstatus"),
            errorMessage: try symbol("PQerrorMessage"),
            finish: try symbol("PQfinish"),
            setNoticeProcessor: try symbol("PQsetNoticeProcessor"),
            pass: try symbol("PQpass"),
            exec: try symbol("PQexec"),
            execParams: try symbol("PQexecParams"),
            clear: try symbol("PQclear"),
            resultStatus: try symbol("PQresultStatus"),
            resultErrorField: try symbol("PQresultErrorField"),
            resultErrorMessage: try symbol("PQresultErrorMessage"),
            ntuples: try symbol("PQntuples"),
            nfields: try symbol("PQnfields"),
            getisnull: try symbol("PQgetisnull"),
            getvalue: try symbol("PQgetvalue"),
            socket: try symbol("PQsocket"),
            consumeInput: try symbol("PQconsumeInput"),
            notifies: try symbol("PQnotifies"))
    }
}
