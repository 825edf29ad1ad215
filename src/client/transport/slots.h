/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The slot (credit) pool of one connection. The server gives each connection
 * queue_depth slots; a request owns one slot from the moment it is posted
 * until its response arrives, and the slot index is the request's tag on the
 * wire. Several ublk queues (one per device) share a connection, so a request
 * may find no free slot: it then waits in its session's FIFO (worker.c) and
 * takes the next slot that is put back.
 *
 * Owned by one worker thread; no locking. Pure logic (unit-tested).
 */
#ifndef IBNBD_CLIENT_SLOTS_H
#define IBNBD_CLIENT_SLOTS_H

#include <stdbool.h>
#include <stdint.h>

struct slot_pool {
	uint16_t *free;    /* stack of free slot indices */
	bool *taken;       /* per slot: handed out, not yet put back */
	uint16_t nr_free;
	uint16_t size;
};

/* size slots, all free; -EINVAL for 0, -ENOMEM. */
int slot_pool_init(struct slot_pool *p, uint16_t size);
/* Tolerates a pool that was never initialised (zeroed). */
void slot_pool_destroy(struct slot_pool *p);
/* A free slot, or -EBUSY when every slot is taken. LIFO: the slot put back
 * last is reused first, so its receive and header stay hot in cache. */
int slot_get(struct slot_pool *p);
/* Returns a slot taken by slot_get(); -EINVAL if it is out of range or
 * already free (a double put is a bug the caller must hear about). */
int slot_put(struct slot_pool *p, uint16_t slot);
/* Every slot free again (the connection was replaced). */
void slot_pool_reset(struct slot_pool *p);
static inline uint16_t slot_pool_free(const struct slot_pool *p)
{
	return p->nr_free;
}

#endif
