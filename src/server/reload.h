/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * SIGHUP: the configuration file read again and its exports changed while
 * the server runs. New exports are opened and served, removed ones refuse
 * new opens and fail the IO of the clients that hold them (-ENODEV: their
 * devices fail, "export removed"), changed allow lists apply to the opens
 * that follow. Anything else in the file takes effect at the next start,
 * and the log says so. A file with an error, or an export that cannot be
 * opened, changes nothing.
 */
#ifndef IBNBD_SERVER_RELOAD_H
#define IBNBD_SERVER_RELOAD_H

#include <stddef.h>

#include "server_conf.h"

struct export;
struct worker;

struct server_state {
	struct server_config *cfg;  /* as started: the specs of its exports */
	struct export **exports;    /* SERVER_MAX_EXPORTS entries */
	unsigned int *nexports;     /* the workers' (worker_nexports()) */
	struct worker *workers;
	unsigned int nworkers;
	void *retired;              /* replaced specs, freed by server_state_free() */
};

/* 0 (the log says what changed), or -errno with err saying why nothing did. */
int server_reload(struct server_state *s, char *err, size_t errlen);
/* Frees what reloads allocated; after the workers stopped. */
void server_state_free(struct server_state *s);

/* `ibnbd-server reload [--config FILE]` (reload_verb.c): the exit status. */
int reload_verb(int argc, char **argv);

#endif
