// SPDX-License-Identifier: GPL-2.0-only
#include "registry.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* What the connections of a session that have left did (registry_leave). */
struct past_session {
	uint8_t uuid[16];
	struct io_counts io;
	uint64_t seq; /* when it was last added to: the oldest goes first */
};

struct registry {
	pthread_mutex_t lock;
	struct reg_entry *head;
	struct past_session *past; /* REGISTRY_PAST_SESSIONS, allocated at the first */
	unsigned int npast;
	uint64_t past_seq;
	uint64_t next_cookie;
	struct server_limits limits;
	unsigned int admitted;   /* connections */
	uint64_t admitted_bytes; /* their slot memory */
};

int registry_create(struct registry **out)
{
	struct registry *r = calloc(1, sizeof(*r));

	if (!r)
		return -ENOMEM;
	pthread_mutex_init(&r->lock, NULL);
	if (getrandom(&r->next_cookie, sizeof(r->next_cookie), 0) != sizeof(r->next_cookie))
		r->next_cookie = (uint64_t)time(NULL) << 20 ^ (uint64_t)getpid();
	*out = r;
	return 0;
}

uint64_t registry_open_cookie(struct registry *r)
{
	uint64_t c;

	pthread_mutex_lock(&r->lock);
	c = ++r->next_cookie ? r->next_cookie : ++r->next_cookie;
	pthread_mutex_unlock(&r->lock);
	return c;
}

void registry_set_limits(struct registry *r, const struct server_limits *l)
{
	pthread_mutex_lock(&r->lock);
	r->limits = *l;
	pthread_mutex_unlock(&r->lock);
}

static bool same_writer(const struct reg_entry *a, const struct reg_entry *b);

/* The host's sessions other than e's (sessions as the writer rule counts
 * them), among admitted entries. Caller holds the lock. A session is
 * counted at its first entry in the list. */
static unsigned int other_sessions(const struct registry *r, const struct reg_entry *e)
{
	unsigned int n = 0;

	for (const struct reg_entry *o = r->head; o; o = o->next) {
		const struct reg_entry *p;

		if (!o->admitted || strcmp(o->host_id, e->host_id) || same_writer(o, e))
			continue;
		for (p = r->head; p != o; p = p->next)
			if (p->admitted && !strcmp(p->host_id, o->host_id) && same_writer(p, o))
				break;
		n += p == o;
	}
	return n;
}

int registry_admit(struct registry *r, struct reg_entry *e, uint64_t slot_bytes, char *why,
		   size_t why_len)
{
	const struct server_limits *l = &r->limits;
	unsigned int host_conns = 0, sessions;
	int limit = 0;

	pthread_mutex_lock(&r->lock);
	if (e->admitted || !e->joined)
		goto out;
	for (const struct reg_entry *o = r->head; o; o = o->next)
		host_conns += o->admitted && !strcmp(o->host_id, e->host_id);
	sessions = other_sessions(r, e);
	if (l->max_connections && r->admitted >= l->max_connections) {
		limit = IBNBD_LIMIT_CONNECTIONS;
		snprintf(why, why_len, "the server has %u connections (max_connections %u)",
			 r->admitted, l->max_connections);
	} else if (l->max_connections_per_host && host_conns >= l->max_connections_per_host) {
		limit = IBNBD_LIMIT_CONNECTIONS_PER_HOST;
		snprintf(why, why_len, "host '%s' has %u connections (max_connections_per_host %u)",
			 e->host_id, host_conns, l->max_connections_per_host);
	} else if (l->max_sessions_per_host && sessions >= l->max_sessions_per_host) {
		limit = IBNBD_LIMIT_SESSIONS_PER_HOST;
		snprintf(why, why_len, "host '%s' has %u other sessions (max_sessions_per_host %u)",
			 e->host_id, sessions, l->max_sessions_per_host);
	} else if (l->max_slot_memory && slot_bytes > l->max_slot_memory - r->admitted_bytes) {
		limit = IBNBD_LIMIT_SLOT_MEMORY;
		snprintf(why, why_len,
			 "%llu MiB of slot memory is pinned and this connection needs %llu MiB more (max_slot_memory %llu MiB)",
			 (unsigned long long)(r->admitted_bytes >> 20),
			 (unsigned long long)((slot_bytes + (1u << 20) - 1) >> 20),
			 (unsigned long long)(l->max_slot_memory >> 20));
	} else {
		e->admitted = true;
		e->slot_bytes = slot_bytes;
		r->admitted++;
		r->admitted_bytes += slot_bytes;
	}
out:
	pthread_mutex_unlock(&r->lock);
	return limit;
}

