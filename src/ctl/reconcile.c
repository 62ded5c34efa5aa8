/*
 * reconcile.c: payhookctl reconcile. A sweep runs in the daemon (its queue,
 * its one writer): --app asks it over the control socket and waits, then
 * prints the day's report from the store; --report only prints it.
 */
#include "ctl/reconcile.h"

#include <getopt.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "ctl/actions.h"
#include "ctl/common.h"
#include "ctl/table.h"
#include "intake/control.h"

/* The day's sweeps, and the findings that need a look (not matched). */
static const char rc_days_sql[] =
    "SELECT app, day, state, platform_count, stored_count, missing, mismatched, unknown,"
    " missing_yuan, platform_yuan, finished_at FROM reconciliation"
    " WHERE (?1 IS NULL OR app = ?1) AND day = ?2 ORDER BY app";
static const char rc_findings_sql[] =
    "SELECT app, finding, order_id, merchant_order_id, event_id, amount_fen, detail"
    " FROM reconciliation_items WHERE (?1 IS NULL OR app = ?1) AND day = ?2"
    " AND finding <> 'matched' ORDER BY app, id";

/* Rows of sql for (app, day), or NULL after printing why. */
static struct ctl_rows *rc_rows(sqlite3 *db, const char *sql, const char *app, const char *day)
{
    sqlite3_stmt *st = NULL;
    struct ctl_rows *rows = NULL;
    char err[256];

    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        ctl_fail("the store: %s", sqlite3_errmsg(db));
        return NULL;
    }
    if (app)
        sqlite3_bind_text(st, 1, app, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, day, -1, SQLITE_STATIC);
    if (!(rows = ctl_rows_read(st, err, sizeof(err))))
        ctl_fail("the store: %s", err);
    sqlite3_finalize(st);
    return rows;
}

/* Print the report of day (one app, or all with app NULL). */
static int rc_report(const struct config *cfg, const char *app, const char *day, int json)
{
    sqlite3 *db = ctl_store_read(cfg);
    struct ctl_rows *days = NULL, *found = NULL;
    cJSON *out = NULL;
    int r = CTL_EXIT_FAIL;

    if (!db)
        return CTL_EXIT_FAIL;
    if (!(days = rc_rows(db, rc_days_sql, app, day)) ||
        !(found = rc_rows(db, rc_findings_sql, app, day)))
        goto out;
    if (json) {
        out = cJSON_CreateObject();
        if (!out || !cJSON_AddItemToObject(out, "reconciliations", ctl_rows_json(days)) ||
            !cJSON_AddItemToObject(out, "findings", ctl_rows_json(found)) ||
            ctl_json_print(out, stdout) < 0) {
            ctl_fail("out of memory");
            goto out;
        }
    } else if (ctl_rows_print(days, stdout, "no sweep of that day") < 0 ||
               (ctl_rows_count(found) &&
                (printf("\n") < 0 || ctl_rows_print(found, stdout, "") < 0))) {
        goto out;
    }
    r = ctl_rows_count(days) ? CTL_EXIT_OK : CTL_EXIT_FAIL;
out:
    cJSON_Delete(out);
    ctl_rows_free(days);
    ctl_rows_free(found);
    sqlite3_close(db);
    return r;
}

/* The app id the store names an app by, for a config NAME or app id (else
 * as given). */
static const char *rc_app_id(const struct config *cfg, const char *app)
{
    const struct config_baidu_app *b = config_baidu_app_by_id(cfg, app);

    return b ? config_baidu_app_id(b) : app;
}

/* How long payhookctl waits for a sweep it asked for, and how often it
 * asks the daemon how the sweep's job is doing. */
#define RC_WAIT_MS (30 * 60 * 1000)
#define RC_POLL_MS 200

/* Ask the daemon: -1 when it answered "ok ..." (into answer), else the
 * exit status, after saying why. */
static int rc_ask(const struct config *cfg, const char *line, char *answer, size_t len)
{
    int r = ctl_ask_daemon(cfg->store.path, line, answer, len);

    if (r == 0)
        return ctl_fail("no payhookd holds the store %s: a sweep runs in the daemon (its "
                        "queue and its writer); start it, then ask again", cfg->store.path);
    if (r < 0)
        return ctl_fail("cannot talk to payhookd on %s.ctl", cfg->store.path);
    if (strncmp(answer, "ok ", 3) != 0)
        return ctl_fail("%s", strncmp(answer, "error ", 6) == 0 ? answer + 6 : answer);
    return -1;
}

