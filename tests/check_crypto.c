/*
 * check_crypto.c: the specification of crypto.c. Real Alipay signatures and
 * WeChat/TP message-crypto samples from the shared vectors directory, keys and
 * certificates generated on the fly in every accepted form, the TP cipher
 * round trip and its failure modes, and the digest, compare and base64 helpers.
 */
#include <check.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/encoder.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "wire/crypto.h"

#ifndef VECTORS_DIR
#define VECTORS_DIR "../shared/vectors"
#endif

#define SPEC_BIG (64 * 1024 + 1) /* one byte over crypto.c's key size limit */

/* The vector files found at startup (sorted), one loop-test iteration each. */
static const char *vec_dir;
static char **vec_files;
static int vec_count;

/* ------------------------------------------------------------------------ */
/* Small helpers                                                             */

/* Read a whole file into a NUL-terminated buffer (test-sized files only). */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;

    ck_assert_msg(f != NULL, "cannot open %s", path);
    ck_assert(fseek(f, 0, SEEK_END) == 0);
    n = ftell(f);
    ck_assert(n >= 0);
    rewind(f);
    buf = malloc((size_t)n + 1);
    ck_assert(buf != NULL);
    ck_assert(fread(buf, 1, (size_t)n, f) == (size_t)n);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* Write text to dir/name and return the malloc'd path. */
static char *write_file(const char *dir, const char *name, const char *data, size_t len)
{
    char *path = malloc(strlen(dir) + strlen(name) + 2);
    FILE *f;

    ck_assert(path != NULL);
    sprintf(path, "%s/%s", dir, name);
    f = fopen(path, "wb");
    ck_assert(f != NULL);
    ck_assert(fwrite(data, 1, len, f) == len);
    ck_assert(fclose(f) == 0);
    return path;
}

/* Base64 with OpenSSL's encoder (independent of the code under test). */
static char *ossl_b64(const uint8_t *data, size_t len)
{
    char *out = malloc((len + 2) / 3 * 4 + 1);

    ck_assert(out != NULL);
    EVP_EncodeBlock((unsigned char *)out, data, (int)len);
    return out;
}

/* Insert a newline every `every` characters (how operators paste keys). */
static char *wrap_lines(const char *s, size_t every)
{
    size_t n = strlen(s), i, o = 0;
    char *out = malloc(n + n / every + 2);

    ck_assert(out != NULL);
    for (i = 0; i < n; i++) {
        out[o++] = s[i];
        if ((i + 1) % every == 0)
            out[o++] = '\n';
    }
    out[o] = '\0';
    return out;
}

/* Copy of s with every character of `drop` removed. */
static char *strip_chars(const char *s, const char *drop)
{
    char *out = malloc(strlen(s) + 1), *o = out;

    ck_assert(out != NULL);
    for (; *s; s++)
        if (!strchr(drop, *s))
            *o++ = *s;
    *o = '\0';
    return out;
}

/* Copy of s with "\n" turned into "\r\n". */
static char *to_crlf(const char *s)
{
    char *out = malloc(2 * strlen(s) + 1), *o = out;

    ck_assert(out != NULL);
    for (; *s; s++) {
        if (*s == '\n')
            *o++ = '\r';
        *o++ = *s;
    }
    *o = '\0';
    return out;
}

/* Encode a key with OpenSSL's encoders: "PEM" text or "DER" as base64. */
static char *encode_key(EVP_PKEY *pk, int selection, const char *type,
                        const char *structure)
{
    OSSL_ENCODER_CTX *ctx;
    unsigned char *data = NULL;
    size_t len = 0;
    char *out;

    ctx = OSSL_ENCODER_CTX_new_for_pkey(pk, selection, type, structure, NULL);
    ck_assert(ctx != NULL);
    ck_assert_msg(OSSL_ENCODER_to_data(ctx, &data, &len) == 1, "encode %s/%s", type,
                  structure);
    OSSL_ENCODER_CTX_free(ctx);
    if (!strcmp(type, "DER")) {
        out = ossl_b64(data, len);
    } else {
        out = malloc(len + 1);
        ck_assert(out != NULL);
        memcpy(out, data, len);
        out[len] = '\0';
    }
    OPENSSL_free(data);
    return out;
}

/* A self-signed certificate for pk. */
static X509 *make_cert(EVP_PKEY *pk, const char *cn)
{
    X509 *x = X509_new();
    X509_NAME *name;

    ck_assert(x != NULL);
    ck_assert(X509_set_version(x, 2) == 1);
    ck_assert(ASN1_INTEGER_set(X509_get_serialNumber(x), 1) == 1);
    ck_assert(X509_gmtime_adj(X509_getm_notBefore(x), 0) != NULL);
    ck_assert(X509_gmtime_adj(X509_getm_notAfter(x), 86400) != NULL);
    ck_assert(X509_set_pubkey(x, pk) == 1);
    name = X509_get_subject_name(x);
    ck_assert(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                         (const unsigned char *)cn, -1, -1, 0) == 1);
    ck_assert(X509_set_issuer_name(x, name) == 1);
    ck_assert(X509_sign(x, pk, EVP_sha256()) > 0);
    return x;
}

/* PEM text of a self-signed certificate for pk. */
static char *cert_pem(EVP_PKEY *pk, const char *cn)
{
    X509 *x = make_cert(pk, cn);
    BIO *bio = BIO_new(BIO_s_mem());
    char *data, *out;
    long n;

    ck_assert(bio != NULL);
    ck_assert(PEM_write_bio_X509(bio, x) == 1);
    n = BIO_get_mem_data(bio, &data);
    out = malloc((size_t)n + 1);
    ck_assert(out != NULL);
    memcpy(out, data, (size_t)n);
    out[n] = '\0';
    BIO_free(bio);
    X509_free(x);
    return out;
}

/* Bare base64 of a self-signed certificate's DER. */
static char *cert_der_b64(EVP_PKEY *pk)
{
    X509 *x = make_cert(pk, "der");
    unsigned char *der = NULL;
    int n = i2d_X509(x, &der);
    char *out;

    ck_assert(n > 0);
    out = ossl_b64(der, (size_t)n);
    OPENSSL_free(der);
    X509_free(x);
    return out;
}

/* Load a public key that must load; returns it. */
static struct crypto_key *pub_ok(const char *spec, const char *what)
{
    struct crypto_key *k = NULL;
    char err[256] = "";
    int rc = crypto_pubkey_load(spec, &k, err, sizeof(err));

    ck_assert_msg(rc == 0, "%s: public key load failed (%d): %s", what, rc, err);
    ck_assert_ptr_nonnull(k);
    return k;
}

/* Load a private key that must load; returns it. */
static struct crypto_key *priv_ok(const char *spec, const char *what)
{
    struct crypto_key *k = NULL;
    char err[256] = "";
    int rc = crypto_privkey_load(spec, &k, err, sizeof(err));

    ck_assert_msg(rc == 0, "%s: private key load failed (%d): %s", what, rc, err);
    ck_assert_ptr_nonnull(k);
    return k;
}

/* Expect a public-key load to fail with rc and a reason containing `reason`. */
static void pub_fails(const char *spec, int want_rc, const char *reason, const char *what)
{
    struct crypto_key *k = NULL;
    char err[256] = "";
    int rc = crypto_pubkey_load(spec, &k, err, sizeof(err));

    ck_assert_msg(rc == want_rc, "%s: got %d (%s), want %d", what, rc, err, want_rc);
    ck_assert_msg(k == NULL, "%s: output written on failure", what);
    ck_assert_msg(err[0] != '\0', "%s: no reason given", what);
    if (reason)
        ck_assert_msg(strstr(err, reason) != NULL, "%s: reason '%s' lacks '%s'", what,
                      err, reason);
}

