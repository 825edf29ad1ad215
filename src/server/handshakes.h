/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Connections that have not proven who they are yet (accepted, before an
 * answered HELLO), counted in all and per source address, across every
 * worker: a flood of them from one address cannot take the whole
 * max_handshakes budget, so hosts elsewhere still get in. Only the connect
 * path takes the mutex, never the IO path.
 */
#ifndef IBNBD_SERVER_HANDSHAKES_H
#define IBNBD_SERVER_HANDSHAKES_H

#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>

/* A source address as a key: the family and the address bytes (no port). */
struct hs_addr {
	uint16_t family;
	uint8_t bytes[16];
};

struct handshakes {
	pthread_mutex_t lock;
	unsigned int max_total, max_per_addr;
	unsigned int total;
	/* The addresses with at least one connection in its handshake,
	 * packed (a slot that drops to 0 takes the last one's place). */
	struct hs_entry {
		struct hs_addr addr;
		unsigned int n;
	} *by_addr;
	unsigned int naddrs;
};

enum hs_refusal { HS_OK, HS_TOTAL, HS_PER_ADDR };

/* The key for a socket address (NULL or an unknown family: one shared key). */
struct hs_addr hs_addr_of(const struct sockaddr *sa);
int handshakes_init(struct handshakes *h, unsigned int max_total, unsigned int max_per_addr);
void handshakes_destroy(struct handshakes *h);
/* Counts one more connection from a, unless a limit says no. */
enum hs_refusal handshakes_enter(struct handshakes *h, const struct hs_addr *a);
/* Its handshake ended (HELLO answered, or the connection went). */
void handshakes_leave(struct handshakes *h, const struct hs_addr *a);
/* Connections in their handshake now: in all, or from a. */
unsigned int handshakes_count(struct handshakes *h, const struct hs_addr *a);

#endif
