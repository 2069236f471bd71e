// Shared pieces of the libFuzzer targets (Fuzz/README.md): a cursor over the fuzzer's bytes, a buffer with
// guard regions that catch writes past the end, a deterministic RandomSource fed by the input, an
// invariant check that traps loudly, and the seed writer every target calls from LLVMFuzzerInitialize.
//
// Everything that fails here fails through `fatalError`, so libFuzzer records a crash with the input that
// caused it (address sanitizer or not).

import Crypto

#if canImport(Glibc)
    import Glibc
#endif

/// Traps with `message` unless `condition` holds: a broken invariant is a crash the fuzzer reports.
@inline(__always)
public func require(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String, file: StaticString = #file,
    line: UInt = #line)
{
    if !condition() { fatalError("invariant broken: \(message())", file: file, line: line) }
}

/// A cursor over the fuzzer's input. Reads past the end yield zeros, so every input is a valid script.
public struct FuzzInput {
    public let bytes: [UInt8]
    public private(set) var position = 0

    public init(_ data: UnsafePointer<UInt8>, _ size: Int) {
        bytes = Array(UnsafeBufferPointer(start: data, count: size))
    }

    public init(bytes: [UInt8]) { self.bytes = bytes }

    public var isAtEnd: Bool { position >= bytes.count }
    public var remaining: Int { max(0, bytes.count - position) }

    public mutating func byte() -> UInt8 {
        guard position < bytes.count else { return 0 }
        defer { position += 1 }
        return bytes[position]
    }

    public mutating func uint16() -> UInt16 { UInt16(byte()) | UInt16(byte()) << 8 }
    public mutating func uint32() -> UInt32 { UInt32(uint16()) | UInt32(uint16()) << 16 }
    public mutating func uint64() -> UInt64 { UInt64(uint32()) | UInt64(uint32()) << 32 }

    /// Up to `count` bytes (fewer at the end of the input).
    public mutating func take(_ count: Int) -> [UInt8] {
        let n = min(max(0, count), remaining)
        defer { position += n }
        return Array(bytes[position..<(position + n)])
    }

    /// Exactly `count` bytes, zero-padded past the end of the input.
    public mutating func fixed(_ count: Int) -> [UInt8] {
        var out = take(count)
        out += [UInt8](repeating: 0, count: count - out.count)
        return out
    }

    /// A length-prefixed chunk (16-bit little-endian length, capped by what is left).
    public mutating func chunk() -> [UInt8] { take(Int(uint16())) }

    /// Everything not yet read.
    public mutating func rest() -> [UInt8] { take(remaining) }
}

/// Writes a length-prefixed chunk as `FuzzInput.chunk()` reads it (for seeds).
public func chunk(_ bytes: [UInt8]) -> [UInt8] {
    precondition(bytes.count <= 0xffff, "a chunk holds at most 65535 bytes")
    return [UInt8(bytes.count & 0xff), UInt8(bytes.count >> 8)] + bytes
}

public func le16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xff), UInt8(v >> 8)] }
public func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * UInt32($0))) } }
public func le64(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * UInt64($0))) } }

/// A heap buffer of `count` bytes between two guard regions filled with a known pattern. Code under test
/// gets `start`; `checkGuards()` traps if anything outside `start..<start+count` was written. The address
/// sanitizer would catch the heap overflow too, but only past the whole allocation; the guards also catch
/// writes that stay inside it, and work in builds without ASan.
public final class GuardedBuffer {
    public static let guardLength = 256
    public static let pattern: UInt8 = 0xA5
    public let count: Int
    private let base: UnsafeMutableRawPointer

    public init(count: Int, fill: UInt8 = 0) {
        self.count = count
        base = .allocate(byteCount: count + 2 * Self.guardLength, alignment: 16)
        base.initializeMemory(as: UInt8.self, repeating: Self.pattern, count: Self.guardLength)
        (base + Self.guardLength).initializeMemory(as: UInt8.self, repeating: fill, count: count)
        (base + Self.guardLength + count).initializeMemory(as: UInt8.self, repeating: Self.pattern, count: Self.guardLength)
    }

    deinit { base.deallocate() }

    public var start: UnsafeMutableRawPointer { base + Self.guardLength }
    public var bytes: UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(start: start, count: count) }

    public func checkGuards(_ what: @autoclosure () -> String) {
        let before = UnsafeRawBufferPointer(start: base, count: Self.guardLength)
        let after = UnsafeRawBufferPointer(start: base + Self.guardLength + count, count: Self.guardLength)
        if let i = before.firstIndex(where: { $0 != Self.pattern }) {
            fatalError("invariant broken: \(what()) wrote \(Self.guardLength - i) bytes before its buffer")
        }
        if let i = after.firstIndex(where: { $0 != Self.pattern }) {
            fatalError("invariant broken: \(what()) wrote past its \(count)-byte buffer (at +\(count + i))")
        }
    }
}

/// Randomness for the code under test, fully determined by a seed (SplitMix64, as TestSupport's
/// SeededRandom), so a crashing input reproduces. Not for keys outside the fuzzers.
public final class FuzzRandom: RandomSource, @unchecked Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    public func fill(_ buffer: UnsafeMutableRawBufferPointer) {
        var i = 0
        while i < buffer.count {
            var v = next()
            for _ in 0..<8 where i < buffer.count {
                buffer[i] = UInt8(truncatingIfNeeded: v)
                v >>= 8
                i += 1
            }
        }
    }
}

/// Fixed keys for the fuzzers: the same on every run, so seeds made once stay valid.
public enum FuzzKeys {
    public static let server = PrivateKey(random: FuzzRandom(seed: 0x5e17e1))
    public static let client = PrivateKey(random: FuzzRandom(seed: 0xc11e47))
    public static let otherClient = PrivateKey(random: FuzzRandom(seed: 0x07e1))
}

/// Seed corpora are made by the fuzz targets themselves, with the real code: when the environment
/// variable `TUNVPN_FUZZ_SEEDS` names a directory, `writeSeedsIfAsked` writes each seed there as a file
/// and exits (Fuzz/run.sh seeds does this for every target).
public func writeSeedsIfAsked(_ make: () -> [(name: String, bytes: [UInt8])]) {
    guard let dir = getenv("TUNVPN_FUZZ_SEEDS").map({ String(cString: $0) }) else { return }
    for seed in make() {
        let path = dir + "/" + seed.name
        guard let f = fopen(path, "wb") else { fatalError("cannot write \(path)") }
        _ = seed.bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, f) }
        fclose(f)
    }
    exit(0)
}

/// libFuzzer's entry for programs that own `main` (compiler-rt FuzzerInterface.h).
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
) -> Int32

/// Runs libFuzzer's driver on `callback`. SwiftPM links a debug executable with `main` aliased to
/// `<Target>_main` (so tests can import executables), which hides the `main` in libFuzzer's runtime;
/// each target therefore defines `<Target>_main` and calls this. (A release build keeps libFuzzer's own
/// `main`, which finds `LLVMFuzzerTestOneInput`; both paths run the same callback.)
public func runFuzzer(
    _ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
) -> Int32 {
    var count = argc
    var vector: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = argv
    return LLVMFuzzerRunDriver(&count, &vector, callback)
}
