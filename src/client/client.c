// SPDX-License-Identifier: GPL-2.0-only
/*
 * The client's data plane. Mapping over RDMA is not built yet: map refuses
 * with a plain error, and the device table stays empty.
 */
#include "client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

struct client {
	struct client_opts opts;
};

int client_create(const struct client_opts *opts, struct client **out)
{
	struct client *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->opts = *opts;
	*out = c;
	return 0;
}

void client_destroy(struct client *c)
{
	free(c);
}

int client_map(struct client *c, const struct map_args *args, char *devpath,
	       size_t devlen, char *err, size_t errlen)
{
	snprintf(err, errlen, "cannot map %s from %s:%u: mapping over RDMA is not built in this version",
		 args->export_name, args->server, args->port);
	return -ENOSYS;
}

int client_unmap(struct client *c, const char *devpath, bool force, char *err,
		 size_t errlen)
{
	snprintf(err, errlen, "%s is not mapped by ibnbd", devpath);
	return -ENOENT;
}

json_object *client_list(struct client *c)
{
	return json_object_new_array();
}
