// `tunvpn bench`: how fast each cipher suite seals and opens packets on this machine with each AEAD
// provider (libsodium and OpenSSL's libcrypto), in process, next to libsodium's own speed measured the same
// way, so an operator can pick a suite and a provider, and the data path can be held within 10% of its
// library's speed.
//
// Both sides run the same loop over the same memory: a ring of preallocated frames laid out as on the
// wire (16-byte data header, used as associated data ‖ packet ‖ room for the tag), one counter per
// packet, no allocation. tunvpn's side goes through the real `SessionCipher` (existential suite
// dispatch, nonce built on the stack per packet), once per provider; libsodium's side calls the C function
// directly with a nonce buffer zeroed once, storing only the counter per packet, as a plain C loop would.
//
// Open needs a valid frame for every call, so before each timed pass over the ring the ring is sealed
// again, untimed, under the counters the pass will open; only the open calls are timed. Each figure is
// the median of several slices that alternate the providers and libsodium, so drift (frequency scaling, a noisy
// neighbour) hits both alike. The clock is CLOCK_MONOTONIC, read once per pass, not per packet.

import CSodium
import Control
import Crypto
import Glibc
import Transport

/// `tunvpn bench`'s measurement.
public enum SuiteBenchmark {
    /// Measures each suite in `suites` at both packet sizes for `seconds` per measurement, printing the table.
    ///
    /// - Throws: `ControlError` for a suite this machine cannot run, or when the two sides disagree.
    public static func run(
        seconds: Double, suites: [any CipherSuite.Type], providers: [AEADProvider] = AEADProvider.allCases,
        sizes: [Int] = BenchLoop.packetSizes
    ) throws {
        for s in suites where !s.isAvailable {
            throw ControlError("suite \(s.name) does not run on this machine (libsodium needs AES-NI and CLMUL for it)")
        }
        let sliceNanoseconds = UInt64(seconds * 1e9) / UInt64(BenchLoop.slices)
        printLine(
            "tunvpn bench: \(providers.map { $0.version }.joined(separator: ", ")); \(fixed(seconds, 2)) s per measurement (median of "
                + "\(BenchLoop.slices) slices, alternating the providers and libsodium called directly), \(BenchLoop.ringFrames) frames in a ring, "
                + "\(DataFrame.headerLength)-byte header as associated data")
        printLine("")
        let table = BenchTable()
        table.printHeader()
        for s in suites {
            for size in sizes {
                let rows = try BenchLoop.measure(
                    suite: s, packetLength: size, sliceNanoseconds: sliceNanoseconds, providers: providers.filter { $0.runs(s) })
                for row in rows { table.printRow(row) }
            }
        }
        printLine("")
        printLine(
            "GB/s: packet bytes (10^9) per second on one core; vs libsodium: libsodium's C function called directly in the same loop, "
                + "time per packet divided by the provider's (above 1: faster than libsodium)")
    }
}

/// One row of results: nanoseconds per packet.
struct BenchRow {
    var suite: String
    var packetLength: Int
    var provider: AEADProvider
    var seal: Double
    var open: Double
    var sodiumSeal: Double?
    var sodiumOpen: Double?
}

/// One way to seal and open a frame in place: `frame` holds the header (associated data), then the packet.
protocol FrameAEAD {
    func seal(_ frame: UnsafeMutableRawPointer, length: Int, counter: UInt64)
    func open(_ frame: UnsafeMutableRawPointer, length: Int, counter: UInt64) -> Bool
}

/// tunvpn's path: the data plane's `SessionCipher`.
struct TunvpnFrameAEAD: FrameAEAD {
    let cipher: SessionCipher

    @inline(__always)
    func seal(_ frame: UnsafeMutableRawPointer, length: Int, counter: UInt64) {
        let header = DataFrame.headerLength
        _ = cipher.seal(
            frame + header, length: length, counter: counter,
            authenticating: UnsafeRawBufferPointer(start: frame, count: header))
    }

