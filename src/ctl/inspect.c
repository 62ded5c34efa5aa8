/*
 * inspect.c: payhookctl events, show, jobs, deliveries, hooks, stats (see
 * inspect.h). Every command is: parse the arguments (ic_parse, one option
 * table for all, each command naming the ones it takes), open the store
 * read-only, run its SQL against the documented views, print the rows.
 * Reads run inside one read transaction, so `show` and `stats` see one
 * consistent moment even while the daemon commits.
 */
#include "ctl/inspect.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl/common.h"
#include "ctl/table.h"
#include "lib/util.h"

#define IC_LIMIT_DEFAULT "50"
#define IC_LIMIT_MAX     1000000000LL
#define IC_PARAMS_MAX    10
#define IC_HOOK_COLS     4 /* name, type, target, when of one configured hook */

/* The options, one bit each; a command lists the ones it takes. */
enum {
    O_JSON = 1 << 0, O_LIMIT = 1 << 1, O_KIND = 1 << 2, O_PROVIDER = 1 << 3,
    O_APP = 1 << 4, O_STATUS = 1 << 5, O_SINCE = 1 << 6, O_UNTIL = 1 << 7,
    O_CONFIRMATION = 1 << 8, O_ORDER = 1 << 9, O_FAILED = 1 << 10, O_DEAD = 1 << 11,
    O_HOOK = 1 << 12, O_STATE = 1 << 13, O_DATE = 1 << 14,
};

struct ic_args {
    const char *cmd;
    int json, help, failed, dead;
    const char *limit, *kind, *provider, *app, *status, *confirmation, *order, *hook,
        *state, *date;
    char since[32], until[32]; /* ISO-8601 UTC, as the store writes it; "" when absent */
    const char *pos[2];        /* positional arguments */
    int npos;
};

static const struct option ic_longopts[] = {
    {"json", no_argument, NULL, 'j'},          {"limit", required_argument, NULL, 'n'},
    {"kind", required_argument, NULL, 'k'},    {"provider", required_argument, NULL, 'p'},
    {"app", required_argument, NULL, 'a'},     {"status", required_argument, NULL, 's'},
    {"since", required_argument, NULL, 'S'},   {"until", required_argument, NULL, 'U'},
    {"confirmation", required_argument, NULL, 'C'},
    {"order", required_argument, NULL, 'o'},   {"failed", no_argument, NULL, 'f'},
    {"dead", no_argument, NULL, 'd'},          {"hook", required_argument, NULL, 'H'},
    {"state", required_argument, NULL, 't'},   {"date", required_argument, NULL, 'D'},
    {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0},
};

/* The option bit of getopt value c (0: -h, always allowed). */
static unsigned ic_bit(int c)
{
    static const char letters[] = "jnkpasSUCofdHtD";
    const char *p = strchr(letters, c);

    return p && c ? 1u << (p - letters) : 0;
}

/* ---- argument checks ----------------------------------------------------- */

/* "2026-12-06", "2026-12-06T08:30[:15][Z]" (UTC) or "90m", "36h", "7d" ago,
 * into the store's text form, so that text comparison is time comparison. */
static int ic_time(const char *s, char out[32])
{
    int y, mo, d, h = 0, mi = 0, se = 0, n = 0, len = (int)strlen(s);
    char unit = 0, sep = 0;
    long long ago;
    struct tm tm = {0};
    time_t t;

    if (sscanf(s, "%lld%c%n", &ago, &unit, &n) == 2 && n == len && ago >= 0 &&
        ago <= 36500LL * 86400 && strchr("smhd", unit) && s[0] >= '0' && s[0] <= '9') {
        ago *= unit == 's' ? 1 : unit == 'm' ? 60 : unit == 'h' ? 3600 : 86400;
        util_iso8601_in(-ago * 1000, out);
        return 0;
    }
    if (!(sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n) == 3 && n == 10 && len == 10) &&
        !(sscanf(s, "%4d-%2d-%2d%c%2d:%2d%n", &y, &mo, &d, &sep, &h, &mi, &n) == 6 && n == 16 &&
          (len == 16 || (len == 17 && s[16] == 'Z'))) &&
        !(sscanf(s, "%4d-%2d-%2d%c%2d:%2d:%2d%n", &y, &mo, &d, &sep, &h, &mi, &se, &n) == 7 &&
          n == 19 && (len == 19 || (len == 20 && s[19] == 'Z'))))
        return -1;
    if (sep && sep != 'T' && sep != ' ')
        return -1;
    tm.tm_year = y - 1900, tm.tm_mon = mo - 1, tm.tm_mday = d;
    tm.tm_hour = h, tm.tm_min = mi, tm.tm_sec = se;
    t = timegm(&tm);
    /* timegm normalises 2026-02-30 to March: refuse what it had to move */
    if (t == (time_t)-1 || tm.tm_year != y - 1900 || tm.tm_mon != mo - 1 || tm.tm_mday != d ||
        tm.tm_hour != h || tm.tm_min != mi || tm.tm_sec != se)
        return -1;
    strftime(out, 32, "%Y-%m-%dT%H:%M:%S.000Z", &tm);
    return 0;
}

