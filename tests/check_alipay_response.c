/*
 * check_alipay_response.c: the Alipay OpenAPI response signature -- the
 * exact-text extraction of the signed member, the sign field, and the
 * verification against real Alipay-signed responses (../shared/vectors).
 */
#include <check.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "providers/alipay/response.h"
#include "wire/crypto.h"

/* The vectors directory: $VECTORS_DIR, else the build-time default. */
static const char *vectors_dir(void)
{
    const char *d = getenv("VECTORS_DIR");

    return d ? d : VECTORS_DIR;
}

/* Read a whole file (NUL-terminated) or NULL. */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;

    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (buf = malloc((size_t)n + 1)) != NULL) {
        if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
            free(buf);
            buf = NULL;
        } else {
            buf[n] = '\0';
        }
    }
    fclose(f);
    return buf;
}

/* Extract a member and compare its text. */
static void expect_content(const char *raw, const char *key, const char *want)
{
    size_t start = 0, len = 0;
    int r = alipay_response_content(raw, strlen(raw), key, &start, &len);

    ck_assert_int_eq(r, 0);
    ck_assert_uint_eq(len, strlen(want));
    ck_assert(memcmp(raw + start, want, len) == 0);
}

/* The member is cut out byte for byte: whitespace, escapes, key order kept. */
START_TEST(content_exact_text)
{
    expect_content("{\"a_response\":{\"x\":\"1\"},\"sign\":\"AA==\"}", "a_response",
                   "{\"x\":\"1\"}");
    expect_content("  {\"sign\":\"s\" , \"a_response\" : { \"u\" : \"http:\\/\\/x\" } }",
                   "a_response", "{ \"u\" : \"http:\\/\\/x\" }");
}
END_TEST

/* Braces and quotes inside strings do not confuse the scanner. */
START_TEST(content_strings_with_braces)
{
    expect_content(
        "{\"a_response\":{\"m\":\"}{\\\"}\",\"n\":[{\"k\":\"]\"}]},\"sign\":\"x\"}",
        "a_response", "{\"m\":\"}{\\\"}\",\"n\":[{\"k\":\"]\"}]}");
}
END_TEST

/* A nested member with the same name is not the top-level one. */
START_TEST(content_nested_same_name)
{
    const char *raw = "{\"w\":{\"a_response\":{\"fake\":1}},\"a_response\":{\"real\":1}}";

    expect_content(raw, "a_response", "{\"real\":1}");
}
END_TEST

/* Ambiguity and absence are errors, never a guess. */
START_TEST(content_errors)
{
    size_t s, l;
    const char *dup = "{\"a_response\":{\"x\":1},\"a_response\":{\"x\":2}}";

    ck_assert_int_eq(alipay_response_content(dup, strlen(dup), "a_response", &s, &l),
                     -EEXIST);
    ck_assert_int_eq(alipay_response_content("{\"b\":{}}", 8, "a_response", &s, &l),
                     -ENOENT);
    ck_assert_int_eq(alipay_response_content("{}", 2, "a_response", &s, &l), -ENOENT);
    ck_assert_int_eq(alipay_response_content("[1]", 3, "a", &s, &l), -EINVAL);
    ck_assert_int_eq(alipay_response_content("{\"a\":{\"x\":1}", 12, "a", &s, &l),
                     -EINVAL);
    ck_assert_int_eq(alipay_response_content("{\"a\":\"str\"}", 11, "a", &s, &l),
                     -EINVAL);
    ck_assert_int_eq(alipay_response_content("{\"a\" {}}", 8, "a", &s, &l), -EINVAL);
    ck_assert_int_eq(
        alipay_response_content("{\"a\":{\"x\":\"unterminated}}", 25, "a", &s, &l),
        -EINVAL);
    ck_assert_int_eq(alipay_response_content("", 0, "a", &s, &l), -EINVAL);
    /* Brackets pair by kind: "{...]" is not an object (found by fuzzing). */
    ck_assert_int_eq(alipay_response_content("{\"a\":{\"x\":[1}]}", 16, "a", &s, &l), -EINVAL);
    ck_assert_int_eq(alipay_response_content("{\"a\":{\"x\":1]}", 14, "a", &s, &l), -EINVAL);
    /* The length bounds the scan: nothing past raw_len is read. */
    ck_assert_int_eq(alipay_response_content("{\"a\":{}}", 6, "a", &s, &l), -EINVAL);
}
END_TEST