    @inline(__always)
    func open(_ frame: UnsafeMutableRawPointer, length: Int, counter: UInt64) -> Bool {
        let header = DataFrame.headerLength
        return cipher.open(
            frame + header, length: length + cipher.suite.tagLength, counter: counter,
            authenticating: UnsafeRawBufferPointer(start: frame, count: header)) != nil
    }
}

/// libsodium's path: its AEAD functions called straight from the loop, with a nonce buffer reused.
final class SodiumFrameAEAD: FrameAEAD {
    // The shapes of crypto_aead_*_encrypt and _decrypt, with sodium.h's nullability.
    typealias Encrypt = @convention(c) (
        UnsafeMutablePointer<UInt8>, UnsafeMutablePointer<UInt64>?, UnsafePointer<UInt8>?, UInt64,
        UnsafePointer<UInt8>?, UInt64, UnsafePointer<UInt8>?, UnsafePointer<UInt8>, UnsafePointer<UInt8>
    ) -> Int32
    typealias Decrypt = @convention(c) (
        UnsafeMutablePointer<UInt8>?, UnsafeMutablePointer<UInt64>?, UnsafeMutablePointer<UInt8>?,
        UnsafePointer<UInt8>, UInt64, UnsafePointer<UInt8>?, UInt64, UnsafePointer<UInt8>, UnsafePointer<UInt8>
    ) -> Int32

    private let encrypt: Encrypt
    private let decrypt: Decrypt
    private let counterOffset: Int
    private let tagLength: Int
    private let key: UnsafePointer<UInt8>
    private let nonce: UnsafeMutablePointer<UInt8>
    private let keyOwner: SecretBytes

    /// The libsodium functions behind `suite`, or nil for a suite this table does not know.
    init?(suite: any CipherSuite.Type, key: SecretBytes) {
        // The nonce layouts are the ones `CipherSuite.writeNonce` documents: zeros, then the counter (LE64).
        switch suite.name {
        case XChaCha20Poly1305.name:
            (encrypt, decrypt, counterOffset) =
                (crypto_aead_xchacha20poly1305_ietf_encrypt, crypto_aead_xchacha20poly1305_ietf_decrypt, 16)
        case ChaCha20Poly1305.name:
            (encrypt, decrypt, counterOffset) =
                (crypto_aead_chacha20poly1305_ietf_encrypt, crypto_aead_chacha20poly1305_ietf_decrypt, 4)
        case AES256GCM.name:
            (encrypt, decrypt, counterOffset) = (crypto_aead_aes256gcm_encrypt, crypto_aead_aes256gcm_decrypt, 4)
        default:
            return nil
        }
        Sodium.ensureInitialized()
        tagLength = suite.tagLength
        keyOwner = key
        self.key = key.unsafePointer.assumingMemoryBound(to: UInt8.self)
        nonce = .allocate(capacity: CipherSuites.maxNonceLength)
        nonce.initialize(repeating: 0, count: CipherSuites.maxNonceLength)
    }

    deinit { nonce.deallocate() }

    @inline(__always)
    func seal(_ frame: UnsafeMutableRawPointer, length: Int, counter: UInt64) {
        UnsafeMutableRawPointer(nonce).storeBytes(of: counter.littleEndian, toByteOffset: counterOffset, as: UInt64.self)
        let ad = frame.assumingMemoryBound(to: UInt8.self)
        let m = ad + DataFrame.headerLength
        var out: UInt64 = 0
        _ = encrypt(m, &out, m, UInt64(length), ad, UInt64(DataFrame.headerLength), nil, nonce, key)
    }

    @inline(__always)
    func open(_ frame: UnsafeMutableRawPointer, length: Int, counter: UInt64) -> Bool {
        UnsafeMutableRawPointer(nonce).storeBytes(of: counter.littleEndian, toByteOffset: counterOffset, as: UInt64.self)
        let ad = frame.assumingMemoryBound(to: UInt8.self)
        let c = ad + DataFrame.headerLength
        var out: UInt64 = 0
        return decrypt(c, &out, nil, c, UInt64(length + tagLength), ad, UInt64(DataFrame.headerLength), nonce, key) == 0
    }
}

