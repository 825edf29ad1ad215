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

struct client;

/* Zero means the default for every field. */
struct client_opts {
	unsigned int workers;        /* default min(online CPUs, 4) */
	unsigned int dead_timeout_ms; /* silence that declares a server dead; 4000 */
	int loss_timeout_s;          /* down this long: IO fails; 120; -1 = never */
	int io_timeout_s;            /* unanswered request: reconnect; 30; -1 = never */
	const char *state_path;      /* mapped devices are recorded there; NULL: not */
};

struct map_args {
	const char *server; /* host, without port */
	uint16_t port;
	const char *export_name;
	bool read_only;
	const char *name; /* NULL: the device's own name */
};

int client_create(const struct client_opts *opts, struct client **out);
/* Unmaps every device, closes every session. */
void client_destroy(struct client *c);

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
 * reconnects. Returns how many devices were recovered.
 */
int client_recover(struct client *c);
/* A new JSON array describing every device (docs/control-protocol.md). */
json_object *client_list(struct client *c);

#endif
