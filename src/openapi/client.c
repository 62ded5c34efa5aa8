/*
 * client.c: libcurl easy calls with bounded answers and enforced timeouts.
 * Only https, or http to a loopback host (config_url_ok checked the base),
 * and no redirects: a platform answer is read where it was asked.
 */
#include "openapi/client.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

struct openapi_client {
    CURL *curl;
};

int openapi_global_init(void)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -EIO;
}

void openapi_global_cleanup(void)
{
    curl_global_cleanup();
}

struct openapi_client *openapi_client_new(void)
{
    struct openapi_client *c = calloc(1, sizeof(*c));

    if (c && !(c->curl = curl_easy_init())) {
        free(c);
        c = NULL;
    }
    return c;
}

void openapi_client_free(struct openapi_client *c)
{
    if (!c)
        return;
    curl_easy_cleanup(c->curl);
    free(c);
}

/* Append the answer, refusing one over the bound (curl then fails the call). */
static size_t oc_write(char *p, size_t size, size_t n, void *data)
{
    struct buf *b = data;
    size_t len = size * n;

    if (b->len + len > OPENAPI_BODY_MAX || buf_append(b, p, len) < 0)
        return 0;
    return len;
}

/* Note a Retry-After header (seconds, or an HTTP date). */
static size_t oc_header(char *p, size_t size, size_t n, void *data)
{
    struct openapi_call *call = data;
    size_t len = size * n;
    char v[64];

    if (len > 12 && len < 12 + sizeof(v) && strncasecmp(p, "retry-after:", 12) == 0) {
        size_t k = len - 12;
        memcpy(v, p + 12, k);
        v[k] = '\0';
        v[strcspn(v, "\r\n")] = '\0';
        if (v[strspn(v, " \t")] >= '0' && v[strspn(v, " \t")] <= '9')
            call->retry_after_s = strtol(v, NULL, 10);
        else {
            time_t t = curl_getdate(v + strspn(v, " \t"), NULL), now = time(NULL);
            if (t > 0)
                call->retry_after_s = t > now ? (long)(t - now) : 0;
        }
    }
    return len;
}

/* The options every call gets. */
static void oc_setup(CURL *h, struct openapi_call *call, struct curl_slist *hdrs,
                     char *errbuf)
{
    unsigned connect_ms = call->connect_ms && call->connect_ms < call->timeout_ms
                              ? call->connect_ms
                              : call->timeout_ms;

    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, call->url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L); /* worker threads: no SIGALRM */
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)call->timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)connect_ms);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "payhookd");
    curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, ""); /* curl's decoders, bounded above */
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, oc_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &call->body);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, oc_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, call);
    if (hdrs)
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    if (call->post) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, call->post);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)call->post_len);
    }
}

/* A curl failure as -errno with a message that never repeats the URL. */
static int oc_error(struct openapi_call *call, CURLcode rc, const char *errbuf)
{
    const char *what = errbuf[0] ? errbuf : curl_easy_strerror(rc);

    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
        snprintf(call->error, sizeof(call->error), "timed out after %u ms",
                 call->timeout_ms);
        return -ETIMEDOUT;
    case CURLE_COULDNT_CONNECT:
        snprintf(call->error, sizeof(call->error), "cannot connect: %s",
                 curl_easy_strerror(rc));
        return -ECONNREFUSED;
    case CURLE_WRITE_ERROR:
        snprintf(call->error, sizeof(call->error), "answer longer than %d bytes",
                 OPENAPI_BODY_MAX);
        return -EMSGSIZE;
    default:
        /* curl's error buffer may name the host but never the query. */
        snprintf(call->error, sizeof(call->error), "%.150s", what);
        {
            char *q = strchr(call->error, '?');
            if (q)
                *q = '\0';
        }
        return -EIO;
    }
}

int openapi_perform(struct openapi_client *c, struct openapi_call *call)
{
    char errbuf[CURL_ERROR_SIZE] = "";
    uint64_t t0 = util_now_ns();
    long status = 0;
    CURLcode rc;

    struct curl_slist *hdrs = NULL, *more;
    size_t i;

    call->http_status = 0;
    call->retry_after_s = -1;
    call->error[0] = '\0';
    if (!c->curl && !(c->curl = curl_easy_init())) {
        snprintf(call->error, sizeof(call->error), "out of memory (no HTTP handle)");
        return -ENOMEM;
    }
    for (i = 0; call->headers && call->headers[i]; i++) {
        if (!(more = curl_slist_append(hdrs, call->headers[i]))) {
            curl_slist_free_all(hdrs);
            snprintf(call->error, sizeof(call->error), "out of memory");
            return -ENOMEM;
        }
        hdrs = more;
    }
    oc_setup(c->curl, call, hdrs, errbuf);
    rc = curl_easy_perform(c->curl);
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(hdrs);
    call->duration_ms = (int64_t)((util_now_ns() - t0) / 1000000u);
    if (rc != CURLE_OK) {
        buf_free(&call->body);
        if (rc == CURLE_OUT_OF_MEMORY) {
            /* curl's state after a failed allocation is not trusted with the
             * next call (its threaded resolver has had bugs there): a new
             * handle, made before the next call, costs one connection */
            curl_easy_cleanup(c->curl);
            c->curl = NULL;
        }
        return oc_error(call, rc, errbuf);
    }
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
    call->http_status = (int)status;
    if (!call->body.data && buf_append(&call->body, "", 0) < 0) {
        snprintf(call->error, sizeof(call->error), "out of memory");
        return -ENOMEM;
    }
    return 0;
}

void openapi_call_free(struct openapi_call *call)
{
    buf_free(&call->body);
}

void openapi_endpoint(const struct openapi_call *call, char *out, size_t len)
{
    const char *u = call->url, *cut = u + strcspn(u, "?#");
    const char *at = memchr(u, '@', (size_t)(cut - u)), *scheme = strstr(u, "://");

    /* user:password@ is dropped with the query */
    if (at && scheme && scheme < at)
        snprintf(out, len, "%s %.*s%.*s", call->post ? "POST" : "GET",
                 (int)(scheme + 3 - u), u, (int)(cut - at - 1), at + 1);
    else
        snprintf(out, len, "%s %.*s", call->post ? "POST" : "GET", (int)(cut - u), u);
}
