// SPDX-License-Identifier: GPL-2.0-only
/*
 * The client's devices, as the daemon's verbs drive them: mapped devices
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
 *
 * Every verb runs on a thread of its own (daemon.c), so one that waits -
 * for a server that does not answer, for the kernel to start or stop a
 * device - holds back no other. c->lock guards the lists, each device's
 * place in its life (ctl), and the state file; it is never held while
 * waiting for the network or the kernel. A device being mapped or unmapped
 * belongs to the thread doing it.
 */
#include "control/client.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "auth.h"
#include "clock.h"
#include "control/devlink.h"
#include "control/export_check.h"
#include "control/session.h"
#include "control/state.h"
#include "dataplane/dataplane.h"
#include "dataplane/worker.h"
#include "hostid.h"
#include "log.h"
#include "transport/conn.h"
#include "ublk/dev.h"
#include "util.h"
#include "verbs.h"

#define QUEUE_DEPTH 64
#define CONN_DEPTH 112 /* x (128 KiB + a header page) = 14.4 MiB of server slots */
#define MAX_IO_BYTES (128u << 10)
/* How long a daemon that leaves (SIGTERM) waits for requests in flight. */
#define LEAVE_DRAIN_MS 3000

/* Where a device is in its life, as the control plane sees it. */
enum dev_ctl {
	DEV_MAPPING,     /* a map is setting it up */
	DEV_LIVE,        /* mapped (its session or export may still fail it) */
	DEV_UNMAPPING,   /* an unmap is taking it down */
	DEV_UNRECOVERED, /* left by a previous daemon, not taken over yet:
			  * listed as failed with why, tried again */
	DEV_TAKING_OVER, /* an attempt to take it over is under way: the
			  * attempt owns the device, everyone else knows it
			  * by what the state file recorded */
};

/* A session and the devices (and maps waiting for it) that hold it. */
struct sess_entry {
	struct sess_entry *next;
	char host[256];
	uint16_t port;
	struct session *s;  /* NULL while connecting */
	unsigned int refs;
	bool connecting;
};

/* What the control plane keeps per device beyond the data plane's. */
struct dev_ctl_info {
	enum dev_ctl ctl;
	struct sess_entry *se;
	struct state_device saved; /* DEV_UNRECOVERED: what to take over */
	char why[512];             /* DEV_UNRECOVERED: why not yet */
};

struct client {
	struct client_tunables t;
	struct ublk_ctrl *ctrl;
	struct worker **workers;
	char host_id[IBNBD_HOST_ID_MAX];
	unsigned char secret[AUTH_SECRET_LEN]; /* this host's key, if has_key */
	bool has_key;
	char *state_path;

	pthread_mutex_t lock;  /* the lists, device ctl states, the state file */
	pthread_cond_t cond;   /* a session's connect ended; a reaper ended */
	struct device *devices;
	struct sess_entry *sessions;
	unsigned int reapers;  /* sessions being destroyed in the background */
	bool leaving;

};

static struct dev_ctl_info *ctl_of(struct device *d)
{
	return d->ctl_info;
}

/* Known only by the state file's record: a device not taken over yet, or
 * one being taken over (whose session, queues and ublk handle the attempt
 * is setting up, without the lock). */
static bool known_by_record(struct device *d)
{
	return ctl_of(d)->ctl == DEV_UNRECOVERED || ctl_of(d)->ctl == DEV_TAKING_OVER;
}

int client_create(const struct client_opts *opts, struct client **out, char *err,
		  size_t errlen)
{
	struct client *c = calloc(1, sizeof(*c));
	char id[HOST_ID_LEN];
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
		/* A connect request lost on a cut wire is found out only
		 * when its attempt ends: a wire back just after that request
		 * costs the rest of the attempt, a pause and a connect (up
		 * to 700 ms seen under emulation), within the 2 s a session
		 * must be back in. */
		.reconnect_ms = 1000,
		.backoff_max_ms = 100,
		.queue_depth = QUEUE_DEPTH,
		.conn_depth = CONN_DEPTH,
		.max_io_bytes = opts->max_io_bytes ? opts->max_io_bytes : MAX_IO_BYTES,
		.poll = opts->poll,
	};
	if (c->t.keepalive_ms * 2 > c->t.dead_ms)
		c->t.keepalive_ms = c->t.dead_ms / 3;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
	if (opts->host_id) {
		ret = host_id_check(opts->host_id, err, errlen);
		if (ret)
			goto out_destroy;
		snprintf(c->host_id, sizeof(c->host_id), "%s", opts->host_id);
	} else {
		ret = host_id_from_machine_id(opts->machine_id_path ? opts->machine_id_path :
					      "/etc/machine-id", id, err, errlen);
		if (ret)
			goto out_destroy;
		snprintf(c->host_id, sizeof(c->host_id), "%s", id);
	}
	/* A key named is required; the default one is used when present. */
	if (opts->key_file || !access(CONN_DEFAULT_KEY_FILE, F_OK)) {
		ret = auth_key_file_load(opts->key_file ? opts->key_file : CONN_DEFAULT_KEY_FILE,
					 c->secret, err, errlen);
		if (ret)
			goto out_destroy;
		c->has_key = true;
	}
	ret = -ENOMEM;
	if (opts->state_path && !(c->state_path = strdup(opts->state_path)))
		goto out_destroy;
	c->workers = calloc(c->t.workers, sizeof(*c->workers));
	if (!c->workers)
		goto out_destroy;
	ret = ublk_ctrl_create(&c->ctrl);
	for (i = 0; !ret && i < c->t.workers; i++)
		ret = worker_create(i, &c->t, &c->workers[i]);
	if (ret) {
		snprintf(err, errlen, "cannot start the data plane: %s", strerror(-ret));
		goto out_destroy;
	}
	*out = c;
	return 0;
