// SPDX-License-Identifier: GPL-2.0-only
/*
 * One client request from the kernel to the server and back: request.h's
 * state machine, and the wait FIFO of a connection.
 */
#include "dataplane/request.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "control/session.h"
#include "log.h"
#include "transport/conn.h"
#include "ublk/engine.h"

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

static bool device_failed(const struct creq *r)
{
	return atomic_load_explicit(&r->dq->dev->failed, memory_order_relaxed);
}

void device_stats_sum(const struct device *d, struct dq_stats *sum)
{
	memset(sum, 0, sizeof(*sum));
	for (uint16_t q = 0; q < d->nr_queues; q++) {
		const struct dq_stats *s = &d->queues[q].stats;

		io_counts_sum(&sum->io, &s->io);
#define ADD(f) sum->f += stat_read(&s->f);
		ADD(errors) ADD(reissued) ADD(timeouts) ADD(started) ADD(completed) ADD(waiting)
#undef ADD
		lat_hist_sum(&sum->latency, &s->latency);
	}
}

/* A request handed back to the kernel: its counters and its latency. */
static void count_done(struct creq *r, int status)
{
	struct dq_stats *s = &r->dq->stats;

	stat_add(&s->completed, 1);
	lat_observe(&s->latency, clock_now_ns() - r->queued_ns);
	if (status)
		stat_add(&s->errors, 1);
	else
		io_counts_add(&s->io, r->opcode, r->io.len);
}

/* Into a wait FIFO's state, or out of it: the waiting gauge follows. */
static void set_waiting(struct creq *r)
{
	r->state = CREQ_WAITING;
	stat_add(&r->dq->stats.waiting, 1);
}

static void leave_waiting(struct creq *r)
{
	if (r->state == CREQ_WAITING)
		stat_add(&r->dq->stats.waiting, (uint64_t)-1);
}

uint64_t device_writes_acked(const struct device *d)
{
	uint64_t n = 0;

	for (uint16_t q = 0; q < d->nr_queues; q++)
		n += atomic_load_explicit(&d->queues[q].writes_acked, memory_order_acquire);
	return n;
}

/* What an answer means beyond its status: a WRITE acknowledged, a FLUSH
 * that covers the writes acknowledged before it came - unless the server
 * host restarted meanwhile with writes unflushed (session.c), which the
 * next FLUSH reports. */
static int account_answer(struct creq *r, int status)
{
	struct dev_queue *dq = r->dq;
	struct device *d = dq->dev;
	uint64_t v;

	if (status == -ENODEV && !atomic_load(&d->failed)) {
		/* The server's configuration no longer has the export (a
		 * reload): it is gone for good, as when a re-open finds it
		 * gone. (Should the session thread fail it at the same
		 * moment, either reason is true.) */
		snprintf(d->failed_why, sizeof(d->failed_why),
			 "export '%s' was removed from the server's configuration", d->export_name);
		atomic_store(&d->failed, true);
		log_err("%s: %s: it now fails every IO", d->path, d->failed_why);
	}
	if (status)
		return status;
	if (r->opcode == IBNBD_OP_WRITE) {
		v = atomic_load_explicit(&dq->writes_acked, memory_order_relaxed);
		atomic_store_explicit(&dq->writes_acked, v + 1, memory_order_release);
	} else if (r->opcode == IBNBD_OP_FLUSH) {
		if (atomic_exchange(&d->flush_must_fail, false)) {
			log_err("%s: FLUSH failed: the server host restarted while acknowledged writes were not yet flushed",
				d->path);
			return -EIO;
		}
		v = atomic_load(&d->flushed_upto);
		while (v < r->flush_upto &&
		       !atomic_compare_exchange_weak(&d->flushed_upto, &v, r->flush_upto))
			;
	}
	return 0;
}

/* ---- the wait FIFO ---- */

