/*
 * config.c: INI file -> struct config, through inih and a table of
 * (section, key, parser, offset, default) so that every key is documented
 * in one place, parsed the same way, and an unknown key is an error.
 */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wire/crypto.h"
#include "lib/log.h"
#include "lib/util.h"

#define CONF_LINE_MAX  65536 /* longest physical line accepted */
/* Debian's libinih keeps 49 bytes of a section name and silently cuts the
 * rest; a longer header is refused rather than truncated. */
#define CONF_SECTION_MAX 49
#define CONF_LONG_MARK "\x01long"

struct conf_key;
typedef int (*conf_parse_fn)(const struct conf_key *k, const char *v, void *dst,
                             char *err, size_t errlen);

/* What a parsed value owns, so config_free can release any section generically. */
enum conf_owns { OWN_NONE, OWN_STR, OWN_SECRET, OWN_KEY, OWN_STRV };

/* One key of a section: how to parse it and where the result goes. */
struct conf_key {
    const char *name;
    conf_parse_fn parse;
    size_t off;                 /* offset inside the section's struct */
    long min, max;              /* bounds for numbers */
    const char *def;            /* default, parsed with the same parser; NULL = none */
    int required;               /* must be given when the section is present */
    const char *const *choices; /* for conf_enum: NULL-terminated names */
    enum conf_owns owns;
};

/* One section type: its keys, and where its struct (or array) lives in struct config. */
struct conf_section {
    const char *name;
    const struct conf_key *keys;
    int named;   /* [type NAME] sections, any number of them */
    size_t off;  /* unnamed: offset of the struct; named: of the pointer array */
    size_t noff; /* named: offset of the count */
    size_t size; /* named: size of one instance */
    /* checks across keys once the file is read; msg gets the reason */
    int (*finish)(struct config *c, void *obj, const char *name, char *msg, size_t len);
};

/* One section occurrence in the file (a named one is created on first sight). */
struct conf_inst {
    int type;
    void *obj;
    char *name;
    unsigned line;
    uint64_t seen; /* bitmap of keys given */
};

#define CONF_MAX_INSTANCES 256

/* Parser state shared with the inih callbacks. */
struct conf_state {
    struct config *c;
    FILE *f;
    unsigned line;
    char *long_value; /* the value of a line too long for inih */
    struct conf_inst inst[CONF_MAX_INSTANCES];
    size_t n_inst;
    char err[768];
    int failed;
};

/* ---- value parsers --------------------------------------------------- */

/* A string value; empty is refused for required keys by the caller. */
static int conf_str(const struct conf_key *k, const char *v, void *dst, char *err,
                    size_t errlen)
{
    char **p = dst;
    char *s = strdup(v);

    if (!s)
        return -ENOMEM;
    if (*p) {
        explicit_bzero(*p, strlen(*p));
        free(*p);
    }
    *p = s;
    return 0;
}

/* An unsigned integer within [min, max]. */
static int conf_uint(const struct conf_key *k, const char *v, void *dst, char *err,
                     size_t errlen)
{
    unsigned long n;
    char *end;

    errno = 0;
    if (!isdigit((unsigned char)v[0]))
        goto bad;
    n = strtoul(v, &end, 10);
    if (errno || *end || n < (unsigned long)k->min || n > (unsigned long)k->max)
        goto bad;
    *(unsigned *)dst = (unsigned)n;
    return 0;
bad:
    snprintf(err, errlen, "'%s' is not a whole number between %ld and %ld", v, k->min,
             k->max);
    return -EINVAL;
}

/* A byte size within [min, max], with an optional k/K or m/M suffix. */
static int conf_size(const struct conf_key *k, const char *v, void *dst, char *err,
                     size_t errlen)
{
    unsigned long long n;
    char *end;

    errno = 0;
    if (!isdigit((unsigned char)v[0]))
        goto bad;
    n = strtoull(v, &end, 10);
    if (errno)
        goto bad;
    if ((*end == 'k' || *end == 'K') && end[1] == '\0' && n <= ULLONG_MAX / 1024)
        n *= 1024;
    else if ((*end == 'm' || *end == 'M') && end[1] == '\0' && n <= ULLONG_MAX / 1048576)
        n *= 1048576;
    else if (*end)
        goto bad;
    if (n < (unsigned long long)k->min || n > (unsigned long long)k->max)
        goto bad;
    *(size_t *)dst = (size_t)n;
    return 0;
bad:
    snprintf(err, errlen, "'%s' is not a size between %ld and %ld bytes", v, k->min,
             k->max);
    return -EINVAL;
}

/* yes/no, true/false, on/off, 1/0. */
static int conf_bool(const struct conf_key *k, const char *v, void *dst, char *err,
                     size_t errlen)
{
    static const char *yes[] = {"yes", "true", "on", "1"},
                      *no[] = {"no", "false", "off", "0"};
    size_t i;

    for (i = 0; i < ARRAY_SIZE(yes); i++) {
        if (strcasecmp(v, yes[i]) == 0) {
            *(int *)dst = 1;
            return 0;
        }
        if (strcasecmp(v, no[i]) == 0) {
            *(int *)dst = 0;
            return 0;
        }
    }
    snprintf(err, errlen, "'%s' is not yes or no", v);
    return -EINVAL;
}

/* One of k->choices; stores its index. */
static int conf_enum(const struct conf_key *k, const char *v, void *dst, char *err,
                     size_t errlen)
{
    size_t i, off = 0;

    for (i = 0; k->choices[i]; i++) {
        if (strcmp(v, k->choices[i]) == 0) {
            *(int *)dst = (int)i;
            return 0;
        }
    }
    off = (size_t)snprintf(err, errlen, "'%s' is not one of:", v);
    for (i = 0; k->choices[i] && off < errlen; i++)
        off += (size_t)snprintf(err + off, errlen - off, " %s", k->choices[i]);
    return -EINVAL;
}

/* A syslog level name. */
static int conf_log_level(const struct conf_key *k, const char *v, void *dst, char *err,
                          size_t errlen)
{
    int l = log_level_parse(v);

    if (l < 0) {
        snprintf(err, errlen, "'%s' is not one of: error warning notice info debug", v);
        return -EINVAL;
    }
    *(int *)dst = l;
    return 0;
}

/* HOST:PORT with a numeric IPv4 address or a bracketed IPv6 address. */
static int conf_listen(const struct conf_key *k, const char *v, void *dst, char *err,
                       size_t errlen)
{
    struct config_server *s =
        (struct config_server *)((char *)dst - offsetof(struct config_server, listen));
    char host[64];
    const char *colon, *h = v;
    size_t hl;
    unsigned long port;
    char *end;

    colon = strrchr(v, ':');
    if (!colon || colon == v)
        goto bad;
    hl = (size_t)(colon - v);
    if (v[0] == '[') {
        if (hl < 3 || v[hl - 1] != ']')
            goto bad;
        h = v + 1;
        hl -= 2;
    }
    if (hl >= sizeof(host))
        goto bad;
    memcpy(host, h, hl);
    host[hl] = '\0';
    errno = 0;
    if (strspn(colon + 1, "0123456789") != strlen(colon + 1) || strlen(colon + 1) > 5)
        goto bad;
    port = strtoul(colon + 1, &end, 10);
    if (errno || *end || colon[1] == '\0' || port > 65535)
        goto bad;
    memset(&s->listen_addr, 0, sizeof(s->listen_addr));
    if (v[0] != '[') {
        struct sockaddr_in *sin = (struct sockaddr_in *)&s->listen_addr;
        if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
            goto bad;
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        s->listen_len = sizeof(*sin);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&s->listen_addr;
        if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
            goto bad;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        s->listen_len = sizeof(*sin6);
    }
    return conf_str(k, v, dst, err, errlen);
bad:
    snprintf(err, errlen,
             "'%s' is not HOST:PORT with a numeric IPv4 address or [IPv6] address "
             "(e.g. 127.0.0.1:8080 or [::1]:8080)",
             v);
    return -EINVAL;
}

