/* SPDX-License-Identifier: GPL-2.0-only */
/* The server's /metrics: what a scrape reports (metrics_http.h serves it). */
#ifndef IBNBD_SERVER_METRICS_H
#define IBNBD_SERVER_METRICS_H

#include "metrics.h"

struct export;
struct registry;
struct worker;

struct server_metrics_src {
	struct worker *workers;
	unsigned int nworkers;
	struct export *const *exports;
	const unsigned int *nexports; /* the workers' (worker_nexports()) */
	struct registry *registry;
};

/* A metrics_fill_fn; arg is a struct server_metrics_src. */
void server_metrics_fill(void *arg, struct prom *p);

#endif
