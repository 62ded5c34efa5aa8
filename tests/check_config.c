/*
 * check_config.c: the specification of config.c -- config_load on real files
 * (defaults, bounds, file:line errors naming the key, listen forms, sizes,
 * booleans, trusted proxies, long lines past libinih's 200-byte buffer,
 * comments and indentation, the EncodingAESKey), the trusted-proxy tests,
 * and the route table routes_build makes from a config.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <syslog.h>
#include <unistd.h>

#include "config.h"
#include "providers/provider.h"

/* Where the test files go (one mkdtemp directory per run). */
static char tmpdir[PATH_MAX];

/* Sentinel an output parameter must keep when the call fails. */
#define UNTOUCHED ((struct config *)&tmpdir)

/* The two required keys, in a file whose line numbers the tests rely on. */
#define MIN_SERVER "[server]\nlisten = 127.0.0.1:8080\n"
#define MIN_STORE  "[store]\npath = /var/lib/payhookd/events.db\n"
#define MINIMAL    MIN_SERVER MIN_STORE

/* A valid EncodingAESKey: the bytes 0..31 in base64 without its '='. */
#define AES43 "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"

/* A complete [baidu.tp] section (5 lines). */
#define TP_SECTION                                                                       \
    "[baidu.tp]\nclient_id = client-1\ntoken = tok-1\nencoding_aes_key = " AES43 "\n"    \
    "allow_plaintext = no\n"

/* Write text into a new file in tmpdir; returns its path (static storage). */
static const char *conf_file(const char *text)
{
    static char path[PATH_MAX + 32];
    static unsigned seq;
    FILE *f;

    snprintf(path, sizeof(path), "%s/payhookd-%u.conf", tmpdir, ++seq);
    f = fopen(path, "w");
    ck_assert_msg(f != NULL, "cannot create %s", path);
    ck_assert_uint_eq(fwrite(text, 1, strlen(text), f), strlen(text));
    ck_assert_int_eq(fclose(f), 0);
    return path;
}

/* Load text that must be valid. */
static struct config *load_ok(const char *text)
{
    struct config *c = NULL;
    char err[1024] = "";
    const char *path = conf_file(text);
    int r = config_load(path, &c, err, sizeof(err));

    ck_assert_msg(r == 0, "config refused (%d): %s\n--- file ---\n%.400s", r, err, text);
    ck_assert_ptr_nonnull(c);
    return c;
}

/*
 * Load text that must be refused; returns the message in err. The output
 * parameter must not be written and the path must lead the message.
 */
static const char *load_err(const char *text, char *err, size_t errlen)
{
    struct config *c = UNTOUCHED;
    const char *path = conf_file(text);
    int r;

    err[0] = '\0';
    r = config_load(path, &c, err, errlen);
    ck_assert_msg(r < 0, "config accepted, want an error\n--- file ---\n%.400s", text);
    ck_assert_msg(r == -EINVAL, "returned %d, want -EINVAL: %s", r, err);
    ck_assert_msg(c == UNTOUCHED, "output written on failure");
    ck_assert_msg(strncmp(err, path, strlen(path)) == 0,
                  "message does not start with %s: %s", path, err);
    return path;
}

/*
 * Assert that text is refused with a message starting "FILE:LINE: " that
 * contains every needle.
 */
static void expect_err_at(const char *text, unsigned line, const char *needle1,
                          const char *needle2)
{
    char err[1024], prefix[PATH_MAX + 64];
    const char *path = load_err(text, err, sizeof(err));

    snprintf(prefix, sizeof(prefix), "%s:%u: ", path, line);
    ck_assert_msg(strncmp(err, prefix, strlen(prefix)) == 0,
                  "want prefix \"%s\", got: %s", prefix, err);
    ck_assert_msg(!needle1 || strstr(err, needle1), "\"%s\" not in: %s", needle1, err);
    ck_assert_msg(!needle2 || strstr(err, needle2), "\"%s\" not in: %s", needle2, err);
}

/* A file with one extra [server] key on line 3. */
static const char *server_kv(char *buf, size_t len, const char *key, const char *value)
{
    snprintf(buf, len, MIN_SERVER "%s = %s\n" MIN_STORE, key, value);
    return buf;
}

/* A file with one extra [store] key on line 5. */
static const char *store_kv(char *buf, size_t len, const char *key, const char *value)
{
    snprintf(buf, len, MINIMAL "%s = %s\n", key, value);
    return buf;
}

/* The value a [server] key takes, parsed through a whole file. */
static struct config *server_ok(const char *key, const char *value)
{
    char text[512];

    return load_ok(server_kv(text, sizeof(text), key, value));
}

/* Assert a [server] key's value is refused at line 3, naming the key. */
static void server_bad(const char *key, const char *value)
{
    char text[512], label[128];

    snprintf(label, sizeof(label), "[server] %s:", key);
    expect_err_at(server_kv(text, sizeof(text), key, value), 3, label, NULL);
}

/* Assert a [store] key's value is refused at line 5, naming the key. */
static void store_bad(const char *key, const char *value)
{
    char text[512], label[128];

    snprintf(label, sizeof(label), "[store] %s:", key);
    expect_err_at(store_kv(text, sizeof(text), key, value), 5, label, NULL);
}

/* The value of a [store] key, parsed through a whole file. */
static struct config *store_ok(const char *key, const char *value)
{
    char text[512];

    return load_ok(store_kv(text, sizeof(text), key, value));
}

/* A sockaddr_in for a dotted quad. */
static struct sockaddr_in sin4(const char *a)
{
    struct sockaddr_in s;

    memset(&s, 0, sizeof(s));
    s.sin_family = AF_INET;
    ck_assert_int_eq(inet_pton(AF_INET, a, &s.sin_addr), 1);
    return s;
}

/* A sockaddr_in6 for an IPv6 text address. */
static struct sockaddr_in6 sin6(const char *a)
{
    struct sockaddr_in6 s;

    memset(&s, 0, sizeof(s));
    s.sin6_family = AF_INET6;
    ck_assert_int_eq(inet_pton(AF_INET6, a, &s.sin6_addr), 1);
    return s;
}

