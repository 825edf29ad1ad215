// SPDX-License-Identifier: GPL-2.0-only
/*
 * ublk control plane: control commands are io_uring URING_CMDs on
 * /dev/ublk-control. Each call submits one command on a small SQE128 ring
 * of its own and waits for its completion: control commands are rare,
 * several of them (START_DEV, DEL_DEV) block in the kernel until other
 * threads have done their part, and a ring per command lets threads issue
 * commands for different devices at the same time.
 */
#include "ublk/dev.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define UBLK_CONTROL_PATH "/dev/ublk-control"
/* How long ADD_DEV's /dev/ublkcN may take to show up (udev may rename or
 * chmod it; devtmpfs alone is synchronous). */
#define UBLK_CHAR_WAIT_MS 5000

/* What every 6.12 kernel has, assumed when GET_FEATURES (6.5+) is missing. */
#define UBLK_FEATURES_BASELINE                                                 \
	(UBLK_F_URING_CMD_COMP_IN_TASK | UBLK_F_NEED_GET_DATA |                \
	 UBLK_F_USER_RECOVERY | UBLK_F_USER_RECOVERY_REISSUE)

struct ublk_ctrl {
	int fd;
	uint64_t features;
};

struct ublk_dev {
	struct ublk_ctrl *ctrl;
	int dev_id;
	int char_fd;
	bool added;   /* ADD_DEV succeeded: the kernel device exists */
	bool owned;   /* ublk_dev_destroy() deletes the kernel device */
	struct ublksrv_ctrl_dev_info info;
};

static const char *ublk_cmd_name(unsigned int cmd_op)
{
	switch (cmd_op) {
	case UBLK_U_CMD_GET_FEATURES: return "GET_FEATURES";
	case UBLK_U_CMD_ADD_DEV: return "ADD_DEV";
	case UBLK_U_CMD_DEL_DEV: return "DEL_DEV";
	case UBLK_U_CMD_START_DEV: return "START_DEV";
	case UBLK_U_CMD_STOP_DEV: return "STOP_DEV";
	case UBLK_U_CMD_SET_PARAMS: return "SET_PARAMS";
	case UBLK_U_CMD_GET_PARAMS: return "GET_PARAMS";
	case UBLK_U_CMD_GET_DEV_INFO: return "GET_DEV_INFO";
	case UBLK_U_CMD_START_USER_RECOVERY: return "START_USER_RECOVERY";
	case UBLK_U_CMD_END_USER_RECOVERY: return "END_USER_RECOVERY";
	default: return "control command";
	}
}

/* Submits one control command and waits for its result (the CQE's res). */
static int ublk_ctrl_submit(struct ublk_ctrl *ctrl, unsigned int cmd_op,
			    const struct ublksrv_ctrl_cmd *cmd)
{
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	struct io_uring ring;
	unsigned char *cmd_area;
	int ret;

	/* Control commands are 32-byte payloads in the SQE: they need
	 * 128-byte SQEs. */
	ret = io_uring_queue_init(2, &ring, IORING_SETUP_SQE128);
	if (ret < 0) {
		log_err("cannot create a ublk control io_uring: %s", strerror(-ret));
		return ret;
	}
	sqe = io_uring_get_sqe(&ring);
	if (!sqe) {
		io_uring_queue_exit(&ring);
		return -EBUSY; /* a fresh ring has room */
	}
	/* An SQE128 entry: the command area runs to the end of 128 bytes and
	 * the kernel reads all of it, so clear all of it. */
	memset(sqe, 0, 2 * sizeof(*sqe));
	sqe->opcode = IORING_OP_URING_CMD;
	sqe->fd = ctrl->fd;
	sqe->cmd_op = cmd_op;
	cmd_area = (unsigned char *)sqe + offsetof(struct io_uring_sqe, addr3);
	memcpy(cmd_area, cmd, sizeof(*cmd));

	ret = io_uring_submit(&ring);
	if (ret == 1) {
		do {
			ret = io_uring_wait_cqe(&ring, &cqe);
		} while (ret == -EINTR);
		if (!ret) {
			ret = cqe->res;
			io_uring_cqe_seen(&ring, cqe);
		}
	} else if (ret >= 0) {
		ret = -EIO;
	}
	io_uring_queue_exit(&ring);
	return ret;
}

