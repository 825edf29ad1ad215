// SPDX-License-Identifier: GPL-2.0-only
/*
 * The server's registry (src/server/registry.c): which connection a
 * reconnect supersedes, who may open an export read-write, takeover by a
 * new session of the same host, and the kicks that wake the owners.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "registry.h"
#include "tap.h"

static int efd;
/* Every entry made, freed at the end (the registry never owns them). */
static struct reg_entry *made[64];
static unsigned int nmade;

/* Kicks since the last call (the eventfd counter). */
static uint64_t kicks(void)
{
	uint64_t n = 0;

	if (read(efd, &n, sizeof(n)) != sizeof(n))
		return 0;
	return n;
}

static struct reg_entry *conn(struct registry *r, uint8_t uuid_byte, uint16_t index,
			      const char *host)
{
	struct reg_entry *e = calloc(1, sizeof(*e));

	if (!e || nmade == sizeof(made) / sizeof(made[0]))
		exit(99);
	made[nmade++] = e;
	memset(e->uuid, uuid_byte, sizeof(e->uuid));
	e->conn_index = index;
	e->conn_count = 2;
	e->kick_fd = efd;
	snprintf(e->peer, sizeof(e->peer), "192.0.2.1:%u", 1000u + uuid_byte * 10 + index);
	registry_join(r, e);
	registry_set_host(r, e, host);
	return e;
}

/* registry_visit_all()'s sums per session uuid byte: live, then past. */
struct io_sums {
	uint64_t live[256], past[256];
};

static void sum_live(const struct reg_entry *e, void *arg)
{
	((struct io_sums *)arg)->live[e->uuid[0]] += e->io.write_bytes;
}

/* conn()'s uuids are one byte repeated; the others count at 0. */
static void sum_past(const uint8_t uuid[16], const struct io_counts *io, void *arg)
{
	((struct io_sums *)arg)->past[uuid[1] == uuid[0] ? uuid[0] : 0] += io->write_bytes;
}

/* A session's IO adds up across its connections that left, and the table
 * of past sessions keeps the REGISTRY_PAST_SESSIONS seen last. */
static void test_past_io(void)
{
	struct registry *r;
	struct reg_entry *e, *e2, *many;
	struct io_sums s = { 0 };

	if (registry_create(&r))
		exit(99);
	e = conn(r, 0x51, 0, "host-a");
	e->io.write_bytes = 4096;
	registry_leave(r, e);
	registry_leave(r, e); /* a second leave adds nothing */
	e2 = conn(r, 0x51, 0, "host-a"); /* the reconnect */
	e2->io.write_bytes = 8192;
	registry_visit_all(r, sum_live, sum_past, &s);
	ok(s.live[0x51] == 8192 && s.past[0x51] == 4096,
	   "a session's reconnected connection, and what the one that left wrote (%llu, %llu)",
	   (unsigned long long)s.live[0x51], (unsigned long long)s.past[0x51]);
	registry_leave(r, e2);
	memset(&s, 0, sizeof(s));
	registry_visit_all(r, sum_live, sum_past, &s);
	ok(s.live[0x51] == 0 && s.past[0x51] == 12288, "both left: the session's past adds up");
	/* More sessions than the table holds: the oldest (0x51) goes. */
	many = calloc(1, sizeof(*many));
	if (!many)
		exit(99);
	for (unsigned int i = 0; i < REGISTRY_PAST_SESSIONS; i++) {
		memset(many, 0, sizeof(*many));
		memcpy(many->uuid + 1, &i, sizeof(i)); /* uuid[0] 0: counted at 0 */
		many->uuid[15] = 0xee;
		many->kick_fd = efd;
		many->io.write_bytes = 1;
		registry_join(r, many);
		registry_leave(r, many);
	}
	free(many);
	memset(&s, 0, sizeof(s));
	registry_visit_all(r, sum_live, sum_past, &s);
	ok(s.past[0x51] == 0 && s.past[0] == REGISTRY_PAST_SESSIONS,
	   "past %d newer sessions, the oldest is forgotten (%llu)", REGISTRY_PAST_SESSIONS,
	   (unsigned long long)s.past[0]);
	registry_destroy(r);
}

