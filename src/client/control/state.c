// SPDX-License-Identifier: GPL-2.0-only
/* The daemon's state file (state.h). */
#include "control/state.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli_args.h"
#include "log.h"

int state_write(const char *path, const struct state_device *devs, size_t n)
{
	json_object *arr = json_object_new_array();
	char tmp[4096];
	int ret = 0;

	for (size_t i = 0; i < n; i++) {
		const struct state_device *d = &devs[i];
		json_object *o = json_object_new_object();

		json_object_object_add(o, "id", json_object_new_int(d->id));
		json_object_object_add(o, "name", json_object_new_string(d->name));
		json_object_object_add(o, "server", json_object_new_string(d->server));
		json_object_object_add(o, "port", json_object_new_int(d->port));
		json_object_object_add(o, "export", json_object_new_string(d->export_name));
		json_object_object_add(o, "read_only", json_object_new_boolean(d->read_only));
		/* As the operator gave it (0: forever); absent: the daemon's. */
		if (d->loss_timeout_s)
			json_object_object_add(o, "loss_timeout", json_object_new_int(
				d->loss_timeout_s < 0 ? 0 : d->loss_timeout_s));
		json_object_object_add(o, "size", json_object_new_int64((int64_t)d->size));
		json_object_object_add(o, "logical_block_size",
				       json_object_new_int((int)d->logical_block_size));
		json_object_object_add(o, "export_id", json_object_new_int64((int64_t)d->export_id));
		json_object_object_add(o, "started", json_object_new_boolean(d->started));
		json_object_array_add(arr, o);
	}
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if (json_object_to_file_ext(tmp, arr, JSON_C_TO_STRING_PRETTY) < 0 ||
	    rename(tmp, path) < 0) {
		ret = errno ? -errno : -EIO;
		log_err("cannot write %s: %s", path, strerror(-ret));
	}
	json_object_put(arr);
	return ret;
}

static bool copy_str(char *dst, size_t size, json_object *v)
{
	const char *s = json_object_get_string(v);

	if (strlen(s) >= size)
		return false;
	snprintf(dst, size, "%s", s);
	return true;
}

static bool entry_parse(json_object *o, struct state_device *sd)
{
	json_object *v;

	memset(sd, 0, sizeof(*sd));
#define FIELD(key, type) (json_object_object_get_ex(o, key, &v) && json_object_is_type(v, type))
	if (!FIELD("id", json_type_int))
		return false;
	sd->id = json_object_get_int(v);
	if (!FIELD("name", json_type_string) || !copy_str(sd->name, sizeof(sd->name), v))
		return false;
	if (!FIELD("server", json_type_string) || !copy_str(sd->server, sizeof(sd->server), v))
		return false;
	if (!FIELD("port", json_type_int) || json_object_get_int(v) <= 0 ||
	    json_object_get_int(v) >= 65536)
		return false;
	sd->port = (uint16_t)json_object_get_int(v);
	if (!FIELD("export", json_type_string) ||
	    !copy_str(sd->export_name, sizeof(sd->export_name), v))
		return false;
	if (!FIELD("read_only", json_type_boolean))
		return false;
	sd->read_only = json_object_get_boolean(v);
	/* One that makes no sense leaves the daemon's: the device matters more. */
	if (FIELD("loss_timeout", json_type_int) && json_object_get_int(v) >= 0 &&
	    json_object_get_int(v) <= CLI_MAX_SECONDS)
		sd->loss_timeout_s = json_object_get_int(v) ? json_object_get_int(v) : -1;
	if (!FIELD("size", json_type_int))
		return false;
	sd->size = (uint64_t)json_object_get_int64(v);
	if (!FIELD("logical_block_size", json_type_int))
		return false;
	sd->logical_block_size = (uint32_t)json_object_get_int(v);
	sd->export_id = FIELD("export_id", json_type_int) ? (uint64_t)json_object_get_int64(v) : 0;
	/* Files before this field listed started devices only. */
	sd->started = FIELD("started", json_type_boolean) ? json_object_get_boolean(v) : true;
#undef FIELD
	return sd->id >= 0;
}

int state_read(const char *path, struct state_device **devs, size_t *n)
{
	json_object *arr;
	size_t i, len;

	*devs = NULL;
	*n = 0;
	if (access(path, F_OK))
		return 0;
	arr = json_object_from_file(path);
	if (!arr || !json_object_is_type(arr, json_type_array)) {
		json_object_put(arr);
		return -EINVAL;
	}
	len = json_object_array_length(arr);
	*devs = calloc(len ? len : 1, sizeof(**devs));
	if (!*devs) {
		json_object_put(arr);
		return -ENOMEM;
	}
	for (i = 0; i < len; i++) {
		if (entry_parse(json_object_array_get_idx(arr, i), &(*devs)[*n]))
			(*n)++;
		else
			log_err("%s: entry %zu is malformed; skipping it", path, i);
	}
	json_object_put(arr);
	return 0;
}