/* Wait for sweep job id to end: CTL_EXIT_OK when it is done. */
static int rc_wait(const struct config *cfg, long long id)
{
    struct timespec ts = {0, RC_POLL_MS * 1000000L};
    char line[64], answer[CONTROL_LINE_MAX], state[16];
    long waited;
    int n;

    snprintf(line, sizeof(line), "job %lld", id);
    for (waited = 0; waited < RC_WAIT_MS; waited += RC_POLL_MS) {
        nanosleep(&ts, NULL);
        if (ctl_ask_daemon(cfg->store.path, line, answer, sizeof(answer)) != 1)
            return ctl_fail("payhookd stopped while the sweep (job %lld) ran: it resumes at "
                            "its page when payhookd starts again; see reconcile --report", id);
        if (sscanf(answer, "ok %15s %n", state, &n) != 1)
            return ctl_fail("%s", strncmp(answer, "error ", 6) == 0 ? answer + 6 : answer);
        if (strcmp(state, "done") == 0)
            return CTL_EXIT_OK;
        if (strcmp(state, "failed") == 0)
            return ctl_fail("the sweep (job %lld) failed: %s", id, answer + n);
    }
    return ctl_fail("the sweep (job %lld) is still %s after %d minutes: it goes on; see "
                    "reconcile --report later", id, state, RC_WAIT_MS / 60000);
}

/* Ask the daemon for a sweep of (app, day) and wait for it. */
static int rc_sweep(const struct config *cfg, const char *app, const char *day)
{
    char line[CONTROL_LINE_MAX], answer[CONTROL_LINE_MAX];
    long long id;
    int r;

    snprintf(line, sizeof(line), "reconcile %.200s %.16s", app, day);
    if ((r = rc_ask(cfg, line, answer, sizeof(answer))) != -1)
        return r;
    if (sscanf(answer, "ok queued job %lld", &id) != 1)
        return ctl_fail("unexpected answer: %s", answer);
    return rc_wait(cfg, id);
}

void ctl_reconcile_help(FILE *f)
{
    fputs("usage: payhookctl -c CONFIG reconcile --app NAME --date YYYY-MM-DD [--json]\n"
          "       payhookctl -c CONFIG reconcile --report --date YYYY-MM-DD [--app NAME] "
          "[--json]\n"
          "The first asks the running payhookd to sweep the platform's order list of that\n"
          "day now (through its queue), waits for the sweep and prints the day's report;\n"
          "with no daemon on the store it fails (exit 1). --report prints the report of\n"
          "the last sweep of each app (or one app) for the day: counts, then the findings\n"
          "that are not matched (missing: synthesised from the platform's list; mismatch;\n"
          "unknown: stored but not listed).\n",
          f);
}

int ctl_reconcile(int argc, char **argv, const char *config)
{
    static const struct option lo[] = {
        {"app", required_argument, NULL, 'a'}, {"date", required_argument, NULL, 'd'},
        {"report", no_argument, NULL, 'r'},    {"json", no_argument, NULL, 'j'},
        {NULL, 0, NULL, 0},
    };
    const char *app = NULL, *day = NULL;
    int c, report = 0, json = 0, r;
    struct config *cfg;

    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":", lo, NULL)) != -1) {
        if (c == 'a')
            app = optarg;
        else if (c == 'd')
            day = optarg;
        else if (c == 'r')
            report = 1;
        else if (c == 'j')
            json = 1;
        else
            return ctl_usage("reconcile: %s: unknown option or missing value",
                             argv[optind - 1]);
    }
    if (optind != argc || !day || (!report && !app))
        return ctl_usage("reconcile: give --app NAME --date YYYY-MM-DD, or --report --date D");
    if (!(cfg = ctl_config(config)))
        return CTL_EXIT_FAIL;
    r = report ? CTL_EXIT_OK : rc_sweep(cfg, app, day);
    if (r == CTL_EXIT_OK)
        r = rc_report(cfg, rc_app_id(cfg, app), day, json);
    config_free(cfg);
    return r;
}
