/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Encode, decode and validate ibnbd wire messages (include/ibnbd/proto.h).
 * Pure functions on host-order mirrors of the wire structs: no IO, no
 * allocation, no logging, so both daemons, the tests and the fuzzer share them.
 *
 * Decoders take the received buffer and the number of bytes that actually
 * arrived, check magic, type and length, and return 0 or -EPROTO (the message
 * cannot be trusted: drop the connection). Validators check meaning and return
 * the -errno the peer should see in its response.
 */
#ifndef IBNBD_COMMON_PROTO_H
#define IBNBD_COMMON_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ibnbd/proto.h"

/* rdma_connect / rdma_accept private data, host order. */
struct ibnbd_conn_params {
	uint16_t version;
	uint16_t queue_depth;
	uint64_t features;
	uint32_t max_io_size;
	uint16_t conn_index;
	uint16_t conn_count;
	uint8_t session_uuid[16];
	int32_t status; /* reply only */
};

/* What a server can offer one connection. */
struct ibnbd_conn_limits {
	uint16_t max_queue_depth;
	uint32_t max_io_size;
	uint64_t features;
};

void ibnbd_conn_req_encode(struct ibnbd_conn_req *w, const struct ibnbd_conn_params *p);
int ibnbd_conn_req_decode(const void *buf, size_t len, struct ibnbd_conn_params *p);
void ibnbd_conn_rep_encode(struct ibnbd_conn_rep *w, const struct ibnbd_conn_params *p);
int ibnbd_conn_rep_decode(const void *buf, size_t len, struct ibnbd_conn_params *p);
/*
 * Server side: checks a decoded connect request against its limits and fills
 * the reply (depth and IO size lowered to what the server allows, IO size
 * rounded down to 4 KiB, features intersected). Returns 0 or the -errno that
 * goes into the reject (-EPROTONOSUPPORT for a version we don't speak,
 * -EINVAL for nonsense depth/size).
 */
int ibnbd_conn_negotiate(const struct ibnbd_conn_params *req,
			 const struct ibnbd_conn_limits *lim,
			 struct ibnbd_conn_params *rep);

/* Every message: header fields and a length check against what arrived. */
void ibnbd_msg_hdr_init(struct ibnbd_msg_hdr *h, enum ibnbd_msg_type type, size_t len);
/* 0 and *type if buf holds a whole message with our magic, else -EPROTO. */
int ibnbd_msg_peek(const void *buf, size_t len, uint16_t *type);

/* HELLO / HELLO_RSP. */
struct ibnbd_hello_params {
	uint16_t version;
	uint64_t features;
	char host_id[IBNBD_HOST_ID_MAX];
	uint8_t nonce[IBNBD_NONCE_LEN];
};
struct ibnbd_auth_challenge_params {
	uint16_t version;
	char server_id[IBNBD_HOST_ID_MAX];
	uint8_t nonce[IBNBD_NONCE_LEN];
	uint8_t proof[IBNBD_PROOF_LEN];
};
struct ibnbd_slot_desc {
	int32_t status;
	uint16_t version;
	uint16_t queue_depth;
	uint64_t features;
	uint64_t slot_addr;
	uint32_t slot_rkey;
	uint32_t slot_stride;
	uint32_t max_io_size;
	uint32_t limit; /* with status -EDQUOT: enum ibnbd_limit */
};
/* The server.conf key of an IBNBD_LIMIT_* ("a limit" for one unknown). */
const char *ibnbd_limit_name(uint32_t limit);
/* Client: where a WRITE on tag puts [data | header] (remote address). */
static inline uint64_t ibnbd_slot_remote_addr(const struct ibnbd_slot_desc *d, uint16_t tag)
{
	return d->slot_addr + (uint64_t)tag * d->slot_stride;
}

void ibnbd_hello_encode(struct ibnbd_hello *w, const struct ibnbd_hello_params *p);
/* Also requires a non-empty, NUL-terminated, printable ASCII host id. */
int ibnbd_hello_decode(const void *buf, size_t len, struct ibnbd_hello_params *p);
void ibnbd_hello_rsp_encode(struct ibnbd_hello_rsp *w, const struct ibnbd_slot_desc *d);
/* Also checks a successful descriptor for sanity (stride holds data+header). */
int ibnbd_hello_rsp_decode(const void *buf, size_t len, struct ibnbd_slot_desc *d);
void ibnbd_auth_challenge_encode(struct ibnbd_auth_challenge *w,
				 const struct ibnbd_auth_challenge_params *p);
