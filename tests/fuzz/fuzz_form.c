/*
 * fuzz_form.c: fuzzes form_parse (src/wire/form.c) with the default limits, then
 * form_canonical with the Baidu, Alipay V1 and gateway rules, form_get and
 * form_encode. Invariants: every field respects the limits and is
 * NUL-terminated; form_get finds every field (and exactly the fields
 * present); each canonical string equals one built independently here (sort
 * by key bytes, rule applied); form_encode -> form_parse reproduces the same
 * fields in the same order, and so does a form rebuilt with form_add;
 * parsing with small limits succeeds exactly when the fields fit them; a
 * failure always comes with a printable reason.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wire/form.h"
#include "fuzz_util.h"

static const char *const baidu_x[] = {"rsaSign", "sign", "sign_type", NULL};
static const char *const alipay_x[] = {"sign", "sign_type", NULL};
static const char *const gateway_x[] = {"sign", "sign", "sign_type", NULL};
static const struct form_canon_rule rules[] = {
    {baidu_x, 0, NULL, 0},
    {alipay_x, 1, NULL, 0},
    {gateway_x, 1, "&key=fuzz-secret", 16},
    {NULL, 0, NULL, 0},
};
static const char *const probes[] = {"sign", "rsaSign", "app_id", "a", "", "sign_type"};

/* A reason must be non-empty printable ASCII: keys are quoted, never raw. */
static void check_reason(const char *err)
{
    const unsigned char *p = (const unsigned char *)err;

    FUZZ_CHECK(*p != '\0');
    for (; *p; p++)
        FUZZ_CHECK(*p >= 0x20 && *p < 0x7f);
}

/* Whether the field is kept by a canonical rule. */
static int kept(const struct form_field *fd, const struct form_canon_rule *r)
{
    const char *const *x;

    if (r->drop_empty && fd->value_len == 0)
        return 0;
    for (x = r->exclude; x && *x; x++)
        if (strlen(*x) == fd->key_len && memcmp(*x, fd->key, fd->key_len) == 0)
            return 0;
    return 1;
}

/* Key order: bytes, then the shorter key first. */
static int cmp_field(const void *a, const void *b)
{
    const struct form_field *x = *(const struct form_field *const *)a;
    const struct form_field *y = *(const struct form_field *const *)b;
    size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
    int c = memcmp(x->key, y->key, n);

    return c ? c : (x->key_len > y->key_len) - (x->key_len < y->key_len);
}

/* Build the canonical string independently and compare. */
static void check_canonical(const struct form *f, const struct form_canon_rule *r)
{
    size_t n = form_count(f), i, len = 0, o = 0, want_len = 0;
    const struct form_field **v = calloc(n + 1, sizeof(*v));
    char *got = NULL, *want;

    FUZZ_CHECK(v != NULL);
    for (i = 0; i < n; i++)
        v[i] = form_at(f, i);
    qsort(v, n, sizeof(*v), cmp_field);
    for (i = 0; i < n; i++)
        want_len += v[i]->key_len + v[i]->value_len + 2;
    want = malloc(want_len + r->append_len + 1);
    FUZZ_CHECK(want != NULL);
    for (i = 0; i < n; i++) {
        if (!kept(v[i], r))
            continue;
        if (o)
            want[o++] = '&';
        memcpy(want + o, v[i]->key, v[i]->key_len);
        o += v[i]->key_len;
        want[o++] = '=';
        memcpy(want + o, v[i]->value, v[i]->value_len);
        o += v[i]->value_len;
    }
    if (r->append_len)
        memcpy(want + o, r->append, r->append_len);
    o += r->append_len;
    FUZZ_CHECK(form_canonical(f, r, &got, &len) == 0);
    FUZZ_CHECK(len == o && memcmp(got, want, o) == 0 && got[len] == '\0');
    free(got);
    free(want);
    free(v);
}

/* a and b hold the same fields in the same order. */
static void check_same(const struct form *a, const struct form *b)
{
    size_t i;

    FUZZ_CHECK(form_count(a) == form_count(b));
    for (i = 0; i < form_count(a); i++) {
        const struct form_field *x = form_at(a, i), *y = form_at(b, i);
        FUZZ_CHECK(x->key_len == y->key_len && memcmp(x->key, y->key, x->key_len) == 0);
        FUZZ_CHECK(x->value_len == y->value_len &&
                   memcmp(x->value, y->value, x->value_len) == 0);
    }
}

