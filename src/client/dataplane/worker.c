// SPDX-License-Identifier: GPL-2.0-only
/*
 * A client worker: one thread, one io_uring. Worker q serves ublk queue q of
 * every mapped device and connection q of every session (dataplane.h).
 *
 * Its ring carries:
 *   UD_UBLK     FETCH / COMMIT_AND_FETCH of each device queue (ublk_queue.c)
 *   UD_MAILBOX  a read on the eventfd other threads write after posting a
 *               struct wmsg (worker_call())
 *   UD_TICK     a timeout for keepalives, dead peers and timeouts: every
 *               TICK_MS while a connection is busy or down, else when the
 *               next keepalive is due (an idle daemon wakes once a second)
 *   UD_CONN_CQ  a poll on each attached connection's completion channel
 *   UD_CONN_CM  a poll on its CM event channel (disconnects)
 *
 * The life of a request:
 *
 *   kernel ──FETCH CQE──▶ serve() ──slot free, conn up──▶ send() ──▶ server
 *                           │ no slot / session down          │
 *                           ▼                                 │ IO_RSP
 *                      wait FIFO ──slot put back / attach──▶ send()
 *                                                             ▼
 *   kernel ◀──COMMIT_AND_FETCH (result)── complete() ◀── io_done()
 *
 * When a connection fails, every request sent on it goes back to the head of
 * the wait FIFO and is sent again on the next connection: the generation in
 * the request id makes a late answer from the dead connection harmless, and
 * block IO is idempotent. Requests fail (EIO) only when the session has been
 * down longer than the loss timeout, or a request has waited that long.
 */
#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "clock.h"
#include "conn.h"
#include "dataplane.h"
#include "log.h"
#include "ring.h"
#include "ublk_dev.h"

#define TICK_MS 250
#define RING_ENTRIES 512
#define RING_CQ_ENTRIES 4096

/* user_data types on a worker's ring (ublk_ud_encode() layout). */
enum { UD_UBLK = 1, UD_MAILBOX, UD_TICK, UD_CONN_CQ, UD_CONN_CM, UD_CANCEL };

struct worker {
	unsigned int index;
	struct client_tunables t;
	pthread_t thread;
	bool started;
	sem_t ready;
	int setup_status;

	struct io_uring ring;
	bool ring_ok;
	int efd;
	uint64_t efd_val;
	struct __kernel_timespec tick;
	bool exiting;

	pthread_mutex_t mb_lock; /* guards the mailbox list only */
	struct wmsg *mb_head, *mb_tail;

	/* Tables indexed by dq->widx / ws->widx; NULL entries are free. */
	struct dev_queue **queues;
	uint32_t nr_queues;
	struct wsess **sess;
	uint32_t nr_sess;
};

static struct io_uring_sqe *get_sqe(struct worker *w)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);

	if (!sqe && io_uring_submit(&w->ring) >= 0)
		sqe = io_uring_get_sqe(&w->ring);
	if (!sqe)
		log_err("worker %u: io_uring submission queue full", w->index);
	return sqe;
}

static void arm(struct worker *w, unsigned int type, unsigned int idx, uint16_t gen, int fd)
{
	struct io_uring_sqe *sqe = get_sqe(w);

	if (!sqe)
		return;
	switch (type) {
	case UD_MAILBOX:
		io_uring_prep_read(sqe, w->efd, &w->efd_val, sizeof(w->efd_val), 0);
		break;
	case UD_TICK:
		io_uring_prep_timeout(sqe, &w->tick, 0, 0);
		break;
	default:
		io_uring_prep_poll_add(sqe, fd, POLLIN);
	}
	io_uring_sqe_set_data64(sqe, ublk_ud_encode(type, idx, gen, 0));
}

/* A free index in a table of pointers, growing it. -ENOMEM. */
static int table_slot(void ***table, uint32_t *nr, void *item)
{
	uint32_t i, n = *nr ? *nr * 2 : 8;
	void **t;

	for (i = 0; i < *nr; i++) {
		if (!(*table)[i]) {
			(*table)[i] = item;
			return (int)i;
		}
	}
	if (n >= (1u << UBLK_UD_QUEUE_BITS))
		return -ENOSPC;
	t = realloc(*table, n * sizeof(*t));
	if (!t)
		return -ENOMEM;
	memset(t + *nr, 0, (n - *nr) * sizeof(*t));
	i = *nr;
	t[i] = item;
	*table = t;
	*nr = n;
	return (int)i;
}

