// SPDX-License-Identifier: GPL-2.0-only
/*
 * The IO path of a server connection (conn.h): a request arrives (a SEND,
 * or a WRITE_WITH_IMM of [data | header] into its slot), is framed and
 * checked, goes to the backing store through the worker's io_uring, and is
 * answered; each slot's life is one state machine, slot_process()
 * (conn_priv.h has its picture).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "conn_priv.h"
#include "io_engine.h"
#include "log.h"
#include "verbs.h"

int conn_post_recv(struct conn *c, unsigned int i)
{
	struct ibv_sge sge = {
		.addr = (uintptr_t)recv_buf(c, i),
		.length = IBNBD_MSG_MAX,
		.lkey = c->msg_mr->lkey,
	};
	struct ibv_recv_wr wr = { .wr_id = conn_wrid(c, WRID_RECV, i), .sg_list = &sge,
				  .num_sge = 1 };
	int ret = verbs_post_recv(c->id->qp, &wr);

	if (ret)
		return ret;
	c->rq_posted++;
	return 0;
}

/*
 * Queues the answer in send buffer buf, preceded for a successful READ by
 * the RDMA_WRITE of the data (RC ordering lands the data first); the
 * caller checked the SQ credits. conn_flush() posts the round's answers
 * together: one doorbell. The answer itself tells the client everything
 * arrived, so the WRITE is never signaled and the SEND only every
 * CONN_SIGNAL_EVERY WRs, or once half the SQ is taken: a send completion
 * would otherwise wake the worker a second time per request.
 */
int conn_post_answer(struct conn *c, unsigned int buf, size_t len, const struct slot *read_slot,
		     unsigned int tag)
{
	struct answer_wr *a = &c->answers[buf];
	unsigned int n = read_slot ? 2 : 1;
	uint32_t seq = c->sq_head;
	bool signal = c->sq_unsignaled + n >= CONN_SIGNAL_EVERY ||
		      sq_used(c) + n > c->sq_depth / 2;
	struct ibv_send_wr *first = &a->rsp;

	if (c->state == CONN_CLOSING)
		return -ENOTCONN; /* the QP is in error: nothing more goes out */
	a->rsp_sge = (struct ibv_sge){
		.addr = (uintptr_t)send_buf(c, buf),
		.length = (uint32_t)len,
		.lkey = c->msg_mr->lkey,
	};
	a->rsp = (struct ibv_send_wr){
		.wr_id = conn_wrid(c, WRID_SEND, seq + n - 1),
		.sg_list = &a->rsp_sge,
		.num_sge = 1,
		.opcode = IBV_WR_SEND,
		.send_flags = signal ? IBV_SEND_SIGNALED : 0,
	};
	if (read_slot) {
		a->data_sge = (struct ibv_sge){
			.addr = slot_iova(c, tag),
			.length = read_slot->io.length,
			.lkey = c->slot_mr->lkey,
		};
		a->data = (struct ibv_send_wr){
			.wr_id = conn_wrid(c, WRID_RDMA_WRITE, seq),
			.next = &a->rsp,
			.sg_list = &a->data_sge,
			.num_sge = 1,
			.opcode = IBV_WR_RDMA_WRITE,
			.wr.rdma = { .remote_addr = read_slot->io.addr, .rkey = read_slot->io.rkey },
		};
		first = &a->data;
	}
	if (c->batch_tail) {
		c->batch_tail->next = first;
	} else {
		c->batch_head = first;
		c->flush_next = c->w->flush_list;
		c->w->flush_list = c;
	}
	c->batch_tail = &a->rsp;
	c->sq_head += n;
	if (signal) {
		c->sq_last_signaled = seq + n - 1;
		c->sq_unsignaled = 0;
	} else {
		c->sq_unsignaled += n;
	}
	return 0;
}

struct conn *conn_flush(struct conn *c)
{
	struct conn *next = c->flush_next;
	struct ibv_send_wr *head = c->batch_head;
	int ret;

	c->flush_next = NULL;
	c->batch_head = c->batch_tail = NULL;
	if (!head || c->state == CONN_CLOSING)
		return next; /* a closed QP: sq_drain() retires what was queued */
	ret = verbs_post_send(c->id->qp, head);
	if (ret) {
		/* Only a QP already in error refuses a post we had credits for. */
		log_err("%s: posting answers failed: %s", c->name, strerror(-ret));
		conn_close(c, "post_send failed");
	}
	return next;
}

/* ---- the slot state machine ---- */

static unsigned int answer_wrs(const struct slot *sl)
{
	return sl->io.opcode == IBNBD_OP_READ && sl->status == 0 ? 2 : 1;
}

