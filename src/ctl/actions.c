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
#include "ctl/common.h"
#include "ctl/table.h"
#include "intake/control.h"
#include "store/store.h"

#define ACT_OK    CTL_EXIT_OK
#define ACT_FAIL  CTL_EXIT_FAIL
#define ACT_HOOKS_MAX 64 /* hooks one replay without --hook goes to */

int ctl_ask_daemon(const char *db, const char *line, char *answer, size_t len)
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

/* Send one request. 0 with what the daemon did in done (the answer after
 * "ok "), or the exit status after printing why it failed. */
static int act_request(const struct config *cfg, const char *line, char *done, size_t len)
{
    char answer[CONTROL_LINE_MAX];
    int r = ctl_ask_daemon(cfg->store.path, line, answer, sizeof(answer));

    if (r < 0)
        return ctl_fail("cannot talk to payhookd on %s.ctl: %s", cfg->store.path,
                        strerror(errno));
    if (r == 0)
        act_do_here(cfg, line, answer, sizeof(answer));
    if (strncmp(answer, "ok ", 3) == 0) {
        snprintf(done, len, "%s", answer + 3);
        return ACT_OK;
    }
    return ctl_fail("%s", strncmp(answer, "error ", 6) == 0 ? answer + 6 : answer);
}

/* What was done, for people (a line) or programs (o added to out[key]). */
static int act_report(cJSON *out, const char *key, cJSON *o, const char *text)
{
    cJSON *a;

    if (!out) {
        cJSON_Delete(o);
        printf("%s\n", text);
        return 0;
    }
    if (!(a = cJSON_GetObjectItem(out, key)) && !(a = cJSON_AddArrayToObject(out, key))) {
        cJSON_Delete(o);
        return -1;
    }
    return o && cJSON_AddItemToArray(a, o) ? 0 : (cJSON_Delete(o), -1);
}

/* Print the --json document; the exit status r, or a failure when it cannot. */
static int act_json_done(cJSON *out, int r)
{
    if (out && ctl_json_print(out, stdout) < 0)
        r = ctl_fail("out of memory");
    cJSON_Delete(out);
    if (fflush(stdout) != 0)
        r = ctl_fail("writing the output failed");
    return r;
}

/* Parse "[--hook NAME] [--json]" as the command allows; NULL hook when absent.
 * 0, or the usage exit status after a message naming the bad option. */
static int act_options(int argc, char **argv, const char **hook, int *dead, int *json)
{
    static const struct option lo[] = {
        {"hook", required_argument, NULL, 'k'},
        {"dead", no_argument, NULL, 'd'},
        {"json", no_argument, NULL, 'j'},
        {NULL, 0, NULL, 0},
    };
    int c;

    optind = 0; /* 0, not 1: glibc then starts its scan (and permutation) afresh */
    opterr = 0;
    /* permuting (no "+"): options may follow the EVENT_ID */
    while ((c = getopt_long(argc, argv, ":", lo, NULL)) != -1) {
        if (c == 'k' && hook)
            *hook = optarg;
        else if (c == 'j')
            *json = 1;
        else if (c == 'd' && dead)
            *dead = 1;
        else if (c == 'k' || c == 'd') /* known, but not to this command */
            return ctl_usage("%s %s: does not apply to %s", argv[0],
                             c == 'k' ? "--hook" : "--dead", argv[0]);
        else
            return ctl_usage("%s %s: %s", argv[0], argv[optind - 1],
                             c == ':' ? "requires a value" : "unknown option");
    }
    return 0;
}

