/*
 * provider.h: what a payment platform plugs into payhookd. A provider is one
 * file filling one `struct provider`: from the config it builds its state
 * (keys, secrets) and registers its routes; each route's handler parses and
 * verifies a request and says either "store this event, then answer" or
 * "answer this now" (a rejection). Adding a platform touches no other one.
 */
#ifndef PAYHOOKD_PROVIDER_H
#define PAYHOOKD_PROVIDER_H

#include <stddef.h>

#include "config.h"
#include "store/store.h"
#include "lib/util.h"

struct routes; /* the route table being built for one config */

/* A request as a handler sees it: the body is complete and bounded. */
struct provider_request {
    const char *path;
    const char *content_type; /* NULL when absent */
    const char *body;         /* NUL-terminated copy; may contain NUL bytes */
    size_t body_len;
    const char *remote_addr;
    const struct config *cfg;
    struct store *store; /* for read-only lookups */
};

/* What a handler decided. Strings live in `arena`, freed with the request. */
struct provider_reply {
    struct arena *arena;
    /* PROVIDER_ANSWER: the immediate answer (a rejection when status >= 400) */
    int status;
    const char *content_type;
    const char *body;
    const char *reason; /* machine-readable rejection reason (metrics label) */
    char detail[256];   /* human-readable: what exactly was wrong */
    /* PROVIDER_STORE: the event; its `answer` goes out once it is committed */
    struct store_event ev;
    const char *answer_type; /* Content-Type of the answer */
    int fail_status;         /* answer when the store cannot commit */
    const char *fail_body;
    int unverified; /* stored with verified = 0: log it so */
};

enum provider_verdict { PROVIDER_ANSWER, PROVIDER_STORE };

/* One route: a path, its handler and the provider state it serves. */
struct route_ops {
    const char *kind; /* e.g. "tp_push", "pay_notify": the event kind stored */
    /* 1 when a request with this Content-Type (NULL = none) may be parsed. */
    int (*accepts)(const char *content_type);
    enum provider_verdict (*handle)(const void *state, const struct provider_request *rq,
                                    struct provider_reply *out);
};

struct route {
    char *path;
    const struct route_ops *ops;
    const void *state; /* the provider's state for this route */
    int metrics;       /* metrics route label index */
};

struct provider {
    const char *name;
    /* Build state from the config and add routes; *state may stay NULL when
     * the platform is not configured. 0 or -errno with a reason in err. */
    int (*load)(const struct config *c, struct routes *rt, void **state, char *err,
                size_t errlen);
    void (*unload)(void *state);
};

/* Every provider compiled in, NULL-terminated (providers/ each add one). */
extern const struct provider *const providers[];

/* Add a route; -EEXIST when the path is already taken (err says by what). */
int routes_add(struct routes *rt, const char *path, const struct route_ops *ops,
               const void *state, char *err, size_t errlen);

/* The route for a path, or NULL. */
const struct route *routes_find(const struct routes *rt, const char *path);

/*
 * Build the route table and every provider's state for a config. On failure
 * nothing is left allocated and err names the provider and problem.
 */
int routes_build(const struct config *c, struct routes **out, char *err, size_t errlen);

/* The paths the daemon answers itself (index 0 unused: "no built-in");
 * routes_add refuses them. */
#define ROUTE_BUILTINS 4
extern const char *const route_builtin_paths[ROUTE_BUILTINS];

/* Free the table and the providers' states; NULL-safe; returns NULL. */
struct routes *routes_free(struct routes *rt);

/* Helpers for handlers. */

/* Fill a rejection: status, reason label and a printf detail; returns PROVIDER_ANSWER. */
enum provider_verdict provider_reject(struct provider_reply *out, int status,
                                      const char *reason, const char *body,
                                      const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

struct form;
struct form_canon_rule;
struct crypto_key;
enum crypto_hash;

/*
 * Parse the body as a form (bounded, decoded once). On failure fill a 400
 * rejection (reason bad_form, repeated_key or form_too_large) with `body`
 * as the answer and return PROVIDER_ANSWER. A form with a NUL byte (%00) in
 * any value is refused too (bad_field, naming the first such field): a value
 * kept as text -- an id, a status -- would be cut short there and two
 * different ids would become one, and checking every field means no provider
 * has a list of its text fields to get wrong. The form lives in out->arena.
 */
enum provider_verdict provider_form(const struct provider_request *rq,
                                    struct provider_reply *out, const char *body,
                                    struct form **f);

/*
 * The form field `key` as a yuan amount ("13.88", at most two decimals) in
 * fen: absent or empty leaves *has 0; otherwise *fen and *has = 1, or a 400
 * (reason bad_amount, `body` as the answer) naming the field and quoting
 * its value.
 */
enum provider_verdict provider_yuan_field(const struct form *f, const char *key,
                                          int64_t *fen, int *has, const char *body,
                                          struct provider_reply *out);

/* The form's fields as a JSON object of strings (in out->arena), or NULL. */
const char *provider_form_json(const struct form *f, struct provider_reply *out);

/*
 * Verify an RSA signature over the form's canonical string with key, and
 * during a key switch with next too (NULL: none). When the check fails and
 * the signature contains spaces (a '+' decoded as a space by a proxy that
 * decoded twice), one more check with '+' is made. Returns 0 (verified),
 * -EBADMSG, or -EINVAL (signature not base64).
 */
int provider_verify_form(const struct form *f, const struct form_canon_rule *rule,
                         const struct crypto_key *key, const struct crypto_key *next,
                         enum crypto_hash hash, const char *sig, size_t sig_len,
                         struct provider_reply *out);

/*
 * One part of a dedupe key with ':', '%' and NUL escaped as %XX, so that
 * distinct field values never make the same key ("a:b"+"c" vs "a"+"b:c").
 * In the arena; NULL on ENOMEM.
 */
char *provider_key_part(struct arena *a, const char *v, size_t len);

/*
 * A dedupe key: `prefix`, then for each of `fields` (NULL-terminated) ':'
 * and the field's value as a key part ("" when absent or empty). In the
 * arena; NULL on ENOMEM -- never a key with a part missing, which would
 * merge two different callbacks into one.
 */
char *provider_dedupe_key(struct arena *a, const char *prefix, const struct form *f,
                          const char *const *fields);

/* The same with the values looked up by get(f, key, &len) instead of
 * form_get, and the parts after the first `keep` left out when they are
 * empty at the end (so adding optional fields to a key's list leaves the
 * keys of callbacks without them as they were). */
typedef const char *(*provider_get_fn)(const struct form *f, const char *key, size_t *len);
char *provider_dedupe_key_by(struct arena *a, const char *prefix, const struct form *f,
                             const char *const *fields, size_t keep, provider_get_fn get);

/* Content-Type predicates for route_ops.accepts. */
int provider_accepts_json(const char *content_type);
int provider_accepts_form(const char *content_type);

#endif
