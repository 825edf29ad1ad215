// SPDX-License-Identifier: GPL-2.0-only
/*
 * ibnbd-ublk-ram: a RAM-backed ublk device, to prove the client's ublk layer
 * (libublk: ublk/dev, ublk/queue and the engine) against the real kernel
 * without any network. Not installed; the e2e tests run it from the build
 * directory.
 *
 * A target of the same engine as the daemon's RDMA workers (the way kublk
 * has one file per target): main is the control thread (ADD/SET_PARAMS/
 * START/STOP/DEL and signals); one engine per hardware queue serves it
 * with memcpy into/out of the RAM image.
 *
 * Exit: 0 after a clean SIGTERM/SIGINT teardown; 1 if anything failed;
 * 2 on a bad command line.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <liburing.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "parse.h"
#include "ublk/dev.h"
#include "ublk/engine.h"
#include "ublk/queue.h"

/* Discard / write-zeroes limits we advertise (zeroing RAM is cheap). */
#define RAM_MAX_DISCARD_BYTES (1u << 30)
#define RAM_BLOCK_DEV_WAIT_MS 5000

struct ram_opts {
	uint64_t size;
	unsigned int queues;
	unsigned int depth;
	uint32_t max_io;
	bool read_only;
	bool corrupt_reads; /* testing the tests: READs return a flipped byte */
	const char *backing; /* a file (on tmpfs) that outlives the process */
	int recover_id;      /* -1, or the QUIESCED device to take over */
};

struct ram_ctx;

struct ram_worker {
	struct ram_ctx *ctx;
	struct ublk_engine *engine;
	struct ublk_queue *q;
	uint16_t q_id;
	sem_t gone;        /* posted when the queue retired its last tag */
	/* Requests served, by op (and FUA writes), summed at exit so tests
	 * can see the kernel really sent FLUSH, FUA, DISCARD ... */
	uint64_t served[UBLK_IO_OP_WRITE_ZEROES + 1];
	uint64_t served_fua;
};

struct ram_ctx {
	struct ram_opts opts;
	struct ublk_dev *dev;
	unsigned char *mem;
	size_t mem_len;
	bool mem_shared; /* a MAP_SHARED file: zero with MADV_REMOVE */
	pthread_t main_thread;
	atomic_bool failed;

	unsigned int nr_workers;
	struct ram_worker *workers;
};

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: ibnbd-ublk-ram --size SIZE [--queues N] [--depth D] [--max-io SIZE] [--ro]\n"
		"                      [--backing FILE] [--recover ID]\n"
		"Creates a RAM-backed ublk device, prints its /dev/ublkbN path, serves it\n"
		"until SIGTERM/SIGINT, then stops and deletes it.\n"
		"  --size SIZE     device size (suffix K, M, G, T: powers of 1024)\n"
		"  --queues N      hardware queues, one thread each (default 1)\n"
		"  --depth D       queue depth, 1..%d (default 64)\n"
		"  --max-io SIZE   largest request (default 1M)\n"
		"  --ro            read-only device\n"
		"  --backing FILE  keep the image in FILE (e.g. on /dev/shm) instead of\n"
		"                  private memory, so that it survives this process\n"
		"  --recover ID    take over /dev/ublkbID, left QUIESCED by a killed\n"
		"                  ibnbd-ublk-ram (USER_RECOVERY), instead of adding one\n"
		"  --corrupt-reads flip one byte of every READ (to prove that tests\n"
		"                  catch a corrupting device)\n"
		"Debug logs: IBNBD_DEBUG=ublk,io\n",
		UBLK_MAX_QUEUE_DEPTH);
}

