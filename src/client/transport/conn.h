/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The client end of one ibnbd RDMA connection (one of a session's W
 * connections, see session.h).
 *
 * conn_connect() and conn_open_sync() run on a session or control thread and
 * block (bounded by a deadline), polling the CQ themselves. Once the
 * connection is attached to its worker, that worker alone calls the rest:
 * conn_submit(), conn_post_ctrl() and conn_process(), and it polls
 * conn_comp_fd() and conn_cm_fd() through its io_uring, so it never blocks in
 * the verbs library.
 *
 * Memory: the PD is shared (the caller's, per RDMA device), so the ublk tag
 * buffers are registered once and serve every connection and reconnect.
 * The connection owns its QP, CQ, completion channel, CM id and event channel
 * and its small buffers (receives, request headers, control message).
 */
#ifndef IBNBD_CLIENT_CONN_H
#define IBNBD_CLIENT_CONN_H

#include <infiniband/verbs.h>
#include <stddef.h>
#include <stdint.h>

#include "proto.h"

struct conn;

/* The PD for the RDMA device the connection resolved to; NULL on error. */
typedef struct ibv_pd *(*conn_get_pd_fn)(void *ctx, struct ibv_context *verbs);

/* Where the daemon looks for this host's key when not told. */
#define CONN_DEFAULT_KEY_FILE "/etc/ibnbd/client.key"

struct conn_params {
	const char *host;
	uint16_t port;
	uint16_t queue_depth;  /* wanted; the server may lower it */
	uint32_t max_io_size;  /* wanted; the server may lower it */
	unsigned int timeout_ms; /* the whole connect + HELLO */
	const char *host_id;
	/* This host's secret (auth.h), or NULL: then only a server running
	 * with --no-auth takes it; with one, only a server that proves it
	 * holds the same. */
	const unsigned char *secret;
	const uint8_t *session_uuid; /* 16 bytes */
	uint16_t conn_index, conn_count;
	conn_get_pd_fn get_pd;
	void *get_pd_ctx;
	/* Set when the server accepted the connect (a failure after it is in
	 * the handshake: the server answered, if slowly). May be NULL. */
	bool *accepted;
};

/*
 * Connects and says HELLO. On failure err holds a sentence naming the server
 * (unreachable, refused, not an ibnbd server, ...).
 */
int conn_connect(const struct conn_params *p, struct conn **out, char *err, size_t errlen);
/* Disconnects and frees; tolerates NULL and a half-built connection. */
void conn_destroy(struct conn *c);

/*
 * Opens an export on a connection no worker polls yet (a reconnect
 * re-opening its devices). 0 once the server answered: *info is its
 * OPEN_RSP, whose status may be a refusal (conn_open_error() says it for
 * people). -errno if the exchange itself failed (the connection is broken).
 */
int conn_open_sync(struct conn *c, const char *export_name, uint8_t access,
		   unsigned int timeout_ms, struct ibnbd_dev_info *info);
/* Closes a handle the same way: 0 or the server's status once answered,
 * -errno if the exchange failed. */
int conn_close_sync(struct conn *c, uint32_t handle, unsigned int timeout_ms);
/* The operator's sentence for an OPEN that failed with status. */
void conn_open_error(const struct conn *c, const char *export_name, int status, char *err,
		     size_t errlen);

uint16_t conn_depth(const struct conn *c);
uint32_t conn_max_io(const struct conn *c);
uint64_t conn_features(const struct conn *c);
struct ibv_pd *conn_pd(const struct conn *c);
const char *conn_peer(const struct conn *c);
/* When the last message arrived (CLOCK_MONOTONIC ms): the liveness clock. */
int64_t conn_last_rx_ms(const struct conn *c);

/* Readable when conn_process() has work. */
int conn_comp_fd(const struct conn *c);
/* Readable when the CM has news (disconnect, device removal, ...). */
int conn_cm_fd(const struct conn *c);
/* Drains the CM events: 0, or -ECONNRESET when the connection is gone. */
int conn_cm_check(struct conn *c);

/*
 * Queues one IO request in slot (its tag on the wire) for the device handle
 * (and its cookie):
 * buf (inside mr) holds WRITE data or receives READ data. conn_flush() posts
 * what was queued, in one go: 0 or -errno (the connection is broken:
 * re-issue on the next one).
 */
void conn_submit(struct conn *c, uint16_t slot, uint32_t handle, uint64_t cookie,
		 uint8_t opcode, uint16_t flags, uint64_t offset, uint32_t length, void *buf,
		 const struct ibv_mr *mr);
int conn_flush(struct conn *c);
/* Sends one control message (len bytes; at most IBNBD_CTRL_CREDITS may be
 * outstanding: the caller waits for each answer). */
int conn_post_ctrl(struct conn *c, const void *msg, size_t len);

struct conn_handlers {
	/* An IO request finished: status 0 or -errno from the server. */
	void (*io_done)(void *ctx, uint16_t slot, int status);
	/* A control response (OPEN_RSP, CLOSE_RSP, KEEPALIVE_RSP) arrived;
	 * msg is valid during the call only. */
	void (*ctrl_done)(void *ctx, uint16_t type, const void *msg, size_t len);
	/* The control message's send completed (it is always signaled, so
	 * every WR posted before it has completed too: none of them can be
	 * retransmitted from our memory any more). */
	void (*ctrl_sent)(void *ctx);
};

/*
 * Drains the completion channel and the CQ, re-arms it, and calls the
 * handlers for each response. Returns the number of IO responses, or -errno
 * when the connection failed (every request still in flight on it is lost).
 */
int conn_process(struct conn *c, const struct conn_handlers *h, void *ctx);
/*
 * Polling (busypoll.h): conn_poll() is conn_process() without the channel:
 * it polls the CQ empty, and adds the completions it took to *taken (may be
 * NULL). conn_take_event() consumes a channel event without re-arming;
 * conn_arm() arms the CQ unless it is armed still (0 or -errno), before
 * the worker sleeps.
 */
int conn_poll(struct conn *c, const struct conn_handlers *h, void *ctx, unsigned int *taken);
void conn_take_event(struct conn *c);
int conn_arm(struct conn *c);

#endif
