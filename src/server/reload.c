// SPDX-License-Identifier: GPL-2.0-only
/*
 * A reload (reload.h), on the main thread. The order keeps workers safe
 * without a lock on their path: a new export is opened and registered in
 * every worker's io_uring before it is published (worker_nexports()); a
 * removed one is marked first (opens and IO check the mark), then
 * unregistered from every worker, and only then is its file closed. No
 * entry of the export table is ever reused or freed while workers run.
 */
#include "reload.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "errmsg.h"
#include "export.h"
#include "log.h"
#include "worker.h"

/* A spec no export uses any more, kept until exit: a worker may be
 * reading it in an OPEN right now. */
struct retired {
	struct retired *next;
	struct export_spec spec;
};

static struct export *find_live(const struct server_state *s, const char *name)
{
	for (unsigned int i = 0; i < *s->nexports; i++)
		if (!s->exports[i]->removed && !strcmp(s->exports[i]->name, name))
			return s->exports[i];
	return NULL;
}

static const struct export_spec *find_spec(const struct server_config *c, const char *name)
{
	for (unsigned int i = 0; i < c->nexports; i++)
		if (!strcmp(c->exports[i].name, name))
			return &c->exports[i];
	return NULL;
}

static bool same_allow(const struct export_spec *a, const struct export_spec *b)
{
	if (a->nallow != b->nallow)
		return false;
	for (unsigned int i = 0; i < a->nallow; i++)
		if (strcmp(a->allow[i].id, b->allow[i].id) || a->allow[i].ro != b->allow[i].ro)
			return false;
	return true;
}

/*
 * A file extended or a volume resized since the export was opened: opens
 * from now on get the new size, and IO is checked against it. A device
 * mapped before keeps its size (a client resizes it, or says it needs a
 * remap); a shrink fails IO past the new end here, and the client's
 * device at its next re-open. 1 if the size changed.
 */
static unsigned int note_size(struct export *e)
{
	uint64_t was = export_size(e), now;
	int ret = export_size_now(e, &now);

	if (ret) {
		log_err("reload: export '%s': cannot read the size of %s: %s; it stays %llu bytes",
			e->name, e->path, strerror(-ret), (unsigned long long)was);
		return 0;
	}
	if (now == was)
		return 0;
	if (!now) {
		log_err("reload: export '%s': %s is now smaller than one block; it stays %llu bytes",
			e->name, e->path, (unsigned long long)was);
		return 0;
	}
	__atomic_store_n(&e->size, now, __ATOMIC_RELAXED);
	if (now > was)
		log_info("reload: export '%s' grew from %llu to %llu bytes, for the opens from now on",
			 e->name, (unsigned long long)was, (unsigned long long)now);
	else
		log_err("reload: export '%s' shrank from %llu to %llu bytes: IO past the new end fails, and devices mapped from it fail at their next re-open",
			e->name, (unsigned long long)was, (unsigned long long)now);
	return 1;
}

/* What a reload cannot change: nothing is done, and err says so. */
static int check(const struct server_state *s, const struct server_config *n, char *err,
		 size_t errlen)
{
	unsigned int adds = 0;

	for (unsigned int i = 0; i < n->nexports; i++) {
		const struct export_spec *sp = &n->exports[i];
		const struct export *e = find_live(s, sp->name);

		if (s->cfg->no_auth)
			for (unsigned int j = 0; j < sp->nallow; j++)
				if (strcmp(sp->allow[j].id, "*"))
					return errmsg(err, errlen,
						      "export '%s' allows host '%s', but with --no-auth host ids are unproven",
						      sp->name, sp->allow[j].id);
		if (!e) {
			adds++;
			continue;
		}
		if (e->from_cmdline)
			return errmsg(err, errlen,
				      "export '%s' is given on the command line (--export): the file cannot name it too",
				      sp->name);
		if (strcmp(e->path, sp->path) || e->ro != sp->ro || e->shared != sp->shared)
			return errmsg(err, errlen,
				      "export '%s': its path, ro or shared changed; a reload changes only allow lists: remove the export (reload), then add it again (reload)",
				      sp->name);
	}
	if (*s->nexports + adds > SERVER_MAX_EXPORTS)
		return errmsg(err, errlen,
			      "%u new exports do not fit: a server holds %d in its life (removed ones count until a restart)",
			      adds, SERVER_MAX_EXPORTS);
	return 0;
}

