// SPDX-License-Identifier: GPL-2.0-only
#include "cli/cli_args.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "errmsg.h"
#include "parse.h"

/* One verb's grammar: its getopt options, its operands (all required) and
 * the usage line its errors end with. */
struct verb_syntax {
	const char *name;
	enum cli_verb verb;
	const char *shortopts;
	const struct option *longopts;
	int noperands;
	const char *const operands[2]; /* for "missing ..." */
	const char *usage;
};

/* Long options without a short one get a val no character has. */
enum { OPT_JSON = 256, OPT_ALL, OPT_RW, OPT_LOSS };

static const struct option map_opts[] = {
	{ "ro", no_argument, NULL, 'r' },
	{ "rw", no_argument, NULL, OPT_RW },
	{ "name", required_argument, NULL, 'n' },
	{ "loss-timeout", required_argument, NULL, OPT_LOSS },
	{ "persist", no_argument, NULL, 'p' },
	{ 0 },
};
static const struct option unmap_opts[] = {
	{ "force", no_argument, NULL, 'f' },
	{ "all", no_argument, NULL, OPT_ALL },
	{ "persist", no_argument, NULL, 'p' },
	{ 0 },
};
static const struct option no_opts[] = {
	{ 0 },
};
static const struct option list_opts[] = {
	{ "json", no_argument, NULL, OPT_JSON },
	{ "output", required_argument, NULL, 'o' },
	{ 0 },
};

/* The leading ':' makes getopt return ':' for a missing value. */
static const struct verb_syntax verbs[] = {
	{ "map", CLI_MAP, ":rn:p", map_opts, 2, { "ADDR[:PORT] and EXPORT", "EXPORT" },
	  "ibnbd-client map ADDR[:PORT] EXPORT [--ro|--rw] [--name NAME] [--loss-timeout S] "
	  "[--persist]" },
	{ "unmap", CLI_UNMAP, ":fp", unmap_opts, 1, { "DEVICE|NAME" },
	  "ibnbd-client unmap DEVICE|NAME|--all [--force] [--persist]" },
	{ "list", CLI_LIST, ":o:", list_opts, 0, { NULL },
	  "ibnbd-client list [-o table|json|csv] [--json]" },
	{ "show", CLI_SHOW, ":o:", list_opts, 1, { "DEVICE|NAME" },
	  "ibnbd-client show DEVICE|NAME [-o table|json|csv] [--json]" },
	{ "reload", CLI_RELOAD, ":", no_opts, 0, { NULL }, "ibnbd-client reload" },
	{ "host-id", CLI_HOST_ID, ":", no_opts, 0, { NULL }, "ibnbd-client host-id" },
	{ "gen-key", CLI_GEN_KEY, ":", no_opts, 0, { NULL }, "ibnbd-client gen-key" },
};

int cli_name_check(const char *name, char *err, size_t errlen)
{
	const char *p;

	if (!*name)
		return errmsg(err, errlen, "--name: the name is empty");
	if (strlen(name) > CLI_NAME_MAX)
		return errmsg(err, errlen, "--name '%.32s...' is longer than %d characters", name,
			    CLI_NAME_MAX);
	for (p = name; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("-_.:", *p))
			return errmsg(err, errlen,
				    "--name '%s' may only use letters, digits and - _ . :", name);
	if (name[0] == '-')
		return errmsg(err, errlen, "--name '%s' must not start with '-'", name);
	/* Devices mapped without --name are called ublkbN: a name of that
	 * form could later stand for two devices. */
	if (!strncmp(name, "ublkb", 5) && name[5] && strspn(name + 5, "0123456789") ==
							  strlen(name + 5))
		return errmsg(err, errlen,
			    "--name '%s' is reserved: ublkbN names the devices mapped without --name",
			    name);
	return 0;
}

int cli_loss_timeout(const char *val, const char *shown, int *out, char *err, size_t errlen)
{
	unsigned int v;

	if (parse_uint(val, 0, CLI_MAX_SECONDS, &v))
		return errmsg(err, errlen, "%s must be a number of seconds from 0 (IO waits forever) "
			      "to %d, not '%s'", shown, CLI_MAX_SECONDS, val);
	*out = v ? (int)v : -1;
	return 0;
}

/* The option getopt stopped at, as the person typed it. optopt is the
 * option's val for a long one given a value it does not take or missing
 * one it needs, the character for an unknown short one, and 0 for an
 * unknown long one, which is then the whole argv element just passed. */
