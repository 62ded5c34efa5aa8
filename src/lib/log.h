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

#define log_err(...)     log_msg(LOG_ERR, NULL, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_WARNING, NULL, __VA_ARGS__)
#define log_notice(...)  log_msg(LOG_NOTICE, NULL, __VA_ARGS__)
#define log_info(...)    log_msg(LOG_INFO, NULL, __VA_ARGS__)
#define log_debug(...)   log_msg(LOG_DEBUG, NULL, __VA_ARGS__)

#endif
