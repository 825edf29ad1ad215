/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * ibnbd-server configuration: listen addresses, exports and tunables, from
 * the command line and/or an INI-like file:
 *
 *   # comment
 *   listen = 192.0.2.10:4422        (repeatable; also in a [server] section)
 *   workers = 4
 *   [export NAME]
 *   path = /dev/nvme0n1
 *   ro                              (or: ro = yes|no|true|false|1|0)
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
};

struct server_config {
	struct endpoint listen[SERVER_MAX_LISTEN];
	unsigned int nlisten;
	struct export_spec exports[SERVER_MAX_EXPORTS];
	unsigned int nexports;
	unsigned int workers;     /* 0: min(online CPUs, 4) */
	unsigned int queue_depth; /* per-connection cap */
	uint32_t max_io_size;     /* per-connection cap, bytes */
};

void config_init(struct server_config *cfg);
/* "NAME=PATH[,ro]". 0 or -EINVAL with a sentence in err. */
int config_add_export(struct server_config *cfg, const char *spec, char *err, size_t errlen);
int config_add_listen(struct server_config *cfg, const char *addr, char *err, size_t errlen);
/* Reads FILE; on error err holds "FILE:LINE: what". */
int config_load(struct server_config *cfg, const char *path, char *err, size_t errlen);

#endif