/* config_is_trusted on a textual IPv4 or IPv6 address, through a sockaddr. */
static int trusted_sa(const struct config *c, const char *a)
{
    struct sockaddr_in s4;
    struct sockaddr_in6 s6;

    if (strchr(a, ':')) {
        s6 = sin6(a);
        return config_is_trusted(c, (const struct sockaddr *)&s6);
    }
    s4 = sin4(a);
    return config_is_trusted(c, (const struct sockaddr *)&s4);
}

/* Assert both trust functions agree that a is (or is not) trusted. */
static void trust_is(const struct config *c, const char *a, int want)
{
    ck_assert_msg(trusted_sa(c, a) == want, "config_is_trusted(%s) = %d, want %d", a,
                  !want, want);
    ck_assert_msg(config_is_trusted_text(c, a) == want,
                  "config_is_trusted_text(%s) = %d, want %d", a, !want, want);
}

/* A string of n copies of ch (malloc'd). */
static char *repeat(char ch, size_t n)
{
    char *s = malloc(n + 1);

    ck_assert_ptr_nonnull(s);
    memset(s, ch, n);
    s[n] = '\0';
    return s;
}

/* A file text built with printf (malloc'd), for the long-line tests. */
static char *textf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *textf(const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    int n;

    va_start(ap, fmt);
    n = vasprintf(&s, fmt, ap);
    va_end(ap);
    ck_assert_int_ge(n, 0);
    return s;
}

/* ---- defaults ----------------------------------------------------------- */

/* The two required keys alone give every documented default. */
START_TEST(minimal_file_defaults)
{
    struct config *c = load_ok(MINIMAL);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);

    ck_assert_ptr_nonnull(c->file);
    ck_assert_str_eq(c->server.listen, "127.0.0.1:8080");
    ck_assert_str_eq(c->store.path, "/var/lib/payhookd/events.db");
    ck_assert_uint_eq(c->server.threads, cpus > 0 ? (unsigned)cpus : 1);
    ck_assert_uint_eq(c->server.max_body, 65536);
    ck_assert_uint_eq(c->server.connection_timeout, 10);
    ck_assert_uint_eq(c->server.max_connections, 1024);
    ck_assert_uint_eq(c->server.max_connections_per_ip, 256);
    ck_assert_uint_eq(c->server.drain_timeout, 30);
    ck_assert_int_eq(c->server.log_level, LOG_INFO);
    ck_assert_int_eq(c->store.synchronous_full, 1);
    ck_assert_uint_eq(c->store.batch_max, 512);
    ck_assert_uint_eq(c->store.queue_max, 16384);
    ck_assert_uint_eq(c->store.rejections_keep, 10000);
    ck_assert_uint_eq(c->store.rejection_body_max, 512);
    ck_assert_int_eq(c->tp.enabled, 0);
    ck_assert_int_eq(c->tp.allow_plaintext, 0);
    /* trusted_proxies = 127.0.0.1 ::1, as single addresses */
    ck_assert_uint_eq(c->server.n_trusted, 2);
    ck_assert_int_eq(c->server.trusted[0].family, AF_INET);
    ck_assert_uint_eq(c->server.trusted[0].prefix, 32);
    ck_assert_int_eq(c->server.trusted[1].family, AF_INET6);
    ck_assert_uint_eq(c->server.trusted[1].prefix, 128);
    trust_is(c, "127.0.0.1", 1);
    trust_is(c, "::1", 1);
    trust_is(c, "127.0.0.2", 0);
    trust_is(c, "::2", 0);
    trust_is(c, "192.0.2.1", 0);
    config_free(c);
}
END_TEST

/* The documented example (etc/payhookd.conf) loads and writes exactly the defaults. */
START_TEST(documented_example_is_the_defaults)
{
    char path[PATH_MAX], err[1024] = "";
    const char *slash = strrchr(__FILE__, '/');
    struct config *doc = NULL, *def = load_ok(MINIMAL);
    size_t i;

    snprintf(path, sizeof(path), "%.*s/../etc/payhookd.conf",
             slash ? (int)(slash - __FILE__) : 1, slash ? __FILE__ : ".");
    ck_assert_msg(config_load(path, &doc, err, sizeof(err)) == 0, "%s: %s", path, err);
    ck_assert_uint_eq(doc->server.threads, def->server.threads);
    ck_assert_uint_eq(doc->server.max_body, def->server.max_body);
    ck_assert_uint_eq(doc->server.connection_timeout, def->server.connection_timeout);
    ck_assert_uint_eq(doc->server.max_connections, def->server.max_connections);
    ck_assert_uint_eq(doc->server.max_connections_per_ip,
                      def->server.max_connections_per_ip);
    ck_assert_uint_eq(doc->server.drain_timeout, def->server.drain_timeout);
    ck_assert_int_eq(doc->server.log_level, def->server.log_level);
    ck_assert_uint_eq(doc->server.n_trusted, def->server.n_trusted);
    for (i = 0; i < def->server.n_trusted; i++) {
        ck_assert_int_eq(doc->server.trusted[i].family, def->server.trusted[i].family);
        ck_assert_uint_eq(doc->server.trusted[i].prefix, def->server.trusted[i].prefix);
        ck_assert_mem_eq(doc->server.trusted[i].addr, def->server.trusted[i].addr, 16);
    }
    ck_assert_int_eq(doc->store.synchronous_full, def->store.synchronous_full);
    ck_assert_uint_eq(doc->store.batch_max, def->store.batch_max);
    ck_assert_uint_eq(doc->store.queue_max, def->store.queue_max);
    ck_assert_uint_eq(doc->store.rejections_keep, def->store.rejections_keep);
    ck_assert_uint_eq(doc->store.rejection_body_max, def->store.rejection_body_max);
    ck_assert_int_eq(doc->tp.enabled, 0);
    config_free(doc);
    config_free(def);
}
END_TEST

/* config_free takes NULL and returns NULL. */
START_TEST(free_null)
{
    ck_assert_ptr_null(config_free(NULL));
}
END_TEST

