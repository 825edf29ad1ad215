// SPDX-License-Identifier: GPL-2.0-only
/*
 * The client's data plane: mapped devices, each a ublk device whose queue q
 * is served by its own thread, with its own io_uring and its own RDMA
 * connection to the server (conn.h). The queue's tags are the connection's
 * slots, so no tag ever waits for a credit.
 *
 * A queue thread's io_uring carries the ublk FETCH/COMMIT commands and a
 * poll on the connection's completion channel:
 *
 *   ublk CQE (a request) ──conn_submit──▶ server ──response──▶ conn_process
 *        ▲                                                         │
 *        └────────────── COMMIT_AND_FETCH (result) ◀───────────────┘
 *
 * The control thread (daemon.c) maps and unmaps; it never touches IO.
 *
 * Not built yet (see docs/architecture.md): sharing one connection per
 * worker among the devices of a server, reconnect, user recovery.
 */
#include "client.h"

#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conn.h"
#include "log.h"
#include "ublk_dev.h"
#include "ublk_queue.h"

#define QUEUE_DEPTH 64
#define MAX_IO_BYTES (128u << 10)
#define CONNECT_TIMEOUT_MS 10000

/* user_data types on a queue thread's ring. */
enum { UD_UBLK = 1, UD_CONN = 2 };

struct device;

struct dev_queue {
	struct device *dev;
	uint16_t q_id;
	struct conn *conn;
	struct ublk_queue *uq;
	struct io_uring ring;
	bool ring_ok;
	pthread_t thread;
	bool thread_started;
	sem_t ready;
	int setup_status;
	bool conn_failed;
	struct ublk_io *io; /* per tag: the request being served */
};

struct device {
	struct device *next;
	struct ublk_dev *ublk;
	struct ibnbd_dev_info info;
	uint16_t nr_queues;
	struct dev_queue *queues;
	char path[64];
	char name[128];
	char server[256];
	uint16_t port;
	char export_name[IBNBD_EXPORT_NAME_MAX];
	bool read_only;
};

struct client {
	struct client_opts opts;
	struct ublk_ctrl *ctrl;
	struct device *devices;
};

static unsigned int default_workers(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n < 1 ? 1 : n > 4 ? 4 : (unsigned int)n;
}

int client_create(const struct client_opts *opts, struct client **out)
{
	struct client *c = calloc(1, sizeof(*c));
	int ret;

	if (!c)
		return -ENOMEM;
	c->opts = *opts;
	if (!c->opts.workers)
		c->opts.workers = default_workers();
	ret = ublk_ctrl_create(&c->ctrl);
	if (ret) {
		free(c);
		return ret;
	}
	*out = c;
	return 0;
}

/* ---- the queue thread ---- */

static uint8_t ibnbd_opcode(const struct ublk_io *io, uint16_t *flags)
{
	*flags = 0;
	switch (io->op) {
	case UBLK_IO_OP_READ:
		return IBNBD_OP_READ;
	case UBLK_IO_OP_WRITE:
		if (io->flags & UBLK_IO_F_FUA)
			*flags |= IBNBD_IOF_FUA;
		return IBNBD_OP_WRITE;
	case UBLK_IO_OP_FLUSH:
		return IBNBD_OP_FLUSH;
	case UBLK_IO_OP_DISCARD:
		return IBNBD_OP_DISCARD;
	case UBLK_IO_OP_WRITE_ZEROES:
		if (io->flags & UBLK_IO_F_NOUNMAP)
			*flags |= IBNBD_IOF_NOUNMAP;
		return IBNBD_OP_WRITE_ZEROES;
	}
	return 0xff;
}

static void queue_complete(void *ctx, uint16_t tag, int status)
{
	struct dev_queue *dq = ctx;
	const struct ublk_io *io = &dq->io[tag];
	int32_t result = status;

	if (status == 0)
		result = io->op == UBLK_IO_OP_READ || io->op == UBLK_IO_OP_WRITE ?
			 (int32_t)io->len : 0;
	else
		log_err("%s: queue %u tag %u: %s offset %llu length %u failed on the server: %s",
			dq->dev->path, dq->q_id, tag, ublk_io_op_name(io->op),
			(unsigned long long)io->offset, io->len, strerror(-status));
	dq->io[tag].buf = NULL; /* no longer in flight */
	if (ublk_queue_commit(dq->uq, &dq->ring, tag, result))
		log_err("%s: queue %u tag %u: cannot commit", dq->dev->path, dq->q_id, tag);
}

