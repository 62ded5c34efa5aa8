/*
 * check_http.c: the specification of http.c's limits and routing, through
 * the real server in-process -- config_load, daemon_start on a free loopback
 * port, then libcurl (and one raw socket): 413 from Content-Length before the
 * body is read, 413 for a chunked body that grows too large, a body of
 * exactly max_body parsed, 404, 405 with Allow, 415, the built-in endpoints,
 * and for every rejection its row in the rejections table (never an event).
 */
#include <arpa/inet.h>
#include <check.h>
#include <curl/curl.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "daemon.h"
#include "lib/util.h"

#define MAX_BODY 2048
#define TP_PATH  "/baidu/tp/events"
#define AES43    "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"

static char tmpdir[PATH_MAX];
static char dbpath[PATH_MAX + 32];
static unsigned short port;
static struct daemon *d;

/* ---- fixture ---------------------------------------------------------------- */

/* A loopback port nobody listens on right now (bind to 0, read it, close). */
static unsigned short free_port(void)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    ck_assert_int_ge(fd, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

/* Write the config, load it and start the daemon on it. */
static void setup(void)
{
    const char *base = getenv("TMPDIR");
    char conf[PATH_MAX + 32], err[1024] = "";
    struct config *cfg = NULL;
    FILE *f;
    int r;

    snprintf(tmpdir, sizeof(tmpdir), "%s/check_http.XXXXXX",
             base && *base ? base : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    snprintf(dbpath, sizeof(dbpath), "%s/events.db", tmpdir);
    snprintf(conf, sizeof(conf), "%s/payhookd.conf", tmpdir);
    port = free_port();
    f = fopen(conf, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(
        f,
        "[server]\nlisten = 127.0.0.1:%u\nmax_body = %d\nthreads = 2\nlog_level = error\n"
        "[store]\npath = %s\n"
        "[baidu.tp]\npath = " TP_PATH "\nclient_id = check-client\ntoken = check-token\n"
        "encoding_aes_key = " AES43 "\n",
        port, MAX_BODY, dbpath);
    ck_assert_int_eq(fclose(f), 0);
    r = config_load(conf, &cfg, err, sizeof(err));
    ck_assert_msg(r == 0, "config_load: %s", err);
    r = daemon_start(cfg, -1, &d, err, sizeof(err));
    ck_assert_msg(r == 0, "daemon_start: %d %s", r, err);
}

/* nftw callback: remove one file or (emptied) directory. */
static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

/* Stop the daemon if a test failed before finish(), then remove the files. */
static void teardown(void)
{
    if (d)
        daemon_stop(d);
    d = NULL;
    nftw(tmpdir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

/* The end of every test: an orderly stop with nothing left unanswered. */
static void finish(void)
{
    int left = daemon_stop(d);

    d = NULL;
    ck_assert_int_eq(left, 0);
}

/* ---- the store, seen from outside ----------------------------------------------- */

/* The first column of the first row of a query, as an integer. */
static long long db_int(const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    long long v;

    ck_assert_int_eq(sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    ck_assert_msg(sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK, "%s: %s", sql,
                  sqlite3_errmsg(db));
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* Rejection rows with this status, reason and route. */
static long long rejections_like(int status, const char *reason, const char *route)
{
    char sql[512];

    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM rejections WHERE status = %d AND reason = '%s'"
             " AND route = '%s'",
             status, reason, route);
    return db_int(sql);
}

/*
 * Wait up to 2 s (rejections are written asynchronously) for the rejection
 * row, then check it is the only one and no event was stored.
 */
static void expect_rejection(int status, const char *reason, const char *route)
{
    long long n = 0;
    int i;

    for (i = 0; i < 100 && (n = rejections_like(status, reason, route)) == 0; i++)
        usleep(20000);
    ck_assert_msg(n == 1, "no rejection row (%d, %s, %s) after 2 s; rows: %lld", status,
                  reason, route, db_int("SELECT count(*) FROM rejections"));
    ck_assert_int_eq(db_int("SELECT count(*) FROM rejections"), 1);
    ck_assert_int_eq(db_int("SELECT count(*) FROM events"), 0);
}

/* ---- HTTP with libcurl ------------------------------------------------------------ */

/* What came back. */
struct reply {
    long status;
    char allow[128];
    char content_type[128];
    struct buf body;
};

/* A body handed to curl piece by piece, counting what curl took. */
struct upload {
    const char *data; /* NULL: fill with 'x' */
    size_t len, sent, piece;
};

/* curl write callback: collect the answer body. */
static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    struct reply *r = ud;

    return buf_append(&r->body, p, size * n) == 0 ? size * n : 0;
}

/* Copy a header's value (trimmed) when its name matches. */
static void header_value(const char *line, size_t len, const char *name, char *out,
                         size_t outlen)
{
    size_t nl = strlen(name), vl;
    const char *v;

    if (len <= nl || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
        return;
    v = line + nl + 1;
    vl = len - nl - 1;
    while (vl && (*v == ' ' || *v == '\t'))
        v++, vl--;
    while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
        vl--;
    snprintf(out, outlen, "%.*s", (int)vl, v);
}

/* curl header callback: keep Allow and Content-Type. */
static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    struct reply *r = ud;

    header_value(p, size * n, "Allow", r->allow, sizeof(r->allow));
    header_value(p, size * n, "Content-Type", r->content_type, sizeof(r->content_type));
    return size * n;
}

/* curl read callback: hand out the body, at most `piece` bytes per call. */
static size_t on_read(char *p, size_t size, size_t n, void *ud)
{
    struct upload *u = ud;
    size_t k = size * n;

    if (k > u->len - u->sent)
        k = u->len - u->sent;
    if (u->piece && k > u->piece)
        k = u->piece;
    if (u->data)
        memcpy(p, u->data + u->sent, k);
    else
        memset(p, 'x', k);
    u->sent += k;
    return k;
}

/* How a body is sent. */
enum send_mode {
    SEND_NONE,    /* no body (GET, or POST with Content-Length: 0) */
    SEND_FIXED,   /* Content-Length, sent at once */
    SEND_CHUNKED, /* Transfer-Encoding: chunked, in pieces */
    SEND_EXPECT,  /* Content-Length and Expect: 100-continue */
};

/* An extra request header for the next request() calls, or NULL. */
static const char *extra_header;

/* One request on a fresh connection; fills r (free r->body after). */
static void request(const char *method, const char *path, const char *content_type,
                    struct upload *up, enum send_mode mode, struct reply *r)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    char url[256], ct[160];
    CURLcode rc;

    ck_assert_ptr_nonnull(c);
    memset(r, 0, sizeof(*r));
    snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", port, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    snprintf(ct, sizeof(ct), "Content-Type:%s%s", content_type ? " " : "",
             content_type ? content_type : "");
    h = curl_slist_append(h, ct);
    if (extra_header)
        h = curl_slist_append(h, extra_header);
    if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(c, CURLOPT_READDATA, up);
        if (mode == SEND_CHUNKED) {
            h = curl_slist_append(h, "Transfer-Encoding: chunked");
            h = curl_slist_append(h, "Expect:");
        } else if (mode == SEND_EXPECT) {
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)up->len);
            curl_easy_setopt(c, CURLOPT_EXPECT_100_TIMEOUT_MS, 20000L);
            h = curl_slist_append(h, "Expect: 100-continue");
        } else {
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
                             (curl_off_t)(up ? up->len : 0));
            h = curl_slist_append(h, "Expect:");
        }
    } else {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    rc = curl_easy_perform(c);
    ck_assert_msg(rc == CURLE_OK, "%s %s: %s", method, path, curl_easy_strerror(rc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    buf_append(&r->body, "", 0); /* NUL-terminated even when empty */
}

/* POST a body with Content-Length; returns the bytes curl sent (an early answer
 * may stop it). */
static size_t post(const char *path, const char *content_type, const char *data,
                   size_t len, struct reply *r)
{
    struct upload up = {data, len, 0, 0};

    request("POST", path, content_type, &up, SEND_FIXED, r);
    return up.sent;
}

/* A GET (or another bodiless method). */
static void get(const char *method, const char *path, struct reply *r)
{
    request(method, path, NULL, NULL, SEND_NONE, r);
}

/* ---- body limits ------------------------------------------------------------------- */

/* A Content-Length over max_body is 413 before the body is sent (Expect: 100-continue).
 */
START_TEST(content_length_over_limit_expect)
{
    struct upload up = {NULL, 1000000, 0, 0};
    struct reply r;
    uint64_t t0 = util_now_ns();

    request("POST", TP_PATH, "application/json", &up, SEND_EXPECT, &r);
    ck_assert_int_eq(r.status, 413);
    ck_assert_msg(up.sent == 0, "curl was asked to send %zu body bytes", up.sent);
    ck_assert_msg(util_now_ns() - t0 < 10ull * 1000000000ull,
                  "413 came only after curl gave up waiting for 100 Continue");
    buf_free(&r.body);
    expect_rejection(413, "body_too_large", TP_PATH);
    ck_assert_int_eq(db_int("SELECT coalesce(length(body_prefix), 0) FROM rejections"),
                     0);
    finish();
}
END_TEST

/* Read from fd until the peer closes, 2 s pass without data, or out is full. */
static size_t read_answer(int fd, char *out, size_t len)
{
    struct pollfd p = {fd, POLLIN, 0};
    size_t got = 0;
    ssize_t n;

    while (got + 1 < len && poll(&p, 1, 2000) == 1) {
        n = read(fd, out + got, len - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    out[got] = '\0';
    return got;
}

/* With nothing but the headers sent, a too-large Content-Length already gets 413. */
START_TEST(content_length_over_limit_headers_only)
{
    struct sockaddr_in sa;
    char req[256], answer[4096];
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    ck_assert_int_ge(fd, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    snprintf(req, sizeof(req),
             "POST " TP_PATH
             " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
             "Content-Length: %d\r\n\r\n",
             MAX_BODY + 1);
    ck_assert_int_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
    read_answer(fd, answer, sizeof(answer));
    close(fd);
    ck_assert_msg(strncmp(answer, "HTTP/1.1 413 ", 13) == 0, "answer: %.80s", answer);
    expect_rejection(413, "body_too_large", TP_PATH);
    finish();
}
END_TEST

/* One byte over max_body with Content-Length is 413. */
START_TEST(content_length_one_over)
{
    char *body = malloc(MAX_BODY + 1);
    struct reply r;

    ck_assert_ptr_nonnull(body);
    memset(body, '{', MAX_BODY + 1);
    post(TP_PATH, "application/json", body, MAX_BODY + 1, &r);
    ck_assert_int_eq(r.status, 413);
    buf_free(&r.body);
    free(body);
    expect_rejection(413, "body_too_large", TP_PATH);
    finish();
}
END_TEST

/* A chunked body (no Content-Length) that grows past max_body is 413, its prefix kept. */
START_TEST(chunked_over_limit)
{
    struct upload up = {NULL, 5000, 0, 300};
    struct reply r;

    request("POST", TP_PATH, "application/json", &up, SEND_CHUNKED, &r);
    ck_assert_int_eq(r.status, 413);
    buf_free(&r.body);
    expect_rejection(413, "body_too_large", TP_PATH);
    /* rejection_body_max (default 512) bytes of what arrived */
    ck_assert_int_eq(db_int("SELECT length(body_prefix) FROM rejections"), 512);
    ck_assert_int_eq(db_int("SELECT length(replace(CAST(body_prefix AS TEXT), 'x', ''))"
                            " FROM rejections"),
                     0);
    finish();
}
END_TEST

/* A chunked body one byte over max_body is 413. */
START_TEST(chunked_one_over)
{
    struct upload up = {NULL, MAX_BODY + 1, 0, 1000};
    struct reply r;

    request("POST", TP_PATH, "application/json", &up, SEND_CHUNKED, &r);
    ck_assert_int_eq(r.status, 413);
    buf_free(&r.body);
    expect_rejection(413, "body_too_large", TP_PATH);
    finish();
}
END_TEST

/* A body of exactly max_body bytes is read and parsed: garbage JSON is 400, not 413. */
START_TEST(exactly_max_body_is_parsed)
{
    char *body = malloc(MAX_BODY);
    struct reply r;

    ck_assert_ptr_nonnull(body);
    memset(body, '{', MAX_BODY);
    ck_assert_uint_eq(post(TP_PATH, "application/json", body, MAX_BODY, &r), MAX_BODY);
    ck_assert_int_eq(r.status, 400);
    buf_free(&r.body);
    free(body);
    expect_rejection(400, "bad_json", TP_PATH);
    finish();
}
END_TEST

/* The same holds for a chunked body of exactly max_body bytes. */
START_TEST(exactly_max_body_chunked_is_parsed)
{
    struct upload up = {NULL, MAX_BODY, 0, 500};
    struct reply r;

    request("POST", TP_PATH, "application/json", &up, SEND_CHUNKED, &r);
    ck_assert_int_eq(r.status, 400);
    buf_free(&r.body);
    expect_rejection(400, "bad_json", TP_PATH);
    finish();
}
END_TEST

/* After a 413 the server still serves (the connection state was cleaned up). */
START_TEST(server_healthy_after_413)
{
    struct upload up = {NULL, 100000, 0, 4096};
    struct reply r;
    int i;

    for (i = 0; i < 5; i++) {
        up.sent = 0;
        request("POST", TP_PATH, "application/json", &up, SEND_CHUNKED, &r);
        ck_assert_int_eq(r.status, 413);
        buf_free(&r.body);
    }
    get("GET", "/healthz", &r);
    ck_assert_int_eq(r.status, 200);
    buf_free(&r.body);
    finish();
}
END_TEST

/* ---- routing ------------------------------------------------------------------------
 */

/* GET on the POST route is 405 with Allow: POST. */
START_TEST(get_on_post_route)
{
    struct reply r;

    get("GET", TP_PATH, &r);
    ck_assert_int_eq(r.status, 405);
    ck_assert_str_eq(r.allow, "POST");
    buf_free(&r.body);
    expect_rejection(405, "bad_method", TP_PATH);
    finish();
}
END_TEST

/* PUT on the POST route is 405 too. */
START_TEST(put_on_post_route)
{
    struct reply r;

    get("PUT", TP_PATH, &r);
    ck_assert_int_eq(r.status, 405);
    ck_assert_str_eq(r.allow, "POST");
    buf_free(&r.body);
    expect_rejection(405, "bad_method", TP_PATH);
    finish();
}
END_TEST

/* An unknown path is 404, recorded as unmatched with the path in its detail. */
START_TEST(unknown_path)
{
    struct reply r;

    post("/nowhere", "application/json", "{}", 2, &r);
    ck_assert_int_eq(r.status, 404);
    buf_free(&r.body);
    expect_rejection(404, "unknown_path", "unmatched");
    ck_assert_int_eq(db_int("SELECT count(*) FROM rejections WHERE detail = '/nowhere'"),
                     1);
    finish();
}
END_TEST

/* A path that only starts like a route is not that route. */
START_TEST(route_prefix_is_not_route)
{
    struct reply r;

    post(TP_PATH "/x", "application/json", "{}", 2, &r);
    ck_assert_int_eq(r.status, 404);
    buf_free(&r.body);
    expect_rejection(404, "unknown_path", "unmatched");
    finish();
}
END_TEST

/* POST on a built-in endpoint is 405 with Allow: GET, HEAD, recorded under its path. */
START_TEST(post_healthz)
{
    struct reply r;

    post("/healthz", "application/json", "{}", 2, &r);
    ck_assert_int_eq(r.status, 405);
    ck_assert_str_eq(r.allow, "GET, HEAD");
    buf_free(&r.body);
    expect_rejection(405, "bad_method", "/healthz");
    finish();
}
END_TEST

/* GET /healthz, /readyz and /metrics answer 200 and record no rejection. */
START_TEST(builtin_endpoints)
{
    struct reply r;

    get("GET", "/healthz", &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body.data, "ok\n");
    buf_free(&r.body);
    get("GET", "/readyz", &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body.data, "ready\n");
    buf_free(&r.body);
    get("GET", "/metrics", &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_msg(strncmp(r.content_type, "text/plain; version=0.0.4", 25) == 0,
                  "Content-Type: %s", r.content_type);
    ck_assert_ptr_nonnull(strstr(r.body.data, "payhookd_requests_total"));
    ck_assert_ptr_nonnull(strstr(r.body.data,
                                 "payhookd_requests_total{route=\"/healthz\","
                                 "status=\"200\"}"));
    ck_assert_ptr_nonnull(strstr(r.body.data, "payhookd_commit_batch_rows_bucket"));
    buf_free(&r.body);
    /* a 404 afterwards is the only rejection: the 200s above recorded none */
    get("GET", "/nothing-here", &r);
    ck_assert_int_eq(r.status, 404);
    buf_free(&r.body);
    expect_rejection(404, "unknown_path", "unmatched");
    finish();
}
END_TEST

/* A form Content-Type on the JSON route is 415. */
START_TEST(form_type_on_json_route)
{
    struct reply r;

    post(TP_PATH, "application/x-www-form-urlencoded", "a=1", 3, &r);
    ck_assert_int_eq(r.status, 415);
    buf_free(&r.body);
    expect_rejection(415, "unsupported_type", TP_PATH);
    ck_assert_int_eq(db_int("SELECT count(*) FROM rejections WHERE detail ="
                            " 'application/x-www-form-urlencoded'"),
                     1);
    finish();
}
END_TEST

/* The form type is recognised in any letter case. */
START_TEST(form_type_any_case)
{
    struct reply r;

    post(TP_PATH, "Application/X-WWW-Form-URLEncoded; charset=UTF-8", "a=1", 3, &r);
    ck_assert_int_eq(r.status, 415);
    buf_free(&r.body);
    expect_rejection(415, "unsupported_type", TP_PATH);
    finish();
}
END_TEST

/* application/json with parameters is taken (and garbage in it is 400). */
START_TEST(json_type_with_charset)
{
    struct reply r;

    post(TP_PATH, "application/json; charset=utf-8", "[1,", 3, &r);
    ck_assert_int_eq(r.status, 400);
    buf_free(&r.body);
    expect_rejection(400, "bad_json", TP_PATH);
    finish();
}
END_TEST

/* multipart is 415 on the JSON route too. */
START_TEST(multipart_on_json_route)
{
    struct reply r;

    post(TP_PATH, "multipart/form-data; boundary=x", "--x--\r\n", 7, &r);
    ck_assert_int_eq(r.status, 415);
    buf_free(&r.body);
    expect_rejection(415, "unsupported_type", TP_PATH);
    finish();
}
END_TEST

/* A JSON body with no Content-Type at all is parsed (here: 400 for garbage), not 415. */
START_TEST(no_content_type_is_parsed)
{
    struct reply r;

    post(TP_PATH, NULL, "{nope", 5, &r);
    ck_assert_int_eq(r.status, 400);
    buf_free(&r.body);
    expect_rejection(400, "bad_json", TP_PATH);
    finish();
}
END_TEST

/* The remote_addr recorded for the only rejection, once it is there. */
static const char *rejected_remote(char *buf, size_t len)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int i;

    for (i = 0; i < 100 && db_int("SELECT count(*) FROM rejections") == 0; i++)
        usleep(20000);
    ck_assert_int_eq(sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    ck_assert_int_eq(
        sqlite3_prepare_v2(db, "SELECT remote_addr FROM rejections", -1, &st, NULL),
        SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    snprintf(buf, len, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
    return buf;
}

/* Behind a trusted proxy the client is the rightmost untrusted X-Forwarded-For entry. */
START_TEST(xff_short)
{
    char addr[64];
    struct reply r;

    extra_header = "X-Forwarded-For: 6.6.6.6, 203.0.113.7";
    get("GET", "/nowhere", &r);
    extra_header = NULL;
    ck_assert_int_eq(r.status, 404);
    buf_free(&r.body);
    ck_assert_str_eq(rejected_remote(addr, sizeof(addr)), "203.0.113.7");
    finish();
}
END_TEST

/* However much the client writes to the left, the entry the proxy appended on the
 * right is the one recorded (a long header must not let the client pick it). */
START_TEST(xff_long_client_prefix)
{
    char hdr[2048], addr[64];
    struct buf xff = {0};
    struct reply r;
    int i;

    for (i = 0; i < 127; i++)
        ck_assert_int_eq(buf_puts(&xff, "9.9.9.9,"), 0);
    ck_assert_int_eq(buf_puts(&xff, "9.9.9.9, 203.0.113.7"), 0);
    snprintf(hdr, sizeof(hdr), "X-Forwarded-For: %s", xff.data);
    buf_free(&xff);
    extra_header = hdr;
    get("GET", "/nowhere", &r);
    extra_header = NULL;
    ck_assert_int_eq(r.status, 404);
    buf_free(&r.body);
    ck_assert_str_eq(rejected_remote(addr, sizeof(addr)), "203.0.113.7");
    finish();
}
END_TEST

/* GET a path until it answers want (polling every 100 ms for up to secs). */
static long poll_status(const char *path, long want, int secs)
{
    struct reply r;
    int i;

    for (i = 0; i < secs * 10; i++) {
        get("GET", path, &r);
        buf_free(&r.body);
        if (r.status == want)
            break;
        usleep(100000);
    }
    return r.status;
}

/* /readyz says 503 while the store cannot commit, and 200 again once it can. */
START_TEST(readyz_follows_the_store)
{
    sqlite3 *hold = NULL;
    struct reply r;

    ck_assert_int_eq(poll_status("/readyz", 200, 1), 200);
    ck_assert_int_eq(sqlite3_open_v2(dbpath, &hold, SQLITE_OPEN_READWRITE, NULL),
                     SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(hold, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    get("GET", "/lost", &r); /* its rejection row cannot be written */
    ck_assert_int_eq(r.status, 404);
    buf_free(&r.body);
    ck_assert_int_eq(poll_status("/readyz", 503, 20), 503);
    get("GET", "/healthz", &r); /* alive, though not ready */
    ck_assert_int_eq(r.status, 200);
    buf_free(&r.body);
    ck_assert_int_eq(sqlite3_exec(hold, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(hold);
    ck_assert_int_eq(poll_status("/readyz", 200, 10), 200);
    get("GET", "/found", &r);
    ck_assert_int_eq(r.status, 404);
    buf_free(&r.body);
    expect_rejection(404, "unknown_path", "unmatched");
    ck_assert_int_eq(db_int("SELECT count(*) FROM rejections WHERE detail = '/found'"),
                     1);
    finish();
}
END_TEST

/* ---- runner -------------------------------------------------------------------------
 */

/* Every test case of http.c, each with its own daemon. */
static Suite *http_suite(void)
{
    Suite *s = suite_create("http");
    TCase *lim = tcase_create("limits");
    TCase *rt = tcase_create("routing");

    tcase_add_checked_fixture(lim, setup, teardown);
    tcase_add_checked_fixture(rt, setup, teardown);
    tcase_set_timeout(lim, 120);
    tcase_set_timeout(rt, 120);
    tcase_add_test(lim, content_length_over_limit_expect);
    tcase_add_test(lim, content_length_over_limit_headers_only);
    tcase_add_test(lim, content_length_one_over);
    tcase_add_test(lim, chunked_over_limit);
    tcase_add_test(lim, chunked_one_over);
    tcase_add_test(lim, exactly_max_body_is_parsed);
    tcase_add_test(lim, exactly_max_body_chunked_is_parsed);
    tcase_add_test(lim, server_healthy_after_413);
    tcase_add_test(rt, get_on_post_route);
    tcase_add_test(rt, put_on_post_route);
    tcase_add_test(rt, unknown_path);
    tcase_add_test(rt, route_prefix_is_not_route);
    tcase_add_test(rt, post_healthz);
    tcase_add_test(rt, builtin_endpoints);
    tcase_add_test(rt, readyz_follows_the_store);
    tcase_add_test(rt, xff_short);
    tcase_add_test(rt, xff_long_client_prefix);
    tcase_add_test(rt, form_type_on_json_route);
    tcase_add_test(rt, form_type_any_case);
    tcase_add_test(rt, json_type_with_charset);
    tcase_add_test(rt, multipart_on_json_route);
    tcase_add_test(rt, no_content_type_is_parsed);
    suite_add_tcase(s, lim);
    suite_add_tcase(s, rt);
    return s;
}

/* Run the suite with libcurl initialised; nonzero when anything failed. */
int main(void)
{
    SRunner *sr;
    int failed;

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return 1;
    sr = srunner_create(http_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    curl_global_cleanup();
    return failed == 0 ? 0 : 1;
}