/* threads = 0 means the CPU count, any other value is taken as written. */
START_TEST(threads_resolved)
{
    struct config *c = server_ok("threads", "0");
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);

    ck_assert_uint_eq(c->server.threads, cpus > 0 ? (unsigned)cpus : 1);
    config_free(c);
    c = server_ok("threads", "3");
    ck_assert_uint_eq(c->server.threads, 3);
    config_free(c);
}
END_TEST

/* ---- bounds --------------------------------------------------------------- */

/* One numeric key: its bounds and the value just outside each. */
struct bound {
    const char *key;
    const char *low, *high;    /* accepted */
    const char *below, *above; /* refused */
    unsigned long low_v, high_v;
};

/* Read an unsigned [server] or [store] field by key name. */
static unsigned long field_of(const struct config *c, const char *key)
{
    if (!strcmp(key, "threads"))
        return c->server.threads;
    if (!strcmp(key, "max_body"))
        return c->server.max_body;
    if (!strcmp(key, "connection_timeout"))
        return c->server.connection_timeout;
    if (!strcmp(key, "max_connections"))
        return c->server.max_connections;
    if (!strcmp(key, "max_connections_per_ip"))
        return c->server.max_connections_per_ip;
    if (!strcmp(key, "drain_timeout"))
        return c->server.drain_timeout;
    if (!strcmp(key, "batch_max"))
        return c->store.batch_max;
    if (!strcmp(key, "queue_max"))
        return c->store.queue_max;
    if (!strcmp(key, "rejections_keep"))
        return c->store.rejections_keep;
    if (!strcmp(key, "rejection_body_max"))
        return c->store.rejection_body_max;
    ck_abort_msg("no field for %s", key);
    return 0;
}

/* The numeric [server] keys: bounds from etc/payhookd.conf and design.md. */
static const struct bound server_bounds[] = {
    {"threads", "1", "256", NULL, "257", 1, 256},
    {"max_body", "1024", "67108864", "1023", "67108865", 1024, 67108864},
    {"connection_timeout", "1", "3600", "0", "3601", 1, 3600},
    {"max_connections", "1", "65536", "0", "65537", 1, 65536},
    {"max_connections_per_ip", "1", "65536", "0", "65537", 1, 65536},
    {"drain_timeout", "1", "3600", "0", "3601", 1, 3600},
};

/* The numeric [store] keys. */
static const struct bound store_bounds[] = {
    {"batch_max", "1", "100000", "0", "100001", 1, 100000},
    {"queue_max", "16", "1000000", "15", "1000001", 16, 1000000},
    {"rejections_keep", "10", "10000000", "9", "10000001", 10, 10000000},
    {"rejection_body_max", "0", "65536", NULL, "65537", 0, 65536},
};

/* Every [server] number is accepted at its bounds and refused just outside. */
START_TEST(server_number_bounds)
{
    const struct bound *b = &server_bounds[_i];
    struct config *c;

    c = server_ok(b->key, b->low);
    ck_assert_uint_eq(field_of(c, b->key), b->low_v);
    config_free(c);
    c = server_ok(b->key, b->high);
    ck_assert_uint_eq(field_of(c, b->key), b->high_v);
    config_free(c);
    if (b->below)
        server_bad(b->key, b->below);
    server_bad(b->key, b->above);
    server_bad(b->key, "-1");
    server_bad(b->key, "+5");
    server_bad(b->key, "12abc");
    server_bad(b->key, "0x10");
    server_bad(b->key, "99999999999999999999999");
}
END_TEST

/* Every [store] number is accepted at its bounds and refused just outside. */
START_TEST(store_number_bounds)
{
    const struct bound *b = &store_bounds[_i];
    struct config *c;

    c = store_ok(b->key, b->low);
    ck_assert_uint_eq(field_of(c, b->key), b->low_v);
    config_free(c);
    c = store_ok(b->key, b->high);
    ck_assert_uint_eq(field_of(c, b->key), b->high_v);
    config_free(c);
    if (b->below)
        store_bad(b->key, b->below);
    store_bad(b->key, b->above);
    store_bad(b->key, "-1");
    store_bad(b->key, "ten");
    store_bad(b->key, "1.5");
}
END_TEST

/* synchronous takes full and normal only. */
START_TEST(synchronous_choices)
{
    struct config *c = store_ok("synchronous", "normal");

    ck_assert_int_eq(c->store.synchronous_full, 0);
    config_free(c);
    c = store_ok("synchronous", "full");
    ck_assert_int_eq(c->store.synchronous_full, 1);
    config_free(c);
    store_bad("synchronous", "off");
    store_bad("synchronous", "extra");
}
END_TEST

/* log_level takes the syslog names and refuses others. */
START_TEST(log_level_names)
{
    struct config *c = server_ok("log_level", "debug");

    ck_assert_int_eq(c->server.log_level, LOG_DEBUG);
    config_free(c);
    c = server_ok("log_level", "error");
    ck_assert_int_eq(c->server.log_level, LOG_ERR);
    config_free(c);
    server_bad("log_level", "verbose");
}
END_TEST

/* ---- sizes and booleans ---------------------------------------------------- */

/* Sizes take a k/K or m/M suffix (powers of 1024) and nothing else. */
START_TEST(size_suffixes)
{
    static const struct {
        const char *v;
        size_t want;
    } ok[] = {{"4k", 4096},    {"4K", 4096},      {"1k", 1024},
              {"2m", 2097152}, {"64M", 67108864}, {"65536", 65536}};
    static const char *const bad[] = {"1023", "0k",  "65M", "1g",  "k", "4kb",
                                      "1.5k", "4 k", "4kk", "-4k", "",  "65537k"};
    struct config *c;
    size_t i;

    for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        c = server_ok("max_body", ok[i].v);
        ck_assert_msg(c->server.max_body == ok[i].want, "%s gave %zu, want %zu", ok[i].v,
                      c->server.max_body, ok[i].want);
        config_free(c);
    }
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        server_bad("max_body", bad[i]);
}
END_TEST

