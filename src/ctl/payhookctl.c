/*
 * payhookctl.c: the operator's command-line tool for payhookd. This file is
 * argument parsing and dispatch only: one entry per subcommand in
 * ctl_commands[], the work done by the module behind it (`sample`: sample.c).
 * Exit status: 0 success, 1 failure, 2 usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autoconf.h"
#include "config.h"
#include "ctl/reconcile.h"
#include "ctl/actions.h"
#include "ctl/common.h"
#include "ctl/inspect.h"
#include "ctl/sample.h"

#define CTL_ERR_MAX    1024
#define CTL_OPT_POST   256 /* getopt values of long-only options */
#define CTL_OPT_LIST   257
#define CTL_OPT_SAMPLE 1000 /* + index in sample.c's option table */
#define CTL_LONGOPTS   80

/* One subcommand: `payhookctl [-c CONFIG] NAME ...`. */
struct ctl_command {
    const char *name;
    const char *summary;
    /* argv[0] is the command name; config is the global -c or NULL. */
    int (*run)(int argc, char **argv, const char *config);
    void (*help)(FILE *f);
};

static int ctl_sample(int argc, char **argv, const char *config);
static void ctl_sample_help(FILE *f);

static int ctl_hooks(int argc, char **argv, const char *config);
static int ctl_keys(int argc, char **argv, const char *config);
static void ctl_keys_help(FILE *f);
static void ctl_replay_help(FILE *f);
static void ctl_retry_help(FILE *f);
static void ctl_prune_help(FILE *f);

static const struct ctl_command ctl_commands[] = {
    {"sample", "build correctly signed sample callbacks; print or POST them", ctl_sample,
     ctl_sample_help},
    {"events", "list events, newest first, with their confirmation", ctl_events,
     ctl_events_help},
    {"show", "one event: body, jobs, query results, deliveries, attempts", ctl_show,
     ctl_show_help},
    {"jobs", "list follow-up query jobs", ctl_jobs, ctl_jobs_help},
    {"tokens", "the access tokens held: expiry, refresh token, next fetch (never the text)",
     ctl_tokens, ctl_tokens_help},
    {"deliveries", "list hook deliveries", ctl_deliveries, ctl_deliveries_help},
    {"hooks", "each hook's state and backlog; enable one that answered 410", ctl_hooks,
     ctl_hooks_help},
    {"stats", "a day's counts and amounts per app and kind; the backlog", ctl_stats,
     ctl_stats_help},
    {"replay", "send an event to a hook again (the same webhook-id)", ctl_replay,
     ctl_replay_help},
    {"retry", "queue dead deliveries again", ctl_retry, ctl_retry_help},
    {"prune", "compact events older than DAYS that have nothing left to do", ctl_prune,
     ctl_prune_help},
    {"keys", "ask the platform for a TP app's keys again (getbindservice)", ctl_keys,
     ctl_keys_help},
    {"reconcile", "sweep a platform's order list for a day now; a day's report",
     ctl_reconcile, ctl_reconcile_help},
};

/* The usage error for what getopt refused (opterr is off: we name it). */
static int ctl_getopt_error(int c, char **argv, const char *where)
{
    const char *arg = optind > 0 ? argv[optind - 1] : "";

    if (c == ':')
        return ctl_usage("%s%s: requires a value", where, arg);
    if (optopt > 0 && optopt < 256)
        return ctl_usage("%s-%c: unknown option", where, optopt);
    return ctl_usage("%s%s: unknown option", where, arg);
}

/* ---- sample ------------------------------------------------------------ */

/* Everything `payhookctl sample` was asked. */
struct ctl_sample_args {
    struct sample_opts o;
    const char *config;
    const char *post;
    int list, help;
};

