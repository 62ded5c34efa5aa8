/*
 * reconcile.h: reconciliation sweeps (design.md "Reconciliation"). A sweep
 * of (app, day) is one job: its worker asks the platform's order list page
 * by page (the page client beside the platform's other queries, e.g.
 * providers/baidu/orderlist.c), hands each page to the store's writer,
 * which compares it with the stored events and records the findings and
 * the next page in one transaction, and holds no store connection while it
 * waits on the network. The daily schedule lives here too.
 */
#ifndef PAYHOOKD_JOBS_RECONCILE_H
#define PAYHOOKD_JOBS_RECONCILE_H

#include <stdint.h>

#include "openapi/query.h"
#include "runtime.h"
#include "store/store.h"

/* The day a sweep covers, in the platform's time. */
struct sweep_day {
    const char *day;        /* YYYY-MM-DD in [reconcile] zone */
    int64_t from_s, to_s;   /* unix seconds: [from, to) */
};

/* One page of an order list: 0 with *recs (in ar) and *n and *last set, or
 * -1 with a set (a retried error). Each paid record carries the event its
 * callback would have stored (hooks not yet chosen). */
typedef int (*sweep_page_fn)(const struct query_env *env, struct query_answer *a,
                             const struct sweep_day *d, int page, struct arena *ar,
                             struct store_sweep_record **recs, size_t *n, int *last);

/* Baidu paymentservice/orderlist (seed document 000, 4.1). */
int baidu_orderlist_page(const struct query_env *env, struct query_answer *a,
                         const struct sweep_day *d, int page, struct arena *ar,
                         struct store_sweep_record **recs, size_t *n, int *last);
/* Baidu's rule: the same totalMoney, and a status that is paid or later. */
enum store_finding baidu_orderlist_judge(const struct store_sweep_record *r,
                                         const struct store_sweep_stored *e, char *detail,
                                         size_t len);

/* The most pages one sweep of a day reads (a million orders at 100 a
 * page): a list that goes on past it is refused, not followed forever. */
#define SWEEP_PAGES_MAX 10000

/* Whether `page` (from 1) of an order list is its last, from what came:
 * `count` rows of the `page_size` asked for, and the list's total_count as
 * the platform wrote it (NULL when absent). A short page is the last; so
 * is a full one that reaches a total_count that is a positive number (the
 * platforms also write "0" or "-" beside full pages: then the pages go
 * on). 1 last, 0 more, -1 a full page past SWEEP_PAGES_MAX. Pure: tested
 * in check_reconcile. */
int reconcile_last_page(int page, size_t count, size_t page_size, const char *total);

/* The job kind of a sweep (query_fn): runs the sweep of env->job's app and
 * day (its context) from the page it is on to the last. */
void reconcile_sweep(const struct query_env *env, struct query_answer *a);

/* "YYYY-MM-DD" valid, and the day's bounds in a zone offset (seconds east
 * of UTC). 0 or -EINVAL. Pure: tested in check_reconcile. */
int reconcile_day_bounds(const char *day, long zone_offset_s, struct sweep_day *out);

/* The day `days_back` days before the one holding unix time now, in the
 * zone, as YYYY-MM-DD. */
void reconcile_day_before(int64_t now_s, long zone_offset_s, int days_back, char out[11]);

/* Queue a sweep of app (a config app's NAME or app id) for day: the job's
 * id. -ENOENT no such app, -EPERM reconcile = no for it, -EINVAL bad day,
 * or a store error. err says why in words. */
int reconcile_start(struct store *s, const struct config *c, const char *app,
                    const char *day, int64_t *job_id, char *err, size_t errlen);

/* The daily schedule: when `at` in `zone` has passed today and today's
 * sweeps were not queued yet (meta reconcile_scheduled; so a start after a
 * missed time catches up), queue the sweeps of every app with reconcile
 * on for the last `days` days, and its open days within give_up_days
 * again. Called by the dispatcher between passes. */
void reconcile_tick(struct store *s, const struct config *c);

#endif