/* Parse one "ADDR" or "ADDR/PREFIX" into n. */
static int conf_net_one(const char *tok, struct config_net *n)
{
    char a[64];
    const char *slash = strchr(tok, '/');
    size_t al = slash ? (size_t)(slash - tok) : strlen(tok);
    unsigned long p;
    char *end;

    if (al == 0 || al >= sizeof(a))
        return -EINVAL;
    memcpy(a, tok, al);
    a[al] = '\0';
    memset(n, 0, sizeof(*n));
    if (inet_pton(AF_INET, a, n->addr) == 1) {
        n->family = AF_INET;
        n->prefix = 32;
    } else if (inet_pton(AF_INET6, a, n->addr) == 1) {
        n->family = AF_INET6;
        n->prefix = 128;
    } else {
        return -EINVAL;
    }
    if (slash) {
        errno = 0;
        if (slash[1] == '\0' || strspn(slash + 1, "0123456789") != strlen(slash + 1) ||
            strlen(slash + 1) > 3)
            return -EINVAL;
        p = strtoul(slash + 1, &end, 10);
        if (errno || *end || p > n->prefix)
            return -EINVAL;
        n->prefix = (unsigned)p;
    }
    /* An IPv4-mapped block is an IPv4 block: peers are compared as IPv4. */
    if (n->family == AF_INET6 && IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)n->addr)) {
        if (n->prefix < 96)
            return -EINVAL;
        memmove(n->addr, n->addr + 12, 4);
        memset(n->addr + 4, 0, 12);
        n->family = AF_INET;
        n->prefix -= 96;
    }
    return 0;
}

/* A list of addresses or CIDR blocks separated by spaces or commas. */
static int conf_nets(const struct conf_key *k, const char *v, void *dst, char *err,
                     size_t errlen)
{
    struct config_server *s =
        (struct config_server *)((char *)dst - offsetof(struct config_server, trusted));
    struct config_net *list = NULL, *grown;
    size_t n = 0;
    char *copy = strdup(v), *tok, *save = NULL;

    if (!copy)
        return -ENOMEM;
    for (tok = strtok_r(copy, " \t,", &save); tok; tok = strtok_r(NULL, " \t,", &save)) {
        grown = realloc(list, (n + 1) * sizeof(*list));
        if (!grown)
            goto nomem;
        list = grown;
        if (conf_net_one(tok, &list[n]) < 0) {
            snprintf(err, errlen, "'%s' is not an IP address or CIDR block", tok);
            free(list);
            free(copy);
            return -EINVAL;
        }
        n++;
    }
    free(copy);
    free(s->trusted);
    s->trusted = list;
    s->n_trusted = n;
    return 0;
nomem:
    free(list);
    free(copy);
    return -ENOMEM;
}

/* An EncodingAESKey: 43 base64 characters, into a struct config_aes_key. */
static int conf_aes_key(const struct conf_key *k, const char *v, void *dst, char *err,
                        size_t errlen)
{
    struct config_aes_key *a = dst;

    if (strlen(v) != 43 || crypto_tp_key(v, a->key) < 0) {
        snprintf(err, errlen,
                 "must be the 43-character EncodingAESKey from the platform");
        return -EINVAL;
    }
    a->set = 1;
    return 0;
}

/* A URL path: starts with '/', only unreserved characters and '/'. */
static int conf_path(const struct conf_key *k, const char *v, void *dst, char *err,
                     size_t errlen)
{
    size_t n = strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                         "0123456789/-._~");

    if (v[0] != '/' || v[n] != '\0' || strlen(v) > 200) {
        snprintf(
            err, errlen,
            "'%s' is not a path: it must start with '/' and use only letters, digits "
            "and / - . _ ~",
            v);
        return -EINVAL;
    }
    return conf_str(k, v, dst, err, errlen);
}

/* The host of an http(s) URL into host (no port, no brackets); 0 or -1. */
static int conf_url_host(const char *url, const char *scheme, char *host, size_t len)
{
    const char *h = url + strlen(scheme), *end;
    size_t n;

    if (strncmp(url, scheme, strlen(scheme)) != 0)
        return -1;
    if (*h == '[') {
        end = strchr(h, ']');
        h++;
    } else {
        end = h + strcspn(h, ":/?#");
    }
    if (!end || end == h || (n = (size_t)(end - h)) >= len || strpbrk(url, " \t\r\n"))
        return -1;
    memcpy(host, h, n);
    host[n] = '\0';
    return 0;
}

