/*
 * crypto.c: loads the platforms' RSA keys (bare base64, PEM, certificates,
 * files) and implements the signature, digest, base64 and TP message-crypto
 * primitives the providers verify callbacks with, on OpenSSL 3 EVP APIs.
 *
 * Keys are immutable after loading, so one struct crypto_key may be used by
 * many threads at once; every operation allocates its own OpenSSL contexts.
 */
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/decoder.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "wire/crypto.h"
#include "lib/util.h"

#define SPEC_MAX      (64 * 1024) /* largest key text or key file accepted */
#define RSA_MIN_BITS  1024
#define RSA_MAX_BITS  16384 /* OpenSSL's own modulus limit */
#define SIG_MAX_BYTES (RSA_MAX_BITS / 8)
#define TP_BLOCK      32 /* the TP scheme pads to 32 bytes, not AES's 16 */
#define TP_PREFIX     16 /* random bytes before the length field */

#define VERIFY_POOL 8 /* idle verify contexts kept per key and hash */

struct crypto_key {
    EVP_PKEY *pkey;
    EVP_MD *md[2]; /* SHA1, SHA256, fetched once so verify does not look them up */
    int bits;
    int sig_len; /* modulus size in bytes: every valid signature has this length */
    int is_private;
    /* Verify contexts set up once (padding, digest) and reused: setting one
     * up costs as much as a tenth of a 2048-bit verify. A context serves one
     * thread at a time, so idle ones wait here. */
    pthread_mutex_t pool_lock;
    EVP_PKEY_CTX *pool[2][VERIFY_POOL];
    int n_pool[2];
};

/* What a DER blob is expected to hold. */
enum der_kind { DER_SPKI, DER_RSA_PUB, DER_CERT, DER_PKCS8, DER_RSA_PRIV };

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Write a formatted reason into err (when given) and return rc. */
static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    va_list ap;

    if (err && errlen) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    ERR_clear_error(); /* leave no stale OpenSSL errors for unrelated callers */
    return rc;
}

/* Free a buffer after wiping it. NULL-safe. */
static void free_wiped(void *p, size_t len)
{
    if (p) {
        OPENSSL_cleanse(p, len);
        free(p);
    }
}

/* Values of the standard base64 alphabet, 0xff for every other byte. A
 * table, not comparisons: every signature of every callback goes through it. */
#define B64_VALUE(c)                                                                     \
    (uint8_t)((c) >= 'A' && (c) <= 'Z'   ? (c) - 'A'                                     \
              : (c) >= 'a' && (c) <= 'z' ? (c) - 'a' + 26                                \
              : (c) >= '0' && (c) <= '9' ? (c) - '0' + 52                                \
              : (c) == '+'               ? 62                                            \
              : (c) == '/'               ? 63                                            \
                                         : 0xff)
static const uint8_t b64_values[256] = UTIL_BYTE_TABLE(B64_VALUE);

/* Value of a base64 character of the standard alphabet, or -1. */
static int b64_value(unsigned char c)
{
    return b64_values[c] == 0xff ? -1 : b64_values[c];
}

/*
 * Check strict base64 and compute the decoded length. Padding is required,
 * whitespace is not accepted. Non-zero unused bits in the last character
 * before the padding ("non-canonical" encodings) ARE accepted: real signers
 * emit canonical text, rejecting the rest buys nothing, and the TP
 * EncodingAESKey depends on ignoring those bits.
 */
static int b64_check(const char *in, size_t len, size_t *out_len)
{
    size_t pad = 0, i;

    if (len % 4)
        return -EINVAL;
    if (len && in[len - 1] == '=')
        pad++;
    if (pad && in[len - 2] == '=')
        pad++;
    for (i = 0; i < len - pad; i++)
        if (b64_value((unsigned char)in[i]) < 0)
            return -EINVAL;
    *out_len = len / 4 * 3 - pad;
    return 0;
}

/* Decode base64 that b64_check accepted into out (b64_check's length):
 * whole quads without a lookup per branch, then the padded last quad. */
static void b64_decode_into(const char *in, size_t len, uint8_t *out)
{
    const unsigned char *p = (const unsigned char *)in;
    size_t i = 0, o = 0, whole = len && in[len - 1] == '=' ? len - 4 : len;
    uint32_t v;

    for (; i < whole; i += 4) {
        v = (uint32_t)b64_values[p[i]] << 18 | (uint32_t)b64_values[p[i + 1]] << 12 |
            (uint32_t)b64_values[p[i + 2]] << 6 | b64_values[p[i + 3]];
        out[o++] = (uint8_t)(v >> 16);
        out[o++] = (uint8_t)(v >> 8);
        out[o++] = (uint8_t)v;
    }
    if (i == len)
        return;
    /* The last quad ends in '=' or "==": 2 or 1 bytes. */
    v = (uint32_t)b64_values[p[i]] << 18 | (uint32_t)b64_values[p[i + 1]] << 12 |
        (p[i + 2] == '=' ? 0u : (uint32_t)b64_values[p[i + 2]] << 6);
    out[o++] = (uint8_t)(v >> 16);
    if (p[i + 2] != '=')
        out[o++] = (uint8_t)(v >> 8);
}

