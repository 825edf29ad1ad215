// SPDX-License-Identifier: GPL-2.0-only
/*
 * ublk IO plane: FETCH_REQ / COMMIT_AND_FETCH_REQ uring_cmds on /dev/ublkcN
 * for one hardware queue. See ublk_queue.h for the tag state machine.
 * Nothing here allocates after ublk_queue_create().
 */
#include "ublk/queue.h"

#include <errno.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "log.h"
#include "ring.h"
#include "ublk/dev.h"

enum ublk_tag_state {
	UBLK_TAG_IDLE,
	UBLK_TAG_IN_KERNEL,
	UBLK_TAG_IN_DAEMON,
	UBLK_TAG_RETIRED,
};

struct ublk_tag {
	uint8_t state;  /* enum ublk_tag_state */
	uint8_t op;     /* of the request being served, for logs */
	bool commit_held; /* IN_DAEMON, answered: its commit waits for an SQE */
	uint32_t len;   /* bytes of that request: the most a commit may claim */
	int32_t result; /* of a held commit */
};

struct ublk_queue {
	int dev_id;
	int char_fd;
	uint16_t q_id;
	uint16_t depth;
	uint32_t max_io_bytes;
	uint64_t dev_sectors;
	unsigned int ud_kind;
	unsigned int ud_queue;
	const struct ublksrv_io_desc *descs; /* mmap of the kernel's array */
	size_t descs_len;
	unsigned char *bufs;
	size_t bufs_len;
	size_t buf_stride;
	bool bufs_owned;
	unsigned int in_kernel;
	unsigned int in_daemon;
	unsigned int retired;
	unsigned int held;  /* commits waiting for an SQE */
	struct ublk_tag *tags;
};

static size_t page_size(void)
{
	return (size_t)sysconf(_SC_PAGESIZE);
}

static size_t round_up(size_t v, size_t to)
{
	return (v + to - 1) / to * to;
}

const char *ublk_io_op_name(unsigned int op)
{
	switch (op) {
	case UBLK_IO_OP_READ: return "READ";
	case UBLK_IO_OP_WRITE: return "WRITE";
	case UBLK_IO_OP_FLUSH: return "FLUSH";
	case UBLK_IO_OP_DISCARD: return "DISCARD";
	case UBLK_IO_OP_WRITE_SAME: return "WRITE_SAME";
	case UBLK_IO_OP_WRITE_ZEROES: return "WRITE_ZEROES";
	default: return "UNKNOWN";
	}
}

int ublk_io_decode(const struct ublksrv_io_desc *desc, uint32_t max_io_bytes,
		   uint64_t dev_sectors, struct ublk_io *io)
{
	uint32_t op = ublksrv_get_op(desc);

	io->op = (uint8_t)op;
	io->flags = desc->op_flags & ~0xffu;
	io->start_sector = desc->start_sector;
	io->nr_sectors = desc->nr_sectors;
	io->offset = desc->start_sector << 9;
	io->len = 0;
	io->buf = NULL;
	switch (op) {
	case UBLK_IO_OP_READ:
	case UBLK_IO_OP_WRITE:
		/* The data moves through the tag buffer: it must fit. */
		if (!io->nr_sectors || (uint64_t)io->nr_sectors << 9 > max_io_bytes)
			return -EINVAL;
		break;
	case UBLK_IO_OP_DISCARD:
	case UBLK_IO_OP_WRITE_ZEROES:
		/* No data, so not bounded by the tag buffer but by the discard
		 * limits we advertised (u32 bytes): len must fit 32 bits. */
		if (!io->nr_sectors || io->nr_sectors > UINT32_MAX >> 9)
			return -EINVAL;
		break;
	case UBLK_IO_OP_FLUSH:
		io->nr_sectors = 0;
		io->start_sector = 0;
		io->offset = 0;
		return 0;
	default:
		return -EOPNOTSUPP;
	}
	if (io->start_sector >> (64 - 9))
		return -EINVAL;
	if (dev_sectors && (io->start_sector > dev_sectors ||
			    io->nr_sectors > dev_sectors - io->start_sector))
		return -EINVAL;
	io->len = io->nr_sectors << 9;
	return 0;
}

size_t ublk_queue_buf_stride(uint32_t max_io_bytes)
{
	return round_up(max_io_bytes, page_size());
}