/* Booleans: yes/true/on/1 and no/false/off/0, in any case; nothing else. */
START_TEST(booleans)
{
    static const char *const yes[] = {"yes", "true", "on", "1", "YES", "True"};
    static const char *const no[] = {"no", "false", "off", "0", "NO", "Off"};
    static const char *const bad[] = {"maybe", "2", "y", "n", "yess", "enabled"};
    char text[512];
    struct config *c;
    size_t i;

    for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        snprintf(text, sizeof(text),
                 MINIMAL "[baidu.tp]\nclient_id = a\ntoken = b\n"
                         "encoding_aes_key = " AES43 "\nallow_plaintext = %s\n",
                 yes[i]);
        c = load_ok(text);
        ck_assert_msg(c->tp.allow_plaintext == 1, "%s is not true", yes[i]);
        config_free(c);
    }
    for (i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        snprintf(text, sizeof(text),
                 MINIMAL "[baidu.tp]\nclient_id = a\ntoken = b\n"
                         "encoding_aes_key = " AES43 "\nallow_plaintext = %s\n",
                 no[i]);
        c = load_ok(text);
        ck_assert_msg(c->tp.allow_plaintext == 0, "%s is not false", no[i]);
        config_free(c);
    }
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(text, sizeof(text),
                 MINIMAL "[baidu.tp]\nclient_id = a\ntoken = b\n"
                         "encoding_aes_key = " AES43 "\nallow_plaintext = %s\n",
                 bad[i]);
        expect_err_at(text, 9, "[baidu.tp] allow_plaintext:", bad[i]);
    }
}
END_TEST

/* ---- structure errors -------------------------------------------------------- */

/* An unknown key is refused at its line, named with its section. */
START_TEST(unknown_key)
{
    expect_err_at(MIN_SERVER "listne = 1.2.3.4:80\n" MIN_STORE, 3,
                  "[server] listne:", "unknown key");
    expect_err_at(MINIMAL "paht = x\n", 5, "[store] paht:", "unknown key");
    expect_err_at(MINIMAL TP_SECTION "secret = s\n", 10,
                  "[baidu.tp] secret:", "unknown key");
}
END_TEST

/* An unknown section is refused at its header line, naming it. */
START_TEST(unknown_section)
{
    expect_err_at(MINIMAL "[bogus]\nkey = 1\n", 5, "[bogus]", "unknown section");
}
END_TEST

/* A misspelt section header with no keys under it is still an error. */
START_TEST(unknown_empty_section)
{
    expect_err_at(MINIMAL "[baidu.tpp]\n", 5, "[baidu.tpp]", "unknown section");
}
END_TEST

/* A key before any section header is refused at its line. */
START_TEST(key_outside_section)
{
    expect_err_at("threads = 2\n" MINIMAL, 1, NULL, NULL);
}
END_TEST

/* A key given twice is refused at the second occurrence, even across headers. */
START_TEST(key_twice)
{
    expect_err_at(MIN_SERVER "threads = 2\nthreads = 2\n" MIN_STORE, 4,
                  "[server] threads:", "twice");
    expect_err_at(MIN_SERVER "listen = 127.0.0.1:9090\n" MIN_STORE, 3,
                  "[server] listen:", "twice");
    expect_err_at(MIN_SERVER "threads = 2\n" MIN_STORE "[server]\nthreads = 3\n", 7,
                  "[server] threads:", "twice");
}
END_TEST

/* A required key given with an empty value is refused at its line. */
START_TEST(empty_required_value)
{
    expect_err_at("[server]\nlisten =\n" MIN_STORE, 2, "[server] listen:", "empty");
    expect_err_at(MIN_SERVER "[store]\npath =   \n", 4, "[store] path:", "empty");
    expect_err_at(MINIMAL "[baidu.tp]\nclient_id = \ntoken = t\nencoding_aes_key = " AES43
                          "\n",
                  6, "[baidu.tp] client_id:", "empty");
    expect_err_at(MINIMAL "[baidu.tp]\nclient_id = c\ntoken =\nencoding_aes_key = " AES43
                          "\n",
                  7, "[baidu.tp] token:", "empty");
}
END_TEST

/* Assert a file without a required key is refused, naming file, section and key. */
static void expect_missing(const char *text, const char *label)
{
    char err[1024];
    const char *path = load_err(text, err, sizeof(err));

    ck_assert_msg(strstr(err, label) != NULL, "\"%s\" not in: %s", label, err);
    ck_assert_msg(strstr(err, "required") != NULL, "\"required\" not in: %s", err);
    ck_assert_msg(err[strlen(path)] == ':', "no ':' after the file name: %s", err);
}

/* Assert a present section without a required key is refused at its header line. */
static void expect_missing_at(const char *text, unsigned line, const char *label)
{
    expect_err_at(text, line, label, "required");
}

/* [server] listen and [store] path are required, with or without their section. */
START_TEST(missing_required)
{
    expect_missing(MIN_STORE, "[server] listen");
    expect_missing_at("[server]\nthreads = 2\n" MIN_STORE, 1, "[server] listen");
    expect_missing(MIN_SERVER, "[store] path");
    expect_missing_at(MIN_SERVER "[store]\nsynchronous = normal\n", 3, "[store] path");
    expect_missing("", "[server] listen");
    expect_missing("; only a comment\n", "[server] listen");
}
END_TEST

/* Each required [baidu.tp] key is required once the section is present. */
START_TEST(missing_tp_keys)
{
    expect_missing_at(MINIMAL "[baidu.tp]\ntoken = t\nencoding_aes_key = " AES43 "\n", 5,
                      "[baidu.tp] client_id");
    expect_missing_at(MINIMAL "[baidu.tp]\nclient_id = c\nencoding_aes_key = " AES43 "\n",
                      5, "[baidu.tp] token");
    expect_missing_at(MINIMAL "[baidu.tp]\nclient_id = c\ntoken = t\n", 5,
                      "[baidu.tp] encoding_aes_key");
    expect_missing_at(MINIMAL "[baidu.tp]\npath = /tp\n", 5, "[baidu.tp]");
}
END_TEST

/* A [baidu.tp] header with nothing under it is present, so its keys are missing. */
START_TEST(empty_tp_section)
{
    expect_missing_at(MINIMAL "[baidu.tp]\n", 5, "[baidu.tp]");
}
END_TEST

