/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The one encoding of RDMA wr_id and io_uring user_data in the server:
 *
 *   63..60 type   59..48 connection index in its worker   47..32
 *   connection generation   31..0 index (receive buffer, slot/tag, send
 *   buffer)
 *
 * The generation lets a worker recognise, and drop, a completion that
 * belongs to an earlier connection which used the same table index.
 */
#ifndef IBNBD_SERVER_WRID_H
#define IBNBD_SERVER_WRID_H

#include <assert.h>
#include <stdint.h>

enum wrid_type {
	WRID_NONE = 0,
	WRID_RECV,       /* RDMA: a receive buffer (index = buffer) */
	WRID_SEND,       /* RDMA: a response SEND (index = send buffer) */
	WRID_RDMA_WRITE, /* RDMA: READ data slot -> client (index = slot) */
	WRID_IO,         /* io_uring: backing IO for slot (index = slot) */
	WRID_POLL_CQ,    /* io_uring: completion channel readable (index = device) */
	WRID_POLL_CM,    /* io_uring: CM event channel readable */
	WRID_POLL_EVENTFD, /* io_uring: messages from the main thread, registry kicks */
	WRID_TICK,       /* io_uring: the 1 s timeout (keepalive, deferred answers) */
};

#define WRID_CONN_BITS 12
#define WRID_MAX_CONNS (1u << WRID_CONN_BITS)

static inline uint64_t wrid_make(enum wrid_type type, unsigned int conn, unsigned int gen,
				 uint32_t index)
{
	assert((unsigned int)type < 16 && conn < WRID_MAX_CONNS && gen <= 0xffff);
	return (uint64_t)type << 60 | (uint64_t)conn << 48 | (uint64_t)gen << 32 | index;
}

static inline enum wrid_type wrid_type(uint64_t w)
{
	return (enum wrid_type)(w >> 60);
}

static inline unsigned int wrid_conn(uint64_t w)
{
	return (unsigned int)(w >> 48) & (WRID_MAX_CONNS - 1);
}

static inline unsigned int wrid_gen(uint64_t w)
{
	return (unsigned int)(w >> 32) & 0xffff;
}

static inline uint32_t wrid_index(uint64_t w)
{
	return (uint32_t)w;
}

#endif
