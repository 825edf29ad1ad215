/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A worker thread: owns one io_uring (backing IO on fixed files and fixed
 * buffers, plus multishot polls on its completion channel, its CM event
 * channel and its eventfd), one PD and one CQ shared by its connections,
 * and the connections the listener hands it. Nothing it owns is touched by
 * another thread, except the handoff inbox (a mutex-protected list, off the
 * IO path), the registry entries of its connections (registry.h, control
 * path only) and the counters (read with relaxed loads). Its eventfd
 * carries both handoffs and registry kicks; an io_uring timeout drives
 * keepalive checks.
 */
#ifndef IBNBD_SERVER_WORKER_H
#define IBNBD_SERVER_WORKER_H

#include <liburing.h>
#include <pthread.h>
#include <rdma/rdma_cma.h>
#include <stdbool.h>

#include "access.h"
#include "busypoll.h"
#include "handshakes.h"
#include "log.h"
#include "export.h"
#include "proto.h"
#include "stats.h"
#include "wrid.h"

#define WORKER_MAX_CONNS 256 /* < WRID_MAX_CONNS */
#define WORKER_CQ_INITIAL 1024  /* grows with the connections it serves */
#define WORKER_CQ_MAX 65536     /* clamped to the device's max_cqe */

#define WORKER_MAX_DEVS 16      /* RDMA devices (ports) a worker serves */

struct conn;

struct registry;

/* What a worker keeps per RDMA device: a server with several devices or
 * ports serves connections on all of them, each worker with a completion
 * channel and a CQ per device (each connection has its own PD). */
struct worker_dev {
	struct ibv_context *verbs;
	struct ibv_comp_channel *comp_ch;
	struct ibv_cq *cq;
	int cq_size;
	int cq_max;    /* the device's limit */
	int cq_budget; /* CQEs not yet promised to a connection */
	bool armed;    /* the CQ raises an event for its next completion */
};

struct worker_shared {
	/* SERVER_MAX_EXPORTS entries; a reload appends (worker_nexports()
	 * is published after the entry) and marks removed ones, never
	 * reuses or frees an entry while workers run. */
	struct export **exports;
	unsigned int nexports;
	struct ibnbd_conn_limits limits;
	struct registry *registry;
	unsigned int keepalive_timeout_ms; /* 0: never drop a silent connection */
	uint8_t boot_id[16]; /* this host's boot (OPEN_RSP), all zero if unknown */
	struct server_auth *auth; /* NULL: --no-auth */
	unsigned int max_opens; /* max_opens_per_session: handles per connection */
	struct handshakes *handshakes; /* connections before HELLO now, all workers */
	struct busypoll_config poll; /* --poll, --poll-idle-us */
};

struct handoff;

struct worker {
	unsigned int index;
	pthread_t thread;
	bool thread_started;
	const struct worker_shared *shared;

	struct io_uring ring;
	bool ring_ready;
	int efd;
	uint64_t efd_buf;
	struct rdma_event_channel *cm_ch;
	struct __kernel_timespec tick_ts; /* read by the kernel at submission */
	struct log_rl auth_log; /* refused hosts, handshake timeouts */
	struct busypoll bp;

	/* Per RDMA device it has connections on (created with the first). */
	struct worker_dev devs[WORKER_MAX_DEVS];
	unsigned int ndevs;

	struct conn *conns[WORKER_MAX_CONNS];
	uint16_t conn_gen[WORKER_MAX_CONNS];
	/* Connections with answers queued this round (conn_flush()). */
	struct conn *flush_list;
	unsigned int nconns;
	unsigned int nclosing;
	bool stopping; /* stop message seen: drain connections, then leave the loop */
	int64_t stop_report_ms; /* when to say what the stop still waits for */

	pthread_mutex_t inbox_lock;
	struct handoff *inbox;
	int setup_ret;

	unsigned int nconns_hint; /* connections, for the listener's balancing */
	struct server_stats stats;
	/* Per export (shared->exports order; a reload adds some): read after
	 * the worker ended too, by the exit report. */
	struct export_stats estats[SERVER_MAX_EXPORTS];
};

static inline unsigned int worker_nexports(const struct worker_shared *sh)
{
	return __atomic_load_n(&sh->nexports, __ATOMIC_ACQUIRE);
}

/* Starts the thread; returns after its ring and channels are set up. */
int worker_create(struct worker *w, unsigned int index, const struct worker_shared *shared);
/* Asks the worker to finish in-flight IO, disconnect everyone and exit. */
void worker_stop(struct worker *w);
/*
 * From the main thread (a reload): sets the worker's io_uring fixed-file
 * slot index to fd (-1: unregisters it), on the worker's own thread, and
 * waits for it. 0 or -errno.
 */
int worker_set_export_file(struct worker *w, unsigned int index, int fd);
/* Joins the thread and frees what it owned; tolerates a half-built worker. */
void worker_destroy(struct worker *w);
/*
 * Called by the listener (main thread) for a connect request whose id has
 * been migrated to w->cm_ch: the worker accepts or rejects it. Takes
 * ownership of id. -ENOMEM if the message could not be queued (the caller
 * rejects).
 */
int worker_handoff(struct worker *w, struct rdma_cm_id *id,
		   const struct ibnbd_conn_params *req, const char *peer);

/* For connections: the io_uring SQE, submitting to make room if needed. */
struct io_uring_sqe *worker_get_sqe(struct worker *w);

/* The worker's resources for the RDMA device of a new connection, made on
 * its first: 0 with *out, or -errno (-ENOSPC: too many devices). */
int worker_dev_get(struct worker *w, struct ibv_context *verbs, struct worker_dev **out);
/* Promises a new connection need CQEs of the device's CQ, growing it (it
 * starts small: on soft-RoCE a CQE costs 128 bytes of memory). -EBUSY when
 * the device's limit is reached. */
int worker_cq_reserve(struct worker *w, struct worker_dev *d, int need);

#endif
