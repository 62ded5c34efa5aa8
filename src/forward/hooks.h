/*
 * hooks.h: forwarding events to the operator's systems. Which hooks an
 * event goes to ([hook NAME] events globs over "provider.kind", when,
 * unverified), and one delivery attempt: the Standard Webhooks envelope,
 * signed with every configured secret, POSTed through the worker's client.
 * A delivery is a job of kind "hook.NAME": it is queued, claimed, retried
 * and recorded by the same machinery as the follow-up queries (jobs/).
 * Lower layer: never logs, never touches the store.
 */
#ifndef PAYHOOKD_FORWARD_HOOKS_H
#define PAYHOOKD_FORWARD_HOOKS_H

#include "config.h"
#include "openapi/query.h"
#include "lib/util.h"
#include "store/store.h"

/* The deliveries a new event makes to when = received hooks, allocated in
 * the arena into ev->hooks / ev->n_hooks. 0 or -ENOMEM. */
int forward_select(const struct config *c, struct store_event *ev, struct arena *a);
/* The same for an event that is confirmed as it is stored (a sweep found
 * the payment in the platform's own order list): every matching hook,
 * when = received and when = confirmed alike, its envelope saying
 * confirmation "confirmed". 0 or -ENOMEM. */
int forward_select_confirmed(const struct config *c, struct store_event *ev, struct arena *a);

/* The when = confirmed hooks an event of provider/kind goes to once it is
 * confirmed: up to max hooks into out; returns how many. */
size_t forward_confirmed(const struct config *c, const char *provider, const char *kind,
                         const struct config_hook **out, size_t max);

/* One delivery attempt of env->job (kind "hook.NAME"); a->result is
 * QUERY_CONFIRMED when the hook answered 2xx, QUERY_GONE for 410, else
 * QUERY_ERROR (retried; Retry-After honoured through a->call). */
void forward_deliver(const struct query_env *env, struct query_answer *a);

#endif