size_t ublk_queue_buf_area_len(uint16_t depth, uint32_t max_io_bytes)
{
	return (size_t)depth * ublk_queue_buf_stride(max_io_bytes);
}

int ublk_queue_create(struct ublk_dev *dev, const struct ublk_queue_config *cfg,
		      struct ublk_queue **out)
{
	const struct ublksrv_ctrl_dev_info *info = ublk_dev_info(dev);
	size_t page = page_size();
	struct ublk_queue *q;
	off_t desc_off;
	void *p;
	int ret;

	*out = NULL;
	if (cfg->q_id >= info->nr_hw_queues) {
		log_err("ublk%d: queue %u does not exist (the device has %u)", ublk_dev_id(dev),
			cfg->q_id, info->nr_hw_queues);
		return -EINVAL;
	}
	if (ublk_dev_char_fd(dev) < 0) {
		log_err("ublk%d: queue %u: the char device is not open", ublk_dev_id(dev), cfg->q_id);
		return -EBADF;
	}
	if (cfg->ud_kind >= (1u << UBLK_UD_KIND_BITS) || cfg->ud_queue >= (1u << UBLK_UD_QUEUE_BITS)) {
		log_err("ublk%d: queue %u: user_data kind %u / queue %u out of range",
			ublk_dev_id(dev), cfg->q_id, cfg->ud_kind, cfg->ud_queue);
		return -EINVAL;
	}
	q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	q->dev_id = ublk_dev_id(dev);
	q->char_fd = ublk_dev_char_fd(dev);
	q->q_id = cfg->q_id;
	q->depth = info->queue_depth;
	q->max_io_bytes = info->max_io_buf_bytes;
	q->dev_sectors = cfg->dev_sectors;
	q->ud_kind = cfg->ud_kind;
	q->ud_queue = cfg->ud_queue;
	q->descs = MAP_FAILED;
	q->bufs = MAP_FAILED;
	q->buf_stride = ublk_queue_buf_stride(q->max_io_bytes);

	q->tags = calloc(q->depth, sizeof(*q->tags));
	if (!q->tags) {
		ret = -ENOMEM;
		goto err;
	}

	/* Queues sit at a fixed stride (sized for the deepest possible queue)
	 * in the char device's mmap space; the kernel wants exactly the pages
	 * of our depth, read-only. */
	q->descs_len = round_up((size_t)q->depth * sizeof(struct ublksrv_io_desc), page);
	desc_off = (off_t)(UBLKSRV_CMD_BUF_OFFSET +
			   (size_t)q->q_id * round_up(UBLK_DESC_BYTES_PER_QUEUE_MAX, page));
	p = mmap(NULL, q->descs_len, PROT_READ, MAP_SHARED | MAP_POPULATE, q->char_fd, desc_off);
	if (p == MAP_FAILED) {
		ret = -errno;
		log_err("ublk%d: queue %u: cannot map the descriptor array: %s", q->dev_id, q->q_id,
			strerror(-ret));
		goto err;
	}
	q->descs = p;

	q->bufs_len = ublk_queue_buf_area_len(q->depth, q->max_io_bytes);
	if (cfg->buf_area) {
		if ((uintptr_t)cfg->buf_area % page || cfg->buf_area_len < q->bufs_len) {
			log_err("ublk%d: queue %u: the buffer area must be page-aligned and hold %zu bytes (got %zu)",
				q->dev_id, q->q_id, q->bufs_len, cfg->buf_area_len);
			ret = -EINVAL;
			goto err;
		}
		q->bufs = cfg->buf_area;
	} else {
		p = mmap(NULL, q->bufs_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			 -1, 0);
		if (p == MAP_FAILED) {
			ret = -errno;
			log_err("ublk%d: queue %u: cannot allocate %zu bytes of tag buffers: %s",
				q->dev_id, q->q_id, q->bufs_len, strerror(-ret));
			goto err;
		}
		q->bufs = p;
		q->bufs_owned = true;
	}
	log_debug(LOG_CAT_UBLK, "ublk%d: queue %u: depth %u, buffers %zu bytes at %p", q->dev_id,
		  q->q_id, q->depth, q->bufs_len, (void *)q->bufs);
	*out = q;
	return 0;
err:
	ublk_queue_destroy(q);
	return ret;
}

