/*
 * actions.c: payhookctl replay, retry --dead, hooks enable (see actions.h).
 */
#include "ctl/actions.h"

#include <errno.h>
#include <getopt.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "config.h"
#include "intake/control.h"
#include "store/store.h"

#define ACT_OK    0
#define ACT_FAIL  1
#define ACT_USAGE 2
#define ACT_HOOKS_MAX 64 /* hooks one replay without --hook goes to */

static int act_usage(const char *what)
{
    fprintf(stderr, "payhookctl: %s\n(payhookctl --help shows the usage)\n", what);
    return ACT_USAGE;
}

static struct config *act_config(const char *path)
{
    struct config *cfg = NULL;
    char err[1024] = "";

    if (!path) {
        fprintf(stderr, "payhookctl: -c CONFIG is required (it names the store)\n");
        return NULL;
    }
    if (config_load(path, &cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "payhookctl: %s\n", err);
        return NULL;
    }
    return cfg;
}

/* Ask the running daemon: 1 answered (into answer), 0 no daemon listens, -1 failed. */
static int act_ask_daemon(const char *db, const char *line, char *answer, size_t len)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    ssize_t n;
    size_t got = 0;
    int fd;

    if ((size_t)snprintf(a.sun_path, sizeof(a.sun_path), "%s.ctl", db) >= sizeof(a.sun_path))
        return 0;
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        int e = errno;
        close(fd);
        return e == ENOENT || e == ECONNREFUSED ? 0 : -1;
    }
    if (dprintf(fd, "%s\n", line) < 0) {
        close(fd);
        return -1;
    }
    while (got + 1 < len && (n = read(fd, answer + got, len - 1 - got)) > 0)
        got += (size_t)n;
    close(fd);
    answer[got] = '\0';
    answer[strcspn(answer, "\n")] = '\0';
    return got ? 1 : -1;
}

/* No daemon: open the store ourselves (its lock refuses us if one started). */
static int act_do_here(const struct config *cfg, const char *line, char *answer, size_t len)
{
    struct store_options o = {.path = cfg->store.path,
                              .synchronous_full = 1,
                              .batch_max = cfg->store.batch_max,
                              .queue_max = cfg->store.queue_max,
                              .rejections_keep = cfg->store.rejections_keep};
    struct store *s = NULL;
    char err[1024] = "";

    if (access(cfg->store.path, F_OK) < 0) {
        snprintf(answer, len, "error no store at %.480s", cfg->store.path);
        return 0;
    }
    if (store_open(&o, &s, err, sizeof(err)) < 0) {
        snprintf(answer, len, "error %.480s", err);
        return 0;
    }
    control_do(cfg, s, NULL, line, answer, len);
    store_stop(s);
    store_close(s);
    return 0;
}

/* Send one request; print its answer; the exit status. */
static int act_request(const struct config *cfg, const char *line)
{
    char answer[CONTROL_LINE_MAX];
    int r = act_ask_daemon(cfg->store.path, line, answer, sizeof(answer));

    if (r < 0) {
        fprintf(stderr, "payhookctl: cannot talk to payhookd on %s.ctl: %s\n", cfg->store.path,
                strerror(errno));
        return ACT_FAIL;
    }
    if (r == 0)
        act_do_here(cfg, line, answer, sizeof(answer));
    if (strncmp(answer, "ok ", 3) == 0) {
        printf("%s\n", answer + 3);
        return ACT_OK;
    }
    fprintf(stderr, "payhookctl: %s\n", strncmp(answer, "error ", 6) == 0 ? answer + 6 : answer);
    return ACT_FAIL;
}

/* Parse "[--hook NAME]" plus what the command allows; NULL hook when absent. */
static int act_options(int argc, char **argv, const char **hook, int *dead)
{
    static const struct option lo[] = {
        {"hook", required_argument, NULL, 'k'},
        {"dead", no_argument, NULL, 'd'},
        {NULL, 0, NULL, 0},
    };
    int c;

    optind = 0; /* 0, not 1: glibc then starts its scan (and permutation) afresh */
    opterr = 0;
    /* permuting (no "+"): options may follow the EVENT_ID */
    while ((c = getopt_long(argc, argv, ":", lo, NULL)) != -1) {
        if (c == 'k')
            *hook = optarg;
        else if (c == 'd' && dead)
            *dead = 1;
        else
            return -1;
    }
    return 0;
}

/* The hooks an event already has deliveries to (read-only). */
static int act_event_hooks(const char *db, long long id, char names[][128], size_t max,
                           size_t *n)
{
    sqlite3 *h = NULL;
    sqlite3_stmt *st = NULL;
    int rc;

    *n = 0;
    rc = sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(h, "SELECT hook FROM deliveries WHERE event_id = ?1 ORDER BY 1",
                                -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, id);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW && *n < max)
            snprintf(names[(*n)++], 128, "%s", (const char *)sqlite3_column_text(st, 0));
    }
    sqlite3_finalize(st);
    sqlite3_close(h);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : -1;
}

int ctl_replay(int argc, char **argv, const char *config)
{
    static char names[ACT_HOOKS_MAX][128];
    const char *hook = NULL;
    char line[CONTROL_LINE_MAX], *end = NULL;
    struct config *cfg;
    long long id;
    size_t n = 0, i;
    int r = ACT_OK;

    if (act_options(argc, argv, &hook, NULL) < 0)
        return act_usage("replay: unknown option (replay EVENT_ID [--hook NAME])");
    if (optind != argc - 1 || (id = strtoll(argv[optind], &end, 10)) <= 0 || *end)
        return act_usage("replay: give one EVENT_ID, a positive integer");
    if (!(cfg = act_config(config)))
        return ACT_FAIL;
    if (hook) {
        snprintf(names[0], sizeof(names[0]), "%s", hook);
        n = 1;
    } else if (act_event_hooks(cfg->store.path, id, names, ACT_HOOKS_MAX, &n) < 0 || !n) {
        fprintf(stderr, "payhookctl: event %lld has no deliveries to replay: name a hook with "
                "--hook NAME\n", id);
        r = ACT_FAIL;
    }
    for (i = 0; i < n; i++) {
        snprintf(line, sizeof(line), "replay %lld %s", id, names[i]);
        r = act_request(cfg, line) ? ACT_FAIL : r;
    }
    config_free(cfg);
    return r;
}

int ctl_retry(int argc, char **argv, const char *config)
{
    const char *hook = NULL;
    char line[CONTROL_LINE_MAX];
    struct config *cfg;
    int dead = 0, r;

    if (act_options(argc, argv, &hook, &dead) < 0 || optind != argc)
        return act_usage("retry: unknown argument (retry --dead [--hook NAME])");
    if (!dead)
        return act_usage("retry: --dead is required (only dead deliveries are retried)");
    if (!(cfg = act_config(config)))
        return ACT_FAIL;
    snprintf(line, sizeof(line), "retry-dead%s%.200s", hook ? " " : "", hook ? hook : "");
    r = act_request(cfg, line);
    config_free(cfg);
    return r;
}

int ctl_hooks_enable(int argc, char **argv, const char *config)
{
    char line[CONTROL_LINE_MAX];
    struct config *cfg;
    int r;

    if (argc != 2 || strchr(argv[1], ' '))
        return act_usage("hooks enable: give one hook NAME");
    if (!(cfg = act_config(config)))
        return ACT_FAIL;
    snprintf(line, sizeof(line), "enable %.200s", argv[1]);
    r = act_request(cfg, line);
    config_free(cfg);
    return r;
}
