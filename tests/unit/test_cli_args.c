// SPDX-License-Identifier: GPL-2.0-only
/* ibnbd-client's verbs' command lines (src/client/cli_args.c). */
#include <errno.h>
#include <stdarg.h>
#include <string.h>

#include "cli/cli_args.h"
#include "tap.h"

static struct cli_args args;
static char err[512];

/* Parses the NULL-terminated words as ibnbd-client's argv after the
 * program name. getopt only reorders the pointers, never the strings. */
static int parse(const char *verb, ...)
{
	char *argv[32];
	int argc = 0;
	va_list ap;

	argv[argc++] = (char *)verb;
	va_start(ap, verb);
	while (argc < 31 && (argv[argc] = va_arg(ap, char *)))
		argc++;
	va_end(ap);
	argv[argc] = NULL;
	err[0] = '\0';
	return cli_args_parse(argc, argv, &args, err, sizeof(err));
}

/* A usage error whose sentence contains what. */
static void bad(int ret, const char *what, const char *desc)
{
	ok(ret == -EINVAL && strstr(err, what), "%s: '%s' (got %d '%s')", desc, what, ret, err);
}

static void test_map(void)
{
	int ret;

	ret = parse("map", "192.0.2.1", "vol1", NULL);
	ok(ret == 0 && args.verb == CLI_MAP && !strcmp(args.server.host, "192.0.2.1") &&
	   args.server.port == 4422 && !strcmp(args.export_name, "vol1") && !args.read_only &&
	   !args.name, "map ADDR EXPORT: port 4422, read-write, no name (%s)", err);
	ret = parse("map", "192.0.2.1:5000", "iso", "--ro", "--name", "iso-1", NULL);
	ok(ret == 0 && args.server.port == 5000 && args.read_only && !strcmp(args.name, "iso-1"),
	   "map ADDR:PORT EXPORT --ro --name NAME");
	ret = parse("map", "--ro", "--name", "n", "192.0.2.1", "vol", NULL);
	ok(ret == 0 && args.read_only && !strcmp(args.name, "n") &&
	   !strcmp(args.server.host, "192.0.2.1") && !strcmp(args.export_name, "vol"),
	   "options before the operands");
	ret = parse("map", "192.0.2.1", "--name=n", "vol", "-r", NULL);
	ok(ret == 0 && args.read_only && !strcmp(args.name, "n") && !strcmp(args.export_name, "vol"),
	   "options between and after the operands, --name=VALUE");
	ret = parse("map", "-rnshort", "192.0.2.1", "vol", NULL);
	ok(ret == 0 && args.read_only && !strcmp(args.name, "short"), "-rnVALUE grouped");
	ret = parse("map", "-n", "x", "192.0.2.1", "vol", "-n", "y", NULL);
	ok(ret == 0 && !strcmp(args.name, "y"), "--name twice: the last one counts");
	ret = parse("map", "192.0.2.1", "--", "-vol", NULL);
	ok(ret == 0 && !strcmp(args.export_name, "-vol"), "'--' ends the options: export '-vol'");
	ret = parse("map", "server.example", "a:b.c_d-e", NULL);
	ok(ret == 0 && !strcmp(args.server.host, "server.example") &&
	   !strcmp(args.export_name, "a:b.c_d-e"), "a host name and an export with - _ . :");

	/* IPv6, as endpoint.c reads it. */
	ret = parse("map", "[fe80::1]:4500", "vol", NULL);
	ok(ret == 0 && !strcmp(args.server.host, "fe80::1") && args.server.port == 4500,
	   "map [IPv6]:PORT");
	ret = parse("map", "[::1]", "vol", NULL);
	ok(ret == 0 && !strcmp(args.server.host, "::1") && args.server.port == 4422,
	   "map [IPv6] gets port 4422");
	ret = parse("map", "2001:db8::7", "vol", NULL);
	ok(ret == 0 && !strcmp(args.server.host, "2001:db8::7") && args.server.port == 4422,
	   "map bare IPv6 (no port possible) gets port 4422");

	bad(parse("map", NULL), "map: missing ADDR[:PORT] and EXPORT (usage: ", "map alone");
	bad(parse("map", "192.0.2.1", NULL), "map: missing EXPORT (usage: ibnbd-client map ",
	    "map without an export");
	bad(parse("map", "--ro", "192.0.2.1", NULL), "missing EXPORT", "map --ro ADDR");
	bad(parse("map", "192.0.2.1", "vol", "extra", NULL), "map: unexpected argument 'extra'",
	    "an extra argument");
	bad(parse("map", "192.0.2.1:0", "vol", NULL),
	    "bad server address '192.0.2.1:0': the port must be a number from 1 to 65535",
	    "port 0");
	bad(parse("map", "192.0.2.1:65536", "vol", NULL), "the port must be a number",
	    "port 65536");
	bad(parse("map", "192.0.2.1:", "vol", NULL), "the port must be a number", "empty port");
	bad(parse("map", "192.0.2.1:nbd", "vol", NULL), "the port must be a number",
	    "a port by name");
	bad(parse("map", "[fe80::1]:x", "vol", NULL), "the port must be a number",
	    "a bad port after [IPv6]");
	bad(parse("map", "[fe80::1", "vol", NULL), "missing ']'", "[IPv6 without ']'");
	bad(parse("map", ":4422", "vol", NULL), "the address is empty", "a port without a host");
	bad(parse("map", "192.0.2.1", "", NULL), "map: the export name is empty", "an empty export");
	bad(parse("map", "--rwx", "192.0.2.1", "vol", NULL), "map: unknown option '--rwx'",
	    "an unknown long option");
	ok(parse("map", "--rw", "192.0.2.1", "vol", NULL) == 0 && args.read_write && !args.read_only,
	   "map --rw");
	bad(parse("map", "--rw", "--ro", "192.0.2.1", "vol", NULL), "--ro and --rw contradict",
	    "--ro with --rw");
	bad(parse("map", "--colour=blue", "192.0.2.1", "vol", NULL),
	    "map: unknown option '--colour' (usage:", "an unknown long option with a value");
	bad(parse("map", "-x", "192.0.2.1", "vol", NULL), "map: unknown option '-x'",
	    "an unknown short option");
	bad(parse("map", "-rx", "192.0.2.1", "vol", NULL), "map: unknown option '-x'",
	    "an unknown short option at the end of a group");
	bad(parse("map", "-xr", "192.0.2.1", "vol", NULL), "map: unknown option '-x'",
	    "an unknown short option at the start of a group");
	bad(parse("map", "192.0.2.1", "vol", "--name", NULL), "map: --name needs a value",
	    "--name without a value");
	bad(parse("map", "192.0.2.1", "vol", "-n", NULL), "map: --name needs a value",
	    "-n without a value");
	bad(parse("map", "192.0.2.1", "vol", "--ro=yes", NULL), "map: --ro takes no value",
	    "--ro=yes");
	bad(parse("map", "192.0.2.1", "vol", "--force", NULL), "map: unknown option '--force'",
	    "unmap's option on map");
	ok(parse("map", "192.0.2.1", "vol", NULL) == 0 && args.loss_timeout_s == 0,
	   "no --loss-timeout: the daemon's");
	ok(parse("map", "192.0.2.1", "vol", "--loss-timeout", "30", NULL) == 0 &&
	   args.loss_timeout_s == 30, "--loss-timeout 30");
	ok(parse("map", "--loss-timeout=0", "192.0.2.1", "vol", NULL) == 0 &&
	   args.loss_timeout_s == -1, "--loss-timeout=0: forever");
	bad(parse("map", "192.0.2.1", "vol", "--loss-timeout", "soon", NULL),
	    "--loss-timeout must be a number of seconds from 0 (IO waits forever) to 86400, "
	    "not 'soon'", "--loss-timeout not a number");
	bad(parse("map", "192.0.2.1", "vol", "--loss-timeout", "86401", NULL), "not '86401'",
	    "--loss-timeout too long");
	bad(parse("map", "192.0.2.1", "vol", "--loss-timeout", "-1", NULL), "not '-1'",
	    "--loss-timeout negative");
	bad(parse("map", "192.0.2.1", "vol", "--loss-timeout", NULL),
	    "map: --loss-timeout needs a value", "--loss-timeout without a value");
}

