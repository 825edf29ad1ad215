// SPDX-License-Identifier: GPL-2.0-only
/*
 * A session to one server (session.h): its W connections, the devices
 * opened on them, and the thread that reconnects them when one fails.
 */
#include "control/session.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "clock.h"
#include "control/export_check.h"
#include "dataplane/worker.h"
#include "log.h"
#include "verbs.h"

struct session {
	struct session_config cfg;
	struct client_tunables t;
	char host[256];
	char host_id[IBNBD_HOST_ID_MAX];
	uint16_t port;
	char peer[300];
	uint8_t uuid[16];
	unsigned int nr_conns;
	struct conn **conns;     /* conns[q]: attached to worker q when live */
	struct wsess *ws;        /* [nr_conns] */
	struct ibv_pd *pd;       /* where the devices' tag buffers live */
	/* The session's own protection domains, one per local RDMA device it
	 * has connected from: no other server's rkeys reach its buffers.
	 * Connections are made on threads of their own, hence the lock. */
	pthread_mutex_t pd_lock;
	struct {
		struct ibv_context *verbs;
		struct ibv_pd *pd;
	} pds[SESSION_MAX_PDS];
	unsigned int npds;

	/* Serialises re-opening and attaching after a reconnect with opening
	 * and closing devices: the device list only changes, and handles are
	 * only rewritten, under it. Never held while connecting, and only
	 * for bounded exchanges with the server. */
	pthread_mutex_t op_lock;

	pthread_mutex_t lock;    /* guards everything below */
	pthread_cond_t cond;
	pthread_t thread;
	bool thread_started;
	bool lost;               /* a worker reported a lost connection */
	bool lost_on_wire;       /* ... by a failed work request */
	bool stopping;
	struct device *devices;
	unsigned int nr_devices;
	enum session_state state;
	unsigned int attempt;    /* of the current outage */
	int64_t down_since_ms;
	int64_t next_try_ms;
	int64_t last_outage_ms;  /* how long the last outage lasted */
	char why[256];           /* what went wrong last */
	uint64_t reconnects;
	/* When the current outage began (clock_now_ms(), at least 1), 0 while
	 * connected: what device_lost() reads (workers). */
	_Atomic int64_t down_at_ms;
};

static struct ibv_pd *session_get_pd(void *ctx, struct ibv_context *verbs)
{
	struct session *s = ctx;
	struct ibv_pd *pd = NULL;
	unsigned int i;

	pthread_mutex_lock(&s->pd_lock);
	for (i = 0; i < s->npds && !pd; i++)
		if (s->pds[i].verbs == verbs)
			pd = s->pds[i].pd;
	if (!pd && s->npds < SESSION_MAX_PDS && (pd = ibv_alloc_pd(verbs))) {
		s->pds[s->npds].verbs = verbs;
		s->pds[s->npds++].pd = pd;
	}
	pthread_mutex_unlock(&s->pd_lock);
	return pd;
}

/* Last: every QP and MR in them is gone (a device's tag buffers are
 * unregistered when it leaves the session). */
static void free_pds(struct session *s)
{
	for (unsigned int i = 0; i < s->npds; i++)
		if (ibv_dealloc_pd(s->pds[i].pd))
			log_warn("%s: a protection domain is still in use at the session's end",
				 s->peer);
	s->npds = 0;
}

static const char *const state_names[] = {
	[SESSION_LIVE] = "live",
	[SESSION_RECONNECTING] = "reconnecting",
	[SESSION_RECOVERING] = "recovering",
	[SESSION_FAILED] = "failed",
};

const char *session_peer(const struct session *s)
{
	return s->peer;
}

const char *session_host(const struct session *s)
{
	return s->host;
}

uint16_t session_port(const struct session *s)
{
	return s->port;
}

struct wsess *session_wsess(struct session *s, unsigned int q)
{
	return &s->ws[q];
}

bool device_lost(const struct device *d, int64_t now_ms)
{
	int64_t down = atomic_load_explicit(&d->sess->down_at_ms, memory_order_relaxed);

	return d->loss_ms && down && now_ms - down >= d->loss_ms;
}

unsigned int session_nr_devices(struct session *s)
{
	unsigned int n;

	pthread_mutex_lock(&s->lock);
	n = s->nr_devices;
	pthread_mutex_unlock(&s->lock);
	return n;
}

uint32_t session_max_io(const struct session *s)
{
	uint32_t max = UINT32_MAX;
	unsigned int q;

	for (q = 0; q < s->nr_conns; q++)
		if (s->conns[q] && conn_max_io(s->conns[q]) < max)
			max = conn_max_io(s->conns[q]);
	return max;
}

