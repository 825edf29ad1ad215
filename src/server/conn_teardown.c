// SPDX-License-Identifier: GPL-2.0-only
/*
 * How a server connection ends (conn.h): closing on a fault or a peer's
 * disconnect, draining at shutdown, and destruction once no WR and no
 * io_uring op refers to its memory any more.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "clock.h"
#include "cm.h"
#include "conn_priv.h"
#include "log.h"
#include "verbs.h"

void conn_set_state(struct conn *c, enum conn_state st)
{
	c->state = st;
	c->state_since_ms = clock_now_ms();
}

/* Whether a signaled WR is posted and not yet completed: its completion
 * will come, and retire everything before it. */
static bool sq_signal_pending(const struct conn *c)
{
	return (int32_t)(c->sq_last_signaled - c->sq_done) >= 0 && sq_used(c);
}

/*
 * On a QP in error: WRs still queued complete with a flush error, but
 * unsignaled ones that completed before say nothing. Unless a signaled WR
 * is still to complete, post a signaled marker (the QP has an SQ entry
 * for it beyond sq_depth): its flush completion retires everything.
 */
static void sq_drain(struct conn *c)
{
	struct ibv_send_wr wr = {
		.wr_id = conn_wrid(c, WRID_SEND, c->sq_head),
		.opcode = IBV_WR_SEND,
		.send_flags = IBV_SEND_SIGNALED,
	};

	if (!sq_used(c) || sq_signal_pending(c))
		return;
	if (verbs_post_send(c->id->qp, &wr)) {
		/* Nothing more will complete: the QP is destroyed before its
		 * memory is freed, and stale completions are dropped by
		 * their generation. */
		c->sq_done = c->sq_head;
		return;
	}
	c->sq_last_signaled = c->sq_head++;
}

/*
 * CLOSING and no backing IO in flight: nothing of ours can reach an export
 * any more, so what we held (writer role, our (session, conn index)) is
 * released and whoever waits for it may go on.
 */
void conn_check_drained(struct conn *c)
{
	if (c->state == CONN_CLOSING && !c->io_inflight && c->reg.joined) {
		registry_leave(c->w->shared->registry, &c->reg);
		log_debug(LOG_CAT_PROTO, "%s: drained", c->name);
	}
}

/*
 * A connection that failed on the wire (a completion error: the link went
 * down, the peer vanished) says goodbye a little later: its QP is in error
 * now, so nothing more goes out or lands, but the CM's disconnect request
 * waits CONN_DREQ_DELAY_MS. On soft-RoCE a CM message sent in the moment
 * after a carrier loss puts the device's CM queue pair into error for good
 * (rxe treats the netdev's transient NET_XMIT_CN as fatal), and a failed
 * connection would otherwise send its DREQ exactly then; on hardware the
 * delay costs nothing, as the peer sees the loss by itself.
 */
#define CONN_DREQ_DELAY_MS 300

void conn_fail(struct conn *c, const char *why)
{
	if (c->state == CONN_CLOSING)
		return;
	c->dreq_due_ms = clock_now_ms() + CONN_DREQ_DELAY_MS;
	conn_close(c, why);
}

void conn_close(struct conn *c, const char *why)
{
	struct ibv_qp_attr attr = { .qp_state = IBV_QPS_ERR };

	if (c->state == CONN_CLOSING)
		return;
	log_info("%s: closing: %s", c->name, why);
	conn_set_state(c, CONN_CLOSING);
	c->w->nclosing++;
	if (c->deferred) {
		c->deferred = DEFER_NONE; /* the answer is never sent */
		registry_stop_waiting(c->w->shared->registry, &c->reg);
	}
	/* Answers queued this round go out first (or are flushed with the
	 * rest), so that their sequence numbers are retired by sq_drain(). */
	if (c->batch_head) {
		if (verbs_post_send(c->id->qp, c->batch_head))
			c->sq_done = c->sq_head; /* not posted: nothing will complete */
		c->batch_head = c->batch_tail = NULL;
	}
	if (!c->dreq_due_ms)
		rdma_disconnect(c->id); /* may fail if never connected; ERR below anyway */
	if (c->qp_created) {
		ibv_modify_qp(c->id->qp, &attr, IBV_QP_STATE);
		sq_drain(c);
	}
	conn_check_drained(c);
}

