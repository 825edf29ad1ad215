// SPDX-License-Identifier: GPL-2.0-only
/*
 * libFuzzer target for everything the server decodes from the network:
 * connect private data, every SEND message type, and IO headers validated
 * against a device. The first byte picks the decoder, the rest is the message.
 * Built only with clang -fsanitize=fuzzer (see tests/e2e/server/meson.build).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct ibnbd_io_target dev = {
		.size = 1ull << 30, .logical_block_size = 4096, .max_io_size = 1 << 20,
		.max_discard_sectors = 1 << 16, .max_write_zeroes_sectors = 1 << 16,
		.writable = true,
	};
	static const struct ibnbd_conn_limits lim = { 128, 512 * 1024, IBNBD_FEAT_ALL };
	union {
		struct ibnbd_conn_params cp;
		struct ibnbd_hello_params h;
		struct ibnbd_open_params o;
		struct ibnbd_io io;
		struct ibnbd_slot_desc sd;
		struct ibnbd_dev_info di;
		struct ibnbd_auth_challenge_params ch;
		uint8_t proof[IBNBD_PROOF_LEN];
	} u;
	struct ibnbd_conn_params rep;
	uint16_t type;
	uint32_t handle;
	int32_t st;
	uint64_t cookie;

	if (size < 1)
		return 0;
	switch (data[0] % 8) {
	case 0:
		if (!ibnbd_conn_req_decode(data + 1, size - 1, &u.cp))
			ibnbd_conn_negotiate(&u.cp, &lim, &rep);
		break;
	case 1:
		ibnbd_conn_rep_decode(data + 1, size - 1, &u.cp);
		break;
	case 2:
		/* What the server does with a SEND. */
		if (ibnbd_msg_peek(data + 1, size - 1, &type))
			break;
		switch (type) {
		case IBNBD_MSG_HELLO:
			ibnbd_hello_decode(data + 1, size - 1, &u.h);
			break;
		case IBNBD_MSG_OPEN:
			if (!ibnbd_open_decode(data + 1, size - 1, &u.o) && strlen(u.o.name) >= sizeof(u.o.name))
				__builtin_trap();
			break;
		case IBNBD_MSG_CLOSE:
			ibnbd_close_decode(data + 1, size - 1, &handle);
			break;
		case IBNBD_MSG_AUTH_PROOF:
			ibnbd_auth_proof_decode(data + 1, size - 1, u.proof);
			break;
		case IBNBD_MSG_KEEPALIVE:
			ibnbd_keepalive_decode(data + 1, size - 1, IBNBD_MSG_KEEPALIVE, &cookie);
			break;
		case IBNBD_MSG_IO_REQ:
			if (!ibnbd_io_req_decode(data + 1, size - 1, &u.io) &&
			    !ibnbd_io_validate(&u.io, &dev)) {
				/* Whatever passes must lie inside the device. */
				if (u.io.offset + u.io.length > dev.size || u.io.offset % 4096)
					__builtin_trap();
			}
			break;
		}
		break;
	case 3:
		/* What the client does with the answer to HELLO. */
		if (!ibnbd_auth_challenge_decode(data + 1, size - 1, &u.ch) &&
		    strlen(u.ch.server_id) >= sizeof(u.ch.server_id))
			__builtin_trap();
		ibnbd_hello_rsp_decode(data + 1, size - 1, &u.sd);
		break;
	case 4:
		ibnbd_open_rsp_decode(data + 1, size - 1, &u.di);
		break;
	case 5:
		ibnbd_io_rsp_decode(data + 1, size - 1, &cookie, &st);
		break;
	case 6:
		/* An IO header as it lands at the end of a slot. */
		if (size - 1 >= sizeof(struct ibnbd_io_req) &&
		    !ibnbd_io_req_decode(data + size - sizeof(struct ibnbd_io_req),
					 sizeof(struct ibnbd_io_req), &u.io))
			ibnbd_io_validate(&u.io, &dev);
		break;
	default:
		ibnbd_close_rsp_decode(data + 1, size - 1, &st);
		break;
	}
	return 0;
}
