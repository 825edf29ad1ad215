/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A session: one accepted RC connection, its slots (the client's credits),
 * its receive/send message buffers, and the devices it opened. Owned by one
 * worker thread; every function here runs on that thread.
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
 */
#ifndef IBNBD_SERVER_SESSION_H
#define IBNBD_SERVER_SESSION_H

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>
#include <stdbool.h>

#include "proto.h"

struct worker;
struct session;

/*
 * Builds the session for a connect request (QP on the worker's CQ, slots
 * registered as MR and io_uring fixed buffer at table index idx, receives
 * posted) and sends the accept. On failure returns -errno; the caller
 * rejects with that status and destroys the id.
 */
int session_create(struct worker *w, unsigned int idx, struct rdma_cm_id *id,
		   const struct ibnbd_conn_params *req, const char *peer, struct session **out);
/* Frees everything; only when session_reapable(), or before accept. */
void session_destroy(struct session *s);

void session_on_wc(struct session *s, const struct ibv_wc *wc);
void session_on_io(struct session *s, uint32_t slot, int res);
void session_on_cm_event(struct session *s, const struct rdma_cm_event *ev);
/*
 * The worker's eventfd fired: close the session if the registry says it was
 * superseded, retry a deferred HELLO/OPEN answer if it waits for another.
 */
void session_on_kick(struct session *s);
/* Every second: keepalive enforcement. */
void session_tick(struct session *s);
/* Posts the answers queued this round in one go (one doorbell); the worker
 * calls it for each session on its flush_list before it waits again.
 * Returns the next session on the list. */
struct session *session_flush(struct session *s);
/* Server shutdown: finish what is in flight, then disconnect. */
void session_shutdown(struct session *s);
/* Periodic: timeouts of DRAINING/CLOSING. True when it can be destroyed. */
bool session_reapable(struct session *s);
bool session_closing(const struct session *s);
/* CQ entries a session's QP may generate (sq + rq depth), before and after. */
int session_cq_need(const struct ibnbd_conn_params *negotiated);
int session_cq_held(const struct session *s);

#endif
