/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * ublk IO plane: one hardware queue of one ublk device, served by exactly
 * one thread through an io_uring that thread owns (the worker's ring, which
 * also carries its RDMA completion channel poll, eventfd and timers).
 *
 * The queue never submits or waits by itself (except to make room, see
 * below): it preps uring_cmd SQEs into the caller's ring and interprets the
 * CQEs the caller hands back. Every tag goes through:
 *
 *   IDLE ──prep FETCH──▶ IN_KERNEL ──CQE res 0──▶ IN_DAEMON (serve it)
 *                        ▲     │                      │
 *                        │     └─CQE -ENODEV/error──▶ RETIRED (never again)
 *                        └────prep COMMIT_AND_FETCH───┘
 *
 * IN_KERNEL: a FETCH or COMMIT_AND_FETCH is in the caller's SQ or pending in
 *            the kernel; the kernel may write the descriptor and the buffer.
 * IN_DAEMON: the request is ours; its buffer is ours until we commit.
 * RETIRED:   the kernel aborted the command (STOP_DEV, ring exit) or failed
 *            it; the tag gets no further request in this queue's life.
 * The queue is idle (safe to destroy, after which the caller exits its ring)
 * when no tag is IN_KERNEL or IN_DAEMON.
 *
 * Thread rules (the kernel's): all commands of a queue come from one thread,
 * the one whose ring fetched; completions run as task work in that thread.
 * ublk_queue_create() may run on any thread, the rest on the queue's thread.
 */
#ifndef IBNBD_UBLK_QUEUE_H
#define IBNBD_UBLK_QUEUE_H

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ublk/uapi.h"

struct io_uring;
struct io_uring_cqe;
struct ublk_dev;
struct ublk_queue;

/*
 * user_data of the queue's SQEs, so the thread serving it can dispatch its
 * CQEs:
 *
 *   63     56 55               32 31          16 15          0
 *   [ kind  ][ queue (thread's) ][     tag      ][    cmd     ]
 *
 * kind:  what the ring's owner calls "a ublk command" (engine.h: the kind
 *        byte of every entry on an engine's ring).
 * queue: the serving thread's index of this queue (which device), not the
 *        hardware queue id (every queue of a worker may have the same q_id).
 * cmd:   UBLK_UD_CMD_* (what the SQE was), for logs and checks.
 */
#define UBLK_UD_KIND_BITS 8
#define UBLK_UD_QUEUE_BITS 24
#define UBLK_UD_TAG_BITS 16
#define UBLK_UD_CMD_BITS 16
#define UBLK_UD_TAG_SHIFT UBLK_UD_CMD_BITS
#define UBLK_UD_QUEUE_SHIFT (UBLK_UD_TAG_SHIFT + UBLK_UD_TAG_BITS)
#define UBLK_UD_KIND_SHIFT (UBLK_UD_QUEUE_SHIFT + UBLK_UD_QUEUE_BITS)
_Static_assert(UBLK_UD_KIND_SHIFT + UBLK_UD_KIND_BITS == 64, "user_data fields fill 64 bits");
_Static_assert(UBLK_MAX_QUEUE_DEPTH <= (1u << UBLK_UD_TAG_BITS), "a tag fits its field");

enum ublk_ud_cmd {
	UBLK_UD_CMD_FETCH = 1,
	UBLK_UD_CMD_COMMIT = 2,
};

static inline uint64_t ublk_ud_encode(unsigned int kind, unsigned int queue,
				      unsigned int tag, unsigned int cmd)
{
	assert(kind < (1u << UBLK_UD_KIND_BITS));
	assert(queue < (1u << UBLK_UD_QUEUE_BITS));
	assert(tag < (1u << UBLK_UD_TAG_BITS));
	assert(cmd < (1u << UBLK_UD_CMD_BITS));
	return (uint64_t)kind << UBLK_UD_KIND_SHIFT | (uint64_t)queue << UBLK_UD_QUEUE_SHIFT |
	       (uint64_t)tag << UBLK_UD_TAG_SHIFT | (uint64_t)cmd;
}

static inline unsigned int ublk_ud_kind(uint64_t ud)
{
	return (unsigned int)(ud >> UBLK_UD_KIND_SHIFT);
}

static inline unsigned int ublk_ud_queue(uint64_t ud)
{
	return (unsigned int)(ud >> UBLK_UD_QUEUE_SHIFT) & ((1u << UBLK_UD_QUEUE_BITS) - 1);
}

static inline unsigned int ublk_ud_tag(uint64_t ud)
{
	return (unsigned int)(ud >> UBLK_UD_TAG_SHIFT) & ((1u << UBLK_UD_TAG_BITS) - 1);
}

static inline unsigned int ublk_ud_cmd(uint64_t ud)
{
	return (unsigned int)ud & ((1u << UBLK_UD_CMD_BITS) - 1);
}

/* One request, decoded from the kernel's descriptor. */
struct ublk_io {
	uint16_t tag;
	uint8_t op;             /* UBLK_IO_OP_READ/WRITE/FLUSH/DISCARD/WRITE_ZEROES */
	uint32_t flags;         /* UBLK_IO_F_FUA, UBLK_IO_F_NOUNMAP, ... */
	uint64_t start_sector;  /* 512-byte sectors, whatever the block size */
	uint32_t nr_sectors;
	uint64_t offset;        /* start_sector << 9 */
	uint32_t len;           /* nr_sectors << 9 (0 for FLUSH); < 4 GiB */
	void *buf;              /* the tag buffer: WRITE data is already there,
				 * READ data goes there before the commit */
};

/* Pure: decodes a descriptor. -EOPNOTSUPP for an op we do not serve (zoned,
 * WRITE_SAME), -EINVAL for a length the tag buffer cannot hold or an
 * out-of-range sector. buf is left NULL. */
int ublk_io_decode(const struct ublksrv_io_desc *desc, uint32_t max_io_bytes,
		   uint64_t dev_sectors, struct ublk_io *io);
const char *ublk_io_op_name(unsigned int op);

/* Pure: layout of a queue's tag buffers: one contiguous area, tag t at
 * t * stride, stride = max_io_bytes rounded up to a page. */
size_t ublk_queue_buf_stride(uint32_t max_io_bytes);
size_t ublk_queue_buf_area_len(uint16_t depth, uint32_t max_io_bytes);

struct ublk_queue_config {
	uint16_t q_id;          /* hardware queue, < the device's nr_hw_queues */
	unsigned int ud_kind;   /* user_data kind of this queue's SQEs */
	unsigned int ud_queue;  /* user_data queue field (the worker's index) */
	uint64_t dev_sectors;   /* device size, to reject requests beyond it;
				 * 0: do not check */
	/* Tag buffers: NULL to let the queue map them (freed at destroy), or
	 * a page-aligned caller-owned area of at least
	 * ublk_queue_buf_area_len() bytes (e.g. from a pool registered for
	 * RDMA); it must outlive the queue. */
	void *buf_area;
	size_t buf_area_len;
};

/* Maps the queue's descriptor array (read-only) and sets up its tags; the
 * device's char device must be open. Depth and max IO size come from the
 * device info. No command is issued yet. */
int ublk_queue_create(struct ublk_dev *dev, const struct ublk_queue_config *cfg,
		      struct ublk_queue **out);
/* Unmaps; the queue must be idle (ublk_queue_idle()), or the caller's ring
 * already exited, since the kernel may still write into the buffers. */
void ublk_queue_destroy(struct ublk_queue *q);

/* The one contiguous tag-buffer area of this queue, for ibv_reg_mr. */
void *ublk_queue_buf_area(const struct ublk_queue *q, size_t *len);
void *ublk_queue_tag_buf(const struct ublk_queue *q, uint16_t tag);
uint16_t ublk_queue_depth(const struct ublk_queue *q);
uint16_t ublk_queue_id(const struct ublk_queue *q);

/* Preps a FETCH_REQ for every IDLE tag into ring (submitting it whenever the
 * SQ is full). Returns the number prepped; the caller submits. Call once at
 * start (or recovery), from the thread that will serve the queue. */
int ublk_queue_prep_fetch_all(struct ublk_queue *q, struct io_uring *ring);

/* Interprets a CQE whose user_data this queue made (type and queue match).
 *   1   *io holds a request: serve it, then ublk_queue_commit().
 *   0   nothing to serve: the tag was retired by an abort (the device is
 *       stopping) or a request we cannot serve was failed right here.
 *  <0   the kernel failed the command (logged); the tag is retired.
 */
int ublk_queue_handle_cqe(struct ublk_queue *q, struct io_uring *ring,
			  const struct io_uring_cqe *cqe, struct ublk_io *io);

/* Completes an IN_DAEMON tag and fetches its next request in one
 * COMMIT_AND_FETCH_REQ prepped into ring. result: bytes done for READ and
 * WRITE (normally io->len), 0 for FLUSH/DISCARD/WRITE_ZEROES, -errno to fail
 * the request. -EINVAL if the tag is not IN_DAEMON. Without an SQE (even
 * after submitting to make room) the commit is held, never lost:
 * ublk_queue_retry_commits() preps it once there is room. */
int ublk_queue_commit(struct ublk_queue *q, struct io_uring *ring, uint16_t tag,
		      int32_t result);
/* Commits held for want of an SQE. */
bool ublk_queue_commits_held(const struct ublk_queue *q);
void ublk_queue_retry_commits(struct ublk_queue *q, struct io_uring *ring);

/* No command in the kernel and no request being served. */
bool ublk_queue_idle(const struct ublk_queue *q);
/* Tags whose FETCH/COMMIT_AND_FETCH is prepped or pending in the kernel. */
unsigned int ublk_queue_in_kernel(const struct ublk_queue *q);
/* Tags the kernel aborted or failed: they get no request any more. */
unsigned int ublk_queue_retired(const struct ublk_queue *q);

#endif
