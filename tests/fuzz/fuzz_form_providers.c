/*
 * fuzz_form_providers.c: fuzzes the form routes (src/providers/baidu_pay.c:
 * pay, refund audit, refund notification; alipay.c; gateway.c with the
 * md5_key and md5_append rules) through routes_build and each route's
 * ops->handle, with a real store (in a directory made at start) for the
 * refund routes' order lookup. The first input byte b picks the route
 * (b % 6), whether the harness signs the rest of the input correctly before
 * handing it over ((b / 6) % 3: 0 as is, 1 signed, 2 signed another valid
 * way: the other Baidu app's key, Alipay's V2 string, upper-case MD5), and
 * whether an event the handler accepts is then committed to the store
 * ((b / 18) % 2), running the in-transaction decisions (refund audits).
 * Invariants: a rejection has a 4xx/5xx status, a reason and a body; an
 * unsigned input is never stored; a correctly signed one is never refused
 * for its signature; a stored event is complete, its fields column is a
 * JSON object (to cJSON and to SQLite's json_valid) with one member per
 * form field; a commit never fails.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "wire/crypto.h"
#include "wire/form.h"
#include "fuzz_util.h"
#include "providers/provider.h"
#include "store/store.h"

#define DEAL_SHOP   "470000001"
#define DEAL_FIXED  "470000002"
#define ALIPAY_APP  "2021000000000001"
#define SECRET_KEY  "fuzz-secret"
#define SECRET_APP  "fuzz-secret-2"
#define PAID_ORDER  "900001"
#define STORE_RESET 5000 /* commits before the store is started afresh */

enum { R_PAY, R_AUDIT, R_REFUND, R_ALIPAY, R_GW_KEY, R_GW_APPEND, R_COUNT };

static const char *const paths[R_COUNT] = {
    "/baidu/pay/notify", "/baidu/pay/refund-audit", "/baidu/pay/refund-notify",
    "/alipay/notify",    "/gateway/md5/notify",     "/gateway/append/notify",
};

/* The signed strings, as the providers build them. */
static const char *const bp_x[] = {"rsaSign", "sign", "sign_type", NULL};
static const char *const ap_v1_x[] = {"sign", "sign_type", NULL};
static const char *const ap_v2_x[] = {"sign", NULL};
static const char *const gw_key_x[] = {"sign", "sign", "sign_type", NULL};
static const char *const gw_app_x[] = {"sign", "sign", NULL};
static const struct form_canon_rule bp_rule = {bp_x, 0, NULL, 0};
static const struct form_canon_rule ap_v1 = {ap_v1_x, 1, NULL, 0};
static const struct form_canon_rule ap_v2 = {ap_v2_x, 1, NULL, 0};
static const struct form_canon_rule gw_key = {gw_key_x, 1, "&key=" SECRET_KEY,
                                              sizeof("&key=" SECRET_KEY) - 1};
static const struct form_canon_rule gw_app = {gw_app_x, 0, SECRET_APP,
                                              sizeof(SECRET_APP) - 1};

static struct crypto_key *pub[3], *priv[3]; /* Baidu shop, Baidu fixed, Alipay */
static struct config *cfg;
static struct routes *routes;
static const struct route *route[R_COUNT];
static struct store *store;
static char db_path[4200];
static unsigned commits;

/* A completion the harness waits for. */
struct wait {
    pthread_mutex_t m;
    pthread_cond_t c;
    int done;
    enum store_outcome outcome;
    char error[256];
};

/* Writer thread: the event is committed (or not). */
static void on_done(void *data, const struct store_result *res)
{
    struct wait *w = data;

    pthread_mutex_lock(&w->m);
    w->outcome = res->outcome;
    snprintf(w->error, sizeof(w->error), "%s", res->error ? res->error : "");
    w->done = 1;
    pthread_cond_signal(&w->c);
    pthread_mutex_unlock(&w->m);
}

/* Submit an accepted event and wait for its commit; it must not fail. */
static void commit(struct store_event *ev)
{
    struct wait w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, ""};

    if (store_submit(store, ev, on_done, &w) < 0)
        fuzz_die("store_submit refused an event");
    pthread_mutex_lock(&w.m);
    while (!w.done)
        pthread_cond_wait(&w.c, &w.m);
    pthread_mutex_unlock(&w.m);
    if (w.outcome == STORE_FAILED)
        fuzz_die("a verified event could not be committed: %s", w.error);
}

/* The body with one more field, name=value url-encoded, appended. */
static char *append_field(const char *body, size_t len, const char *name,
                          const char *value, size_t *out_len)
{
    struct form *f = form_new();
    char *enc = NULL, *s;
    size_t n = 0;

    FUZZ_CHECK(f && form_add(f, name, strlen(name), value, strlen(value)) == 0);
    FUZZ_CHECK(form_encode(f, &enc, &n) == 0);
    s = malloc(len + n + 2);
    FUZZ_CHECK(s != NULL);
    memcpy(s, body, len);
    s[len] = '&';
    memcpy(s + len + 1, enc, n + 1);
    *out_len = len + 1 + n;
    form_free(f);
    free(enc);
    return s;
}

