// SPDX-License-Identifier: GPL-2.0-only
#include "access.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hostid.h"

struct server_auth {
	pthread_mutex_t lock; /* hosts: read by workers, replaced on SIGHUP */
	struct auth_hosts hosts;
	char path[4096];
	char id[IBNBD_HOST_ID_MAX];
};

int server_auth_create(const char *path, struct server_auth **out, char *err, size_t errlen)
{
	struct server_auth *a = calloc(1, sizeof(*a));
	char why[256];
	int ret;

	if (!a)
		return -ENOMEM;
	snprintf(a->path, sizeof(a->path), "%s", path);
	ret = auth_hosts_load(path, &a->hosts, err, errlen);
	if (ret) {
		free(a);
		return ret;
	}
	if (host_id_from_machine_id("/etc/machine-id", a->id, why, sizeof(why)) &&
	    gethostname(a->id, sizeof(a->id) - 1))
		snprintf(a->id, sizeof(a->id), "ibnbd-server");
	pthread_mutex_init(&a->lock, NULL);
	*out = a;
	return 0;
}

void server_auth_destroy(struct server_auth *a)
{
	if (!a)
		return;
	auth_hosts_free(&a->hosts);
	pthread_mutex_destroy(&a->lock);
	free(a);
}

int server_auth_reload(struct server_auth *a, char *err, size_t errlen)
{
	struct auth_hosts h, old;
	int ret = auth_hosts_load(a->path, &h, err, errlen);

	if (ret)
		return ret;
	pthread_mutex_lock(&a->lock);
	old = a->hosts;
	a->hosts = h;
	pthread_mutex_unlock(&a->lock);
	auth_hosts_free(&old);
	return 0;
}

size_t server_auth_count(struct server_auth *a)
{
	size_t n;

	pthread_mutex_lock(&a->lock);
	n = a->hosts.n;
	pthread_mutex_unlock(&a->lock);
	return n;
}

const char *server_auth_id(const struct server_auth *a)
{
	return a->id;
}

bool server_auth_secret(struct server_auth *a, const char *host_id,
			unsigned char secret[AUTH_SECRET_LEN])
{
	const struct auth_host *e;

	pthread_mutex_lock(&a->lock);
	e = auth_hosts_find(&a->hosts, host_id);
	if (e)
		memcpy(secret, e->secret, AUTH_SECRET_LEN);
	pthread_mutex_unlock(&a->lock);
	return e != NULL;
}
