// BLAKE2s (libb2) against RFC 7693 and the BLAKE2 reference KAT, HMAC-BLAKE2s and Noise's HKDF over it, and
// the published Noise vectors over BLAKE2s reproduced by the same Noise code tunvpn's own protocol uses.

import Crypto
import Foundation
import Testing
import TestSupport

@Suite struct Blake2sTests {
    static func load() throws -> [String: Any] {
        let data = try Data(contentsOf: VectorLoader.fixturesDirectory.appendingPathComponent("blake2s.json"))
        return try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
    }

    @Test func blake2sMatchesRFC7693AndTheReferenceKAT() throws {
        let vectors = try #require(try Self.load()["blake2s"] as? [[String: String]])
        #expect(vectors.count >= 20)
        var keyed = 0
        for v in vectors {
            let input = try Hex.bytes(v["input"] ?? "")
            let key = try Hex.bytes(v["key"] ?? "")
            let expected = try Hex.bytes(v["output"] ?? "")
            var out = [UInt8](repeating: 0, count: expected.count)
            input.withUnsafeBytes { i in
                key.withUnsafeBytes { k in out.withUnsafeMutableBytes { Blake2s.hash([i], key: key.isEmpty ? nil : k, into: $0) } }
            }
            #expect(out == expected, "\(v["reference"] ?? "") length \(input.count)")
            if !key.isEmpty { keyed += 1 }
            // Split input hashes the same as whole input.
            if input.count > 1, key.isEmpty, expected.count == 32 {
                var split = [UInt8](repeating: 0, count: 32)
                input.withUnsafeBytes { i in
                    split.withUnsafeMutableBytes {
                        Blake2s.hash([UnsafeRawBufferPointer(rebasing: i[0..<1]), UnsafeRawBufferPointer(rebasing: i[1...])], into: $0)
                    }
                }
                #expect(split == expected)
                #expect(Blake2s.hash(input) == expected)
                #expect(NoiseHash.blake2s.hash(input) == expected)
            }
        }
        #expect(keyed >= 10)
    }

    @Test func hmacBlake2sIsRFC2104OverBlake2s() throws {
        let vectors = try #require(try Self.load()["hmac_blake2s"] as? [[String: String]])
        #expect(vectors.count >= 4)
        for v in vectors {
            let key = try Hex.bytes(v["key"] ?? "")
            let input = try Hex.bytes(v["input"] ?? "")
            var out = [UInt8](repeating: 0, count: 32)
            key.withUnsafeBytes { k in input.withUnsafeBytes { i in out.withUnsafeMutableBytes { NoiseHash.blake2s.hmac(key: k, [i], into: $0) } } }
            #expect(try out == Hex.bytes(v["output"] ?? ""))
        }
    }

    @Test func hkdfOverBlake2sIsTheWhitepapersKDF() throws {
        // KDF_n(key, input): tau0 = HMAC(key, input); tau1 = HMAC(tau0, 0x1); tau_i = HMAC(tau0, tau_{i-1} ‖ i),
        // computed here from the HMAC above, step by step, and compared with the three-output form.
        let ck = SecretBytes(copying: Array(0..<32))
        let ikm: [UInt8] = Array("input key material".utf8)
        func hmac(_ key: [UInt8], _ data: [UInt8]) -> [UInt8] {
            var out = [UInt8](repeating: 0, count: 32)
            key.withUnsafeBytes { k in data.withUnsafeBytes { d in out.withUnsafeMutableBytes { NoiseHash.blake2s.hmac(key: k, [d], into: $0) } } }
            return out
        }
        let t0 = hmac(Array(0..<32), ikm)
        let t1 = hmac(t0, [1])
        let t2 = hmac(t0, t1 + [2])
        let t3 = hmac(t0, t2 + [3])
        let out = ikm.withUnsafeBytes { NoiseHash.blake2s.hkdf(chainingKey: ck, inputKeyMaterial: $0, outputs: 3) }
        #expect(out.map { $0.withUnsafeBytes { Array($0) } } == [t1, t2, t3])
        let one = ikm.withUnsafeBytes { NoiseHash.blake2s.hkdf(chainingKey: ck, inputKeyMaterial: $0, outputs: 1) }
        #expect(one.map { $0.withUnsafeBytes { Array($0) } } == [t1])
    }

    static func key(_ bytes: [UInt8]) -> PrivateKey { PrivateKey(secret: SecretBytes(copying: bytes)) }

    @Test func noiseVectorsOverBlake2sAreReproducedByTheSameNoiseCode() throws {
        let vectors = try VectorLoader.noiseVectors().filter { NoisePattern.parse(protocolName: $0.protocolName)?.hash == .blake2s }
        // The IK and IKpsk2 vectors over BLAKE2s in the fixtures (cacophony and snow).
        #expect(vectors.count >= 3)
        #expect(vectors.contains { $0.protocolName == "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s" })
        for v in vectors {
            let (pattern, hash) = try #require(NoisePattern.parse(protocolName: v.protocolName))
            let remote = try #require(v.initRemoteStatic.flatMap { PublicKey(bytes: $0) })
            var initiator = NoiseHandshake(
                pattern: pattern, hash: hash, initiator: true, prologue: v.initPrologue,
                localStatic: Self.key(try #require(v.initStatic)), localEphemeral: Self.key(v.initEphemeral),
                remoteStatic: remote, psk: v.initPSKs.first.map { SecretBytes(copying: $0) })
            var responder = NoiseHandshake(
                pattern: pattern, hash: hash, initiator: false, prologue: v.respPrologue,
                localStatic: Self.key(try #require(v.respStatic)), localEphemeral: Self.key(v.respEphemeral),
                remoteStatic: nil, psk: v.respPSKs.first.map { SecretBytes(copying: $0) })
            let m1 = try initiator.writeMessage(payload: v.messages[0].payload)
            #expect(m1 == v.messages[0].ciphertext, "\(v.protocolName) [\(v.source)] message 1")
            #expect(try responder.readMessage(m1) == v.messages[0].payload)
            let m2 = try responder.writeMessage(payload: v.messages[1].payload)
            #expect(m2 == v.messages[1].ciphertext, "\(v.protocolName) [\(v.source)] message 2")
            #expect(try initiator.readMessage(m2) == v.messages[1].payload)
            if !v.handshakeHash.isEmpty { #expect(initiator.handshakeHash == v.handshakeHash) }
            var (iSend, _) = initiator.split()
            var (rRecv, _) = responder.split()
            if v.messages.count > 2 {
                let c = iSend.encrypt(v.messages[2].payload, ad: [])
                #expect(c == v.messages[2].ciphertext, "\(v.protocolName) transport message 3")
                #expect(rRecv.decrypt(c, ad: []) == v.messages[2].payload)
            }
        }
    }
}