static void bad_option(const struct verb_syntax *v, int c, char **argv, char *err,
		       size_t errlen)
{
	const struct option *o;

	for (o = v->longopts; o->name; o++)
		if (optopt && o->val == optopt)
			break;
	if (c == ':') {
		errmsg(err, errlen, "%s: --%s needs a value (usage: %s)", v->name,
		     o->name ? o->name : "?", v->usage);
	} else if (o->name) {
		/* Only a long option can be given a value it does not take. */
		errmsg(err, errlen, "%s: --%s takes no value (usage: %s)", v->name, o->name, v->usage);
	} else if (optopt) {
		errmsg(err, errlen, "%s: unknown option '-%c' (usage: %s)", v->name, optopt, v->usage);
	} else {
		const char *arg = argv[optind - 1];

		errmsg(err, errlen, "%s: unknown option '%.*s' (usage: %s)", v->name,
		     (int)strcspn(arg, "="), arg, v->usage);
	}
}

int cli_args_parse(int argc, char **argv, struct cli_args *a, char *err, size_t errlen)
{
	const struct verb_syntax *v = NULL;
	const char *why;
	int c, n;

	memset(a, 0, sizeof(*a));
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
		if (!strcmp(argv[0], verbs[i].name))
			v = &verbs[i];
	if (!v)
		return errmsg(err, errlen, "unknown command '%s' (see ibnbd-client --help)", argv[0]);
	a->verb = v->verb;

	/* 0, not 1: a full reset, even after a parse that stopped inside
	 * a group of short options. */
	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, v->shortopts, v->longopts, NULL)) != -1) {
		switch (c) {
		case 'r':
			a->read_only = true;
			break;
		case OPT_RW:
			a->read_write = true;
			break;
		case 'o':
			if (!strcmp(optarg, "table"))
				a->output = CLI_OUT_TABLE;
			else if (!strcmp(optarg, "json"))
				a->output = CLI_OUT_JSON;
			else if (!strcmp(optarg, "csv"))
				a->output = CLI_OUT_CSV;
			else
				return errmsg(err, errlen, "-o takes table, json or csv, not '%s'",
					      optarg);
			break;
		case 'n':
			a->name = optarg;
			break;
		case OPT_LOSS:
			if (cli_loss_timeout(optarg, "--loss-timeout", &a->loss_timeout_s, err, errlen))
				return -EINVAL;
			break;
		case 'f':
			a->force = true;
			break;
		case 'p':
			a->persist = true;
			break;
		case OPT_JSON:
			a->output = CLI_OUT_JSON;
			break;
		case OPT_ALL:
			a->all = true;
			break;
		default:
			bad_option(v, c, argv, err, errlen);
			return -EINVAL;
		}
	}
	n = argc - optind;
	a->json = a->output == CLI_OUT_JSON;
	if (a->read_only && a->read_write)
		return errmsg(err, errlen, "map: --ro and --rw contradict each other (usage: %s)",
			      v->usage);
	if (a->all) {
		if (a->persist)
			return errmsg(err, errlen, "unmap --all --persist would empty the configuration; "
				      "unmap each device with --persist instead");
		if (n)
			return errmsg(err, errlen, "unmap --all takes no device, not '%s' (usage: %s)",
				      argv[optind], v->usage);
		return 0;
	}
	if (n > v->noperands)
		return errmsg(err, errlen, "%s: unexpected argument '%s' (usage: %s)", v->name,
			    argv[optind + v->noperands], v->usage);
	if (n < v->noperands)
		return errmsg(err, errlen, "%s: missing %s (usage: %s)", v->name, v->operands[n],
			    v->usage);

	switch (a->verb) {
	case CLI_MAP:
		if (endpoint_parse(argv[optind], IBNBD_DEFAULT_PORT, &a->server, &why))
			return errmsg(err, errlen, "bad server address '%s': %s", argv[optind], why);
		a->export_name = argv[optind + 1];
		if (!*a->export_name)
			return errmsg(err, errlen, "map: the export name is empty");
		if (a->name)
			return cli_name_check(a->name, err, errlen);
		break;
	case CLI_UNMAP:
	case CLI_SHOW:
		a->device = argv[optind];
		if (!*a->device)
			return errmsg(err, errlen, "%s: the device is empty", v->name);
		break;
	case CLI_LIST:
	case CLI_RELOAD:
	case CLI_HOST_ID:
	case CLI_GEN_KEY:
		break;
	}
	return 0;
}