static void queue_serve(struct dev_queue *dq, struct ublk_io *io)
{
	uint16_t flags;
	uint8_t op = ibnbd_opcode(io, &flags);
	int ret = -EIO;

	dq->io[io->tag] = *io;
	if (!dq->conn_failed && op != 0xff)
		ret = conn_submit(dq->conn, io->tag, op, flags, io->offset, io->len, io->buf);
	if (op == 0xff)
		ret = -EOPNOTSUPP;
	if (ret) {
		if (!dq->conn_failed)
			log_err("%s: queue %u tag %u: cannot send %s: %s", dq->dev->path, dq->q_id,
				io->tag, ublk_io_op_name(io->op), strerror(-ret));
		queue_complete(dq, io->tag, ret == -EOPNOTSUPP ? ret : -EIO);
	}
}

static int arm_conn_poll(struct dev_queue *dq)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&dq->ring);

	if (!sqe)
		return -EBUSY;
	io_uring_prep_poll_add(sqe, conn_comp_fd(dq->conn), POLLIN);
	io_uring_sqe_set_data64(sqe, (uint64_t)UD_CONN << UBLK_UD_TYPE_SHIFT);
	return 0;
}

/* The connection died: every request sent on it is lost. Fail them (until
 * reconnect exists) so that nothing waits forever. */
static void queue_conn_failed(struct dev_queue *dq)
{
	uint16_t tag, depth = ublk_queue_depth(dq->uq);

	log_err("%s: queue %u: the connection to %s:%u failed; IO on this queue now fails",
		dq->dev->path, dq->q_id, dq->dev->server, dq->dev->port);
	dq->conn_failed = true;
	for (tag = 0; tag < depth; tag++)
		if (dq->io[tag].buf) /* served, not yet committed */
			queue_complete(dq, tag, -EIO);
}

static int queue_setup(struct dev_queue *dq)
{
	struct device *d = dq->dev;
	struct ublk_queue_config qc = {
		.q_id = dq->q_id, .ud_type = UD_UBLK, .ud_queue = 0,
		.dev_sectors = d->info.size >> 9,
	};
	void *area;
	size_t len;
	int ret;

	ret = ublk_queue_create(d->ublk, &qc, &dq->uq);
	if (ret)
		return ret;
	dq->io = calloc(ublk_queue_depth(dq->uq), sizeof(*dq->io));
	if (!dq->io)
		return -ENOMEM;
	area = ublk_queue_buf_area(dq->uq, &len);
	ret = conn_register_buffers(dq->conn, area, len);
	if (ret)
		return ret;
	ret = io_uring_queue_init(2 * ublk_queue_depth(dq->uq) + 16, &dq->ring, 0);
	if (ret)
		return ret;
	dq->ring_ok = true;
	ret = ublk_queue_prep_fetch_all(dq->uq, &dq->ring);
	if (ret < 0)
		return ret;
	ret = arm_conn_poll(dq);
	if (ret)
		return ret;
	ret = io_uring_submit(&dq->ring);
	return ret < 0 ? ret : 0;
}

