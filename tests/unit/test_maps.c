// SPDX-License-Identifier: GPL-2.0-only
/*
 * Persistent maps (src/client/control/maps.c): which configured maps are
 * made, retried, listed while waiting, made again when their device goes,
 * and left alone once unmapped. The client it drives is a stand-in here:
 * client_map() succeeds or fails as the test says, and remembers names.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "control/maps.h"
#include "log.h"
#include "tap.h"

/* ---- the stand-in client ---- */

static char mapped[8][64];
static int fail_map = 0;  /* client_map fails with this (0: succeeds) */
static int map_calls, unmap_calls;
static char last_export[64]; /* of the last client_map() */

static int find_mapped(const char *name)
{
	for (int i = 0; i < 8; i++)
		if (!strcmp(mapped[i], name))
			return i;
	return -1;
}

int client_map(struct client *c, const struct map_args *args, char *devpath, size_t devlen,
	       char *err, size_t errlen)
{
	(void)c;
	map_calls++;
	snprintf(last_export, sizeof(last_export), "%s", args->export_name);
	if (fail_map) {
		snprintf(err, errlen, "%s:%u refused the connection", args->server, args->port);
		return fail_map;
	}
	if (find_mapped(args->name) >= 0) {
		snprintf(err, errlen, "a device named '%s' is already mapped", args->name);
		return -EEXIST;
	}
	for (int i = 0; i < 8; i++) {
		if (!mapped[i][0]) {
			snprintf(mapped[i], sizeof(mapped[i]), "%s", args->name);
			snprintf(devpath, devlen, "/dev/ublkb%d", i);
			return 0;
		}
	}
	return -ENOSPC;
}

int client_unmap(struct client *c, const char *devpath, bool force, char *err, size_t errlen)
{
	int i = atoi(devpath + strlen("/dev/ublkb"));

	(void)c;
	(void)force;
	(void)err;
	(void)errlen;
	unmap_calls++;
	mapped[i][0] = '\0';
	return 0;
}

bool client_has_device(struct client *c, const char *name)
{
	(void)c;
	return find_mapped(name) >= 0;
}

static void gone(const char *name)
{
	int i = find_mapped(name);

	if (i >= 0)
		mapped[i][0] = '\0';
}

/* ---- tests ---- */

static struct client_config cfg;

static void add_conf(const char *name, const char *export_name)
{
	struct map_conf *m = &cfg.maps[cfg.nmaps++];

	snprintf(m->name, sizeof(m->name), "%s", name);
	snprintf(m->server.host, sizeof(m->server.host), "192.0.2.1");
	m->server.port = 4422;
	snprintf(m->export_name, sizeof(m->export_name), "%s", export_name);
}

static json_object *listed(struct maps *m, const char *name)
{
	static json_object *arr;

	if (arr)
		json_object_put(arr);
	arr = json_object_new_array();
	maps_describe(m, arr);
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		json_object *o = json_object_array_get_idx(arr, i);

		if (!strcmp(json_object_get_string(json_object_object_get(o, "name")), name))
			return o;
	}
	return NULL;
}

static const char *str(json_object *o, const char *key)
{
	return o ? json_object_get_string(json_object_object_get(o, key)) : "(none)";
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	fputs(text, f);
	fclose(f);
}

