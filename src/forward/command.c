/*
 * command.c: one run of a command hook (see command.h).
 *
 * posix_spawn, not fork: the daemon is multi-threaded, and glibc's spawn
 * reports a failed exec as an error here instead of a child that exits 127.
 * The child gets only its three pipes (every other descriptor closed), the
 * default disposition of the signals the daemon ignores or blocks, and a
 * process group of its own so a timeout can kill everything it started.
 */
#include "forward/command.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long cmd_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void cmd_close(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* Start argv[0] with stdin from in_fd and stdout+stderr to out_fd. */
static int cmd_spawn(const struct command_run *r, int in_fd, int out_fd, pid_t *pid)
{
    static const int reset[] = {SIGPIPE, SIGHUP, SIGINT, SIGTERM, SIGQUIT, SIGCHLD,
                                SIGUSR1, SIGUSR2, SIGALRM};
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t none, def;
    size_t i;
    int e;

    sigemptyset(&none);
    sigemptyset(&def);
    for (i = 0; i < sizeof(reset) / sizeof(reset[0]); i++)
        sigaddset(&def, reset[i]);
    if ((e = posix_spawn_file_actions_init(&fa)) != 0)
        return -e;
    if ((e = posix_spawnattr_init(&at)) != 0) {
        posix_spawn_file_actions_destroy(&fa);
        return -e;
    }
    e = posix_spawn_file_actions_adddup2(&fa, in_fd, 0);
    e = e ? e : posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
    e = e ? e : posix_spawn_file_actions_adddup2(&fa, out_fd, 2);
    e = e ? e : posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    e = e ? e : posix_spawnattr_setpgroup(&at, 0);
    e = e ? e : posix_spawnattr_setsigmask(&at, &none);
    e = e ? e : posix_spawnattr_setsigdefault(&at, &def);
    e = e ? e
          : posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                              POSIX_SPAWN_SETSIGDEF);
    e = e ? e : posix_spawn(pid, r->argv[0], &fa, &at, r->argv, r->envp);
    posix_spawnattr_destroy(&at);
    posix_spawn_file_actions_destroy(&fa);
    return -e;
}

/* Read what is there; keep up to the bound, drop the rest. 1 at EOF. */
static int cmd_read(struct command_run *r, int fd)
{
    char chunk[4096];
    ssize_t n;

    while ((n = read(fd, chunk, sizeof(chunk))) > 0) {
        size_t room = COMMAND_OUTPUT_MAX > r->output.len ? COMMAND_OUTPUT_MAX - r->output.len : 0;
        size_t keep = (size_t)n < room ? (size_t)n : room;
        if (keep)
            (void)buf_append(&r->output, chunk, keep); /* out of memory: dropped, read on */
    }
    return n == 0 || (errno != EAGAIN && errno != EINTR);
}

/* Feed stdin without blocking; the fd is closed when all is written or the
 * command stopped reading (EPIPE: its choice, not an error). */
static void cmd_write(struct command_run *r, int *fd, size_t *done)
{
    ssize_t n;

    while (*done < r->input_len) {
        n = write(*fd, r->input + *done, r->input_len - *done);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return;
            break;
        }
        *done += (size_t)n;
    }
    cmd_close(fd);
}

/* Pump the pipes until the child exits or the deadline passes. */
static void cmd_wait(struct command_run *r, pid_t pid, int in_fd, int out_fd, long start)
{
    size_t written = 0;
    int status = 0, eof = 0;

    for (;;) {
        struct pollfd p[2] = {{.fd = out_fd, .events = POLLIN}, {.fd = in_fd, .events = POLLOUT}};
        long left = (long)r->timeout_ms - (cmd_now_ms() - start);
        pid_t w;

        if (in_fd >= 0)
            cmd_write(r, &in_fd, &written);
        p[1].fd = in_fd;
        if ((w = waitpid(pid, &status, WNOHANG)) == pid)
            break;
        if (left <= 0) {
            r->timed_out = 1;
            kill(-pid, SIGKILL);
            waitpid(pid, &status, 0);
            break;
        }
        p[0].fd = eof ? -1 : out_fd;
        /* short naps: the child's exit is seen by waitpid, not by poll */
        poll(p, 2, left < 20 ? (int)left : 20);
        if (!eof && (p[0].revents & (POLLIN | POLLHUP | POLLERR)))
            eof = cmd_read(r, out_fd);
    }
    if (!eof)
        cmd_read(r, out_fd); /* what it wrote just before it ended */
    if (in_fd >= 0)
        close(in_fd);
    if (!r->timed_out && WIFEXITED(status))
        r->exit_code = WEXITSTATUS(status);
    else if (WIFSIGNALED(status))
        r->signal = WTERMSIG(status);
}

int command_run(struct command_run *r)
{
    int in[2] = {-1, -1}, out[2] = {-1, -1}, e;
    long start = cmd_now_ms();
    pid_t pid;

    r->exit_code = -1;
    r->signal = r->timed_out = 0;
    r->error[0] = '\0';
    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0) {
        e = -errno;
        snprintf(r->error, sizeof(r->error), "cannot make pipes: %s", strerror(-e));
        cmd_close(&in[0]);
        cmd_close(&in[1]);
        return e;
    }
    if ((e = cmd_spawn(r, in[0], out[1], &pid)) < 0) {
        snprintf(r->error, sizeof(r->error), "cannot run %.100s: %s", r->argv[0], strerror(-e));
    } else {
        cmd_close(&in[0]);
        cmd_close(&out[1]);
        fcntl(in[1], F_SETFL, O_NONBLOCK);
        fcntl(out[0], F_SETFL, O_NONBLOCK);
        cmd_wait(r, pid, in[1], out[0], start);
        in[1] = -1; /* closed by cmd_wait */
    }
    cmd_close(&in[0]);
    cmd_close(&in[1]);
    cmd_close(&out[0]);
    cmd_close(&out[1]);
    r->duration_ms = cmd_now_ms() - start;
    return e;
}
