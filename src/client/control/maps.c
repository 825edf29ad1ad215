// SPDX-License-Identifier: GPL-2.0-only
#include "control/maps.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

/* Backoff between attempts at a map whose server did not answer. */
#define MAPS_RETRY_FIRST_MS 1000
#define MAPS_RETRY_MAX_MS 30000
/* How often a mapped one is checked to be still there. */
#define MAPS_CHECK_MS 3000

enum map_state {
	MAP_WAITING,   /* not mapped yet: tried when due */
	MAP_TRYING,    /* a maps_try() is mapping it */
	MAP_DONE,      /* mapped: made again if its device goes without an unmap */
	MAP_UNMAPPING, /* an unmap is under way */
	MAP_CANCELLED, /* unmapped: not made again before the next start */
	MAP_FORGOTTEN, /* unmap --persist: out of the file */
};

struct map_entry {
	struct map_conf conf;
	enum map_state state;
	unsigned int attempt;
	int64_t first_try_ms;
	int64_t next_try_ms;
	char why[512];
};

struct maps {
	struct client *client;
	char path[4096];
	pthread_mutex_t lock;
	unsigned int n, cap;
	struct map_entry *e;
};

static struct map_entry *find(struct maps *m, const char *name)
{
	for (unsigned int i = 0; i < m->n; i++)
		if (m->e[i].state != MAP_FORGOTTEN && !strcmp(m->e[i].conf.name, name))
			return &m->e[i];
	return NULL;
}

static struct map_entry *add(struct maps *m, const struct map_conf *mc, enum map_state st)
{
	struct map_entry *e;

	if (m->n == m->cap) {
		unsigned int cap = m->cap ? m->cap * 2 : 16;
		struct map_entry *ne = realloc(m->e, cap * sizeof(*ne));

		if (!ne)
			return NULL;
		m->e = ne;
		m->cap = cap;
	}
	e = &m->e[m->n++];
	memset(e, 0, sizeof(*e));
	e->conf = *mc;
	e->state = st;
	return e;
}

struct maps *maps_create(struct client *c, const char *conf_path,
			 const struct client_config *cfg)
{
	struct maps *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	m->client = c;
	snprintf(m->path, sizeof(m->path), "%s", conf_path);
	pthread_mutex_init(&m->lock, NULL);
	for (unsigned int i = 0; i < cfg->nmaps; i++) {
		const struct map_conf *mc = &cfg->maps[i];

		if (!add(m, mc, client_has_device(c, mc->name) ? MAP_DONE : MAP_WAITING)) {
			maps_destroy(m);
			return NULL;
		}
	}
	return m;
}

void maps_destroy(struct maps *m)
{
	if (!m)
		return;
	pthread_mutex_destroy(&m->lock);
	free(m->e);
	free(m);
}

static int64_t backoff_ms(unsigned int attempt)
{
	int64_t ms = MAPS_RETRY_FIRST_MS;

	while (--attempt && ms < MAPS_RETRY_MAX_MS)
		ms *= 2;
	return ms < MAPS_RETRY_MAX_MS ? ms : MAPS_RETRY_MAX_MS;
}

/* One due map, marked MAP_TRYING and copied out; false if none. */
static bool take_due(struct maps *m, struct map_conf *out)
{
	int64_t now = clock_now_ms();
	bool found = false;

	pthread_mutex_lock(&m->lock);
	for (unsigned int i = 0; i < m->n && !found; i++) {
		struct map_entry *e = &m->e[i];

		if (e->state == MAP_DONE && !client_has_device(m->client, e->conf.name)) {
			log_warn("map %s: its device is gone, not unmapped: mapping it again",
				 e->conf.name);
			e->state = MAP_WAITING;
			e->attempt = 0;
			e->next_try_ms = 0;
			e->why[0] = '\0';
		}
		if (e->state == MAP_WAITING && e->next_try_ms <= now) {
			e->state = MAP_TRYING;
			if (!e->attempt)
				e->first_try_ms = now;
			*out = e->conf;
			found = true;
		}
	}
	pthread_mutex_unlock(&m->lock);
	return found;
}

