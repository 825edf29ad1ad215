// SPDX-License-Identifier: GPL-2.0-only
/* The wire codec and validators of src/common/proto.c. */
#include <endian.h>
#include <errno.h>
#include <string.h>

#include "proto.h"
#include "tap.h"

static const struct ibnbd_io_target dev = {
	.size = 1ull << 30,
	.logical_block_size = 512,
	.max_io_size = 128 * 1024,
	.max_discard_sectors = 8192,
	.max_write_zeroes_sectors = 8192,
	.writable = true,
};

static struct ibnbd_io rd(uint64_t off, uint32_t len)
{
	return (struct ibnbd_io){ .req_id = 5, .offset = off, .length = len,
				  .opcode = IBNBD_OP_READ };
}

static void test_io_validate(void)
{
	struct ibnbd_io io;
	struct ibnbd_io_target ro = dev;

	ro.writable = false;
	ok(ibnbd_io_validate(&(struct ibnbd_io){ .opcode = IBNBD_OP_READ, .length = 4096 }, &dev) == 0,
	   "read at 0 ok");
	io = rd(dev.size - 512, 512);
	ok(ibnbd_io_validate(&io, &dev) == 0, "read of the last block ok");
	io = rd(dev.size, 512);
	ok(ibnbd_io_validate(&io, &dev) == -ERANGE, "read at the end: -ERANGE");
	io = rd(dev.size - 512, 1024);
	ok(ibnbd_io_validate(&io, &dev) == -ERANGE, "read crossing the end: -ERANGE");
	io = rd(~0ull & ~511ull, 1024);
	ok(ibnbd_io_validate(&io, &dev) == -ERANGE, "offset+length overflow: -ERANGE");
	io = rd(100, 512);
	ok(ibnbd_io_validate(&io, &dev) == -EINVAL, "misaligned offset: -EINVAL");
	io = rd(0, 513);
	ok(ibnbd_io_validate(&io, &dev) == -EINVAL, "misaligned length: -EINVAL");
	io = rd(0, 0);
	ok(ibnbd_io_validate(&io, &dev) == -EINVAL, "zero length: -EINVAL");
	io = rd(0, 256 * 1024);
	ok(ibnbd_io_validate(&io, &dev) == -EINVAL, "above max IO: -EINVAL");
	io = rd(0, 128 * 1024);
	ok(ibnbd_io_validate(&io, &dev) == 0, "exactly max IO ok");
	io = rd(0, 512);
	io.opcode = 42;
	ok(ibnbd_io_validate(&io, &dev) == -EOPNOTSUPP, "unknown opcode: -EOPNOTSUPP");
	io = rd(0, 512);
	io.flags = 0x100;
	ok(ibnbd_io_validate(&io, &dev) == -EINVAL, "unknown flag: -EINVAL");
	io.flags = IBNBD_IOF_FUA;
	ok(ibnbd_io_validate(&io, &dev) == -EINVAL, "FUA on READ: -EINVAL");
	io.opcode = IBNBD_OP_WRITE;
	ok(ibnbd_io_validate(&io, &dev) == 0, "FUA WRITE ok");
	ok(ibnbd_io_validate(&io, &ro) == -EROFS, "WRITE on read-only: -EROFS");
	io = rd(0, 512);
	ok(ibnbd_io_validate(&io, &ro) == 0, "READ on read-only ok");
	io = (struct ibnbd_io){ .opcode = IBNBD_OP_FLUSH };
	ok(ibnbd_io_validate(&io, &dev) == 0, "FLUSH ok");
	ok(ibnbd_io_validate(&io, &ro) == -EROFS, "FLUSH on read-only: -EROFS");
	io.length = 512;
	ok(ibnbd_io_validate(&io, &dev) == -EINVAL, "FLUSH with a range: -EINVAL");
	io = rd(0, 8192 * 512);
	io.opcode = IBNBD_OP_DISCARD;
	ok(ibnbd_io_validate(&io, &dev) == 0, "DISCARD at its limit ok (beyond max IO)");
	io.length += 512;
	ok(ibnbd_io_validate(&io, &dev) == -EINVAL, "DISCARD above its limit: -EINVAL");
	io.length = 512;
	io.opcode = IBNBD_OP_WRITE_ZEROES;
	io.flags = IBNBD_IOF_NOUNMAP;
	ok(ibnbd_io_validate(&io, &dev) == 0, "WRITE_ZEROES NOUNMAP ok");
	io.opcode = IBNBD_OP_DISCARD;
	ok(ibnbd_io_validate(&io, &dev) == -EINVAL, "NOUNMAP on DISCARD: -EINVAL");
	{
		struct ibnbd_io_target nodisc = dev;

		nodisc.max_discard_sectors = 0;
		io.flags = 0;
		ok(ibnbd_io_validate(&io, &nodisc) == -EOPNOTSUPP, "DISCARD unsupported: -EOPNOTSUPP");
	}
}

