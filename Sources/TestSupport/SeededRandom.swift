// Deterministic randomness for tests: the same seed gives the same sequence on every machine and run.
//
// The generator is SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number generators",
// OOPSLA 2014; the constants are those of Vigna's public-domain splitmix64.c). It is not cryptographic and
// must never key anything; it drives property tests and the network fakes' loss policies.

/// A seeded SplitMix64 generator: a reproducible `RandomNumberGenerator` for tests.
///
/// Concurrency: a plain value; each user owns its copy.
public struct SeededRandom: RandomNumberGenerator, Sendable {
    private var state: UInt64

    /// Makes a generator whose whole output is determined by `seed`.
    public init(seed: UInt64) {
        state = seed
    }

    /// Returns the next 64 bits of the sequence.
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
