/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The client's data-plane objects, shared by the control plane that makes
 * them and the workers that serve them:
 *
 *   control/client.c   the control thread: map, unmap, list; owns devices
 *   control/session.c  one session per server (host:port): W connections,
 *                      one per worker; its own thread reconnects them
 *   dataplane/worker.c W workers (ublk engines); worker q serves queue q of
 *                      every device and connection q of every session
 *   dataplane/request.c the life of one request, from the kernel to the
 *                      server and back
 *
 *   ublk queue q of device A ─┐                 ┌─ conn q of session S1
 *   ublk queue q of device B ─┼── worker q ─────┤
 *   ublk queue q of device C ─┘  (one io_uring) └─ conn q of session S2
 *
 * Ownership. A dev_queue and a wsess are created by the control (or
 * session) thread and handed to their worker through its mailbox
 * (worker_call()); from then on only that worker touches their IO state.
 * The few fields another thread reads (counters, the session's state) are
 * atomics or guarded by the session lock, as marked.
 */
#ifndef IBNBD_CLIENT_DATAPLANE_H
#define IBNBD_CLIENT_DATAPLANE_H

#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "control/client.h"
#include "control/export_check.h"
#include "metrics.h"
#include "proto.h"
#include "transport/slots.h"
#include "ublk/engine.h"
#include "ublk/queue.h"

struct conn;
struct device;
struct session;
struct worker;

/* In wsess.inflight[]: a slot whose request is no more (request.h). */
#define CREQ_ORPHAN ((struct creq *)(uintptr_t)1)

/* One ublk tag of one device queue; its state machine is request.h's. */
struct creq {
	struct dev_queue *dq;
	struct creq *next;       /* in a wait FIFO */
	struct ublk_io io;
	int64_t queued_ms;       /* when the kernel handed it to us */
	uint64_t queued_ns;      /* the same, for its latency */
	int64_t sent_ms;         /* when it was last posted */
	uint16_t slot;
	uint8_t state;           /* enum creq_state (request.h) */
	uint8_t opcode;          /* IBNBD_OP_* */
	uint16_t flags;          /* IBNBD_IOF_* */
	bool resent;             /* lost with a connection once: a re-issue */
	uint64_t flush_upto;     /* FLUSH: the device's writes acked when it came */
};

/* What a device queue's requests did; its worker the only writer
 * (stat_add(), metrics.h), summed per device by `list` and /metrics. */
struct dq_stats {
	struct io_counts io;
	uint64_t errors;    /* requests completed with an error */
	uint64_t reissued;  /* re-sent after their connection was lost */
	uint64_t timeouts;  /* unanswered for io_timeout: the connection was reset */
	uint64_t started;   /* handed to us by the kernel */
	uint64_t completed; /* handed back: started - completed are in flight */
	uint64_t waiting;   /* in a wait FIFO now (a gauge) */
	struct lat_hist latency; /* from the kernel's hand-over to the completion */
};

/* Queue q of a device; served by worker q % W over connection q % W of
 * the device's session (a device recovered from a daemon with more
 * workers has more queues than W: a worker then serves several). */
struct dev_queue {
	struct device *dev;
	struct worker *w;
	struct wsess *ws;        /* the connection state its requests use */
	uint16_t q_id;
	uint16_t conn;           /* q_id % W: its connection, its handle */
	struct ublk_queue *uq;   /* created by the worker (WM_ADD_QUEUE) */
	void *buf;               /* the tag buffers (client.c maps them) */
	size_t buf_len;
	struct ibv_mr *mr;       /* buf, on the session's PD */
	struct creq *reqs;       /* per tag */
	bool stopping;           /* unmapping: fail what waits (worker) */
	/* Requests lost with a connection and not yet answered on a new one
	 * (written by the worker; `list` shows the device recovering). */
	atomic_uint resending;
	/* WRITEs of this queue answered so far (its worker the only writer). */
	atomic_uint_fast64_t writes_acked;
	struct dq_stats stats;
	sem_t removed;           /* posted by the worker when it let go */
};

/* A device's handle on one connection of its session and the cookie
 * every request on it carries (proto.h). */
struct dev_handle {
	uint32_t handle;
	uint64_t cookie;
};

struct device {
	struct device *next;     /* client's list (client lock) */
	struct device *sess_next; /* session's list (session lock) */
	struct client *client;
	struct session *sess;
	struct ublk_dev *ublk;
	struct ibnbd_dev_info info;    /* the first open: what it maps */
	struct dev_promise promise;    /* what the block device offers the kernel */
	uint8_t boot_id[16];           /* the server host's boot at the last open */
	/* Writes acknowledged and not yet covered by a completed FLUSH: the
	 * queues' writes_acked against flushed_upto. Should the server host
	 * restart with some (a new boot id at a re-open), they may be lost,
	 * and the next FLUSH fails (flush_must_fail). */
	atomic_uint_fast64_t flushed_upto;
	atomic_bool flush_must_fail;
	uint64_t lost_writes_events;   /* such restarts (session lock) */
	/* The export's size at the last open, when it had grown past the
	 * device's (info.size): the device needs a remap to use it, as this
	 * kernel's ublk cannot resize one (session lock). */
	uint64_t export_grown_to;
	/* The control plane's (client.c, client lock). */
	struct dev_ctl_info *ctl_info;
	bool recover_tried;
	uint16_t nr_queues;
	uint16_t nr_queues_alloc;
	struct dev_queue *queues;
	/* Per connection of the session. Written by the session's threads
	 * only while no worker uses them: before the device has queues, or
	 * while the connections are detached. */
	struct dev_handle *handles;
	char path[64];
	char name[128];
	char export_name[IBNBD_EXPORT_NAME_MAX];
	bool read_only;
	/* How long its IO waits for a lost server: as mapped (0: the daemon's
	 * loss timeout, -1: forever, or seconds), and resolved (ms, 0: forever;
	 * fixed before the device has queues, read by its workers). */
	int loss_timeout_s;
	unsigned int loss_ms;
	bool loss_noted;         /* logged as lost in this outage (session lock) */
	/* The export is no longer the one mapped, or refused the re-open:
	 * every IO fails from now on, until the device is unmapped. */
	atomic_bool failed;
	char failed_why[768];    /* written before failed is set */
};

/* Worker q's side of a session: its connection q and what waits for it. */
struct wsess {
	struct session *sess;
	struct worker *w;
	uint32_t widx;           /* index in the worker's session table */
	struct conn *conn;       /* NULL while detached (down) */
	uint16_t gen;            /* attach generation, tags stale poll CQEs */
	struct slot_pool slots;
	/* Per slot: the request it carries, NULL, or CREQ_ORPHAN (its request
	 * was failed to the kernel by a forced unmap; the slot is the
	 * server's until the answer or the connection's end). */
	struct creq **inflight;
	struct creq *wait_head, *wait_tail;
	bool quiesced;           /* the daemon is leaving: send nothing new */
	/* Control messages: one outstanding (IBNBD_CTRL_CREDITS). A control
	 * message is done once its answer and its send completion are both
	 * in (the completion retires every WR posted before it). */
	struct wmsg *ctrl_head, *ctrl_tail;
	struct wmsg *ctrl_cur;   /* sent, awaiting its answer */
	bool ctrl_busy;
	bool ctrl_answered, ctrl_sent;
	int ctrl_status;
	bool keepalive_sent;     /* the outstanding control message is ours */
	int64_t ctrl_sent_ms;
	atomic_uint_fast64_t reissued; /* requests re-issued after a loss */
	atomic_uint_fast64_t timeouts; /* requests that hit the IO timeout */
	uint64_t keepalive_sent_ns;
	atomic_uint_fast64_t rtt_ns;   /* the last keepalive's round trip, 0 if none */
};

/* Client-wide behaviour, fixed at start (client_opts resolved). */
struct client_tunables {
	unsigned int workers;
	unsigned int keepalive_ms;     /* idle connection: send KEEPALIVE */
	unsigned int dead_ms;          /* silence that declares a peer dead */
	unsigned int loss_ms;          /* down this long: IO fails; 0 = never
					* (a device's own, if mapped with one) */
	unsigned int io_timeout_ms;    /* unanswered request: reconnect; 0 = never */
	unsigned int connect_ms;       /* connecting a new session (map) */
	unsigned int reconnect_ms;     /* one reconnect attempt: short, so that
					* an attempt that started while the wire
					* was down does not delay the next one
					* (doubled while the server is slow) */
	unsigned int backoff_max_ms;   /* cap of the reconnect backoff */
	uint16_t queue_depth;          /* ublk tags per device queue */
	uint16_t conn_depth;           /* slots per connection */
	uint32_t max_io_bytes;
	struct busypoll_config poll;   /* --poll, --poll-idle-us */
};

/* ---- session.c ---- */

enum session_state {
	SESSION_LIVE,         /* every connection attached */
	SESSION_RECONNECTING, /* lost; IO waits while the thread reconnects */
	SESSION_RECOVERING,   /* connected again; re-opening the devices */
	SESSION_FAILED,       /* down longer than every device's loss timeout:
			       * their IO fails, reconnecting goes on */
};

/* Called by a worker (any thread) when connection q failed; the session
 * thread takes it from there. why: a sentence for the log and `list`;
 * wire: a work request failed (the link or the peer is gone). */
void session_report_failure(struct session *s, unsigned int q, const char *why, bool wire);
/* True while the device's session has been down at least as long as the
 * device's loss timeout (any thread). */
bool device_lost(const struct device *d, int64_t now_ms);
/* The device's WRITEs answered so far, over all its queues. */
uint64_t device_writes_acked(const struct device *d);
/* The device's queues' counters, summed (relaxed loads: any thread). */
void device_stats_sum(const struct device *d, struct dq_stats *sum);
struct wsess *session_wsess(struct session *s, unsigned int q);
const char *session_peer(const struct session *s);

#endif
