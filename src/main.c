/*
 * main.c: payhookd's entry point: arguments, signals, systemd notification
 * and the watchdog. Everything else is wired in daemon.c.
 */
#include <errno.h>
#include <pthread.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "autoconf.h"
#include "config.h"
#include "daemon.h"
#include "wire/crypto.h"
#include "wire/json.h"
#include "openapi/client.h"
#include "providers/provider.h"
#include "lib/log.h"

#define MAIN_ERR_MAX 1024

/* Usage text. */
static void main_usage(FILE *f)
{
    fprintf(f, "usage: payhookd -c FILE [--check]\n"
               "       payhookd --version\n"
               "\n"
               "  -c, --config FILE  configuration file (INI)\n"
               "      --check        validate the configuration and exit 0 (valid) or 1\n"
               "  -V, --version      print the version and exit\n"
               "  -h, --help         this text\n");
}

/* Parse arguments; returns -1 to exit 0, -2 to exit 1, 0 to run. */
static int main_args(int argc, char **argv, const char **conf, int *check)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"check", no_argument, NULL, 'k'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;

    while ((c = getopt_long(argc, argv, "c:Vh", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            *conf = optarg;
            break;
        case 'k':
            *check = 1;
            break;
        case 'V':
            printf("payhookd %s\n", PACKAGE_VERSION);
            return -1;
        case 'h':
            main_usage(stdout);
            return -1;
        default:
            main_usage(stderr);
            return -2;
        }
    }
    if (optind < argc || !*conf) {
        fprintf(stderr, "payhookd: %s\n",
                optind < argc ? "unexpected argument"
                              : "a configuration file is required (-c FILE)");
        main_usage(stderr);
        return -2;
    }
    return 0;
}

/* The socket systemd passed us (socket activation), or -1; -2 on misuse. */
static int main_listen_fd(void)
{
    int n = sd_listen_fds(1);

    if (n <= 0)
        return -1;
    if (n > 1 || sd_is_socket(SD_LISTEN_FDS_START, AF_UNSPEC, SOCK_STREAM, 1) <= 0) {
        log_err("socket activation: expected exactly one listening stream socket, got %d",
                n);
        return -2;
    }
    return SD_LISTEN_FDS_START;
}

/* Handle SIGHUP: reload, keeping the old config when the new one is bad. */
static void main_reload(struct daemon *d, const char *conf)
{
    char err[MAIN_ERR_MAX];
    int r;

    sd_notify(0, "RELOADING=1\nSTATUS=reloading configuration");
    err[0] = '\0';
    r = daemon_reload(d, conf, err, sizeof(err));
    if (r < 0)
        log_err("reload refused, still running the previous configuration: %s", err);
    else if (r > 0)
        log_warning("configuration reloaded; %s", err);
    else
        log_notice("configuration reloaded from %s", conf);
    sd_notify(0, "READY=1");
}

/* Wait for signals; ping the watchdog while the writer is alive. Returns 0
 * on SIGTERM/SIGINT, 1 when the store broke (see store_broken). */
static int main_loop(struct daemon *d, const char *conf, const sigset_t *set)
{
    const char *broken;
    uint64_t wd_usec = 0;
    struct timespec tick = {1, 0};
    char status[256];
    int sig;

    if (sd_watchdog_enabled(0, &wd_usec) > 0 && wd_usec / 2 < 1000000) {
        tick.tv_sec = 0;
        tick.tv_nsec = (long)(wd_usec / 2) * 1000;
    }
    for (;;) {
        sig = sigtimedwait(set, NULL, &tick);
        if (sig == SIGTERM || sig == SIGINT)
            return 0;
        if ((broken = daemon_broken(d)) != NULL) {
            /* systemd restarts us (Restart=on-failure); SQLite then rereads
             * the store from the disk, and the platforms' retries store
             * again whatever did not reach it. */
            log_msg(LOG_CRIT, NULL,
                    "the store cannot be trusted any more: %s; exiting (nothing that was "
                    "not on disk was acknowledged)",
                    broken);
            sd_notifyf(0, "STATUS=exiting: %s", broken);
            return 1;
        }
        if (sig == SIGHUP)
            main_reload(d, conf);
        if (wd_usec && daemon_alive(d))
            sd_notify(0, "WATCHDOG=1");
        daemon_status(d, status, sizeof(status));
        sd_notifyf(0, "STATUS=%s", status);
    }
}

/* --check: the config parses and every provider accepts it (keys load). */
static int main_check(const char *conf, struct config *cfg)
{
    struct routes *rt = NULL;
    char err[MAIN_ERR_MAX];
    int r = routes_build(cfg, &rt, err, sizeof(err));

    if (r < 0)
        fprintf(stderr, "payhookd: %s: %s\n", conf, err);
    else
        printf("%s: configuration OK\n", conf);
    routes_free(rt);
    config_free(cfg);
    return r < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
    const char *conf = NULL;
    char err[MAIN_ERR_MAX];
    struct config *cfg = NULL;
    struct daemon *d = NULL;
    sigset_t set;
    int check = 0, fd, r, left, failed;

    /* Before anything allocates through OpenSSL or cJSON (see crypto_init). */
    crypto_init();
    json_init();
    r = main_args(argc, argv, &conf, &check);
    if (r < 0)
        return r == -1 ? 0 : 1;
    log_init("payhookd");
    if (config_load(conf, &cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "payhookd: %s\n", err);
        return 1;
    }
    if (check)
        return main_check(conf, cfg);
    umask(027);
    /* Block the signals in every thread; main_loop takes them synchronously. */
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    fd = main_listen_fd();
    /* libcurl's global set-up is not thread-safe: once, before any thread */
    if (fd == -2 || openapi_global_init() < 0) {
        if (fd != -2)
            log_err("cannot start: libcurl's global initialisation failed");
        config_free(cfg);
        return 1;
    }
    r = daemon_start(cfg, fd, &d, err, sizeof(err));
    if (r < 0) {
        log_err("cannot start: %s", err);
        sd_notifyf(0, "STATUS=failed to start: %s", err);
        openapi_global_cleanup();
        return 1;
    }
    log_notice("payhookd %s ready (%s)", PACKAGE_VERSION,
               fd >= 0 ? "socket activation" : "listening as configured");
    sd_notify(0, "READY=1\nSTATUS=serving");
    failed = main_loop(d, conf, &set);
    sd_notify(0, "STOPPING=1\nSTATUS=draining in-flight requests");
    log_notice("stopping: draining in-flight requests");
    left = daemon_stop(d);
    if (left > 0)
        log_err(
            "stopped with %d requests unanswered after drain_timeout (none acknowledged)",
            left);
    else
        log_notice("stopped cleanly");
    openapi_global_cleanup();
    return failed;
}
