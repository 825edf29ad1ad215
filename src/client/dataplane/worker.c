// SPDX-License-Identifier: GPL-2.0-only
/*
 * A client worker: a ublk engine (ublk/engine.h) whose target sends the
 * requests of its device queues over RDMA. Worker q serves queue q of
 * every mapped device and connection q of every session (dataplane.h).
 *
 * Besides the engine's own entries (the queues' ublk commands, the mailbox
 * of worker_call()), its ring carries:
 *   UD_TICK     a timeout for keepalives, dead peers and timeouts: every
 *               TICK_MS while a connection is busy or down, else when the
 *               next keepalive is due (an idle daemon wakes once a second)
 *   UD_CONN_CQ  a poll on each attached connection's completion channel
 *   UD_CONN_CM  a poll on its CM event channel (disconnects)
 * A request's life is request.h's; this file attaches and loses
 * connections, carries control messages, keeps time, and at the end of
 * every round posts each connection's queued requests with one doorbell.
 *
 * When a connection fails, every request sent on it goes back to the head
 * of the wait FIFO and is sent again on the next connection: the generation
 * in the request id makes a late answer from the dead connection harmless,
 * and block IO is idempotent. Requests fail (EIO) only when the session has
 * been down longer than the loss timeout, or a request has waited that long.
 */
#include "dataplane/worker.h"

#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "control/session.h"
#include "dataplane/request.h"
#include "log.h"
#include "ring.h"
#include "transport/conn.h"
#include "ublk/dev.h"

#define TICK_MS 250
#define RING_ENTRIES 512
#define RING_CQ_ENTRIES 4096

/*
 * user_data of the worker's own ring entries:
 *   63..56 kind (UD_*, from UBLK_UD_KIND_TARGET up)   55..16 the session's
 *   index in the worker's table   15..0 its attach generation, so that a
 *   poll of a connection since detached is recognised and ignored.
 */
enum { UD_TICK = UBLK_UD_KIND_TARGET, UD_CONN_CQ, UD_CONN_CM, UD_CANCEL };

static inline uint64_t ud_make(unsigned int kind, uint32_t widx, uint16_t gen)
{
	return (uint64_t)kind << UBLK_UD_KIND_SHIFT | (uint64_t)widx << 16 | gen;
}

static inline uint32_t ud_widx(uint64_t ud)
{
	return (uint32_t)((ud >> 16) & ((1ull << 40) - 1));
}

static inline uint16_t ud_gen(uint64_t ud)
{
	return (uint16_t)ud;
}

struct worker {
	unsigned int index;
	struct client_tunables t;
	struct ublk_engine *engine;
	struct __kernel_timespec tick;
	/* Sessions by ws->widx; NULL entries are free. */
	struct wsess **sess;
	uint32_t nr_sess;
};

struct ublk_engine *worker_engine(struct worker *w)
{
	return w->engine;
}

unsigned int worker_index(const struct worker *w)
{
	return w->index;
}

static struct io_uring_sqe *get_sqe(struct worker *w)
{
	struct io_uring_sqe *sqe = ring_get_sqe(ublk_engine_ring(w->engine));

	if (!sqe)
		log_err("worker %u: io_uring submission queue full", w->index);
	return sqe;
}

static void arm_tick(struct worker *w)
{
	struct io_uring_sqe *sqe = get_sqe(w);

	if (!sqe)
		return;
	io_uring_prep_timeout(sqe, &w->tick, 0, 0);
	io_uring_sqe_set_data64(sqe, ud_make(UD_TICK, 0, 0));
}

static void arm_poll(struct worker *w, unsigned int kind, struct wsess *ws, int fd)
{
	struct io_uring_sqe *sqe = get_sqe(w);

	if (!sqe)
		return;
	io_uring_prep_poll_add(sqe, fd, POLLIN);
	io_uring_sqe_set_data64(sqe, ud_make(kind, ws->widx, ws->gen));
}

/* ---- answers from the connection ---- */

static void io_done(void *ctx, uint16_t slot, int status)
{
	struct wsess *ws = ctx;
	struct creq *r = slot < ws->slots.size ? ws->inflight[slot] : NULL;

	if (!r) {
		log_warn("%s: answer for idle slot %u ignored", session_peer(ws->sess), slot);
		return;
	}
	if (r == CREQ_ORPHAN) {
		/* Its request was failed by a forced unmap: now the slot is free. */
		ws->inflight[slot] = NULL;
		slot_put(&ws->slots, slot);
		return;
	}
	creq_process(ws->w, r, CREQ_EV_ANSWER, status);
}