static void fifo_push_tail(struct wsess *ws, struct creq *r)
{
	r->next = NULL;
	if (ws->wait_tail)
		ws->wait_tail->next = r;
	else
		ws->wait_head = r;
	ws->wait_tail = r;
}

static void fifo_push_head(struct wsess *ws, struct creq *r)
{
	r->next = ws->wait_head;
	ws->wait_head = r;
	if (!ws->wait_tail)
		ws->wait_tail = r;
}

static struct creq *fifo_pop(struct wsess *ws)
{
	struct creq *r = ws->wait_head;

	ws->wait_head = r->next;
	if (!ws->wait_head)
		ws->wait_tail = NULL;
	return r;
}

/* ---- transitions ---- */

/* To IDLE: hands the tag back to the kernel with status (0 or -errno). */
static void to_idle(struct worker *w, struct creq *r, int status)
{
	struct dev_queue *dq = r->dq;
	int32_t result = status;
	int ret;

	if (status == 0)
		result = r->io.op == UBLK_IO_OP_READ || r->io.op == UBLK_IO_OP_WRITE ?
			 (int32_t)r->io.len : 0;
	else
		log_err("%s: queue %u tag %u: %s offset %llu length %u failed: %s",
			dq->dev->path, dq->q_id, r->io.tag, ublk_io_op_name(r->io.op),
			(unsigned long long)r->io.offset, r->io.len, strerror(-status));
	leave_waiting(r);
	count_done(r, status);
	r->state = CREQ_IDLE;
	if (r->resent) {
		r->resent = false;
		atomic_fetch_sub_explicit(&dq->resending, 1, memory_order_relaxed);
	}
	ret = ublk_engine_commit(worker_engine(w), dq->uq, r->io.tag, result);
	if (ret)
		log_err("%s: queue %u tag %u: cannot commit the result: %s", dq->dev->path,
			dq->q_id, r->io.tag, strerror(-ret));
}

/* To SENT: takes a free slot of ws (the caller checked there is one) and
 * queues the request on its connection; the round's requests are posted
 * together (worker.c, round end). */
static void to_sent(struct creq *r, struct wsess *ws)
{
	const struct dev_handle *h = &r->dq->dev->handles[r->dq->conn];
	int slot = slot_get(&ws->slots);

	leave_waiting(r);
	ws->inflight[slot] = r;
	r->slot = (uint16_t)slot;
	r->state = CREQ_SENT;
	r->sent_ms = clock_now_ms();
	if (r->resent) {
		atomic_fetch_add_explicit(&ws->reissued, 1, memory_order_relaxed);
		stat_add(&r->dq->stats.reissued, 1);
	}
	conn_submit(ws->conn, r->slot, h->handle, h->cookie, r->opcode, r->flags, r->io.offset,
		    r->io.len, r->io.buf, r->dq->mr);
}

static void on_new(struct worker *w, struct creq *r)
{
	struct wsess *ws = r->dq->ws;

	r->opcode = ibnbd_opcode(&r->io, &r->flags);
	r->queued_ns = clock_now_ns();
	r->queued_ms = (int64_t)(r->queued_ns / 1000000);
	stat_add(&r->dq->stats.started, 1);
	if (r->opcode == IBNBD_OP_FLUSH)
		r->flush_upto = device_writes_acked(r->dq->dev);
	if (r->opcode == 0xff) {
		to_idle(w, r, -EOPNOTSUPP);
	} else if (device_failed(r) ||
		   (!ws->conn && (r->dq->stopping || device_lost(r->dq->dev, r->queued_ms)))) {
		to_idle(w, r, -EIO);
	} else if (ws->conn && !ws->quiesced && !ws->wait_head && slot_pool_free(&ws->slots)) {
		to_sent(r, ws);
	} else {
		set_waiting(r);
		fifo_push_tail(ws, r);
	}
}

