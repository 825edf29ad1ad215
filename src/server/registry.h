/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The registry: what every connection of the server holds, across workers.
 * It answers the two questions one worker cannot answer alone:
 *
 *   - Fencing: is an earlier connection with the same (session uuid, conn
 *     index) still around? A client reconnects with the same pair after it
 *     lost a connection the server may not have noticed (a cut cable). The
 *     old one is marked superseded and must drain its backing IO before the
 *     new one may start IO, so no stale write lands after a newer one.
 *   - Writers: which client session holds an export read-write? One session
 *     at a time (unless the export is shared); a new session of the same host
 *     (a restarted client daemon) takes the role over from the old one.
 *
 * A client session is its session uuid; a connection with an all-zero uuid
 * (a client without reconnect) is a session by itself, except that for the
 * writer rule zero-uuid connections with the same host id count as one
 * (such clients open one zero-uuid connection per device queue).
 *
 * One mutex guards everything here; it is taken only on control events
 * (connect, HELLO, OPEN, CLOSE, drained, kicks), never per IO. An entry lives
 * inside its session and is touched by other threads only under the mutex.
 * Cross-thread requests ("close that connection", "the connection you wait
 * for is gone") are kicks: a write to the owning worker's eventfd, after
 * which that worker asks the registry what changed.
 */
#ifndef IBNBD_SERVER_REGISTRY_H
#define IBNBD_SERVER_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ibnbd/proto.h"
#include "metrics.h"
#include "server_conf.h"

#define REGISTRY_UUID_STR 37 /* "01234567-89ab-cdef-0123-456789abcdef" + NUL */

struct registry;

struct reg_entry {
	/* Set by the owner before registry_join(), then constant. */
	uint8_t uuid[16];
	uint16_t conn_index, conn_count;
	int kick_fd; /* the owning worker's eventfd */
	char peer[64];

	/* Under the registry mutex. */
	bool joined;
	bool superseded; /* someone waits for this connection to drain */
	bool admitted;   /* past registry_admit(): counted against the limits */
	uint64_t slot_bytes; /* the pinned slot memory it was admitted with */
	bool waiting;    /* this connection waits for others to drain */
	char host_id[IBNBD_HOST_ID_MAX];
	char fence_reason[256]; /* why it was superseded, for its owner's log */
	uint8_t rw[SERVER_MAX_EXPORTS]; /* read-write handles per export index */
	/* Written by the owner only (relaxed atomics), read by visitors
	 * (registry_visit()) for `ibnbd-server list-sessions`: its handles per
	 * export index, read-only or not, and what its IO did. */
	uint8_t opened[SERVER_MAX_EXPORTS];
	struct io_counts io;
	struct reg_entry *prev, *next;
};

int registry_create(struct registry **out);
/* The limits registry_admit() enforces (a zero field: no limit). Before
 * any connection joins. */
void registry_set_limits(struct registry *r, const struct server_limits *l);

/*
 * A connection whose host has said HELLO (and proved who it is) asks for
 * its slot memory: 0 and it is counted until it leaves, or the
 * IBNBD_LIMIT_* it would exceed (why describes it, for the log). Counted
 * are the joined connections admitted before: in all, of its host, the
 * host's other sessions, and their slot memory.
 */
int registry_admit(struct registry *r, struct reg_entry *e, uint64_t slot_bytes, char *why,
		   size_t why_len);
/* What is admitted now (for the log and the tests). */
void registry_usage(struct registry *r, unsigned int *conns, uint64_t *slot_bytes);
/* Calls fn for every joined connection, under the registry lock: fn must
 * not call back into the registry. For the metrics. */
void registry_visit(struct registry *r, void (*fn)(const struct reg_entry *e, void *arg),
		    void *arg);
/*
 * The same, then (under the same lock, so that nothing is counted twice)
 * calls past for the IO of every session's connections that have left: a
 * session's IO counts add up across its reconnects. The REGISTRY_PAST_SESSIONS
 * sessions seen last are remembered.
 */
#define REGISTRY_PAST_SESSIONS 1024
void registry_visit_all(struct registry *r, void (*fn)(const struct reg_entry *e, void *arg),
			void (*past)(const uint8_t uuid[16], const struct io_counts *io, void *arg),
			void *arg);
/* Tolerates NULL. Every entry must have left. */
void registry_destroy(struct registry *r);

/*
 * A new connection (owner thread, before it is accepted). Earlier
 * connections with the same non-zero session uuid and conn index are marked
 * superseded and their owners kicked.
 */
void registry_join(struct registry *r, struct reg_entry *e);
/*
 * The connection is closing and no backing IO of it is in flight, or it is
 * being destroyed: it holds nothing any more. Wakes the waiters. Idempotent.
 */
void registry_leave(struct registry *r, struct reg_entry *e);
void registry_set_host(struct registry *r, struct reg_entry *e, const char *host_id);

/*
 * True while an earlier connection this one superseded has not drained; the
 * HELLO_RSP waits for that. Marks e as waiting (it will be kicked).
 */
bool registry_fence_pending(struct registry *r, struct reg_entry *e);

/*
 * A read-write OPEN of export index idx by e: 0 granted (counted in e->rw),
 * -EBUSY another session writes it (holder describes it), or 1: a takeover
 * is under way (the old session of the same host has been told to close);
 * call again when kicked.
 */
int registry_open_rw(struct registry *r, struct reg_entry *e, unsigned int idx, bool shared,
		     const char *export_name, char *holder, size_t holder_len);
/* A read-write handle of export idx was closed. */
void registry_close_rw(struct registry *r, struct reg_entry *e, unsigned int idx);
/* e no longer waits (its deferred answer was sent, or it is closing). */
void registry_stop_waiting(struct registry *r, struct reg_entry *e);

/* True if someone superseded e; why gets the reason. */
bool registry_superseded(struct registry *r, struct reg_entry *e, char *why, size_t why_len);

/* A cookie for a new open (proto.h: handles and cookies): never 0, never
 * the same twice in this process, and from a random start so that another
 * server process does not give out the same ones. */
uint64_t registry_open_cookie(struct registry *r);

bool registry_uuid_is_zero(const uint8_t uuid[16]);
void registry_uuid_str(const uint8_t uuid[16], char out[REGISTRY_UUID_STR]);

#endif
