// SPDX-License-Identifier: GPL-2.0-only
#include "session.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "clock.h"
#include "io_engine.h"
#include "log.h"
#include "rdma_conn.h"
#include "registry.h"
#include "worker.h"

#define SESSION_MAX_OPENS 64
#define SESSION_DRAIN_TIMEOUT_MS 10000 /* DRAINING: busy slots must answer */
#define SESSION_FLUSH_TIMEOUT_MS 3000  /* CLOSING: wait for flushed receives */
#define SESSION_SIGNAL_EVERY 16        /* answers: one signaled send per this many WRs */
#define SESSION_LOG_REJECTS 16 /* then every 1024th, so a bad client can't flood */

enum session_state { SESS_ACCEPTING, SESS_LIVE, SESS_DRAINING, SESS_CLOSING };

/*
 * FREE: no request; the client may send one for this tag.
 * BACKING: the io_uring op is in flight (the slot's memory is the IO buffer).
 * WAIT_SQ: done, waiting for send-queue credits to post the answer.
 */
enum slot_state { SLOT_FREE, SLOT_BACKING, SLOT_WAIT_SQ };

/*
 * A control answer held back while other connections drain (registry.h):
 * DEFER_HELLO  an earlier connection of the same (session, conn index)
 * DEFER_OPEN   the writers of another session of the same host (takeover)
 */
enum deferred { DEFER_NONE, DEFER_HELLO, DEFER_OPEN };

struct open_dev {
	const struct export *exp; /* NULL: handle unused */
	bool writable;
	uint64_t cookie; /* what IO on this handle must carry (proto.h) */
};

struct slot {
	enum slot_state state;
	bool fallback;  /* WRITE_ZEROES retried as PUNCH_HOLE */
	int32_t status; /* answer, once the backing IO is done */
	struct ibnbd_io io;
	const struct open_dev *dev;
};

struct session {
	struct worker *w;
	unsigned int idx;
	uint16_t gen;
	enum session_state state;
	struct rdma_cm_id *id;
	bool qp_created;
	char name[160]; /* "conn 3 192.0.2.10:41234 host 'x'" for logs */

	uint16_t qd;
	uint32_t max_io_size;
	uint32_t stride;
	uint64_t features;
	bool hello_done;

	uint8_t *slot_mem; /* qd * stride, MR + io_uring fixed buffer idx */
	size_t slot_len;
	struct ibv_mr *slot_mr;
	bool buf_registered;
	uint8_t *msg_mem; /* receive buffers, then send buffers */
	size_t msg_len;
	struct ibv_mr *msg_mr;
	unsigned int nbufs; /* qd + IBNBD_CTRL_CREDITS of each kind */

	struct slot *slots;
	unsigned int busy;      /* slots not FREE */
	unsigned int io_inflight; /* io_uring ops that point at slot memory */

	/*
	 * SQ credits. Every WR we post takes the next sequence number (its
	 * wr_id index); only some are signaled, and a send completion retires
	 * every WR up to its own (an RC send queue completes in order).
	 */
	unsigned int sq_depth;
	uint32_t sq_head;          /* sequence number of the next WR */
	uint32_t sq_done;          /* every WR before this one is retired */
	uint32_t sq_last_signaled; /* sequence number of the last signaled WR */
	unsigned int sq_unsignaled; /* posted since the last signaled one */
	/* Answers queued by post_answer(), posted by session_flush(). */
	struct answer_wr {
		struct ibv_send_wr data, rsp;
		struct ibv_sge data_sge, rsp_sge;
	} *answers;                 /* per send buffer (tag, or qd for control) */
	struct ibv_send_wr *batch_head, *batch_tail;
	struct session *flush_next; /* on the worker's flush_list */
	unsigned int rq_depth, rq_posted;
	uint16_t *pending; /* FIFO of tags in WAIT_SQ */
	unsigned int pend_head, pend_count;

	struct open_dev opens[SESSION_MAX_OPENS];
	struct reg_entry reg;
	enum deferred deferred;
	int64_t deferred_since_ms;
	struct ibnbd_hello_params deferred_hello;
	struct ibnbd_open_params deferred_open;

	/*
	 * Keepalive: receives are counted on the IO path (no clock there); the
	 * 1 s tick notices the count moved and stamps rx_last_ms.
	 */
	uint64_t rx_count, rx_count_seen;
	int64_t rx_last_ms;
	bool keepalive_seen; /* it sent a KEEPALIVE: it is one that does */

	uint64_t nrejects;
	int64_t state_since_ms;
	int cq_need;
	bool cq_charged; /* cq_need taken from the worker's CQ budget */
};

static uint8_t *recv_buf(struct session *s, unsigned int i)
{
	return s->msg_mem + (size_t)i * IBNBD_MSG_MAX;
}

static uint8_t *send_buf(struct session *s, unsigned int i)
{
	return s->msg_mem + (size_t)(s->nbufs + i) * IBNBD_MSG_MAX;
}

static uint8_t *slot_data(struct session *s, unsigned int tag)
{
	return s->slot_mem + (size_t)tag * s->stride;
}

static uint64_t wrid(struct session *s, enum wrid_type t, uint32_t index)
{
	return wrid_make(t, s->idx, s->gen, index);
}

/* WRs posted and not yet retired. */
static unsigned int sq_used(const struct session *s)
{
	return s->sq_head - s->sq_done;
}

/* Whether a signaled WR is posted and not yet completed: its completion
 * will come, and retire everything before it. */
static bool sq_signal_pending(const struct session *s)
{
	return (int32_t)(s->sq_last_signaled - s->sq_done) >= 0 && sq_used(s);
}

/*
 * On a QP in error: WRs still queued complete with a flush error, but
 * unsignaled ones that completed before say nothing. Unless a signaled WR
 * is still to complete, post a signaled marker (the QP has an SQ entry
 * for it beyond sq_depth): its flush completion retires everything.
 */
