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

#include "intake/http.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/util.h"

struct daemon {
    pthread_mutex_t lock; /* guards `cur` */
    struct runtime *cur;
    struct store *store;
    struct http *http;
    uint64_t started_ns;
    unsigned reloads;
};

/* A runtime for cfg (taking ownership), with one reference. */
static int daemon_runtime_new(struct config *cfg, struct runtime **out, char *err,
                              size_t errlen)
{
    struct runtime *rt = calloc(1, sizeof(*rt));
    int r;

    if (!rt) {
        config_free(cfg);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    r = routes_build(cfg, &rt->routes, err, errlen);
    if (r < 0) {
        config_free(cfg);
        free(rt);
        return r;
    }
    rt->cfg = cfg;
    atomic_store(&rt->refs, 1);
    *out = rt;
    return 0;
}

/* Take a reference on the current runtime. */
struct runtime *daemon_runtime_acquire(struct daemon *d)
{
    struct runtime *rt;

    pthread_mutex_lock(&d->lock);
    rt = d->cur;
    atomic_fetch_add(&rt->refs, 1);
    pthread_mutex_unlock(&d->lock);
    return rt;
}

/* Drop a reference; the last one frees the generation. */
void daemon_runtime_release(struct runtime *rt)
{
    if (!rt || atomic_fetch_sub(&rt->refs, 1) != 1)
        return;
    routes_free(rt->routes);
    config_free(rt->cfg);
    free(rt);
}

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

/* Build everything and start serving. */
int daemon_start(struct config *cfg, int listen_fd, struct daemon **out, char *err,
                 size_t errlen)
{
    struct daemon *d = calloc(1, sizeof(*d));
    int r;

    if (!d) {
        config_free(cfg);
        return -ENOMEM;
    }
    pthread_mutex_init(&d->lock, NULL);
    d->started_ns = util_now_ns();
    log_set_level(cfg->server.log_level);
    r = daemon_runtime_new(cfg, &d->cur, err, errlen);
    if (r < 0)
        goto fail;
    r = daemon_open_store(d, d->cur->cfg, err, errlen);
    if (r < 0)
        goto fail;
    r = http_start(d, d->store, listen_fd, &d->http, err, errlen);
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

/* Reload the config: validate fully, then swap. */
int daemon_reload(struct daemon *d, const char *path, char *err, size_t errlen)
{
    struct config *cfg = NULL;
    struct runtime *rt = NULL, *old;
    int r;

    r = config_load(path, &cfg, err, errlen);
    if (r < 0)
        return r;
    r = daemon_runtime_new(cfg, &rt, err, errlen);
    if (r < 0)
        return r;
    pthread_mutex_lock(&d->lock);
    old = d->cur;
    d->cur = rt;
    d->reloads++;
    pthread_mutex_unlock(&d->lock);
    daemon_restart_only(old->cfg, rt->cfg, err, errlen);
    log_set_level(rt->cfg->server.log_level);
    daemon_runtime_release(old);
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
    timeout = d->cur ? d->cur->cfg->server.drain_timeout : 1;
    if (d->http) {
        http_quiesce(d->http);
        left = daemon_wait_idle(d, util_now_ns() + (uint64_t)timeout * 1000000000ull);
    }
    /* Commits what is queued and resumes every waiting connection. */
    store_stop(d->store);
    if (d->http) {
        daemon_wait_idle(d, util_now_ns() + 2000000000ull);
        d->http = http_stop(d->http);
    }
    d->store = store_close(d->store);
    daemon_runtime_release(d->cur);
    pthread_mutex_destroy(&d->lock);
    free(d);
    return (int)left;
}
