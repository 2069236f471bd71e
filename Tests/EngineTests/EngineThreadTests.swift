// EngineThread names its thread, so `top -H` and /proc/PID/task/TID/comm tell tunvpn-out from tunvpn-in.

import Engine
import Glibc
import Synchronization
import Testing

@Suite struct EngineThreadTests {
    /// The name the kernel holds for a thread started as `name`, read by the thread itself.
    func nameSeenInside(_ name: String) -> String {
        let seen = Mutex<String>("")
        let thread = EngineThread(name: name) {
            // The kernel's record of this thread's name (proc(5)), which `top -H` shows.
            var text = "unreadable"
            let fd = open("/proc/thread-self/comm", O_RDONLY)
            if fd >= 0 {
                var buffer = [UInt8](repeating: 0, count: 64)
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                close(fd)
                if n > 0 { text = String(decoding: buffer[..<n], as: UTF8.self) }
            }
            seen.withLock { $0 = text.hasSuffix("\n") ? String(text.dropLast()) : text }
        }
        thread.join()
        return seen.withLock { $0 }
    }

    @Test func aThreadCarriesItsName() {
        #expect(nameSeenInside("tunvpn-out") == "tunvpn-out")
        #expect(nameSeenInside("tunvpn-in") == "tunvpn-in")
    }

    @Test func aLongNameIsCutToFifteenBytesOnACharacterBoundary() {
        #expect(nameSeenInside("tunvpn-status-server-7") == "tunvpn-status-s")
        #expect(EngineThread.threadName("tunvpn-status-server-7") == "tunvpn-status-s")
        // "é" is two bytes: fourteen ASCII bytes and an "é" would make 16, so the "é" goes.
        #expect(EngineThread.threadName("abcdefghijklmné") == "abcdefghijklmn")
        #expect(EngineThread.threadName("") == "")
    }
}
