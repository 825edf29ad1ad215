// SPDX-License-Identifier: GPL-2.0-only
/*
 * The client's data plane as the control thread drives it: mapped devices
 * over shared sessions, served by W workers (dataplane.h has the picture).
 *
 * Mapping a device:
 *   find or create the session to host:port (W connections, one per worker)
 *   → OPEN the export on every connection (session_open_device)
 *   → ADD_DEV, SET_PARAMS mirroring the export
 *   → worker q creates ublk queue q and fetches its tags (WM_ADD_QUEUE)
 *   → START_DEV; /dev/ublkbN is usable when client_map() returns.
 * Unmapping reverses it: STOP_QUEUE, STOP_DEV, wait for every worker to let
 * go of its queue, DEL_DEV, CLOSE the handles, and the session goes with its
 * last device.
 */
#include "control/client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "transport/conn.h"
#include "dataplane/dataplane.h"
#include "dataplane/worker.h"
#include "log.h"
#include "util.h"
#include "cm.h"
#include "verbs.h"
#include "control/session.h"
#include "control/state.h"
#include "ublk/dev.h"

#define QUEUE_DEPTH 64
#define CONN_DEPTH 112 /* x (128 KiB + a header page) = 14.4 MiB of server slots */
#define MAX_IO_BYTES (128u << 10)

struct pd_entry {
	struct pd_entry *next;
	struct ibv_context *verbs;
	struct ibv_pd *pd;
};

struct sess_entry {
	struct sess_entry *next;
	struct session *s;
};

struct client {
	struct client_tunables t;
	struct ublk_ctrl *ctrl;
	struct worker **workers;
	struct device *devices;
	struct sess_entry *sessions;
	char host_id[IBNBD_HOST_ID_MAX];
	char *state_path;
	/* One PD per RDMA device, shared by every connection on it, so the
	 * tag buffers are registered once. Sessions connect from their own
	 * threads, hence the lock. */
	pthread_mutex_t pd_lock;
	struct pd_entry *pds;
};

static struct ibv_pd *get_pd(void *ctx, struct ibv_context *verbs)
{
	struct client *c = ctx;
	struct pd_entry *e;

	pthread_mutex_lock(&c->pd_lock);
	for (e = c->pds; e && e->verbs != verbs; e = e->next)
		;
	if (!e && (e = calloc(1, sizeof(*e)))) {
		e->verbs = verbs;
		e->pd = ibv_alloc_pd(verbs);
		if (e->pd) {
			e->next = c->pds;
			c->pds = e;
		} else {
			free(e);
			e = NULL;
		}
	}
	pthread_mutex_unlock(&c->pd_lock);
	return e ? e->pd : NULL;
}

int client_create(const struct client_opts *opts, struct client **out)
{
	struct client *c = calloc(1, sizeof(*c));
	unsigned int i;
	int ret;

	if (!c)
		return -ENOMEM;
	c->t = (struct client_tunables){
		.workers = opts->workers ? opts->workers : default_worker_count(),
		.keepalive_ms = 1000,
		.dead_ms = opts->dead_timeout_ms ? opts->dead_timeout_ms : 4000,
		.loss_ms = opts->loss_timeout_s < 0 ? 0 :
			   (unsigned int)(opts->loss_timeout_s ? opts->loss_timeout_s : 120) * 1000,
		.io_timeout_ms = opts->io_timeout_s < 0 ? 0 :
				 (unsigned int)(opts->io_timeout_s ? opts->io_timeout_s : 30) * 1000,
		.connect_ms = 10000,
		.reconnect_ms = 3000,
		.backoff_max_ms = 250,
		.queue_depth = QUEUE_DEPTH,
		.conn_depth = CONN_DEPTH,
		.max_io_bytes = MAX_IO_BYTES,
	};
	if (c->t.keepalive_ms * 2 > c->t.dead_ms)
		c->t.keepalive_ms = c->t.dead_ms / 3;
	pthread_mutex_init(&c->pd_lock, NULL);
	if (opts->state_path && !(c->state_path = strdup(opts->state_path))) {
		free(c);
		return -ENOMEM;
	}
	gethostname(c->host_id, sizeof(c->host_id) - 1);
	c->workers = calloc(c->t.workers, sizeof(*c->workers));
	if (!c->workers) {
		ret = -ENOMEM;
		goto out_destroy;
	}
	ret = ublk_ctrl_create(&c->ctrl);
	for (i = 0; !ret && i < c->t.workers; i++)
		ret = worker_create(i, &c->t, &c->workers[i]);
	if (ret)
		goto out_destroy;
	*out = c;
	return 0;
out_destroy:
	client_destroy(c);
	return ret;
}

