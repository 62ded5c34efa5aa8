/*
 * fuzz_tp_envelope.c: fuzzes the Baidu TP push route (src/providers/baidu_tp.c
 * through routes_build and the route's ops->handle): envelope JSON,
 * MsgSignature check, base64 + AES decryption, padding, framing and client
 * id, message JSON, and the event it fills. The first input byte picks how
 * the rest is used, so that the fuzzer gets past the signature check too:
 *   0  the body as is, to a route with allow_plaintext = no
 *   1  the body as is, to a route with allow_plaintext = yes
 *   2  "Nonce\0TimeStamp\0Encrypt": the harness builds the envelope and signs it
 *   3  a message: the harness encrypts it (crypto_tp_encrypt) and signs it
 *   4  a decrypted frame (16 random | length | message | client id | padding):
 *      the harness pads it with zeros to 16 bytes, AES-encrypts and signs it
 * Invariants: a rejection has a 4xx/5xx status, a reason and a body; with
 * allow_plaintext = no nothing unverified is ever stored; a body stored as is
 * (mode 0) carries the MsgSignature recomputed here from its own fields (the
 * seeds are signed with the public demo token); a plain body stored by the
 * other route is marked unverified; a signed push of a JSON object (mode 3)
 * is always stored, verified, with the message as its fields and "baidu.tp:"
 * + SHA-256 of the message as its deduplication key, and a plain body stored
 * unverified (mode 1) likewise with "baidu.tp.plain:"; a stored fields column
 * is always JSON to SQLite (json_valid), which the tp_events view reads.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "wire/crypto.h"
#include "fuzz_util.h"
#include "wire/json.h"
#include "providers/provider.h"

#define TP_PATH   "/baidu/tp/events"
#define CLIENT_ID "demo-client-id"
#define TOKEN     "demo-token"
/* The public demo EncodingAESKey of etc/demo.conf, so seeds can be made with
 * `payhookctl -c etc/demo.conf sample baidu.tp`. */
#define AES_KEY "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"

static struct config *cfg[2]; /* allow_plaintext = no, yes */
static struct routes *routes[2];
static const struct route *route[2];

/* Load a config with [baidu.tp] and find its route. */
static void setup(int plain)
{
    char path[4200], text[1024], err[512];

    snprintf(path, sizeof(path), "%s/tp%d.conf", fuzz_tmpdir(), plain);
    snprintf(text, sizeof(text),
             "[server]\nlisten = 127.0.0.1:8080\n[store]\npath = %s/unused.db\n"
             "[baidu.tp]\npath = " TP_PATH "\nclient_id = " CLIENT_ID "\n"
             "token = " TOKEN "\nencoding_aes_key = " AES_KEY "\nallow_plaintext = %s\n",
             fuzz_tmpdir(), plain ? "yes" : "no");
    fuzz_write_file(path, text, strlen(text));
    if (config_load(path, &cfg[plain], err, sizeof(err)) < 0)
        fuzz_die("config_load: %s", err);
    if (routes_build(cfg[plain], &routes[plain], err, sizeof(err)) < 0)
        fuzz_die("routes_build: %s", err);
    route[plain] = routes_find(routes[plain], TP_PATH);
    if (!route[plain])
        fuzz_die("no route %s", TP_PATH);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    setup(0);
    setup(1);
    return 0;
}

/* An envelope with the correct MsgSignature for these fields; malloc'd. */
static char *envelope(const char *nonce, const char *ts, const char *enc)
{
    cJSON *o = cJSON_CreateObject();
    char sig[41], *text;

    FUZZ_CHECK(o != NULL);
    FUZZ_CHECK(crypto_tp_signature(TOKEN, ts, nonce, enc, sig) == 0);
    FUZZ_CHECK(cJSON_AddStringToObject(o, "Nonce", nonce) &&
               cJSON_AddStringToObject(o, "TimeStamp", ts) &&
               cJSON_AddStringToObject(o, "Encrypt", enc) &&
               cJSON_AddStringToObject(o, "MsgSignature", sig));
    text = cJSON_PrintUnformatted(o);
    FUZZ_CHECK(text != NULL);
    cJSON_Delete(o);
    return text;
}

/* Mode 2: NUL-separated Nonce, TimeStamp and Encrypt (missing ones empty). */
static char *envelope_of_parts(const uint8_t *p, size_t n)
{
    char *s = fuzz_strndup(p, n), *part[3] = {"", "", ""}, *q = s, *env;
    size_t i;

    for (i = 0; i < 3 && q <= s + n; i++) {
        part[i] = q;
        q += strlen(q) + 1;
    }
    env = envelope(part[0], part[1], part[2]);
    free(s);
    return env;
}

/* Mode 3: the message encrypted and framed by crypto_tp_encrypt. */
static char *envelope_of_message(const uint8_t *p, size_t n, const uint8_t key[32])
{
    char *enc = NULL, *env;

    FUZZ_CHECK(crypto_tp_encrypt(key, (const char *)p, n, CLIENT_ID, &enc) == 0);
    env = envelope("fuzz-nonce", "1700000000", enc);
    free(enc);
    return env;
}

/* Mode 4: a whole plaintext frame, zero-padded to the AES block, encrypted here. */
static char *envelope_of_frame(const uint8_t *p, size_t n, const uint8_t key[32])
{
    size_t len = n ? (n + 15) / 16 * 16 : 16;
    uint8_t *pt = calloc(1, len), *ct = malloc(len);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int out = 0, fin = 0;
    char *b64, *env;

    FUZZ_CHECK(pt && ct && ctx);
    if (n)
        memcpy(pt, p, n);
    FUZZ_CHECK(EVP_EncryptInit_ex(ctx, EVP_aes_256_cbc(), NULL, key, key) == 1 &&
               EVP_CIPHER_CTX_set_padding(ctx, 0) == 1 &&
               EVP_EncryptUpdate(ctx, ct, &out, pt, (int)len) == 1 &&
               EVP_EncryptFinal_ex(ctx, ct + out, &fin) == 1);
    b64 = crypto_b64_encode(ct, len);
    FUZZ_CHECK(b64 != NULL);
    env = envelope("fuzz-nonce", "1700000000", b64);
    free(b64);
    free(pt);
    free(ct);
    EVP_CIPHER_CTX_free(ctx);
    return env;
}

