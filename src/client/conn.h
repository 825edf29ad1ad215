/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The client end of one ibnbd RDMA connection: connect, handshake (HELLO,
 * OPEN), then IO on behalf of one ublk queue whose tags are the server's
 * slot indices (the connection's queue depth is the queue's depth).
 *
 * conn_connect() runs on the control thread and blocks (bounded by a
 * deadline); once it returns, the connection belongs to one queue thread,
 * which alone calls conn_submit() and conn_process(). The connection owns
 * its CQ and completion channel; the queue thread polls conn_comp_fd()
 * through its io_uring, so it never blocks in the verbs library.
 */
#ifndef IBNBD_CLIENT_CONN_H
#define IBNBD_CLIENT_CONN_H

#include <stddef.h>
#include <stdint.h>

#include "proto.h"

struct conn;

struct conn_params {
	const char *host;
	uint16_t port;
	const char *export_name;
	uint8_t access;        /* IBNBD_ACCESS_RO or _RW */
	uint16_t queue_depth;  /* wanted; the server may lower it */
	uint32_t max_io_size;  /* wanted; the server may lower it */
	unsigned int timeout_ms; /* the whole connect + handshake */
	const char *host_id;
};

/*
 * Connects and opens the export. On success *info describes the device (as
 * OPEN_RSP did) and conn_depth()/conn_max_io() the negotiated limits. On
 * failure err holds a sentence naming server, port and export (unreachable,
 * refused, no such export, read-only, ...).
 */
int conn_connect(const struct conn_params *p, struct conn **out,
		 struct ibnbd_dev_info *info, char *err, size_t errlen);
void conn_destroy(struct conn *c);

uint16_t conn_depth(const struct conn *c);
uint32_t conn_max_io(const struct conn *c);

/* Registers the IO buffer area [base, base+len) (the ublk tag buffers):
 * WRITE data is sent from it, READ data lands in it. Once, before IO. */
int conn_register_buffers(struct conn *c, void *base, size_t len);

/* The completion channel fd: readable when conn_process() has work. */
int conn_comp_fd(const struct conn *c);

/*
 * Sends one request for tag (its slot): buf (inside the registered area)
 * holds WRITE data or receives READ data. 0 or -errno (the connection is
 * broken: fail the IO).
 */
int conn_submit(struct conn *c, uint16_t tag, uint8_t opcode, uint16_t flags,
		uint64_t offset, uint32_t length, void *buf);

/* Called by conn_process() for each finished request. */
typedef void (*conn_done_fn)(void *ctx, uint16_t tag, int status);

/*
 * Drains the completion channel and the CQ, re-arms it, and calls done()
 * for each response. Returns the number of responses, or -errno when the
 * connection failed (every request still in flight is then lost on it).
 */
int conn_process(struct conn *c, conn_done_fn done, void *ctx);

#endif