int ublk_ctrl_create(struct ublk_ctrl **out)
{
	struct ublk_ctrl *ctrl;
	struct ublksrv_ctrl_cmd cmd;
	uint64_t features = 0;
	int ret;

	*out = NULL;
	ctrl = calloc(1, sizeof(*ctrl));
	if (!ctrl)
		return -ENOMEM;
	ctrl->fd = open(UBLK_CONTROL_PATH, O_RDWR | O_CLOEXEC);
	if (ctrl->fd < 0) {
		ret = -errno;
		log_err("cannot open %s: %s%s", UBLK_CONTROL_PATH, strerror(-ret),
			ret == -ENOENT ? " (load the ublk_drv kernel module: modprobe ublk_drv)" : "");
		goto err;
	}
	memset(&cmd, 0, sizeof(cmd));
	cmd.dev_id = (uint32_t)-1;
	cmd.queue_id = (uint16_t)-1;
	cmd.addr = (uintptr_t)&features;
	cmd.len = UBLK_FEATURES_LEN;
	ret = ublk_ctrl_submit(ctrl, UBLK_U_CMD_GET_FEATURES, &cmd);
	if (ret < 0) {
		/* Kernels before 6.5: fall back to what they all have. */
		log_warn("ublk GET_FEATURES failed (%s): assuming a pre-6.5 kernel", strerror(-ret));
		features = UBLK_FEATURES_BASELINE;
	}
	ctrl->features = features;
	log_debug(LOG_CAT_UBLK, "ublk: kernel features 0x%llx", (unsigned long long)features);
	*out = ctrl;
	return 0;
err:
	ublk_ctrl_destroy(ctrl);
	return ret;
}

void ublk_ctrl_destroy(struct ublk_ctrl *ctrl)
{
	if (!ctrl)
		return;
	if (ctrl->fd >= 0)
		close(ctrl->fd);
	free(ctrl);
}

uint64_t ublk_ctrl_features(const struct ublk_ctrl *ctrl)
{
	return ctrl->features;
}

/* A command for one device; data[0] and the buffer as the command needs. */
static int ublk_dev_cmd(struct ublk_dev *dev, unsigned int cmd_op, void *buf,
			uint16_t len, uint64_t data0)
{
	struct ublksrv_ctrl_cmd cmd;
	int ret;

	memset(&cmd, 0, sizeof(cmd));
	cmd.dev_id = (uint32_t)dev->dev_id;
	cmd.queue_id = (uint16_t)-1;
	cmd.addr = (uintptr_t)buf;
	cmd.len = len;
	cmd.data[0] = data0;
	ret = ublk_ctrl_submit(dev->ctrl, cmd_op, &cmd);
	log_debug(LOG_CAT_UBLK, "ublk%d: %s -> %d", dev->dev_id, ublk_cmd_name(cmd_op), ret);
	return ret;
}

