/*
 * fuzz_alipay_response.c: fuzzes src/providers/alipay/response.c over input that ends
 * right before an unreadable page: alipay_response_content for a method's
 * member and error_response, alipay_response_sign, and
 * alipay_response_verify with a key generated at start. Invariants: a
 * returned extent lies inside the input, starts with '{' and ends with '}';
 * a random input never verifies (only this process holds the key); and when
 * the input has a signed member but no sign, the same input with a correct
 * "sign" member inserted (over the member's exact bytes, and over them with
 * "\/" unescaped when they contain it) must verify.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "providers/alipay/response.h"
#include "wire/crypto.h"
#include "fuzz_util.h"

#define METHOD "alipay.trade.query"
#define MEMBER "alipay_trade_query_response"

static struct crypto_key *pub, *priv;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char *b64 = NULL;

    (void)argc;
    (void)argv;
    fuzz_keypair(1024, &pub, &priv, &b64);
    free(b64);
    return 0;
}

/* An extent that came back: inside the input, '{' ... '}'. */
static void check_extent(int r, size_t size, size_t start, size_t len, const char *raw)
{
    if (r < 0) {
        FUZZ_CHECK(r == -ENOENT || r == -EEXIST || r == -EINVAL);
        return;
    }
    FUZZ_CHECK(start < size && len >= 2 && len <= size - start);
    FUZZ_CHECK(raw[start] == '{');
    if (raw[start + len - 1] != '}')
        fuzz_die("extent [%zu, %zu) ends with '%c', not '}'", start, start + len,
                 raw[start + len - 1]);
}

/* content with every "\/" replaced by "/", as alipay_response_verify retries. */
static char *unescape_slashes(const char *content, size_t len, size_t *out_len)
{
    char *s = malloc(len + 1);
    size_t i, j;

    FUZZ_CHECK(s != NULL);
    for (i = j = 0; i < len; i++) {
        if (content[i] == '\\' && i + 1 < len && content[i + 1] == '/')
            continue;
        s[j++] = content[i];
    }
    *out_len = j;
    return s;
}

/* Insert "sign":"<sig over signed>", after the top-level '{' and verify. */
static void check_signed(const char *raw, size_t size, const char *signed_text,
                         size_t signed_len)
{
    const char *brace = memchr(raw, '{', size);
    char *sig = NULL, *doc, err[256] = "";
    size_t at, n;
    int r;

    FUZZ_CHECK(brace != NULL);
    at = (size_t)(brace - raw) + 1;
    FUZZ_CHECK(crypto_rsa_sign_b64(priv, CRYPTO_SHA256, signed_text, signed_len, &sig) ==
               0);
    n = size + strlen(sig) + 16;
    doc = malloc(n);
    FUZZ_CHECK(doc != NULL);
    memcpy(doc, raw, at);
    n = at + (size_t)sprintf(doc + at, "\"sign\":\"%s\",", sig);
    memcpy(doc + n, raw + at, size - at);
    n += size - at;
    r = alipay_response_verify(doc, n, METHOD, pub, CRYPTO_SHA256, err, sizeof(err));
    if (r != 0)
        fuzz_die("a correctly signed response does not verify: %d (%s)", r, err);
    free(doc);
    free(sig);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *raw = fuzz_guarded(data, size);
    size_t start = 0, len = 0, fixed_len;
    char *sign = NULL, *fixed, err[256] = "";
    int r, rs;

    r = alipay_response_content(raw, size, "error_response", &start, &len);
    check_extent(r, size, start, len, raw);
    r = alipay_response_content(raw, size, MEMBER, &start, &len);
    check_extent(r, size, start, len, raw);
    if (r == -ENOENT) {
        r = alipay_response_content(raw, size, "error_response", &start, &len);
        check_extent(r, size, start, len, raw);
    }
    rs = alipay_response_sign(raw, size, &sign);
    if (rs == 0) {
        FUZZ_CHECK(sign != NULL);
        free(sign);
    } else {
        FUZZ_CHECK(rs == -ENOKEY || rs == -EEXIST || rs == -EINVAL || rs == -ENOMEM);
    }
    r = alipay_response_verify(raw, size, METHOD, pub, CRYPTO_SHA256, err, sizeof(err));
    FUZZ_CHECK(r != 0); /* nobody but us holds the private key */
    FUZZ_CHECK(err[0] != '\0');
    /* A response with its member but unsigned: sign it, and it must verify. */
    r = alipay_response_content(raw, size, MEMBER, &start, &len);
    if (r == -ENOENT)
        r = alipay_response_content(raw, size, "error_response", &start, &len);
    if (r == 0 && rs == -ENOKEY) {
        check_signed(raw, size, raw + start, len);
        if (memmem(raw + start, len, "\\/", 2)) {
            fixed = unescape_slashes(raw + start, len, &fixed_len);
            check_signed(raw, size, fixed, fixed_len);
            free(fixed);
        }
    }
    return 0;
}
