/*
 * fuzz_config.c: fuzzes config_load (src/config.c: inih with the custom line
 * reader, the key table, the value parsers and the cross-key checks) on the
 * input written to a file in a directory made once at start, then
 * config_free. Invariants: no crash and no leak whatever the bytes; a
 * refused file always comes with a reason naming the file; an accepted one
 * has [server] listen and [store] path and self-consistent named sections.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "fuzz_util.h"

static char path[4200];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    snprintf(path, sizeof(path), "%s/payhookd.conf", fuzz_tmpdir());
    return 0;
}

/* What a loaded config promises its users. */
static void check_config(const struct config *c)
{
    size_t i;

    FUZZ_CHECK(c->server.listen && c->store.path && c->server.threads > 0);
    FUZZ_CHECK(c->server.listen_len > 0);
    FUZZ_CHECK(c->server.n_trusted == 0 || c->server.trusted);
    if (c->tp.enabled)
        FUZZ_CHECK(c->tp.path && c->tp.client_id && c->tp.token);
    for (i = 0; i < c->n_baidu_apps; i++)
        FUZZ_CHECK(c->baidu_apps[i]->name && c->baidu_apps[i]->deal_id &&
                   c->baidu_apps[i]->platform_key);
    for (i = 0; i < c->n_alipay_apps; i++)
        FUZZ_CHECK(c->alipay_apps[i]->name && c->alipay_apps[i]->app_id &&
                   c->alipay_apps[i]->alipay_key);
    for (i = 0; i < c->n_gateways; i++) {
        const struct config_gateway *g = c->gateways[i];
        FUZZ_CHECK(g->name && g->notify_path && g->ack);
        FUZZ_CHECK(g->sign == GW_SIGN_RSA ? g->public_key != NULL
                                          : g->secret != NULL && g->secret[0] != '\0');
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct config *c = NULL;
    char err[1024] = "";
    int r;

    fuzz_write_file(path, data, size);
    r = config_load(path, &c, err, sizeof(err));
    if (r < 0) {
        FUZZ_CHECK(c == NULL);
        if (strncmp(err, path, strlen(path)) != 0)
            fuzz_die("refused (%d) without naming the file: \"%s\"", r, err);
        return 0;
    }
    FUZZ_CHECK(r == 0 && c != NULL);
    check_config(c);
    config_is_trusted_text(c, "127.0.0.1");
    config_is_trusted_text(c, "::ffff:10.0.0.1");
    config_free(c);
    return 0;
}
