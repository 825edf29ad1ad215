/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * ibnbd wire protocol, version 3. Everything here crosses the network:
 * fixed-size little-endian structs, each size pinned by _Static_assert.
 * Internal types live beside the code that uses them, never here.
 *
 * Message flow on one RC connection (client C, server S):
 *
 *   C: rdma_connect(private data = struct ibnbd_conn_req)
 *          magic, version, offered features, wanted queue depth/max IO size
 *   S: rdma_accept(private data = struct ibnbd_conn_rep)
 *          status 0, negotiated depth/max IO size/features
 *      or rdma_reject(private data = struct ibnbd_conn_rep) with status -errno
 *   C: SEND HELLO          (version, features, host id, client nonce)
 *   S: SEND AUTH_CHALLENGE (server id, server nonce, server proof)  \ unless
 *   C: SEND AUTH_PROOF     (client proof)                           / --no-auth
 *   S: SEND HELLO_RSP      (status, slot descriptor: addr, rkey, stride, count)
 *   C: SEND OPEN           (export name, access mode ro/rw)      \ any number,
 *   S: SEND OPEN_RSP       (status, handle, size, block sizes,   | one at a
 *                           discard/write-zeroes limits, flags)  / time
 *   ... IO, any mix, at most queue_depth outstanding ...
 *   C: WRITE:  RDMA_WRITE_WITH_IMM [data | struct ibnbd_io_req] -> slot[tag]
 *              imm_data = tag (slot index, big-endian as verbs defines imm)
 *      S: WRITE_FIXED slot[tag] -> backing store (RWF_DSYNC if FUA)
 *      S: SEND IO_RSP (req_id, status)
 *   C: READ:   SEND struct ibnbd_io_req (with client buffer addr + rkey)
 *      S: READ_FIXED backing store -> slot[tag]
 *      S: RDMA_WRITE slot[tag] -> client buffer, then SEND IO_RSP on the same
 *         QP: RC ordering puts the data in place before the response lands.
 *   C: FLUSH / DISCARD / WRITE_ZEROES: SEND struct ibnbd_io_req
 *      S: fdatasync / fallocate, then SEND IO_RSP
 *   C: SEND KEEPALIVE, S: SEND KEEPALIVE_RSP    (a control message)
 *   C: SEND CLOSE(handle), S: SEND CLOSE_RSP    (a control message)
 *   either side: rdma_disconnect
 *
 * Credits. The server exposes queue_depth slots per connection; the tag
 * (low 16 bits of req_id) names the slot a request owns, for every opcode,
 * whether or not it carries data. A client may reuse a tag only after it has
 * received that tag's IO_RSP, so it can never have more than queue_depth IO
 * requests outstanding, nor two on one slot. Control messages (HELLO, OPEN,
 * CLOSE, KEEPALIVE) have a separate credit of IBNBD_CTRL_CREDITS, i.e. the
 * client waits for each control response before sending the next control
 * message. The server keeps queue_depth + IBNBD_CTRL_CREDITS receives posted
 * (each IO or control message, SEND or WRITE_WITH_IMM, consumes exactly one),
 * and sends exactly one response per request, so the client must keep the same
 * number of receives (of IBNBD_MSG_MAX bytes) posted: nobody ever hits RNR.
 *
 * Responses are always SENDs: they need no client memory exposed to the
 * server, and a receive completion tells the client which request finished.
 *
 * Slot layout. slot[i] starts at slot_addr + i * slot_stride (page aligned);
 * its first max_io_size bytes hold data and the request header follows the
 * data immediately: a WRITE of L bytes puts the header at offset L, so the
 * server finds it from the receive's byte_len (= L + sizeof(ibnbd_io_req)).
 * slot_stride >= max_io_size + sizeof(struct ibnbd_io_req).
 *
 * Request ids: bits 0..15 tag (slot index), bits 16..63 a generation the
 * client picks; the server echoes req_id unchanged, so a client can ignore a
 * late response that belongs to an earlier use of the tag.
 *
 * Handles and cookies. OPEN_RSP names the device by a handle (a small index
 * the server may give out again once it is closed, also on another
 * connection) and a cookie that the server never gives out twice (a 64-bit
 * counter that starts at a random value in every server process). Every IO
 * request carries both; a request whose cookie is not the handle's current
 * one is refused with -EBADF and logged, so a request built for an earlier
 * open (a stale handle after a reconnect) can never be served as another
 * export's.
 *
 * Reserved fields are zero; a receiver refuses a message with a non-zero
 * one (it cannot be framed).
 *
 * Errors. A semantically wrong request (unknown opcode, bad handle, range,
 * alignment, length, access mode) gets an IO_RSP with a -errno status. A
 * message the server cannot frame (bad magic, type or length, a tag out of
 * range or already busy) closes that connection, and only that one.
 *
 * Connection loss. A request whose IO_RSP never arrived may or may not have
 * been executed; the client re-issues it on a new connection (block IO is
 * idempotent). On shutdown the server answers every request whose backing
 * IO it had started, ignores the ones that arrive later, then disconnects.
 *
 * Sessions and reconnect. A client session is the set of connections whose
 * conn_req carries the same non-zero session_uuid (conn_index 0..conn_count-1);
 * a reconnect keeps the uuid and the conn_index of the connection it
 * replaces. A new connection with the (session_uuid, conn_index) of one the
 * server still holds supersedes it: the server closes the old one and sends
 * the new one's HELLO_RSP only once none of the old one's backing IO is in
 * flight any more, so an IO of the new connection never runs before, nor
 * races with, a stale one of the old (the client must not send IO before
 * HELLO_RSP). A HELLO_RSP, or an OPEN_RSP (takeover, below), may thus take
 * a while; the control credit stays taken until it comes.
 *
 * Keepalive. With IBNBD_FEAT_KEEPALIVE negotiated, a client sends something
 * (KEEPALIVE when idle) at least every second or so; the server drops a
 * connection that sent nothing for its keepalive_timeout (default 15 s)
 * while it owed the client no answer. A connection with an all-zero
 * session_uuid is only watched once it has sent a KEEPALIVE.
 *
 * Writers. An export is open read-write by one client session at a time:
 * a read-write OPEN from another session gets -EBUSY, unless it comes from
 * a session with a uuid whose HELLO host_id equals the current writer's (a
 * restarted client): the old session's connections are then closed and
 * drained as above before OPEN_RSP grants it. Exports the server marks
 * shared take several writers. Read-only OPENs are always allowed. An
 * all-zero session_uuid makes each connection its own session, except that
 * such connections with the same host_id share the writer role.
 */
