// SPDX-License-Identifier: GPL-2.0-only
#include "worker.h"

#include <errno.h>
#include <poll.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "cm.h"
#include "verbs.h"
#include "ring.h"
#include "conn.h"

#define WORKER_RING_ENTRIES 1024
#define WORKER_CQ_POLL_BATCH 32
#define WORKER_STOP_REPORT_MS 3000 /* a slow stop says what it waits for */

/* A message from the main thread. id == NULL: stop. */
/* A message to a worker: a connect request, the stop, or a fixed file. */
struct handoff {
	struct handoff *next;
	enum { HANDOFF_CONN, HANDOFF_STOP, HANDOFF_FILE } kind;
	struct rdma_cm_id *id;
	struct ibnbd_conn_params req;
	char peer[64];
	/* HANDOFF_FILE: the slot, its file, the result; done is posted. */
	unsigned int index;
	int fd;
	int result;
	sem_t done;
};

struct worker_start {
	struct worker *w;
	sem_t done;
};

struct io_uring_sqe *worker_get_sqe(struct worker *w)
{
	return ring_get_sqe(&w->ring);
}

static int arm_poll(struct worker *w, int fd, enum wrid_type type, uint32_t index)
{
	struct io_uring_sqe *sqe = worker_get_sqe(w);

	if (!sqe)
		return -EBUSY;
	io_uring_prep_poll_multishot(sqe, fd, POLLIN);
	io_uring_sqe_set_data64(sqe, wrid_make(type, 0, 0, index));
	return 0;
}

/*
 * The periodic wakeup for the keepalive timeout: a quarter of it, between
 * 1 and 5 s, so a silent client is dropped within 1.25 times the timeout
 * and an idle server wakes rarely.
 */
static int arm_tick(struct worker *w)
{
	struct io_uring_sqe *sqe = worker_get_sqe(w);
	unsigned int ms = w->shared->keepalive_timeout_ms / 4;

	if (!sqe)
		return -EBUSY;
	ms = ms < 1000 ? 1000 : ms > 5000 ? 5000 : ms;
	if (!w->shared->keepalive_timeout_ms)
		ms = 5000;
	w->tick_ts = (struct __kernel_timespec){ .tv_sec = ms / 1000,
						 .tv_nsec = (ms % 1000) * 1000000L };
	io_uring_prep_timeout(sqe, &w->tick_ts, 0, 0);
	io_uring_sqe_set_data64(sqe, wrid_make(WRID_TICK, 0, 0, 0));
	return 0;
}

static void send_reject(struct rdma_cm_id *id, int status)
{
	conn_reject(id, status);
	rdma_destroy_id(id);
}

/* Undoes worker_dev_get(), also half done. */
static void worker_dev_destroy(struct worker_dev *d)
{
	if (d->cq)
		ibv_destroy_cq(d->cq);
	if (d->comp_ch)
		ibv_destroy_comp_channel(d->comp_ch);
	*d = (struct worker_dev){ 0 };
}

int worker_cq_reserve(struct worker *w, struct worker_dev *d, int need)
{
	int size = d->cq_size;

	while (d->cq_budget + (size - d->cq_size) < need && size < d->cq_max)
		size = size * 2 < d->cq_max ? size * 2 : d->cq_max;
	if (d->cq_budget + (size - d->cq_size) < need)
		return -EBUSY;
	if (size != d->cq_size) {
		int ret = ibv_resize_cq(d->cq, size);

		if (ret) {
			log_warn("worker %u: cannot grow the CQ of %s from %d to %d entries: %s",
				 w->index, ibv_get_device_name(d->verbs->device), d->cq_size, size,
				 strerror(ret));
			return -EBUSY;
		}
		d->cq_budget += size - d->cq_size;
		d->cq_size = size;
	}
	d->cq_budget -= need;
	return 0;
}

