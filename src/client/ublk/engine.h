/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The ublk queue engine: one thread with one io_uring, serving any number
 * of ublk queues (of any devices) for a target, together with whatever the
 * target itself puts on that ring. It is the part of the client another
 * ublk target could reuse, the way the kernel's kublk runs its targets
 * through struct ublk_tgt_ops: the daemon's workers are engines serving
 * requests over RDMA (dataplane/worker.c), and tests/tools/ublk_ram.c is an
 * engine serving them from memory.
 *
 * The thread loops: wait for at least one CQE; hand every CQE to its owner
 * (a queue's FETCH or COMMIT_AND_FETCH: queue.c, then ops->queue_io for a
 * request; a call from another thread; else the target's ops->target_cqe);
 * then ops->round_end, where the target posts what the round produced (one
 * doorbell per round), and submit. Nothing waits anywhere else.
 *
 * Polling (cfg.poll, busypoll.h), an engine that serves a queue does not
 * wait: each round it looks at the ring without entering the kernel unless
 * there is work there, and asks ops->poll to look at the target's own
 * completion queues. Before it sleeps (adaptive polling, or no queue to
 * serve) ops->arm arms the target's notifications.
 *
 * user_data on the ring: the top 8 bits name the kind of entry. The engine
 * owns UBLK_UD_KIND_QUEUE (queue.h encodes the rest) and UBLK_UD_KIND_CALL;
 * a target gives its own entries kinds from UBLK_UD_KIND_TARGET up and
 * encodes the low 56 bits as it likes.
 *
 * Other threads reach the engine only through ublk_engine_call(): a
 * function run on the engine thread (adding or stopping a queue must be:
 * ublk takes every command of a queue from the thread that fetched it).
 */
#ifndef IBNBD_UBLK_ENGINE_H
#define IBNBD_UBLK_ENGINE_H

#include <limits.h>
#include <liburing.h>
#include <semaphore.h>
#include <stdint.h>

#include "busypoll.h"
#include "ublk/queue.h"

/* Kinds (queue.h: the top byte of user_data; ublk_ud_kind()). */
#define UBLK_UD_KIND_QUEUE 1u
#define UBLK_UD_KIND_CALL 2u
#define UBLK_UD_KIND_TARGET 16u /* the first kind a target may use */

struct ublk_engine;

struct ublk_tgt_ops {
	const char *name;
	/* A request on a queue (qpriv: what the target gave ublk_engine_add_
	 * queue()). Serve it and ublk_engine_commit() its tag, now or later. */
	void (*queue_io)(struct ublk_engine *e, void *qpriv, const struct ublk_io *io);
	/* A CQE of one of the target's own entries (kind >= UBLK_UD_KIND_TARGET). */
	void (*target_cqe)(struct ublk_engine *e, const struct io_uring_cqe *cqe);
	/* After each round of CQEs, before the engine submits and waits. */
	void (*round_end)(struct ublk_engine *e);
	/* A queue ublk_engine_stop_queue() stopped has retired its last tag;
	 * the engine forgets it when this returns. */
	void (*queue_gone)(struct ublk_engine *e, void *qpriv);
	/* Polling only: take what the target's completion queues hold,
	 * without waiting; returns how much that was. */
	unsigned int (*poll)(struct ublk_engine *e);
	/* Polling only, before the engine sleeps: arm the notifications
	 * ops->poll goes without, then look once more; returns what that
	 * look took (then the engine does not sleep). */
	unsigned int (*arm)(struct ublk_engine *e);
};

struct ublk_engine_config {
	const struct ublk_tgt_ops *ops;
	void *target;          /* ublk_engine_target() */
	const char *thread_name;
	unsigned int sq_entries;
	unsigned int cq_entries; /* 0: twice sq_entries */
	struct busypoll_config poll;
};

/* Starts the thread; returns once its ring is set up. */
int ublk_engine_create(const struct ublk_engine_config *cfg, struct ublk_engine **out);
/* Stops and joins the thread. Every queue must be gone. Tolerates NULL. */
void ublk_engine_destroy(struct ublk_engine *e);

void *ublk_engine_target(const struct ublk_engine *e);
/* For the target's own SQEs (engine thread only). */
struct io_uring *ublk_engine_ring(struct ublk_engine *e);

/*
 * A function to run on the engine thread. It returns a status, which
 * ublk_engine_call() returns: 0, a count, or -errno. Or UBLK_ENGINE_LATER
 * to answer later with ublk_engine_call_done() (a call that waits for the
 * network). UBLK_ENGINE_LATER is a value no status takes: a call returning
 * a count of 1 must not be taken for one answered later.
 */
#define UBLK_ENGINE_LATER INT_MIN
struct ublk_engine_call {
	int (*fn)(struct ublk_engine *e, struct ublk_engine_call *c);
	/* Private to the engine. */
	struct ublk_engine_call *next;
	int status;
	sem_t done;
};
/* Runs c->fn on the engine thread and waits for its status. Any thread but
 * the engine's. */
int ublk_engine_call(struct ublk_engine *e, struct ublk_engine_call *c);
/* Engine thread: finishes a call whose fn returned UBLK_ENGINE_LATER. */
void ublk_engine_call_done(struct ublk_engine_call *c, int status);

/*
 * Engine thread (from a call): creates queue cfg->q_id of dev (cfg's ud
 * fields are the engine's) and fetches every tag; qpriv comes back in the
 * ops. A FETCH the kernel refuses at once fails the add (-EIO), but a queue
 * that was created (*out set) is the engine's until ops->queue_gone, as is
 * any stopped queue; its owner destroys it after that.
 */
int ublk_engine_add_queue(struct ublk_engine *e, struct ublk_dev *dev,
			  const struct ublk_queue_config *cfg, void *qpriv, struct ublk_queue **out);
/* Engine thread: the device is being stopped; once the queue has retired
 * every tag (STOP_DEV aborts the FETCHes), ops->queue_gone. Idempotent. */
void ublk_engine_stop_queue(struct ublk_engine *e, struct ublk_queue *q);
/* Engine thread: forgets q without waiting for it to go idle, and without
 * ops->queue_gone: its commands stay with the kernel until the engine's
 * ring exits (a daemon leaving its devices to the next one: with user
 * recovery the kernel re-issues what was not committed). The owner may
 * destroy q once the engine is destroyed. */
void ublk_engine_abandon_queue(struct ublk_engine *e, struct ublk_queue *q);
/* Engine thread: ublk_queue_commit() on the engine's ring. */
int ublk_engine_commit(struct ublk_engine *e, struct ublk_queue *q, uint16_t tag,
		       int32_t result);

#endif
