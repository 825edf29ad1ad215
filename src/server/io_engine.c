// SPDX-License-Identifier: GPL-2.0-only
#include "io_engine.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>

void io_engine_prep(struct io_uring_sqe *sqe, const struct export *e,
		    const struct ibnbd_io *io, void *buf, unsigned int buf_index, bool fallback)
{
	int fd = (int)e->index; /* fixed file slot */
	int mode;

	switch (io->opcode) {
	case IBNBD_OP_READ:
		io_uring_prep_read_fixed(sqe, fd, buf, io->length, io->offset, (int)buf_index);
		break;
	case IBNBD_OP_WRITE:
		io_uring_prep_write_fixed(sqe, fd, buf, io->length, io->offset, (int)buf_index);
		if (io->flags & IBNBD_IOF_FUA)
			sqe->rw_flags = RWF_DSYNC;
		break;
	case IBNBD_OP_FLUSH:
		io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
		break;
	case IBNBD_OP_DISCARD:
		io_uring_prep_fallocate(sqe, fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					(off_t)io->offset, (off_t)io->length);
		break;
	case IBNBD_OP_WRITE_ZEROES:
	default: /* validated before: nothing else gets here */
		mode = (io->flags & IBNBD_IOF_NOUNMAP) && !fallback ? FALLOC_FL_ZERO_RANGE
								    : FALLOC_FL_PUNCH_HOLE;
		io_uring_prep_fallocate(sqe, fd, mode | FALLOC_FL_KEEP_SIZE, (off_t)io->offset,
					(off_t)io->length);
		break;
	}
	sqe->flags |= IOSQE_FIXED_FILE;
}

int io_engine_status(const struct ibnbd_io *io, int res, bool fallback, bool *retry)
{
	*retry = false;
	switch (io->opcode) {
	case IBNBD_OP_READ:
	case IBNBD_OP_WRITE:
		if (res < 0)
			return res;
		return (uint32_t)res == io->length ? 0 : -EIO;
	case IBNBD_OP_DISCARD:
		return res == -EOPNOTSUPP ? 0 : (res < 0 ? res : 0);
	case IBNBD_OP_WRITE_ZEROES:
		if (res == -EOPNOTSUPP && (io->flags & IBNBD_IOF_NOUNMAP) && !fallback) {
			*retry = true;
			return 0;
		}
		return res < 0 ? res : 0;
	default:
		return res < 0 ? res : 0;
	}
}