/* Remove a directory and the plain files in it. */
static void rm_tree(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[4096];

    if (!d)
        return;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (rmdir(path) != 0)
            unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

/* ------------------------------------------------------------------------ */
/* Vectors                                                                   */

/* String member of a JSON object, or NULL. */
static const char *jstr(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Whether name is in the JSON array of strings. */
static int in_list(const cJSON *list, const char *name)
{
    const cJSON *e;

    cJSON_ArrayForEach(e, list)
    {
        if (cJSON_IsString(e) && !strcmp(e->valuestring, name))
            return 1;
    }
    return 0;
}

struct kv {
    const char *k, *v;
};

/* qsort comparison of kv pairs by key, byte-wise. */
static int kv_cmp(const void *a, const void *b)
{
    return strcmp(((const struct kv *)a)->k, ((const struct kv *)b)->k);
}

/* The signed string of a form vector, per its `canonicalization`. */
static char *canonical_join(const cJSON *fields, const cJSON *canon)
{
    const cJSON *excl = cJSON_GetObjectItemCaseSensitive(canon, "exclude_keys");
    const cJSON *drop = cJSON_GetObjectItemCaseSensitive(canon, "drop_empty_values");
    int drop_empty = !cJSON_IsFalse(drop), n = 0, i;
    struct kv *kv = calloc((size_t)cJSON_GetArraySize(fields) + 1, sizeof(*kv));
    size_t total = 1;
    const cJSON *f;
    char *out;

    ck_assert(kv != NULL);
    cJSON_ArrayForEach(f, fields)
    {
        const char *k = cJSON_GetArrayItem(f, 0)->valuestring;
        const char *v = cJSON_GetArrayItem(f, 1)->valuestring;

        if (in_list(excl, k) || (drop_empty && (!v || !*v)))
            continue;
        kv[n].k = k;
        kv[n].v = v ? v : "";
        total += strlen(k) + strlen(kv[n].v) + 2;
        n++;
    }
    qsort(kv, (size_t)n, sizeof(*kv), kv_cmp);
    out = malloc(total);
    ck_assert(out != NULL);
    out[0] = '\0';
    for (i = 0; i < n; i++) {
        if (i)
            strcat(out, "&");
        strcat(out, kv[i].k);
        strcat(out, "=");
        strcat(out, kv[i].v);
    }
    free(kv);
    return out;
}

/* The exact text of the object after "key" in raw (string-aware, like verify.py). */
static int brace_match(const char *raw, const char *key, const char **start, size_t *len)
{
    char quoted[256];
    const char *p, *q;
    int depth = 0, in_str = 0, esc = 0;

    snprintf(quoted, sizeof(quoted), "\"%s\"", key);
    p = strstr(raw, quoted);
    if (!p || !(p = strchr(p + strlen(quoted), '{')))
        return -1;
    for (q = p; *q; q++) {
        if (in_str) {
            if (esc)
                esc = 0;
            else if (*q == '\\')
                esc = 1;
            else if (*q == '"')
                in_str = 0;
        } else if (*q == '"') {
            in_str = 1;
        } else if (*q == '{') {
            depth++;
        } else if (*q == '}' && --depth == 0) {
            *start = p;
            *len = (size_t)(q - p + 1);
            return 0;
        }
    }
    return -1;
}

/* Verify one signed text with a key spec; asserts the key loads. */
static int verify_with(const char *id, const char *spec, enum crypto_hash h,
                       const char *data, size_t len, const char *sig)
{
    struct crypto_key *k = pub_ok(spec, id);
    int rc = crypto_rsa_verify_b64(k, h, data, len, sig, strlen(sig));

    crypto_key_free(k);
    return rc;
}

/* Check a vector's expectation against crypto_rsa_verify_b64, key and certificate. */
static void check_rsa_vector(const cJSON *v, const char *data, size_t len)
{
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(v, "inputs");
    const char *id = jstr(v, "id"), *alg = jstr(v, "algorithm"),
               *sig = jstr(in, "signature");
    const char *cert = jstr(in, "certificate_pem");
    int valid = !strcmp(jstr(v, "expected"), "valid"), rc;
    enum crypto_hash h = CRYPTO_SHA1;

    ck_assert_msg(alg && sig, "%s: algorithm or signature missing", id);
    if (!strcmp(alg, "SHA1withRSA"))
        h = CRYPTO_SHA1;
    else if (!strcmp(alg, "SHA256withRSA"))
        h = CRYPTO_SHA256;
    else
        ck_abort_msg("%s: unknown algorithm %s", id, alg);
    rc = verify_with(id, jstr(in, "public_key_pem"), h, data, len, sig);
    ck_assert_msg(valid ? rc == 0 : rc == -EBADMSG, "%s: public key: got %d, expected %s",
                  id, rc, valid ? "valid" : "invalid");
    if (cert) {
        rc = verify_with(id, cert, h, data, len, sig);
        ck_assert_msg(valid ? rc == 0 : rc == -EBADMSG, "%s: certificate: got %d", id,
                      rc);
    }
}

/* Form kinds: the canonical string is built here and must match the vector's. */
static void check_form_vector(const cJSON *v)
{
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(v, "inputs");
    const char *id = jstr(v, "id"), *expected = jstr(v, "expected_signed_string");
    char *joined =
        canonical_join(cJSON_GetObjectItemCaseSensitive(in, "fields"),
                       cJSON_GetObjectItemCaseSensitive(v, "canonicalization"));

    if (expected)
        ck_assert_msg(!strcmp(joined, expected), "%s: canonical string differs:\n%s\n%s",
                      id, joined, expected);
    else
        expected = joined;
    check_rsa_vector(v, expected, strlen(expected));
    free(joined);
}

/* Response kinds: the signed text is brace-matched out of the raw response. */
static void check_response_vector(const cJSON *v)
{
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(v, "inputs");
    const char *id = jstr(v, "id"), *raw = jstr(in, "raw_response");
    const char *content = jstr(in, "signed_content");
    size_t len = content ? strlen(content) : 0;
    cJSON *parsed;

    if (raw) {
        ck_assert_msg(brace_match(raw, jstr(in, "response_key"), &content, &len) == 0,
                      "%s: response key not found", id);
        parsed = cJSON_Parse(raw);
        ck_assert_msg(parsed && jstr(parsed, "sign") &&
                          !strcmp(jstr(parsed, "sign"), jstr(in, "signature")),
                      "%s: sign in raw_response differs", id);
        cJSON_Delete(parsed);
        if (!strcmp(jstr(v, "expected"), "valid"))
            ck_assert_msg(len == strlen(jstr(in, "signed_content")) &&
                              !memcmp(content, jstr(in, "signed_content"), len),
                          "%s: brace match differs from signed_content", id);
    }
    ck_assert_msg(content != NULL, "%s: no signed content", id);
    check_rsa_vector(v, content, len);
}

/* TP kind: signature, decryption and the client id check. */
static void check_tp_vector(const cJSON *v)
{
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(v, "inputs");
    const char *id = jstr(v, "id"), *enc = jstr(in, "encrypt");
    const char *rid = jstr(v, "expected_receiver_id"),
               *want = jstr(v, "expected_plaintext");
    int valid = !strcmp(jstr(v, "expected"), "valid"), rc;
    char sig[41], err[256] = "", *msg = NULL, other[256];
    uint8_t key[32];
    size_t len = 0;

    crypto_tp_signature(jstr(in, "token"), jstr(in, "timestamp"), jstr(in, "nonce"), enc,
                        sig);
    ck_assert_msg(valid == !strcmp(sig, jstr(in, "msg_signature")),
                  "%s: signature %s vs %s, expected %s", id, sig,
                  jstr(in, "msg_signature"), jstr(v, "expected"));
    ck_assert_int_eq(crypto_tp_key(jstr(in, "encoding_aes_key"), key), 0);
    rc = crypto_tp_decrypt(key, enc, strlen(enc), rid, &msg, &len, err, sizeof(err));
    ck_assert_msg(rc == 0, "%s: decrypt failed (%d): %s", id, rc, err);
    ck_assert_msg(len == strlen(want) && !memcmp(msg, want, len) && msg[len] == '\0',
                  "%s: plaintext differs", id);
    free(msg);
    msg = NULL;
    snprintf(other, sizeof(other), "%sx", rid);
    rc = crypto_tp_decrypt(key, enc, strlen(enc), other, &msg, &len, err, sizeof(err));
    ck_assert_msg(rc == -EPERM && msg == NULL, "%s: other client id gave %d", id, rc);
    other[strlen(rid) - 1] = '\0';
    rc = crypto_tp_decrypt(key, enc, strlen(enc), other, &msg, &len, err, sizeof(err));
    ck_assert_msg(rc == -EPERM && msg == NULL, "%s: shorter client id gave %d", id, rc);
}

/* Parse vector file i. */
static cJSON *load_vector(int i)
{
    char path[4096], *text;
    cJSON *v;

    snprintf(path, sizeof(path), "%s/%s", vec_dir, vec_files[i]);
    text = slurp(path);
    v = cJSON_Parse(text);
    free(text);
    ck_assert_msg(v != NULL, "%s: not JSON", path);
    ck_assert_msg(jstr(v, "kind") && jstr(v, "expected") && jstr(v, "id"),
                  "%s: incomplete", path);
    return v;
}

/* One loop iteration per vector file. */
START_TEST(test_vector)
{
    cJSON *v = load_vector(_i);
    const char *kind = jstr(v, "kind");

    if (!strcmp(kind, "alipay_async_notify") || !strcmp(kind, "alipay_sync_return") ||
        !strcmp(kind, "alipay_sdk_sign_fixture"))
        check_form_vector(v);
    else if (!strcmp(kind, "alipay_openapi_response") ||
             !strcmp(kind, "alipay_openapi_response_content"))
        check_response_vector(v);
    else if (!strcmp(kind, "wechat_msgcrypt_fallback_for_baidu_tp"))
        check_tp_vector(v);
    cJSON_Delete(v);
}
END_TEST

/* The directory holds every kind this suite claims to cover, valid and invalid. */
START_TEST(test_vectors_cover_kinds)
{
    static const char *kinds[] = {"alipay_async_notify",
                                  "alipay_sync_return",
                                  "alipay_sdk_sign_fixture",
                                  "alipay_openapi_response",
                                  "alipay_openapi_response_content",
                                  "wechat_msgcrypt_fallback_for_baidu_tp"};
    int seen[6][2] = {{0}}, i, j;

    for (i = 0; i < vec_count; i++) {
        cJSON *v = load_vector(i);

        for (j = 0; j < 6; j++)
            if (!strcmp(jstr(v, "kind"), kinds[j]))
                seen[j][!strcmp(jstr(v, "expected"), "valid")]++;
        cJSON_Delete(v);
    }
    for (j = 0; j < 6; j++)
        ck_assert_msg(seen[j][0] > 0 && seen[j][1] > 0,
                      "no valid/invalid vectors of kind %s", kinds[j]);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Generated keys                                                            */

static EVP_PKEY *gen_rsa[2]; /* 1024 and 2048 bits */
static EVP_PKEY *gen_ec;
static char tmp_dir[] = "/tmp/check_crypto.XXXXXX";
static const int gen_bits[2] = {1024, 2048};

/* Generate keys once for the test case (children inherit them). */
static void keys_setup(void)
{
    gen_rsa[0] = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    gen_rsa[1] = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    gen_ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    ck_assert(gen_rsa[0] && gen_rsa[1] && gen_ec);
    ck_assert(mkdtemp(tmp_dir) != NULL);
}

/* Free the generated keys and the temporary directory. */
static void keys_teardown(void)
{
    EVP_PKEY_free(gen_rsa[0]);
    EVP_PKEY_free(gen_rsa[1]);
    EVP_PKEY_free(gen_ec);
    rm_tree(tmp_dir);
}

#define NPUB  11
#define NPRIV 6

/* Every public form of pk: the specs and their labels. */
static void public_forms(EVP_PKEY *pk, char *spec[NPUB], const char *label[NPUB])
{
    char *spki = encode_key(pk, EVP_PKEY_PUBLIC_KEY, "DER", "SubjectPublicKeyInfo");
    char *pem = encode_key(pk, EVP_PKEY_PUBLIC_KEY, "PEM", "SubjectPublicKeyInfo");
    char *cert = cert_pem(pk, "payhookd test");

    ck_assert(strstr(pem, "-----BEGIN PUBLIC KEY-----") != NULL);
    spec[0] = wrap_lines(spki, 64), label[0] = "bare base64 SPKI, 64-char lines";
    spec[1] = wrap_lines(spki, 76), label[1] = "bare base64 SPKI, 76-char lines";
    spec[2] = spki, label[2] = "bare base64 SPKI, one line";
    spec[3] = pem, label[3] = "PEM PUBLIC KEY";
    spec[4] = encode_key(pk, EVP_PKEY_PUBLIC_KEY, "PEM", "type-specific");
    label[4] = "PEM RSA PUBLIC KEY";
    ck_assert(strstr(spec[4], "-----BEGIN RSA PUBLIC KEY-----") != NULL);
    spec[5] = strip_chars(pem, "\n"), label[5] = "PEM on one line";
    spec[6] = to_crlf(pem), label[6] = "PEM with CRLF";
    spec[7] = cert, label[7] = "PEM certificate";
    spec[8] = write_file(tmp_dir, "pub.pem", pem, strlen(pem)), label[8] = "PEM file";
    spec[9] = write_file(tmp_dir, "cert.crt", cert, strlen(cert));
    label[9] = "certificate file";
    spec[10] = cert_der_b64(pk), label[10] = "bare base64 certificate DER";
}

/* Every private form of pk. */
static void private_forms(EVP_PKEY *pk, char *spec[NPRIV], const char *label[NPRIV])
{
    spec[0] = encode_key(pk, EVP_PKEY_KEYPAIR, "PEM", "PrivateKeyInfo");
    label[0] = "PEM PRIVATE KEY (PKCS#8)";
    ck_assert(strstr(spec[0], "-----BEGIN PRIVATE KEY-----") != NULL);
    spec[1] = encode_key(pk, EVP_PKEY_KEYPAIR, "PEM", "type-specific");
    label[1] = "PEM RSA PRIVATE KEY (PKCS#1)";
    ck_assert(strstr(spec[1], "-----BEGIN RSA PRIVATE KEY-----") != NULL);
    spec[2] = encode_key(pk, EVP_PKEY_KEYPAIR, "DER", "PrivateKeyInfo");
    label[2] = "bare base64 PKCS#8";
    spec[3] = encode_key(pk, EVP_PKEY_KEYPAIR, "DER", "type-specific");
    label[3] = "bare base64 PKCS#1";
    spec[4] = write_file(tmp_dir, "priv8.pem", spec[0], strlen(spec[0]));
    label[4] = "PKCS#8 PEM file";
    spec[5] = write_file(tmp_dir, "priv1.pem", spec[1], strlen(spec[1]));
    label[5] = "PKCS#1 PEM file";
}

/* Free an array of specs. */
static void free_specs(char **spec, int n)
{
    int i;

    for (i = 0; i < n; i++)
        free(spec[i]);
}

/* Every public form verifies what every private form signs, SHA1 and SHA256. */
START_TEST(test_key_forms_sign_verify)
{
    static const char data[] = "a=1&b=\xe6\xb5\x8b\xe8\xaf\x95&c=3";
    char *pub[NPUB], *priv[NPRIV], *sig;
    const char *pl[NPUB], *vl[NPRIV];
    struct crypto_key *pk[NPUB], *sk;
    int i, j, h;

    public_forms(gen_rsa[_i], pub, pl);
    private_forms(gen_rsa[_i], priv, vl);
    for (i = 0; i < NPUB; i++) {
        pk[i] = pub_ok(pub[i], pl[i]);
        ck_assert_msg(crypto_key_bits(pk[i]) == gen_bits[_i], "%s: %d bits", pl[i],
                      crypto_key_bits(pk[i]));
    }
    for (j = 0; j < NPRIV; j++) {
        sk = priv_ok(priv[j], vl[j]);
        ck_assert_int_eq(crypto_key_bits(sk), gen_bits[_i]);
        for (h = CRYPTO_SHA1; h <= CRYPTO_SHA256; h++) {
            ck_assert_int_eq(crypto_rsa_sign_b64(sk, h, data, strlen(data), &sig), 0);
            for (i = 0; i < NPUB; i++)
                ck_assert_msg(crypto_rsa_verify_b64(pk[i], h, data, strlen(data), sig,
                                                    strlen(sig)) == 0,
                              "%s signed, %s does not verify (hash %d)", vl[j], pl[i], h);
            /* The other digest must not verify. */
            ck_assert_int_eq(
                crypto_rsa_verify_b64(pk[0], !h, data, strlen(data), sig, strlen(sig)),
                -EBADMSG);
            free(sig);
        }
        crypto_key_free(sk);
    }
    for (i = 0; i < NPUB; i++)
        crypto_key_free(pk[i]);
    free_specs(pub, NPUB);
    free_specs(priv, NPRIV);
}
END_TEST

/* Verify helper taking the signature as a C string. */
static int verify_str(const struct crypto_key *k, enum crypto_hash h, const char *data,
                      size_t len, const char *sig)
{
    return crypto_rsa_verify_b64(k, h, data, len, sig, strlen(sig));
}

/* Tampered data or signatures, bad base64 and wrong lengths are told apart. */
START_TEST(test_verify_rejects)
{
    char *priv = encode_key(gen_rsa[_i], EVP_PKEY_KEYPAIR, "PEM", "PrivateKeyInfo");
    char *pub =
        encode_key(gen_rsa[_i], EVP_PKEY_PUBLIC_KEY, "DER", "SubjectPublicKeyInfo");
    struct crypto_key *sk = priv_ok(priv, "private"), *pk = pub_ok(pub, "public");
    char data[] = "out_trade_no=42&total_amount=0.01", *sig, *bad, *longer;
    size_t len = strlen(data), raw_len, pos[3], i;
    uint8_t *raw, big[4096] = {0};

    ck_assert_int_eq(crypto_rsa_sign_b64(sk, CRYPTO_SHA1, data, len, &sig), 0);
    ck_assert_int_eq(verify_str(pk, CRYPTO_SHA1, data, len, sig), 0);
    ck_assert_int_eq(verify_str(sk, CRYPTO_SHA1, data, len, sig), 0);

    /* The data: one flipped bit, one byte less. */
    data[3] ^= 1;
    ck_assert_int_eq(verify_str(pk, CRYPTO_SHA1, data, len, sig), -EBADMSG);
    data[3] ^= 1;
    ck_assert_int_eq(verify_str(pk, CRYPTO_SHA1, data, len - 1, sig), -EBADMSG);

    /* The signature: a flipped byte at the start, middle and end. */
    ck_assert_int_eq(crypto_b64_decode(sig, strlen(sig), &raw, &raw_len), 0);
    ck_assert_uint_eq(raw_len, (size_t)gen_bits[_i] / 8);
    pos[0] = 0, pos[1] = raw_len / 2, pos[2] = raw_len - 1;
    for (i = 0; i < 3; i++) {
        raw[pos[i]] ^= 0x01;
        bad = ossl_b64(raw, raw_len);
        ck_assert_int_eq(verify_str(pk, CRYPTO_SHA1, data, len, bad), -EBADMSG);
        free(bad);
        raw[pos[i]] ^= 0x01;
    }

    /* Valid base64 of the wrong length is a bad signature, not a crash. */
    bad = ossl_b64(raw, raw_len - 1);
    ck_assert_int_eq(verify_str(pk, CRYPTO_SHA1, data, len, bad), -EBADMSG);
    free(bad);
    memcpy(big, raw, raw_len);
    bad = ossl_b64(big, raw_len + 1);
    ck_assert_int_eq(verify_str(pk, CRYPTO_SHA1, data, len, bad), -EBADMSG);
    free(bad);
    bad = ossl_b64(big, sizeof(big));
    ck_assert_int_eq(verify_str(pk, CRYPTO_SHA1, data, len, bad), -EBADMSG);
    free(bad);
    ck_assert_int_eq(verify_str(pk, CRYPTO_SHA1, data, len, "AAAA"), -EBADMSG);

    /* Not base64 at all. */
    ck_assert_int_eq(verify_str(pk, CRYPTO_SHA1, data, len, ""), -EINVAL);
    ck_assert_int_eq(verify_str(pk, CRYPTO_SHA1, data, len, "!!!!"), -EINVAL);
    ck_assert_int_eq(
        crypto_rsa_verify_b64(pk, CRYPTO_SHA1, data, len, sig, strlen(sig) - 1), -EINVAL);
    bad = strdup(sig);
    ck_assert_ptr_nonnull(bad);
    bad[5] = ' '; /* a '+' decoded as a space, for instance */
    ck_assert_int_eq(verify_str(pk, CRYPTO_SHA1, data, len, bad), -EINVAL);
    bad[5] = '-'; /* URL-safe alphabet */
    ck_assert_int_eq(verify_str(pk, CRYPTO_SHA1, data, len, bad), -EINVAL);
    free(bad);
    bad = wrap_lines(sig, 64);
    ck_assert_int_eq(verify_str(pk, CRYPTO_SHA1, data, len, bad), -EINVAL);
    free(bad);

    /* sig_len is honoured: bytes after it are not looked at. */
    longer = malloc(strlen(sig) + 8);
    ck_assert_ptr_nonnull(longer);
    sprintf(longer, "%s!junk", sig);
    ck_assert_int_eq(
        crypto_rsa_verify_b64(pk, CRYPTO_SHA1, data, len, longer, strlen(sig)), 0);
    free(longer);

    /* Misuse. */
    ck_assert_int_eq(crypto_rsa_sign_b64(pk, CRYPTO_SHA1, data, len, &bad), -EINVAL);
    ck_assert_int_eq(verify_str(NULL, CRYPTO_SHA1, data, len, sig), -EINVAL);

    free(raw);
    free(sig);
    free(priv);
    free(pub);
    crypto_key_free(sk);
    crypto_key_free(pk);
}
END_TEST

/* A certificate chain in one PEM: the first certificate's key is used. */
START_TEST(test_cert_chain_uses_first)
{
    char *a = cert_pem(gen_rsa[1], "leaf"), *b = cert_pem(gen_rsa[0], "ca");
    char *chain = malloc(strlen(a) + strlen(b) + 1), *sig;
    char *priv = encode_key(gen_rsa[1], EVP_PKEY_KEYPAIR, "PEM", "PrivateKeyInfo");
    struct crypto_key *pk, *sk = priv_ok(priv, "leaf private");

    ck_assert_ptr_nonnull(chain);
    sprintf(chain, "%s%s", a, b);
    pk = pub_ok(chain, "chain");
    ck_assert_int_eq(crypto_key_bits(pk), 2048);
    ck_assert_int_eq(crypto_rsa_sign_b64(sk, CRYPTO_SHA256, "x", 1, &sig), 0);
    ck_assert_int_eq(verify_str(pk, CRYPTO_SHA256, "x", 1, sig), 0);
    free(sig);
    crypto_key_free(pk);
    crypto_key_free(sk);
    free(a);
    free(b);
    free(chain);
    free(priv);
}
END_TEST

/* Keys that are not RSA, too small, garbage or unreadable are refused with a reason. */
START_TEST(test_load_rejects)
{
    EVP_PKEY *small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)512);
    char *s, *t, *path, big[SPEC_BIG + 1];
    struct crypto_key *k = NULL;
    char err[256];
    uint8_t *der;
    size_t der_len;

    /* EC keys in every form. */
    s = encode_key(gen_ec, EVP_PKEY_PUBLIC_KEY, "DER", "SubjectPublicKeyInfo");
    pub_fails(s, -EINVAL, "not an RSA key", "EC bare base64");
    free(s);
    s = encode_key(gen_ec, EVP_PKEY_PUBLIC_KEY, "PEM", "SubjectPublicKeyInfo");
    pub_fails(s, -EINVAL, "not an RSA key", "EC PEM");
    free(s);
    s = cert_pem(gen_ec, "ec");
    pub_fails(s, -EINVAL, "not an RSA key", "EC certificate");
    free(s);
    s = encode_key(gen_ec, EVP_PKEY_KEYPAIR, "PEM", "PrivateKeyInfo");
    ck_assert_int_eq(crypto_privkey_load(s, &k, err, sizeof(err)), -EINVAL);
    ck_assert_msg(strstr(err, "not an RSA key") != NULL, "%s", err);
    ck_assert_ptr_null(k);
    free(s);

    /* RSA below 1024 bits. */
    ck_assert_ptr_nonnull(small);
    s = encode_key(small, EVP_PKEY_PUBLIC_KEY, "PEM", "SubjectPublicKeyInfo");
    pub_fails(s, -EINVAL, "512 bits", "512-bit key");
    free(s);

    /* Garbage. */
    pub_fails("hello world", -EINVAL, "base64", "garbage");
    pub_fails("AAAAAAAA", -EINVAL, "not a valid public key", "base64 that is no key");
    pub_fails("", -EINVAL, NULL, "empty");
    ck_assert_int_eq(crypto_pubkey_load(NULL, &k, err, sizeof(err)), -EINVAL);
    pub_fails("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", -EINVAL,
              "not a valid public key", "PEM of junk");
    pub_fails("-----BEGIN PUBLIC KEY-----\nAAAA\n", -EINVAL, "END", "no END line");
    pub_fails("-----BEGIN FOO-----\nAAAA\n-----END FOO-----\n", -EINVAL, "FOO",
              "FOO label");
    s = encode_key(gen_rsa[0], EVP_PKEY_KEYPAIR, "PEM", "type-specific");
    pub_fails(s, -EINVAL, "RSA PRIVATE KEY", "private PEM as public key");
    free(s);
    ck_assert_int_eq(crypto_privkey_load("-----BEGIN RSA PRIVATE KEY-----\nProc-Type: "
                                         "4,ENCRYPTED\nDEK-Info: AES-128-CBC,"
                                         "00112233445566778899AABBCCDDEEFF\n\nAAAA\n"
                                         "-----END RSA PRIVATE KEY-----",
                                         &k, err, sizeof(err)),
                     -EINVAL);
    ck_assert_msg(strstr(err, "headers") != NULL, "%s", err);
    ck_assert_int_eq(crypto_privkey_load("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n"
                                         "-----END ENCRYPTED PRIVATE KEY-----",
                                         &k, err, sizeof(err)),
                     -EINVAL);
    s = encode_key(gen_rsa[0], EVP_PKEY_PUBLIC_KEY, "PEM", "SubjectPublicKeyInfo");
    ck_assert_int_eq(crypto_privkey_load(s, &k, err, sizeof(err)), -EINVAL);
    free(s);

    /* Trailing bytes after the DER are not silently ignored. */
    s = encode_key(gen_rsa[0], EVP_PKEY_PUBLIC_KEY, "DER", "SubjectPublicKeyInfo");
    ck_assert_int_eq(crypto_b64_decode(s, strlen(s), &der, &der_len), 0);
    t = malloc(der_len + 3);
    ck_assert_ptr_nonnull(t);
    memcpy(t, der, der_len);
    memset(t + der_len, 0, 3);
    free(s);
    s = ossl_b64((uint8_t *)t, der_len + 3);
    pub_fails(s, -EINVAL, NULL, "SPKI with trailing bytes");
    free(s);
    free(t);
    free(der);

    /* Files. */
    pub_fails("/nonexistent-dir/key.pem", -ENOENT, "cannot open",
              "missing absolute path");
    pub_fails("./no-such-key.pem", -ENOENT, NULL, "missing relative path");
    pub_fails(tmp_dir, -EINVAL, "regular file", "directory");
    memset(big, 'A', sizeof(big));
    path = write_file(tmp_dir, "big.pem", big, SPEC_BIG);
    pub_fails(path, -EINVAL, "larger than", "file over 64 KiB");
    free(path);
    big[SPEC_BIG] = '\0';
    pub_fails(big, -EINVAL, "longer than", "text over 64 KiB");
    if (geteuid() != 0) {
        s = encode_key(gen_rsa[0], EVP_PKEY_PUBLIC_KEY, "PEM", "SubjectPublicKeyInfo");
        path = write_file(tmp_dir, "secret.pem", s, strlen(s));
        ck_assert_int_eq(chmod(path, 0), 0);
        pub_fails(path, -EACCES, NULL, "unreadable file");
        free(path);
        free(s);
    }

    /* A file holding bare base64 loads too. */
    s = encode_key(gen_rsa[0], EVP_PKEY_PUBLIC_KEY, "DER", "SubjectPublicKeyInfo");
    path = write_file(tmp_dir, "bare.txt", s, strlen(s));
    crypto_key_free(pub_ok(path, "file of bare base64"));
    free(path);
    free(s);

    ck_assert_ptr_null(crypto_key_free(NULL));
    ck_assert_int_eq(crypto_key_bits(NULL), 0);
    EVP_PKEY_free(small);
}
END_TEST

struct verify_job {
    const struct crypto_key *k;
    const char *sig, *bad_sig;
    int failures;
};

/* Verify the same signature many times from one thread. */
static void *verify_thread(void *arg)
{
    struct verify_job *j = arg;
    int i;

    for (i = 0; i < 100; i++) {
        j->failures += crypto_rsa_verify_b64(j->k, CRYPTO_SHA256, "payload", 7, j->sig,
                                             strlen(j->sig)) != 0;
        j->failures += crypto_rsa_verify_b64(j->k, CRYPTO_SHA256, "payload", 7,
                                             j->bad_sig, strlen(j->bad_sig)) != -EBADMSG;
    }
    return NULL;
}

/* One key verified by several threads at once gives the right answers. */
START_TEST(test_verify_concurrent)
{
    char *priv = encode_key(gen_rsa[1], EVP_PKEY_KEYPAIR, "PEM", "PrivateKeyInfo");
    char *pub =
        encode_key(gen_rsa[1], EVP_PKEY_PUBLIC_KEY, "PEM", "SubjectPublicKeyInfo");
    struct crypto_key *sk = priv_ok(priv, "private"), *pk = pub_ok(pub, "public");
    struct verify_job jobs[4];
    pthread_t th[4];
    char *sig, *bad;
    int i;

    ck_assert_int_eq(crypto_rsa_sign_b64(sk, CRYPTO_SHA256, "payload", 7, &sig), 0);
    bad = strdup(sig);
    ck_assert_ptr_nonnull(bad);
    bad[10] = bad[10] == 'A' ? 'B' : 'A';
    for (i = 0; i < 4; i++) {
        jobs[i] = (struct verify_job){pk, sig, bad, 0};
        ck_assert_int_eq(pthread_create(&th[i], NULL, verify_thread, &jobs[i]), 0);
    }
    for (i = 0; i < 4; i++) {
        ck_assert_int_eq(pthread_join(th[i], NULL), 0);
        ck_assert_int_eq(jobs[i].failures, 0);
    }
    free(sig);
    free(bad);
    free(priv);
    free(pub);
    crypto_key_free(sk);
    crypto_key_free(pk);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* TP message crypto                                                         */

/* The EncodingAESKey decodes with its non-zero unused bits ignored. */
START_TEST(test_tp_key)
{
    static const uint8_t want[32] = {0x69, 0xb7, 0x1d, 0x79, 0xf8, 0x21, 0x8a, 0x39,
                                     0x25, 0x9a, 0x7a, 0x29, 0xaa, 0xbb, 0x2d, 0xba,
                                     0xfc, 0x31, 0xcb, 0x3d, 0x35, 0xdb, 0x7e, 0x39,
                                     0xeb, 0xbf, 0x3d, 0x00, 0x10, 0x83, 0x10, 0x51};
    uint8_t key[32], key2[32];

    /* 'G' carries two unused bits "10"; 'E' has them zero: same key. */
    ck_assert_int_eq(crypto_tp_key("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", key),
                     0);
    ck_assert(memcmp(key, want, 32) == 0);
    ck_assert_int_eq(crypto_tp_key("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFE", key2),
                     0);
    ck_assert(memcmp(key2, want, 32) == 0);
    ck_assert_int_eq(crypto_tp_key("abcdefghijklmnopqrstuvwxyz0123456789ABCDEF", key),
                     -EINVAL);
    ck_assert_int_eq(crypto_tp_key("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH", key),
                     -EINVAL);
    ck_assert_int_eq(crypto_tp_key("abcdefghijklmnopqrstuvwxyz0123456789ABCDEF=", key),
                     -EINVAL);
    ck_assert_int_eq(crypto_tp_key("abcdefghijklmnopqrstuvwxyz0123456789ABCD-FG", key),
                     -EINVAL);
    ck_assert_int_eq(crypto_tp_key(NULL, key), -EINVAL);
}
END_TEST

/* MsgSignature sorts its four inputs byte-wise, whatever their order. */
START_TEST(test_tp_signature)
{
    static const char want[] = "fc476bb506dd17fb680cc652d2b60b87fe5a2aac";
    char out[41];

    crypto_tp_signature("tok", "1409735669", "xyz", "Encr+/=", out);
    ck_assert_str_eq(out, want);
    crypto_tp_signature("xyz", "Encr+/=", "tok", "1409735669", out);
    ck_assert_str_eq(out, want);
    crypto_tp_signature("tok", "1409735669", "xyz", "Encr+/+", out);
    ck_assert_str_ne(out, want);
}
END_TEST

static const size_t tp_lengths[] = {0, 1, 15, 16, 31, 32, 33, 1000};

/* Encrypt then decrypt gives the message back, for lengths around block edges. */
START_TEST(test_tp_roundtrip)
{
    size_t n = tp_lengths[_i], got_len = 0, ct_len;
    char *msg = malloc(n + 1), *enc, *enc2, *got = NULL, err[256] = "";
    uint8_t key[32], *ct;

    ck_assert_ptr_nonnull(msg);
    ck_assert_int_eq(crypto_random(key, sizeof(key)), 0);
    ck_assert_int_eq(crypto_random(msg, n), 0);
    ck_assert_int_eq(crypto_tp_encrypt(key, msg, n, "client-42", &enc), 0);
    ck_assert_int_eq(crypto_b64_decode(enc, strlen(enc), &ct, &ct_len), 0);
    ck_assert_uint_eq(ct_len % 32, 0);
    ck_assert_uint_gt(ct_len, 16 + 4 + n + 9 - 1);
    ck_assert_int_eq(crypto_tp_decrypt(key, enc, strlen(enc), "client-42", &got, &got_len,
                                       err, sizeof(err)),
                     0);
    ck_assert_uint_eq(got_len, n);
    ck_assert(memcmp(got, msg, n) == 0);
    ck_assert_int_eq(got[n], '\0');
    /* The random prefix makes every ciphertext different. */
    ck_assert_int_eq(crypto_tp_encrypt(key, msg, n, "client-42", &enc2), 0);
    ck_assert_str_ne(enc, enc2);
    free(got);
    free(enc);
    free(enc2);
    free(ct);
    free(msg);
}
END_TEST

/* Decrypt expecting failure: returns the code and asserts nothing was output. */
static int tp_fail(const uint8_t key[32], const char *b64, const char *client, char *err,
                   size_t errlen)
{
    char *msg = NULL;
    size_t len = 12345;
    int rc = crypto_tp_decrypt(key, b64, strlen(b64), client, &msg, &len, err, errlen);

    ck_assert_msg(rc != 0, "decrypt unexpectedly succeeded");
    ck_assert_ptr_null(msg);
    ck_assert_uint_eq(len, 12345);
    ck_assert_msg(err[0] != '\0', "no reason for %d", rc);
    return rc;
}

/* Tampered, truncated and malformed ciphertexts are refused. */
START_TEST(test_tp_tamper)
{
    uint8_t key[32], *ct;
    size_t ct_len;
    char *enc, *bad, err[256];
    int rc;

    ck_assert_int_eq(crypto_random(key, sizeof(key)), 0);
    ck_assert_int_eq(crypto_tp_encrypt(key, "{\"event\":\"x\"}", 13, "cid", &enc), 0);
    ck_assert_int_eq(crypto_b64_decode(enc, strlen(enc), &ct, &ct_len), 0);

    /* A flipped byte in the last block turns it into noise. */
    ct[ct_len - 5] ^= 0x80;
    bad = ossl_b64(ct, ct_len);
    err[0] = '\0';
    rc = tp_fail(key, bad, "cid", err, sizeof(err));
    ck_assert_msg(rc == -EINVAL || rc == -EPERM, "got %d", rc);
    free(bad);
    ct[ct_len - 5] ^= 0x80;

    /* CBC lets the previous block flip the pad byte itself: bad padding. */
    ct[ct_len - 17] ^= 0x40;
    bad = ossl_b64(ct, ct_len);
    err[0] = '\0';
    ck_assert_int_eq(tp_fail(key, bad, "cid", err, sizeof(err)), -EINVAL);
    ck_assert_msg(strstr(err, "padding") != NULL, "%s", err);
    free(bad);
    ct[ct_len - 17] ^= 0x40;

    /* Truncated: not a multiple of 16; a whole block less. */
    bad = ossl_b64(ct, ct_len - 8);
    err[0] = '\0';
    ck_assert_int_eq(tp_fail(key, bad, "cid", err, sizeof(err)), -EINVAL);
    ck_assert_msg(strstr(err, "multiple of 16") != NULL, "%s", err);
    free(bad);
    bad = ossl_b64(ct, ct_len - 16);
    err[0] = '\0';
    rc = tp_fail(key, bad, "cid", err, sizeof(err));
    ck_assert_msg(rc == -EINVAL || rc == -EPERM, "got %d", rc);
    free(bad);

    /* Not base64, or empty. */
    err[0] = '\0';
    ck_assert_int_eq(tp_fail(key, "abc$", "cid", err, sizeof(err)), -EINVAL);
    ck_assert_msg(strstr(err, "base64") != NULL, "%s", err);
    bad = wrap_lines(enc, 20);
    err[0] = '\0';
    ck_assert_int_eq(tp_fail(key, bad, "cid", err, sizeof(err)), -EINVAL);
    free(bad);
    err[0] = '\0';
    ck_assert_int_eq(tp_fail(key, "", "cid", err, sizeof(err)), -EINVAL);

    /* Wrong key, wrong client id. */
    err[0] = '\0';
    ck_assert_int_eq(tp_fail(key, enc, "cie", err, sizeof(err)), -EPERM);
    ck_assert_msg(strstr(err, "client id") != NULL, "%s", err);
    err[0] = '\0';
    ck_assert_int_eq(tp_fail(key, enc, "ci", err, sizeof(err)), -EPERM);
    err[0] = '\0';
    ck_assert_int_eq(tp_fail(key, enc, "cidx", err, sizeof(err)), -EPERM);
    key[0] ^= 1;
    err[0] = '\0';
    rc = tp_fail(key, enc, "cid", err, sizeof(err));
    ck_assert_msg(rc == -EINVAL || rc == -EPERM, "got %d", rc);

    /* A NULL err buffer is allowed. */
    key[0] ^= 1;
    {
        char *m = NULL;
        size_t l = 0;

        ck_assert_int_eq(crypto_tp_decrypt(key, enc, strlen(enc), "x", &m, &l, NULL, 0),
                         -EPERM);
    }
    free(ct);
    free(enc);
}
END_TEST

/* AES-256-CBC (IV = key[0..16), no cipher padding) with raw OpenSSL, as base64. */
static char *raw_tp_encrypt(const uint8_t key[32], const uint8_t *pt, size_t len)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    uint8_t *ct = malloc(len + 16);
    int n = 0, f = 0;
    char *out;

    ck_assert(c && ct && len % 16 == 0);
    ck_assert(EVP_EncryptInit_ex(c, EVP_aes_256_cbc(), NULL, key, key) == 1);
    ck_assert(EVP_CIPHER_CTX_set_padding(c, 0) == 1);
    ck_assert(EVP_EncryptUpdate(c, ct, &n, pt, (int)len) == 1);
    ck_assert(EVP_EncryptFinal_ex(c, ct + n, &f) == 1);
    ck_assert_int_eq(n + f, (int)len);
    out = ossl_b64(ct, len);
    EVP_CIPHER_CTX_free(c);
    free(ct);
    return out;
}

/* 16 prefix bytes | declared length | msg | id into buf; returns the length. */
static size_t tp_body(uint8_t *buf, uint32_t declared, const char *msg, const char *id)
{
    size_t m = strlen(msg), n = strlen(id);

    memset(buf, 0x5a, 16);
    buf[16] = (uint8_t)(declared >> 24), buf[17] = (uint8_t)(declared >> 16);
    buf[18] = (uint8_t)(declared >> 8), buf[19] = (uint8_t)declared;
    memcpy(buf + 20, msg, m);
    memcpy(buf + 20 + m, id, n);
    return 20 + m + n;
}

/* Pad buf[0..len) to a multiple of 32 with `value` bytes; returns the new length. */
static size_t tp_pad(uint8_t *buf, size_t len, int value)
{
    size_t pad = 32 - len % 32;

    memset(buf + len, value < 0 ? (int)pad : value, pad);
    return len + pad;
}

/* Decrypt a crafted plaintext; returns rc, err filled. */
static int tp_crafted(const uint8_t key[32], const uint8_t *pt, size_t len, char *err,
                      size_t errlen, char **msg, size_t *msg_len)
{
    char *b64 = raw_tp_encrypt(key, pt, len);
    int rc;

    err[0] = '\0';
    rc = crypto_tp_decrypt(key, b64, strlen(b64), "cid", msg, msg_len, err, errlen);
    free(b64);
    return rc;
}

/* Plaintexts built by hand: the good one decrypts, each broken rule has its reason. */
START_TEST(test_tp_crafted)
{
    uint8_t key[32], pt[256];
    char err[256], *msg = NULL;
    size_t len, msg_len = 0;

    ck_assert_int_eq(crypto_random(key, sizeof(key)), 0);

    /* Sanity: the crafting itself is right. */
    len = tp_pad(pt, tp_body(pt, 5, "hello", "cid"), -1);
    ck_assert_int_eq(tp_crafted(key, pt, len, err, sizeof(err), &msg, &msg_len), 0);
    ck_assert_uint_eq(msg_len, 5);
    ck_assert_str_eq(msg, "hello");
    free(msg);
    msg = NULL;

    /* Declared length beyond the plaintext (also by exactly one byte). */
    len = tp_pad(pt, tp_body(pt, 1000, "hello", "cid"), -1);
    ck_assert_int_eq(tp_crafted(key, pt, len, err, sizeof(err), &msg, &msg_len), -EINVAL);
    ck_assert_msg(strstr(err, "declared length") != NULL, "%s", err);
    len = tp_pad(pt, tp_body(pt, 9, "hello", "cid"), -1);
    ck_assert_int_eq(tp_crafted(key, pt, len, err, sizeof(err), &msg, &msg_len), -EINVAL);
    len = tp_pad(pt, tp_body(pt, 0xffffffffu, "hello", "cid"), -1);
    ck_assert_int_eq(tp_crafted(key, pt, len, err, sizeof(err), &msg, &msg_len), -EINVAL);

    /* Declared length one short: the id becomes "ocid". */
    len = tp_pad(pt, tp_body(pt, 4, "hello", "cid"), -1);
    ck_assert_int_eq(tp_crafted(key, pt, len, err, sizeof(err), &msg, &msg_len), -EPERM);

    /* Pad byte 0, 33, and pad bytes that disagree. */
    len = tp_pad(pt, tp_body(pt, 5, "hello", "cid"), 0);
    ck_assert_int_eq(tp_crafted(key, pt, len, err, sizeof(err), &msg, &msg_len), -EINVAL);
    ck_assert_msg(strstr(err, "padding") != NULL, "%s", err);
    len = tp_body(pt, 5, "hello", "cid"); /* 28 bytes, then 36 bytes of 33 */
    memset(pt + len, 33, 36);
    ck_assert_int_eq(tp_crafted(key, pt, len + 36, err, sizeof(err), &msg, &msg_len),
                     -EINVAL);
    ck_assert_msg(strstr(err, "padding") != NULL, "%s", err);
    len = tp_pad(pt, tp_body(pt, 5, "hello", "cid"), -1);
    pt[len - 2] ^= 1;
    ck_assert_int_eq(tp_crafted(key, pt, len, err, sizeof(err), &msg, &msg_len), -EINVAL);

    /* PKCS#7 with a 16-byte block (pad 1..16 over an AES-aligned length) is fine
     * when consistent; a full 32-byte pad block is accepted too. */
    len = tp_body(pt, 5, "hello", "cid"); /* 28 bytes */
    memset(pt + len, 4, 4);
    ck_assert_int_eq(tp_crafted(key, pt, len + 4, err, sizeof(err), &msg, &msg_len), 0);
    free(msg);
    msg = NULL;
    len = tp_body(pt, 9, "helloabcd", "cid"); /* 32 bytes: a full pad block follows */
    len = tp_pad(pt, len, -1);
    ck_assert_uint_eq(len, 64);
    ck_assert_int_eq(tp_crafted(key, pt, len, err, sizeof(err), &msg, &msg_len), 0);
    ck_assert_str_eq(msg, "helloabcd");
    free(msg);
    msg = NULL;

    /* Too short to hold the prefix and length. */
    memset(pt, 0x5a, 16);
    memset(pt + 16, 16, 16);
    ck_assert_int_eq(tp_crafted(key, pt, 32, err, sizeof(err), &msg, &msg_len), -EINVAL);
    ck_assert_msg(strstr(err, "too short") != NULL, "%s", err);
    ck_assert_ptr_null(msg);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Digests, comparisons, base64, random                                      */

START_TEST(test_digests)
{
    char h41[41], h65[65], h33[33];

    crypto_sha1_hex("abc", 3, h41);
    ck_assert_str_eq(h41, "a9993e364706816aba3e25717850c26c9cd0d89d");
    crypto_sha1_hex(NULL, 0, h41);
    ck_assert_str_eq(h41, "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    crypto_sha256_hex("abc", 3, h65);
    ck_assert_str_eq(h65,
                     "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    crypto_md5_hex("", 0, 0, h33);
    ck_assert_str_eq(h33, "d41d8cd98f00b204e9800998ecf8427e");
    crypto_md5_hex("", 0, 1, h33);
    ck_assert_str_eq(h33, "D41D8CD98F00B204E9800998ECF8427E");
    crypto_md5_hex("abc", 3, 0, h33);
    ck_assert_str_eq(h33, "900150983cd24fb0d6963f7d28e17f72");
    crypto_md5_hex("abc", 3, 1, h33);
    ck_assert_str_eq(h33, "900150983CD24FB0D6963F7D28E17F72");
    /* RFC 4231 test case 2. */
    crypto_hmac_sha256_hex("Jefe", 4, "what do ya want for nothing?", 28, h65);
    ck_assert_str_eq(h65,
                     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    crypto_hmac_sha256_hex("", 0, "", 0, h65);
    ck_assert_str_eq(h65,
                     "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
    crypto_hmac_sha256_hex(NULL, 0, NULL, 0, h65);
    ck_assert_str_eq(h65,
                     "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}
END_TEST

START_TEST(test_compare)
{
    ck_assert_int_eq(crypto_memeq("abcdef", "abcdef", 6), 1);
    ck_assert_int_eq(crypto_memeq("abcdef", "Abcdef", 6), 0);
    ck_assert_int_eq(crypto_memeq("abcdef", "abcdeF", 6), 0);
    ck_assert_int_eq(crypto_memeq("abcdef", "abcdeF", 5), 1);
    ck_assert_int_eq(crypto_memeq("x", "y", 0), 1);

    ck_assert_int_eq(crypto_hexeq_nocase("0123456789abcdef", "0123456789ABCDEF", 16), 1);
    ck_assert_int_eq(crypto_hexeq_nocase("0123456789abcdef", "0123456789abcdef", 16), 1);
    ck_assert_int_eq(crypto_hexeq_nocase("0123456789abcdef", "1123456789abcdef", 16), 0);
    ck_assert_int_eq(crypto_hexeq_nocase("0123456789abcdef", "0123456789abcdee", 16), 0);
    ck_assert_int_eq(crypto_hexeq_nocase("0123456789abcdef", "0123456789abcdeF", 15), 1);
    ck_assert_int_eq(crypto_hexeq_nocase("Zz", "zZ", 2), 1);
    /* Only letters fold: '@' / '`', '[' / '{', '0' / 0x10 and non-ASCII stay apart. */
    ck_assert_int_eq(crypto_hexeq_nocase("@", "`", 1), 0);
    ck_assert_int_eq(crypto_hexeq_nocase("[", "{", 1), 0);
    ck_assert_int_eq(crypto_hexeq_nocase("0", "\x10", 1), 0);
    ck_assert_int_eq(crypto_hexeq_nocase("\xc1", "\xe1", 1), 0);
    ck_assert_int_eq(crypto_hexeq_nocase("", "", 0), 1);
}
END_TEST

/* Decode that must succeed, compared with the expected bytes. */
static void b64_ok(const char *in, const char *want, size_t want_len)
{
    uint8_t *out = NULL;
    size_t n = 0;

    ck_assert_msg(crypto_b64_decode(in, strlen(in), &out, &n) == 0, "'%s' rejected", in);
    ck_assert_uint_eq(n, want_len);
    ck_assert(memcmp(out, want, n) == 0);
    ck_assert_int_eq(out[n], 0);
    free(out);
}

START_TEST(test_base64)
{
    static const char *bad[] = {"Zg=",  "Zg",   "Z===", "=Zg=",     "Zm9v\n", "Zm 9v",
                                "Zm9-", "Zm9_", "Zm=v", "Zg==Zg==", "Zm9v=",  "Zg.="};
    uint8_t data[70], *out = (uint8_t *)"untouched";
    size_t i, n = 99;
    char *enc;

    /* RFC 4648 section 10. */
    b64_ok("", "", 0);
    b64_ok("Zg==", "f", 1);
    b64_ok("Zm8=", "fo", 2);
    b64_ok("Zm9v", "foo", 3);
    b64_ok("Zm9vYmFy", "foobar", 6);
    /* Non-canonical trailing bits are accepted (documented choice). */
    b64_ok("Zh==", "f", 1);
    b64_ok("Zm9=", "fo", 2);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_msg(crypto_b64_decode(bad[i], strlen(bad[i]), &out, &n) == -EINVAL,
                      "'%s' accepted", bad[i]);
        ck_assert_uint_eq(n, 99);
    }
    ck_assert_int_eq(crypto_b64_decode("Zm9v", 3, &out, &n), -EINVAL);

    enc = crypto_b64_encode("foobar", 6);
    ck_assert_str_eq(enc, "Zm9vYmFy");
    free(enc);
    enc = crypto_b64_encode("fooba", 5);
    ck_assert_str_eq(enc, "Zm9vYmE=");
    free(enc);
    enc = crypto_b64_encode("", 0);
    ck_assert_str_eq(enc, "");
    free(enc);
    for (i = 0; i < sizeof(data); i++) {
        ck_assert_int_eq(crypto_random(data, i), 0);
        enc = crypto_b64_encode(data, i);
        ck_assert_ptr_nonnull(enc);
        ck_assert_uint_eq(strlen(enc), (i + 2) / 3 * 4);
        ck_assert(strchr(enc, '\n') == NULL);
        b64_ok(enc, (const char *)data, i);
        free(enc);
    }
}
END_TEST

START_TEST(test_random)
{
    uint8_t a[32] = {0}, b[32] = {0}, zero[32] = {0};

    ck_assert_int_eq(crypto_random(a, sizeof(a)), 0);
    ck_assert_int_eq(crypto_random(b, sizeof(b)), 0);
    ck_assert(memcmp(a, zero, 32) != 0);
    ck_assert(memcmp(a, b, 32) != 0);
    ck_assert_int_eq(crypto_random(NULL, 0), 0);
}
END_TEST

/* ------------------------------------------------------------------------ */

/* qsort comparison of C strings. */
static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Collect the *.json files of the vectors directory; 0 when it does not exist. */
static int scan_vectors(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int cap = 0;

    if (!d)
        return 0;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);

        if (n < 6 || strcmp(e->d_name + n - 5, ".json"))
            continue;
        if (vec_count == cap) {
            cap = cap ? 2 * cap : 64;
            vec_files = realloc(vec_files, (size_t)cap * sizeof(*vec_files));
            if (!vec_files)
                abort();
        }
        vec_files[vec_count++] = strdup(e->d_name);
    }
    closedir(d);
    if (vec_files)
        qsort(vec_files, (size_t)vec_count, sizeof(*vec_files), str_cmp);
    return 1;
}

static Suite *crypto_suite(int have_vectors)
{
    Suite *s = suite_create("crypto");
    TCase *tc;

    if (have_vectors) {
        tc = tcase_create("vectors");
        tcase_add_test(tc, test_vectors_cover_kinds);
        tcase_add_loop_test(tc, test_vector, 0, vec_count);
        suite_add_tcase(s, tc);
    }

    tc = tcase_create("keys");
    tcase_add_unchecked_fixture(tc, keys_setup, keys_teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_key_forms_sign_verify, 0, 2);
    tcase_add_loop_test(tc, test_verify_rejects, 0, 2);
    tcase_add_test(tc, test_cert_chain_uses_first);
    tcase_add_test(tc, test_load_rejects);
    tcase_add_test(tc, test_verify_concurrent);
    suite_add_tcase(s, tc);

    tc = tcase_create("tp");
    tcase_add_test(tc, test_tp_key);
    tcase_add_test(tc, test_tp_signature);
    tcase_add_loop_test(tc, test_tp_roundtrip, 0,
                        (int)(sizeof(tp_lengths) / sizeof(tp_lengths[0])));
    tcase_add_test(tc, test_tp_tamper);
    tcase_add_test(tc, test_tp_crafted);
    suite_add_tcase(s, tc);

    tc = tcase_create("primitives");
    tcase_add_test(tc, test_digests);
    tcase_add_test(tc, test_compare);
    tcase_add_test(tc, test_base64);
    tcase_add_test(tc, test_random);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    const char *env = getenv("VECTORS_DIR");
    int have_vectors, failed, i;
    SRunner *sr;

    vec_dir = env && *env ? env : VECTORS_DIR;
    have_vectors = scan_vectors(vec_dir);
    if (!have_vectors) {
        /* The real vectors are part of the suite: without them it fails. */
        fprintf(stderr, "check_crypto: vectors directory %s not found: the real "
                        "platform-signed vectors are required (set VECTORS_DIR)\n",
                vec_dir);
        return EXIT_FAILURE;
    }
    sr = srunner_create(crypto_suite(have_vectors));
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    for (i = 0; i < vec_count; i++)
        free(vec_files[i]);
    free(vec_files);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
