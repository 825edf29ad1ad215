/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The inside of a server connection (conn.h), shared by the three files
 * that make it: conn_handshake.c, conn_io.c and conn_teardown.c. Nothing
 * else includes this.
 */
#ifndef IBNBD_SERVER_CONN_PRIV_H
#define IBNBD_SERVER_CONN_PRIV_H

#include <stdint.h>

#include "auth.h"
#include "conn.h"
#include "registry.h"
#include "worker.h"
#include "wrid.h"

#define CONN_MAX_OPENS 64
/* From the accept to an answered HELLO (authentication included). */
#define CONN_HANDSHAKE_MS 5000
/*
 * From the answered HELLO to the connection's first message after it. A
 * client sends nothing on a connection until all of its session's
 * connections are up, which its connect timeout (10 s) bounds: a slow
 * sibling must not get this one dropped by a short keepalive timeout.
 */
#define CONN_JOIN_MS 15000
#define CONN_DRAIN_TIMEOUT_MS 10000 /* DRAINING: busy slots must answer */
#define CONN_FLUSH_TIMEOUT_MS 3000  /* CLOSING: wait for flush completions */
#define CONN_SIGNAL_EVERY 16        /* answers: one signaled send per this many WRs */
#define CONN_LOG_REJECTS 16 /* then every 1024th, so a bad client can't flood */

enum conn_state { CONN_ACCEPTING, CONN_LIVE, CONN_DRAINING, CONN_CLOSING };

/*
 * The life of one slot (tag), advanced by slot_process() (conn_io.c):
 *
 *   FREE ──REQUEST, valid──▶ BACKING ──IO_DONE──▶ (answer)
 *    │                         ▲   │ retry (WRITE_ZEROES as PUNCH_HOLE)
 *    │                         └───┘
 *    └──REQUEST, refused──▶ (answer)
 *   (answer): SQ room ─▶ FREE, the answer posted; no room ─▶ WAIT_SQ
 *   WAIT_SQ ──SQ_ROOM──▶ (answer)
 *
 * FREE     no request: the client may send one for this tag
 * BACKING  the io_uring op is in flight (the slot's memory is its buffer)
 * WAIT_SQ  done, its answer waits for send-queue credits (in order)
 * A closing connection answers nothing: its slots go FREE as they finish.
 */
enum slot_state { SLOT_FREE, SLOT_BACKING, SLOT_WAIT_SQ };
enum slot_event {
	SLOT_EV_REQUEST, /* a framed request for the tag is in sl->io */
	SLOT_EV_IO_DONE, /* its backing IO completed with res */
	SLOT_EV_SQ_ROOM, /* send-queue credits came back */
};

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
	bool from_write; /* arrived by WRITE_WITH_IMM, data_len bytes of data */
	uint32_t data_len;
	int32_t status; /* answer, once the backing IO is done */
	uint64_t started_ns; /* when the request arrived (backing latency) */
	struct ibnbd_io io;
	const struct open_dev *dev;
};

struct conn {
	struct worker *w;
	struct worker_dev *dev; /* the RDMA device it is on: PD, CQ */
	unsigned int idx;
	uint16_t gen;
	enum conn_state state;
	struct rdma_cm_id *id;
	bool qp_created;
	char name[160]; /* "worker 1 conn 3 from 192.0.2.10:41234 host 'x'" for logs */

	uint16_t qd;
	uint32_t max_io_size;
	uint32_t stride;
	uint64_t features;
	bool hello_done;
	/* Authentication (access.h): between our challenge and its proof. */
	bool auth_pending;
	bool auth_failed; /* refused: nothing more is taken from it */
	unsigned char auth_secret[AUTH_SECRET_LEN];
	unsigned char auth_nonce[AUTH_NONCE_LEN];
	struct ibnbd_hello_params auth_hello;
	int64_t created_ms;
	struct hs_addr peer_addr; /* counted in shared->handshakes until HELLO */

	struct ibv_pd *pd; /* its own: no other connection's rkey reaches its memory */
	uint8_t *slot_mem; /* qd * stride, MR (zero-based) + io_uring fixed buffer idx */
	size_t slot_len;
	struct ibv_mr *slot_mr;
	bool buf_registered;
	uint8_t *msg_mem; /* receive buffers, then send buffers */
	size_t msg_len;
	struct ibv_mr *msg_mr;
	unsigned int nbufs; /* qd + IBNBD_CTRL_CREDITS of each kind */

