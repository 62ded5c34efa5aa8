/*
 * command.h: running a command hook once. The command is run without a
 * shell (its argv fixed in the config, nothing of the request interpolated),
 * in its own process group, with a clean environment, the envelope on
 * stdin, stdout and stderr captured (bounded), and a deadline after which
 * the whole group is killed. Lower layer: never logs, never touches the store.
 */
#ifndef PAYHOOKD_FORWARD_COMMAND_H
#define PAYHOOKD_FORWARD_COMMAND_H

#include <stddef.h>

#include "lib/util.h"

#define COMMAND_OUTPUT_MAX 16384 /* bytes of stdout+stderr kept; the rest is read and dropped */

struct command_run {
    /* in */
    char *const *argv;     /* argv[0] an absolute path */
    char *const *envp;     /* the whole environment */
    const char *input;     /* written to stdin, then stdin is closed */
    size_t input_len;
    unsigned timeout_ms;
    /* out */
    int exit_code;         /* -1 when it did not exit by itself */
    int signal;            /* the signal that ended it, or 0 */
    int timed_out;         /* the deadline passed: the process group was killed */
    struct buf output;     /* stdout and stderr interleaved, NUL-terminated */
    char error[160];       /* why it could not be run, when it could not */
    long duration_ms;
};

/* Run it to its end (or the deadline). 0 when it ran (whatever its exit),
 * -errno when it could not be started (run->error says why). */
int command_run(struct command_run *run);

#endif
