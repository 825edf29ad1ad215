// SPDX-License-Identifier: GPL-2.0-only
/*
 * The ublk queue engine (engine.h): a thread, its io_uring, its queues and
 * a mailbox of calls from other threads.
 */
#include "ublk/engine.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "log.h"
#include "ring.h"
#include "ublk/dev.h"

struct engine_queue {
	struct ublk_queue *q; /* NULL: a free entry */
	void *qpriv;
	bool stopping;
};

struct ublk_engine {
	struct ublk_engine_config cfg;
	char name[16];           /* the thread's, for logs */
	pthread_t thread;
	bool started;
	sem_t ready;
	int setup_status;
	struct io_uring ring;
	bool ring_ok;
	bool exiting;
	struct busypoll bp;

	/* The mailbox: calls under the lock, an eventfd the ring reads. */
	pthread_mutex_t mb_lock;
	struct ublk_engine_call *mb_head, *mb_tail;
	int efd;
	uint64_t efd_val;

	/* Queues by the index their user_data carries. */
	struct engine_queue *queues;
	uint32_t nr_queues;
};

void *ublk_engine_target(const struct ublk_engine *e)
{
	return e->cfg.target;
}

struct io_uring *ublk_engine_ring(struct ublk_engine *e)
{
	return &e->ring;
}

static void arm_mailbox(struct ublk_engine *e)
{
	struct io_uring_sqe *sqe = ring_get_sqe(&e->ring);

	if (!sqe) {
		log_err("%s: no SQE for the mailbox", e->name);
		return;
	}
	io_uring_prep_read(sqe, e->efd, &e->efd_val, sizeof(e->efd_val), 0);
	io_uring_sqe_set_data64(sqe, (uint64_t)UBLK_UD_KIND_CALL << UBLK_UD_KIND_SHIFT);
}

/* ---- calls from other threads ---- */

void ublk_engine_call_done(struct ublk_engine_call *c, int status)
{
	c->status = status;
	sem_post(&c->done);
}

int ublk_engine_call(struct ublk_engine *e, struct ublk_engine_call *c)
{
	uint64_t one = 1;
	int ret;

	sem_init(&c->done, 0, 0);
	c->next = NULL;
	pthread_mutex_lock(&e->mb_lock);
	if (e->mb_tail)
		e->mb_tail->next = c;
	else
		e->mb_head = c;
	e->mb_tail = c;
	pthread_mutex_unlock(&e->mb_lock);
	if (write(e->efd, &one, sizeof(one)) != sizeof(one))
		log_err("%s: cannot wake it: %s", e->name, strerror(errno));
	while (sem_wait(&c->done) && errno == EINTR)
		;
	ret = c->status;
	sem_destroy(&c->done);
	return ret;
}

static void run_calls(struct ublk_engine *e)
{
	struct ublk_engine_call *c, *next;

	pthread_mutex_lock(&e->mb_lock);
	c = e->mb_head;
	e->mb_head = e->mb_tail = NULL;
	pthread_mutex_unlock(&e->mb_lock);
	for (; c; c = next) {
		int ret;

		next = c->next; /* c may be gone once answered */
		ret = c->fn(e, c);
		if (ret != UBLK_ENGINE_LATER)
			ublk_engine_call_done(c, ret);
	}
}

/* ---- queues ---- */

static struct engine_queue *queue_entry(struct ublk_engine *e, uint32_t idx)
{
	return idx < e->nr_queues && e->queues[idx].q ? &e->queues[idx] : NULL;
}

static void queue_forget_if_gone(struct ublk_engine *e, struct engine_queue *eq)
{
	void *qpriv = eq->qpriv;

	if (!eq->stopping || !ublk_queue_idle(eq->q))
		return;
	eq->q = NULL;
	eq->qpriv = NULL;
	eq->stopping = false;
	e->cfg.ops->queue_gone(e, qpriv);
}

static void handle_queue_cqe(struct ublk_engine *e, const struct io_uring_cqe *cqe)
{
	struct engine_queue *eq = queue_entry(e, ublk_ud_queue(cqe->user_data));
	struct ublk_io io;

	if (!eq) {
		log_err("%s: completion 0x%llx for a queue it does not serve", e->name,
			(unsigned long long)cqe->user_data);
		return;
	}
	if (ublk_queue_handle_cqe(eq->q, &e->ring, cqe, &io) == 1)
		e->cfg.ops->queue_io(e, eq->qpriv, &io);
	queue_forget_if_gone(e, eq);
}

