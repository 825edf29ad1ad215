// SPDX-License-Identifier: GPL-2.0-only
/* ibnbd-client: maps remote ibnbd exports as /dev/ublkbN block devices. */
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "log.h"

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: ibnbd-client COMMAND [ARGS]\n"
		"  daemon [--config FILE] [--foreground]   run the client daemon\n"
		"  map ADDR[:PORT] EXPORT [--ro] [--name NAME]\n"
		"  unmap DEVICE|NAME [--force]\n"
		"  list [--json]\n"
		"  --help, --version\n");
}

int main(int argc, char **argv)
{
	log_init("ibnbd-client");
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
		printf("ibnbd-client %s\n", IBNBD_VERSION);
		return 0;
	}
	log_err("'%s' is not implemented in this version", argv[1]);
	return 1;
}