	struct slot *slots;
	unsigned int busy;        /* slots not FREE */
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
	/* Answers queued by post_answer(), posted by conn_flush(). */
	struct answer_wr {
		struct ibv_send_wr data, rsp;
		struct ibv_sge data_sge, rsp_sge;
	} *answers;                 /* per send buffer (tag, or qd for control) */
	struct ibv_send_wr *batch_head, *batch_tail;
	struct conn *flush_next;    /* on the worker's flush_list */
	unsigned int rq_depth, rq_posted;
	uint16_t *pending; /* FIFO of tags in WAIT_SQ */
	unsigned int pend_head, pend_count;

	struct open_dev opens[CONN_MAX_OPENS];
	struct reg_entry reg;
	enum deferred deferred;
	int64_t deferred_since_ms;
	struct ibnbd_hello_params deferred_hello;
	struct ibnbd_open_params deferred_open;

	/*
	 * Keepalive: receives are counted on the IO path (no clock there); the
	 * tick notices the count moved and stamps rx_last_ms.
	 */
	uint64_t rx_count, rx_count_seen;
	uint64_t rx_at_hello; /* rx_count when the HELLO was answered */
	int64_t rx_last_ms;
	bool keepalive_seen; /* it sent a KEEPALIVE: it is one that does */

	uint64_t nrejects;
	int64_t state_since_ms;
	int64_t dreq_due_ms;   /* a failed connection's deferred disconnect */
	int cq_need; /* its share of the worker's CQ, once through HELLO */
	int cq_held; /* taken from the worker's CQ budget so far */
};

static inline uint8_t *recv_buf(struct conn *c, unsigned int i)
{
	return c->msg_mem + (size_t)i * IBNBD_MSG_MAX;
}

static inline uint8_t *send_buf(struct conn *c, unsigned int i)
{
	return c->msg_mem + (size_t)(c->nbufs + i) * IBNBD_MSG_MAX;
}

/* Ends the HELLO: IO is accepted from here on, and the connection no
 * longer counts against max_handshakes (conn_create() counted it). */
static inline void conn_hello_done(struct conn *c)
{
	c->hello_done = true;
	c->rx_at_hello = c->rx_count;
	handshakes_leave(c->w->shared->handshakes, &c->peer_addr);
}

static inline uint8_t *slot_data(struct conn *c, unsigned int tag)
{
	return c->slot_mem + (size_t)tag * c->stride;
}

/* Where the slot's data is in the slot MR's (zero-based) address space. */
static inline uint64_t slot_iova(const struct conn *c, unsigned int tag)
{
	return (uint64_t)tag * c->stride;
}

static inline uint64_t conn_wrid(struct conn *c, enum wrid_type t, uint32_t index)
{
	return wrid_make(t, c->idx, c->gen, index);
}

/* WRs posted and not yet retired. */
static inline unsigned int sq_used(const struct conn *c)
{
	return c->sq_head - c->sq_done;
}

/* conn_teardown.c */
void conn_set_state(struct conn *c, enum conn_state st);
/* Disconnect and push the QP to error so every posted WR comes back. */
void conn_close(struct conn *c, const char *why);
/* The same for a connection that failed on the wire: the disconnect
 * request goes out a moment later (conn_teardown.c). */
void conn_fail(struct conn *c, const char *why);
/* A message we cannot frame: only this connection pays. */
void conn_violation(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* CLOSING and no backing IO in flight: release what it holds. */
void conn_check_drained(struct conn *c);
/* DRAINING and nothing busy: close. */
void conn_maybe_finish_drain(struct conn *c);

/* conn_io.c */
int conn_post_recv(struct conn *c, unsigned int i);
/* Queues an answer in send buffer buf (see conn_io.c). */
int conn_post_answer(struct conn *c, unsigned int buf, size_t len, const struct slot *read_slot,
		     unsigned int tag);
/* A framed IO request for its tag (conn_io.c, slot state machine). */
void conn_handle_io(struct conn *c, const struct ibnbd_io *io, bool from_write,
		    uint32_t data_len);

/* conn_handshake.c */
/* A control message (HELLO, OPEN, CLOSE, KEEPALIVE): framed, answered. */
void conn_handle_ctrl(struct conn *c, uint16_t type, const uint8_t *msg, size_t len);

#endif
