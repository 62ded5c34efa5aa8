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

#include "crypto.h"
#include "log.h"
#include "util.h"

#define CONF_LINE_MAX  65536 /* longest physical line accepted */
#define CONF_LONG_MARK "\x01long"

struct conf_key;
typedef int (*conf_parse_fn)(const struct conf_key *k, const char *v, void *dst, char *err,
                             size_t errlen);

/* One key of a section: how to parse it and where the result goes. */
struct conf_key {
    const char *name;
    conf_parse_fn parse;
    size_t off;       /* offset inside the section's struct */
    long min, max;    /* bounds for numbers */
    const char *def;  /* default, parsed with the same parser; NULL = none */
    int required;     /* must be given when the section is present */
    const char *const *choices; /* for conf_enum: NULL-terminated names */
};

/* One section type: its keys and where its struct lives in struct config. */
struct conf_section {
    const char *name;
    const struct conf_key *keys;
    size_t off; /* offset of the section's struct in struct config */
    int (*finish)(struct config *c, char *err, size_t errlen);
};

/* Parser state shared with the inih callbacks. */
struct conf_state {
    struct config *c;
    FILE *f;
    unsigned line;
    char *long_value;           /* the value of a line too long for inih */
    int long_error;             /* a long line that is not key = value */
    uint64_t seen[8];           /* per section index: bitmap of keys given */
    unsigned present;           /* bitmap of sections present */
    char err[512];
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
    snprintf(err, errlen, "'%s' is not a size between %ld and %ld bytes", v, k->min, k->max);
    return -EINVAL;
}

/* yes/no, true/false, on/off, 1/0. */
static int conf_bool(const struct conf_key *k, const char *v, void *dst, char *err,
                     size_t errlen)
{
    static const char *yes[] = {"yes", "true", "on", "1"}, *no[] = {"no", "false", "off", "0"};
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
    struct config_server *s = (struct config_server *)((char *)dst - offsetof(struct config_server, listen));
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
        p = strtoul(slash + 1, &end, 10);
        if (errno || *end || slash[1] == '\0' || p > n->prefix)
            return -EINVAL;
        n->prefix = (unsigned)p;
    }
    return 0;
}