/* ---- control messages on a connection ---- */

static void ws_lost(struct worker *w, struct wsess *ws, const char *why);
/* ws_lost()'s reason for a failed work request: the wire, or the peer, is
 * gone (session_report_failure() then waits a moment before it talks to
 * the CM). */
static const char WIRE_FAILURE[] = "a work request failed";
static void ctrl_kick(struct worker *w, struct wsess *ws);

static void ctrl_finish(struct wsess *ws, int status)
{
	struct wmsg *m = ws->ctrl_cur;

	ws->ctrl_busy = false;
	ws->keepalive_sent = false;
	ws->ctrl_cur = NULL;
	if (m)
		ublk_engine_call_done(&m->call, status);
}

/* The answer is in: done once the send completion is too (a lost
 * connection finishes it at once, see ws_detach). */
static void ctrl_answered(struct worker *w, struct wsess *ws, int status)
{
	ws->ctrl_answered = true;
	ws->ctrl_status = status;
	if (ws->ctrl_sent) {
		ctrl_finish(ws, status);
		ctrl_kick(w, ws);
	}
}

/* Sends the next control message if the credit is free. */
static void ctrl_kick(struct worker *w, struct wsess *ws)
{
	union {
		struct ibnbd_open open;
		struct ibnbd_close close;
	} msg;
	struct ibnbd_open_params op = { 0 };
	struct wmsg *m;
	size_t len;
	int ret;

	if (ws->ctrl_busy || !ws->conn || !(m = ws->ctrl_head))
		return;
	ws->ctrl_head = m->next;
	if (!ws->ctrl_head)
		ws->ctrl_tail = NULL;
	if (m->type == WM_OPEN) {
		op.access = m->access;
		snprintf(op.name, sizeof(op.name), "%s", m->name);
		ret = ibnbd_open_encode(&msg.open, &op);
		len = sizeof(msg.open);
	} else {
		ibnbd_close_encode(&msg.close, m->handle);
		ret = 0;
		len = sizeof(msg.close);
	}
	if (ret) {
		ublk_engine_call_done(&m->call, ret);
		return;
	}
	ws->ctrl_cur = m;
	ws->ctrl_busy = true;
	ws->ctrl_answered = ws->ctrl_sent = false;
	ws->ctrl_sent_ms = clock_now_ms();
	ret = conn_post_ctrl(ws->conn, &msg, len);
	if (ret)
		ws_lost(w, ws, "cannot post a control message");
}

static void send_keepalive(struct worker *w, struct wsess *ws)
{
	struct ibnbd_keepalive ka;

	ibnbd_keepalive_encode(&ka, IBNBD_MSG_KEEPALIVE, (uint64_t)clock_now_ms());
	ws->ctrl_busy = true;
	ws->ctrl_answered = ws->ctrl_sent = false;
	ws->keepalive_sent = true;
	ws->ctrl_sent_ms = clock_now_ms();
	ws->keepalive_sent_ns = clock_now_ns();
	if (conn_post_ctrl(ws->conn, &ka, sizeof(ka)))
		ws_lost(w, ws, "cannot post a keepalive");
}

static void ctrl_done(void *ctx, uint16_t type, const void *msg, size_t len)
{
	struct wsess *ws = ctx;
	struct wmsg *m = ws->ctrl_cur;
	int32_t status = -EPROTO;

	if (!ws->ctrl_busy) {
		log_warn("%s: unexpected %s ignored", session_peer(ws->sess), ibnbd_msg_name(type));
		return;
	}
	if (ws->ctrl_answered) {
		log_warn("%s: a second answer (%s) to one control message ignored",
			 session_peer(ws->sess), ibnbd_msg_name(type));
		return;
	}
	if (ws->keepalive_sent) {
		if (type != IBNBD_MSG_KEEPALIVE_RSP)
			log_warn("%s: %s where a keepalive answer was due", session_peer(ws->sess),
				 ibnbd_msg_name(type));
		else
			atomic_store_explicit(&ws->rtt_ns, clock_now_ns() - ws->keepalive_sent_ns,
					      memory_order_relaxed);
		status = 0;
	} else if (m->type == WM_OPEN && type == IBNBD_MSG_OPEN_RSP) {
		status = ibnbd_open_rsp_decode(msg, len, &m->info);
		status = status ? status : m->info.status;
	} else if (m->type == WM_CLOSE && type == IBNBD_MSG_CLOSE_RSP) {
		if (ibnbd_close_rsp_decode(msg, len, &status))
			status = -EPROTO;
	} else {
		log_warn("%s: %s does not answer the message sent", session_peer(ws->sess),
			 ibnbd_msg_name(type));
		status = -EPROTO;
	}
	ctrl_answered(ws->w, ws, status);
}

