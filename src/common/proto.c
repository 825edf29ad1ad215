// SPDX-License-Identifier: GPL-2.0-only
#include "proto.h"

#include <endian.h>
#include <errno.h>
#include <string.h>

#include "util.h"

/*
 * Every decoder copies the wire bytes into a local struct first: receive
 * buffers and slots may be unaligned for the struct and, for slots, may be
 * rewritten by the peer while we look at them. Nothing is read twice.
 */
#define COPY_IN(dst, buf, len)                                                 \
	do {                                                                   \
		if ((len) != sizeof(dst))                                      \
			return -EPROTO;                                        \
		memcpy(&(dst), (buf), sizeof(dst));                            \
	} while (0)

static int hdr_check(const struct ibnbd_msg_hdr *h, enum ibnbd_msg_type type, size_t len)
{
	if (le32toh(h->magic) != IBNBD_MAGIC || le16toh(h->type) != type ||
	    le16toh(h->len) != len)
		return -EPROTO;
	return 0;
}

static bool all_zero(const void *p, size_t n)
{
	const uint8_t *b = p;

	while (n--)
		if (*b++)
			return false;
	return true;
}

/*
 * A fixed char field must hold a non-empty, NUL-terminated string of
 * printable ASCII: names and host ids end up in logs.
 */
static int copy_string(char *dst, const char *src, size_t size)
{
	size_t n = strnlen(src, size);

	if (n == 0 || n == size)
		return -EPROTO;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)src[i] < 0x20 || (unsigned char)src[i] > 0x7e)
			return -EPROTO;
	memcpy(dst, src, n);
	memset(dst + n, 0, size - n);
	return 0;
}

void ibnbd_msg_hdr_init(struct ibnbd_msg_hdr *h, enum ibnbd_msg_type type, size_t len)
{
	h->magic = htole32(IBNBD_MAGIC);
	h->type = htole16((uint16_t)type);
	h->len = htole16((uint16_t)len);
}

int ibnbd_msg_peek(const void *buf, size_t len, uint16_t *type)
{
	struct ibnbd_msg_hdr h;

	if (len < sizeof(h) || len > IBNBD_MSG_MAX)
		return -EPROTO;
	memcpy(&h, buf, sizeof(h));
	if (le32toh(h.magic) != IBNBD_MAGIC || le16toh(h.len) != len)
		return -EPROTO;
	*type = le16toh(h.type);
	return 0;
}

/* ---- connect private data ---- */

void ibnbd_conn_req_encode(struct ibnbd_conn_req *w, const struct ibnbd_conn_params *p)
{
	memset(w, 0, sizeof(*w));
	w->magic = htole32(IBNBD_MAGIC);
	w->version = htole16(p->version);
	w->queue_depth = htole16(p->queue_depth);
	w->features = htole64(p->features);
	w->max_io_size = htole32(p->max_io_size);
	w->conn_index = htole16(p->conn_index);
	w->conn_count = htole16(p->conn_count);
	memcpy(w->session_uuid, p->session_uuid, sizeof(w->session_uuid));
}

/*
 * Private data arrives padded by the CM (to 56 bytes on RoCE), so the length
 * only has to be large enough.
 */
int ibnbd_conn_req_decode(const void *buf, size_t len, struct ibnbd_conn_params *p)
{
	struct ibnbd_conn_req w;

	if (!buf || len < sizeof(w))
		return -EPROTO;
	memcpy(&w, buf, sizeof(w));
	if (le32toh(w.magic) != IBNBD_MAGIC)
		return -EPROTO;
	memset(p, 0, sizeof(*p));
	p->version = le16toh(w.version);
	p->queue_depth = le16toh(w.queue_depth);
	p->features = le64toh(w.features);
	p->max_io_size = le32toh(w.max_io_size);
	p->conn_index = le16toh(w.conn_index);
	p->conn_count = le16toh(w.conn_count);
	memcpy(p->session_uuid, w.session_uuid, sizeof(p->session_uuid));
	return 0;
}

