/*
 * reconcile.c: the sweeps of the platforms' order lists (see reconcile.h).
 * One job per (app, day), run by a worker like any query: it reads the
 * page it is on (a reader, released before the call), asks the platform
 * for that page, and hands the page to the writer, which records the
 * findings and the next page in one transaction -- so an error or a
 * restart resumes at that page, and no page is counted twice.
 */
#include "jobs/reconcile.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "forward/hooks.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/util.h"

/* What a platform's sweep is made of. */
struct sweep_platform {
    const char *job_kind, *lane;
    const char *provider, *kind, *paid_status; /* of the events it compares */
    sweep_page_fn page;
    store_sweep_judge judge;
};

static const struct sweep_platform sweep_platforms[] = {
    {"baidu.orderlist", "baidu", "baidu", "pay_notify", "2", baidu_orderlist_page,
     baidu_orderlist_judge},
};

static const struct sweep_platform *rc_platform(const char *job_kind)
{
    for (size_t i = 0; i < ARRAY_SIZE(sweep_platforms); i++)
        if (strcmp(sweep_platforms[i].job_kind, job_kind) == 0)
            return &sweep_platforms[i];
    return NULL;
}

/* ---- days -------------------------------------------------------------------- */

int reconcile_day_bounds(const char *day, long zone_offset_s, struct sweep_day *out)
{
    struct tm tm = {0}, back;
    int y, m, d;
    char tail;

    if (!day || strlen(day) != 10 || sscanf(day, "%4d-%2d-%2d%c", &y, &m, &d, &tail) != 3 ||
        day[4] != '-' || day[7] != '-' || y < 2000 || y > 9999 || m < 1 || m > 12 || d < 1 ||
        d > 31)
        return -EINVAL;
    tm.tm_year = y - 1900;
    tm.tm_mon = m - 1;
    tm.tm_mday = d;
    out->from_s = (int64_t)timegm(&tm) - zone_offset_s;
    /* 2026-02-30 normalises to March: not a day */
    gmtime_r(&(time_t){out->from_s + zone_offset_s}, &back);
    if (back.tm_mday != d || back.tm_mon != m - 1)
        return -EINVAL;
    out->to_s = out->from_s + 86400;
    out->day = day;
    return 0;
}

void reconcile_day_before(int64_t now_s, long zone_offset_s, int days_back, char out[11])
{
    struct tm tm;
    time_t t = (time_t)(now_s + zone_offset_s - (int64_t)days_back * 86400);

    gmtime_r(&t, &tm);
    /* strftime: the year of a time_t from gmtime_r has four digits here,
     * which snprintf's %04d cannot promise the compiler */
    if (strftime(out, 11, "%Y-%m-%d", &tm) != 10)
        out[0] = '\0';
}

int reconcile_last_page(int page, size_t count, size_t page_size, const char *total)
{
    char *end;
    long long t;

    if (count < page_size)
        return 1;
    if (total && *total >= '0' && *total <= '9') {
        errno = 0;
        t = strtoll(total, &end, 10);
        if (errno == 0 && *end == '\0' && t > 0 && (long long)page * (long long)page_size >= t)
            return 1;
    }
    return page >= SWEEP_PAGES_MAX ? -1 : 0;
}

/* ---- the sweep ----------------------------------------------------------------- */

/* Every hook that takes a synthesised event gets it, born confirmed. */
static int rc_hooks(const struct config *c, struct store_sweep_record *recs, size_t n,
                    struct arena *ar)
{
    for (size_t i = 0; i < n; i++)
        if (recs[i].ev && forward_select_confirmed(c, recs[i].ev, ar) < 0)
            return -ENOMEM;
    return 0;
}

/* Whether the day is past give_up_days (its last sweep, if not reconciled). */
static int rc_give_up(const struct config *c, const struct sweep_day *d)
{
    char oldest[11];

    reconcile_day_before(util_unix_ms() / 1000, c->reconcile.zone_offset,
                         (int)c->reconcile.give_up_days, oldest);
    return strcmp(d->day, oldest) <= 0;
}