static void ctrl_sent(void *ctx)
{
	struct wsess *ws = ctx;

	if (!ws->ctrl_busy || ws->ctrl_sent)
		return;
	ws->ctrl_sent = true;
	if (ws->ctrl_answered) {
		ctrl_finish(ws, ws->ctrl_status);
		ctrl_kick(ws->w, ws);
	}
}

static const struct conn_handlers handlers = {
	.io_done = io_done, .ctrl_done = ctrl_done, .ctrl_sent = ctrl_sent,
};

/* ---- attaching and losing connections ---- */

static void cancel_polls(struct worker *w, struct wsess *ws)
{
	static const unsigned int kinds[] = { UD_CONN_CQ, UD_CONN_CM };
	unsigned int i;

	for (i = 0; i < 2; i++) {
		struct io_uring_sqe *sqe = get_sqe(w);

		if (!sqe)
			continue;
		io_uring_prep_cancel64(sqe, ud_make(kinds[i], ws->widx, ws->gen), 0);
		io_uring_sqe_set_data64(sqe, ud_make(UD_CANCEL, 0, 0));
	}
	io_uring_submit(ublk_engine_ring(w->engine));
}

/* Stops using the connection: what was sent on it waits again, at the
 * head of the FIFO and in slot order; control messages fail. */
static unsigned int ws_detach(struct worker *w, struct wsess *ws)
{
	unsigned int n;

	if (!ws->conn)
		return 0;
	n = creq_requeue_sent(w, ws);
	slot_pool_reset(&ws->slots);
	/* What an unmap is waiting for does not wait for a reconnect. */
	creq_fail_waiting(w, ws, -EIO, creq_of_stopping_queue, NULL);
	if (ws->ctrl_busy)
		ctrl_finish(ws, -ECONNRESET);
	while (ws->ctrl_head) {
		struct wmsg *m = ws->ctrl_head;

		ws->ctrl_head = m->next;
		ublk_engine_call_done(&m->call, -ECONNRESET);
	}
	ws->ctrl_tail = NULL;
	cancel_polls(w, ws);
	ws->conn = NULL;
	ws->gen++;
	return n;
}

static void ws_lost(struct worker *w, struct wsess *ws, const char *why)
{
	unsigned int n;

	if (!ws->conn)
		return;
	n = ws_detach(w, ws);
	log_err("%s: connection %u lost: %s; %u request%s will be sent again",
		session_peer(ws->sess), w->index, why, n, n == 1 ? "" : "s");
	session_report_failure(ws->sess, w->index, why, why == WIRE_FAILURE);
}

static int ws_attach(struct worker *w, struct wsess *ws, struct conn *c)
{
	uint16_t depth = conn_depth(c);
	struct creq **inflight;
	int ret;

	if (depth != ws->slots.size) {
		inflight = calloc(depth, sizeof(*inflight));
		if (!inflight)
			return -ENOMEM;
		slot_pool_destroy(&ws->slots);
		ret = slot_pool_init(&ws->slots, depth);
		if (ret) {
			free(inflight);
			return ret;
		}
		free(ws->inflight);
		ws->inflight = inflight;
	}
	ws->conn = c;
	arm_poll(w, UD_CONN_CQ, ws, conn_comp_fd(c));
	arm_poll(w, UD_CONN_CM, ws, conn_cm_fd(c));
	creq_dispatch(w, ws);
	return 0;
}

/* ---- time ---- */

/* Keepalives, dead peers, request timeouts, the devices' loss timeouts
 * (the session thread logs those). Returns how soon (ms) it wants to be
 * called again. */
