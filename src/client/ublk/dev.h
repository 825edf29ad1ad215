/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * ublk control plane: one ublk device (/dev/ublkcN + /dev/ublkbN) seen from
 * the control thread.
 *
 * Life of a device we create:
 *
 *   ublk_ctrl_create()                 open /dev/ublk-control, GET_FEATURES
 *   ublk_dev_create()                  ADD_DEV, open /dev/ublkcN
 *   ublk_params_build() +
 *   ublk_dev_set_params()              SET_PARAMS
 *   (each queue thread: ublk_queue_create() + FETCH every tag)
 *   ublk_dev_start()                   START_DEV: blocks until every queue
 *                                      fetched, then the kernel scans
 *                                      partitions through those queues
 *   ... IO ...
 *   ublk_dev_stop()                    STOP_DEV: the kernel aborts every
 *                                      pending FETCH, queue threads drain
 *   (each queue thread: ublk_queue_destroy(), exits its ring)
 *   ublk_dev_destroy()                 close /dev/ublkcN, DEL_DEV
 *
 * Recovery of a device a dead daemon left QUIESCED:
 *   ublk_dev_attach() → ublk_dev_start_recovery() → queues fetch →
 *   ublk_dev_end_recovery().
 *
 * Every function here issues a control command and waits for it: call them
 * from control threads, never from a queue thread (START_DEV and
 * END_USER_RECOVERY wait for the queue threads). Each command has a ring of
 * its own, so several threads may use one struct ublk_ctrl at once, each
 * for devices of its own: a struct ublk_dev belongs to one thread at a
 * time.
 * All functions return 0 or a count on success and -errno on failure.
 */
#ifndef IBNBD_UBLK_DEV_H
#define IBNBD_UBLK_DEV_H

#include <stdbool.h>
#include <stdint.h>

#include "ublk/uapi.h"

/* Largest tag buffer we accept: ublk's user-copy offset encoding caps a
 * request at 32 MiB, and nothing larger makes sense over the network. */
#define UBLK_DEV_MAX_IO_BYTES (32u << 20)

struct ublk_ctrl;
struct ublk_dev;

/* Opens /dev/ublk-control and its SQE128 ring and reads the kernel's
 * features. -ENOENT when the ublk_drv module is not loaded. */
int ublk_ctrl_create(struct ublk_ctrl **out);
void ublk_ctrl_destroy(struct ublk_ctrl *ctrl);
/* UBLK_F_* the running kernel supports: GET_FEATURES, or the 6.1 baseline
 * when the kernel predates that command. */
uint64_t ublk_ctrl_features(const struct ublk_ctrl *ctrl);

struct ublk_dev_config {
	int dev_id;             /* -1: the kernel picks N of /dev/ublkbN */
	uint16_t nr_queues;     /* the kernel caps this at the CPU count */
	uint16_t queue_depth;   /* 1..UBLK_MAX_QUEUE_DEPTH */
	uint32_t max_io_bytes;  /* largest request and tag buffer; page multiple */
	bool recovery;          /* ask for USER_RECOVERY(_REISSUE) if supported */
};

/* ADD_DEV, then opens /dev/ublkcN (waiting for the node to appear). The
 * kernel may adjust nr_queues, depth, max_io_bytes and flags: read them back
 * with ublk_dev_info(). We own the device: ublk_dev_destroy() deletes it
 * unless ublk_dev_set_owned(dev, false). */
int ublk_dev_create(struct ublk_ctrl *ctrl, const struct ublk_dev_config *cfg,
		    struct ublk_dev **out);
/* Takes hold of an existing device (GET_DEV_INFO) without opening its char
 * device, e.g. to recover it. Not owned: ublk_dev_destroy() leaves it alive
 * unless ublk_dev_set_owned(dev, true). */
int ublk_dev_attach(struct ublk_ctrl *ctrl, int dev_id, struct ublk_dev **out);
/* Releases the device. Call only once no queue of it exists any more (the
 * kernel's DEL_DEV waits for every mapping and ring reference). If we own
 * the device: STOP_DEV (harmless if stopped), close, DEL_DEV. Tolerates a
 * half-built device and NULL. */
void ublk_dev_destroy(struct ublk_dev *dev);
/* owned: ublk_dev_destroy() stops and deletes the kernel device; not owned:
 * it only lets go of it (a daemon upgrade leaves its devices to the next). */
void ublk_dev_set_owned(struct ublk_dev *dev, bool owned);

/* The device info as the kernel last returned it. */
const struct ublksrv_ctrl_dev_info *ublk_dev_info(const struct ublk_dev *dev);
int ublk_dev_id(const struct ublk_dev *dev);
/* /dev/ublkcN fd, for the queues' mmap and uring_cmds; -1 when closed. */
int ublk_dev_char_fd(const struct ublk_dev *dev);
/* Re-reads the info (state, pid, flags) with GET_DEV_INFO. */
int ublk_dev_refresh_info(struct ublk_dev *dev);

/* What the block device should look like, in bytes. */
struct ublk_dev_params {
	uint64_t size;                 /* bytes; multiple of logical_block_size */
	uint32_t logical_block_size;   /* power of two, 512..page size */
	uint32_t physical_block_size;  /* power of two, >= logical; 0: = logical */
	uint32_t max_io_bytes;         /* 0: the device's max_io_buf_bytes */
	uint32_t max_discard_bytes;    /* 0: no discard */
	uint32_t discard_granularity;  /* 0: logical_block_size */
	uint32_t max_write_zeroes_bytes; /* 0: no write zeroes */
	bool read_only;
	bool rotational;
	bool volatile_cache;           /* the kernel then sends FLUSH */
	bool fua;                      /* the kernel then sends WRITE|FUA */
};

/* Pure: validates p against the device's max_io_buf_bytes and fills *out
 * for SET_PARAMS. -EINVAL with *why set to a sentence on a bad value. */
int ublk_params_build(const struct ublk_dev_params *p, uint32_t max_io_buf_bytes,
		      struct ublk_params *out, const char **why);
/* SET_PARAMS; only before START_DEV (the kernel refuses it while live). */
int ublk_dev_set_params(struct ublk_dev *dev, const struct ublk_params *params);
/* GET_PARAMS: the basic and discard parameters the kernel holds (they
 * survive a daemon restart). */
int ublk_dev_get_params(struct ublk_dev *dev, struct ublk_params *params);
/* START_DEV with our pid. Blocks until every queue has fetched all its tags,
 * then the kernel adds /dev/ublkbN and reads it: queues must be serving. */
int ublk_dev_start(struct ublk_dev *dev);
/* STOP_DEV: removes /dev/ublkbN; every pending FETCH then completes with
 * UBLK_IO_RES_ABORT (-ENODEV), which is how queue threads learn to exit. */
int ublk_dev_stop(struct ublk_dev *dev);

/* START_USER_RECOVERY (retried while the old daemon's references linger,
 * up to timeout_ms), then opens /dev/ublkcN for the new queues. */
int ublk_dev_start_recovery(struct ublk_dev *dev, unsigned int timeout_ms);
/* END_USER_RECOVERY with our pid; blocks until every queue fetched again. */
int ublk_dev_end_recovery(struct ublk_dev *dev);

#endif
