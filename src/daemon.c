/*
 * daemon.c: wires config, routes, store and HTTP into the running service,
 * swaps configurations on reload, and shuts down in the order that keeps
 * every acknowledged callback: stop accepting, let requests finish, commit
 * the queue, then close connections.
 */
#include "daemon.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "intake/control.h"
#include "intake/http.h"
#include "jobs/jobs.h"
#include "providers/baidu/learned.h"
#include "runtime.h"
#include "store/store.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/util.h"

struct daemon {
    struct runtime_cell rt;
    int rt_ready;
    struct store *store;
    struct jobs *jobs;
    struct control *control;
    struct http *http;
    uint64_t started_ns;
    unsigned reloads;
};

/* Open the store described by the config. */
static int daemon_open_store(struct daemon *d, const struct config *c, char *err,
                             size_t errlen)
{
    struct store_options o = {
        .path = c->store.path,
        .synchronous_full = c->store.synchronous_full,
        .batch_max = c->store.batch_max,
        .queue_max = c->store.queue_max,
        .rejections_keep = c->store.rejections_keep,
    };

    return store_open(&o, &d->store, err, errlen);
}

/* The apps a TP learned (app_keys), before the first callback can need
 * one. A learned app whose deal id a configured app has is noted: the
 * config wins. */
static int daemon_load_learned(struct daemon *d, const struct config *c, char *err,
                               size_t errlen)
{
    const struct config_baidu_app *l;
    char why[320];
    int r = baidu_learned_load(d->store, why, sizeof(why));
    size_t k;

    if (r < 0) {
        snprintf(err, errlen, "%s", why);
        return r;
    }
    if (r > 0)
        log_err("%s: those apps' callbacks are refused until their keys are learned again", why);
    for (k = 0; k < c->n_baidu_apps; k++)
        if ((l = baidu_learned_by_deal(c->baidu_apps[k]->deal_id)) != NULL)
            log_notice("learned app %s has deal %s, which [baidu.app %s] configures: the "
                       "config's keys are used",
                       l->app_id, l->deal_id, c->baidu_apps[k]->name);
    return 0;
}

/* Rows stored before events.app was the Baidu app id hold the dealId:
 * relabel them once from the configuration (design.md: events.app). */
static int daemon_relabel_baidu(struct daemon *d, const struct config *c, char *err,
                                size_t errlen)
{
    const char **deal = calloc(c->n_baidu_apps + 1, sizeof(*deal)),
               **app = calloc(c->n_baidu_apps + 1, sizeof(*app));
    size_t i;
    int r = -ENOMEM;

    for (i = 0; deal && app && i < c->n_baidu_apps; i++) {
        const struct config_baidu_app *a = c->baidu_apps[i];
        deal[i] = a->deal_id;
        app[i] = config_baidu_app_id(a);
    }
    if (deal && app)
        r = store_relabel_baidu_apps(d->store, deal, app, c->n_baidu_apps);
    if (r < 0)
        snprintf(err, errlen, "cannot relabel the app of stored Baidu events: %s",
                 strerror(-r));
    free(deal);
    free(app);
    return r;
}

/* Build everything and start serving. */
int daemon_start(struct config *cfg, int listen_fd, struct daemon **out, char *err,
                 size_t errlen)
{
    struct daemon *d = calloc(1, sizeof(*d));
    struct runtime *rt;
    int r;

    if (!d) {
        config_free(cfg);
        return -ENOMEM;
    }

    d->started_ns = util_now_ns();
    log_set_level(cfg->server.log_level);
    r = runtime_new(cfg, &rt, err, errlen);
    if (r < 0)
        goto fail;
    runtime_cell_init(&d->rt, rt);
    d->rt_ready = 1;
    r = daemon_open_store(d, rt->cfg, err, errlen);
    if (r < 0)
        goto fail;
    r = daemon_relabel_baidu(d, rt->cfg, err, errlen);
    if (r < 0)
        goto fail;
    r = daemon_load_learned(d, rt->cfg, err, errlen);
    if (r < 0)
        goto fail;
    r = jobs_start(d->store, &d->rt, &d->jobs, err, errlen);
    if (r < 0)
        goto fail;
    r = control_start(&d->rt, d->store, d->jobs, rt->cfg->store.path, &d->control, err, errlen);
    if (r < 0)
        goto fail;
    r = http_start(&d->rt, d->store, listen_fd, &d->http, err, errlen);
    if (r < 0)
        goto fail;
    *out = d;
    return 0;
fail:
    daemon_stop(d);
    return r;
}