/* A line that is neither a section, a comment nor KEY = VALUE is refused at its line. */
START_TEST(syntax_error_line)
{
    expect_err_at(MIN_SERVER "just words\n" MIN_STORE, 3, NULL, NULL);
    expect_err_at(MINIMAL "[server\n", 5, NULL, NULL);
}
END_TEST

/* A missing file is a clear error naming it and the reason. */
START_TEST(nonexistent_file)
{
    struct config *c = UNTOUCHED;
    char path[PATH_MAX + 32], err[1024] = "";
    int r;

    snprintf(path, sizeof(path), "%s/does-not-exist.conf", tmpdir);
    r = config_load(path, &c, err, sizeof(err));
    ck_assert_int_eq(r, -ENOENT);
    ck_assert(c == UNTOUCHED);
    ck_assert_msg(strstr(err, path) != NULL, "path not in: %s", err);
    ck_assert_msg(strstr(err, strerror(ENOENT)) != NULL, "reason not in: %s", err);
}
END_TEST

/* ---- listen --------------------------------------------------------------- */

/* IPv4 HOST:PORT and bracketed [IPv6]:PORT become socket addresses. */
START_TEST(listen_forms)
{
    struct config *c = server_ok("threads", "1"); /* listen = 127.0.0.1:8080 */
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)&c->server.listen_addr;
    const struct sockaddr_in6 *s6;
    struct sockaddr_in6 want6 = sin6("::1");
    char text[256];

    ck_assert_int_eq(s4->sin_family, AF_INET);
    ck_assert_uint_eq(ntohs(s4->sin_port), 8080);
    ck_assert_uint_eq(ntohl(s4->sin_addr.s_addr), 0x7f000001);
    ck_assert_uint_eq(c->server.listen_len, sizeof(struct sockaddr_in));
    config_free(c);

    c = load_ok("[server]\nlisten = [::1]:8443\n" MIN_STORE);
    s6 = (const struct sockaddr_in6 *)&c->server.listen_addr;
    ck_assert_int_eq(s6->sin6_family, AF_INET6);
    ck_assert_uint_eq(ntohs(s6->sin6_port), 8443);
    ck_assert_mem_eq(&s6->sin6_addr, &want6.sin6_addr, 16);
    ck_assert_uint_eq(c->server.listen_len, sizeof(struct sockaddr_in6));
    ck_assert_str_eq(c->server.listen, "[::1]:8443");
    config_free(c);

    c = load_ok("[server]\nlisten = 0.0.0.0:65535\n" MIN_STORE);
    ck_assert_uint_eq(
        ntohs(((const struct sockaddr_in *)&c->server.listen_addr)->sin_port), 65535);
    config_free(c);

    snprintf(text, sizeof(text), "[server]\nlisten = [2001:db8::7]:80\n" MIN_STORE);
    c = load_ok(text);
    ck_assert_int_eq(c->server.listen_addr.ss_family, AF_INET6);
    config_free(c);
}
END_TEST

/* Malformed listen values are refused at their line, naming the key. */
START_TEST(listen_bad)
{
    static const struct {
        const char *value, *why;
    } bad[] = {
        {"127.0.0.1", "no port"},
        {"127.0.0.1:", "empty port"},
        {"127.0.0.1:70000", "port out of range"},
        {"127.0.0.1:65536", "port out of range"},
        {"127.0.0.1:-1", "negative port"},
        {"127.0.0.1:80x", "junk after the port"},
        {"localhost:8080", "a host name"},
        {"example.com:80", "a host name"},
        {"[::1:8080", "no closing bracket"},
        {"::1:8080", "IPv6 without brackets"},
        {"[::1]8080", "no colon after the bracket"},
        {"[]:80", "empty brackets"},
        {"[127.0.0.1]:80", "IPv4 in brackets"},
        {":8080", "no host"},
        {"1.2.3:80", "three-part IPv4"},
        {"256.0.0.1:80", "octet out of range"},
        {"127.0.0.1:+80", "a sign is not part of a port"},
        {"127.0.0.1: 80", "a blank inside the port"},
        {"127.0.0.1:-0", "a sign is not part of a port"},
    };
    char text[256];
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(text, sizeof(text), "[server]\nlisten = %s\n" MIN_STORE "; %s\n",
                 bad[i].value, bad[i].why);
        expect_err_at(text, 2, "[server] listen:", NULL);
    }
}
END_TEST

/* ---- trusted proxies -------------------------------------------------------- */

/* CIDR blocks of both families, comma or space separated, replace the default. */
START_TEST(trusted_cidr)
{
    struct config *c = server_ok("trusted_proxies",
                                 "10.0.0.0/8, 192.168.0.0/23 2001:db8::/32,198.51.100.7");

    ck_assert_uint_eq(c->server.n_trusted, 4);
    trust_is(c, "10.0.0.0", 1);
    trust_is(c, "10.255.255.255", 1);
    trust_is(c, "11.0.0.0", 0);
    trust_is(c, "9.255.255.255", 0);
    trust_is(c, "192.168.0.1", 1);
    trust_is(c, "192.168.1.255", 1); /* /23 reaches into the next /24 */
    trust_is(c, "192.168.2.0", 0);
    trust_is(c, "192.167.255.255", 0);
    trust_is(c, "198.51.100.7", 1);
    trust_is(c, "198.51.100.8", 0);
    trust_is(c, "2001:db8::1", 1);
    trust_is(c, "2001:db8:ffff:ffff::", 1);
    trust_is(c, "2001:db9::", 0);
    trust_is(c, "127.0.0.1", 0); /* the default is replaced, not extended */
    trust_is(c, "::1", 0);
    ck_assert_int_eq(config_is_trusted_text(c, "not an address"), 0);
    ck_assert_int_eq(config_is_trusted_text(c, "10.0.0.1 "), 0);
    ck_assert_int_eq(config_is_trusted(c, NULL), 0);
    config_free(c);
}
END_TEST