/* Fetch and record one page. 1 the sweep ended, 0 more pages, -1 a set. */
static int rc_one_page(const struct query_env *env, struct query_answer *a,
                       const struct sweep_platform *pl, const struct sweep_day *d, int page,
                       long *missing, long *mismatched)
{
    struct arena ar = {0};
    char from[32], to[32];
    struct store_sweep_page sp = {
        .app = env->job->app, .day = d->day, .provider = pl->provider, .kind = pl->kind,
        .paid_status = pl->paid_status, .day_from = from, .day_to = to, .page = page,
        .give_up = rc_give_up(env->cfg, d), .judge = pl->judge};
    int r;

    util_iso8601_at(d->from_s * 1000, from);
    util_iso8601_at(d->to_s * 1000, to);
    if (pl->page(env, a, d, page, &ar, &sp.recs, &sp.n, &sp.last) < 0) {
        arena_free(&ar);
        return -1;
    }
    if (rc_hooks(env->cfg, sp.recs, sp.n, &ar) < 0 ||
        (r = store_reconcile_page(env->store, &sp)) < 0) {
        arena_free(&ar);
        query_set(a, QUERY_ERROR, "page %d of %s could not be recorded; resumes there", page,
                  d->day);
        return -1;
    }
    arena_free(&ar);
    *missing += sp.missing;
    *mismatched += sp.mismatched;
    metrics_reconcile(env->job->app, sp.missing, sp.mismatched,
                      sp.last && !sp.stale ? util_unix_ms() / 1000 : 0);
    if (sp.mismatched)
        log_warning("reconcile %s %s: page %d: %ld stored events disagree with the platform",
                    env->job->app, d->day, page, sp.mismatched);
    if (sp.last && !sp.stale)
        log_notice("reconcile %s %s: %s (%ld missing synthesised, %ld mismatched, %ld unknown "
                   "on the last page)", env->job->app, d->day, sp.state, sp.missing,
                   sp.mismatched, sp.unknown);
    return sp.last || sp.stale;
}

/* A pause between pages that keeps the sweep within [openapi] rate. */
static void rc_pace(const struct config *c)
{
    if (c->openapi.rate) {
        struct timespec ts = {0, (long)(1000000000L / c->openapi.rate)};
        if (c->openapi.rate == 1)
            ts = (struct timespec){1, 0};
        nanosleep(&ts, NULL);
    }
}

void reconcile_sweep(const struct query_env *env, struct query_answer *a)
{
    const struct store_job *j = env->job;
    const struct sweep_platform *pl = rc_platform(j->kind);
    struct sweep_day d;
    long missing = 0, mismatched = 0;
    int page = 0, pages = 0, r = 0;
    char state[16] = "";

    if (!pl || !j->app || !env->store ||
        reconcile_day_bounds(j->context, env->cfg->reconcile.zone_offset, &d) < 0)
        return query_set(a, QUERY_ERROR, "not a sweep job (kind %s, day %.16s)", j->kind,
                         j->context ? j->context : "none");
    while (r == 0) {
        if (env->stopping && __atomic_load_n(env->stopping, __ATOMIC_RELAXED))
            return query_set(a, QUERY_ERROR, "stopping: the sweep resumes at page %d", page);
        if (store_reconcile_next(env->store, j->app, d.day, &page, state, sizeof(state)) <= 0)
            return query_set(a, QUERY_ERROR, "no reconciliations row for %s %s", j->app, d.day);
        if (strcmp(state, "running") != 0)
            break; /* recorded to its end already (a repeat of the last commit) */
        if (pages++)
            rc_pace(env->cfg);
        openapi_call_free(&a->call); /* the last page's exchange is what is kept */
        if ((r = rc_one_page(env, a, pl, &d, page, &missing, &mismatched)) < 0)
            return;
    }
    query_set(a, QUERY_CONFIRMED, "swept %s %s to page %d: %ld missing, %ld mismatched", j->app,
              d.day, page, missing, mismatched);
}

/* ---- starting sweeps ------------------------------------------------------------ */

/* Whether the name is an Alipay app or a gateway: their sweeps are not built. */
static int rc_unbuilt(const struct config *c, const char *app)
{
    size_t i;

    for (i = 0; i < c->n_alipay_apps; i++)
        if (strcmp(c->alipay_apps[i]->name, app) == 0 || strcmp(c->alipay_apps[i]->app_id, app) == 0)
            return 1;
    for (i = 0; i < c->n_gateways; i++)
        if (strcmp(c->gateways[i]->name, app) == 0)
            return 1;
    return 0;
}

