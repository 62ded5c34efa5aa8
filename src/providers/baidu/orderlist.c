/*
 * orderlist.c: the Baidu order list a reconciliation sweep reads (seed
 * document 000, 4.1: GET .../paymentservice/orderlist with the app's
 * access token, status=all, start_time/end_time in unix seconds,
 * current_page from 1 and page_size). Answers {"errno":0,"data":{
 * "total_count", "data":[{order_id, tp_order_id, sub_status,
 * total_money (fen, text), ...}]}}. Each paid order carries the pay
 * notification its callback would have stored, so a missing one can be
 * synthesised under the same dedupe key.
 */
#include "jobs/reconcile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "providers/baidu/openapi.h"
#include "wire/amount.h"
#include "wire/json.h"

#define BO_PATH "/rest/2.0/smartapp/pay/paymentservice/orderlist"
#define BO_PAGE_SIZE 100 /* orders asked for per page */

/* sub_status: 1 unpaid, 2 paid, 3 consumed, 4 refunding, 5 refunded,
 * 6 refund failed, 7 cancelled. Every state from 2 to 6 was paid first. */
static int bo_paid(const char *sub_status)
{
    return strlen(sub_status) == 1 && sub_status[0] >= '2' && sub_status[0] <= '6';
}

/* Paid and not refunded (2 paid, 3 consumed): only such an order becomes a
 * paid event when no callback was stored; one refunded or refunding since
 * must not reach a ledger as money received. */
static int bo_still_paid(const char *sub_status)
{
    return strcmp(sub_status, "2") == 0 || strcmp(sub_status, "3") == 0;
}

/* A member as text in the arena, or NULL when absent. */
static const char *bo_text(struct arena *ar, const cJSON *o, const char *key)
{
    char buf[128];

    return query_text(o, key, buf, sizeof(buf)) == 0 ? arena_strdup(ar, buf) : NULL;
}

/* A text member of the callback's fields, when the list gave it. */
static int bo_field(cJSON *f, const char *name, const char *value)
{
    return !value || cJSON_AddStringToObject(f, name, value);
}

/* The pay notification a paid order's callback would have been: Baidu's
 * field names, as text like the callback's (payMoney and dealId too:
 * a refund audit of the order is decided on them), status 2, Baidu's
 * answer. NULL on ENOMEM. */
static struct store_event *bo_event(const struct config_baidu_app *app, struct arena *ar,
                                    const struct store_sweep_record *r, const char *total,
                                    const char *pay, const char *deal, const cJSON *item)
{
    struct store_event *ev = arena_alloc(ar, sizeof(*ev));
    cJSON *f = cJSON_CreateObject();
    char *fields = NULL, *body = cJSON_PrintUnformatted(item);
    int ok = ev && f && body;

    ok = ok && bo_field(f, "orderId", r->order_id) && bo_field(f, "tpOrderId", r->merchant_order_id) &&
         bo_field(f, "status", "2") && bo_field(f, "totalMoney", total) &&
         bo_field(f, "payMoney", pay) && bo_field(f, "dealId", deal) &&
         bo_field(f, "subStatus", r->status);
    ok = ok && (fields = cJSON_PrintUnformatted(f)) != NULL;
    cJSON_Delete(f);
    if (!ok) {
        free(fields);
        free(body);
        return NULL;
    }
    memset(ev, 0, sizeof(*ev));
    ev->provider = "baidu";
    ev->kind = "pay_notify";
    ev->app = config_baidu_app_id(app);
    ev->dedupe_key = baidu_pay_dedupe_key(ar, r->order_id, "2");
    ev->verified = 1;
    ev->order_id = r->order_id;
    ev->merchant_order_id = r->merchant_order_id;
    ev->has_amount = 1;
    ev->amount_fen = r->amount_fen;
    ev->status = "2";
    ev->remote_addr = "sweep";
    ev->fields = arena_adopt(ar, fields);
    ev->body = arena_adopt(ar, body);
    ev->body_len = strlen(body);
    ev->answer = arena_printf(ar, "{\"errno\":0,\"msg\":\"success\",\"data\":{\"isConsumed\":%u}}",
                              app->is_consumed);
    return ev->dedupe_key && ev->answer ? ev : NULL;
}

/* A listed amount in fen (text of digits), or NULL when absent or "-"
 * (pay_money of an unpaid order); -1 with a set when it is not fen. */
static int bo_fen(struct query_answer *a, struct arena *ar, const cJSON *item, const char *key,
                  const char *order, const char **text, int64_t *fen)
{
    int64_t v;

    *text = bo_text(ar, item, key);
    if (!*text || strcmp(*text, "-") == 0)
        return *text = NULL, 0;
    if (amount_fen_parse(*text, strlen(*text), 0, fen ? fen : &v) < 0)
        return query_set(a, QUERY_ERROR, "order %.40s: %s %.24s is not fen", order, key, *text),
               -1;
    return 0;
}