struct ibv_pd *session_pd(const struct session *s)
{
	return s->pd;
}

void session_report_failure(struct session *s, unsigned int q, const char *why, bool wire)
{
	pthread_mutex_lock(&s->lock);
	if (!s->lost)
		s->lost_on_wire = wire;
	s->lost = true;
	snprintf(s->why, sizeof(s->why), "connection %u: %.200s", q, why);
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

static void *session_thread(void *arg);
static int start_thread(struct session *s);

static int worker_msg(struct session *s, unsigned int q, enum wmsg_type type, struct conn *c)
{
	struct wmsg m = { .type = type, .ws = &s->ws[q], .conn = c };

	return worker_call(s->cfg.workers[q], &m);
}

struct connect_job {
	struct conn_params p;
	struct conn **out;
	char err[256];
	int ret;
	bool accepted;
	pthread_t thread;
	bool started;
};

static void *connect_thread(void *arg)
{
	struct connect_job *j = arg;

	j->ret = conn_connect(&j->p, j->out, j->err, sizeof(j->err));
	return NULL;
}

/* Connects all W connections into conns[], at the same time (a reconnect
 * waits for the slowest, not for the sum); on failure none is left.
 * *accepted: the server accepted the connects (a failure was later). */
static int connect_all(struct session *s, struct conn **conns, unsigned int timeout_ms,
		       bool *accepted, char *err, size_t errlen)
{
	struct connect_job *jobs = calloc(s->nr_conns, sizeof(*jobs));
	unsigned int q;
	int ret = 0;

	if (!jobs)
		return -ENOMEM;
	for (q = 0; q < s->nr_conns; q++) {
		jobs[q].p = (struct conn_params){
			.host = s->host, .port = s->port,
			.queue_depth = s->t.conn_depth, .max_io_size = s->t.max_io_bytes,
			.timeout_ms = timeout_ms, .host_id = s->host_id, .session_uuid = s->uuid,
			.secret = s->cfg.secret,
			.conn_index = (uint16_t)q, .conn_count = (uint16_t)s->nr_conns,
			.get_pd = session_get_pd, .get_pd_ctx = s,
			.accepted = &jobs[q].accepted,
		};
		jobs[q].out = &conns[q];
		/* Connection 0 on this thread; the others on their own. */
		if (q && !pthread_create(&jobs[q].thread, NULL, connect_thread, &jobs[q]))
			jobs[q].started = true;
		else if (q)
			connect_thread(&jobs[q]);
	}
	connect_thread(&jobs[0]);
	if (accepted)
		*accepted = true;
	for (q = 0; q < s->nr_conns; q++) {
		if (jobs[q].started)
			pthread_join(jobs[q].thread, NULL);
		if (jobs[q].ret && !ret) {
			ret = jobs[q].ret;
			snprintf(err, errlen, "%s", jobs[q].err);
		}
		if (accepted && !jobs[q].accepted)
			*accepted = false;
	}
	free(jobs);
	if (ret)
		for (q = 0; q < s->nr_conns; q++) {
			conn_destroy(conns[q]);
			conns[q] = NULL;
		}
	return ret;
}

static void destroy_conns(struct session *s)
{
	unsigned int q;

	for (q = 0; q < s->nr_conns; q++) {
		conn_destroy(s->conns[q]);
		s->conns[q] = NULL;
	}
}

int session_create(const struct session_config *cfg, struct session **out, char *err,
		   size_t errlen)
{
	struct session *s = calloc(1, sizeof(*s));
	pthread_condattr_t ca;
	unsigned int q;
	int ret;

	if (!s)
		return -ENOMEM;
	s->cfg = *cfg;
	s->t = *cfg->t;
	s->nr_conns = s->t.workers;
	snprintf(s->host, sizeof(s->host), "%s", cfg->host);
	snprintf(s->host_id, sizeof(s->host_id), "%s", cfg->host_id ? cfg->host_id : "");
	s->port = cfg->port;
	snprintf(s->peer, sizeof(s->peer), "%s:%u", s->host, s->port);
	pthread_mutex_init(&s->op_lock, NULL);
	pthread_mutex_init(&s->pd_lock, NULL);
	pthread_mutex_init(&s->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* wait_ms() */
	pthread_cond_init(&s->cond, &ca);
	pthread_condattr_destroy(&ca);
	s->conns = calloc(s->nr_conns, sizeof(*s->conns));
	s->ws = calloc(s->nr_conns, sizeof(*s->ws));
	if (!s->conns || !s->ws) {
		ret = -ENOMEM;
		goto out_free;
	}
	if (getrandom(s->uuid, sizeof(s->uuid), 0) != sizeof(s->uuid)) {
		ret = -errno;
		snprintf(err, errlen, "cannot draw a session id: %s", strerror(errno));
		goto out_free;
	}
	if (!cfg->start_down) {
		ret = connect_all(s, s->conns, s->t.connect_ms, NULL, err, errlen);
		if (ret)
			goto out_free;
		s->pd = conn_pd(s->conns[0]);
	}
	for (q = 0; q < s->nr_conns; q++) {
		s->ws[q].sess = s;
		ret = worker_msg(s, q, WM_ADD_SESS, NULL);
		if (!ret && !cfg->start_down)
			ret = worker_msg(s, q, WM_ATTACH, s->conns[q]);
		if (ret) {
			snprintf(err, errlen, "cannot hand the connection to %s to a worker: %s",
				 s->peer, strerror(-ret));
			goto out_destroy;
		}
	}
	if (cfg->start_down) {
		s->lost = true;
		snprintf(s->why, sizeof(s->why), "not connected yet");
		ret = start_thread(s);
		if (ret) {
			snprintf(err, errlen, "cannot start the session thread: %s", strerror(-ret));
			goto out_destroy;
		}
	} else {
		log_info("%s: session up, %u connections", s->peer, s->nr_conns);
	}
	s->state = SESSION_LIVE;
	*out = s;
	return 0;
out_destroy:
	/* Workers are told to forget the session in session_destroy(). */
	*out = s;
	session_destroy(s);
	*out = NULL;
	return ret;
out_free:
	destroy_conns(s);
	free_pds(s);
	free(s->conns);
	free(s->ws);
	free(s);
	return ret;
}

/* Starts the reconnect thread lazily: most sessions never need it, but a
 * session always has one once it is created (see session_open_device). */
static int start_thread(struct session *s)
{
	int ret;

	pthread_mutex_lock(&s->lock);
	ret = s->thread_started ? 0 : -pthread_create(&s->thread, NULL, session_thread, s);
	if (!ret)
		s->thread_started = true;
	pthread_mutex_unlock(&s->lock);
	return ret;
}

/* Stops the reconnect thread: it may be in the middle of an attempt, which
 * ends within its time (reconnect_ms, or more after slow attempts). */
static void stop_thread(struct session *s)
{
	bool started;

	pthread_mutex_lock(&s->lock);
	s->stopping = true;
	pthread_cond_signal(&s->cond);
	started = s->thread_started;
	pthread_mutex_unlock(&s->lock);
	if (started)
		pthread_join(s->thread, NULL);
}

static void session_free(struct session *s)
{
	unsigned int q;

	destroy_conns(s);
	for (q = 0; q < s->nr_conns; q++) {
		slot_pool_destroy(&s->ws[q].slots);
		free(s->ws[q].inflight);
	}
	free_pds(s);
	pthread_mutex_destroy(&s->op_lock);
	pthread_mutex_destroy(&s->pd_lock);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->cond);
	free(s->conns);
	free(s->ws);
	free(s);
}

/* The reconnect thread stopped, every worker told `how` to let go of the
 * session (WM_REMOVE_SESS or WM_FORGET_SESS), then it is freed. */
static void session_end(struct session *s, enum wmsg_type how)
{
	unsigned int q;

	if (!s)
		return;
	stop_thread(s);
	for (q = 0; q < s->nr_conns; q++)
		if (s->ws[q].w)
			worker_msg(s, q, how, NULL);
	session_free(s);
}

void session_destroy(struct session *s)
{
	session_end(s, WM_REMOVE_SESS);
}

unsigned int session_quiesce(struct session *s)
{
	unsigned int q, inflight = 0;

	for (q = 0; q < s->nr_conns; q++) {
		struct wmsg m = { .type = WM_QUIESCE, .ws = &s->ws[q] };

		if (s->ws[q].w) {
			int ret = worker_call(s->cfg.workers[q], &m);

			inflight += ret > 0 ? (unsigned int)ret : 0;
		}
	}
	return inflight;
}

void session_leave(struct session *s)
{
	session_end(s, WM_FORGET_SESS);
}

/* ---- opening devices ---- */

/* Marks d failed for good: from now on every IO to it fails (workers
 * check the flag), and `list` says why. */
static void device_fail(struct session *s, struct device *d, const char *why)
{
	unsigned int q;

	snprintf(d->failed_why, sizeof(d->failed_why), "%s", why);
	atomic_store(&d->failed, true);
	for (q = 0; q < s->nr_conns; q++)
		d->handles[q].cookie = 0; /* no server accepts it */
	log_err("%s: %s: it now fails every IO", d->path, why);
}

/* An open found d's export larger than d: it keeps working at its size;
 * say once per size that a remap would give it the rest. */
static void note_growth(struct session *s, struct device *d, uint64_t size)
{
	if (size <= d->info.size || size == d->export_grown_to)
		return;
	log_warn("%s: export '%s' on %s grew to %llu bytes; the device stays at %llu until it is mapped again (this kernel's ublk cannot resize a device)",
		 *d->path ? d->path : d->name, d->export_name, s->peer, (unsigned long long)size,
		 (unsigned long long)d->info.size);
	pthread_mutex_lock(&s->lock);
	d->export_grown_to = size;
	pthread_mutex_unlock(&s->lock);
}

/* The first open of d on a live session: learns what it maps (a new
 * device), or checks it is what it was mapped from (one taken over). */
static int check_first_open(struct session *s, struct device *d,
			    const struct ibnbd_dev_info *info, bool first, char *err, size_t errlen)
{
	char what[160];

	if (!d->info.size) {
		d->info = *info;
		return 0;
	}
	if (!export_same(info, &d->info)) {
		export_describe_change(info, &d->info, what, sizeof(what));
		snprintf(err, errlen, "export '%s' on %s is not the one %s was mapped from (%s)",
			 d->export_name, s->peer, *d->path ? d->path : "the device", what);
		return -ESTALE;
	}
	if (first) {
		uint64_t size = d->info.size; /* the ublk device's, kept */

		note_growth(s, d, info->size);
		d->info = *info;
		d->info.size = size;
	}
	return 0;
}

int session_open_device(struct session *s, struct device *d, bool may_wait, char *err,
			size_t errlen)
{
	uint8_t access = d->read_only ? IBNBD_ACCESS_RO : IBNBD_ACCESS_RW;
	unsigned int q, opened = 0;
	int ret;

	ret = start_thread(s);
	if (ret) {
		snprintf(err, errlen, "cannot start the session thread: %s", strerror(-ret));
		return ret;
	}
	pthread_mutex_lock(&s->op_lock);
	pthread_mutex_lock(&s->lock);
	if (s->state != SESSION_LIVE || s->lost) {
		if (may_wait) {
			d->sess_next = s->devices;
			s->devices = d;
			s->nr_devices++;
			ret = 0;
		} else {
			snprintf(err, errlen, "%s is %s (%s): try again once it is back", s->peer,
				 s->lost ? "unreachable" : state_names[s->state], s->why);
			ret = -EAGAIN;
		}
		pthread_mutex_unlock(&s->lock);
		pthread_mutex_unlock(&s->op_lock);
		return ret;
	}
	pthread_mutex_unlock(&s->lock);
	for (q = 0; q < s->nr_conns; q++) {
		struct wmsg m = { .type = WM_OPEN, .ws = &s->ws[q], .name = d->export_name,
				  .access = access };

		if (strlen(d->export_name) >= IBNBD_EXPORT_NAME_MAX)
			ret = -ENAMETOOLONG;
		else
			ret = worker_call(s->cfg.workers[q], &m);
		if (ret) {
			conn_open_error(s->conns[q], d->export_name, ret, err, errlen);
			break;
		}
		opened++;
		d->handles[q] = (struct dev_handle){ m.info.handle, m.info.cookie };
		ret = check_first_open(s, d, &m.info, q == 0, err, errlen);
		if (ret)
			break;
		if (q == 0)
			memcpy(d->boot_id, m.info.boot_id, sizeof(d->boot_id));
	}
	if (ret) {
		for (q = 0; q < opened; q++) {
			struct wmsg m = { .type = WM_CLOSE, .ws = &s->ws[q],
					  .handle = d->handles[q].handle };

			worker_call(s->cfg.workers[q], &m);
		}
	} else {
		pthread_mutex_lock(&s->lock);
		d->sess_next = s->devices;
		s->devices = d;
		s->nr_devices++;
		pthread_mutex_unlock(&s->lock);
	}
	pthread_mutex_unlock(&s->op_lock);
	return ret;
}

void session_close_device(struct session *s, struct device *d)
{
	struct device **pp;
	bool live;
	unsigned int q;

	pthread_mutex_lock(&s->op_lock);
	pthread_mutex_lock(&s->lock);
	for (pp = &s->devices; *pp; pp = &(*pp)->sess_next) {
		if (*pp == d) {
			*pp = d->sess_next;
			s->nr_devices--;
			break;
		}
	}
	live = s->state == SESSION_LIVE && !s->lost;
	pthread_mutex_unlock(&s->lock);
	/* The CLOSE of each connection is answered only after the send
	 * completion of everything posted before it, so no WR retransmits
	 * from the device's buffers once this returns (docs/protocol.md). */
	for (q = 0; live && !atomic_load(&d->failed) && q < s->nr_conns; q++) {
		struct wmsg m = { .type = WM_CLOSE, .ws = &s->ws[q], .handle = d->handles[q].handle };
		int ret = worker_call(s->cfg.workers[q], &m);

		if (ret && ret != -ENOTCONN && ret != -ECONNRESET)
			log_warn("%s: closing '%s' on connection %u: %s", s->peer, d->export_name,
				 q, strerror(-ret));
	}
	pthread_mutex_unlock(&s->op_lock);
}

/* ---- reconnect ---- */

/* The server host restarted (another boot id): writes acknowledged since
 * the device's last completed FLUSH may have been in its volatile cache
 * and are lost, and the next FLUSH must say so. */
static void check_boot(struct session *s, struct device *d, const uint8_t boot_id[16])
{
	static const uint8_t zero[16];
	uint64_t acked = device_writes_acked(d);

	if (!memcmp(boot_id, zero, 16) || !memcmp(d->boot_id, zero, 16) ||
	    !memcmp(boot_id, d->boot_id, 16)) {
		memcpy(d->boot_id, boot_id, 16);
		return;
	}
	memcpy(d->boot_id, boot_id, 16);
	if (acked <= atomic_load(&d->flushed_upto)) {
		log_info("%s: the server host %s restarted; every acknowledged write had been flushed",
			 d->path, s->peer);
		return;
	}
	atomic_store(&d->flush_must_fail, true);
	pthread_mutex_lock(&s->lock);
	d->lost_writes_events++;
	pthread_mutex_unlock(&s->lock);
	log_err("%s: the server host %s restarted with %llu acknowledged write(s) not yet flushed: they may be lost, and the next FLUSH fails",
		d->path, s->peer, (unsigned long long)(acked - atomic_load(&d->flushed_upto)));
}

/*
 * Re-opens d on every new connection into handles[] and checks it is still
 * the same export, serving what the device promised. 0: it is. 1: the
 * server refused it, or it is another export or offers less: d is failed
 * (the handles it got are closed again). -errno: a connection broke or the
 * attempt's deadline passed; the whole attempt fails.
 */
static int reopen_device(struct session *s, struct conn **conns, struct device *d,
			 struct dev_handle *handles, int64_t deadline, char *err, size_t errlen)
{
	uint8_t access = d->read_only ? IBNBD_ACCESS_RO : IBNBD_ACCESS_RW;
	char why[sizeof(d->failed_why)] = "";
	struct ibnbd_dev_info info;
	unsigned int q, opened;
	int ret = 0;

	for (q = 0; q < s->nr_conns; q++) {
		int64_t left = deadline - clock_now_ms();

		ret = left > 0 ? conn_open_sync(conns[q], d->export_name, access,
						(unsigned int)left, &info) : -ETIMEDOUT;
		if (ret) {
			snprintf(err, errlen, "re-opening '%s' on connection %u: %s", d->export_name,
				 q, strerror(-ret));
			break;
		}
		if (info.status) {
			char what[512];

			conn_open_error(conns[q], d->export_name, info.status, what, sizeof(what));
			snprintf(why, sizeof(why), "the re-open after a reconnect was refused: %s",
				 what);
			break;
		}
		handles[q] = (struct dev_handle){ info.handle, info.cookie };
		if (!export_same(&info, &d->info)) {
			char what[160];

			export_describe_change(&info, &d->info, what, sizeof(what));
			snprintf(why, sizeof(why), "export '%s' on %s is no longer the one this "
				 "device was mapped from (%s)", d->export_name, s->peer, what);
			q++;
			break;
		}
		if (!export_keeps_promise(&d->promise, &info, conn_max_io(conns[q]), why,
					  sizeof(why))) {
			char what[256];

			snprintf(what, sizeof(what), "%s", why);
			snprintf(why, sizeof(why), "export '%s' on %s no longer serves what the device "
				 "offers: %s", d->export_name, s->peer, what);
			q++;
			break;
		}
		if (q == 0) {
			check_boot(s, d, info.boot_id);
			note_growth(s, d, info.size);
		}
	}
	if (ret)
		return ret; /* the attempt's connections go, and what they opened */
	if (!*why)
		return 0;
	/* handles[0..q-1] were opened: close them again. */
	for (opened = 0; opened < q; opened++) {
		int64_t left = deadline - clock_now_ms();

		ret = left > 0 ? conn_close_sync(conns[opened], handles[opened].handle,
						 (unsigned int)left) : -ETIMEDOUT;
		if (ret < 0) {
			snprintf(err, errlen, "closing '%s' on connection %u: %s", d->export_name,
				 opened, strerror(-ret));
			return ret;
		}
	}
	device_fail(s, d, why);
	return 1;
}

/*
 * Re-opens every device on the new connections (detached: no worker reads
 * the handles now) and registers the tag buffers again if the connections
 * landed on another RDMA device. A device that cannot be re-opened as the
 * same export serving the same promise fails alone; its requests are
 * failed by the workers before any connection is attached, so none of them
 * is ever sent with a handle of the old connections, which on the new ones
 * may name another export. All within one deadline: a server that stops
 * answering fails the attempt, it does not hold the devices' lock long.
 */
static int reopen_devices(struct session *s, struct conn **conns, unsigned int timeout_ms,
			  char *err, size_t errlen)
{
	struct dev_handle *handles = calloc(s->nr_conns, sizeof(*handles));
	int64_t deadline = clock_now_ms() + timeout_ms;
	struct device *d;
	unsigned int q;
	int ret = 0;

	if (!handles)
		return -ENOMEM;
	for (d = s->devices; d && ret >= 0; d = d->sess_next) {
		if (atomic_load(&d->failed))
			continue;
		ret = reopen_device(s, conns, d, handles, deadline, err, errlen);
		if (ret)
			continue;
		memcpy(d->handles, handles, s->nr_conns * sizeof(*handles));
		for (q = 0; q < d->nr_queues; q++) {
			struct dev_queue *dq = &d->queues[q];
			struct ibv_pd *pd = conn_pd(conns[q % s->nr_conns]);
			struct ibv_mr *mr;

			if (!dq->buf || (dq->mr && dq->mr->pd == pd))
				continue;
			ret = verbs_reg_mr(pd, dq->buf, dq->buf_len,
					   IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE, &mr);
			if (ret) {
				char why[256];

				verbs_reg_why(ret, dq->buf_len, why, sizeof(why));
				snprintf(err, errlen, "cannot register %.40s's buffers: %.150s", d->path, why);
				break;
			}
			verbs_dereg_mr(dq->mr);
			dq->mr = mr;
		}
	}
	if (ret > 0)
		ret = 0;
	/* Whatever the outcome, what waits for a failed device fails now. */
	for (d = s->devices; d; d = d->sess_next) {
		if (!atomic_load(&d->failed))
			continue;
		for (q = 0; q < d->nr_queues; q++) {
			struct wmsg m = { .type = WM_FAIL_QUEUE, .dq = &d->queues[q] };

			if (d->queues[q].w)
				worker_call(d->queues[q].w, &m);
		}
	}
	free(handles);
	return ret;
}

static void set_state(struct session *s, enum session_state state)
{
	pthread_mutex_lock(&s->lock);
	s->state = state;
	pthread_mutex_unlock(&s->lock);
}

/*
 * Logs, once an outage, each device whose loss timeout has passed (its IO
 * fails now: the workers see the same through device_lost()); the session
 * is failed once every device's has.
 */
static void note_losses(struct session *s, int64_t now)
{
	unsigned int lost = 0;
	struct device *d;

	pthread_mutex_lock(&s->lock);
	for (d = s->devices; d; d = d->sess_next) {
		if (!device_lost(d, now))
			continue;
		lost++;
		if (d->loss_noted)
			continue;
		d->loss_noted = true;
		log_err("%s: unreachable for %lld s (loss timeout of %s %u s): IO to %s fails "
			"until it is back", s->peer, (long long)(now - s->down_since_ms) / 1000,
			*d->name ? d->name : d->path, d->loss_ms / 1000, d->path);
	}
	if (lost && lost == s->nr_devices && s->state == SESSION_RECONNECTING)
		s->state = SESSION_FAILED;
	pthread_mutex_unlock(&s->lock);
}

static bool stopping(struct session *s)
{
	bool ret;

	pthread_mutex_lock(&s->lock);
	ret = s->stopping;
	pthread_mutex_unlock(&s->lock);
	return ret;
}

/*
 * One attempt, within attempt_ms: 0 when every connection is back and
 * attached. *slow: the server accepted, but the handshake or the re-opens
 * did not finish in time (it may be waiting for an old connection's IO to
 * drain): the next attempt should be given longer.
 */
static int reconnect_once(struct session *s, unsigned int attempt_ms, bool *slow, char *err,
			  size_t errlen)
{
	struct conn **conns = calloc(s->nr_conns, sizeof(*conns));
	bool accepted = false;
	unsigned int q;
	int ret;

	*slow = false;
	if (!conns)
		return -ENOMEM;
	ret = connect_all(s, conns, attempt_ms, &accepted, err, errlen);
	if (ret) {
		*slow = accepted && ret == -ETIMEDOUT;
		free(conns);
		return ret;
	}
	pthread_mutex_lock(&s->op_lock);
	if (stopping(s)) {
		ret = -ECANCELED;
		snprintf(err, errlen, "the session is closing");
	} else {
		set_state(s, SESSION_RECOVERING);
		ret = reopen_devices(s, conns, attempt_ms, err, errlen);
		if (ret) {
			set_state(s, SESSION_RECONNECTING);
			note_losses(s, clock_now_ms());
		}
		*slow = ret == -ETIMEDOUT;
	}
	if (ret) {
		for (q = 0; q < s->nr_conns; q++)
			conn_destroy(conns[q]);
		goto out;
	}
	pthread_mutex_lock(&s->lock);
	s->lost = false; /* reports from here on are about the new ones */
	for (struct device *d = s->devices; d; d = d->sess_next)
		d->loss_noted = false;
	pthread_mutex_unlock(&s->lock);
	if (!s->pd)
		s->pd = conn_pd(conns[0]);
	atomic_store(&s->down_at_ms, 0);
	for (q = 0; q < s->nr_conns; q++) {
		s->conns[q] = conns[q];
		ret = worker_msg(s, q, WM_ATTACH, conns[q]);
		if (ret) {
			snprintf(err, errlen, "cannot attach connection %u: %s", q, strerror(-ret));
			session_report_failure(s, q, err, false);
			ret = 0; /* the next round deals with it */
		}
	}
out:
	pthread_mutex_unlock(&s->op_lock);
	free(conns);
	return ret;
}

static void wait_ms(struct session *s, int64_t ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&s->lock);
	while (!s->stopping && pthread_cond_timedwait(&s->cond, &s->lock, &ts) == 0)
		;
	pthread_mutex_unlock(&s->lock);
}

