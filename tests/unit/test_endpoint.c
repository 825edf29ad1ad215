// SPDX-License-Identifier: GPL-2.0-only
#include <string.h>

#include "endpoint.h"
#include "log.h"
#include "tap.h"

static void good(const char *s, const char *host, unsigned int port)
{
	struct endpoint ep;
	const char *err = NULL;
	int ret = endpoint_parse(s, 4422, &ep, &err);

	ok(ret == 0 && !strcmp(ep.host, host) && ep.port == port,
	   "'%s' -> host '%s' port %u (got %d '%s' %u)", s, host, port, ret,
	   ret ? "" : ep.host, ret ? 0 : ep.port);
}

static void bad(const char *s)
{
	struct endpoint ep;
	const char *err = NULL;
	int ret = endpoint_parse(s, 4422, &ep, &err);

	ok(ret < 0 && err && *err, "'%s' rejected (%s)", s, err ? err : "no message");
}

int main(void)
{
	good("192.0.2.1", "192.0.2.1", 4422);
	good("192.0.2.1:5000", "192.0.2.1", 5000);
	good("server.example", "server.example", 4422);
	good("server.example:1", "server.example", 1);
	good("[fe80::1]:65535", "fe80::1", 65535);
	good("[::1]", "::1", 4422);
	good("fe80::1", "fe80::1", 4422);
	bad("");
	bad(":4422");
	bad("192.0.2.1:");
	bad("192.0.2.1:0");
	bad("192.0.2.1:65536");
	bad("192.0.2.1:-1");
	bad("192.0.2.1:12ab");
	bad("[::1");
	bad("[::1]x");
	bad("[]:1");

	ok(log_debug_enable("io,rdma") == 0 &&
	   log_debug_mask == (LOG_CAT_IO | LOG_CAT_RDMA), "debug categories io,rdma");
	ok(log_debug_enable("nope") < 0 &&
	   log_debug_mask == (LOG_CAT_IO | LOG_CAT_RDMA), "unknown category rejected, mask kept");
	ok(log_debug_enable("all") == 0 && log_debug_mask == ~0u, "debug category all");
	return tap_done();
}
