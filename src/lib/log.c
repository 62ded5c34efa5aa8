/*
 * log.c: journald or stderr logging with structured fields.
 */
#include "lib/log.h"
#include "lib/util.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>
#include <unistd.h>

#define LOG_MAX_FIELDS 8
#define LOG_LINE_MAX   1024

static int log_journal;
static const char *log_ident = "payhookd";
static atomic_int log_level = LOG_INFO;

/* True when stderr is connected to the journal ($JOURNAL_STREAM = dev:ino). */
static int log_stderr_is_journal(void)
{
    const char *e = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;

    if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
        return 0;
    if (fstat(STDERR_FILENO, &st) < 0)
        return 0;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

/* Choose the sink. */
void log_init(const char *ident)
{
    if (ident)
        log_ident = ident;
    log_journal = log_stderr_is_journal();
}

/* Set the minimum priority. */
void log_set_level(int prio)
{
    atomic_store(&log_level, prio);
}

/* Parse a level name. */
int log_level_parse(const char *s)
{
    static const struct {
        const char *name;
        int prio;
    } levels[] = {{"error", LOG_ERR},
                  {"warning", LOG_WARNING},
                  {"notice", LOG_NOTICE},
                  {"info", LOG_INFO},
                  {"debug", LOG_DEBUG}};
    size_t i;

    for (i = 0; i < sizeof(levels) / sizeof(levels[0]); i++)
        if (strcasecmp(s, levels[i].name) == 0)
            return levels[i].prio;
    return -1;
}

/* A whole line made safe (util_escape): a newline in a client's value, an
 * escape sequence, cannot forge a log line or drive a terminal. */
static void log_clean(char *s, size_t size)
{
    char clean[LOG_LINE_MAX * 2];

    util_escape(s, strlen(s), UTIL_ESC_KEEP_HIGH, clean,
                size < sizeof(clean) ? size : sizeof(clean));
    memcpy(s, clean, strlen(clean) + 1);
}

int log_limit_pass(struct log_limit *l, unsigned burst, unsigned long long window_ns,
                   unsigned *dropped)
{
    unsigned long long now = util_now_ns(), start = atomic_load(&l->start);

    if (now - start > window_ns && atomic_compare_exchange_strong(&l->start, &start, now))
        atomic_store(&l->in_window, 0);
    if (atomic_fetch_add(&l->in_window, 1) >= burst) {
        atomic_fetch_add(&l->dropped, 1);
        return 0;
    }
    *dropped = atomic_exchange(&l->dropped, 0);
    return 1;
}

/* Send one record with its fields to journald. */
static void log_to_journal(int prio, const char *const *fields, const char *msg)
{
    char store[LOG_MAX_FIELDS + 3][LOG_LINE_MAX];
    struct iovec iov[LOG_MAX_FIELDS + 3];
    int n = 0, i;

    snprintf(store[n], LOG_LINE_MAX, "MESSAGE=%s", msg);
    n++;
    snprintf(store[n], LOG_LINE_MAX, "PRIORITY=%d", prio);
    n++;
    snprintf(store[n], LOG_LINE_MAX, "SYSLOG_IDENTIFIER=%s", log_ident);
    n++;
    for (i = 0; fields && fields[i] && fields[i + 1] && n < LOG_MAX_FIELDS + 3; i += 2) {
        snprintf(store[n], LOG_LINE_MAX, "PAYHOOK_%s=%s", fields[i], fields[i + 1]);
        log_clean(store[n], sizeof(store[n]));
        n++;
    }
    for (i = 0; i < n; i++) {
        iov[i].iov_base = store[i];
        iov[i].iov_len = strlen(store[i]);
    }
    sd_journal_sendv(iov, n);
}

/* Write one line with its fields to stderr (one write, so lines never interleave). */
static void log_to_stderr(int prio, const char *const *fields, const char *msg)
{
    static const char *names[] = {"emerg",   "alert",  "crit", "error",
                                  "warning", "notice", "info", "debug"};
    char line[LOG_LINE_MAX * 2];
    size_t off;
    int i;

    off = (size_t)snprintf(line, sizeof(line), "%s: %s: %s", log_ident, names[prio & 7],
                           msg);
    for (i = 0; fields && fields[i] && fields[i + 1] && off < sizeof(line); i += 2)
        off += (size_t)snprintf(line + off, sizeof(line) - off, " %s=%s", fields[i],
                                fields[i + 1]);
    if (off >= sizeof(line))
        off = sizeof(line) - 1;
    line[off] = '\0';
    log_clean(line, sizeof(line));
    off = strlen(line);
    if (off >= sizeof(line) - 1)
        off = sizeof(line) - 2;
    line[off++] = '\n';
    if (write(STDERR_FILENO, line, off) < 0)
        return;
}

/* Log one line. */
void log_msg(int prio, const char *const *fields, const char *fmt, ...)
{
    char msg[LOG_LINE_MAX];
    va_list ap;

    if (prio > atomic_load(&log_level))
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log_clean(msg, sizeof(msg));
    if (log_journal)
        log_to_journal(prio, fields, msg);
    else
        log_to_stderr(prio, fields, msg);
}