int reconcile_start(struct store *s, const struct config *c, const char *app,
                    const char *day, int64_t *job_id, char *err, size_t errlen)
{
    const struct config_baidu_app *b = config_baidu_app_by_id(c, app);
    const struct sweep_platform *pl = &sweep_platforms[0];
    struct sweep_day d;
    int r;

    if (reconcile_day_bounds(day, c->reconcile.zone_offset, &d) < 0)
        return snprintf(err, errlen, "%.16s is not a day YYYY-MM-DD", day), -EINVAL;
    if (!b && rc_unbuilt(c, app))
        return snprintf(err, errlen, "%.64s: sweeps of Alipay and gateway order lists are not "
                        "built yet", app), -EPERM;
    if (!b)
        return snprintf(err, errlen, "no [baidu.app] named %.64s or with that app_id", app),
               -ENOENT;
    if (!b->reconcile)
        return snprintf(err, errlen, "[baidu.app %s] has reconcile = no", b->name), -EPERM;
    r = store_reconcile_begin(s, config_baidu_app_id(b), day,
                              pl->provider, pl->job_kind, pl->lane, job_id);
    if (r < 0)
        snprintf(err, errlen, "the store refused the sweep: %s", strerror(-r));
    return r;
}

/* ---- the daily schedule ---------------------------------------------------------- */

struct rc_tick {
    struct store *s;
    const struct config *c;
    const char *app;
};

static void rc_again(void *data, const char *day)
{
    const struct rc_tick *t = data;
    char err[160];
    int64_t id;

    if (reconcile_start(t->s, t->c, t->app, day, &id, err, sizeof(err)) < 0)
        log_warning("reconcile %s %s: %s", t->app, day, err);
}

/* Today's sweeps of one app: the last `days` days, the open ones again,
 * and those past give_up_days given up. */
static void rc_schedule_app(struct store *s, const struct config *c,
                            const struct config_baidu_app *b, int64_t now_s)
{
    const char *app = config_baidu_app_id(b);
    struct rc_tick t = {s, c, app};
    char day[11], oldest[11];
    unsigned i;

    reconcile_day_before(now_s, c->reconcile.zone_offset, (int)c->reconcile.give_up_days + 1,
                         oldest);
    if (store_reconcile_give_up(s, app, oldest) < 0)
        log_warning("reconcile %s: cannot mark old open days given up", app);
    reconcile_day_before(now_s, c->reconcile.zone_offset, (int)c->reconcile.give_up_days, oldest);
    if (store_reconcile_open_days(s, app, oldest, rc_again, &t) < 0)
        log_warning("reconcile %s: cannot read its open days", app);
    for (i = 1; i <= c->reconcile.days; i++) {
        reconcile_day_before(now_s, c->reconcile.zone_offset, (int)i, day);
        rc_again(&t, day);
    }
}

/* An app whose sweeps run: reconcile = yes and a token in the config. */
static int rc_app_sweeps(const struct config_baidu_app *b)
{
    return b->reconcile && b->access_token && b->access_token[0];
}

void reconcile_tick(struct store *s, const struct config *c)
{
    int64_t now_s = util_unix_ms() / 1000;
    long local = (long)((now_s + c->reconcile.zone_offset) % 86400);
    char today[11], done[16] = "";
    size_t i;

    for (i = 0; i < c->n_baidu_apps; i++)
        if (rc_app_sweeps(c->baidu_apps[i]))
            metrics_reconcile(config_baidu_app_id(c->baidu_apps[i]), 0, 0, 0);
    if (local < (long)c->reconcile.at_minutes * 60)
        return;
    reconcile_day_before(now_s, c->reconcile.zone_offset, 0, today);
    if (store_get_meta(s, "reconcile_scheduled", done, sizeof(done)) < 0 ||
        strcmp(done, today) == 0)
        return;
    for (i = 0; i < c->n_baidu_apps; i++)
        if (rc_app_sweeps(c->baidu_apps[i]))
            rc_schedule_app(s, c, c->baidu_apps[i], now_s);
    if (store_set_meta(s, "reconcile_scheduled", today) < 0)
        log_warning("reconcile: cannot record that today's sweeps were queued");
    else
        log_info("reconcile: the sweeps of %s are queued", today);
}