/* Strict decoding; see b64_check for what is accepted. */
int crypto_b64_decode(const char *in, size_t len, uint8_t **out, size_t *out_len)
{
    uint8_t *buf;
    size_t n;

    if (!in && len)
        return -EINVAL;
    if (b64_check(in, len, &n) < 0)
        return -EINVAL;
    buf = malloc(n + 1);
    if (!buf)
        return -ENOMEM;
    b64_decode_into(in, len, buf);
    buf[n] = '\0';
    *out = buf;
    *out_len = n;
    return 0;
}

/* Standard alphabet with padding, one line. */
char *crypto_b64_encode(const void *data, size_t len)
{
    static const char abc[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const uint8_t *p = data;
    size_t i, o = 0;
    char *out;

    if (len > (SIZE_MAX - 1) / 4 * 3 - 3)
        return NULL;
    out = malloc((len + 2) / 3 * 4 + 1);
    if (!out)
        return NULL;
    for (i = 0; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];

        out[o++] = abc[v >> 18];
        out[o++] = abc[v >> 12 & 63];
        out[o++] = abc[v >> 6 & 63];
        out[o++] = abc[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < len ? (uint32_t)p[i + 1] << 8 : 0);

        out[o++] = abc[v >> 18];
        out[o++] = abc[v >> 12 & 63];
        out[o++] = i + 1 < len ? abc[v >> 6 & 63] : '=';
        out[o++] = '=';
    }
    out[o] = '\0';
    return out;
}

/* Whether c is ASCII white space (line breaks in pasted keys). */
static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* Decode base64 that may contain whitespace (pasted keys, PEM bodies). */
static int b64_decode_loose(const char *in, size_t len, uint8_t **out, size_t *out_len)
{
    char *tight = malloc(len + 1);
    size_t i, n = 0;
    int rc;

    if (!tight)
        return -ENOMEM;
    for (i = 0; i < len; i++)
        if (!is_space(in[i]))
            tight[n++] = in[i];
    rc = crypto_b64_decode(tight, n, out, out_len);
    free_wiped(tight, len + 1); /* may be a private key */
    return rc;
}

/* Read a key file of at most SPEC_MAX bytes into a NUL-terminated buffer. */
static int read_key_file(const char *path, char **text, size_t *text_size, char *err,
                         size_t errlen)
{
    struct stat st;
    char *buf = NULL;
    size_t n = 0;
    ssize_t r;
    int fd, rc;

    /* O_NONBLOCK: opening a FIFO must not hang (regular files ignore it). */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        rc = -errno;
        return fail(err, errlen, rc, "cannot open %s: %s", path, strerror(-rc));
    }
    if (fstat(fd, &st) < 0) {
        rc = -errno;
        rc = fail(err, errlen, rc, "cannot stat %s: %s", path, strerror(-rc));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = fail(err, errlen, -EINVAL, "%s is not a regular file", path);
        goto out;
    }
    if (st.st_size > SPEC_MAX) {
        rc = fail(err, errlen, -EINVAL, "%s is larger than %d bytes", path, SPEC_MAX);
        goto out;
    }
    buf = malloc(SPEC_MAX + 2);
    if (!buf) {
        rc = fail(err, errlen, -ENOMEM, "out of memory");
        goto out;
    }
    /* Read up to one byte past the limit, in case the file grew since fstat. */
    while (n <= SPEC_MAX && (r = read(fd, buf + n, SPEC_MAX + 1 - n)) != 0) {
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = -errno;
            rc = fail(err, errlen, rc, "cannot read %s: %s", path, strerror(-rc));
            goto out;
        }
        n += (size_t)r;
    }
    if (n > SPEC_MAX) {
        rc = fail(err, errlen, -EINVAL, "%s is larger than %d bytes", path, SPEC_MAX);
        goto out;
    }
    buf[n] = '\0';
    *text = buf;
    *text_size = SPEC_MAX + 2; /* what the caller wipes */
    buf = NULL;
    rc = 0;
out:
    free_wiped(buf, SPEC_MAX + 2);
    close(fd);
    return rc;
}

/*
 * Find the first PEM block in text: its label and the base64 body between
 * the BEGIN and END lines. Parsed here rather than by PEM_read_bio so that
 * keys squeezed onto one line (as config files carry them) still load.
 */