void ibnbd_conn_rep_encode(struct ibnbd_conn_rep *w, const struct ibnbd_conn_params *p)
{
	memset(w, 0, sizeof(*w));
	w->magic = htole32(IBNBD_MAGIC);
	w->version = htole16(p->version);
	w->queue_depth = htole16(p->queue_depth);
	w->status = (int32_t)htole32((uint32_t)p->status);
	w->max_io_size = htole32(p->max_io_size);
	w->features = htole64(p->features);
}

int ibnbd_conn_rep_decode(const void *buf, size_t len, struct ibnbd_conn_params *p)
{
	struct ibnbd_conn_rep w;

	if (!buf || len < sizeof(w))
		return -EPROTO;
	memcpy(&w, buf, sizeof(w));
	if (le32toh(w.magic) != IBNBD_MAGIC)
		return -EPROTO;
	memset(p, 0, sizeof(*p));
	p->version = le16toh(w.version);
	p->queue_depth = le16toh(w.queue_depth);
	p->status = (int32_t)le32toh((uint32_t)w.status);
	p->max_io_size = le32toh(w.max_io_size);
	p->features = le64toh(w.features);
	if (p->status > 0)
		return -EPROTO;
	if (p->status == 0 &&
	    (p->queue_depth == 0 || p->queue_depth > IBNBD_MAX_QUEUE_DEPTH ||
	     p->max_io_size < IBNBD_MIN_IO_SIZE || p->max_io_size > IBNBD_MAX_IO_SIZE ||
	     p->max_io_size % 4096))
		return -EPROTO;
	return 0;
}

int ibnbd_conn_negotiate(const struct ibnbd_conn_params *req,
			 const struct ibnbd_conn_limits *lim,
			 struct ibnbd_conn_params *rep)
{
	uint32_t io;

	memset(rep, 0, sizeof(*rep));
	rep->version = IBNBD_PROTO_VERSION;
	if (req->version != IBNBD_PROTO_VERSION)
		return rep->status = -EPROTONOSUPPORT;
	if (req->queue_depth == 0 || req->max_io_size < IBNBD_MIN_IO_SIZE)
		return rep->status = -EINVAL;
	if (req->conn_count && req->conn_index >= req->conn_count)
		return rep->status = -EINVAL;
	rep->queue_depth = req->queue_depth < lim->max_queue_depth ? req->queue_depth
								   : lim->max_queue_depth;
	io = req->max_io_size < lim->max_io_size ? req->max_io_size : lim->max_io_size;
	rep->max_io_size = io & ~4095u;
	if (rep->max_io_size < IBNBD_MIN_IO_SIZE || rep->queue_depth == 0)
		return rep->status = -EINVAL;
	rep->features = req->features & lim->features;
	rep->status = 0;
	return 0;
}

/* ---- HELLO ---- */

void ibnbd_hello_encode(struct ibnbd_hello *w, const struct ibnbd_hello_params *p)
{
	memset(w, 0, sizeof(*w));
	ibnbd_msg_hdr_init(&w->hdr, IBNBD_MSG_HELLO, sizeof(*w));
	w->version = htole16(p->version);
	w->features = htole64(p->features);
	memcpy(w->host_id, p->host_id, strnlen(p->host_id, sizeof(w->host_id) - 1));
	memcpy(w->nonce, p->nonce, sizeof(w->nonce));
}

int ibnbd_hello_decode(const void *buf, size_t len, struct ibnbd_hello_params *p)
{
	struct ibnbd_hello w;

	COPY_IN(w, buf, len);
	if (hdr_check(&w.hdr, IBNBD_MSG_HELLO, len) || w.reserved0 || w.reserved1)
		return -EPROTO;
	p->version = le16toh(w.version);
	p->features = le64toh(w.features);
	memcpy(p->nonce, w.nonce, sizeof(p->nonce));
	return copy_string(p->host_id, w.host_id, sizeof(w.host_id));
}