/* Fields are bounded, terminated, and all found by form_get. */
static void check_fields(const struct form *f)
{
    size_t i, j, len;
    const char *v;

    FUZZ_CHECK(form_count(f) <= FORM_DEFAULT_MAX_FIELDS);
    FUZZ_CHECK(form_at(f, form_count(f)) == NULL);
    for (i = 0; i < form_count(f); i++) {
        const struct form_field *fd = form_at(f, i);
        FUZZ_CHECK(fd->key_len > 0 && fd->key_len <= FORM_DEFAULT_MAX_KEY);
        FUZZ_CHECK(fd->value_len <= FORM_DEFAULT_MAX_VALUE);
        FUZZ_CHECK(fd->key[fd->key_len] == '\0' && fd->value[fd->value_len] == '\0');
        FUZZ_CHECK(memchr(fd->key, '\0', fd->key_len) == NULL);
        len = (size_t)-1;
        v = form_get(f, fd->key, &len);
        FUZZ_CHECK(v == fd->value && len == fd->value_len);
    }
    for (j = 0; j < sizeof(probes) / sizeof(probes[0]); j++) {
        const char *want = NULL;
        for (i = 0; i < form_count(f) && !want; i++)
            if (strcmp(form_at(f, i)->key, probes[j]) == 0)
                want = form_at(f, i)->value;
        FUZZ_CHECK(form_get(f, probes[j], NULL) == want);
    }
}

/* Encode, parse again, and compare; a form_add copy encodes the same. */
static void check_round_trip(const struct form *f)
{
    struct form *g = NULL, *h = form_new();
    char *enc = NULL, *enc2 = NULL, err[512] = "";
    size_t len = 0, len2 = 0, i;
    int r;

    FUZZ_CHECK(h != NULL);
    FUZZ_CHECK(form_encode(f, &enc, &len) == 0 && enc[len] == '\0');
    r = form_parse(enc, len, NULL, &g, err, sizeof(err));
    if (r != 0)
        fuzz_die("re-parsing the encoding failed (%d: %s): %s", r, err, enc);
    check_same(f, g);
    for (i = 0; i < form_count(f); i++) {
        const struct form_field *fd = form_at(f, i);
        FUZZ_CHECK(form_add(h, fd->key, fd->key_len, fd->value, fd->value_len) == 0);
    }
    check_same(f, h);
    FUZZ_CHECK(form_encode(h, &enc2, &len2) == 0);
    FUZZ_CHECK(len == len2 && memcmp(enc, enc2, len) == 0);
    free(enc);
    free(enc2);
    form_free(g);
    form_free(h);
}

/* Small limits: success exactly when the default parse's fields fit them. */
static void check_small_limits(const char *body, size_t size, const struct form *f)
{
    const struct form_limits lim = {4, 8, 16};
    struct form *s = NULL;
    char err[512] = "";
    int r = form_parse(body, size, &lim, &s, err, sizeof(err)), fits = f != NULL;
    size_t i;

    for (i = 0; f && i < form_count(f); i++)
        if (i >= lim.max_fields || form_at(f, i)->key_len > lim.max_key ||
            form_at(f, i)->value_len > lim.max_value)
            fits = 0;
    if (r == 0) {
        FUZZ_CHECK(fits);
        check_same(f, s);
    } else {
        FUZZ_CHECK(!fits);
        FUZZ_CHECK(!f || r == -E2BIG);
        check_reason(err);
    }
    form_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *body = fuzz_guarded(data, size);
    struct form *f = NULL;
    char err[512] = "";
    size_t i;
    int r = form_parse(body, size, NULL, &f, err, sizeof(err));

    if (r != 0) {
        FUZZ_CHECK(r == -EINVAL || r == -EEXIST || r == -E2BIG);
        FUZZ_CHECK(f == NULL);
        check_reason(err);
        check_small_limits(body, size, NULL);
        return 0;
    }
    check_fields(f);
    for (i = 0; i < sizeof(rules) / sizeof(rules[0]); i++)
        check_canonical(f, &rules[i]);
    check_round_trip(f);
    check_small_limits(body, size, f);
    form_free(f);
    return 0;
}
