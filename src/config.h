/*
 * config.h: the INI configuration parsed into one typed, immutable struct.
 * Every key is validated when the file is read; errors name file:line and
 * the key. A loaded config is never modified: a reload builds a new one.
 */
#ifndef PAYHOOKD_CONFIG_H
#define PAYHOOKD_CONFIG_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct crypto_key;

/* One entry of trusted_proxies: an address with a prefix length. */
struct config_net {
    int family; /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    unsigned prefix;
};

struct config_server {
    char *listen; /* as written, for messages */
    struct sockaddr_storage listen_addr;
    socklen_t listen_len;
    unsigned threads; /* resolved: 0 in the file means the CPU count */
    size_t max_body;
    unsigned connection_timeout; /* seconds */
    unsigned max_connections;
    unsigned max_connections_per_ip; /* untrusted peers only */
    struct config_net *trusted;
    size_t n_trusted;
    int log_level;
    unsigned drain_timeout; /* seconds SIGTERM waits for in-flight requests */
};

struct config_store {
    char *path;
    int synchronous_full; /* 1 = FULL, 0 = NORMAL */
    unsigned batch_max;   /* most rows committed in one transaction */
    unsigned queue_max;   /* pending writes before intake answers 503 */
    unsigned rejections_keep;
    unsigned rejection_body_max; /* bytes of a rejected body kept */
};

/* An EncodingAESKey, decoded; set when the configuration gave one. */
struct config_aes_key {
    uint8_t key[32];
    int set;
};

struct config_baidu_tp {
    int enabled; /* the [baidu.tp] section is present */
    char *path;
    char *client_id;
    char *token;
    struct config_aes_key aes_key;
    /* During a switch: pushes sealed with token_next and/or
     * encoding_aes_key_next (each defaulting to the current one) are
     * accepted too. */
    char *token_next;
    struct config_aes_key aes_key_next;
    int allow_plaintext;
};

/* [openapi]: the follow-up queries against the platforms' OpenAPIs. */
struct config_openapi {
    char *baidu_base;     /* https (http only to a loopback host) */
    char *alipay_gateway; /* likewise */
    unsigned workers;     /* worker threads */
    unsigned timeout;     /* seconds a call may take in all */
    unsigned connect_timeout;
    unsigned max_attempts;
    unsigned retry_base, retry_max; /* back-off, seconds */
    unsigned first_delay;           /* seconds before the first query */
    unsigned rate;                  /* queries/s per platform, 0 = no cap */
    unsigned concurrency;           /* calls in flight per platform, 0 = workers */
    unsigned unconfirmed_after;     /* seconds, for the unconfirmed_payments view */
};

/* [reconcile]: the daily sweeps of the platforms' order lists. */
struct config_reconcile {
    unsigned at_minutes;  /* local time of day the sweeps start, minutes after 00:00 */
    long zone_offset;     /* the platforms' zone, seconds east of UTC */
    unsigned days;        /* past days each daily sweep covers */
    unsigned give_up_days; /* an open day is swept again until this old */
};

/* [baidu]: the cashier callback paths (defaults apply without the section). */
struct config_baidu {
    char *pay_notify_path;
    char *refund_audit_path;
    char *refund_notify_path;
};

enum config_refund_audit { AUDIT_AUTO, AUDIT_APPROVE, AUDIT_REJECT };

/* [baidu.app NAME]: one mini program's cashier. */
struct config_baidu_app {
    char *name;
    unsigned line; /* of its section header, for messages */
    char *app_id;
    char *deal_id;
    char *app_key;                   /* pmAppKey */
    struct crypto_key *platform_key; /* platform_public_key */
    struct crypto_key *platform_key_next; /* a second key accepted during a switch */
    int refund_audit;                /* enum config_refund_audit */
    unsigned is_consumed;            /* isConsumed answered: 2 unless configured */
    char *access_token;              /* the app's own OpenAPI token (or from the file) */
    char *access_token_file;
    int query; /* follow-up queries wanted (with a token) */
    int reconcile; /* daily sweeps of its order list (with a token) */
    int learned; /* from getbindservice (app_keys), not the config: a TP-managed app */
};

/* [alipay]: the notification path. */
struct config_alipay {
    char *notify_path;
};