/* A rejection is well formed. */
static void check_answer(const struct provider_reply *out)
{
    FUZZ_CHECK(out->status >= 400 && out->status < 600);
    FUZZ_CHECK(out->reason && out->body && out->content_type);
    FUZZ_CHECK(memchr(out->detail, '\0', sizeof(out->detail)) != NULL);
}

/* A stored event is complete, and its message what was (or would be) sent. */
static void check_event(const struct provider_reply *out, const char *msg, size_t msg_len)
{
    const struct store_event *ev = &out->ev;
    char digest[65], key[80];

    FUZZ_CHECK(ev->provider && strcmp(ev->provider, "baidu.tp") == 0);
    FUZZ_CHECK(ev->kind && ev->dedupe_key && ev->fields && ev->body);
    FUZZ_CHECK(ev->answer && strcmp(ev->answer, "success") == 0);
    FUZZ_CHECK(out->fail_status == 503 && out->fail_body && out->answer_type);
    FUZZ_CHECK(out->unverified == !ev->verified);
    if (!fuzz_sqlite_json_valid(ev->fields, strlen(ev->fields)))
        fuzz_die("the fields column is not JSON to SQLite (the tp_events view fails)");
    if (!msg)
        return;
    /* The store binds fields as a C string: it must be the whole message. */
    if (strlen(ev->fields) != msg_len || memcmp(ev->fields, msg, msg_len) != 0)
        fuzz_die("the fields column (%zu bytes as a C string) is not the %s message "
                 "(%zu bytes)",
                 strlen(ev->fields), ev->verified ? "decrypted" : "plain", msg_len);
    FUZZ_CHECK(crypto_sha256_hex(msg, msg_len, digest) == 0);
    snprintf(key, sizeof(key), "%s:%s", ev->verified ? "baidu.tp" : "baidu.tp.plain",
             digest);
    FUZZ_CHECK(strcmp(ev->dedupe_key, key) == 0);
}

/* A stored raw envelope's MsgSignature, recomputed here, matches. */
static void check_authentic(const char *body, size_t len)
{
    cJSON *env = NULL;
    char nonce[4096], ts[4096], err[160], expect[41];
    const char *sig, *enc;

    FUZZ_CHECK(json_parse(body, len, 8, &env, err, sizeof(err)) == 0);
    FUZZ_CHECK(json_text(env, "Nonce", nonce, sizeof(nonce)) >= 0);
    FUZZ_CHECK(json_text(env, "TimeStamp", ts, sizeof(ts)) >= 0);
    sig = json_string(env, "MsgSignature");
    enc = json_string(env, "Encrypt");
    FUZZ_CHECK(sig && enc);
    FUZZ_CHECK(crypto_tp_signature(TOKEN, ts, nonce, enc, expect) == 0);
    FUZZ_CHECK(strlen(sig) == 40 && strcasecmp(sig, expect) == 0);
    cJSON_Delete(env);
}

/* Whether msg is what tp_parse_message accepts: a JSON object, depth <= 8. */
static int is_json_object(const char *msg, size_t len)
{
    cJSON *j = NULL;
    char err[160];
    int ok = json_parse(msg, len, 8, &j, err, sizeof(err)) == 0 && cJSON_IsObject(j);

    cJSON_Delete(j);
    return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const int mode = size ? data[0] % 5 : 0, plain = mode == 1;
    const uint8_t *p = data + (size ? 1 : 0);
    const size_t n = size ? size - 1 : 0;
    const uint8_t *key = cfg[0]->tp.aes_key.key;
    struct arena arena = {0};
    struct provider_request rq = {0};
    struct provider_reply out = {0};
    enum provider_verdict v;
    char *body;

    switch (mode) {
    case 2:
        body = envelope_of_parts(p, n);
        break;
    case 3:
        body = envelope_of_message(p, n, key);
        break;
    case 4:
        body = envelope_of_frame(p, n, key);
        break;
    default:
        body = fuzz_strndup(p, n);
        break;
    }
    rq.path = TP_PATH;
    rq.content_type = "application/json";
    rq.body = body;
    rq.body_len = mode < 2 ? n : strlen(body);
    rq.remote_addr = "192.0.2.1";
    rq.cfg = cfg[plain];
    out.arena = &arena;
    v = route[plain]->ops->handle(route[plain]->state, &rq, &out);
    fuzz_verbose("mode %d: %s %d %s: %s", mode, v == PROVIDER_STORE ? "store" : "answer",
                 out.status, out.reason ? out.reason : "", out.detail);
    if (v == PROVIDER_ANSWER) {
        check_answer(&out);
        FUZZ_CHECK(mode != 3 || !is_json_object((const char *)p, n));
    } else {
        FUZZ_CHECK(v == PROVIDER_STORE);
        FUZZ_CHECK(plain || out.ev.verified == 1); /* allow_plaintext = no */
        if (mode == 0)
            check_authentic(body, n);
        if (mode == 3 || (mode == 1 && !out.ev.verified))
            check_event(&out, mode == 3 ? (const char *)p : body, n);
        else
            check_event(&out, NULL, 0);
    }
    arena_free(&arena);
    free(body);
    return 0;
}