void ibnbd_auth_challenge_encode(struct ibnbd_auth_challenge *w,
				 const struct ibnbd_auth_challenge_params *p)
{
	memset(w, 0, sizeof(*w));
	ibnbd_msg_hdr_init(&w->hdr, IBNBD_MSG_AUTH_CHALLENGE, sizeof(*w));
	w->version = htole16(p->version);
	memcpy(w->server_id, p->server_id, strnlen(p->server_id, sizeof(w->server_id) - 1));
	memcpy(w->nonce, p->nonce, sizeof(w->nonce));
	memcpy(w->proof, p->proof, sizeof(w->proof));
}

int ibnbd_auth_challenge_decode(const void *buf, size_t len,
				struct ibnbd_auth_challenge_params *p)
{
	struct ibnbd_auth_challenge w;

	COPY_IN(w, buf, len);
	if (hdr_check(&w.hdr, IBNBD_MSG_AUTH_CHALLENGE, len) || w.reserved0 || w.reserved1)
		return -EPROTO;
	p->version = le16toh(w.version);
	memcpy(p->nonce, w.nonce, sizeof(p->nonce));
	memcpy(p->proof, w.proof, sizeof(p->proof));
	return copy_string(p->server_id, w.server_id, sizeof(w.server_id));
}

void ibnbd_auth_proof_encode(struct ibnbd_auth_proof *w, const uint8_t proof[IBNBD_PROOF_LEN])
{
	memset(w, 0, sizeof(*w));
	ibnbd_msg_hdr_init(&w->hdr, IBNBD_MSG_AUTH_PROOF, sizeof(*w));
	memcpy(w->proof, proof, sizeof(w->proof));
}

int ibnbd_auth_proof_decode(const void *buf, size_t len, uint8_t proof[IBNBD_PROOF_LEN])
{
	struct ibnbd_auth_proof w;

	COPY_IN(w, buf, len);
	if (hdr_check(&w.hdr, IBNBD_MSG_AUTH_PROOF, len) || w.reserved0 || w.reserved1)
		return -EPROTO;
	memcpy(proof, w.proof, sizeof(w.proof));
	return 0;
}

void ibnbd_hello_rsp_encode(struct ibnbd_hello_rsp *w, const struct ibnbd_slot_desc *d)
{
	memset(w, 0, sizeof(*w));
	ibnbd_msg_hdr_init(&w->hdr, IBNBD_MSG_HELLO_RSP, sizeof(*w));
	w->status = (int32_t)htole32((uint32_t)d->status);
	w->version = htole16(d->version);
	w->queue_depth = htole16(d->queue_depth);
	w->features = htole64(d->features);
	w->slot_addr = htole64(d->slot_addr);
	w->slot_rkey = htole32(d->slot_rkey);
	w->slot_stride = htole32(d->slot_stride);
	w->max_io_size = htole32(d->max_io_size);
	w->limit = htole32(d->limit);
}

const char *ibnbd_limit_name(uint32_t limit)
{
	switch (limit) {
	case IBNBD_LIMIT_CONNECTIONS:
		return "max_connections";
	case IBNBD_LIMIT_CONNECTIONS_PER_HOST:
		return "max_connections_per_host";
	case IBNBD_LIMIT_SESSIONS_PER_HOST:
		return "max_sessions_per_host";
	case IBNBD_LIMIT_SLOT_MEMORY:
		return "max_slot_memory";
	default:
		return "a limit";
	}
}

int ibnbd_hello_rsp_decode(const void *buf, size_t len, struct ibnbd_slot_desc *d)
{
	struct ibnbd_hello_rsp w;

	COPY_IN(w, buf, len);
	if (hdr_check(&w.hdr, IBNBD_MSG_HELLO_RSP, len))
		return -EPROTO;
	d->status = (int32_t)le32toh((uint32_t)w.status);
	d->version = le16toh(w.version);
	d->queue_depth = le16toh(w.queue_depth);
	d->features = le64toh(w.features);
	d->slot_addr = le64toh(w.slot_addr);
	d->slot_rkey = le32toh(w.slot_rkey);
	d->slot_stride = le32toh(w.slot_stride);
	d->max_io_size = le32toh(w.max_io_size);
	d->limit = le32toh(w.limit);
	if (d->status > 0)
		return -EPROTO;
	/* A limit comes only with -EDQUOT (one we do not know yet is still
	 * a limit: the caller names it as such). */
	if (d->limit && d->status != -EDQUOT)
		return -EPROTO;
	if (d->status == 0 &&
	    (d->queue_depth == 0 || d->queue_depth > IBNBD_MAX_QUEUE_DEPTH ||
	     d->max_io_size < IBNBD_MIN_IO_SIZE || d->max_io_size > IBNBD_MAX_IO_SIZE ||
	     (uint64_t)d->slot_stride < (uint64_t)d->max_io_size + sizeof(struct ibnbd_io_req)))
		return -EPROTO;
	return 0;
}

