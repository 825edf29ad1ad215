/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Stable names: /dev/ibnbd/NAME -> ../ublkbN for every device mapped with
 * a name, so /etc/fstab and scripts can name a volume whatever ublk number
 * it got. Made by the daemon as the device starts (a script may use the
 * link as soon as `map` returns) and removed when it is unmapped.
 * IBNBD_DEVLINK_DIR overrides the directory.
 *
 * udev makes the same link (systemd/60-ibnbd.rules), so that systemd knows
 * the device by it (an fstab line naming /dev/ibnbd/NAME waits for it):
 * the rule reads the name from <rundir>/names/ublkbN, written before the
 * device starts.
 */
#ifndef IBNBD_DEVLINK_H
#define IBNBD_DEVLINK_H

/* Whether a device called name gets a link: not the ublkbN of a device
 * mapped without a name. */
int devlink_wanted(const char *name);
/* Where the names for udev are kept (the daemon's run directory). */
void devlink_init(const char *rundir);
/* Records the name of /dev/ublkb<id> for udev: before the device starts. */
void devlink_record(const char *name, int id);
/* Points the link at /dev/ublkb<id> (atomically, replacing a stale one). */
void devlink_set(const char *name, int id);
/* Removes the link if it still points at /dev/ublkb<id>, and the record. */
void devlink_remove(const char *name, int id);

#endif