static int parse_opts(int argc, char **argv, struct ram_opts *o)
{
	static const struct option longopts[] = {
		{ "size", required_argument, NULL, 's' },
		{ "queues", required_argument, NULL, 'q' },
		{ "depth", required_argument, NULL, 'd' },
		{ "max-io", required_argument, NULL, 'm' },
		{ "ro", no_argument, NULL, 'r' },
		{ "corrupt-reads", no_argument, NULL, 'C' },
		{ "backing", required_argument, NULL, 'b' },
		{ "recover", required_argument, NULL, 'R' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	unsigned int id;
	uint64_t v;
	int c;


	memset(o, 0, sizeof(*o));
	o->recover_id = -1;
	o->queues = 1;
	o->depth = 64;
	o->max_io = 1u << 20;
	while ((c = getopt_long(argc, argv, "s:q:d:m:rh", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			if (parse_size(optarg, &o->size) < 0 || !o->size || o->size % 512) {
				log_err("--size '%s': expected a non-zero multiple of 512 bytes, like 256M", optarg);
				return -EINVAL;
			}
			break;
		case 'q':
			if (parse_uint(optarg, 1, 256, &o->queues) < 0) {
				log_err("--queues '%s': expected 1..256", optarg);
				return -EINVAL;
			}
			break;
		case 'd':
			if (parse_uint(optarg, 1, UBLK_MAX_QUEUE_DEPTH, &o->depth) < 0) {
				log_err("--depth '%s': expected 1..%d", optarg, UBLK_MAX_QUEUE_DEPTH);
				return -EINVAL;
			}
			break;
		case 'm':
			if (parse_size(optarg, &v) < 0 || v < 4096 || v > UBLK_DEV_MAX_IO_BYTES ||
			    v % 4096) {
				log_err("--max-io '%s': expected a multiple of 4K from 4K to %uM", optarg,
					UBLK_DEV_MAX_IO_BYTES >> 20);
				return -EINVAL;
			}
			o->max_io = (uint32_t)v;
			break;
		case 'r':
			o->read_only = true;
			break;
		case 'C':
			o->corrupt_reads = true;
			break;
		case 'b':
			if (!*optarg) {
				log_err("--backing needs a file name");
				return -EINVAL;
			}
			o->backing = optarg;
			break;
		case 'R':
			if (parse_uint(optarg, 0, 1u << 20, &id) < 0) {
				log_err("--recover '%s': expected a device number (N of /dev/ublkbN)", optarg);
				return -EINVAL;
			}
			o->recover_id = (int)id;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		log_err("unexpected argument '%s'", argv[optind]);
		return -EINVAL;
	}
	if (!o->size && o->recover_id < 0) {
		log_err("--size is required");
		usage(stderr);
		return -EINVAL;
	}
	if (o->size > (uint64_t)SIZE_MAX / 2) {
		log_err("--size %" PRIu64 " is more memory than this machine can address", o->size);
		return -EINVAL;
	}
	return 0;
}

/* Zeroes [off, off+len): whole pages are dropped (they read back as zero
 * and free the memory, which matters when mkfs discards the whole device),
 * partial pages at the edges are cleared. */
static void ram_zero(struct ram_ctx *ctx, uint64_t off, uint64_t len)
{
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
	uint64_t first = (off + page - 1) / page * page;
	uint64_t last = (off + len) / page * page;

	if (first >= last) {
		memset(ctx->mem + off, 0, len);
		return;
	}
	memset(ctx->mem + off, 0, first - off);
	/* Private memory: dropped pages read back as zero. A shared file:
	 * punch the pages out of the file (tmpfs supports it). */
	if (madvise(ctx->mem + first, last - first, ctx->mem_shared ? MADV_REMOVE : MADV_DONTNEED) < 0)
		memset(ctx->mem + first, 0, last - first);
	memset(ctx->mem + last, 0, off + len - last);
}

/* Serves one request against the RAM image; the result ublk expects. The
 * kernel already checked (and ublk_io_decode re-checked) that the range is
 * within the device and a READ/WRITE fits the tag buffer. */
static int32_t ram_serve(struct ram_ctx *ctx, const struct ublk_io *io)
{
	switch (io->op) {
	case UBLK_IO_OP_READ:
		memcpy(io->buf, ctx->mem + io->offset, io->len);
		if (ctx->opts.corrupt_reads)
			((unsigned char *)io->buf)[io->len - 1] ^= 0x5a;
		return (int32_t)io->len;
	case UBLK_IO_OP_WRITE:
		if (ctx->opts.read_only)
			return -EROFS;
		memcpy(ctx->mem + io->offset, io->buf, io->len);
		return (int32_t)io->len;
	case UBLK_IO_OP_FLUSH:
		/* RAM has no cache to write back; order against other
		 * workers' copies anyway. */
		atomic_thread_fence(memory_order_seq_cst);
		return 0;
	case UBLK_IO_OP_DISCARD:
	case UBLK_IO_OP_WRITE_ZEROES:
		if (ctx->opts.read_only)
			return -EROFS;
		ram_zero(ctx, io->offset, io->len);
		return 0;
	default:
		return -EOPNOTSUPP;
	}
}

/* ---- the target ---- */

static void ram_queue_io(struct ublk_engine *e, void *qpriv, const struct ublk_io *io)
{
	struct ram_worker *w = qpriv;
	int ret;

	if (io->op <= UBLK_IO_OP_WRITE_ZEROES)
		w->served[io->op]++;
	if (io->flags & UBLK_IO_F_FUA)
		w->served_fua++;
	ret = ublk_engine_commit(e, w->q, io->tag, ram_serve(w->ctx, io));
	if (ret < 0) {
		log_err("ublk%d: queue %u: cannot commit tag %u: %s", ublk_dev_id(w->ctx->dev),
			w->q_id, io->tag, strerror(-ret));
		atomic_store(&w->ctx->failed, true);
		/* Wake main: it tears the device down. */
		pthread_kill(w->ctx->main_thread, SIGUSR1);
	}
}

static void ram_target_cqe(struct ublk_engine *e, const struct io_uring_cqe *cqe)
{
	log_err("stray completion 0x%llx", (unsigned long long)cqe->user_data);
}

static void ram_queue_gone(struct ublk_engine *e, void *qpriv)
{
	struct ram_worker *w = qpriv;

	log_debug(LOG_CAT_UBLK, "ublk%d: queue %u: all tags retired", ublk_dev_id(w->ctx->dev),
		  w->q_id);
	sem_post(&w->gone);
}

static const struct ublk_tgt_ops ram_target = {
	.name = "ram",
	.queue_io = ram_queue_io,
	.target_cqe = ram_target_cqe,
	.queue_gone = ram_queue_gone,
};

/* A call on a queue's engine (adding, stopping it). */
struct queue_call {
	struct ublk_engine_call call;
	struct ram_worker *w;
};

static int ram_add_queue(struct ublk_engine *e, struct ublk_engine_call *c)
{
	struct ram_worker *w = ((struct queue_call *)c)->w;
	struct ublk_queue_config qcfg = {
		.q_id = w->q_id,
		.dev_sectors = w->ctx->opts.size >> 9,
	};

	return ublk_engine_add_queue(e, w->ctx->dev, &qcfg, w, &w->q);
}

static int ram_start_workers(struct ram_ctx *ctx)
{
	unsigned int i;
	int ret;

	for (i = 0; i < ctx->nr_workers; i++) {
		ctx->workers[i].ctx = ctx;
		ctx->workers[i].q_id = (uint16_t)i;
		sem_init(&ctx->workers[i].gone, 0, 0);
	}
	for (i = 0; i < ctx->nr_workers; i++) {
		struct ram_worker *w = &ctx->workers[i];
		struct ublk_engine_config ec = {
			.ops = &ram_target, .target = ctx,
			.sq_entries = ublk_dev_info(ctx->dev)->queue_depth,
		};
		struct queue_call c = { .call.fn = ram_add_queue, .w = w };
		char name[16];

		snprintf(name, sizeof(name), "ram-q%u", i);
		ec.thread_name = name;
		ret = ublk_engine_create(&ec, &w->engine);
		if (ret) {
			log_err("cannot start the engine of queue %u: %s", i, strerror(-ret));
			return ret;
		}
		ret = ublk_engine_call(w->engine, &c.call);
		if (ret)
			return ret;
	}
	return 0;
}

/* On the queue's engine: it is going; ops->queue_gone once it is idle. */
static int ram_stop_queue(struct ublk_engine *e, struct ublk_engine_call *c)
{
	struct ram_worker *w = ((struct queue_call *)c)->w;

	ublk_engine_stop_queue(e, w->q);
	return 0;
}

/* After STOP_DEV: every queue retires its tags, then its engine goes. */
static void ram_join_workers(struct ram_ctx *ctx)
{
	uint64_t served[UBLK_IO_OP_WRITE_ZEROES + 1] = { 0 }, fua = 0;
	unsigned int i, op;

	for (i = 0; i < ctx->nr_workers; i++) {
		struct ram_worker *w = &ctx->workers[i];
		struct queue_call c = { .call.fn = ram_stop_queue, .w = w };

		if (w->q) {
			ublk_engine_call(w->engine, &c.call);
			while (sem_wait(&w->gone) && errno == EINTR)
				;
		}
		ublk_engine_destroy(w->engine);
		ublk_queue_destroy(w->q);
		sem_destroy(&w->gone);
		for (op = 0; op <= UBLK_IO_OP_WRITE_ZEROES; op++)
			served[op] += w->served[op];
		fua += w->served_fua;
	}
	log_info("ublk%d: served %" PRIu64 " reads, %" PRIu64 " writes (%" PRIu64 " FUA), %" PRIu64
		 " flushes, %" PRIu64 " discards, %" PRIu64 " write-zeroes",
		 ublk_dev_id(ctx->dev), served[UBLK_IO_OP_READ], served[UBLK_IO_OP_WRITE], fua,
		 served[UBLK_IO_OP_FLUSH], served[UBLK_IO_OP_DISCARD],
		 served[UBLK_IO_OP_WRITE_ZEROES]);
}

/* START_DEV returns once the gendisk is added; devtmpfs (or udev) makes the
 * node shortly after. */
static int wait_for_block_dev(const char *path)
{
	struct timespec ts = { .tv_sec = 0, .tv_nsec = 10 * 1000000L };
	unsigned int waited;
	struct stat st;

	for (waited = 0; waited < RAM_BLOCK_DEV_WAIT_MS; waited += 10) {
		if (stat(path, &st) == 0 && S_ISBLK(st.st_mode))
			return 0;
		nanosleep(&ts, NULL);
	}
	return -ETIMEDOUT;
}

/* ublk.md: run in a private mount namespace so that a filesystem on our own
 * device, mounted by someone else, is never held (and flushed at exit) by
 * this process's namespace. */
static void ram_private_mounts(void)
{
	if (unshare(CLONE_NEWNS) < 0) {
		log_warn("unshare(CLONE_NEWNS) failed: %s; continuing in the caller's mount namespace",
			 strerror(errno));
		return;
	}
	if (mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		log_warn("making mounts private failed: %s", strerror(errno));
}

/* Waits for SIGTERM/SIGINT (clean stop) or SIGUSR1 (a worker failed). */
static void ram_wait_for_stop(struct ram_ctx *ctx, const sigset_t *set)
{
	siginfo_t si;
	int sig;

	for (;;) {
		sig = sigwaitinfo(set, &si);
		if (sig < 0) {
			if (errno == EINTR)
				continue;
			log_err("sigwaitinfo failed: %s", strerror(errno));
			atomic_store(&ctx->failed, true);
			return;
		}
		if (sig == SIGUSR1) {
			if (!atomic_load(&ctx->failed))
				continue; /* not from a queue */
			log_err("a queue failed: stopping the device");
			return;
		}
		log_info("%s: stopping", strsignal(sig));
		return;
	}
}

/* The image: private anonymous memory (untouched pages cost nothing), or a
 * shared mapping of --backing FILE, created or grown to the size. */
static int ram_map_image(struct ram_ctx *ctx)
{
	int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
	const char *file = ctx->opts.backing;
	struct stat st;
	int fd = -1;
	void *mem;

	ctx->mem_len = (size_t)ctx->opts.size;
	if (file) {
		fd = open(file, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (fd < 0 || fstat(fd, &st) < 0) {
			log_err("--backing %s: %s", file, strerror(errno));
			if (fd >= 0)
				close(fd);
			return -errno;
		}
		if ((uint64_t)st.st_size < ctx->opts.size && ftruncate(fd, (off_t)ctx->opts.size) < 0) {
			int ret = -errno;

			log_err("--backing %s: cannot grow it to %" PRIu64 " bytes: %s", file,
				ctx->opts.size, strerror(-ret));
			close(fd);
			return ret;
		}
		flags = MAP_SHARED;
	}
	mem = mmap(NULL, ctx->mem_len, PROT_READ | PROT_WRITE, flags, fd, 0);
	if (fd >= 0)
		close(fd); /* the mapping keeps the file */
	if (mem == MAP_FAILED) {
		log_err("cannot map %zu bytes for the image: %s", ctx->mem_len, strerror(errno));
		return -errno;
	}
	ctx->mem = mem;
	ctx->mem_shared = file != NULL;
	return 0;
}

/* A new device: ADD_DEV and SET_PARAMS. */
static int ram_add_device(struct ram_ctx *ctx, struct ublk_ctrl *ctrl)
{
	struct ublk_dev_config dcfg;
	struct ublk_dev_params params;
	struct ublk_params kparams;
	const char *why;
	int ret;

	memset(&dcfg, 0, sizeof(dcfg));
	dcfg.dev_id = -1;
	dcfg.nr_queues = (uint16_t)ctx->opts.queues;
	dcfg.queue_depth = (uint16_t)ctx->opts.depth;
	dcfg.max_io_bytes = ctx->opts.max_io;
	dcfg.recovery = true;
	ret = ublk_dev_create(ctrl, &dcfg, &ctx->dev);
	if (ret < 0)
		return ret;
	if (ublk_dev_info(ctx->dev)->nr_hw_queues != ctx->opts.queues)
		log_info("ublk%d: the kernel gave %u queues instead of %u (capped at the CPU count)",
			 ublk_dev_id(ctx->dev), ublk_dev_info(ctx->dev)->nr_hw_queues,
			 ctx->opts.queues);

	memset(&params, 0, sizeof(params));
	params.size = ctx->opts.size;
	params.logical_block_size = 512;
	params.physical_block_size = 4096;
	params.max_io_bytes = 0; /* all the tag buffer holds */
	params.max_discard_bytes = RAM_MAX_DISCARD_BYTES;
	params.discard_granularity = 4096;
	params.max_write_zeroes_bytes = RAM_MAX_DISCARD_BYTES;
	params.read_only = ctx->opts.read_only;
	params.volatile_cache = true;
	params.fua = true;
	ret = ublk_params_build(&params, ublk_dev_info(ctx->dev)->max_io_buf_bytes, &kparams, &why);
	if (ret < 0) {
		log_err("ublk%d: bad device parameters: %s", ublk_dev_id(ctx->dev), why);
		return ret;
	}
	return ublk_dev_set_params(ctx->dev, &kparams);
}

/* A device a killed instance left behind: learn its size and mode from the
 * kernel, START_USER_RECOVERY, and from then on own it (delete it at exit). */
static int ram_attach_device(struct ram_ctx *ctx, struct ublk_ctrl *ctrl)
{
	struct ublk_params kparams;
	uint64_t size;
	int id = ctx->opts.recover_id;
	int ret;

	ret = ublk_dev_attach(ctrl, id, &ctx->dev);
	if (ret < 0)
		return ret;
	ret = ublk_dev_get_params(ctx->dev, &kparams);
	if (ret < 0)
		return ret;
	size = kparams.basic.dev_sectors << 9;
	if (ctx->opts.size && ctx->opts.size != size) {
		log_err("ublk%d: --size %" PRIu64 " does not match the device's %" PRIu64 " bytes",
			id, ctx->opts.size, size);
		return -EINVAL;
	}
	ctx->opts.size = size;
	ctx->opts.read_only = kparams.basic.attrs & UBLK_ATTR_READ_ONLY;
	if (!ctx->opts.backing)
		log_warn("ublk%d: recovering without --backing: the device's data is lost", id);
	ret = ram_map_image(ctx);
	if (ret < 0)
		return ret;
	ret = ublk_dev_start_recovery(ctx->dev, 10000);
	if (ret < 0)
		return ret; /* not ours: leave the device as it was */
	/* Committed: from here on, stopping and deleting it is our job. */
	ublk_dev_set_owned(ctx->dev, true);
	return 0;
}

int main(int argc, char **argv)
{
	struct ublk_ctrl *ctrl = NULL;
	bool recover;
	struct ram_ctx ctx;
	sigset_t set;
	char path[32];
	int ret;

	log_init("ibnbd-ublk-ram");
	memset(&ctx, 0, sizeof(ctx));
	if (parse_opts(argc, argv, &ctx.opts) < 0)
		return 2;
	recover = ctx.opts.recover_id >= 0;
	ctx.main_thread = pthread_self();
	atomic_init(&ctx.failed, false);

	ram_private_mounts();

	/* Signals are taken synchronously by main only; workers inherit the
	 * mask, so no IO wait is ever interrupted. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGUSR1);
	ret = pthread_sigmask(SIG_BLOCK, &set, NULL);
	if (ret) {
		log_err("cannot block signals: %s", strerror(ret));
		return 1;
	}

	ret = ublk_ctrl_create(&ctrl);
	if (ret < 0)
		return 1;
	if (recover) {
		ret = ram_attach_device(&ctx, ctrl);
	} else {
		ret = ram_map_image(&ctx);
		if (ret == 0)
			ret = ram_add_device(&ctx, ctrl);
	}
	if (ret < 0)
		goto out_dev;

	ctx.nr_workers = ublk_dev_info(ctx.dev)->nr_hw_queues;
	ctx.workers = calloc(ctx.nr_workers, sizeof(*ctx.workers));
	if (!ctx.workers) {
		log_err("out of memory");
		ret = -ENOMEM;
		goto out_dev;
	}
	ret = ram_start_workers(&ctx);
	if (ret < 0)
		goto out_stop;

	/* From here the workers serve: START_DEV reads the partition table
	 * through them; END_USER_RECOVERY releases the IO held meanwhile. */
	ret = recover ? ublk_dev_end_recovery(ctx.dev) : ublk_dev_start(ctx.dev);
	if (ret < 0)
		goto out_stop;
	snprintf(path, sizeof(path), "/dev/ublkb%d", ublk_dev_id(ctx.dev));
	ret = wait_for_block_dev(path);
	if (ret < 0) {
		log_err("ublk%d: %s did not appear after START_DEV", ublk_dev_id(ctx.dev), path);
		goto out_stop;
	}
	printf("%s\n", path);
	fflush(stdout);

	ram_wait_for_stop(&ctx, &set);
	ret = 0;
out_stop:
	/* Aborts every pending FETCH: the workers drain and exit. */
	ublk_dev_stop(ctx.dev);
	ram_join_workers(&ctx);
out_dev:
	/* Queues are gone: close and DEL_DEV can complete. */
	ublk_dev_destroy(ctx.dev);
	free(ctx.workers);
	ublk_ctrl_destroy(ctrl);
	if (ctx.mem)
		munmap(ctx.mem, ctx.mem_len);
	if (ret < 0 || atomic_load(&ctx.failed))
		return 1;
	log_info("device removed, exiting");
	return 0;
}
