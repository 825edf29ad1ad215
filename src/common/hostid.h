/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The host id a client presents to servers: not the hostname, which two
 * hosts may share, but an application-specific hash of /etc/machine-id
 * (machine-id(5)), like sd_id128_get_machine_app_specific(): an HMAC-SHA256
 * keyed with the machine id over ibnbd's application id, its first 128 bits
 * shown as a UUID. Stable for the life of the installation, distinct per
 * machine, and it does not reveal the machine id itself.
 */
#ifndef IBNBD_HOSTID_H
#define IBNBD_HOSTID_H

#include <stddef.h>

/* The printable form's length: a UUID, 36 characters and a NUL. */
#define HOST_ID_LEN 37

/*
 * Derives the id from the machine id in path (normally /etc/machine-id).
 * 0, or -errno with a sentence for the operator in err (missing or not
 * 32 hex digits, a crypto failure).
 */
int host_id_from_machine_id(const char *path, char out[HOST_ID_LEN], char *err, size_t errlen);
/* An id given by the operator instead: printable ASCII without blanks,
 * 1 to 63 characters. 0 or -EINVAL with a sentence. */
int host_id_check(const char *id, char *err, size_t errlen);

#endif