/* ---- OPEN ---- */

int ibnbd_open_encode(struct ibnbd_open *w, const struct ibnbd_open_params *p)
{
	size_t n = strlen(p->name);

	if (n >= sizeof(w->name))
		return -ENAMETOOLONG;
	memset(w, 0, sizeof(*w));
	ibnbd_msg_hdr_init(&w->hdr, IBNBD_MSG_OPEN, sizeof(*w));
	w->access = p->access;
	memcpy(w->name, p->name, n);
	return 0;
}

int ibnbd_open_decode(const void *buf, size_t len, struct ibnbd_open_params *p)
{
	struct ibnbd_open w;

	COPY_IN(w, buf, len);
	if (hdr_check(&w.hdr, IBNBD_MSG_OPEN, len))
		return -EPROTO;
	if (w.access != IBNBD_ACCESS_RO && w.access != IBNBD_ACCESS_RW)
		return -EPROTO;
	if (!all_zero(w.reserved, sizeof(w.reserved)))
		return -EPROTO;
	p->access = w.access;
	return copy_string(p->name, w.name, sizeof(w.name));
}

void ibnbd_open_rsp_encode(struct ibnbd_open_rsp *w, const struct ibnbd_dev_info *d)
{
	memset(w, 0, sizeof(*w));
	ibnbd_msg_hdr_init(&w->hdr, IBNBD_MSG_OPEN_RSP, sizeof(*w));
	w->status = (int32_t)htole32((uint32_t)d->status);
	w->handle = htole32(d->handle);
	w->size = htole64(d->size);
	w->logical_block_size = htole32(d->logical_block_size);
	w->physical_block_size = htole32(d->physical_block_size);
	w->max_discard_sectors = htole32(d->max_discard_sectors);
	w->max_write_zeroes_sectors = htole32(d->max_write_zeroes_sectors);
	w->flags = htole32(d->flags);
	w->export_id = htole64(d->export_id);
	w->cookie = htole64(d->cookie);
	memcpy(w->boot_id, d->boot_id, sizeof(w->boot_id));
}

int ibnbd_open_rsp_decode(const void *buf, size_t len, struct ibnbd_dev_info *d)
{
	struct ibnbd_open_rsp w;

	COPY_IN(w, buf, len);
	if (hdr_check(&w.hdr, IBNBD_MSG_OPEN_RSP, len) || w.reserved)
		return -EPROTO;
	d->status = (int32_t)le32toh((uint32_t)w.status);
	d->handle = le32toh(w.handle);
	d->size = le64toh(w.size);
	d->logical_block_size = le32toh(w.logical_block_size);
	d->physical_block_size = le32toh(w.physical_block_size);
	d->max_discard_sectors = le32toh(w.max_discard_sectors);
	d->max_write_zeroes_sectors = le32toh(w.max_write_zeroes_sectors);
	d->flags = le32toh(w.flags);
	d->export_id = le64toh(w.export_id);
	d->cookie = le64toh(w.cookie);
	memcpy(d->boot_id, w.boot_id, sizeof(d->boot_id));
	if (d->status > 0)
		return -EPROTO;
	if (d->status == 0 &&
	    (!d->cookie || !is_pow2(d->logical_block_size) || d->logical_block_size < 512 ||
	     d->logical_block_size > 65536 || !is_pow2(d->physical_block_size) ||
	     d->physical_block_size < d->logical_block_size ||
	     d->size % d->logical_block_size))
		return -EPROTO;
	return 0;
}