#ifndef IBNBD_PROTO_H
#define IBNBD_PROTO_H

#include <stdint.h>

/* Wire integers are little-endian; these names say so at every field. */
typedef uint16_t ibnbd_le16;
typedef uint32_t ibnbd_le32;
typedef uint64_t ibnbd_le64;

#define IBNBD_MAGIC 0x444e4249u /* "IBND" in memory order on the wire */
#define IBNBD_PROTO_VERSION 3

/* Feature bits (conn_req.features offered, conn_rep.features = intersection). */
#define IBNBD_FEAT_FUA (1ull << 0)          /* IBNBD_IOF_FUA honoured */
#define IBNBD_FEAT_DISCARD (1ull << 1)      /* IBNBD_OP_DISCARD */
#define IBNBD_FEAT_WRITE_ZEROES (1ull << 2) /* IBNBD_OP_WRITE_ZEROES */
#define IBNBD_FEAT_KEEPALIVE (1ull << 3)    /* KEEPALIVE messages */
#define IBNBD_FEAT_ALL                                                         \
	(IBNBD_FEAT_FUA | IBNBD_FEAT_DISCARD | IBNBD_FEAT_WRITE_ZEROES |       \
	 IBNBD_FEAT_KEEPALIVE)

/* Limits. */
#define IBNBD_MSG_MAX 256          /* receive buffer size for SENDs, both ends */
#define IBNBD_CTRL_CREDITS 1       /* outstanding control messages per conn */
#define IBNBD_MAX_QUEUE_DEPTH 1024 /* tags are 16-bit; keep memory sane */
#define IBNBD_MIN_IO_SIZE 4096u    /* smallest max_io_size negotiated */
#define IBNBD_MAX_IO_SIZE (1u << 20)
#define IBNBD_EXPORT_NAME_MAX 128 /* including the terminating NUL */
#define IBNBD_HOST_ID_MAX 64      /* including the terminating NUL */
#define IBNBD_NONCE_LEN 32        /* authentication nonces, both ways */
#define IBNBD_PROOF_LEN 32        /* HMAC-SHA256 */
#define IBNBD_PRIVATE_DATA_MAX 56 /* rdma_connect over RoCE/IB */