void ublk_queue_destroy(struct ublk_queue *q)
{
	if (!q)
		return;
	if (q->in_kernel || q->in_daemon)
		log_warn("ublk%d: queue %u destroyed with %u commands in the kernel and %u requests unanswered",
			 q->dev_id, q->q_id, q->in_kernel, q->in_daemon);
	if (q->bufs != MAP_FAILED && q->bufs_owned)
		munmap(q->bufs, q->bufs_len);
	if (q->descs != MAP_FAILED)
		munmap((void *)q->descs, q->descs_len);
	free(q->tags);
	free(q);
}

void *ublk_queue_buf_area(const struct ublk_queue *q, size_t *len)
{
	if (len)
		*len = q->bufs_len;
	return q->bufs;
}

void *ublk_queue_tag_buf(const struct ublk_queue *q, uint16_t tag)
{
	assert(tag < q->depth);
	return q->bufs + (size_t)tag * q->buf_stride;
}

uint16_t ublk_queue_depth(const struct ublk_queue *q)
{
	return q->depth;
}

uint16_t ublk_queue_id(const struct ublk_queue *q)
{
	return q->q_id;
}

bool ublk_queue_idle(const struct ublk_queue *q)
{
	return !q->in_kernel && !q->in_daemon;
}

unsigned int ublk_queue_in_kernel(const struct ublk_queue *q)
{
	return q->in_kernel;
}

unsigned int ublk_queue_retired(const struct ublk_queue *q)
{
	return q->retired;
}

static void ublk_queue_prep_cmd(struct ublk_queue *q, struct io_uring_sqe *sqe,
				unsigned int cmd_op, uint16_t tag, int32_t result,
				unsigned int ud_cmd)
{
	struct ublksrv_io_cmd *cmd;

	/* A plain 64-byte SQE: the 16-byte io command sits in its last 16
	 * bytes (the uring_cmd area); clear every other field. */
	memset(sqe, 0, sizeof(*sqe));
	sqe->opcode = IORING_OP_URING_CMD;
	sqe->fd = q->char_fd;
	sqe->cmd_op = cmd_op;
	cmd = (struct ublksrv_io_cmd *)((unsigned char *)sqe + offsetof(struct io_uring_sqe, addr3));
	cmd->q_id = q->q_id;
	cmd->tag = tag;
	cmd->result = result;
	cmd->addr = (uintptr_t)ublk_queue_tag_buf(q, tag);
	sqe->user_data = ublk_ud_encode(q->ud_kind, q->ud_queue, tag, ud_cmd);
}

int ublk_queue_prep_fetch_all(struct ublk_queue *q, struct io_uring *ring)
{
	struct io_uring_sqe *sqe;
	int n = 0;
	uint16_t tag;

	for (tag = 0; tag < q->depth; tag++) {
		if (q->tags[tag].state != UBLK_TAG_IDLE)
			continue;
		sqe = ring_get_sqe(ring);
		if (!sqe) {
			log_err("ublk%d: queue %u: no SQE to fetch tag %u", q->dev_id, q->q_id, tag);
			return -EBUSY;
		}
		ublk_queue_prep_cmd(q, sqe, UBLK_U_IO_FETCH_REQ, tag, -1, UBLK_UD_CMD_FETCH);
		q->tags[tag].state = UBLK_TAG_IN_KERNEL;
		q->in_kernel++;
		n++;
	}
	return n;
}

