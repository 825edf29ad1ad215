// SPDX-License-Identifier: GPL-2.0-only
#include "hostid.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "auth.h"
#include "errmsg.h"
#include "ibnbd/proto.h"

/* ibnbd's application id: a random 128-bit constant, as machine-id(5)
 * asks applications to use. */
static const unsigned char ibnbd_app_id[16] = {
	0x6c, 0x1e, 0x93, 0xd2, 0x4b, 0x0a, 0x47, 0x7f,
	0x9e, 0x25, 0xc8, 0x31, 0x5d, 0xa6, 0x0b, 0xe4,
};

static int hex_nibble(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int host_id_from_machine_id(const char *path, char out[HOST_ID_LEN], char *err, size_t errlen)
{
	unsigned char id[16], h[32];
	char text[64];
	FILE *f = fopen(path, "re");
	size_t n;

	if (!f) {
		int ret = -errno;

		snprintf(err, errlen, "cannot read %s: %s (set a host id in the configuration instead)",
			 path, strerror(-ret));
		return ret;
	}
	n = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[n] = '\0';
	for (n = 0; n < 32; n++) {
		int v = hex_nibble((unsigned char)text[n]);

		if (v < 0)
			return errmsg(err, errlen, "%s does not hold a machine id (32 hex digits)", path);
		if (n % 2)
			id[n / 2] |= (unsigned char)v;
		else
			id[n / 2] = (unsigned char)(v << 4);
	}
	if (text[32] && text[32] != '\n')
		return errmsg(err, errlen, "%s does not hold a machine id (32 hex digits)", path);
	if (auth_hmac_sha256(id, sizeof(id), ibnbd_app_id, sizeof(ibnbd_app_id), h)) {
		snprintf(err, errlen, "cannot derive the host id: HMAC-SHA256 failed in libcrypto");
		return -EIO;
	}
	/* A version 4 UUID's layout, as sd-id128 gives app-specific ids. */
	h[6] = (h[6] & 0x0f) | 0x40;
	h[8] = (h[8] & 0x3f) | 0x80;
	snprintf(out, HOST_ID_LEN,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", h[0], h[1],
		 h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9], h[10], h[11], h[12], h[13], h[14],
		 h[15]);
	return 0;
}

int host_id_check(const char *id, char *err, size_t errlen)
{
	size_t n = strlen(id);

	if (!n || n >= IBNBD_HOST_ID_MAX)
		return errmsg(err, errlen, "a host id has 1 to %d characters", IBNBD_HOST_ID_MAX - 1);
	for (const char *p = id; *p; p++)
		if (*p <= 0x20 || *p > 0x7e)
			return errmsg(err, errlen, "a host id is printable ASCII without blanks");
	return 0;
}