#define IBNBD_REQ_TAG_BITS 16
#define IBNBD_REQ_TAG_MASK ((1ull << IBNBD_REQ_TAG_BITS) - 1)

/* rdma_connect private data. */
struct ibnbd_conn_req {
	ibnbd_le32 magic;
	ibnbd_le16 version;
	ibnbd_le16 queue_depth; /* wanted; the server may lower it */
	ibnbd_le64 features;    /* offered */
	ibnbd_le32 max_io_size; /* wanted, bytes; the server may lower it */
	ibnbd_le16 conn_index;  /* this connection within the session */
	ibnbd_le16 conn_count;
	uint8_t session_uuid[16]; /* identifies the client session; 0 = none */
};
_Static_assert(sizeof(struct ibnbd_conn_req) == 40, "ibnbd_conn_req size");
_Static_assert(sizeof(struct ibnbd_conn_req) <= IBNBD_PRIVATE_DATA_MAX,
	       "conn_req must fit in rdma_connect private data");

/* rdma_accept / rdma_reject private data. */
struct ibnbd_conn_rep {
	ibnbd_le32 magic;
	ibnbd_le16 version;
	ibnbd_le16 queue_depth; /* negotiated: <= the request, >= 1 */
	int32_t status;         /* le; 0 or -errno (reject) */
	ibnbd_le32 max_io_size; /* negotiated, multiple of 4096 */
	ibnbd_le64 features;    /* negotiated */
};
_Static_assert(sizeof(struct ibnbd_conn_rep) == 24, "ibnbd_conn_rep size");

enum ibnbd_msg_type {
	IBNBD_MSG_HELLO = 1,
	IBNBD_MSG_HELLO_RSP = 2,
	IBNBD_MSG_OPEN = 3,
	IBNBD_MSG_OPEN_RSP = 4,
	IBNBD_MSG_CLOSE = 5,
	IBNBD_MSG_CLOSE_RSP = 6,
	IBNBD_MSG_KEEPALIVE = 7,
	IBNBD_MSG_KEEPALIVE_RSP = 8,
	IBNBD_MSG_AUTH_CHALLENGE = 9,
	IBNBD_MSG_AUTH_PROOF = 10,
	IBNBD_MSG_IO_REQ = 16,
	IBNBD_MSG_IO_RSP = 17,
};

/* Starts every message; len is the whole message including this header. */
struct ibnbd_msg_hdr {
	ibnbd_le32 magic;
	ibnbd_le16 type; /* enum ibnbd_msg_type */
	ibnbd_le16 len;
};
_Static_assert(sizeof(struct ibnbd_msg_hdr) == 8, "ibnbd_msg_hdr size");

struct ibnbd_hello {
	struct ibnbd_msg_hdr hdr;
	ibnbd_le16 version;
	ibnbd_le16 reserved0;
	ibnbd_le32 reserved1;
	ibnbd_le64 features;
	char host_id[IBNBD_HOST_ID_MAX]; /* NUL-terminated, for logs and ACLs */
	uint8_t nonce[IBNBD_NONCE_LEN];  /* fresh random, for the server's proof */
};
_Static_assert(sizeof(struct ibnbd_hello) == 120, "ibnbd_hello size");