void conn_violation(struct conn *c, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_warn("%s: protocol violation, dropping the connection: %s", c->name, msg);
	stat_add(&c->w->stats.dropped, 1);
	conn_close(c, "protocol violation");
}

void conn_maybe_finish_drain(struct conn *c)
{
	if (c->state == CONN_DRAINING && c->busy == 0)
		conn_close(c, "server shutting down, in-flight IO finished");
}

void conn_shutdown(struct conn *c)
{
	if (c->state == CONN_CLOSING || c->state == CONN_DRAINING)
		return;
	conn_set_state(c, CONN_DRAINING);
	conn_maybe_finish_drain(c);
}

bool conn_closing(const struct conn *c)
{
	return c->state == CONN_CLOSING;
}

bool conn_reapable(struct conn *c)
{
	int64_t now = clock_now_ms(), age = now - c->state_since_ms;

	if (c->dreq_due_ms && now >= c->dreq_due_ms) {
		rdma_disconnect(c->id);
		c->dreq_due_ms = 0;
	}
	if (c->dreq_due_ms)
		return false;
	if (c->state == CONN_DRAINING && age > CONN_DRAIN_TIMEOUT_MS)
		conn_close(c, "shutdown: in-flight IO did not finish in time");
	if (c->state != CONN_CLOSING || c->io_inflight)
		return false; /* the kernel still writes to, or reads from, slots */
	/*
	 * Flush completions of the QP in error retire posted work requests.
	 * Some providers don't flush the receive queue, and soft-RoCE now and
	 * then leaves a send queue unflushed for good; the QP is destroyed
	 * before its memory is freed (after which the device touches none of
	 * it), and stale completions are dropped by their generation, so
	 * waiting a bit is enough.
	 */
	return (c->rq_posted == 0 && sq_used(c) == 0) || age > CONN_FLUSH_TIMEOUT_MS;
}

void conn_log_waiting(const struct conn *c)
{
	static const char *const names[] = { "accepting", "live", "draining", "closing" };

	log_warn("%s: still %s after %lld ms: %u backing IO(s) in flight, %u send(s) not completed, %u receive(s) posted%s",
		 c->name, names[c->state], (long long)(clock_now_ms() - c->state_since_ms),
		 c->io_inflight, sq_used(c), c->rq_posted,
		 c->dreq_due_ms ? ", disconnect pending" : "");
}

void conn_reject(struct rdma_cm_id *id, int status)
{
	struct ibnbd_conn_params p = { .version = IBNBD_PROTO_VERSION, .status = status };
	struct ibnbd_conn_rep rep;

	ibnbd_conn_rep_encode(&rep, &p);
	rdma_reject(id, &rep, sizeof(rep));
}

void conn_destroy(struct conn *c)
{
	if (!c)
		return;
	if (c->state == CONN_CLOSING)
		log_info("%s: closed after %lld ms of draining%s%s", c->name,
			 (long long)(clock_now_ms() - c->state_since_ms),
			 c->rq_posted ? " (receives were not flushed by the device)" : "",
			 sq_used(c) ? " (sends were not flushed by the device)" : "");
	registry_leave(c->w->shared->registry, &c->reg);
	if (!c->hello_done) /* still counted against max_handshakes */
		handshakes_leave(c->w->shared->handshakes, &c->peer_addr);
	/* The QP goes first: nothing is retransmitted from, or lands in, the
	 * memory freed below once it is destroyed (docs/protocol.md). */
	if (c->qp_created)
		rdma_destroy_qp(c->id);
	if (c->buf_registered) {
		struct iovec none = { 0 };

		io_uring_register_buffers_update_tag(&c->w->ring, c->idx, &none, NULL, 1);
	}
	verbs_dereg_mr(c->slot_mr);
	verbs_dereg_mr(c->msg_mr);
	if (c->pd)
		ibv_dealloc_pd(c->pd);
	if (c->slot_mem)
		munmap(c->slot_mem, c->slot_len);
	if (c->msg_mem)
		munmap(c->msg_mem, c->msg_len);
	if (c->id)
		rdma_destroy_id(c->id);
	c->dev->cq_budget += c->cq_held;
	free(c->slots);
	free(c->pending);
	free(c->answers);
	free(c);
}
