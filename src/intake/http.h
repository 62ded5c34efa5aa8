/*
 * http.h: the HTTP intake (libmicrohttpd, epoll, a thread pool): routing,
 * limits, the built-in health and metrics endpoints, and the suspend /
 * resume dance that lets a request wait for its commit without holding a
 * thread.
 */
#ifndef PAYHOOKD_HTTP_H
#define PAYHOOKD_HTTP_H

#include "runtime.h"
#include "store/store.h"

struct http;

/*
 * Start serving. The fixed settings (listen address, threads, connection
 * limit, timeout) come from the runtime current at start; per-request ones
 * (routes, max_body, trusted proxies, the per-address limit) are read from
 * the runtime current when each request begins. listen_fd >= 0 is an
 * inherited socket (systemd socket activation).
 */
int http_start(struct runtime_cell *cell, struct store *store, int listen_fd, struct http **out,
               char *err, size_t errlen);

/* Stop accepting new connections (requests on open ones still complete). */
void http_quiesce(struct http *h);

/* Requests begun and not yet answered. */
long http_in_flight(struct http *h);

/* Close all connections and stop; NULL-safe; returns NULL. Only call once
 * nothing waits for the store. */
struct http *http_stop(struct http *h);

#endif