/* Settings a reload cannot change, described for the operator. */
static void daemon_restart_only(const struct config *a, const struct config *b, char *msg,
                                size_t len)
{
    msg[0] = '\0';
    if (strcmp(a->server.listen, b->server.listen) != 0 ||
        a->server.threads != b->server.threads ||
        a->server.max_connections != b->server.max_connections ||
        a->server.connection_timeout != b->server.connection_timeout)
        snprintf(msg, len,
                 "[server] listen, threads, max_connections and connection_timeout "
                 "take effect only after a restart");
    else if (strcmp(a->store.path, b->store.path) != 0 ||
             a->store.synchronous_full != b->store.synchronous_full ||
             a->store.batch_max != b->store.batch_max ||
             a->store.queue_max != b->store.queue_max)
        snprintf(msg, len, "[store] settings take effect only after a restart");
}

/* The [store] settings a reload applies: rejections_keep. A failure is
 * reported in err (unless err already holds a message), the rest applies. */
static void daemon_reload_store(struct daemon *d, const struct config *a,
                                const struct config *b, char *err, size_t errlen)
{
    unsigned keep = b->store.rejections_keep;
    int r;

    if (a->store.rejections_keep == keep)
        return;
    if ((r = store_set_rejections_keep(d->store, keep)) < 0) {
        if (!err[0])
            snprintf(err, errlen, "[store] rejections_keep stays %u: %s",
                     a->store.rejections_keep, strerror(-r));
        return;
    }
    log_notice("[store] rejections_keep is now %u (the oldest beyond it go with the next "
               "rejection)", keep);
}

/* Reload the config: validate fully, then swap. */
int daemon_reload(struct daemon *d, const char *path, char *err, size_t errlen)
{
    struct config *cfg = NULL;
    struct runtime *rt = NULL, *old;
    int r;

    r = config_load(path, &cfg, err, errlen);
    if (r < 0)
        return r;
    r = runtime_new(cfg, &rt, err, errlen);
    if (r < 0)
        return r;
    old = runtime_swap(&d->rt, rt);
    d->reloads++;
    jobs_reconfigure(d->jobs); /* [openapi] workers, caps and back-off */
    daemon_restart_only(old->cfg, rt->cfg, err, errlen);
    daemon_reload_store(d, old->cfg, rt->cfg, err, errlen);
    log_set_level(rt->cfg->server.log_level);
    runtime_release(old);
    return err[0] ? 1 : 0;
}

/* The writer has looped within the last 10 seconds. */
int daemon_alive(struct daemon *d)
{
    return util_now_ns() - store_heartbeat(d->store) < 10ull * 1000000000ull;
}

const char *daemon_broken(struct daemon *d)
{
    return store_broken(d->store);
}

/* One line for systemd's status. */
void daemon_status(struct daemon *d, char *buf, size_t len)
{
    snprintf(buf, len, "serving; %ld requests in flight, %ld writes queued, store %s",
             http_in_flight(d->http), store_queue_depth(d->store),
             store_ready(d->store) ? "ok" : "FAILING");
}

/* Wait until no request is in flight or the deadline passes. */
static long daemon_wait_idle(struct daemon *d, uint64_t deadline)
{
    long n;

    while ((n = http_in_flight(d->http)) > 0 && util_now_ns() < deadline)
        usleep(10000);
    return n;
}

/* Orderly shutdown. */
int daemon_stop(struct daemon *d)
{
    unsigned timeout;
    long left = 0;

    if (!d)
        return 0;
    timeout = d->rt_ready ? d->rt.cur->cfg->server.drain_timeout : 1;
    if (d->http) {
        http_quiesce(d->http);
        left = daemon_wait_idle(d, util_now_ns() + (uint64_t)timeout * 1000000000ull);
    }
    /* Running queries finish (within their timeout) and record; claimed
     * jobs not started go back to the queue. */
    d->control = control_stop(d->control); /* no operator request after this */
    jobs_stop(d->jobs);
    /* Commits what is queued and resumes every waiting connection. */
    store_stop(d->store);
    if (d->http) {
        daemon_wait_idle(d, util_now_ns() + 2000000000ull);
        d->http = http_stop(d->http);
    }
    d->store = store_close(d->store);
    jobs_free(d->jobs); /* after the store: a commit's wake-up may name it */
    baidu_learned_clear(); /* no request or job holds a learned app now */
    if (d->rt_ready)
        runtime_cell_destroy(&d->rt);
    free(d);
    return (int)left;
}
