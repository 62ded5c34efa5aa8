/*
 * runtime.c: the reference-counted configuration generation and the cell
 * that holds the current one.
 */
#include "runtime.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

int runtime_new(struct config *cfg, struct runtime **out, char *err, size_t errlen)
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

void runtime_release(struct runtime *rt)
{
    if (!rt || atomic_fetch_sub(&rt->refs, 1) != 1)
        return;
    routes_free(rt->routes);
    config_free(rt->cfg);
    free(rt);
}

void runtime_cell_init(struct runtime_cell *c, struct runtime *rt)
{
    pthread_mutex_init(&c->lock, NULL);
    c->cur = rt;
}

struct runtime *runtime_acquire(struct runtime_cell *c)
{
    struct runtime *rt;

    pthread_mutex_lock(&c->lock);
    rt = c->cur;
    atomic_fetch_add(&rt->refs, 1);
    pthread_mutex_unlock(&c->lock);
    return rt;
}

struct runtime *runtime_swap(struct runtime_cell *c, struct runtime *rt)
{
    struct runtime *old;

    pthread_mutex_lock(&c->lock);
    old = c->cur;
    c->cur = rt;
    pthread_mutex_unlock(&c->lock);
    return old;
}

void runtime_cell_destroy(struct runtime_cell *c)
{
    runtime_release(c->cur);
    c->cur = NULL;
    pthread_mutex_destroy(&c->lock);
}
