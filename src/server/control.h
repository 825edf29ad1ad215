/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The server's control socket (ctl.h; default /run/ibnbd/server.sock,
 * --control-socket): `ibnbd-server list-sessions` and `list-exports` ask a
 * running server what it serves. Served on a thread of its own, which reads
 * what the metrics read (server_metrics.h): the registry under its lock,
 * the workers' counters with relaxed loads, never the IO path's state.
 */
#ifndef IBNBD_SERVER_CONTROL_H
#define IBNBD_SERVER_CONTROL_H

#include <stddef.h>

#include "server_metrics.h"

struct server_control;

/* src must outlive the control. 0, or -errno with a sentence in err
 * (-EADDRINUSE: another running server answers on path). */
int server_control_start(const char *path, const struct server_metrics_src *src,
			 struct server_control **out, char *err, size_t errlen);
/* Tolerates NULL. */
void server_control_stop(struct server_control *c);

/* `ibnbd-server list-sessions|list-exports [--json] [--control-socket PATH]`:
 * argv[0] is the verb. The exit status. */
int server_list_verb(int argc, char **argv);

#endif
