// SPDX-License-Identifier: GPL-2.0-only
/* Pure logic of the ublk IO plane: user_data encoding, descriptor decoding,
 * tag buffer layout. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "tap.h"
#include "ublk/queue.h"

static void test_user_data(void)
{
	static const struct {
		unsigned int type, queue, tag, cmd;
	} cases[] = {
		{ 0, 0, 0, 0 },
		{ 1, 0, 63, UBLK_UD_CMD_FETCH },
		{ 255, (1u << 24) - 1, 65535, 65535 },
		{ 7, 123456, UBLK_MAX_QUEUE_DEPTH - 1, UBLK_UD_CMD_COMMIT },
		{ 0x80, 1, 1, 1 },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t ud = ublk_ud_encode(cases[i].type, cases[i].queue, cases[i].tag,
					     cases[i].cmd);

		ok(ublk_ud_kind(ud) == cases[i].type && ublk_ud_queue(ud) == cases[i].queue &&
			   ublk_ud_tag(ud) == cases[i].tag && ublk_ud_cmd(ud) == cases[i].cmd,
		   "user_data round trip type %u queue %u tag %u cmd %u (0x%016llx)",
		   cases[i].type, cases[i].queue, cases[i].tag, cases[i].cmd,
		   (unsigned long long)ud);
	}
	/* Neighbouring fields must not bleed into each other. */
	ok(ublk_ud_encode(0, 0, 0xffff, 0) == 0xffff0000ull, "tag occupies bits 16..31");
	ok(ublk_ud_encode(0, 0xffffff, 0, 0) == 0x00ffffff00000000ull, "queue occupies bits 32..55");
	ok(ublk_ud_encode(0xff, 0, 0, 0) == 0xff00000000000000ull, "type occupies bits 56..63");
}

static struct ublksrv_io_desc desc(unsigned int op, unsigned int flags, uint64_t sector,
				   uint32_t nr)
{
	struct ublksrv_io_desc d;

	memset(&d, 0, sizeof(d));
	d.op_flags = op | flags;
	d.start_sector = sector;
	d.nr_sectors = nr;
	return d;
}

static void test_decode(void)
{
	const uint32_t max_io = 1u << 20;
	const uint64_t dev_sectors = (256ull << 20) >> 9;
	struct ublksrv_io_desc d;
	struct ublk_io io;
	int ret;

	d = desc(UBLK_IO_OP_READ, 0, 8, 8);
	ret = ublk_io_decode(&d, max_io, dev_sectors, &io);
	ok(ret == 0 && io.op == UBLK_IO_OP_READ && io.offset == 4096 && io.len == 4096 &&
		   io.flags == 0 && io.start_sector == 8 && io.nr_sectors == 8,
	   "READ 4k at sector 8 decodes (ret %d offset %llu len %u)", ret,
	   (unsigned long long)io.offset, io.len);

	d = desc(UBLK_IO_OP_WRITE, UBLK_IO_F_FUA, 0, 2048);
	ret = ublk_io_decode(&d, max_io, dev_sectors, &io);
	ok(ret == 0 && io.op == UBLK_IO_OP_WRITE && (io.flags & UBLK_IO_F_FUA) && io.len == max_io,
	   "WRITE|FUA of exactly max_io decodes with the FUA flag");

	d = desc(UBLK_IO_OP_WRITE, 0, 0, 2049);
	ok(ublk_io_decode(&d, max_io, dev_sectors, &io) == -EINVAL,
	   "WRITE larger than the tag buffer is rejected");

	d = desc(UBLK_IO_OP_READ, 0, 0, 0);
	ok(ublk_io_decode(&d, max_io, dev_sectors, &io) == -EINVAL, "READ of 0 sectors is rejected");

	d = desc(UBLK_IO_OP_READ, 0, dev_sectors - 8, 8);
	ok(ublk_io_decode(&d, max_io, dev_sectors, &io) == 0, "READ of the last 4k decodes");
	d = desc(UBLK_IO_OP_READ, 0, dev_sectors - 8, 16);
	ok(ublk_io_decode(&d, max_io, dev_sectors, &io) == -EINVAL,
	   "READ running past the end of the device is rejected");
	d = desc(UBLK_IO_OP_READ, 0, UINT64_MAX - 4, 8);
	ok(ublk_io_decode(&d, max_io, 0, &io) == -EINVAL,
	   "a sector whose byte offset overflows is rejected even unchecked");

	d = desc(UBLK_IO_OP_FLUSH, 0, 1234, 0);
	ret = ublk_io_decode(&d, max_io, dev_sectors, &io);
	ok(ret == 0 && io.op == UBLK_IO_OP_FLUSH && io.len == 0 && io.offset == 0,
	   "FLUSH decodes with no range");

	d = desc(UBLK_IO_OP_DISCARD, 0, 0, (uint32_t)dev_sectors);
	ret = ublk_io_decode(&d, max_io, dev_sectors, &io);
	ok(ret == 0 && io.len == 256u << 20,
	   "DISCARD of the whole device decodes (not limited by the tag buffer)");

	d = desc(UBLK_IO_OP_DISCARD, 0, 0, UINT32_MAX);
	ok(ublk_io_decode(&d, max_io, 0, &io) == -EINVAL,
	   "a DISCARD whose byte length overflows 32 bits is rejected");

	d = desc(UBLK_IO_OP_WRITE_ZEROES, UBLK_IO_F_NOUNMAP, 16, 8);
	ret = ublk_io_decode(&d, max_io, dev_sectors, &io);
	ok(ret == 0 && io.op == UBLK_IO_OP_WRITE_ZEROES && (io.flags & UBLK_IO_F_NOUNMAP) &&
		   io.offset == 8192 && io.len == 4096,
	   "WRITE_ZEROES|NOUNMAP decodes with the flag");

	d = desc(UBLK_IO_OP_WRITE_SAME, 0, 0, 8);
	ok(ublk_io_decode(&d, max_io, dev_sectors, &io) == -EOPNOTSUPP, "WRITE_SAME is not served");
	d = desc(13 /* ZONE_APPEND */, 0, 0, 8);
	ok(ublk_io_decode(&d, max_io, dev_sectors, &io) == -EOPNOTSUPP, "zoned ops are not served");

	ok(!strcmp(ublk_io_op_name(UBLK_IO_OP_DISCARD), "DISCARD") &&
		   !strcmp(ublk_io_op_name(200), "UNKNOWN"),
	   "op names");
}

static void test_buffers(void)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);

	ok(ublk_queue_buf_stride(1u << 20) == 1u << 20, "1 MiB buffers are not padded");
	ok(ublk_queue_buf_stride((uint32_t)page + 512) == 2 * page,
	   "a buffer size off the page is rounded up to keep every buffer page-aligned");
	ok(ublk_queue_buf_area_len(64, 1u << 20) == 64ull << 20, "64 x 1 MiB = one 64 MiB area");
}

int main(void)
{
	test_user_data();
	test_decode();
	test_buffers();
	return tap_done();
}