/* /0 trusts a whole family and only that family. */
START_TEST(trusted_prefix_zero)
{
    struct config *c = server_ok("trusted_proxies", "0.0.0.0/0");

    trust_is(c, "1.2.3.4", 1);
    trust_is(c, "255.255.255.255", 1);
    trust_is(c, "2001:db8::1", 0);
    config_free(c);
}
END_TEST

/* An IPv4-mapped IPv6 address is the IPv4 address, as a sockaddr and as text. */
START_TEST(trusted_v4_mapped)
{
    struct config *c = server_ok("trusted_proxies", "10.0.0.0/8 127.0.0.1");

    trust_is(c, "::ffff:10.1.2.3", 1);
    trust_is(c, "::ffff:127.0.0.1", 1);
    trust_is(c, "::ffff:11.1.2.3", 0);
    trust_is(c, "::ffff:127.0.0.2", 0);
    config_free(c);
}
END_TEST

/* An IPv4-mapped IPv6 block is refused or means its IPv4 block: never a dead entry. */
START_TEST(trusted_v4_mapped_entry)
{
    char text[256], err[1024] = "";
    struct config *c = NULL;
    const char *path;

    snprintf(text, sizeof(text),
             MIN_SERVER "trusted_proxies = ::ffff:192.0.2.0/120\n" MIN_STORE);
    path = conf_file(text);
    if (config_load(path, &c, err, sizeof(err)) == 0) {
        trust_is(c, "192.0.2.5", 1);
        trust_is(c, "::ffff:192.0.2.5", 1);
        trust_is(c, "192.0.3.5", 0);
        config_free(c);
    } else {
        ck_assert_msg(strstr(err, "[server] trusted_proxies") != NULL, "unclear: %s",
                      err);
    }
}
END_TEST

/* An empty trusted_proxies trusts nobody, not even loopback. */
START_TEST(trusted_empty)
{
    struct config *c = server_ok("trusted_proxies", "");

    ck_assert_uint_eq(c->server.n_trusted, 0);
    trust_is(c, "127.0.0.1", 0);
    trust_is(c, "::1", 0);
    config_free(c);
}
END_TEST

/* Bad entries are refused at their line, naming the key and the entry. */
START_TEST(trusted_bad)
{
    static const char *const bad[] = {"10.0.0.0/33", "2001:db8::/129", "10.0.0.0/",
                                      "10.0.0.0/x",  "proxy.local",    "10.0.0.300",
                                      "/8",          "10.0.0.0/8/8",   "10.0.0.0/-1",
                                      "10.0.0.0/+8"};
    char label[64];
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(label, sizeof(label), "127.0.0.1 %s", bad[i]);
        server_bad("trusted_proxies", label);
    }
}
END_TEST

/* ---- long lines ------------------------------------------------------------ */

/* Assert a [baidu.tp] token of n bytes arrives intact. */
static void long_token(size_t n)
{
    char *tok = repeat('t', n), *text;
    struct config *c;

    tok[0] = 'A';
    tok[n / 2] = '=';
    tok[n - 1] = 'Z';
    text = textf(MINIMAL
                 "[baidu.tp]\nclient_id = c\ntoken = %s\nencoding_aes_key = " AES43 "\n",
                 tok);
    c = load_ok(text);
    ck_assert_int_eq(c->tp.enabled, 1);
    ck_assert_uint_eq(strlen(c->tp.token), n);
    ck_assert_str_eq(c->tp.token, tok);
    ck_assert_str_eq(c->tp.client_id, "c");
    config_free(c);
    free(text);
    free(tok);
}

/* Values past libinih's 200-byte line arrive whole (400 and 4000 bytes). */
START_TEST(long_values_intact)
{
    long_token(199);
    long_token(200);
    long_token(400);
    long_token(4000);
}
END_TEST

/* Two long values in a row each keep their own bytes. */
START_TEST(two_long_values)
{
    char *a = repeat('a', 300), *b = repeat('b', 500), *text;
    struct config *c;

    text = textf(MINIMAL
                 "[baidu.tp]\nclient_id = %s\ntoken = %s\nencoding_aes_key = " AES43 "\n",
                 a, b);
    c = load_ok(text);
    ck_assert_str_eq(c->tp.client_id, a);
    ck_assert_str_eq(c->tp.token, b);
    config_free(c);
    free(text);
    free(a);
    free(b);
}
END_TEST

/* A long value ends where a short one would: at an inline "; comment". */
START_TEST(long_value_inline_comment)
{
    char *tok = repeat('t', 400), *text;
    struct config *c;

    c = load_ok(MINIMAL "[baidu.tp]\nclient_id = c ; the client\ntoken = short ; note\n"
                        "encoding_aes_key = " AES43 "\n");
    ck_assert_str_eq(c->tp.client_id, "c");
    ck_assert_str_eq(c->tp.token, "short");
    config_free(c);
    text = textf(MINIMAL
                 "[baidu.tp]\nclient_id = c\ntoken = %s ; note\nencoding_aes_key = " AES43
                 "\n",
                 tok);
    c = load_ok(text);
    ck_assert_str_eq(c->tp.token, tok);
    config_free(c);
    free(text);
    free(tok);
}
END_TEST

/* A long key = value line is still checked, at its own line number. */
START_TEST(long_value_checked)
{
    char *v = repeat('9', 300), *text;

    text = textf(MIN_SERVER "threads = %s\n" MIN_STORE, v);
    expect_err_at(text, 3, "[server] threads:", NULL);
    free(text);
    free(v);
}
END_TEST

/* A long line that is not KEY = VALUE is an error at its own line. */
START_TEST(long_garbage_line)
{
    char *junk = repeat('x', 400), *text;

    text =
        textf(MINIMAL
              "%s\n[baidu.tp]\nclient_id = c\ntoken = t\nencoding_aes_key = " AES43 "\n",
              junk);
    expect_err_at(text, 5, NULL, NULL);
    free(text);
    free(junk);
}
END_TEST

/* A long line that is not KEY = VALUE is an error even as the file's last line. */
START_TEST(long_garbage_last_line)
{
    char *junk = repeat('x', 400), *text;

    text = textf(MINIMAL "%s\n", junk);
    expect_err_at(text, 5, NULL, NULL);
    free(text);
    free(junk);
}
END_TEST

