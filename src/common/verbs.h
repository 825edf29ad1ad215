/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * libibverbs wrappers for both daemons and the tools, normalizing errors
 * once: ibv_post_* return a positive errno, ibv_reg_mr returns NULL and sets
 * errno. Every function here returns 0 (or a count) on success and -errno
 * on failure.
 *
 * Completion channels are switched to non-blocking, so an event loop can
 * poll their fds through io_uring and take their events with
 * verbs_cq_event() until -EAGAIN.
 */
#ifndef IBNBD_VERBS_H
#define IBNBD_VERBS_H

#include <infiniband/verbs.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

int verbs_reg_mr(struct ibv_pd *pd, void *addr, size_t len, int access, struct ibv_mr **out);
/* The same, the memory seen by the device (local SGEs and the peer) at
 * addresses from 0: no virtual address of ours goes on the wire. */
int verbs_reg_mr_zero_based(struct ibv_pd *pd, void *addr, size_t len, int access,
			    struct ibv_mr **out);
/* Tolerates NULL. */
void verbs_dereg_mr(struct ibv_mr *mr);

/* Whether this process may pin memory past RLIMIT_MEMLOCK (CAP_IPC_LOCK). */
bool verbs_may_pin_past_limit(void);
/* The locked-memory limit registrations count against, in bytes; 0 when
 * there is none (unlimited, or CAP_IPC_LOCK). */
uint64_t verbs_pin_limit(void);
/* Why registering len bytes failed with ret, for people: strerror, and
 * for an allocation failure under a locked-memory limit, that limit and
 * what raises it. */
void verbs_reg_why(int ret, size_t len, char *buf, size_t buflen);

/* A completion channel with a non-blocking fd. */
int verbs_comp_channel_create(struct ibv_context *ctx, struct ibv_comp_channel **out);
/*
 * Takes one pending CQ event off ch, acks it and re-arms the CQ.
 * Returns 0 with *cq set, or -EAGAIN when no event is pending. After it, the
 * caller must poll the CQ empty (events are only sent for new completions
 * after the re-arm).
 */
int verbs_cq_event(struct ibv_comp_channel *ch, struct ibv_cq **cq);
/* The same without the re-arm: a polling loop (busypoll.h) arms its CQs
 * only when it is about to sleep. */
int verbs_cq_event_take(struct ibv_comp_channel *ch, struct ibv_cq **cq);

static inline int verbs_post_send(struct ibv_qp *qp, struct ibv_send_wr *wr)
{
	struct ibv_send_wr *bad;

	return -ibv_post_send(qp, wr, &bad);
}

static inline int verbs_post_recv(struct ibv_qp *qp, struct ibv_recv_wr *wr)
{
	struct ibv_recv_wr *bad;

	return -ibv_post_recv(qp, wr, &bad);
}

#endif