/*
 * A server that authenticates hosts answers HELLO with its proof that it
 * holds the host's key: HMAC-SHA256 (key: HKDF-SHA256 of the host's
 * secret) over both nonces, both ids, the session uuid, the connection
 * index and the version (docs/protocol.md, "Authentication").
 */
struct ibnbd_auth_challenge {
	struct ibnbd_msg_hdr hdr;
	ibnbd_le16 version;
	ibnbd_le16 reserved0;
	ibnbd_le32 reserved1;
	char server_id[IBNBD_HOST_ID_MAX]; /* NUL-terminated */
	uint8_t nonce[IBNBD_NONCE_LEN];
	uint8_t proof[IBNBD_PROOF_LEN];
};
_Static_assert(sizeof(struct ibnbd_auth_challenge) == 144, "ibnbd_auth_challenge size");

/* The client's proof over the same transcript; HELLO_RSP follows. */
struct ibnbd_auth_proof {
	struct ibnbd_msg_hdr hdr;
	ibnbd_le32 reserved0;
	ibnbd_le32 reserved1;
	uint8_t proof[IBNBD_PROOF_LEN];
};
_Static_assert(sizeof(struct ibnbd_auth_proof) == 48, "ibnbd_auth_proof size");

/* The connection's slot descriptor (one per connection). */
struct ibnbd_hello_rsp {
	struct ibnbd_msg_hdr hdr;
	int32_t status; /* le; 0 or -errno */
	ibnbd_le16 version;
	ibnbd_le16 queue_depth; /* = slot count */
	ibnbd_le64 features;
	ibnbd_le64 slot_addr; /* remote address of slot 0 */
	ibnbd_le32 slot_rkey;
	ibnbd_le32 slot_stride; /* bytes from one slot to the next */
	ibnbd_le32 max_io_size; /* data bytes per slot */
	ibnbd_le32 limit; /* status -EDQUOT: the IBNBD_LIMIT_* reached; else 0 */
};
_Static_assert(sizeof(struct ibnbd_hello_rsp) == 48, "ibnbd_hello_rsp size");

/* The server's limits a HELLO can meet (server.conf names them). */
enum ibnbd_limit {
	IBNBD_LIMIT_CONNECTIONS = 1,          /* max_connections */
	IBNBD_LIMIT_CONNECTIONS_PER_HOST = 2, /* max_connections_per_host */
	IBNBD_LIMIT_SESSIONS_PER_HOST = 3,    /* max_sessions_per_host */
	IBNBD_LIMIT_SLOT_MEMORY = 4,          /* max_slot_memory */
};

enum ibnbd_access {
	IBNBD_ACCESS_RO = 1,
	IBNBD_ACCESS_RW = 2,
};

struct ibnbd_open {
	struct ibnbd_msg_hdr hdr;
	uint8_t access; /* enum ibnbd_access */
	uint8_t reserved[7];
	char name[IBNBD_EXPORT_NAME_MAX]; /* NUL-terminated, NUL-padded */
};
_Static_assert(sizeof(struct ibnbd_open) == 144, "ibnbd_open size");

/* Device flags in OPEN_RSP. */
#define IBNBD_DEV_VOLATILE_CACHE (1u << 0) /* send FLUSH to persist writes */
#define IBNBD_DEV_FUA (1u << 1)            /* IBNBD_IOF_FUA is honoured */
#define IBNBD_DEV_READ_ONLY (1u << 2)      /* the handle refuses writes */
#define IBNBD_DEV_ROTATIONAL (1u << 3)

struct ibnbd_open_rsp {
	struct ibnbd_msg_hdr hdr;
	int32_t status;    /* le; 0, -ENOENT (no such export), -EROFS, ... */
	ibnbd_le32 handle; /* names the device in IO requests on this conn */
	ibnbd_le64 size;   /* bytes, multiple of logical_block_size */
	ibnbd_le32 logical_block_size;
	ibnbd_le32 physical_block_size;
	ibnbd_le32 max_discard_sectors;      /* 512-byte units, 0 = unsupported */
	ibnbd_le32 max_write_zeroes_sectors; /* 512-byte units, 0 = unsupported */
	ibnbd_le32 flags;                    /* IBNBD_DEV_* */
	ibnbd_le32 reserved;
	ibnbd_le64 export_id; /* the backing's identity, stable across restarts (never 0) */
	ibnbd_le64 cookie;    /* repeated in every IO request on this handle (never 0) */
	uint8_t boot_id[16];  /* the server host's boot: a new one means the host restarted */
};
_Static_assert(sizeof(struct ibnbd_open_rsp) == 80, "ibnbd_open_rsp size");

