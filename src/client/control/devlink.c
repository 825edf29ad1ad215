// SPDX-License-Identifier: GPL-2.0-only
#include "control/devlink.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

static char names_dir[4096];

void devlink_init(const char *rundir)
{
	snprintf(names_dir, sizeof(names_dir), "%s/names", rundir);
}

static void record_path(int id, char *buf, size_t len)
{
	snprintf(buf, len, "%s/ublkb%d", names_dir, id);
}

void devlink_record(const char *name, int id)
{
	char path[4200], tmp[4300];
	FILE *f;

	if (!names_dir[0])
		return;
	record_path(id, path, sizeof(path));
	if (!devlink_wanted(name)) {
		unlink(path); /* a stale one, of an earlier device of that number */
		return;
	}
	if (mkdir(names_dir, 0755) < 0 && errno != EEXIST) {
		log_warn("cannot create %s: %s", names_dir, strerror(errno));
		return;
	}
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "we");
	if (f) {
		bool written = fprintf(f, "IBNBD_NAME=%s\n", name) > 0;

		if (fclose(f) != 0 || !written)
			f = NULL;
	}
	if (!f || rename(tmp, path) < 0) {
		log_warn("cannot record the name of /dev/ublkb%d in %s: %s", id, path,
			 strerror(errno));
		unlink(tmp);
	}
}

static const char *devlink_dir(void)
{
	const char *env = getenv("IBNBD_DEVLINK_DIR");

	return env && *env ? env : "/dev/ibnbd";
}

int devlink_wanted(const char *name)
{
	return *name && !(strncmp(name, "ublkb", 5) == 0 && name[5] &&
			  strspn(name + 5, "0123456789") == strlen(name + 5));
}

static void target_of(int id, char *buf, size_t len)
{
	/* Relative, as udev's links are: valid from inside a chroot too. */
	if (!strcmp(devlink_dir(), "/dev/ibnbd"))
		snprintf(buf, len, "../ublkb%d", id);
	else
		snprintf(buf, len, "/dev/ublkb%d", id);
}

void devlink_set(const char *name, int id)
{
	char link[4200], tmp[4300], target[64];

	if (!devlink_wanted(name))
		return;
	if (mkdir(devlink_dir(), 0755) < 0 && errno != EEXIST) {
		log_warn("cannot create %s for /dev/ibnbd/%s: %s", devlink_dir(), name,
			 strerror(errno));
		return;
	}
	target_of(id, target, sizeof(target));
	snprintf(link, sizeof(link), "%s/%s", devlink_dir(), name);
	snprintf(tmp, sizeof(tmp), "%s/.%s.%d", devlink_dir(), name, (int)getpid());
	unlink(tmp);
	if (symlink(target, tmp) < 0 || rename(tmp, link) < 0) {
		log_warn("cannot link %s to /dev/ublkb%d: %s", link, id, strerror(errno));
		unlink(tmp);
	}
}

void devlink_remove(const char *name, int id)
{
	char link[4200], target[64], now[64];
	ssize_t n;

	if (!devlink_wanted(name))
		return;
	if (names_dir[0]) {
		char path[4200];

		record_path(id, path, sizeof(path));
		unlink(path);
	}
	snprintf(link, sizeof(link), "%s/%s", devlink_dir(), name);
	target_of(id, target, sizeof(target));
	n = readlink(link, now, sizeof(now) - 1);
	if (n < 0)
		return;
	now[n] = '\0';
	if (!strcmp(now, target) && unlink(link) < 0)
		log_warn("cannot remove %s: %s", link, strerror(errno));
}
