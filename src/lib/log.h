/*
 * log.h: the daemon's log: journald with structured fields when running
 * under systemd, plain lines on stderr otherwise. Only the edges (http,
 * daemon, main) log; lower modules return reasons instead.
 */
#ifndef PAYHOOKD_LOG_H
#define PAYHOOKD_LOG_H

#include <syslog.h>

/* Choose the sink: journald when stderr is the journal stream
 * ($JOURNAL_STREAM), stderr otherwise. */
void log_init(const char *ident);

/* Lines below this syslog priority are dropped (LOG_DEBUG keeps all). */
void log_set_level(int prio);

/* Parse "error|warning|notice|info|debug"; -1 if unknown. */
int log_level_parse(const char *s);

/*
 * Log one line. `fields` is NULL or a NULL-terminated array of alternating
 * field names and values, e.g. {"ROUTE", "/baidu/tp", "REASON", "bad_sig", NULL};
 * journald gets them as PAYHOOK_<NAME>= fields, stderr as name=value.
 * Never pass a secret, key, token or ticket.
 */
void log_msg(int prio, const char *const *fields, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * A log line that a flood could repeat (a rejection, a refused connection,
 * libmicrohttpd's complaints) takes a pass first: at most `burst` lines per
 * `window_ns`, the rest counted and dropped, so floods never crowd out the
 * lines that matter (journald drops by unit when a unit logs too fast).
 * Returns 1 when this line may be logged, with *dropped the lines dropped
 * since the last one logged (say so in the line); 0 when it is dropped.
 * A zero-initialised struct log_limit is ready; one per kind of line.
 */
struct log_limit {
    _Atomic unsigned long long start;
    _Atomic unsigned in_window, dropped;
};
int log_limit_pass(struct log_limit *l, unsigned burst, unsigned long long window_ns,
                   unsigned *dropped);

#define log_err(...)     log_msg(LOG_ERR, NULL, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_WARNING, NULL, __VA_ARGS__)
#define log_notice(...)  log_msg(LOG_NOTICE, NULL, __VA_ARGS__)
#define log_info(...)    log_msg(LOG_INFO, NULL, __VA_ARGS__)
#define log_debug(...)   log_msg(LOG_DEBUG, NULL, __VA_ARGS__)

#endif
