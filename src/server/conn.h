/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A connection: one accepted RC queue pair, its slots (the client's
 * credits), its receive and send message buffers, and the devices opened
 * on it. The connections of one client session (same session uuid) may
 * live on several workers; what they share is the registry's (registry.h).
 * Owned by one worker thread; every function here runs on that thread.
 *
 * States:
 *   ACCEPTING  accept sent, receives posted; messages may already arrive
 *   LIVE       ESTABLISHED seen
 *   DRAINING   server shutdown: new requests ignored, waiting for the busy
 *              slots to answer, then disconnect
 *   CLOSING    disconnected (or QP in error): waiting until no WR and no
 *              io_uring op refers to our memory, then destroyed; once no
 *              backing IO is in flight it leaves the registry ("drained")
 *
 * Independent of the state, a HELLO or OPEN answer may be deferred while the
 * connection waits for others to drain (registry.h: fencing, takeover).
 *
 * The code is split by concern: conn_handshake.c (accept, HELLO, OPEN,
 * CLOSE, KEEPALIVE, keepalive enforcement), conn_io.c (the IO path and the
 * slot state machine), conn_teardown.c (closing, draining, destruction).
 */
#ifndef IBNBD_SERVER_CONN_H
#define IBNBD_SERVER_CONN_H

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>
#include <stdbool.h>

#include "proto.h"

struct worker;
struct worker_dev;
struct conn;

/*
 * Builds the connection for a connect request (QP on the worker's CQ, slots
 * registered as MR and io_uring fixed buffer at table index idx, receives
 * posted) and sends the accept. On failure returns -errno; the caller
 * rejects with that status and destroys the id.
 */
int conn_create(struct worker *w, struct worker_dev *dev, unsigned int idx,
		struct rdma_cm_id *id, const struct ibnbd_conn_params *req, const char *peer,
		struct conn **out);
/* Frees everything; only when conn_reapable(), or before accept. */
void conn_destroy(struct conn *c);
/* Rejects a connect request with status in the reply (no connection). */
void conn_reject(struct rdma_cm_id *id, int status);

void conn_on_wc(struct conn *c, const struct ibv_wc *wc);
void conn_on_io(struct conn *c, uint32_t slot, int res);
void conn_on_cm_event(struct conn *c, const struct rdma_cm_event *ev);
/*
 * The worker's eventfd fired: close the connection if the registry says it
 * was superseded, retry a deferred HELLO/OPEN answer if it waits for another.
 */
void conn_on_kick(struct conn *c);
/* Every tick: keepalive enforcement. */
void conn_tick(struct conn *c);
/* Posts the answers queued this round in one go (one doorbell); the worker
 * calls it for each connection on its flush_list before it waits again.
 * Returns the next connection on the list. */
struct conn *conn_flush(struct conn *c);
/* Server shutdown: finish what is in flight, then disconnect. */
void conn_shutdown(struct conn *c);
/* Periodic: timeouts of DRAINING/CLOSING. True when it can be destroyed. */
bool conn_reapable(struct conn *c);
bool conn_closing(const struct conn *c);
/* Logs what a connection that keeps a stopping worker waiting waits for. */
void conn_log_waiting(const struct conn *c);
/* CQ entries a connection's QP may generate (sq + rq depth), before and after. */
int conn_cq_need(const struct ibnbd_conn_params *negotiated);
int conn_cq_held(const struct conn *c);

#endif