int maps_try(struct maps *m)
{
	struct map_conf mc;
	int mapped = 0;

	while (take_due(m, &mc)) {
		struct map_args args = {
			.server = mc.server.host,
			.port = mc.server.port,
			.export_name = mc.export_name,
			.read_only = mc.read_only,
			.name = mc.name,
			.loss_timeout_s = mc.loss_timeout_s,
		};
		char dev[256], err[512];
		struct map_entry *e;
		bool still_wanted;
		int ret = client_map(m->client, &args, dev, sizeof(dev), err, sizeof(err));

		pthread_mutex_lock(&m->lock);
		e = find(m, mc.name);
		/* Not unmapped (or forgotten) while this try was under way. */
		still_wanted = e && e->state == MAP_TRYING;
		if (still_wanted && (!ret || ret == -EEXIST)) {
			e->state = MAP_DONE;
		} else if (still_wanted) {
			e->attempt++;
			e->next_try_ms = clock_now_ms() + backoff_ms(e->attempt);
			e->state = MAP_WAITING;
			if (strcmp(e->why, err))
				log_warn("map %s ('%s' from %s:%u) not made yet: %s; trying again "
					 "every %d s at most", mc.name, mc.export_name, mc.server.host,
					 mc.server.port, err, MAPS_RETRY_MAX_MS / 1000);
			snprintf(e->why, sizeof(e->why), "%s", err);
		}
		pthread_mutex_unlock(&m->lock);
		if (!ret && !still_wanted) {
			log_info("map %s: made as %s after it was unmapped: unmapping it", mc.name,
				 dev);
			if (client_unmap(m->client, dev, false, err, sizeof(err)))
				log_warn("map %s: cannot unmap %s: %s", mc.name, dev, err);
		} else if (!ret) {
			log_info("map %s: '%s' from %s:%u as %s", mc.name, mc.export_name,
				 mc.server.host, mc.server.port, dev);
			mapped++;
		}
	}
	return mapped;
}

int64_t maps_due_in(struct maps *m, int64_t now_ms)
{
	int64_t due = -1;

	pthread_mutex_lock(&m->lock);
	for (unsigned int i = 0; i < m->n; i++) {
		const struct map_entry *e = &m->e[i];
		int64_t in;

		if (e->state == MAP_TRYING)
			in = MAPS_RETRY_FIRST_MS; /* look again once it is through */
		else if (e->state == MAP_DONE)
			in = client_has_device(m->client, e->conf.name) ? MAPS_CHECK_MS : 0;
		else if (e->state == MAP_WAITING)
			in = e->next_try_ms > now_ms ? e->next_try_ms - now_ms : 0;
		else
			continue;
		if (due < 0 || in < due)
			due = in;
	}
	pthread_mutex_unlock(&m->lock);
	return due;
}

void maps_describe(struct maps *m, json_object *devices)
{
	int64_t now = clock_now_ms();
	size_t n = json_object_array_length(devices);

	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; i < n; i++) {
		json_object *d = json_object_array_get_idx(devices, i);
		const char *name = json_object_get_string(json_object_object_get(d, "name"));

		json_object_object_add(d, "persistent",
				       json_object_new_boolean(name && find(m, name) != NULL));
	}
	for (unsigned int i = 0; i < m->n; i++) {
		const struct map_entry *e = &m->e[i];
		json_object *o;

		if (e->state != MAP_WAITING && e->state != MAP_TRYING)
			continue;
		o = json_object_new_object();
		json_object_object_add(o, "device", json_object_new_string(""));
		json_object_object_add(o, "name", json_object_new_string(e->conf.name));
		json_object_object_add(o, "server", json_object_new_string(e->conf.server.host));
		json_object_object_add(o, "port", json_object_new_int(e->conf.server.port));
		json_object_object_add(o, "export", json_object_new_string(e->conf.export_name));
		json_object_object_add(o, "size", json_object_new_int64(0));
		json_object_object_add(o, "access",
				       json_object_new_string(e->conf.read_only ? "ro" : "rw"));
		json_object_object_add(o, "state", json_object_new_string(
			e->attempt ? "reconnecting" : "mapping"));
		json_object_object_add(o, "persistent", json_object_new_boolean(true));
		json_object_object_add(o, "not_mapped_yet", json_object_new_boolean(true));
		if (e->attempt) {
			json_object_object_add(o, "attempt", json_object_new_int((int)e->attempt));
			json_object_object_add(o, "down_for_ms",
					       json_object_new_int64(now - e->first_try_ms));
			json_object_object_add(o, "next_try_ms", json_object_new_int64(
				e->next_try_ms > now ? e->next_try_ms - now : 0));
			json_object_object_add(o, "last_error", json_object_new_string(e->why));
		}
		json_object_array_add(devices, o);
	}
	pthread_mutex_unlock(&m->lock);
}

bool maps_waiting(struct maps *m, const char *name)
{
	struct map_entry *e;
	bool waiting;

	pthread_mutex_lock(&m->lock);
	e = find(m, name);
	waiting = e && (e->state == MAP_WAITING || e->state == MAP_TRYING);
	pthread_mutex_unlock(&m->lock);
	return waiting;
}