int worker_dev_get(struct worker *w, struct ibv_context *verbs, struct worker_dev **out)
{
	struct ibv_device_attr attr;
	struct worker_dev *d;
	int ret;

	for (unsigned int i = 0; i < w->ndevs; i++) {
		if (w->devs[i].verbs == verbs) {
			*out = &w->devs[i];
			return 0;
		}
	}
	if (w->ndevs == WORKER_MAX_DEVS)
		return -ENOSPC;
	d = &w->devs[w->ndevs];
	ret = verbs_comp_channel_create(verbs, &d->comp_ch);
	if (ret)
		goto out;
	d->cq_max = WORKER_CQ_MAX;
	if (!ibv_query_device(verbs, &attr) && attr.max_cqe < d->cq_max)
		d->cq_max = attr.max_cqe;
	d->cq_size = WORKER_CQ_INITIAL < d->cq_max ? WORKER_CQ_INITIAL : d->cq_max;
	d->cq = ibv_create_cq(verbs, d->cq_size, w, d->comp_ch, 0);
	if (!d->cq) {
		ret = errno ? -errno : -ENOMEM;
		goto out;
	}
	/* Polling, the CQ is armed only before the worker sleeps. */
	if (!w->shared->poll.on) {
		ret = -ibv_req_notify_cq(d->cq, 0);
		if (ret)
			goto out;
		d->armed = true;
	}
	ret = arm_poll(w, d->comp_ch->fd, WRID_POLL_CQ, w->ndevs);
	if (ret)
		goto out;
	d->cq_budget = d->cq_size;
	d->verbs = verbs;
	w->ndevs++;
	log_info("worker %u: serving connections on RDMA device %s", w->index,
		 ibv_get_device_name(verbs->device));
	*out = d;
	return 0;
out:
	worker_dev_destroy(d);
	return ret;
}

static void worker_accept(struct worker *w, struct handoff *h)
{
	struct worker_dev *dev;
	struct conn *c;
	unsigned int idx;
	int ret;

	if (w->stopping) {
		send_reject(h->id, -ESHUTDOWN);
		return;
	}
	ret = worker_dev_get(w, h->id->verbs, &dev);
	if (ret) {
		log_err("worker %u: cannot set up RDMA resources on %s for %s: %s", w->index,
			ibv_get_device_name(h->id->verbs->device), h->peer, strerror(-ret));
		send_reject(h->id, ret);
		return;
	}
	for (idx = 0; idx < WORKER_MAX_CONNS && w->conns[idx]; idx++)
		;
	if (idx == WORKER_MAX_CONNS) {
		log_warn("worker %u: connection from %s refused: %u connections already", w->index,
			 h->peer, WORKER_MAX_CONNS);
		send_reject(h->id, -EBUSY);
		return;
	}
	ret = conn_create(w, dev, idx, h->id, &h->req, h->peer, &c);
	if (ret) {
		send_reject(h->id, ret);
		return;
	}
	w->conns[idx] = c;
	w->nconns++;
	__atomic_store_n(&w->nconns_hint, w->nconns, __ATOMIC_RELAXED);
	stat_add(&w->stats.connections, 1);
}

static void worker_read_inbox(struct worker *w)
{
	struct handoff *h, *list, *rev = NULL;

	pthread_mutex_lock(&w->inbox_lock);
	list = w->inbox;
	w->inbox = NULL;
	pthread_mutex_unlock(&w->inbox_lock);
	/* The inbox is a stack; take them in arrival order. */
	while (list) {
		h = list;
		list = h->next;
		h->next = rev;
		rev = h;
	}
	while (rev) {
		h = rev;
		rev = h->next;
		if (h->kind == HANDOFF_CONN) {
			worker_accept(w, h);
		} else if (h->kind == HANDOFF_FILE) {
			/* Its sender waits, and frees h. */
			h->result = io_uring_register_files_update(&w->ring, h->index, &h->fd, 1);
			h->result = h->result < 0 ? h->result : 0;
			sem_post(&h->done);
			continue;
		} else if (!w->stopping) {
			w->stopping = true;
			w->stop_report_ms = clock_now_ms() + WORKER_STOP_REPORT_MS;
			for (unsigned int i = 0; i < WORKER_MAX_CONNS; i++)
				if (w->conns[i])
					conn_shutdown(w->conns[i]);
		}
		free(h);
	}
}

static struct conn *lookup(struct worker *w, uint64_t wr_id)
{
	unsigned int i = wrid_conn(wr_id);

	if (i >= WORKER_MAX_CONNS || !w->conns[i] || w->conn_gen[i] != wrid_gen(wr_id))
		return NULL; /* a late completion of a connection already gone */
	return w->conns[i];
}

