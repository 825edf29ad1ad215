/* SPDX-License-Identifier: GPL-2.0-only */
/* Network endpoints as operators write them: ADDR[:PORT], [IPv6]:PORT. */
#ifndef IBNBD_ENDPOINT_H
#define IBNBD_ENDPOINT_H

#include <stdint.h>

/* The port ibnbd-server listens on unless told otherwise. */
#define IBNBD_DEFAULT_PORT 4422

struct endpoint {
	char host[256]; /* without brackets */
	uint16_t port;
};

/*
 * Parses "host", "host:port", "[v6addr]", "[v6addr]:port" or a bare IPv6
 * address (no port). A missing port becomes default_port.
 * Returns 0, or -EINVAL with *err set to a sentence for the operator.
 */
int endpoint_parse(const char *s, uint16_t default_port, struct endpoint *ep,
		   const char **err);

#endif
