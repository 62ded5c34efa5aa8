/*
 * gateway.c: payment notifications from aggregated payment gateways
 * (protocols.md section 6), one route per [gateway NAME]. Each gateway signs
 * its form with MD5 over the sorted fields and a shared secret (appended as
 * "&key=SECRET" or alone) or with RSA; the rule, the excluded keys and the
 * acknowledgement are configured per gateway. The acknowledgement goes out
 * only once the notification is durably stored; anything else answers FAIL
 * so the gateway resends.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire/amount.h"
#include "wire/crypto.h"
#include "wire/form.h"
#include "providers/provider.h"

#define GW_FAIL      "FAIL"
#define GW_TEXT_TYPE "text/plain; charset=utf-8"
/* Bytes of a callback's value quoted in a rejection detail. */
#define GW_QUOTE_MAX 48

/* One configured gateway, ready to verify: what a route's state points at. */
struct gw_entry {
    const struct config_gateway *g;
    char *provider;       /* "gateway.NAME", the events' provider column */
    const char **exclude; /* "sign" plus the configured exclude words */
    char *append;         /* md5: "&key=SECRET" or "SECRET"; wiped on unload */
    size_t append_len;
    char *append_next;    /* the same with secret_next, or NULL */
    size_t append_next_len;
    unsigned first_delay; /* [openapi] first_delay, for its follow-up jobs */
};

struct gw_state {
    size_t n;
    struct gw_entry e[];
};

/* A field's value when present and non-empty, else NULL. */
static const char *gw_get(const struct form *f, const char *key, size_t *len)
{
    size_t n;
    const char *v = form_get(f, key, &n);

    if (!v || n == 0)
        return NULL;
    if (len)
        *len = n;
    return v;
}

/* MD5 rules: hash the canonical string with one secret appended (append)
 * and compare in constant time. 0 verified, -EBADMSG, -ENOMEM, -EIO (no
 * MD5: FIPS). */
static int gw_md5_matches(const struct gw_entry *e, const struct form *f, const char *append,
                          size_t append_len, const char *sig, size_t sig_len)
{
    struct form_canon_rule rule = {e->exclude, e->g->drop_empty, append, append_len};
    char *canon = NULL, hex[33];
    size_t canon_len;
    int ok, r;

    if (form_canonical(f, &rule, &canon, &canon_len) < 0)
        return -ENOMEM;
    r = crypto_md5_hex(canon, canon_len, 0, hex);
    explicit_bzero(canon, canon_len); /* it ends with the secret */
    free(canon);
    /* A failed digest is all NULs, which a sign of 32 %00 would match:
     * provider_form refuses those already, but this check does not lean on it. */
    if (r < 0)
        return -EIO;
    ok = sig_len == 32 && crypto_hexeq_nocase(hex, sig, 32);
    return ok ? 0 : -EBADMSG;
}

/* The secret, then secret_next during a switch. Returns as gw_md5_matches. */
static int gw_check_md5(const struct gw_entry *e, const struct form *f, const char *sig,
                        size_t sig_len)
{
    int r = gw_md5_matches(e, f, e->append, e->append_len, sig, sig_len);

    if (r == -EBADMSG && e->append_next)
        r = gw_md5_matches(e, f, e->append_next, e->append_next_len, sig, sig_len);
    return r;
}

/* RSA rule: PKCS#1 v1.5 over the canonical string, no secret. Same returns. */
static int gw_check_rsa(const struct gw_entry *e, const struct form *f, const char *sig,
                        size_t sig_len, struct provider_reply *out)
{
    struct form_canon_rule rule = {e->exclude, e->g->drop_empty, NULL, 0};
    enum crypto_hash h = e->g->rsa_sha256 ? CRYPTO_SHA256 : CRYPTO_SHA1;
    int r = provider_verify_form(f, &rule, e->g->public_key, e->g->public_key_next, h, sig,
                                 sig_len, out);

    return r == -ENOMEM ? r : r < 0 ? -EBADMSG : 0;
}

/* Check `sign` by the gateway's rule, or a 401 (503 when it could not be checked). */
static enum provider_verdict gw_verify(const struct gw_entry *e, const struct form *f,
                                       struct provider_reply *out)
{
    size_t len;
    const char *sig = gw_get(f, "sign", &len);
    int r;

    if (!sig)
        return provider_reject(out, 401, "missing_signature", GW_FAIL,
                               "field sign is missing or empty");
    if (e->g->sign == GW_SIGN_RSA)
        r = gw_check_rsa(e, f, sig, len, out);
    else
        r = gw_check_md5(e, f, sig, len);
    if (r == 0)
        return PROVIDER_STORE;
    if (r == -ENOMEM)
        return provider_reject(out, 503, "no_memory", GW_FAIL,
                               "out of memory verifying sign");
    if (r == -EIO)
        return provider_reject(out, 503, "crypto_failure", GW_FAIL,
                               e->g->sign == GW_SIGN_RSA
                                   ? "OpenSSL failed verifying sign"
                                   : "MD5 is unavailable in this OpenSSL (FIPS mode?)");
    return provider_reject(out, 401, "bad_signature", GW_FAIL,
                           "sign does not verify with the %s of [gateway %s]",
                           e->g->sign == GW_SIGN_RSA
                               ? (e->g->public_key_next ? "public_key or public_key_next"
                                                        : "public_key")
                               : (e->g->secret_next ? "secret or secret_next" : "secret"),
                           e->g->name);
}

