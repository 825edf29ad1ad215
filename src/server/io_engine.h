/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Backing-store IO through a worker's io_uring: one SQE per validated
 * request, on the export's fixed file, into the session's fixed buffer.
 */
#ifndef IBNBD_SERVER_IO_ENGINE_H
#define IBNBD_SERVER_IO_ENGINE_H

#include <liburing.h>
#include <stdbool.h>

#include "export.h"
#include "proto.h"

/*
 * Prepares the SQE for io against e. buf points into the registered buffer
 * buf_index (READ/WRITE only). fallback: the retry after -EOPNOTSUPP, which
 * turns WRITE_ZEROES' ZERO_RANGE into PUNCH_HOLE (tmpfs has no ZERO_RANGE).
 */
void io_engine_prep(struct io_uring_sqe *sqe, const struct export *e,
		    const struct ibnbd_io *io, void *buf, unsigned int buf_index, bool fallback);
/*
 * The status for the client from a CQE result: 0 or -errno; a short READ or
 * WRITE is -EIO. *retry is set when the operation should be retried with
 * fallback (WRITE_ZEROES that the file system cannot do as ZERO_RANGE).
 * DISCARD is a hint: -EOPNOTSUPP from the backing store becomes success.
 */
int io_engine_status(const struct ibnbd_io *io, int res, bool fallback, bool *retry);

#endif
