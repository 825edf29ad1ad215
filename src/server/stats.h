/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Server counters. Each worker owns one set and is its only writer; the main
 * thread sums them for SIGUSR1 and the exit report. Relaxed atomic stores
 * and loads keep that race-free without a lock or a locked instruction on
 * the IO path.
 */
#ifndef IBNBD_SERVER_STATS_H
#define IBNBD_SERVER_STATS_H

#include <stdint.h>

struct server_stats {
	uint64_t reads;
	uint64_t writes;
	uint64_t fua_writes;
	uint64_t flushes;
	uint64_t discards;
	uint64_t write_zeroes;
	uint64_t rejected;  /* requests answered with a validation error */
	uint64_t dropped;   /* connections closed for a protocol violation */
	uint64_t io_errors; /* backing IO that failed */
	uint64_t read_bytes;
	uint64_t write_bytes;
	uint64_t connections; /* accepted, total */
	uint64_t keepalive_timeouts; /* connections dropped after keepalive_timeout of silence */
	uint64_t superseded; /* connections closed for a reconnect or a writer takeover */
	uint64_t busy_opens; /* read-write OPENs refused: another session writes */
	uint64_t auth_failures; /* hosts refused: not listed, or a wrong key */
	uint64_t handshake_timeouts; /* connections that did not finish HELLO in time */
	uint64_t denied_opens; /* OPENs of an export whose allow list lacks the host */
	uint64_t handshakes_refused; /* connects refused: max_handshakes reached */
	uint64_t limits_refused; /* HELLOs and OPENs refused by a server.conf limit */
};

#define STATS_FIELDS(X)                                                        \
	X(reads) X(writes) X(fua_writes) X(flushes) X(discards) X(write_zeroes) \
	X(rejected) X(dropped) X(io_errors) X(read_bytes) X(write_bytes)        \
	X(connections) X(keepalive_timeouts) X(superseded) X(busy_opens)        \
	X(auth_failures) X(handshake_timeouts) X(denied_opens) X(handshakes_refused) \
	X(limits_refused)

/* Single writer: a plain read of our own counter, a relaxed store. */
static inline void stat_add(uint64_t *c, uint64_t n)
{
	__atomic_store_n(c, *c + n, __ATOMIC_RELAXED);
}

static inline uint64_t stat_read(const uint64_t *c)
{
	return __atomic_load_n(c, __ATOMIC_RELAXED);
}

#endif