/*
 * The pause before the next attempt: the first retry is fast, then the
 * pause doubles up to a cap that grows with the outage. A server restarting
 * is back within seconds, an attempt against a port nobody listens on
 * costs a rejected connect, and one against a wire that is cut a lost
 * connect request, which the CM does not send again within an attempt: so
 * the first minute is tried every backoff_max_ms (100 ms), which finds a
 * restored wire within an attempt and a pause, and an outage past a minute
 * every second, so a dead server does not cost a busy loop.
 */
static int64_t next_delay(const struct session *s, int64_t delay, int64_t down_ms)
{
	int64_t cap = down_ms < 60000 ? s->t.backoff_max_ms : 1000;

	delay = delay ? delay * 2 : 50;
	return delay > cap ? cap : delay;
}

/*
 * After a failed work request the CM is left alone for a moment, as the
 * server does (conn_fail()): on soft-RoCE a CM message sent right after a
 * carrier loss - here the disconnect of the old connections, or the first
 * reconnect - puts the device's CM queue pair into error for good. The
 * requests of the failed connection wait anyway; on hardware the moment
 * is lost in the reconnect.
 */
#define WIRE_FAILURE_PAUSE_MS 300

/* Detaches every connection, then tries until they are all back. An
 * attempt gets reconnect_ms, doubled (up to connect_ms) after each one in
 * which the server answered but did not finish in time. */