/* When the gateway has an app_id configured, the callback must carry it,
 * or a 401. */
static enum provider_verdict
gw_merchant_ok(const struct gw_entry *e, const struct form *f, struct provider_reply *out)
{
    size_t len = 0;
    const char *v = form_get(f, "app_id", &len);
    char q[UTIL_ESC_SIZE(GW_QUOTE_MAX)];

    if (!e->g->app_id ||
        (v && len == strlen(e->g->app_id) && strcmp(v, e->g->app_id) == 0))
        return PROVIDER_STORE;
    util_escape(v ? v : "", v ? len : 0, UTIL_ESC_QUOTES, q, sizeof(q));
    return provider_reject(out, 401, "wrong_merchant", GW_FAIL,
                           "app_id '%s' is not the app_id configured for [gateway %s]", q,
                           e->g->name);
}

/* The platform's status: trade_status (Alipay channel), else result_code, else status. */
static const char *gw_status(const struct form *f)
{
    const char *s = gw_get(f, "trade_status", NULL);

    if (!s)
        s = gw_get(f, "result_code", NULL);
    if (!s)
        s = gw_get(f, "status", NULL);
    return s;
}

/* A dedupe field's value: `trade_status` stands for the status stored (see
 * gw_status), so keys made before dedupe_fields existed stay the same. */
static const char *gw_key_get(const struct form *f, const char *key, size_t *len)
{
    const char *v;

    if (strcmp(key, "trade_status") != 0)
        return form_get(f, key, len);
    v = gw_status(f);
    if (v && len)
        *len = strlen(v);
    return v;
}

/* "gateway:NAME" and the dedupe fields' values, so two refunds of one order
 * (same out_trade_no, trade_no and status) differ by out_refund_no or
 * refund_no. The first three parts are always written and later empty ones
 * left out: the keys of notifications without refund fields are the ones
 * stored before dedupe_fields existed, so their redeliveries still match. */
static const char *gw_dedupe_key(const struct gw_entry *e, const struct form *f,
                                 struct provider_reply *out)
{
    char prefix[96];

    snprintf(prefix, sizeof(prefix), "gateway:%s", e->g->name);
    return provider_dedupe_key_by(
        out->arena, prefix, f, (const char *const *)e->g->dedupe_fields, 3, gw_key_get);
}

/* A refund notification: out_refund_no, refund_no or refund_fee present. */
static int gw_is_refund(const struct form *f)
{
    return gw_get(f, "refund_fee", NULL) || gw_get(f, "out_refund_no", NULL) ||
           gw_get(f, "refund_no", NULL);
}

/* Fill the event to store and the answers; the checks have passed. */
static enum provider_verdict gw_event(const struct gw_entry *e,
                                      const struct provider_request *rq,
                                      const struct form *f, struct provider_reply *out)
{
    struct store_event *ev = &out->ev;
    const char *app = gw_get(f, "app_id", NULL);

    ev->provider = e->provider;
    ev->app = app ? app : e->g->name;
    ev->verified = 1;
    ev->order_id = gw_get(f, "trade_no", NULL);
    ev->merchant_order_id = form_get(f, "out_trade_no", NULL);
    ev->status = gw_status(f);
    ev->remote_addr = rq->remote_addr;
    ev->fields = provider_form_json(f, out);
    ev->body = rq->body;
    ev->body_len = rq->body_len;
    ev->dedupe_key = gw_dedupe_key(e, f, out);
    ev->answer = e->g->ack;
    out->answer_type = GW_TEXT_TYPE;
    out->fail_status = 503;
    out->fail_body = GW_FAIL;
    if (!ev->fields || !ev->dedupe_key)
        return provider_reject(out, 503, "no_memory", GW_FAIL, "out of memory");
    return PROVIDER_STORE;
}

/* A gateway's payment notification: parse, verify, check, then store. */
static enum provider_verdict gw_notify(const void *state,
                                       const struct provider_request *rq,
                                       struct provider_reply *out)
{
    const struct gw_entry *e = state;
    struct form *f;

