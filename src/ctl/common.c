/*
 * common.c: shared by payhookctl's commands (see common.h).
 */
#include "ctl/common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/store.h"

#define CTL_BUSY_MS 5000 /* wait this long for a lock held by the daemon's writer */

/* "payhookctl: " + the message + tail, on stderr. */
static void ctl_say(const char *tail, const char *fmt, va_list ap)
{
    fputs("payhookctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs(tail, stderr);
}

int ctl_usage(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    ctl_say("\n(payhookctl --help shows the usage)\n", fmt, ap);
    va_end(ap);
    return CTL_EXIT_USAGE;
}

int ctl_fail(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    ctl_say("\n", fmt, ap);
    va_end(ap);
    return CTL_EXIT_FAIL;
}

struct config *ctl_config(const char *path)
{
    struct config *cfg = NULL;
    char err[1024] = "";

    if (!path) {
        ctl_fail("-c CONFIG is required (it names the store)");
        return NULL;
    }
    if (config_load(path, &cfg, err, sizeof(err)) < 0) {
        ctl_fail("%s", err);
        return NULL;
    }
    return cfg;
}

/* The newest migration this build knows. */
static int ctl_schema_version(void)
{
    int v = 0, i;

    for (i = 0; store_migrations[i].sql; i++)
        v = store_migrations[i].version;
    return v;
}

/* PRAGMA user_version of db, or -1. */
static int ctl_user_version(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    int v = -1;

    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return v;
}

sqlite3 *ctl_store_read(const struct config *cfg)
{
    const char *path = cfg->store.path;
    sqlite3 *db = NULL;
    int v;

    if (access(path, R_OK) < 0) {
        ctl_fail("store %s: %s", path, strerror(errno));
        return NULL;
    }
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        ctl_fail("store %s: %s", path, db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, CTL_BUSY_MS);
    if ((v = ctl_user_version(db)) < 0) {
        ctl_fail("store %s: %s", path, sqlite3_errmsg(db));
    } else if (v != ctl_schema_version()) {
        ctl_fail("store %s: schema version %d, this payhookctl reads version %d%s", path, v,
                 ctl_schema_version(),
                 v < ctl_schema_version() ? " (start this payhookd once: it migrates)" : "");
    } else {
        return db;
    }
    sqlite3_close(db);
    return NULL;
}

int ctl_parse_id(const char *s, long long *id)
{
    char *end = NULL;

    if (!s || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    *id = strtoll(s, &end, 10);
    return errno || *end || *id <= 0 ? -1 : 0;
}