static int64_t ws_tick(struct worker *w, struct wsess *ws, int64_t now)
{
	const struct client_tunables *t = &w->t;
	unsigned int slot;
	bool ka;
	char why[128];

	if (!ws->conn) {
		creq_fail_waiting(w, ws, -EIO, creq_of_stopping_queue, NULL);
		creq_fail_waiting(w, ws, -EIO, creq_lost, &now);
		return TICK_MS;
	}
	ka = conn_features(ws->conn) & IBNBD_FEAT_KEEPALIVE;
	if (now - conn_last_rx_ms(ws->conn) > t->dead_ms && (ka || ws->ctrl_busy ||
	    slot_pool_free(&ws->slots) < ws->slots.size)) {
		snprintf(why, sizeof(why), "no answer for %lld ms",
			 (long long)(now - conn_last_rx_ms(ws->conn)));
		ws_lost(w, ws, why);
		return TICK_MS;
	}
	for (slot = 0; t->io_timeout_ms && slot < ws->slots.size; slot++) {
		struct creq *r = ws->inflight[slot];

		if (r && r != CREQ_ORPHAN && now - r->sent_ms > t->io_timeout_ms) {
			atomic_fetch_add_explicit(&ws->timeouts, 1, memory_order_relaxed);
			stat_add(&r->dq->stats.timeouts, 1);
			snprintf(why, sizeof(why), "%s of %s offset %llu unanswered for %u s",
				 ublk_io_op_name(r->io.op), r->dq->dev->path,
				 (unsigned long long)r->io.offset, t->io_timeout_ms / 1000);
			ws_lost(w, ws, why);
			return TICK_MS;
		}
	}
	if (ka && !ws->ctrl_busy && now - conn_last_rx_ms(ws->conn) >= t->keepalive_ms)
		send_keepalive(w, ws);
	if (ws->ctrl_busy || ws->wait_head || slot_pool_free(&ws->slots) < ws->slots.size)
		return TICK_MS;
	/* Idle: nothing to watch until the next keepalive is due. */
	return ka ? conn_last_rx_ms(ws->conn) + t->keepalive_ms - now : t->keepalive_ms;
}

/*
 * Runs every connection's checks and sets the timer for the soonest one
 * that wants to run again: at most keepalive_ms away, so a connection that
 * became busy (or was attached) meanwhile is checked in time, and at least
 * TICK_MS, which is the precision every deadline is kept to.
 */
static void tick(struct worker *w)
{
	int64_t now = clock_now_ms(), next = w->t.keepalive_ms;
	uint32_t i;

	for (i = 0; i < w->nr_sess; i++) {
		if (w->sess[i]) {
			int64_t n = ws_tick(w, w->sess[i], now);

			next = n < next ? n : next;
		}
	}
	next = next < TICK_MS ? TICK_MS : next;
	w->tick.tv_sec = next / 1000;
	w->tick.tv_nsec = (next % 1000) * 1000000LL;
}

/* ---- the target: what the engine hands us ---- */

static void tgt_queue_io(struct ublk_engine *e, void *qpriv, const struct ublk_io *io)
{
	struct dev_queue *dq = qpriv;
	struct creq *r = &dq->reqs[io->tag];

	r->io = *io;
	creq_process(ublk_engine_target(e), r, CREQ_EV_NEW, 0);
}

static void tgt_cqe(struct ublk_engine *e, const struct io_uring_cqe *cqe)
{
	struct worker *w = ublk_engine_target(e);
	unsigned int kind = ublk_ud_kind(cqe->user_data);
	uint32_t idx = ud_widx(cqe->user_data);
	struct wsess *ws;
	int ret;

	switch (kind) {
	case UD_TICK:
		tick(w);
		arm_tick(w);
		return;
	case UD_CONN_CQ:
	case UD_CONN_CM:
		ws = idx < w->nr_sess ? w->sess[idx] : NULL;
		if (!ws || !ws->conn || ud_gen(cqe->user_data) != ws->gen || cqe->res == -ECANCELED)
			return; /* from a connection since detached */
		if (kind == UD_CONN_CM) {
			ret = conn_cm_check(ws->conn);
		} else if (w->t.poll.on) { /* awake: the CQ is polled until idle */
			conn_take_event(ws->conn);
			ret = conn_poll(ws->conn, &handlers, ws, NULL);
		} else {
			ret = conn_process(ws->conn, &handlers, ws);
		}
		if (ret < 0)
			ws_lost(w, ws, kind == UD_CONN_CM ? "disconnected" : WIRE_FAILURE);
		else if (ws->conn)
			arm_poll(w, kind, ws, kind == UD_CONN_CM ? conn_cm_fd(ws->conn) :
				 conn_comp_fd(ws->conn));
		return;
	}
}

