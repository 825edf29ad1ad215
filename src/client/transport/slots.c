// SPDX-License-Identifier: GPL-2.0-only
#include "transport/slots.h"

#include <errno.h>
#include <stdlib.h>

int slot_pool_init(struct slot_pool *p, uint16_t size)
{
	if (!size)
		return -EINVAL;
	p->free = calloc(size, sizeof(*p->free));
	p->taken = calloc(size, sizeof(*p->taken));
	if (!p->free || !p->taken) {
		slot_pool_destroy(p);
		return -ENOMEM;
	}
	p->size = size;
	slot_pool_reset(p);
	return 0;
}

void slot_pool_destroy(struct slot_pool *p)
{
	free(p->free);
	free(p->taken);
	p->free = NULL;
	p->taken = NULL;
	p->size = p->nr_free = 0;
}

void slot_pool_reset(struct slot_pool *p)
{
	uint16_t i;

	/* Slot 0 on top, so a fresh pool hands out 0, 1, 2, ... */
	for (i = 0; i < p->size; i++) {
		p->free[i] = (uint16_t)(p->size - 1 - i);
		p->taken[i] = false;
	}
	p->nr_free = p->size;
}

int slot_get(struct slot_pool *p)
{
	uint16_t slot;

	if (!p->nr_free)
		return -EBUSY;
	slot = p->free[--p->nr_free];
	p->taken[slot] = true;
	return slot;
}

int slot_put(struct slot_pool *p, uint16_t slot)
{
	/* A double put would hand one slot to two requests and corrupt data
	 * on the server. */
	if (slot >= p->size || !p->taken[slot])
		return -EINVAL;
	p->taken[slot] = false;
	p->free[p->nr_free++] = slot;
	return 0;
}