static int pem_find(const char *text, char *label, size_t label_size, const char **body,
                    size_t *body_len, char *err, size_t errlen)
{
    const char *begin = strstr(text, "-----BEGIN "), *lab, *lab_end, *end;
    char end_line[80];
    size_t n;

    if (!begin)
        return fail(err, errlen, -EINVAL, "no PEM BEGIN line");
    lab = begin + strlen("-----BEGIN ");
    lab_end = strstr(lab, "-----");
    n = lab_end ? (size_t)(lab_end - lab) : 0;
    if (!lab_end || n == 0 || n >= label_size || memchr(lab, '\n', n))
        return fail(err, errlen, -EINVAL, "malformed PEM BEGIN line");
    memcpy(label, lab, n);
    label[n] = '\0';
    snprintf(end_line, sizeof(end_line), "-----END %s-----", label);
    end = strstr(lab_end + 5, end_line);
    if (!end)
        return fail(err, errlen, -EINVAL, "PEM block '%s' has no END line", label);
    *body = lab_end + 5;
    *body_len = (size_t)(end - *body);
    if (memchr(*body, ':', *body_len))
        return fail(err, errlen, -EINVAL, "PEM block '%s' has headers (encrypted?)",
                    label);
    return 0;
}

/* Decode DER with OpenSSL's decoders (provider-native keys; whole input used). */
static EVP_PKEY *der_decode_pkey(const uint8_t *der, size_t len, const char *structure,
                                 const char *keytype, int selection)
{
    EVP_PKEY *pkey = NULL;
    OSSL_DECODER_CTX *dctx;
    const unsigned char *p = der;
    size_t left = len;

    dctx = OSSL_DECODER_CTX_new_for_pkey(&pkey, "DER", structure, keytype, selection,
                                         NULL, NULL);
    if (!dctx)
        return NULL;
    if (!OSSL_DECODER_from_data(dctx, &p, &left) || left != 0) {
        EVP_PKEY_free(pkey);
        pkey = NULL;
    }
    OSSL_DECODER_CTX_free(dctx);
    return pkey;
}

/* The public key of a DER X.509 certificate. */
static EVP_PKEY *der_cert_pubkey(const uint8_t *der, size_t len)
{
    const unsigned char *p = der;
    X509 *x = d2i_X509(NULL, &p, (long)len);
    EVP_PKEY *pkey = NULL;

    if (x && p == der + len)
        pkey = X509_get_pubkey(x);
    X509_free(x);
    return pkey;
}

/* Turn DER of the given kind into a key (NULL when it is not one). */
static EVP_PKEY *der_to_pkey(const uint8_t *der, size_t len, enum der_kind kind)
{
    if (len > LONG_MAX)
        return NULL;
    switch (kind) {
    case DER_SPKI:
        return der_decode_pkey(der, len, "SubjectPublicKeyInfo", NULL,
                               EVP_PKEY_PUBLIC_KEY);
    case DER_RSA_PUB:
        return der_decode_pkey(der, len, "type-specific", "RSA", EVP_PKEY_PUBLIC_KEY);
    case DER_CERT:
        return der_cert_pubkey(der, len);
    case DER_PKCS8:
        return der_decode_pkey(der, len, "PrivateKeyInfo", NULL, EVP_PKEY_KEYPAIR);
    case DER_RSA_PRIV:
        return der_decode_pkey(der, len, "type-specific", "RSA", EVP_PKEY_KEYPAIR);
    }
    return NULL;
}