static void test_io_codec(void)
{
	struct ibnbd_io in = { .req_id = ibnbd_req_id(7, 0x123456789aull), .offset = 4096,
			       .length = 8192, .handle = 3, .opcode = IBNBD_OP_READ,
			       .flags = 0, .rkey = 0xabcd, .addr = 0x7fff00001000ull,
			       .cookie = 0xfeedface12345678ull };
	struct ibnbd_io out;
	struct ibnbd_io_req w;
	uint8_t *b = (uint8_t *)&w;
	uint64_t id;
	int32_t st;
	struct ibnbd_io_rsp r;

	ibnbd_io_req_encode(&w, &in);
	ok(ibnbd_io_req_decode(&w, sizeof(w), &out) == 0 && !memcmp(&in, &out, sizeof(in)),
	   "io_req round trip");
	ok(ibnbd_req_tag(out.req_id) == 7, "tag from req_id");
	ok(b[0] == 'I' && b[1] == 'B' && b[2] == 'N' && b[3] == 'D', "magic bytes on the wire");
	ok(le64toh(w.offset) == 4096 && b[24] == 0x00 && b[25] == 0x20, "little-endian length");
	ok(ibnbd_io_req_decode(&w, sizeof(w) - 1, &out) == -EPROTO, "short io_req: -EPROTO");
	w.hdr.magic ^= 1;
	ok(ibnbd_io_req_decode(&w, sizeof(w), &out) == -EPROTO, "bad magic: -EPROTO");
	w.hdr.magic ^= 1;
	w.hdr.type = htole16(IBNBD_MSG_HELLO);
	ok(ibnbd_io_req_decode(&w, sizeof(w), &out) == -EPROTO, "wrong type: -EPROTO");
	ibnbd_io_req_encode(&w, &in);
	w.reserved0 = 1;
	ok(ibnbd_io_req_decode(&w, sizeof(w), &out) == -EPROTO, "non-zero reserved0: -EPROTO");
	w.reserved0 = 0;
	w.reserved1 = htole64(1ull << 40);
	ok(ibnbd_io_req_decode(&w, sizeof(w), &out) == -EPROTO, "non-zero reserved1: -EPROTO");
	ibnbd_io_rsp_encode(&r, 99, -EIO);
	ok(ibnbd_io_rsp_decode(&r, sizeof(r), &id, &st) == 0 && id == 99 && st == -EIO,
	   "io_rsp round trip");
	ibnbd_io_rsp_encode(&r, 99, 5);
	ok(ibnbd_io_rsp_decode(&r, sizeof(r), &id, &st) == -EPROTO, "positive status: -EPROTO");
}

static void test_peek(void)
{
	struct ibnbd_open w;
	uint16_t type;
	uint8_t junk[8] = { 0 };

	ibnbd_open_encode(&w, &(struct ibnbd_open_params){ .access = IBNBD_ACCESS_RW, .name = "x" });
	ok(ibnbd_msg_peek(&w, sizeof(w), &type) == 0 && type == IBNBD_MSG_OPEN, "peek OPEN");
	ok(ibnbd_msg_peek(&w, sizeof(w) + 1, &type) == -EPROTO, "peek: length mismatch");
	ok(ibnbd_msg_peek(&w, 4, &type) == -EPROTO, "peek: truncated header");
	ok(ibnbd_msg_peek(junk, sizeof(junk), &type) == -EPROTO, "peek: zeroes");
	ok(ibnbd_msg_peek(&w, 300, &type) == -EPROTO, "peek: beyond IBNBD_MSG_MAX");
}