static int ic_one_of(const char *v, const char *const *set)
{
    for (; *set; set++)
        if (strcmp(v, *set) == 0)
            return 1;
    return 0;
}

/* Check the values that have a fixed form; a usage exit status, or -1 (fine). */
static int ic_check(struct ic_args *a)
{
    static const char *const confirmations[] = {"none", "pending", "confirmed", "mismatch",
                                                "unconfirmed", NULL};
    static const char *const job_states[] = {"queued", "running", "done", "failed", NULL};
    static const char *const delivery_states[] = {"queued", "running", "delivered", "dead",
                                                  NULL};
    long long n;
    char day[32];

    if (a->limit && (ctl_parse_id(a->limit, &n) < 0 || n > IC_LIMIT_MAX))
        return ctl_usage("%s --limit %s: give a positive integer", a->cmd, a->limit);
    if (a->confirmation && !ic_one_of(a->confirmation, confirmations))
        return ctl_usage("%s --confirmation %s: one of none, pending, confirmed, mismatch, "
                         "unconfirmed", a->cmd, a->confirmation);
    if (a->state && !ic_one_of(a->state, strcmp(a->cmd, "jobs") == 0 ? job_states
                                                                      : delivery_states))
        return ctl_usage("%s --state %s: one of %s", a->cmd, a->state,
                         strcmp(a->cmd, "jobs") == 0 ? "queued, running, done, failed"
                                                     : "queued, running, delivered, dead");
    if (a->failed && a->dead)
        return ctl_usage("%s: --failed and --dead exclude each other (--failed includes the "
                         "dead ones)", a->cmd);
    if (a->date && (strlen(a->date) != 10 || ic_time(a->date, day) < 0))
        return ctl_usage("%s --date %s: give a day, YYYY-MM-DD (UTC)", a->cmd, a->date);
    if (a->since[0] && a->until[0] && strcmp(a->since, a->until) >= 0)
        return ctl_usage("%s: --since must be before --until", a->cmd);
    return -1;
}

/* Store one option's value; a usage exit status, or -1. */
static int ic_set(struct ic_args *a, int c, const char *v)
{
    const char **slot[] = {['n'] = &a->limit, ['k'] = &a->kind, ['p'] = &a->provider,
                           ['a'] = &a->app, ['s'] = &a->status, ['C'] = &a->confirmation,
                           ['o'] = &a->order, ['H'] = &a->hook, ['t'] = &a->state,
                           ['D'] = &a->date};

    if (c == 'j')
        a->json = 1;
    else if (c == 'f')
        a->failed = 1;
    else if (c == 'd')
        a->dead = 1;
    else if (c == 'h')
        a->help = 1;
    else if (c == 'S' || c == 'U') {
        if (ic_time(v, c == 'S' ? a->since : a->until) < 0)
            return ctl_usage("%s --%s %s: give YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS] (UTC) or an "
                             "age like 90m, 36h, 7d", a->cmd, c == 'S' ? "since" : "until", v);
    } else if (c > 0 && (size_t)c < ARRAY_SIZE(slot) && slot[c])
        *slot[c] = v;
    return -1;
}

/* Parse argv for command a->cmd taking `allowed` options and up to maxpos
 * positional arguments: a usage exit status, or -1 to go on. */
static int ic_parse(int argc, char **argv, unsigned allowed, int maxpos, struct ic_args *a)
{
    const char *arg;
    int c, r;

    optind = 0; /* glibc: rescan (and permute) afresh */
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", ic_longopts, NULL)) != -1) {
        arg = argv[optind - 1];
        if (c == ':')
            return ctl_usage("%s %s: requires a value", a->cmd, arg);
        if (c == '?' || (ic_bit(c) && !(ic_bit(c) & allowed)))
            return ctl_usage("%s %s: unknown option", a->cmd, arg);
        if ((r = ic_set(a, c, optarg)) >= 0)
            return r;
    }
    for (; optind < argc; optind++) {
        if (a->npos >= maxpos)
            return ctl_usage("%s %s: unexpected argument", a->cmd, argv[optind]);
        a->pos[a->npos++] = argv[optind];
    }
    return ic_check(a);
}

