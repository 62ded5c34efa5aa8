/*
 * sample.c: Alipay's sample asynchronous notification for payhookctl sample
 * (ctl/sample.h): a trade_status_sync form signed RSA2, the one notify.c
 * verifies, built beside it so that the two change together.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "ctl/sample_int.h"

/* What Alipay sends (protocols.md section 4): non-standard, on purpose. */
#define ALIPAY_TYPE "application/x-www-form-urlencoded; text/html; charset=utf-8"

/* Constant fields of the sample, as Alipay's documents show them. */
#define ALIPAY_BUYER_ID    "2088102122524333"
#define ALIPAY_BUYER_LOGON "158****1562"
#define ALIPAY_SUBJECT     "payhookd sample order"

/* ---- Alipay asynchronous notification (protocols.md section 4) ------- */

static const char *const alipay_excluded[] = {"sign", "sign_type", NULL};
static const struct form_signer alipay_signer = {
    {alipay_excluded, 1, NULL, 0}, "sign", CRYPTO_SHA256, 0, 0};
static const char *const alipay_unique[] = {"notify_id", NULL};
static const struct form_spec alipay_spec = {&alipay_signer, "TRADE_SUCCESS", FORM_YUAN,
                                             alipay_unique};

/* The [alipay.app] with this app_id, or the first one (app_id NULL), or NULL. */
static const struct config_alipay_app *alipay_app(const struct config *cfg,
                                                  const char *app_id)
{
    size_t i;

    for (i = 0; cfg && i < cfg->n_alipay_apps; i++)
        if (!app_id || strcmp(cfg->alipay_apps[i]->app_id, app_id) == 0)
            return cfg->alipay_apps[i];
    return NULL;
}

/* Notifications of one app: app_id from --app-id or the first [alipay.app],
 * seller_id from that app's section when it sets one. */
static int alipay_prepare(struct sample *s, const struct sample_opts *o,
                          const struct config *cfg, char *err, size_t errlen)
{
    const struct config_alipay_app *app = alipay_app(cfg, o->app_id);
    const char *app_id = o->app_id ? o->app_id : app ? app->app_id : NULL;
    struct form_sample *fs;
    int r = sample_form_prepare(s, o, NULL, NULL, &fs, err, errlen);

    if (r == 0 && !app_id)
        r = sample_fail(
            err, errlen, -EINVAL,
            "--app-id is required (or -c CONFIG with an [alipay.app] section)");
    if (r == 0)
        r = sample_text("--app-id", app_id, NULL, fs->app, err, errlen);
    if (r == 0 && app && app->seller_id && app->seller_id[0])
        r = sample_text("[alipay.app] seller_id", app->seller_id, NULL, fs->seller, err,
                        errlen);
    return r;
}

/* A trade_status_sync notification; notify_id, trade_no and out_trade_no vary. */
static int alipay_build(struct sample *s, unsigned index, struct buf *out, char *err,
                        size_t errlen)
{
    const struct form_sample *fs = s->state;
    char id[SAMPLE_ID_MAX + 1], notify_id[96], trade_no[96], out_no[96];
    char now[24], created[24], paid[24], bills[96];
    const struct sample_kv kv[] = {
        {"notify_time", now},
        {"notify_type", "trade_status_sync"},
        {"notify_id", notify_id},
        {"app_id", fs->app},
        {"auth_app_id", fs->app},
        {"charset", "utf-8"},
        {"version", "1.0"},
        {"sign_type", "RSA2"},
        {"trade_no", trade_no},
        {"out_trade_no", out_no},
        {"buyer_id", ALIPAY_BUYER_ID},
        {"buyer_logon_id", ALIPAY_BUYER_LOGON},
        {"seller_id", fs->seller[0] ? fs->seller : NULL},
        {"trade_status", fs->status},
        {"total_amount", fs->money},
        {"receipt_amount", fs->money},
        {"invoice_amount", fs->money},
        {"buyer_pay_amount", fs->money},
        {"point_amount", "0.00"},
        {"subject", ALIPAY_SUBJECT},
        {"gmt_create", created},
        {"gmt_payment", paid},
        {"fund_bill_list", bills},
    };

    sample_id_at(&fs->id, index, id);
    sample_cst(s->now, now);
    sample_cst(s->now - 9, created);
    sample_cst(s->now - 1, paid);
    /* Shaped like Alipay's: the day (YYYYMMDD) first, then a unique tail. */
    snprintf(notify_id, sizeof(notify_id), "%.4s%.2s%.2s00222%s", now, now + 5, now + 8,
             id);
    snprintf(trade_no, sizeof(trade_no), "%.4s%.2s%.2s22001%s", now, now + 5, now + 8,
             id);
    snprintf(out_no, sizeof(out_no), "M%s", id);
    snprintf(bills, sizeof(bills),
             "[{\"amount\":\"%s\",\"fundChannel\":\"ALIPAYACCOUNT\"}]", fs->money);
    return sample_form_build(s, kv, ARRAY_SIZE(kv), out, err, errlen);
}

/* The kind, an entry of sample_kinds[] (ctl/sample.c). */
const struct sample_kind sample_alipay_notify = {
    {"alipay", "notify", 1, "/alipay/notify",
     "asynchronous trade notification: a form signed RSA2 (SHA256withRSA)"},
    ALIPAY_TYPE,
    &alipay_spec,
    alipay_prepare,
    alipay_build,
    sample_form_release,
};