/* Sets slot index to fd in every worker; on failure, back to -1 in all. */
static int register_everywhere(struct server_state *s, unsigned int index, int fd, char *err,
			       size_t errlen)
{
	int ret = 0;

	if (fd < 0) {
		for (unsigned int w = 0; w < s->nworkers; w++) {
			int r = worker_set_export_file(&s->workers[w], index, -1);

			if (r)
				log_err("reload: worker %u: unregistering export slot %u: %s", w,
					index, strerror(-r));
		}
		return 0;
	}
	for (unsigned int w = 0; w < s->nworkers && !ret; w++)
		ret = worker_set_export_file(&s->workers[w], index, fd);
	if (ret) {
		for (unsigned int w = 0; w < s->nworkers; w++)
			worker_set_export_file(&s->workers[w], index, -1);
		return errmsg(err, errlen, "registering export slot %u with io_uring: %s", index,
			      strerror(-ret));
	}
	return ret;
}

static struct export_spec *keep_spec(struct server_state *s, const struct export_spec *sp)
{
	struct retired *r = malloc(sizeof(*r));

	if (!r)
		return NULL;
	r->spec = *sp;
	r->next = s->retired;
	s->retired = r;
	return &r->spec;
}

/* Opens and registers the new exports: all of them, or none. */
static int add_exports(struct server_state *s, const struct server_config *n, char *err,
		       size_t errlen, unsigned int *added)
{
	struct export *made[SERVER_MAX_EXPORTS];
	unsigned int base = *s->nexports, k = 0;
	int ret = 0;

	for (unsigned int i = 0; i < n->nexports && !ret; i++) {
		const struct export_spec *sp = &n->exports[i];
		struct export_spec *copy;

		if (find_live(s, sp->name))
			continue;
		copy = keep_spec(s, sp);
		if (!copy) {
			ret = errmsg(err, errlen, "out of memory");
			break;
		}
		ret = export_create(copy, base + k, &made[k], err, errlen);
		if (ret)
			break;
		ret = register_everywhere(s, base + k, made[k]->fd, err, errlen);
		if (ret) {
			export_destroy(made[k]);
			break;
		}
		k++;
	}
	if (ret) {
		while (k--) {
			register_everywhere(s, base + k, -1, err, 0);
			export_destroy(made[k]);
		}
		return ret;
	}
	for (unsigned int i = 0; i < k; i++) {
		s->exports[base + i] = made[i];
		log_info("reload: export '%s' added: %s, %llu bytes%s%s", made[i]->name,
			 made[i]->path, (unsigned long long)made[i]->size,
			 made[i]->ro ? ", read-only" : "", made[i]->spec->nallow ? "" :
			 ", no allow list: nobody may open it");
	}
	/* Published last: a worker sees the entries before the count. */
	__atomic_store_n(s->nexports, base + k, __ATOMIC_RELEASE);
	*added = k;
	return 0;
}

static void remove_export(struct server_state *s, struct export *e)
{
	__atomic_store_n(&e->removed, true, __ATOMIC_RELEASE);
	register_everywhere(s, e->index, -1, NULL, 0);
	/* Every worker has let the file go; IO already submitted holds its
	 * own reference. What it wrote is made durable before the close. */
	if (!e->ro && fdatasync(e->fd))
		log_err("reload: export '%s': flushing %s failed: %s", e->name, e->path,
			strerror(errno));
	close(e->fd);
	e->fd = -1;
	log_info("reload: export '%s' removed (%s): no new opens; the clients holding it fail its IO",
		 e->name, e->path);
}

/* The settings a reload does not apply, named in the log; not those the
 * command line gave, which win over the file at the next start too. */
