/*
 * read.c: read-only connections for lookups from other threads (HTTP
 * handlers, the job scheduler), a small pool of them, so a reader never
 * takes the writer's connection or its lock. Each reader prepares a
 * statement the first time it is asked for it and keeps it; the files that
 * own the SQL pass their string constants, which are the cache's keys.
 */
#include "store/store_int.h"

#include <errno.h>
#include <stdlib.h>

#define READER_STMTS 32

struct store_reader {
    sqlite3 *db;
    size_t n;
    const char *sql[READER_STMTS];
    sqlite3_stmt *st[READER_STMTS];
};

/* Close a reader and its statements; NULL-safe. */
static void store_reader_free(struct store_reader *r)
{
    size_t i;

    if (!r)
        return;
    for (i = 0; i < r->n; i++)
        sqlite3_finalize(r->st[i]);
    sqlite3_close(r->db);
    free(r);
}

/* A new read-only connection, or NULL. */
static struct store_reader *store_reader_open(struct store *s)
{
    struct store_reader *r = calloc(1, sizeof(*r));

    if (r &&
        sqlite3_open_v2(s->o.path, &r->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX,
                        NULL) == SQLITE_OK &&
        sqlite3_busy_timeout(r->db, 5000) == SQLITE_OK)
        return r;
    store_reader_free(r);
    return NULL;
}

struct store_reader *store_reader_get(struct store *s)
{
    struct store_reader *r = NULL;

    pthread_mutex_lock(&s->read_lock);
    while (!s->n_idle && s->n_readers >= STORE_READERS)
        pthread_cond_wait(&s->read_cond, &s->read_lock);
    if (s->n_idle) {
        r = s->idle[--s->n_idle];
        pthread_mutex_unlock(&s->read_lock);
        return r;
    }
    s->n_readers++;
    pthread_mutex_unlock(&s->read_lock);
    if ((r = store_reader_open(s)) != NULL)
        return r;
    pthread_mutex_lock(&s->read_lock);
    s->n_readers--;
    pthread_cond_signal(&s->read_cond);
    pthread_mutex_unlock(&s->read_lock);
    return NULL;
}

void store_reader_put(struct store *s, struct store_reader *r)
{
    pthread_mutex_lock(&s->read_lock);
    s->idle[s->n_idle++] = r;
    pthread_cond_signal(&s->read_cond);
    pthread_mutex_unlock(&s->read_lock);
}

sqlite3_stmt *store_reader_stmt(struct store_reader *r, const char *sql)
{
    size_t i;

    for (i = 0; i < r->n; i++)
        if (r->sql[i] == sql)
            return r->st[i];
    if (r->n == READER_STMTS ||
        sqlite3_prepare_v3(r->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &r->st[r->n],
                           NULL) != SQLITE_OK)
        return NULL;
    r->sql[r->n] = sql;
    return r->st[r->n++];
}

void store_readers_close(struct store *s)
{
    while (s->n_idle > 0)
        store_reader_free(s->idle[--s->n_idle]);
}

int store_read_rows(struct store *s, const char *sql, const char *a1, const char *a2,
                   int (*row)(sqlite3_stmt *st, void *data), void *data)
{
    struct store_reader *r = store_reader_get(s);
    sqlite3_stmt *st;
    int rc = SQLITE_ERROR, ret = 0;

    if (!r)
        return -EIO;
    if ((st = store_reader_stmt(r, sql)) != NULL) {
        if (a1)
            sqlite3_bind_text(st, 1, a1, -1, SQLITE_STATIC);
        if (a2)
            sqlite3_bind_text(st, 2, a2, -1, SQLITE_STATIC);
        while (ret == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW)
            ret = row(st, data);
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
    store_reader_put(s, r);
    if (ret)
        return ret;
    return rc == SQLITE_DONE ? 0 : -EIO;
}