/* Returns how many completions it took. */
static unsigned int worker_poll_cq(struct worker *w, struct worker_dev *d)
{
	struct ibv_wc wc[WORKER_CQ_POLL_BATCH];
	unsigned int got = 0;
	int n, i;

	do {
		n = ibv_poll_cq(d->cq, WORKER_CQ_POLL_BATCH, wc);
		for (i = 0; i < n; i++) {
			struct conn *c = lookup(w, wc[i].wr_id);

			if (c)
				conn_on_wc(c, &wc[i]);
		}
		got += n > 0 ? (unsigned int)n : 0;
	} while (n == WORKER_CQ_POLL_BATCH);
	if (n < 0)
		log_err("worker %u: polling the CQ failed: %s", w->index, strerror(-n));
	return got;
}

static unsigned int worker_poll_cqs(struct worker *w)
{
	unsigned int got = 0;

	for (unsigned int i = 0; i < w->ndevs; i++)
		got += worker_poll_cq(w, &w->devs[i]);
	return got;
}

/*
 * Polling, before a sleep: arms every CQ, then looks once more, for a
 * completion that came before the arm raises no event. Returns how many
 * completions that look took (then the worker does not sleep).
 */
static unsigned int worker_arm_cqs(struct worker *w)
{
	for (unsigned int i = 0; i < w->ndevs; i++) {
		struct worker_dev *d = &w->devs[i];
		int ret;

		if (d->armed)
			continue;
		ret = ibv_req_notify_cq(d->cq, 0);
		if (ret)
			log_err("worker %u: arming the CQ of %s failed: %s", w->index,
				ibv_get_device_name(d->verbs->device), strerror(ret));
		else
			d->armed = true;
	}
	return worker_poll_cqs(w);
}

static void worker_cm_events(struct worker *w)
{
	struct rdma_cm_event *ev;

	while (cm_get_event(w->cm_ch, &ev) == 0) {
		struct conn *c = ev->id ? ev->id->context : NULL;

		if (c)
			conn_on_cm_event(c, ev);
		rdma_ack_cm_event(ev);
	}
}

/* One event per wakeup: an armed CQ raises one, and the read re-arms it.
 * Reading until EAGAIN cost a second read() per wakeup; should another
 * event be pending, the channel stays readable and the next loop takes it. */
static void worker_cq_events(struct worker *w, struct worker_dev *d)
{
	struct ibv_cq *cq;

	if (!w->bp.cfg.on) {
		verbs_cq_event(d->comp_ch, &cq);
		return;
	}
	/* Polling: awake now, the worker spins until it is idle again. */
	if (!verbs_cq_event_take(d->comp_ch, &cq))
		d->armed = false;
}

static void worker_reap(struct worker *w)
{
	for (unsigned int i = 0; i < WORKER_MAX_CONNS && w->nclosing; i++) {
		struct conn *c = w->conns[i];

		if (!c || !conn_closing(c) || !conn_reapable(c))
			continue;
		conn_destroy(c); /* logs "closed" */
		w->conns[i] = NULL;
		w->conn_gen[i]++;
		w->nconns--;
		w->nclosing--;
		__atomic_store_n(&w->nconns_hint, w->nconns, __ATOMIC_RELAXED);
	}
	if (!w->stopping)
		return;
	for (unsigned int i = 0; i < WORKER_MAX_CONNS; i++) /* DRAINING timeouts */
		if (w->conns[i] && !conn_closing(w->conns[i]))
			conn_reapable(w->conns[i]);
	if (w->nconns && clock_now_ms() >= w->stop_report_ms) {
		w->stop_report_ms = clock_now_ms() + WORKER_STOP_REPORT_MS;
		for (unsigned int i = 0; i < WORKER_MAX_CONNS; i++)
			if (w->conns[i])
				conn_log_waiting(w->conns[i]);
	}
}

/* The eventfd fired: the registry may have news for any of our connections. */
static void worker_kicked(struct worker *w)
{
	for (unsigned int i = 0; i < WORKER_MAX_CONNS; i++)
		if (w->conns[i])
			conn_on_kick(w->conns[i]);
}

static void worker_tick(struct worker *w)
{
	for (unsigned int i = 0; i < WORKER_MAX_CONNS; i++)
		if (w->conns[i])
			conn_tick(w->conns[i]);
}