out_destroy:
	client_destroy(c);
	return ret;
}

const char *client_host_id(const struct client *c)
{
	return c->host_id;
}

unsigned int client_workers(const struct client *c)
{
	return c->t.workers;
}

bool client_has_key(const struct client *c)
{
	return c->has_key;
}

/* ---- devices ---- */

static void device_free(struct device *d)
{
	unsigned int q;

	for (q = 0; d->queues && q < d->nr_queues_alloc; q++) {
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
	free(d->handles);
	free(d->ctl_info);
	free(d);
}

/* A device of nr_queues queues (queue q goes to worker q % W). */
static struct device *device_alloc(struct client *c, const char *export_name, bool read_only,
				   int loss_timeout_s, uint16_t nr_queues)
{
	struct device *d = calloc(1, sizeof(*d));
	uint16_t q;

	if (!d)
		return NULL;
	d->client = c;
	d->queues = calloc(nr_queues, sizeof(*d->queues));
	d->handles = calloc(c->t.workers, sizeof(*d->handles));
	d->ctl_info = calloc(1, sizeof(struct dev_ctl_info));
	if (!d->queues || !d->handles || !d->ctl_info) {
		free(d->queues);
		free(d->handles);
		free(d->ctl_info);
		free(d);
		return NULL;
	}
	d->nr_queues_alloc = nr_queues;
	for (q = 0; q < nr_queues; q++) {
		d->queues[q].dev = d;
		d->queues[q].q_id = q;
		d->queues[q].conn = (uint16_t)(q % c->t.workers);
		sem_init(&d->queues[q].removed, 0, 0);
	}
	snprintf(d->export_name, sizeof(d->export_name), "%s", export_name);
	d->read_only = read_only;
	d->loss_timeout_s = loss_timeout_s;
	d->loss_ms = loss_timeout_s < 0 ? 0 :
		     loss_timeout_s ? (unsigned int)loss_timeout_s * 1000 : c->t.loss_ms;
	return d;
}

/* A device taken over has the queues its kernel device has, which may be
 * more than this daemon's workers; before any is in use. */
static int device_set_queues(struct device *d, uint16_t nr_queues)
{
	struct dev_queue *qs;
	uint16_t q;

	if (nr_queues <= d->nr_queues_alloc) {
		d->nr_queues = nr_queues;
		return 0;
	}
	qs = calloc(nr_queues, sizeof(*qs));
	if (!qs)
		return -ENOMEM;
	for (q = 0; q < d->nr_queues_alloc; q++)
		sem_destroy(&d->queues[q].removed);
	free(d->queues);
	d->queues = qs;
	d->nr_queues_alloc = d->nr_queues = nr_queues;
	for (q = 0; q < nr_queues; q++) {
		qs[q].dev = d;
		qs[q].q_id = q;
		qs[q].conn = (uint16_t)(q % d->client->t.workers);
		sem_init(&qs[q].removed, 0, 0);
	}
	return 0;
}

/* Takes the device's queues away from the workers and the kernel: what
 * waits on a session that is down fails (with force, also what is in
 * flight), STOP_DEV retires every tag, and each worker lets go of its
 * queue once it is idle. */
static void device_stop(struct device *d, bool force)
{
	uint16_t q;

	for (q = 0; q < d->nr_queues; q++) {
		struct wmsg m = { .type = WM_STOP_QUEUE, .dq = &d->queues[q], .force = force };

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
	if (ret) {
		snprintf(err, errlen, "the export's geometry does not fit a ublk device: %s%s%s",
			 why, *why ? ": " : "", strerror(-ret));
		return ret;
	}
	d->promise = (struct dev_promise){
		.max_io_bytes = p.max_io_bytes,
		.writable = !p.read_only,
		.fua = p.fua,
		.max_discard_sectors = p.max_discard_bytes >> 9,
		.max_write_zeroes_sectors = p.max_write_zeroes_bytes >> 9,
	};
	return 0;
}

/* What a device taken over promised the kernel: the parameters the kernel
 * kept when its daemon died. */
static void promise_from_params(struct dev_promise *p, const struct ublk_params *up)
{
	bool ro = up->basic.attrs & UBLK_ATTR_READ_ONLY;

	*p = (struct dev_promise){
		.max_io_bytes = up->basic.max_sectors << 9,
		.writable = !ro,
		.fua = up->basic.attrs & UBLK_ATTR_FUA,
		.max_discard_sectors = (up->types & UBLK_PARAM_TYPE_DISCARD) ?
				       up->discard.max_discard_sectors : 0,
		.max_write_zeroes_sectors = (up->types & UBLK_PARAM_TYPE_DISCARD) ?
					    up->discard.max_write_zeroes_sectors : 0,
	};
}

/* ---- sessions ---- */

static struct sess_entry *find_session(struct client *c, const char *host, uint16_t port)
{
	struct sess_entry *e;

	for (e = c->sessions; e; e = e->next)
		if (!strcmp(e->host, host) && e->port == port)
			return e;
	return NULL;
}

/* The session to host:port, connected now if there is none (one connect at
 * a time per server: a second map waits for the first one's outcome). With
 * start_down the session is made without connecting: it reconnects in the
 * background (a device taken over while its server is away). */
static int get_session(struct client *c, const char *host, uint16_t port, bool start_down,
		       struct sess_entry **out, char *err, size_t errlen)
{
	struct session_config cfg = {
		.host = host, .port = port, .host_id = c->host_id, .t = &c->t,
		.secret = c->has_key ? c->secret : NULL,
		.workers = c->workers,
		.start_down = start_down,
	};
	struct sess_entry *e;
	int ret;

	pthread_mutex_lock(&c->lock);
	while ((e = find_session(c, host, port)) && e->connecting)
		pthread_cond_wait(&c->cond, &c->lock);
	if (e) {
		e->refs++;
		pthread_mutex_unlock(&c->lock);
		*out = e;
		return 0;
	}
	e = calloc(1, sizeof(*e));
	if (!e) {
		pthread_mutex_unlock(&c->lock);
		return -ENOMEM;
	}
	snprintf(e->host, sizeof(e->host), "%s", host);
	e->port = port;
	e->refs = 1;
	e->connecting = true;
	e->next = c->sessions;
	c->sessions = e;
	pthread_mutex_unlock(&c->lock);

	ret = session_create(&cfg, &e->s, err, errlen);

	pthread_mutex_lock(&c->lock);
	e->connecting = false;
	if (ret) {
		struct sess_entry **pp;

		for (pp = &c->sessions; *pp != e; pp = &(*pp)->next)
			;
		*pp = e->next;
		free(e);
		e = NULL;
	}
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	*out = e;
	return ret;
}

struct reaper {
	struct client *c;
	struct session *s;
};

static void *reaper_thread(void *arg)
{
	struct reaper *r = arg;

	session_destroy(r->s);
	pthread_mutex_lock(&r->c->lock);
	r->c->reapers--;
	pthread_cond_broadcast(&r->c->cond);
	pthread_mutex_unlock(&r->c->lock);
	free(r);
	return NULL;
}

/* Drops a device's hold on its session; the last one destroys it, in the
 * background, so that an unmap does not wait for a reconnect attempt. */
static void put_session(struct client *c, struct sess_entry *e)
{
	struct sess_entry **pp;
	struct reaper *r;
	pthread_t t;

	if (!e)
		return;
	pthread_mutex_lock(&c->lock);
	if (--e->refs) {
		pthread_mutex_unlock(&c->lock);
		return;
	}
	for (pp = &c->sessions; *pp != e; pp = &(*pp)->next)
		;
	*pp = e->next;
	r = malloc(sizeof(*r));
	if (r) {
		*r = (struct reaper){ c, e->s };
		c->reapers++;
		if (pthread_create(&t, NULL, reaper_thread, r)) {
			c->reapers--;
			free(r);
			r = NULL;
		} else {
			pthread_detach(t);
		}
	}
	pthread_mutex_unlock(&c->lock);
	if (!r)
		session_destroy(e->s);
	free(e);
}

/* ---- queues ---- */

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

/* Hands queue q to worker q % W, for every queue of the device. */
static int device_add_queues(struct device *d, char *err, size_t errlen)
{
	uint16_t q;
	int ret;

	for (q = 0; q < d->nr_queues; q++) {
		struct wmsg m = { .type = WM_ADD_QUEUE, .dq = &d->queues[q] };

		char why[256];

		ret = queue_buffers(d, q, session_pd(d->sess));
		if (ret) {
			verbs_reg_why(ret, d->queues[q].buf_len, why, sizeof(why));
			snprintf(err, errlen, "cannot set up the IO buffers of queue %u of %s: %s", q,
				 d->path, why);
			return ret;
		}
		ret = worker_call(d->client->workers[q % d->client->t.workers], &m);
		if (ret) {
			snprintf(err, errlen, "cannot set up queue %u of %s: %s", q, d->path,
				 strerror(-ret));
			return ret;
		}
	}
	return 0;
}

/* ---- the state file ---- */

static void fill_saved(struct device *d, struct state_device *sd)
{
	if (known_by_record(d)) {
		*sd = ctl_of(d)->saved;
		return;
	}
	memset(sd, 0, sizeof(*sd));
	sd->id = ublk_dev_id(d->ublk);
	snprintf(sd->name, sizeof(sd->name), "%s", d->name);
	snprintf(sd->server, sizeof(sd->server), "%s", session_host(d->sess));
	sd->port = session_port(d->sess);
	snprintf(sd->export_name, sizeof(sd->export_name), "%s", d->export_name);
	sd->read_only = d->read_only;
	sd->loss_timeout_s = d->loss_timeout_s;
	sd->size = d->info.size;
	sd->logical_block_size = d->info.logical_block_size;
	sd->export_id = d->info.export_id;
	sd->started = ctl_of(d)->ctl != DEV_MAPPING;
}

/* Records every device that exists in the kernel (also one being mapped,
 * and one not taken over yet), for a daemon that takes over after this
 * one dies (state.h). Caller holds c->lock. */
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
	for (d = c->devices; d; d = d->next)
		if (d->ublk || known_by_record(d))
			fill_saved(d, &devs[n++]);
	state_write(c->state_path, devs, n);
	free(devs);
}

static void unlink_device(struct client *c, struct device *d)
{
	struct device **pp;

	for (pp = &c->devices; *pp; pp = &(*pp)->next) {
		if (*pp == d) {
			*pp = d->next;
			return;
		}
	}
}

/* ---- map and unmap ---- */

int client_map(struct client *c, const struct map_args *args, char *devpath,
	       size_t devlen, char *err, size_t errlen)
{
	struct ublk_dev_config uc = { .dev_id = -1, .recovery = true };
	struct sess_entry *se = NULL;
	struct ublk_dev *ub;
	struct device *d;
	bool opened = false;
	int ret;

	if (strlen(args->export_name) >= IBNBD_EXPORT_NAME_MAX) {
		snprintf(err, errlen, "the export name '%s' is longer than %d bytes",
			 args->export_name, IBNBD_EXPORT_NAME_MAX - 1);
		return -ENAMETOOLONG;
	}
	d = device_alloc(c, args->export_name, args->read_only, args->loss_timeout_s,
			 (uint16_t)c->t.workers);
	if (!d)
		return -ENOMEM;
	ctl_of(d)->ctl = DEV_MAPPING;
	pthread_mutex_lock(&c->lock);
	if (c->leaving) {
		pthread_mutex_unlock(&c->lock);
		snprintf(err, errlen, "the daemon is stopping");
		device_free(d);
		return -ESHUTDOWN;
	}
	if (args->name) {
		struct device *o;

		for (o = c->devices; o; o = o->next) {
			if (!strcmp(o->name, args->name)) {
				snprintf(err, errlen, "a device named '%s' is already mapped%s%s%s",
					 args->name, *o->path ? " (" : "", o->path,
					 *o->path ? ")" : "");
				pthread_mutex_unlock(&c->lock);
				device_free(d);
				return -EEXIST;
			}
		}
		snprintf(d->name, sizeof(d->name), "%s", args->name);
	}
	d->next = c->devices;
	c->devices = d;
	pthread_mutex_unlock(&c->lock);

	ret = get_session(c, args->server, args->port, false, &se, err, errlen);
	if (ret)
		goto out_free;
	ctl_of(d)->se = se;
	d->sess = se->s;
	ret = session_open_device(d->sess, d, false, err, errlen);
	if (ret == -EROFS && !d->read_only && !args->rw_required) {
		/* As NBD and NVMe-oF do: what may only be read is mapped
		 * read-only, and the operator told (map_args.mapped_ro). */
		log_info("export '%s' of %s is read-only for this host: mapping it read-only",
			 args->export_name, session_peer(d->sess));
		d->read_only = true;
		ret = session_open_device(d->sess, d, false, err, errlen);
		if (!ret && args->mapped_ro)
			*args->mapped_ro = true;
	}
	if (ret)
		goto out_free;
	opened = true;

	uc.nr_queues = (uint16_t)c->t.workers;
	uc.queue_depth = c->t.queue_depth;
	uc.max_io_bytes = session_max_io(d->sess) < c->t.max_io_bytes ? session_max_io(d->sess) :
			  c->t.max_io_bytes;
	ret = ublk_dev_create(c->ctrl, &uc, &ub);
	if (ret) {
		snprintf(err, errlen, "cannot create a ublk device: %s", strerror(-ret));
		goto out_free;
	}
	/* list and save_state read d->ublk under the lock. */
	pthread_mutex_lock(&c->lock);
	d->ublk = ub;
	pthread_mutex_unlock(&c->lock);
	/* The kernel caps queues at the CPU count: the last workers then
	 * serve no queue of this device. */
	d->nr_queues = ublk_dev_info(d->ublk)->nr_hw_queues;
	if (d->nr_queues > d->nr_queues_alloc)
		d->nr_queues = d->nr_queues_alloc;
	pthread_mutex_lock(&c->lock);
	snprintf(d->path, sizeof(d->path), "/dev/ublkb%d", ublk_dev_id(d->ublk));
	if (!args->name)
		snprintf(d->name, sizeof(d->name), "%s", d->path + 5);
	save_state(c); /* a successor finds (and removes) a device half made */
	pthread_mutex_unlock(&c->lock);
	ret = device_params(d, err, errlen);
	if (ret)
		goto out_free;
	ret = device_add_queues(d, err, errlen);
	if (ret)
		goto out_stop;
	devlink_record(d->name, ublk_dev_id(d->ublk));
	ret = ublk_dev_start(d->ublk);
	if (ret) {
		snprintf(err, errlen, "the kernel refused to start %s: %s", d->path, strerror(-ret));
		goto out_stop;
	}
	pthread_mutex_lock(&c->lock);
	ctl_of(d)->ctl = DEV_LIVE;
	save_state(c);
	pthread_mutex_unlock(&c->lock);
	devlink_set(d->name, ublk_dev_id(d->ublk));
	snprintf(devpath, devlen, "%s", d->path);
	log_info("%s: mapped '%s' from %s (%llu bytes, %s)", d->path, d->export_name,
		 session_peer(d->sess), (unsigned long long)d->info.size,
		 d->read_only ? "ro" : "rw");
	return 0;
out_stop:
	device_stop(d, true);
out_free:
	if (opened)
		session_close_device(d->sess, d);
	pthread_mutex_lock(&c->lock);
	unlink_device(c, d);
	if (d->ublk) {
		devlink_remove(d->name, ublk_dev_id(d->ublk));
		device_free(d); /* DEL_DEV: it is not in the state file any more */
		d = NULL;
		save_state(c);
	}
	pthread_mutex_unlock(&c->lock);
	if (d)
		device_free(d);
	put_session(c, se);
	return ret;
}

/* Finds NAME or /dev/ublkbN and marks it being unmapped. */
static struct device *claim_for_unmap(struct client *c, const char *devpath, char *err,
				      size_t errlen, int *ret)
{
	struct device *d;

	pthread_mutex_lock(&c->lock);
	for (d = c->devices; d; d = d->next)
		if ((*d->path && !strcmp(d->path, devpath)) || !strcmp(d->name, devpath))
			break;
	if (!d) {
		snprintf(err, errlen, "%s is not mapped by ibnbd", devpath);
		*ret = -ENOENT;
	} else if (ctl_of(d)->ctl == DEV_MAPPING) {
		snprintf(err, errlen, "%s is being mapped; unmap it once the map is done", devpath);
		*ret = -EBUSY;
		d = NULL;
	} else if (ctl_of(d)->ctl == DEV_TAKING_OVER) {
		snprintf(err, errlen, "%s is being taken over from the previous daemon; unmap it "
			 "once that is done", devpath);
		*ret = -EBUSY;
		d = NULL;
	} else if (ctl_of(d)->ctl == DEV_UNMAPPING) {
		snprintf(err, errlen, "%s is already being unmapped", devpath);
		*ret = -EALREADY;
		d = NULL;
	} else {
		/* An unrecovered one keeps its state: unmap knows it by it. */
		if (ctl_of(d)->ctl != DEV_UNRECOVERED)
			ctl_of(d)->ctl = DEV_UNMAPPING;
		*ret = 0;
	}
	pthread_mutex_unlock(&c->lock);
	return d;
}

/* A device a previous daemon left and this one could not take over: the
 * kernel still holds its IO. Unmapping it deletes it (STOP_DEV fails what
 * it holds). */
static void drop_unrecovered(struct client *c, struct device *d)
{
	struct ublk_dev *dev;

	if (!ublk_dev_attach(c->ctrl, ctl_of(d)->saved.id, &dev)) {
		ublk_dev_set_owned(dev, true);
		ublk_dev_destroy(dev);
	}
}

int client_unmap(struct client *c, const char *devpath, bool force, char *err,
		 size_t errlen)
{
	struct sess_entry *se;
	struct device *d;
	int ret;

	d = claim_for_unmap(c, devpath, err, errlen, &ret);
	if (!d)
		return ret;
	if (ctl_of(d)->ctl == DEV_UNRECOVERED) {
		pthread_mutex_lock(&c->lock);
		ctl_of(d)->ctl = DEV_UNMAPPING;
		pthread_mutex_unlock(&c->lock);
		drop_unrecovered(c, d);
	} else {
		device_stop(d, force);
		session_close_device(d->sess, d);
	}
	se = ctl_of(d)->se;
	if (*d->path)
		devlink_remove(d->name, atoi(d->path + strlen("/dev/ublkb")));
	log_info("%s: unmapped%s", *d->path ? d->path : d->name, force ? " (forced)" : "");
	pthread_mutex_lock(&c->lock);
	unlink_device(c, d);
	pthread_mutex_unlock(&c->lock);
	device_free(d); /* DEL_DEV */
	pthread_mutex_lock(&c->lock);
	save_state(c);
	pthread_mutex_unlock(&c->lock);
	put_session(c, se);
	return 0;
}

/* ---- taking devices over from a previous daemon ---- */

/* Why a device could not be taken over, and whether that is for good. */
enum recover_result { RECOVERED, RECOVER_LATER, RECOVER_GONE };

/*
 * START_USER_RECOVERY on a device the dead daemon left QUIESCED, the
 * session (connected now, or reconnecting in the background), the queues
 * fetching again, END_USER_RECOVERY: the kernel re-issues what it held. A
 * device whose export is not the one recorded is taken over all the same,
 * failed: its IO fails instead of waiting forever for an owner.
 */
static enum recover_result recover_device(struct client *c, struct device *d,
					  const struct state_device *sd, char *err, size_t errlen)
{
	const struct ublksrv_ctrl_dev_info *ui;
	struct sess_entry *se = NULL;
	struct ublk_dev *ub;
	struct ublk_params up;
	char why[512];
	int ret;

	ret = ublk_dev_attach(c->ctrl, sd->id, &ub);
	if (ret) {
		snprintf(err, errlen, "/dev/ublkb%d is gone", sd->id);
		return RECOVER_GONE;
	}
	/* save_state reads d->ublk under the lock. */
	pthread_mutex_lock(&c->lock);
	d->ublk = ub;
	pthread_mutex_unlock(&c->lock);
	ui = ublk_dev_info(d->ublk);
	if (!sd->started || ui->state == UBLK_S_DEV_DEAD) {
		/* Never started (its map was under way): nothing to serve. */
		ublk_dev_set_owned(ub, true);
		pthread_mutex_lock(&c->lock);
		d->ublk = NULL;
		pthread_mutex_unlock(&c->lock);
		ublk_dev_destroy(ub);
		snprintf(err, errlen, "/dev/ublkb%d was never started (its map did not finish); deleted it",
			 sd->id);
		return RECOVER_GONE;
	}
	ret = ublk_dev_get_params(d->ublk, &up);
	if (!ret && up.basic.dev_sectors << 9 != sd->size)
		ret = -ESTALE;
	if (ret) {
		snprintf(err, errlen, "/dev/ublkb%d is not the device recorded (%s)", sd->id,
			 strerror(-ret));
		return RECOVER_GONE;
	}
	promise_from_params(&d->promise, &up);
	if (device_set_queues(d, ui->nr_hw_queues)) {
		snprintf(err, errlen, "out of memory");
		return RECOVER_LATER;
	}
	ret = ublk_dev_start_recovery(d->ublk, 10000);
	if (ret) {
		snprintf(err, errlen, "the kernel refused to hand /dev/ublkb%d over: %s", sd->id,
			 strerror(-ret));
		return RECOVER_LATER; /* not ours: left as it was */
	}
	/* Committed: from here on, it is ours to serve. */
	ublk_dev_set_owned(d->ublk, true);
	ret = get_session(c, sd->server, sd->port, false, &se, err, errlen);
	if (ret) {
		log_warn("%s: %s; recovering it anyway, its IO waits for the server", d->path, err);
		ret = get_session(c, sd->server, sd->port, true, &se, err, errlen);
	}
	if (ret)
		goto out_stop;
	ctl_of(d)->se = se;
	d->sess = se->s;
	if (session_open_device(d->sess, d, true, why, sizeof(why))) {
		snprintf(d->failed_why, sizeof(d->failed_why), "%s", why);
		atomic_store(&d->failed, true);
		log_err("%s: %s: it now fails every IO", d->path, why);
	}
	ret = device_add_queues(d, err, errlen);
	if (!ret)
		ret = ublk_dev_end_recovery(d->ublk);
	if (ret) {
		session_close_device(d->sess, d);
		goto out_stop;
	}
	log_info("%s: recovered '%s' from %s%s", d->path, d->export_name, session_peer(d->sess),
		 atomic_load(&d->failed) ? " (failed: its export changed)" : "");
	devlink_set(d->name, sd->id);
	return RECOVERED;
out_stop:
	/* Half taken over, and nobody else can have it now: rather than
	 * leave the kernel holding its IO with no owner, remove it (its IO
	 * fails). */
	device_stop(d, true);
	/* The session stays with the device until it is freed: its buffers
	 * are registered on the session's PD, which must outlive them. */
	return RECOVER_GONE;
}

/* One attempt on a device of the state file: recovered, listed as not
 * taken over yet (with why), or dropped. Caller holds nothing. */
static void recover_one(struct client *c, struct device *d)
{
	struct state_device sd = ctl_of(d)->saved;
	struct sess_entry *gone_se = NULL;
	char err[512];
	enum recover_result r = recover_device(c, d, &sd, err, sizeof(err));

	pthread_mutex_lock(&c->lock);
	if (r == RECOVERED) {
		ctl_of(d)->ctl = DEV_LIVE;
	} else if (r == RECOVER_GONE) {
		log_warn("cannot recover /dev/ublkb%d ('%s' from %s:%u): %s; forgetting it", sd.id,
			 sd.export_name, sd.server, sd.port, err);
		unlink_device(c, d);
		gone_se = ctl_of(d)->se;
		devlink_remove(d->name, sd.id);
		device_free(d); /* deletes it if it was taken over */
	} else {
		if (strcmp(ctl_of(d)->why, err))
			log_err("cannot recover /dev/ublkb%d ('%s' from %s:%u): %s; trying again",
				sd.id, sd.export_name, sd.server, sd.port, err);
		snprintf(ctl_of(d)->why, sizeof(ctl_of(d)->why), "%s", err);
		ublk_dev_set_owned(d->ublk, false);
		ublk_dev_destroy(d->ublk);
		d->ublk = NULL;
		ctl_of(d)->ctl = DEV_UNRECOVERED;
	}
	save_state(c);
	pthread_mutex_unlock(&c->lock);
	put_session(c, gone_se); /* after its device's buffers are gone */
}

/* A device of the state file, as not taken over yet. */
static struct device *unrecovered_device(struct client *c, const struct state_device *sd)
{
	struct device *d = device_alloc(c, sd->export_name, sd->read_only, sd->loss_timeout_s,
					(uint16_t)c->t.workers);

	if (!d)
		return NULL;
	ctl_of(d)->ctl = DEV_UNRECOVERED;
	ctl_of(d)->saved = *sd;
	snprintf(ctl_of(d)->why, sizeof(ctl_of(d)->why), "not taken over yet");
	snprintf(d->name, sizeof(d->name), "%s", sd->name);
	snprintf(d->path, sizeof(d->path), "/dev/ublkb%d", sd->id);
	d->info.size = sd->size;
	d->info.logical_block_size = sd->logical_block_size;
	d->info.export_id = sd->export_id;
	return d;
}

int client_recover(struct client *c)
{
	struct state_device *devs;
	struct device *d;
	size_t i, n;
	int recovered = 0;

	if (!c->state_path)
		return 0;
	if (state_read(c->state_path, &devs, &n)) {
		log_err("%s is not a device list; ignoring it", c->state_path);
		return 0;
	}
	pthread_mutex_lock(&c->lock);
	for (i = 0; i < n; i++) {
		d = unrecovered_device(c, &devs[i]);
		if (!d) {
			log_err("cannot recover /dev/ublkb%d: out of memory", devs[i].id);
			continue;
		}
		d->next = c->devices;
		c->devices = d;
	}
	pthread_mutex_unlock(&c->lock);
	free(devs);
	recovered = client_retry_recovery(c);
	pthread_mutex_lock(&c->lock);
	save_state(c);
	pthread_mutex_unlock(&c->lock);
	return recovered;
}

int client_retry_recovery(struct client *c)
{
	int recovered = 0;
	struct device *d;

	for (;;) {
		pthread_mutex_lock(&c->lock);
		for (d = c->devices; d; d = d->next)
			if (ctl_of(d)->ctl == DEV_UNRECOVERED && !d->recover_tried)
				break;
		if (d) {
			d->recover_tried = true;
			ctl_of(d)->ctl = DEV_TAKING_OVER; /* ours while we try */
		}
		pthread_mutex_unlock(&c->lock);
		if (!d)
			break;
		recover_one(c, d);
	}
	/* Next time, everyone is tried again. */
	pthread_mutex_lock(&c->lock);
	for (d = c->devices; d; d = d->next) {
		recovered += d->recover_tried && ctl_of(d)->ctl == DEV_LIVE;
		d->recover_tried = false;
	}
	pthread_mutex_unlock(&c->lock);
	return recovered;
}

bool client_has_device(struct client *c, const char *name)
{
	bool found = false;

	pthread_mutex_lock(&c->lock);
	for (struct device *d = c->devices; d && !found; d = d->next)
		found = !strcmp(d->name, name);
	pthread_mutex_unlock(&c->lock);
	return found;
}

bool client_has_unrecovered(struct client *c)
{
	bool any = false;

	pthread_mutex_lock(&c->lock);
	for (struct device *d = c->devices; d && !any; d = d->next)
		any = ctl_of(d)->ctl == DEV_UNRECOVERED;
	pthread_mutex_unlock(&c->lock);
	return any;
}

/* ---- list ---- */

/* What the device's requests did (`list --json` "io", and /metrics). */
static json_object *describe_io(const struct device *d)
{
	json_object *o = json_object_new_object(), *b = json_object_new_array();
	struct dq_stats s;

	device_stats_sum(d, &s);
#define IO_FIELD(f) json_object_object_add(o, #f, json_object_new_int64((int64_t)s.io.f));
#define FIELD(f) json_object_object_add(o, #f, json_object_new_int64((int64_t)s.f));
	IO_COUNTS_FIELDS(IO_FIELD)
	FIELD(errors) FIELD(reissued) FIELD(timeouts) FIELD(waiting)
#undef FIELD
#undef IO_FIELD
	json_object_object_add(o, "in_flight", json_object_new_int64((int64_t)(s.started - s.completed)));
	/* Per bucket of metrics.h's bounds, not cumulative. */
	for (unsigned int i = 0; i <= LAT_BUCKETS; i++)
		json_object_array_add(b, json_object_new_int64((int64_t)s.latency.bucket[i]));
	json_object_object_add(o, "latency_buckets", b);
	json_object_object_add(o, "latency_sum_ns", json_object_new_int64((int64_t)s.latency.sum_ns));
	return o;
}

static json_object *describe(struct device *d)
{
	json_object *o = json_object_new_object();
	const char *state;
	uint64_t resending = 0;
	uint16_t q;

	json_object_object_add(o, "device", json_object_new_string(d->path));
	json_object_object_add(o, "name", json_object_new_string(d->name));
	json_object_object_add(o, "loss_timeout_s", json_object_new_int((int)(d->loss_ms / 1000)));
	if (known_by_record(d)) {
		const struct state_device *sd = &ctl_of(d)->saved;

		json_object_object_add(o, "server", json_object_new_string(sd->server));
		json_object_object_add(o, "port", json_object_new_int(sd->port));
		json_object_object_add(o, "export", json_object_new_string(sd->export_name));
		json_object_object_add(o, "size", json_object_new_int64((int64_t)sd->size));
		json_object_object_add(o, "access", json_object_new_string(sd->read_only ? "ro" : "rw"));
		json_object_object_add(o, "state", json_object_new_string(
			ctl_of(d)->ctl == DEV_TAKING_OVER ? "mapping" : "failed"));
		json_object_object_add(o, "not_recovered", json_object_new_boolean(true));
		json_object_object_add(o, "last_error", json_object_new_string(ctl_of(d)->why));
		return o;
	}
	json_object_object_add(o, "server", json_object_new_string(session_host(d->sess)));
	json_object_object_add(o, "port", json_object_new_int(session_port(d->sess)));
	json_object_object_add(o, "export", json_object_new_string(d->export_name));
	json_object_object_add(o, "size", json_object_new_int64((int64_t)d->info.size));
	json_object_object_add(o, "access", json_object_new_string(d->read_only ? "ro" : "rw"));
	session_describe(d->sess, d, o);
	/* The device's state is its session's, unless the export itself
	 * went away, or it is being mapped or unmapped; while the session is
	 * down, the device is failed once its own loss timeout has passed. */
	state = json_object_get_string(json_object_object_get(o, "session"));
	if (!strcmp(state, "reconnecting") || !strcmp(state, "failed"))
		state = device_lost(d, clock_now_ms()) ? "failed" : "reconnecting";
	for (q = 0; q < d->nr_queues; q++)
		resending += atomic_load(&d->queues[q].resending);
	json_object_object_add(o, "resending", json_object_new_int64((int64_t)resending));
	if (resending && !strcmp(state, "live"))
		state = "recovering"; /* connected; what was lost is not all answered */
	if (atomic_load(&d->failed)) {
		state = "failed";
		json_object_object_add(o, "export_changed", json_object_new_boolean(true));
		json_object_object_add(o, "last_error", json_object_new_string(d->failed_why));
	}
	if (ctl_of(d)->ctl == DEV_MAPPING)
		state = "mapping";
	else if (ctl_of(d)->ctl == DEV_UNMAPPING)
		state = "unmapping";
	json_object_object_add(o, "state", json_object_new_string(state));
	json_object_object_add(o, "io", describe_io(d));
	return o;
}

json_object *client_list(struct client *c)
{
	json_object *arr = json_object_new_array();
	struct device *d;

	pthread_mutex_lock(&c->lock);
	for (d = c->devices; d; d = d->next)
		if (*d->path && (ctl_of(d)->ctl != DEV_MAPPING || d->ublk))
			json_object_array_add(arr, describe(d));
	pthread_mutex_unlock(&c->lock);
	return arr;
}

/* ---- leaving ---- */

/*
 * The daemon leaves its devices to the next one (SIGTERM, an upgrade): no
 * request goes out any more, what is in flight is answered (up to
 * LEAVE_DRAIN_MS), then the connections close and the queues are dropped
 * without a commit: with user recovery the kernel holds the devices'
 * requests, and re-issues what was not answered, to the daemon that takes
 * them over. No device is stopped or deleted.
 */
static void client_leave(struct client *c)
{
	int64_t deadline = clock_now_ms() + LEAVE_DRAIN_MS;
	struct sess_entry *e;
	struct device *d;
	unsigned int inflight;
	uint16_t q;

	pthread_mutex_lock(&c->lock);
	c->leaving = true;
	while (c->reapers)
		pthread_cond_wait(&c->cond, &c->lock);
	pthread_mutex_unlock(&c->lock);
	/* Nothing else runs now: the daemon serves no verb any more. */
	do {
		inflight = 0;
		for (e = c->sessions; e; e = e->next)
			if (e->s)
				inflight += session_quiesce(e->s);
		if (inflight)
			usleep(20000);
	} while (inflight && clock_now_ms() < deadline);
	if (inflight)
		log_warn("leaving with %u request(s) unanswered: the next daemon sends them again",
			 inflight);
	for (d = c->devices; d; d = d->next) {
		for (q = 0; q < d->nr_queues; q++) {
			struct wmsg m = { .type = WM_LEAVE_QUEUE, .dq = &d->queues[q] };

			if (d->queues[q].w)
				worker_call(d->queues[q].w, &m);
			/* Its session's protection domain goes with the session. */
			verbs_dereg_mr(d->queues[q].mr);
			d->queues[q].mr = NULL;
		}
		if (d->ublk)
			ublk_dev_set_owned(d->ublk, false);
	}
	while ((e = c->sessions)) {
		c->sessions = e->next;
		session_leave(e->s);
		free(e);
	}
}

void client_destroy(struct client *c)
{
	unsigned int i;

	if (!c)
		return;
	client_leave(c);
	/* The workers' rings go first: the kernel takes back the queues'
	 * commands, then their memory may go. */
	for (i = 0; c->workers && i < c->t.workers; i++)
		worker_destroy(c->workers[i]);
	while (c->devices) {
		struct device *d = c->devices;

		c->devices = d->next;
		if (*d->path)
			log_info("%s: left to the next daemon", d->path);
		device_free(d);
	}
	free(c->workers);
	ublk_ctrl_destroy(c->ctrl);
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->cond);
	free(c->state_path);
	OPENSSL_cleanse(c->secret, sizeof(c->secret));
	free(c);
}