static void test_reload(const char *path)
{
	static struct client_config now;
	struct maps_changes n;
	char err[512];
	struct maps *m;

	memset(mapped, 0, sizeof(mapped));
	memset(&cfg, 0, sizeof(cfg));
	add_conf("db", "vol1");
	add_conf("old", "vol4");
	add_conf("gone", "vol5");
	add_conf("away", "vol7");
	fail_map = 0;
	m = maps_create(NULL, path, &cfg);
	ok(maps_try(m) == 4, "reload: four maps made");
	ok(!maps_unmap_begin(m, "away"), "away unmapped since the start");
	gone("away");
	write_file(path, "[map db]\nserver = 192.0.2.1\nexport = vol1\n"
			 "[map old]\nserver = 192.0.2.1\nexport = vol9\n"
			 "[map away]\nserver = 192.0.2.1\nexport = vol7\n"
			 "[map new]\nserver = 192.0.2.1\nexport = vol6\n");
	ok(maps_reload(m, true, &now, &n, err, sizeof(err)) == 0 && n.added == 1 &&
	   n.removed == 1 && n.changed == 1 && now.nmaps == 4,
	   "a reload: new added, gone removed, old changed (%u %u %u)", n.added, n.removed,
	   n.changed);
	ok(client_has_device(NULL, "gone") && client_has_device(NULL, "old"),
	   "... the devices of the removed and the changed one stay mapped");
	map_calls = 0;
	ok(maps_try(m) == 1 && client_has_device(NULL, "new") && !strcmp(last_export, "vol6") &&
	   map_calls == 1, "the new one is mapped; away, unmapped since the start, is not");
	gone("gone");
	gone("old");
	ok(maps_try(m) == 1 && !client_has_device(NULL, "gone") && client_has_device(NULL, "old") &&
	   !strcmp(last_export, "vol9"),
	   "once their devices go, the removed one is not made again, the changed one is, as it "
	   "says now");

	write_file(path, "[map db]\nserver = 192.0.2.1\n");
	ok(maps_reload(m, true, &now, &n, err, sizeof(err)) == -EINVAL &&
	   strstr(err, ":1: map 'db' has no 'export =' line"), "a bad file: an error with its line: %s",
	   err);
	gone("new");
	ok(maps_try(m) == 1 && client_has_device(NULL, "new"),
	   "... and nothing changed: new is still configured, made again when its device goes");

	unlink(path);
	ok(maps_reload(m, true, &now, &n, err, sizeof(err)) != 0 && strstr(err, "No such file"),
	   "a named file gone: an error (%s)", err);
	ok(maps_reload(m, false, &now, &n, err, sizeof(err)) == 0 && n.removed == 4 && n.added == 0,
	   "the default file gone: no maps configured any more (%u removed)", n.removed);
	gone("db");
	ok(maps_try(m) == 0 && !client_has_device(NULL, "db"), "... so none is made again");
	maps_destroy(m);
}

int main(void)
{
	char path[] = "/tmp/ibnbd-maps-XXXXXX.conf";
	struct maps *m;
	json_object *o;

	log_init("test-maps");
	close(mkstemps(path, 5));
	add_conf("db", "vol1");
	add_conf("logs", "vol2");
	snprintf(mapped[0], sizeof(mapped[0]), "logs"); /* taken over from a predecessor */
	m = maps_create(NULL, path, &cfg);
	ok(m != NULL, "maps_create");

	ok(maps_due_in(m, 0) == 0 && maps_waiting(m, "db") && !maps_waiting(m, "logs"),
	   "db is due at once; logs, already there, is not waiting");
	fail_map = -ECONNREFUSED;
	ok(maps_try(m) == 0 && map_calls == 1, "a try that fails maps nothing (one call: logs is left alone)");
	o = listed(m, "db");
	ok(o && !strcmp(str(o, "state"), "reconnecting") && !strcmp(str(o, "device"), "") &&
	   strstr(str(o, "last_error"), "refused") &&
	   json_object_get_int(json_object_object_get(o, "attempt")) == 1,
	   "db is listed reconnecting, attempt 1, with the error: %s", str(o, "last_error"));
	ok(maps_due_in(m, clock_now_ms()) > 0 && maps_try(m) == 0 && map_calls == 1,
	   "not tried again before its backoff");
	usleep(1100 * 1000);
	fail_map = 0;
	ok(maps_try(m) == 1 && map_calls == 2 && client_has_device(NULL, "db"),
	   "after the backoff it is mapped");
	ok(!listed(m, "db") || !json_object_object_get(listed(m, "db"), "not_mapped_yet"),
	   "and no longer listed as waiting");

	gone("db");
	ok(maps_due_in(m, clock_now_ms()) == 0, "its device gone without an unmap: due again");
	ok(maps_try(m) == 1 && client_has_device(NULL, "db"), "... and mapped again");

	ok(!maps_unmap_begin(m, "db"), "an unmap of a mapped one: the caller unmaps it");
	gone("db");
	ok(maps_try(m) == 0 && !client_has_device(NULL, "db") && maps_due_in(m, clock_now_ms()) != 0,
	   "once unmapped, it is not made again");
	ok(!maps_unmap_begin(m, "logs"), "an unmap of logs begins");
	maps_unmap_failed(m, "logs");
	gone("logs");
	ok(maps_due_in(m, clock_now_ms()) == 0 && maps_try(m) == 1,
	   "an unmap that failed leaves it a map that is made again when its device goes");

	add_conf("late", "vol3");
	maps_destroy(m);
	memset(mapped, 0, sizeof(mapped));
	m = maps_create(NULL, path, &cfg);
	fail_map = -ECONNREFUSED;
	maps_try(m);
	ok(maps_unmap_begin(m, "late") && !maps_waiting(m, "late") && !listed(m, "late"),
	   "an unmap of one still waiting: nothing to unmap, no longer listed");
	fail_map = 0;
	usleep(1100 * 1000);
	maps_try(m);
	ok(!client_has_device(NULL, "late"), "... and not made when its server answers");
	maps_destroy(m);
	test_reload(path);
	unlink(path);
	return tap_done();
}