/* Slots freed this round go to what waits; then every connection posts
 * the round's requests at once. */
static void tgt_round_end(struct ublk_engine *e)
{
	struct worker *w = ublk_engine_target(e);
	uint32_t i;

	for (i = 0; i < w->nr_sess; i++) {
		struct wsess *ws = w->sess[i];

		if (!ws)
			continue;
		creq_dispatch(w, ws);
		if (ws->conn && conn_flush(ws->conn))
			ws_lost(w, ws, "cannot post requests");
	}
}

/* Polling: every attached connection's CQ, each round. */
static unsigned int tgt_poll(struct ublk_engine *e)
{
	struct worker *w = ublk_engine_target(e);
	unsigned int taken = 0;

	for (uint32_t i = 0; i < w->nr_sess; i++) {
		struct wsess *ws = w->sess[i];

		if (ws && ws->conn && conn_poll(ws->conn, &handlers, ws, &taken) < 0)
			ws_lost(w, ws, WIRE_FAILURE);
	}
	return taken;
}

/* Polling, before a sleep: every CQ raises an event for its next
 * completion; one more look takes what came before the arm. */
static unsigned int tgt_arm(struct ublk_engine *e)
{
	struct worker *w = ublk_engine_target(e);

	for (uint32_t i = 0; i < w->nr_sess; i++) {
		struct wsess *ws = w->sess[i];
		int ret;

		if (ws && ws->conn && (ret = conn_arm(ws->conn)))
			log_err("worker %u: %s: arming the CQ failed: %s", w->index,
				session_peer(ws->sess), strerror(-ret));
	}
	return tgt_poll(e);
}

static void tgt_queue_gone(struct ublk_engine *e, void *qpriv)
{
	struct dev_queue *dq = qpriv;

	sem_post(&dq->removed);
}

static const struct ublk_tgt_ops rdma_target = {
	.name = "rdma",
	.queue_io = tgt_queue_io,
	.target_cqe = tgt_cqe,
	.round_end = tgt_round_end,
	.queue_gone = tgt_queue_gone,
	.poll = tgt_poll,
	.arm = tgt_arm,
};

/* ---- the mailbox ---- */

/* Creates the ublk queue and fetches every tag: ublk wants the fetches
 * from the thread serving them. */
static int queue_add(struct worker *w, struct dev_queue *dq)
{
	struct ublk_queue_config qc = {
		.q_id = dq->q_id,
		.dev_sectors = dq->dev->info.size >> 9,
		.buf_area = dq->buf, .buf_area_len = dq->buf_len,
	};
	const struct ublksrv_ctrl_dev_info *info = ublk_dev_info(dq->dev->ublk);
	uint16_t tag;

	dq->reqs = calloc(info->queue_depth, sizeof(*dq->reqs));
	if (!dq->reqs)
		return -ENOMEM;
	for (tag = 0; tag < info->queue_depth; tag++)
		dq->reqs[tag].dq = dq;
	dq->ws = session_wsess(dq->dev->sess, dq->conn);
	dq->w = NULL;
	if (ublk_engine_add_queue(w->engine, dq->dev->ublk, &qc, dq, &dq->uq) && !dq->uq)
		return -EIO;
	/* Created: ours until it is gone (dq->removed), even if its fetches
	 * failed; the caller then stops it. */
	dq->w = w;
	return ublk_queue_retired(dq->uq) ? -EIO : 0;
}