static void sq_drain(struct session *s)
{
	struct ibv_send_wr wr = {
		.wr_id = wrid(s, WRID_SEND, s->sq_head),
		.opcode = IBV_WR_SEND,
		.send_flags = IBV_SEND_SIGNALED,
	};

	if (!sq_used(s) || sq_signal_pending(s))
		return;
	if (rdma_conn_post_send(s->id->qp, &wr)) {
		/* Nothing more will complete: the QP is destroyed before its
		 * memory is freed, and stale completions are dropped by
		 * their generation. */
		s->sq_done = s->sq_head;
		return;
	}
	s->sq_last_signaled = s->sq_head++;
}

int session_cq_need(const struct ibnbd_conn_params *p)
{
	/*
	 * SQ: each request needs at most 2 WRs (READ data + response); twice
	 * that as slack, because send completions of answered tags may still
	 * be unpolled when the client reuses them. RQ: one per credit.
	 */
	return (4 * p->queue_depth + IBNBD_CTRL_CREDITS) + (p->queue_depth + IBNBD_CTRL_CREDITS);
}

static void set_state(struct session *s, enum session_state st)
{
	s->state = st;
	s->state_since_ms = clock_now_ms();
}

/*
 * CLOSING and no backing IO in flight: nothing of ours can reach an export
 * any more, so what we held (writer role, our (session, conn index)) is
 * released and whoever waits for it may go on.
 */
static void session_check_drained(struct session *s)
{
	if (s->state == SESS_CLOSING && !s->io_inflight && s->reg.joined) {
		registry_leave(s->w->shared->registry, &s->reg);
		log_debug(LOG_CAT_PROTO, "%s: drained", s->name);
	}
}

/* Disconnect and push the QP to error so every posted WR comes back. */
static void session_close(struct session *s, const char *why)
{
	struct ibv_qp_attr attr = { .qp_state = IBV_QPS_ERR };

	if (s->state == SESS_CLOSING)
		return;
	log_info("%s: closing: %s", s->name, why);
	set_state(s, SESS_CLOSING);
	s->w->nclosing++;
	if (s->deferred) {
		s->deferred = DEFER_NONE; /* the answer is never sent */
		registry_stop_waiting(s->w->shared->registry, &s->reg);
	}
	/* Answers queued this round go out first (or are flushed with the
	 * rest), so that their sequence numbers are retired by sq_drain(). */
	if (s->batch_head) {
		if (rdma_conn_post_send(s->id->qp, s->batch_head))
			s->sq_done = s->sq_head; /* not posted: nothing will complete */
		s->batch_head = s->batch_tail = NULL;
	}
	rdma_disconnect(s->id); /* may fail if never connected; ERR below anyway */
	if (s->qp_created) {
		ibv_modify_qp(s->id->qp, &attr, IBV_QP_STATE);
		sq_drain(s);
	}
	session_check_drained(s);
}