/*
 * Every CQE there is now. Each is copied and consumed before it is handled,
 * so a handler may itself take the CQEs that follow (adding a queue does,
 * to see whether the kernel took its FETCHes).
 */
static unsigned int handle_cqes(struct ublk_engine *e)
{
	struct io_uring_cqe *p, cqe;
	unsigned int n = 0;

	while (io_uring_peek_cqe(&e->ring, &p) == 0) {
		n++;
		cqe = *p;
		io_uring_cqe_seen(&e->ring, p);
		switch (ublk_ud_kind(cqe.user_data)) {
		case UBLK_UD_KIND_QUEUE:
			handle_queue_cqe(e, &cqe);
			break;
		case UBLK_UD_KIND_CALL:
			run_calls(e);
			if (!e->exiting)
				arm_mailbox(e);
			break;
		default:
			e->cfg.ops->target_cqe(e, &cqe);
			break;
		}
	}
	return n;
}

int ublk_engine_add_queue(struct ublk_engine *e, struct ublk_dev *dev,
			  const struct ublk_queue_config *cfg, void *qpriv, struct ublk_queue **out)
{
	struct ublk_queue_config qc = *cfg;
	struct engine_queue *eq;
	uint32_t idx;
	int ret;

	for (idx = 0; idx < e->nr_queues && e->queues[idx].q; idx++)
		;
	if (idx == e->nr_queues) {
		uint32_t n = e->nr_queues ? e->nr_queues * 2 : 8;
		struct engine_queue *t;

		if (n > (1u << UBLK_UD_QUEUE_BITS))
			return -ENOSPC;
		t = realloc(e->queues, n * sizeof(*t));
		if (!t)
			return -ENOMEM;
		memset(t + e->nr_queues, 0, (n - e->nr_queues) * sizeof(*t));
		e->queues = t;
		e->nr_queues = n;
	}
	qc.ud_kind = UBLK_UD_KIND_QUEUE;
	qc.ud_queue = idx;
	ret = ublk_queue_create(dev, &qc, out);
	if (ret)
		return ret;
	eq = &e->queues[idx];
	eq->q = *out;
	eq->qpriv = qpriv;
	eq->stopping = false;
	ret = ublk_queue_prep_fetch_all(*out, &e->ring);
	if (ret >= 0)
		ret = io_uring_submit_and_get_events(&e->ring);
	if (ret >= 0) {
		/* A FETCH the kernel refuses completes at once: catch it now,
		 * before the caller starts the device and waits for it. */
		handle_cqes(e);
		ret = ublk_queue_retired(*out) ? -EIO : 0;
	}
	if (ret < 0) {
		log_err("%s: queue %u of ublk%d: fetching its tags failed: %s", e->name,
			cfg->q_id, ublk_dev_id(dev), strerror(-ret));
		/* The kernel may hold the fetches that went in until STOP_DEV:
		 * the queue is stopping, and gone (ops->queue_gone) once idle. */
		eq->stopping = true;
		queue_forget_if_gone(e, eq);
	}
	return ret < 0 ? ret : 0;
}

void ublk_engine_stop_queue(struct ublk_engine *e, struct ublk_queue *q)
{
	for (uint32_t i = 0; i < e->nr_queues; i++) {
		if (e->queues[i].q == q) {
			e->queues[i].stopping = true;
			queue_forget_if_gone(e, &e->queues[i]);
			return;
		}
	}
}

void ublk_engine_abandon_queue(struct ublk_engine *e, struct ublk_queue *q)
{
	for (uint32_t i = 0; i < e->nr_queues; i++) {
		if (e->queues[i].q == q) {
			e->queues[i] = (struct engine_queue){ 0 };
			return;
		}
	}
}

int ublk_engine_commit(struct ublk_engine *e, struct ublk_queue *q, uint16_t tag,
		       int32_t result)
{
	return ublk_queue_commit(q, &e->ring, tag, result);
}

/* Commits that found no SQE go out now, after the round's submit made room. */
static void retry_held_commits(struct ublk_engine *e)
{
	for (uint32_t i = 0; i < e->nr_queues; i++)
		if (e->queues[i].q && ublk_queue_commits_held(e->queues[i].q))
			ublk_queue_retry_commits(e->queues[i].q, &e->ring);
}

