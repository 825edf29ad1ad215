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
#include <blkid/blkid.h>

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
	int lbs = 0;
	unsigned int pbs = 0;

	if (ioctl(e->fd, BLKSSZGET, &lbs) || ioctl(e->fd, BLKPBSZGET, &pbs)) {
		snprintf(err, errlen, "%s: cannot read the device geometry: %s", e->path,
			 strerror(errno));
		return -errno;
	}
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

/* A sysfs attribute of block device rdev ("dm/uuid"), trimmed; 0 or -errno. */
static int sysfs_attr(dev_t rdev, const char *name, char *buf, size_t len)
{
	char path[160];
	size_t n;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/%s", major(rdev), minor(rdev), name);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	n = fread(buf, 1, len - 1, f);
	fclose(f);
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		n--;
	buf[n] = '\0';
	return n ? 0 : -ENODATA;
}

/* The UUID blkid finds on a block device: its filesystem's, else its
 * partition table's. 0 or -errno. */
static int blkid_uuid(const char *devpath, char *buf, size_t len)
{
	blkid_probe pr = blkid_new_probe_from_filename(devpath);
	const char *v = NULL;
	int ret = -ENODATA;

	if (!pr)
		return -errno ? -errno : -EIO;
	blkid_probe_enable_superblocks(pr, 1);
	blkid_probe_set_superblocks_flags(pr, BLKID_SUBLKS_UUID);
	blkid_probe_enable_partitions(pr, 1);
	if (blkid_do_safeprobe(pr) == 0 &&
	    (!blkid_probe_lookup_value(pr, "UUID", &v, NULL) ||
	     !blkid_probe_lookup_value(pr, "PTUUID", &v, NULL)) && v && *v) {
		snprintf(buf, len, "%s", v);
		ret = 0;
	}
	blkid_free_probe(pr);
	return ret;
}

/* The identity of a block device, into what: the stable name it has in
 * the layer that made it (device-mapper and md UUIDs, the WWID, the
 * serial), a partition's disk and place, a loop device's backing file, the
 * UUID of what is on it; its device number only as a last resort, which
 * renumbering (dm/LVM/md minors, loop devices) changes. */
static int bdev_identity(dev_t rdev, int depth, char *what, size_t len);

/* A file's: its filesystem's UUID (FS_IOC_GETFSUUID; blkid on the
 * filesystem's device; its fsid last, which xfs derives from the device
 * number) and its inode. */
static int file_identity(int fd, const struct stat *st, char *what, size_t len)
{
	struct {
		uint8_t len;
		uint8_t uuid[16];
	} fsuuid = { .len = 16 };
	char buf[256], dev[300];
	struct statfs sfs;
	int n;

	/* An all-zero UUID is none (some filesystems have no UUID). */
#ifndef FS_IOC_GETFSUUID
#define FS_IOC_GETFSUUID _IOR(0x15, 0, typeof(fsuuid)) /* Linux 6.5 */
#endif
	static const uint8_t zero[16];

	if (ioctl(fd, FS_IOC_GETFSUUID, &fsuuid) == 0 && fsuuid.len > 0 && fsuuid.len <= 16 &&
	    memcmp(fsuuid.uuid, zero, fsuuid.len)) {
		n = snprintf(what, len, "fs-uuid:");
		for (unsigned int i = 0; i < fsuuid.len && (size_t)n + 2 < len; i++)
			n += snprintf(what + n, len - (size_t)n, "%02x", fsuuid.uuid[i]);
	} else if (!sysfs_attr(st->st_dev, "uevent", buf, sizeof(buf)) && strstr(buf, "DEVNAME=") &&
		   snprintf(dev, sizeof(dev), "/dev/%.*s", (int)strcspn(strstr(buf, "DEVNAME=") + 8, "\n"),
			    strstr(buf, "DEVNAME=") + 8) > 0 &&
		   !blkid_uuid(dev, buf, sizeof(buf))) {
		n = snprintf(what, len, "fs-uuid:%.200s", buf);
	} else if (fstatfs(fd, &sfs) == 0) {
		n = snprintf(what, len, "fsid:%08x%08x", (unsigned int)sfs.f_fsid.__val[0],
			     (unsigned int)sfs.f_fsid.__val[1]);
	} else {
		n = snprintf(what, len, "dev:%u:%u", major(st->st_dev), minor(st->st_dev));
	}
	if ((size_t)n < len)
		snprintf(what + n, len - (size_t)n, ",inode:%llu", (unsigned long long)st->st_ino);
	return 0;
}

