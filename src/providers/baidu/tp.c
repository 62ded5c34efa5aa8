/*
 * baidu_tp.c: the Baidu third-party-platform message push (protocols.md
 * section 2). An encrypted envelope {Nonce, TimeStamp, Encrypt, MsgSignature}
 * is authenticated by its SHA1 message signature (checked in constant time
 * before anything else is done with it), decrypted with the EncodingAESKey,
 * its client id checked, and the JSON message inside is stored. Answer:
 * the literal body "success".
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire/crypto.h"
#include "wire/json.h"
#include "providers/provider.h"

#define TP_FIELD_MAX  4096 /* longest Nonce/TimeStamp/MsgSignature accepted */
#define TP_MSG_DEPTH  8
#define TP_APP_ID_MAX 32

struct tp_state {
    const struct config_baidu_tp *c;
};

/* What a verified push does in its transaction: keep a ticket (msg, the
 * ticket push) or, with msg NULL, withdraw the app's authorisation. */
struct tp_tx {
    const cJSON *msg;
};

/* The push that says an app's payment service opened. */
#define TP_PAYMENT_PASS "APP_PAYMENT_CREATE_PAYMENT_PASS"

/* The lane of an app's token jobs: one job per app at a time there. */
#define TP_TOKEN_LANE "baidu.tokens"

/* The TP token is fetched again once it has less than this left. */
#define TP_TOKEN_MARGIN_S (24 * 3600)

/* What one push carries once it has been authenticated (or allowed plain). */
struct tp_message {
    cJSON *json;
    const char *text; /* the message JSON as received/decrypted */
    size_t len;
    int verified;
};

static enum provider_verdict tp_handle(const void *state,
                                       const struct provider_request *rq,
                                       struct provider_reply *out);

static const struct route_ops tp_ops = {
    .kind = "tp_push", .accepts = provider_accepts_json, .handle = tp_handle};

/*
 * Keep a ticket push's ticket as the latest one, in the event's
 * transaction; when it is the latest and the TP token is missing or near
 * its expiry, the event brings a job that fetches the token with it.
 * Tickets come every 10 minutes: deciding here, on what is stored, keeps
 * that from becoming a token fetch every 10 minutes.
 */
static int tp_in_tx_ticket(struct store_tx *tx, struct store_event *ev, const struct tp_tx *t)
{
    const char *ticket = json_string(t->msg, "Ticket");
    char ct[32];
    long long create_time = 0;
    int r;

    if (!ticket)
        return 0;
    if (json_text(t->msg, "CreateTime", ct, sizeof(ct)) > 0)
        create_time = strtoll(ct, NULL, 10);
    if ((r = store_tx_set_ticket(tx, ticket, create_time)) <= 0)
        return r;
    if ((r = store_tx_token_fresh(tx, "tp", TP_TOKEN_MARGIN_S)) < 0)
        return r;
    if (r == 0)
        ev->followup = (struct store_followup){
            .kind = "baidu.tp_token", .lane = "baidu", .delay_s = 0};
    return 0;
}

/*
 * UNAUTHORIZED, in the push's transaction: the app's tokens deleted, its
 * queued queries and token jobs failed (learned keys stay, so its
 * callbacks still verify).
 */
static int tp_in_tx_unauthorized(struct store_tx *tx, struct store_event *ev)
{
    static const char why[] = "cancelled: the app withdrew its authorisation (UNAUTHORIZED)";

    if (store_tx_token_delete(tx, ev->app) < 0 ||
        store_tx_jobs_cancel(tx, ev->app, "baidu", why) < 0 ||
        store_tx_jobs_cancel(tx, ev->app, TP_TOKEN_LANE, why) < 0)
        return -EIO;
    return 0;
}

static int tp_in_tx(struct store_tx *tx, struct store_event *ev, void *data)
{
    const struct tp_tx *t = data;

    return t->msg ? tp_in_tx_ticket(tx, ev, t) : tp_in_tx_unauthorized(tx, ev);
}

/* A job of the app's token lane, one queued per (app, kind). */
#define TP_JOB(k) {.kind = (k), .lane = TP_TOKEN_LANE, .once_per_app = 1}