/* ---- the thread ---- */

static int call_exit(struct ublk_engine *e, struct ublk_engine_call *c)
{
	e->exiting = true;
	return 0;
}

static bool serves_queues(const struct ublk_engine *e)
{
	for (uint32_t i = 0; i < e->nr_queues; i++)
		if (e->queues[i].q)
			return true;
	return false;
}

/* One wait, or (polling) one look: what the ring and the target had. */
static int engine_wait(struct ublk_engine *e, unsigned int *work)
{
	const struct ublk_tgt_ops *ops = e->cfg.ops;

	if (!e->bp.cfg.on)
		return io_uring_submit_and_wait(&e->ring, 1);
	if (serves_queues(e) && busypoll_spin(&e->bp))
		return busypoll_ring(&e->ring);
	if (ops->arm && (*work = ops->arm(e)))
		return busypoll_ring(&e->ring);
	return io_uring_submit_and_wait(&e->ring, 1);
}

static void *engine_thread(void *arg)
{
	struct ublk_engine *e = arg;
	int ret;

	pthread_setname_np(pthread_self(), e->name);
	busypoll_init(&e->bp, &e->cfg.poll);
	e->setup_status = ring_init_flags(&e->ring, e->cfg.sq_entries, e->cfg.cq_entries,
					  e->cfg.poll.on ? IORING_SETUP_TASKRUN_FLAG : 0);
	if (!e->setup_status) {
		e->ring_ok = true;
		arm_mailbox(e);
		ret = io_uring_submit(&e->ring);
		e->setup_status = ret < 0 ? ret : 0;
	}
	sem_post(&e->ready);
	if (e->setup_status)
		return NULL;
	while (!e->exiting) {
		unsigned int work = 0;

		ret = engine_wait(e, &work);
		if (ret < 0 && ret != -EINTR && ret != -EBUSY && ret != -ETIME) {
			log_err("%s: io_uring: %s", e->name, strerror(-ret));
			break;
		}
		work += handle_cqes(e);
		if (e->bp.cfg.on && e->cfg.ops->poll)
			work += e->cfg.ops->poll(e);
		if (work)
			busypoll_work(&e->bp);
		if (e->cfg.ops->round_end)
			e->cfg.ops->round_end(e);
		retry_held_commits(e);
	}
	return NULL;
}

int ublk_engine_create(const struct ublk_engine_config *cfg, struct ublk_engine **out)
{
	struct ublk_engine *e = calloc(1, sizeof(*e));
	int ret;

	if (!e)
		return -ENOMEM;
	e->cfg = *cfg;
	snprintf(e->name, sizeof(e->name), "%s", cfg->thread_name ? cfg->thread_name : cfg->ops->name);
	e->cfg.thread_name = e->name;
	pthread_mutex_init(&e->mb_lock, NULL);
	sem_init(&e->ready, 0, 0);
	e->efd = eventfd(0, EFD_CLOEXEC);
	if (e->efd < 0) {
		ret = -errno;
		goto out_destroy;
	}
	ret = -pthread_create(&e->thread, NULL, engine_thread, e);
	if (ret)
		goto out_destroy;
	e->started = true;
	while (sem_wait(&e->ready) && errno == EINTR)
		;
	ret = e->setup_status;
	if (ret)
		goto out_destroy;
	*out = e;
	return 0;
out_destroy:
	ublk_engine_destroy(e);
	return ret;
}

void ublk_engine_destroy(struct ublk_engine *e)
{
	if (!e)
		return;
	if (e->started) {
		if (!e->setup_status) {
			struct ublk_engine_call c = { .fn = call_exit };

			ublk_engine_call(e, &c);
		}
		pthread_join(e->thread, NULL);
	}
	for (uint32_t i = 0; i < e->nr_queues; i++)
		if (e->queues[i].q)
			log_warn("%s: destroyed while it still serves a queue", e->name);
	if (e->ring_ok)
		io_uring_queue_exit(&e->ring);
	if (e->efd >= 0)
		close(e->efd);
	pthread_mutex_destroy(&e->mb_lock);
	sem_destroy(&e->ready);
	free(e->queues);
	free(e);
}
