// SPDX-License-Identifier: GPL-2.0-only
#include "endpoint.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "parse.h"

static int parse_port(const char *s, uint16_t *port)
{
	unsigned int v;

	if (parse_uint(s, 1, 65535, &v))
		return -EINVAL;
	*port = (uint16_t)v;
	return 0;
}

static int set_host(struct endpoint *ep, const char *s, size_t len, const char **err)
{
	if (len == 0) {
		*err = "the address is empty";
		return -EINVAL;
	}
	if (len >= sizeof(ep->host)) {
		*err = "the address is too long";
		return -EINVAL;
	}
	memcpy(ep->host, s, len);
	ep->host[len] = '\0';
	return 0;
}

int endpoint_parse(const char *s, uint16_t default_port, struct endpoint *ep,
		   const char **err)
{
	const char *colon;
	int ret;

	ep->port = default_port;
	if (s[0] == '[') {
		const char *close = strchr(s, ']');

		if (!close) {
			*err = "missing ']' after the IPv6 address";
			return -EINVAL;
		}
		ret = set_host(ep, s + 1, (size_t)(close - s - 1), err);
		if (ret)
			return ret;
		if (close[1] == '\0')
			return 0;
		if (close[1] != ':' || parse_port(close + 2, &ep->port)) {
			*err = "the port must be a number from 1 to 65535";
			return -EINVAL;
		}
		return 0;
	}
	colon = strrchr(s, ':');
	if (colon && strchr(s, ':') != colon) /* bare IPv6, no port */
		return set_host(ep, s, strlen(s), err);
	if (!colon)
		return set_host(ep, s, strlen(s), err);
	ret = set_host(ep, s, (size_t)(colon - s), err);
	if (ret)
		return ret;
	if (parse_port(colon + 1, &ep->port)) {
		*err = "the port must be a number from 1 to 65535";
		return -EINVAL;
	}
	return 0;
}