/* The pushes about an app and the jobs they bring, created with the push:
 * an AUTHORIZED code exchanged at once (it lives about 60 s; its own lane
 * keeps it clear of the query backlog), UPDATE_AUTHORIZED refreshing now;
 * and the payment-service events (seed document 000): where the app
 * stands in onboarding and, once the service opened, its keys. Those also
 * for a plain push where allowed (`plain`): their answers come from the
 * platform, and one job per (app, kind) is queued however many ask. */
static const struct {
    const char *event;   /* the event name, or a prefix of it (ending in '_') */
    int plain;
    struct store_followup jobs[2];
} tp_app_events[] = {
    {"AUTHORIZED", 0, {{.kind = "baidu.app_token", .lane = TP_TOKEN_LANE}}},
    {"UPDATE_AUTHORIZED", 0, {TP_JOB("baidu.app_refresh")}},
    {"APP_PAYMENT_CREATE_ACCOUNT_", 1, {TP_JOB("baidu.account_audit")}},
    {"APP_PAYMENT_UPDATE_DEVELOP_CONFIG_", 1, {TP_JOB("baidu.develop_config_audit")}},
    {TP_PAYMENT_PASS, 1, {TP_JOB("baidu.pay_service_audit"), TP_JOB("baidu.getbindservice")}},
    {"APP_PAYMENT_CREATE_PAYMENT_", 1, {TP_JOB("baidu.pay_service_audit")}},
};

/* The entry for an event name, or -1. */
static int tp_app_event(const char *event)
{
    for (size_t i = 0; i < sizeof(tp_app_events) / sizeof(tp_app_events[0]); i++) {
        const char *p = tp_app_events[i].event;
        size_t n = strlen(p);
        if (p[n - 1] == '_' ? strncmp(event, p, n) == 0 : strcmp(event, p) == 0)
            return (int)i;
    }
    return -1;
}

/* Run f in the push's transaction (msg: the ticket push, or NULL). */
static int tp_attach(struct provider_reply *out, const cJSON *msg)
{
    struct tp_tx *t = arena_alloc(out->arena, sizeof(*t));

    if (!t)
        return -ENOMEM;
    t->msg = msg;
    out->ev.in_tx = tp_in_tx;
    out->ev.in_tx_data = t;
    return 0;
}

/* What a push brings along: a verified ticket is kept (and the TP token
 * fetched); UNAUTHORIZED acts in the transaction; the other app events
 * bring their jobs (tp_app_events). 0, or -ENOMEM. */
static int tp_followups(struct provider_reply *out, const cJSON *msg, const char *event,
                        int is_ticket, int verified)
{
    struct store_event *ev = &out->ev;
    int i;

    if (is_ticket)
        return verified ? tp_attach(out, msg) : 0;
    if (!event || !ev->app)
        return 0;
    if (strcmp(event, "UNAUTHORIZED") == 0)
        return verified ? tp_attach(out, NULL) : 0;
    if ((i = tp_app_event(event)) < 0 || (!verified && !tp_app_events[i].plain))
        return 0; /* a plain push changes no token */
    ev->followup = tp_app_events[i].jobs[0];
    ev->more = &tp_app_events[i].jobs[1];
    ev->n_more = tp_app_events[i].jobs[1].kind ? 1 : 0;
    return 0;
}

/* Envelope field as text (strings or integers accepted) into buf: the
 * caller's buffer, so a missing field can never be confused with no memory. */
static const char *tp_field(const cJSON *env, const char *key, char buf[TP_FIELD_MAX])
{
    return json_text(env, key, buf, TP_FIELD_MAX) < 0 ? NULL : buf;
}

/* Refuse for want of memory: the platform retries. */
static enum provider_verdict tp_no_memory(struct provider_reply *out)
{
    return provider_reject(out, 503, "no_memory", "out of memory, retry later",
                           "out of memory");
}

/* One (Token, EncodingAESKey) pair a push may be sealed with. */
struct tp_seal {
    const char *token;
    const uint8_t *aes_key;
};

/* The current pair, then during a switch the next one (token_next and
 * encoding_aes_key_next, each defaulting to the current). Returns how many. */
static int tp_seals(const struct config_baidu_tp *c, struct tp_seal s[2])
{
    s[0] = (struct tp_seal){c->token, c->aes_key.key};
    if (!c->token_next && !c->aes_key_next.set)
        return 1;
    s[1] = (struct tp_seal){c->token_next ? c->token_next : c->token,
                            c->aes_key_next.set ? c->aes_key_next.key : c->aes_key.key};
    return 2;
}

