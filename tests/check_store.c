/*
 * check_store.c: the specification of store.c -- migrations on open, the
 * exact row an event becomes, deduplication and the first answer, in_tx
 * callbacks and their savepoints, the TP ticket, group commit under
 * concurrent submitters, failures injected through a second SQLite
 * connection and the recovery after them, rejections and their cap, and
 * the queue's limits around store_stop.
 */
#include <check.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/metrics.h"
#include "store/store.h"
#include "lib/util.h"

#define WAIT_SECONDS 60 /* longest wait for a completion (valgrind is slow) */

static char tmpdir[PATH_MAX];
static char dbpath[PATH_MAX + 32];

/* Sentinel an output parameter must keep when the call fails. */
#define UNTOUCHED ((struct store *)tmpdir)

/* ---- fixture and helpers ------------------------------------------------ */

/* nftw callback: remove one file or (emptied) directory. */
static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

/* A fresh directory and store path per test. */
static void setup(void)
{
    const char *base = getenv("TMPDIR");

    snprintf(tmpdir, sizeof(tmpdir), "%s/check_store.XXXXXX",
             base && *base ? base : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    snprintf(dbpath, sizeof(dbpath), "%s/events.db", tmpdir);
}

/* Remove the test's directory and the store in it. */
static void teardown(void)
{
    nftw(tmpdir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

/* Options for the test store; callers change what they test. */
static struct store_options opts(void)
{
    struct store_options o = {.path = dbpath,
                              .synchronous_full = 1,
                              .batch_max = 512,
                              .queue_max = 100000,
                              .rejections_keep = 10000};

    return o;
}

/* Open a store that must open. */
static struct store *open_ok(const struct store_options *o)
{
    struct store *s = NULL;
    char err[512] = "";
    int r = store_open(o, &s, err, sizeof(err));

    ck_assert_msg(r == 0, "store_open: %d %s", r, err);
    ck_assert_ptr_nonnull(s);
    return s;
}

/* The newest schema version compiled in. */
static int latest_version(void)
{
    const struct store_migration *m;
    int v = 0;

    for (m = store_migrations; m->sql; m++)
        if (m->version > v)
            v = m->version;
    return v;
}

/* A second connection to the store file, as an operator's sqlite3 would be. */
static sqlite3 *peek_open(void)
{
    sqlite3 *db = NULL;

    ck_assert_int_eq(
        sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL),
        SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    return db;
}

/* Run SQL through a second connection. */
static void peek_exec(const char *sql)
{
    sqlite3 *db = peek_open();
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);

    ck_assert_msg(rc == SQLITE_OK, "%s: %s", sql, msg ? msg : "?");
    sqlite3_close(db);
}

/* The first column of the first row of a query, as an integer. */
static int64_t peek_int(const char *sql)
{
    sqlite3 *db = peek_open();
    sqlite3_stmt *st = NULL;
    int64_t v;

    ck_assert_msg(sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK, "%s: %s", sql,
                  sqlite3_errmsg(db));
    ck_assert_msg(sqlite3_step(st) == SQLITE_ROW, "%s: no row", sql);
    v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* The first column of the first row of a query, as text (copied into buf). */
static const char *peek_text(const char *sql, char *buf, size_t len)
{
    sqlite3 *db = peek_open();
    sqlite3_stmt *st = NULL;
    const unsigned char *t;

    ck_assert_msg(sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK, "%s: %s", sql,
                  sqlite3_errmsg(db));
    ck_assert_msg(sqlite3_step(st) == SQLITE_ROW, "%s: no row", sql);
    t = sqlite3_column_text(st, 0);
    snprintf(buf, len, "%s", t ? (const char *)t : "(null)");
    sqlite3_finalize(st);
    sqlite3_close(db);
    return buf;
}

/* A value from the Prometheus text, by its full series name; 0 when absent. */
static unsigned long long metric(const char *series)
{
    struct buf out = {0};
    char needle[256];
    const char *p;
    unsigned long long v = 0;

    ck_assert_int_eq(metrics_render(&out), 0);
    snprintf(needle, sizeof(needle), "\n%s ", series);
    p = strstr(out.data, needle);
    if (p)
        v = strtoull(p + strlen(needle), NULL, 10);
    buf_free(&out);
    return v;
}

#define ROWS_COUNT "payhookd_commit_batch_rows_count"
#define ROWS_LE(n) "payhookd_commit_batch_rows_bucket{le=\"" #n "\"}"

/* The outcome of one submission, copied out of the callback. */
struct waiter {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int calls;
    enum store_outcome outcome;
    int64_t id, deliveries;
    char answer[256];
    char error[256];
};

#define WAITER_INIT                                                                      \
    {                                                                                    \
        PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0, "", ""          \
    }

/* Completion callback: copy what is valid only now, then wake the test. */
static void waiter_done(void *data, const struct store_result *res)
{
    struct waiter *w = data;

    pthread_mutex_lock(&w->lock);
    w->calls++;
    w->outcome = res->outcome;
    w->id = res->id;
    w->deliveries = res->deliveries;
    snprintf(w->answer, sizeof(w->answer), "%s", res->answer ? res->answer : "(null)");
    snprintf(w->error, sizeof(w->error), "%s", res->error ? res->error : "");
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

/* Wait until the callback has run n times in all. */
static void waiter_wait(struct waiter *w, int n)
{
    struct timespec until;
    int rc = 0;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += WAIT_SECONDS;
    pthread_mutex_lock(&w->lock);
    while (w->calls < n && rc == 0)
        rc = pthread_cond_timedwait(&w->cond, &w->lock, &until);
    pthread_mutex_unlock(&w->lock);
    ck_assert_msg(w->calls == n, "completion ran %d times, want %d", w->calls, n);
}

/* An event with the given key and answer and otherwise plain columns. */
static void ev_init(struct store_event *ev, const char *key, const char *answer)
{
    memset(ev, 0, sizeof(*ev));
    ev->provider = "test";
    ev->kind = "unit";
    ev->dedupe_key = key;
    ev->verified = 1;
    ev->body = "{}";
    ev->body_len = 2;
    ev->answer = answer;
}

/* Submit one event and wait for its completion. */
static void submit_wait(struct store *s, struct store_event *ev, struct waiter *w)
{
    int before = w->calls;

    ck_assert_int_eq(store_submit(s, ev, waiter_done, w), 0);
    waiter_wait(w, before + 1);
}

/* Submit a plain event with a key and wait; the outcome must be STORE_NEW. */
static int64_t store_new(struct store *s, const char *key)
{
    struct waiter w = WAITER_INIT;
    struct store_event ev;

    ev_init(&ev, key, "ok");
    submit_wait(s, &ev, &w);
    ck_assert_msg(w.outcome == STORE_NEW, "%s: outcome %d (%s)", key, w.outcome, w.error);
    return w.id;
}

/* Rows in events with this dedupe key. */
static int64_t rows_with_key(const char *key)
{
    char sql[256];

    snprintf(sql, sizeof(sql), "SELECT count(*) FROM events WHERE dedupe_key = '%s'",
             key);
    return peek_int(sql);
}

/* An in_tx callback that holds the writer inside a transaction until opened. */
struct gate {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int entered, open;
};

#define GATE_INIT                                                                        \
    {                                                                                    \
        PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0                        \
    }

/* in_tx of the gate event: say we are in, then wait to be let go. */
static int gate_in_tx(struct store_tx *tx, struct store_event *ev, void *data)
{
    struct gate *g = data;

    pthread_mutex_lock(&g->lock);
    g->entered = 1;
    pthread_cond_broadcast(&g->cond);
    while (!g->open)
        pthread_cond_wait(&g->cond, &g->lock);
    pthread_mutex_unlock(&g->lock);
    return 0;
}

/* Submit a gate event and wait until the writer is held inside it. */
static void gate_close(struct store *s, struct gate *g, struct store_event *ev,
                       struct waiter *w)
{
    ev_init(ev, "gate", "gate");
    ev->in_tx = gate_in_tx;
    ev->in_tx_data = g;
    ck_assert_int_eq(store_submit(s, ev, waiter_done, w), 0);
    pthread_mutex_lock(&g->lock);
    while (!g->entered)
        pthread_cond_wait(&g->cond, &g->lock);
    pthread_mutex_unlock(&g->lock);
}

/* Let the held writer go on. */
static void gate_open(struct gate *g)
{
    pthread_mutex_lock(&g->lock);
    g->open = 1;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

/* ---- opening and migrations -------------------------------------------------- */

/* Run SQL on the test store through a connection of the test's own. */
static void exec_sql(const char *sql)
{
    sqlite3 *db;
    char *msg = NULL;

    ck_assert_int_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
    ck_assert_msg(sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK, "%s: %s", sql,
                  msg);
    sqlite3_close(db);
}

/* A store written by the schema of version 2, with the rows it made then:
 * migration 3 moves a Baidu audit's decided amount to refund_fen, makes an
 * Alipay notification carrying refund_fee a refund (its yuan converted
 * exactly), and relabelling Baidu rows from the config happens once. */
START_TEST(migration_3_refunds_and_app_ids)
{
    struct store_options o = opts();
    const char *deal[] = {"470193086"}, *app[] = {"14508451"};
    struct store *s;
    char buf[64];

    exec_sql(store_migrations[0].sql);
    exec_sql(store_migrations[1].sql);
    exec_sql(
        "PRAGMA user_version = 2;"
        "INSERT INTO events (received_at, last_received_at, provider, kind, app,"
        " dedupe_key, verified, amount_fen, status, answer, fields, body) VALUES"
        " ('t', 't', 'baidu', 'refund_audit', '470193086', 'k1', 1, 600, 'approve',"
        "  '', '{}', ''),"
        " ('t', 't', 'baidu', 'pay_notify', '470193086', 'k2', 1, 1000, '2', '', '{}', "
        "''),"
        " ('t', 't', 'alipay', 'notify', '2021', 'k3', 1, 10000, 'TRADE_SUCCESS', '',"
        "  '{\"refund_fee\":\"12.3\",\"out_biz_no\":\"R1\"}', ''),"
        " ('t', 't', 'alipay', 'notify', '2021', 'k4', 1, 10000, 'TRADE_SUCCESS', '',"
        "  '{\"refund_fee\":\"\"}', '')");
    s = open_ok(&o);
    ck_assert_int_eq(peek_int("SELECT count(*) FROM events WHERE kind = 'refund_audit'"
                              " AND amount_fen IS NULL AND refund_fen = 600"),
                     1);
    ck_assert_int_eq(peek_int("SELECT refund_fen FROM events WHERE dedupe_key = 'k3'"),
                     1230);
    ck_assert_str_eq(
        peek_text("SELECT kind FROM events WHERE dedupe_key = 'k3'", buf, sizeof(buf)),
        "refund_notify");
    ck_assert_str_eq(
        peek_text("SELECT kind FROM events WHERE dedupe_key = 'k4'", buf, sizeof(buf)),
        "notify");
    ck_assert_int_eq(store_relabel_baidu_apps(s, deal, app, 1), 0);
    ck_assert_int_eq(peek_int("SELECT count(*) FROM events WHERE app = '14508451'"), 2);
    /* Done once: a row with the deal id as app afterwards is left alone. */
    exec_sql("UPDATE events SET app = '470193086' WHERE dedupe_key = 'k2'");
    ck_assert_int_eq(store_relabel_baidu_apps(s, deal, app, 1), 0);
    ck_assert_int_eq(peek_int("SELECT count(*) FROM events WHERE app = '14508451'"), 1);
    store_close(s);
}
END_TEST

/* A store of version 6 held Alipay refunds with refund_fen = refund_fee,
 * the trade's total refunded: migration 7 keeps that as refund_total_fen
 * and makes refund_fen each refund's own amount, whatever the order the
 * rows were stored in; a total told twice adds nothing the second time. */
START_TEST(migration_7_alipay_refund_totals)
{
    struct store_options o = opts();
    struct store *s;
    int i;

    for (i = 0; i < 6; i++)
        exec_sql(store_migrations[i].sql);
    exec_sql("PRAGMA user_version = 6;"
             "INSERT INTO events (received_at, last_received_at, provider, kind, app,"
             " dedupe_key, verified, order_id, amount_fen, refund_fen, status, answer,"
             " fields, body) VALUES"
             " ('t', 't', 'alipay', 'refund_notify', 'A', 'k1', 1, 'T1', 10000, 3000, 'S', '',"
             "  '{}', ''),"
             " ('t', 't', 'alipay', 'refund_notify', 'A', 'k2', 1, 'T1', 10000, 1000, 'S', '',"
             "  '{}', ''),"
             " ('t', 't', 'alipay', 'refund_notify', 'A', 'k3', 1, 'T1', 10000, 3000, 'S', '',"
             "  '{}', ''),"
             " ('t', 't', 'alipay', 'refund_notify', 'A', 'k4', 1, 'T2', 10000, 700, 'S', '',"
             "  '{}', ''),"
             " ('t', 't', 'baidu', 'refund_notify', '1', 'k5', 1, 'T1', NULL, 900, '1', '',"
             "  '{}', '')");
    s = open_ok(&o);
    ck_assert_int_eq(peek_int("SELECT refund_fen FROM events WHERE dedupe_key = 'k1'"), 2000);
    ck_assert_int_eq(peek_int("SELECT refund_fen FROM events WHERE dedupe_key = 'k2'"), 1000);
    ck_assert_int_eq(peek_int("SELECT refund_fen FROM events WHERE dedupe_key = 'k3'"), 0);
    ck_assert_int_eq(peek_int("SELECT refund_fen FROM events WHERE dedupe_key = 'k4'"), 700);
    ck_assert_int_eq(peek_int("SELECT refund_total_fen FROM events WHERE dedupe_key = 'k1'"),
                     3000);
    /* other providers' refunds are left as they were */
    ck_assert_int_eq(peek_int("SELECT refund_fen FROM events WHERE dedupe_key = 'k5'"), 900);
    ck_assert_int_eq(peek_int("SELECT count(*) FROM events WHERE dedupe_key = 'k5'"
                              " AND refund_total_fen IS NULL"),
                     1);
    store_close(s);
}
END_TEST

/* A fresh file gets every migration, the tables, WAL, and the latest user_version. */
START_TEST(open_fresh_migrates)
{
    struct store_options o = opts();
    struct store *s = open_ok(&o);
    char mode[32];

    ck_assert_int_ge(latest_version(), 1);
    ck_assert_int_eq(peek_int("PRAGMA user_version"), latest_version());
    ck_assert_int_eq(
        peek_int("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND "
                 "name IN ('events', 'rejections', 'tp_ticket')"),
        3);
    ck_assert_str_eq(peek_text("PRAGMA journal_mode", mode, sizeof(mode)), "wal");
    ck_assert_int_eq(store_ready(s), 1);
    ck_assert_int_eq(store_queue_depth(s), 0);
    ck_assert_uint_gt(store_heartbeat(s), 0);
    ck_assert_ptr_null(store_close(s));
}
END_TEST

/* Reopening keeps the rows and the version and applies nothing again. */
START_TEST(reopen_does_not_reapply)
{
    struct store_options o = opts();
    struct store *s = open_ok(&o);
    int64_t id = store_new(s, "kept");

    store_close(s);
    peek_exec("INSERT INTO meta (key, value) VALUES ('marker', 'still here')");
    s = open_ok(&o);
    ck_assert_int_eq(peek_int("PRAGMA user_version"), latest_version());
    ck_assert_int_eq(peek_int("SELECT id FROM events WHERE dedupe_key = 'kept'"), id);
    ck_assert_int_eq(peek_int("SELECT count(*) FROM meta WHERE key = 'marker'"), 1);
    ck_assert_int_gt(store_new(s, "after-reopen"), id);
    store_close(s);
}
END_TEST

/* A store from a newer payhookd is refused with both versions named, and left alone
 * (not even switched to WAL). */
START_TEST(newer_schema_refused)
{
    struct store_options o = opts();
    struct store *s = UNTOUCHED;
    char sql[64], err[512] = "", want[32], mode[32];
    int newer = latest_version() + 1, r;

    snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", newer);
    peek_exec(sql);
    ck_assert_str_eq(peek_text("PRAGMA journal_mode", mode, sizeof(mode)), "delete");
    r = store_open(&o, &s, err, sizeof(err));
    ck_assert_int_lt(r, 0);
    ck_assert(s == UNTOUCHED);
    snprintf(want, sizeof(want), "%d", newer);
    ck_assert_msg(strstr(err, want) != NULL, "version %d not in: %s", newer, err);
    snprintf(want, sizeof(want), "%d", latest_version());
    ck_assert_msg(strstr(err, want) != NULL, "version %d not in: %s", latest_version(),
                  err);
    ck_assert_msg(strstr(err, "newer") != NULL, "\"newer\" not in: %s", err);
    ck_assert_int_eq(peek_int("PRAGMA user_version"), newer);
    ck_assert_int_eq(peek_int("SELECT count(*) FROM sqlite_master"), 0);
    ck_assert_str_eq(peek_text("PRAGMA journal_mode", mode, sizeof(mode)), "delete");
}
END_TEST

/* A file that is not a database, or a path that cannot be created, is a clear error. */
START_TEST(open_bad_files)
{
    struct store_options o = opts();
    struct store *s = UNTOUCHED;
    char err[512] = "", path[PATH_MAX + 64];
    FILE *f = fopen(dbpath, "w");
    size_t i;

    ck_assert_ptr_nonnull(f);
    for (i = 0; i < 64; i++)
        fputs("this is not an SQLite database file at all\n", f);
    fclose(f);
    ck_assert_int_lt(store_open(&o, &s, err, sizeof(err)), 0);
    ck_assert(s == UNTOUCHED);
    ck_assert_msg(strstr(err, "not a database") != NULL, "unclear: %s", err);

    snprintf(path, sizeof(path), "%s/no/such/dir/events.db", tmpdir);
    o.path = path;
    err[0] = '\0';
    ck_assert_int_lt(store_open(&o, &s, err, sizeof(err)), 0);
    ck_assert(s == UNTOUCHED);
    ck_assert_msg(strstr(err, path) != NULL, "path not in: %s", err);
}
END_TEST

/* ---- events ------------------------------------------------------------------- */

/* Assert that text is "YYYY-MM-DDTHH:MM:SS.mmmZ". */
static void assert_iso8601(const char *t)
{
    static const char pat[] = "dddd-dd-ddTdd:dd:dd.dddZ";
    size_t i;

    ck_assert_msg(strlen(t) == strlen(pat), "not ISO-8601 UTC: %s", t);
    for (i = 0; pat[i]; i++)
        ck_assert_msg(pat[i] == 'd' ? (t[i] >= '0' && t[i] <= '9') : t[i] == pat[i],
                      "not ISO-8601 UTC: %s", t);
}

/* A new event is one row holding exactly what was submitted, body byte for byte. */
START_TEST(new_event_row_exact)
{
    static const char body[] = "pay\0load\0\x01\xff\x00tail";
    struct store_options o = opts();
    struct store *s = open_ok(&o);
    struct waiter w = WAITER_INIT;
    struct store_event ev;
    sqlite3 *db;
    sqlite3_stmt *st;
    char t1[64], t2[64];

    memset(&ev, 0, sizeof(ev));
    ev.provider = "baidu";
    ev.kind = "pay_notify";
    ev.app = "app-7";
    ev.dedupe_key = "baidu:pay:2052353455567890123";
    ev.verified = 1;
    ev.order_id = "2052353455567890123"; /* > 2^53: must stay text */
    ev.merchant_order_id = "M-0001";
    ev.has_amount = 1;
    ev.amount_fen = 9007199254740993LL; /* 2^53 + 1: exact only as an integer */
    ev.status = "2";
    ev.remote_addr = "192.0.2.10";
    ev.fields = "{\"a\":1}";
    ev.body = body;
    ev.body_len = sizeof(body) - 1;
    ev.answer = "{\"errno\":0}";
    submit_wait(s, &ev, &w);
    ck_assert_int_eq(w.outcome, STORE_NEW);
    ck_assert_int_gt(w.id, 0);
    ck_assert_int_eq(w.deliveries, 1);
    ck_assert_str_eq(w.answer, "{\"errno\":0}");
    store_close(s);

    db = peek_open();
    ck_assert_int_eq(
        sqlite3_prepare_v2(
            db,
            "SELECT id, provider, kind, app, dedupe_key, verified, order_id,"
            " typeof(order_id), merchant_order_id, amount_fen, typeof(amount_fen),"
            " status, deliveries, remote_addr, answer, fields, typeof(body), body,"
            " received_at, last_received_at FROM events",
            -1, &st, NULL),
        SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    ck_assert_int_eq(sqlite3_column_int64(st, 0), w.id);
    ck_assert_str_eq((const char *)sqlite3_column_text(st, 1), "baidu");
    ck_assert_str_eq((const char *)sqlite3_column_text(st, 2), "pay_notify");
    ck_assert_str_eq((const char *)sqlite3_column_text(st, 3), "app-7");
    ck_assert_str_eq((const char *)sqlite3_column_text(st, 4),
                     "baidu:pay:2052353455567890123");
    ck_assert_int_eq(sqlite3_column_int(st, 5), 1);
    ck_assert_str_eq((const char *)sqlite3_column_text(st, 6), "2052353455567890123");
    ck_assert_str_eq((const char *)sqlite3_column_text(st, 7), "text");
    ck_assert_str_eq((const char *)sqlite3_column_text(st, 8), "M-0001");
    ck_assert_int_eq(sqlite3_column_int64(st, 9), 9007199254740993LL);
    ck_assert_str_eq((const char *)sqlite3_column_text(st, 10), "integer");
    ck_assert_str_eq((const char *)sqlite3_column_text(st, 11), "2");
    ck_assert_int_eq(sqlite3_column_int(st, 12), 1);
    ck_assert_str_eq((const char *)sqlite3_column_text(st, 13), "192.0.2.10");
    ck_assert_str_eq((const char *)sqlite3_column_text(st, 14), "{\"errno\":0}");
    ck_assert_str_eq((const char *)sqlite3_column_text(st, 15), "{\"a\":1}");
    ck_assert_str_eq((const char *)sqlite3_column_text(st, 16), "blob");
    ck_assert_int_eq(sqlite3_column_bytes(st, 17), (int)(sizeof(body) - 1));
    ck_assert_mem_eq(sqlite3_column_blob(st, 17), body, sizeof(body) - 1);
    snprintf(t1, sizeof(t1), "%s", (const char *)sqlite3_column_text(st, 18));
    snprintf(t2, sizeof(t2), "%s", (const char *)sqlite3_column_text(st, 19));
    assert_iso8601(t1);
    ck_assert_str_eq(t1, t2);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(db);
}
END_TEST

/* NULL strings become SQL NULLs, no amount is NULL, and a missing body is empty, not
 * NULL. */
START_TEST(null_columns)
{
    struct store_options o = opts();
    struct store *s = open_ok(&o);
    struct waiter w = WAITER_INIT;
    struct store_event ev;

    memset(&ev, 0, sizeof(ev));
    ev.provider = "gateway.x";
    ev.kind = "notify";
    ev.dedupe_key = "nulls";
    ev.answer = "SUCCESS";
    submit_wait(s, &ev, &w);
    ck_assert_int_eq(w.outcome, STORE_NEW);
    ck_assert_int_eq(
        peek_int("SELECT count(*) FROM events WHERE app IS NULL AND order_id IS NULL"
                 " AND merchant_order_id IS NULL AND amount_fen IS NULL AND status"
                 " IS NULL AND remote_addr IS NULL AND fields IS NULL AND verified = 0"
                 " AND typeof(body) = 'blob' AND length(body) = 0"),
        1);

    ev_init(&ev, "negative", "ok");
    ev.has_amount = 1;
    ev.amount_fen = -1999;
    submit_wait(s, &ev, &w);
    ck_assert_int_eq(
        peek_int("SELECT amount_fen FROM events WHERE dedupe_key = 'negative'"), -1999);
    ev_init(&ev, "zero", "ok");
    ev.has_amount = 1;
    ev.amount_fen = 0;
    submit_wait(s, &ev, &w);
    ck_assert_int_eq(peek_int("SELECT count(*) FROM events WHERE dedupe_key = 'zero' AND "
                              "amount_fen = 0 AND typeof(amount_fen) = 'integer'"),
                     1);
    store_close(s);
}
END_TEST

/* A redelivery is a duplicate of the same row and gets the FIRST answer back. */
START_TEST(duplicate_returns_first_answer)
{
    struct store_options o = opts();
    struct store *s = open_ok(&o);
    struct waiter w = WAITER_INIT;
    struct store_event a, b;
    int64_t id;
    char buf[64];

    ev_init(&a, "dup-key", "first answer");
    a.body = "first";
    a.body_len = 5;
    submit_wait(s, &a, &w);
    ck_assert_int_eq(w.outcome, STORE_NEW);
    ck_assert_str_eq(w.answer, "first answer");
    id = w.id;

    ev_init(&b, "dup-key", "second answer");
    b.body = "second";
    b.body_len = 6;
    b.status = "changed";
    submit_wait(s, &b, &w);
    ck_assert_int_eq(w.outcome, STORE_DUPLICATE);
    ck_assert_int_eq(w.id, id);
    ck_assert_int_eq(w.deliveries, 2);
    ck_assert_str_eq(w.answer, "first answer");

    submit_wait(s, &b, &w);
    ck_assert_int_eq(w.outcome, STORE_DUPLICATE);
    ck_assert_int_eq(w.deliveries, 3);
    ck_assert_str_eq(w.answer, "first answer");

    ck_assert_int_eq(peek_int("SELECT count(*) FROM events"), 1);
    ck_assert_int_eq(peek_int("SELECT deliveries FROM events"), 3);
    ck_assert_str_eq(peek_text("SELECT answer FROM events", buf, sizeof(buf)),
                     "first answer");
    ck_assert_str_eq(peek_text("SELECT CAST(body AS TEXT) FROM events", buf, sizeof(buf)),
                     "first");
    ck_assert_int_eq(peek_int("SELECT status IS NULL FROM events"), 1);
    ck_assert_int_eq(peek_int("SELECT last_received_at >= received_at FROM events"), 1);
    store_close(s);
}
END_TEST

/* Two deliveries of one event in the same batch: one row, the second is a duplicate. */
START_TEST(duplicate_within_one_batch)
{
    struct store_options o = opts();
    struct store *s = open_ok(&o);
    struct waiter wg = WAITER_INIT, w1 = WAITER_INIT, w2 = WAITER_INIT;
    struct store_event g, a, b;
    struct gate gate = GATE_INIT;

    gate_close(s, &gate, &g, &wg);
    ev_init(&a, "same", "answer one");
    ev_init(&b, "same", "answer two");
    ck_assert_int_eq(store_submit(s, &a, waiter_done, &w1), 0);
    ck_assert_int_eq(store_submit(s, &b, waiter_done, &w2), 0);
    gate_open(&gate);
    waiter_wait(&w1, 1);
    waiter_wait(&w2, 1);
    ck_assert_int_eq(w1.outcome, STORE_NEW);
    ck_assert_int_eq(w2.outcome, STORE_DUPLICATE);
    ck_assert_int_eq(w1.id, w2.id);
    ck_assert_int_eq(w2.deliveries, 2);
    ck_assert_str_eq(w2.answer, "answer one");
    ck_assert_int_eq(rows_with_key("same"), 1);
    store_close(s);
}
END_TEST

/* ---- in_tx callbacks ---------------------------------------------------------- */

/* What an in_tx callback under test does and what it saw. */
struct tx_probe {
    int calls;
    const char *ticket;
    int64_t create_time;
    const char *replace_answer;
    int ret;
};

/* in_tx that does what its tx_probe says and counts its calls. */
static int probe_in_tx(struct store_tx *tx, struct store_event *ev, void *data)
{
    struct tx_probe *p = data;
    int r;

    p->calls++;
    if (p->ticket && (r = store_tx_set_ticket(tx, p->ticket, p->create_time)) < 0)
        return r;
    if (p->replace_answer)
        ev->answer = p->replace_answer;
    return p->ret;
}

/* in_tx runs once for a new event, never for a redelivery, and may set the answer. */
START_TEST(in_tx_only_for_new)
{
    struct store_options o = opts();
    struct store *s = open_ok(&o);
    struct waiter w = WAITER_INIT;
    struct tx_probe p = {0, NULL, 0, "decided in tx", 0};
    struct store_event ev;
    char buf[64];

    ev_init(&ev, "tx-new", "default");
    ev.in_tx = probe_in_tx;
    ev.in_tx_data = &p;
    submit_wait(s, &ev, &w);
    ck_assert_int_eq(p.calls, 1);
    ck_assert_int_eq(w.outcome, STORE_NEW);
    ck_assert_str_eq(w.answer, "decided in tx");
    ck_assert_str_eq(peek_text("SELECT answer FROM events", buf, sizeof(buf)),
                     "decided in tx");

    ev.answer = "default";
    p.replace_answer = "would change it";
    submit_wait(s, &ev, &w);
    ck_assert_int_eq(p.calls, 1);
    ck_assert_int_eq(w.outcome, STORE_DUPLICATE);
    ck_assert_str_eq(w.answer, "decided in tx");
    store_close(s);
}
END_TEST

/* An in_tx error fails that event alone, undoing its writes; the batch commits. */
START_TEST(in_tx_failure_is_alone)
{
    struct store_options o = opts();
    struct store *s = open_ok(&o);
    struct waiter wg = WAITER_INIT, wa = WAITER_INIT, wb = WAITER_INIT, wc = WAITER_INIT;
    struct store_event g, a, b, c;
    struct gate gate = GATE_INIT;
    struct tx_probe pb = {0, "ticket-of-b", 100, NULL, -EINVAL};
    unsigned long long tx0;

    gate_close(s, &gate, &g, &wg);
    tx0 = metric(ROWS_COUNT);
    ev_init(&a, "a", "ok-a");
    ev_init(&b, "b", "ok-b");
    b.in_tx = probe_in_tx;
    b.in_tx_data = &pb;
    ev_init(&c, "c", "ok-c");
    ck_assert_int_eq(store_submit(s, &a, waiter_done, &wa), 0);
    ck_assert_int_eq(store_submit(s, &b, waiter_done, &wb), 0);
    ck_assert_int_eq(store_submit(s, &c, waiter_done, &wc), 0);
    gate_open(&gate);
    waiter_wait(&wa, 1);
    waiter_wait(&wb, 1);
    waiter_wait(&wc, 1);
    /* the gate's transaction and one more: a, b and c shared it */
    ck_assert_uint_eq(metric(ROWS_COUNT) - tx0, 2);
    ck_assert_int_eq(wa.outcome, STORE_NEW);
    ck_assert_int_eq(wc.outcome, STORE_NEW);
    ck_assert_int_eq(wb.outcome, STORE_FAILED);
    ck_assert_int_eq(pb.calls, 1);
    ck_assert_msg(strstr(wb.error, strerror(EINVAL)) != NULL, "reason: \"%s\"", wb.error);
    ck_assert_int_eq(rows_with_key("a"), 1);
    ck_assert_int_eq(rows_with_key("b"), 0);
    ck_assert_int_eq(rows_with_key("c"), 1);
    ck_assert_int_eq(peek_int("SELECT count(*) FROM tp_ticket"), 0);
    ck_assert_int_eq(store_ready(s), 1);
    store_close(s);
}
END_TEST

/*
 * After an item fails, the batch is written again without it, and the
 * in-transaction decisions of the others are made again on that state: b
 * wrote the newest ticket and then failed, so c (written after it) must
 * decide on a store where b's ticket never was, and a's decision, made
 * before b, is made again and recorded once.
 */
START_TEST(in_tx_decisions_replayed_without_the_failed_item)
{
    struct store_options o = opts();
    struct store *s = open_ok(&o);
    struct waiter wg = WAITER_INIT, wa = WAITER_INIT, wb = WAITER_INIT, wc = WAITER_INIT;
    struct store_event g, a, b, c;
    struct gate gate = GATE_INIT;
    struct tx_probe pa = {0, "ticket-of-a", 100, NULL, 0};
    struct tx_probe pb = {0, "ticket-of-b", 300, NULL, -EINVAL};
    struct tx_probe pc = {0, "ticket-of-c", 200, NULL, 0};
    char buf[64];

    gate_close(s, &gate, &g, &wg);
    ev_init(&a, "a", "ok-a");
    ev_init(&b, "b", "ok-b");
    ev_init(&c, "c", "ok-c");
    a.in_tx = b.in_tx = c.in_tx = probe_in_tx;
    a.in_tx_data = &pa;
    b.in_tx_data = &pb;
    c.in_tx_data = &pc;
    ck_assert_int_eq(store_submit(s, &a, waiter_done, &wa), 0);
    ck_assert_int_eq(store_submit(s, &b, waiter_done, &wb), 0);
    ck_assert_int_eq(store_submit(s, &c, waiter_done, &wc), 0);
    gate_open(&gate);
    waiter_wait(&wa, 1);
    waiter_wait(&wb, 1);
    waiter_wait(&wc, 1);
    ck_assert_int_eq(wa.outcome, STORE_NEW);
    ck_assert_int_eq(wb.outcome, STORE_FAILED);
    ck_assert_int_eq(wc.outcome, STORE_NEW);
    ck_assert_int_eq(pa.calls, 2); /* decided, rolled back with the batch, decided again */
    ck_assert_int_eq(pb.calls, 1); /* left out of the second writing */
    ck_assert_int_eq(pc.calls, 1);
    /* c's ticket (200) is the newest: b's (300) was never committed */
    ck_assert_str_eq(peek_text("SELECT ticket FROM tp_ticket", buf, sizeof(buf)), "ticket-of-c");
    ck_assert_int_eq(peek_int("SELECT count(*) FROM tp_ticket"), 1);
    ck_assert_int_eq(rows_with_key("a") + rows_with_key("b") + rows_with_key("c"), 2);
    store_close(s);
}
END_TEST

/* Two events failing in one batch each report their own reason. */
START_TEST(failures_keep_own_reason)
{
    struct store_options o = opts();
    struct store *s = open_ok(&o);
    struct waiter wg = WAITER_INIT, wa = WAITER_INIT, wb = WAITER_INIT;
    struct store_event g, a, b;
    struct gate gate = GATE_INIT;
    struct tx_probe pa = {0, NULL, 0, NULL, -EINVAL}, pb = {0, NULL, 0, NULL, -ENOSPC};

    gate_close(s, &gate, &g, &wg);
    ev_init(&a, "fails-a", "no");
    a.in_tx = probe_in_tx;
    a.in_tx_data = &pa;
    ev_init(&b, "fails-b", "no");
    b.in_tx = probe_in_tx;
    b.in_tx_data = &pb;
    ck_assert_int_eq(store_submit(s, &a, waiter_done, &wa), 0);
    ck_assert_int_eq(store_submit(s, &b, waiter_done, &wb), 0);
    gate_open(&gate);
    waiter_wait(&wa, 1);
    waiter_wait(&wb, 1);
    ck_assert_int_eq(wa.outcome, STORE_FAILED);
    ck_assert_int_eq(wb.outcome, STORE_FAILED);
    ck_assert_msg(strstr(wa.error, strerror(EINVAL)) != NULL, "first reason: \"%s\"",
                  wa.error);
    ck_assert_msg(strstr(wb.error, strerror(ENOSPC)) != NULL, "second reason: \"%s\"",
                  wb.error);
    store_close(s);
}
END_TEST

/* Submit an event whose in_tx stores a ticket with a create time. */
static void put_ticket(struct store *s, const char *key, const char *ticket, int64_t ct)
{
    struct waiter w = WAITER_INIT;
    struct tx_probe p = {0, ticket, ct, NULL, 0};
    struct store_event ev;

    ev_init(&ev, key, "success");
    ev.in_tx = probe_in_tx;
    ev.in_tx_data = &p;
    submit_wait(s, &ev, &w);
    ck_assert_int_eq(w.outcome, STORE_NEW);
    ck_assert_int_eq(p.calls, 1);
}

/* The stored ticket is the one with the newest create time, whatever the arrival order.
 */
START_TEST(ticket_keeps_newest)
{
    struct store_options o = opts();
    struct store *s = open_ok(&o);
    char buf[64];

    put_ticket(s, "t1", "ticket-200", 200);
    ck_assert_str_eq(peek_text("SELECT ticket FROM tp_ticket", buf, sizeof(buf)),
                     "ticket-200");
    put_ticket(s, "t2", "ticket-100", 100); /* older, arriving late */
    ck_assert_str_eq(peek_text("SELECT ticket FROM tp_ticket", buf, sizeof(buf)),
                     "ticket-200");
    ck_assert_int_eq(peek_int("SELECT create_time FROM tp_ticket"), 200);
    put_ticket(s, "t3", "ticket-300", 300);
    ck_assert_str_eq(peek_text("SELECT ticket FROM tp_ticket", buf, sizeof(buf)),
                     "ticket-300");
    ck_assert_int_eq(peek_int("SELECT create_time FROM tp_ticket"), 300);
    ck_assert_int_eq(peek_int("SELECT count(*) FROM tp_ticket"), 1);
    assert_iso8601(peek_text("SELECT received_at FROM tp_ticket", buf, sizeof(buf)));
    store_close(s);
}
END_TEST

/* ---- Baidu lookups --------------------------------------------------------------- */

/* Store a Baidu pay notification for an order. */
static void put_pay_notify(struct store *s, const char *key, const char *order,
                           const char *app, int verified, const char *status,
                           const char *fields)
{
    struct waiter w = WAITER_INIT;
    struct store_event ev;

    ev_init(&ev, key, "{}");
    ev.provider = "baidu";
    ev.kind = "pay_notify";
    ev.order_id = order;
    ev.app = app;
    ev.verified = verified;
    ev.status = status;
    ev.fields = fields;
    submit_wait(s, &ev, &w);
    ck_assert_int_eq(w.outcome, STORE_NEW);
}

/* Lookups run by many threads at once, more than the pool has connections. */
struct lookup_run {
    struct store *s;
    int found, wrong;
};

/* Thread body: 50 lookups of order O1, counting right and wrong answers. */
static void *lookup_thread(void *arg)
{
    struct lookup_run *lr = arg;
    char app[64];
    int i;

    for (i = 0; i < 50; i++) {
        if (store_baidu_order_deal(lr->s, "O1", app, sizeof(app)) == 1 &&
            strcmp(app, "deal-1") == 0)
            lr->found++;
        else
            lr->wrong++;
    }
    return NULL;
}

/* The deal of an order comes from its verified pay notification only, from any thread. */
START_TEST(baidu_order_app_lookup)
{
    enum { THREADS = 16 };
    struct store_options o = opts();
    struct store *s = open_ok(&o);
    struct lookup_run lr[THREADS];
    pthread_t th[THREADS];
    char app[64] = "untouched";
    int i;

    put_pay_notify(s, "p1", "O1", "app-1", 1, "2", "{\"dealId\":\"deal-1\"}");
    put_pay_notify(s, "p2", "O2", "app-1", 0, "2", "{\"dealId\":\"forged\"}");
    ck_assert_int_eq(store_baidu_order_deal(s, "O1", app, sizeof(app)), 1);
    ck_assert_str_eq(app, "deal-1");
    strcpy(app, "untouched");
    ck_assert_int_eq(store_baidu_order_deal(s, "O2", app, sizeof(app)), 0);
    ck_assert_int_eq(store_baidu_order_deal(s, "O3", app, sizeof(app)), 0);
    ck_assert_str_eq(app, "untouched");
    for (i = 0; i < THREADS; i++) {
        lr[i] = (struct lookup_run){s, 0, 0};
        ck_assert_int_eq(pthread_create(&th[i], NULL, lookup_thread, &lr[i]), 0);
    }
    for (i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        ck_assert_int_eq(lr[i].found, 50);
        ck_assert_int_eq(lr[i].wrong, 0);
    }
    store_close(s);
}
END_TEST

/* What the refund in_tx helpers returned inside one transaction. */
struct refund_probe {
    int paid_r, decide_r[4], outcome_r, approved_r[2], again_r, fail_after;
    char pay_money[32];
    int64_t approved[2];
};

/* in_tx exercising every refund helper in order, keeping what each returned. */
static int refund_in_tx(struct store_tx *tx, struct store_event *ev, void *data)
{
    struct refund_probe *p = data;

    p->paid_r = store_tx_baidu_paid(tx, "O1", p->pay_money, sizeof(p->pay_money));
    p->decide_r[0] = store_tx_baidu_decide(tx, "B1", "O1", 1, 300, "fits");
    p->decide_r[1] = store_tx_baidu_decide(tx, "B2", "O1", 1, 200, "fits");
    p->decide_r[2] = store_tx_baidu_decide(tx, "B3", "O1", 2, 900, "too much");
    p->decide_r[3] = store_tx_baidu_decide(tx, "B4", "O9", 1, 50, "other order");
    p->approved_r[0] = store_tx_baidu_approved(tx, "O1", &p->approved[0]);
    p->outcome_r = store_tx_baidu_refund_outcome(tx, "B2", 2);
    p->approved_r[1] = store_tx_baidu_approved(tx, "O1", &p->approved[1]);
    p->again_r = store_tx_baidu_decide(tx, "B1", "O1", 1, 300, "asked again");
    return p->fail_after ? -EINVAL : 0;
}

/* The refund helpers see the paid amount, sum approved refunds less failed ones,
 * and their rows go (or vanish) with the event's savepoint. */
START_TEST(baidu_refund_helpers)
{
    struct store_options o = opts();
    struct store *s = open_ok(&o);
    struct waiter w = WAITER_INIT;
    struct refund_probe p;
    struct store_event ev;
    int i;

    put_pay_notify(s, "paid-unverified", "O1", "x", 0, "2", "{\"payMoney\":1}");
    put_pay_notify(s, "paid", "O1", "deal-1", 1, "2", "{\"payMoney\":1000}");

    memset(&p, 0, sizeof(p));
    p.fail_after = 1;
    ev_init(&ev, "audit-failing", "{}");
    ev.in_tx = refund_in_tx;
    ev.in_tx_data = &p;
    submit_wait(s, &ev, &w);
    ck_assert_int_eq(w.outcome, STORE_FAILED);
    ck_assert_int_eq(peek_int("SELECT count(*) FROM baidu_refunds"), 0);

    memset(&p, 0, sizeof(p));
    ev_init(&ev, "audit", "{}");
    ev.in_tx = refund_in_tx;
    ev.in_tx_data = &p;
    submit_wait(s, &ev, &w);
    ck_assert_int_eq(w.outcome, STORE_NEW);
    ck_assert_int_eq(p.paid_r, 1);
    ck_assert_str_eq(p.pay_money, "1000");
    for (i = 0; i < 4; i++)
        ck_assert_int_eq(p.decide_r[i], 0);
    ck_assert_int_eq(p.approved_r[0], 0);
    ck_assert_int_eq(p.approved[0], 500); /* B1 + B2; B3 rejected, B4 another order */
    ck_assert_int_eq(p.outcome_r, 0);
    ck_assert_int_eq(p.approved_r[1], 0);
    ck_assert_int_eq(p.approved[1], 300); /* B2 failed */
    ck_assert_int_lt(p.again_r, 0);       /* one decision per batch */
    ck_assert_int_eq(peek_int("SELECT count(*) FROM baidu_refunds"), 4);
    ck_assert_int_eq(peek_int("SELECT refund_status FROM baidu_refunds WHERE"
                              " refund_batch_id = 'B2'"),
                     2);
    store_close(s);
}
END_TEST

/* What the truncation probe's in_tx saw. */
struct short_probe {
    char buf[4];
    int r;
};

/* In the transaction: look a long payMoney up into a short buffer. */
static int short_in_tx(struct store_tx *tx, struct store_event *ev, void *data)
{
    struct short_probe *p = data;

    strcpy(p->buf, "ok");
    p->r = store_tx_baidu_paid(tx, "O9", p->buf, sizeof(p->buf));
    return 0;
}

/* A looked-up value longer than the caller's buffer is refused, never cut:
 * "12345" cut to "123" would be a wrong amount. The buffer is untouched. */
START_TEST(lookup_never_truncates)
{
    struct store_options o = opts();
    struct store *s = open_ok(&o);
    struct waiter w = WAITER_INIT;
    struct short_probe p;
    struct store_event ev;
    char deal[4] = "ok";

    put_pay_notify(s, "paid", "O9", "app", 1, "2",
                   "{\"payMoney\":\"12345\",\"dealId\":\"470193086\"}");
    ev_init(&ev, "probe", "{}");
    ev.in_tx = short_in_tx;
    ev.in_tx_data = &p;
    submit_wait(s, &ev, &w);
    ck_assert_int_eq(p.r, -ENOSPC);
    ck_assert_str_eq(p.buf, "ok");
    ck_assert_int_eq(store_baidu_order_deal(s, "O9", deal, sizeof(deal)), -ENOSPC);
    ck_assert_str_eq(deal, "ok");
    store_close(s);
}
END_TEST

/* ---- group commit ------------------------------------------------------------- */

#define SUBMITTERS 4
#define PER_THREAD 500

/* One event of the concurrency test and what its completion saw. */
struct slot {
    struct store_event ev;
    char key[32];
    atomic_int calls;
    enum store_outcome outcome;
    int64_t id;
};

/* Everything the submitter threads share. */
struct crowd {
    struct store *s;
    struct slot *slots;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int done;
    atomic_int refused;
};

struct submitter {
    struct crowd *crowd;
    int first;
};

static struct crowd *crowd_of_slot; /* the crowd the completions count into */

/* Completion of one crowd event: record it and count it. */
static void slot_done(void *data, const struct store_result *res)
{
    struct slot *sl = data;

    sl->outcome = res->outcome;
    sl->id = res->id;
    atomic_fetch_add(&sl->calls, 1);
    pthread_mutex_lock(&crowd_of_slot->lock);
    crowd_of_slot->done++;
    pthread_cond_broadcast(&crowd_of_slot->cond);
    pthread_mutex_unlock(&crowd_of_slot->lock);
}

/* Thread body: submit this submitter's share of the events. */
static void *submitter_run(void *arg)
{
    struct submitter *sb = arg;
    int i;

    for (i = sb->first; i < sb->first + PER_THREAD; i++) {
        struct slot *sl = &sb->crowd->slots[i];
        if (store_submit(sb->crowd->s, &sl->ev, slot_done, sl) != 0)
            atomic_fetch_add(&sb->crowd->refused, 1);
    }
    return NULL;
}

/* qsort order for int64_t. */
static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return (x > y) - (x < y);
}

/* Wait until the crowd's completions reach n (or time runs out). */
static int crowd_wait(struct crowd *cr, int n)
{
    struct timespec until;
    int rc = 0, done;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += WAIT_SECONDS;
    pthread_mutex_lock(&cr->lock);
    while (cr->done < n && rc == 0)
        rc = pthread_cond_timedwait(&cr->cond, &cr->lock, &until);
    done = cr->done;
    pthread_mutex_unlock(&cr->lock);
    return done;
}

/* Concurrent submitters: every event completes exactly once, new, with its own id,
 * and some transactions carry more than one row. */
START_TEST(concurrent_submitters)
{
    enum { N = SUBMITTERS * PER_THREAD };
    struct store_options o = opts();
    struct crowd cr = {0};
    struct submitter sb[SUBMITTERS];
    pthread_t th[SUBMITTERS];
    unsigned long long tx0 = metric(ROWS_COUNT), one0 = metric(ROWS_LE(1)), tx, one;
    int64_t *ids = calloc(N, sizeof(*ids));
    int i;

    cr.slots = calloc(N, sizeof(*cr.slots));
    ck_assert_ptr_nonnull(cr.slots);
    ck_assert_ptr_nonnull(ids);
    pthread_mutex_init(&cr.lock, NULL);
    pthread_cond_init(&cr.cond, NULL);
    crowd_of_slot = &cr;
    for (i = 0; i < N; i++) {
        snprintf(cr.slots[i].key, sizeof(cr.slots[i].key), "crowd-%d", i);
        ev_init(&cr.slots[i].ev, cr.slots[i].key, "ok");
        cr.slots[i].outcome = -1;
    }
    cr.s = open_ok(&o);
    for (i = 0; i < SUBMITTERS; i++) {
        sb[i].crowd = &cr;
        sb[i].first = i * PER_THREAD;
        ck_assert_int_eq(pthread_create(&th[i], NULL, submitter_run, &sb[i]), 0);
    }
    for (i = 0; i < SUBMITTERS; i++)
        pthread_join(th[i], NULL);
    ck_assert_int_eq(atomic_load(&cr.refused), 0);
    ck_assert_int_eq(crowd_wait(&cr, N), N);
    usleep(100000); /* a second completion of any event would show up now */
    for (i = 0; i < N; i++) {
        ck_assert_msg(atomic_load(&cr.slots[i].calls) == 1, "event %d completed %d times",
                      i, atomic_load(&cr.slots[i].calls));
        ck_assert_msg(cr.slots[i].outcome == STORE_NEW, "event %d outcome %d", i,
                      cr.slots[i].outcome);
        ids[i] = cr.slots[i].id;
    }
    qsort(ids, N, sizeof(*ids), cmp_i64);
    for (i = 1; i < N; i++)
        ck_assert_msg(ids[i] != ids[i - 1], "id %lld given twice", (long long)ids[i]);
    tx = metric(ROWS_COUNT) - tx0;
    one = metric(ROWS_LE(1)) - one0;
    ck_assert_msg(tx < N, "%llu transactions for %d events: no group commit", tx, N);
    ck_assert_msg(one < tx, "every one of %llu transactions had one row", tx);
    store_close(cr.s);
    ck_assert_int_eq(peek_int("SELECT count(*) FROM events"), N);
    ck_assert_int_eq(peek_int("SELECT count(DISTINCT id) FROM events"), N);
    pthread_mutex_destroy(&cr.lock);
    pthread_cond_destroy(&cr.cond);
    free(cr.slots);
    free(ids);
}
END_TEST

/* Events queued while a transaction runs are committed together in the next one. */
START_TEST(queued_events_share_a_commit)
{
    enum { N = 50 };
    struct store_options o = opts();
    struct store *s = open_ok(&o);
    struct waiter wg = WAITER_INIT, w = WAITER_INIT;
    struct store_event g, ev[N];
    struct gate gate = GATE_INIT;
    char keys[N][24];
    unsigned long long tx0, le32, le64;
    int i;

    gate_close(s, &gate, &g, &wg);
    tx0 = metric(ROWS_COUNT);
    le32 = metric(ROWS_LE(32));
    le64 = metric(ROWS_LE(64));
    for (i = 0; i < N; i++) {
        snprintf(keys[i], sizeof(keys[i]), "batch-%d", i);
        ev_init(&ev[i], keys[i], "ok");
        ck_assert_int_eq(store_submit(s, &ev[i], waiter_done, &w), 0);
    }
    ck_assert_int_eq(store_queue_depth(s), N);
    gate_open(&gate);
    waiter_wait(&w, N);
    ck_assert_uint_eq(metric(ROWS_COUNT) - tx0, 2);
    /* one observation in (32, 64]: the 50-row transaction */
    ck_assert_uint_eq((metric(ROWS_LE(64)) - le64) - (metric(ROWS_LE(32)) - le32), 1);
    ck_assert_int_eq(store_queue_depth(s), 0);
    store_close(s);
    ck_assert_int_eq(peek_int("SELECT count(*) FROM events"), N + 1);
}
END_TEST

/* batch_max caps the rows of one transaction. */
START_TEST(batch_max_respected)
{
    enum { N = 20 };
    struct store_options o = opts();
    struct store *s;
    struct waiter wg = WAITER_INIT, w = WAITER_INIT;
    struct store_event g, ev[N];
    struct gate gate = GATE_INIT;
    char keys[N][24];
    unsigned long long tx0;
    int i;

    o.batch_max = 4;
    s = open_ok(&o);
    gate_close(s, &gate, &g, &wg);
    tx0 = metric(ROWS_COUNT);
    for (i = 0; i < N; i++) {
        snprintf(keys[i], sizeof(keys[i]), "cap-%d", i);
        ev_init(&ev[i], keys[i], "ok");
        ck_assert_int_eq(store_submit(s, &ev[i], waiter_done, &w), 0);
    }
    gate_open(&gate);
    waiter_wait(&w, N);
    ck_assert_uint_eq(metric(ROWS_COUNT) - tx0, 1 + N / 4);
    store_close(s);
}
END_TEST

/* Largest size the WAL reached, sampled by a thread while the writer works. */
struct wal_watch {
    atomic_int stop;
    off_t max;
    char path[PATH_MAX + 40];
};

static void *wal_watch_run(void *arg)
{
    struct wal_watch *ww = arg;
    struct stat st;

    while (!atomic_load(&ww->stop)) {
        if (stat(ww->path, &st) == 0 && st.st_size > ww->max)
            ww->max = st.st_size;
        usleep(500);
    }
    return NULL;
}

/* Under writes that never pause, checkpoints still catch up: the WAL starts
 * over instead of growing with everything written (here ~35 MB of pages),
 * and every row is in the store. */
START_TEST(wal_bounded_under_continuous_writes)
{
    enum { N = 4000, BODY = 8192 };
    struct store_options o = opts();
    struct store *s;
    struct waiter w = WAITER_INIT;
    struct store_event *ev = calloc(N, sizeof(*ev));
    char(*keys)[24] = calloc(N, sizeof(*keys));
    char *body = malloc(BODY);
    struct wal_watch ww = {0};
    pthread_t watcher;
    int i;

    ck_assert(ev && keys && body);
    memset(body, 'b', BODY);
    o.batch_max = 32;
    s = open_ok(&o);
    snprintf(ww.path, sizeof(ww.path), "%s-wal", dbpath);
    ck_assert_int_eq(pthread_create(&watcher, NULL, wal_watch_run, &ww), 0);
    for (i = 0; i < N; i++) {
        snprintf(keys[i], sizeof(keys[i]), "wal-%d", i);
        ev_init(&ev[i], keys[i], "ok");
        ev[i].body = body;
        ev[i].body_len = BODY;
        ck_assert_int_eq(store_submit(s, &ev[i], waiter_done, &w), 0);
    }
    waiter_wait(&w, N);
    atomic_store(&ww.stop, 1);
    pthread_join(watcher, NULL);
    store_close(s);
    /* 1000 frames start a checkpoint; four times that is far more than a
     * checkpoint's lag, far less than the ~8,600 frames written. */
    ck_assert_msg(ww.max < 4 * 1000 * (4096 + 24), "WAL reached %lld bytes",
                  (long long)ww.max);
    /* and the bulk of the copying was the checkpointer's, not the writer's */
    ck_assert_uint_gt(metric("payhookd_checkpoint_frames_total{by=\"checkpointer\"}"),
                      metric("payhookd_checkpoint_frames_total{by=\"writer\"}"));
    ck_assert_int_eq(peek_int("SELECT count(*) FROM events"), N);
    free(body);
    free(keys);
    free(ev);
}
END_TEST

/* ---- failures ------------------------------------------------------------------ */

/* An insert refused by the database fails that event, with the database's reason,
 * stores nothing, and writing works again once the cause is gone. */
START_TEST(insert_failure_and_recovery)
{
    struct store_options o = opts();
    struct store *s = open_ok(&o);
    struct waiter w = WAITER_INIT;
    struct store_event ev;

    store_new(s, "before");
    peek_exec("CREATE TRIGGER inject BEFORE INSERT ON events "
              "BEGIN SELECT RAISE(ABORT, 'injected'); END");
    ev_init(&ev, "victim", "must not be sent");
    submit_wait(s, &ev, &w);
    ck_assert_int_eq(w.outcome, STORE_FAILED);
    ck_assert_msg(strstr(w.error, "injected") != NULL, "reason: \"%s\"", w.error);
    ck_assert_int_eq(rows_with_key("victim"), 0);

    peek_exec("DROP TRIGGER inject");
    submit_wait(s, &ev, &w);
    ck_assert_int_eq(w.outcome, STORE_NEW);
    ck_assert_int_eq(w.deliveries, 1);
    ck_assert_str_eq(w.answer, "must not be sent");
    ck_assert_int_eq(rows_with_key("victim"), 1);
    ck_assert_int_eq(store_ready(s), 1);
    store_close(s);
}
END_TEST

/* A redelivery whose count cannot be updated fails; it is not acknowledged as a
 * duplicate. */
START_TEST(duplicate_update_failure)
{
    struct store_options o = opts();
    struct store *s = open_ok(&o);
    struct waiter w = WAITER_INIT;
    struct store_event ev;

    ev_init(&ev, "redelivered", "first");
    submit_wait(s, &ev, &w);
    ck_assert_int_eq(w.outcome, STORE_NEW);
    peek_exec("CREATE TRIGGER inject BEFORE UPDATE ON events "
              "BEGIN SELECT RAISE(ABORT, 'injected update'); END");
    submit_wait(s, &ev, &w);
    ck_assert_int_eq(w.outcome, STORE_FAILED);
    ck_assert_msg(w.error[0] != '\0', "no reason given");
    ck_assert_int_eq(peek_int("SELECT deliveries FROM events"), 1);
    peek_exec("DROP TRIGGER inject");
    submit_wait(s, &ev, &w);
    ck_assert_int_eq(w.outcome, STORE_DUPLICATE);
    ck_assert_int_eq(w.deliveries, 2);
    ck_assert_str_eq(w.answer, "first");
    store_close(s);
}
END_TEST

/* When no transaction can begin (another writer holds the lock), every event fails,
 * the store says it is not ready, and it recovers by itself once the lock is gone. */
START_TEST(locked_database_and_recovery)
{
    struct store_options o = opts();
    struct store *s = open_ok(&o);
    struct waiter w = WAITER_INIT;
    struct store_event ev;
    sqlite3 *hold = peek_open();
    unsigned long long failed0 = metric("payhookd_commit_failures_total");
    int i;

    ck_assert_int_eq(sqlite3_exec(hold, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    ev_init(&ev, "while-locked", "no");
    submit_wait(s, &ev, &w);
    ck_assert_int_eq(w.outcome, STORE_FAILED);
    ck_assert_msg(strstr(w.error, "locked") != NULL, "reason: \"%s\"", w.error);
    ck_assert_int_eq(store_ready(s), 0);
    ck_assert_uint_eq(metric("payhookd_commit_failures_total") - failed0, 1);
    ck_assert_int_eq(sqlite3_exec(hold, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(hold);
    for (i = 0; i < 500 && !store_ready(s); i++)
        usleep(10000);
    ck_assert_msg(store_ready(s) == 1, "not ready 5 s after the lock was released");
    ck_assert_int_eq(rows_with_key("while-locked"), 0);
    submit_wait(s, &ev, &w);
    ck_assert_int_eq(w.outcome, STORE_NEW);
    store_close(s);
}
END_TEST

/* ---- rejections ------------------------------------------------------------------ */

/* A rejection is copied at once and recorded with its columns; NULLs get defaults. */
START_TEST(rejection_recorded)
{
    struct store_options o = opts();
    struct store *s = open_ok(&o);
    char route[] = "/baidu/tp/events", addr[] = "192.0.2.9", reason[] = "bad_signature",
         detail[] = "MsgSignature does not match", prefix[] = "ab\0cd";
    struct store_rejection r = {.route = route,
                                .remote_addr = addr,
                                .status = 401,
                                .reason = reason,
                                .detail = detail,
                                .body_prefix = prefix,
                                .body_prefix_len = 5};
    struct store_rejection empty = {.status = 400};
    sqlite3 *db;
    sqlite3_stmt *st;

    store_reject(s, &r);
    memset(route, 'X', sizeof(route) - 1); /* the store must have its own copy */
    memset(addr, 'X', sizeof(addr) - 1);
    memset(reason, 'X', sizeof(reason) - 1);
    memset(detail, 'X', sizeof(detail) - 1);
    memset(prefix, 'X', sizeof(prefix) - 1);
    store_reject(s, &empty);
    store_new(s, "sync"); /* the queue is FIFO: both rejections are committed now */
    store_close(s);

    db = peek_open();
    ck_assert_int_eq(
        sqlite3_prepare_v2(db,
                           "SELECT route, remote_addr, status, reason, detail,"
                           " body_prefix, received_at FROM rejections ORDER BY id",
                           -1, &st, NULL),
        SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    ck_assert_str_eq((const char *)sqlite3_column_text(st, 0), "/baidu/tp/events");
    ck_assert_str_eq((const char *)sqlite3_column_text(st, 1), "192.0.2.9");
    ck_assert_int_eq(sqlite3_column_int(st, 2), 401);
    ck_assert_str_eq((const char *)sqlite3_column_text(st, 3), "bad_signature");
    ck_assert_str_eq((const char *)sqlite3_column_text(st, 4),
                     "MsgSignature does not match");
    ck_assert_int_eq(sqlite3_column_bytes(st, 5), 5);
    ck_assert_mem_eq(sqlite3_column_blob(st, 5), "ab\0cd", 5);
    assert_iso8601((const char *)sqlite3_column_text(st, 6));
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    ck_assert_str_eq((const char *)sqlite3_column_text(st, 0), "");
    ck_assert_int_eq(sqlite3_column_type(st, 1), SQLITE_NULL);
    ck_assert_int_eq(sqlite3_column_int(st, 2), 400);
    ck_assert_str_eq((const char *)sqlite3_column_text(st, 3), "unknown");
    ck_assert_int_eq(sqlite3_column_type(st, 4), SQLITE_NULL);
    ck_assert_int_eq(sqlite3_column_bytes(st, 5), 0);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(db);
    ck_assert_int_eq(peek_int("SELECT count(*) FROM events"), 1);
}
END_TEST

/* The rejections table never holds more than rejections_keep rows: the newest ones. */
START_TEST(rejections_trimmed)
{
    enum { KEEP = 10, N = 300 };
    struct store_options o = opts();
    struct store *s;
    struct store_rejection r = {.route = "/r",
                                .remote_addr = "192.0.2.1",
                                .status = 400,
                                .reason = "bad_json",
                                .body_prefix = "{",
                                .body_prefix_len = 1};
    int i;

    o.rejections_keep = KEEP;
    o.rejection_queue_max = N; /* none dropped: this is about the table's cap */
    s = open_ok(&o);
    for (i = 0; i < N; i++)
        store_reject(s, &r);
    store_new(s, "sync");
    store_close(s);
    ck_assert_int_eq(peek_int("SELECT max(id) FROM rejections"), N);
    ck_assert_int_eq(peek_int("SELECT min(id) FROM rejections"), N - KEEP + 1);
    ck_assert_int_eq(peek_int("SELECT count(*) FROM rejections"), KEEP);
}
END_TEST

/* ---- stopping and the queue limit -------------------------------------------------- */

/* A completion counter for events nobody waits on individually. */
static atomic_int counted_new, counted_other;

/* Completion that only counts outcomes. */
static void count_done(void *data, const struct store_result *res)
{
    if (res->outcome == STORE_NEW)
        atomic_fetch_add(&counted_new, 1);
    else
        atomic_fetch_add(&counted_other, 1);
}

/* store_stop commits everything queued before it returns; later submits get -EAGAIN. */
START_TEST(stop_drains_queue)
{
    enum { N = 1000 };
    struct store_options o = opts();
    struct store *s = open_ok(&o);
    struct store_event *ev = calloc(N, sizeof(*ev)), late;
    char(*keys)[24] = calloc(N, sizeof(*keys));
    struct store_rejection r = {.route = "/r", .status = 404, .reason = "unknown_path"};
    int i;

    ck_assert_ptr_nonnull(ev);
    ck_assert_ptr_nonnull(keys);
    atomic_store(&counted_new, 0);
    atomic_store(&counted_other, 0);
    for (i = 0; i < N; i++) {
        snprintf(keys[i], sizeof(keys[i]), "drain-%d", i);
        ev_init(&ev[i], keys[i], "ok");
        ck_assert_int_eq(store_submit(s, &ev[i], count_done, NULL), 0);
    }
    store_stop(s);
    ck_assert_int_eq(atomic_load(&counted_new), N);
    ck_assert_int_eq(atomic_load(&counted_other), 0);
    ck_assert_int_eq(store_queue_depth(s), 0);
    ck_assert_int_eq(store_ready(s), 0);

    ev_init(&late, "too-late", "no");
    ck_assert_int_eq(store_submit(s, &late, count_done, NULL), -EAGAIN);
    store_reject(s, &r); /* dropped, not crashed on */
    store_stop(s);       /* idempotent */
    store_close(s);
    ck_assert_int_eq(atomic_load(&counted_new) + atomic_load(&counted_other), N);
    ck_assert_int_eq(peek_int("SELECT count(*) FROM events"), N);
    ck_assert_int_eq(rows_with_key("too-late"), 0);
    ck_assert_int_eq(peek_int("SELECT count(*) FROM rejections"), 0);
    free(ev);
    free(keys);
}
END_TEST

/* With queue_max events waiting, the next submit gets -EAGAIN (its callback never
 * runs); a rejection has a queue of its own and still gets in. The queue then
 * drains and accepts again. */
START_TEST(queue_full)
{
    enum { QMAX = 16 };
    struct store_options o = opts();
    struct store *s;
    struct waiter wg = WAITER_INIT, w = WAITER_INIT, wx = WAITER_INIT;
    struct store_event g, ev[QMAX], extra;
    struct gate gate = GATE_INIT;
    struct store_rejection r = {.route = "/r", .status = 400, .reason = "bad_json"};
    char keys[QMAX][24];
    unsigned long long lost0 = metric("payhookd_rejections_unrecorded_total");
    int i;

    o.queue_max = QMAX;
    s = open_ok(&o);
    gate_close(s, &gate, &g, &wg);
    for (i = 0; i < QMAX; i++) {
        snprintf(keys[i], sizeof(keys[i]), "q-%d", i);
        ev_init(&ev[i], keys[i], "ok");
        ck_assert_int_eq(store_submit(s, &ev[i], waiter_done, &w), 0);
    }
    ck_assert_int_eq(store_queue_depth(s), QMAX);
    ev_init(&extra, "overflow", "no");
    ck_assert_int_eq(store_submit(s, &extra, waiter_done, &wx), -EAGAIN);
    store_reject(s, &r);
    ck_assert_uint_eq(metric("payhookd_rejections_unrecorded_total") - lost0, 0);
    gate_open(&gate);
    waiter_wait(&wg, 1);
    waiter_wait(&w, QMAX);
    ck_assert_int_eq(wx.calls, 0);
    submit_wait(s, &extra, &wx);
    ck_assert_int_eq(wx.outcome, STORE_NEW);
    store_close(s);
    ck_assert_int_eq(peek_int("SELECT count(*) FROM events"), QMAX + 2);
    ck_assert_int_eq(peek_int("SELECT count(*) FROM rejections"), 1);
}
END_TEST

/* Rejections never take an event's place: with rejection_queue_max rejections
 * waiting, the next one is dropped and counted, while events are still taken. */
START_TEST(rejection_queue_full)
{
    enum { RMAX = 20 };
    struct store_options o = opts();
    struct store *s;
    struct waiter wg = WAITER_INIT, w = WAITER_INIT;
    struct store_event g, ev;
    struct gate gate = GATE_INIT;
    struct store_rejection r = {.route = "/r", .status = 401, .reason = "bad_signature"};
    unsigned long long lost0 = metric("payhookd_rejections_unrecorded_total");
    int i;

    o.rejection_queue_max = RMAX;
    s = open_ok(&o);
    gate_close(s, &gate, &g, &wg);
    for (i = 0; i < RMAX + 5; i++)
        store_reject(s, &r);
    ck_assert_uint_eq(metric("payhookd_rejections_unrecorded_total") - lost0, 5);
    ev_init(&ev, "genuine", "ok");
    ck_assert_int_eq(store_submit(s, &ev, waiter_done, &w), 0);
    gate_open(&gate);
    waiter_wait(&wg, 1);
    waiter_wait(&w, 1);
    ck_assert_int_eq(w.outcome, STORE_NEW);
    store_close(s);
    ck_assert_int_eq(peek_int("SELECT count(*) FROM rejections"), RMAX);
    ck_assert_int_eq(peek_int("SELECT count(*) FROM events WHERE dedupe_key = 'genuine'"),
                     1);
}
END_TEST

/* The destructors take NULL. */
START_TEST(null_safe)
{
    store_stop(NULL);
    ck_assert_ptr_null(store_close(NULL));
}
END_TEST

/* ---- runner ----------------------------------------------------------------------- */

/* ---- SQLite out of memory inside a batch --------------------------------- */

/* SQLite's allocator, wrapped: while armed, the Nth allocation fails. */
static sqlite3_mem_methods real_mem;
static atomic_int fault_countdown, fault_hit, fault_again;

/* The armed allocation fails; so does, once, the fault_again-th after it
 * (a failure also while the batch is written again, item by item). */
static int fault_now(void)
{
    if (atomic_load(&fault_countdown) <= 0 || atomic_fetch_sub(&fault_countdown, 1) != 1)
        return 0;
    atomic_store(&fault_hit, 1);
    atomic_store(&fault_countdown, atomic_exchange(&fault_again, 0));
    return 1;
}

static void *fault_malloc(int n)
{
    return fault_now() ? NULL : real_mem.xMalloc(n);
}

static void *fault_realloc(void *p, int n)
{
    return fault_now() ? NULL : real_mem.xRealloc(p, n);
}

/* in_tx of the swept events: more kinds of statement in the transaction
 * (an upsert, a delete, a read), as a TP push brings. */
static int oom_in_tx(struct store_tx *tx, struct store_event *ev, void *data)
{
    int r = store_tx_set_ticket(tx, ev->dedupe_key, (int64_t)(intptr_t)data);

    if (r >= 0)
        r = store_tx_token_fresh(tx, ev->dedupe_key, 60);
    if (r >= 0)
        r = store_tx_token_delete(tx, ev->dedupe_key);
    return r < 0 ? r : 0;
}

/* Jobs of the event with this dedupe key. */
static int64_t jobs_of(const char *key)
{
    char sql[512];

    snprintf(sql, sizeof(sql), "SELECT count(*) FROM jobs j JOIN events e ON e.id = j.event_id"
             " WHERE e.dedupe_key = '%s'", key);
    return peek_int(sql);
}

/* A claim made from another thread, so that it joins the events' batch. */
struct oom_claim {
    struct store *s;
    struct store_job *jobs;
    size_t n;
    int r;
};

static void *oom_claim_main(void *p)
{
    struct oom_claim *c = p;
    char lease[32];

    util_iso8601_in(60000, lease);
    c->r = store_jobs_claim(c->s, c->jobs, c->n, lease);
    return NULL;
}

/* The state of a job in the file. */
static void job_state(int64_t id, char *buf, size_t len)
{
    char sql[96];

    snprintf(sql, sizeof(sql), "SELECT state FROM jobs WHERE id = %lld", (long long)id);
    peek_text(sql, buf, len);
}

/* Put the wrapper in place (SQLite must be shut down to change allocators). */
static void fault_install(void)
{
    sqlite3_mem_methods m;

    ck_assert_int_eq(sqlite3_shutdown(), SQLITE_OK);
    ck_assert_int_eq(sqlite3_config(SQLITE_CONFIG_GETMALLOC, &real_mem), SQLITE_OK);
    m = real_mem;
    m.xMalloc = fault_malloc;
    m.xRealloc = fault_realloc;
    ck_assert_int_eq(sqlite3_config(SQLITE_CONFIG_MALLOC, &m), SQLITE_OK);
    ck_assert_int_eq(sqlite3_initialize(), SQLITE_OK);
}

/*
 * Out of memory anywhere in a batch's transaction: SQLite may then roll
 * back the whole transaction by itself (lang_transaction.html, "Response To
 * Errors Within A Transaction"), items written before the failure with it.
 * Whatever happens, an item reported stored is in the file and an item
 * reported failed is not: nothing is acknowledged that a crash would lose.
 * Swept over the Nth allocation of the batch, N = 1, 2, ...
 */
START_TEST(out_of_memory_in_a_batch_never_acknowledges_a_lost_row)
{
    enum { N = 8, MAX_SWEEP = 4000 };
    struct store_options o = opts();
    struct store *s;
    int n, i, swept = 0;

    fault_install();
    s = open_ok(&o);
    for (n = 1; n < MAX_SWEEP; n++) {
        struct waiter wg = WAITER_INIT, w[N];
        struct store_event g, ev[N];
        struct gate gate = GATE_INIT;
        struct oom_claim claim = {s, NULL, 0, 0};
        pthread_t claimer;
        char keys[N][32], gkey[32], now[32], state[16];
        size_t k;

        util_iso8601_now(now);
        ck_assert_int_eq(store_jobs_due(s, "test", now, 2, &claim.jobs, &claim.n), 0);
        gate_close(s, &gate, &g, &wg);
        snprintf(gkey, sizeof(gkey), "gate-%d", n);
        g.dedupe_key = gkey; /* read again when the batch is written again */
        for (i = 0; i < N; i++) {
            w[i] = (struct waiter)WAITER_INIT;
            snprintf(keys[i], sizeof(keys[i]), "oom-%d-%d", n, i);
            ev_init(&ev[i], keys[i], "ok");
            ev[i].in_tx = i % 2 ? oom_in_tx : NULL;
            ev[i].in_tx_data = (void *)(intptr_t)(n * N + i);
            ev[i].followup = (struct store_followup){.kind = "test.query", .lane = "test"};
            ck_assert_int_eq(store_submit(s, &ev[i], waiter_done, &w[i]), 0);
        }
        ck_assert_int_eq(pthread_create(&claimer, NULL, oom_claim_main, &claim), 0);
        while (store_queue_depth(s) < N) /* events only: wait a moment for the claim */
            ;
        usleep(20000);
        atomic_store(&fault_hit, 0);
        atomic_store(&fault_again, 1 + n % 23);
        atomic_store(&fault_countdown, n);
        gate_open(&gate);
        waiter_wait(&wg, 1);
        for (i = 0; i < N; i++)
            waiter_wait(&w[i], 1);
        pthread_join(claimer, NULL);
        atomic_store(&fault_countdown, 0);
        atomic_store(&fault_again, 0);
        /* a claim said made is in the file; one said failed left them queued */
        for (k = 0; k < claim.n; k++) {
            job_state(claim.jobs[k].id, state, sizeof(state));
            if (claim.r == 0 && claim.jobs[k].claimed)
                ck_assert_msg(strcmp(state, "running") == 0, "allocation %d: job %lld "
                              "claimed, but %s", n, (long long)claim.jobs[k].id, state);
            else
                ck_assert_msg(strcmp(state, "queued") == 0, "allocation %d: claim of job "
                              "%lld failed (%d), but %s", n, (long long)claim.jobs[k].id,
                              claim.r, state);
        }
        store_jobs_free(claim.jobs, claim.n);
        for (i = 0; i < N; i++) {
            int64_t rows = rows_with_key(keys[i]);
            if (w[i].outcome == STORE_NEW)
                ck_assert_msg(rows == 1 && jobs_of(keys[i]) == 1,
                              "allocation %d: %s acknowledged, %lld rows", n, keys[i],
                              (long long)rows);
            else
                ck_assert_msg(w[i].outcome == STORE_FAILED && rows == 0,
                              "allocation %d: %s outcome %d (%s), %lld rows", n, keys[i],
                              w[i].outcome, w[i].error, (long long)rows);
        }
        if (!atomic_load(&fault_hit))
            break;
        swept = n;
    }
    ck_assert_msg(swept > 5 && n < MAX_SWEEP, "swept %d allocations", swept);
    /* and the store works on */
    store_new(s, "after");
    store_close(s);
}
END_TEST

/* Every test case of store.c, each in a fresh directory. */
static Suite *store_suite(void)
{
    Suite *s = suite_create("store");
    TCase *open = tcase_create("open");
    TCase *ev = tcase_create("events");
    TCase *grp = tcase_create("group commit");
    TCase *fail = tcase_create("failures");
    TCase *rej = tcase_create("rejections");
    TCase *q = tcase_create("queue");
    TCase *all[] = {open, ev, grp, fail, rej, q};
    size_t i;

    tcase_add_test(open, open_fresh_migrates);
    tcase_add_test(open, migration_3_refunds_and_app_ids);
    tcase_add_test(open, migration_7_alipay_refund_totals);
    tcase_add_test(open, lookup_never_truncates);
    tcase_add_test(open, reopen_does_not_reapply);
    tcase_add_test(open, newer_schema_refused);
    tcase_add_test(open, open_bad_files);
    tcase_add_test(ev, new_event_row_exact);
    tcase_add_test(ev, null_columns);
    tcase_add_test(ev, duplicate_returns_first_answer);
    tcase_add_test(ev, duplicate_within_one_batch);
    tcase_add_test(ev, in_tx_only_for_new);
    tcase_add_test(ev, in_tx_failure_is_alone);
    tcase_add_test(ev, in_tx_decisions_replayed_without_the_failed_item);
    tcase_add_test(ev, failures_keep_own_reason);
    tcase_add_test(ev, ticket_keeps_newest);
    tcase_add_test(ev, baidu_order_app_lookup);
    tcase_add_test(ev, baidu_refund_helpers);
    tcase_add_test(grp, concurrent_submitters);
    tcase_add_test(grp, queued_events_share_a_commit);
    tcase_add_test(grp, batch_max_respected);
    tcase_add_test(grp, wal_bounded_under_continuous_writes);
    tcase_add_test(fail, insert_failure_and_recovery);
    tcase_add_test(fail, duplicate_update_failure);
    tcase_add_test(fail, locked_database_and_recovery);
    tcase_add_test(fail, out_of_memory_in_a_batch_never_acknowledges_a_lost_row);
    tcase_add_test(rej, rejection_recorded);
    tcase_add_test(rej, rejections_trimmed);
    tcase_add_test(q, stop_drains_queue);
    tcase_add_test(q, queue_full);
    tcase_add_test(q, rejection_queue_full);
    tcase_add_test(q, null_safe);
    for (i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        tcase_add_checked_fixture(all[i], setup, teardown);
        tcase_set_timeout(all[i], 120);
        suite_add_tcase(s, all[i]);
    }
    return s;
}

/* Run the suite; nonzero when anything failed. */
int main(void)
{
    SRunner *sr = srunner_create(store_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