/* ---- running queries ----------------------------------------------------- */

/* One read: the store, the document being built, the output mode. */
struct ic_run {
    struct config *cfg;
    sqlite3 *db;
    int json;
    cJSON *doc;
};

/* Prepare sql, bind the texts (NULL binds NULL), read every row. */
static struct ctl_rows *ic_query(struct ic_run *run, const char *sql, int n,
                                 const char *const *params)
{
    sqlite3_stmt *st = NULL;
    struct ctl_rows *r = NULL;
    char err[512];
    int i;

    if (sqlite3_prepare_v2(run->db, sql, -1, &st, NULL) != SQLITE_OK) {
        ctl_fail("store %s: %s", run->cfg->store.path, sqlite3_errmsg(run->db));
        return NULL;
    }
    for (i = 0; i < n; i++)
        sqlite3_bind_text(st, i + 1, params[i], -1, SQLITE_STATIC);
    if (!(r = ctl_rows_read(st, err, sizeof(err))))
        ctl_fail("store %s: %s", run->cfg->store.path, err);
    sqlite3_finalize(st);
    return r;
}

/* Run one SQL statement with no rows (BEGIN, COMMIT). */
static int ic_exec(struct ic_run *run, const char *sql)
{
    if (sqlite3_exec(run->db, sql, NULL, NULL, NULL) == SQLITE_OK)
        return 0;
    ctl_fail("store %s: %s", run->cfg->store.path, sqlite3_errmsg(run->db));
    return -1;
}

/* Load the config, open the store, begin the read; 0, or -1 after a message. */
static int ic_open(struct ic_run *run, const char *config, int json)
{
    memset(run, 0, sizeof(*run));
    run->json = json;
    if (!(run->cfg = ctl_config(config)) || !(run->db = ctl_store_read(run->cfg)))
        return -1;
    if (json && !(run->doc = cJSON_CreateObject()))
        return ctl_fail("out of memory"), -1;
    return ic_exec(run, "BEGIN");
}

/* Print the JSON document (when --json) and close: the exit status. */
static int ic_close(struct ic_run *run, int status)
{
    if (status == CTL_EXIT_OK && run->db && ic_exec(run, "COMMIT") < 0)
        status = CTL_EXIT_FAIL;
    if (status == CTL_EXIT_OK && run->json && ctl_json_print(run->doc, stdout) < 0)
        status = ctl_fail("out of memory");
    if (fflush(stdout) != 0)
        status = ctl_fail("writing the output failed");
    cJSON_Delete(run->doc);
    sqlite3_close(run->db);
    config_free(run->cfg);
    return status;
}

/* Rows as a table under a title (people), or as doc[key] (programs);
 * rows is freed. 0, or -1. */
static int ic_emit(struct ic_run *run, struct ctl_rows *rows, const char *key,
                   const char *title, const char *empty)
{
    cJSON *a;

    if (!rows)
        return -1;
    if (run->json) {
        a = ctl_rows_json(rows);
        if (!a || !cJSON_AddItemToObject(run->doc, key, a)) {
            cJSON_Delete(a);
            ctl_rows_free(rows);
            return ctl_fail("out of memory"), -1;
        }
    } else {
        if (title)
            printf("\n%s\n", title);
        if (ctl_rows_print(rows, stdout, empty) < 0) {
            ctl_rows_free(rows);
            return ctl_fail("out of memory"), -1;
        }
    }
    ctl_rows_free(rows);
    return 0;
}

/* A whole list command: one query, its rows under key. */
static int ic_list(const char *config, const struct ic_args *a, const char *sql, int n,
                   const char *const *params, const char *key, const char *empty)
{
    struct ic_run run;

    if (ic_open(&run, config, a->json) < 0)
        return ic_close(&run, CTL_EXIT_FAIL);
    if (ic_emit(&run, ic_query(&run, sql, n, params), key, NULL, empty) < 0)
        return ic_close(&run, CTL_EXIT_FAIL);
    return ic_close(&run, CTL_EXIT_OK);
}

/* --help, or a usage error: the exit status; -1 to go on. */
static int ic_start(int argc, char **argv, unsigned allowed, int maxpos, struct ic_args *a,
                    void (*help)(FILE *))
{
    int r;

    memset(a, 0, sizeof(*a));
    a->cmd = argv[0];
    if ((r = ic_parse(argc, argv, allowed, maxpos, a)) >= 0)
        return r;
    if (a->help) {
        help(stdout);
        return CTL_EXIT_OK;
    }
    return -1;
}