/* A list of addresses or CIDR blocks separated by spaces or commas. */
static int conf_nets(const struct conf_key *k, const char *v, void *dst, char *err,
                     size_t errlen)
{
    struct config_server *s = (struct config_server *)((char *)dst - offsetof(struct config_server, trusted));
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

/* An EncodingAESKey: 43 base64 characters. */
static int conf_aes_key(const struct conf_key *k, const char *v, void *dst, char *err,
                        size_t errlen)
{
    if (strlen(v) != 43 || crypto_tp_key(v, dst) < 0) {
        snprintf(err, errlen, "must be the 43-character EncodingAESKey from the platform");
        return -EINVAL;
    }
    return 0;
}

/* ---- the tables ------------------------------------------------------ */

static const char *const sync_choices[] = {"normal", "full", NULL};

#define SRV(f) offsetof(struct config_server, f)
static const struct conf_key server_keys[] = {
    {"listen", conf_listen, SRV(listen), 0, 0, NULL, 1, NULL},
    {"threads", conf_uint, SRV(threads), 0, 256, "0", 0, NULL},
    {"max_body", conf_size, SRV(max_body), 1024, 64 * 1024 * 1024, "65536", 0, NULL},
    {"connection_timeout", conf_uint, SRV(connection_timeout), 1, 3600, "10", 0, NULL},
    {"max_connections", conf_uint, SRV(max_connections), 1, 65536, "1024", 0, NULL},
    {"max_connections_per_ip", conf_uint, SRV(max_connections_per_ip), 1, 65536, "256", 0,
     NULL},
    {"trusted_proxies", conf_nets, SRV(trusted), 0, 0, "127.0.0.1 ::1", 0, NULL},
    {"log_level", conf_log_level, SRV(log_level), 0, 0, "info", 0, NULL},
    {"drain_timeout", conf_uint, SRV(drain_timeout), 1, 3600, "30", 0, NULL},
    {NULL, NULL, 0, 0, 0, NULL, 0, NULL},
};

#define STO(f) offsetof(struct config_store, f)
static const struct conf_key store_keys[] = {
    {"path", conf_str, STO(path), 0, 0, NULL, 1, NULL},
    {"synchronous", conf_enum, STO(synchronous_full), 0, 0, "full", 0, sync_choices},
    {"batch_max", conf_uint, STO(batch_max), 1, 100000, "512", 0, NULL},
    {"queue_max", conf_uint, STO(queue_max), 16, 1000000, "16384", 0, NULL},
    {"rejections_keep", conf_uint, STO(rejections_keep), 10, 10000000, "10000", 0, NULL},
    {"rejection_body_max", conf_uint, STO(rejection_body_max), 0, 65536, "512", 0, NULL},
    {NULL, NULL, 0, 0, 0, NULL, 0, NULL},
};

#define TP(f) offsetof(struct config_baidu_tp, f)
static const struct conf_key tp_keys[] = {
    {"path", conf_str, TP(path), 0, 0, "/baidu/tp/events", 0, NULL},
    {"client_id", conf_str, TP(client_id), 0, 0, NULL, 1, NULL},
    {"token", conf_str, TP(token), 0, 0, NULL, 1, NULL},
    {"encoding_aes_key", conf_aes_key, TP(aes_key), 0, 0, NULL, 1, NULL},
    {"allow_plaintext", conf_bool, TP(allow_plaintext), 0, 0, "no", 0, NULL},
    {NULL, NULL, 0, 0, 0, NULL, 0, NULL},
};

static int conf_finish_tp(struct config *c, char *err, size_t errlen);

static const struct conf_section sections[] = {
    {"server", server_keys, offsetof(struct config, server), NULL},
    {"store", store_keys, offsetof(struct config, store), NULL},
    {"baidu.tp", tp_keys, offsetof(struct config, tp), conf_finish_tp},
};

/* ---- checks across keys ---------------------------------------------- */

/* The TP section is usable: paths are absolute. */
static int conf_finish_tp(struct config *c, char *err, size_t errlen)
{
    c->tp.enabled = 1;
    if (c->tp.path[0] != '/') {
        snprintf(err, errlen, "[baidu.tp] path: '%s' must start with '/'", c->tp.path);
        return -EINVAL;
    }
    return 0;
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

/*
 * inih reader: one physical line per call, so st->line is always the line
 * being parsed. Debian's libinih is built with a 200-byte line buffer, and a
 * bare base64 RSA key is longer; such a "key = value" line is handed to inih
 * as "key = <mark>" with the real value kept here. Leading blanks are
 * removed so an indented line is never taken for a continuation line.
 */
static char *conf_reader(char *str, int num, void *stream)
{
    struct conf_state *st = stream;
    char *line = NULL, *s, *eq;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, st->f);

    if (n < 0) {
        free(line);
        return NULL;
    }
    st->line++;
    s = conf_trim(line);
    if (n > CONF_LINE_MAX) {
        st->long_error = 1;
        snprintf(str, (size_t)num, "%s", ";");
    } else if (strlen(s) + 2 <= (size_t)num) {
        snprintf(str, (size_t)num, "%s\n", s);
    } else if (s[0] != ';' && s[0] != '#' && (eq = strchr(s, '=')) && eq - s < num - 16) {
        *eq = '\0';
        free(st->long_value);
        st->long_value = strdup(conf_trim(eq + 1));
        snprintf(str, (size_t)num, "%s = %s\n", conf_trim(s), CONF_LONG_MARK);
    } else {
        /* A long comment is harmless; anything else long is an error. */
        st->long_error = s[0] != ';' && s[0] != '#';
        snprintf(str, (size_t)num, ";\n");
    }
    free(line);
    return str;
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
static int conf_section_index(const char *name)
{
    size_t i;

    for (i = 0; i < ARRAY_SIZE(sections); i++)
        if (strcmp(sections[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* inih handler: one key of one section. */
static int conf_handler(void *user, const char *section, const char *name, const char *value)
{
    struct conf_state *st = user;
    const struct conf_key *k;
    char msg[320], *base;
    int si, ki, r;

    if (st->long_error) {
        conf_fail(st, section, NULL, "line is too long or is not KEY = VALUE");
        return 0;
    }
    si = conf_section_index(section);
    if (si < 0) {
        snprintf(msg, sizeof(msg), "unknown section [%s]", section);
        conf_fail(st, section, NULL, msg);
        return 0;
    }
    st->present |= 1u << si;
    if (!name)
        return 1; /* a section header alone */
    for (ki = 0, k = sections[si].keys; k->name && strcmp(k->name, name); ki++, k++)
        ;
    if (!k->name) {
        conf_fail(st, section, name, "unknown key");
        return 0;
    }
    if (st->seen[si] & (1ull << ki)) {
        conf_fail(st, section, name, "given twice");
        return 0;
    }
    st->seen[si] |= 1ull << ki;
    if (strcmp(value, CONF_LONG_MARK) == 0 && st->long_value)
        value = st->long_value;
    if (k->required && value[0] == '\0') {
        conf_fail(st, section, name, "must not be empty");
        return 0;
    }
    base = (char *)st->c + sections[si].off;
    msg[0] = '\0';
    r = k->parse(k, value, base + k->off, msg, sizeof(msg));
    if (r < 0) {
        conf_fail(st, section, name, r == -ENOMEM ? "out of memory" : msg);
        return 0;
    }
    return 1;
}

/* Apply the defaults of every key (before the file is read). */
static int conf_defaults(struct config *c, char *err, size_t errlen)
{
    const struct conf_key *k;
    char msg[256];
    size_t i;

    for (i = 0; i < ARRAY_SIZE(sections); i++) {
        for (k = sections[i].keys; k->name; k++) {
            if (!k->def)
                continue;
            if (k->parse(k, k->def, (char *)c + sections[i].off + k->off, msg,
                         sizeof(msg)) < 0) {
                snprintf(err, errlen, "default of [%s] %s: %s", sections[i].name, k->name,
                         msg);
                return -EINVAL;
            }
        }
    }
    return 0;
}

/* Required keys of present sections, then each section's own checks. */
static int conf_check(struct conf_state *st, char *err, size_t errlen)
{
    const struct conf_key *k;
    size_t i;
    int ki, r;

    for (i = 0; i < ARRAY_SIZE(sections); i++) {
        int present = (st->present >> i) & 1;
        int must = strcmp(sections[i].name, "server") == 0 ||
                   strcmp(sections[i].name, "store") == 0;
        for (ki = 0, k = sections[i].keys; k->name; ki++, k++) {
            if (k->required && (present || must) && !(st->seen[i] & (1ull << ki))) {
                snprintf(err, errlen, "%s: [%s] %s is required", st->c->file,
                         sections[i].name, k->name);
                return -EINVAL;
            }
        }
        if (present && sections[i].finish) {
            char msg[400];
            r = sections[i].finish(st->c, msg, sizeof(msg));
            if (r < 0) {
                snprintf(err, errlen, "%s: %s", st->c->file, msg);
                return r;
            }
        }
    }
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

/* Read and validate a config file. */
int config_load(const char *path, struct config **out, char *err, size_t errlen)
{
    struct conf_state st;
    struct config *c;
    int r = -EINVAL;

    memset(&st, 0, sizeof(st));
    c = calloc(1, sizeof(*c));
    if (!c || !(c->file = strdup(path))) {
        snprintf(err, errlen, "out of memory");
        free(c);
        return -ENOMEM;
    }
    st.c = c;
    r = conf_defaults(c, err, errlen);
    if (r < 0)
        goto out;
    st.f = fopen(path, "r");
    if (!st.f) {
        r = -errno;
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        goto out;
    }
    r = ini_parse_stream(conf_reader, &st, conf_handler, &st);
    if (r != 0 || st.failed) {
        if (!st.failed)
            snprintf(st.err, sizeof(st.err), "%s:%d: syntax error (expected [section] or "
                     "KEY = VALUE)", path, r);
        snprintf(err, errlen, "%s", st.err);
        r = -EINVAL;
        goto out;
    }
    r = conf_check(&st, err, errlen);
    if (r < 0)
        goto out;
    conf_resolve(c);
    *out = c;
    c = NULL;
out:
    if (st.f)
        fclose(st.f);
    if (st.long_value) {
        explicit_bzero(st.long_value, strlen(st.long_value));
        free(st.long_value);
    }
    config_free(c);
    return r;
}

/* Wipe and free a string. */
static void conf_free_secret(char *s)
{
    if (!s)
        return;
    explicit_bzero(s, strlen(s));
    free(s);
}

/* Free a config. */
struct config *config_free(struct config *c)
{
    if (!c)
        return NULL;
    free(c->file);
    free(c->server.listen);
    free(c->server.trusted);
    free(c->store.path);
    free(c->tp.path);
    free(c->tp.client_id);
    conf_free_secret(c->tp.token);
    explicit_bzero(c->tp.aes_key, sizeof(c->tp.aes_key));
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
    if (inet_pton(AF_INET6, addr, raw) == 1)
        return conf_trusted_raw(c, AF_INET6, raw);
    return 0;
}