static void worker_handle_cqe(struct worker *w, const struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	struct conn *c;

	switch (wrid_type(ud)) {
	case WRID_IO:
		c = lookup(w, ud);
		if (c)
			conn_on_io(c, wrid_index(ud), cqe->res);
		break;
	case WRID_POLL_CQ:
		if (wrid_index(ud) >= w->ndevs)
			break;
		worker_cq_events(w, &w->devs[wrid_index(ud)]);
		if (!(cqe->flags & IORING_CQE_F_MORE))
			arm_poll(w, w->devs[wrid_index(ud)].comp_ch->fd, WRID_POLL_CQ,
				 wrid_index(ud));
		break;
	case WRID_POLL_CM:
		worker_cm_events(w);
		if (!(cqe->flags & IORING_CQE_F_MORE))
			arm_poll(w, w->cm_ch->fd, WRID_POLL_CM, 0);
		break;
	case WRID_POLL_EVENTFD:
		if (read(w->efd, &w->efd_buf, sizeof(w->efd_buf)) < 0 && errno != EAGAIN)
			log_warn("worker %u: eventfd read: %s", w->index, strerror(errno));
		worker_read_inbox(w);
		worker_kicked(w);
		if (!(cqe->flags & IORING_CQE_F_MORE))
			arm_poll(w, w->efd, WRID_POLL_EVENTFD, 0);
		break;
	case WRID_TICK:
		worker_tick(w);
		if (arm_tick(w))
			log_err("worker %u: cannot re-arm the keepalive timer", w->index);
		break;
	default:
		break;
	}
}

static void worker_loop(struct worker *w)
{
	while (!(w->stopping && w->nconns == 0)) {
		struct __kernel_timespec ts = { .tv_sec = 0, .tv_nsec = 200 * 1000 * 1000 };
		struct io_uring_cqe *cqe;
		unsigned int head, n = 0, work = 0;
		int ret;

		if (w->nconns && busypoll_spin(&w->bp)) {
			ret = busypoll_ring(&w->ring);
		} else if (w->bp.cfg.on && (work = worker_arm_cqs(w))) {
			ret = busypoll_ring(&w->ring); /* it found work: no sleep */
		} else {
			/* Timed wait only while something has a deadline. */
			ret = io_uring_submit_and_wait_timeout(&w->ring, &cqe, 1,
							       w->nclosing || w->stopping ? &ts : NULL,
							       NULL);
		}
		if (ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EBUSY) {
			log_err("worker %u: io_uring wait failed: %s", w->index, strerror(-ret));
			break;
		}
		io_uring_for_each_cqe(&w->ring, head, cqe) {
			worker_handle_cqe(w, cqe);
			n++;
		}
		io_uring_cq_advance(&w->ring, n);
		/* Completions can be queued without a new event: poll every round. */
		work += n + worker_poll_cqs(w);
		if (work)
			busypoll_work(&w->bp);
		/* Then every connection posts this round's answers at once. */
		while (w->flush_list)
			w->flush_list = conn_flush(w->flush_list);
		if (w->nclosing || w->stopping)
			worker_reap(w);
	}
}

static int worker_setup(struct worker *w)
{
	const struct worker_shared *sh = w->shared;
	unsigned int n = worker_nexports(sh);
	int fds[SERVER_MAX_EXPORTS];
	int ret;

	busypoll_init(&w->bp, &sh->poll);
	ret = ring_init_flags(&w->ring, WORKER_RING_ENTRIES, 4 * WORKER_RING_ENTRIES,
			      sh->poll.on ? IORING_SETUP_TASKRUN_FLAG : 0);
	if (ret) {
		log_err("worker %u: io_uring setup failed: %s", w->index, strerror(-ret));
		return ret;
	}
	w->ring_ready = true;
	/* Every slot a reload may fill later; those not in use are -1. */
	for (unsigned int i = 0; i < SERVER_MAX_EXPORTS; i++)
		fds[i] = i < n ? sh->exports[i]->fd : -1;
	ret = io_uring_register_files(&w->ring, fds, SERVER_MAX_EXPORTS);
	if (ret) {
		log_err("worker %u: registering export files with io_uring failed: %s", w->index,
			strerror(-ret));
		return ret;
	}
	ret = io_uring_register_buffers_sparse(&w->ring, WORKER_MAX_CONNS);
	if (ret) {
		log_err("worker %u: reserving io_uring fixed buffers failed: %s (needs Linux 5.19)",
			w->index, strerror(-ret));
		return ret;
	}
	ret = arm_poll(w, w->efd, WRID_POLL_EVENTFD, 0);
	if (!ret)
		ret = arm_poll(w, w->cm_ch->fd, WRID_POLL_CM, 0);
	if (!ret)
		ret = arm_tick(w);
	if (!ret)
		ret = io_uring_submit(&w->ring) < 0 ? -EIO : 0;
	return ret;
}

