/*
 * sync.c: durability. With synchronous = full the syncer thread fdatasyncs
 * the WAL once for every batch the writer committed since the last sync,
 * and only then answers the batch's items (their completions run here). A
 * failed fdatasync breaks the store for good (store_break).
 */
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int store_sync_wal_once(const char *wal_path)
{
    int fd = open(wal_path, O_RDONLY | O_CLOEXEC), r;

    if (fd < 0)
        return -errno;
    r = fdatasync(fd) == 0 ? 0 : -errno;
    close(fd);
    return r;
}

/* fdatasync of the WAL file, reopened if SQLite replaced it. 0 or -errno. */
static int store_sync_wal(struct store *s)
{
    struct stat a, b;

    if (s->wal_fd >= 0 && (fstat(s->wal_fd, &a) < 0 || stat(s->wal_path, &b) < 0 ||
                           a.st_ino != b.st_ino || a.st_dev != b.st_dev)) {
        close(s->wal_fd);
        s->wal_fd = -1;
    }
    if (s->wal_fd < 0 && (s->wal_fd = open(s->wal_path, O_RDONLY | O_CLOEXEC)) < 0)
        return -errno;
    return fdatasync(s->wal_fd) == 0 ? 0 : -errno;
}

/*
 * A WAL fdatasync failed. The rows it should have made durable are
 * committed in SQLite and still readable from the page cache, but may never
 * reach the disk -- and Linux reports a writeback error once, so a later
 * fdatasync that succeeds proves nothing about them. Were the store to go
 * on, a redelivery of such a callback would be answered as a duplicate and
 * the platform would stop retrying a callback that a crash then loses. So
 * from the first failure nothing is acknowledged any more (every item
 * fails, /readyz answers 503) and the daemon restarts, rereading the store
 * from what is really on disk (see main.c).
 */
void store_break(struct store *s, int err)
{
    int expected = 0;

    atomic_store(&s->ready, 0);
    if (atomic_compare_exchange_strong(&s->broken, &expected, 2)) {
        snprintf(s->broken_why, sizeof(s->broken_why),
                 "not written: a fdatasync of the WAL failed earlier (%s), nothing is "
                 "acknowledged until payhookd restarts and rereads the store",
                 strerror(err));
        atomic_store(&s->broken, 1); /* the reason is complete */
    }
}

/* The syncer thread: one fdatasync for every batch committed since the last. */
static void *store_syncer(void *arg)
{
    struct store *s = arg;
    struct store_batch *list, *b;
    char why[160];
    int r;

    pthread_mutex_lock(&s->sync_lock);
    for (;;) {
        while (!s->sync_head && !s->sync_stop)
            pthread_cond_wait(&s->sync_cond, &s->sync_lock);
        if (!s->sync_head)
            break;
        list = s->sync_head;
        s->sync_head = s->sync_tail = NULL;
        s->syncing = 1;
        pthread_mutex_unlock(&s->sync_lock);
        r = store_sync_wal(s);
        if (r < 0) {
            snprintf(why, sizeof(why), "committed but not made durable (fdatasync: %s)",
                     strerror(-r));
            store_break(s, -r);
        }
        while ((b = list) != NULL) {
            list = b->next;
            for (struct store_req *q = b->items; r < 0 && q; q = q->next)
                store_fail_item(q, why);
            store_batch_done(s, b->items, b->n, b->t0, r == 0);
            free(b);
        }
        pthread_mutex_lock(&s->sync_lock);
        s->syncing = 0;
        pthread_cond_signal(&s->sync_idle);
    }
    pthread_mutex_unlock(&s->sync_lock);
    return NULL;
}

int store_syncer_start(struct store *s)
{
    if (pthread_create(&s->syncer, NULL, store_syncer, s) != 0)
        return -EAGAIN;
    s->syncer_started = 1;
    return 0;
}

/* Let the syncer make durable (and answer) what it holds, then stop it. */
void store_syncer_stop(struct store *s)
{
    store_thread_stop(s->syncer, &s->syncer_started, &s->sync_stop, &s->sync_lock,
                      &s->sync_cond);
}

int store_sync_push(struct store *s, struct store_req *items, unsigned n, uint64_t t0)
{
    struct store_batch *b = malloc(sizeof(*b));

    if (!b)
        return -ENOMEM;
    b->next = NULL;
    b->items = items;
    b->n = n;
    b->t0 = t0;
    pthread_mutex_lock(&s->sync_lock);
    if (s->sync_tail)
        s->sync_tail->next = b;
    else
        s->sync_head = b;
    s->sync_tail = b;
    pthread_cond_signal(&s->sync_cond);
    pthread_mutex_unlock(&s->sync_lock);
    return 0;
}

/*
 * Wait until the syncer is idle: every committed batch made durable and
 * answered. So each fdatasync covers one transaction, holding everything
 * that arrived during the previous one, instead of many small commits that
 * each write the same index pages to the WAL again (21 transactions became
 * 2 in test_durability). A callback arriving during a sync waits for it,
 * then for its own commit and sync: at most two syncs and one commit, as
 * when every arrival was committed at once but queued for the next sync.
 */
void store_wait_syncer(struct store *s)
{
    if (!s->syncer_started)
        return;
    pthread_mutex_lock(&s->sync_lock);
    while (s->sync_head || s->syncing)
        pthread_cond_wait(&s->sync_idle, &s->sync_lock);
    pthread_mutex_unlock(&s->sync_lock);
}