static const char *ic_str(const char *s)
{
    return s && *s ? s : NULL;
}

/* ---- events -------------------------------------------------------------- */

void ctl_events_help(FILE *f)
{
    fputs("usage: payhookctl -c CONFIG events [--kind GLOB] [--provider P] [--app APP]\n"
          "           [--status S] [--order ID] [--confirmation C] [--since T] [--until T]\n"
          "           [--limit N] [--json]\n"
          "\n"
          "The newest events first (50 unless --limit), each with what the platform\n"
          "confirmed. --kind matches the kind or provider.kind (globs: 'baidu.*',\n"
          "'refund_*'); --order matches the platform's or the merchant's order id;\n"
          "--confirmation is none, pending, confirmed, mismatch or unconfirmed. --since\n"
          "(inclusive) and --until (exclusive) take YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS]\n"
          "in UTC, or an age: 90m, 36h, 7d.\n",
          f);
}

int ctl_events(int argc, char **argv, const char *config)
{
    static const char sql[] =
        "SELECT s.id, s.received_at, s.provider, s.kind, s.app, s.order_id, "
        "s.merchant_order_id, s.status, s.amount_fen, e.refund_fen, e.verified, e.deliveries, "
        "s.confirmation FROM event_status s JOIN events e ON e.id = s.id "
        "WHERE (?1 IS NULL OR s.kind GLOB ?1 OR s.provider || '.' || s.kind GLOB ?1) "
        "AND (?2 IS NULL OR s.provider = ?2) AND (?3 IS NULL OR s.app = ?3) "
        "AND (?4 IS NULL OR s.status = ?4) "
        "AND (?5 IS NULL OR s.order_id = ?5 OR s.merchant_order_id = ?5) "
        "AND (?6 IS NULL OR s.confirmation = ?6) AND (?7 IS NULL OR s.received_at >= ?7) "
        "AND (?8 IS NULL OR s.received_at < ?8) "
        "ORDER BY s.id DESC LIMIT CAST(?9 AS INTEGER)";
    struct ic_args a;
    const char *p[9];
    int r;

    if ((r = ic_start(argc, argv,
                      O_JSON | O_LIMIT | O_KIND | O_PROVIDER | O_APP | O_STATUS | O_ORDER |
                          O_CONFIRMATION | O_SINCE | O_UNTIL,
                      0, &a, ctl_events_help)) >= 0)
        return r;
    p[0] = a.kind, p[1] = a.provider, p[2] = a.app, p[3] = a.status, p[4] = a.order;
    p[5] = a.confirmation, p[6] = ic_str(a.since), p[7] = ic_str(a.until);
    p[8] = a.limit ? a.limit : IC_LIMIT_DEFAULT;
    return ic_list(config, &a, sql, 9, p, "events", "no events");
}

/* ---- show ---------------------------------------------------------------- */

void ctl_show_help(FILE *f)
{
    fputs("usage: payhookctl -c CONFIG show EVENT_ID [--json]\n"
          "\n"
          "One event: its columns and raw body, its follow-up jobs and every answer\n"
          "the platform gave them, its deliveries and every attempt. An unknown id is\n"
          "an error. Control bytes are shown escaped (\\n, \\xNN); with --json the body\n"
          "is \"body\" when it is UTF-8 text, else \"body_base64\", and \"fields\" is an\n"
          "object.\n",
          f);
}

/* The sections of `show` after the event: key, title, SQL over ?1 = event id. */
static const struct {
    const char *key, *title, *empty, *sql;
} ic_show_parts[] = {
    {"jobs", "follow-up jobs", "none",
     "SELECT id, kind, app, state, attempts, due_at, last_error, outcome, created_at, "
     "last_attempt_at, finished_at FROM jobs "
     "WHERE event_id = CAST(?1 AS INTEGER) AND kind NOT LIKE 'hook.%' ORDER BY id"},
    {"query_results", "query results", "none",
     "SELECT id, job_id, at, endpoint, http_status, platform_code, outcome, detail, "
     "duration_ms, body FROM query_results WHERE job_id IN (SELECT id FROM jobs WHERE "
     "event_id = CAST(?1 AS INTEGER) AND kind NOT LIKE 'hook.%') ORDER BY id"},
    {"deliveries", "deliveries", "none",
     "SELECT * FROM deliveries WHERE event_id = CAST(?1 AS INTEGER) ORDER BY id"},
    {"delivery_attempts", "delivery attempts", "none",
     "SELECT * FROM delivery_attempts WHERE delivery_id IN (SELECT id FROM jobs WHERE "
     "event_id = CAST(?1 AS INTEGER) AND kind LIKE 'hook.%') ORDER BY id"},
};