/* Map a PEM label to the DER kind it holds; -1 when unsupported. */
static int pem_label_kind(const char *label, int want_private)
{
    static const struct {
        const char *label;
        enum der_kind kind;
        int is_private;
    } map[] = {
        {"PUBLIC KEY", DER_SPKI, 0},   {"RSA PUBLIC KEY", DER_RSA_PUB, 0},
        {"CERTIFICATE", DER_CERT, 0},  {"X509 CERTIFICATE", DER_CERT, 0},
        {"PRIVATE KEY", DER_PKCS8, 1}, {"RSA PRIVATE KEY", DER_RSA_PRIV, 1},
    };
    size_t i;

    for (i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (map[i].is_private == want_private && !strcmp(label, map[i].label))
            return (int)map[i].kind;
    return -1;
}

/* Parse key text (first PEM block, or bare base64 DER) into an EVP_PKEY. */
static int parse_key_text(const char *text, int want_private, EVP_PKEY **out, char *err,
                          size_t errlen)
{
    static const enum der_kind bare_pub[] = {DER_SPKI, DER_RSA_PUB, DER_CERT};
    static const enum der_kind bare_priv[] = {DER_PKCS8, DER_RSA_PRIV};
    const enum der_kind *kinds = want_private ? bare_priv : bare_pub;
    size_t nkinds = want_private ? 2 : 3, body_len = 0, der_len = 0, i;
    const char *body = text;
    enum der_kind pem_kind;
    EVP_PKEY *pkey = NULL;
    uint8_t *der = NULL;
    char label[64];
    int rc;

    if (strstr(text, "-----BEGIN")) {
        rc = pem_find(text, label, sizeof(label), &body, &body_len, err, errlen);
        if (rc < 0)
            return rc;
        rc = pem_label_kind(label, want_private);
        if (rc < 0)
            return fail(err, errlen, -EINVAL, "PEM block '%s' is not a supported %s key",
                        label, want_private ? "private" : "public");
        pem_kind = (enum der_kind)rc;
        kinds = &pem_kind;
        nkinds = 1;
    } else {
        body_len = strlen(text);
    }
    rc = b64_decode_loose(body, body_len, &der, &der_len);
    if (rc < 0)
        return fail(err, errlen, rc,
                    rc == -ENOMEM ? "out of memory" : "not valid base64");
    for (i = 0; i < nkinds && !pkey; i++)
        pkey = der_to_pkey(der, der_len, kinds[i]);
    free_wiped(der, der_len);
    if (!pkey)
        return fail(err, errlen, -EINVAL, "not a valid %s key",
                    want_private ? "private" : "public");
    *out = pkey;
    return 0;
}

/* Check that pkey is a usable RSA key and wrap it (takes ownership). */
static int key_wrap(EVP_PKEY *pkey, int is_private, struct crypto_key **out, char *err,
                    size_t errlen)
{
    struct crypto_key *k = NULL;
    int rc, bits = EVP_PKEY_get_bits(pkey);

    if (!EVP_PKEY_is_a(pkey, "RSA")) {
        rc = fail(err, errlen, -EINVAL, "not an RSA key (%s)",
                  EVP_PKEY_get0_type_name(pkey) ? EVP_PKEY_get0_type_name(pkey) : "?");
        goto out;
    }
    if (bits < RSA_MIN_BITS || bits > RSA_MAX_BITS) {
        rc = fail(err, errlen, -EINVAL, "RSA key of %d bits (need %d..%d)", bits,
                  RSA_MIN_BITS, RSA_MAX_BITS);
        goto out;
    }
    k = calloc(1, sizeof(*k));
    if (!k) {
        rc = fail(err, errlen, -ENOMEM, "out of memory");
        goto out;
    }
    pthread_mutex_init(&k->pool_lock, NULL);
    k->md[CRYPTO_SHA1] = EVP_MD_fetch(NULL, "SHA1", NULL);
    k->md[CRYPTO_SHA256] = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (!k->md[CRYPTO_SHA1] || !k->md[CRYPTO_SHA256]) {
        rc = fail(err, errlen, -ENOMEM, "cannot fetch SHA1/SHA256");
        goto out;
    }
    k->pkey = pkey;
    pkey = NULL;
    k->bits = bits;
    k->sig_len = EVP_PKEY_get_size(k->pkey);
    k->is_private = is_private;
    *out = k;
    k = NULL;
    rc = 0;
out:
    crypto_key_free(k);
    EVP_PKEY_free(pkey);
    return rc;
}

/* Load a public or private key from a spec (path, PEM text or bare base64). */
/*
 * A key spec names a file when it starts with '/' or '.', or when it is the
 * path of an existing file (e.g. "keys/baidu.pem", relative to the working
 * directory). Key text never starts with those characters (PEM starts with
 * '-', DER in base64 with 'M'), and no file is named like a base64 key.
 */
static int crypto_spec_is_path(const char *spec)
{
    struct stat st;

    if (spec[0] == '/' || spec[0] == '.')
        return 1;
    return strncmp(spec, "-----", 5) != 0 && stat(spec, &st) == 0;
}

static int key_load(const char *spec, int want_private, int allow_path,
                    struct crypto_key **out, char *err, size_t errlen)
{
    char *file = NULL;
    size_t file_size = 0;
    EVP_PKEY *pkey = NULL;
    int rc;

    if (!spec || !out || !*spec)
        return fail(err, errlen, -EINVAL, "empty key");
    if (strnlen(spec, SPEC_MAX + 1) > SPEC_MAX)
        return fail(err, errlen, -EINVAL, "key text longer than %d bytes", SPEC_MAX);
    if (crypto_spec_is_path(spec)) {
        if (!allow_path)
            return fail(err, errlen, -EINVAL, "key text names a file");
        rc = read_key_file(spec, &file, &file_size, err, errlen);
        if (rc < 0)
            return rc;
    }
    rc = parse_key_text(file ? file : spec, want_private, &pkey, err, errlen);
    free_wiped(file, file_size);
    if (rc < 0)
        return rc;
    return key_wrap(pkey, want_private, out, err, errlen);
}

/* Public key, or the key of a certificate. */
int crypto_pubkey_load(const char *spec, struct crypto_key **out, char *err,
                       size_t errlen)
{
    return key_load(spec, 0, 1, out, err, errlen);
}

/* A public key given as text by someone else (a platform's answer): the
 * same forms, but never a file name, which would read a local file. */
int crypto_pubkey_from_text(const char *text, struct crypto_key **out, char *err,
                            size_t errlen)
{
    return key_load(text, 0, 0, out, err, errlen);
}

/* Private key, PKCS#8 or PKCS#1. */
int crypto_privkey_load(const char *spec, struct crypto_key **out, char *err,
                        size_t errlen)
{
    return key_load(spec, 1, 1, out, err, errlen);
}

/* Modulus size; 0 for NULL. */
int crypto_key_bits(const struct crypto_key *k)
{
    return k ? k->bits : 0;
}

/* Free a key and its fetched digests. */
struct crypto_key *crypto_key_free(struct crypto_key *k)
{
    if (!k)
        return NULL;
    for (int h = 0; h < 2; h++)
        while (k->n_pool[h] > 0)
            EVP_PKEY_CTX_free(k->pool[h][--k->n_pool[h]]);
    pthread_mutex_destroy(&k->pool_lock);
    EVP_PKEY_free(k->pkey); /* OpenSSL wipes private key material itself */
    EVP_MD_free(k->md[CRYPTO_SHA1]);
    EVP_MD_free(k->md[CRYPTO_SHA256]);
    free(k);
    return NULL;
}

static void *crypto_malloc(size_t n, const char *file, int line)
{
    (void)file, (void)line;
    return util_counted_malloc(n);
}

static void *crypto_realloc(void *p, size_t n, const char *file, int line)
{
    (void)file, (void)line;
    return util_counted_realloc(p, n);
}

static void crypto_free(void *p, const char *file, int line)
{
    (void)file, (void)line;
    free(p);
}

int crypto_init(void)
{
    return CRYPTO_set_mem_functions(crypto_malloc, crypto_realloc, crypto_free) == 1
               ? 0
               : -EBUSY;
}

/* Why an OpenSSL call failed: memory (counted since `before`) or not. */
static int crypto_failure(unsigned long before, int otherwise)
{
    ERR_clear_error();
    return util_alloc_failures() != before ? -ENOMEM : otherwise;
}

/*
 * Hot path. The signature is decoded into a stack buffer and its length
 * checked against the modulus before OpenSSL sees it; the digest was fetched
 * at load time, so the per-call cost is one EVP_MD_CTX plus the RSA public
 * operation. Returns -EIO when the verification could not even be set up.
 */
/* An idle verify context for (key, hash), or a new one set up for it. */
static EVP_PKEY_CTX *verify_ctx_get(struct crypto_key *k, enum crypto_hash h)
{
    EVP_PKEY_CTX *c = NULL;

    pthread_mutex_lock(&k->pool_lock);
    if (k->n_pool[h] > 0)
        c = k->pool[h][--k->n_pool[h]];
    pthread_mutex_unlock(&k->pool_lock);
    if (c)
        return c;
    c = EVP_PKEY_CTX_new_from_pkey(NULL, k->pkey, NULL);
    if (c && EVP_PKEY_verify_init(c) == 1 &&
        EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PADDING) == 1 &&
        EVP_PKEY_CTX_set_signature_md(c, k->md[h]) == 1)
        return c;
    EVP_PKEY_CTX_free(c);
    return NULL;
}

