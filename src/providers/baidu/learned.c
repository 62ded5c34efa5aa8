/*
 * learned.c: the learned Baidu apps (see learned.h). A short list under a
 * read-write lock: TPs manage hundreds of apps, not millions, and intake
 * looks one up per callback only when no configured app owns the deal id.
 * Each app is a config_baidu_app (learned = 1), so verification and the
 * follow-up queries treat it like a configured one.
 */
#include "providers/baidu/learned.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire/crypto.h"

struct learned {
    struct learned *next;
    struct config_baidu_app app;
    int current; /* 0 once replaced by newer keys: kept for requests in flight */
};

static pthread_rwlock_t learned_lock = PTHREAD_RWLOCK_INITIALIZER;
static struct learned *learned_head;

static void learned_free(struct learned *l)
{
    free(l->app.name);
    free(l->app.app_id);
    free(l->app.deal_id);
    free(l->app.app_key);
    crypto_key_free(l->app.platform_key);
    free(l);
}

/* Longest app id, deal id or pmAppKey taken (real ones are under 40). */
#define LEARNED_FIELD_MAX 128

/* What is wrong with one of k's fields (missing, empty, too long) into
 * why; 0 when nothing is. */
static int learned_bad_field(const struct store_app_keys *k, char *why, size_t len)
{
    const char *names[] = {"app id", "deal_id", "pm_app_key"};
    const char *values[] = {k->app_id, k->deal_id, k->pm_app_key};

    for (size_t i = 0; i < 3; i++) {
        if (!values[i] || !values[i][0])
            snprintf(why, len, "%s is missing or empty", names[i]);
        else if (strnlen(values[i], LEARNED_FIELD_MAX + 1) > LEARNED_FIELD_MAX)
            snprintf(why, len, "%s is longer than %d bytes", names[i], LEARNED_FIELD_MAX);
        else
            continue;
        return -EINVAL;
    }
    return 0;
}

/* A new entry from k, or NULL (why set). */
static struct learned *learned_new(const struct store_app_keys *k, char *why, size_t len)
{
    struct learned *l;
    char err[160];

    if (learned_bad_field(k, why, len) < 0)
        return NULL;
    if (!(l = calloc(1, sizeof(*l))) || !(l->app.name = strdup(k->app_id)) || !(l->app.app_id = strdup(k->app_id)) ||
        !(l->app.deal_id = strdup(k->deal_id)) || !(l->app.app_key = strdup(k->pm_app_key))) {
        snprintf(why, len, "out of memory");
        goto fail;
    }
    if (crypto_pubkey_from_text(k->platform_public_key, &l->app.platform_key, err,
                                sizeof(err)) < 0) {
        snprintf(why, len, "platform_public_key is not an RSA public key: %s", err);
        goto fail;
    }
    l->app.refund_audit = AUDIT_AUTO;
    l->app.is_consumed = 2;
    l->app.query = 1;
    l->app.learned = 1;
    l->current = 1;
    return l;
fail:
    if (l)
        learned_free(l);
    return NULL;
}

struct learned *baidu_learned_prepare(const struct store_app_keys *k, char *why, size_t len)
{
    return learned_new(k, why, len);
}

void baidu_learned_publish(struct learned *l)
{
    struct learned *o;

    pthread_rwlock_wrlock(&learned_lock);
    for (o = learned_head; o; o = o->next)
        if (o->current && strcmp(o->app.app_id, l->app.app_id) == 0)
            o->current = 0;
    l->next = learned_head;
    learned_head = l;
    pthread_rwlock_unlock(&learned_lock);
}

void baidu_learned_done(void *prepared, int committed)
{
    if (committed)
        baidu_learned_publish(prepared);
    else
        learned_free(prepared);
}

/* What loading found wrong: rows that do not make an app are skipped (an
 * operator's edit), never the reason the daemon does not start. */
struct learned_load {
    unsigned skipped;
    char first[256];
};

static int learned_load_one(void *ctx, const struct store_app_keys *k)
{
    struct learned_load *ll = ctx;
    char why[200];

    struct learned *l = learned_new(k, why, sizeof(why));

    if (l)
        baidu_learned_publish(l);
    else if (ll->skipped++ == 0)
        snprintf(ll->first, sizeof(ll->first), "app %.40s: %s", k->app_id ? k->app_id : "?",
                 why);
    return 0;
}

int baidu_learned_load(struct store *s, char *err, size_t errlen)
{
    struct learned_load ll = {0};

    if (store_app_keys_each(s, learned_load_one, &ll) < 0) {
        snprintf(err, errlen, "cannot read app_keys from the store");
        return -EIO;
    }
    if (ll.skipped)
        snprintf(err, errlen, "%u app_keys row(s) skipped, first %s", ll.skipped, ll.first);
    return (int)ll.skipped;
}

/* The current entry whose field (deal id or app id) equals v. */
static const struct config_baidu_app *learned_find(const char *v, int by_deal)
{
    const struct learned *l;
    const struct config_baidu_app *found = NULL;

    pthread_rwlock_rdlock(&learned_lock);
    for (l = learned_head; l && !found; l = l->next)
        if (l->current && strcmp(by_deal ? l->app.deal_id : l->app.app_id, v) == 0)
            found = &l->app;
    pthread_rwlock_unlock(&learned_lock);
    return found;
}

const struct config_baidu_app *baidu_learned_by_deal(const char *deal)
{
    return deal ? learned_find(deal, 1) : NULL;
}

const struct config_baidu_app *baidu_learned_by_app(const char *app_id)
{
    return app_id ? learned_find(app_id, 0) : NULL;
}

size_t baidu_learned_list(const struct config_baidu_app **out, size_t max)
{
    const struct learned *l;
    size_t n = 0;

    pthread_rwlock_rdlock(&learned_lock);
    for (l = learned_head; l; l = l->next)
        if (l->current) {
            if (n < max)
                out[n] = &l->app;
            n++;
        }
    pthread_rwlock_unlock(&learned_lock);
    return n;
}

void baidu_learned_clear(void)
{
    struct learned *l;

    pthread_rwlock_wrlock(&learned_lock);
    while ((l = learned_head) != NULL) {
        learned_head = l->next;
        learned_free(l);
    }
    pthread_rwlock_unlock(&learned_lock);
}