/* The hooks an event already has deliveries to (read-only). */
static int act_event_hooks(const struct config *cfg, long long id, char names[][128],
                           size_t max, size_t *n)
{
    sqlite3 *h = ctl_store_read(cfg);
    sqlite3_stmt *st = NULL;
    int rc = h ? SQLITE_OK : SQLITE_ERROR;

    *n = 0;
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

/* The replay answer "delivery ID WHAT" of hook as JSON. */
static cJSON *act_replay_json(const char *hook, const char *done)
{
    cJSON *o = cJSON_CreateObject();
    long long id = 0;
    int at = 0;

    if (sscanf(done, "delivery %lld %n", &id, &at) < 1 || !at) {
        cJSON_Delete(o);
        return NULL;
    }
    if (o && (!cJSON_AddStringToObject(o, "hook", hook) ||
              !cJSON_AddItemToObject(o, "delivery_id", cJSON_CreateNumber((double)id)) ||
              !cJSON_AddStringToObject(o, "result", done + at))) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

int ctl_replay(int argc, char **argv, const char *config)
{
    static char names[ACT_HOOKS_MAX][128];
    const char *hook = NULL;
    char line[CONTROL_LINE_MAX], done[CONTROL_LINE_MAX];
    struct config *cfg;
    cJSON *out = NULL;
    long long id;
    size_t n = 0, i;
    int r, json = 0;

    if ((r = act_options(argc, argv, &hook, NULL, &json)) != 0)
        return r;
    if (optind != argc - 1 || ctl_parse_id(argv[optind], &id) < 0)
        return ctl_usage("replay %s: give one EVENT_ID, a positive integer",
                         optind < argc ? argv[optind] : "");
    if (!(cfg = ctl_config(config)))
        return ACT_FAIL;
    if (json && !(out = cJSON_CreateObject()))
        r = ctl_fail("out of memory");
    if (hook) {
        snprintf(names[0], sizeof(names[0]), "%s", hook);
        n = 1;
    } else if (act_event_hooks(cfg, id, names, ACT_HOOKS_MAX, &n) < 0 || !n) {
        r = ctl_fail("event %lld has no deliveries to replay: name a hook with --hook NAME", id);
    }
    /* One hook's refusal (say, gone from the config) does not stop the others. */
    for (i = 0; i < n && (out || !json); i++) {
        snprintf(line, sizeof(line), "replay %lld %.127s", id, names[i]);
        if (act_request(cfg, line, done, sizeof(done)) != ACT_OK)
            r = ACT_FAIL;
        else if (act_report(out, "replayed", out ? act_replay_json(names[i], done) : NULL,
                            done) < 0)
            r = ctl_fail("out of memory");
    }
    config_free(cfg);
    return act_json_done(out, r);
}

int ctl_retry(int argc, char **argv, const char *config)
{
    const char *hook = NULL;
    char line[CONTROL_LINE_MAX], done[CONTROL_LINE_MAX];
    struct config *cfg;
    cJSON *out = NULL;
    long queued = 0;
    int dead = 0, json = 0, r;

    if ((r = act_options(argc, argv, &hook, &dead, &json)) != 0)
        return r;
    if (optind != argc)
        return ctl_usage("retry %s: unexpected argument (retry --dead [--hook NAME])",
                         argv[optind]);
    if (!dead)
        return ctl_usage("retry: --dead is required (only dead deliveries are retried)");
    if (!(cfg = ctl_config(config)))
        return ACT_FAIL;
    snprintf(line, sizeof(line), "retry-dead%s%.200s", hook ? " " : "", hook ? hook : "");
    if ((r = act_request(cfg, line, done, sizeof(done))) == ACT_OK) {
        if (!json)
            printf("%s\n", done);
        else if (sscanf(done, "%ld", &queued) != 1 || !(out = cJSON_CreateObject()) ||
                 !cJSON_AddNumberToObject(out, "queued", (double)queued) ||
                 (hook && !cJSON_AddStringToObject(out, "hook", hook)))
            r = ctl_fail("unexpected answer: %s", done);
    }
    config_free(cfg);
    return act_json_done(out, r);
}

/* A command with one NAME argument, asked as "VERB NAME": the answer
 * printed, or with --json {key: NAME} and what add() puts in. */
static int act_named(int argc, char **argv, const char *config, const char *usage,
                     const char *verb, const char *key, int (*add)(cJSON *out))
{
    char line[CONTROL_LINE_MAX], done[CONTROL_LINE_MAX];
    struct config *cfg;
    cJSON *out = NULL;
    int json = 0, r;

    if ((r = act_options(argc, argv, NULL, NULL, &json)) != 0)
        return r;
    if (optind != argc - 1 || strchr(argv[optind], ' '))
        return ctl_usage("%s", usage);
    if (!(cfg = ctl_config(config)))
        return ACT_FAIL;
    snprintf(line, sizeof(line), "%s %.200s", verb, argv[optind]);
    if ((r = act_request(cfg, line, done, sizeof(done))) == ACT_OK) {
        if (!json)
            printf("%s\n", done);
        else if (!(out = cJSON_CreateObject()) ||
                 !cJSON_AddStringToObject(out, key, argv[optind]) || add(out) < 0)
            r = ctl_fail("out of memory");
    }
    config_free(cfg);
    return act_json_done(out, r);
}

static int act_enabled(cJSON *out)
{
    return cJSON_AddBoolToObject(out, "enabled", 1) ? 0 : -1;
}

int ctl_hooks_enable(int argc, char **argv, const char *config)
{
    return act_named(argc, argv, config, "hooks enable: give one hook NAME", "enable", "hook",
                     act_enabled);
}

int ctl_prune(int argc, char **argv, const char *config)
{
    static const struct option lo[] = {
        {"older-than", required_argument, NULL, 'o'},
        {"json", no_argument, NULL, 'j'},
        {NULL, 0, NULL, 0},
    };
    char line[CONTROL_LINE_MAX], done[CONTROL_LINE_MAX], before[32] = "";
    const char *days = NULL;
    struct config *cfg;
    cJSON *out = NULL;
    long long n;
    long events = 0, results = 0;
    int c, json = 0, r;

    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":", lo, NULL)) != -1) {
        if (c == 'o')
            days = optarg;
        else if (c == 'j')
            json = 1;
        else
            return ctl_usage("prune %s: %s", argv[optind - 1],
                             c == ':' ? "requires a value" : "unknown option");
    }
    if (optind != argc)
        return ctl_usage("prune %s: unexpected argument", argv[optind]);
    if (!days || ctl_parse_id(days, &n) < 0 || n > 36500)
        return ctl_usage("prune --older-than %s: give DAYS, 1 to 36500", days ? days : "");
    if (!(cfg = ctl_config(config)))
        return ACT_FAIL;
    snprintf(line, sizeof(line), "prune %lld", n);
    if ((r = act_request(cfg, line, done, sizeof(done))) == ACT_OK) {
        if (!json)
            printf("%s\n", done);
        else if (sscanf(done, "%ld events pruned, %ld attempt answers deleted (received before %31[^)])",
                        &events, &results, before) != 3 ||
                 !(out = cJSON_CreateObject()) ||
                 !cJSON_AddNumberToObject(out, "events", (double)events) ||
                 !cJSON_AddNumberToObject(out, "attempt_answers", (double)results) ||
                 !cJSON_AddStringToObject(out, "before", before))
            r = ctl_fail("unexpected answer: %s", done);
    }
    config_free(cfg);
    return act_json_done(out, r);
}

static int act_keys_queued(cJSON *out)
{
    return cJSON_AddStringToObject(out, "queued", "baidu.getbindservice") ? 0 : -1;
}

int ctl_keys_refresh(int argc, char **argv, const char *config)
{
    return act_named(argc, argv, config, "keys refresh: give one APP id", "keys-refresh", "app",
                     act_keys_queued);
}
