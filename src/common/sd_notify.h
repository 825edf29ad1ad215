/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The service manager's notification protocol (sd_notify(3), systemd's
 * Type=notify) without libsystemd: one datagram of newline-separated
 * "KEY=VALUE" assignments to the AF_UNIX socket $NOTIFY_SOCKET names, a
 * file system path or, after '@', an abstract name.
 */
#ifndef IBNBD_SD_NOTIFY_H
#define IBNBD_SD_NOTIFY_H

/*
 * Sends state ("READY=1", "STOPPING=1", "STATUS=...") to the service
 * manager. 0 when sent, and when $NOTIFY_SOCKET is unset or empty (not run
 * by one: nothing to do); -EINVAL for a $NOTIFY_SOCKET that is neither an
 * absolute path nor @name, or too long; -errno from socket() or sendto().
 * Leaves $NOTIFY_SOCKET set, so call it from the process systemd started
 * (its main PID), not from a forked child.
 */
int ibnbd_sd_notify(const char *state);

#endif
