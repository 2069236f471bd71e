// The Noise Protocol Framework (revision 34) for the two patterns tunvpn uses: IK and IKpsk2, over
// 25519 and ChaChaPoly, with BLAKE2b (tunvpn's own protocol) or BLAKE2s (WireGuard's) as HASH: one
// implementation, parameterised by `NoiseHash`.
//
// This is the spec's CipherState / SymmetricState / HandshakeState (§5) written as plain values: keys,
// ephemeral keys and prologue go in, bytes come out, and nothing reads a clock, a socket or a random
// source of its own, so the published vectors reproduce byte for byte. Each step is labelled with its
// Noise token. Secrets (k, ck, DH outputs) are `SecretBytes` and are wiped when dropped; `h` is public.

import CSodium

/// A Noise handshake pattern tunvpn implements.
public enum NoisePattern: Sendable, CaseIterable {
    /// `IK`: -> e, es, s, ss / <- e, ee, se.
    case ik
    /// `IKpsk2`: IK with a pre-shared key mixed at the end of the second message (WireGuard's pattern).
    case ikpsk2

    /// The full protocol name over BLAKE2b, e.g. `Noise_IKpsk2_25519_ChaChaPoly_BLAKE2b`.
    public var protocolName: String { protocolName(hash: .blake2b) }

    /// The full protocol name over `hash`, e.g. `Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s` (WireGuard's).
    public func protocolName(hash: NoiseHash) -> String {
        switch self {
        case .ik: return "Noise_IK_25519_ChaChaPoly_\(hash.name)"
        case .ikpsk2: return "Noise_IKpsk2_25519_ChaChaPoly_\(hash.name)"
        }
    }

    /// The pattern for a BLAKE2b protocol name, if implemented here.
    public init?(protocolName: String) {
        guard let p = NoisePattern.allCases.first(where: { $0.protocolName == protocolName }) else { return nil }
        self = p
    }

    /// The pattern and hash for a protocol name over either hash, if implemented here.
    public static func parse(protocolName: String) -> (pattern: NoisePattern, hash: NoiseHash)? {
        for p in NoisePattern.allCases {
            for h in NoiseHash.allCases where p.protocolName(hash: h) == protocolName { return (p, h) }
        }
        return nil
    }

    enum Token { case e, s, ee, es, se, ss, psk }

    var messages: [[Token]] {
        switch self {
        case .ik: return [[.e, .es, .s, .ss], [.e, .ee, .se]]
        case .ikpsk2: return [[.e, .es, .s, .ss], [.e, .ee, .se, .psk]]
        }
    }

    var usesPSK: Bool { self == .ikpsk2 }
}

/// Why a Noise message could not be read or written.
public enum NoiseError: Error, Equatable, Sendable {
    /// The message is shorter or longer than the pattern allows.
    case malformed
    /// An AEAD check failed while reading this token (`s`) or the payload.
    case decryptionFailed(step: String)
    /// A DH produced the all-zero output (a low-order public key).
    case invalidPublicKey
    /// A message was written or read out of turn.
    case outOfOrder
}

/// Noise's CipherState with ChaChaPoly: a key and a 64-bit nonce counter.
public struct NoiseCipherState: Sendable {
    public private(set) var key: SecretBytes?
    public private(set) var nonce: UInt64 = 0

    public init(key: SecretBytes? = nil) { self.key = key }

    var hasKey: Bool { key != nil }

    /// ENCRYPT(k, n++, ad, plaintext), or the plaintext itself when no key is set (§5.1).
    public mutating func encrypt(_ plaintext: [UInt8], ad: [UInt8]) -> [UInt8] {
        guard let key else { return plaintext }
        var buffer = plaintext + [UInt8](repeating: 0, count: ChaCha20Poly1305.tagLength)
        let cipher = SessionCipher(suite: ChaCha20Poly1305.self, key: key, provider: .libsodium)
        let n = buffer.withUnsafeMutableBytes { b in
            ad.withUnsafeBytes { a in cipher.seal(b.baseAddress.unsafelyUnwrapped, length: plaintext.count, counter: nonce, authenticating: a) }
        }
        nonce += 1
        return Array(buffer.prefix(n))
    }

    /// DECRYPT(k, n++, ad, ciphertext); the nonce advances only on success (§5.1).
    public mutating func decrypt(_ ciphertext: [UInt8], ad: [UInt8]) -> [UInt8]? {
        guard let key else { return ciphertext }
        guard ciphertext.count >= ChaCha20Poly1305.tagLength else { return nil }
        var buffer = ciphertext
        let cipher = SessionCipher(suite: ChaCha20Poly1305.self, key: key, provider: .libsodium)
        let n = buffer.withUnsafeMutableBytes { b in
            ad.withUnsafeBytes { a in cipher.open(b.baseAddress.unsafelyUnwrapped, length: ciphertext.count, counter: nonce, authenticating: a) }
        }
        guard let n else { return nil }
        nonce += 1
        return Array(buffer.prefix(n))
    }
}