/* Sign the canonical string of f by rule with key k. */
static char *rsa_sign(const struct form *f, const struct form_canon_rule *rule,
                      const struct crypto_key *k, enum crypto_hash h)
{
    char *canon = NULL, *sig = NULL;
    size_t len = 0;

    FUZZ_CHECK(form_canonical(f, rule, &canon, &len) == 0);
    FUZZ_CHECK(crypto_rsa_sign_b64(k, h, canon, len, &sig) == 0);
    free(canon);
    return sig;
}

/* The key of the app that will check a Baidu callback (see baidu_pay.c). */
static const struct crypto_key *baidu_key(int r, const struct form *f, int variant)
{
    const char *deal = form_get(f, "dealId", NULL), *order = form_get(f, "orderId", NULL);
    char owner[64];

    if (r == R_PAY)
        return priv[deal && strcmp(deal, DEAL_FIXED) == 0];
    if (order && order[0] &&
        store_baidu_order_deal(store, order, owner, sizeof(owner)) == 1)
        return priv[strcmp(owner, DEAL_FIXED) == 0];
    return priv[variant]; /* an unknown order: any configured app's key verifies */
}

/* The body with a correct signature for route r appended; NULL when the
 * input is not a form the provider would get as far as verifying. */
static char *sign_body(int r, int variant, const char *body, size_t len, size_t *out_len)
{
    struct form *f = NULL;
    char *sig = NULL, *s, hex[33];
    const char *t;
    size_t canon_len;
    enum crypto_hash h = CRYPTO_SHA256;

    if (form_parse(body, len, NULL, &f, NULL, 0) < 0)
        return NULL;
    switch (r) {
    case R_ALIPAY:
        t = form_get(f, "sign_type", NULL);
        if (t && strcmp(t, "RSA") == 0)
            h = CRYPTO_SHA1;
        sig = rsa_sign(f, variant ? &ap_v2 : &ap_v1, priv[2], h);
        s = append_field(body, len, "sign", sig, out_len);
        break;
    case R_GW_KEY:
    case R_GW_APPEND:
        FUZZ_CHECK(
            form_canonical(f, r == R_GW_KEY ? &gw_key : &gw_app, &sig, &canon_len) == 0);
        FUZZ_CHECK(crypto_md5_hex(sig, canon_len, variant, hex) == 0);
        s = append_field(body, len, "sign", hex, out_len);
        break;
    default:
        sig = rsa_sign(f, &bp_rule, baidu_key(r, f, variant), CRYPTO_SHA1);
        s = append_field(body, len, "rsaSign", sig, out_len);
        break;
    }
    free(sig);
    form_free(f);
    return s;
}

/* Open the store afresh and commit a paid order, so refunds find their app. */
static void store_start(void)
{
    const char *pay = "dealId=" DEAL_SHOP "&orderId=" PAID_ORDER "&tpOrderId=t1&status=2"
                      "&totalMoney=1000&payMoney=1000&userId=1";
    struct store_options o = {
        .path = db_path, .synchronous_full = 0, .batch_max = 64, .queue_max = 1024,
        .rejections_keep = 100};
    struct provider_request rq = {0};
    struct provider_reply out = {0};
    struct arena arena = {0};
    char err[512], *body;
    size_t len;

    if (store_open(&o, &store, err, sizeof(err)) < 0)
        fuzz_die("store_open: %s", err);
    body = sign_body(R_PAY, 0, pay, strlen(pay), &len);
    rq.path = paths[R_PAY];
    rq.body = body;
    rq.body_len = len;
    rq.remote_addr = "192.0.2.1";
    rq.cfg = cfg;
    rq.store = store;
    out.arena = &arena;
    if (route[R_PAY]->ops->handle(route[R_PAY]->state, &rq, &out) != PROVIDER_STORE)
        fuzz_die("the seed pay notification was refused: %s", out.detail);
    commit(&out.ev);
    arena_free(&arena);
    free(body);
}

/* Close the store and remove its files. */
static void store_end(void)
{
    static const char *const suffix[] = {"", "-wal", "-shm"};
    char p[4300];
    size_t i;

    store = store_close(store);
    for (i = 0; i < 3; i++) {
        snprintf(p, sizeof(p), "%s%s", db_path, suffix[i]);
        unlink(p);
    }
}

