// SPDX-License-Identifier: GPL-2.0-only
#include "handshakes.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

struct hs_addr hs_addr_of(const struct sockaddr *sa)
{
	struct hs_addr a = { 0 };

	if (sa && sa->sa_family == AF_INET) {
		a.family = AF_INET;
		memcpy(a.bytes, &((const struct sockaddr_in *)sa)->sin_addr, 4);
	} else if (sa && sa->sa_family == AF_INET6) {
		const struct in6_addr *in6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;

		if (IN6_IS_ADDR_V4MAPPED(in6)) { /* the same host as its IPv4 address */
			a.family = AF_INET;
			memcpy(a.bytes, &in6->s6_addr[12], 4);
		} else {
			a.family = AF_INET6;
			memcpy(a.bytes, in6, 16);
		}
	}
	return a;
}

int handshakes_init(struct handshakes *h, unsigned int max_total, unsigned int max_per_addr)
{
	memset(h, 0, sizeof(*h));
	h->max_total = max_total;
	h->max_per_addr = max_per_addr;
	/* At most max_total connections: at most that many addresses. */
	h->by_addr = calloc(max_total ? max_total : 1, sizeof(*h->by_addr));
	if (!h->by_addr)
		return -ENOMEM;
	pthread_mutex_init(&h->lock, NULL);
	return 0;
}

void handshakes_destroy(struct handshakes *h)
{
	if (!h->by_addr)
		return;
	pthread_mutex_destroy(&h->lock);
	free(h->by_addr);
	h->by_addr = NULL;
}

static struct hs_entry *find(struct handshakes *h, const struct hs_addr *a)
{
	unsigned int i;

	for (i = 0; i < h->naddrs; i++)
		if (!memcmp(&h->by_addr[i].addr, a, sizeof(*a)))
			return &h->by_addr[i];
	return NULL;
}

enum hs_refusal handshakes_enter(struct handshakes *h, const struct hs_addr *a)
{
	enum hs_refusal r = HS_OK;
	struct hs_entry *e;

	pthread_mutex_lock(&h->lock);
	e = find(h, a);
	if (h->total >= h->max_total) {
		r = HS_TOTAL;
	} else if (e && e->n >= h->max_per_addr) {
		r = HS_PER_ADDR;
	} else {
		if (!e) { /* total < max_total, so there is room */
			e = &h->by_addr[h->naddrs++];
			e->addr = *a;
			e->n = 0;
		}
		e->n++;
		h->total++;
	}
	pthread_mutex_unlock(&h->lock);
	return r;
}

void handshakes_leave(struct handshakes *h, const struct hs_addr *a)
{
	struct hs_entry *e;

	pthread_mutex_lock(&h->lock);
	e = find(h, a);
	if (e && e->n) {
		h->total--;
		if (!--e->n)
			*e = h->by_addr[--h->naddrs];
	}
	pthread_mutex_unlock(&h->lock);
}

unsigned int handshakes_count(struct handshakes *h, const struct hs_addr *a)
{
	const struct hs_entry *e;
	unsigned int n;

	pthread_mutex_lock(&h->lock);
	if (a) {
		e = find(h, a);
		n = e ? e->n : 0;
	} else {
		n = h->total;
	}
	pthread_mutex_unlock(&h->lock);
	return n;
}