/* Give a context back (or free it when the pool is full). */
static void verify_ctx_put(struct crypto_key *k, enum crypto_hash h, EVP_PKEY_CTX *c)
{
    pthread_mutex_lock(&k->pool_lock);
    if (k->n_pool[h] < VERIFY_POOL) {
        k->pool[h][k->n_pool[h]++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&k->pool_lock);
    EVP_PKEY_CTX_free(c);
}

int crypto_rsa_verify_b64(const struct crypto_key *k, enum crypto_hash h,
                          const void *data, size_t len, const char *sig_b64,
                          size_t sig_len)
{
    struct crypto_key *key = (struct crypto_key *)k; /* only its pool changes */
    uint8_t sig[SIG_MAX_BYTES], digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    EVP_PKEY_CTX *c;
    unsigned long before;
    size_t n;
    int rc;

    if (!k || (h != CRYPTO_SHA1 && h != CRYPTO_SHA256) || (!data && len) || !sig_b64 ||
        !sig_len || b64_check(sig_b64, sig_len, &n) < 0)
        return -EINVAL;
    if (n != (size_t)k->sig_len)
        return -EBADMSG;
    b64_decode_into(sig_b64, sig_len, sig);
    before = util_alloc_failures();
    if (EVP_Digest(data ? data : (const void *)"", len, digest, &dlen, k->md[h], NULL) !=
        1)
        return crypto_failure(before, -EIO);
    c = verify_ctx_get(key, h);
    if (!c)
        return crypto_failure(before, -EIO);
    rc = EVP_PKEY_verify(c, sig, n, digest, dlen) == 1 ? 0 : -EBADMSG;
    verify_ctx_put(key, h, c);
    return rc ? crypto_failure(before, rc) : 0;
}

/* RSASSA-PKCS1-v1_5 signature as base64; -EIO when OpenSSL fails. */
int crypto_rsa_sign_b64(const struct crypto_key *k, enum crypto_hash h, const void *data,
                        size_t len, char **sig_b64)
{
    EVP_MD_CTX *ctx = NULL;
    uint8_t *sig = NULL;
    size_t n;
    char *b64;
    int rc;

    if (!k || !k->is_private || (h != CRYPTO_SHA1 && h != CRYPTO_SHA256) ||
        (!data && len) || !sig_b64)
        return -EINVAL;
    n = (size_t)k->sig_len;
    sig = malloc(n);
    ctx = EVP_MD_CTX_new();
    if (!sig || !ctx) {
        rc = -ENOMEM;
        goto out;
    }
    if (EVP_DigestSignInit(ctx, NULL, k->md[h], NULL, k->pkey) != 1 ||
        EVP_DigestSign(ctx, sig, &n, data ? data : (const void *)"", len) != 1) {
        rc = -EIO;
        goto out;
    }
    b64 = crypto_b64_encode(sig, n);
    if (!b64) {
        rc = -ENOMEM;
        goto out;
    }
    *sig_b64 = b64;
    rc = 0;
out:
    EVP_MD_CTX_free(ctx);
    free(sig);
    if (rc)
        ERR_clear_error();
    return rc;
}

/* Hex of n bytes into out (2n + 1 bytes). */
static void to_hex(const uint8_t *in, size_t n, int upper, char *out)
{
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    size_t i;

    for (i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

/* Digest as hex; on an OpenSSL failure out becomes all NULs (matches no hex). */
static int digest_hex(const EVP_MD *md, const void *data, size_t len, int upper,
                      char *out, size_t out_size)
{
    uint8_t d[EVP_MAX_MD_SIZE];
    unsigned int n = 0;

    if ((!data && len) || EVP_Digest(data ? data : "", len, d, &n, md, NULL) != 1 ||
        2 * n + 1 != out_size) {
        memset(out, 0, out_size);
        ERR_clear_error();
        return -EIO;
    }
    to_hex(d, n, upper, out);
    return 0;
}

/* SHA-1, lower-case hex. */
int crypto_sha1_hex(const void *data, size_t len, char out[41])
{
    return digest_hex(EVP_sha1(), data, len, 0, out, 41);
}

/* SHA-256, lower-case hex. */
int crypto_sha256_hex(const void *data, size_t len, char out[65])
{
    return digest_hex(EVP_sha256(), data, len, 0, out, 65);
}

/* MD5 (aggregated gateways), hex in the requested case. */
int crypto_md5_hex(const void *data, size_t len, int upper, char out[33])
{
    return digest_hex(EVP_md5(), data, len, upper, out, 33);
}

/* HMAC-SHA256, lower-case hex; all NULs when OpenSSL fails. */
int crypto_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                       uint8_t out[32])
{
    uint8_t d[EVP_MAX_MD_SIZE];
    size_t n = 0;

    /* An empty key is legal HMAC; OpenSSL wants a non-NULL pointer for it. */
    if ((!key && key_len) || (!data && len) ||
        !EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key ? key : "", key_len,
                   data ? data : (const void *)"", len, d, sizeof(d), &n) ||
        n != 32) {
        memset(out, 0, 32);
        ERR_clear_error();
        return -EIO;
    }
    memcpy(out, d, 32);
    OPENSSL_cleanse(d, sizeof(d));
    return 0;
}

int crypto_hmac_sha256_hex(const void *key, size_t key_len, const void *data, size_t len,
                           char out[65])
{
    uint8_t d[32];
    int r = crypto_hmac_sha256(key, key_len, data, len, d);

    if (r < 0) {
        memset(out, 0, 65);
        return r;
    }
    to_hex(d, 32, 0, out);
    OPENSSL_cleanse(d, sizeof(d));
    return 0;
}

/* Constant-time equality of n bytes. */
int crypto_memeq(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0;
}

/* ASCII upper-case letters to lower-case, with arithmetic instead of branches. */
static unsigned fold_case(unsigned c)
{
    unsigned ge_a = 1 ^ ((c - 'A') >> (sizeof(unsigned) * CHAR_BIT - 1));
    unsigned le_z = 1 ^ (('Z' - c) >> (sizeof(unsigned) * CHAR_BIT - 1));

    return c | (ge_a & le_z) << 5;
}

/* Constant-time equality of n characters, ASCII letters compared without case. */
int crypto_hexeq_nocase(const char *a, const char *b, size_t n)
{
    const volatile unsigned char *x = (const unsigned char *)a;
    const volatile unsigned char *y = (const unsigned char *)b;
    unsigned diff = 0;
    size_t i;

    for (i = 0; i < n; i++)
        diff |= fold_case(x[i]) ^ fold_case(y[i]);
    return (int)(1 & ((diff - 1) >> 8)); /* diff is 0..255: 1 exactly when 0 */
}

/* RAND_bytes in chunks an int can count. */
int crypto_random(void *buf, size_t len)
{
    unsigned char *p = buf;

    while (len) {
        int chunk = len > INT_MAX ? INT_MAX : (int)len;

        if (RAND_bytes(p, chunk) != 1) {
            ERR_clear_error();
            return -EIO;
        }
        p += chunk;
        len -= (size_t)chunk;
    }
    return 0;
}

/* 43-character EncodingAESKey to the 32-byte AES key. */
int crypto_tp_key(const char *encoding_aes_key, uint8_t key[32])
{
    char b64[44];
    size_t n = 0;
    int rc = -EINVAL;

    if (!encoding_aes_key || strnlen(encoding_aes_key, 44) != 43)
        return -EINVAL;
    memcpy(b64, encoding_aes_key, 43);
    b64[43] = '=';
    /* b64_check accepts the non-zero unused bits real keys carry. */
    if (b64_check(b64, sizeof(b64), &n) == 0 && n == 32) {
        b64_decode_into(b64, sizeof(b64), key);
        rc = 0;
    }
    OPENSSL_cleanse(b64, sizeof(b64));
    return rc;
}

/* Comparison for qsort over an array of C strings, byte-wise like strcmp. */
static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* SHA-1 over the byte-wise sorted concatenation, lower-case hex. */
int crypto_tp_signature(const char *token, const char *timestamp, const char *nonce,
                        const char *encrypt, char out[41])
{
    const char *s[4] = {token ? token : "", timestamp ? timestamp : "",
                        nonce ? nonce : "", encrypt ? encrypt : ""};
    uint8_t d[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha1(), NULL);
    size_t i;

    qsort(s, 4, sizeof(s[0]), cmp_str);
    for (i = 0; ok && i < 4; i++)
        ok = EVP_DigestUpdate(ctx, s[i], strlen(s[i]));
    ok = ok && EVP_DigestFinal_ex(ctx, d, &n) && n == 20;
    EVP_MD_CTX_free(ctx);
    if (!ok) {
        memset(out, 0, 41);
        ERR_clear_error();
        return -EIO;
    }
    to_hex(d, n, 0, out);
    return 0;
}

/* AES-256-CBC with IV = key[0..16) and no cipher padding, in either direction. */
static int tp_aes(const uint8_t key[32], int enc, const uint8_t *in, size_t len,
                  uint8_t *out)
{
    unsigned long before = util_alloc_failures();
    EVP_CIPHER_CTX *ctx;
    int n = 0, fin = 0, rc = -EIO;

    if (len > INT_MAX || len % 16)
        return -EINVAL;
    ctx = EVP_CIPHER_CTX_new();
    if (!ctx)
        return -ENOMEM;
    if (EVP_CipherInit_ex(ctx, EVP_aes_256_cbc(), NULL, key, key, enc) == 1 &&
        EVP_CIPHER_CTX_set_padding(ctx, 0) == 1 &&
        EVP_CipherUpdate(ctx, out, &n, in, (int)len) == 1 &&
        EVP_CipherFinal_ex(ctx, out + n, &fin) == 1 && (size_t)n + (size_t)fin == len)
        rc = 0;
    EVP_CIPHER_CTX_free(ctx);
    return rc ? crypto_failure(before, rc) : 0;
}

/* Length of the PKCS#7 padding (block 32) at the end of pt, or 0 when invalid. */
static size_t tp_pad_len(const uint8_t *pt, size_t len)
{
    size_t pad = pt[len - 1], i;
    unsigned bad = 0;

    if (pad < 1 || pad > TP_BLOCK || pad > len)
        return 0;
    for (i = 0; i < pad; i++) /* no early exit: the same work for every pad byte */
        bad |= pt[len - 1 - i] ^ (unsigned)pad;
    return bad ? 0 : pad;
}

/* Split a decrypted, unpadded TP plaintext and check its client id. */
static int tp_unwrap(const uint8_t *pt, size_t len, const char *client_id, char **msg,
                     size_t *msg_len, char *err, size_t errlen)
{
    size_t l, id_len, want_len = strlen(client_id);
    char *m;

    if (len < TP_PREFIX + 4)
        return fail(err, errlen, -EINVAL, "plaintext too short (%zu bytes)", len);
    l = (size_t)pt[16] << 24 | (size_t)pt[17] << 16 | (size_t)pt[18] << 8 | pt[19];
    if (l > len - TP_PREFIX - 4)
        return fail(err, errlen, -EINVAL, "declared length %zu exceeds plaintext (%zu)",
                    l, len - TP_PREFIX - 4);
    id_len = len - TP_PREFIX - 4 - l;
    if (id_len != want_len || !crypto_memeq(pt + TP_PREFIX + 4 + l, client_id, id_len))
        return fail(err, errlen, -EPERM, "client id differs from the configured one");
    m = malloc(l + 1);
    if (!m)
        return fail(err, errlen, -ENOMEM, "out of memory");
    memcpy(m, pt + TP_PREFIX + 4, l);
    m[l] = '\0';
    *msg = m;
    *msg_len = l;
    return 0;
}

/* Decode, decrypt, unpad and unwrap a TP push; every failure says why. */
int crypto_tp_decrypt(const uint8_t key[32], const char *encrypt_b64, size_t b64_len,
                      const char *client_id, char **msg, size_t *msg_len, char *err,
                      size_t errlen)
{
    uint8_t *ct = NULL, *pt = NULL;
    size_t ct_len = 0, pad;
    int rc;

    if (!key || !client_id || !msg || !msg_len || (!encrypt_b64 && b64_len))
        return fail(err, errlen, -EINVAL, "missing argument");
    rc = crypto_b64_decode(encrypt_b64, b64_len, &ct, &ct_len);
    if (rc < 0)
        return fail(err, errlen, rc,
                    rc == -ENOMEM ? "out of memory" : "not valid base64");
    if (ct_len == 0 || ct_len % 16) {
        rc = fail(err, errlen, -EINVAL, "ciphertext length %zu not a multiple of 16",
                  ct_len);
        goto out;
    }
    pt = malloc(ct_len);
    if (!pt) {
        rc = fail(err, errlen, -ENOMEM, "out of memory");
        goto out;
    }
    rc = tp_aes(key, 0, ct, ct_len, pt);
    if (rc < 0) {
        rc = fail(err, errlen, rc, "AES-256-CBC decryption failed");
        goto out;
    }
    pad = tp_pad_len(pt, ct_len);
    if (!pad) {
        rc = fail(err, errlen, -EINVAL, "bad padding");
        goto out;
    }
    rc = tp_unwrap(pt, ct_len - pad, client_id, msg, msg_len, err, errlen);
out:
    free_wiped(pt, ct_len);
    free(ct);
    return rc;
}

/* The inverse of crypto_tp_decrypt; -EINVAL for a message too large to frame. */
int crypto_tp_encrypt(const uint8_t key[32], const char *msg, size_t msg_len,
                      const char *client_id, char **encrypt_b64)
{
    size_t id_len, body, pad, len;
    uint8_t *pt = NULL, *ct = NULL;
    char *b64;
    int rc;

    if (!key || (!msg && msg_len) || !client_id || !encrypt_b64 || msg_len > UINT32_MAX)
        return -EINVAL;
    id_len = strlen(client_id);
    if (msg_len > (size_t)INT_MAX - id_len - TP_PREFIX - 4 - TP_BLOCK)
        return -EINVAL;
    body = TP_PREFIX + 4 + msg_len + id_len;
    pad = TP_BLOCK - body % TP_BLOCK; /* 1..32: a full block when already aligned */
    len = body + pad;
    pt = malloc(len);
    ct = malloc(len);
    if (!pt || !ct) {
        rc = -ENOMEM;
        goto out;
    }
    rc = crypto_random(pt, TP_PREFIX);
    if (rc < 0)
        goto out;
    pt[16] = (uint8_t)(msg_len >> 24);
    pt[17] = (uint8_t)(msg_len >> 16);
    pt[18] = (uint8_t)(msg_len >> 8);
    pt[19] = (uint8_t)msg_len;
    if (msg_len)
        memcpy(pt + TP_PREFIX + 4, msg, msg_len);
    memcpy(pt + TP_PREFIX + 4 + msg_len, client_id, id_len);
    memset(pt + body, (int)pad, pad);
    rc = tp_aes(key, 1, pt, len, ct);
    if (rc < 0)
        goto out;
    b64 = crypto_b64_encode(ct, len);
    if (!b64) {
        rc = -ENOMEM;
        goto out;
    }
    *encrypt_b64 = b64;
out:
    free_wiped(pt, len);
    free(ct);
    return rc;
}