/* ---- CLOSE and KEEPALIVE ---- */

void ibnbd_close_encode(struct ibnbd_close *w, uint32_t handle)
{
	memset(w, 0, sizeof(*w));
	ibnbd_msg_hdr_init(&w->hdr, IBNBD_MSG_CLOSE, sizeof(*w));
	w->handle = htole32(handle);
}

int ibnbd_close_decode(const void *buf, size_t len, uint32_t *handle)
{
	struct ibnbd_close w;

	COPY_IN(w, buf, len);
	if (hdr_check(&w.hdr, IBNBD_MSG_CLOSE, len) || w.reserved)
		return -EPROTO;
	*handle = le32toh(w.handle);
	return 0;
}

void ibnbd_close_rsp_encode(struct ibnbd_close_rsp *w, int32_t status)
{
	memset(w, 0, sizeof(*w));
	ibnbd_msg_hdr_init(&w->hdr, IBNBD_MSG_CLOSE_RSP, sizeof(*w));
	w->status = (int32_t)htole32((uint32_t)status);
}

int ibnbd_close_rsp_decode(const void *buf, size_t len, int32_t *status)
{
	struct ibnbd_close_rsp w;

	COPY_IN(w, buf, len);
	if (hdr_check(&w.hdr, IBNBD_MSG_CLOSE_RSP, len) || w.reserved)
		return -EPROTO;
	*status = (int32_t)le32toh((uint32_t)w.status);
	return *status > 0 ? -EPROTO : 0;
}

void ibnbd_keepalive_encode(struct ibnbd_keepalive *w, enum ibnbd_msg_type type, uint64_t token)
{
	memset(w, 0, sizeof(*w));
	ibnbd_msg_hdr_init(&w->hdr, type, sizeof(*w));
	w->token = htole64(token);
}

int ibnbd_keepalive_decode(const void *buf, size_t len, enum ibnbd_msg_type type,
			   uint64_t *token)
{
	struct ibnbd_keepalive w;

	COPY_IN(w, buf, len);
	if (hdr_check(&w.hdr, type, len) || w.reserved)
		return -EPROTO;
	*token = le64toh(w.token);
	return 0;
}

/* ---- IO ---- */

void ibnbd_io_req_encode(struct ibnbd_io_req *w, const struct ibnbd_io *io)
{
	memset(w, 0, sizeof(*w));
	ibnbd_msg_hdr_init(&w->hdr, IBNBD_MSG_IO_REQ, sizeof(*w));
	w->req_id = htole64(io->req_id);
	w->offset = htole64(io->offset);
	w->length = htole32(io->length);
	w->handle = htole32(io->handle);
	w->opcode = io->opcode;
	w->flags = htole16(io->flags);
	w->rkey = htole32(io->rkey);
	w->addr = htole64(io->addr);
	w->cookie = htole64(io->cookie);
}

int ibnbd_io_req_decode(const void *buf, size_t len, struct ibnbd_io *io)
{
	struct ibnbd_io_req w;

	COPY_IN(w, buf, len);
	if (hdr_check(&w.hdr, IBNBD_MSG_IO_REQ, len) || w.reserved0 || w.reserved1)
		return -EPROTO;
	io->req_id = le64toh(w.req_id);
	io->offset = le64toh(w.offset);
	io->length = le32toh(w.length);
	io->handle = le32toh(w.handle);
	io->opcode = w.opcode;
	io->flags = le16toh(w.flags);
	io->rkey = le32toh(w.rkey);
	io->addr = le64toh(w.addr);
	io->cookie = le64toh(w.cookie);
	return 0;
}

static bool op_writes(uint8_t op)
{
	return op == IBNBD_OP_WRITE || op == IBNBD_OP_FLUSH || op == IBNBD_OP_DISCARD ||
	       op == IBNBD_OP_WRITE_ZEROES;
}