/* sign is unescaped; absent is -ENOKEY, twice is -EEXIST. */
START_TEST(sign_field)
{
    char *sign = NULL;
    const char *raw = "{\"a\":{},\"sign\":\"ab\\/cd+==\"}";

    ck_assert_int_eq(alipay_response_sign(raw, strlen(raw), &sign), 0);
    ck_assert_str_eq(sign, "ab/cd+==");
    free(sign);
    ck_assert_int_eq(alipay_response_sign("{\"a\":{}}", 8, &sign), -ENOKEY);
    raw = "{\"sign\":\"a\",\"sign\":\"b\"}";
    ck_assert_int_eq(alipay_response_sign(raw, strlen(raw), &sign), -EEXIST);
    raw = "{\"sign\":1}";
    ck_assert_int_eq(alipay_response_sign(raw, strlen(raw), &sign), -EINVAL);
    raw = "{\"sign\":\"\\u4e2d\"}";
    ck_assert_int_eq(alipay_response_sign(raw, strlen(raw), &sign), -EINVAL);
}
END_TEST

/* A fresh key pair, the private one as PEM text. */
static void keypair(struct crypto_key **pub, struct crypto_key **priv)
{
    EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    BIO *b = BIO_new(BIO_s_mem());
    char *text, err[256];
    long n;

    ck_assert_ptr_nonnull(pk);
    ck_assert_int_eq(PEM_write_bio_PrivateKey(b, pk, NULL, NULL, 0, NULL, NULL), 1);
    n = BIO_get_mem_data(b, &text);
    text = strndup(text, (size_t)n);
    ck_assert_int_eq(crypto_privkey_load(text, priv, err, sizeof(err)), 0);
    free(text);
    BIO_reset(b);
    ck_assert_int_eq(PEM_write_bio_PUBKEY(b, pk), 1);
    n = BIO_get_mem_data(b, &text);
    text = strndup(text, (size_t)n);
    ck_assert_int_eq(crypto_pubkey_load(text, pub, err, sizeof(err)), 0);
    free(text);
    BIO_free(b);
    EVP_PKEY_free(pk);
}

/* Signed, tampered, unsigned, error_response, and the "\/" retry. */
START_TEST(verify_generated)
{
    struct crypto_key *pub = NULL, *priv = NULL;
    const char *content =
        "{\"code\":\"10000\",\"msg\":\"Success\",\"url\":\"https://x/y\"}";
    const char *escaped =
        "{\"code\":\"10000\",\"msg\":\"Success\",\"url\":\"https:\\/\\/x\\/y\"}";
    char raw[2048], *sig = NULL, err[128];

    keypair(&pub, &priv);
    ck_assert_int_eq(
        crypto_rsa_sign_b64(priv, CRYPTO_SHA256, content, strlen(content), &sig), 0);
    snprintf(raw, sizeof(raw), "{\"alipay_trade_query_response\":%s,\"sign\":\"%s\"}",
             content, sig);
    ck_assert_int_eq(alipay_response_verify(raw, strlen(raw), "alipay.trade.query", pub,
                                            CRYPTO_SHA256, err, sizeof(err)),
                     0);
    /* The signer signed "/" but the body carries "\/": the SDKs' retry. */
    snprintf(raw, sizeof(raw), "{\"alipay_trade_query_response\":%s,\"sign\":\"%s\"}",
             escaped, sig);
    ck_assert_int_eq(alipay_response_verify(raw, strlen(raw), "alipay.trade.query", pub,
                                            CRYPTO_SHA256, err, sizeof(err)),
                     0);
    /* error_response when the method's member is absent. */
    snprintf(raw, sizeof(raw), "{\"error_response\":%s,\"sign\":\"%s\"}", content, sig);
    ck_assert_int_eq(alipay_response_verify(raw, strlen(raw), "alipay.trade.query", pub,
                                            CRYPTO_SHA256, err, sizeof(err)),
                     0);
    /* Tampered, wrong hash, unsigned. */
    snprintf(raw, sizeof(raw), "{\"alipay_trade_query_response\":%s ,\"sign\":\"%s\"}",
             "{\"code\":\"10000\",\"msg\":\"Success\",\"url\":\"https://x/z\"}", sig);
    ck_assert_int_eq(alipay_response_verify(raw, strlen(raw), "alipay.trade.query", pub,
                                            CRYPTO_SHA256, err, sizeof(err)),
                     -EBADMSG);
    snprintf(raw, sizeof(raw), "{\"alipay_trade_query_response\":%s,\"sign\":\"%s\"}",
             content, sig);
    ck_assert_int_eq(alipay_response_verify(raw, strlen(raw), "alipay.trade.query", pub,
                                            CRYPTO_SHA1, err, sizeof(err)),
                     -EBADMSG);
    snprintf(raw, sizeof(raw), "{\"alipay_trade_query_response\":%s}", content);
    ck_assert_int_eq(alipay_response_verify(raw, strlen(raw), "alipay.trade.query", pub,
                                            CRYPTO_SHA256, err, sizeof(err)),
                     -ENOKEY);
    free(sig);
    crypto_key_free(pub);
    crypto_key_free(priv);
}
END_TEST

