/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The server's sessions as `list-sessions` and the metrics show them: the
 * registry's connections (one entry each) summed per session uuid, read
 * under the registry's lock with the entries' relaxed counters; a session's
 * IO counts include its connections that have left (its reconnects).
 * Connections before HELLO have no session: each is a row by itself.
 */
#ifndef IBNBD_SERVER_SESSIONS_H
#define IBNBD_SERVER_SESSIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "metrics.h"
#include "registry.h"
#include "server_conf.h"

struct session_row {
	char host_id[IBNBD_HOST_ID_MAX];
	uint8_t uuid[16];
	bool zero_uuid; /* a connection without a session: a row by itself */
	unsigned int conns, superseded;
	char peers[8][64];
	unsigned int npeers;
	unsigned int handles[SERVER_MAX_EXPORTS];
	bool rw[SERVER_MAX_EXPORTS];
	uint64_t slot_bytes;
	struct io_counts io; /* of its connections, those that left too (registry.h) */
};

struct session_rows {
	struct session_row *v;
	size_t n, cap;
	bool oom;
};

/* Fills l (zeroed by the caller) with a row per session now. 0, or
 * -ENOMEM with the rows that fitted (l->oom); session_rows_free() either way. */
int session_rows_collect(struct registry *r, struct session_rows *l);
void session_rows_free(struct session_rows *l);

#endif