/* Print one option's uses for one provider (NULL: its every-provider use). */
static void ctl_sample_help_uses(FILE *f, const struct sample_option *p,
                                 const char *provider)
{
    const struct sample_use *u;
    char left[64];
    size_t i;

    snprintf(left, sizeof(left), "--%s %s", p->name, p->metavar);
    for (i = 0; i < SAMPLE_USES_MAX && p->uses[i].help; i++) {
        u = &p->uses[i];
        if (provider ? !u->providers || !sample_use_for(u, provider)
                     : u->providers != NULL)
            continue;
        fprintf(f, "      %-22s %s%s%s%s\n", left, u->help, u->kinds ? " [" : "",
                u->kinds ? u->kinds : "", u->kinds ? "]" : "");
    }
}

/* Print one group of sample options (provider NULL: the generic ones). */
static void ctl_sample_help_options(FILE *f, const char *provider)
{
    const struct sample_option *p;
    size_t i;

    for (i = 0; (p = sample_option_at(i)) != NULL; i++)
        ctl_sample_help_uses(f, p, provider);
}

/* The help of `payhookctl sample`, its option groups taken from sample.c. */
static void ctl_sample_help(FILE *f)
{
    const struct sample_kind_info *k;
    size_t i;

    fprintf(
        f,
        "usage: payhookctl [-c CONFIG] sample PROVIDER [KIND] [OPTIONS]\n"
        "       payhookctl sample --list\n"
        "\n"
        "Builds requests signed exactly as the platform signs them. Prints each body\n"
        "on its own line, or with --post sends each (with the platform's Content-Type)\n"
        "and prints \"STATUS BODY\" per answer (exit 0 only when every answer was\n"
        "2xx). With -c, secrets and ids default to the provider's section of\n"
        "payhookd's configuration file. An option that does not apply to the chosen\n"
        "provider and kind is refused.\n"
        "\n"
        "  -c, --config CONFIG      payhookd's configuration file, for the defaults\n"
        "      --post URL           POST each request to URL instead of printing it\n"
        "      --list               print the PROVIDER KIND pairs that can be built\n"
        "  -h, --help               this text\n"
        "\nOptions for every provider:\n");
    ctl_sample_help_options(f, NULL);
    for (i = 0; (k = sample_kind_at(i)) != NULL; i++) {
        if (i > 0 && strcmp(sample_kind_at(i - 1)->provider, k->provider) == 0)
            continue;
        fprintf(f, "\nOptions for %s:\n", k->provider);
        ctl_sample_help_options(f, k->provider);
    }
    fprintf(
        f,
        "\n[KINDS] after a line: the kinds of that provider it applies to.\n"
        "Money (--amount) is integer fen for every provider: 1999 is 19.99 yuan.\n"
        "--private-key is the PLATFORM's key (the half payhookd's config holds the\n"
        "public part of): tests and operators with a test key pair have it.\n"
        "--count N builds N distinct messages. baidu.tp: request i (from 0) adds i to\n"
        "appId (--event) or to CreateTime (--ticket); a verbatim --message cannot vary.\n"
        "baidu pay_notify: orderId (and tpOrderId = \"TP\" orderId) plus i; baidu\n"
        "refunds: refundBatchId plus i, one --order-id; alipay: notify_id, trade_no and\n"
        "out_trade_no; gateway.NAME: out_trade_no and trade_no.\n"
        "--field VALUE is JSON for baidu.tp when it parses as JSON (42, true, \"42\"),\n"
        "else text; in forms it is always text, set before signing.\n"
        "baidu.tp sends --event APP_PAYMENT_CREATE_ACCOUNT_PASS unless told otherwise;\n"
        "eventTime, and Alipay's and gateways' times, are --timestamp in UTC+8.\n"
        "gateway.NAME needs -c: [gateway NAME] gives its sign mode, secret, hex case,\n"
        "exclude list, drop_empty and app_id.\n"
        "\nExamples:\n"
        "  payhookctl -c etc/demo.conf sample baidu.tp \\\n"
        "      --post http://127.0.0.1:8080/baidu/tp/events\n"
        "  payhookctl -c etc/demo.conf sample baidu.tp --ticket T --count 1000 > "
        "bodies\n"
        "  payhookctl -c etc/demo.conf sample baidu --private-key platform.pem \\\n"
        "      --amount 1999 --order-id 100000000000000001 \\\n"
        "      --post http://127.0.0.1:8080/baidu/pay/notify\n"
        "  payhookctl -c etc/demo.conf sample baidu refund_audit --private-key "
        "platform.pem \\\n"
        "      --order-id 100000000000000001 --amount 500 \\\n"
        "      --post http://127.0.0.1:8080/baidu/pay/refund-audit\n"
        "  payhookctl -c etc/demo.conf sample alipay --private-key alipay.pem "
        "--count 20 \\\n"
        "      --post http://127.0.0.1:8080/alipay/notify\n"
        "  payhookctl -c etc/demo.conf sample gateway.fubei --amount 1 \\\n"
        "      --post http://127.0.0.1:8080/gateway/fubei/notify\n");
}