/* The event itself: a record (people) or doc.event (programs). */
static int ic_show_event(struct ic_run *run, const char *id)
{
    static const char sql[] =
        "SELECT e.id, e.received_at, e.last_received_at, e.provider, e.kind, e.app, "
        "e.verified, e.order_id, e.merchant_order_id, e.amount_fen, e.refund_fen, e.status, "
        "e.deliveries, e.remote_addr, s.confirmation, s.confirmed_at, s.last_query_at, "
        "s.last_query_error, e.dedupe_key, e.answer, e.fields, e.body "
        "FROM events e JOIN event_status s ON s.id = e.id WHERE e.id = CAST(?1 AS INTEGER)";
    struct ctl_rows *r = ic_query(run, sql, 1, &id);
    cJSON *o;

    if (!r)
        return CTL_EXIT_FAIL;
    if (!ctl_rows_count(r)) {
        ctl_rows_free(r);
        return ctl_fail("no event %s", id);
    }
    ctl_rows_json_column(r, "fields");
    if (run->json) {
        o = ctl_rows_json_row(r, 0);
        if (!o || !cJSON_AddItemToObject(run->doc, "event", o)) {
            cJSON_Delete(o);
            ctl_rows_free(r);
            return ctl_fail("out of memory");
        }
    } else {
        printf("event %s\n", id);
        ctl_rows_print_record(r, 0, stdout);
    }
    ctl_rows_free(r);
    return CTL_EXIT_OK;
}

int ctl_show(int argc, char **argv, const char *config)
{
    struct ic_args a;
    struct ic_run run;
    long long id;
    size_t i;
    int r;

    if ((r = ic_start(argc, argv, O_JSON, 1, &a, ctl_show_help)) >= 0)
        return r;
    if (a.npos != 1 || ctl_parse_id(a.pos[0], &id) < 0)
        return ctl_usage("show: give one EVENT_ID, a positive integer%s%s",
                         a.npos ? ", not " : "", a.npos ? a.pos[0] : "");
    if (ic_open(&run, config, a.json) < 0)
        return ic_close(&run, CTL_EXIT_FAIL);
    if ((r = ic_show_event(&run, a.pos[0])) != CTL_EXIT_OK)
        return ic_close(&run, r);
    for (i = 0; i < ARRAY_SIZE(ic_show_parts); i++)
        if (ic_emit(&run, ic_query(&run, ic_show_parts[i].sql, 1, &a.pos[0]),
                    ic_show_parts[i].key, ic_show_parts[i].title, ic_show_parts[i].empty) < 0)
            return ic_close(&run, CTL_EXIT_FAIL);
    return ic_close(&run, CTL_EXIT_OK);
}

/* ---- jobs ---------------------------------------------------------------- */

void ctl_jobs_help(FILE *f)
{
    fputs("usage: payhookctl -c CONFIG jobs [--failed] [--state S] [--kind GLOB]\n"
          "           [--limit N] [--json]\n"
          "\n"
          "Follow-up query jobs, newest first (50 unless --limit). --failed: those that\n"
          "ended without an answer (failed) and those whose last attempt failed and\n"
          "that wait for a retry. --state is queued, running, done or failed.\n",
          f);
}

int ctl_jobs(int argc, char **argv, const char *config)
{
    static const char sql[] =
        "SELECT id, event_id, kind, app, state, attempts, due_at, last_error, outcome, "
        "created_at, finished_at FROM jobs WHERE kind NOT LIKE 'hook.%' "
        "AND (?1 IS NULL OR state = 'failed' OR (state = 'queued' AND attempts > 0)) "
        "AND (?2 IS NULL OR state = ?2) AND (?3 IS NULL OR kind GLOB ?3) "
        "ORDER BY id DESC LIMIT CAST(?4 AS INTEGER)";
    struct ic_args a;
    const char *p[4];
    int r;

    if ((r = ic_start(argc, argv, O_JSON | O_LIMIT | O_FAILED | O_STATE | O_KIND, 0, &a,
                      ctl_jobs_help)) >= 0)
        return r;
    p[0] = a.failed ? "1" : NULL, p[1] = a.state, p[2] = a.kind;
    p[3] = a.limit ? a.limit : IC_LIMIT_DEFAULT;
    return ic_list(config, &a, sql, 4, p, "jobs", "no jobs");
}