/* A message we cannot frame: only this connection pays. */
static void session_violation(struct session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void session_violation(struct session *s, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_warn("%s: protocol violation, dropping the connection: %s", s->name, msg);
	stat_add(&s->w->stats.dropped, 1);
	session_close(s, "protocol violation");
}

static int post_recv(struct session *s, unsigned int i)
{
	struct ibv_sge sge = {
		.addr = (uintptr_t)recv_buf(s, i),
		.length = IBNBD_MSG_MAX,
		.lkey = s->msg_mr->lkey,
	};
	struct ibv_recv_wr wr = { .wr_id = wrid(s, WRID_RECV, i), .sg_list = &sge, .num_sge = 1 };
	int ret = rdma_conn_post_recv(s->id->qp, &wr);

	if (ret)
		return ret;
	s->rq_posted++;
	return 0;
}

/*
 * Queues the answer in send buffer buf, preceded for a successful READ by
 * the RDMA_WRITE of the data (RC ordering lands the data first); the
 * caller checked the SQ credits. session_flush() posts the round's answers
 * together: one doorbell. The answer itself tells the client everything
 * arrived, so the WRITE is never signaled and the SEND only every
 * SESSION_SIGNAL_EVERY WRs, or once half the SQ is taken: a send
 * completion would otherwise wake the worker a second time per request.
 */
static int post_answer(struct session *s, unsigned int buf, size_t len,
		       const struct slot *read_slot, unsigned int tag)
{
	struct answer_wr *a = &s->answers[buf];
	unsigned int n = read_slot ? 2 : 1;
	uint32_t seq = s->sq_head;
	bool signal = s->sq_unsignaled + n >= SESSION_SIGNAL_EVERY ||
		      sq_used(s) + n > s->sq_depth / 2;
	struct ibv_send_wr *first = &a->rsp;

	if (s->state == SESS_CLOSING)
		return -ENOTCONN; /* the QP is in error: nothing more goes out */
	a->rsp_sge = (struct ibv_sge){
		.addr = (uintptr_t)send_buf(s, buf),
		.length = (uint32_t)len,
		.lkey = s->msg_mr->lkey,
	};
	a->rsp = (struct ibv_send_wr){
		.wr_id = wrid(s, WRID_SEND, seq + n - 1),
		.sg_list = &a->rsp_sge,
		.num_sge = 1,
		.opcode = IBV_WR_SEND,
		.send_flags = signal ? IBV_SEND_SIGNALED : 0,
	};
	if (read_slot) {
		a->data_sge = (struct ibv_sge){
			.addr = (uintptr_t)slot_data(s, tag),
			.length = read_slot->io.length,
			.lkey = s->slot_mr->lkey,
		};
		a->data = (struct ibv_send_wr){
			.wr_id = wrid(s, WRID_RDMA_WRITE, seq),
			.next = &a->rsp,
			.sg_list = &a->data_sge,
			.num_sge = 1,
			.opcode = IBV_WR_RDMA_WRITE,
			.wr.rdma = { .remote_addr = read_slot->io.addr, .rkey = read_slot->io.rkey },
		};
		first = &a->data;
	}
	if (s->batch_tail) {
		s->batch_tail->next = first;
	} else {
		s->batch_head = first;
		s->flush_next = s->w->flush_list;
		s->w->flush_list = s;
	}
	s->batch_tail = &a->rsp;
	s->sq_head += n;
	if (signal) {
		s->sq_last_signaled = seq + n - 1;
		s->sq_unsignaled = 0;
	} else {
		s->sq_unsignaled += n;
	}
	return 0;
}

struct session *session_flush(struct session *s)
{
	struct session *next = s->flush_next;
	struct ibv_send_wr *head = s->batch_head;
	int ret;

	s->flush_next = NULL;
	s->batch_head = s->batch_tail = NULL;
	if (!head || s->state == SESS_CLOSING)
		return next; /* a closed QP: sq_drain() retires what was queued */
	ret = rdma_conn_post_send(s->id->qp, head);
	if (ret) {
		/* Only a QP already in error refuses a post we had credits for. */
		log_err("%s: posting answers failed: %s", s->name, strerror(-ret));
		session_close(s, "post_send failed");
	}
	return next;
}

static unsigned int answer_wrs(const struct slot *sl)
{
	return sl->io.opcode == IBNBD_OP_READ && sl->status == 0 ? 2 : 1;
}

/* IO SQ credits: the control credit's SQ entry stays reserved. */
static bool sq_has_room(const struct session *s, unsigned int n)
{
	return sq_used(s) + n + IBNBD_CTRL_CREDITS <= s->sq_depth;
}

static void count_io(struct session *s, const struct slot *sl)
{
	struct server_stats *st = &s->w->stats;

	switch (sl->io.opcode) {
	case IBNBD_OP_READ:
		stat_add(&st->reads, 1);
		stat_add(&st->read_bytes, sl->io.length);
		break;
	case IBNBD_OP_WRITE:
		stat_add(&st->writes, 1);
		stat_add(&st->write_bytes, sl->io.length);
		if (sl->io.flags & IBNBD_IOF_FUA)
			stat_add(&st->fua_writes, 1);
		break;
	case IBNBD_OP_FLUSH:
		stat_add(&st->flushes, 1);
		break;
	case IBNBD_OP_DISCARD:
		stat_add(&st->discards, 1);
		break;
	case IBNBD_OP_WRITE_ZEROES:
		stat_add(&st->write_zeroes, 1);
		break;
	}
}

static void maybe_finish_drain(struct session *s)
{
	if (s->state == SESS_DRAINING && s->busy == 0)
		session_close(s, "server shutting down, in-flight IO finished");
}

/* Answers tag with sl->status now, or queues it until SQ credits return. */
static void slot_answer(struct session *s, unsigned int tag)
{
	struct slot *sl = &s->slots[tag];
	unsigned int n = answer_wrs(sl);

	if (s->state == SESS_CLOSING) {
		sl->state = SLOT_FREE;
		s->busy--;
		return;
	}
	if (!sq_has_room(s, n)) {
		if (sl->state != SLOT_WAIT_SQ) {
			sl->state = SLOT_WAIT_SQ;
			s->pending[(s->pend_head + s->pend_count++) % s->qd] = (uint16_t)tag;
		}
		return;
	}
	ibnbd_io_rsp_encode((struct ibnbd_io_rsp *)send_buf(s, tag), sl->io.req_id, sl->status);
	/* The slot is free for the client once the answer is on its way. */
	sl->state = SLOT_FREE;
	s->busy--;
	post_answer(s, tag, sizeof(struct ibnbd_io_rsp), n == 2 ? sl : NULL, tag);
	maybe_finish_drain(s);
}

/* Send completions returned credits: answer who waited for them, in order. */
static void flush_pending(struct session *s)
{
	while (s->pend_count && s->state != SESS_CLOSING) {
		unsigned int tag = s->pending[s->pend_head];

		if (!sq_has_room(s, answer_wrs(&s->slots[tag])))
			return;
		s->pend_head = (s->pend_head + 1) % s->qd;
		s->pend_count--;
		slot_answer(s, tag);
	}
}

static void reject_io(struct session *s, unsigned int tag, int status, const char *why)
{
	struct slot *sl = &s->slots[tag];

	s->nrejects++;
	stat_add(&s->w->stats.rejected, 1);
	if (s->nrejects <= SESSION_LOG_REJECTS || !(s->nrejects % 1024))
		log_warn("%s: rejected %s tag %u handle %u offset %llu length %u flags 0x%x: %s (%s)%s",
			 s->name, ibnbd_op_name(sl->io.opcode), tag, sl->io.handle,
			 (unsigned long long)sl->io.offset, sl->io.length, sl->io.flags, why,
			 strerror(-status),
			 s->nrejects == SESSION_LOG_REJECTS ? "; further rejects logged every 1024th" : "");
	sl->status = status;
	slot_answer(s, tag);
}

static void submit_io(struct session *s, unsigned int tag)
{
	struct slot *sl = &s->slots[tag];
	struct io_uring_sqe *sqe = worker_get_sqe(s->w);

	if (!sqe) {
		sl->status = -EAGAIN;
		slot_answer(s, tag);
		return;
	}
	io_engine_prep(sqe, sl->dev->exp, &sl->io, slot_data(s, tag), s->idx, sl->fallback);
	io_uring_sqe_set_data64(sqe, wrid(s, WRID_IO, tag));
	sl->state = SLOT_BACKING;
	s->io_inflight++;
}

/*
 * A framed IO request for tag: check it against the session and device, then
 * start the backing IO or answer with an error. from_write: it came by
 * WRITE_WITH_IMM with data_len bytes of data in the slot.
 */
static void handle_io(struct session *s, const struct ibnbd_io *io, bool from_write,
		      uint32_t data_len)
{
	unsigned int tag = ibnbd_req_tag(io->req_id);
	struct ibnbd_io_target t;
	struct slot *sl;
	int ret;

	if (tag >= s->qd) {
		session_violation(s, "request tag %u beyond queue depth %u", tag, s->qd);
		return;
	}
	sl = &s->slots[tag];
	if (sl->state != SLOT_FREE) {
		session_violation(s, "request on tag %u which is still busy (over-ran its credits)",
				  tag);
		return;
	}
	if (from_write && (io->opcode != IBNBD_OP_WRITE || io->length != data_len)) {
		session_violation(s, "WRITE_WITH_IMM on tag %u carries %s of %u bytes with %u data bytes",
				  tag, ibnbd_op_name(io->opcode), io->length, data_len);
		return;
	}
	if (s->state == SESS_DRAINING)
		return; /* shutting down: the client re-issues it after reconnect */
	sl->state = SLOT_BACKING;
	s->busy++;
	sl->io = *io;
	sl->fallback = false;
	sl->dev = NULL;
	sl->status = 0;

	if (!s->hello_done) {
		reject_io(s, tag, -ENOTCONN, "IO before HELLO");
		return;
	}
	if (!from_write && io->opcode == IBNBD_OP_WRITE) {
		reject_io(s, tag, -EINVAL, "WRITE must arrive by RDMA_WRITE_WITH_IMM");
		return;
	}
	if (io->handle >= SESSION_MAX_OPENS || !s->opens[io->handle].exp) {
		reject_io(s, tag, -EBADF, "no device open with this handle");
		return;
	}
	if (io->cookie != s->opens[io->handle].cookie) {
		/* Built for an earlier open of this handle number: a stale
		 * handle must never reach the export open under it now. */
		reject_io(s, tag, -EBADF, "stale handle (its cookie belongs to an earlier open)");
		return;
	}
	sl->dev = &s->opens[io->handle];
	t = (struct ibnbd_io_target){
		.size = sl->dev->exp->size,
		.logical_block_size = sl->dev->exp->logical_block_size,
		.max_io_size = s->max_io_size,
		.max_discard_sectors = (s->features & IBNBD_FEAT_DISCARD)
					       ? sl->dev->exp->max_discard_sectors : 0,
		.max_write_zeroes_sectors = (s->features & IBNBD_FEAT_WRITE_ZEROES)
						    ? sl->dev->exp->max_write_zeroes_sectors : 0,
		.writable = sl->dev->writable,
	};
	if ((io->flags & IBNBD_IOF_FUA) && !(s->features & IBNBD_FEAT_FUA)) {
		reject_io(s, tag, -EINVAL, "FUA was not negotiated");
		return;
	}
	ret = ibnbd_io_validate(io, &t);
	if (ret) {
		const char *why = ret == -ERANGE ? "beyond the end of the device"
				  : ret == -EROFS ? "device opened read-only"
				  : ret == -EOPNOTSUPP ? "unsupported opcode"
						       : "bad length, alignment or flags";
		reject_io(s, tag, ret, why);
		return;
	}
	submit_io(s, tag);
}

/* ---- control messages (one credit, answered at once from send buffer qd) ---- */

static int ctrl_post(struct session *s, size_t len)
{
	if (sq_used(s) + 1 > s->sq_depth) {
		session_violation(s, "control message while the previous answer is unsent");
		return -ENOSPC;
	}
	return post_answer(s, s->qd, len, NULL, s->qd);
}

static void uuid_tag(const struct session *s, char *buf, size_t len)
{
	char u[REGISTRY_UUID_STR];

	if (registry_uuid_is_zero(s->reg.uuid)) {
		snprintf(buf, len, "no session uuid");
		return;
	}
	registry_uuid_str(s->reg.uuid, u);
	snprintf(buf, len, "session %s conn %u/%u", u, s->reg.conn_index, s->reg.conn_count);
}

/* Sends the HELLO_RSP for h (now, or after a deferral). */
static void answer_hello(struct session *s, const struct ibnbd_hello_params *h)
{
	struct ibnbd_slot_desc d = {
		.version = IBNBD_PROTO_VERSION,
		.queue_depth = s->qd,
		.features = s->features,
		.slot_addr = (uintptr_t)s->slot_mem,
		.slot_rkey = s->slot_mr->rkey,
		.slot_stride = s->stride,
		.max_io_size = s->max_io_size,
	};
	char tag[96];

	if (s->hello_done) {
		d.status = -EALREADY;
	} else if (h->version != IBNBD_PROTO_VERSION) {
		d.status = -EPROTONOSUPPORT;
	} else {
		char *p = strstr(s->name, " host ");

		/* IO is accepted from here on: after any fencing wait. */
		s->hello_done = true;
		if (p)
			*p = '\0';
		snprintf(s->name + strlen(s->name), sizeof(s->name) - strlen(s->name),
			 " host '%s'", h->host_id);
		uuid_tag(s, tag, sizeof(tag));
		log_info("%s: HELLO, %s, queue depth %u, max IO %u bytes, features 0x%llx", s->name,
			 tag, s->qd, s->max_io_size, (unsigned long long)s->features);
	}
	ibnbd_hello_rsp_encode((struct ibnbd_hello_rsp *)send_buf(s, s->qd), &d);
	ctrl_post(s, sizeof(struct ibnbd_hello_rsp));
}

static void handle_hello(struct session *s, const void *msg, size_t len)
{
	struct ibnbd_hello_params h;
	char tag[96];

	if (ibnbd_hello_decode(msg, len, &h)) {
		session_violation(s, "malformed HELLO");
		return;
	}
	if (!s->hello_done && h.version == IBNBD_PROTO_VERSION) {
		registry_set_host(s->w->shared->registry, &s->reg, h.host_id);
		if (registry_fence_pending(s->w->shared->registry, &s->reg)) {
			/*
			 * The connection this one replaces may still have backing IO
			 * in flight: no IO of ours may run before that has landed.
			 */
			uuid_tag(s, tag, sizeof(tag));
			log_info("%s: reconnect of %s host '%s': HELLO answered once the superseded connection has drained",
				 s->name, tag, h.host_id);
			s->deferred = DEFER_HELLO;
			s->deferred_hello = h;
			s->deferred_since_ms = clock_now_ms();
			return;
		}
	}
	answer_hello(s, &h);
}

static const struct export *find_export(struct session *s, const char *name)
{
	const struct worker_shared *sh = s->w->shared;

	for (unsigned int i = 0; i < sh->nexports; i++)
		if (!strcmp(sh->exports[i]->name, name))
			return sh->exports[i];
	return NULL;
}

/*
 * An OPEN, first time or retried after a deferral. Returns without
 * answering when a takeover has to wait for the old session to drain.
 */
static void open_export(struct session *s, const struct ibnbd_open_params *o)
{
	const struct export *e = find_export(s, o->name);
	struct ibnbd_dev_info d = { 0 };
	char holder[256];
	unsigned int h;
	int ret;

	for (h = 0; h < SESSION_MAX_OPENS && s->opens[h].exp; h++)
		;
	if (!s->hello_done) {
		d.status = -ENOTCONN;
	} else if (!e) {
		d.status = -ENOENT;
		log_warn("%s: OPEN of unknown export '%s'", s->name, o->name);
	} else if (o->access == IBNBD_ACCESS_RW && e->ro) {
		d.status = -EROFS;
		log_warn("%s: OPEN read-write of read-only export '%s' refused", s->name, o->name);
	} else if (h == SESSION_MAX_OPENS) {
		d.status = -EMFILE;
	} else if (o->access == IBNBD_ACCESS_RW &&
		   (ret = registry_open_rw(s->w->shared->registry, &s->reg, e->index, e->shared,
					   e->name, holder, sizeof(holder)))) {
		if (ret > 0) {
			if (s->deferred != DEFER_OPEN) {
				log_info("%s: OPEN read-write of '%s': taking it over from %s; answered once that session has drained",
					 s->name, e->name, holder);
				s->deferred = DEFER_OPEN;
				s->deferred_open = *o;
				s->deferred_since_ms = clock_now_ms();
			}
			return;
		}
		d.status = ret;
		stat_add(&s->w->stats.busy_opens, 1);
		log_warn("%s: OPEN read-write of '%s' refused: it is open read-write by %s (an export has one writing session unless it is shared)",
			 s->name, e->name, holder);
	} else {
		s->opens[h].exp = e;
		s->opens[h].writable = o->access == IBNBD_ACCESS_RW;
		s->opens[h].cookie = registry_open_cookie(s->w->shared->registry);
		d.handle = h;
		d.cookie = s->opens[h].cookie;
		memcpy(d.boot_id, s->w->shared->boot_id, sizeof(d.boot_id));
		d.size = e->size;
		d.logical_block_size = e->logical_block_size;
		d.physical_block_size = e->physical_block_size;
		d.max_discard_sectors =
			(s->features & IBNBD_FEAT_DISCARD) ? e->max_discard_sectors : 0;
		d.max_write_zeroes_sectors =
			(s->features & IBNBD_FEAT_WRITE_ZEROES) ? e->max_write_zeroes_sectors : 0;
		d.flags = e->flags | (s->opens[h].writable ? 0 : IBNBD_DEV_READ_ONLY);
		if (!(s->features & IBNBD_FEAT_FUA))
			d.flags &= ~IBNBD_DEV_FUA;
		d.export_id = e->export_id;
		log_info("%s: opened export '%s' (%s) %s as handle %u", s->name, e->name, e->path,
			 s->opens[h].writable ? "read-write" : "read-only", h);
	}
	if (s->deferred == DEFER_OPEN)
		log_info("%s: OPEN read-write of '%s' answered after %lld ms of waiting for the old session: %s",
			 s->name, o->name, (long long)(clock_now_ms() - s->deferred_since_ms),
			 d.status ? strerror(-d.status) : "granted");
	s->deferred = DEFER_NONE;
	ibnbd_open_rsp_encode((struct ibnbd_open_rsp *)send_buf(s, s->qd), &d);
	ctrl_post(s, sizeof(struct ibnbd_open_rsp));
}

static void handle_open(struct session *s, const void *msg, size_t len)
{
	struct ibnbd_open_params o;

	if (ibnbd_open_decode(msg, len, &o)) {
		session_violation(s, "malformed OPEN");
		return;
	}
	open_export(s, &o);
}

static void handle_close(struct session *s, const void *msg, size_t len)
{
	uint32_t h;
	int32_t status = 0;
	unsigned int i;

	if (ibnbd_close_decode(msg, len, &h)) {
		session_violation(s, "malformed CLOSE");
		return;
	}
	if (h >= SESSION_MAX_OPENS || !s->opens[h].exp) {
		status = -EBADF;
	} else {
		for (i = 0; i < s->qd; i++)
			if (s->slots[i].state != SLOT_FREE && s->slots[i].dev == &s->opens[h])
				status = -EBUSY;
		if (!status && s->opens[h].writable)
			registry_close_rw(s->w->shared->registry, &s->reg,
					  s->opens[h].exp->index);
		if (!status)
			s->opens[h].exp = NULL;
	}
	ibnbd_ctrl_rsp_encode((struct ibnbd_ctrl_rsp *)send_buf(s, s->qd),
			      IBNBD_MSG_CLOSE_RSP, status, 0);
	ctrl_post(s, sizeof(struct ibnbd_ctrl_rsp));
}

static void handle_keepalive(struct session *s, const void *msg, size_t len)
{
	int32_t status;
	uint64_t cookie;

	if (ibnbd_ctrl_rsp_decode(msg, len, IBNBD_MSG_KEEPALIVE, &status, &cookie)) {
		session_violation(s, "malformed KEEPALIVE");
		return;
	}
	s->keepalive_seen = true;
	ibnbd_ctrl_rsp_encode((struct ibnbd_ctrl_rsp *)send_buf(s, s->qd),
			      IBNBD_MSG_KEEPALIVE_RSP, 0, cookie);
	ctrl_post(s, sizeof(struct ibnbd_ctrl_rsp));
}

/* A SEND from the client: a control message or a data-less IO request. */
static void handle_send(struct session *s, const uint8_t *msg, size_t len)
{
	struct ibnbd_io io;
	uint16_t type;

	if (ibnbd_msg_peek(msg, len, &type)) {
		session_violation(s, "message of %zu bytes with bad magic or length", len);
		return;
	}
	if (type != IBNBD_MSG_IO_REQ && s->deferred) {
		session_violation(s, "%s while the answer to the previous control message is pending (one control credit)",
				  ibnbd_msg_name(type));
		return;
	}
	switch (type) {
	case IBNBD_MSG_IO_REQ:
		if (ibnbd_io_req_decode(msg, len, &io)) {
			session_violation(s, "malformed IO request");
			return;
		}
		handle_io(s, &io, false, 0);
		return;
	case IBNBD_MSG_HELLO:
		handle_hello(s, msg, len);
		return;
	case IBNBD_MSG_OPEN:
		handle_open(s, msg, len);
		return;
	case IBNBD_MSG_CLOSE:
		handle_close(s, msg, len);
		return;
	case IBNBD_MSG_KEEPALIVE:
		handle_keepalive(s, msg, len);
		return;
	default:
		session_violation(s, "unexpected message type %u (%s)", type, ibnbd_msg_name(type));
		return;
	}
}

/* RDMA_WRITE_WITH_IMM: [data | header] landed in slot imm. */
static void handle_write_imm(struct session *s, uint32_t tag, uint32_t byte_len)
{
	struct ibnbd_io io;
	const uint8_t *hdr;

	if (tag >= s->qd) {
		session_violation(s, "WRITE_WITH_IMM to slot %u beyond queue depth %u", tag, s->qd);
		return;
	}
	if (byte_len < sizeof(struct ibnbd_io_req) ||
	    byte_len > s->max_io_size + sizeof(struct ibnbd_io_req)) {
		session_violation(s, "WRITE_WITH_IMM of %u bytes to slot %u", byte_len, tag);
		return;
	}
	/* The header is copied out before use: the client can rewrite the slot. */
	hdr = slot_data(s, tag) + byte_len - sizeof(struct ibnbd_io_req);
	if (ibnbd_io_req_decode(hdr, sizeof(struct ibnbd_io_req), &io)) {
		session_violation(s, "malformed IO header in slot %u", tag);
		return;
	}
	if (ibnbd_req_tag(io.req_id) != tag) {
		session_violation(s, "IO header for tag %u written to slot %u",
				  ibnbd_req_tag(io.req_id), tag);
		return;
	}
	handle_io(s, &io, true, byte_len - (uint32_t)sizeof(struct ibnbd_io_req));
}

static void on_recv(struct session *s, const struct ibv_wc *wc)
{
	uint32_t i = wrid_index(wc->wr_id);
	uint8_t msg[IBNBD_MSG_MAX];
	size_t len = wc->byte_len;

	if (s->state == SESS_CLOSING)
		return;
	s->rx_count++;
	if (wc->opcode == IBV_WC_RECV_RDMA_WITH_IMM) {
		/* The receive buffer is untouched; give it back first (credit). */
		if (post_recv(s, i)) {
			session_close(s, "cannot repost a receive");
			return;
		}
		handle_write_imm(s, ntohl(wc->imm_data), wc->byte_len);
		return;
	}
	if (len > IBNBD_MSG_MAX)
		len = IBNBD_MSG_MAX;
	memcpy(msg, recv_buf(s, i), len);
	if (post_recv(s, i)) {
		session_close(s, "cannot repost a receive");
		return;
	}
	handle_send(s, msg, wc->byte_len);
}

void session_on_wc(struct session *s, const struct ibv_wc *wc)
{
	enum wrid_type t = wrid_type(wc->wr_id);

	if (t == WRID_RECV) {
		s->rq_posted--;
	} else if ((int32_t)(wrid_index(wc->wr_id) + 1 - s->sq_done) > 0) {
		s->sq_done = wrid_index(wc->wr_id) + 1;
	}
	if (wc->status != IBV_WC_SUCCESS) {
		if (wc->status != IBV_WC_WR_FLUSH_ERR) {
			log_warn("%s: %s completion failed: %s (vendor error 0x%x)", s->name,
				 t == WRID_RECV ? "receive" : t == WRID_RDMA_WRITE ? "RDMA write of READ data" : "send",
				 ibv_wc_status_str(wc->status), wc->vendor_err);
			if (t == WRID_RDMA_WRITE)
				stat_add(&s->w->stats.dropped, 1);
		}
		session_close(s, "completion error");
		return;
	}
	if (t == WRID_RECV) {
		on_recv(s, wc);
		return;
	}
	if (s->pend_count)
		flush_pending(s);
}

void session_on_io(struct session *s, uint32_t tag, int res)
{
	struct slot *sl;
	bool retry;

	if (tag >= s->qd)
		return;
	sl = &s->slots[tag];
	s->io_inflight--;
	if (s->state == SESS_CLOSING && !s->io_inflight)
		session_check_drained(s);
	sl->status = io_engine_status(&sl->io, res, sl->fallback, &retry);
	if (retry && s->state != SESS_CLOSING) {
		sl->fallback = true;
		submit_io(s, tag);
		return;
	}
	if (sl->status) {
		stat_add(&s->w->stats.io_errors, 1);
		log_err("%s: %s on export '%s' tag %u offset %llu length %u failed: %s", s->name,
			ibnbd_op_name(sl->io.opcode), sl->dev->exp->name, tag,
			(unsigned long long)sl->io.offset, sl->io.length, strerror(-sl->status));
	} else {
		count_io(s, sl);
	}
	slot_answer(s, tag);
}

void session_on_cm_event(struct session *s, const struct rdma_cm_event *ev)
{
	switch (ev->event) {
	case RDMA_CM_EVENT_ESTABLISHED:
		if (s->state == SESS_ACCEPTING) {
			set_state(s, SESS_LIVE);
			log_info("%s: connected", s->name);
		}
		break;
	case RDMA_CM_EVENT_DISCONNECTED:
		session_close(s, "client disconnected");
		break;
	case RDMA_CM_EVENT_TIMEWAIT_EXIT:
		break;
	default:
		log_warn("%s: %s", s->name, rdma_event_str(ev->event));
		session_close(s, rdma_event_str(ev->event));
		break;
	}
}

void session_on_kick(struct session *s)
{
	struct registry *r = s->w->shared->registry;
	char why[256];

	if (s->state != SESS_CLOSING && s->reg.joined &&
	    registry_superseded(r, &s->reg, why, sizeof(why))) {
		log_warn("%s: %s; closing it, its in-flight IO finishes first", s->name, why);
		stat_add(&s->w->stats.superseded, 1);
		session_close(s, "superseded");
		return;
	}
	if (s->deferred == DEFER_HELLO && !registry_fence_pending(r, &s->reg)) {
		log_info("%s: the superseded connection drained after %lld ms", s->name,
			 (long long)(clock_now_ms() - s->deferred_since_ms));
		s->deferred = DEFER_NONE;
		answer_hello(s, &s->deferred_hello);
	} else if (s->deferred == DEFER_OPEN) {
		open_export(s, &s->deferred_open);
	}
}

void session_tick(struct session *s)
{
	unsigned int timeout_ms = s->w->shared->keepalive_timeout_ms;
	int64_t now = clock_now_ms();

	if (s->state == SESS_CLOSING || s->state == SESS_DRAINING)
		return;
	/*
	 * Silence only counts while we owe the client nothing: with IO or a
	 * control answer pending it waits for us, and a dead peer shows up as
	 * a failed send of that answer.
	 */
	if (s->rx_count != s->rx_count_seen || s->busy || s->deferred) {
		s->rx_count_seen = s->rx_count;
		s->rx_last_ms = now;
		return;
	}
	/*
	 * Clients before reconnect offered the keepalive feature without
	 * sending any: watch a connection once it has a session uuid (a client
	 * that reconnects) or has sent a KEEPALIVE.
	 */
	if (!timeout_ms || !(s->features & IBNBD_FEAT_KEEPALIVE) ||
	    (registry_uuid_is_zero(s->reg.uuid) && !s->keepalive_seen))
		return;
	if (now - s->rx_last_ms < timeout_ms)
		return;
	log_warn("%s: nothing received for %lld ms (keepalive timeout %u s): the client is presumed dead, dropping the connection",
		 s->name, (long long)(now - s->rx_last_ms), timeout_ms / 1000);
	stat_add(&s->w->stats.keepalive_timeouts, 1);
	session_close(s, "keepalive timeout");
}

void session_shutdown(struct session *s)
{
	if (s->state == SESS_CLOSING || s->state == SESS_DRAINING)
		return;
	set_state(s, SESS_DRAINING);
	maybe_finish_drain(s);
}

int session_cq_held(const struct session *s)
{
	return s->cq_need;
}

bool session_closing(const struct session *s)
{
	return s->state == SESS_CLOSING;
}

bool session_reapable(struct session *s)
{
	int64_t age = clock_now_ms() - s->state_since_ms;

	if (s->state == SESS_DRAINING && age > SESSION_DRAIN_TIMEOUT_MS)
		session_close(s, "shutdown: in-flight IO did not finish in time");
	if (s->state != SESS_CLOSING || s->io_inflight || sq_used(s))
		return false;
	/*
	 * Some providers don't flush the receive queue of a QP in error; the
	 * QP is destroyed before its memory is freed, and stale completions
	 * are dropped by their generation, so waiting a bit is enough.
	 */
	return s->rq_posted == 0 || age > SESSION_FLUSH_TIMEOUT_MS;
}

/* ---- construction ---- */

static void *map_mem(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
		       -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

int session_create(struct worker *w, unsigned int idx, struct rdma_cm_id *id,
		   const struct ibnbd_conn_params *req, const char *peer, struct session **out)
{
	struct ibnbd_conn_params rep;
	struct rdma_conn_qp_caps caps;
	struct rdma_conn_param cp = { 0 };
	struct ibnbd_conn_rep wire;
	struct session *s;
	struct iovec iov;
	unsigned int i;
	int ret;

	ret = ibnbd_conn_negotiate(req, &w->shared->limits, &rep);
	if (ret) {
		log_warn("worker %u: connection from %s refused: version %u, depth %u, max IO %u: %s",
			 w->index, peer, req->version, req->queue_depth, req->max_io_size,
			 strerror(-ret));
		return ret;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->w = w;
	s->idx = idx;
	s->gen = w->session_gen[idx];
	s->id = id;
	snprintf(s->name, sizeof(s->name), "worker %u conn %u from %s", w->index, idx, peer);
	memcpy(s->reg.uuid, req->session_uuid, sizeof(s->reg.uuid));
	s->reg.conn_index = req->conn_index;
	s->reg.conn_count = req->conn_count;
	s->reg.kick_fd = w->efd;
	snprintf(s->reg.peer, sizeof(s->reg.peer), "%s", peer);
	s->rx_last_ms = clock_now_ms();
	s->max_io_size = rep.max_io_size;
	s->features = rep.features;
	s->stride = (uint32_t)((rep.max_io_size + sizeof(struct ibnbd_io_req) + 4095) & ~4095u);
	/* One io_uring fixed buffer is at most 1 GiB. */
	if ((uint64_t)rep.queue_depth * s->stride > (1u << 30))
		rep.queue_depth = (uint16_t)((1u << 30) / s->stride);
	s->qd = rep.queue_depth;
	s->nbufs = s->qd + IBNBD_CTRL_CREDITS;
	s->sq_depth = 4 * s->qd + IBNBD_CTRL_CREDITS;
	s->sq_last_signaled = UINT32_MAX; /* none yet */
	s->rq_depth = s->nbufs;
	rep.queue_depth = s->qd;
	s->cq_need = session_cq_need(&rep);
	set_state(s, SESS_ACCEPTING);
	if (worker_cq_reserve(w, s->cq_need)) {
		log_warn("%s: refused: this worker's CQ is fully committed (%d of %d entries left, %d needed); try a smaller queue depth or more workers",
			 s->name, w->cq_budget, w->cq_size, s->cq_need);
		ret = -EBUSY;
		goto out_destroy;
	}
	s->cq_charged = true;

	ret = -ENOMEM;
	s->slots = calloc(s->qd, sizeof(*s->slots));
	s->pending = calloc(s->qd, sizeof(*s->pending));
	s->answers = calloc(s->qd + 1, sizeof(*s->answers));
	s->slot_len = (size_t)s->qd * s->stride;
	s->slot_mem = map_mem(s->slot_len);
	s->msg_len = (size_t)2 * s->nbufs * IBNBD_MSG_MAX;
	s->msg_mem = map_mem(s->msg_len);
	if (!s->slots || !s->pending || !s->slot_mem || !s->msg_mem) {
		log_err("%s: out of memory for %u slots of %u bytes", s->name, s->qd, s->stride);
		goto out_destroy;
	}
	/* The client writes into slots; it never reads them (READ data is pushed). */
	ret = rdma_conn_reg_mr(w->pd, s->slot_mem, s->slot_len,
			       IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE, &s->slot_mr);
	if (!ret)
		ret = rdma_conn_reg_mr(w->pd, s->msg_mem, s->msg_len, IBV_ACCESS_LOCAL_WRITE,
				       &s->msg_mr);
	if (ret) {
		log_err("%s: registering %zu bytes of slots with the RDMA device failed: %s (check the memlock limit)",
			s->name, s->slot_len, strerror(-ret));
		goto out_destroy;
	}
	iov = (struct iovec){ .iov_base = s->slot_mem, .iov_len = s->slot_len };
	ret = io_uring_register_buffers_update_tag(&w->ring, idx, &iov, NULL, 1);
	if (ret < 0) {
		log_err("%s: registering slots as io_uring fixed buffer %u failed: %s", s->name, idx,
			strerror(-ret));
		goto out_destroy;
	}
	s->buf_registered = true;
	caps = (struct rdma_conn_qp_caps){
		.max_send_wr = s->sq_depth + 1, /* + sq_drain()'s marker */
		.max_recv_wr = s->rq_depth,
		.max_send_sge = 1,
		.max_recv_sge = 1,
	};
	ret = rdma_conn_create_qp(id, w->pd, w->cq, &caps);
	if (ret) {
		log_err("%s: creating the QP (%u send, %u receive WRs) failed: %s", s->name,
			s->sq_depth, s->rq_depth, strerror(-ret));
		goto out_destroy;
	}
	s->qp_created = true;
	for (i = 0; i < s->nbufs; i++) {
		ret = post_recv(s, i);
		if (ret) {
			log_err("%s: posting receive %u failed: %s", s->name, i, strerror(-ret));
			goto out_destroy;
		}
	}
	ibnbd_conn_rep_encode(&wire, &rep);
	cp.private_data = &wire;
	cp.private_data_len = sizeof(wire);
	cp.responder_resources = 1;
	cp.initiator_depth = 1;
	cp.rnr_retry_count = 7;
	/* Before the accept: a connection it supersedes starts closing now. */
	registry_join(w->shared->registry, &s->reg);
	id->context = s;
	if (rdma_accept(id, &cp)) {
		ret = errno ? -errno : -EIO;
		log_err("%s: rdma_accept failed: %s", s->name, strerror(-ret));
		id->context = NULL;
		goto out_destroy;
	}
	log_info("%s: accepted: queue depth %u, max IO %u, %zu bytes of slots", s->name, s->qd,
		 s->max_io_size, s->slot_len);
	*out = s;
	return 0;
out_destroy:
	s->id = NULL; /* the caller rejects and destroys it */
	if (s->qp_created) {
		rdma_destroy_qp(id);
		s->qp_created = false;
	}
	session_destroy(s);
	return ret;
}

void session_destroy(struct session *s)
{
	if (!s)
		return;
	if (s->state == SESS_CLOSING)
		log_info("%s: closed after %lld ms of draining%s", s->name,
			 (long long)(clock_now_ms() - s->state_since_ms),
			 s->rq_posted ? " (receives were not flushed by the device)" : "");
	registry_leave(s->w->shared->registry, &s->reg);
	if (s->qp_created)
		rdma_destroy_qp(s->id);
	if (s->buf_registered) {
		struct iovec none = { 0 };

		io_uring_register_buffers_update_tag(&s->w->ring, s->idx, &none, NULL, 1);
	}
	rdma_conn_dereg_mr(s->slot_mr);
	rdma_conn_dereg_mr(s->msg_mr);
	if (s->slot_mem)
		munmap(s->slot_mem, s->slot_len);
	if (s->msg_mem)
		munmap(s->msg_mem, s->msg_len);
	if (s->id)
		rdma_destroy_id(s->id);
	if (s->cq_charged)
		s->w->cq_budget += s->cq_need;
	free(s->slots);
	free(s->pending);
	free(s->answers);
	free(s);
}