/* A loopback host name or address. */
static int conf_loopback(const char *host)
{
    struct in_addr a;

    if (strcmp(host, "localhost") == 0 || strcmp(host, "::1") == 0)
        return 1;
    return inet_pton(AF_INET, host, &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

int config_url_ok(const char *url)
{
    char host[256];

    if (conf_url_host(url, "https://", host, sizeof(host)) == 0)
        return 1;
    return conf_url_host(url, "http://", host, sizeof(host)) == 0 && conf_loopback(host);
}

/* An OpenAPI URL: https, or plain http to a loopback host (a test's mock):
 * tokens and signed requests never cross a network unencrypted. */
static int conf_url(const struct conf_key *k, const char *v, void *dst, char *err,
                    size_t errlen)
{
    if (!config_url_ok(v) || strlen(v) > 1024) {
        snprintf(err, errlen,
                 "'%s' is not an https:// URL (plain http:// is accepted only for a "
                 "loopback host such as 127.0.0.1)",
                 v);
        return -EINVAL;
    }
    return conf_str(k, v, dst, err, errlen);
}

/*
 * A file named by a relative path, in $CREDENTIALS_DIRECTORY when systemd
 * set it (LoadCredential=) and the file is there: full (of len bytes)
 * then holds the path to open; else v as given.
 */
static const char *conf_cred_path(const char *v, char *full, size_t len)
{
    const char *creds = getenv("CREDENTIALS_DIRECTORY");

    if (v[0] == '/' || !creds || !*creds || strncmp(v, "-----", 5) == 0)
        return v;
    if ((size_t)snprintf(full, len, "%s/%s", creds, v) >= len || access(full, R_OK) != 0)
        return v;
    return full;
}

/* An RSA private key: a path to a PEM file (relative: also in
 * $CREDENTIALS_DIRECTORY), PEM text, or bare base64. */
static int conf_privkey(const struct conf_key *k, const char *v, void *dst, char *err,
                        size_t errlen)
{
    struct crypto_key **p = dst, *key = NULL;
    char why[256], full[4096];

    if (crypto_privkey_load(conf_cred_path(v, full, sizeof(full)), &key, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "%s", why);
        return -EINVAL;
    }
    crypto_key_free(*p);
    *p = key;
    return 0;
}

/* An RSA public key: bare base64, PEM text, or a path to a PEM key or
 * certificate (relative: also in $CREDENTIALS_DIRECTORY). */
static int conf_pubkey(const struct conf_key *k, const char *v, void *dst, char *err,
                       size_t errlen)
{
    struct crypto_key **p = dst, *key = NULL;
    char why[256], full[4096];

    if (crypto_pubkey_load(conf_cred_path(v, full, sizeof(full)), &key, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "%s", why);
        return -EINVAL;
    }
    crypto_key_free(*p);
    *p = key;
    return 0;
}

/* Free a NULL-terminated string vector. */
static void conf_strv_free(char **v)
{
    size_t i;

    for (i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

/* A list of words separated by spaces or commas (may be empty). */
static int conf_words(const struct conf_key *k, const char *v, void *dst, char *err,
                      size_t errlen)
{
    char ***p = dst, **list = calloc(1, sizeof(char *)), **grown, *copy = strdup(v), *tok,
         *save = NULL;
    size_t n = 0;

    if (!list || !copy)
        goto nomem;
    for (tok = strtok_r(copy, " \t,", &save); tok; tok = strtok_r(NULL, " \t,", &save)) {
        grown = realloc(list, (n + 2) * sizeof(char *));
        if (!grown)
            goto nomem;
        list = grown;
        list[n + 1] = NULL;
        if (!(list[n] = strdup(tok)))
            goto nomem;
        n++;
    }
    free(copy);
    conf_strv_free(*p);
    *p = list;
    return 0;
nomem:
    free(copy);
    conf_strv_free(list);
    return -ENOMEM;
}

/* ---- the tables ------------------------------------------------------ */

/* A time of day "HH:MM" as minutes after midnight. */
static int conf_clock(const struct conf_key *k, const char *v, void *dst, char *err,
                      size_t errlen)
{
    unsigned h, m;
    char tail;

    (void)k;
    if (strlen(v) != 5 || sscanf(v, "%2u:%2u%c", &h, &m, &tail) != 2 || h > 23 || m > 59) {
        snprintf(err, errlen, "'%s' is not a time of day HH:MM", v);
        return -EINVAL;
    }
    *(unsigned *)dst = h * 60 + m;
    return 0;
}

/* A zone as its offset east of UTC in seconds: UTC, a fixed offset
 * "+08:00" / "-05:30", or one of the zone names of the platforms, which
 * have kept one offset since 1991 (no daylight saving time). */
static int conf_zone(const struct conf_key *k, const char *v, void *dst, char *err,
                     size_t errlen)
{
    static const char *const utc8[] = {"Asia/Shanghai", "Asia/Chongqing", "Asia/Hong_Kong",
                                       "Asia/Macau", "Asia/Taipei", "PRC", NULL};
    unsigned h, m;
    char sign, tail;
    size_t i;

    (void)k;
    for (i = 0; utc8[i]; i++)
        if (strcmp(v, utc8[i]) == 0)
            return *(long *)dst = 8 * 3600, 0;
    if (strcmp(v, "UTC") == 0)
        return *(long *)dst = 0, 0;
    if (strlen(v) == 6 && sscanf(v, "%c%2u:%2u%c", &sign, &h, &m, &tail) == 3 &&
        (sign == '+' || sign == '-') && h <= 14 && m <= 59) {
        *(long *)dst = (sign == '-' ? -1 : 1) * (long)(h * 3600 + m * 60);
        return 0;
    }
    snprintf(err, errlen, "'%s' is not UTC, +HH:MM, -HH:MM or Asia/Shanghai (and the other "
             "UTC+8 names)", v);
    return -EINVAL;
}

/* reconcile on a platform whose order-list sweep is not built: only no. */
static int conf_sweep_unbuilt(const struct conf_key *k, const char *v, void *dst, char *err,
                              size_t errlen)
{
    (void)k;
    if (strcmp(v, "no") == 0)
        return *(int *)dst = 0, 0;
    snprintf(err, errlen, "'%s': reconciliation sweeps of this platform's order list are not "
             "built yet; only no is accepted", v);
    return -EINVAL;
}

static const char *const sync_choices[] = {"normal", "full", NULL};
static const char *const audit_choices[] = {"auto", "approve", "reject", NULL};
static const char *const gw_sign_choices[] = {"md5_key", "md5_append", "rsa", NULL};
static const char *const hex_choices[] = {"lower", "upper", NULL};
static const char *const hash_choices[] = {"sha1", "sha256", NULL};

#define END_KEYS                                                                         \
    {                                                                                    \
        NULL, NULL, 0, 0, 0, NULL, 0, NULL, OWN_NONE                                     \
    }

#define SRV(f) offsetof(struct config_server, f)
static const struct conf_key server_keys[] = {
    {"listen", conf_listen, SRV(listen), 0, 0, NULL, 1, NULL, OWN_STR},
    {"threads", conf_uint, SRV(threads), 0, 256, "0", 0, NULL, OWN_NONE},
    {"max_body", conf_size, SRV(max_body), 1024, 64 * 1024 * 1024, "65536", 0, NULL,
     OWN_NONE},
    {"connection_timeout", conf_uint, SRV(connection_timeout), 1, 3600, "10", 0, NULL,
     OWN_NONE},
    {"max_connections", conf_uint, SRV(max_connections), 1, 65536, "1024", 0, NULL,
     OWN_NONE},
    {"max_connections_per_ip", conf_uint, SRV(max_connections_per_ip), 1, 65536, "256", 0,
     NULL, OWN_NONE},
    {"trusted_proxies", conf_nets, SRV(trusted), 0, 0, "127.0.0.1 ::1", 0, NULL,
     OWN_NONE},
    {"log_level", conf_log_level, SRV(log_level), 0, 0, "info", 0, NULL, OWN_NONE},
    {"drain_timeout", conf_uint, SRV(drain_timeout), 1, 3600, "30", 0, NULL, OWN_NONE},
    END_KEYS,
};

#define STO(f) offsetof(struct config_store, f)
static const struct conf_key store_keys[] = {
    {"path", conf_str, STO(path), 0, 0, NULL, 1, NULL, OWN_STR},
    {"synchronous", conf_enum, STO(synchronous_full), 0, 0, "full", 0, sync_choices,
     OWN_NONE},
    {"batch_max", conf_uint, STO(batch_max), 1, 100000, "512", 0, NULL, OWN_NONE},
    {"queue_max", conf_uint, STO(queue_max), 16, 1000000, "16384", 0, NULL, OWN_NONE},
    {"rejections_keep", conf_uint, STO(rejections_keep), 10, 10000000, "10000", 0, NULL,
     OWN_NONE},
    {"rejection_body_max", conf_uint, STO(rejection_body_max), 0, 65536, "512", 0, NULL,
     OWN_NONE},
    END_KEYS,
};

#define TP(f) offsetof(struct config_baidu_tp, f)
static const struct conf_key tp_keys[] = {
    {"path", conf_path, TP(path), 0, 0, "/baidu/tp/events", 0, NULL, OWN_STR},
    {"client_id", conf_str, TP(client_id), 0, 0, NULL, 1, NULL, OWN_STR},
    {"token", conf_str, TP(token), 0, 0, NULL, 1, NULL, OWN_SECRET},
    {"encoding_aes_key", conf_aes_key, TP(aes_key), 0, 0, NULL, 1, NULL, OWN_NONE},
    {"token_next", conf_str, TP(token_next), 0, 0, NULL, 0, NULL, OWN_SECRET},
    {"encoding_aes_key_next", conf_aes_key, TP(aes_key_next), 0, 0, NULL, 0, NULL, OWN_NONE},
    {"allow_plaintext", conf_bool, TP(allow_plaintext), 0, 0, "no", 0, NULL, OWN_NONE},
    END_KEYS,
};

#define OA(f) offsetof(struct config_openapi, f)
static const struct conf_key openapi_keys[] = {
    {"baidu_base", conf_url, OA(baidu_base), 0, 0, "https://openapi.baidu.com", 0, NULL,
     OWN_STR},
    {"alipay_gateway", conf_url, OA(alipay_gateway), 0, 0,
     "https://openapi.alipay.com/gateway.do", 0, NULL, OWN_STR},
    {"workers", conf_uint, OA(workers), 1, 256, "4", 0, NULL, OWN_NONE},
    {"timeout", conf_uint, OA(timeout), 1, 300, "5", 0, NULL, OWN_NONE},
    {"connect_timeout", conf_uint, OA(connect_timeout), 1, 300, "3", 0, NULL, OWN_NONE},
    {"max_attempts", conf_uint, OA(max_attempts), 1, 1000, "10", 0, NULL, OWN_NONE},
    {"retry_base", conf_uint, OA(retry_base), 0, 86400, "5", 0, NULL, OWN_NONE},
    {"retry_max", conf_uint, OA(retry_max), 1, 604800, "3600", 0, NULL, OWN_NONE},
    {"first_delay", conf_uint, OA(first_delay), 0, 86400, "0", 0, NULL, OWN_NONE},
    {"rate", conf_uint, OA(rate), 0, 1000000, "0", 0, NULL, OWN_NONE},
    {"concurrency", conf_uint, OA(concurrency), 0, 256, "0", 0, NULL, OWN_NONE},
    {"unconfirmed_after", conf_uint, OA(unconfirmed_after), 0, 31536000, "600", 0, NULL,
     OWN_NONE},
    END_KEYS,
};

#define RC(f) offsetof(struct config_reconcile, f)
static const struct conf_key reconcile_keys[] = {
    {"at", conf_clock, RC(at_minutes), 0, 0, "02:30", 0, NULL, OWN_NONE},
    {"zone", conf_zone, RC(zone_offset), 0, 0, "Asia/Shanghai", 0, NULL, OWN_NONE},
    {"days", conf_uint, RC(days), 1, 31, "1", 0, NULL, OWN_NONE},
    {"give_up_days", conf_uint, RC(give_up_days), 1, 365, "7", 0, NULL, OWN_NONE},
    END_KEYS,
};

#define BD(f) offsetof(struct config_baidu, f)
static const struct conf_key baidu_keys[] = {
    {"pay_notify_path", conf_path, BD(pay_notify_path), 0, 0, "/baidu/pay/notify", 0,
     NULL, OWN_STR},
    {"refund_audit_path", conf_path, BD(refund_audit_path), 0, 0,
     "/baidu/pay/refund-audit", 0, NULL, OWN_STR},
    {"refund_notify_path", conf_path, BD(refund_notify_path), 0, 0,
     "/baidu/pay/refund-notify", 0, NULL, OWN_STR},
    END_KEYS,
};

#define BA(f) offsetof(struct config_baidu_app, f)
static const struct conf_key baidu_app_keys[] = {
    {"app_id", conf_str, BA(app_id), 0, 0, NULL, 0, NULL, OWN_STR},
    {"deal_id", conf_str, BA(deal_id), 0, 0, NULL, 1, NULL, OWN_STR},
    {"app_key", conf_str, BA(app_key), 0, 0, NULL, 0, NULL, OWN_STR},
    {"platform_public_key", conf_pubkey, BA(platform_key), 0, 0, NULL, 1, NULL, OWN_KEY},
    {"platform_public_key_next", conf_pubkey, BA(platform_key_next), 0, 0, NULL, 0, NULL,
     OWN_KEY},
    {"refund_audit", conf_enum, BA(refund_audit), 0, 0, "auto", 0, audit_choices,
     OWN_NONE},
    {"is_consumed", conf_uint, BA(is_consumed), 1, 2, "2", 0, NULL, OWN_NONE},
    {"access_token", conf_str, BA(access_token), 0, 0, NULL, 0, NULL, OWN_SECRET},
    {"access_token_file", conf_str, BA(access_token_file), 0, 0, NULL, 0, NULL, OWN_STR},
    {"query", conf_bool, BA(query), 0, 0, "yes", 0, NULL, OWN_NONE},
    {"reconcile", conf_bool, BA(reconcile), 0, 0, "no", 0, NULL, OWN_NONE},
    END_KEYS,
};

#define AL(f) offsetof(struct config_alipay, f)
static const struct conf_key alipay_keys[] = {
    {"notify_path", conf_path, AL(notify_path), 0, 0, "/alipay/notify", 0, NULL, OWN_STR},
    END_KEYS,
};

#define AA(f) offsetof(struct config_alipay_app, f)
static const struct conf_key alipay_app_keys[] = {
    {"app_id", conf_str, AA(app_id), 0, 0, NULL, 1, NULL, OWN_STR},
    {"alipay_public_key", conf_pubkey, AA(alipay_key), 0, 0, NULL, 1, NULL, OWN_KEY},
    {"alipay_public_key_next", conf_pubkey, AA(alipay_key_next), 0, 0, NULL, 0, NULL,
     OWN_KEY},
    {"seller_id", conf_str, AA(seller_id), 0, 0, NULL, 0, NULL, OWN_STR},
    {"app_private_key", conf_privkey, AA(private_key), 0, 0, NULL, 0, NULL, OWN_KEY},
    {"query", conf_bool, AA(query), 0, 0, "yes", 0, NULL, OWN_NONE},
    {"reconcile", conf_sweep_unbuilt, AA(reconcile), 0, 0, "no", 0, NULL, OWN_NONE},
    END_KEYS,
};

#define GW(f) offsetof(struct config_gateway, f)
static const struct conf_key gateway_keys[] = {
    {"notify_path", conf_path, GW(notify_path), 0, 0, NULL, 0, NULL, OWN_STR},
    {"secret", conf_str, GW(secret), 0, 0, NULL, 0, NULL, OWN_SECRET},
    {"secret_next", conf_str, GW(secret_next), 0, 0, NULL, 0, NULL, OWN_SECRET},
    {"sign", conf_enum, GW(sign), 0, 0, "md5_key", 0, gw_sign_choices, OWN_NONE},
    {"hex", conf_enum, GW(hex_upper), 0, 0, "lower", 0, hex_choices, OWN_NONE},
    {"ack", conf_str, GW(ack), 0, 0, "SUCCESS", 0, NULL, OWN_STR},
    {"public_key", conf_pubkey, GW(public_key), 0, 0, NULL, 0, NULL, OWN_KEY},
    {"public_key_next", conf_pubkey, GW(public_key_next), 0, 0, NULL, 0, NULL, OWN_KEY},
    {"rsa_hash", conf_enum, GW(rsa_sha256), 0, 0, "sha256", 0, hash_choices, OWN_NONE},
    {"exclude", conf_words, GW(exclude), 0, 0, "sign sign_type", 0, NULL, OWN_STRV},
    {"drop_empty", conf_bool, GW(drop_empty), 0, 0, "yes", 0, NULL, OWN_NONE},
    {"app_id", conf_str, GW(app_id), 0, 0, NULL, 0, NULL, OWN_STR},
    {"dedupe_fields", conf_words, GW(dedupe_fields), 0, 0,
     "out_trade_no trade_no trade_status out_refund_no refund_no", 0, NULL, OWN_STRV},
    {"query_url", conf_url, GW(query_url), 0, 0, NULL, 0, NULL, OWN_STR},
    {"merchant_no", conf_str, GW(merchant_no), 0, 0, NULL, 0, NULL, OWN_STR},
    {"query", conf_bool, GW(query), 0, 0, "yes", 0, NULL, OWN_NONE},
    {"reconcile", conf_sweep_unbuilt, GW(reconcile), 0, 0, "no", 0, NULL, OWN_NONE},
    END_KEYS,
};

static const char *const hook_when_choices[] = {"received", "confirmed", NULL};
#define HK(f) offsetof(struct config_hook, f)
static const struct conf_key hook_keys[] = {
    {"url", conf_url, HK(url), 0, 0, NULL, 0, NULL, OWN_STR},
    {"command", conf_words, HK(command), 0, 0, NULL, 0, NULL, OWN_STRV},
    {"events", conf_words, HK(events), 0, 0, NULL, 1, NULL, OWN_STRV},
    {"when", conf_enum, HK(when), 0, 0, "received", 0, hook_when_choices, OWN_NONE},
    {"unverified", conf_bool, HK(unverified), 0, 0, "no", 0, NULL, OWN_NONE},
    {"secret", conf_words, HK(secrets), 0, 0, NULL, 0, NULL, OWN_STRV},
    {"secret_file", conf_str, HK(secret_file), 0, 0, NULL, 0, NULL, OWN_STR},
    {"timeout", conf_uint, HK(timeout), 1, 300, "10", 0, NULL, OWN_NONE},
    {"max_attempts", conf_uint, HK(max_attempts), 1, 1000, "12", 0, NULL, OWN_NONE},
    {"retry_base", conf_uint, HK(retry_base), 0, 86400, "5", 0, NULL, OWN_NONE},
    {"retry_max", conf_uint, HK(retry_max), 1, 604800, "21600", 0, NULL, OWN_NONE},
    {"concurrency", conf_uint, HK(concurrency), 1, 256, "4", 0, NULL, OWN_NONE},
    END_KEYS,
};

static int conf_finish_hook(struct config *c, void *obj, const char *name, char *msg,
                            size_t len);
static int conf_finish_baidu_app(struct config *c, void *obj, const char *name, char *msg,
                                 size_t len);
static int conf_finish_alipay_app(struct config *c, void *obj, const char *name,
                                  char *msg, size_t len);
static int conf_finish_gateway(struct config *c, void *obj, const char *name, char *msg,
                               size_t len);
static int conf_finish_tp(struct config *c, void *obj, const char *name, char *msg,
                          size_t len);

#define CFG(f) offsetof(struct config, f)
static const struct conf_section sections[] = {
    {"server", server_keys, 0, CFG(server), 0, 0, NULL},
    {"store", store_keys, 0, CFG(store), 0, 0, NULL},
    {"openapi", openapi_keys, 0, CFG(openapi), 0, 0, NULL},
    {"reconcile", reconcile_keys, 0, CFG(reconcile), 0, 0, NULL},
    {"baidu.tp", tp_keys, 0, CFG(tp), 0, 0, conf_finish_tp},
    {"baidu", baidu_keys, 0, CFG(baidu), 0, 0, NULL},
    {"baidu.app", baidu_app_keys, 1, CFG(baidu_apps), CFG(n_baidu_apps),
     sizeof(struct config_baidu_app), conf_finish_baidu_app},
    {"alipay", alipay_keys, 0, CFG(alipay), 0, 0, NULL},
    {"alipay.app", alipay_app_keys, 1, CFG(alipay_apps), CFG(n_alipay_apps),
     sizeof(struct config_alipay_app), conf_finish_alipay_app},
    {"gateway", gateway_keys, 1, CFG(gateways), CFG(n_gateways),
     sizeof(struct config_gateway), conf_finish_gateway},
    {"hook", hook_keys, 1, CFG(hooks), CFG(n_hooks), sizeof(struct config_hook),
     conf_finish_hook},
};

/* ---- checks across keys ---------------------------------------------- */

/*
 * A secret from a file: its first line, without the line end. A relative
 * path is looked up in $CREDENTIALS_DIRECTORY first when systemd set it
 * (LoadCredential=), then as given. The value never appears in a message.
 */
static int conf_read_secret(const char *path, char **out, char *msg, size_t len)
{
    char full[4096], line[4096];
    FILE *f;
    size_t n;

    if (!(f = fopen(conf_cred_path(path, full, sizeof(full)), "re"))) {
        snprintf(msg, len, "cannot read %s: %s", path, strerror(errno));
        return -errno;
    }
    if (!fgets(line, sizeof(line), f))
        line[0] = '\0';
    fclose(f);
    n = strcspn(line, "\r\n");
    line[n] = '\0';
    if (n == 0) {
        explicit_bzero(line, sizeof(line));
        snprintf(msg, len, "%s is empty: it must hold the secret on its first line", path);
        return -EINVAL;
    }
    *out = strdup(line);
    explicit_bzero(line, sizeof(line));
    return *out ? 0 : -ENOMEM;
}

/* No two Baidu apps share a dealId (it is how a notification finds its app). */
static int conf_finish_baidu_app(struct config *c, void *obj, const char *name, char *msg,
                                 size_t len)
{
    struct config_baidu_app *a = obj;
    size_t i;

    for (i = 0; i < c->n_baidu_apps && c->baidu_apps[i] != a; i++) {
        if (strcmp(c->baidu_apps[i]->deal_id, a->deal_id) == 0) {
            snprintf(msg, len, "deal_id %s is also used by [baidu.app %s]", a->deal_id,
                     c->baidu_apps[i]->name);
            return -EINVAL;
        }
    }
    if (a->access_token && a->access_token_file) {
        snprintf(msg, len, "access_token and access_token_file are exclusive: give one");
        return -EINVAL;
    }
    if (a->access_token_file)
        return conf_read_secret(a->access_token_file, &a->access_token, msg, len);
    return 0;
}

/* No two Alipay apps share an app_id. */
static int conf_finish_alipay_app(struct config *c, void *obj, const char *name,
                                  char *msg, size_t len)
{
    struct config_alipay_app *a = obj;
    size_t i;

    for (i = 0; i < c->n_alipay_apps && c->alipay_apps[i] != a; i++) {
        if (strcmp(c->alipay_apps[i]->app_id, a->app_id) == 0) {
            snprintf(msg, len, "app_id %s is also used by [alipay.app %s]", a->app_id,
                     c->alipay_apps[i]->name);
            return -EINVAL;
        }
    }
    return 0;
}

/* A [baidu.tp] token_next, when given, is a token. */
static int conf_finish_tp(struct config *c, void *obj, const char *name, char *msg,
                          size_t len)
{
    const struct config_baidu_tp *t = obj;

    (void)c, (void)name;
    if (t->token_next && !t->token_next[0]) {
        snprintf(msg, len, "token_next is empty (remove it, or give the new token)");
        return -EINVAL;
    }
    return 0;
}

/* A gateway has the secret or key its signature mode needs, and a path. */
static int conf_finish_gateway(struct config *c, void *obj, const char *name, char *msg,
                               size_t len)
{
    struct config_gateway *g = obj;

    if (g->sign == GW_SIGN_RSA && !g->public_key) {
        snprintf(msg, len, "public_key is required with sign = rsa");
        return -EINVAL;
    }
    if (g->sign != GW_SIGN_RSA && (!g->secret || !g->secret[0])) {
        snprintf(msg, len, "secret is required with sign = %s", gw_sign_choices[g->sign]);
        return -EINVAL;
    }
    /* A second key of the other kind would never be tried: say so. */
    if (g->sign == GW_SIGN_RSA ? g->secret_next != NULL : g->public_key_next != NULL) {
        snprintf(msg, len, "%s does not apply with sign = %s (use %s)",
                 g->sign == GW_SIGN_RSA ? "secret_next" : "public_key_next",
                 gw_sign_choices[g->sign],
                 g->sign == GW_SIGN_RSA ? "public_key_next" : "secret_next");
        return -EINVAL;
    }
    if (g->secret_next && !g->secret_next[0]) {
        snprintf(msg, len, "secret_next is empty (remove it, or give the new secret)");
        return -EINVAL;
    }
    if (!g->dedupe_fields || !g->dedupe_fields[0]) {
        snprintf(msg, len, "dedupe_fields must name at least one field (two callbacks "
                           "with the same values of these fields are one callback)");
        return -EINVAL;
    }
    if (!g->notify_path) {
        char path[256];
        snprintf(path, sizeof(path), "/gateway/%s/notify", name);
        return conf_path(NULL, path, &g->notify_path, msg, len);
    }
    return 0;
}

/* One whsec_<base64> secret decoded into h's keys. */
static int conf_hook_key(struct config_hook *h, const char *w, char *msg, size_t len)
{
    uint8_t *k = NULL;
    size_t n = 0;

    if (strncmp(w, "whsec_", 6) != 0 || crypto_b64_decode(w + 6, strlen(w + 6), &k, &n) < 0 ||
        n < 16) {
        free(k);
        snprintf(msg, len, "secret: each secret is whsec_ followed by the base64 of at "
                           "least 16 random bytes (Standard Webhooks)");
        return -EINVAL;
    }
    h->keys[h->n_keys] = k;
    h->key_lens[h->n_keys++] = n;
    return 0;
}

/* A command hook: an executable named by its absolute path (no shell, no
 * PATH search), and nothing to sign with (it runs on this machine). */
static int conf_command_hook(struct config_hook *h, char *msg, size_t len)
{
    const char *prog = h->command[0];

    if (!prog || prog[0] != '/' || access(prog, X_OK) < 0) {
        snprintf(msg, len, "command: '%.200s' is not an executable file given by its absolute "
                 "path (the command runs without a shell)", prog ? prog : "");
        return -EINVAL;
    }
    if (h->secrets || h->secret_file) {
        snprintf(msg, len, "secret: only a url hook is signed; a command hook takes none");
        return -EINVAL;
    }
    return 0;
}

/* A hook has one destination, its globs, and (for url) secrets to sign with. */
static int conf_finish_hook(struct config *c, void *obj, const char *name, char *msg,
                            size_t len)
{
    struct config_hook *h = obj;
    char *from_file = NULL, *tok, *save = NULL;
    size_t n = 0, i;
    int r = 0;

    (void)c;
    if (!h->url == !h->command) {
        snprintf(msg, len, "give one of url and command");
        return -EINVAL;
    }
    if (asprintf(&h->kind, "hook.%s", name) < 0) {
        h->kind = NULL;
        return -ENOMEM;
    }
    if (h->command)
        return conf_command_hook(h, msg, len);
    if ((h->secrets && h->secret_file) || (!h->secrets && !h->secret_file)) {
        snprintf(msg, len, "give one of secret and secret_file (an HTTP hook is signed)");
        return -EINVAL;
    }
    if (h->secret_file && (r = conf_read_secret(h->secret_file, &from_file, msg, len)) < 0)
        return r;
    while (h->secrets && h->secrets[n])
        n++;
    n += from_file ? 8 : 0; /* a file's line may hold several words */
    h->keys = calloc(n + 1, sizeof(*h->keys));
    h->key_lens = calloc(n + 1, sizeof(*h->key_lens));
    if (!h->keys || !h->key_lens)
        r = -ENOMEM;
    for (i = 0; r == 0 && h->secrets && h->secrets[i]; i++)
        r = conf_hook_key(h, h->secrets[i], msg, len);
    for (tok = from_file ? strtok_r(from_file, " \t", &save) : NULL; r == 0 && tok;
         tok = strtok_r(NULL, " \t", &save))
        r = h->n_keys < n ? conf_hook_key(h, tok, msg, len) : -E2BIG;
    if (r == -E2BIG)
        snprintf(msg, len, "secret_file: at most 8 secrets");
    if (from_file) {
        explicit_bzero(from_file, strlen(from_file));
        free(from_file);
    }
    return r;
}

const struct config_baidu_app *config_baidu_app_by_deal(const struct config *c,
                                                        const char *deal)
{
    for (size_t i = 0; deal && i < c->n_baidu_apps; i++)
        if (strcmp(c->baidu_apps[i]->deal_id, deal) == 0)
            return c->baidu_apps[i];
    return NULL;
}

const char *config_baidu_app_id(const struct config_baidu_app *b)
{
    return b->app_id && b->app_id[0] ? b->app_id : b->name;
}

const struct config_baidu_app *config_baidu_app_by_id(const struct config *c, const char *id)
{
    for (size_t i = 0; id && i < c->n_baidu_apps; i++) {
        const struct config_baidu_app *b = c->baidu_apps[i];
        if ((b->app_id && strcmp(b->app_id, id) == 0) || strcmp(b->name, id) == 0)
            return b;
    }
    return NULL;
}

const struct config_hook *config_hook_by_kind(const struct config *c, const char *kind)
{
    size_t i;

    for (i = 0; i < c->n_hooks; i++)
        if (strcmp(c->hooks[i]->kind, kind) == 0)
            return c->hooks[i];
    return NULL;
}

/* ---- inih plumbing --------------------------------------------------- */

/* Strip leading and trailing blanks in place; returns the new start. */
static char *conf_trim(char *s)
{
    char *e;

    while (*s == ' ' || *s == '\t')
        s++;
    e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n'))
        *--e = '\0';
    return s;
}

static void conf_fail(struct conf_state *st, const char *section, const char *key,
                      const char *msg);
static struct conf_inst *conf_instance(struct conf_state *st, const char *section);

/* Cut an inline comment (" ;" or "\t;", as inih does) off a value. */
static void conf_cut_comment(char *v)
{
    char *p;

    for (p = v; (p = strchr(p, ';')) != NULL; p++) {
        if (p > v && (p[-1] == ' ' || p[-1] == '\t')) {
            *p = '\0';
            break;
        }
    }
}

/* A "[section]" line: the section is created and checked here, on its own line. */
static int conf_header(struct conf_state *st, const char *s)
{
    char name[128];
    const char *end = strchr(s, ']'),
               *after = end ? end + 1 + strspn(end + 1, " \t") : NULL;

    if (end && (size_t)(end - s - 1) > CONF_SECTION_MAX) {
        conf_fail(st, "", NULL, "section name too long (at most 49 characters between [ and ])");
        return -1;
    }
    if (!end || (*after && *after != ';' && *after != '#') ||
        (size_t)(end - s - 1) >= sizeof(name)) {
        conf_fail(st, "", NULL,
                  "malformed section header (expected [NAME] alone on the line)");
        return -1;
    }
    memcpy(name, s + 1, (size_t)(end - s - 1));
    name[end - s - 1] = '\0';
    return conf_instance(st, name) ? 0 : -1;
}

/* Keep the value of a line too long for inih; hand inih "key = <mark>". */
static void conf_long_value(struct conf_state *st, char *s, char *eq, char *str, int num)
{
    *eq = '\0';
    if (st->long_value) {
        explicit_bzero(st->long_value, strlen(st->long_value));
        free(st->long_value);
    }
    conf_cut_comment(eq + 1);
    st->long_value = strdup(conf_trim(eq + 1));
    snprintf(str, (size_t)num, "%s = %s\n", conf_trim(s), CONF_LONG_MARK);
}

/*
 * inih reader: one physical line per call, so st->line is always the line
 * being parsed. Section headers are checked here, so an error in one names
 * its own line. Debian's libinih is built with a 200-byte line buffer, and
 * a bare base64 RSA key is longer; such a "key = value" line is handed to
 * inih as "key = <mark>" with the real value kept here. Leading blanks are
 * removed so an indented line is never taken for a continuation line.
 * Returning NULL ends the parse (at the first error).
 */
static char *conf_reader(char *str, int num, void *stream)
{
    struct conf_state *st = stream;
    char *line = NULL, *s, *eq, *ret = str;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, st->f);

    if (n < 0 || st->failed) {
        free(line);
        return NULL;
    }
    st->line++;
    s = conf_trim(line);
    if (n > CONF_LINE_MAX) {
        conf_fail(st, "", NULL, "line longer than 65536 bytes");
        ret = NULL;
    } else if (s[0] == ';' || s[0] == '#') {
        snprintf(str, (size_t)num, ";\n"); /* comments may be any length */
    } else if (s[0] == '[') {
        ret = conf_header(st, s) == 0 ? str : NULL;
        if (ret)
            snprintf(str, (size_t)num, "%s\n", s);
    } else if (strlen(s) + 2 <= (size_t)num) {
        snprintf(str, (size_t)num, "%s\n", s);
    } else if ((eq = strchr(s, '=')) && eq - s < num - 16) {
        conf_long_value(st, s, eq, str, num);
    } else {
        conf_fail(st, "", NULL, "line is too long or is not KEY = VALUE");
        ret = NULL;
    }
    explicit_bzero(line, cap);
    free(line);
    return ret;
}

/* Record the first error with its location. */
static void conf_fail(struct conf_state *st, const char *section, const char *key,
                      const char *msg)
{
    if (st->failed)
        return;
    st->failed = 1;
    if (key)
        snprintf(st->err, sizeof(st->err), "%s:%u: [%s] %s: %s", st->c->file, st->line,
                 section, key, msg);
    else
        snprintf(st->err, sizeof(st->err), "%s:%u: %s", st->c->file, st->line, msg);
}

/* Find a section type by name. */
static int conf_section_index(const char *type)
{
    size_t i;

    for (i = 0; i < ARRAY_SIZE(sections); i++)
        if (strcmp(sections[i].name, type) == 0)
            return (int)i;
    return -1;
}

/* Apply the defaults of a section's keys to obj. */
static int conf_defaults(const struct conf_section *sec, void *obj, char *err,
                         size_t errlen)
{
    const struct conf_key *k;
    char msg[256];

    for (k = sec->keys; k->name; k++) {
        if (k->def && k->parse(k, k->def, (char *)obj + k->off, msg, sizeof(msg)) < 0) {
            snprintf(err, errlen, "default of [%s] %s: %s", sec->name, k->name, msg);
            return -EINVAL;
        }
    }
    return 0;
}

/* A new named instance appended to its array in the config. */
static void *conf_new_named(struct conf_state *st, int type, const char *name)
{
    const struct conf_section *sec = &sections[type];
    void ***arr = (void ***)((char *)st->c + sec->off), **grown;
    size_t *n = (size_t *)((char *)st->c + sec->noff);
    void *obj = calloc(1, sec->size);

    if (!obj)
        return NULL;
    grown = realloc(*arr, (*n + 1) * sizeof(void *));
    if (!grown) {
        free(obj);
        return NULL;
    }
    *arr = grown;
    (*arr)[(*n)++] = obj;
    /* every named struct starts with `char *name; unsigned line;` */
    *(char **)obj = strdup(name);
    *(unsigned *)((char *)obj + sizeof(char *)) = st->line;
    if (!*(char **)obj || conf_defaults(sec, obj, st->err, sizeof(st->err)) < 0)
        return NULL;
    return obj;
}

/* The instance for a section header text ("server", "gateway fubei"), created on first
 * use. */
static struct conf_inst *conf_instance(struct conf_state *st, const char *section)
{
    char type[64], msg[160];
    const char *sp = strchr(section, ' '), *name = sp ? sp + 1 : NULL;
    size_t tl = sp ? (size_t)(sp - section) : strlen(section), i;
    struct conf_inst *in;
    int t;

    snprintf(type, sizeof(type), "%.*s", (int)(tl < 63 ? tl : 63), section);
    t = conf_section_index(type);
    if (t < 0 || tl >= sizeof(type)) {
        snprintf(msg, sizeof(msg), "unknown section [%s]", section);
        conf_fail(st, section, NULL, msg);
        return NULL;
    }
    if (sections[t].named != (name != NULL) ||
        (name &&
         (!*name || strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                 "0123456789-_.") != strlen(name)))) {
        snprintf(msg, sizeof(msg),
                 sections[t].named
                     ? "section [%s] needs a name of letters, digits, - _ . "
                       "(e.g. [%s shop])"
                     : "section [%s] takes no name",
                 type, type);
        conf_fail(st, section, NULL, msg);
        return NULL;
    }
    for (i = 0; i < st->n_inst; i++) {
        in = &st->inst[i];
        if (in->type == t &&
            ((!name && !in->name) || (name && in->name && !strcmp(name, in->name))))
            return in;
    }
    if (st->n_inst == CONF_MAX_INSTANCES) {
        conf_fail(st, section, NULL, "too many sections");
        return NULL;
    }
    in = &st->inst[st->n_inst];
    in->type = t;
    in->line = st->line;
    in->name = name ? strdup(name) : NULL;
    in->obj = name ? conf_new_named(st, t, name) : (char *)st->c + sections[t].off;
    if (!in->obj || (name && !in->name)) {
        free(in->name);
        conf_fail(st, section, NULL, "out of memory");
        return NULL;
    }
    st->n_inst++;
    return in;
}

/* inih handler: one key of one section. */
static int conf_handler(void *user, const char *section, const char *name,
                        const char *value)
{
    struct conf_state *st = user;
    const struct conf_key *k;
    struct conf_inst *in;
    char msg[320];
    int ki, r;

    if (!section[0] && name) {
        conf_fail(st, section, NULL, "a key before any [section]");
        return 0;
    }
    in = conf_instance(st, section);
    if (!in)
        return 0;
    if (!name)
        return 1; /* a section header alone */
    for (ki = 0, k = sections[in->type].keys; k->name && strcmp(k->name, name); ki++, k++)
        ;
    if (!k->name) {
        conf_fail(st, section, name, "unknown key");
        return 0;
    }
    if (in->seen & (1ull << ki)) {
        conf_fail(st, section, name, "given twice");
        return 0;
    }
    in->seen |= 1ull << ki;
    if (strcmp(value, CONF_LONG_MARK) == 0 && st->long_value)
        value = st->long_value;
    if (k->required && value[0] == '\0') {
        conf_fail(st, section, name, "must not be empty");
        return 0;
    }
    msg[0] = '\0';
    r = k->parse(k, value, (char *)in->obj + k->off, msg, sizeof(msg));
    if (r < 0) {
        conf_fail(st, section, name, r == -ENOMEM ? "out of memory" : msg);
        return 0;
    }
    return 1;
}

/* Required keys of one instance, then its section's own checks. */
static int conf_check_instance(struct conf_state *st, struct conf_inst *in, char *err,
                               size_t errlen)
{
    const struct conf_section *sec = &sections[in->type];
    const struct conf_key *k;
    char label[128], msg[400];
    int ki;

    snprintf(label, sizeof(label), "%s%s%s", sec->name, in->name ? " " : "",
             in->name ? in->name : "");
    for (ki = 0, k = sec->keys; k->name; ki++, k++) {
        if (k->required && !(in->seen & (1ull << ki))) {
            snprintf(err, errlen, "%s:%u: [%s] %s is required", st->c->file, in->line,
                     label, k->name);
            return -EINVAL;
        }
    }
    msg[0] = '\0';
    if (sec->finish && sec->finish(st->c, in->obj, in->name, msg, sizeof(msg)) < 0) {
        snprintf(err, errlen, "%s:%u: [%s] %s", st->c->file, in->line, label, msg);
        return -EINVAL;
    }
    return 0;
}

/* Every instance is complete; [server] and [store] are present. */
static int conf_check(struct conf_state *st, char *err, size_t errlen)
{
    static const char *const must[] = {"server", "store"};
    size_t i, j;
    int r;

    for (j = 0; j < ARRAY_SIZE(must); j++) {
        for (i = 0; i < st->n_inst && strcmp(sections[st->inst[i].type].name, must[j]);
             i++)
            ;
        if (i == st->n_inst) {
            snprintf(err, errlen, "%s: [%s] %s is required", st->c->file, must[j],
                     sections[conf_section_index(must[j])].keys[0].name);
            return -EINVAL;
        }
    }
    for (i = 0; i < st->n_inst; i++)
        if ((r = conf_check_instance(st, &st->inst[i], err, errlen)) < 0)
            return r;
    st->c->tp.enabled = 0;
    for (i = 0; i < st->n_inst; i++)
        if (strcmp(sections[st->inst[i].type].name, "baidu.tp") == 0)
            st->c->tp.enabled = 1;
    return 0;
}

/* Resolve values that depend on the machine. */
static void conf_resolve(struct config *c)
{
    long cpus;

    if (c->server.threads == 0) {
        cpus = sysconf(_SC_NPROCESSORS_ONLN);
        c->server.threads = cpus > 0 ? (unsigned)cpus : 1;
    }
}

/* Defaults of every unnamed section (named ones get theirs when they appear). */
static int conf_all_defaults(struct config *c, char *err, size_t errlen)
{
    size_t i;
    int r;

    for (i = 0; i < ARRAY_SIZE(sections); i++)
        if (!sections[i].named &&
            (r = conf_defaults(&sections[i], (char *)c + sections[i].off, err, errlen)) <
                0)
            return r;
    return 0;
}

/* Read and validate a config file. */
int config_load(const char *path, struct config **out, char *err, size_t errlen)
{
    struct conf_state *st = calloc(1, sizeof(*st));
    struct config *c = calloc(1, sizeof(*c));
    size_t i;
    int r = -ENOMEM;

    if (!st || !c || !(c->file = strdup(path))) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    st->c = c;
    if ((r = conf_all_defaults(c, err, errlen)) < 0)
        goto out;
    st->f = fopen(path, "r");
    if (!st->f) {
        r = -errno;
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        goto out;
    }
    r = ini_parse_stream(conf_reader, st, conf_handler, st);
    if (r != 0 || st->failed) {
        if (!st->failed)
            snprintf(st->err, sizeof(st->err),
                     "%s:%d: syntax error (expected [section] or KEY = VALUE)", path, r);
        snprintf(err, errlen, "%s", st->err);
        r = -EINVAL;
        goto out;
    }
    if ((r = conf_check(st, err, errlen)) < 0)
        goto out;
    conf_resolve(c);
    *out = c;
    c = NULL;
out:
    if (st) {
        if (st->f)
            fclose(st->f);
        if (st->long_value) {
            explicit_bzero(st->long_value, strlen(st->long_value));
            free(st->long_value);
        }
        for (i = 0; i < st->n_inst; i++)
            free(st->inst[i].name);
        free(st);
    }
    config_free(c);
    return r;
}

/* Release what the keys of one section instance own. */
static void conf_free_obj(const struct conf_section *sec, void *obj)
{
    const struct conf_key *k;
    void *field;

    for (k = sec->keys; k->name; k++) {
        field = (char *)obj + k->off;
        if (k->owns == OWN_STR || k->owns == OWN_SECRET) {
            char *s = *(char **)field;
            if (s && k->owns == OWN_SECRET)
                explicit_bzero(s, strlen(s));
            free(s);
        } else if (k->owns == OWN_KEY) {
            crypto_key_free(*(struct crypto_key **)field);
        } else if (k->owns == OWN_STRV) {
            conf_strv_free(*(char ***)field);
        }
    }
}

/* Free a config, wiping secrets. */
struct config *config_free(struct config *c)
{
    const struct conf_section *sec;
    size_t i, j, n;
    void **arr;

    if (!c)
        return NULL;
    for (i = 0; i < c->n_hooks; i++) {
        struct config_hook *h = c->hooks[i];
        for (j = 0; h && h->keys && j < h->n_keys; j++) {
            explicit_bzero(h->keys[j], h->key_lens[j]);
            free(h->keys[j]);
        }
        if (h) {
            free(h->keys);
            free(h->key_lens);
            free(h->kind);
        }
    }
    for (i = 0; i < ARRAY_SIZE(sections); i++) {
        sec = &sections[i];
        if (!sec->named) {
            conf_free_obj(sec, (char *)c + sec->off);
            continue;
        }
        arr = *(void ***)((char *)c + sec->off);
        n = *(size_t *)((char *)c + sec->noff);
        for (j = 0; j < n; j++) {
            if (!arr[j])
                continue;
            conf_free_obj(sec, arr[j]);
            free(*(char **)arr[j]); /* the instance's name */
            free(arr[j]);
        }
        free(arr);
    }
    free(c->server.trusted);
    explicit_bzero(&c->tp.aes_key, sizeof(c->tp.aes_key));
    explicit_bzero(&c->tp.aes_key_next, sizeof(c->tp.aes_key_next));
    free(c->file);
    free(c);
    return NULL;
}

/* 1 when the first `prefix` bits of a and b agree. */
static int conf_prefix_match(const uint8_t *a, const uint8_t *b, unsigned prefix)
{
    unsigned full = prefix / 8, rest = prefix % 8;

    if (memcmp(a, b, full) != 0)
        return 0;
    if (rest == 0)
        return 1;
    return ((a[full] ^ b[full]) & (uint8_t)(0xff << (8 - rest))) == 0;
}

/* Is a raw address of this family in the trusted list? */
static int conf_trusted_raw(const struct config *c, int family, const uint8_t *addr)
{
    size_t i;

    for (i = 0; i < c->server.n_trusted; i++) {
        const struct config_net *n = &c->server.trusted[i];
        if (n->family == family && conf_prefix_match(n->addr, addr, n->prefix))
            return 1;
    }
    return 0;
}

/* 1 when addr is in the trusted proxy list (IPv4-mapped IPv6 counts as IPv4). */
int config_is_trusted(const struct config *c, const struct sockaddr *addr)
{
    if (!addr)
        return 0;
    if (addr->sa_family == AF_INET) {
        const struct sockaddr_in *s = (const struct sockaddr_in *)addr;
        return conf_trusted_raw(c, AF_INET, (const uint8_t *)&s->sin_addr);
    }
    if (addr->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)addr;
        if (IN6_IS_ADDR_V4MAPPED(&s->sin6_addr))
            return conf_trusted_raw(c, AF_INET, s->sin6_addr.s6_addr + 12);
        return conf_trusted_raw(c, AF_INET6, s->sin6_addr.s6_addr);
    }
    return 0;
}

/* Same test for a textual address. */
int config_is_trusted_text(const struct config *c, const char *addr)
{
    uint8_t raw[16];

    if (inet_pton(AF_INET, addr, raw) == 1)
        return conf_trusted_raw(c, AF_INET, raw);
    if (inet_pton(AF_INET6, addr, raw) != 1)
        return 0;
    if (IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)raw))
        return conf_trusted_raw(c, AF_INET, raw + 12);
    return conf_trusted_raw(c, AF_INET6, raw);
}

/* conf_new_named writes the name and header line through the first members. */
_Static_assert(offsetof(struct config_baidu_app, name) == 0 &&
                   offsetof(struct config_alipay_app, name) == 0 &&
                   offsetof(struct config_gateway, name) == 0 &&
                   offsetof(struct config_hook, name) == 0,
               "named sections start with their name");
_Static_assert(offsetof(struct config_baidu_app, line) == sizeof(char *) &&
                   offsetof(struct config_alipay_app, line) == sizeof(char *) &&
                   offsetof(struct config_gateway, line) == sizeof(char *) &&
                   offsetof(struct config_hook, line) == sizeof(char *),
               "named sections keep their header line second");
