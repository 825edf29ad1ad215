/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Persistent maps: the [map NAME] sections of client.conf. At start the
 * daemon maps every one that is not there yet (a predecessor's devices are
 * taken over first, so those are); one whose server does not answer is
 * tried again with backoff and shows in `list` as reconnecting, without
 * holding back the start. One whose device goes away without an unmap (a
 * takeover that failed for good) is mapped again. `map --persist` and
 * `unmap --persist` edit the file (client_conf.h) and this list together.
 */
#ifndef IBNBD_MAPS_H
#define IBNBD_MAPS_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#include "control/client.h"
#include "control/client_conf.h"

struct maps;

/* conf_path: the file --persist edits (it need not exist yet). */
struct maps *maps_create(struct client *c, const char *conf_path,
			 const struct client_config *cfg);
void maps_destroy(struct maps *m);

/* Maps every configured map that is due (not mapped, not being tried, its
 * backoff over), on the caller's thread; returns how many got mapped. */
int maps_try(struct maps *m);
/* Milliseconds until a map is due (0: now), or -1 if none waits. */
int64_t maps_due_in(struct maps *m, int64_t now_ms);

/* Adds the maps still waiting to a `list` array, and marks every entry of
 * it that is configured "persistent". */
void maps_describe(struct maps *m, json_object *devices);
/* The configured map NAME is waiting (not mapped yet). */
bool maps_waiting(struct maps *m, const char *name);
/*
 * An unmap of NAME begins. A configured map is not made again until the
 * next start (the file is left alone): one still waiting is simply no
 * longer tried, and true says so (there is nothing to unmap). False for
 * a mapped one, or a name not configured: unmap it, and call
 * maps_unmap_failed() if that fails.
 */
bool maps_unmap_begin(struct maps *m, const char *name);
void maps_unmap_failed(struct maps *m, const char *name);

/*
 * `ibnbd-client reload` and SIGHUP: reads the file again into *cfg (an
 * absent file is empty unless must_exist) and makes the list follow it, as
 * a start would, without touching a mapped device: a new section is mapped
 * (when due, by maps_try()); a section gone is no longer made (one not
 * mapped yet is no longer tried; a mapped device stays, as not
 * persistent); a changed one is used from its next map on (at once for one
 * not mapped yet). One unmapped since the start stays unmapped. The file
 * is read under the lock that --persist edits it under. 0, or -errno with
 * "PATH:LINE: ..." in err and nothing changed.
 */
struct maps_changes {
	unsigned int added, removed, changed;
};
int maps_reload(struct maps *m, bool must_exist, struct client_config *cfg,
		struct maps_changes *n, char *err, size_t errlen);

/* map --persist and unmap --persist: the file and the list. 0 or -errno
 * with a sentence in err. */
int maps_persist(struct maps *m, const struct map_conf *mc, char *err, size_t errlen);
int maps_forget(struct maps *m, const char *name, char *err, size_t errlen);

#endif