/* One listed order into a record. 0, or -1 with a set. */
static int bo_record(const struct config_baidu_app *app, struct query_answer *a,
                     struct arena *ar, const cJSON *item, struct store_sweep_record *r)
{
    const char *total, *pay;

    memset(r, 0, sizeof(*r));
    r->order_id = bo_text(ar, item, "order_id");
    r->merchant_order_id = bo_text(ar, item, "tp_order_id");
    r->status = bo_text(ar, item, "sub_status");
    /* an empty order id would be one dedupe key for every such order */
    if (!r->order_id || !r->order_id[0] || !r->status) {
        query_set(a, QUERY_ERROR, "a listed order lacks order_id or sub_status");
        return -1;
    }
    if (bo_fen(a, ar, item, "total_money", r->order_id, &total, &r->amount_fen) < 0 ||
        bo_fen(a, ar, item, "pay_money", r->order_id, &pay, NULL) < 0)
        return -1;
    if (!total) {
        query_set(a, QUERY_ERROR, "order %.40s: no total_money", r->order_id);
        return -1;
    }
    r->has_amount = 1;
    r->paid = bo_paid(r->status);
    if (bo_still_paid(r->status) &&
        !(r->ev = bo_event(app, ar, r, total, pay, bo_text(ar, item, "deal_id"), item))) {
        query_set(a, QUERY_ERROR, "out of memory");
        return -1;
    }
    return 0;
}

/* The records of a page's data; *last when it is the last page. */
static int bo_records(const struct config_baidu_app *app,
                      struct query_answer *a, const cJSON *data, int page, struct arena *ar,
                      struct store_sweep_record **recs, size_t *n, int *last)
{
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(data, "data"), *it;
    char total[24];
    size_t k = 0, count = (size_t)cJSON_GetArraySize(list);
    int end;

    if (!cJSON_IsArray(list))
        return query_set(a, QUERY_ERROR, "answer has no data.data list"), -1;
    if (count > BO_PAGE_SIZE)
        return query_set(a, QUERY_ERROR, "a page of %zu orders (asked for %d)", count,
                         BO_PAGE_SIZE), -1;
    if (!(*recs = arena_alloc(ar, (count ? count : 1) * sizeof(**recs))))
        return query_set(a, QUERY_ERROR, "out of memory"), -1;
    cJSON_ArrayForEach(it, list)
        if (bo_record(app, a, ar, it, &(*recs)[k++]) < 0)
            return -1;
    *n = k;
    end = reconcile_last_page(page, count, BO_PAGE_SIZE,
                              query_text(data, "total_count", total, sizeof(total)) == 0 ? total
                                                                                          : NULL);
    if (end < 0)
        return query_set(a, QUERY_ERROR, "the order list goes on past %d full pages: refused",
                         SWEEP_PAGES_MAX), -1;
    *last = end;
    return 0;
}

int baidu_orderlist_page(const struct query_env *env, struct query_answer *a,
                         const struct sweep_day *d, int page, struct arena *ar,
                         struct store_sweep_record **recs, size_t *n, int *last)
{
    const struct config_baidu_app *app = baidu_query_app(env, a);
    char from[24], to[24], pg[16], size[16];
    cJSON *root = NULL;
    const cJSON *data;
    int r = -1;

    if (!app)
        return -1;
    snprintf(from, sizeof(from), "%lld", (long long)d->from_s);
    snprintf(to, sizeof(to), "%lld", (long long)d->to_s - 1);
    snprintf(pg, sizeof(pg), "%d", page);
    snprintf(size, sizeof(size), "%d", BO_PAGE_SIZE);
    {
        const char *params[] = {"access_token", baidu_query_token(env, app), "status", "all",
                                "start_time", from, "end_time", to, "current_page", pg,
                                "page_size", size, NULL};
        data = baidu_openapi_call(env, a, BO_PATH, params, NULL, &root);
    }
    if (data && !cJSON_IsObject(data))
        query_set(a, QUERY_ERROR, "answer's data is not an object");
    else if (data)
        r = bo_records(app, a, data, page, ar, recs, n, last);
    cJSON_Delete(root);
    return r;
}

enum store_finding baidu_orderlist_judge(const struct store_sweep_record *r,
                                         const struct store_sweep_stored *e, char *detail,
                                         size_t len)
{
    if (e->has_amount && r->has_amount && e->amount_fen != r->amount_fen) {
        snprintf(detail, len, "totalMoney: stored %lld, the platform %lld",
                 (long long)e->amount_fen, (long long)r->amount_fen);
        return FINDING_MISMATCH;
    }
    /* a stored paid notification (2) needs a paid state on the platform;
     * an unpaid one (1) may have been paid or cancelled since */
    if (strcmp(e->status, "2") == 0 && !r->paid) {
        snprintf(detail, len, "status: stored 2 (paid), the platform sub_status %s", r->status);
        return FINDING_MISMATCH;
    }
    return FINDING_MATCHED;
}