int ublk_queue_handle_cqe(struct ublk_queue *q, struct io_uring *ring,
			  const struct io_uring_cqe *cqe, struct ublk_io *io)
{
	unsigned int tag = ublk_ud_tag(cqe->user_data);
	struct ublksrv_io_desc desc;
	struct ublk_tag *t;
	int ret;

	if (tag >= q->depth || q->tags[tag].state != UBLK_TAG_IN_KERNEL) {
		log_err("ublk%d: queue %u: completion for tag %u that has no command (res %d)",
			q->dev_id, q->q_id, tag, cqe->res);
		return -EPROTO;
	}
	t = &q->tags[tag];
	q->in_kernel--;
	if (cqe->res != UBLK_IO_RES_OK) {
		t->state = UBLK_TAG_RETIRED;
		q->retired++;
		if (cqe->res == UBLK_IO_RES_ABORT) {
			/* STOP_DEV, or the kernel cancelling our commands. */
			log_debug(LOG_CAT_UBLK, "ublk%d: queue %u: tag %u aborted", q->dev_id,
				  q->q_id, tag);
			return 0;
		}
		log_err("ublk%d: queue %u: tag %u: %s failed: %s (%d)", q->dev_id, q->q_id, tag,
			ublk_ud_cmd(cqe->user_data) == UBLK_UD_CMD_FETCH ? "FETCH_REQ"
									: "COMMIT_AND_FETCH_REQ",
			cqe->res < 0 ? strerror(-cqe->res) : "unexpected result", cqe->res);
		return cqe->res < 0 ? cqe->res : -EPROTO;
	}

	/* The kernel wrote the descriptor before posting the CQE; liburing's
	 * acquire on the CQ tail orders this read after it. Copy it once. */
	desc = q->descs[tag];
	t->state = UBLK_TAG_IN_DAEMON;
	q->in_daemon++;
	ret = ublk_io_decode(&desc, q->max_io_bytes, q->dev_sectors, io);
	io->tag = (uint16_t)tag;
	t->op = io->op;
	t->len = io->len;
	if (ret < 0) {
		log_err("ublk%d: queue %u: tag %u: cannot serve %s (op %u) of %u sectors at sector %llu: %s",
			q->dev_id, q->q_id, tag, ublk_io_op_name(io->op), io->op, desc.nr_sectors,
			(unsigned long long)desc.start_sector, strerror(-ret));
		ret = ublk_queue_commit(q, ring, (uint16_t)tag, ret == -EOPNOTSUPP ? -EOPNOTSUPP : -EIO);
		return ret < 0 ? ret : 0;
	}
	io->buf = ublk_queue_tag_buf(q, (uint16_t)tag);
	log_debug(LOG_CAT_IO, "ublk%d: queue %u: tag %u: %s %u bytes at %llu flags 0x%x",
		  q->dev_id, q->q_id, tag, ublk_io_op_name(io->op), io->len,
		  (unsigned long long)io->offset, io->flags);
	return 1;
}

int ublk_queue_commit(struct ublk_queue *q, struct io_uring *ring, uint16_t tag,
		      int32_t result)
{
	struct io_uring_sqe *sqe;
	struct ublk_tag *t;

	if (tag >= q->depth || q->tags[tag].state != UBLK_TAG_IN_DAEMON) {
		log_err("ublk%d: queue %u: commit of tag %u that has no request", q->dev_id,
			q->q_id, tag);
		return -EINVAL;
	}
	t = &q->tags[tag];
	if (result > 0 && (uint32_t)result > t->len) {
		/* A READ claiming more than asked would make the kernel copy
		 * past the request: fail it instead. */
		log_err("ublk%d: queue %u: tag %u: %s result %d exceeds its %u bytes",
			q->dev_id, q->q_id, tag, ublk_io_op_name(t->op), result, t->len);
		result = -EIO;
	}
	sqe = ring_get_sqe(ring);
	if (!sqe) {
		/* Never strand the tag: its commit goes out with the next
		 * round (ublk_queue_retry_commits()). */
		if (!t->commit_held) {
			log_warn("ublk%d: queue %u: no SQE to commit tag %u now; holding it",
				 q->dev_id, q->q_id, tag);
			t->commit_held = true;
			q->held++;
		}
		t->result = result;
		return 0;
	}
	if (t->commit_held) {
		t->commit_held = false;
		q->held--;
	}
	ublk_queue_prep_cmd(q, sqe, UBLK_U_IO_COMMIT_AND_FETCH_REQ, tag, result,
			    UBLK_UD_CMD_COMMIT);
	t->state = UBLK_TAG_IN_KERNEL;
	q->in_daemon--;
	q->in_kernel++;
	return 0;
}

bool ublk_queue_commits_held(const struct ublk_queue *q)
{
	return q->held;
}

void ublk_queue_retry_commits(struct ublk_queue *q, struct io_uring *ring)
{
	for (uint16_t tag = 0; q->held && tag < q->depth; tag++)
		if (q->tags[tag].commit_held &&
		    (ublk_queue_commit(q, ring, tag, q->tags[tag].result) || q->tags[tag].commit_held))
			return; /* still no SQE */
}
