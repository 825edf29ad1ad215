/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The client's data plane as the daemon's control thread sees it: workers,
 * sessions to servers, and the ublk devices mapped over them.
 */
#ifndef IBNBD_CLIENT_H
#define IBNBD_CLIENT_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "busypoll.h"

struct client;

/* Zero means the default for every field. */
struct client_opts {
	unsigned int workers;        /* default min(online CPUs, 4) */
	unsigned int dead_timeout_ms; /* silence that declares a server dead; 4000 */
	int loss_timeout_s;          /* down this long: IO fails; 120; -1 = never */
	int io_timeout_s;            /* unanswered request: reconnect; 30; -1 = never */
	const char *state_path;      /* mapped devices are recorded there; NULL: not */
	const char *host_id;         /* NULL: derived from the machine id (hostid.h) */
	const char *machine_id_path; /* NULL: /etc/machine-id */
	const char *key_file;        /* NULL: CONN_DEFAULT_KEY_FILE if there */
	uint32_t max_io_bytes;       /* largest request; 128 KiB */
	struct busypoll_config poll; /* off: interrupts */
};

struct map_args {
	const char *server; /* host, without port */
	uint16_t port;
	const char *export_name;
	bool read_only;
	bool rw_required; /* a read-only export fails the map, not mapped ro */
	const char *name; /* NULL: the device's own name */
	int loss_timeout_s; /* 0: the daemon's; -1: IO waits forever */
	bool *mapped_ro;  /* out (may be NULL): the export only allowed reading,
			   * so the device was mapped read-only */
};

/* On failure err says why (no machine id, no ublk, ...). */
int client_create(const struct client_opts *opts, struct client **out, char *err,
		  size_t errlen);
/* Leaves every device to the next daemon (a SIGTERM is an upgrade): what
 * is in flight is answered first, nothing is stopped or deleted; the kernel
 * holds what comes meanwhile. No verb may run any more. */
void client_destroy(struct client *c);
/* The id this daemon presents to servers. */
const char *client_host_id(const struct client *c);
unsigned int client_workers(const struct client *c);
/* Whether the daemon authenticates to servers with a key. */
bool client_has_key(const struct client *c);

/* Maps an export; on success devpath is the usable /dev/ublkbN. On error
 * err holds a sentence for the operator. */
int client_map(struct client *c, const struct map_args *args, char *devpath,
	       size_t devlen, char *err, size_t errlen);
int client_unmap(struct client *c, const char *devpath, bool force, char *err,
		 size_t errlen);
/*
 * Takes over the devices a previous daemon recorded in the state file and
 * left behind (killed, crashed, upgraded): each keeps its /dev/ublkbN, and
 * the IO the kernel held meanwhile is served. A device whose server is
 * unreachable is recovered anyway; its IO waits while the session
 * reconnects; one whose export changed is taken over failed (its IO
 * fails). One the kernel will not hand over yet (START_USER_RECOVERY
 * refused) stays in the state file and in `list`, failed with why, and is
 * tried again by client_retry_recovery(). Returns how many were recovered.
 */
int client_recover(struct client *c);
/* Tries every device not taken over yet again; how many were. */
int client_retry_recovery(struct client *c);
bool client_has_unrecovered(struct client *c);
/* A device called name (mapped, being mapped, or not taken over yet). */
bool client_has_device(struct client *c, const char *name);
/* A new JSON array describing every device (docs/control-protocol.md). */
json_object *client_list(struct client *c);

#endif
