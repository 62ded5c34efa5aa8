/*
 * control.h: the operator's way in while the daemon runs. payhookctl's
 * writing commands (replay, retry --dead, hooks enable) connect to a unix
 * socket beside the store, "<store path>.ctl" (mode 0600: the daemon's user
 * and root), and send one line; the daemon does the work through its one
 * writer and answers one line. A second process never writes the store
 * while the daemon runs.
 *
 * Requests:  replay EVENT_ID HOOK  |  retry-dead [HOOK]  |  enable HOOK
 * Answers:   ok TEXT  |  error TEXT
 */
#ifndef PAYHOOKD_INTAKE_CONTROL_H
#define PAYHOOKD_INTAKE_CONTROL_H

#include <stddef.h>

#include "jobs/jobs.h"
#include "runtime.h"
#include "store/store.h"

#define CONTROL_LINE_MAX 512

struct control;

/* Listen on "<store path>.ctl" (a stale socket left by a killed daemon is
 * replaced: the store's lock says no other daemon owns it). 0 or -errno
 * with err. */
int control_start(struct runtime_cell *rt, struct store *s, struct jobs *j, const char *db_path,
                  struct control **out, char *err, size_t errlen);

/* Stop listening and remove the socket. NULL-safe; returns NULL. */
struct control *control_stop(struct control *c);

/* Do one request line (the socket thread; also payhookctl when no daemon
 * runs, with j NULL): the answer line, without its newline, into out. */
void control_do(const struct config *cfg, struct store *s, struct jobs *j, const char *line,
                char *out, size_t len);

#endif