static void sleep_ms(unsigned int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Opens /dev/ublkcN, waiting a little for the node to appear. Opening is
 * exclusive: -EBUSY means another daemon holds this device. */
static int ublk_dev_open_char(struct ublk_dev *dev)
{
	char path[32];
	unsigned int waited = 0;
	int fd;

	snprintf(path, sizeof(path), "/dev/ublkc%d", dev->dev_id);
	for (;;) {
		fd = open(path, O_RDWR | O_CLOEXEC);
		if (fd >= 0)
			break;
		if (errno != ENOENT || waited >= UBLK_CHAR_WAIT_MS) {
			int ret = -errno;

			log_err("ublk%d: cannot open %s: %s%s", dev->dev_id, path, strerror(-ret),
				ret == -EBUSY ? " (another ublk server holds this device)" : "");
			return ret;
		}
		sleep_ms(10);
		waited += 10;
	}
	dev->char_fd = fd;
	return 0;
}

static struct ublk_dev *ublk_dev_alloc(struct ublk_ctrl *ctrl, int dev_id)
{
	struct ublk_dev *dev = calloc(1, sizeof(*dev));

	if (!dev)
		return NULL;
	dev->ctrl = ctrl;
	dev->dev_id = dev_id;
	dev->char_fd = -1;
	return dev;
}

int ublk_dev_create(struct ublk_ctrl *ctrl, const struct ublk_dev_config *cfg,
		    struct ublk_dev **out)
{
	long page = sysconf(_SC_PAGESIZE);
	struct ublksrv_ctrl_dev_info info;
	struct ublk_dev *dev;
	uint64_t want = 0;
	int ret;

	*out = NULL;
	if (cfg->nr_queues < 1 || cfg->queue_depth < 1 ||
	    cfg->queue_depth > UBLK_MAX_QUEUE_DEPTH) {
		log_err("ublk: bad device shape: %u queues of depth %u (depth must be 1..%d)",
			cfg->nr_queues, cfg->queue_depth, UBLK_MAX_QUEUE_DEPTH);
		return -EINVAL;
	}
	if (cfg->max_io_bytes < (uint32_t)page || cfg->max_io_bytes % (uint32_t)page ||
	    cfg->max_io_bytes > UBLK_DEV_MAX_IO_BYTES) {
		log_err("ublk: max IO size %u must be a multiple of %ld between %ld and %u bytes",
			cfg->max_io_bytes, page, page, UBLK_DEV_MAX_IO_BYTES);
		return -EINVAL;
	}
	if (cfg->dev_id < -1) {
		log_err("ublk: bad device id %d", cfg->dev_id);
		return -EINVAL;
	}
	if (cfg->recovery) {
		if (ctrl->features & UBLK_F_USER_RECOVERY)
			want |= UBLK_F_USER_RECOVERY;
		if (ctrl->features & UBLK_F_USER_RECOVERY_REISSUE)
			want |= UBLK_F_USER_RECOVERY | UBLK_F_USER_RECOVERY_REISSUE;
	}
	if (ctrl->features & UBLK_F_CMD_IOCTL_ENCODE)
		want |= UBLK_F_CMD_IOCTL_ENCODE;

	dev = ublk_dev_alloc(ctrl, cfg->dev_id);
	if (!dev)
		return -ENOMEM;
	memset(&info, 0, sizeof(info));
	info.nr_hw_queues = cfg->nr_queues;
	info.queue_depth = cfg->queue_depth;
	info.max_io_buf_bytes = cfg->max_io_bytes;
	/* The command's dev_id and the info's must agree; -1 in both lets
	 * the kernel pick. */
	info.dev_id = (uint32_t)cfg->dev_id;
	info.flags = want;
	ret = ublk_dev_cmd(dev, UBLK_U_CMD_ADD_DEV, &info, sizeof(info), 0);
	if (ret < 0) {
		log_err("ublk: ADD_DEV (%u queues, depth %u, max IO %u) failed: %s",
			cfg->nr_queues, cfg->queue_depth, cfg->max_io_bytes, strerror(-ret));
		goto err;
	}
	dev->added = true;
	dev->owned = true;
	dev->info = info;
	dev->dev_id = (int)info.dev_id;
	/* The kernel drops flags it lacks without failing: trust only what it
	 * returned. */
	if ((want & UBLK_F_USER_RECOVERY) && !(info.flags & UBLK_F_USER_RECOVERY))
		log_warn("ublk%d: the kernel refused USER_RECOVERY: a daemon restart will fail IO",
			 dev->dev_id);
	log_info("ublk%d: added: %u queues, depth %u, max IO %u bytes, flags 0x%llx",
		 dev->dev_id, info.nr_hw_queues, info.queue_depth, info.max_io_buf_bytes,
		 (unsigned long long)info.flags);
	ret = ublk_dev_open_char(dev);
	if (ret < 0)
		goto err;
	*out = dev;
	return 0;
err:
	ublk_dev_destroy(dev);
	return ret;
}

int ublk_dev_attach(struct ublk_ctrl *ctrl, int dev_id, struct ublk_dev **out)
{
	struct ublk_dev *dev;
	int ret;

	*out = NULL;
	if (dev_id < 0) {
		log_err("ublk: bad device id %d", dev_id);
		return -EINVAL;
	}
	dev = ublk_dev_alloc(ctrl, dev_id);
	if (!dev)
		return -ENOMEM;
	ret = ublk_dev_refresh_info(dev);
	if (ret < 0) {
		log_err("ublk%d: cannot read the device info: %s", dev_id, strerror(-ret));
		ublk_dev_destroy(dev);
		return ret;
	}
	dev->added = true;
	*out = dev;
	return 0;
}

void ublk_dev_destroy(struct ublk_dev *dev)
{
	int ret;

	if (!dev)
		return;
	if (dev->added && dev->owned) {
		/* A no-op if already stopped; otherwise fails pending IO. */
		ret = ublk_dev_cmd(dev, UBLK_U_CMD_STOP_DEV, NULL, 0, 0);
		if (ret < 0)
			log_warn("ublk%d: STOP_DEV failed: %s", dev->dev_id, strerror(-ret));
	}
	/* DEL_DEV waits until the char device's last reference is gone. */
	if (dev->char_fd >= 0)
		close(dev->char_fd);
	dev->char_fd = -1;
	if (dev->added && dev->owned) {
		ret = ublk_dev_cmd(dev, UBLK_U_CMD_DEL_DEV, NULL, 0, 0);
		if (ret < 0)
			log_err("ublk%d: DEL_DEV failed: %s; /dev/ublkc%d may remain",
				dev->dev_id, strerror(-ret), dev->dev_id);
		else
			log_info("ublk%d: deleted", dev->dev_id);
	}
	free(dev);
}

void ublk_dev_set_owned(struct ublk_dev *dev, bool owned)
{
	dev->owned = owned;
}

const struct ublksrv_ctrl_dev_info *ublk_dev_info(const struct ublk_dev *dev)
{
	return &dev->info;
}

int ublk_dev_id(const struct ublk_dev *dev)
{
	return dev->dev_id;
}

int ublk_dev_char_fd(const struct ublk_dev *dev)
{
	return dev->char_fd;
}

int ublk_dev_refresh_info(struct ublk_dev *dev)
{
	struct ublksrv_ctrl_dev_info info;
	int ret;

	memset(&info, 0, sizeof(info));
	ret = ublk_dev_cmd(dev, UBLK_U_CMD_GET_DEV_INFO, &info, sizeof(info), 0);
	if (ret < 0)
		return ret;
	dev->info = info;
	return 0;
}

static uint8_t log2_u32(uint32_t v)
{
	return (uint8_t)(31 - __builtin_clz(v));
}

int ublk_params_build(const struct ublk_dev_params *p, uint32_t max_io_buf_bytes,
		      struct ublk_params *out, const char **why)
{
	uint32_t page = (uint32_t)sysconf(_SC_PAGESIZE);
	uint32_t lbs = p->logical_block_size;
	uint32_t pbs = p->physical_block_size ? p->physical_block_size : lbs;
	uint32_t max_io = p->max_io_bytes ? p->max_io_bytes : max_io_buf_bytes;
	uint32_t gran = p->discard_granularity ? p->discard_granularity : lbs;
	const char *dummy;

	if (!why)
		why = &dummy;
	*why = NULL;
	memset(out, 0, sizeof(*out));
	if (!is_pow2(lbs) || lbs < 512 || lbs > page) {
		*why = "the logical block size must be a power of two from 512 to the page size";
		return -EINVAL;
	}
	if (!is_pow2(pbs) || pbs < lbs || pbs > 65536) {
		*why = "the physical block size must be a power of two from the logical block size to 64 KiB";
		return -EINVAL;
	}
	if (!p->size || p->size % lbs) {
		*why = "the size must be a non-zero multiple of the logical block size";
		return -EINVAL;
	}
	/* The block layer rejects (with a kernel WARN) a max_hw_sectors below
	 * one page, and ublk rejects one above the tag buffer size. */
	if (max_io > max_io_buf_bytes || max_io < page || max_io % lbs) {
		*why = "the max IO size must be a multiple of the logical block size, at least a page, and fit the tag buffers";
		return -EINVAL;
	}
	if (p->max_discard_bytes &&
	    (p->max_discard_bytes % lbs || !is_pow2(gran) || gran < lbs ||
	     p->max_discard_bytes < gran)) {
		*why = "discard needs a power-of-two granularity of at least the logical block size, and a max discard size that is a multiple of the logical block size and at least the granularity";
		return -EINVAL;
	}
	if (p->max_write_zeroes_bytes % lbs) {
		*why = "the max write-zeroes size must be a multiple of the logical block size";
		return -EINVAL;
	}

	out->len = sizeof(*out);
	out->types = UBLK_PARAM_TYPE_BASIC;
	out->basic.attrs = (p->read_only ? UBLK_ATTR_READ_ONLY : 0) |
			   (p->rotational ? UBLK_ATTR_ROTATIONAL : 0) |
			   (p->volatile_cache ? UBLK_ATTR_VOLATILE_CACHE : 0) |
			   (p->fua ? UBLK_ATTR_FUA : 0);
	out->basic.logical_bs_shift = log2_u32(lbs);
	out->basic.physical_bs_shift = log2_u32(pbs);
	out->basic.io_min_shift = log2_u32(pbs);
	out->basic.io_opt_shift = 0;
	out->basic.max_sectors = max_io >> 9;
	out->basic.dev_sectors = p->size >> 9;
	if (p->max_discard_bytes || p->max_write_zeroes_bytes) {
		out->types |= UBLK_PARAM_TYPE_DISCARD;
		/* ublk wants a non-zero granularity whenever the discard type is
		 * present, and supports single-segment discards only. */
		out->discard.discard_granularity = gran;
		out->discard.discard_alignment = 0;
		out->discard.max_discard_sectors = p->max_discard_bytes >> 9;
		out->discard.max_discard_segments = 1;
		out->discard.max_write_zeroes_sectors = p->max_write_zeroes_bytes >> 9;
	}
	return 0;
}

int ublk_dev_set_params(struct ublk_dev *dev, const struct ublk_params *params)
{
	struct ublk_params copy = *params; /* the kernel may write len back */
	int ret;

	ret = ublk_dev_cmd(dev, UBLK_U_CMD_SET_PARAMS, &copy, sizeof(copy), 0);
	if (ret < 0)
		log_err("ublk%d: SET_PARAMS failed: %s", dev->dev_id, strerror(-ret));
	return ret;
}

int ublk_dev_get_params(struct ublk_dev *dev, struct ublk_params *params)
{
	int ret;

	memset(params, 0, sizeof(*params));
	/* len says how much of the struct we know; types what we want. */
	params->len = sizeof(*params);
	params->types = UBLK_PARAM_TYPE_BASIC | UBLK_PARAM_TYPE_DISCARD;
	ret = ublk_dev_cmd(dev, UBLK_U_CMD_GET_PARAMS, params, sizeof(*params), 0);
	if (ret < 0)
		log_err("ublk%d: GET_PARAMS failed: %s", dev->dev_id, strerror(-ret));
	return ret;
}

int ublk_dev_start(struct ublk_dev *dev)
{
	int ret;

	ret = ublk_dev_cmd(dev, UBLK_U_CMD_START_DEV, NULL, 0, (uint64_t)getpid());
	if (ret < 0) {
		log_err("ublk%d: START_DEV failed: %s", dev->dev_id, strerror(-ret));
		return ret;
	}
	ret = ublk_dev_refresh_info(dev);
	if (ret < 0)
		log_warn("ublk%d: GET_DEV_INFO after start failed: %s", dev->dev_id,
			 strerror(-ret));
	log_info("ublk%d: started (/dev/ublkb%d)", dev->dev_id, dev->dev_id);
	return 0;
}

int ublk_dev_stop(struct ublk_dev *dev)
{
	int ret;

	ret = ublk_dev_cmd(dev, UBLK_U_CMD_STOP_DEV, NULL, 0, 0);
	if (ret < 0)
		log_err("ublk%d: STOP_DEV failed: %s", dev->dev_id, strerror(-ret));
	else
		log_info("ublk%d: stopped", dev->dev_id);
	return ret;
}

int ublk_dev_start_recovery(struct ublk_dev *dev, unsigned int timeout_ms)
{
	unsigned int waited = 0;
	int ret;

	if (dev->char_fd >= 0) {
		log_err("ublk%d: recovery needs the char device closed", dev->dev_id);
		return -EBUSY;
	}
	if (!(dev->info.flags & UBLK_F_USER_RECOVERY)) {
		log_err("ublk%d: the device was created without USER_RECOVERY and cannot be recovered",
			dev->dev_id);
		return -EOPNOTSUPP;
	}
	/* -EBUSY while the dead daemon's char device and rings are still being
	 * released, or until the kernel has quiesced the device. */
	for (;;) {
		ret = ublk_dev_cmd(dev, UBLK_U_CMD_START_USER_RECOVERY, NULL, 0, 0);
		if (ret != -EBUSY || waited >= timeout_ms)
			break;
		sleep_ms(100);
		waited += 100;
	}
	if (ret < 0) {
		log_err("ublk%d: START_USER_RECOVERY failed: %s%s", dev->dev_id, strerror(-ret),
			ret == -EBUSY ? " (is the old daemon still running?)" : "");
		return ret;
	}
	return ublk_dev_open_char(dev);
}

int ublk_dev_end_recovery(struct ublk_dev *dev)
{
	int ret;

	ret = ublk_dev_cmd(dev, UBLK_U_CMD_END_USER_RECOVERY, NULL, 0, (uint64_t)getpid());
	if (ret < 0) {
		log_err("ublk%d: END_USER_RECOVERY failed: %s", dev->dev_id, strerror(-ret));
		return ret;
	}
	ret = ublk_dev_refresh_info(dev);
	if (ret < 0)
		log_warn("ublk%d: GET_DEV_INFO after recovery failed: %s", dev->dev_id,
			 strerror(-ret));
	log_info("ublk%d: recovered", dev->dev_id);
	return 0;
}