static void test_handshake(void)
{
	struct ibnbd_conn_params req = { .version = IBNBD_PROTO_VERSION, .queue_depth = 512,
					 .features = IBNBD_FEAT_ALL | (1ull << 40),
					 .max_io_size = 3 * 1024 * 1024 + 100, .conn_count = 1 };
	struct ibnbd_conn_limits lim = { .max_queue_depth = 128, .max_io_size = 512 * 1024,
					 .features = IBNBD_FEAT_FUA };
	struct ibnbd_conn_params rep, dec;
	struct ibnbd_conn_req wreq;
	struct ibnbd_conn_rep wrep;
	uint8_t padded[56] = { 0 };
	struct ibnbd_hello h;
	struct ibnbd_hello_params hp = { .version = 1, .features = 3, .host_id = "node-1" }, hd;
	struct ibnbd_open o;
	struct ibnbd_open_params op, od;
	struct ibnbd_open_rsp orw;
	struct ibnbd_dev_info di = { .status = 0, .handle = 2, .size = 1 << 20,
				     .logical_block_size = 512, .physical_block_size = 4096,
				     .flags = IBNBD_DEV_FUA, .cookie = 0x1234567890abcdefull,
				     .boot_id = { 1, 2, 3 } }, dd;
	struct ibnbd_hello_rsp hr;
	struct ibnbd_slot_desc sd = { .queue_depth = 16, .max_io_size = 65536,
				      .slot_stride = 65536 + 4096, .slot_rkey = 9 }, sdd;

	ibnbd_conn_req_encode(&wreq, &req);
	memcpy(padded, &wreq, sizeof(wreq));
	ok(ibnbd_conn_req_decode(padded, sizeof(padded), &dec) == 0 && dec.queue_depth == 512,
	   "conn_req decodes from CM-padded private data");
	ok(ibnbd_conn_req_decode(padded, 20, &dec) == -EPROTO, "short conn_req: -EPROTO");
	ok(ibnbd_conn_negotiate(&req, &lim, &rep) == 0 && rep.queue_depth == 128 &&
	   rep.max_io_size == 512 * 1024 && rep.features == IBNBD_FEAT_FUA,
	   "negotiate lowers depth, IO size and features");
	req.max_io_size = 65536 + 100;
	ok(ibnbd_conn_negotiate(&req, &lim, &rep) == 0 && rep.max_io_size == 65536,
	   "negotiate rounds IO size down to 4 KiB");
	req.version = IBNBD_PROTO_VERSION - 1;
	ok(ibnbd_conn_negotiate(&req, &lim, &rep) == -EPROTONOSUPPORT &&
	   rep.status == -EPROTONOSUPPORT, "other version: -EPROTONOSUPPORT");
	req.version = IBNBD_PROTO_VERSION;
	req.queue_depth = 0;
	ok(ibnbd_conn_negotiate(&req, &lim, &rep) == -EINVAL, "depth 0: -EINVAL");
	req.queue_depth = 4;
	req.max_io_size = 100;
	ok(ibnbd_conn_negotiate(&req, &lim, &rep) == -EINVAL, "tiny IO size: -EINVAL");
	rep = (struct ibnbd_conn_params){ .version = 1, .queue_depth = 8, .max_io_size = 8192 };
	ibnbd_conn_rep_encode(&wrep, &rep);
	ok(ibnbd_conn_rep_decode(&wrep, sizeof(wrep), &dec) == 0 && dec.queue_depth == 8,
	   "conn_rep round trip");
	rep.status = -ENOSPC;
	ibnbd_conn_rep_encode(&wrep, &rep);
	ok(ibnbd_conn_rep_decode(&wrep, sizeof(wrep), &dec) == 0 && dec.status == -ENOSPC,
	   "conn_rep reject status");

	ibnbd_hello_encode(&h, &hp);
	ok(ibnbd_hello_decode(&h, sizeof(h), &hd) == 0 && !strcmp(hd.host_id, "node-1"),
	   "hello round trip");
	h.reserved1 = htole32(4);
	ok(ibnbd_hello_decode(&h, sizeof(h), &hd) == -EPROTO,
	   "hello with a non-zero reserved field: -EPROTO");
	h.reserved1 = 0;
	strcpy(h.host_id, "evil\nlog line");
	ok(ibnbd_hello_decode(&h, sizeof(h), &hd) == -EPROTO, "control character in host id: -EPROTO");
	memset(h.host_id, 'x', sizeof(h.host_id));
	ok(ibnbd_hello_decode(&h, sizeof(h), &hd) == -EPROTO, "unterminated host id: -EPROTO");
	memset(hp.nonce, 0xa5, sizeof(hp.nonce));
	ibnbd_hello_encode(&h, &hp);
	ok(ibnbd_hello_decode(&h, sizeof(h), &hd) == 0 && !memcmp(hd.nonce, hp.nonce, sizeof(hd.nonce)),
	   "hello carries the client nonce");
	ok(ibnbd_hello_decode(&h, sizeof(h) - 32, &hd) == -EPROTO,
	   "a version 2 HELLO (no nonce, 88 bytes): -EPROTO");
	{
		struct ibnbd_auth_challenge ch;
		struct ibnbd_auth_proof pr;
		struct ibnbd_auth_challenge_params cp = { .version = IBNBD_PROTO_VERSION,
							  .server_id = "srv-1" }, cd;
		uint8_t proof[IBNBD_PROOF_LEN], pd[IBNBD_PROOF_LEN];

		memset(cp.nonce, 0x11, sizeof(cp.nonce));
		memset(cp.proof, 0x22, sizeof(cp.proof));
		ibnbd_auth_challenge_encode(&ch, &cp);
		ok(ibnbd_auth_challenge_decode(&ch, sizeof(ch), &cd) == 0 &&
		   !strcmp(cd.server_id, "srv-1") && cd.version == IBNBD_PROTO_VERSION &&
		   !memcmp(cd.nonce, cp.nonce, sizeof(cd.nonce)) &&
		   !memcmp(cd.proof, cp.proof, sizeof(cd.proof)), "auth challenge round trip");
		ok(ibnbd_auth_challenge_decode(&ch, sizeof(ch) - 1, &cd) == -EPROTO,
		   "a short auth challenge: -EPROTO");
		ch.reserved1 = htole32(1);
		ok(ibnbd_auth_challenge_decode(&ch, sizeof(ch), &cd) == -EPROTO,
		   "an auth challenge with a reserved field set: -EPROTO");
		ibnbd_auth_challenge_encode(&ch, &cp);
		memset(ch.server_id, 'x', sizeof(ch.server_id));
		ok(ibnbd_auth_challenge_decode(&ch, sizeof(ch), &cd) == -EPROTO,
		   "an unterminated server id: -EPROTO");
		memset(proof, 0x33, sizeof(proof));
		ibnbd_auth_proof_encode(&pr, proof);
		ok(ibnbd_auth_proof_decode(&pr, sizeof(pr), pd) == 0 && !memcmp(pd, proof, sizeof(pd)),
		   "auth proof round trip");
		ok(ibnbd_auth_proof_decode(&ch, sizeof(ch), pd) == -EPROTO,
		   "a challenge is not a proof: -EPROTO");
		pr.reserved0 = htole32(1);
		ok(ibnbd_auth_proof_decode(&pr, sizeof(pr), pd) == -EPROTO,
		   "a proof with a reserved field set: -EPROTO");
	}

	memset(&op, 0, sizeof(op));
	op.access = IBNBD_ACCESS_RO;
	strcpy(op.name, "disk0");
	ok(ibnbd_open_encode(&o, &op) == 0 && ibnbd_open_decode(&o, sizeof(o), &od) == 0 &&
	   od.access == IBNBD_ACCESS_RO && !strcmp(od.name, "disk0"), "open round trip");
	o.access = 7;
	ok(ibnbd_open_decode(&o, sizeof(o), &od) == -EPROTO, "bad access mode: -EPROTO");
	o.access = IBNBD_ACCESS_RW;
	memset(o.name, 0, sizeof(o.name));
	ok(ibnbd_open_decode(&o, sizeof(o), &od) == -EPROTO, "empty name: -EPROTO");
	memset(op.name, 'a', sizeof(op.name));
	op.name[sizeof(op.name) - 1] = '\0';
	ok(ibnbd_open_encode(&o, &op) == 0 && ibnbd_open_decode(&o, sizeof(o), &od) == 0 &&
	   strlen(od.name) == sizeof(od.name) - 1, "longest name (127 characters) round trip");
	memset(o.name, 'a', sizeof(o.name));
	ok(ibnbd_open_decode(&o, sizeof(o), &od) == -EPROTO, "unterminated name: -EPROTO");

	ibnbd_open_rsp_encode(&orw, &di);
	ok(ibnbd_open_rsp_decode(&orw, sizeof(orw), &dd) == 0 && dd.size == 1 << 20 &&
	   dd.physical_block_size == 4096 && dd.handle == 2 && dd.cookie == di.cookie &&
	   !memcmp(dd.boot_id, di.boot_id, sizeof(dd.boot_id)), "open_rsp round trip");
	orw.reserved = 1;
	ok(ibnbd_open_rsp_decode(&orw, sizeof(orw), &dd) == -EPROTO,
	   "open_rsp with a non-zero reserved field: -EPROTO");
	di.cookie = 0;
	ibnbd_open_rsp_encode(&orw, &di);
	ok(ibnbd_open_rsp_decode(&orw, sizeof(orw), &dd) == -EPROTO,
	   "a successful open_rsp without a cookie: -EPROTO");
	di.cookie = 1;
	di.logical_block_size = 1000;
	ibnbd_open_rsp_encode(&orw, &di);
	ok(ibnbd_open_rsp_decode(&orw, sizeof(orw), &dd) == -EPROTO, "non-power-of-2 block: -EPROTO");

	ibnbd_hello_rsp_encode(&hr, &sd);
	ok(ibnbd_hello_rsp_decode(&hr, sizeof(hr), &sdd) == 0 && sdd.slot_stride == 65536 + 4096,
	   "hello_rsp round trip");
	sd.slot_stride = 65536;
	ibnbd_hello_rsp_encode(&hr, &sd);
	ok(ibnbd_hello_rsp_decode(&hr, sizeof(hr), &sdd) == -EPROTO,
	   "slot stride without room for the header: -EPROTO");

	/* A refusal by a limit says which one; a limit with another status
	 * is malformed. */
	sd = (struct ibnbd_slot_desc){ .version = IBNBD_PROTO_VERSION, .status = -EDQUOT,
				       .limit = IBNBD_LIMIT_SESSIONS_PER_HOST };
	ibnbd_hello_rsp_encode(&hr, &sd);
	ok(ibnbd_hello_rsp_decode(&hr, sizeof(hr), &sdd) == 0 && sdd.status == -EDQUOT &&
		   sdd.limit == IBNBD_LIMIT_SESSIONS_PER_HOST,
	   "hello_rsp refused by a limit: round trip with the limit");
	sd.status = -EACCES;
	ibnbd_hello_rsp_encode(&hr, &sd);
	ok(ibnbd_hello_rsp_decode(&hr, sizeof(hr), &sdd) == -EPROTO,
	   "hello_rsp with a limit but not -EDQUOT: -EPROTO");
}

int main(void)
{
	test_io_validate();
	test_io_codec();
	test_peek();
	test_handshake();
	ok(!strcmp(ibnbd_op_name(IBNBD_OP_WRITE_ZEROES), "WRITE_ZEROES") &&
	   !strcmp(ibnbd_op_name(200), "UNKNOWN"), "op names");
	return tap_done();
}