/* The config: two Baidu apps, one Alipay app, two MD5 gateways. */
static void setup_config(void)
{
    char path[4200], err[512], *b64[3], *text;
    int i;

    for (i = 0; i < 3; i++)
        fuzz_keypair(1024, &pub[i], &priv[i], &b64[i]);
    snprintf(path, sizeof(path), "%s/forms.conf", fuzz_tmpdir());
    snprintf(db_path, sizeof(db_path), "%s/store.db", fuzz_tmpdir());
    i = asprintf(&text,
                 "[server]\nlisten = 127.0.0.1:8080\n[store]\npath = %s\n"
                 "[baidu.app shop]\ndeal_id = " DEAL_SHOP "\napp_id = 1\n"
                 "platform_public_key = %s\nrefund_audit = auto\n"
                 "[baidu.app fixed]\ndeal_id = " DEAL_FIXED "\n"
                 "platform_public_key = %s\nrefund_audit = approve\nis_consumed = 1\n"
                 "[alipay.app main]\napp_id = " ALIPAY_APP "\nalipay_public_key = %s\n"
                 "seller_id = 2088000000000001\n"
                 "[gateway md5]\nsecret = " SECRET_KEY "\n"
                 "[gateway append]\nsecret = " SECRET_APP "\nsign = md5_append\n"
                 "hex = upper\nexclude = sign\ndrop_empty = no\napp_id = gw-app\n",
                 db_path, b64[0], b64[1], b64[2]);
    if (i < 0)
        fuzz_die("out of memory");
    fuzz_write_file(path, text, strlen(text));
    free(text);
    for (i = 0; i < 3; i++)
        free(b64[i]);
    if (config_load(path, &cfg, err, sizeof(err)) < 0)
        fuzz_die("config_load: %s", err);
    if (routes_build(cfg, &routes, err, sizeof(err)) < 0)
        fuzz_die("routes_build: %s", err);
    for (i = 0; i < R_COUNT; i++)
        if (!(route[i] = routes_find(routes, paths[i])))
            fuzz_die("no route %s", paths[i]);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    setup_config();
    store_start();
    return 0;
}

/* A rejection is well formed. */
static void check_answer(const struct provider_reply *out)
{
    FUZZ_CHECK(out->status >= 400 && out->status < 600);
    FUZZ_CHECK(out->reason && out->body && out->content_type);
    FUZZ_CHECK(memchr(out->detail, '\0', sizeof(out->detail)) != NULL);
}

/* A stored event is complete; its fields are a JSON object, one member a field. */
static void check_event(const struct provider_reply *out,
                        const struct provider_request *rq)
{
    const struct store_event *ev = &out->ev;
    struct form *f = NULL;
    cJSON *j;

    FUZZ_CHECK(ev->provider && ev->kind && ev->app && ev->dedupe_key && ev->fields);
    FUZZ_CHECK(ev->verified == 1 && !out->unverified);
    FUZZ_CHECK(ev->body == rq->body && ev->body_len == rq->body_len);
    FUZZ_CHECK(ev->answer || ev->in_tx); /* a refund audit's answer is decided in_tx */
    FUZZ_CHECK(out->answer_type && out->fail_body && out->fail_status >= 500);
    j = cJSON_Parse(ev->fields);
    if (!j || !cJSON_IsObject(j) ||
        !fuzz_sqlite_json_valid(ev->fields, strlen(ev->fields)))
        fuzz_die("the fields column is not a JSON object: %s", ev->fields);
    FUZZ_CHECK(form_parse(rq->body, rq->body_len, NULL, &f, NULL, 0) == 0);
    FUZZ_CHECK((size_t)cJSON_GetArraySize(j) == form_count(f));
    form_free(f);
    cJSON_Delete(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const int b = size ? data[0] : 0, r = b % R_COUNT, how = b / R_COUNT % 3;
    const int do_commit = b / (R_COUNT * 3) % 2;
    char *raw = fuzz_strndup(data + (size ? 1 : 0), size ? size - 1 : 0), *body = NULL;
    size_t len = size ? size - 1 : 0;
    struct provider_request rq = {0};
    struct provider_reply out = {0};
    struct arena arena = {0};
    enum provider_verdict v;

    if (how)
        body = sign_body(r, how - 1, raw, len, &len);
    rq.path = paths[r];
    rq.content_type = "application/x-www-form-urlencoded";
    rq.body = body ? body : raw;
    rq.body_len = len;
    rq.remote_addr = "192.0.2.1";
    rq.cfg = cfg;
    rq.store = store;
    out.arena = &arena;
    v = route[r]->ops->handle(route[r]->state, &rq, &out);
    fuzz_verbose("%s %s%s: %s %d %s: %s", paths[r], how ? "signed" : "as is",
                 do_commit ? ", commit" : "", v == PROVIDER_STORE ? "store" : "answer",
                 out.status, out.reason ? out.reason : "", out.detail);
    if (v == PROVIDER_ANSWER) {
        check_answer(&out);
        if (body && strcmp(out.reason, "bad_signature") == 0)
            fuzz_die("a correctly signed body was refused: %s", out.detail);
    } else {
        FUZZ_CHECK(v == PROVIDER_STORE);
        FUZZ_CHECK(body != NULL); /* nobody else holds the keys and secrets */
        check_event(&out, &rq);
        if (do_commit) {
            commit(&out.ev);
            if (++commits % STORE_RESET == 0) {
                store_end();
                store_start();
            }
        }
    }
    arena_free(&arena);
    free(body);
    free(raw);
    return 0;
}
