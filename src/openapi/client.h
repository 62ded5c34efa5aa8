/*
 * client.h: one HTTP call to a platform's OpenAPI over libcurl, for a job
 * worker. Each worker owns one client (a curl easy handle, so connections
 * to a platform are kept alive between its calls); a client is never shared
 * between threads. Answers are bounded; the URL recorded for the store has
 * no query string (tokens travel there). Lower layer: never logs.
 */
#ifndef PAYHOOKD_OPENAPI_CLIENT_H
#define PAYHOOKD_OPENAPI_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "lib/util.h"

/* Most bytes of an answer read; a longer one is an error (not a truncation). */
#define OPENAPI_BODY_MAX (256 * 1024)

struct openapi_client;

/* One call: what to send and what came back. */
struct openapi_call {
    /* in */
    const char *url;       /* with its query string */
    const char *post;      /* form body (POST), or NULL for GET */
    size_t post_len;
    unsigned timeout_ms;   /* the whole call */
    unsigned connect_ms;   /* connecting (at most timeout_ms) */
    const char *const *headers; /* NULL-terminated "Name: value" lines, or NULL */
    /* out */
    int http_status;       /* 0: no HTTP answer */
    struct buf body;       /* the answer (NUL-terminated), freed by openapi_call_free */
    char error[160];       /* when the call failed: refused, timed out, too long ... */
    int64_t duration_ms;
    long retry_after_s;    /* the answer's Retry-After in seconds, or -1 */
};

/* A client, or NULL on ENOMEM. */
struct openapi_client *openapi_client_new(void);
void openapi_client_free(struct openapi_client *c);

/* Make the call. 0 when an HTTP answer came (any status), -errno otherwise
 * (-ETIMEDOUT, -ECONNREFUSED, -EMSGSIZE for an answer over the bound,
 * -EIO), with call->error saying which. */
int openapi_perform(struct openapi_client *c, struct openapi_call *call);

/* Free the answer. */
void openapi_call_free(struct openapi_call *call);

/* "POST https://host/path" for the store: the method and the URL without its
 * query string or credentials. */
void openapi_endpoint(const struct openapi_call *call, char *out, size_t len);

/* Once at start and at exit (curl_global_init is not thread-safe). */
int openapi_global_init(void);
void openapi_global_cleanup(void);

#endif