/* ---- requests ---- */

static uint8_t ibnbd_opcode(const struct ublk_io *io, uint16_t *flags)
{
	*flags = 0;
	switch (io->op) {
	case UBLK_IO_OP_READ:
		return IBNBD_OP_READ;
	case UBLK_IO_OP_WRITE:
		if (io->flags & UBLK_IO_F_FUA)
			*flags |= IBNBD_IOF_FUA;
		return IBNBD_OP_WRITE;
	case UBLK_IO_OP_FLUSH:
		return IBNBD_OP_FLUSH;
	case UBLK_IO_OP_DISCARD:
		return IBNBD_OP_DISCARD;
	case UBLK_IO_OP_WRITE_ZEROES:
		if (io->flags & UBLK_IO_F_NOUNMAP)
			*flags |= IBNBD_IOF_NOUNMAP;
		return IBNBD_OP_WRITE_ZEROES;
	}
	return 0xff;
}

/* Hands the request back to the kernel with status (0 or -errno). */
static void complete(struct worker *w, struct creq *r, int status)
{
	struct dev_queue *dq = r->dq;
	int32_t result = status;

	if (status == 0)
		result = r->io.op == UBLK_IO_OP_READ || r->io.op == UBLK_IO_OP_WRITE ?
			 (int32_t)r->io.len : 0;
	else
		log_err("%s: queue %u tag %u: %s offset %llu length %u failed: %s",
			dq->dev->path, dq->q_id, r->io.tag, ublk_io_op_name(r->io.op),
			(unsigned long long)r->io.offset, r->io.len, strerror(-status));
	r->state = CREQ_IDLE;
	if (r->resent) {
		r->resent = false;
		atomic_fetch_sub_explicit(&dq->resending, 1, memory_order_relaxed);
	}
	if (ublk_queue_commit(dq->uq, &w->ring, r->io.tag, result))
		log_err("%s: queue %u tag %u: cannot commit", dq->dev->path, dq->q_id, r->io.tag);
}

static void wait_push_tail(struct wsess *ws, struct creq *r)
{
	r->state = CREQ_WAITING;
	r->next = NULL;
	if (ws->wait_tail)
		ws->wait_tail->next = r;
	else
		ws->wait_head = r;
	ws->wait_tail = r;
}

/* Fails (status) every waiting request that fail() picks; keeps the rest
 * in order. */
static void wait_fail_if(struct worker *w, struct wsess *ws, int status,
			 bool (*fail)(const struct creq *r, const void *arg), const void *arg)
{
	struct creq *r = ws->wait_head, *next;

	ws->wait_head = ws->wait_tail = NULL;
	for (; r; r = next) {
		next = r->next;
		if (fail(r, arg))
			complete(w, r, status);
		else
			wait_push_tail(ws, r);
	}
}

static bool creq_any(const struct creq *r, const void *arg)
{
	return true;
}

static bool creq_of_queue(const struct creq *r, const void *dq)
{
	return r->dq == dq;
}

static bool creq_older_than(const struct creq *r, const void *deadline)
{
	return r->queued_ms < *(const int64_t *)deadline;
}

static void ws_lost(struct worker *w, struct wsess *ws, const char *why);

static void send_req(struct worker *w, struct wsess *ws, struct creq *r)
{
	int slot = slot_get(&ws->slots);

	/* Callers checked for a free slot. */
	ws->inflight[slot] = r;
	r->slot = (uint16_t)slot;
	r->state = CREQ_SENT;
	r->sent_ms = clock_now_ms();
	if (r->resent)
		atomic_fetch_add_explicit(&ws->reissued, 1, memory_order_relaxed);
	/* Posted with the rest of this round's requests (worker_thread()). */
	conn_submit(ws->conn, r->slot, r->dq->handle, r->dq->cookie, r->opcode, r->flags,
		    r->io.offset, r->io.len, r->io.buf, r->dq->mr);
}

/* Sends what waits while there are slots. A request of a device that
 * failed meanwhile fails instead: its handle may name another export now. */
static void dispatch(struct worker *w, struct wsess *ws)
{
	while (ws->conn && ws->wait_head && slot_pool_free(&ws->slots)) {
		struct creq *r = ws->wait_head;

		ws->wait_head = r->next;
		if (!ws->wait_head)
			ws->wait_tail = NULL;
		if (atomic_load_explicit(&r->dq->dev->failed, memory_order_relaxed))
			complete(w, r, -EIO);
		else
			send_req(w, ws, r);
	}
}

