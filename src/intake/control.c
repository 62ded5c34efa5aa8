/*
 * control.c: the control socket (see control.h). One thread accepts and
 * serves one short request at a time: each is one transaction on the
 * writer, so there is nothing to gain from serving them in parallel, and a
 * client that sends nothing is cut off after a few seconds.
 */
#include "intake/control.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/util.h"
#include "jobs/reconcile.h"
#include "providers/baidu/learned.h"

#define CONTROL_IO_MS 5000 /* a client has this long to send its line */

struct control {
    struct runtime_cell *rt;
    struct store *s;
    struct jobs *j;
    int fd, stop_pipe[2], started;
    pthread_t thread;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

/* The hook named in a request, from the current config. */
static const struct config_hook *ctl_hook(const struct config *cfg, const char *name)
{
    for (size_t i = 0; name && i < cfg->n_hooks; i++)
        if (strcmp(cfg->hooks[i]->name, name) == 0)
            return cfg->hooks[i];
    return NULL;
}

static void ctl_replay(const struct config *cfg, struct store *s, struct jobs *j, char *args,
                       char *out, size_t len)
{
    char *save = NULL, *id_text = strtok_r(args, " ", &save), *name = strtok_r(NULL, " ", &save);
    const struct config_hook *h = ctl_hook(cfg, name);
    struct store_replay rep = {0};
    char *end = NULL;
    long long id = id_text ? strtoll(id_text, &end, 10) : 0;
    int r;

    if (!id_text || !end || *end || id <= 0 || !name || strtok_r(NULL, " ", &save)) {
        snprintf(out, len, "error usage: replay EVENT_ID HOOK");
        return;
    }
    if (!h) {
        snprintf(out, len, "error no hook %.64s in the configuration", name);
        return;
    }
    if ((r = store_delivery_replay(s, id, h->kind, &rep)) == -ENOENT) {
        snprintf(out, len, "error no event %lld", id);
        return;
    }
    if (r == -ESTALE) {
        snprintf(out, len, "error event %lld was pruned: its body is gone, it cannot be sent "
                 "again", id);
        return;
    }
    if (r < 0) {
        snprintf(out, len, "error the store refused the replay: %s", strerror(-r));
        return;
    }
    jobs_poke(j);
    log_notice("operator: event %lld replayed to hook %s (delivery %" PRId64 ", %s)", id,
               h->name, rep.delivery_id, rep.what);
    snprintf(out, len, "ok delivery %" PRId64 " %s", rep.delivery_id, rep.what);
}

static void ctl_retry(const struct config *cfg, struct store *s, struct jobs *j, char *args,
                      char *out, size_t len)
{
    const struct config_hook *h = NULL;
    long n = 0;
    int r;

    if (args && *args && !(h = ctl_hook(cfg, args))) {
        snprintf(out, len, "error no hook %.64s in the configuration", args);
        return;
    }
    if ((r = store_deliveries_retry_dead(s, h ? h->kind : NULL, &n)) < 0) {
        snprintf(out, len, "error the store refused the retry: %s", strerror(-r));
        return;
    }
    jobs_poke(j);
    log_notice("operator: %ld dead deliveries%s%s queued again", n, h ? " to hook " : "",
               h ? h->name : "");
    snprintf(out, len, "ok %ld queued again", n);
}

static void ctl_enable(const struct config *cfg, struct store *s, struct jobs *j, char *args,
                       char *out, size_t len)
{
    const struct config_hook *h = ctl_hook(cfg, args);
    int r;

    if (!h) {
        snprintf(out, len, "error no hook %.64s in the configuration", args ? args : "");
        return;
    }
    r = j ? jobs_hook_enable(j, h->name) : store_hook_set_disabled(s, h->name, NULL);
    if (r < 0)
        snprintf(out, len, "error the store refused it: %s", strerror(-r));
    else
        snprintf(out, len, "ok hook %s enabled", h->name);
}

/* An app id as Baidu gives them (digits; letters, '-' and '_' allowed). */
static int ctl_app_id_ok(const char *id)
{
    size_t n = id ? strlen(id) : 0;

    return n > 0 && n <= 64 &&
           strspn(id, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_") == n;
}

/* keys-refresh APP: ask getbindservice for the app's keys again now. */
static void ctl_keys_refresh(const struct config *cfg, struct store *s, struct jobs *j,
                             const char *args, char *out, size_t len)
{
    int r;

    if (!ctl_app_id_ok(args)) {
        snprintf(out, len, "error usage: keys refresh APP (the app id, digits)");
        return;
    }
    if (!cfg->tp.enabled) {
        snprintf(out, len, "error [baidu.tp] is not configured: only a TP learns app keys");
        return;
    }
    if ((r = store_job_schedule_now(s, args, &baidu_keys_job)) == -ENOKEY) {
        snprintf(out, len, "error app %s has no token in tokens (no AUTHORIZED push "
                 "exchanged yet?): getbindservice needs it", args);
        return;
    }
    if (r < 0) {
        snprintf(out, len, "error the store refused it: %s", strerror(-r));
        return;
    }
    jobs_poke(j);
    log_notice("operator: keys of app %s asked for again (getbindservice queued)", args);
    snprintf(out, len, "ok getbindservice queued for app %s", args);
}

/* reconcile APP DAY: a sweep now, through the queue. Answered once it is
 * queued: the sweep may take minutes, and this one thread serves every
 * operator (and is joined at SIGTERM); payhookctl waits with `job ID`. */
static void ctl_reconcile(const struct config *cfg, struct store *s, struct jobs *j, char *args,
                          char *out, size_t len)
{
    char *save = NULL, *app = strtok_r(args, " ", &save), *day = strtok_r(NULL, " ", &save);
    char err[200];
    int64_t id;

    if (!app || !day || strtok_r(NULL, " ", &save)) {
        snprintf(out, len, "error usage: reconcile APP YYYY-MM-DD");
        return;
    }
    if (!j) {
        snprintf(out, len, "error no payhookd runs on this store: a sweep runs in the daemon");
        return;
    }
    if (reconcile_start(s, cfg, app, day, &id, err, sizeof(err)) < 0) {
        snprintf(out, len, "error %s", err);
        return;
    }
    jobs_poke(j);
    log_notice("operator: sweep of %s for %s queued (job %lld)", app, day, (long long)id);
    snprintf(out, len, "ok queued job %lld", (long long)id);
}

/* job ID: the job's state and last error ("ok STATE ERROR"). */
static void ctl_job(struct store *s, const char *args, char *out, size_t len)
{
    char state[16], error[300] = "";
    long long id;
    char tail;
    int r;

    if (!args || sscanf(args, "%lld%c", &id, &tail) != 1 || id <= 0) {
        snprintf(out, len, "error usage: job ID");
        return;
    }
    if ((r = store_job_state(s, id, state, sizeof(state), error, sizeof(error))) < 0)
        snprintf(out, len, "error the store: %s", strerror(-r));
    else if (r == 0)
        snprintf(out, len, "error no job %lld", id);
    else
        snprintf(out, len, "ok %s %s", state, error);
}

/* prune DAYS: compact the events older than DAYS with nothing left to do. */
static void ctl_prune(struct store *s, const char *args, char *out, size_t len)
{
    struct store_pruned p;
    char *end = NULL, before[32];
    long days = args ? strtol(args, &end, 10) : 0;
    int r;

    if (!args || !end || *end || days < 1 || days > 36500) {
        snprintf(out, len, "error usage: prune DAYS (1 to 36500)");
        return;
    }
    util_iso8601_in(-(int64_t)days * 86400 * 1000, before);
    if ((r = store_prune(s, before, &p)) < 0) {
        snprintf(out, len, "error the store refused the prune: %s", strerror(-r));
        return;
    }
    log_notice("operator: pruned %ld events received before %s (%ld attempt answers deleted)",
               p.events, before, p.results);
    snprintf(out, len, "ok %ld events pruned, %ld attempt answers deleted (received before %s)",
             p.events, p.results, before);
}

void control_do(const struct config *cfg, struct store *s, struct jobs *j, const char *line,
                char *out, size_t len)
{
    char buf[CONTROL_LINE_MAX], *args;

    snprintf(buf, sizeof(buf), "%s", line);
    args = strchr(buf, ' ');
    if (args)
        *args++ = '\0';
    if (strcmp(buf, "replay") == 0)
        ctl_replay(cfg, s, j, args, out, len);
    else if (strcmp(buf, "retry-dead") == 0)
        ctl_retry(cfg, s, j, args, out, len);
    else if (strcmp(buf, "enable") == 0)
        ctl_enable(cfg, s, j, args, out, len);
    else if (strcmp(buf, "prune") == 0)
        ctl_prune(s, args, out, len);
    else if (strcmp(buf, "reconcile") == 0)
        ctl_reconcile(cfg, s, j, args, out, len);
    else if (strcmp(buf, "job") == 0)
        ctl_job(s, args, out, len);
    else if (strcmp(buf, "keys-refresh") == 0)
        ctl_keys_refresh(cfg, s, j, args, out, len);
    else
        snprintf(out, len, "error unknown request %.32s", buf);
}

/* Read one line (bounded, within CONTROL_IO_MS): its length, or -1. */
static ssize_t ctl_read_line(int fd, char *line, size_t max)
{
    size_t n = 0;

    while (n + 1 < max) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        ssize_t k;
        if (poll(&p, 1, CONTROL_IO_MS) <= 0 || (k = read(fd, line + n, max - 1 - n)) <= 0)
            return -1;
        n += (size_t)k;
        if (memchr(line, '\n', n)) {
            *(char *)memchr(line, '\n', n) = '\0';
            return (ssize_t)strlen(line);
        }
    }
    return -1; /* longer than a request can be */
}

static void ctl_serve(struct control *c, int fd)
{
    char line[CONTROL_LINE_MAX], answer[CONTROL_LINE_MAX];
    struct runtime *rt;

    if (ctl_read_line(fd, line, sizeof(line)) < 0) {
        snprintf(answer, sizeof(answer), "error send one request line of at most %d bytes\n",
                 CONTROL_LINE_MAX - 1);
    } else {
        rt = runtime_acquire(c->rt);
        control_do(rt->cfg, c->s, c->j, line, answer, sizeof(answer) - 1);
        runtime_release(rt);
        strcat(answer, "\n");
    }
    if (write(fd, answer, strlen(answer)) < 0)
        log_info("control: the client left before its answer");
}

static void *ctl_main(void *arg)
{
    struct control *c = arg;

    for (;;) {
        struct pollfd p[2] = {{.fd = c->fd, .events = POLLIN},
                              {.fd = c->stop_pipe[0], .events = POLLIN}};
        int fd;
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            break;
        if (p[1].revents)
            break;
        if (!(p[0].revents & POLLIN) || (fd = accept4(c->fd, NULL, NULL, SOCK_CLOEXEC)) < 0)
            continue;
        ctl_serve(c, fd);
        close(fd);
    }
    return NULL;
}

/* Bind the socket file, owner-only. */
static int ctl_listen(struct control *c, char *err, size_t errlen)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    mode_t old;
    int r;