void registry_usage(struct registry *r, unsigned int *conns, uint64_t *slot_bytes)
{
	pthread_mutex_lock(&r->lock);
	*conns = r->admitted;
	*slot_bytes = r->admitted_bytes;
	pthread_mutex_unlock(&r->lock);
}

void registry_visit_all(struct registry *r, void (*fn)(const struct reg_entry *e, void *arg),
			void (*past)(const uint8_t uuid[16], const struct io_counts *io, void *arg),
			void *arg)
{
	pthread_mutex_lock(&r->lock);
	for (const struct reg_entry *e = r->head; e; e = e->next)
		if (e->joined)
			fn(e, arg);
	for (unsigned int i = 0; past && i < r->npast; i++)
		past(r->past[i].uuid, &r->past[i].io, arg);
	pthread_mutex_unlock(&r->lock);
}

void registry_visit(struct registry *r, void (*fn)(const struct reg_entry *e, void *arg),
		    void *arg)
{
	registry_visit_all(r, fn, NULL, arg);
}

/* Under the lock: e leaves; its session keeps what its IO did. Without
 * memory for the table the counts are lost, nothing else. */
static void keep_past_io(struct registry *r, const struct reg_entry *e)
{
	struct past_session *p = NULL;
	unsigned int i;

	if (registry_uuid_is_zero(e->uuid))
		return;
	if (!r->past && !(r->past = calloc(REGISTRY_PAST_SESSIONS, sizeof(*r->past))))
		return;
	for (i = 0; i < r->npast && memcmp(r->past[i].uuid, e->uuid, 16); i++)
		;
	if (i < r->npast) {
		p = &r->past[i];
	} else if (r->npast < REGISTRY_PAST_SESSIONS) {
		p = &r->past[r->npast++];
	} else {
		p = &r->past[0];
		for (i = 1; i < r->npast; i++)
			if (r->past[i].seq < p->seq)
				p = &r->past[i];
	}
	if (memcmp(p->uuid, e->uuid, 16)) {
		memset(p, 0, sizeof(*p));
		memcpy(p->uuid, e->uuid, 16);
	}
	io_counts_sum(&p->io, &e->io);
	p->seq = ++r->past_seq;
}

void registry_destroy(struct registry *r)
{
	if (!r)
		return;
	pthread_mutex_destroy(&r->lock);
	free(r->past);
	free(r);
}

bool registry_uuid_is_zero(const uint8_t uuid[16])
{
	for (unsigned int i = 0; i < 16; i++)
		if (uuid[i])
			return false;
	return true;
}

void registry_uuid_str(const uint8_t u[16], char out[REGISTRY_UUID_STR])
{
	snprintf(out, REGISTRY_UUID_STR,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1],
		 u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14],
		 u[15]);
}

/* An eventfd write: the owner thread will ask us what changed. */
static void kick(const struct reg_entry *e)
{
	uint64_t one = 1;

	if (write(e->kick_fd, &one, sizeof(one)) < 0) {
		/* EAGAIN: the counter is saturated, so a wakeup is pending anyway. */
	}
}

static bool same_conn(const struct reg_entry *a, const struct reg_entry *b)
{
	return !registry_uuid_is_zero(a->uuid) && !memcmp(a->uuid, b->uuid, 16) &&
	       a->conn_index == b->conn_index;
}

/* Same client session for the writer rule (see registry.h). */
static bool same_writer(const struct reg_entry *a, const struct reg_entry *b)
{
	if (a == b)
		return true;
	if (registry_uuid_is_zero(a->uuid) != registry_uuid_is_zero(b->uuid))
		return false;
	if (!registry_uuid_is_zero(a->uuid))
		return !memcmp(a->uuid, b->uuid, 16);
	return a->host_id[0] && !strcmp(a->host_id, b->host_id);
}

static void describe(const struct reg_entry *e, char *buf, size_t len)
{
	char u[REGISTRY_UUID_STR];

	if (registry_uuid_is_zero(e->uuid)) {
		snprintf(buf, len, "a connection without session uuid from %s host '%s'", e->peer,
			 e->host_id);
		return;
	}
	registry_uuid_str(e->uuid, u);
	snprintf(buf, len, "session %s from %s host '%s'", u, e->peer, e->host_id);
}

/* Caller holds the lock. */
static void supersede(struct reg_entry *old, const char *why)
{
	if (old->superseded)
		return;
	old->superseded = true;
	snprintf(old->fence_reason, sizeof(old->fence_reason), "%s", why);
	kick(old);
}

