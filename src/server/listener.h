/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The listener: RDMA CM listening ids on the main thread. It decodes each
 * connect request, picks the least loaded worker, moves the new id to that
 * worker's event channel and hands it over; the worker accepts or rejects.
 */
#ifndef IBNBD_SERVER_LISTENER_H
#define IBNBD_SERVER_LISTENER_H

#include "server_conf.h"
#include "worker.h"

struct listener;

int listener_create(const struct server_config *cfg, struct worker *workers,
		    unsigned int nworkers, struct listener **out);
/* Stops accepting; tolerates NULL and half-built listeners. */
void listener_destroy(struct listener *l);
/* The fd to poll for CM events. */
int listener_fd(const struct listener *l);
/* Handles every pending CM event. */
void listener_handle_events(struct listener *l);

#endif
