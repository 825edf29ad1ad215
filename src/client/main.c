// SPDX-License-Identifier: GPL-2.0-only
/* ibnbd-client: maps remote ibnbd exports as /dev/ublkbN block devices. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "config.h"
#include "control/daemon.h"
#include "log.h"

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: ibnbd-client COMMAND [ARGS]\n"
		"  daemon [--config FILE] [--foreground] [--workers N] [--dead-timeout S]\n"
		"         [--loss-timeout S] [--io-timeout S] [--metrics ADDR:PORT] ...\n"
		"                                     run the client daemon (daemon --help)\n"
		"  map ADDR[:PORT] EXPORT [--ro|--rw] [--name NAME] [--loss-timeout S]\n"
		"      [--persist]                    map an export; prints /dev/ublkbN\n"
		"                                     (read-only if the export is, unless --rw)\n"
		"                                     (--name: also /dev/ibnbd/NAME;\n"
		"                                     --loss-timeout: this device's, 0 = forever;\n"
		"                                     --persist: mapped at every start)\n"
		"  unmap DEVICE|NAME|--all [--force] [--persist]\n"
		"                                     unmap (refuses a device in use)\n"
		"  list [-o table|json|csv] [--json]  mapped devices\n"
		"  show DEVICE|NAME [-o ...] [--json] one device: state, IO, reconnects, errors\n"
		"  reload                             re-read client.conf (as SIGHUP does)\n"
		"  host-id                            the id this host presents to servers\n"
		"  gen-key                            print a new random host key\n"
		"  --help, --version\n"
		"The default port is 4422. The verbs talk to the daemon on\n"
		"/run/ibnbd/client.sock ($IBNBD_CLIENT_SOCKET overrides).\n");
}

int main(int argc, char **argv)
{
	log_init("ibnbd-client");
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
		printf("ibnbd-client %s\n", IBNBD_VERSION);
		return 0;
	}
	if (!strcmp(argv[1], "daemon"))
		return daemon_main(argc - 1, argv + 1);
	return cli_main(argc - 1, argv + 1);
}
