/*
 * learned.h: the Baidu apps a TP learned from getbindservice (app_keys),
 * held in memory for intake: a pay notification for a learned deal id is
 * verified with the learned key from the commit that stored it on, with no
 * config edit and no restart. Loaded from the store at start; an app whose
 * keys are learned again is replaced whole. Safe from any thread.
 */
#ifndef PAYHOOKD_PROVIDERS_BAIDU_LEARNED_H
#define PAYHOOKD_PROVIDERS_BAIDU_LEARNED_H

#include <stddef.h>

#include "config.h"
#include "store/store.h"

struct learned;

/* The job that learns (again) an app's keys: getbindservice, in the app's
 * token lane, one queued per app (payhookctl keys refresh APP). */
extern const struct store_followup baidu_keys_job;

/* An app made from keys (the key parsed once, here, off the commit path:
 * an RSA public key given as text, never a file name), not yet in use; or
 * NULL with why (a field missing or empty, a key that does not parse). */
struct learned *baidu_learned_prepare(const struct store_app_keys *k, char *why, size_t len);

/* Put a prepared app in use (replacing the app's earlier keys whole):
 * call once its keys are committed. */
void baidu_learned_publish(struct learned *l);

/* For a job's result: publish when its commit is durable, else free. */
void baidu_learned_done(void *prepared, int committed);

/* Every app in app_keys (at start): how many rows were skipped (err says
 * why for the first), or -EIO with err. */
int baidu_learned_load(struct store *s, char *err, size_t errlen);

/* The learned app of a deal id, or of an app id; NULL when none. The
 * pointer stays valid until baidu_learned_clear (a replaced app is kept:
 * a request in flight may still hold it). */
const struct config_baidu_app *baidu_learned_by_deal(const char *deal);
const struct config_baidu_app *baidu_learned_by_app(const char *app_id);

/* Up to max learned apps into out; how many there are. */
size_t baidu_learned_list(const struct config_baidu_app **out, size_t max);

/* Forget every app (at shutdown, once no request can hold one). */
void baidu_learned_clear(void);

#endif
