/*
 * query.c: what every platform query does the same way: make the call and
 * record where it went, parse the answer, read members leniently (platforms
 * write amounts and codes as strings or numbers, by version), say why.
 */
#include "openapi/query.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire/form.h"
#include "wire/json.h"

void query_set(struct query_answer *a, enum query_result r, const char *fmt, ...)
{
    va_list ap;

    a->result = r;
    va_start(ap, fmt);
    vsnprintf(a->detail, sizeof(a->detail), fmt, ap);
    va_end(ap);
}

void query_mismatch(struct query_answer *a, const char *field, const char *ours,
                    const char *theirs)
{
    snprintf(a->field, sizeof(a->field), "%s", field);
    snprintf(a->ours, sizeof(a->ours), "%s", ours ? ours : "(none)");
    snprintf(a->theirs, sizeof(a->theirs), "%s", theirs ? theirs : "(none)");
    query_set(a, QUERY_MISMATCH, "%s: ours %s, theirs %s", a->field, a->ours, a->theirs);
}

int query_call(const struct query_env *env, struct query_answer *a, const char *url,
               const char *post, size_t post_len)
{
    struct openapi_call *c = &a->call;
    int r;

    c->url = url;
    c->post = post;
    c->post_len = post_len;
    c->timeout_ms = env->timeout_ms;
    c->connect_ms = env->connect_ms;
    openapi_endpoint(c, a->endpoint, sizeof(a->endpoint));
    if ((r = openapi_perform(env->client, c)) < 0) {
        query_set(a, QUERY_ERROR, "%s", c->error);
        return r;
    }
    if (c->http_status < 200 || c->http_status > 299) {
        query_set(a, QUERY_ERROR, "HTTP %d", c->http_status);
        return -EPROTO;
    }
    return 0;
}

cJSON *query_json(struct query_answer *a)
{
    char err[128];
    cJSON *root = NULL;

    if (json_parse(a->call.body.data, a->call.body.len, 32, &root, err, sizeof(err)) < 0) {
        query_set(a, QUERY_ERROR, "answer is not JSON: %s", err);
        return NULL;
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        query_set(a, QUERY_ERROR, "answer is not a JSON object");
        return NULL;
    }
    return root;
}

int query_text(const cJSON *obj, const char *key, char *buf, size_t len)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    int r = json_text(obj, key, buf, len);
    double d;

    if (r != -ERANGE || !cJSON_IsNumber(v))
        return r < 0 ? r : 0;
    /* A fractional number: an amount in yuan, at most two decimals. */
    d = v->valuedouble;
    if (!(d > -1e12 && d < 1e12)) /* also NaN */
        return -EINVAL;
    {
        double cents = d * 100, whole = (double)(long long)(cents + (cents < 0 ? -0.5 : 0.5));
        if (cents - whole > 1e-6 || whole - cents > 1e-6)
            return -EINVAL; /* more than two decimals */
    }
    return snprintf(buf, len, "%.2f", d) < (int)len ? 0 : -ENOSPC;
}

char *query_encode(const char *const *kv)
{
    struct form *f = form_new();
    char *out = NULL;
    size_t len, i;
    int bad = !f;

    for (i = 0; !bad && kv[i]; i += 2)
        if (kv[i + 1] &&
            form_add(f, kv[i], strlen(kv[i]), kv[i + 1], strlen(kv[i + 1])) < 0)
            bad = 1;
    if (!bad && form_encode(f, &out, &len) < 0)
        out = NULL;
    form_free(f);
    return out;
}
