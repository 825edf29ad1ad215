// SPDX-License-Identifier: GPL-2.0-only
/* Re-open checks: the same export, still serving what the device promised. */
#include <string.h>

#include "control/export_check.h"
#include "tap.h"

int main(void)
{
	struct ibnbd_dev_info was = {
		.size = 1 << 30, .logical_block_size = 512, .physical_block_size = 4096,
		.max_discard_sectors = 2048, .max_write_zeroes_sectors = 2048,
		.flags = IBNBD_DEV_FUA | IBNBD_DEV_VOLATILE_CACHE, .export_id = 77,
	}, now;
	struct dev_promise p;
	char why[256];

	dev_promise_from_open(&p, &was, 131072, false);
	ok(p.writable && p.fua && p.max_io_bytes == 131072 && p.max_discard_sectors == 2048,
	   "the promise of a read-write map");
	now = was;
	ok(export_same(&now, &was) && export_keeps_promise(&p, &now, 131072, why, sizeof(why)),
	   "the same export serves the promise");
	ok(export_keeps_promise(&p, &now, 1 << 20, why, sizeof(why)),
	   "larger IO than promised is fine");
	ok(!export_keeps_promise(&p, &now, 65536, why, sizeof(why)) && strstr(why, "65536"),
	   "smaller IO fails: %s", why);
	now.flags &= ~IBNBD_DEV_FUA;
	ok(!export_keeps_promise(&p, &now, 131072, why, sizeof(why)) && strstr(why, "FUA"),
	   "no FUA fails: %s", why);
	now = was;
	now.max_discard_sectors = 0;
	ok(!export_keeps_promise(&p, &now, 131072, why, sizeof(why)) && strstr(why, "discard"),
	   "no discard fails: %s", why);
	now = was;
	now.max_write_zeroes_sectors = 1024;
	ok(!export_keeps_promise(&p, &now, 131072, why, sizeof(why)) && strstr(why, "zeroes"),
	   "fewer write-zeroes sectors fail: %s", why);
	now = was;
	now.flags |= IBNBD_DEV_READ_ONLY;
	ok(!export_keeps_promise(&p, &now, 131072, why, sizeof(why)) && strstr(why, "read-only"),
	   "read-only now fails a read-write device: %s", why);
	dev_promise_from_open(&p, &was, 131072, true);
	ok(export_keeps_promise(&p, &now, 131072, why, sizeof(why)),
	   "a read-only map promises no writes: a read-only export serves it");
	now = was;
	now.export_id = 78;
	ok(!export_same(&now, &was), "another backing identity is another export");
	export_describe_change(&now, &was, why, sizeof(why));
	ok(strstr(why, "identity") != NULL, "and it says so: %s", why);
	now = was;
	now.size -= 512;
	ok(!export_same(&now, &was), "a smaller export is another export");
	export_describe_change(&now, &was, why, sizeof(why));
	ok(strstr(why, "size") != NULL, "and it says so: %s", why);
	now.size = was.size + (1 << 20);
	ok(export_same(&now, &was), "one that grew is the same export (the device keeps its size)");
	now.logical_block_size = 4096;
	ok(!export_same(&now, &was), "one that grew with another block size is not");
	was.export_id = 0;
	now = was;
	now.export_id = 5;
	ok(export_same(&now, &was), "an unknown recorded identity matches any");
	return tap_done();
}
