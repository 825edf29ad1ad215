// SPDX-License-Identifier: GPL-2.0-only
#include "control/export_check.h"

#include <stdio.h>

void dev_promise_from_open(struct dev_promise *p, const struct ibnbd_dev_info *info,
			   uint32_t max_io_bytes, bool read_only)
{
	bool ro = read_only || (info->flags & IBNBD_DEV_READ_ONLY);

	*p = (struct dev_promise){
		.max_io_bytes = max_io_bytes,
		.writable = !ro,
		.fua = !ro && (info->flags & IBNBD_DEV_FUA),
		.max_discard_sectors = ro ? 0 : info->max_discard_sectors,
		.max_write_zeroes_sectors = ro ? 0 : info->max_write_zeroes_sectors,
	};
}

bool export_same(const struct ibnbd_dev_info *now, const struct ibnbd_dev_info *was)
{
	return now->size >= was->size && now->logical_block_size == was->logical_block_size &&
	       (!was->export_id || now->export_id == was->export_id);
}

void export_describe_change(const struct ibnbd_dev_info *now, const struct ibnbd_dev_info *was,
			    char *buf, size_t len)
{
	if (now->size < was->size || now->logical_block_size != was->logical_block_size)
		snprintf(buf, len, "size %llu with %u-byte blocks, was %llu with %u-byte blocks",
			 (unsigned long long)now->size, now->logical_block_size,
			 (unsigned long long)was->size, was->logical_block_size);
	else
		snprintf(buf, len, "backing identity %016llx, was %016llx",
			 (unsigned long long)now->export_id, (unsigned long long)was->export_id);
}

bool export_keeps_promise(const struct dev_promise *p, const struct ibnbd_dev_info *now,
			  uint32_t conn_max_io, char *why, size_t len)
{
	if (conn_max_io < p->max_io_bytes) {
		snprintf(why, len, "the server now carries IO of at most %u bytes, the device was set up for %u",
			 conn_max_io, p->max_io_bytes);
		return false;
	}
	if (p->writable && (now->flags & IBNBD_DEV_READ_ONLY)) {
		snprintf(why, len, "the export is read-only now, the device was mapped read-write");
		return false;
	}
	if (p->fua && !(now->flags & IBNBD_DEV_FUA)) {
		snprintf(why, len, "the server no longer honours FUA, which the device offered");
		return false;
	}
	if (now->max_discard_sectors < p->max_discard_sectors) {
		snprintf(why, len, "the server now discards at most %u sectors at once, the device offered %u",
			 now->max_discard_sectors, p->max_discard_sectors);
		return false;
	}
	if (now->max_write_zeroes_sectors < p->max_write_zeroes_sectors) {
		snprintf(why, len, "the server now zeroes at most %u sectors at once, the device offered %u",
			 now->max_write_zeroes_sectors, p->max_write_zeroes_sectors);
		return false;
	}
	return true;
}
