/*
 * inspect.h: payhookctl's reading commands: events, show, jobs, deliveries,
 * hooks (the listing) and stats. Each opens the store read-only (so it is
 * safe beside the running daemon), prints an aligned table, or with --json
 * one JSON document whose keys are the column names of design.md's tables
 * and views. Each returns an exit status: 0 done, 1 failed (an unknown
 * event or hook is a failure, not an empty result), 2 usage (the message
 * names the argument).
 */
#ifndef PAYHOOKD_CTL_INSPECT_H
#define PAYHOOKD_CTL_INSPECT_H

#include <stdio.h>

int ctl_events(int argc, char **argv, const char *config);
int ctl_show(int argc, char **argv, const char *config);
int ctl_jobs(int argc, char **argv, const char *config);
int ctl_tokens(int argc, char **argv, const char *config);
int ctl_deliveries(int argc, char **argv, const char *config);
/* payhookctl hooks [--json] (the listing; `hooks enable` is actions.c's) */
int ctl_hooks_list(int argc, char **argv, const char *config);
int ctl_stats(int argc, char **argv, const char *config);

void ctl_events_help(FILE *f);
void ctl_show_help(FILE *f);
void ctl_jobs_help(FILE *f);
void ctl_tokens_help(FILE *f);
void ctl_deliveries_help(FILE *f);
void ctl_stats_help(FILE *f);
void ctl_hooks_help(FILE *f);

#endif
