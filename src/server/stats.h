/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Server counters. Each worker owns one set and is its only writer; the main
 * thread sums them for SIGUSR1 and the exit report, the metrics thread for
 * a scrape (stat_add(), metrics.h: no lock on the IO path).
 */
#ifndef IBNBD_SERVER_STATS_H
#define IBNBD_SERVER_STATS_H

#include <stdint.h>

#include "metrics.h"

/* Besides these, what the IO did is counted per export (export_stats). */
struct server_stats {
	uint64_t fua_writes;
	uint64_t rejected;  /* requests answered with a validation error */
	uint64_t dropped;   /* connections closed for a protocol violation */
	uint64_t io_errors; /* backing IO that failed */
	uint64_t connections; /* accepted, total */
	uint64_t keepalive_timeouts; /* connections dropped after keepalive_timeout of silence */
	uint64_t superseded; /* connections closed for a reconnect or a writer takeover */
	uint64_t busy_opens; /* read-write OPENs refused: another session writes */
	uint64_t auth_failures; /* hosts refused: not listed, or a wrong key */
	uint64_t handshake_timeouts; /* connections that did not finish HELLO in time */
	uint64_t denied_opens; /* OPENs of an export whose allow list lacks the host */
	uint64_t handshakes_refused; /* connects refused: max_handshakes(_per_address) */
	uint64_t limits_refused; /* HELLOs and OPENs refused by a server.conf limit */
};

#define STATS_FIELDS(X)                                                        \
	X(fua_writes) X(rejected) X(dropped) X(io_errors)                      \
	X(connections) X(keepalive_timeouts) X(superseded) X(busy_opens)        \
	X(auth_failures) X(handshake_timeouts) X(denied_opens) X(handshakes_refused) \
	X(limits_refused)

/* Per export, per worker: what its clients' IO did (metrics). */
struct export_stats {
	struct io_counts io;
	uint64_t io_errors;
	struct lat_hist backing; /* a request's arrival to its backing IO's end */
};

#endif