static void test_names(void)
{
	char name[CLI_NAME_MAX + 2];

	ok(parse("map", "192.0.2.1", "vol", "--name", "db-1_a.b:c", NULL) == 0,
	   "--name with letters, digits and - _ . :");
	ok(parse("map", "192.0.2.1", "vol", "--name", "ublkb", NULL) == 0 &&
	   parse("map", "192.0.2.1", "vol", "--name", "ublkb1x", NULL) == 0 &&
	   parse("map", "192.0.2.1", "vol", "--name", "myublkb1", NULL) == 0,
	   "names that only look a little like ublkbN");
	memset(name, 'n', CLI_NAME_MAX);
	name[CLI_NAME_MAX] = '\0';
	ok(parse("map", "192.0.2.1", "vol", "--name", name, NULL) == 0, "a 127-byte --name");
	name[CLI_NAME_MAX] = 'n';
	name[CLI_NAME_MAX + 1] = '\0';
	bad(parse("map", "192.0.2.1", "vol", "--name", name, NULL), "is longer than 127 characters",
	    "a 128-byte --name");
	bad(parse("map", "192.0.2.1", "vol", "--name=", NULL), "--name: the name is empty",
	    "an empty --name");
	bad(parse("map", "192.0.2.1", "vol", "--name", "/dev/ublkb0", NULL),
	    "--name '/dev/ublkb0' may only use letters, digits and - _ . :", "a path as --name");
	bad(parse("map", "192.0.2.1", "vol", "--name", "my disk", NULL), "may only use",
	    "a --name with a space");
	bad(parse("map", "192.0.2.1", "vol", "--name", "--ro", NULL),
	    "--name '--ro' must not start with '-'", "an option swallowed as --name's value");
	bad(parse("map", "192.0.2.1", "vol", "--name", "ublkb0", NULL),
	    "--name 'ublkb0' is reserved", "--name ublkb0");
	bad(parse("map", "192.0.2.1", "vol", "--name", "ublkb12", NULL), "is reserved",
	    "--name ublkb12");

	ok(cli_name_check("vol1", err, sizeof(err)) == 0, "cli_name_check on its own");
}

