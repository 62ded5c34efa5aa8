/*
 * reconcile.h: payhookctl reconcile (a sweep now, through the daemon; the
 * day's report).
 */
#ifndef PAYHOOKD_CTL_RECONCILE_H
#define PAYHOOKD_CTL_RECONCILE_H

#include <stdio.h>

/* payhookctl reconcile --app NAME --date D | --report --date D [--json] */
int ctl_reconcile(int argc, char **argv, const char *config);
void ctl_reconcile_help(FILE *f);

#endif