/* IO SQ credits: the control credit's SQ entry stays reserved. */
static bool sq_has_room(const struct conn *c, unsigned int n)
{
	return sq_used(c) + n + IBNBD_CTRL_CREDITS <= c->sq_depth;
}

/* A backing IO done: its export's counters (and FUA, the worker's). */
static void count_io(struct conn *c, const struct slot *sl)
{
	struct export_stats *es = &c->w->estats[sl->dev->exp->index];

	lat_observe(&es->backing, clock_now_ns() - sl->started_ns);
	if (sl->status) {
		stat_add(&c->w->stats.io_errors, 1);
		stat_add(&es->io_errors, 1);
		return;
	}
	io_counts_add(&es->io, sl->io.opcode, sl->io.length);
	io_counts_add(&c->reg.io, sl->io.opcode, sl->io.length);
	if (sl->io.opcode == IBNBD_OP_WRITE && (sl->io.flags & IBNBD_IOF_FUA))
		stat_add(&c->w->stats.fua_writes, 1);
}

/* The request in sl->io checked against the connection and its device:
 * 0, or the status it is refused with (logged, rate-limited). */
static int slot_check(struct conn *c, unsigned int tag, struct slot *sl)
{
	const struct ibnbd_io *io = &sl->io;
	struct ibnbd_io_target t;
	const char *why = NULL;
	int ret = 0;

	if (!c->hello_done) {
		ret = -ENOTCONN, why = "IO before HELLO";
	} else if (!sl->from_write && io->opcode == IBNBD_OP_WRITE) {
		ret = -EINVAL, why = "WRITE must arrive by RDMA_WRITE_WITH_IMM";
	} else if (io->handle >= CONN_MAX_OPENS || !c->opens[io->handle].exp) {
		ret = -EBADF, why = "no device open with this handle";
	} else if (io->cookie != c->opens[io->handle].cookie) {
		/* Built for an earlier open of this handle number: a stale
		 * handle must never reach the export open under it now. */
		ret = -EBADF, why = "stale handle (its cookie belongs to an earlier open)";
	} else if (export_removed(c->opens[io->handle].exp)) {
		ret = -ENODEV, why = "the export was removed from the configuration";
	} else if ((io->flags & IBNBD_IOF_FUA) && !(c->features & IBNBD_FEAT_FUA)) {
		ret = -EINVAL, why = "FUA was not negotiated";
	} else {
		sl->dev = &c->opens[io->handle];
		t = (struct ibnbd_io_target){
			.size = export_size(sl->dev->exp),
			.logical_block_size = sl->dev->exp->logical_block_size,
			.max_io_size = c->max_io_size,
			.max_discard_sectors = (c->features & IBNBD_FEAT_DISCARD)
						       ? sl->dev->exp->max_discard_sectors : 0,
			.max_write_zeroes_sectors = (c->features & IBNBD_FEAT_WRITE_ZEROES)
							    ? sl->dev->exp->max_write_zeroes_sectors : 0,
			.writable = sl->dev->writable,
		};
		ret = ibnbd_io_validate(io, &t);
		why = ret == -ERANGE ? "beyond the end of the device"
		      : ret == -EROFS ? "device opened read-only"
		      : ret == -EOPNOTSUPP ? "unsupported opcode"
					   : "bad length, alignment or flags";
	}
	if (!ret)
		return 0;
	c->nrejects++;
	stat_add(&c->w->stats.rejected, 1);
	if (c->nrejects <= CONN_LOG_REJECTS || !(c->nrejects % 1024))
		log_warn("%s: rejected %s tag %u handle %u offset %llu length %u flags 0x%x: %s (%s)%s",
			 c->name, ibnbd_op_name(io->opcode), tag, io->handle,
			 (unsigned long long)io->offset, io->length, io->flags, why, strerror(-ret),
			 c->nrejects == CONN_LOG_REJECTS ? "; further rejects logged every 1024th" : "");
	return ret;
}

/* Starts the backing IO of the slot: 0, or -EAGAIN without an SQE. */
static int slot_submit(struct conn *c, unsigned int tag)
{
	struct slot *sl = &c->slots[tag];
	struct io_uring_sqe *sqe = worker_get_sqe(c->w);

	if (!sqe)
		return -EAGAIN;
	io_engine_prep(sqe, sl->dev->exp, &sl->io, slot_data(c, tag), c->idx, sl->fallback);
	io_uring_sqe_set_data64(sqe, conn_wrid(c, WRID_IO, tag));
	sl->state = SLOT_BACKING;
	c->io_inflight++;
	return 0;
}