static void test_unmap(void)
{
	int ret;

	ret = parse("unmap", "/dev/ublkb0", NULL);
	ok(ret == 0 && args.verb == CLI_UNMAP && !strcmp(args.device, "/dev/ublkb0") && !args.force,
	   "unmap DEVICE");
	ret = parse("unmap", "db", "--force", NULL);
	ok(ret == 0 && !strcmp(args.device, "db") && args.force, "unmap NAME --force");
	ret = parse("unmap", "-f", "db", NULL);
	ok(ret == 0 && args.force, "unmap -f NAME");
	bad(parse("unmap", NULL), "unmap: missing DEVICE|NAME (usage: ibnbd-client unmap",
	    "unmap alone");
	bad(parse("unmap", "--force", NULL), "unmap: missing DEVICE|NAME", "unmap --force alone");
	bad(parse("unmap", "a", "b", NULL), "unmap: unexpected argument 'b'", "two devices");
	bad(parse("unmap", "", NULL), "unmap: the device is empty", "an empty device");
	bad(parse("unmap", "a", "--ro", NULL), "unmap: unknown option '--ro'", "map's option");
	bad(parse("unmap", "a", "--force=1", NULL), "unmap: --force takes no value", "--force=1");
	ret = parse("unmap", "--all", NULL);
	ok(ret == 0 && args.all && !args.device, "unmap --all");
	ret = parse("unmap", "--all", "--force", NULL);
	ok(ret == 0 && args.all && args.force, "unmap --all --force");
	bad(parse("unmap", "--all", "db", NULL), "unmap --all takes no device, not 'db'",
	    "unmap --all with a device");
	ok(parse("host-id", NULL) == 0 && args.verb == CLI_HOST_ID, "host-id");
	bad(parse("host-id", "x", NULL), "host-id: unexpected argument 'x'", "host-id with an argument");
}

static void test_list(void)
{
	ok(parse("list", NULL) == 0 && args.verb == CLI_LIST && !args.json, "list");
	ok(parse("list", "--json", NULL) == 0 && args.json, "list --json");
	ok(parse("list", "-o", "csv", NULL) == 0 && args.output == CLI_OUT_CSV && !args.json,
	   "list -o csv");
	ok(parse("list", "--output=json", NULL) == 0 && args.output == CLI_OUT_JSON && args.json,
	   "list --output=json is --json");
	ok(parse("show", "x", "-o", "table", NULL) == 0 && args.output == CLI_OUT_TABLE,
	   "show -o table");
	bad(parse("list", "-o", "xml", NULL), "-o takes table, json or csv, not 'xml'", "-o xml");
	bad(parse("list", "-o", NULL), "--output needs a value", "-o without a value");
	bad(parse("list", "x", NULL), "list: unexpected argument 'x' (usage: ibnbd-client list",
	    "list with an argument");
	bad(parse("list", "-j", NULL), "list: unknown option '-j'", "list -j (no short option)");
	bad(parse("list", "--json=yes", NULL), "list: --json takes no value", "--json=yes");
	bad(parse("list", "--json", "--json", "x", NULL), "unexpected argument 'x'",
	    "--json twice is fine, an argument is not");
}

static void test_show(void)
{
	ok(parse("show", "vol", NULL) == 0 && args.verb == CLI_SHOW &&
	   !strcmp(args.device, "vol") && !args.json, "show NAME");
	ok(parse("show", "--json", "/dev/ublkb0", NULL) == 0 && args.json &&
	   !strcmp(args.device, "/dev/ublkb0"), "show --json DEVICE");
	bad(parse("show", NULL), "show: missing DEVICE|NAME", "show without a device");
	bad(parse("show", "a", "b", NULL), "show: unexpected argument 'b'", "show two devices");
	bad(parse("show", "", NULL), "show: the device is empty", "show an empty name");
}

static void test_verbs(void)
{
	ok(parse("reload", NULL) == 0 && args.verb == CLI_RELOAD, "reload");
	bad(parse("reload", "now", NULL), "reload: unexpected argument 'now' (usage: ibnbd-client reload)",
	    "reload takes no argument");
	bad(parse("reload", "--force", NULL), "reload: unknown option '--force'",
	    "reload takes no option");
	bad(parse("mount", "x", NULL), "unknown command 'mount' (see ibnbd-client --help)",
	    "an unknown verb");
	bad(parse("MAP", NULL), "unknown command 'MAP'", "verbs are lower case");
	/* A parse stopped inside "-xr" leaves getopt mid-group; the next one
	 * must start afresh. */
	parse("map", "-xr", "a", "b", NULL);
	ok(parse("unmap", "-f", "d", NULL) == 0 && args.force && !args.read_only,
	   "each parse starts from a clean state");
}

int main(void)
{
	test_map();
	test_names();
	test_unmap();
	test_list();
	test_show();
	test_verbs();
	return tap_done();
}
