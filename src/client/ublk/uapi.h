/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The ublk uapi as of Linux 6.12, on top of whatever <linux/ublk_cmd.h> the
 * build machine has. Debian bookworm ships the 6.1 header: its structs match
 * 6.12 byte for byte, but it lacks the ioctl-encoded opcodes (UBLK_U_*), the
 * GET_FEATURES / DEL_DEV_ASYNC commands and the feature flags added since.
 * Everything here is behind #ifndef, so a newer header wins where it exists.
 *
 * Include this file, never <linux/ublk_cmd.h> directly.
 */
#ifndef IBNBD_UBLK_UAPI_H
#define IBNBD_UBLK_UAPI_H

#include <errno.h> /* UBLK_IO_RES_ABORT is -ENODEV */
#include <linux/ioctl.h>
#include <linux/ublk_cmd.h>

/* Control commands, ioctl-encoded (6.0+; the only encoding newer kernels
 * may keep, so we always use it). */
#ifndef UBLK_U_CMD_GET_QUEUE_AFFINITY
#define UBLK_U_CMD_GET_QUEUE_AFFINITY                                          \
	_IOR('u', UBLK_CMD_GET_QUEUE_AFFINITY, struct ublksrv_ctrl_cmd)
#endif
#ifndef UBLK_U_CMD_GET_DEV_INFO
#define UBLK_U_CMD_GET_DEV_INFO                                                \
	_IOR('u', UBLK_CMD_GET_DEV_INFO, struct ublksrv_ctrl_cmd)
#endif
#ifndef UBLK_U_CMD_ADD_DEV
#define UBLK_U_CMD_ADD_DEV _IOWR('u', UBLK_CMD_ADD_DEV, struct ublksrv_ctrl_cmd)
#endif
#ifndef UBLK_U_CMD_DEL_DEV
#define UBLK_U_CMD_DEL_DEV _IOWR('u', UBLK_CMD_DEL_DEV, struct ublksrv_ctrl_cmd)
#endif
#ifndef UBLK_U_CMD_START_DEV
#define UBLK_U_CMD_START_DEV                                                   \
	_IOWR('u', UBLK_CMD_START_DEV, struct ublksrv_ctrl_cmd)
#endif
#ifndef UBLK_U_CMD_STOP_DEV
#define UBLK_U_CMD_STOP_DEV _IOWR('u', UBLK_CMD_STOP_DEV, struct ublksrv_ctrl_cmd)
#endif
#ifndef UBLK_U_CMD_SET_PARAMS
#define UBLK_U_CMD_SET_PARAMS                                                  \
	_IOWR('u', UBLK_CMD_SET_PARAMS, struct ublksrv_ctrl_cmd)
#endif
#ifndef UBLK_U_CMD_GET_PARAMS
#define UBLK_U_CMD_GET_PARAMS                                                  \
	_IOR('u', UBLK_CMD_GET_PARAMS, struct ublksrv_ctrl_cmd)
#endif
#ifndef UBLK_U_CMD_START_USER_RECOVERY
#define UBLK_U_CMD_START_USER_RECOVERY                                         \
	_IOWR('u', UBLK_CMD_START_USER_RECOVERY, struct ublksrv_ctrl_cmd)
#endif
#ifndef UBLK_U_CMD_END_USER_RECOVERY
#define UBLK_U_CMD_END_USER_RECOVERY                                           \
	_IOWR('u', UBLK_CMD_END_USER_RECOVERY, struct ublksrv_ctrl_cmd)
#endif
#ifndef UBLK_CMD_GET_DEV_INFO2
#define UBLK_CMD_GET_DEV_INFO2 0x12
#endif
#ifndef UBLK_U_CMD_GET_DEV_INFO2
#define UBLK_U_CMD_GET_DEV_INFO2                                               \
	_IOR('u', UBLK_CMD_GET_DEV_INFO2, struct ublksrv_ctrl_cmd)
