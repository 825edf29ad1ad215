// SPDX-License-Identifier: GPL-2.0-only
/* ibnbd-server: exports files and block devices to ibnbd clients over RDMA. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "log.h"

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: ibnbd-server [--config FILE] [--listen ADDR[:PORT]]... [--export NAME=PATH[,ro]]...\n"
		"  -c, --config FILE   read exports and listen addresses from FILE\n"
		"  -l, --listen ADDR   listen on ADDR[:PORT] (default port 4422)\n"
		"  -e, --export SPEC   export PATH (file or block device) as NAME\n"
		"  -h, --help          this text\n"
		"  -V, --version       print the version\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "listen", required_argument, NULL, 'l' },
		{ "export", required_argument, NULL, 'e' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	int c;

	log_init("ibnbd-server");
	while ((c = getopt_long(argc, argv, "c:l:e:hV", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("ibnbd-server %s\n", IBNBD_VERSION);
			return 0;
		case 'c':
		case 'l':
		case 'e':
			break;
		default:
			usage(stderr);
			return 2;
		}
	}
	log_err("serving exports is not implemented in this version");
	return 1;
}
