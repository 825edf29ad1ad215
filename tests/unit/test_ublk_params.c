// SPDX-License-Identifier: GPL-2.0-only
/* ublk_params_build: what SET_PARAMS gets from a device description. */
#include <errno.h>
#include <string.h>

#include "tap.h"
#include "ublk/dev.h"

static struct ublk_dev_params good(void)
{
	struct ublk_dev_params p;

	memset(&p, 0, sizeof(p));
	p.size = 256ull << 20;
	p.logical_block_size = 512;
	p.physical_block_size = 4096;
	p.max_discard_bytes = 1u << 30;
	p.discard_granularity = 4096;
	p.max_write_zeroes_bytes = 1u << 30;
	p.volatile_cache = true;
	p.fua = true;
	return p;
}

static void bad(const char *what, struct ublk_dev_params p, uint32_t max_io_buf)
{
	struct ublk_params out;
	const char *why = NULL;
	int ret = ublk_params_build(&p, max_io_buf, &out, &why);

	ok(ret == -EINVAL && why && *why, "%s is rejected (%s)", what, why ? why : "no reason");
}

int main(void)
{
	struct ublk_dev_params p = good();
	struct ublk_params out;
	const char *why = NULL;
	int ret;

	ret = ublk_params_build(&p, 1u << 20, &out, &why);
	ok(ret == 0, "a RAM-like device builds (%s)", why ? why : "ok");
	ok(out.types == (UBLK_PARAM_TYPE_BASIC | UBLK_PARAM_TYPE_DISCARD), "basic and discard types");
	ok(out.len == sizeof(out), "len is the struct we send");
	ok(out.basic.logical_bs_shift == 9 && out.basic.physical_bs_shift == 12 &&
		   out.basic.io_min_shift == 12,
	   "block shifts 9/12, io_min = physical");
	ok(out.basic.max_sectors == 2048, "max_sectors defaults to the tag buffer (2048)");
	ok(out.basic.dev_sectors == (256ull << 20) >> 9, "dev_sectors in 512-byte units");
	ok(out.basic.attrs == (UBLK_ATTR_VOLATILE_CACHE | UBLK_ATTR_FUA),
	   "volatile cache and FUA advertised, not read-only");
	ok(out.discard.max_discard_sectors == (1u << 21) && out.discard.discard_granularity == 4096 &&
		   out.discard.max_discard_segments == 1 &&
		   out.discard.max_write_zeroes_sectors == (1u << 21) &&
		   out.discard.discard_alignment == 0,
	   "discard: 1 GiB, granularity 4k, one segment, write zeroes 1 GiB");

	p = good();
	p.read_only = true;
	p.rotational = true;
	p.max_io_bytes = 128 << 10;
	ret = ublk_params_build(&p, 1u << 20, &out, &why);
	ok(ret == 0 && (out.basic.attrs & UBLK_ATTR_READ_ONLY) &&
		   (out.basic.attrs & UBLK_ATTR_ROTATIONAL) && out.basic.max_sectors == 256,
	   "read-only, rotational, max IO 128k below the buffer size");

	p = good();
	p.max_discard_bytes = 0;
	p.max_write_zeroes_bytes = 0;
	ret = ublk_params_build(&p, 1u << 20, &out, &why);
	ok(ret == 0 && out.types == UBLK_PARAM_TYPE_BASIC, "no discard: no discard params");

	p = good();
	p.max_discard_bytes = 0;
	p.discard_granularity = 0;
	ret = ublk_params_build(&p, 1u << 20, &out, &why);
	ok(ret == 0 && (out.types & UBLK_PARAM_TYPE_DISCARD) &&
		   out.discard.max_discard_sectors == 0 && out.discard.discard_granularity == 512,
	   "write zeroes only: discard type with a non-zero granularity (ublk requires one)");

	p = good();
	p.physical_block_size = 0;
	p.logical_block_size = 4096;
	p.discard_granularity = 0;
	ret = ublk_params_build(&p, 1u << 20, &out, &why);
	ok(ret == 0 && out.basic.logical_bs_shift == 12 && out.basic.physical_bs_shift == 12 &&
		   out.discard.discard_granularity == 4096,
	   "4k native: physical and granularity default to logical");

	p = good(); p.logical_block_size = 1000; bad("a logical block size of 1000", p, 1u << 20);
	p = good(); p.logical_block_size = 256; bad("a logical block size of 256", p, 1u << 20);
	p = good(); p.logical_block_size = 1u << 16; p.physical_block_size = 1u << 16;
	bad("a logical block size above the page", p, 1u << 20);
	p = good(); p.physical_block_size = 256; bad("a physical block size below logical", p, 1u << 20);
	p = good(); p.physical_block_size = 3 * 1024; bad("a physical block size of 3k", p, 1u << 20);
	p = good(); p.size = 0; bad("a zero size", p, 1u << 20);
	p = good(); p.size = 1000; bad("a size not a multiple of the block", p, 1u << 20);
	p = good(); p.max_io_bytes = 2u << 20; bad("a max IO above the tag buffer", p, 1u << 20);
	p = good(); p.max_io_bytes = 512; bad("a max IO below a page", p, 1u << 20);
	p = good(); p.max_io_bytes = 4096 + 100; bad("a max IO off the block size", p, 1u << 20);
	p = good(); p.discard_granularity = 3000; bad("a discard granularity of 3000", p, 1u << 20);
	p = good(); p.max_discard_bytes = 1000; bad("a max discard off the block size", p, 1u << 20);
	p = good(); p.max_discard_bytes = 512; bad("a max discard below the granularity", p, 1u << 20);
	p = good(); p.max_write_zeroes_bytes = 1000; bad("a max write zeroes off the block size", p, 1u << 20);
	return tap_done();
}
