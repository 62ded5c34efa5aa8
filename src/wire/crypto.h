/*
 * crypto.h: key loading and the signature, digest and cipher primitives the
 * providers verify callbacks with (OpenSSL 3 underneath).
 *
 * Lower layer: never logs; returns 0 or -errno and writes a reason into the
 * caller's buffer where one is taken. Secrets are wiped before being freed.
 */
#ifndef PAYHOOKD_CRYPTO_H
#define PAYHOOKD_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

struct crypto_key; /* opaque: an RSA public or private key */

enum crypto_hash { CRYPTO_SHA1, CRYPTO_SHA256 };

/*
 * Load an RSA public key from `spec`, which is one of:
 *   - bare base64 of a SubjectPublicKeyInfo DER (how Baidu and Alipay show
 *     keys; whitespace inside is ignored),
 *   - PEM text ("-----BEGIN PUBLIC KEY-----" or "-----BEGIN RSA PUBLIC KEY-----"),
 *   - PEM text of an X.509 certificate (the key inside it is used: Alipay
 *     public-key certificates),
 *   - a path to a file holding one of the PEM forms: one starting with '/'
 *     or '.', or any existing file (relative to the working directory).
 * Returns 0 and sets *out, or -EINVAL (not a key / not RSA), -ENOENT/-EACCES
 * (file), -ENOMEM.
 */
int crypto_pubkey_load(const char *spec, struct crypto_key **out, char *err,
                       size_t errlen);

/* The same for key text received from outside (never read as a path). */
int crypto_pubkey_from_text(const char *text, struct crypto_key **out, char *err,
                            size_t errlen);

/* Load an RSA private key: a path to a PEM file (PKCS#1 or PKCS#8), PEM text,
 * or bare base64 of PKCS#8 or PKCS#1 DER. Same returns. */
int crypto_privkey_load(const char *spec, struct crypto_key **out, char *err,
                        size_t errlen);

/* Modulus size in bits (1024, 2048, ...). */
int crypto_key_bits(const struct crypto_key *k);

/*
 * Route OpenSSL's allocations through util_counted_malloc, so that a
 * verification that failed for want of memory answers -ENOMEM instead of
 * -EBADMSG. Call first thing in main, before anything uses OpenSSL: once
 * OpenSSL has allocated with its own allocator it refuses (-EBUSY).
 */
int crypto_init(void);

/* Free a key; NULL-safe; returns NULL. */
struct crypto_key *crypto_key_free(struct crypto_key *k);

/*
 * Verify an RSASSA-PKCS1-v1_5 signature given as base64 text over data.
 * Returns 0 when it verifies, -EBADMSG when it does not, -EINVAL when sig_b64
 * is not valid base64 (or empty), -ENOMEM when an allocation failed on the
 * way (see crypto_init), -EIO when OpenSSL failed otherwise.
 */
int crypto_rsa_verify_b64(const struct crypto_key *k, enum crypto_hash h, const void *data,
                          size_t len, const char *sig_b64, size_t sig_len);

/* Sign data with a private key (RSASSA-PKCS1-v1_5); *sig_b64 is malloc'd
 * base64 text. Returns 0, -EINVAL (not a private key), -ENOMEM. */
int crypto_rsa_sign_b64(const struct crypto_key *k, enum crypto_hash h, const void *data,
                        size_t len, char **sig_b64);

/*
 * Digests as lower-case hex (NUL-terminated). Return 0, or -EIO when OpenSSL
 * cannot compute them (a FIPS or crypto policy without MD5/SHA1): the output
 * is then all NUL bytes and the caller MUST treat the check as failed.
 */
int crypto_sha1_hex(const void *data, size_t len, char out[41]);
int crypto_sha256_hex(const void *data, size_t len, char out[65]);
/* MD5 as hex, upper-case when upper != 0. */
int crypto_md5_hex(const void *data, size_t len, int upper, char out[33]);
int crypto_hmac_sha256_hex(const void *key, size_t key_len, const void *data, size_t len,
                           char out[65]);
/* The same as 32 raw bytes. */
int crypto_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                       uint8_t out[32]);

/* Constant-time comparisons (time depends on n only). Return 1 when equal. */
int crypto_memeq(const void *a, const void *b, size_t n);
int crypto_hexeq_nocase(const char *a, const char *b, size_t n);

/*
 * Strict base64 (standard alphabet, '=' padding required for a full quantum;
 * whitespace is NOT accepted). *out is malloc'd (NUL-terminated for
 * convenience; *out_len excludes it). Returns 0, -EINVAL, -ENOMEM.
 */
int crypto_b64_decode(const char *in, size_t len, uint8_t **out, size_t *out_len);
/* Base64 of data, malloc'd NUL-terminated text, or NULL on ENOMEM. */
char *crypto_b64_encode(const void *data, size_t len);

/* Fill buf with len cryptographically strong random bytes. 0 or -EIO. */
int crypto_random(void *buf, size_t len);

/*
 * Message crypto of the Baidu third-party-platform push (the same scheme as
 * WeChat's WXBizMsgCrypt): see protocols.md section 2.
 */

/* EncodingAESKey (43 base64 chars) -> 32-byte AES key: base64 of key + "=",
 * ignoring the unused trailing bits. 0 or -EINVAL. */
int crypto_tp_key(const char *encoding_aes_key, uint8_t key[32]);

/* MsgSignature: hex(SHA1(concat(sorted byte-wise [token, ts, nonce, encrypt]))).
 * 0, or -EIO (SHA1 unavailable; out is all NUL: treat as a failed check). */
int crypto_tp_signature(const char *token, const char *timestamp, const char *nonce,
                        const char *encrypt, char out[41]);

/*
 * Decrypt the base64 `encrypt` field: AES-256-CBC with IV = key[0..16), no
 * cipher padding, PKCS#7 padding with block size 32 stripped, then
 * 16 random bytes | 4-byte big-endian length L | L bytes message | client id.
 * Checks the padding, that L fits, and that the trailing client id equals
 * `client_id`. *msg is malloc'd and NUL-terminated (*msg_len excludes it).
 * Returns 0, or -EINVAL (not base64, length not a multiple of 16, bad
 * padding, bad length), -EPERM (client id differs), -ENOMEM; err says which.
 */
int crypto_tp_decrypt(const uint8_t key[32], const char *encrypt_b64, size_t b64_len,
                      const char *client_id, char **msg, size_t *msg_len, char *err,
                      size_t errlen);

/* The inverse, for the sample tool and tests: random 16-byte prefix. *encrypt_b64
 * is malloc'd. Returns 0, -ENOMEM, -EIO. */
int crypto_tp_encrypt(const uint8_t key[32], const char *msg, size_t msg_len,
                      const char *client_id, char **encrypt_b64);

#endif