/* ---- tokens ---------------------------------------------------------------- */

void ctl_tokens_help(FILE *f)
{
    fputs("usage: payhookctl -c CONFIG tokens [--json]\n"
          "\n"
          "The access tokens payhookd holds (the TP's own as app tp, then each app's):\n"
          "when each expires and whether it is still valid, whether a refresh token is\n"
          "held, when it was last written, and when its next fetch or refresh is due.\n"
          "Never the token text.\n",
          f);
}

int ctl_tokens(int argc, char **argv, const char *config)
{
    static const char sql[] =
        "SELECT t.app, t.expires_at, CASE WHEN t.expires_at IS NULL THEN 'no known expiry' "
        "WHEN t.expires_at <= strftime('%Y-%m-%dT%H:%M:%fZ', 'now') THEN 'expired' "
        "ELSE 'valid' END AS state, "
        "CASE WHEN coalesce(t.refresh_token, '') != '' THEN 'yes' ELSE 'no' END AS refresh_token, "
        "t.updated_at, (SELECT min(j.due_at) FROM jobs j WHERE j.app = t.app "
        "AND j.state = 'queued' AND j.kind IN ('baidu.tp_token', 'baidu.app_token', "
        "'baidu.app_refresh')) AS next_fetch FROM tokens t "
        "ORDER BY t.app != 'tp', t.app";
    struct ic_args a;
    int r;

    if ((r = ic_start(argc, argv, O_JSON, 0, &a, ctl_tokens_help)) >= 0)
        return r;
    return ic_list(config, &a, sql, 0, NULL, "tokens", "no tokens");
}

/* ---- deliveries ---------------------------------------------------------- */

void ctl_deliveries_help(FILE *f)
{
    fputs("usage: payhookctl -c CONFIG deliveries [--failed | --dead] [--hook NAME]\n"
          "           [--state S] [--limit N] [--json]\n"
          "\n"
          "Hook deliveries, newest first (50 unless --limit). --failed: dead ones and\n"
          "those whose last attempt failed and that wait for a retry; --dead: only the\n"
          "dead. --state is queued, running, delivered or dead. A hook that is neither\n"
          "configured nor has deliveries is an error.\n",
          f);
}

/* 1 when name is a configured hook or has deliveries, 0 not, -1 failed. */
static int ic_hook_known(struct ic_run *run, const char *name)
{
    struct ctl_rows *r;
    size_t i;
    int n;

    for (i = 0; i < run->cfg->n_hooks; i++)
        if (strcmp(run->cfg->hooks[i]->name, name) == 0)
            return 1;
    r = ic_query(run, "SELECT 1 FROM jobs WHERE kind = 'hook.' || ?1 LIMIT 1", 1, &name);
    if (!r)
        return -1;
    n = ctl_rows_count(r) > 0;
    ctl_rows_free(r);
    return n;
}

int ctl_deliveries(int argc, char **argv, const char *config)
{
    static const char sql[] =
        "SELECT id, event_id, hook, state, attempts, due_at, last_status, last_error, "
        "created_at, delivered_at FROM deliveries "
        "WHERE (?1 IS NULL OR state = 'dead' OR (?1 = 'failed' AND state = 'queued' AND "
        "attempts > 0)) AND (?2 IS NULL OR hook = ?2) AND (?3 IS NULL OR state = ?3) "
        "ORDER BY id DESC LIMIT CAST(?4 AS INTEGER)";
    struct ic_args a;
    struct ic_run run;
    const char *p[4];
    int r;

    if ((r = ic_start(argc, argv, O_JSON | O_LIMIT | O_FAILED | O_DEAD | O_HOOK | O_STATE, 0,
                      &a, ctl_deliveries_help)) >= 0)
        return r;
    p[0] = a.failed ? "failed" : a.dead ? "dead" : NULL, p[1] = a.hook, p[2] = a.state;
    p[3] = a.limit ? a.limit : IC_LIMIT_DEFAULT;
    if (ic_open(&run, config, a.json) < 0)
        return ic_close(&run, CTL_EXIT_FAIL);
    if (a.hook && (r = ic_hook_known(&run, a.hook)) <= 0)
        return ic_close(&run, r < 0 ? CTL_EXIT_FAIL
                                    : ctl_fail("no hook %s: not in the configuration and no "
                                               "deliveries", a.hook));
    if (ic_emit(&run, ic_query(&run, sql, 4, p), "deliveries", NULL, "no deliveries") < 0)
        return ic_close(&run, CTL_EXIT_FAIL);
    return ic_close(&run, CTL_EXIT_OK);
}