/* Also requires a non-empty, printable server id. */
int ibnbd_auth_challenge_decode(const void *buf, size_t len,
				struct ibnbd_auth_challenge_params *p);
void ibnbd_auth_proof_encode(struct ibnbd_auth_proof *w, const uint8_t proof[IBNBD_PROOF_LEN]);
int ibnbd_auth_proof_decode(const void *buf, size_t len, uint8_t proof[IBNBD_PROOF_LEN]);

/* OPEN / OPEN_RSP. */
struct ibnbd_open_params {
	uint8_t access; /* enum ibnbd_access */
	char name[IBNBD_EXPORT_NAME_MAX];
};
struct ibnbd_dev_info {
	int32_t status;
	uint32_t handle;
	uint64_t size;
	uint32_t logical_block_size;
	uint32_t physical_block_size;
	uint32_t max_discard_sectors;
	uint32_t max_write_zeroes_sectors;
	uint32_t flags; /* IBNBD_DEV_* */
	uint64_t export_id;
	uint64_t cookie;
	uint8_t boot_id[16];
};
/* -ENAMETOOLONG if the name does not fit. */
int ibnbd_open_encode(struct ibnbd_open *w, const struct ibnbd_open_params *p);
/* Requires a known access mode and a non-empty, NUL-terminated, printable name. */
int ibnbd_open_decode(const void *buf, size_t len, struct ibnbd_open_params *p);
void ibnbd_open_rsp_encode(struct ibnbd_open_rsp *w, const struct ibnbd_dev_info *d);
/* Also checks a successful reply: power-of-two block sizes, size aligned,
 * a cookie. */
int ibnbd_open_rsp_decode(const void *buf, size_t len, struct ibnbd_dev_info *d);

/* CLOSE / CLOSE_RSP. */
void ibnbd_close_encode(struct ibnbd_close *w, uint32_t handle);
int ibnbd_close_decode(const void *buf, size_t len, uint32_t *handle);
void ibnbd_close_rsp_encode(struct ibnbd_close_rsp *w, int32_t status);
int ibnbd_close_rsp_decode(const void *buf, size_t len, int32_t *status);

/* KEEPALIVE / KEEPALIVE_RSP (type says which). */
void ibnbd_keepalive_encode(struct ibnbd_keepalive *w, enum ibnbd_msg_type type, uint64_t token);
int ibnbd_keepalive_decode(const void *buf, size_t len, enum ibnbd_msg_type type,
			   uint64_t *token);

/* IO requests and responses. */
struct ibnbd_io {
	uint64_t req_id;
	uint64_t offset;
	uint32_t length;
	uint32_t handle;
	uint8_t opcode;
	uint16_t flags;
	uint32_t rkey;
	uint64_t addr;
	uint64_t cookie;
};

static inline uint16_t ibnbd_req_tag(uint64_t req_id)
{
	return (uint16_t)(req_id & IBNBD_REQ_TAG_MASK);
}

static inline uint64_t ibnbd_req_id(uint16_t tag, uint64_t gen)
{
	return (gen << IBNBD_REQ_TAG_BITS) | tag;
}

void ibnbd_io_req_encode(struct ibnbd_io_req *w, const struct ibnbd_io *io);
/* Framing only (magic, type, len, reserved fields); meaning: ibnbd_io_validate. */
int ibnbd_io_req_decode(const void *buf, size_t len, struct ibnbd_io *io);

/* The device an IO addresses, as the server sees it through one handle. */
struct ibnbd_io_target {
	uint64_t size;
	uint32_t logical_block_size; /* power of two */
	uint32_t max_io_size;        /* of this connection */
	uint32_t max_discard_sectors;
	uint32_t max_write_zeroes_sectors;
	bool writable;
};
/*
 * Meaning of a decoded IO against its device. Returns 0 or:
 * -EOPNOTSUPP unknown opcode / unsupported discard or write-zeroes,
 * -EINVAL unknown flags, flags on the wrong opcode, zero or oversize length,
 *         misaligned offset or length, a nonzero FLUSH range,
 * -ERANGE offset + length beyond the device (or overflowing),
 * -EROFS  a modifying opcode through a read-only handle.
 */
int ibnbd_io_validate(const struct ibnbd_io *io, const struct ibnbd_io_target *t);

void ibnbd_io_rsp_encode(struct ibnbd_io_rsp *w, uint64_t req_id, int32_t status);
int ibnbd_io_rsp_decode(const void *buf, size_t len, uint64_t *req_id, int32_t *status);

const char *ibnbd_op_name(unsigned int opcode);
const char *ibnbd_msg_name(unsigned int type);

#endif