static void note_unapplied(const struct server_config *o, const struct server_config *n)
{
#define FILE_SAYS(bit) (!(o->cmdline_set & (bit)))
	struct server_limits limits = n->limits;
	const char *what[16];
	unsigned int k = 0;

	/* A limit the file leaves out is the one the server chose at start. */
	if (o->slot_memory_picked && !limits.max_slot_memory)
		limits.max_slot_memory = o->limits.max_slot_memory;
	if (o->nfile_listen != n->nlisten ||
	    memcmp(o->listen, n->listen, sizeof(o->listen[0]) * o->nfile_listen))
		what[k++] = "listen";
	if (FILE_SAYS(CMDLINE_WORKERS) && n->workers && o->workers != n->workers)
		what[k++] = "workers";
	if (o->queue_depth != n->queue_depth)
		what[k++] = "queue_depth";
	if (o->max_io_size != n->max_io_size)
		what[k++] = "max_io_size";
	if (FILE_SAYS(CMDLINE_KEEPALIVE) && o->keepalive_timeout != n->keepalive_timeout)
		what[k++] = "keepalive_timeout";
	if (FILE_SAYS(CMDLINE_POLL) &&
	    (o->poll.on != n->poll.on || o->poll.idle_us != n->poll.idle_us))
		what[k++] = "poll";
	if (FILE_SAYS(CMDLINE_HOSTS_FILE) && strcmp(o->hosts_file, n->hosts_file))
		what[k++] = "hosts_file";
	if (FILE_SAYS(CMDLINE_METRICS) && strcmp(o->metrics, n->metrics))
		what[k++] = "metrics";
	if (FILE_SAYS(CMDLINE_CONTROL_SOCKET) && strcmp(o->control_socket, n->control_socket))
		what[k++] = "control_socket";
	if (o->max_handshakes != n->max_handshakes)
		what[k++] = "max_handshakes";
	if (o->max_handshakes_per_address != n->max_handshakes_per_address)
		what[k++] = "max_handshakes_per_address";
	if (memcmp(&o->limits, &limits, sizeof(limits)))
		what[k++] = "the limits";
	for (unsigned int i = 0; i < k; i++)
		log_warn("reload: %s changed in the file: it takes effect at the next start", what[i]);
#undef FILE_SAYS
}

int server_reload(struct server_state *s, char *err, size_t errlen)
{
	struct server_config *n;
	unsigned int added = 0, removed = 0, changed = 0, resized = 0;
	int ret;

	if (!s->cfg->config_path[0])
		return errmsg(err, errlen, "started without a configuration file (--config): nothing to re-read");
	n = malloc(sizeof(*n));
	if (!n)
		return errmsg(err, errlen, "out of memory");
	config_init(n);
	ret = config_load(n, s->cfg->config_path, err, errlen);
	if (!ret)
		ret = check(s, n, err, errlen);
	if (!ret)
		ret = add_exports(s, n, err, errlen, &added);
	if (ret) {
		free(n);
		return ret;
	}
	for (unsigned int i = 0; i < *s->nexports; i++) {
		struct export *e = s->exports[i];
		const struct export_spec *sp;
		struct export_spec *copy;

		if (e->removed || e->from_cmdline)
			continue;
		sp = find_spec(n, e->name);
		if (!sp) {
			remove_export(s, e);
			removed++;
		} else if (!same_allow(export_spec_of(e), sp) && (copy = keep_spec(s, sp))) {
			__atomic_store_n(&e->spec, copy, __ATOMIC_RELEASE);
			log_info("reload: export '%s': new allow list (%u entr%s), for the opens from now on",
				 e->name, sp->nallow, sp->nallow == 1 ? "y" : "ies");
			changed++;
		}
	}
	for (unsigned int i = 0; i < *s->nexports; i++)
		if (!s->exports[i]->removed)
			resized += note_size(s->exports[i]);
	note_unapplied(s->cfg, n);
	log_info("reload of %s: %u export(s) added, %u removed, %u allow list(s) changed, %u resized",
		 s->cfg->config_path, added, removed, changed, resized);
	free(n);
	return 0;
}

void server_state_free(struct server_state *s)
{
	struct retired *r;

	while ((r = s->retired)) {
		s->retired = r->next;
		free(r);
	}
}