static int bdev_identity(dev_t rdev, int depth, char *what, size_t len)
{
	static const char *const named[] = { "dm/uuid", "md/uuid", "wwid", "device/wwid",
					     "serial", "device/serial" };
	char buf[512], dev[64];
	struct stat st;
	unsigned int pmaj, pmin;
	int fd, ret;

	for (size_t i = 0; i < sizeof(named) / sizeof(named[0]); i++) {
		if (!sysfs_attr(rdev, named[i], buf, sizeof(buf))) {
			snprintf(what, len, "%s:%.400s", named[i], buf);
			return 0;
		}
	}
	/* A partition: its disk's identity and where it starts. */
	if (depth < 4 && !sysfs_attr(rdev, "partition", buf, sizeof(buf))) {
		char part[32], start[32], parent[64];

		snprintf(part, sizeof(part), "%.20s", buf);
		if (!sysfs_attr(rdev, "start", start, sizeof(start)) &&
		    !sysfs_attr(rdev, "../dev", parent, sizeof(parent)) &&
		    sscanf(parent, "%u:%u", &pmaj, &pmin) == 2) {
			char disk[400];

			bdev_identity(makedev(pmaj, pmin), depth + 1, disk, sizeof(disk));
			snprintf(what, len, "%s,part:%s@%s", disk, part, start);
			return 0;
		}
	}
	/* A loop device: the file behind it, at its offset. */
	if (depth < 4 && !sysfs_attr(rdev, "loop/backing_file", buf, sizeof(buf))) {
		char offset[32] = "0", file[400];

		sysfs_attr(rdev, "loop/offset", offset, sizeof(offset));
		fd = open(buf, O_RDONLY | O_CLOEXEC);
		if (fd >= 0 && !fstat(fd, &st)) {
			file_identity(fd, &st, file, sizeof(file));
			close(fd);
			snprintf(what, len, "loop:%s@%s", file, offset);
			return 0;
		}
		if (fd >= 0)
			close(fd);
	}
	snprintf(dev, sizeof(dev), "/dev/block/%u:%u", major(rdev), minor(rdev));
	ret = blkid_uuid(dev, buf, sizeof(buf));
	if (!ret) {
		snprintf(what, len, "content-uuid:%.400s", buf);
		return 0;
	}
	snprintf(what, len, "dev:%u:%u", major(rdev), minor(rdev));
	return 1; /* unstable */
}

/*
 * What makes an export the same one after a server restart or reboot, so
 * that a client never carries on against another disk under the same name
 * (bdev_identity(), file_identity()), hashed. Never 0, which clients read
 * as "unknown". *unstable: it is the device number, which renumbering
 * changes (the operator is told).
 */
static uint64_t export_identity(int fd, const struct stat *st, char *what, size_t len,
				bool *unstable)
{
	uint64_t h;

	*unstable = false;
	if (S_ISBLK(st->st_mode))
		*unstable = bdev_identity(st->st_rdev, 0, what, len) > 0;
	else
		file_identity(fd, st, what, len);
	h = fnv1a(0xcbf29ce484222325ull, what, strlen(what));
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
	e->spec = spec;
	snprintf(e->name, sizeof(e->name), "%s", spec->name);
	snprintf(e->path, sizeof(e->path), "%s", spec->path);
	/* O_EXCL: a block device that is mounted, or held by another program
	 * (or another export), is not exported by mistake; files ignore it. */
	e->fd = open(e->path, (e->ro ? O_RDONLY : O_RDWR) | O_DIRECT | O_CLOEXEC |
				      (e->shared ? 0 : O_EXCL));
	if (e->fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "export '%s': cannot open %s%s: %s%s", e->name, e->path,
			 e->ro ? " read-only" : " read-write with O_DIRECT", strerror(-ret),
			 ret == -EBUSY ? " (it is in use: mounted, or held by another program or export; mark the export shared to open it all the same)"
				       : "");
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
		e->max_discard_sectors = sectors_cap(1ull << 30);
		e->max_write_zeroes_sectors = sectors_cap(1ull << 30);
	} else {
		ret = -EINVAL;
		snprintf(err, errlen, "export '%s': %s is neither a regular file nor a block device",
			 e->name, e->path);
		goto out_destroy;
	}
	/* The same measure a reload takes (reload.c). */
	ret = export_size_now(e, &e->size);
	if (ret) {
		snprintf(err, errlen, "export '%s': cannot read the size of %s: %s", e->name,
			 e->path, strerror(-ret));
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
	e->export_id = export_identity(e->fd, &st, e->identity, sizeof(e->identity),
				       &e->identity_unstable);
	*out = e;
	return 0;
out_destroy:
	export_destroy(e);
	return ret;
}

int export_size_now(const struct export *e, uint64_t *size)
{
	struct stat st;

	if (e->is_bdev) {
		if (ioctl(e->fd, BLKGETSIZE64, size))
			return -errno;
	} else {
		if (fstat(e->fd, &st))
			return -errno;
		*size = (uint64_t)st.st_size;
	}
	*size &= ~((uint64_t)e->logical_block_size - 1);
	return 0;
}

void export_destroy(struct export *e)
{
	if (!e)
		return;
	if (e->fd >= 0)
		close(e->fd);
	free(e);
}
