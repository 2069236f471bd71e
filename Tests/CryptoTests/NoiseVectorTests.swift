// Reproduces every published Noise vector whose protocol name tunvpn implements (IK and IKpsk2 over
// 25519/ChaChaPoly/BLAKE2b), byte for byte: both handshake messages, every transport message, and the
// handshake hash. Finding no such vector is a failure, not a pass.

import Crypto
import Testing

@Suite struct NoiseVectorTests {
    static func key(_ bytes: [UInt8]) -> PrivateKey { PrivateKey(secret: SecretBytes(copying: bytes)) }

    @Test func everyImplementedVectorIsReproducedByteForByte() throws {
        let vectors = try VectorLoader.noiseVectors().filter { NoisePattern(protocolName: $0.protocolName) != nil }
        #expect(vectors.count >= 3, "expected the IK and IKpsk2 BLAKE2b vectors in the fixtures")
        try #require(!vectors.isEmpty)
        var checkedMessages = 0
        var checkedHashes = 0
        for v in vectors {
            let pattern = try #require(NoisePattern(protocolName: v.protocolName))
            let initStatic = try #require(v.initStatic, "\(v.protocolName): IK initiator has a static key")
            let respStatic = try #require(v.respStatic)
            let remote = try #require(v.initRemoteStatic.flatMap { PublicKey(bytes: $0) })
            var initiator = NoiseHandshake(
                pattern: pattern, initiator: true, prologue: v.initPrologue, localStatic: Self.key(initStatic),
                localEphemeral: Self.key(v.initEphemeral), remoteStatic: remote,
                psk: v.initPSKs.first.map { SecretBytes(copying: $0) })
            var responder = NoiseHandshake(
                pattern: pattern, initiator: false, prologue: v.respPrologue, localStatic: Self.key(respStatic),
                localEphemeral: Self.key(v.respEphemeral), remoteStatic: nil,
                psk: v.respPSKs.first.map { SecretBytes(copying: $0) })
            try #require(v.messages.count >= 2)
            // Message 1: initiator -> responder.
            let m1 = try initiator.writeMessage(payload: v.messages[0].payload)
            #expect(m1 == v.messages[0].ciphertext, "\(v.protocolName) [\(v.source)] message 1")
            #expect(try responder.readMessage(m1) == v.messages[0].payload)
            // Message 2: responder -> initiator.
            let m2 = try responder.writeMessage(payload: v.messages[1].payload)
            #expect(m2 == v.messages[1].ciphertext, "\(v.protocolName) [\(v.source)] message 2")
            #expect(try initiator.readMessage(m2) == v.messages[1].payload)
            if !v.handshakeHash.isEmpty {  // snow.txt's vectors do not publish the hash
                #expect(initiator.handshakeHash == v.handshakeHash, "\(v.protocolName) handshake hash")
                #expect(responder.handshakeHash == v.handshakeHash)
                checkedHashes += 1
            }
            #expect(responder.remoteStatic == Self.key(initStatic).publicKey)
            // Transport messages alternate initiator -> responder and back.
            var (iSend, iRecv) = initiator.split()
            var (rRecv, rSend) = responder.split()
            for (i, m) in v.messages.dropFirst(2).enumerated() {
                let fromInitiator = i % 2 == 0
                let c = fromInitiator ? iSend.encrypt(m.payload, ad: []) : rSend.encrypt(m.payload, ad: [])
                #expect(c == m.ciphertext, "\(v.protocolName) transport message \(i + 3)")
                let p = fromInitiator ? rRecv.decrypt(c, ad: []) : iRecv.decrypt(c, ad: [])
                #expect(p == m.payload)
                checkedMessages += 1
            }
        }
        #expect(checkedMessages >= 2 * vectors.count, "every vector carries transport messages")
        #expect(checkedHashes >= 2, "the cacophony vectors publish handshake hashes")
    }
}