/* The refusal of an envelope whose signature matched but which did not
 * decrypt (r from crypto_tp_decrypt, why its words). */
static enum provider_verdict tp_decrypt_refusal(int r, const char *why,
                                                struct provider_reply *out)
{
    if (r == -EPERM)
        return provider_reject(out, 401, "wrong_client_id", "wrong client id", "%s", why);
    if (r == -ENOMEM || r == -EIO)
        return provider_reject(out, 503, r == -ENOMEM ? "no_memory" : "crypto_failure",
                               "cannot decrypt, retry later", "%s", why);
    return provider_reject(out, 400, "bad_ciphertext", "bad ciphertext", "%s", why);
}

/* Check the envelope's signature and decrypt it into m, with the current
 * pair or (during a switch) the next one. A pair whose token signs the
 * envelope but whose key does not open it gives way to the other; the
 * first such failure is the one reported. */
static enum provider_verdict tp_open_envelope(const struct config_baidu_tp *c,
                                              const cJSON *env,
                                              struct provider_reply *out,
                                              struct tp_message *m)
{
    char nonce_buf[TP_FIELD_MAX], ts_buf[TP_FIELD_MAX];
    const char *nonce = tp_field(env, "Nonce", nonce_buf);
    const char *ts = tp_field(env, "TimeStamp", ts_buf);
    const char *sig = json_string(env, "MsgSignature");
    const char *enc = json_string(env, "Encrypt");
    char expect[41], why[160], first_why[160] = "";
    struct tp_seal seals[2];
    int n = tp_seals(c, seals), i, r, first = 0;
    char *msg = NULL;
    size_t msg_len = 0;

    if (!nonce || !ts || !sig || !enc)
        return provider_reject(out, 400, "missing_field", "missing field",
                               "envelope lacks %s (string)",
                               !nonce ? "Nonce"
                               : !ts  ? "TimeStamp"
                               : !sig ? "MsgSignature"
                                      : "Encrypt");
    for (i = 0; i < n; i++) {
        if (crypto_tp_signature(seals[i].token, ts, nonce, enc, expect) < 0)
            return provider_reject(out, 503, "crypto_failure", "cannot check, retry later",
                                   "SHA1 is unavailable to OpenSSL");
        if (strlen(sig) != 40 || !crypto_hexeq_nocase(sig, expect, 40))
            continue;
        r = crypto_tp_decrypt(seals[i].aes_key, enc, strlen(enc), c->client_id, &msg,
                              &msg_len, why, sizeof(why));
        if (r == 0)
            break;
        if (r == -ENOMEM || r == -EIO)
            return tp_decrypt_refusal(r, why, out);
        if (!first) {
            first = r;
            snprintf(first_why, sizeof(first_why), "%s", why);
        }
    }
    if (i == n)
        return first ? tp_decrypt_refusal(first, first_why, out)
                     : provider_reject(out, 401, "bad_signature", "invalid MsgSignature",
                                       "MsgSignature does not match the token%s",
                                       c->token_next ? " or token_next" : "");
    if (!arena_adopt(out->arena, msg)) /* msg is freed already */
        return tp_no_memory(out);
    m->text = msg;
    m->len = msg_len;
    m->verified = 1;
    return PROVIDER_STORE;
}

/* Parse the message JSON (it must be an object). */
static enum provider_verdict tp_parse_message(struct provider_reply *out,
                                              struct tp_message *m)
{
    char why[160];

    int r = json_parse(m->text, m->len, TP_MSG_DEPTH, &m->json, why, sizeof(why));

    if (r == -ENOMEM)
        return tp_no_memory(out);
    if (r < 0)
        return provider_reject(out, 400, "bad_message", "bad message",
                               "decrypted message: %s", why);
    if (!cJSON_IsObject(m->json))
        return provider_reject(out, 400, "bad_message", "bad message",
                               "message is not a JSON object");
    return PROVIDER_STORE;
}

/* Fill the event from an accepted message. */
static enum provider_verdict tp_event(const struct provider_request *rq,
                                      struct provider_reply *out, struct tp_message *m)
{
    struct store_event *ev = &out->ev;
    const char *event = json_string(m->json, "event");
    char app[TP_APP_ID_MAX], digest[65];
    int is_ticket, has_app;