/* A long comment is harmless, with ; or #, and does not hide a long bad line. */
START_TEST(long_comment)
{
    char *com = repeat('c', 500), *junk = repeat('x', 300), *text;
    struct config *c;

    text = textf("; %s\n# %s\n" MINIMAL "   ; %s\n", com, com, com);
    c = load_ok(text);
    ck_assert_str_eq(c->server.listen, "127.0.0.1:8080");
    config_free(c);
    free(text);
    text = textf(MIN_SERVER "%s\n; %s\n" MIN_STORE, junk, com);
    expect_err_at(text, 3, NULL, NULL);
    free(text);
    free(com);
    free(junk);
}
END_TEST

/* A line of more than 64 KiB is refused, not truncated. */
START_TEST(huge_line)
{
    char *v = repeat('h', 70000), *text;

    text = textf(MINIMAL
                 "[baidu.tp]\nclient_id = c\ntoken = %s\nencoding_aes_key = " AES43 "\n",
                 v);
    expect_err_at(text, 7, NULL, NULL);
    free(text);
    free(v);
}
END_TEST

/* ---- layout ----------------------------------------------------------------- */

/* Indented lines are ordinary lines, never continuations of the previous value. */
START_TEST(indented_lines)
{
    struct config *c = load_ok("  [server]\n    listen = 127.0.0.1:8080\n\tthreads = 3\n"
                               "  [store]\n    path = /x.db\n");

    ck_assert_str_eq(c->server.listen, "127.0.0.1:8080");
    ck_assert_uint_eq(c->server.threads, 3);
    ck_assert_str_eq(c->store.path, "/x.db");
    config_free(c);
    /* an indented bare word after a value is an error, not more of the value */
    expect_err_at("[server]\nlisten = 127.0.0.1:8080\n    8081\n" MIN_STORE, 3, NULL,
                  NULL);
}
END_TEST

/* Comment lines start with ; or #, indented or not; blank lines are ignored. */
START_TEST(comments)
{
    struct config *c = load_ok("; payhookd\n# settings\n\n[server]\n  ; inside\n"
                               "listen = 127.0.0.1:8080 ; where\n\t# more\n"
                               "threads = 2\n\n" MIN_STORE "#listen = 1.1.1.1:1\n");

    ck_assert_str_eq(c->server.listen, "127.0.0.1:8080");
    ck_assert_uint_eq(c->server.threads, 2);
    config_free(c);
}
END_TEST

/* CRLF line endings are accepted; the CR is not part of any value. */
START_TEST(crlf_lines)
{
    struct config *c = load_ok("[server]\r\nlisten = 127.0.0.1:8080\r\nthreads = "
                               "4\r\n[store]\r\npath = /x.db\r\n");

    ck_assert_str_eq(c->server.listen, "127.0.0.1:8080");
    ck_assert_uint_eq(c->server.threads, 4);
    ck_assert_str_eq(c->store.path, "/x.db");
    config_free(c);
}
END_TEST

/* ---- [baidu.tp] -------------------------------------------------------------- */

/* A complete section enables the TP with its keys decoded. */
START_TEST(tp_section)
{
    struct config *c = load_ok(MINIMAL TP_SECTION);
    uint8_t want[32];
    int i;

    for (i = 0; i < 32; i++)
        want[i] = (uint8_t)i;
    ck_assert_int_eq(c->tp.enabled, 1);
    ck_assert_str_eq(c->tp.path, "/baidu/tp/events");
    ck_assert_str_eq(c->tp.client_id, "client-1");
    ck_assert_str_eq(c->tp.token, "tok-1");
    ck_assert_mem_eq(c->tp.aes_key.key, want, 32);
    ck_assert_int_eq(c->tp.allow_plaintext, 0);
    config_free(c);
}
END_TEST

/* The EncodingAESKey must be exactly 43 base64 characters; it is never echoed. */
START_TEST(tp_aes_key_length)
{
    static const char *const bad[] = {
        AES43 "A",                                     /* 44 */
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh",  /* 42 */
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh*", /* 43, one not base64 */
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh=", /* 43 with padding inside */
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxw Hh8", /* 43 with a space */
        AES43 "=",                                     /* the 44-char padded form */
    };
    char text[512], err[1024];
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(text, sizeof(text),
                 MINIMAL "[baidu.tp]\nclient_id = c\ntoken = t\nencoding_aes_key = %s\n",
                 bad[i]);
        expect_err_at(text, 8, "[baidu.tp] encoding_aes_key:", NULL);
        load_err(text, err, sizeof(err));
        ck_assert_msg(strstr(err, "AAECAwQFBgcICQoL") == NULL, "key echoed in: %s", err);
    }
}
END_TEST

/* The route path is configurable and must be absolute, refused at its line. */
START_TEST(tp_path_absolute)
{
    struct config *c = load_ok(MINIMAL TP_SECTION "path = /hooks/tp\n");

    ck_assert_str_eq(c->tp.path, "/hooks/tp");
    config_free(c);
    expect_err_at(MINIMAL TP_SECTION "path = hooks/tp\n", 10, "[baidu.tp] path", NULL);
    expect_err_at(MINIMAL TP_SECTION "path = \n", 10, "[baidu.tp] path", NULL);
}
END_TEST

/* A named section with a long name keeps its keys: it is read whole or refused by name.
 */
START_TEST(named_section_long_name)
{
    char name[61], *text, err[1024] = "", prefix[PATH_MAX + 64];
    struct config *c = NULL;
    const char *path;
    int r;

    memset(name, 'g', 60);
    name[60] = '\0';
    text = textf(MINIMAL "[gateway %s]\nsecret = s\n", name);
    path = conf_file(text);
    r = config_load(path, &c, err, sizeof(err));
    if (r == 0) {
        ck_assert_uint_eq(c->n_gateways, 1);
        ck_assert_str_eq(c->gateways[0]->name, name);
        ck_assert_str_eq(c->gateways[0]->secret, "s");
        config_free(c);
    } else {
        /* refused: at the header, because of the name, not a "missing" key */
        snprintf(prefix, sizeof(prefix), "%s:5: ", path);
        ck_assert_msg(strncmp(err, prefix, strlen(prefix)) == 0 && strstr(err, "name") &&
                          !strstr(err, "required"),
                      "misleading error: %s", err);
    }
    free(text);
}
END_TEST