/* ---- devices ---- */

static void device_free(struct device *d)
{
	unsigned int q;

	for (q = 0; d->queues && q < d->client->t.workers; q++) {
		struct dev_queue *dq = &d->queues[q];

		ublk_queue_destroy(dq->uq);
		verbs_dereg_mr(dq->mr);
		if (dq->buf)
			munmap(dq->buf, dq->buf_len);
		free(dq->reqs);
		sem_destroy(&dq->removed);
	}
	ublk_dev_destroy(d->ublk);
	free(d->queues);
	free(d);
}

static struct device *device_alloc(struct client *c, const char *export_name, bool read_only)
{
	struct device *d = calloc(1, sizeof(*d));
	uint16_t q;

	if (!d)
		return NULL;
	d->client = c;
	d->queues = calloc(c->t.workers, sizeof(*d->queues));
	if (!d->queues) {
		free(d);
		return NULL;
	}
	for (q = 0; q < c->t.workers; q++) {
		d->queues[q].dev = d;
		d->queues[q].q_id = q;
		sem_init(&d->queues[q].removed, 0, 0);
	}
	snprintf(d->export_name, sizeof(d->export_name), "%s", export_name);
	d->read_only = read_only;
	return d;
}

/* Takes the device's queues away from the workers and the kernel: what
 * waits on a session that is down fails, STOP_DEV retires every tag, and
 * each worker lets go of its queue once it is idle. */
static void device_stop(struct device *d)
{
	uint16_t q;

	for (q = 0; q < d->nr_queues; q++) {
		struct wmsg m = { .type = WM_STOP_QUEUE, .dq = &d->queues[q] };

		if (d->queues[q].w)
			worker_call(d->queues[q].w, &m);
	}
	if (d->ublk)
		ublk_dev_stop(d->ublk);
	for (q = 0; q < d->nr_queues; q++)
		if (d->queues[q].w)
			while (sem_wait(&d->queues[q].removed) && errno == EINTR)
				;
}

static int device_params(struct device *d, char *err, size_t errlen)
{
	const struct ublksrv_ctrl_dev_info *ui = ublk_dev_info(d->ublk);
	const struct ibnbd_dev_info *i = &d->info;
	struct ublk_dev_params p = {
		.size = i->size,
		.logical_block_size = i->logical_block_size,
		.physical_block_size = i->physical_block_size,
		.max_io_bytes = ui->max_io_buf_bytes,
		.max_discard_bytes = i->max_discard_sectors > (UINT32_MAX >> 9) ?
				     UINT32_MAX & ~4095u : i->max_discard_sectors << 9,
		.max_write_zeroes_bytes = i->max_write_zeroes_sectors > (UINT32_MAX >> 9) ?
					  UINT32_MAX & ~4095u : i->max_write_zeroes_sectors << 9,
		.read_only = d->read_only || (i->flags & IBNBD_DEV_READ_ONLY),
		.rotational = i->flags & IBNBD_DEV_ROTATIONAL,
		.volatile_cache = i->flags & IBNBD_DEV_VOLATILE_CACHE,
		.fua = i->flags & IBNBD_DEV_FUA,
	};
	struct ublk_params up;
	const char *why = "";
	int ret = ublk_params_build(&p, ui->max_io_buf_bytes, &up, &why);

	if (!ret)
		ret = ublk_dev_set_params(d->ublk, &up);
	if (ret)
		snprintf(err, errlen, "the export's geometry does not fit a ublk device: %s%s%s",
			 why, *why ? ": " : "", strerror(-ret));
	return ret;
}

static struct session *find_session(struct client *c, const char *host, uint16_t port)
{
	struct sess_entry *e;

	for (e = c->sessions; e; e = e->next)
		if (!strcmp(session_host(e->s), host) && session_port(e->s) == port)
			return e->s;
	return NULL;
}

/* Drops the session once its last device is gone. */
static void put_session(struct client *c, struct session *s)
{
	struct sess_entry **pp, *e;

	if (!s || session_nr_devices(s))
		return;
	for (pp = &c->sessions; (e = *pp); pp = &e->next) {
		if (e->s == s) {
			*pp = e->next;
			free(e);
			break;
		}
	}
	session_destroy(s);
}

