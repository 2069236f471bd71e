// One loader for every published test-vector file the Crypto tests use (Noise vectors in the
// cacophony/snow JSON format). Fixtures live beside this file, so a clone anywhere runs the same suite;
// `TUNVPN_EXTRA_VECTORS` may name a folder of further JSON files in the same format.

import Foundation
import TestSupport

struct NoiseVector {
    struct Message {
        let payload: [UInt8]
        let ciphertext: [UInt8]
    }
    let protocolName: String
    let source: String
    let initPrologue: [UInt8]
    let initPSKs: [[UInt8]]
    let initStatic: [UInt8]?
    let initEphemeral: [UInt8]
    let initRemoteStatic: [UInt8]?
    let respPrologue: [UInt8]
    let respPSKs: [[UInt8]]
    let respStatic: [UInt8]?
    let respEphemeral: [UInt8]
    let handshakeHash: [UInt8]
    let messages: [Message]
}

enum VectorLoader {
    static var fixturesDirectory: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
    }

    /// Every JSON file in the fixtures folder, plus those in `$TUNVPN_EXTRA_VECTORS` when set.
    static func noiseVectorFiles() throws -> [URL] {
        var dirs = [fixturesDirectory]
        if let extra = ProcessInfo.processInfo.environment["TUNVPN_EXTRA_VECTORS"], !extra.isEmpty {
            dirs.append(URL(fileURLWithPath: extra))
        }
        var files: [URL] = []
        for dir in dirs {
            let names = try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
            files += names.filter { $0.hasSuffix(".json") }.map { dir.appendingPathComponent($0) }
        }
        return files
    }

    static func noiseVectors() throws -> [NoiseVector] {
        var result: [NoiseVector] = []
        for file in try noiseVectorFiles() {
            let data = try Data(contentsOf: file)
            guard let root = try JSONSerialization.jsonObject(with: data) as? [String: Any],
                let vectors = root["vectors"] as? [[String: Any]]
            else { continue }
            for v in vectors {
                func bytes(_ k: String) throws -> [UInt8]? { try (v[k] as? String).map { try Hex.bytes($0) } }
                func list(_ k: String) throws -> [[UInt8]] { try (v[k] as? [String])?.map { try Hex.bytes($0) } ?? [] }
                let messages = try (v["messages"] as? [[String: Any]] ?? []).map {
                    NoiseVector.Message(
                        payload: try Hex.bytes($0["payload"] as? String ?? ""),
                        ciphertext: try Hex.bytes($0["ciphertext"] as? String ?? ""))
                }
                result.append(
                    try NoiseVector(
                        protocolName: v["protocol_name"] as? String ?? "",
                        source: (v["source"] as? String ?? "") + " (" + file.lastPathComponent + ")",
                        initPrologue: bytes("init_prologue") ?? [], initPSKs: list("init_psks"),
                        initStatic: bytes("init_static"), initEphemeral: bytes("init_ephemeral") ?? [],
                        initRemoteStatic: bytes("init_remote_static"), respPrologue: bytes("resp_prologue") ?? [],
                        respPSKs: list("resp_psks"), respStatic: bytes("resp_static"),
                        respEphemeral: bytes("resp_ephemeral") ?? [], handshakeHash: bytes("handshake_hash") ?? [],
                        messages: messages))
            }
        }
        return result
    }
}

/// The AEAD, X25519 and BLAKE2b vectors in `Fixtures/primitives.json`.
struct PrimitiveVectors {
    let aead: [[String: String]]
    let x25519: [[String: String]]
    let blake2b: [[String: String]]

    static func load() throws -> PrimitiveVectors {
        let data = try Data(contentsOf: VectorLoader.fixturesDirectory.appendingPathComponent("primitives.json"))
        let root = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
        return PrimitiveVectors(
            aead: root["aead_vectors"] as? [[String: String]] ?? [],
            x25519: root["x25519_vectors"] as? [[String: String]] ?? [],
            blake2b: root["blake2b_vectors"] as? [[String: String]] ?? [])
    }
}