#endif
/* 6.5+: a u64 of every UBLK_F_* the running kernel knows. */
#ifndef UBLK_U_CMD_GET_FEATURES
#define UBLK_U_CMD_GET_FEATURES _IOR('u', 0x13, struct ublksrv_ctrl_cmd)
#endif
/* 6.9+: DEL_DEV that returns without waiting for the last reference. */
#ifndef UBLK_U_CMD_DEL_DEV_ASYNC
#define UBLK_U_CMD_DEL_DEV_ASYNC _IOR('u', 0x14, struct ublksrv_ctrl_cmd)
#endif
#ifndef UBLK_FEATURES_LEN
#define UBLK_FEATURES_LEN 8
#endif

/* IO commands on /dev/ublkcN, ioctl-encoded. */
#ifndef UBLK_U_IO_FETCH_REQ
#define UBLK_U_IO_FETCH_REQ _IOWR('u', UBLK_IO_FETCH_REQ, struct ublksrv_io_cmd)
#endif
#ifndef UBLK_U_IO_COMMIT_AND_FETCH_REQ
#define UBLK_U_IO_COMMIT_AND_FETCH_REQ                                         \
	_IOWR('u', UBLK_IO_COMMIT_AND_FETCH_REQ, struct ublksrv_io_cmd)
#endif
#ifndef UBLK_U_IO_NEED_GET_DATA
#define UBLK_U_IO_NEED_GET_DATA                                                \
	_IOWR('u', UBLK_IO_NEED_GET_DATA, struct ublksrv_io_cmd)
#endif

/* Feature flags (ADD_DEV flags and GET_FEATURES bits) newer than 6.1. */
#ifndef UBLK_F_UNPRIVILEGED_DEV
#define UBLK_F_UNPRIVILEGED_DEV (1ULL << 5)
#endif
#ifndef UBLK_F_CMD_IOCTL_ENCODE
#define UBLK_F_CMD_IOCTL_ENCODE (1ULL << 6)
#endif
#ifndef UBLK_F_USER_COPY
#define UBLK_F_USER_COPY (1ULL << 7)
#endif
#ifndef UBLK_F_ZONED
#define UBLK_F_ZONED (1ULL << 8)
#endif
/* Known so the daemon can log what a newer kernel offers; not used yet. */
#ifndef UBLK_F_USER_RECOVERY_FAIL_IO
#define UBLK_F_USER_RECOVERY_FAIL_IO (1ULL << 9)
#endif
#ifndef UBLK_F_UPDATE_SIZE
#define UBLK_F_UPDATE_SIZE (1ULL << 10)
#endif

/* 6.13+: the device fails IO while no server runs (USER_RECOVERY_FAIL_IO). */
#ifndef UBLK_S_DEV_FAIL_IO
#define UBLK_S_DEV_FAIL_IO 3
#endif

/* 6.6+ parameter type: disk/char major:minor, read-only (GET_PARAMS). The
 * 6.1 struct ublk_params stops after .discard, so we never ask for it with
 * that struct; the constant is here for completeness of the type mask. */
#ifndef UBLK_PARAM_TYPE_DEVT
#define UBLK_PARAM_TYPE_DEVT (1 << 2)
#endif

/* Descriptor array of one queue: the kernel lays queues out at this stride in
 * the char device's mmap space, whatever the actual depth. */
#define UBLK_DESC_BYTES_PER_QUEUE_MAX                                          \
	((unsigned long)UBLK_MAX_QUEUE_DEPTH * sizeof(struct ublksrv_io_desc))

_Static_assert(sizeof(struct ublksrv_ctrl_cmd) == 32, "ublksrv_ctrl_cmd is 32 bytes");
_Static_assert(sizeof(struct ublksrv_ctrl_dev_info) == 64, "ublksrv_ctrl_dev_info is 64 bytes");
_Static_assert(sizeof(struct ublksrv_io_desc) == 24, "ublksrv_io_desc is 24 bytes");
_Static_assert(sizeof(struct ublksrv_io_cmd) == 16, "ublksrv_io_cmd is 16 bytes");
_Static_assert(sizeof(struct ublk_param_basic) == 32, "ublk_param_basic is 32 bytes");
_Static_assert(sizeof(struct ublk_param_discard) == 20, "ublk_param_discard is 20 bytes");

#endif
