#ifndef TUNVPN_COPENSSL_SHIM_H
#define TUNVPN_COPENSSL_SHIM_H
// OpenSSL 3's libcrypto, for the per-packet AEAD only (Sources/Crypto/OpenSSLAEAD.swift). The two helpers
// below are the EVP AEAD sequence of EVP_EncryptInit(3) ("AEAD Interface"), written in C because
// EVP_CIPHER_CTX_ctrl's tag requests are macros; each is one pass, and neither allocates.
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/opensslv.h>

// Seals in[0..<len] into out[0..<len] (in == out allowed) and writes the tagLen-byte tag at out + len. ctx
// already holds the cipher and key for encryption; only the nonce is set here. Returns 1 on success.
static inline int tunvpn_evp_seal(EVP_CIPHER_CTX *ctx, const unsigned char *nonce, const unsigned char *ad,
                                  int adLen, const unsigned char *in, unsigned char *out, int len, int tagLen) {
    int n = 0, f = 0;
    if (EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, nonce) != 1) return 0;
    if (adLen > 0 && EVP_EncryptUpdate(ctx, NULL, &n, ad, adLen) != 1) return 0;
    n = 0;
    if (len > 0 && EVP_EncryptUpdate(ctx, out, &n, in, len) != 1) return 0;
    if (EVP_EncryptFinal_ex(ctx, out + n, &f) != 1 || n + f != len) return 0;
    return EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, tagLen, out + len) == 1;
}

// Opens in[0..<len] (ciphertext without its tag, which follows at in + len) into out[0..<len] (in == out
// allowed). ctx holds the cipher and key for decryption. Returns 1 only when the tag verifies.
static inline int tunvpn_evp_open(EVP_CIPHER_CTX *ctx, const unsigned char *nonce, const unsigned char *ad,
                                  int adLen, const unsigned char *in, unsigned char *out, int len, int tagLen) {
    int n = 0, f = 0;
    unsigned char tag[16];
    if (tagLen != 16) return 0;
    // Copied first: with in == out the tag sits right behind the text being decrypted.
    for (int i = 0; i < 16; i++) tag[i] = in[len + i];
    if (EVP_DecryptInit_ex(ctx, NULL, NULL, NULL, nonce) != 1) return 0;
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, tagLen, tag) != 1) return 0;
    if (adLen > 0 && EVP_DecryptUpdate(ctx, NULL, &n, ad, adLen) != 1) return 0;
    n = 0;
    if (len > 0 && EVP_DecryptUpdate(ctx, out, &n, in, len) != 1) return 0;
    return EVP_DecryptFinal_ex(ctx, out + n, &f) == 1 && n + f == len;
}
#endif