static void serve(struct worker *w, struct dev_queue *dq, const struct ublk_io *io)
{
	struct creq *r = &dq->reqs[io->tag];
	struct wsess *ws = session_wsess(dq->dev->sess, w->index);

	r->io = *io;
	r->opcode = ibnbd_opcode(io, &r->flags);
	r->queued_ms = clock_now_ms();
	if (r->opcode == 0xff) {
		complete(w, r, -EOPNOTSUPP);
		return;
	}
	if (atomic_load_explicit(&dq->dev->failed, memory_order_relaxed) ||
	    (!ws->conn && (dq->stopping || session_expired(ws->sess)))) {
		complete(w, r, -EIO);
		return;
	}
	if (ws->conn && !ws->wait_head && slot_pool_free(&ws->slots))
		send_req(w, ws, r);
	else
		wait_push_tail(ws, r);
}

static void io_done(void *ctx, uint16_t slot, int status)
{
	struct wsess *ws = ctx;
	struct creq *r = slot < ws->slots.size ? ws->inflight[slot] : NULL;

	if (!r) {
		log_warn("%s: answer for idle slot %u ignored", session_peer(ws->sess), slot);
		return;
	}
	ws->inflight[slot] = NULL;
	slot_put(&ws->slots, slot);
	complete(ws->w, r, status);
}

/* ---- control messages on a connection ---- */

static void ctrl_finish(struct wsess *ws, int status)
{
	struct wmsg *m = ws->ctrl_cur;

	ws->ctrl_busy = false;
	ws->keepalive_sent = false;
	ws->ctrl_cur = NULL;
	if (m) {
		m->status = status;
		sem_post(&m->done);
	}
}

/* Sends the next control message if the credit is free. */
static void ctrl_kick(struct worker *w, struct wsess *ws)
{
	union {
		struct ibnbd_open open;
		struct ibnbd_close close;
		struct ibnbd_ctrl_rsp ka;
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
		m->status = ret;
		sem_post(&m->done);
		return;
	}
	ws->ctrl_cur = m;
	ws->ctrl_busy = true;
	ws->ctrl_sent_ms = clock_now_ms();
	ret = conn_post_ctrl(ws->conn, &msg, len);
	if (ret)
		ws_lost(w, ws, "cannot post a control message");
}

static void send_keepalive(struct worker *w, struct wsess *ws)
{
	struct ibnbd_ctrl_rsp ka;

	ibnbd_ctrl_rsp_encode(&ka, IBNBD_MSG_KEEPALIVE, 0, (uint64_t)clock_now_ms());
	ws->ctrl_busy = true;
	ws->keepalive_sent = true;
	ws->ctrl_sent_ms = clock_now_ms();
	if (conn_post_ctrl(ws->conn, &ka, sizeof(ka)))
		ws_lost(w, ws, "cannot post a keepalive");
}

static void ctrl_done(void *ctx, uint16_t type, const void *msg, size_t len)
{
	struct wsess *ws = ctx;
	struct wmsg *m = ws->ctrl_cur;
	int32_t status = -EPROTO;
	uint64_t cookie;

	if (!ws->ctrl_busy) {
		log_warn("%s: unexpected %s ignored", session_peer(ws->sess), ibnbd_msg_name(type));
		return;
	}
	if (ws->keepalive_sent) {
		if (type != IBNBD_MSG_KEEPALIVE_RSP)
			log_warn("%s: %s where a keepalive answer was due", session_peer(ws->sess),
				 ibnbd_msg_name(type));
		ctrl_finish(ws, 0);
	} else if (m->type == WM_OPEN && type == IBNBD_MSG_OPEN_RSP) {
		status = ibnbd_open_rsp_decode(msg, len, &m->info);
		ctrl_finish(ws, status ? status : m->info.status);
	} else if (m->type == WM_CLOSE && type == IBNBD_MSG_CLOSE_RSP) {
		if (ibnbd_ctrl_rsp_decode(msg, len, IBNBD_MSG_CLOSE_RSP, &status, &cookie))
			status = -EPROTO;
		ctrl_finish(ws, status);
	} else {
		log_warn("%s: %s does not answer the message sent", session_peer(ws->sess),
			 ibnbd_msg_name(type));
		ctrl_finish(ws, -EPROTO);
	}
	ctrl_kick(ws->w, ws);
}

