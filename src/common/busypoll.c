// SPDX-License-Identifier: GPL-2.0-only
/* The polling settings of both daemons' configuration (busypoll.h). */
#include "busypoll.h"

#include <stdio.h>
#include <string.h>

#include "errmsg.h"
#include "ini.h"
#include "parse.h"

int busypoll_config_set(struct busypoll_config *c, const char *key, const char *val, char *err,
			size_t errlen)
{
	unsigned int n;
	bool b;

	if (!strcmp(key, "poll")) {
		if (ini_bool(val, &b))
			return errmsg(err, errlen, "poll must be yes or no, not '%s'", val);
		c->on = b;
		return 0;
	}
	if (!strcmp(key, "poll_idle_us")) {
		if (parse_uint(val, 0, BUSYPOLL_MAX_IDLE_US, &n))
			return errmsg(err, errlen,
				      "poll_idle_us must be a number of microseconds from 0 (never sleep) to %u, not '%s'",
				      BUSYPOLL_MAX_IDLE_US, val);
		c->idle_us = n;
		return 0;
	}
	return 1;
}

const char *busypoll_describe(const struct busypoll_config *c, char *buf, size_t len)
{
	if (!c->on)
		snprintf(buf, len, "interrupts");
	else if (!c->idle_us)
		snprintf(buf, len, "polling");
	else
		snprintf(buf, len, "polling, sleeping after %u us idle", c->idle_us);
	return buf;
}
