/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Is the export a device is opened on still the one it was mapped from, and
 * does it still serve what the device promised the kernel? Asked at every
 * re-open (a reconnect, a daemon taking devices over): a server that now
 * has another disk under the name, or offers less, must fail the device
 * with a reason instead of writing to the wrong disk or failing requests
 * the kernel was told it may send. Pure (unit-tested).
 */
#ifndef IBNBD_CLIENT_EXPORT_CHECK_H
#define IBNBD_CLIENT_EXPORT_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto.h"

/* What the block device told the kernel it serves (its ublk parameters). */
struct dev_promise {
	uint32_t max_io_bytes;           /* largest READ/WRITE */
	bool writable;
	bool fua;                        /* the kernel may send WRITE|FUA */
	uint32_t max_discard_sectors;    /* 0: no DISCARD */
	uint32_t max_write_zeroes_sectors; /* 0: no WRITE_ZEROES */
};

/* The promise a first open makes: device parameters from OPEN_RSP. */
void dev_promise_from_open(struct dev_promise *p, const struct ibnbd_dev_info *info,
			   uint32_t max_io_bytes, bool read_only);

/* Same block size and backing (an identity of 0 is unknown: a state file
 * written before identities were recorded), at least as large: an export
 * that grew is the same one, which the device serves at its old size until
 * it is mapped again. */
bool export_same(const struct ibnbd_dev_info *now, const struct ibnbd_dev_info *was);
void export_describe_change(const struct ibnbd_dev_info *now, const struct ibnbd_dev_info *was,
			    char *buf, size_t len);

/*
 * Whether a re-open (now, over a connection that carries conn_max_io bytes)
 * still serves the promise: IO size, FUA, discard and write-zeroes limits,
 * writability. false with the reason in why.
 */
bool export_keeps_promise(const struct dev_promise *p, const struct ibnbd_dev_info *now,
			  uint32_t conn_max_io, char *why, size_t len);

#endif