/* Print the (provider, kind) pairs. */
static int ctl_sample_list(void)
{
    const struct sample_kind_info *k;
    size_t i;

    for (i = 0; (k = sample_kind_at(i)) != NULL; i++)
        printf("%s %s%s\t%s (default path %s)\n", k->provider, k->kind,
               k->is_default ? " (default)" : "", k->summary, k->path);
    return CTL_EXIT_OK;
}

/* getopt_long's table: our own options, then sample.c's. */
static void ctl_sample_longopts(struct option *lo, size_t max)
{
    static const struct option own[] = {
        {"config", required_argument, NULL, 'c'},
        {"post", required_argument, NULL, CTL_OPT_POST},
        {"list", no_argument, NULL, CTL_OPT_LIST},
        {"help", no_argument, NULL, 'h'},
    };
    const struct sample_option *p;
    size_t n, i;

    for (n = 0; n < ARRAY_SIZE(own); n++)
        lo[n] = own[n];
    for (i = 0; (p = sample_option_at(i)) != NULL && n + 1 < max; i++)
        lo[n++] =
            (struct option){p->name, required_argument, NULL, CTL_OPT_SAMPLE + (int)i};
    lo[n] = (struct option){NULL, 0, NULL, 0};
}

/* Parse `sample` options; PROVIDER [KIND] may come anywhere. Exit status or -1. */
static int ctl_sample_parse(int argc, char **argv, struct ctl_sample_args *a)
{
    struct option lo[CTL_LONGOPTS];
    char err[CTL_ERR_MAX];
    int c;

    ctl_sample_longopts(lo, ARRAY_SIZE(lo));
    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":c:h", lo, NULL)) != -1) {
        if (c >= CTL_OPT_SAMPLE) {
            if (sample_set(&a->o, (size_t)(c - CTL_OPT_SAMPLE), optarg, err,
                           sizeof(err)) < 0)
                return ctl_usage("sample: %s", err);
        } else if (c == 'c') {
            a->config = optarg;
        } else if (c == CTL_OPT_POST) {
            a->post = optarg;
        } else if (c == CTL_OPT_LIST) {
            a->list = 1;
        } else if (c == 'h') {
            a->help = 1;
        } else {
            return ctl_getopt_error(c, argv, "sample: ");
        }
    }
    if (a->help || a->list)
        return -1;
    if (optind < argc)
        a->o.provider = argv[optind++];
    if (optind < argc)
        a->o.kind = argv[optind++];
    if (optind < argc)
        return ctl_usage("sample: unexpected argument '%s'", argv[optind]);
    if (!a->o.provider)
        return ctl_usage("sample: PROVIDER is required (payhookctl sample --list)");
    if (a->post && strncmp(a->post, "http://", 7) && strncmp(a->post, "https://", 8))
        return ctl_usage("sample: --post: '%s' is not an http:// or https:// URL",
                               a->post);
    return -1;
}

