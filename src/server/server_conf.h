/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * ibnbd-server configuration: listen addresses, exports and tunables, from
 * the command line and/or an INI-like file:
 *
 *   # comment
 *   listen = 192.0.2.10:4422        (repeatable; also in a [server] section)
 *   workers = 4
 *   keepalive_timeout = 15          (seconds; 0 = never)
 *   [export NAME]
 *   path = /dev/nvme0n1
 *   ro                              (or: ro = yes|no|true|false|1|0)
 *   shared                          (several client sessions may write)
 *
 * Errors name the file and line.
 */
#ifndef IBNBD_SERVER_CONF_H
#define IBNBD_SERVER_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "endpoint.h"
#include "ibnbd/proto.h"

#define SERVER_MAX_LISTEN 16
#define SERVER_MAX_EXPORTS 256
#define SERVER_MAX_WORKERS 64

struct export_spec {
	char name[IBNBD_EXPORT_NAME_MAX];
	char path[4096];
	bool ro;
	bool shared; /* no single-writer rule: several sessions may open it rw */
};

struct server_config {
	struct endpoint listen[SERVER_MAX_LISTEN];
	unsigned int nlisten;
	struct export_spec exports[SERVER_MAX_EXPORTS];
	unsigned int nexports;
	unsigned int workers;     /* 0: min(online CPUs, 4) */
	unsigned int queue_depth; /* per-connection cap */
	uint32_t max_io_size;     /* per-connection cap, bytes */
	unsigned int keepalive_timeout; /* seconds of silence before a drop; 0 = never */
};

#define SERVER_DEFAULT_KEEPALIVE_TIMEOUT 15
#define SERVER_MAX_KEEPALIVE_TIMEOUT 3600

void config_init(struct server_config *cfg);
/* "NAME=PATH[,ro|rw][,shared]". 0 or -EINVAL with a sentence in err. */
int config_add_export(struct server_config *cfg, const char *spec, char *err, size_t errlen);
/* "S" seconds, 0..SERVER_MAX_KEEPALIVE_TIMEOUT. */
int config_set_keepalive_timeout(struct server_config *cfg, const char *v, char *err,
				 size_t errlen);
int config_add_listen(struct server_config *cfg, const char *addr, char *err, size_t errlen);
/* Reads FILE; on error err holds "FILE:LINE: what". */
int config_load(struct server_config *cfg, const char *path, char *err, size_t errlen);

#endif
