/*
 * daemon.h: the running service: the current runtime (runtime.h: config,
 * routes and provider state, swapped whole on reload), the store and the
 * HTTP server, and the orderly shutdown that loses nothing.
 */
#ifndef PAYHOOKD_DAEMON_H
#define PAYHOOKD_DAEMON_H

#include <stddef.h>

#include "config.h"

struct daemon;

/*
 * Build the runtime from cfg (taking ownership), open the store and start
 * listening: on listen_fd when >= 0 (socket activation), else on
 * cfg->server.listen. 0 or -errno with the reason in err.
 */
int daemon_start(struct config *cfg, int listen_fd, struct daemon **out, char *err,
                 size_t errlen);

/*
 * Load `path` again and swap it in when it is valid; a bad config is
 * refused and the old one kept. Settings that need a restart (listen,
 * threads, store) are reported in err as a warning with a return of 1.
 */
int daemon_reload(struct daemon *d, const char *path, char *err, size_t errlen);

/* 1 when the writer thread made progress recently (for the watchdog). */
int daemon_alive(struct daemon *d);

/* Why the store can no longer acknowledge anything (a failed fdatasync: the
 * process must restart to reread it from disk), or NULL. */
const char *daemon_broken(struct daemon *d);

/* Short status for sd_notify STATUS=. */
void daemon_status(struct daemon *d, char *buf, size_t len);

/*
 * Stop accepting, let in-flight requests finish and commit (up to the
 * configured drain_timeout), close everything. Returns the number of
 * requests still unanswered when the time ran out (0 normally); NULL-safe.
 */
int daemon_stop(struct daemon *d);

#endif