static int handle_msg(struct ublk_engine *e, struct ublk_engine_call *c)
{
	struct wmsg *m = (struct wmsg *)c;
	struct worker *w = ublk_engine_target(e);
	struct wsess *ws = m->ws;
	int ret = 0;

	switch (m->type) {
	case WM_ADD_QUEUE:
		return queue_add(w, m->dq);
	case WM_STOP_QUEUE:
		/* Without a connection what waits fails now (what the kernel
		 * writes back while it removes the device goes out if it
		 * can); with force, what is in flight fails too (its slots
		 * stay the server's until it answers). */
		m->dq->stopping = true;
		if (!m->dq->ws->conn || m->force)
			creq_fail_waiting(w, m->dq->ws, -EIO, creq_of_queue, m->dq);
		if (m->force)
			creq_orphan_sent(w, m->dq->ws, m->dq);
		ublk_engine_stop_queue(e, m->dq->uq);
		return 0;
	case WM_LEAVE_QUEUE:
		ublk_engine_abandon_queue(e, m->dq->uq);
		return 0;
	case WM_QUIESCE:
		ws->quiesced = true;
		ret = 0;
		for (unsigned int slot = 0; slot < ws->slots.size; slot++)
			ret += ws->inflight[slot] != NULL;
		return ret;
	case WM_FORGET_SESS:
		/* Nothing it holds is answered: the kernel re-issues it to
		 * the next daemon. */
		ws_detach(w, ws);
		ws->wait_head = ws->wait_tail = NULL;
		w->sess[ws->widx] = NULL;
		return 0;
	case WM_FAIL_QUEUE:
		creq_fail_waiting(w, m->dq->ws, -EIO, creq_of_queue, m->dq);
		return 0;
	case WM_ADD_SESS:
		for (ret = 0; ret < (int)w->nr_sess && w->sess[ret]; ret++)
			;
		if (ret == (int)w->nr_sess) {
			uint32_t n = w->nr_sess ? w->nr_sess * 2 : 8;
			struct wsess **t = realloc(w->sess, n * sizeof(*t));

			if (!t)
				return -ENOMEM;
			memset(t + w->nr_sess, 0, (n - w->nr_sess) * sizeof(*t));
			w->sess = t;
			w->nr_sess = n;
		}
		w->sess[ret] = ws;
		ws->widx = (uint32_t)ret;
		ws->w = w;
		return 0;
	case WM_REMOVE_SESS:
		ws_detach(w, ws);
		creq_fail_waiting(w, ws, -EIO, creq_any, NULL);
		w->sess[ws->widx] = NULL;
		return 0;
	case WM_ATTACH:
		return ws_attach(w, ws, m->conn);
	case WM_DETACH:
		ws_detach(w, ws);
		return 0;
	case WM_OPEN:
	case WM_CLOSE:
		if (!ws->conn)
			return -ENOTCONN;
		m->next = NULL;
		if (ws->ctrl_tail)
			ws->ctrl_tail->next = m;
		else
			ws->ctrl_head = m;
		ws->ctrl_tail = m;
		ctrl_kick(w, ws);
		return UBLK_ENGINE_LATER; /* answered when the response arrives */
	}
	return -EINVAL;
}

int worker_call(struct worker *w, struct wmsg *m)
{
	m->call.fn = handle_msg;
	return ublk_engine_call(w->engine, &m->call);
}

/* ---- the thread ---- */

static int start_ticking(struct ublk_engine *e, struct ublk_engine_call *c)
{
	arm_tick(ublk_engine_target(e));
	return 0;
}

int worker_create(unsigned int index, const struct client_tunables *t, struct worker **out)
{
	struct worker *w = calloc(1, sizeof(*w));
	struct ublk_engine_call c = { .fn = start_ticking };
	char name[16];
	struct ublk_engine_config ec = {
		.ops = &rdma_target, .target = w, .thread_name = name,
		.sq_entries = RING_ENTRIES, .cq_entries = RING_CQ_ENTRIES, .poll = t->poll,
	};
	int ret;

	if (!w)
		return -ENOMEM;
	w->index = index;
	w->t = *t;
	w->tick.tv_nsec = TICK_MS * 1000000LL;
	snprintf(name, sizeof(name), "ibnbd-w%u", index);
	ret = ublk_engine_create(&ec, &w->engine);
	if (!ret)
		ret = ublk_engine_call(w->engine, &c);
	if (ret) {
		worker_destroy(w);
		return ret;
	}
	*out = w;
	return 0;
}

void worker_destroy(struct worker *w)
{
	if (!w)
		return;
	ublk_engine_destroy(w->engine);
	free(w->sess);
	free(w);
}
