/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The command line of ibnbd-client's verbs, parsed without talking to the
 * daemon or printing anything:
 *
 *   map ADDR[:PORT] EXPORT [--ro|-r|--rw] [--name|-n NAME] [--loss-timeout S]
 *       [--persist|-p]
 *   unmap DEVICE|NAME|--all [--force|-f] [--persist|-p]
 *   list [-o|--output table|json|csv] [--json]
 *   show DEVICE|NAME [-o|--output table|json|csv] [--json]
 *   reload
 *   host-id
 *
 * Options may come before, between or after the operands (GNU getopt
 * order); "--" ends them, so an export named "-x" is "map ADDR -- -x".
 */
#ifndef IBNBD_CLI_ARGS_H
#define IBNBD_CLI_ARGS_H

#include <stdbool.h>
#include <stddef.h>

#include "endpoint.h"

/* The longest --name: the daemon keeps 127 bytes and a NUL. */
#define CLI_NAME_MAX 127
/* The longest timeout, in seconds, a command line or client.conf sets. */
#define CLI_MAX_SECONDS 86400

enum cli_verb {
	CLI_MAP,
	CLI_UNMAP,
	CLI_LIST,
	CLI_SHOW,
	CLI_RELOAD,
	CLI_HOST_ID,
	CLI_GEN_KEY,
};

/* Strings point into argv. */
struct cli_args {
	enum cli_verb verb;
	/* map */
	struct endpoint server; /* port 4422 unless given */
	const char *export_name;
	const char *name;       /* --name, or NULL: the daemon names it ublkbN */
	bool read_only;         /* --ro */
	bool read_write;        /* --rw: fail, rather than map a read-only export ro */
	int loss_timeout_s;     /* --loss-timeout: 0 not given, -1 forever (--loss-timeout 0) */
	/* unmap, show */
	const char *device;     /* a /dev/ublkbN path or a --name */
	bool force;             /* --force */
	bool all;               /* unmap --all */
	/* map, unmap */
	bool persist;           /* --persist: also in client.conf */
	/* list, show */
	enum cli_output { CLI_OUT_TABLE, CLI_OUT_JSON, CLI_OUT_CSV } output; /* -o */
	bool json;              /* --json or -o json */
};

/*
 * argv[0] is the verb. Returns 0, or -EINVAL with a sentence for the
 * operator in err (a usage error: the caller exits with status 2). Uses
 * getopt, so it may reorder argv and resets optind.
 */
int cli_args_parse(int argc, char **argv, struct cli_args *a, char *err, size_t errlen);

/*
 * A device name given with --name: 1 to CLI_NAME_MAX letters, digits and
 * - _ . :, not starting with '-', and not ublkbN, which names the devices
 * mapped without --name. 0 or -EINVAL with a sentence in err.
 */
int cli_name_check(const char *name, char *err, size_t errlen);

/*
 * A loss timeout as a command line or client.conf gives it: seconds from 0
 * to CLI_MAX_SECONDS, 0 meaning forever; *out is the seconds, or -1 for
 * forever. 0 or -EINVAL with a sentence naming shown in err.
 */
int cli_loss_timeout(const char *val, const char *shown, int *out, char *err, size_t errlen);

#endif
