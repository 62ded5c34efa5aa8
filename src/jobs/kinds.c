/*
 * kinds.c: job kinds and the platform query that runs each. A kind is
 * written in the jobs table, so names are never reused for another query.
 */
#include "jobs/jobs.h"

#include "forward/hooks.h"

#include <string.h>

static const struct {
    const char *kind;
    query_fn run;
} job_kinds[] = {
    {"baidu.find_order", baidu_query_find_order},
    {"baidu.find_refund", baidu_query_find_refund},
    {"alipay.trade_query", alipay_query_trade},
    {"alipay.refund_query", alipay_query_refund},
    {"gateway.trade_query", gateway_query_trade},
};

query_fn jobs_query_for(const char *kind)
{
    size_t i;

    if (strncmp(kind, "hook.", 5) == 0) /* a delivery to [hook NAME] */
        return forward_deliver;
    for (i = 0; i < sizeof(job_kinds) / sizeof(job_kinds[0]); i++)
        if (strcmp(job_kinds[i].kind, kind) == 0)
            return job_kinds[i].run;
    return NULL;
}