/* ---- hooks (the listing) --------------------------------------------------- */

void ctl_hooks_help(FILE *f)
{
    fputs("usage: payhookctl -c CONFIG hooks [--json]\n"
          "       payhookctl -c CONFIG hooks enable NAME [--json]\n"
          "\n"
          "hooks: each hook, configured or with deliveries: its type, where it sends\n"
          "(the URL without credentials or query), when it sends, whether it is\n"
          "enabled, its deliveries queued, running, dead and delivered, its last\n"
          "delivery and its oldest waiting one.\n"
          "hooks enable: a hook that answered 410 Gone is disabled, across restarts,\n"
          "until this: its waiting deliveries then go out.\n",
          f);
}

/* Where a hook sends: the URL without user info, query or fragment (they may
 * hold credentials), or a command's program. Into out. */
static void ic_hook_target(const struct config_hook *h, char *out, size_t len)
{
    const char *u = h->url, *host, *at, *end;

    if (!u) {
        snprintf(out, len, "%s", h->command && h->command[0] ? h->command[0] : "");
        return;
    }
    host = strstr(u, "://");
    host = host ? host + 3 : u;
    end = host + strcspn(host, "/?#");
    at = memchr(host, '@', (size_t)(end - host));
    if (at)
        snprintf(out, len, "%.*s%s", (int)(host - u), u, at + 1);
    else
        snprintf(out, len, "%s", u);
    out[strcspn(out, "?#")] = '\0';
}

/* The listing's SQL: the configured hooks as a CTE of bound rows. */
static char *ic_hooks_sql(size_t n)
{
    struct buf b = {0};
    size_t i;

    buf_puts(&b, "WITH conf(hook, type, target, \"when\") AS (");
    for (i = 0; i < n; i++)
        buf_printf(&b, "%sSELECT ?%zu, ?%zu, ?%zu, ?%zu", i ? " UNION ALL " : "", 4 * i + 1,
                   4 * i + 2, 4 * i + 3, 4 * i + 4);
    if (!n)
        buf_puts(&b, "SELECT NULL, NULL, NULL, NULL WHERE 0");
    buf_puts(&b,
             "), counts AS (SELECT substr(kind, 6) AS hook, "
             "count(*) FILTER (WHERE state = 'queued') AS queued, "
             "count(*) FILTER (WHERE state = 'running') AS running, "
             "count(*) FILTER (WHERE state = 'failed') AS dead, "
             "count(*) FILTER (WHERE state = 'done') AS delivered, "
             "max(finished_at) FILTER (WHERE state = 'done') AS last_delivered_at, "
             "min(created_at) FILTER (WHERE state IN ('queued', 'running')) AS "
             "oldest_pending_at FROM jobs WHERE kind LIKE 'hook.%' GROUP BY kind), "
             "names AS (SELECT hook FROM conf UNION SELECT hook FROM counts "
             "UNION SELECT hook FROM hook_state) "
             "SELECT n.hook AS name, c.type, c.target, c.\"when\", "
             "CASE WHEN h.hook IS NOT NULL THEN 'disabled' WHEN c.hook IS NOT NULL "
             "THEN 'enabled' ELSE 'not configured' END AS state, "
             "h.reason AS disabled_reason, h.disabled_at, coalesce(k.queued, 0) AS queued, "
             "coalesce(k.running, 0) AS running, coalesce(k.dead, 0) AS dead, "
             "coalesce(k.delivered, 0) AS delivered, k.last_delivered_at, k.oldest_pending_at "
             "FROM names n LEFT JOIN conf c ON c.hook = n.hook "
             "LEFT JOIN counts k ON k.hook = n.hook LEFT JOIN hook_state h ON h.hook = n.hook "
             "ORDER BY c.hook IS NULL, n.hook");
    return buf_steal(&b);
}