/// Noise's SymmetricState (§5.2): chaining key, handshake hash and the current CipherState.
struct NoiseSymmetricState {
    let hash: NoiseHash
    var ck: SecretBytes
    var h: [UInt8]
    var cipher = NoiseCipherState()

    init(protocolName: String, hash: NoiseHash) {
        self.hash = hash
        let name = Array(protocolName.utf8)
        if name.count <= hash.hashLength {
            h = name + [UInt8](repeating: 0, count: hash.hashLength - name.count)
        } else {
            h = hash.hash(name)
        }
        ck = SecretBytes(copying: h)
    }

    mutating func mixHash(_ data: [UInt8]) {
        h = hash.hash(h + data)
    }

    /// Truncates a 64-byte HKDF output to a 32-byte cipher key (§5.2: "if HASHLEN is 64, truncate"); a
    /// 32-byte one (BLAKE2s) is kept whole.
    private static func cipherKey(_ full: SecretBytes) -> SecretBytes {
        full.withUnsafeBytes { SecretBytes(copying: UnsafeRawBufferPointer(rebasing: $0[0..<32])) }
    }

    mutating func mixKey(_ ikm: SecretBytes) {
        let out = ikm.withUnsafeBytes { hash.hkdf(chainingKey: ck, inputKeyMaterial: $0, outputs: 2) }
        ck = out[0]
        cipher = NoiseCipherState(key: Self.cipherKey(out[1]))
    }

    mutating func mixKey(public data: [UInt8]) {
        mixKey(SecretBytes(copying: data))
    }

    mutating func mixKeyAndHash(_ ikm: SecretBytes) {
        let out = ikm.withUnsafeBytes { hash.hkdf(chainingKey: ck, inputKeyMaterial: $0, outputs: 3) }
        ck = out[0]
        out[1].withUnsafeBytes { mixHash(Array($0)) }
        cipher = NoiseCipherState(key: Self.cipherKey(out[2]))
    }

    mutating func encryptAndHash(_ plaintext: [UInt8]) -> [UInt8] {
        let c = cipher.encrypt(plaintext, ad: h)
        mixHash(c)
        return c
    }

    mutating func decryptAndHash(_ ciphertext: [UInt8]) -> [UInt8]? {
        guard let p = cipher.decrypt(ciphertext, ad: h) else { return nil }
        mixHash(ciphertext)
        return p
    }

    func split() -> (NoiseCipherState, NoiseCipherState) {
        let out = hash.hkdf(chainingKey: ck, inputKeyMaterial: UnsafeRawBufferPointer(start: nil, count: 0), outputs: 2)
        return (NoiseCipherState(key: Self.cipherKey(out[0])), NoiseCipherState(key: Self.cipherKey(out[1])))
    }
}

/// Noise's HandshakeState (§5.3) for IK / IKpsk2, one side of one handshake.
///
/// The caller supplies every input, including the ephemeral key (from a `RandomSource` in production, from
/// the vector in tests). Messages alternate initiator → responder → initiator; after the last one,
/// `split()` gives the two transport CipherStates (initiator's sending key first, as the spec orders them).
public struct NoiseHandshake: Sendable {
    public let pattern: NoisePattern
    /// HASH: BLAKE2b for tunvpn's own protocol, BLAKE2s for WireGuard.
    public let hash: NoiseHash
    public let isInitiator: Bool
    private var symmetric: NoiseSymmetricState
    private let localStatic: PrivateKey
    private let localEphemeral: PrivateKey
    /// The peer's static key: known in advance by an IK initiator, learnt from message 1 by the responder.
    public private(set) var remoteStatic: PublicKey?
    private var remoteEphemeral: PublicKey?
    private var psk: SecretBytes?
    private var messageIndex = 0

    /// Replaces the psk before its token is processed: a WireGuard responder learns which peer (and so
    /// which psk) it talks to only from message 1, and IKpsk2 mixes the psk at the end of message 2.
    public mutating func setPSK(_ psk: SecretBytes) {
        precondition(psk.count == 32, "a psk is 32 bytes")
        self.psk = psk
    }

