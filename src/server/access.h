/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Who may connect: the hosts file's ids and keys (auth.h), shared by every
 * worker and re-read on SIGHUP, and this server's own id, which its proofs
 * name. A worker looks a host up once per connection, at its HELLO.
 */
#ifndef IBNBD_SERVER_ACCESS_H
#define IBNBD_SERVER_ACCESS_H

#include <stdbool.h>
#include <stddef.h>

#include "auth.h"

struct server_auth;

/* Reads the hosts file at path. 0, or -errno with a sentence. */
int server_auth_create(const char *path, struct server_auth **out, char *err, size_t errlen);
void server_auth_destroy(struct server_auth *a);
/* Re-reads the file; on an error the hosts read before stay. */
int server_auth_reload(struct server_auth *a, char *err, size_t errlen);
size_t server_auth_count(struct server_auth *a);
/* This server's id: the host id of its machine (hostid.h), else its hostname. */
const char *server_auth_id(const struct server_auth *a);
/* Copies the listed host's secret into secret; false if it is not listed. */
bool server_auth_secret(struct server_auth *a, const char *host_id,
			unsigned char secret[AUTH_SECRET_LEN]);

#endif
