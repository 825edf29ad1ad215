/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A daemon's control socket: a Unix stream socket (the client daemon's
 * /run/ibnbd/client.sock, the server's /run/ibnbd/server.sock) carrying one
 * JSON object per line each way: the command line sends a request, the
 * daemon answers with one response and closes. docs/control-protocol.md
 * documents the requests.
 */
#ifndef IBNBD_CTL_H
#define IBNBD_CTL_H

#include <json-c/json.h>
#include <stddef.h>

/* $IBNBD_CLIENT_SOCKET, or <rundir>/client.sock. */
const char *ctl_socket_path(void);
/* $IBNBD_SERVER_SOCKET, or <rundir>/server.sock: the server's default. */
const char *ctl_server_socket_path(void);

/* Who answers on a socket, for the sentences of ctl_call()'s errors. */
struct ctl_peer {
	const char *path;
	const char *name;  /* "the ibnbd client daemon" */
	const char *start; /* how to start it: "'ibnbd-client daemon' or ..." */
};

/*
 * Sends req (and puts it), waits up to timeout_ms for the response.
 * Returns 0 with *resp set (the caller puts it), or -errno with a sentence
 * for the operator in err (e.g. that no daemon is running).
 */
int ctl_call(const struct ctl_peer *peer, json_object *req, json_object **resp, int timeout_ms,
	     char *err, size_t errlen);

/* Daemon side. The handler returns a new response object (never NULL). */
typedef json_object *(*ctl_handler_fn)(void *ctx, json_object *req);

struct ctl_server;
/* -EADDRINUSE if a live daemon answers on path; a socket file nobody
 * answers on is a dead one's and is replaced. */
int ctl_server_create(const char *path, struct ctl_server **out);
int ctl_server_fd(const struct ctl_server *s);
/* Accepts one pending connection: its fd, or -errno. */
int ctl_server_accept(struct ctl_server *s);
/* Reads one request from fd (within 5 s), answers it with fn's response,
 * closes fd. Any thread. */
void ctl_serve_fd(int fd, ctl_handler_fn fn, void *ctx);
void ctl_server_destroy(struct ctl_server *s);

/* Response helpers. */
json_object *ctl_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
json_object *ctl_ok(void);

#endif
