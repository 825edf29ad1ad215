/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Polling mode of an event loop (--poll, --poll-idle-us): instead of
 * sleeping in the kernel until a completion channel or the io_uring wakes
 * it, a thread looks at its CQs and its io_uring's completion ring in a
 * loop, so that no completion costs a wakeup, a channel read or a CQ
 * re-arm. With an idle time, a thread that found nothing for that long
 * arms its completion channels and sleeps until the next event, then
 * spins again (adaptive polling); without one it never sleeps.
 *
 * A loop asks busypoll_spin() each round whether to spin (look without
 * waiting) or sleep; it calls busypoll_work() whenever a round found
 * something to do.
 */
#ifndef IBNBD_BUSYPOLL_H
#define IBNBD_BUSYPOLL_H

#include <liburing.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clock.h"

/* The largest --poll-idle-us: a second. Longer is plain polling. */
#define BUSYPOLL_MAX_IDLE_US 1000000u

struct busypoll_config {
	bool on;
	uint32_t idle_us; /* 0: never sleep */
};

/*
 * A configuration line: key "poll" (yes|no) or "poll_idle_us" (0 ..
 * BUSYPOLL_MAX_IDLE_US, used when polling). 0, 1 when key is neither, or
 * -EINVAL with the sentence in err.
 */
int busypoll_config_set(struct busypoll_config *c, const char *key, const char *val, char *err,
			size_t errlen);

/* "interrupts", "polling" or "polling, sleeping after N us idle", in buf. */
const char *busypoll_describe(const struct busypoll_config *c, char *buf, size_t len);

struct busypoll {
	struct busypoll_config cfg;
	uint64_t last_work_ns;
	unsigned int empty_rounds;
};

/* Rounds with nothing to do between two looks at the clock: a clock read
 * may be a system call under some hypervisors. */
#define BUSYPOLL_CLOCK_EVERY 64

static inline void busypoll_init(struct busypoll *bp, const struct busypoll_config *cfg)
{
	bp->cfg = *cfg;
	bp->last_work_ns = clock_now_ns();
	bp->empty_rounds = 0;
}

static inline void busypoll_work(struct busypoll *bp)
{
	bp->empty_rounds = 0;
	if (bp->cfg.idle_us)
		bp->last_work_ns = clock_now_ns();
}

/* Whether this round looks without waiting. */
static inline bool busypoll_spin(struct busypoll *bp)
{
	if (!bp->cfg.on)
		return false;
	if (!bp->cfg.idle_us || ++bp->empty_rounds % BUSYPOLL_CLOCK_EVERY)
		return true;
	return clock_now_ns() - bp->last_work_ns < (uint64_t)bp->cfg.idle_us * 1000;
}

/*
 * One look at ring without waiting: submits what is queued and runs the
 * completions the kernel deferred to this thread (IORING_SETUP_DEFER_TASKRUN
 * holds them until the thread enters the kernel; ring_init()'s
 * IORING_SETUP_TASKRUN_FLAG says when there are some). No system call when
 * there is neither. Returns io_uring_submit's result, or 0.
 */
static inline int busypoll_ring(struct io_uring *ring)
{
	bool taskrun = IO_URING_READ_ONCE(*ring->sq.kflags) & IORING_SQ_TASKRUN;

	if (io_uring_sq_ready(ring) || taskrun)
		return io_uring_submit_and_get_events(ring);
	return 0;
}

#endif