int ibnbd_io_validate(const struct ibnbd_io *io, const struct ibnbd_io_target *t)
{
	uint32_t lbs_mask = t->logical_block_size - 1;
	uint64_t limit;

	switch (io->opcode) {
	case IBNBD_OP_READ:
	case IBNBD_OP_WRITE:
		limit = t->max_io_size;
		break;
	case IBNBD_OP_FLUSH:
		limit = 0;
		break;
	case IBNBD_OP_DISCARD:
		limit = (uint64_t)t->max_discard_sectors << 9;
		if (!limit)
			return -EOPNOTSUPP;
		break;
	case IBNBD_OP_WRITE_ZEROES:
		limit = (uint64_t)t->max_write_zeroes_sectors << 9;
		if (!limit)
			return -EOPNOTSUPP;
		break;
	default:
		return -EOPNOTSUPP;
	}
	if (io->flags & ~IBNBD_IOF_ALL)
		return -EINVAL;
	if ((io->flags & IBNBD_IOF_FUA) && io->opcode != IBNBD_OP_WRITE)
		return -EINVAL;
	if ((io->flags & IBNBD_IOF_NOUNMAP) && io->opcode != IBNBD_OP_WRITE_ZEROES)
		return -EINVAL;
	if (op_writes(io->opcode) && !t->writable)
		return -EROFS;
	if (io->opcode == IBNBD_OP_FLUSH)
		return io->length || io->offset ? -EINVAL : 0;
	if (io->length == 0 || io->length > limit)
		return -EINVAL;
	if ((io->offset & lbs_mask) || (io->length & lbs_mask))
		return -EINVAL;
	if (io->offset > t->size || io->length > t->size - io->offset)
		return -ERANGE;
	return 0;
}

void ibnbd_io_rsp_encode(struct ibnbd_io_rsp *w, uint64_t req_id, int32_t status)
{
	memset(w, 0, sizeof(*w));
	ibnbd_msg_hdr_init(&w->hdr, IBNBD_MSG_IO_RSP, sizeof(*w));
	w->req_id = htole64(req_id);
	w->status = (int32_t)htole32((uint32_t)status);
}

int ibnbd_io_rsp_decode(const void *buf, size_t len, uint64_t *req_id, int32_t *status)
{
	struct ibnbd_io_rsp w;

	COPY_IN(w, buf, len);
	if (hdr_check(&w.hdr, IBNBD_MSG_IO_RSP, len) || w.reserved)
		return -EPROTO;
	*req_id = le64toh(w.req_id);
	*status = (int32_t)le32toh((uint32_t)w.status);
	return *status > 0 ? -EPROTO : 0;
}

const char *ibnbd_op_name(unsigned int opcode)
{
	static const char *const names[] = {
		[IBNBD_OP_READ] = "READ",
		[IBNBD_OP_WRITE] = "WRITE",
		[IBNBD_OP_FLUSH] = "FLUSH",
		[IBNBD_OP_DISCARD] = "DISCARD",
		[IBNBD_OP_WRITE_ZEROES] = "WRITE_ZEROES",
	};

	return opcode < sizeof(names) / sizeof(names[0]) ? names[opcode] : "UNKNOWN";
}

const char *ibnbd_msg_name(unsigned int type)
{
	switch (type) {
	case IBNBD_MSG_HELLO: return "HELLO";
	case IBNBD_MSG_HELLO_RSP: return "HELLO_RSP";
	case IBNBD_MSG_OPEN: return "OPEN";
	case IBNBD_MSG_OPEN_RSP: return "OPEN_RSP";
	case IBNBD_MSG_CLOSE: return "CLOSE";
	case IBNBD_MSG_CLOSE_RSP: return "CLOSE_RSP";
	case IBNBD_MSG_KEEPALIVE: return "KEEPALIVE";
	case IBNBD_MSG_KEEPALIVE_RSP: return "KEEPALIVE_RSP";
	case IBNBD_MSG_AUTH_CHALLENGE: return "AUTH_CHALLENGE";
	case IBNBD_MSG_AUTH_PROOF: return "AUTH_PROOF";
	case IBNBD_MSG_IO_REQ: return "IO_REQ";
	case IBNBD_MSG_IO_RSP: return "IO_RSP";
	default: return "UNKNOWN";
	}
}