/* Build the sample (defaults from the config) and print or POST it. */
static int ctl_sample_run(struct ctl_sample_args *a)
{
    struct config *cfg = NULL;
    struct sample *s = NULL;
    char err[CTL_ERR_MAX];
    int r;

    if (a->config && config_load(a->config, &cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "payhookctl: -c: %s\n", err);
        return CTL_EXIT_FAIL;
    }
    r = sample_new(&a->o, cfg, &s, err, sizeof(err));
    cfg = config_free(cfg);
    if (r == -EINVAL)
        return ctl_usage("sample: %s", err);
    if (r < 0) {
        fprintf(stderr, "payhookctl: sample: %s\n", err);
        return CTL_EXIT_FAIL;
    }
    r = sample_send(s, a->post, stdout, err, sizeof(err));
    if (r < 0)
        fprintf(stderr, "payhookctl: sample: %s\n", err);
    else if (r > 0)
        fprintf(stderr, "payhookctl: sample: %d of %u answers were not 2xx\n", r,
                sample_count(s));
    sample_free(s);
    return r == 0 ? CTL_EXIT_OK : CTL_EXIT_FAIL;
}

/* `payhookctl sample`. */
static int ctl_sample(int argc, char **argv, const char *config)
{
    struct ctl_sample_args a;
    int r;

    memset(&a, 0, sizeof(a));
    a.config = config;
    r = ctl_sample_parse(argc, argv, &a);
    if (r >= 0)
        return r;
    if (a.help) {
        ctl_sample_help(stdout);
        return CTL_EXIT_OK;
    }
    if (a.list)
        return ctl_sample_list();
    return ctl_sample_run(&a);
}

/* ---- deliveries: replay, retry, hooks (actions.c) ------------------------ */

static void ctl_replay_help(FILE *f)
{
    fputs("usage: payhookctl -c CONFIG replay EVENT_ID [--hook NAME] [--json]\n"
          "\n"
          "Queues the event's delivery to hook NAME again: the same delivery, so the\n"
          "same webhook-id and body, its attempts counted from zero (a pending one is\n"
          "left as it is). Created when NAME never had one, even when its globs do not\n"
          "match. Without --hook: to every hook the event has a delivery to. The\n"
          "running daemon does it (its control socket, <store>.ctl); with no daemon,\n"
          "payhookctl opens the store itself. --json: {\"replayed\": [{\"hook\",\n"
          "\"delivery_id\", \"result\"}]}, result being queued again, already pending or\n"
          "created.\n",
          f);
}

static void ctl_retry_help(FILE *f)
{
    fputs("usage: payhookctl -c CONFIG retry --dead [--hook NAME] [--json]\n"
          "\n"
          "Queues every dead delivery (of hook NAME) again, attempts from zero.\n"
          "--json: {\"queued\": N[, \"hook\": NAME]}.\n",
          f);
}

static void ctl_prune_help(FILE *f)
{
    fputs("usage: payhookctl -c CONFIG prune --older-than DAYS [--json]\n"
          "\n"
          "Compacts the events received more than DAYS ago that have nothing left to\n"
          "do (no job or delivery queued or running, no dead delivery): their raw body\n"
          "and the answers of their query and delivery attempts are deleted. The event\n"
          "row stays -- dedupe key, amounts, status, fields, jobs, deliveries -- so a\n"
          "redelivered or replayed old callback is still a duplicate, never a new\n"
          "payment. In batches of 500 events, each one transaction on the daemon's\n"
          "writer. A pruned event cannot be replayed. --json: {\"events\",\n"
          "\"attempt_answers\", \"before\"}.\n",
          f);
}