struct ibnbd_close {
	struct ibnbd_msg_hdr hdr;
	ibnbd_le32 handle;
	ibnbd_le32 reserved;
};
_Static_assert(sizeof(struct ibnbd_close) == 16, "ibnbd_close size");

struct ibnbd_close_rsp {
	struct ibnbd_msg_hdr hdr;
	int32_t status; /* le; 0, -EBADF (no such handle), -EBUSY (IO in flight) */
	ibnbd_le32 reserved;
};
_Static_assert(sizeof(struct ibnbd_close_rsp) == 16, "ibnbd_close_rsp size");

/* KEEPALIVE and KEEPALIVE_RSP (which echoes the token). */
struct ibnbd_keepalive {
	struct ibnbd_msg_hdr hdr;
	ibnbd_le64 token;
	ibnbd_le64 reserved;
};
_Static_assert(sizeof(struct ibnbd_keepalive) == 24, "ibnbd_keepalive size");

enum ibnbd_io_opcode {
	IBNBD_OP_READ = 0,
	IBNBD_OP_WRITE = 1,
	IBNBD_OP_FLUSH = 2,
	IBNBD_OP_DISCARD = 3,
	IBNBD_OP_WRITE_ZEROES = 4,
};

/* IO request flags. */
#define IBNBD_IOF_FUA (1u << 0)     /* WRITE: durable before the response */
#define IBNBD_IOF_NOUNMAP (1u << 1) /* WRITE_ZEROES: keep the blocks allocated */
#define IBNBD_IOF_ALL (IBNBD_IOF_FUA | IBNBD_IOF_NOUNMAP)

struct ibnbd_io_req {
	struct ibnbd_msg_hdr hdr; /* type IBNBD_MSG_IO_REQ, len 64 */
	ibnbd_le64 req_id;        /* tag | generation << 16 */
	ibnbd_le64 offset;        /* bytes */
	ibnbd_le32 length;        /* bytes; 0 for FLUSH */
	ibnbd_le32 handle;
	uint8_t opcode; /* enum ibnbd_io_opcode */
	uint8_t reserved0;
	ibnbd_le16 flags;    /* IBNBD_IOF_* */
	ibnbd_le32 rkey;     /* READ: rkey of the client buffer */
	ibnbd_le64 addr;     /* READ: address of the client buffer */
	ibnbd_le64 cookie;   /* the OPEN_RSP's for this handle */
	ibnbd_le64 reserved1;
};
_Static_assert(sizeof(struct ibnbd_io_req) == 64, "ibnbd_io_req size");

struct ibnbd_io_rsp {
	struct ibnbd_msg_hdr hdr; /* type IBNBD_MSG_IO_RSP, len 24 */
	ibnbd_le64 req_id;
	int32_t status; /* le; 0 or -errno */
	ibnbd_le32 reserved;
};
_Static_assert(sizeof(struct ibnbd_io_rsp) == 24, "ibnbd_io_rsp size");

_Static_assert(sizeof(struct ibnbd_open) <= IBNBD_MSG_MAX, "OPEN fits a receive");
_Static_assert(sizeof(struct ibnbd_hello) <= IBNBD_MSG_MAX, "HELLO fits a receive");
_Static_assert(sizeof(struct ibnbd_auth_challenge) <= IBNBD_MSG_MAX, "challenge fits");
_Static_assert(sizeof(struct ibnbd_open_rsp) <= IBNBD_MSG_MAX, "OPEN_RSP fits");

#endif