    memcpy(a.sun_path, c->path, sizeof(a.sun_path));
    if ((c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
        return -errno;
    unlink(c->path); /* a killed daemon's; we hold the store's lock */
    old = umask(0077);
    r = bind(c->fd, (struct sockaddr *)&a, sizeof(a));
    umask(old);
    if (r < 0 || chmod(c->path, 0600) < 0 || listen(c->fd, 16) < 0) {
        r = -errno;
        snprintf(err, errlen, "cannot listen on the control socket %s: %s", c->path,
                 strerror(-r));
        return r;
    }
    return 0;
}

int control_start(struct runtime_cell *rt, struct store *s, struct jobs *j, const char *db_path,
                  struct control **out, char *err, size_t errlen)
{
    struct control *c = calloc(1, sizeof(*c));
    int r;

    if (!c)
        return -ENOMEM;
    *c = (struct control){.rt = rt, .s = s, .j = j, .fd = -1, .stop_pipe = {-1, -1}};
    if ((size_t)snprintf(c->path, sizeof(c->path), "%s.ctl", db_path) >= sizeof(c->path)) {
        snprintf(err, errlen, "the control socket path %s.ctl is longer than %zu bytes: give "
                 "[store] path a shorter name", db_path, sizeof(c->path) - 1);
        free(c);
        return -ENAMETOOLONG;
    }
    if ((r = ctl_listen(c, err, errlen)) < 0) {
        control_stop(c);
        return r;
    }
    if (pipe2(c->stop_pipe, O_CLOEXEC) < 0 || (errno = pthread_create(&c->thread, NULL, ctl_main, c))) {
        r = -errno;
        snprintf(err, errlen, "cannot start the control socket: %s", strerror(-r));
        control_stop(c);
        return r;
    }
    c->started = 1;
    *out = c;
    return 0;
}

struct control *control_stop(struct control *c)
{
    if (!c)
        return NULL;
    if (c->started) {
        if (write(c->stop_pipe[1], "x", 1) < 0)
            log_err("control: cannot stop the socket thread");
        pthread_join(c->thread, NULL);
    }
    if (c->fd >= 0) {
        close(c->fd);
        unlink(c->path);
    }
    for (int i = 0; i < 2; i++)
        if (c->stop_pipe[i] >= 0)
            close(c->stop_pipe[i]);
    free(c);
    return NULL;
}
