// SPDX-License-Identifier: GPL-2.0-only
/* The engine's calls from other threads: every status comes back as the
 * function returned it, and a call answered later is answered once. No
 * ublk device is needed: an engine with no queue is a thread and a ring. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "tap.h"
#include "ublk/engine.h"

static void no_io(struct ublk_engine *e, void *qpriv, const struct ublk_io *io)
{
	(void)e, (void)qpriv, (void)io;
}

static void no_cqe(struct ublk_engine *e, const struct io_uring_cqe *cqe)
{
	(void)e, (void)cqe;
}

static void no_gone(struct ublk_engine *e, void *qpriv)
{
	(void)e, (void)qpriv;
}

static const struct ublk_tgt_ops ops = {
	.name = "test", .queue_io = no_io, .target_cqe = no_cqe, .queue_gone = no_gone,
};

struct value_call {
	struct ublk_engine_call call;
	int value;
};

static int return_value(struct ublk_engine *e, struct ublk_engine_call *c)
{
	(void)e;
	return ((struct value_call *)c)->value;
}

static struct ublk_engine_call *_Atomic parked;

static int park(struct ublk_engine *e, struct ublk_engine_call *c)
{
	(void)e;
	atomic_store(&parked, c);
	return UBLK_ENGINE_LATER;
}

static int answer_parked(struct ublk_engine *e, struct ublk_engine_call *c)
{
	(void)e, (void)c;
	ublk_engine_call_done(atomic_exchange(&parked, NULL), 7);
	return 0;
}

static void *call_park(void *arg)
{
	struct ublk_engine_call c = { .fn = park };

	return (void *)(long)ublk_engine_call(arg, &c);
}

int main(void)
{
	static const int statuses[] = { 0, 1, 2, 64, -EIO, -ENOTCONN };
	const struct ublk_engine_config cfg = { .ops = &ops, .thread_name = "test-engine",
						 .sq_entries = 8 };
	struct ublk_engine *e;
	pthread_t t;
	void *res;
	size_t i;
	int ret;

	/* A call that is never answered must fail the test, not hang it. */
	alarm(20);
	ret = ublk_engine_create(&cfg, &e);
	ok(ret == 0, "an engine without queues starts (%s)", strerror(-ret));
	if (ret)
		return tap_done();
	for (i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
		struct value_call c = { .call.fn = return_value, .value = statuses[i] };

		ret = ublk_engine_call(e, &c.call);
		ok(ret == statuses[i], "a call returning %d is answered with it (got %d)",
		   statuses[i], ret);
	}
	pthread_create(&t, NULL, call_park, e);
	while (!atomic_load(&parked))
		usleep(1000);
	ok(ublk_engine_call(e, &(struct ublk_engine_call){ .fn = answer_parked }) == 0,
	   "a second call answers the one parked for later");
	pthread_join(t, &res);
	ok((long)res == 7, "the parked call gets the later answer (%ld)", (long)res);
	ublk_engine_destroy(e);
	return tap_done();
}
