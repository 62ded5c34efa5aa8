/*
 * common.h: what every payhookctl command shares: exit statuses, usage
 * errors that name the bad argument, loading payhookd's configuration, and
 * a read-only connection to its store (safe while the daemon runs: it never
 * writes, and it holds no transaction longer than one command).
 */
#ifndef PAYHOOKD_CTL_COMMON_H
#define PAYHOOKD_CTL_COMMON_H

#include <sqlite3.h>

#include "config.h"

#define CTL_EXIT_OK    0
#define CTL_EXIT_FAIL  1
#define CTL_EXIT_USAGE 2

/* Print "payhookctl: WHAT" and the --help hint; returns CTL_EXIT_USAGE. */
int ctl_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Print "payhookctl: WHAT"; returns CTL_EXIT_FAIL. */
int ctl_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Load -c CONFIG (required: it names the store); NULL after a message. */
struct config *ctl_config(const char *path);

/* Open the store of cfg read-only, its schema checked; NULL after a message. */
sqlite3 *ctl_store_read(const struct config *cfg);

/* s as a positive decimal id (no sign, no trailing text): 0, or -1. */
int ctl_parse_id(const char *s, long long *id);

#endif