static int get_session(struct client *c, const struct map_args *args, bool start_down,
		       struct session **out, char *err, size_t errlen)
{
	struct session_config cfg = {
		.host = args->server, .port = args->port, .host_id = c->host_id, .t = &c->t,
		.workers = c->workers, .get_pd = get_pd, .get_pd_ctx = c,
		.start_down = start_down,
	};
	struct sess_entry *e;
	int ret;

	*out = find_session(c, args->server, args->port);
	if (*out)
		return 0;
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	ret = session_create(&cfg, &e->s, err, errlen);
	if (ret) {
		free(e);
		return ret;
	}
	e->next = c->sessions;
	c->sessions = e;
	*out = e->s;
	return 0;
}

/* The tag buffers of queue q: mapped here, registered once on the
 * session's PD, handed to ublk as the queue's IO buffers. */
static int queue_buffers(struct device *d, uint16_t q, struct ibv_pd *pd)
{
	const struct ublksrv_ctrl_dev_info *ui = ublk_dev_info(d->ublk);
	struct dev_queue *dq = &d->queues[q];
	void *p;

	dq->buf_len = ublk_queue_buf_area_len(ui->queue_depth, ui->max_io_buf_bytes);
	p = mmap(NULL, dq->buf_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -errno;
	dq->buf = p;
	if (!pd)
		return 0; /* the session's first connect registers them */
	return verbs_reg_mr(pd, dq->buf, dq->buf_len,
				IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE, &dq->mr);
}

/* Hands queue q to worker q, for every queue of the device. */
static int device_add_queues(struct device *d, char *err, size_t errlen)
{
	uint16_t q;
	int ret;

	for (q = 0; q < d->nr_queues; q++) {
		struct wmsg m = { .type = WM_ADD_QUEUE, .dq = &d->queues[q] };

		ret = queue_buffers(d, q, session_pd(d->sess));
		if (!ret)
			ret = worker_call(d->client->workers[q], &m);
		if (ret) {
			snprintf(err, errlen, "cannot set up queue %u of %s: %s", q, d->path,
				 strerror(-ret));
			return ret;
		}
	}
	return 0;
}

/* Records what is mapped, for a daemon that takes over after this one
 * dies (state.h). */
static void save_state(struct client *c)
{
	struct state_device *devs;
	struct device *d;
	size_t n = 0;

	if (!c->state_path)
		return;
	for (d = c->devices; d; d = d->next)
		n++;
	devs = calloc(n ? n : 1, sizeof(*devs));
	if (!devs) {
		log_err("cannot write %s: out of memory", c->state_path);
		return;
	}
	n = 0;
	for (d = c->devices; d; d = d->next) {
		struct state_device *sd = &devs[n++];

		sd->id = ublk_dev_id(d->ublk);
		snprintf(sd->name, sizeof(sd->name), "%s", d->name);
		snprintf(sd->server, sizeof(sd->server), "%s", session_host(d->sess));
		sd->port = session_port(d->sess);
		snprintf(sd->export_name, sizeof(sd->export_name), "%s", d->export_name);
		sd->read_only = d->read_only;
		sd->size = d->info.size;
		sd->logical_block_size = d->info.logical_block_size;
		sd->export_id = d->info.export_id;
	}
	state_write(c->state_path, devs, n);
	free(devs);
}

int client_map(struct client *c, const struct map_args *args, char *devpath,
	       size_t devlen, char *err, size_t errlen)
{
	struct ublk_dev_config uc = { .dev_id = -1, .recovery = true };
	struct session *s = NULL;
	struct device *d;
	bool opened = false;
	int ret;

	if (args->name) {
		for (d = c->devices; d; d = d->next) {
			if (!strcmp(d->name, args->name)) {
				snprintf(err, errlen, "a device named '%s' is already mapped (%s)",
					 args->name, d->path);
				return -EEXIST;
			}
		}
	}
	d = device_alloc(c, args->export_name, args->read_only);
	if (!d)
		return -ENOMEM;
	if (strlen(args->export_name) >= IBNBD_EXPORT_NAME_MAX) {
		snprintf(err, errlen, "the export name '%s' is longer than %d bytes",
			 args->export_name, IBNBD_EXPORT_NAME_MAX - 1);
		ret = -ENAMETOOLONG;
		goto out_free;
	}

	ret = get_session(c, args, false, &s, err, errlen);
	if (ret)
		goto out_free;
	d->sess = s;
	ret = session_open_device(s, d, false, err, errlen);
	if (ret)
		goto out_free;
	opened = true;

	uc.nr_queues = (uint16_t)c->t.workers;
	uc.queue_depth = c->t.queue_depth;
	uc.max_io_bytes = session_max_io(s) < c->t.max_io_bytes ? session_max_io(s) :
			  c->t.max_io_bytes;
	ret = ublk_dev_create(c->ctrl, &uc, &d->ublk);
	if (ret) {
		snprintf(err, errlen, "cannot create a ublk device: %s", strerror(-ret));
		goto out_free;
	}
	/* The kernel caps queues at the CPU count: the last workers then
	 * serve no queue of this device. */
	d->nr_queues = ublk_dev_info(d->ublk)->nr_hw_queues;
	if (d->nr_queues > c->t.workers)
		d->nr_queues = (uint16_t)c->t.workers;
	snprintf(d->path, sizeof(d->path), "/dev/ublkb%d", ublk_dev_id(d->ublk));
	snprintf(d->name, sizeof(d->name), "%s", args->name ? args->name : d->path + 5);
	ret = device_params(d, err, errlen);
	if (ret)
		goto out_free;
	ret = device_add_queues(d, err, errlen);
	if (ret)
		goto out_stop;
	ret = ublk_dev_start(d->ublk);
	if (ret) {
		snprintf(err, errlen, "the kernel refused to start %s: %s", d->path, strerror(-ret));
		goto out_stop;
	}
	d->next = c->devices;
	c->devices = d;
	save_state(c);
	snprintf(devpath, devlen, "%s", d->path);
	log_info("%s: mapped '%s' from %s (%llu bytes, %s)", d->path, d->export_name,
		 session_peer(s), (unsigned long long)d->info.size, d->read_only ? "ro" : "rw");
	return 0;
out_stop:
	device_stop(d);
out_free:
	if (opened)
		session_close_device(s, d);
	device_free(d);
	put_session(c, s);
	return ret;
}

static void device_unmap(struct client *c, struct device *d)
{
	struct session *s = d->sess;

	device_stop(d);
	session_close_device(s, d);
	log_info("%s: unmapped", d->path);
	device_free(d);
	put_session(c, s);
}

int client_unmap(struct client *c, const char *devpath, bool force, char *err,
		 size_t errlen)
{
	struct device **pp, *d;

	for (pp = &c->devices; (d = *pp); pp = &d->next) {
		if (!strcmp(d->path, devpath) || !strcmp(d->name, devpath)) {
			*pp = d->next;
			device_unmap(c, d);
			save_state(c);
			return 0;
		}
	}
	snprintf(err, errlen, "%s is not mapped by ibnbd", devpath);
	return -ENOENT;
}

/* ---- recovery after a daemon died ---- */

/* START_USER_RECOVERY on a device the dead daemon left QUIESCED, the
 * session (connected now, or reconnecting in the background), the queues
 * fetching again, END_USER_RECOVERY: the kernel re-issues what it held. */
static int recover_device(struct client *c, const struct state_device *sd, char *err,
			  size_t errlen)
{
	struct map_args args = { .server = sd->server, .port = sd->port,
				 .export_name = sd->export_name, .read_only = sd->read_only };
	struct ublk_params up;
	struct session *s = NULL;
	struct device *d;
	int ret;

	d = device_alloc(c, sd->export_name, sd->read_only);
	if (!d)
		return -ENOMEM;
	d->info.size = sd->size;
	d->info.logical_block_size = sd->logical_block_size;
	d->info.export_id = sd->export_id;
	ret = ublk_dev_attach(c->ctrl, sd->id, &d->ublk);
	if (ret) {
		snprintf(err, errlen, "/dev/ublkb%d is gone", sd->id);
		goto out_free;
	}
	ret = ublk_dev_get_params(d->ublk, &up);
	if (!ret && up.basic.dev_sectors << 9 != sd->size)
		ret = -ESTALE;
	if (ret) {
		snprintf(err, errlen, "/dev/ublkb%d is not the device recorded (%s)", sd->id,
			 strerror(-ret));
		goto out_free;
	}
	if (ublk_dev_info(d->ublk)->nr_hw_queues > c->t.workers) {
		snprintf(err, errlen, "/dev/ublkb%d has %u queues but this daemon runs %u "
			 "workers: start it with --workers %u", sd->id,
			 ublk_dev_info(d->ublk)->nr_hw_queues, c->t.workers,
			 ublk_dev_info(d->ublk)->nr_hw_queues);
		ret = -EINVAL;
		goto out_free;
	}
	d->nr_queues = ublk_dev_info(d->ublk)->nr_hw_queues;
	snprintf(d->path, sizeof(d->path), "/dev/ublkb%d", sd->id);
	snprintf(d->name, sizeof(d->name), "%s", sd->name);
	ret = ublk_dev_start_recovery(d->ublk, 10000);
	if (ret) {
		snprintf(err, errlen, "the kernel refused to hand /dev/ublkb%d over: %s", sd->id,
			 strerror(-ret));
		goto out_free; /* not ours: left as it was */
	}
	/* Committed: from here on, stopping and deleting it is our job. */
	ublk_dev_set_owned(d->ublk, true);
	ret = get_session(c, &args, false, &s, err, errlen);
	if (ret) {
		log_warn("%s: %s; recovering it anyway, its IO waits for the server", d->path, err);
		ret = get_session(c, &args, true, &s, err, errlen);
	}
	if (ret)
		goto out_stop;
	d->sess = s;
	ret = session_open_device(s, d, true, err, errlen);
	if (ret)
		goto out_stop;
	ret = device_add_queues(d, err, errlen);
	if (!ret)
		ret = ublk_dev_end_recovery(d->ublk);
	if (ret) {
		session_close_device(s, d);
		goto out_stop;
	}
	d->next = c->devices;
	c->devices = d;
	log_info("%s: recovered '%s' from %s", d->path, d->export_name, session_peer(s));
	return 0;
out_stop:
	device_stop(d);
out_free:
	device_free(d);
	put_session(c, s);
	return ret;
}

int client_recover(struct client *c)
{
	struct state_device *devs;
	size_t i, n;
	int recovered = 0;

	if (!c->state_path)
		return 0;
	if (state_read(c->state_path, &devs, &n)) {
		log_err("%s is not a device list; ignoring it", c->state_path);
		return 0;
	}
	for (i = 0; i < n; i++) {
		char err[512];

		if (recover_device(c, &devs[i], err, sizeof(err)))
			log_err("cannot recover /dev/ublkb%d ('%s' from %s:%u): %s", devs[i].id,
				devs[i].export_name, devs[i].server, devs[i].port, err);
		else
			recovered++;
	}
	free(devs);
	save_state(c);
	return recovered;
}

json_object *client_list(struct client *c)
{
	json_object *arr = json_object_new_array();
	struct device *d;

	for (d = c->devices; d; d = d->next) {
		json_object *o = json_object_new_object();
		const char *state;
		uint64_t resending;
		uint16_t q;

		json_object_object_add(o, "device", json_object_new_string(d->path));
		json_object_object_add(o, "name", json_object_new_string(d->name));
		json_object_object_add(o, "server", json_object_new_string(session_host(d->sess)));
		json_object_object_add(o, "port", json_object_new_int(session_port(d->sess)));
		json_object_object_add(o, "export", json_object_new_string(d->export_name));
		json_object_object_add(o, "size", json_object_new_int64((int64_t)d->info.size));
		json_object_object_add(o, "access",
				       json_object_new_string(d->read_only ? "ro" : "rw"));
		session_describe(d->sess, o);
		/* The device's state is its session's, unless the export
		 * itself went away. */
		state = json_object_get_string(json_object_object_get(o, "session"));
		resending = 0;
		for (q = 0; q < d->nr_queues; q++)
			resending += atomic_load(&d->queues[q].resending);
		json_object_object_add(o, "resending", json_object_new_int64((int64_t)resending));
		if (resending && !strcmp(state, "live"))
			state = "recovering"; /* connected; what was lost is not all answered */
		if (atomic_load(&d->failed)) {
			state = "failed";
			json_object_object_add(o, "export_changed", json_object_new_boolean(true));
			json_object_object_add(o, "last_error",
					       json_object_new_string(d->failed_why));
		}
		json_object_object_add(o, "state", json_object_new_string(state));
		json_object_array_add(arr, o);
	}
	return arr;
}

void client_destroy(struct client *c)
{
	unsigned int i;

	if (!c)
		return;
	while (c->devices) {
		struct device *d = c->devices;

		c->devices = d->next;
		device_unmap(c, d);
	}
	while (c->sessions) {
		/* Only a session whose first map failed midway is left. */
		struct sess_entry *e = c->sessions;

		c->sessions = e->next;
		session_destroy(e->s);
		free(e);
	}
	for (i = 0; c->workers && i < c->t.workers; i++)
		worker_destroy(c->workers[i]);
	free(c->workers);
	while (c->pds) {
		struct pd_entry *e = c->pds;

		c->pds = e->next;
		ibv_dealloc_pd(e->pd);
		free(e);
	}
	ublk_ctrl_destroy(c->ctrl);
	pthread_mutex_destroy(&c->pd_lock);
	free(c->state_path);
	free(c);
}