static int open_rw(struct registry *r, struct reg_entry *e, bool shared)
{
	char holder[256];

	return registry_open_rw(r, e, 3, shared, "vol", holder, sizeof(holder));
}

int main(void)
{
	struct registry *r;
	struct reg_entry *a0, *a1, *a0b, *b, *c, *z1, *z2, *z3, *d;
	char why[256], u[REGISTRY_UUID_STR];
	uint8_t id[16];

	efd = eventfd(0, EFD_NONBLOCK);
	if (efd < 0 || registry_create(&r))
		return 99;

	for (unsigned int i = 0; i < 16; i++)
		id[i] = (uint8_t)(i * 17);
	registry_uuid_str(id, u);
	ok(!strcmp(u, "00112233-4455-6677-8899-aabbccddeeff"), "uuid printed as %s", u);
	memset(id, 0, sizeof(id));
	ok(registry_uuid_is_zero(id), "all-zero uuid is none");

	/* Fencing. */
	a0 = conn(r, 0xa, 0, "hostA");
	a1 = conn(r, 0xa, 1, "hostA");
	kicks();
	ok(!registry_fence_pending(r, a0), "a first connection waits for nobody");
	a0b = conn(r, 0xa, 0, "hostA");
	ok(kicks() >= 1, "the owner of the superseded connection is kicked");
	ok(registry_superseded(r, a0, why, sizeof(why)) && strstr(why, "superseded by a reconnect"),
	   "conn 0 superseded: %s", why);
	ok(!registry_superseded(r, a1, why, sizeof(why)), "conn 1 of the session is left alone");
	ok(registry_fence_pending(r, a0b), "the reconnect waits for the old conn 0");
	registry_leave(r, a0);
	ok(kicks() >= 1, "a drained connection wakes the waiter");
	ok(!registry_fence_pending(r, a0b), "the reconnect goes on once the old one left");
	registry_leave(r, a0);
	ok(1, "leaving twice is harmless");

	/* Writers. */
	ok(open_rw(r, a1, false) == 0, "session A opens read-write");
	ok(open_rw(r, a0b, false) == 0, "another connection of session A shares the role");
	b = conn(r, 0xb, 0, "hostB");
	ok(open_rw(r, b, false) == -EBUSY, "session B of another host is refused");
	ok(open_rw(r, b, true) == 0, "... unless the export is shared");
	registry_close_rw(r, b, 3);
	z1 = conn(r, 0, 0, "hostA");
	ok(open_rw(r, z1, false) == -EBUSY,
	   "a zero-uuid connection cannot take over, even from the same host");
	kicks();
	c = conn(r, 0xc, 0, "hostA");
	ok(open_rw(r, c, false) == 1, "session C of host A takes over: it waits");
	ok(kicks() >= 2, "the old session's connections are kicked");
	ok(registry_superseded(r, a1, why, sizeof(why)) && strstr(why, "taken over by session"),
	   "A conn 1: %s", why);
	ok(registry_superseded(r, a0b, why, sizeof(why)), "A conn 0 too");
	ok(open_rw(r, b, false) == -EBUSY, "B is still refused while A drains");
	registry_leave(r, a1);
	ok(open_rw(r, c, false) == 1, "C still waits for A's other connection");
	registry_leave(r, a0b);
	ok(open_rw(r, c, false) == 0, "C is granted once A has drained");
	ok(open_rw(r, b, false) == -EBUSY, "now C holds it against B");
	registry_close_rw(r, c, 3);
	ok(open_rw(r, b, false) == 0, "after C closed its handle B may write");
	registry_leave(r, b);

	/* Zero-uuid connections: each its own session, one writer per host. */
	z2 = conn(r, 0, 0, "hostZ");
	z3 = conn(r, 0, 0, "hostZ");
	ok(!registry_superseded(r, z1, why, sizeof(why)),
	   "zero-uuid connections never supersede each other");
	ok(open_rw(r, z2, false) == 0, "zero-uuid connection of host Z writes");
	ok(open_rw(r, z3, false) == 0, "another zero-uuid connection of host Z shares");
	ok(open_rw(r, z1, false) == -EBUSY, "a zero-uuid connection of host A is refused");
	d = conn(r, 0xd, 0, "hostZ");
	ok(open_rw(r, d, false) == 1, "a session of host Z takes over from its zero-uuid writers");
	registry_leave(r, z2);
	registry_leave(r, z3);
	ok(open_rw(r, d, false) == 0, "... once they have drained");

	registry_leave(r, c);
	registry_leave(r, z1);
	registry_leave(r, d);

	/* Admission: the limits count admitted connections until they leave. */
	{
		struct server_limits lim = { .max_connections = 5, .max_connections_per_host = 3,
					     .max_sessions_per_host = 2,
					     .max_slot_memory = 10u << 20 };
		struct reg_entry *p[8];
		unsigned int nconn;
		uint64_t bytes;

		registry_set_limits(r, &lim);
		p[0] = conn(r, 0x21, 0, "hostP");
		p[1] = conn(r, 0x21, 1, "hostP");
		p[2] = conn(r, 0x22, 0, "hostP");
		p[3] = conn(r, 0x23, 0, "hostP");
		ok(registry_admit(r, p[0], 1u << 20, why, sizeof(why)) == 0 &&
		   registry_admit(r, p[1], 1u << 20, why, sizeof(why)) == 0,
		   "two connections of one session are admitted");
		ok(registry_admit(r, p[0], 1u << 20, why, sizeof(why)) == 0,
		   "admitting again counts nothing twice");
		registry_usage(r, &nconn, &bytes);
		ok(nconn == 2 && bytes == 2u << 20, "usage: 2 connections, 2 MiB (%u, %llu)", nconn,
		   (unsigned long long)bytes);
		ok(registry_admit(r, p[2], 1u << 20, why, sizeof(why)) == 0,
		   "a second session of the host is admitted");
		ok(registry_admit(r, p[3], 1u << 20, why, sizeof(why)) ==
			   IBNBD_LIMIT_CONNECTIONS_PER_HOST && strstr(why, "max_connections_per_host 3"),
		   "a fourth connection of the host is refused, naming the limit (%s)", why);
		registry_leave(r, p[2]);
		ok(registry_admit(r, p[3], 1u << 20, why, sizeof(why)) == 0,
		   "once a connection left, the host may have another");
		p[4] = conn(r, 0x24, 0, "hostP");
		registry_leave(r, p[1]);
		ok(registry_admit(r, p[4], 1u << 20, why, sizeof(why)) ==
			   IBNBD_LIMIT_SESSIONS_PER_HOST && strstr(why, "max_sessions_per_host 2"),
		   "a third session of the host is refused, naming the limit (%s)", why);
		p[5] = conn(r, 0x31, 0, "hostQ");
		p[6] = conn(r, 0x32, 0, "hostR");
		ok(registry_admit(r, p[5], 9u << 20, why, sizeof(why)) == IBNBD_LIMIT_SLOT_MEMORY &&
		   strstr(why, "max_slot_memory 10 MiB"),
		   "a connection whose slots would pass the memory budget is refused (%s)", why);
		ok(registry_admit(r, p[5], 8u << 20, why, sizeof(why)) == 0,
		   "one that fits the budget exactly is admitted");
		lim.max_slot_memory = 0;
		lim.max_connections = 4;
		registry_set_limits(r, &lim);
		ok(registry_admit(r, p[6], 1u << 20, why, sizeof(why)) == 0,
		   "another host is admitted up to the total");
		p[7] = conn(r, 0x33, 0, "hostS");
		ok(registry_admit(r, p[7], 1u << 20, why, sizeof(why)) == IBNBD_LIMIT_CONNECTIONS &&
		   strstr(why, "max_connections 4"),
		   "past the total every host is refused, naming the limit (%s)", why);
		registry_leave(r, p[0]);
		registry_leave(r, p[3]);
		registry_leave(r, p[5]);
		registry_leave(r, p[6]);
		registry_usage(r, &nconn, &bytes);
		ok(nconn == 0 && bytes == 0, "leaving returns every count (%u, %llu)", nconn,
		   (unsigned long long)bytes);
		registry_leave(r, p[4]);
		registry_leave(r, p[7]);
	}
	registry_destroy(r);
	test_past_io();
	close(efd);
	while (nmade)
		free(made[--nmade]);
	return tap_done();
}