/* ---- routes_build -------------------------------------------------------------- */

/* With [baidu.tp] there is a tp_push route at its path, and only there. */
START_TEST(routes_with_tp)
{
    struct config *c = load_ok(MINIMAL TP_SECTION "path = /hooks/tp\n");
    struct routes *rt = NULL;
    const struct route *r;
    char err[512] = "";

    ck_assert_msg(routes_build(c, &rt, err, sizeof(err)) == 0, "routes_build: %s", err);
    r = routes_find(rt, "/hooks/tp");
    ck_assert_ptr_nonnull(r);
    ck_assert_str_eq(r->path, "/hooks/tp");
    ck_assert_str_eq(r->ops->kind, "tp_push");
    ck_assert_ptr_null(routes_find(rt, "/baidu/tp/events"));
    ck_assert_ptr_null(routes_find(rt, "/hooks/tp/"));
    ck_assert_ptr_null(routes_find(rt, "/hooks"));
    ck_assert_ptr_null(routes_free(rt));
    config_free(c);

    c = load_ok(MINIMAL TP_SECTION);
    ck_assert_int_eq(routes_build(c, &rt, err, sizeof(err)), 0);
    ck_assert_ptr_nonnull(routes_find(rt, "/baidu/tp/events"));
    routes_free(rt);
    config_free(c);
}
END_TEST

/* Without [baidu.tp] there is no TP route. */
START_TEST(routes_without_tp)
{
    struct config *c = load_ok(MINIMAL);
    struct routes *rt = NULL;
    const struct route *r;
    char err[512] = "";

    ck_assert_msg(routes_build(c, &rt, err, sizeof(err)) == 0, "routes_build: %s", err);
    r = routes_find(rt, "/baidu/tp/events");
    ck_assert_ptr_null(r);
    routes_free(rt);
    config_free(c);
    ck_assert_ptr_null(routes_free(NULL));
}
END_TEST

/* ---- runner ------------------------------------------------------------------- */

/* Every test case of config.c. */
static Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *def = tcase_create("defaults");
    TCase *val = tcase_create("values");
    TCase *err = tcase_create("errors");
    TCase *net = tcase_create("trusted");
    TCase *lng = tcase_create("long lines");
    TCase *lay = tcase_create("layout");
    TCase *tp = tcase_create("baidu.tp");

    tcase_add_test(def, minimal_file_defaults);
    tcase_add_test(def, documented_example_is_the_defaults);
    tcase_add_test(def, free_null);
    tcase_add_test(def, threads_resolved);
    suite_add_tcase(s, def);

    tcase_add_loop_test(val, server_number_bounds, 0,
                        (int)(sizeof(server_bounds) / sizeof(server_bounds[0])));
    tcase_add_loop_test(val, store_number_bounds, 0,
                        (int)(sizeof(store_bounds) / sizeof(store_bounds[0])));
    tcase_add_test(val, synchronous_choices);
    tcase_add_test(val, log_level_names);
    tcase_add_test(val, size_suffixes);
    tcase_add_test(val, booleans);
    tcase_add_test(val, listen_forms);
    tcase_add_test(val, listen_bad);
    suite_add_tcase(s, val);

    tcase_add_test(err, unknown_key);
    tcase_add_test(err, unknown_section);
    tcase_add_test(err, unknown_empty_section);
    tcase_add_test(err, key_outside_section);
    tcase_add_test(err, key_twice);
    tcase_add_test(err, empty_required_value);
    tcase_add_test(err, missing_required);
    tcase_add_test(err, missing_tp_keys);
    tcase_add_test(err, empty_tp_section);
    tcase_add_test(err, syntax_error_line);
    tcase_add_test(err, nonexistent_file);
    tcase_add_test(err, named_section_long_name);
    suite_add_tcase(s, err);

    tcase_add_test(net, trusted_cidr);
    tcase_add_test(net, trusted_prefix_zero);
    tcase_add_test(net, trusted_v4_mapped);
    tcase_add_test(net, trusted_v4_mapped_entry);
    tcase_add_test(net, trusted_empty);
    tcase_add_test(net, trusted_bad);
    suite_add_tcase(s, net);

    tcase_add_test(lng, long_values_intact);
    tcase_add_test(lng, two_long_values);
    tcase_add_test(lng, long_value_inline_comment);
    tcase_add_test(lng, long_value_checked);
    tcase_add_test(lng, long_garbage_line);
    tcase_add_test(lng, long_garbage_last_line);
    tcase_add_test(lng, long_comment);
    tcase_add_test(lng, huge_line);
    suite_add_tcase(s, lng);

    tcase_add_test(lay, indented_lines);
    tcase_add_test(lay, comments);
    tcase_add_test(lay, crlf_lines);
    suite_add_tcase(s, lay);

    tcase_add_test(tp, tp_section);
    tcase_add_test(tp, tp_aes_key_length);
    tcase_add_test(tp, tp_path_absolute);
    tcase_add_test(tp, routes_with_tp);
    tcase_add_test(tp, routes_without_tp);
    suite_add_tcase(s, tp);
    return s;
}

/* nftw callback: remove one file or (emptied) directory. */
static int cleanup_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

/* Remove the files the tests wrote, then the directory. */
static void cleanup_tmpdir(void)
{
    if (nftw(tmpdir, cleanup_one, 8, FTW_DEPTH | FTW_PHYS) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
}

/* Run the suite in a fresh temporary directory; nonzero when anything failed. */
int main(void)
{
    SRunner *sr;
    int failed;
    const char *base = getenv("TMPDIR");

    snprintf(tmpdir, sizeof(tmpdir), "%s/check_config.XXXXXX",
             base && *base ? base : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    sr = srunner_create(config_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    cleanup_tmpdir();
    return failed == 0 ? 0 : 1;
}