    /// Starts a handshake. `remoteStatic` is required for the initiator (IK's pre-message `<- s`);
    /// `psk` is required for IKpsk2 (32 bytes).
    public init(
        pattern: NoisePattern, hash: NoiseHash = .blake2b, initiator: Bool, prologue: [UInt8], localStatic: PrivateKey,
        localEphemeral: PrivateKey, remoteStatic: PublicKey?, psk: SecretBytes?
    ) {
        precondition(!initiator || remoteStatic != nil, "an IK initiator knows the responder's static key")
        precondition(!pattern.usesPSK || psk?.count == 32, "IKpsk2 needs a 32-byte psk")
        self.pattern = pattern
        self.hash = hash
        isInitiator = initiator
        self.localStatic = localStatic
        self.localEphemeral = localEphemeral
        self.remoteStatic = remoteStatic
        self.psk = psk
        symmetric = NoiseSymmetricState(protocolName: pattern.protocolName(hash: hash), hash: hash)
        symmetric.mixHash(prologue)
        // Pre-message pattern "<- s": both sides hash the responder's static key.
        symmetric.mixHash(initiator ? remoteStatic.unsafelyUnwrapped.bytes : localStatic.publicKey.bytes)
    }

    /// The handshake hash `h` (public; channel binding and the vectors' `handshake_hash`).
    public var handshakeHash: [UInt8] { symmetric.h }

    /// True once both messages have been processed.
    public var isComplete: Bool { messageIndex >= pattern.messages.count }

    private var isMyTurn: Bool { (messageIndex % 2 == 0) == isInitiator }

    private func dh(_ local: PrivateKey, _ remote: PublicKey?) throws(NoiseError) -> SecretBytes {
        guard let remote else { throw .outOfOrder }
        do { return try local.sharedSecret(with: remote) } catch { throw .invalidPublicKey }
    }

    private mutating func mixDH(_ token: NoisePattern.Token) throws(NoiseError) {
        switch token {
        case .ee: symmetric.mixKey(try dh(localEphemeral, remoteEphemeral))
        case .ss: symmetric.mixKey(try dh(localStatic, remoteStatic))
        case .es:
            symmetric.mixKey(try isInitiator ? dh(localEphemeral, remoteStatic) : dh(localStatic, remoteEphemeral))
        case .se:
            symmetric.mixKey(try isInitiator ? dh(localStatic, remoteEphemeral) : dh(localEphemeral, remoteStatic))
        case .psk:
            guard let psk else { throw .outOfOrder }
            symmetric.mixKeyAndHash(psk)
        case .e, .s: preconditionFailure("not a DH token")
        }
    }

    /// WriteMessage(payload) (§5.3): returns the message bytes.
    public mutating func writeMessage(payload: [UInt8]) throws(NoiseError) -> [UInt8] {
        guard !isComplete, isMyTurn else { throw .outOfOrder }
        var out: [UInt8] = []
        for token in pattern.messages[messageIndex] {
            switch token {
            case .e:  // e: send our ephemeral public key; in psk mode it is also mixed into the key.
                let e = localEphemeral.publicKey.bytes
                out += e
                symmetric.mixHash(e)
                if pattern.usesPSK { symmetric.mixKey(public: e) }
            case .s:  // s: send our static public key, encrypted once a key exists.
                out += symmetric.encryptAndHash(localStatic.publicKey.bytes)
            default:
                try mixDH(token)
            }
        }
        out += symmetric.encryptAndHash(payload)
        messageIndex += 1
        return out
    }

    /// ReadMessage(message) (§5.3): returns the decrypted payload.
    public mutating func readMessage(_ message: [UInt8]) throws(NoiseError) -> [UInt8] {
        guard !isComplete, !isMyTurn else { throw .outOfOrder }
        var rest = message[...]
        for token in pattern.messages[messageIndex] {
            switch token {
            case .e:  // e: the peer's ephemeral public key, in the clear.
                guard rest.count >= 32 else { throw .malformed }
                let e = Array(rest.prefix(32))
                rest = rest.dropFirst(32)
                remoteEphemeral = PublicKey(exactly: e)
                symmetric.mixHash(e)
                if pattern.usesPSK { symmetric.mixKey(public: e) }
            case .s:  // s: the peer's static key, 48 bytes when encrypted.
                let length = symmetric.cipher.hasKey ? 48 : 32
                guard rest.count >= length else { throw .malformed }
                guard let s = symmetric.decryptAndHash(Array(rest.prefix(length))) else {
                    throw .decryptionFailed(step: "s")
                }
                rest = rest.dropFirst(length)
                remoteStatic = PublicKey(exactly: s)
            default:
                try mixDH(token)
            }
        }
        if symmetric.cipher.hasKey && rest.count < 16 { throw .malformed }
        guard let payload = symmetric.decryptAndHash(Array(rest)) else { throw .decryptionFailed(step: "payload") }
        messageIndex += 1
        return payload
    }

    /// Split() (§5.2): (initiator→responder, responder→initiator) CipherStates. Only after the last message.
    public func split() -> (initiatorToResponder: NoiseCipherState, responderToInitiator: NoiseCipherState) {
        precondition(isComplete, "Split() comes after the last handshake message")
        let (a, b) = symmetric.split()
        return (a, b)
    }
}