void creq_process(struct worker *w, struct creq *r, enum creq_event ev, int status)
{
	struct wsess *ws = r->dq->ws;

	switch (r->state) {
	case CREQ_IDLE:
		if (ev == CREQ_EV_NEW) {
			on_new(w, r);
			return;
		}
		break;
	case CREQ_WAITING:
		if (ev == CREQ_EV_SLOT) {
			/* Its handle may name another export now. */
			if (device_failed(r))
				to_idle(w, r, -EIO);
			else
				to_sent(r, ws);
			return;
		}
		if (ev == CREQ_EV_FAIL) {
			to_idle(w, r, status);
			return;
		}
		break;
	case CREQ_SENT:
		if (ev == CREQ_EV_ANSWER) {
			ws->inflight[r->slot] = NULL;
			slot_put(&ws->slots, r->slot);
			to_idle(w, r, account_answer(r, status));
			return;
		}
		if (ev == CREQ_EV_FAIL) {
			/* A forced unmap: the slot stays the server's. */
			ws->inflight[r->slot] = CREQ_ORPHAN;
			to_idle(w, r, status);
			return;
		}
		if (ev == CREQ_EV_LOST) {
			/* The caller resets the slots of the lost connection. */
			ws->inflight[r->slot] = NULL;
			set_waiting(r);
			if (!r->resent)
				atomic_fetch_add_explicit(&r->dq->resending, 1, memory_order_relaxed);
			r->resent = true;
			fifo_push_head(ws, r);
			return;
		}
		break;
	}
	log_err("%s: queue %u tag %u: event %d in state %d ignored", r->dq->dev->path, r->dq->q_id,
		r->io.tag, ev, r->state);
}

/* ---- on the FIFO ---- */

void creq_dispatch(struct worker *w, struct wsess *ws)
{
	while (ws->conn && !ws->quiesced && ws->wait_head && slot_pool_free(&ws->slots))
		creq_process(w, fifo_pop(ws), CREQ_EV_SLOT, 0);
}

void creq_fail_waiting(struct worker *w, struct wsess *ws, int status,
		       bool (*pick)(const struct creq *r, const void *arg), const void *arg)
{
	struct creq *r = ws->wait_head, *next;

	ws->wait_head = ws->wait_tail = NULL;
	for (; r; r = next) {
		next = r->next;
		if (pick(r, arg))
			creq_process(w, r, CREQ_EV_FAIL, status);
		else
			fifo_push_tail(ws, r);
	}
}

unsigned int creq_requeue_sent(struct worker *w, struct wsess *ws)
{
	unsigned int n = 0, slot;

	/* Backwards, each to the head: they wait in slot order. */
	for (slot = ws->slots.size; slot-- > 0;) {
		struct creq *r = ws->inflight[slot];

		if (r == CREQ_ORPHAN) {
			ws->inflight[slot] = NULL;
		} else if (r) {
			creq_process(w, r, CREQ_EV_LOST, 0);
			n++;
		}
	}
	return n;
}

void creq_orphan_sent(struct worker *w, struct wsess *ws, const struct dev_queue *dq)
{
	for (unsigned int slot = 0; slot < ws->slots.size; slot++) {
		struct creq *r = ws->inflight[slot];

		if (r && r != CREQ_ORPHAN && r->dq == dq)
			creq_process(w, r, CREQ_EV_FAIL, -EIO);
	}
}

bool creq_of_stopping_queue(const struct creq *r, const void *arg)
{
	return r->dq->stopping;
}

bool creq_any(const struct creq *r, const void *arg)
{
	return true;
}

bool creq_of_queue(const struct creq *r, const void *dq)
{
	return r->dq == dq;
}

bool creq_lost(const struct creq *r, const void *now_ms)
{
	const struct device *d = r->dq->dev;
	int64_t now = *(const int64_t *)now_ms;

	return d->loss_ms && (device_lost(d, now) || now - r->queued_ms >= d->loss_ms);
}
