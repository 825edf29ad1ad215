// SPDX-License-Identifier: GPL-2.0-only
#include "export.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "util.h"

/* Reads a number from /sys/dev/block/M:m/queue/NAME; 0 if absent. */
static uint64_t bdev_queue_attr(dev_t rdev, const char *name)
{
	char path[128];
	unsigned long long v = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/queue/%s", major(rdev),
		 minor(rdev), name);
	f = fopen(path, "re");
	if (!f)
		return 0;
	if (fscanf(f, "%llu", &v) != 1)
		v = 0;
	fclose(f);
	return v;
}

static uint32_t sectors_cap(uint64_t bytes)
{
	uint64_t s = bytes >> 9;

	/* Keep whole 4 KiB units so a limit never splits a physical block. */
	s = s > 0xfffff000u ? 0xfffff000u : s;
	return (uint32_t)(s & ~7ull);
}

static int bdev_geometry(struct export *e, const struct stat *st, char *err, size_t errlen)
{
	uint64_t size;
	int lbs = 0;
	unsigned int pbs = 0;

	if (ioctl(e->fd, BLKGETSIZE64, &size) || ioctl(e->fd, BLKSSZGET, &lbs) ||
	    ioctl(e->fd, BLKPBSZGET, &pbs)) {
		snprintf(err, errlen, "%s: cannot read the device geometry: %s", e->path,
			 strerror(errno));
		return -errno;
	}
	e->size = size;
	e->logical_block_size = (uint32_t)lbs;
	e->physical_block_size = pbs ? pbs : (uint32_t)lbs;
	/*
	 * fallocate on a block device turns PUNCH_HOLE into a write-zeroes
	 * without fallback and ZERO_RANGE into one with fallback, so both
	 * opcodes need the device's write-zeroes support.
	 */
	e->max_write_zeroes_sectors = sectors_cap(bdev_queue_attr(st->st_rdev,
								  "write_zeroes_max_bytes"));
	e->max_discard_sectors = e->max_write_zeroes_sectors;
	if (bdev_queue_attr(st->st_rdev, "rotational"))
		e->flags |= IBNBD_DEV_ROTATIONAL;
	return 0;
}

static uint64_t fnv1a(uint64_t h, const void *data, size_t len)
{
	const unsigned char *p = data;

	while (len--)
		h = (h ^ *p++) * 0x100000001b3ull;
	return h;
}

/*
 * What makes an export the same one after a server restart or reboot, so
 * that a client never carries on against another disk under the same name:
 * a file's filesystem (its fsid, which ext4, xfs and btrfs derive from the
 * filesystem UUID) and inode; a disk's WWID where the kernel knows one,
 * else its device number. Never 0, which clients read as "unknown".
 */
static uint64_t export_identity(int fd, const struct stat *st)
{
	uint64_t h = 0xcbf29ce484222325ull;
	char path[128], wwid[256];
	size_t n = 0;
	struct statfs sfs;
	FILE *f;

	if (S_ISBLK(st->st_mode)) {
		static const char *const where[] = { "wwid", "device/wwid" };

		for (size_t i = 0; i < sizeof(where) / sizeof(where[0]) && !n; i++) {
			snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/%s",
				 major(st->st_rdev), minor(st->st_rdev), where[i]);
			f = fopen(path, "re");
			if (!f)
				continue;
			n = fread(wwid, 1, sizeof(wwid), f);
			fclose(f);
		}
		h = n ? fnv1a(h, wwid, n) : fnv1a(h, &st->st_rdev, sizeof(st->st_rdev));
	} else {
		if (fstatfs(fd, &sfs) == 0)
			h = fnv1a(h, &sfs.f_fsid, sizeof(sfs.f_fsid));
		else
			h = fnv1a(h, &st->st_dev, sizeof(st->st_dev));
		h = fnv1a(h, &st->st_ino, sizeof(st->st_ino));
	}
	return h ? h : 1;
}

int export_create(const struct export_spec *spec, unsigned int index, struct export **out,
		  char *err, size_t errlen)
{
	struct export *e = calloc(1, sizeof(*e));
	struct stat st;
	int ret;

	if (!e) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	e->fd = -1;
	e->index = index;
	e->ro = spec->ro;
	e->shared = spec->shared;
	snprintf(e->name, sizeof(e->name), "%s", spec->name);
	snprintf(e->path, sizeof(e->path), "%s", spec->path);
	e->fd = open(e->path, (e->ro ? O_RDONLY : O_RDWR) | O_DIRECT | O_CLOEXEC);
	if (e->fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "export '%s': cannot open %s%s: %s", e->name, e->path,
			 e->ro ? " read-only" : " read-write with O_DIRECT", strerror(-ret));
		goto out_destroy;
	}
	if (fstat(e->fd, &st)) {
		ret = -errno;
		snprintf(err, errlen, "export '%s': %s: %s", e->name, e->path, strerror(-ret));
		goto out_destroy;
	}
	if (S_ISBLK(st.st_mode)) {
		e->is_bdev = true;
		ret = bdev_geometry(e, &st, err, errlen);
		if (ret)
			goto out_destroy;
	} else if (S_ISREG(st.st_mode)) {
		e->logical_block_size = 512;
		e->physical_block_size = st.st_blksize >= 512 && st.st_blksize <= 65536 &&
						 is_pow2((uint64_t)st.st_blksize)
					 ? (uint32_t)st.st_blksize : 4096;
		e->size = (uint64_t)st.st_size & ~511ull;
		e->max_discard_sectors = sectors_cap(1ull << 30);
		e->max_write_zeroes_sectors = sectors_cap(1ull << 30);
	} else {
		ret = -EINVAL;
		snprintf(err, errlen, "export '%s': %s is neither a regular file nor a block device",
			 e->name, e->path);
		goto out_destroy;
	}
	if (e->size == 0) {
		ret = -EINVAL;
		snprintf(err, errlen, "export '%s': %s is smaller than one block", e->name, e->path);
		goto out_destroy;
	}
	/* A write is acknowledged after O_DIRECT completion, which may sit in
	 * a device or filesystem cache: clients must flush, and may ask FUA. */
	e->flags |= IBNBD_DEV_VOLATILE_CACHE | IBNBD_DEV_FUA;
	if (e->ro)
		e->flags |= IBNBD_DEV_READ_ONLY;
	e->export_id = export_identity(e->fd, &st);
	*out = e;
	return 0;
out_destroy:
	export_destroy(e);
	return ret;
}

void export_destroy(struct export *e)
{
	if (!e)
		return;
	if (e->fd >= 0)
		close(e->fd);
	free(e);
}