static void session_reconnect(struct session *s)
{
	int64_t delay = 0, now = clock_now_ms(), t0 = now;
	unsigned int q, attempt_ms = s->t.reconnect_ms;
	char err[256];
	bool slow;

	pthread_mutex_lock(&s->lock);
	if (s->lost_on_wire) {
		pthread_mutex_unlock(&s->lock);
		wait_ms(s, WIRE_FAILURE_PAUSE_MS);
		pthread_mutex_lock(&s->lock);
	}
	s->state = SESSION_RECONNECTING;
	s->down_since_ms = now;
	atomic_store(&s->down_at_ms, now > 0 ? now : 1);
	s->attempt = 0;
	s->lost = false;
	s->lost_on_wire = false;
	pthread_mutex_unlock(&s->lock);
	log_warn("%s: session lost (%s); IO waits while reconnecting", s->peer, s->why);

	/* Every worker stops using its connection (the one that failed did
	 * already): what was in flight waits for the new ones. */
	pthread_mutex_lock(&s->op_lock);
	for (q = 0; q < s->nr_conns; q++)
		worker_msg(s, q, WM_DETACH, NULL);
	destroy_conns(s);
	pthread_mutex_unlock(&s->op_lock);

	for (;;) {
		int ret;

		pthread_mutex_lock(&s->lock);
		if (s->stopping) {
			pthread_mutex_unlock(&s->lock);
			return;
		}
		s->attempt++;
		pthread_mutex_unlock(&s->lock);
		t0 = clock_now_ms();
		ret = reconnect_once(s, attempt_ms, &slow, err, sizeof(err));
		now = clock_now_ms();
		if (!ret)
			break;
		if (slow && attempt_ms < s->t.connect_ms)
			attempt_ms = attempt_ms * 2 < s->t.connect_ms ? attempt_ms * 2 : s->t.connect_ms;
		delay = next_delay(s, delay, now - s->down_since_ms);
		pthread_mutex_lock(&s->lock);
		snprintf(s->why, sizeof(s->why), "%s", err);
		s->next_try_ms = now + delay;
		pthread_mutex_unlock(&s->lock);
		log_warn("%s: reconnect attempt %u failed after %lld ms: %s; next in %lld ms",
			 s->peer, s->attempt, (long long)(now - t0), err, (long long)delay);
		note_losses(s, now);
		wait_ms(s, delay);
		note_losses(s, clock_now_ms());
	}
	pthread_mutex_lock(&s->lock);
	s->state = SESSION_LIVE;
	s->reconnects++;
	s->last_outage_ms = now - s->down_since_ms;
	pthread_mutex_unlock(&s->lock);
	log_info("%s: reconnected after %lld ms (attempt %u, which took %lld ms)", s->peer,
		 (long long)s->last_outage_ms, s->attempt, (long long)(now - t0));
}