/* The answer of a finished slot: posted now (the slot is FREE for the
 * client again), or queued in order until SQ credits return (WAIT_SQ). A
 * closing connection answers nothing. */
static void slot_answer(struct conn *c, unsigned int tag)
{
	struct slot *sl = &c->slots[tag];
	unsigned int n = answer_wrs(sl);

	if (c->state == CONN_CLOSING) {
		sl->state = SLOT_FREE;
		c->busy--;
		return;
	}
	if (!sq_has_room(c, n)) {
		sl->state = SLOT_WAIT_SQ;
		c->pending[(c->pend_head + c->pend_count++) % c->qd] = (uint16_t)tag;
		return;
	}
	ibnbd_io_rsp_encode((struct ibnbd_io_rsp *)send_buf(c, tag), sl->io.req_id, sl->status);
	sl->state = SLOT_FREE;
	c->busy--;
	/* Cannot fail: only a closing connection refuses, checked above; the
	 * post itself happens, and fails the connection, in conn_flush(). */
	(void)conn_post_answer(c, tag, sizeof(struct ibnbd_io_rsp), n == 2 ? sl : NULL, tag);
	conn_maybe_finish_drain(c);
}

static void slot_process(struct conn *c, unsigned int tag, enum slot_event ev, int res)
{
	struct slot *sl = &c->slots[tag];
	bool retry;

	switch (ev) {
	case SLOT_EV_REQUEST: /* FREE (the framing checked) */
		c->busy++;
		sl->fallback = false;
		sl->dev = NULL;
		sl->started_ns = clock_now_ns();
		sl->status = slot_check(c, tag, sl);
		if (!sl->status && !slot_submit(c, tag))
			return;
		if (!sl->status)
			sl->status = -EAGAIN;
		break;
	case SLOT_EV_IO_DONE: /* BACKING */
		c->io_inflight--;
		if (c->state == CONN_CLOSING && !c->io_inflight)
			conn_check_drained(c);
		sl->status = io_engine_status(&sl->io, res, sl->fallback, &retry);
		if (retry && c->state != CONN_CLOSING) {
			sl->fallback = true;
			if (!slot_submit(c, tag))
				return;
			sl->status = -EAGAIN;
		} else if (sl->status) {
			count_io(c, sl);
			log_err("%s: %s on export '%s' tag %u offset %llu length %u failed: %s",
				c->name, ibnbd_op_name(sl->io.opcode), sl->dev->exp->name, tag,
				(unsigned long long)sl->io.offset, sl->io.length,
				strerror(-sl->status));
		} else {
			count_io(c, sl);
		}
		break;
	case SLOT_EV_SQ_ROOM: /* WAIT_SQ, taken off the pending FIFO */
		break;
	}
	slot_answer(c, tag);
}

/* Send completions returned credits: answer who waited for them, in order. */
static void flush_pending(struct conn *c)
{
	while (c->pend_count && c->state != CONN_CLOSING) {
		unsigned int tag = c->pending[c->pend_head];

		if (!sq_has_room(c, answer_wrs(&c->slots[tag])))
			return;
		c->pend_head = (c->pend_head + 1) % c->qd;
		c->pend_count--;
		slot_process(c, tag, SLOT_EV_SQ_ROOM, 0);
	}
}

/* ---- framing ---- */

/*
 * A decoded IO request for its tag: what cannot be framed (tag out of
 * range or busy, a WRITE_WITH_IMM that does not match its header) drops
 * the connection; the rest is the slot's. from_write: it came by
 * WRITE_WITH_IMM with data_len bytes of data in the slot.
 */
void conn_handle_io(struct conn *c, const struct ibnbd_io *io, bool from_write,
		    uint32_t data_len)
{
	unsigned int tag = ibnbd_req_tag(io->req_id);
	struct slot *sl;

	if (tag >= c->qd) {
		conn_violation(c, "request tag %u beyond queue depth %u", tag, c->qd);
		return;
	}
	sl = &c->slots[tag];
	if (sl->state != SLOT_FREE) {
		conn_violation(c, "request on tag %u which is still busy (over-ran its credits)",
			       tag);
		return;
	}
	if (from_write && (io->opcode != IBNBD_OP_WRITE || io->length != data_len)) {
		conn_violation(c, "WRITE_WITH_IMM on tag %u carries %s of %u bytes with %u data bytes",
			       tag, ibnbd_op_name(io->opcode), io->length, data_len);
		return;
	}
	if (c->state == CONN_DRAINING)
		return; /* shutting down: the client re-issues it after reconnect */
	sl->io = *io;
	sl->from_write = from_write;
	sl->data_len = data_len;
	slot_process(c, tag, SLOT_EV_REQUEST, 0);
}