static void *queue_thread(void *arg)
{
	struct dev_queue *dq = arg;
	char name[16];

	snprintf(name, sizeof(name), "ibnbd-q%u", dq->q_id);
	pthread_setname_np(pthread_self(), name);
	dq->setup_status = queue_setup(dq);
	sem_post(&dq->ready);
	if (dq->setup_status)
		return NULL;

	/* Runs until STOP_DEV has retired every tag and nothing is served. */
	while (!ublk_queue_idle(dq->uq)) {
		struct io_uring_cqe *cqe;
		unsigned int head, seen = 0;
		int ret = io_uring_submit_and_wait(&dq->ring, 1);

		if (ret < 0 && ret != -EINTR && ret != -EBUSY) {
			log_err("%s: queue %u: io_uring: %s", dq->dev->path, dq->q_id, strerror(-ret));
			break;
		}
		io_uring_for_each_cqe(&dq->ring, head, cqe) {
			uint64_t ud = cqe->user_data;

			seen++;
			if (ublk_ud_type(ud) == UD_UBLK) {
				struct ublk_io io;

				if (ublk_queue_handle_cqe(dq->uq, &dq->ring, cqe, &io) == 1)
					queue_serve(dq, &io);
			} else if (ublk_ud_type(ud) == UD_CONN && !dq->conn_failed) {
				if (conn_process(dq->conn, queue_complete, dq) < 0)
					queue_conn_failed(dq);
				else if (arm_conn_poll(dq))
					log_err("%s: queue %u: ring full", dq->dev->path, dq->q_id);
			}
		}
		io_uring_cq_advance(&dq->ring, seen);
	}
	io_uring_submit(&dq->ring);
	return NULL;
}

/* ---- the control thread ---- */

