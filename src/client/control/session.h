/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A session: everything the client has open on one server (host:port).
 * W connections, connection q attached to worker q, shared by every device
 * mapped from that server; each device is opened on every connection.
 *
 * Each session has a thread that sleeps until a worker reports a lost
 * connection, then reconnects all W with backoff (first try at once, then
 * doubling up to the cap), re-opens every device, checks each export is
 * still the one it was (size, block size), and attaches the new connections
 * to the workers, which send again what was in flight. States:
 *
 *   LIVE ──lost──▶ RECONNECTING ──down > loss timeout──▶ FAILED
 *    ▲                  │                                   │
 *    └──── reconnected ─┴───────────────────────────────────┘
 *
 * Only the control thread creates, destroys and maps through sessions.
 */
#ifndef IBNBD_CLIENT_SESSION_H
#define IBNBD_CLIENT_SESSION_H

#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>

#include "transport/conn.h"
#include "dataplane/dataplane.h"

/* Local RDMA devices a session may connect from over its life. */
#define SESSION_MAX_PDS 4

struct session_config {
	const char *host;
	uint16_t port;
	const char *host_id;
	const unsigned char *secret; /* this host's key, or NULL; outlives the session */
	const struct client_tunables *t;
	struct worker **workers;       /* t->workers of them */
	/* Do not connect now: start reconnecting in the background (a device
	 * being recovered while its server is away). */
	bool start_down;
};

/* Connects every connection and attaches them to the workers. On failure
 * err holds the operator's sentence. */
int session_create(const struct session_config *cfg, struct session **out, char *err,
		   size_t errlen);
/* Stops reconnecting, detaches and closes every connection. The session
 * must have no device left. Waits for a reconnect attempt under way to end
 * (reconnect_ms at most). */
void session_destroy(struct session *s);
/*
 * The daemon is leaving its devices to the next one (a SIGTERM is an
 * upgrade): the workers send nothing new on the session; returns how many
 * requests are still in flight on it (call again until 0, or give up).
 */
unsigned int session_quiesce(struct session *s);
/* Then: closes the connections without answering what waits; the kernel
 * re-issues it to the next daemon. */
void session_leave(struct session *s);

const char *session_host(const struct session *s);
uint16_t session_port(const struct session *s);
unsigned int session_nr_devices(struct session *s);
/* The largest IO the session's connections carry. */
uint32_t session_max_io(const struct session *s);
struct ibv_pd *session_pd(const struct session *s);

/*
 * Opens d->export_name (d->read_only) on every connection, fills d->info and
 * d->handles[], and adds d to the devices re-opened on reconnect.
 * When the session is not live: fails at once with a sentence, or, with
 * may_wait (d->info already known, a device being recovered), adds d so that
 * the reconnect opens it.
 */
int session_open_device(struct session *s, struct device *d, bool may_wait, char *err,
			size_t errlen);
/* Forgets d and closes its handles (when the session is live). */
void session_close_device(struct session *s, struct device *d);

/* Adds the session's state to device d's `list` entry. */
void session_describe(struct session *s, const struct device *d, json_object *o);

#endif
