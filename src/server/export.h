/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * An export: a named file or block device opened O_DIRECT at startup, with
 * the geometry clients see in OPEN_RSP. Exports are created before workers
 * start and destroyed after they stop, so workers read them without locks.
 */
#ifndef IBNBD_SERVER_EXPORT_H
#define IBNBD_SERVER_EXPORT_H

#include <stdbool.h>
#include <stdint.h>

#include "server_conf.h"

struct export {
	char name[IBNBD_EXPORT_NAME_MAX];
	char path[4096];
	unsigned int index; /* also the io_uring fixed-file slot */
	int fd;
	bool ro;
	bool shared; /* several client sessions may hold it read-write */
	bool is_bdev;
	uint64_t size; /* export_size(): a reload may change it */
	uint32_t logical_block_size;
	uint32_t physical_block_size;
	uint32_t max_discard_sectors;
	uint32_t max_write_zeroes_sectors;
	uint32_t flags; /* IBNBD_DEV_* */
	uint64_t export_id;
	char identity[512];     /* what export_id is made of, for the log */
	bool identity_unstable; /* only the device number: renumbering changes it */
	/* Its configuration: the allow list. A reload swaps in a new one
	 * (export_spec_of()); the old one stays until exit, for a worker
	 * that may still read it. */
	const struct export_spec *spec;
	/* Removed by a reload: no new opens, IO on its handles fails with
	 * -ENODEV; its fd is closed once every worker let it go (fd -1). */
	bool removed;
	bool from_cmdline; /* --export: a reload of the file leaves it alone */
};

static inline const struct export_spec *export_spec_of(const struct export *e)
{
	return __atomic_load_n(&e->spec, __ATOMIC_ACQUIRE);
}

static inline uint64_t export_size(const struct export *e)
{
	return __atomic_load_n(&e->size, __ATOMIC_RELAXED);
}

static inline bool export_removed(const struct export *e)
{
	return __atomic_load_n(&e->removed, __ATOMIC_ACQUIRE);
}

/* Opens spec->path; on error err says what to check. */
int export_create(const struct export_spec *spec, unsigned int index, struct export **out,
		  char *err, size_t errlen);
/* The backing's size now, in whole logical blocks (a file or a volume may
 * have grown or shrunk since the export was opened). */
int export_size_now(const struct export *e, uint64_t *size);
/* Tolerates NULL and half-built exports. */
void export_destroy(struct export *e);

#endif