/* A SEND from the client: a control message or a data-less IO request. */
static void handle_send(struct conn *c, const uint8_t *msg, size_t len)
{
	struct ibnbd_io io;
	uint16_t type;

	if (ibnbd_msg_peek(msg, len, &type)) {
		conn_violation(c, "message of %zu bytes with bad magic or length", len);
		return;
	}
	if (type != IBNBD_MSG_IO_REQ) {
		conn_handle_ctrl(c, type, msg, len);
		return;
	}
	if (ibnbd_io_req_decode(msg, len, &io)) {
		conn_violation(c, "malformed IO request");
		return;
	}
	conn_handle_io(c, &io, false, 0);
}

/* RDMA_WRITE_WITH_IMM: [data | header] landed in slot imm. */
static void handle_write_imm(struct conn *c, uint32_t tag, uint32_t byte_len)
{
	struct ibnbd_io io;
	const uint8_t *hdr;

	if (!c->slot_mem) {
		/* No slots before HELLO: nothing can have been written. */
		conn_violation(c, "WRITE_WITH_IMM before HELLO");
		return;
	}
	if (tag >= c->qd) {
		conn_violation(c, "WRITE_WITH_IMM to slot %u beyond queue depth %u", tag, c->qd);
		return;
	}
	if (byte_len < sizeof(struct ibnbd_io_req) ||
	    byte_len > c->max_io_size + sizeof(struct ibnbd_io_req)) {
		conn_violation(c, "WRITE_WITH_IMM of %u bytes to slot %u", byte_len, tag);
		return;
	}
	/* The header is copied out before use: the client can rewrite the slot. */
	hdr = slot_data(c, tag) + byte_len - sizeof(struct ibnbd_io_req);
	if (ibnbd_io_req_decode(hdr, sizeof(struct ibnbd_io_req), &io)) {
		conn_violation(c, "malformed IO header in slot %u", tag);
		return;
	}
	if (ibnbd_req_tag(io.req_id) != tag) {
		conn_violation(c, "IO header for tag %u written to slot %u", ibnbd_req_tag(io.req_id),
			       tag);
		return;
	}
	conn_handle_io(c, &io, true, byte_len - (uint32_t)sizeof(struct ibnbd_io_req));
}

static void on_recv(struct conn *c, const struct ibv_wc *wc)
{
	uint32_t i = wrid_index(wc->wr_id);
	uint8_t msg[IBNBD_MSG_MAX];
	size_t len = wc->byte_len;

	if (c->state == CONN_CLOSING)
		return;
	c->rx_count++;
	if (wc->opcode == IBV_WC_RECV_RDMA_WITH_IMM) {
		/* The receive buffer is untouched; give it back first (credit). */
		if (conn_post_recv(c, i)) {
			conn_close(c, "cannot repost a receive");
			return;
		}
		handle_write_imm(c, ntohl(wc->imm_data), wc->byte_len);
		return;
	}
	if (len > IBNBD_MSG_MAX)
		len = IBNBD_MSG_MAX;
	memcpy(msg, recv_buf(c, i), len);
	if (conn_post_recv(c, i)) {
		conn_close(c, "cannot repost a receive");
		return;
	}
	handle_send(c, msg, wc->byte_len);
}

void conn_on_wc(struct conn *c, const struct ibv_wc *wc)
{
	enum wrid_type t = wrid_type(wc->wr_id);

	if (t == WRID_RECV) {
		c->rq_posted--;
	} else if ((int32_t)(wrid_index(wc->wr_id) + 1 - c->sq_done) > 0) {
		c->sq_done = wrid_index(wc->wr_id) + 1;
	}
	if (wc->status != IBV_WC_SUCCESS) {
		if (wc->status != IBV_WC_WR_FLUSH_ERR) {
			log_warn("%s: %s completion failed: %s (vendor error 0x%x)", c->name,
				 t == WRID_RECV ? "receive" : t == WRID_RDMA_WRITE ? "RDMA write of READ data" : "send",
				 ibv_wc_status_str(wc->status), wc->vendor_err);
			if (t == WRID_RDMA_WRITE)
				stat_add(&c->w->stats.dropped, 1);
		}
		conn_fail(c, "completion error");
		return;
	}
	if (t == WRID_RECV) {
		on_recv(c, wc);
		return;
	}
	if (c->pend_count)
		flush_pending(c);
}

void conn_on_io(struct conn *c, uint32_t tag, int res)
{
	if (tag >= c->qd || c->slots[tag].state != SLOT_BACKING)
		return;
	slot_process(c, tag, SLOT_EV_IO_DONE, res);
}