void registry_join(struct registry *r, struct reg_entry *e)
{
	char u[REGISTRY_UUID_STR], why[256];

	registry_uuid_str(e->uuid, u);
	snprintf(why, sizeof(why), "superseded by a reconnect of session %s conn %u/%u from %s", u,
		 e->conn_index, e->conn_count, e->peer);
	pthread_mutex_lock(&r->lock);
	for (struct reg_entry *o = r->head; o; o = o->next)
		if (same_conn(o, e))
			supersede(o, why);
	e->prev = NULL;
	e->next = r->head;
	if (r->head)
		r->head->prev = e;
	r->head = e;
	e->joined = true;
	pthread_mutex_unlock(&r->lock);
}

void registry_leave(struct registry *r, struct reg_entry *e)
{
	pthread_mutex_lock(&r->lock);
	if (e->joined) {
		if (e->prev)
			e->prev->next = e->next;
		else
			r->head = e->next;
		if (e->next)
			e->next->prev = e->prev;
		e->joined = false;
		e->waiting = false;
		if (e->admitted) {
			r->admitted--;
			r->admitted_bytes -= e->slot_bytes;
			e->admitted = false;
		}
		memset(e->rw, 0, sizeof(e->rw));
		keep_past_io(r, e);
		/* Whoever waits may wait for us: let them look again. */
		for (struct reg_entry *o = r->head; o; o = o->next)
			if (o->waiting)
				kick(o);
	}
	pthread_mutex_unlock(&r->lock);
}

void registry_set_host(struct registry *r, struct reg_entry *e, const char *host_id)
{
	pthread_mutex_lock(&r->lock);
	snprintf(e->host_id, sizeof(e->host_id), "%s", host_id);
	pthread_mutex_unlock(&r->lock);
}

bool registry_fence_pending(struct registry *r, struct reg_entry *e)
{
	bool pending = false;

	pthread_mutex_lock(&r->lock);
	for (struct reg_entry *o = r->head; o && !pending; o = o->next)
		pending = o != e && o->superseded && same_conn(o, e);
	e->waiting = pending;
	pthread_mutex_unlock(&r->lock);
	return pending;
}

int registry_open_rw(struct registry *r, struct reg_entry *e, unsigned int idx, bool shared,
		     const char *export_name, char *holder, size_t holder_len)
{
	bool conflict = false, takeover = !registry_uuid_is_zero(e->uuid) && e->host_id[0];
	char u[REGISTRY_UUID_STR], why[256];
	int ret = 0;

	pthread_mutex_lock(&r->lock);
	for (struct reg_entry *o = r->head; o && !shared; o = o->next) {
		if (!o->rw[idx] || same_writer(o, e))
			continue;
		if (!conflict)
			describe(o, holder, holder_len);
		conflict = true;
		if (strcmp(o->host_id, e->host_id))
			takeover = false;
	}
	if (!conflict) {
		e->rw[idx]++;
		e->waiting = false;
	} else if (!takeover) {
		ret = -EBUSY;
		e->waiting = false;
	} else {
		/*
		 * The client daemon of the same host restarted with a new session:
		 * every connection of the old session goes, and the export is
		 * granted once none of its writers has backing IO in flight.
		 */
		registry_uuid_str(e->uuid, u);
		snprintf(why, sizeof(why),
			 "taken over by session %s of the same host '%s' (read-write OPEN of '%s' from %s)",
			 u, e->host_id, export_name, e->peer);
		for (struct reg_entry *o = r->head; o; o = o->next) {
			if (!o->rw[idx] || same_writer(o, e))
				continue;
			for (struct reg_entry *p = r->head; p; p = p->next)
				if (same_writer(p, o))
					supersede(p, why);
		}
		e->waiting = true;
		ret = 1;
	}
	pthread_mutex_unlock(&r->lock);
	return ret;
}

void registry_close_rw(struct registry *r, struct reg_entry *e, unsigned int idx)
{
	pthread_mutex_lock(&r->lock);
	if (e->rw[idx])
		e->rw[idx]--;
	pthread_mutex_unlock(&r->lock);
}

void registry_stop_waiting(struct registry *r, struct reg_entry *e)
{
	pthread_mutex_lock(&r->lock);
	e->waiting = false;
	pthread_mutex_unlock(&r->lock);
}

bool registry_superseded(struct registry *r, struct reg_entry *e, char *why, size_t why_len)
{
	bool s;

	pthread_mutex_lock(&r->lock);
	s = e->superseded;
	if (s)
		snprintf(why, why_len, "%s", e->fence_reason);
	pthread_mutex_unlock(&r->lock);
	return s;
}
