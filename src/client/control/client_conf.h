/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * /etc/ibnbd/client.conf: the daemon's options and the maps it makes at
 * start, in server.conf's INI dialect (ini.h):
 *
 *   [client]                    (optional: keys before any section are its)
 *   workers = 4
 *   dead_timeout = 4            (seconds)
 *   loss_timeout = 120          (seconds; 0 = IO waits forever)
 *   io_timeout = 30             (seconds; 0 = never re-sent)
 *   host_id = ID                (default: derived from /etc/machine-id)
 *   key_file = /etc/ibnbd/client.key
 *   metrics = 127.0.0.1:9643    (Prometheus /metrics over HTTP; default off)
 *   max_io_size = 128K          (largest request, up to 1M; K/M suffixes)
 *   poll = no                   (yes: workers busy-poll, never sleep)
 *   poll_idle_us = 0            (polling: sleep after this long idle; 0 never)
 *
 *   [map NAME]                  (mapped at start as /dev/ibnbd/NAME)
 *   server = ADDR[:PORT]
 *   export = EXPORT
 *   ro                          (or: ro = yes|no)
 *   loss_timeout = 30           (this device's; default the daemon's)
 *
 * Errors name the file and line. docs/client-config.md and
 * ibnbd-client.conf(5) describe it for operators. Pure code (unit-tested).
 */
#ifndef IBNBD_CLIENT_CONF_H
#define IBNBD_CLIENT_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "busypoll.h"
#include "cli/cli_args.h"
#include "endpoint.h"
#include "ibnbd/proto.h"

#define CLIENT_CONF_MAX_MAPS 256

struct map_conf {
	char name[CLI_NAME_MAX + 1];
	struct endpoint server;
	char export_name[IBNBD_EXPORT_NAME_MAX];
	bool read_only;
	int loss_timeout_s; /* 0: the daemon's; -1: IO waits forever */
};

/* Zero is "not set" for every option, as in struct client_opts. */
struct client_config {
	unsigned int workers;
	unsigned int dead_timeout_ms;
	int loss_timeout_s; /* -1: never */
	int io_timeout_s;   /* -1: never */
	char host_id[IBNBD_HOST_ID_MAX];
	char key_file[4096];
	char metrics[300];  /* ADDR:PORT, or "" */
	uint32_t max_io_size; /* bytes; 0: the default */
	struct busypoll_config poll; /* poll.on false: not set (interrupts) */
	bool poll_idle_set;
	unsigned int nmaps;
	struct map_conf maps[CLIENT_CONF_MAX_MAPS];
};

/*
 * One daemon option, by its configuration key (workers, dead_timeout,
 * loss_timeout, io_timeout, host_id, key_file, metrics); shown is how the operator
 * wrote its name (the key, or --dead-timeout) for the error sentence.
 * 0, or -EINVAL with the sentence in err.
 */
int client_conf_set(struct client_config *cfg, const char *key, const char *val,
		    const char *shown, char *err, size_t errlen);

/* Adds to cfg (which starts zeroed). 0, or an error "PATH:LINE: ...". */
int client_conf_parse(struct client_config *cfg, FILE *f, const char *path, char *err,
		      size_t errlen);
int client_conf_load(struct client_config *cfg, const char *path, char *err, size_t errlen);

/* Options set in over replace those of cfg (the command line over the file). */
void client_conf_overlay(struct client_config *cfg, const struct client_config *over);

const struct map_conf *client_conf_find_map(const struct client_config *cfg, const char *name);

/*
 * The text of a [map NAME] section as client_conf_parse() reads it back,
 * and the editing of a file of them: client_conf_add_map() appends one,
 * client_conf_remove_map() drops [map NAME] and its lines, keeping every
 * other line (comments too) as it was. Both replace the file atomically
 * (a new file beside it, fsync, rename) and refuse a file that would not
 * parse afterwards. 0 or -errno with a sentence in err.
 */
int client_conf_format_map(const struct map_conf *m, char *buf, size_t len);
int client_conf_add_map(const char *path, const struct map_conf *m, char *err, size_t errlen);
int client_conf_remove_map(const char *path, const char *name, char *err, size_t errlen);

#endif
