/*
 * actions.h: payhookctl's writing commands. Each is one request line of the
 * daemon's control socket (intake/control.h), so the daemon's one writer
 * makes the change; when no daemon holds the store, payhookctl opens it
 * itself (taking the same lock) and does the same work.
 * Each returns an exit status: 0 done, 1 failed (message on stderr),
 * 2 usage (message naming the argument).
 */
#ifndef PAYHOOKD_CTL_ACTIONS_H
#define PAYHOOKD_CTL_ACTIONS_H

#include <stddef.h>

/* payhookctl replay EVENT_ID [--hook NAME] */
int ctl_replay(int argc, char **argv, const char *config);
/* payhookctl retry --dead [--hook NAME] */
int ctl_retry(int argc, char **argv, const char *config);
/* payhookctl hooks enable NAME (argv[0] is "enable") */
int ctl_hooks_enable(int argc, char **argv, const char *config);

/* prune --older-than DAYS [--json]: compact old events (store_prune). */
int ctl_prune(int argc, char **argv, const char *config);

/* keys refresh APP [--json] (argv[0] is "refresh"): getbindservice again. */
int ctl_keys_refresh(int argc, char **argv, const char *config);

/* Ask the daemon holding store db: 1 answered (into answer), 0 no daemon
 * listens, -1 failed (errno). */
int ctl_ask_daemon(const char *db, const char *line, char *answer, size_t len);

#endif