static int ctl_hooks(int argc, char **argv, const char *config)
{
    if (argc >= 2 && strcmp(argv[1], "enable") == 0)
        return ctl_hooks_enable(argc - 1, argv + 1, config);
    if (argc >= 2 && argv[1][0] != '-')
        return ctl_usage("hooks %s: unknown subcommand (hooks [--json] | hooks enable NAME)",
                         argv[1]);
    return ctl_hooks_list(argc, argv, config);
}

static void ctl_keys_help(FILE *f)
{
    fputs("usage: payhookctl -c CONFIG keys refresh APP [--json]\n"
          "\n"
          "Queues a getbindservice call for TP app APP now (through the daemon, or the\n"
          "store when none runs): its deal id, pmAppKey and platform public key are\n"
          "learned again and replace the old ones whole once committed. The app needs\n"
          "its token in tokens. The tp_apps view and the log show the result.\n",
          f);
}

static int ctl_keys(int argc, char **argv, const char *config)
{
    if (argc >= 2 && strcmp(argv[1], "refresh") == 0)
        return ctl_keys_refresh(argc - 1, argv + 1, config);
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        ctl_keys_help(stdout);
        return CTL_EXIT_OK;
    }
    if (argc < 2)
        return ctl_usage("keys: give a subcommand (keys refresh APP)");
    return ctl_usage("keys %s: unknown subcommand (keys refresh APP)", argv[1]);
}

/* ---- the top level ----------------------------------------------------- */

/* The whole usage: global options, then every command's help. */
static void ctl_help(FILE *f)
{
    size_t i;

    fprintf(
        f,
        "usage: payhookctl [-c CONFIG] COMMAND [ARGS...]\n"
        "       payhookctl --version | --help\n"
        "\n"
        "  -c, --config CONFIG  payhookd's configuration file (defaults for commands)\n"
        "  -V, --version        print the version and exit\n"
        "  -h, --help           this text\n"
        "\n"
        "Exit status: 0 success, 1 failure, 2 usage error.\n"
        "\nCommands:\n");
    for (i = 0; i < ARRAY_SIZE(ctl_commands); i++)
        fprintf(f, "  %-10s %s\n", ctl_commands[i].name, ctl_commands[i].summary);
    for (i = 0; i < ARRAY_SIZE(ctl_commands); i++) {
        fputc('\n', f);
        ctl_commands[i].help(f);
    }
}

/* The command named name, or NULL. */
static const struct ctl_command *ctl_command_find(const char *name)
{
    size_t i;

    for (i = 0; i < ARRAY_SIZE(ctl_commands); i++)
        if (strcmp(ctl_commands[i].name, name) == 0)
            return &ctl_commands[i];
    return NULL;
}

/* Global options, then the command named first runs with the rest. */
int main(int argc, char **argv)
{
    static const struct option lo[] = {
        {"config", required_argument, NULL, 'c'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const struct ctl_command *cmd;
    const char *config = NULL;
    int c;

    opterr = 0;
    /* '+': stop at the command; its own options are parsed by it. */
    while ((c = getopt_long(argc, argv, "+:c:Vh", lo, NULL)) != -1) {
        if (c == 'c') {
            config = optarg;
        } else if (c == 'V') {
            printf("payhookctl %s\n", PACKAGE_VERSION);
            return CTL_EXIT_OK;
        } else if (c == 'h') {
            ctl_help(stdout);
            return CTL_EXIT_OK;
        } else {
            return ctl_getopt_error(c, argv, "");
        }
    }
    if (optind >= argc)
        return ctl_usage("a COMMAND is required");
    cmd = ctl_command_find(argv[optind]);
    if (!cmd)
        return ctl_usage("unknown command '%s'", argv[optind]);
    /* `COMMAND --help` is that command's help, whatever its own options. */
    if (optind + 1 < argc &&
        (strcmp(argv[optind + 1], "--help") == 0 || strcmp(argv[optind + 1], "-h") == 0)) {
        cmd->help(stdout);
        return CTL_EXIT_OK;
    }
    return cmd->run(argc - optind, argv + optind, config);
}