/* [alipay.app NAME]: one Alipay application. */
struct config_alipay_app {
    char *name;
    unsigned line;
    char *app_id;
    struct crypto_key *alipay_key;      /* alipay_public_key */
    struct crypto_key *alipay_key_next; /* a second key accepted during a switch */
    char *seller_id;                    /* when set, notifications must carry it */
    struct crypto_key *private_key;     /* app_private_key: signs OpenAPI requests */
    int query;
    int reconcile; /* only 0: its sweep is not built */
};

enum config_gateway_sign { GW_SIGN_MD5_KEY, GW_SIGN_MD5_APPEND, GW_SIGN_RSA };

/* [gateway NAME]: one aggregated payment gateway. */
struct config_gateway {
    char *name;
    unsigned line;
    char *notify_path;
    char *secret;
    char *secret_next; /* a second MD5 secret accepted during a switch */
    int sign;      /* enum config_gateway_sign */
    int hex_upper; /* the case the gateway writes; verification ignores case */
    char *ack;
    struct crypto_key *public_key; /* sign = rsa */
    struct crypto_key *public_key_next; /* sign = rsa: a second key during a switch */
    int rsa_sha256;                /* sign = rsa: 1 SHA256 (RSA2), 0 SHA1 */
    char **exclude;                /* keys left out of the signed string */
    int drop_empty;
    char *app_id;         /* when set, callbacks must carry this app_id */
    char **dedupe_fields; /* what makes two callbacks the same one */
    char *query_url;      /* trade.query endpoint */
    char *merchant_no;
    int query;
    int reconcile; /* only 0: its sweep is not built */
};

enum config_hook_when { HOOK_RECEIVED, HOOK_CONFIRMED };

/* [hook NAME]: forwarding verified events to the operator's systems. */
struct config_hook {
    char *name;
    unsigned line;
    char *url;       /* https, or http to a loopback host */
    char **command;  /* or argv of a command hook (argv[0] an absolute path; no shell) */
    char **events;   /* globs over provider.kind */
    int when;        /* enum config_hook_when */
    int unverified;  /* also unverified events */
    char **secrets;  /* whsec_<base64> words (rotation: each signs) */
    char *secret_file;
    unsigned timeout, max_attempts, retry_base, retry_max, concurrency;
    /* resolved at load: the decoded keys of secrets */
    unsigned char **keys;
    size_t *key_lens;
    size_t n_keys;
    char *kind;      /* "hook.NAME", the job kind and lane of its deliveries */
};

struct config {
    char *file;
    struct config_server server;
    struct config_store store;
    struct config_openapi openapi;
    struct config_reconcile reconcile;
    struct config_baidu_tp tp;
    struct config_baidu baidu;
    struct config_alipay alipay;
    struct config_baidu_app **baidu_apps;
    size_t n_baidu_apps;
    struct config_alipay_app **alipay_apps;
    size_t n_alipay_apps;
    struct config_gateway **gateways;
    size_t n_gateways;
    struct config_hook **hooks;
    size_t n_hooks;
};

/*
 * Read and validate a config file. Returns 0 and sets *out, or -errno with
 * a message like "payhookd.conf:12: [server] max_body: must be between 1024
 * and 67108864" in err.
 */
int config_load(const char *path, struct config **out, char *err, size_t errlen);

/* Free a config (secrets are wiped); NULL-safe; returns NULL. */
struct config *config_free(struct config *c);

/* The hook of a job kind "hook.NAME", or NULL. */
const struct config_hook *config_hook_by_kind(const struct config *c, const char *kind);
/* The [baidu.app] whose deal_id is deal, or NULL. */
const struct config_baidu_app *config_baidu_app_by_deal(const struct config *c,
                                                        const char *deal);
/* The id the store names a Baidu app by (events.app, jobs.app): its
 * app_id, else its NAME. */
const char *config_baidu_app_id(const struct config_baidu_app *b);
/* The first [baidu.app] whose NAME or app_id is id, or NULL. */
const struct config_baidu_app *config_baidu_app_by_id(const struct config *c, const char *id);

/* 1 when url is https://, or http:// to a loopback host (test mocks). */
int config_url_ok(const char *url);

/* 1 when addr (sockaddr_in or sockaddr_in6) is in the trusted proxy list. */
int config_is_trusted(const struct config *c, const struct sockaddr *addr);

/* Same test for a textual address (from X-Forwarded-For). */
int config_is_trusted_text(const struct config *c, const char *addr);

#endif
