/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The /metrics endpoint of both daemons: Prometheus text exposition over
 * HTTP, served by libmicrohttpd on its own thread (it never touches the IO
 * path: the fill callback reads the workers' counters with relaxed loads).
 */
#ifndef IBNBD_METRICS_HTTP_H
#define IBNBD_METRICS_HTTP_H

#include <stddef.h>

#include "metrics.h"

struct metrics_server;

/* Writes the whole exposition into p; called on the HTTP thread, once per
 * scrape (scrapes are serialized). */
typedef void (*metrics_fill_fn)(void *arg, struct prom *p);

/*
 * Listens on addr ("ADDR:PORT", "[V6ADDR]:PORT", a host name for ADDR
 * too) and answers GET /metrics. Returns 0 and *out, or -errno with err
 * saying what to check (an address in use, a malformed address).
 */
int metrics_server_start(const char *addr, metrics_fill_fn fill, void *arg,
			 struct metrics_server **out, char *err, size_t errlen);
/* Stops serving and frees; tolerates NULL. */
void metrics_server_stop(struct metrics_server *m);

/* Checks the form of a --metrics / metrics = value without binding. */
int metrics_addr_check(const char *addr, char *err, size_t errlen);

#endif