/// A ring of frames, each aligned to a cache line.
final class FrameRing {
    let count: Int
    let stride: Int
    let base: UnsafeMutableRawPointer

    init(count: Int, packetLength: Int) {
        self.count = count
        let bytes = DataFrame.headerLength + packetLength + WireFormat.tagLength
        stride = (bytes + 63) & ~63
        base = .allocate(byteCount: count * stride, alignment: 64)
        Sodium.randomBytes(into: UnsafeMutableRawBufferPointer(start: base, count: count * stride))
    }

    deinit { base.deallocate() }

    @inline(__always) func frame(_ i: Int) -> UnsafeMutableRawPointer { base + i * stride }
}

public enum BenchLoop {
    public static let packetSizes = [1420, 64]
    static let slices = 5
    static let ringFrames = 64

    /// Seals, then opens, one suite at one size through tunvpn with each provider and through libsodium
    /// directly, slices interleaved; one row per provider.
    static func measure(
        suite: any CipherSuite.Type, packetLength: Int, sliceNanoseconds: UInt64, providers: [AEADProvider]
    ) throws -> [BenchRow] {
        let key = SecretBytes(randomCount: suite.keyLength)
        let ciphers = providers.map { TunvpnFrameAEAD(cipher: SessionCipher(suite: suite, key: key, provider: $0)) }
        let sodium = SodiumFrameAEAD(suite: suite, key: key)
        let ring = FrameRing(count: ringFrames, packetLength: packetLength)
        if let sodium { for c in ciphers { try checkSameOutput(c, sodium, packetLength: packetLength) } }

        // Warm up caches, branch predictors and the CPU clock before the first timed slice.
        var counter: UInt64 = 0
        for c in ciphers { _ = try timeSeal(c, ring, packetLength, &counter, sliceNanoseconds / 4) }
        if let sodium { _ = try timeSeal(sodium, ring, packetLength, &counter, sliceNanoseconds / 4) }

        var seal = [[Double]](repeating: [], count: ciphers.count), open = seal
        var sodiumSeal: [Double] = [], sodiumOpen: [Double] = []
        for _ in 0..<slices {
            for (i, c) in ciphers.enumerated() { seal[i].append(try timeSeal(c, ring, packetLength, &counter, sliceNanoseconds)) }
            if let sodium { sodiumSeal.append(try timeSeal(sodium, ring, packetLength, &counter, sliceNanoseconds)) }
        }
        for _ in 0..<slices {
            for (i, c) in ciphers.enumerated() { open[i].append(try timeOpen(c, ring, packetLength, &counter, sliceNanoseconds)) }
            if let sodium { sodiumOpen.append(try timeOpen(sodium, ring, packetLength, &counter, sliceNanoseconds)) }
        }
        return ciphers.indices.map { i in
            BenchRow(
                suite: suite.name, packetLength: packetLength, provider: ciphers[i].cipher.provider, seal: median(seal[i]),
                open: median(open[i]), sodiumSeal: sodium == nil ? nil : median(sodiumSeal),
                sodiumOpen: sodium == nil ? nil : median(sodiumOpen))
        }
    }

    /// Nanoseconds per sealed packet over passes through the ring, until `duration` of sealing is timed.
    static func timeSeal<A: FrameAEAD>(
        _ aead: A, _ ring: FrameRing, _ length: Int, _ counter: inout UInt64, _ duration: UInt64
    ) throws -> Double {
        var elapsed: UInt64 = 0
        var packets = 0
        repeat {
            let start = monotonicNanoseconds()
            for i in 0..<ring.count { aead.seal(ring.frame(i), length: length, counter: counter &+ UInt64(i)) }
            elapsed += monotonicNanoseconds() - start
            counter &+= UInt64(ring.count)
            packets += ring.count
        } while elapsed < duration
        return Double(elapsed) / Double(packets)
    }