static void device_destroy(struct device *d)
{
	uint16_t q;

	if (!d)
		return;
	if (d->ublk)
		ublk_dev_stop(d->ublk);
	for (q = 0; q < d->nr_queues && d->queues; q++) {
		struct dev_queue *dq = &d->queues[q];

		if (dq->thread_started)
			pthread_join(dq->thread, NULL);
		if (dq->ring_ok)
			io_uring_queue_exit(&dq->ring);
		ublk_queue_destroy(dq->uq);
		conn_destroy(dq->conn);
		free(dq->io);
		sem_destroy(&dq->ready);
	}
	ublk_dev_destroy(d->ublk);
	free(d->queues);
	free(d);
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

int client_map(struct client *c, const struct map_args *args, char *devpath,
	       size_t devlen, char *err, size_t errlen)
{
	struct conn_params cp = {
		.host = args->server, .port = args->port, .export_name = args->export_name,
		.access = args->read_only ? IBNBD_ACCESS_RO : IBNBD_ACCESS_RW,
		.queue_depth = QUEUE_DEPTH, .max_io_size = MAX_IO_BYTES,
		.timeout_ms = CONNECT_TIMEOUT_MS,
	};
	struct ublk_dev_config uc = { .dev_id = -1, .recovery = false };
	char host[64] = "";
	struct device *d;
	uint16_t q, depth = QUEUE_DEPTH;
	uint32_t max_io = MAX_IO_BYTES;
	int ret;

	gethostname(host, sizeof(host) - 1);
	cp.host_id = host;
	if (args->name) {
		for (d = c->devices; d; d = d->next) {
			if (!strcmp(d->name, args->name)) {
				snprintf(err, errlen, "a device named '%s' is already mapped (%s)",
					 args->name, d->path);
				return -EEXIST;
			}
		}
	}
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->nr_queues = (uint16_t)c->opts.workers;
	d->queues = calloc(d->nr_queues, sizeof(*d->queues));
	if (!d->queues) {
		free(d);
		return -ENOMEM;
	}
	snprintf(d->server, sizeof(d->server), "%s", args->server);
	d->port = args->port;
	snprintf(d->export_name, sizeof(d->export_name), "%s", args->export_name);
	d->read_only = args->read_only;

	/* One connection per queue; the first one says what the device is. */
	for (q = 0; q < d->nr_queues; q++) {
		struct ibnbd_dev_info info;

		d->queues[q].dev = d;
		d->queues[q].q_id = q;
		sem_init(&d->queues[q].ready, 0, 0);
		ret = conn_connect(&cp, &d->queues[q].conn, &info, err, errlen);
		if (ret)
			goto out_destroy;
		if (q == 0) {
			d->info = info;
		} else if (info.export_id != d->info.export_id || info.size != d->info.size) {
			snprintf(err, errlen, "export '%s' on %s:%u changed while mapping",
				 args->export_name, args->server, args->port);
			ret = -ESTALE;
			goto out_destroy;
		}
		if (conn_depth(d->queues[q].conn) < depth)
			depth = conn_depth(d->queues[q].conn);
		if (conn_max_io(d->queues[q].conn) < max_io)
			max_io = conn_max_io(d->queues[q].conn);
	}
	uc.nr_queues = d->nr_queues;
	uc.queue_depth = depth;
	uc.max_io_bytes = max_io;
	ret = ublk_dev_create(c->ctrl, &uc, &d->ublk);
	if (ret) {
		snprintf(err, errlen, "cannot create a ublk device: %s", strerror(-ret));
		goto out_destroy;
	}
	if (ublk_dev_info(d->ublk)->nr_hw_queues < d->nr_queues) {
		/* The kernel caps queues at the CPU count: serve what it made
		 * (the extra connections are simply closed). */
		for (q = ublk_dev_info(d->ublk)->nr_hw_queues; q < d->nr_queues; q++) {
			conn_destroy(d->queues[q].conn);
			sem_destroy(&d->queues[q].ready);
		}
		d->nr_queues = ublk_dev_info(d->ublk)->nr_hw_queues;
	}
	snprintf(d->path, sizeof(d->path), "/dev/ublkb%d", ublk_dev_id(d->ublk));
	snprintf(d->name, sizeof(d->name), "%s", args->name ? args->name : d->path + 5);
	ret = device_params(d, err, errlen);
	if (ret)
		goto out_destroy;
	for (q = 0; q < d->nr_queues; q++) {
		struct dev_queue *dq = &d->queues[q];

		ret = -pthread_create(&dq->thread, NULL, queue_thread, dq);
		if (ret) {
			snprintf(err, errlen, "cannot start a queue thread: %s", strerror(-ret));
			goto out_destroy;
		}
		dq->thread_started = true;
		sem_wait(&dq->ready);
		if (dq->setup_status) {
			ret = dq->setup_status;
			snprintf(err, errlen, "cannot set up queue %u of %s: %s", q, d->path,
				 strerror(-ret));
			goto out_destroy;
		}
	}
	ret = ublk_dev_start(d->ublk);
	if (ret) {
		snprintf(err, errlen, "the kernel refused to start %s: %s", d->path, strerror(-ret));
		goto out_destroy;
	}
	d->next = c->devices;
	c->devices = d;
	snprintf(devpath, devlen, "%s", d->path);
	return 0;
out_destroy:
	device_destroy(d);
	return ret;
}

int client_unmap(struct client *c, const char *devpath, bool force, char *err,
		 size_t errlen)
{
	struct device **pp, *d;

	for (pp = &c->devices; (d = *pp); pp = &d->next) {
		if (!strcmp(d->path, devpath) || !strcmp(d->name, devpath)) {
			*pp = d->next;
			device_destroy(d);
			return 0;
		}
	}
	snprintf(err, errlen, "%s is not mapped by ibnbd", devpath);
	return -ENOENT;
}

json_object *client_list(struct client *c)
{
	json_object *arr = json_object_new_array();
	struct device *d;

	for (d = c->devices; d; d = d->next) {
		json_object *o = json_object_new_object();
		bool failed = false;
		uint16_t q;

		for (q = 0; q < d->nr_queues; q++)
			failed |= d->queues[q].conn_failed;
		json_object_object_add(o, "device", json_object_new_string(d->path));
		json_object_object_add(o, "name", json_object_new_string(d->name));
		json_object_object_add(o, "server", json_object_new_string(d->server));
		json_object_object_add(o, "port", json_object_new_int(d->port));
		json_object_object_add(o, "export", json_object_new_string(d->export_name));
		json_object_object_add(o, "size", json_object_new_int64((int64_t)d->info.size));
		json_object_object_add(o, "access",
				       json_object_new_string(d->read_only ? "ro" : "rw"));
		json_object_object_add(o, "state", json_object_new_string(failed ? "failed" : "live"));
		json_object_array_add(arr, o);
	}
	return arr;
}

void client_destroy(struct client *c)
{
	if (!c)
		return;
	while (c->devices) {
		struct device *d = c->devices;

		c->devices = d->next;
		device_destroy(d);
	}
	ublk_ctrl_destroy(c->ctrl);
	free(c);
}
