/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * RDMA connection manager (librdmacm) wrappers for both daemons and the
 * tools. They exist to normalize errors once: librdmacm returns -1 and sets
 * errno; every function here returns 0 on success and -errno on failure.
 *
 * Event channels are switched to non-blocking, so an event loop can poll
 * their fds (the daemons poll them through io_uring) and drain them with
 * cm_get_event() until -EAGAIN.
 */
#ifndef IBNBD_CM_H
#define IBNBD_CM_H

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "endpoint.h"

int cm_channel_create(struct rdma_event_channel **out);
/* Tolerates NULL. */
void cm_channel_destroy(struct rdma_event_channel *ch);
/* Next CM event, or -EAGAIN when none is pending. Ack with rdma_ack_cm_event. */
int cm_get_event(struct rdma_event_channel *ch, struct rdma_cm_event **ev);
/* Waits up to timeout_ms (-1: forever) for the next event; -ETIMEDOUT. */
int cm_wait_event(struct rdma_event_channel *ch, int timeout_ms, struct rdma_cm_event **ev);

/* Resolves ep (numeric or name) into a sockaddr for binding or connecting. */
int cm_sockaddr(const struct endpoint *ep, struct sockaddr_storage *ss, bool passive);

/* A listening id bound to ep on ch. */
int cm_listen(struct rdma_event_channel *ch, const struct endpoint *ep, int backlog,
	      struct rdma_cm_id **out);

/*
 * Client side, synchronous: creates an id on ch and resolves address and route
 * to ep, each step within timeout_ms. On success *out has a verbs context
 * ((*out)->verbs) for creating the PD, CQ and QP before cm_connect().
 */
int cm_resolve(struct rdma_event_channel *ch, const struct endpoint *ep, int timeout_ms,
	       struct rdma_cm_id **out);
/*
 * Sends the connect request with private data and waits for the answer.
 * Returns 0 when ESTABLISHED, with the accept private data copied to rep
 * (up to rep_len bytes; *got is how many arrived). A reject returns
 * -ECONNREFUSED, also with the reject private data in rep (if any);
 * -ETIMEDOUT / -EHOSTUNREACH / -ENETUNREACH otherwise.
 */
int cm_connect(struct rdma_cm_id *id, const void *pdata, uint8_t pdata_len, int timeout_ms,
	       void *rep, size_t rep_len, size_t *got);

struct cm_qp_caps {
	uint32_t max_send_wr;
	uint32_t max_recv_wr;
	uint32_t max_send_sge;
	uint32_t max_recv_sge;
	uint32_t max_inline_data;
};
/* An RC QP on id with one CQ for both directions. */
int cm_create_qp(struct rdma_cm_id *id, struct ibv_pd *pd, struct ibv_cq *cq,
		 const struct cm_qp_caps *caps);

/* "a.b.c.d:port" of the peer of id, for logs. */
void cm_peer_str(struct rdma_cm_id *id, char *buf, size_t len);

#endif
