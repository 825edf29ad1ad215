/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A client worker: a ublk engine (ublk/engine.h) whose target serves the
 * requests of the device queues it is given over the connections of the
 * sessions it is given (dataplane.h has the picture). Other threads talk
 * to it only through worker_call(): one message at a time, run on the
 * worker's thread; the caller waits for its status.
 */
#ifndef IBNBD_CLIENT_WORKER_H
#define IBNBD_CLIENT_WORKER_H

#include "dataplane/dataplane.h"
#include "ublk/engine.h"

enum wmsg_type {
	WM_ADD_QUEUE,   /* dq: fetch every tag, serve the queue */
	WM_STOP_QUEUE,  /* dq: fail what waits; let go once idle (dq->removed) */
	WM_ADD_SESS,    /* ws: known, detached */
	WM_REMOVE_SESS, /* ws: forget it (detached, no device left) */
	WM_ATTACH,      /* ws + conn: serve it, (re)send what waits */
	WM_DETACH,      /* ws: stop using its connection; in-flight requests
			 * go back to the wait FIFO */
	WM_FAIL_QUEUE,  /* dq: its device failed: fail what waits (EIO) */
	WM_LEAVE_QUEUE, /* dq: forget it without answering anything: the daemon
			 * leaves the device to the next one */
	WM_QUIESCE,     /* ws: send nothing new (what arrives waits); returns
			 * how many requests are still in flight */
	WM_FORGET_SESS, /* ws: forget it without answering what it holds: the
			 * daemon leaves its devices to the next one, and the
			 * kernel re-issues what was not answered */
	WM_OPEN,        /* ws: OPEN name/access on its connection → info */
	WM_CLOSE,       /* ws: CLOSE handle */
};

struct wmsg {
	struct ublk_engine_call call; /* first: the worker's engine runs it */
	struct wmsg *next;            /* in a wsess's control queue */
	enum wmsg_type type;
	struct dev_queue *dq;
	struct wsess *ws;
	struct conn *conn;
	bool force;                   /* WM_STOP_QUEUE: also fail what is in flight */
	/* WM_OPEN / WM_CLOSE */
	const char *name;
	uint8_t access;
	uint32_t handle;
	struct ibnbd_dev_info info;
};

int worker_create(unsigned int index, const struct client_tunables *t, struct worker **out);
/* Stops the thread; every queue and session must be gone. */
void worker_destroy(struct worker *w);
/* Runs m on the worker's thread and waits until it is done; its status. */
int worker_call(struct worker *w, struct wmsg *m);

#endif
