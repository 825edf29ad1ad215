// SPDX-License-Identifier: GPL-2.0-only
#include "sessions.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct session_row *row_of(struct session_rows *l, const struct reg_entry *e)
{
	bool zero = registry_uuid_is_zero(e->uuid);
	struct session_row *r;

	for (size_t i = 0; !zero && i < l->n; i++)
		if (!l->v[i].zero_uuid && !memcmp(l->v[i].uuid, e->uuid, 16))
			return &l->v[i];
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;

		r = realloc(l->v, cap * sizeof(*r));
		if (!r)
			return NULL;
		l->v = r;
		l->cap = cap;
	}
	r = &l->v[l->n++];
	memset(r, 0, sizeof(*r));
	memcpy(r->uuid, e->uuid, 16);
	r->zero_uuid = zero;
	return r;
}

static void collect(const struct reg_entry *e, void *arg)
{
	struct session_rows *l = arg;
	struct session_row *r = row_of(l, e);
	unsigned int i;

	if (!r) {
		l->oom = true;
		return;
	}
	if (!r->host_id[0])
		snprintf(r->host_id, sizeof(r->host_id), "%s", e->host_id);
	r->conns++;
	r->superseded += e->superseded;
	r->slot_bytes += e->slot_bytes;
	for (i = 0; i < r->npeers && strcmp(r->peers[i], e->peer); i++)
		;
	if (i == r->npeers && r->npeers < 8)
		snprintf(r->peers[r->npeers++], sizeof(r->peers[0]), "%s", e->peer);
	for (i = 0; i < SERVER_MAX_EXPORTS; i++) {
		r->handles[i] += __atomic_load_n(&e->opened[i], __ATOMIC_RELAXED);
		r->rw[i] |= e->rw[i] != 0;
	}
	io_counts_sum(&r->io, &e->io);
}

/* A session there now gets what its connections that left did. */
static void collect_past(const uint8_t uuid[16], const struct io_counts *io, void *arg)
{
	struct session_rows *l = arg;

	for (size_t i = 0; i < l->n; i++)
		if (!l->v[i].zero_uuid && !memcmp(l->v[i].uuid, uuid, 16))
			io_counts_sum(&l->v[i].io, io);
}

int session_rows_collect(struct registry *r, struct session_rows *l)
{
	registry_visit_all(r, collect, collect_past, l);
	return l->oom ? -ENOMEM : 0;
}

void session_rows_free(struct session_rows *l)
{
	free(l->v);
	l->v = NULL;
	l->n = l->cap = 0;
}
