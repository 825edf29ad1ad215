/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The daemon's state file (/run/ibnbd/devices.json): what is mapped, so
 * that a daemon taking over after this one died (or was upgraded) finds
 * its devices and checks each still maps the export it was mapped from.
 * A JSON array, one object per device; written whole to a temporary file,
 * then renamed over the old one, so a reader never sees half of it.
 */
#ifndef IBNBD_CLIENT_STATE_H
#define IBNBD_CLIENT_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ibnbd/proto.h"

struct state_device {
	int id;                 /* N of /dev/ublkbN */
	char name[128];
	char server[256];
	uint16_t port;
	char export_name[IBNBD_EXPORT_NAME_MAX];
	bool read_only;
	int loss_timeout_s;     /* the map's: 0 the daemon's, -1 forever */
	uint64_t size;
	uint32_t logical_block_size;
	uint64_t export_id;     /* 0: not recorded */
	bool started;           /* false: its map had not finished (START_DEV) */
};

/* 0 or -errno (the file is left as it was). */
int state_write(const char *path, const struct state_device *devs, size_t n);
/*
 * Reads the file: 0 with *devs (free() it) and *n, also for a file that
 * does not exist (none); -EINVAL if it is not a device list. An entry that
 * is malformed is skipped and logged.
 */
int state_read(const char *path, struct state_device **devs, size_t *n);

#endif
