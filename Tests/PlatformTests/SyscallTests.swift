// The syscall funnel with scripted calls: EINTR is retried, other errno values come back named.

import Engine
import Glibc
import Testing

@testable import Platform

@Suite("Syscall funnel")
struct SyscallTests {
    @Test func interruptedCallsAreRetriedUntilTheyFinish() {
        var attempts = 0
        let result = Syscall.run("scripted") { () -> Int32 in
            attempts += 1
            if attempts < 3 {
                errno = EINTR
                return -1
            }
            return 42
        }
        #expect(result == .success(42))
        #expect(attempts == 3)
    }

    @Test func otherErrorsAreReturnedAtOnceWithTheirErrno() {
        var attempts = 0
        let result = Syscall.run("scripted") { () -> Int in
            attempts += 1
            errno = EAGAIN
            return -1
        }
        #expect(result == .failure(Errno(EAGAIN)))
        #expect(attempts == 1)
    }

    @Test func checkThrowsAnErrorNamingTheCall() {
        #expect(throws: IOError(call: "bind", errno: EADDRINUSE, detail: "Address already in use")) {
            _ = try Syscall.check("bind") { () -> Int32 in
                errno = EADDRINUSE
                return -1
            }
        }
    }
}