    is_ticket = !event && (event = json_string(m->json, "MsgType")) != NULL &&
                strcmp(event, "ticket") == 0;
    if (!event)
        event = json_string(m->json, "Event");
    ev->provider = "baidu.tp";
    ev->kind = tp_ops.kind;
    has_app = json_text(m->json, "appId", app, sizeof(app)) > 0;
    ev->app = has_app ? arena_strdup(out->arena, app) : NULL;
    ev->status = event ? arena_strdup(out->arena, event) : NULL;
    if ((event && !ev->status) || (has_app && !ev->app))
        return tp_no_memory(out);
    ev->verified = m->verified;
    /* Same message, same event, however it was (re-)encrypted; an
     * unauthenticated plain body never shares a key with a verified one. */
    if (crypto_sha256_hex(m->verified ? m->text : rq->body,
                          m->verified ? m->len : rq->body_len, digest) < 0)
        return provider_reject(out, 503, "crypto_failure", "cannot store, retry later",
                               "SHA256 is unavailable to OpenSSL");
    ev->dedupe_key = arena_printf(out->arena, "%s:%s",
                                  m->verified ? "baidu.tp" : "baidu.tp.plain", digest);
    ev->fields = m->text;
    ev->body = rq->body;
    ev->body_len = rq->body_len;
    ev->remote_addr = rq->remote_addr;
    ev->answer = "success";
    if (tp_followups(out, m->json, event, is_ticket, m->verified) < 0)
        return tp_no_memory(out);
    out->answer_type = "text/plain; charset=utf-8";
    out->fail_status = 503;
    out->fail_body = "store unavailable, retry later";
    out->unverified = !m->verified;
    return ev->dedupe_key ? PROVIDER_STORE : tp_no_memory(out);
}

/* Handle one push. */
static enum provider_verdict tp_handle(const void *state,
                                       const struct provider_request *rq,
                                       struct provider_reply *out)
{
    const struct tp_state *st = state;
    struct tp_message m = {0};
    enum provider_verdict v;
    cJSON *env = NULL;
    char why[160];

    int r = json_parse(rq->body, rq->body_len, TP_MSG_DEPTH, &env, why, sizeof(why));

    if (r == -ENOMEM)
        return tp_no_memory(out);
    if (r < 0)
        return provider_reject(out, 400, "bad_json", "malformed JSON", "%s", why);
    if (!cJSON_IsObject(env)) {
        cJSON_Delete(env);
        return provider_reject(out, 400, "bad_json", "malformed JSON",
                               "body is not a JSON object");
    }
    if (cJSON_GetObjectItemCaseSensitive(env, "Encrypt")) {
        v = tp_open_envelope(st->c, env, out, &m);
    } else if (st->c->allow_plaintext) {
        m.text = rq->body;
        m.len = rq->body_len;
        v = PROVIDER_STORE;
    } else {
        v = provider_reject(
            out, 401, "plaintext_refused", "encrypted envelope required",
            "body has no Encrypt field and [baidu.tp] allow_plaintext = no");
    }
    cJSON_Delete(env);
    if (v == PROVIDER_STORE)
        v = tp_parse_message(out, &m);
    /* freed with the request: in_tx reads it on the writer thread. On failure
     * arena_own has freed it already, so nothing may read it: refuse. */
    if (m.json && !arena_own(out->arena, m.json, json_free))
        return tp_no_memory(out);
    if (v == PROVIDER_STORE)
        v = tp_event(rq, out, &m);
    return v;
}

/* Register the push route when [baidu.tp] is configured. */
static int tp_load(const struct config *c, struct routes *rt, void **state, char *err,
                   size_t errlen)
{
    struct tp_state *st;
    int r;

    if (!c->tp.enabled)
        return 0;
    st = calloc(1, sizeof(*st));
    if (!st)
        return -ENOMEM;
    st->c = &c->tp;
    r = routes_add(rt, c->tp.path, &tp_ops, st, err, errlen);
    if (r < 0) {
        free(st);
        return r;
    }
    *state = st;
    return 0;
}

/* Free the state. */
static void tp_unload(void *state)
{
    free(state);
}

const struct provider provider_baidu_tp = {
    "baidu.tp",
    tp_load,
    tp_unload,
};