/* Check one response vector file; returns 1 if it was a response vector. */
static int check_vector(const char *path)
{
    char *text = slurp(path), err[256], method[160];
    cJSON *v = text ? cJSON_Parse(text) : NULL, *in;
    const char *kind, *raw, *rkey, *pem, *expected;
    struct crypto_key *key = NULL;
    int r, is_response = 0;

    ck_assert_msg(v != NULL, "cannot parse %s", path);
    kind = cJSON_GetStringValue(cJSON_GetObjectItem(v, "kind"));
    in = cJSON_GetObjectItem(v, "inputs");
    raw = cJSON_GetStringValue(cJSON_GetObjectItem(in, "raw_response"));
    if (kind && strcmp(kind, "alipay_openapi_response") == 0 && raw) {
        is_response = 1;
        rkey = cJSON_GetStringValue(cJSON_GetObjectItem(in, "response_key"));
        pem = cJSON_GetStringValue(cJSON_GetObjectItem(in, "public_key_pem"));
        expected = cJSON_GetStringValue(cJSON_GetObjectItem(v, "expected"));
        ck_assert(rkey && pem && expected && strlen(rkey) > 9);
        snprintf(method, sizeof(method), "%.*s", (int)(strlen(rkey) - 9), rkey);
        ck_assert_int_eq(crypto_pubkey_load(pem, &key, err, sizeof(err)), 0);
        r = alipay_response_verify(raw, strlen(raw), method, key, CRYPTO_SHA256, err,
                                   sizeof(err));
        if (strcmp(expected, "valid") == 0)
            ck_assert_msg(r == 0, "%s: %d %s", path, r, err);
        else
            ck_assert_msg(r == -EBADMSG, "%s: %d, want -EBADMSG", path, r);
        crypto_key_free(key);
    }
    cJSON_Delete(v);
    free(text);
    return is_response;
}

/* Every real Alipay-signed response (and its tampered twin) in the vectors. */
START_TEST(verify_vectors)
{
    DIR *d = opendir(vectors_dir());
    struct dirent *e;
    char path[4096];
    int n = 0;

    /* The real vectors are part of the suite: without them it fails. */
    ck_assert_msg(d != NULL,
                  "cannot open the vectors directory '%s': the real Alipay-signed "
                  "responses are required (set VECTORS_DIR to ../shared/vectors)",
                  vectors_dir());
    while ((e = readdir(d)) != NULL) {
        if (!strstr(e->d_name, ".json"))
            continue;
        snprintf(path, sizeof(path), "%s/%s", vectors_dir(), e->d_name);
        n += check_vector(path);
    }
    closedir(d);
    ck_assert_msg(n >= 10, "only %d response vectors found", n);
}
END_TEST

/* The suite. */
static Suite *alipay_response_suite(void)
{
    Suite *s = suite_create("alipay_response");
    TCase *t = tcase_create("all");

    tcase_add_test(t, content_exact_text);
    tcase_add_test(t, content_strings_with_braces);
    tcase_add_test(t, content_nested_same_name);
    tcase_add_test(t, content_errors);
    tcase_add_test(t, sign_field);
    tcase_add_test(t, verify_generated);
    tcase_add_test(t, verify_vectors);
    tcase_set_timeout(t, 60);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(alipay_response_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
