/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The life of one client request (one ublk tag of one device queue), as
 * one state machine advanced by one function, creq_process():
 *
 *          NEW: send now if a slot and the connection are free
 *   IDLE ───────────────────────────────────────────────▶ SENT
 *    ▲ │ NEW: no slot, or down                   SLOT      │ │
 *    │ └──────────────────────────────▶ WAITING ─────────▶ │ │
 *    │                                  │  ▲   ◀────────────┘ │
 *    │        FAIL (loss timeout,       │  │   LOST: its        │
 *    ├──────── device failed or ────────┘  │   connection       │
 *    │         stopping)                   │   failed: again    │
 *    └──────────────────── ANSWER (status) ──────────────────────┘
 *
 *   IDLE     the kernel has the tag
 *   WAITING  ours, in its connection's wait FIFO: no slot free, or no
 *            connection (the session is down)
 *   SENT     posted on a connection, owning one of its slots
 *
 * Leaving for IDLE commits the tag to the kernel with the result (bytes
 * for READ/WRITE, 0, or -errno). A request of a failed device never goes
 * out: SLOT fails it instead. Worker thread only.
 */
#ifndef IBNBD_CLIENT_REQUEST_H
#define IBNBD_CLIENT_REQUEST_H

#include "dataplane/dataplane.h"

enum creq_state {
	CREQ_IDLE,
	CREQ_WAITING,
	CREQ_SENT,
};

enum creq_event {
	CREQ_EV_NEW,    /* the kernel handed the tag over (io is in r->io) */
	CREQ_EV_SLOT,   /* it is at the head of the FIFO and a slot is free */
	CREQ_EV_ANSWER, /* its answer arrived, with status */
	CREQ_EV_LOST,   /* its connection failed before the answer */
	CREQ_EV_FAIL,   /* give up with status */
};

void creq_process(struct worker *w, struct creq *r, enum creq_event ev, int status);

/* Sends what waits on ws while it has slots (CREQ_EV_SLOT each). */
void creq_dispatch(struct worker *w, struct wsess *ws);
/* CREQ_EV_FAIL with status for every request waiting on ws that pick()
 * chooses; the others keep their order. */
void creq_fail_waiting(struct worker *w, struct wsess *ws, int status,
		       bool (*pick)(const struct creq *r, const void *arg), const void *arg);
/* CREQ_EV_LOST for every request sent on ws's connection: they wait at
 * the head of the FIFO, in slot order. Returns how many. */
unsigned int creq_requeue_sent(struct worker *w, struct wsess *ws);

/* Fails (EIO) every request of dq sent on ws's connection, now: its slot
 * is kept, as CREQ_ORPHAN, until the server answers or the connection
 * ends. A forced unmap. */
void creq_orphan_sent(struct worker *w, struct wsess *ws, const struct dev_queue *dq);

/* Pickers for creq_fail_waiting(). */
bool creq_any(const struct creq *r, const void *arg);
bool creq_of_queue(const struct creq *r, const void *dq);
bool creq_of_stopping_queue(const struct creq *r, const void *arg);
/* Its device's loss timeout has passed: the session down that long, or the
 * request waiting that long (over several outages). */
bool creq_lost(const struct creq *r, const void *now_ms);

/* The worker's ring, for commits (worker.c). */
struct ublk_engine *worker_engine(struct worker *w);
unsigned int worker_index(const struct worker *w);

#endif
