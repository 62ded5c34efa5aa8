/*
 * kinds.c: job kinds and the platform query that runs each. A kind is
 * written in the jobs table, so names are never reused for another query.
 */
#include "jobs/jobs.h"

#include "forward/hooks.h"
#include "jobs/reconcile.h"

#include <string.h>

static const struct {
    const char *kind;
    query_fn run;
    int confirms; /* its answer is a confirmation of its event */
} job_kinds[] = {
    {"baidu.find_order", baidu_query_find_order, 1},
    {"baidu.find_refund", baidu_query_find_refund, 1},
    {"alipay.trade_query", alipay_query_trade, 1},
    {"alipay.refund_query", alipay_query_refund, 1},
    {"gateway.trade_query", gateway_query_trade, 1},
    {"baidu.tp_token", baidu_query_tp_token, 0},
    {"baidu.app_token", baidu_query_app_token, 0},
    {"baidu.app_refresh", baidu_query_app_refresh, 0},
    {"baidu.getbindservice", baidu_query_bindservice, 0},
    {"baidu.account_audit", baidu_query_account_audit, 0},
    /* develop config and payment service audits: one call, two states */
    {"baidu.develop_config_audit", baidu_query_pay_service_audit, 0},
    {"baidu.pay_service_audit", baidu_query_pay_service_audit, 0},
    /* a reconciliation sweep of one (app, day): its context is the day */
    {"baidu.orderlist", reconcile_sweep, 0},
};

int jobs_kind_confirms(const char *kind)
{
    size_t i;

    for (i = 0; i < sizeof(job_kinds) / sizeof(job_kinds[0]); i++)
        if (strcmp(job_kinds[i].kind, kind) == 0)
            return job_kinds[i].confirms;
    return 0;
}

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