static void *worker_main(void *arg)
{
	struct worker_start *st = arg;
	struct worker *w = st->w;
	char name[16];

	snprintf(name, sizeof(name), "ibnbd-srv-w%u", w->index); /* top -H, /proc/PID/task */
	pthread_setname_np(pthread_self(), name);
	w->setup_ret = worker_setup(w);
	sem_post(&st->done); /* st is gone after this */
	if (!w->setup_ret)
		worker_loop(w);
	return NULL;
}

int worker_create(struct worker *w, unsigned int index, const struct worker_shared *shared)
{
	struct worker_start st = { .w = w };
	int ret;

	memset(w, 0, sizeof(*w));
	w->index = index;
	w->shared = shared;
	w->efd = -1;
	pthread_mutex_init(&w->inbox_lock, NULL);
	w->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (w->efd < 0)
		return -errno;
	ret = cm_channel_create(&w->cm_ch);
	if (ret)
		return ret;
	sem_init(&st.done, 0, 0);
	ret = -pthread_create(&w->thread, NULL, worker_main, &st);
	if (ret) {
		sem_destroy(&st.done);
		return ret;
	}
	w->thread_started = true;
	while (sem_wait(&st.done) && errno == EINTR)
		;
	sem_destroy(&st.done);
	return w->setup_ret;
}

static int worker_post(struct worker *w, struct handoff *h)
{
	uint64_t one = 1;

	pthread_mutex_lock(&w->inbox_lock);
	h->next = w->inbox;
	w->inbox = h;
	pthread_mutex_unlock(&w->inbox_lock);
	if (write(w->efd, &one, sizeof(one)) < 0)
		return -errno;
	return 0;
}

int worker_handoff(struct worker *w, struct rdma_cm_id *id,
		   const struct ibnbd_conn_params *req, const char *peer)
{
	struct handoff *h = calloc(1, sizeof(*h));

	if (!h)
		return -ENOMEM;
	h->kind = HANDOFF_CONN;
	h->id = id;
	h->req = *req;
	snprintf(h->peer, sizeof(h->peer), "%s", peer);
	return worker_post(w, h);
}

int worker_set_export_file(struct worker *w, unsigned int index, int fd)
{
	struct handoff *h = calloc(1, sizeof(*h));
	int ret;

	if (!h)
		return -ENOMEM;
	h->kind = HANDOFF_FILE;
	h->index = index;
	h->fd = fd;
	sem_init(&h->done, 0, 0);
	ret = worker_post(w, h);
	if (!ret)
		while (sem_wait(&h->done) && errno == EINTR)
			;
	ret = ret ? ret : h->result;
	sem_destroy(&h->done);
	free(h);
	return ret;
}

void worker_stop(struct worker *w)
{
	struct handoff *h;

	if (!w->thread_started)
		return;
	h = calloc(1, sizeof(*h));
	if (h)
		h->kind = HANDOFF_STOP;
	if (!h || worker_post(w, h)) {
		/* Cannot tell it nicely; it will notice nothing, so say so. */
		log_err("worker %u: cannot deliver the stop message", w->index);
		free(h);
	}
}

void worker_destroy(struct worker *w)
{
	struct handoff *h;

	if (w->thread_started)
		pthread_join(w->thread, NULL);
	for (unsigned int i = 0; i < WORKER_MAX_CONNS; i++)
		if (w->conns[i])
			conn_destroy(w->conns[i]); /* only after a failed loop */
	while ((h = w->inbox)) {
		w->inbox = h->next;
		if (h->id)
			send_reject(h->id, -ESHUTDOWN);
		free(h);
	}
	if (w->ring_ready)
		io_uring_queue_exit(&w->ring);
	for (unsigned int i = 0; i < w->ndevs; i++)
		worker_dev_destroy(&w->devs[i]);
	cm_channel_destroy(w->cm_ch);
	if (w->efd >= 0)
		close(w->efd);
	pthread_mutex_destroy(&w->inbox_lock);
}
