#ifndef TUNVPN_COPENSSL_SHIM_H
#define TUNVPN_COPENSSL_SHIM_H
// OpenSSL 3's libcrypto, for the per-packet AEAD only (Sources/Crypto/OpenSSLAEAD.swift). The two helpers
// below are the EVP AEAD sequence of EVP_EncryptInit(3) ("AEAD Interface"), written in C because the
// parameter names (OSSL_CIPHER_PARAM_*) are macros; each is one pass, and neither allocates.
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/opensslv.h>
#include <openssl/params.h>

// Seals in[0..<len] into out[0..<len] (in == out allowed) and writes the tagLen-byte tag at out + len. ctx
// already holds the cipher and key for encryption; only the nonce is set here. Returns 1 on success.
// The nonce goes in through EVP_CipherInit_ex2 with no parameters and the tag comes out through
// EVP_CIPHER_CTX_get_params (EVP_EncryptInit(3), "AEAD Interface"), not EVP_CIPHER_CTX_ctrl: OpenSSL 3
// turns every ctrl into a parameter array for the provider anyway, so this skips one translation a packet.
static inline int tunvpn_evp_seal(EVP_CIPHER_CTX *ctx, const unsigned char *nonce, const unsigned char *ad,
                                  int adLen, const unsigned char *in, unsigned char *out, int len, int tagLen) {
    int n = 0, f = 0;
    if (EVP_CipherInit_ex2(ctx, NULL, NULL, nonce, 1, NULL) != 1) return 0;
    if (adLen > 0 && EVP_EncryptUpdate(ctx, NULL, &n, ad, adLen) != 1) return 0;
    n = 0;
    if (len > 0 && EVP_EncryptUpdate(ctx, out, &n, in, len) != 1) return 0;
    if (EVP_EncryptFinal_ex(ctx, out + n, &f) != 1 || n + f != len) return 0;
    OSSL_PARAM params[2] = {
        OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, out + len, (size_t)tagLen),
        OSSL_PARAM_construct_end()};
    return EVP_CIPHER_CTX_get_params(ctx, params) == 1;
}

// Opens in[0..<len] (ciphertext without its tag, which follows at in + len) into out[0..<len] (in == out
// allowed). ctx holds the cipher and key for decryption. Returns 1 only when the tag verifies. The expected
// tag goes to the provider with the nonce, in EVP_CipherInit_ex2's parameters (one call instead of two).
static inline int tunvpn_evp_open(EVP_CIPHER_CTX *ctx, const unsigned char *nonce, const unsigned char *ad,
                                  int adLen, const unsigned char *in, unsigned char *out, int len, int tagLen) {
    int n = 0, f = 0;
    unsigned char tag[16];
    if (tagLen != 16) return 0;
    // Copied first: with in == out the tag sits right behind the text being decrypted.
    for (int i = 0; i < 16; i++) tag[i] = in[len + i];
    OSSL_PARAM params[2] = {
        OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, tag, sizeof tag), OSSL_PARAM_construct_end()};
    if (EVP_CipherInit_ex2(ctx, NULL, NULL, nonce, 0, params) != 1) return 0;
    if (adLen > 0 && EVP_DecryptUpdate(ctx, NULL, &n, ad, adLen) != 1) return 0;
    n = 0;
    if (len > 0 && EVP_DecryptUpdate(ctx, out, &n, in, len) != 1) return 0;
    return EVP_DecryptFinal_ex(ctx, out + n, &f) == 1 && n + f == len;
}
// The birational map from Curve25519 to edwards25519 (RFC 7748, section 4.1): y = (u - 1) / (u + 1) mod p,
// p = 2^255 - 19, with OpenSSL's BIGNUM (BN_mod_inverse(3)). u and y are 32 little-endian bytes; bit 255
// of u is ignored, as X25519 ignores it (RFC 7748, section 5). Returns 1, or 0 when u + 1 = 0 mod p (no
// y) or an allocation fails. Not constant time: it is used on keys meant to be public (Crypto/KeyKinds.swift).
static inline int tunvpn_curve25519_u_to_edwards_y(const unsigned char u_in[32], unsigned char y_out[32]) {
    unsigned char u_bytes[32];
    for (int i = 0; i < 32; i++) u_bytes[i] = u_in[i];
    u_bytes[31] &= 0x7f;
    int ok = 0;
    BN_CTX *ctx = BN_CTX_new();
    BIGNUM *p = BN_new(), *u = BN_lebin2bn(u_bytes, 32, NULL), *num = BN_new(), *den = BN_new(), *y = BN_new();
    if (ctx && p && u && num && den && y && BN_set_bit(p, 255) && BN_sub_word(p, 19)
        && BN_mod_sub(num, u, BN_value_one(), p, ctx) && BN_mod_add(den, u, BN_value_one(), p, ctx)
        && !BN_is_zero(den) && BN_mod_inverse(den, den, p, ctx) != NULL && BN_mod_mul(y, num, den, p, ctx)
        && BN_bn2lebinpad(y, y_out, 32) == 32) {
        ok = 1;
    }
    BN_free(p);
    BN_free(u);
    BN_free(num);
    BN_free(den);
    BN_free(y);
    BN_CTX_free(ctx);
    return ok;
}
#endif