    if (provider_form(rq, out, GW_FAIL, &f) != PROVIDER_STORE)
        return PROVIDER_ANSWER;
    if (gw_verify(e, f, out) != PROVIDER_STORE ||
        gw_merchant_ok(e, f, out) != PROVIDER_STORE)
        return PROVIDER_ANSWER;
    if (!gw_get(f, "out_trade_no", NULL))
        return provider_reject(out, 400, "missing_field", GW_FAIL,
                               "field out_trade_no is missing or empty");
    if (provider_yuan_field(f, "total_amount", &out->ev.amount_fen, &out->ev.has_amount,
                            GW_FAIL, out) != PROVIDER_STORE ||
        provider_yuan_field(f, "refund_fee", &out->ev.refund_fen, &out->ev.has_refund,
                            GW_FAIL, out) != PROVIDER_STORE)
        return PROVIDER_ANSWER;
    if (gw_is_refund(f)) {
        out->ev.kind = "refund_notify";
    } else {
        out->ev.kind = "notify";
        /* payments are confirmed by trade.query, signed with the MD5 secret */
        if (e->g->query && e->g->query_url && e->g->sign != GW_SIGN_RSA)
            out->ev.followup = (struct store_followup){.kind = "gateway.trade_query",
                                                       .lane = e->provider,
                                                       .confirms = 1,
                                                       .delay_s = e->first_delay};
    }
    return gw_event(e, rq, f, out);
}

static const struct route_ops gw_ops = {
    .kind = "notify", .accepts = provider_accepts_form, .handle = gw_notify};

/* The keys left out of the signed string: `sign` always (a signature cannot
 * sign itself), then the configured words. NULL on ENOMEM. */
static const char **gw_exclude(const struct config_gateway *g)
{
    size_t n = 0, i;
    const char **x;

    while (g->exclude && g->exclude[n])
        n++;
    x = calloc(n + 2, sizeof(*x));
    if (!x)
        return NULL;
    x[0] = "sign";
    for (i = 0; i < n; i++)
        x[i + 1] = g->exclude[i];
    return x;
}

/* The text an MD5 rule appends: sep and the secret. 0 or -ENOMEM. */
static int gw_append(const char *sep, const char *secret, char **out, size_t *len)
{
    if (asprintf(out, "%s%s", sep, secret) < 0) {
        *out = NULL;
        return -ENOMEM;
    }
    *len = strlen(*out);
    return 0;
}

/* Build one entry from its section. 0 or -ENOMEM. */
static int gw_entry_init(struct gw_entry *e, const struct config_gateway *g)
{
    const char *sep = g->sign == GW_SIGN_MD5_KEY ? "&key=" : "";

    e->g = g;
    if (asprintf(&e->provider, "gateway.%s", g->name) < 0)
        e->provider = NULL;
    e->exclude = gw_exclude(g);
    if (g->sign != GW_SIGN_RSA &&
        (gw_append(sep, g->secret, &e->append, &e->append_len) < 0 ||
         (g->secret_next &&
          gw_append(sep, g->secret_next, &e->append_next, &e->append_next_len) < 0)))
        return -ENOMEM;
    if (!e->provider || !e->exclude)
        return -ENOMEM;
    return 0;
}

/* Free the state, wiping the copies of the secrets; NULL-safe. */
static void gw_unload(void *state)
{
    struct gw_state *st = state;
    size_t i;

    if (!st)
        return;
    for (i = 0; i < st->n; i++) {
        if (st->e[i].append)
            explicit_bzero(st->e[i].append, st->e[i].append_len);
        if (st->e[i].append_next)
            explicit_bzero(st->e[i].append_next, st->e[i].append_next_len);
        free(st->e[i].append);
        free(st->e[i].append_next);
        free(st->e[i].provider);
        free(st->e[i].exclude);
    }
    free(st);
}

/* Ready entry e for gateway g and add its route; errors name the gateway. */
static int gw_add(struct gw_entry *e, const struct config_gateway *g, struct routes *rt,
                  char *err, size_t errlen)
{
    char msg[256] = "out of memory";
    int r = gw_entry_init(e, g);

    if (r == 0)
        r = routes_add(rt, g->notify_path, &gw_ops, e, msg, sizeof(msg));
    if (r < 0)
        snprintf(err, errlen, "[gateway %s]: %s", g->name, msg);
    return r;
}

/* One entry and one route per [gateway NAME]; no state when none is configured. */
static int gw_load(const struct config *c, struct routes *rt, void **state, char *err,
                   size_t errlen)
{
    struct gw_state *st;
    int r = 0;

    if (c->n_gateways == 0)
        return 0;
    st = calloc(1, sizeof(*st) + c->n_gateways * sizeof(st->e[0]));
    if (!st)
        return -ENOMEM;
    for (st->n = 0; st->n < c->n_gateways && r == 0; st->n++) {
        st->e[st->n].first_delay = c->openapi.first_delay;
        r = gw_add(&st->e[st->n], c->gateways[st->n], rt, err, errlen);
    }
    if (r < 0) {
        gw_unload(st);
        return r;
    }
    *state = st;
    return 0;
}

const struct provider provider_gateway = {
    "gateway",
    gw_load,
    gw_unload,
};
