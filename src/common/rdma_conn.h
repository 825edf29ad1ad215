/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Thin librdmacm / libibverbs wrappers for both daemons and the tools.
 * They exist to normalize errors once: librdmacm returns -1 and sets errno,
 * ibv_post_* return a positive errno, ibv_reg_mr returns NULL + errno. Every
 * function here returns 0 (or a count) on success and -errno on failure.
 *
 * Event channels and completion channels are switched to non-blocking, so an
 * event loop can poll their fds (the server polls them through io_uring) and
 * drain them with rdma_conn_get_event() / rdma_conn_cq_event() until -EAGAIN.
 */
#ifndef IBNBD_RDMA_CONN_H
#define IBNBD_RDMA_CONN_H

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "endpoint.h"

int rdma_conn_channel_create(struct rdma_event_channel **out);
/* Tolerates NULL. */
void rdma_conn_channel_destroy(struct rdma_event_channel *ch);
/* Next CM event, or -EAGAIN when none is pending. Ack with rdma_ack_cm_event. */
int rdma_conn_get_event(struct rdma_event_channel *ch, struct rdma_cm_event **ev);
/* Waits up to timeout_ms (-1: forever) for the next event; -ETIMEDOUT. */
int rdma_conn_wait_event(struct rdma_event_channel *ch, int timeout_ms,
			 struct rdma_cm_event **ev);

/* Resolves ep (numeric or name) into a sockaddr for binding or connecting. */
int rdma_conn_sockaddr(const struct endpoint *ep, struct sockaddr_storage *ss, bool passive);

/* A listening id bound to ep on ch. */
int rdma_conn_listen(struct rdma_event_channel *ch, const struct endpoint *ep,
		     int backlog, struct rdma_cm_id **out);

/*
 * Client side, synchronous: creates an id on ch and resolves address and route
 * to ep, each step within timeout_ms. On success *out has a verbs context
 * ((*out)->verbs) for creating the PD, CQ and QP before rdma_conn_connect().
 */
int rdma_conn_resolve(struct rdma_event_channel *ch, const struct endpoint *ep,
		      int timeout_ms, struct rdma_cm_id **out);
/*
 * Sends the connect request with private data and waits for the answer.
 * Returns 0 when ESTABLISHED, with the accept private data copied to rep
 * (up to rep_len bytes; *got is how many arrived). A reject returns
 * -ECONNREFUSED, also with the reject private data in rep (if any);
 * -ETIMEDOUT / -EHOSTUNREACH / -ENETUNREACH otherwise.
 */
int rdma_conn_connect(struct rdma_cm_id *id, const void *pdata, uint8_t pdata_len,
		      int timeout_ms, void *rep, size_t rep_len, size_t *got);

struct rdma_conn_qp_caps {
	uint32_t max_send_wr;
	uint32_t max_recv_wr;
	uint32_t max_send_sge;
	uint32_t max_recv_sge;
	uint32_t max_inline_data;
};
/* An RC QP on id with one CQ for both directions. */
int rdma_conn_create_qp(struct rdma_cm_id *id, struct ibv_pd *pd, struct ibv_cq *cq,
			const struct rdma_conn_qp_caps *caps);

int rdma_conn_reg_mr(struct ibv_pd *pd, void *addr, size_t len, int access,
		     struct ibv_mr **out);
/* Tolerates NULL. */
void rdma_conn_dereg_mr(struct ibv_mr *mr);

/* A completion channel with a non-blocking fd. */
int rdma_conn_comp_channel_create(struct ibv_context *ctx, struct ibv_comp_channel **out);
/*
 * Takes one pending CQ event off ch, acks it and re-arms the CQ.
 * Returns 0 with *cq set, or -EAGAIN when no event is pending. After it, the
 * caller must poll the CQ empty (events are only sent for new completions
 * after the re-arm).
 */
int rdma_conn_cq_event(struct ibv_comp_channel *ch, struct ibv_cq **cq);

static inline int rdma_conn_post_send(struct ibv_qp *qp, struct ibv_send_wr *wr)
{
	struct ibv_send_wr *bad;

	return -ibv_post_send(qp, wr, &bad);
}

static inline int rdma_conn_post_recv(struct ibv_qp *qp, struct ibv_recv_wr *wr)
{
	struct ibv_recv_wr *bad;

	return -ibv_post_recv(qp, wr, &bad);
}

/* "a.b.c.d:port" of the peer of id, for logs. */
void rdma_conn_peer_str(struct rdma_cm_id *id, char *buf, size_t len);

#endif