    /// Nanoseconds per opened packet; each pass opens frames sealed (untimed) just before it.
    static func timeOpen<A: FrameAEAD>(
        _ aead: A, _ ring: FrameRing, _ length: Int, _ counter: inout UInt64, _ duration: UInt64
    ) throws -> Double {
        var elapsed: UInt64 = 0
        var packets = 0
        var failures = 0
        repeat {
            for i in 0..<ring.count { aead.seal(ring.frame(i), length: length, counter: counter &+ UInt64(i)) }
            let start = monotonicNanoseconds()
            for i in 0..<ring.count where !aead.open(ring.frame(i), length: length, counter: counter &+ UInt64(i)) {
                failures += 1
            }
            elapsed += monotonicNanoseconds() - start
            counter &+= UInt64(ring.count)
            packets += ring.count
        } while elapsed < duration
        guard failures == 0 else { throw ControlError("bench: \(failures) of \(packets) frames failed to open; the benchmark is broken") }
        return Double(elapsed) / Double(packets)
    }

    /// Both paths must produce the same frame for the same key and counter, or the comparison is void.
    static func checkSameOutput(_ a: some FrameAEAD, _ b: some FrameAEAD, packetLength: Int) throws {
        let ringA = FrameRing(count: 1, packetLength: packetLength)
        let ringB = FrameRing(count: 1, packetLength: packetLength)
        ringB.base.copyMemory(from: ringA.base, byteCount: ringA.stride)
        a.seal(ringA.frame(0), length: packetLength, counter: 7)
        b.seal(ringB.frame(0), length: packetLength, counter: 7)
        guard memcmp(ringA.base, ringB.base, ringA.stride) == 0, a.open(ringB.frame(0), length: packetLength, counter: 7)
        else { throw ControlError("bench: a provider and libsodium disagree on a sealed frame; the benchmark is broken") }
    }
}

/// CLOCK_MONOTONIC in nanoseconds.
@inline(__always)
func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    guard !sorted.isEmpty else { return 0 }
    let mid = sorted.count / 2
    return sorted.count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

/// `value` with `digits` decimals (a few lines; `String(format:)` would need Foundation imported here for this alone).
func fixed(_ value: Double, _ digits: Int) -> String {
    guard value.isFinite else { return "\(value)" }
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let scaled = (abs(value) * scale).rounded()
    let whole = Int(scaled / scale)
    let fraction = Int(scaled - Double(whole) * scale)
    let sign = value < 0 && scaled != 0 ? "-" : ""
    guard digits > 0 else { return sign + String(whole) }
    let f = String(fraction)
    return sign + String(whole) + "." + String(repeating: "0", count: digits - f.count) + f
}

/// The aligned text table `tunvpn bench` prints.
struct BenchTable {
    static let columns: [(title: String, width: Int)] = [
        ("suite", 18), ("bytes", 5), ("provider", 9), ("seal ns", 8), ("open ns", 8), ("seal GB/s", 9), ("open GB/s", 9),
        ("seal vs libsodium", 17), ("open vs libsodium", 17),
    ]

    func printHeader() {
        printLine(line(Self.columns.map { $0.title }))
    }

    func printRow(_ r: BenchRow) {
        func gbytes(_ ns: Double) -> String { fixed(Double(r.packetLength) / ns, 3) }
        func speed(_ ours: Double, _ theirs: Double?) -> String {
            guard let theirs, ours > 0 else { return "-" }
            return fixed(theirs / ours, 2) + "×"
        }
        printLine(
            line([
                r.suite, String(r.packetLength), r.provider.rawValue, fixed(r.seal, 1), fixed(r.open, 1), gbytes(r.seal), gbytes(r.open),
                speed(r.seal, r.sodiumSeal), speed(r.open, r.sodiumOpen),
            ]))
    }

    /// The first column left-aligned, the others right-aligned, two spaces apart.
    private func line(_ cells: [String]) -> String {
        var out = ""
        for (i, cell) in cells.enumerated() {
            let width = Self.columns[i].width
            let pad = String(repeating: " ", count: max(0, width - cell.count))
            out += i == 0 ? cell + pad : "  " + pad + cell
        }
        return out
    }
}
