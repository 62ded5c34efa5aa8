/*
 * runtime.h: one generation of configuration -- the config, the route table
 * and the providers' state built from it -- immutable and reference-counted,
 * so a request keeps the keys it started with while a reload swaps in new
 * ones. A `struct runtime_cell` holds the current generation; intake and
 * the job workers take references from it, the daemon swaps it.
 */
#ifndef PAYHOOKD_RUNTIME_H
#define PAYHOOKD_RUNTIME_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

#include "config.h"
#include "providers/provider.h"

struct runtime {
    struct config *cfg;
    struct routes *routes;
    atomic_int refs;
};

/* The current generation, swapped whole under its lock. */
struct runtime_cell {
    pthread_mutex_t lock;
    struct runtime *cur;
};

/* A runtime for cfg (taking ownership: freed on failure too), with one
 * reference. 0 or -errno with the reason in err. */
int runtime_new(struct config *cfg, struct runtime **out, char *err, size_t errlen);

/* Drop a reference; the last one frees the generation. NULL-safe. */
void runtime_release(struct runtime *rt);

/* A cell holding rt (its reference passes to the cell). */
void runtime_cell_init(struct runtime_cell *c, struct runtime *rt);

/* The current runtime with a reference held; release it when done. */
struct runtime *runtime_acquire(struct runtime_cell *c);

/* Make rt current; returns the previous one (its reference passes to the
 * caller, who releases it). */
struct runtime *runtime_swap(struct runtime_cell *c, struct runtime *rt);

/* Release the current runtime and destroy the cell. */
void runtime_cell_destroy(struct runtime_cell *c);

#endif
