/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The io_uring of one thread's event loop: single issuer with deferred task
 * work where the kernel has them (6.1+), so that completions (ublk commands,
 * polls, IO) are run in the thread's own waits instead of interrupting it.
 * Only the creating thread may submit to it then. A polling loop
 * (busypoll.h) asks for ring_init_flags(..., IORING_SETUP_TASKRUN_FLAG): the
 * kernel then flags deferred completions, and the loop enters only for them.
 */
#ifndef IBNBD_RING_H
#define IBNBD_RING_H

#include <errno.h>
#include <liburing.h>

/* cq_entries: 0 for the default (twice entries); extra: setup flags that
 * need deferred task work (dropped with it before 6.1). 0 or -errno. */
static inline int ring_init_flags(struct io_uring *ring, unsigned int entries,
				  unsigned int cq_entries, unsigned int extra)
{
	unsigned int base = cq_entries ? IORING_SETUP_CQSIZE : 0;
	struct io_uring_params p = {
		.flags = base | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | extra,
		.cq_entries = cq_entries,
	};
	int ret = io_uring_queue_init_params(entries, ring, &p);

	if (ret == -EINVAL) { /* before 6.1 */
		p = (struct io_uring_params){ .flags = base, .cq_entries = cq_entries };
		ret = io_uring_queue_init_params(entries, ring, &p);
	}
	return ret;
}

static inline int ring_init(struct io_uring *ring, unsigned int entries, unsigned int cq_entries)
{
	return ring_init_flags(ring, entries, cq_entries, 0);
}

/* An SQE from ring; when the SQ is full, submits what is there to make
 * room (the batch goes out a little early). NULL only if that fails too. */
static inline struct io_uring_sqe *ring_get_sqe(struct io_uring *ring)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

	if (!sqe && io_uring_submit(ring) >= 0)
		sqe = io_uring_get_sqe(ring);
	return sqe;
}

#endif