bool maps_unmap_begin(struct maps *m, const char *name)
{
	struct map_entry *e;
	bool waiting = false;

	pthread_mutex_lock(&m->lock);
	e = find(m, name);
	if (e) {
		/* A try under way undoes itself (maps_try). */
		waiting = e->state == MAP_WAITING || e->state == MAP_TRYING;
		e->state = waiting ? MAP_CANCELLED : MAP_UNMAPPING;
	}
	pthread_mutex_unlock(&m->lock);
	return waiting;
}

void maps_unmap_failed(struct maps *m, const char *name)
{
	struct map_entry *e;

	pthread_mutex_lock(&m->lock);
	e = find(m, name);
	if (e && e->state == MAP_UNMAPPING)
		e->state = MAP_DONE;
	pthread_mutex_unlock(&m->lock);
}

static bool same_conf(const struct map_conf *a, const struct map_conf *b)
{
	return !strcmp(a->server.host, b->server.host) && a->server.port == b->server.port &&
	       !strcmp(a->export_name, b->export_name) && a->read_only == b->read_only &&
	       a->loss_timeout_s == b->loss_timeout_s;
}

int maps_reload(struct maps *m, bool must_exist, struct client_config *cfg,
		struct maps_changes *n, char *err, size_t errlen)
{
	struct map_entry *e;
	int ret = 0;

	memset(n, 0, sizeof(*n));
	memset(cfg, 0, sizeof(*cfg));
	pthread_mutex_lock(&m->lock);
	if (must_exist || !access(m->path, F_OK))
		ret = client_conf_load(cfg, m->path, err, errlen);
	if (ret)
		goto out;
	for (unsigned int i = 0; i < m->n; i++) {
		e = &m->e[i];
		if (e->state == MAP_FORGOTTEN || client_conf_find_map(cfg, e->conf.name))
			continue;
		log_info("map %s: no longer in %s: %s", e->conf.name, m->path,
			 e->state == MAP_DONE || e->state == MAP_UNMAPPING ?
			 "its device stays mapped, and is not made again" : "no longer tried");
		e->state = MAP_FORGOTTEN;
		n->removed++;
	}
	for (unsigned int i = 0; i < cfg->nmaps; i++) {
		const struct map_conf *mc = &cfg->maps[i];

		e = find(m, mc->name);
		if (!e) {
			bool there = client_has_device(m->client, mc->name);

			if (!add(m, mc, there ? MAP_DONE : MAP_WAITING)) {
				ret = -ENOMEM;
				snprintf(err, errlen, "out of memory");
				goto out;
			}
			log_info("map %s: new in %s%s", mc->name, m->path,
				 there ? " (a device of that name is mapped: it is taken as it)" : "");
			n->added++;
			continue;
		}
		if (same_conf(&e->conf, mc))
			continue;
		e->conf = *mc;
		n->changed++;
		if (e->state == MAP_WAITING) {
			e->attempt = 0;
			e->next_try_ms = 0;
			e->why[0] = '\0';
			log_info("map %s: changed in %s: tried as it says now", mc->name, m->path);
		} else {
			log_warn("map %s: changed in %s: applies when it is next mapped (a mapped "
				 "device stays as it is)", mc->name, m->path);
		}
	}
out:
	pthread_mutex_unlock(&m->lock);
	return ret;
}

int maps_persist(struct maps *m, const struct map_conf *mc, char *err, size_t errlen)
{
	struct map_entry *e;
	int ret;

	pthread_mutex_lock(&m->lock);
	if (find(m, mc->name)) {
		pthread_mutex_unlock(&m->lock);
		snprintf(err, errlen, "%s already has a [map %s]", m->path, mc->name);
		return -EEXIST;
	}
	/* Under the lock: two --persist at once must not lose one's edit. */
	ret = client_conf_add_map(m->path, mc, err, errlen);
	if (!ret) {
		e = add(m, mc, MAP_DONE);
		if (!e)
			ret = -ENOMEM;
	}
	pthread_mutex_unlock(&m->lock);
	if (!ret)
		log_info("map %s: recorded in %s", mc->name, m->path);
	return ret;
}

int maps_forget(struct maps *m, const char *name, char *err, size_t errlen)
{
	struct map_entry *e;
	int ret;

	pthread_mutex_lock(&m->lock);
	ret = client_conf_remove_map(m->path, name, err, errlen);
	e = find(m, name);
	if (!ret && e)
		e->state = MAP_FORGOTTEN;
	pthread_mutex_unlock(&m->lock);
	if (!ret)
		log_info("map %s: removed from %s", name, m->path);
	return ret;
}