int ctl_hooks_list(int argc, char **argv, const char *config)
{
    struct ic_args a;
    struct ic_run run;
    const char **p = NULL;
    char (*targets)[256] = NULL;
    char *sql = NULL;
    size_t i, n;
    int r;

    if ((r = ic_start(argc, argv, O_JSON, 0, &a, ctl_hooks_help)) >= 0)
        return r;
    if (ic_open(&run, config, a.json) < 0)
        return ic_close(&run, CTL_EXIT_FAIL);
    n = run.cfg->n_hooks;
    p = calloc(n * IC_HOOK_COLS + 1, sizeof(*p));
    targets = calloc(n + 1, sizeof(*targets));
    if (!p || !targets || !(sql = ic_hooks_sql(n))) {
        r = ctl_fail("out of memory");
    } else {
        for (i = 0; i < n; i++) {
            const struct config_hook *h = run.cfg->hooks[i];
            ic_hook_target(h, targets[i], sizeof(targets[i]));
            p[4 * i] = h->name, p[4 * i + 1] = h->url ? "http" : "command";
            p[4 * i + 2] = targets[i];
            p[4 * i + 3] = h->when == HOOK_CONFIRMED ? "confirmed" : "received";
        }
        r = ic_emit(&run, ic_query(&run, sql, (int)(n * IC_HOOK_COLS), p), "hooks", NULL,
                    "no hooks: none configured and no deliveries")
                ? CTL_EXIT_FAIL
                : CTL_EXIT_OK;
    }
    free(sql);
    free(targets);
    free(p);
    return ic_close(&run, r);
}

/* ---- stats --------------------------------------------------------------- */

void ctl_stats_help(FILE *f)
{
    fputs("usage: payhookctl -c CONFIG stats [--date YYYY-MM-DD] [--json]\n"
          "\n"
          "One day's verified events (today unless --date; days are UTC, as in the\n"
          "daily_summary view) per app, provider, kind and status: counts, and amounts\n"
          "in fen and yuan; then the backlog: follow-up queries and deliveries waiting,\n"
          "running, failed and dead, the oldest undelivered delivery, and the payments\n"
          "the platform has not confirmed (unconfirmed_payments).\n",
          f);
}

int ctl_stats(int argc, char **argv, const char *config)
{
    static const char summary[] =
        "SELECT day, app, provider, kind, status, events, amount_fen, amount_yuan, "
        "refund_fen, refund_yuan FROM daily_summary WHERE day = ?1 "
        "ORDER BY app, provider, kind, status";
    static const char backlog[] =
        "SELECT count(*) FILTER (WHERE k = 0 AND state = 'queued') AS queries_queued, "
        "count(*) FILTER (WHERE k = 0 AND state = 'running') AS queries_running, "
        "count(*) FILTER (WHERE k = 0 AND state = 'failed') AS queries_failed, "
        "count(*) FILTER (WHERE k = 1 AND state = 'queued') AS deliveries_queued, "
        "count(*) FILTER (WHERE k = 1 AND state = 'running') AS deliveries_running, "
        "count(*) FILTER (WHERE k = 1 AND state = 'failed') AS deliveries_dead, "
        "min(created_at) FILTER (WHERE k = 1 AND state IN ('queued', 'running')) AS "
        "oldest_undelivered_at, (SELECT count(*) FROM unconfirmed_payments) AS "
        "unconfirmed_payments FROM (SELECT kind LIKE 'hook.%' AS k, state, created_at "
        "FROM jobs WHERE state IN ('queued', 'running', 'failed'))";
    struct ic_args a;
    struct ic_run run;
    struct ctl_rows *rows;
    char today[32];
    const char *day;
    cJSON *o;
    int r;

    if ((r = ic_start(argc, argv, O_JSON | O_DATE, 0, &a, ctl_stats_help)) >= 0)
        return r;
    util_iso8601_now(today);
    today[10] = '\0';
    day = a.date ? a.date : today;
    if (ic_open(&run, config, a.json) < 0)
        return ic_close(&run, CTL_EXIT_FAIL);
    if (run.json && !cJSON_AddStringToObject(run.doc, "day", day))
        return ic_close(&run, ctl_fail("out of memory"));
    if (!run.json)
        printf("%s (UTC)\n", day);
    if (ic_emit(&run, ic_query(&run, summary, 1, &day), "summary", NULL, "no events") < 0 ||
        !(rows = ic_query(&run, backlog, 0, NULL)))
        return ic_close(&run, CTL_EXIT_FAIL);
    if (run.json) {
        o = ctl_rows_json_row(rows, 0);
        r = o && cJSON_AddItemToObject(run.doc, "backlog", o) ? CTL_EXIT_OK
                                                               : (cJSON_Delete(o), ctl_fail("out of memory"));
    } else {
        printf("\nbacklog\n");
        ctl_rows_print_record(rows, 0, stdout);
        r = CTL_EXIT_OK;
    }
    ctl_rows_free(rows);
    return ic_close(&run, r);
}
