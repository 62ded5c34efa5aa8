/*
 * sample.c: an aggregated gateway's sample payment notification for
 * payhookctl sample (ctl/sample.h): a form signed the way its [gateway NAME]
 * section says (MD5 with a secret, or RSA), the one notify.c verifies, built
 * beside it so that the two change together.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "ctl/sample_int.h"

/* ---- aggregated gateways, [gateway NAME] (protocols.md section 6) ---- */

static const char *const gateway_unique[] = {"out_trade_no", "trade_no", NULL};
static const struct form_spec gateway_spec = {NULL, "TRADE_SUCCESS", FORM_YUAN,
                                              gateway_unique};

/* The [gateway NAME] section of "gateway.NAME", or NULL after a reason. */
static const struct config_gateway *
gateway_find(const char *provider, const struct config *cfg, char *err, size_t errlen)
{
    const char *name = strchr(provider, '.') + 1;
    size_t i;

    if (!cfg) {
        sample_fail(err, errlen, -EINVAL,
                    "%s needs -c CONFIG: its [gateway %s] section says how it signs",
                    provider, name);
        return NULL;
    }
    for (i = 0; i < cfg->n_gateways; i++)
        if (strcmp(cfg->gateways[i]->name, name) == 0)
            return cfg->gateways[i];
    sample_fail(err, errlen, -EINVAL, "%s has no [gateway %s] section", cfg->file, name);
    return NULL;
}

/* The gateway's exclude list ("sign" first, as gateway.c does) and MD5 suffix
 * ("&key=SECRET" or "SECRET"), copied into one block the rule points into. */
static int gateway_rule(struct form_sample *fs, const struct config_gateway *g,
                        const char *secret)
{
    const char *sep = g->sign == GW_SIGN_MD5_KEY ? "&key=" : "";
    size_t n = 0, len = 0, i;
    const char **x;
    char *p;

    while (g->exclude && g->exclude[n])
        len += strlen(g->exclude[n++]) + 1;
    if (secret)
        len += strlen(sep) + strlen(secret) + 1;
    fs->owned_len = (n + 2) * sizeof(*x) + len;
    fs->owned = malloc(fs->owned_len);
    if (!fs->owned)
        return -ENOMEM;
    x = (const char **)(void *)fs->owned;
    p = fs->owned + (n + 2) * sizeof(*x);
    x[0] = "sign";
    for (i = 0; i < n; i++) {
        x[i + 1] = p;
        p = stpcpy(p, g->exclude[i]) + 1;
    }
    x[n + 1] = NULL;
    fs->sign.rule = (struct form_canon_rule){x, g->drop_empty, NULL, 0};
    if (secret) {
        fs->sign.rule.append = p;
        fs->sign.rule.append_len = (size_t)(stpcpy(stpcpy(p, sep), secret) - p);
    }
    return 0;
}

/* Sign the way [gateway NAME] verifies: MD5 with its secret (or --secret) in its
 * hex case, or RSA with --private-key and its rsa_hash. */
static int gateway_signer(struct sample *s, struct form_sample *fs,
                          const struct config_gateway *g, const char *secret, char *err,
                          size_t errlen)
{
    int md5 = g->sign != GW_SIGN_RSA;

    if (md5 && s->key)
        return sample_fail(err, errlen, -EINVAL,
                           "--private-key: [gateway %s] signs with an MD5 secret "
                           "(--secret), not a private key",
                           g->name);
    if (!md5 && secret)
        return sample_fail(err, errlen, -EINVAL,
                           "--secret: [gateway %s] signs with RSA (sign = rsa): give "
                           "--private-key",
                           g->name);
    if (md5 && secret && !*secret)
        return sample_fail(err, errlen, -EINVAL, "--secret: must not be empty");
    if (gateway_rule(fs, g, md5 ? (secret ? secret : g->secret) : NULL) < 0)
        return sample_fail(err, errlen, -ENOMEM, "out of memory");
    fs->sign.field = "sign";
    fs->sign.hash = g->rsa_sha256 ? CRYPTO_SHA256 : CRYPTO_SHA1;
    fs->sign.md5 = md5;
    fs->sign.md5_upper = g->hex_upper;
    fs->sign_type = md5 ? "MD5" : "RSA";
    return 0;
}

/* Notifications of [gateway NAME]: app_id from --app-id or the section. */
static int gateway_prepare(struct sample *s, const struct sample_opts *o,
                           const struct config *cfg, char *err, size_t errlen)
{
    const struct config_gateway *g = gateway_find(o->provider, cfg, err, errlen);
    const char *app_id = o->app_id ? o->app_id : g ? g->app_id : NULL;
    struct form_sample *fs;
    int r;

    if (!g)
        return -EINVAL;
    r = sample_form_prepare(s, o, NULL, NULL, &fs, err, errlen);
    if (r == 0 && app_id)
        r = sample_text("--app-id", app_id, NULL, fs->app, err, errlen);
    if (r == 0)
        r = gateway_signer(s, fs, g, o->gateway.secret, err, errlen);
    return r;
}

/* A channel payment notification; out_trade_no and trade_no vary. */
static int gateway_build(struct sample *s, unsigned index, struct buf *out, char *err,
                         size_t errlen)
{
    const struct form_sample *fs = s->state;
    char id[SAMPLE_ID_MAX + 1], out_no[SAMPLE_ID_MAX + 2], when[24];
    const struct sample_kv kv[] = {
        {"out_trade_no", out_no},
        {"trade_no", id},
        {"pay_time", when},
        {"sign_type", fs->sign_type},
        {"total_amount", fs->money},
        {"trade_status", fs->status},
        {"app_id", fs->app[0] ? fs->app : NULL},
    };

    sample_id_at(&fs->id, index, id);
    snprintf(out_no, sizeof(out_no), "T%s", id);
    sample_cst(s->now, when);
    return sample_form_build(s, kv, ARRAY_SIZE(kv), out, err, errlen);
}

/* The kind, an entry of sample_kinds[] (ctl/sample.c). */
const struct sample_kind sample_gateway_notify = {
    {GATEWAY_ANY, "notify", 1, "/gateway/NAME/notify",
     "payment notification of [gateway NAME], signed as its section says"},
    FORM_TYPE,
    &gateway_spec,
    gateway_prepare,
    gateway_build,
    sample_form_release,
};