static const struct conn_handlers handlers = { .io_done = io_done, .ctrl_done = ctrl_done };

/* ---- attaching and losing connections ---- */

static void cancel_polls(struct worker *w, struct wsess *ws)
{
	unsigned int types[] = { UD_CONN_CQ, UD_CONN_CM };
	unsigned int i;

	for (i = 0; i < 2; i++) {
		struct io_uring_sqe *sqe = get_sqe(w);

		if (!sqe)
			continue;
		io_uring_prep_cancel64(sqe, ublk_ud_encode(types[i], ws->widx, ws->gen, 0), 0);
		io_uring_sqe_set_data64(sqe, ublk_ud_encode(UD_CANCEL, 0, 0, 0));
	}
	io_uring_submit(&w->ring);
}

/* Stops using the connection: what was sent on it waits again, at the
 * head of the FIFO and in slot order; control messages fail. */
static unsigned int ws_detach(struct worker *w, struct wsess *ws)
{
	struct creq *head = NULL, *tail = NULL;
	unsigned int slot, n = 0;

	if (!ws->conn)
		return 0;
	for (slot = 0; slot < ws->slots.size; slot++) {
		struct creq *r = ws->inflight[slot];

		if (!r)
			continue;
		ws->inflight[slot] = NULL;
		r->state = CREQ_WAITING;
		if (!r->resent)
			atomic_fetch_add_explicit(&r->dq->resending, 1, memory_order_relaxed);
		r->resent = true;
		r->next = NULL;
		if (tail)
			tail->next = r;
		else
			head = r;
		tail = r;
		n++;
	}
	if (tail) {
		tail->next = ws->wait_head;
		if (!ws->wait_head)
			ws->wait_tail = tail;
		ws->wait_head = head;
	}
	slot_pool_reset(&ws->slots);
	if (ws->ctrl_busy)
		ctrl_finish(ws, -ECONNRESET);
	while (ws->ctrl_head) {
		struct wmsg *m = ws->ctrl_head;

		ws->ctrl_head = m->next;
		m->status = -ECONNRESET;
		sem_post(&m->done);
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
	session_report_failure(ws->sess, w->index, why);
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
	ws->expired_logged = false;
	arm(w, UD_CONN_CQ, ws->widx, ws->gen, conn_comp_fd(c));
	arm(w, UD_CONN_CM, ws->widx, ws->gen, conn_cm_fd(c));
	dispatch(w, ws);
	return 0;
}

/* Keepalives, dead peers, request timeouts, the loss timeout. Returns how
 * soon (ms) it wants to be called again. */
static int64_t ws_tick(struct worker *w, struct wsess *ws, int64_t now)
{
	const struct client_tunables *t = &w->t;
	unsigned int slot;
	bool ka;
	char why[128];

	if (!ws->conn) {
		int64_t deadline = now - t->loss_ms;

		if (session_expired(ws->sess)) {
			if (!ws->expired_logged && ws->wait_head)
				log_err("%s: down longer than the loss timeout (%u s): failing IO",
					session_peer(ws->sess), t->loss_ms / 1000);
			ws->expired_logged = true;
			wait_fail_if(w, ws, -EIO, creq_any, NULL);
		} else if (t->loss_ms) {
			wait_fail_if(w, ws, -EIO, creq_older_than, &deadline);
		}
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

		if (r && now - r->sent_ms > t->io_timeout_ms) {
			atomic_fetch_add_explicit(&ws->timeouts, 1, memory_order_relaxed);
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

/* ---- the mailbox ---- */

static void queue_remove(struct worker *w, struct dev_queue *dq)
{
	w->queues[dq->widx] = NULL;
	sem_post(&dq->removed);
}

/* Creates the ublk queue, whose user_data carries our table index, and
 * fetches every tag: ublk wants the fetches from the thread serving them. */
static int queue_add(struct worker *w, struct dev_queue *dq)
{
	struct ublk_queue_config qc = {
		.q_id = dq->q_id, .ud_type = UD_UBLK,
		.dev_sectors = dq->dev->info.size >> 9,
		.buf_area = dq->buf, .buf_area_len = dq->buf_len,
	};
	uint16_t tag;
	int ret = table_slot((void ***)&w->queues, &w->nr_queues, dq);

	if (ret < 0)
		return ret;
	dq->widx = (uint32_t)ret;
	qc.ud_queue = dq->widx;
	ret = ublk_queue_create(dq->dev->ublk, &qc, &dq->uq);
	if (!ret) {
		dq->reqs = calloc(ublk_queue_depth(dq->uq), sizeof(*dq->reqs));
		ret = dq->reqs ? 0 : -ENOMEM;
	}
	for (tag = 0; !ret && tag < ublk_queue_depth(dq->uq); tag++)
		dq->reqs[tag].dq = dq;
	if (!ret)
		ret = ublk_queue_prep_fetch_all(dq->uq, &w->ring);
	if (ret < 0) {
		w->queues[dq->widx] = NULL;
		return ret;
	}
	dq->w = w;
	return 0;
}

static void handle_msg(struct worker *w, struct wmsg *m)
{
	struct wsess *ws = m->ws;
	int ret = 0;

	switch (m->type) {
	case WM_ADD_QUEUE:
		ret = queue_add(w, m->dq);
		break;
	case WM_STOP_QUEUE:
		m->dq->stopping = true;
		ws = session_wsess(m->dq->dev->sess, w->index);
		if (!ws->conn)
			wait_fail_if(w, ws, -EIO, creq_of_queue, m->dq);
		break;
	case WM_ADD_SESS:
		ret = table_slot((void ***)&w->sess, &w->nr_sess, ws);
		if (ret < 0)
			break;
		ws->widx = (uint32_t)ret;
		ws->w = w;
		ret = 0;
		break;
	case WM_REMOVE_SESS:
		ws_detach(w, ws);
		wait_fail_if(w, ws, -EIO, creq_any, NULL);
		w->sess[ws->widx] = NULL;
		break;
	case WM_ATTACH:
		ret = ws_attach(w, ws, m->conn);
		break;
	case WM_DETACH:
		ws_detach(w, ws);
		break;
	case WM_FAIL_QUEUE:
		wait_fail_if(w, session_wsess(m->dq->dev->sess, w->index), -EIO, creq_of_queue,
			     m->dq);
		break;
	case WM_OPEN:
	case WM_CLOSE:
		if (!ws->conn) {
			ret = -ENOTCONN;
			break;
		}
		m->next = NULL;
		if (ws->ctrl_tail)
			ws->ctrl_tail->next = m;
		else
			ws->ctrl_head = m;
		ws->ctrl_tail = m;
		ctrl_kick(w, ws);
		return; /* answered when the response arrives */
	case WM_EXIT:
		w->exiting = true;
		break;
	}
	m->status = ret;
	sem_post(&m->done);
}

static void mailbox(struct worker *w)
{
	struct wmsg *m, *next;

	pthread_mutex_lock(&w->mb_lock);
	m = w->mb_head;
	w->mb_head = w->mb_tail = NULL;
	pthread_mutex_unlock(&w->mb_lock);
	for (; m; m = next) {
		next = m->next; /* m may be gone once answered */
		handle_msg(w, m);
	}
}

int worker_call(struct worker *w, struct wmsg *m)
{
	uint64_t one = 1;
	int ret;

	sem_init(&m->done, 0, 0);
	m->next = NULL;
	pthread_mutex_lock(&w->mb_lock);
	if (w->mb_tail)
		w->mb_tail->next = m;
	else
		w->mb_head = m;
	w->mb_tail = m;
	pthread_mutex_unlock(&w->mb_lock);
	if (write(w->efd, &one, sizeof(one)) != sizeof(one))
		log_err("worker %u: cannot wake it: %s", w->index, strerror(errno));
	while (sem_wait(&m->done) && errno == EINTR)
		;
	ret = m->status;
	sem_destroy(&m->done);
	return ret;
}

/* ---- the thread ---- */

static void handle_cqe(struct worker *w, const struct io_uring_cqe *cqe)
{
	uint64_t ud = cqe->user_data;
	unsigned int idx = ublk_ud_queue(ud);
	struct dev_queue *dq;
	struct wsess *ws;
	struct ublk_io io;
	int ret;

	switch (ublk_ud_type(ud)) {
	case UD_UBLK:
		dq = idx < w->nr_queues ? w->queues[idx] : NULL;
		if (!dq)
			return;
		if (ublk_queue_handle_cqe(dq->uq, &w->ring, cqe, &io) == 1)
			serve(w, dq, &io);
		if (dq->stopping && ublk_queue_idle(dq->uq))
			queue_remove(w, dq);
		return;
	case UD_MAILBOX:
		mailbox(w);
		if (!w->exiting)
			arm(w, UD_MAILBOX, 0, 0, -1);
		return;
	case UD_TICK:
		tick(w);
		if (!w->exiting)
			arm(w, UD_TICK, 0, 0, -1);
		return;
	case UD_CONN_CQ:
	case UD_CONN_CM:
		ws = idx < w->nr_sess ? w->sess[idx] : NULL;
		if (!ws || !ws->conn || ublk_ud_tag(ud) != ws->gen || cqe->res == -ECANCELED)
			return; /* from a connection since detached */
		if (ublk_ud_type(ud) == UD_CONN_CM)
			ret = conn_cm_check(ws->conn);
		else
			ret = conn_process(ws->conn, &handlers, ws);
		if (ret < 0)
			ws_lost(w, ws, ublk_ud_type(ud) == UD_CONN_CM ? "disconnected" :
				"a work request failed");
		else if (ws->conn)
			arm(w, ublk_ud_type(ud), ws->widx, ws->gen,
			    ublk_ud_type(ud) == UD_CONN_CM ? conn_cm_fd(ws->conn) :
			    conn_comp_fd(ws->conn));
		return;
	}
}

static int worker_setup(struct worker *w)
{
	int ret = ring_init(&w->ring, RING_ENTRIES, RING_CQ_ENTRIES);

	if (ret)
		return ret;
	w->ring_ok = true;
	w->tick.tv_sec = 0;
	w->tick.tv_nsec = TICK_MS * 1000000LL;
	arm(w, UD_MAILBOX, 0, 0, -1);
	arm(w, UD_TICK, 0, 0, -1);
	ret = io_uring_submit(&w->ring);
	return ret < 0 ? ret : 0;
}

static void *worker_thread(void *arg)
{
	struct worker *w = arg;
	char name[16];

	snprintf(name, sizeof(name), "ibnbd-w%u", w->index);
	pthread_setname_np(pthread_self(), name);
	w->setup_status = worker_setup(w);
	sem_post(&w->ready);
	if (w->setup_status)
		return NULL;
	while (!w->exiting) {
		struct io_uring_cqe *cqe;
		unsigned int head, seen = 0;
		uint32_t i;
		int ret = io_uring_submit_and_wait(&w->ring, 1);

		if (ret < 0 && ret != -EINTR && ret != -EBUSY && ret != -ETIME) {
			log_err("worker %u: io_uring: %s", w->index, strerror(-ret));
			break;
		}
		io_uring_for_each_cqe(&w->ring, head, cqe) {
			seen++;
			handle_cqe(w, cqe);
		}
		io_uring_cq_advance(&w->ring, seen);
		/* Slots freed by this batch go to what waits; then every
		 * connection posts this round's requests at once. */
		for (i = 0; i < w->nr_sess; i++) {
			struct wsess *ws = w->sess[i];

			if (!ws)
				continue;
			dispatch(w, ws);
			if (ws->conn && conn_flush(ws->conn))
				ws_lost(w, ws, "cannot post requests");
		}
	}
	return NULL;
}

int worker_create(unsigned int index, const struct client_tunables *t, struct worker **out)
{
	struct worker *w = calloc(1, sizeof(*w));
	int ret;

	if (!w)
		return -ENOMEM;
	w->index = index;
	w->t = *t;
	pthread_mutex_init(&w->mb_lock, NULL);
	sem_init(&w->ready, 0, 0);
	w->efd = eventfd(0, EFD_CLOEXEC);
	if (w->efd < 0) {
		ret = -errno;
		goto out_destroy;
	}
	ret = -pthread_create(&w->thread, NULL, worker_thread, w);
	if (ret)
		goto out_destroy;
	w->started = true;
	sem_wait(&w->ready);
	ret = w->setup_status;
	if (ret)
		goto out_destroy;
	*out = w;
	return 0;
out_destroy:
	worker_destroy(w);
	return ret;
}

void worker_destroy(struct worker *w)
{
	if (!w)
		return;
	if (w->started) {
		if (!w->setup_status) {
			struct wmsg m = { .type = WM_EXIT };

			worker_call(w, &m);
		}
		pthread_join(w->thread, NULL);
	}
	if (w->ring_ok)
		io_uring_queue_exit(&w->ring);
	if (w->efd >= 0)
		close(w->efd);
	pthread_mutex_destroy(&w->mb_lock);
	sem_destroy(&w->ready);
	free(w->queues);
	free(w->sess);
	free(w);
}