static void *session_thread(void *arg)
{
	struct session *s = arg;

	pthread_setname_np(pthread_self(), "ibnbd-sess");
	pthread_mutex_lock(&s->lock);
	while (!s->stopping) {
		if (!s->lost) {
			pthread_cond_wait(&s->cond, &s->lock);
			continue;
		}
		pthread_mutex_unlock(&s->lock);
		session_reconnect(s);
		pthread_mutex_lock(&s->lock);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

void session_describe(struct session *s, const struct device *d, json_object *o)
{
	int64_t now = clock_now_ms();
	uint64_t reissued = 0, timeouts = 0, rtt = 0, v;
	unsigned int q;

	for (q = 0; q < s->nr_conns; q++) {
		reissued += atomic_load(&s->ws[q].reissued);
		timeouts += atomic_load(&s->ws[q].timeouts);
		v = atomic_load_explicit(&s->ws[q].rtt_ns, memory_order_relaxed);
		rtt = v > rtt ? v : rtt;
	}
	pthread_mutex_lock(&s->lock);
	json_object_object_add(o, "session", json_object_new_string(state_names[s->state]));
	if (s->state != SESSION_LIVE) {
		json_object_object_add(o, "attempt", json_object_new_int((int)s->attempt));
		json_object_object_add(o, "down_for_ms",
				       json_object_new_int64(now - s->down_since_ms));
		json_object_object_add(o, "next_try_ms",
				       json_object_new_int64(s->next_try_ms > now ?
							     s->next_try_ms - now : 0));
	}
	if (*s->why)
		json_object_object_add(o, "last_error", json_object_new_string(s->why));
	json_object_object_add(o, "reconnects", json_object_new_int64((int64_t)s->reconnects));
	json_object_object_add(o, "last_outage_ms", json_object_new_int64(s->last_outage_ms));
	json_object_object_add(o, "server_restarts_with_unflushed_writes",
			       json_object_new_int64((int64_t)d->lost_writes_events));
	if (d->export_grown_to) {
		json_object_object_add(o, "export_size",
				       json_object_new_int64((int64_t)d->export_grown_to));
		json_object_object_add(o, "remap_needed", json_object_new_boolean(true));
	}
	pthread_mutex_unlock(&s->lock);
	json_object_object_add(o, "reissued", json_object_new_int64((int64_t)reissued));
	json_object_object_add(o, "timeouts", json_object_new_int64((int64_t)timeouts));
	/* The slowest connection's last keepalive (sent only when idle). */
	json_object_object_add(o, "keepalive_rtt_us", json_object_new_int64((int64_t)(rtt / 1000)));
}
