// SPDX-License-Identifier: GPL-2.0-only
/*
 * The server's configuration (src/server/server_conf.c): the file format of
 * docs/server-config.md, --listen/--export values, and how the command line
 * and the file combine. Files are read from memory (fmemopen) except where
 * the file system is the point.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server_conf.h"
#include "tap.h"

/* About 1 MiB: not on the stack. */
static struct server_config cfg;
static char err[512];

/* Parses text as the file "test.conf" on top of a fresh config_init(). */
static int parse(const char *text)
{
	FILE *f;
	int ret;

	config_init(&cfg);
	err[0] = '\0';
	f = fmemopen((void *)text, strlen(text), "r");
	if (!f) {
		printf("Bail out! fmemopen: %s\n", strerror(errno));
		exit(1);
	}
	ret = config_parse(&cfg, f, "test.conf", err, sizeof(err));
	fclose(f);
	return ret;
}

/* The text is rejected with an error that starts with prefix (file and
 * line) and contains what. */
static void bad(const char *text, const char *prefix, const char *what, const char *desc)
{
	int ret = parse(text);

	ok(ret == -EINVAL && !strncmp(err, prefix, strlen(prefix)) && strstr(err, what),
	   "%s: rejected as '%s' (got %d '%s')", desc, prefix, ret, err);
}

static void test_defaults(void)
{
	config_init(&cfg);
	ok(cfg.nlisten == 0 && cfg.nexports == 0 && cfg.workers == 0,
	   "defaults: no listener, no export, workers 0 (chosen by the caller)");
	ok(cfg.queue_depth == 128 && cfg.max_io_size == 512 * 1024,
	   "defaults: queue_depth 128, max_io_size 512 KiB");

	ok(parse("") == 0 && cfg.nexports == 0 && cfg.queue_depth == 128,
	   "an empty file is valid and keeps the defaults");
	ok(parse("# only a comment\n\n   \n; another\n") == 0 && cfg.nexports == 0,
	   "comments (# and ;) and blank lines are skipped");
}

static void test_good_file(void)
{
	static const char text[] =
		"# the doc's example, plus every form\n"
		"listen = 192.0.2.1:4422\n"
		"  listen=192.0.2.2  \n"
		"listen = [fe80::1]:5000\n"
		"workers = 4\n"
		"queue_depth = 1024\n"
		"max_io_size = 1048576\n"
		"\n"
		"[export vol1]\n"
		"path = /dev/nvme0n1\n"
		"[ export iso ]\n"
		"path = /srv/images/install.img\n"
		"ro\n"
		"[export a-b_c.d:e]\n"
		"\tpath\t=\t/srv/x\t\n"
		"ro = no\n"
		"[server]\n"
		"listen = 192.0.2.3\n";
	int ret = parse(text);

	ok(ret == 0, "a full file parses (%d '%s')", ret, err);
	ok(cfg.nlisten == 4, "four listen addresses (%u)", cfg.nlisten);
	ok(!strcmp(cfg.listen[0].host, "192.0.2.1") && cfg.listen[0].port == 4422,
	   "listen with a port");
	ok(!strcmp(cfg.listen[1].host, "192.0.2.2") && cfg.listen[1].port == 4422,
	   "listen without a port gets 4422, spaces around it ignored");
	ok(!strcmp(cfg.listen[2].host, "fe80::1") && cfg.listen[2].port == 5000,
	   "listen on [IPv6]:port");
	ok(!strcmp(cfg.listen[3].host, "192.0.2.3"),
	   "[server] after an export section takes server keys again");
	ok(cfg.workers == 4 && cfg.queue_depth == 1024 && cfg.max_io_size == 1048576,
	   "workers, queue_depth, max_io_size (%u %u %u)", cfg.workers, cfg.queue_depth,
	   cfg.max_io_size);
	ok(cfg.nexports == 3, "three exports (%u)", cfg.nexports);
	ok(!strcmp(cfg.exports[0].name, "vol1") && !strcmp(cfg.exports[0].path, "/dev/nvme0n1") &&
	   !cfg.exports[0].ro, "export vol1: path, read-write by default");
	ok(!strcmp(cfg.exports[1].name, "iso") && !strcmp(cfg.exports[1].path,
							   "/srv/images/install.img") &&
	   cfg.exports[1].ro, "export iso: spaces inside [ ] ignored, bare 'ro'");
	ok(!strcmp(cfg.exports[2].name, "a-b_c.d:e") && !strcmp(cfg.exports[2].path, "/srv/x") &&
	   !cfg.exports[2].ro, "export name with - _ . :, tabs around '=', ro = no");

	ok(parse("[export a]\npath=/a\nro = yes\n") == 0 && cfg.exports[0].ro, "ro = yes");
	ok(parse("[export a]\npath=/a\nro = true\n") == 0 && cfg.exports[0].ro, "ro = true");
	ok(parse("[export a]\npath=/a\nro = 1\n") == 0 && cfg.exports[0].ro, "ro = 1");
	ok(parse("[export a]\npath=/a\nro\nro = false\n") == 0 && !cfg.exports[0].ro,
	   "ro = false after ro: the last one counts");
	ok(parse("[export a]\npath=/a\nro = 0\n") == 0 && !cfg.exports[0].ro, "ro = 0");
	ok(parse("[export a]\npath = /a\npath = /b\n") == 0 && !strcmp(cfg.exports[0].path, "/b"),
	   "path given twice: the last one counts");
	ok(parse("[export a]\npath=/a") == 0 && !strcmp(cfg.exports[0].path, "/a"),
	   "a last line without a newline");
	ok(parse("queue_depth = 1\nmax_io_size = 4096\nworkers = 64\n") == 0 &&
	   cfg.queue_depth == 1 && cfg.max_io_size == 4096 && cfg.workers == 64,
	   "the smallest queue_depth and max_io_size, the most workers");
	ok(parse("queue_depth = 010\nmax_io_size = 0x80000\n") == 0 && cfg.queue_depth == 10 &&
	   cfg.max_io_size == 0x80000, "numbers are decimal (a leading 0 is not octal) or 0x hex");
	ok(parse("workers = 08\n") == 0 && cfg.workers == 8, "workers = 08 is eight");
}

/* docs/server-config.md's example, as an operator would copy it. */
static void test_doc_example(void)
{
	static const char text[] =
		"# /etc/ibnbd/server.conf\n"
		"listen = 192.0.2.1:4422        # repeatable\n"
		"workers = 4                    # default: min(online CPUs, 4)\n"
		"queue_depth = 128              # most a connection may negotiate (1..1024)\n"
		"max_io_size = 524288           # most bytes per request (4 KiB multiple, 4 KiB..1 MiB)\n"
		"\n"
		"[export vol1]\n"
		"path = /dev/nvme0n1            # a block device or a regular file, absolute\n"
		"allow = 3f0c6e1a-58b4-4bd5-9a51-2c07d4e1a9b2   # host ids; none: nobody\n"
		"[export iso]\n"
		"path = /srv/images/install.img\n"
		"ro                             # or: ro = yes|no\n"
		"allow = *                      # every authenticated host\n"
		"[export gfs]\n"
		"path = /dev/nvme1n1\n"
		"shared\n"
		"allow = node-a node-b node-c:ro   # :ro: that host may only read\n";
	int ret = parse(text);

	ok(ret == 0, "the documented example parses (%d '%s')", ret, err);
	ok(cfg.nlisten == 1 && !strcmp(cfg.listen[0].host, "192.0.2.1") &&
	   cfg.listen[0].port == 4422 && cfg.workers == 4 && cfg.queue_depth == 128 &&
	   cfg.max_io_size == 524288, "its comments are not part of the values");
	ok(cfg.nexports == 3 && !strcmp(cfg.exports[0].path, "/dev/nvme0n1") &&
	   !cfg.exports[0].ro && cfg.exports[1].ro && cfg.exports[2].shared, "its exports");
	ok(cfg.exports[0].nallow == 1 && cfg.exports[1].nallow == 1 &&
	   !strcmp(cfg.exports[1].allow[0].id, "*") && cfg.exports[2].nallow == 3 &&
	   cfg.exports[2].allow[2].ro && !strcmp(cfg.exports[2].allow[2].id, "node-c"),
	   "its allow lists (comments are not host ids)");
	ok(parse("[export a]   # the first\npath = /srv/disk#2\nro\t# read-only\n") == 0 &&
	   !strcmp(cfg.exports[0].path, "/srv/disk#2") && cfg.exports[0].ro,
	   "a '#' inside a word is kept; after a blank or tab it starts a comment");
}

static void test_bad_file(void)
{
	bad("workers = 4\ncolour = blue\n", "test.conf:2: ", "unknown key 'colour'",
	    "unknown server key");
	bad("[export a]\npath = /a\nsize = 1\n", "test.conf:3: ",
	    "unknown key 'size' in an export section", "unknown export key");
	bad("[export a]\nlisten = 192.0.2.1\n", "test.conf:2: ", "unknown key 'listen'",
	    "a server key inside an export section");
	bad("path = /a\n", "test.conf:1: ", "unknown key 'path'",
	    "an export key outside an export section");
	bad("[export a]\npath = /a\nro = maybe\n", "test.conf:3: ", "ro must be yes or no",
	    "bad ro value");
	bad("metrics = 0.0.0.0\n", "test.conf:1: ", "has no port", "metrics without a port");
	ok(!parse("control_socket = /run/ibnbd/two.sock\n") &&
	   !strcmp(cfg.control_socket, "/run/ibnbd/two.sock"), "control_socket = PATH");
	ok(!parse("control_socket = none\n") && !strcmp(cfg.control_socket, "none"),
	   "control_socket = none");
	bad("control_socket = two.sock\n", "test.conf:1: ", "must be an absolute path",
	    "control_socket relative");
	ok(!parse("metrics = [::]:9642\n") && !strcmp(cfg.metrics, "[::]:9642"),
	   "metrics = [V6]:PORT");

	bad("\n\nworkers = 0\n", "test.conf:3: ", "workers must be 1..64", "workers 0");
	bad("workers = 65\n", "test.conf:1: ", "workers must be 1..64", "workers 65");
	bad("workers = four\n", "test.conf:1: ", "workers must be", "workers not a number");
	bad("workers =\n", "test.conf:1: ", "workers must be", "workers empty");
	bad("workers = -1\n", "test.conf:1: ", "workers must be", "workers negative");
	bad("workers = 4x\n", "test.conf:1: ", "workers must be", "workers with a suffix");
	bad("workers = 0x\n", "test.conf:1: ", "workers must be", "workers 0x without digits");
	bad("workers = 0x-1\n", "test.conf:1: ", "workers must be", "workers 0x-1");
	bad("queue_depth = 0x401\n", "test.conf:1: ", "queue_depth must be", "queue_depth 0x401");
	bad("queue_depth = 0\n", "test.conf:1: ", "queue_depth must be 1..1024", "queue_depth 0");
	bad("queue_depth = 1025\n", "test.conf:1: ", "queue_depth must be 1..1024",
	    "queue_depth 1025");
	bad("queue_depth = 99999999999999999999999\n", "test.conf:1: ", "queue_depth must be",
	    "queue_depth overflowing");
	bad("max_io_size = 0\n", "test.conf:1: ", "max_io_size must be a multiple of 4096",
	    "max_io_size 0");
	bad("max_io_size = 2048\n", "test.conf:1: ", "from 4096 to 1048576", "max_io_size 2 KiB");
	bad("max_io_size = 6000\n", "test.conf:1: ", "multiple of 4096",
	    "max_io_size not a multiple of 4096");
	bad("max_io_size = 2097152\n", "test.conf:1: ", "max_io_size must be",
	    "max_io_size 2 MiB");

	bad("[export a]\npath = /a\n[export a]\npath = /b\n", "test.conf:3: ",
	    "export 'a' is defined twice", "duplicate export");
	bad("[export a b]\n", "test.conf:1: ", "may only use letters, digits", "export name with a space");
	bad("[export a/b]\n", "test.conf:1: ", "may only use letters, digits", "export name with '/'");
	bad("[export ]\n", "test.conf:1: ", "an export section needs a name", "export with no name");
	bad("[export a]\npath = dev/sda\n", "test.conf:2: ", "path 'dev/sda' must be absolute",
	    "relative path");
	bad("[export a]\npath =\n", "test.conf:2: ", "must be absolute", "empty path");
	bad("workers = 1\n[export a]\nro\n", "test.conf:2: ", "export 'a' has no 'path =' line",
	    "missing path: the error names the section's line");
	bad("[export a]\npath=/a\n\n[export b]\n[export c]\npath=/c\n", "test.conf:4: ",
	    "export 'b' has no 'path =' line", "missing path in a middle section");
	bad("[export b]\n[server]\nworkers = 1\n", "test.conf:1: ",
	    "export 'b' has no 'path =' line", "missing path before [server]");

	bad("listen = 192.0.2.1:0\n", "test.conf:1: ", "port must be a number", "listen port 0");
	bad("listen = 192.0.2.1:65536\n", "test.conf:1: ", "port must be a number",
	    "listen port 65536");
	bad("listen = 192.0.2.1:http\n", "test.conf:1: ", "port must be a number",
	    "listen port by name");
	bad("listen = [::1\n", "test.conf:1: ", "missing ']'", "listen IPv6 without ']'");
	bad("listen =\n", "test.conf:1: ", "the address is empty", "listen without an address");
	bad("listen = :4422\n", "test.conf:1: ", "the address is empty", "listen port only");

	bad("[global]\n", "test.conf:1: ", "unknown section [global]", "unknown section");
	bad("[exports a]\n", "test.conf:1: ", "unknown section [exports a]",
	    "section named like export");
	bad("[export a\n", "test.conf:1: ", "a section header must look like", "header without ']'");
	bad("[export a] path = /a\n", "test.conf:1: ", "a section header must look like",
	    "text after a section header");
}

static void test_long_and_many(void)
{
	char *text = malloc(20000);
	char name[200];
	size_t n = 0;

	if (!text) {
		printf("Bail out! out of memory\n");
		exit(1);
	}
	/* A line longer than the 8 KiB buffer. */
	n = (size_t)sprintf(text, "workers = 1\n[export a]\npath = /");
	memset(text + n, 'x', 9000);
	n += 9000;
	strcpy(text + n, "\n");
	bad(text, "test.conf:3: ", "line too long", "a 9000-byte line");

	/* A path at the 4095-byte limit, and one byte over. */
	n = (size_t)sprintf(text, "[export a]\npath = /");
	memset(text + n, 'p', 4094);
	strcpy(text + n + 4094, "\n");
	ok(parse(text) == 0 && strlen(cfg.exports[0].path) == 4095, "a 4095-byte path (%s)", err);
	memset(text + n, 'p', 4095);
	strcpy(text + n + 4095, "\n");
	bad(text, "test.conf:2: ", "path is too long", "a 4096-byte path");

	/* Export names up to 127 bytes. */
	memset(name, 'n', 127);
	name[127] = '\0';
	sprintf(text, "[export %s]\npath = /a\n", name);
	ok(parse(text) == 0 && strlen(cfg.exports[0].name) == 127, "a 127-byte export name");
	name[127] = 'n';
	name[128] = '\0';
	sprintf(text, "[export %s]\npath = /a\n", name);
	bad(text, "test.conf:1: ", "longer than 127 characters", "a 128-byte export name");

	/* At most SERVER_MAX_LISTEN listen lines. */
	n = 0;
	for (int i = 0; i <= SERVER_MAX_LISTEN; i++)
		n += (size_t)sprintf(text + n, "listen = 192.0.2.%d\n", i + 1);
	bad(text, "test.conf:17: ", "more than 16 listen addresses", "17 listen addresses");
	free(text);
}

static void test_add_export(void)
{
	config_init(&cfg);
	ok(config_add_export(&cfg, "vol=/dev/sda", err, sizeof(err)) == 0 && cfg.nexports == 1 &&
	   !strcmp(cfg.exports[0].name, "vol") && !strcmp(cfg.exports[0].path, "/dev/sda") &&
	   !cfg.exports[0].ro, "--export NAME=PATH is read-write");
	ok(config_add_export(&cfg, "iso=/srv/x.img,ro", err, sizeof(err)) == 0 &&
	   cfg.nexports == 2 && !strcmp(cfg.exports[1].path, "/srv/x.img") && cfg.exports[1].ro,
	   "--export NAME=PATH,ro is read-only");
	ok(config_add_export(&cfg, "rw=/srv/a,b,rw", err, sizeof(err)) == 0 &&
	   !strcmp(cfg.exports[2].path, "/srv/a,b") && !cfg.exports[2].ro,
	   "options end at the first non-option: a path with a comma needs ,rw");
	ok(config_add_export(&cfg, "eq=/srv/a=b", err, sizeof(err)) == 0 &&
	   !strcmp(cfg.exports[3].path, "/srv/a=b"), "the first '=' ends the name");

	ok(config_add_export(&cfg, "vol=/dev/sdb", err, sizeof(err)) == -EINVAL &&
	   strstr(err, "export 'vol' is defined twice") && cfg.nexports == 4,
	   "duplicate --export rejected (%s)", err);
	ok(config_add_export(&cfg, "gfs=/srv/g,b,ro,shared", err, sizeof(err)) == 0 &&
	   !strcmp(cfg.exports[4].path, "/srv/g,b") && cfg.exports[4].ro && cfg.exports[4].shared,
	   "several options: ,ro,shared");
	cfg.nexports--;
	ok(config_add_export(&cfg, "/dev/sdb", err, sizeof(err)) == -EINVAL &&
	   strstr(err, "must be NAME=PATH[,ro]"), "--export without a name (%s)", err);
	ok(config_add_export(&cfg, "x=/a,noatime", err, sizeof(err)) == -EINVAL &&
	   strstr(err, "unknown option 'noatime' (known: ro, rw, shared, allow=)"),
	   "unknown option (%s)", err);
	ok(config_add_export(&cfg, "=/a", err, sizeof(err)) == -EINVAL &&
	   strstr(err, "name is empty"), "empty name (%s)", err);
	ok(config_add_export(&cfg, "a b=/a", err, sizeof(err)) == -EINVAL &&
	   strstr(err, "may only use"), "name with a space (%s)", err);
	ok(config_add_export(&cfg, "rel=img", err, sizeof(err)) == -EINVAL &&
	   strstr(err, "path 'img' must be absolute") && cfg.nexports == 4,
	   "relative path rejected and not half-added (%s)", err);
	ok(config_add_export(&cfg, "rel=/img", err, sizeof(err)) == 0 && cfg.nexports == 5,
	   "the name of a rejected export is free again");
}

static void test_add_listen(void)
{
	config_init(&cfg);
	ok(config_add_listen(&cfg, "192.0.2.1", err, sizeof(err)) == 0 &&
	   cfg.listen[0].port == 4422, "--listen ADDR gets port 4422");
	ok(config_add_listen(&cfg, "[::1]:7000", err, sizeof(err)) == 0 &&
	   !strcmp(cfg.listen[1].host, "::1") && cfg.listen[1].port == 7000, "--listen [::1]:7000");
	ok(config_add_listen(&cfg, "192.0.2.1:99999", err, sizeof(err)) == -EINVAL &&
	   strstr(err, "listen address '192.0.2.1:99999': the port must be") && cfg.nlisten == 2,
	   "bad port rejected, nothing added (%s)", err);
}

/* A file on disk for config_load() and the default-config rules. */
static char tmpfile_path[64];

static const char *write_tmp(const char *text)
{
	int fd;
	FILE *f;

	snprintf(tmpfile_path, sizeof(tmpfile_path), "/tmp/ibnbd-test-conf-XXXXXX");
	fd = mkstemp(tmpfile_path);
	f = fd < 0 ? NULL : fdopen(fd, "w");
	if (!f || fputs(text, f) < 0 || fclose(f)) {
		printf("Bail out! cannot write %s: %s\n", tmpfile_path, strerror(errno));
		exit(1);
	}
	return tmpfile_path;
}

static void test_load(void)
{
	const char *path = write_tmp("listen = 192.0.2.9\n[export f]\npath = /f\n");
	char prefix[80];

	config_init(&cfg);
	err[0] = '\0';
	ok(config_load(&cfg, path, err, sizeof(err)) == 0 && cfg.nexports == 1 &&
	   !strcmp(cfg.exports[0].path, "/f"), "config_load reads a file (%s)", err);
	unlink(path);
	config_init(&cfg);
	ok(config_load(&cfg, path, err, sizeof(err)) == -ENOENT &&
	   strstr(err, path) && strstr(err, "No such file"),
	   "a missing file: -ENOENT naming it (%s)", err);

	path = write_tmp("[export f]\npath = /f\nbogus\n");
	config_init(&cfg);
	snprintf(prefix, sizeof(prefix), "%s:3: unknown key 'bogus'", path);
	ok(config_load(&cfg, path, err, sizeof(err)) == -EINVAL &&
	   !strncmp(err, prefix, strlen(prefix)), "errors name the real file and line (%s)", err);
	unlink(path);
}

/* config_from_cmdline() with a file (or none) and command-line values. */
/* How the server is told who may connect, for cmdline(). */
static const char *auth_hosts_file; /* --hosts-file, or NULL */
static bool auth_off = true;         /* --no-auth */

static int cmdline(const char *file_text, const char *workers, const char *const *listen,
		   unsigned int nlisten, const char *const *exports, unsigned int nexports,
		   bool as_default)
{
	struct server_cmdline cl = {
		.default_config = "/nonexistent/ibnbd/server.conf",
		.workers = workers,
		.listen = listen, .nlisten = nlisten,
		.exports = exports, .nexports = nexports,
		.hosts_file = auth_hosts_file, .no_auth = auth_off,
	};
	int ret;

	if (file_text) {
		write_tmp(file_text);
		if (as_default)
			cl.default_config = tmpfile_path;
		else
			cl.config = tmpfile_path;
	}
	config_init(&cfg);
	err[0] = '\0';
	ret = config_from_cmdline(&cfg, &cl, err, sizeof(err));
	if (file_text)
		unlink(tmpfile_path);
	return ret;
}

static void test_cmdline(void)
{
	static const char file[] =
		"listen = 192.0.2.1\nworkers = 2\n[export f]\npath = /f\n";
	const char *listen[] = { "192.0.2.5:5000", "192.0.2.6" };
	const char *exports[] = { "c1=/c1", "c2=/c2,ro" };
	const char *dup[] = { "f=/other" };
	const char *badl[] = { "192.0.2.1:0" };
	const char *bade[] = { "x=rel" };
	int ret;

	ret = cmdline(NULL, NULL, NULL, 0, exports, 1, false);
	ok(ret == 0 && cfg.nexports == 1 && cfg.nlisten == 1 &&
	   !strcmp(cfg.listen[0].host, "0.0.0.0") && cfg.listen[0].port == 4422 &&
	   cfg.workers == 0, "--export alone: listen on 0.0.0.0:4422, workers left to the caller");

	ret = cmdline(file, NULL, listen, 2, exports, 2, false);
	ok(ret == 0, "file and command line together (%d '%s')", ret, err);
	ok(cfg.nlisten == 3 && !strcmp(cfg.listen[0].host, "192.0.2.1") &&
	   !strcmp(cfg.listen[1].host, "192.0.2.5") && cfg.listen[1].port == 5000 &&
	   !strcmp(cfg.listen[2].host, "192.0.2.6"),
	   "the file's listen addresses first, then --listen's in order");
	ok(cfg.nexports == 3 && !strcmp(cfg.exports[0].name, "f") &&
	   !strcmp(cfg.exports[1].name, "c1") && !strcmp(cfg.exports[2].name, "c2") &&
	   cfg.exports[2].ro, "the file's exports first, then --export's in order");
	ok(cfg.workers == 2, "the file's workers without --workers");
	ok(cfg.nfile_listen == 1 && cfg.cmdline_set == 0,
	   "the file's listen addresses are counted; no setting came from the command line");

	ret = cmdline(file, "3", NULL, 0, NULL, 0, false);
	ok(ret == 0 && cfg.workers == 3 && cfg.nlisten == 1 && cfg.nexports == 1,
	   "--workers overrides the file's");
	ok(cfg.cmdline_set == CMDLINE_WORKERS, "... and is remembered as the command line's");
	ok(cmdline(NULL, "0", NULL, 0, exports, 1, false) == -EINVAL &&
	   !strcmp(err, "--workers must be a number from 1 to 64"), "--workers 0 (%s)", err);
	ok(cmdline(NULL, "65", NULL, 0, exports, 1, false) == -EINVAL &&
	   strstr(err, "--workers must be"), "--workers 65");
	ok(cmdline(NULL, "", NULL, 0, exports, 1, false) == -EINVAL &&
	   strstr(err, "--workers must be"), "--workers ''");
	ok(cmdline(NULL, "2x", NULL, 0, exports, 1, false) == -EINVAL &&
	   strstr(err, "--workers must be"), "--workers 2x");
	ok(cmdline("bogus\n", "0", NULL, 0, NULL, 0, false) == -EINVAL &&
	   strstr(err, "--workers must be"), "a bad --workers is reported before the file is read");

	ok(cmdline(file, NULL, NULL, 0, dup, 1, false) == -EINVAL &&
	   !strcmp(err, "--export: export 'f' is defined twice"),
	   "an --export with the file's export name (%s)", err);
	ok(cmdline(NULL, NULL, badl, 1, exports, 1, false) == -EINVAL &&
	   !strncmp(err, "--listen: listen address '192.0.2.1:0': ", 40),
	   "a bad --listen is named (%s)", err);
	ok(cmdline(NULL, NULL, NULL, 0, bade, 1, false) == -EINVAL &&
	   !strcmp(err, "--export: export 'x': path 'rel' must be absolute"),
	   "a bad --export is named (%s)", err);
	ok(cmdline("workers = 1\n", NULL, NULL, 0, NULL, 0, false) == -EINVAL &&
	   strstr(err, "nothing to export") && strstr(err, tmpfile_path),
	   "a file without exports: nothing to export, naming the file (%s)", err);
	ok(cmdline(NULL, NULL, NULL, 0, NULL, 0, false) == -EINVAL &&
	   strstr(err, "nothing to export") && strstr(err, "/nonexistent/ibnbd/server.conf"),
	   "nothing at all: names the default file (%s)", err);
	ok(cmdline("[export x]\n", NULL, NULL, 0, NULL, 0, false) == -EINVAL &&
	   strstr(err, ":1: export 'x' has no 'path =' line"), "file errors come through (%s)", err);

	ret = cmdline(file, NULL, NULL, 0, NULL, 0, true);
	ok(ret == 0 && cfg.nexports == 1 && !strcmp(cfg.exports[0].name, "f"),
	   "without --config or --export the default file is read (%s)", err);
	ret = cmdline(file, NULL, NULL, 0, exports, 1, true);
	ok(ret == 0 && cfg.nexports == 1 && !strcmp(cfg.exports[0].name, "c1") &&
	   cfg.workers == 0, "with --export the default file is not read");
}

/* --poll, --poll-idle-us and their keys. */
static void test_poll(void)
{
	const char *exports[] = { "c1=/c1" };
	struct server_cmdline cl = {
		.exports = exports, .nexports = 1, .no_auth = true,
	};

	ok(parse("[export a]\npath=/a\n") == 0 && !cfg.poll.on && !cfg.poll.idle_us,
	   "interrupts by default");
	ok(parse("poll = yes\n[export a]\npath=/a\n") == 0 && cfg.poll.on && !cfg.poll.idle_us,
	   "poll = yes: polling, never sleeping");
	ok(parse("poll_idle_us = 50\npoll = yes\n[export a]\npath=/a\n") == 0 && cfg.poll.on &&
	   cfg.poll.idle_us == 50, "poll_idle_us, in either order");
	ok(parse("poll_idle_us = 50\n[export a]\npath=/a\n") == 0 && !cfg.poll.on,
	   "poll_idle_us alone does not turn polling on");
	bad("poll = often\n", "test.conf:1: ", "poll must be yes or no, not 'often'", "poll = often");
	bad("poll_idle_us = 1000001\n", "test.conf:1: ", "from 0 (never sleep) to 1000000",
	    "poll_idle_us above a second");
	bad("poll_idle_us = -1\n", "test.conf:1: ", "poll_idle_us must be", "poll_idle_us -1");

	config_init(&cfg);
	cl.poll = true;
	ok(config_from_cmdline(&cfg, &cl, err, sizeof(err)) == 0 && cfg.poll.on &&
	   !cfg.poll.idle_us, "--poll");
	config_init(&cfg);
	cl.poll = false;
	cl.poll_idle_us = "200";
	ok(config_from_cmdline(&cfg, &cl, err, sizeof(err)) == 0 && cfg.poll.on &&
	   cfg.poll.idle_us == 200, "--poll-idle-us 200 implies --poll");
	config_init(&cfg);
	cl.poll_idle_us = "2s";
	ok(config_from_cmdline(&cfg, &cl, err, sizeof(err)) == -EINVAL &&
	   !strncmp(err, "--poll-idle-us: poll_idle_us must be", 36), "--poll-idle-us 2s (%s)", err);
}

/* Who may connect, and who may open which export. */
static void test_access(void)
{
	static const char file[] =
		"hosts_file = /etc/ibnbd/hosts\n[export f]\npath = /f\nallow = hostA hostB:ro\n"
		"[export g]\npath = /g\nallow = *\n[export h]\npath = /h\n";
	const char *exports[] = { "c1=/c1,allow=hostA+hostC:ro", "c2=/c2,ro,allow=*:ro" };
	const char *byid[] = { "c=/c,allow=hostA" };
	const char *star[] = { "c=/c,allow=*" };
	const char *dupid[] = { "c=/c,allow=hostA+hostA" };
	const char *badid[] = { "c=/c,allow=" };
	int ret;

	auth_off = false;
	auth_hosts_file = NULL;
	ok(cmdline(NULL, NULL, NULL, 0, star, 1, false) == -EINVAL &&
	   strstr(err, "--hosts-file") && strstr(err, "--no-auth"),
	   "neither a hosts file nor --no-auth: refused, naming both (%s)", err);
	auth_hosts_file = "/etc/ibnbd/hosts";
	auth_off = true;
	ok(cmdline(NULL, NULL, NULL, 0, star, 1, false) == -EINVAL && strstr(err, "both"),
	   "a hosts file and --no-auth: refused (%s)", err);
	auth_off = false;
	ret = cmdline(NULL, NULL, NULL, 0, exports, 2, false);
	ok(ret == 0 && !strcmp(cfg.hosts_file, "/etc/ibnbd/hosts") && !cfg.no_auth,
	   "--hosts-file (%s)", err);
	ok(cfg.exports[0].nallow == 2 && !strcmp(cfg.exports[0].allow[0].id, "hostA") &&
	   !cfg.exports[0].allow[0].ro && !strcmp(cfg.exports[0].allow[1].id, "hostC") &&
	   cfg.exports[0].allow[1].ro && !strcmp(cfg.exports[0].path, "/c1"),
	   "allow=hostA+hostC:ro on the command line");
	ok(cfg.exports[1].ro && cfg.exports[1].nallow == 1 && cfg.exports[1].allow[0].ro &&
	   !strcmp(cfg.exports[1].allow[0].id, "*"), "ro,allow=*:ro");
	ok(export_spec_allows(&cfg.exports[0], "hostA") == 0 &&
	   export_spec_allows(&cfg.exports[0], "hostC") == 1 &&
	   export_spec_allows(&cfg.exports[0], "hostB") == -EACCES &&
	   export_spec_allows(&cfg.exports[0], "host") == -EACCES,
	   "hostA read-write, hostC read-only, others not at all");
	ok(export_spec_allows(&cfg.exports[1], "anyone") == 1, "*:ro lets anyone read");
	auth_hosts_file = NULL;
	ret = cmdline(file, NULL, NULL, 0, NULL, 0, false);
	ok(ret == 0 && !strcmp(cfg.hosts_file, "/etc/ibnbd/hosts") && cfg.nexports == 3,
	   "hosts_file in the file (%s)", err);
	ok(cfg.exports[0].nallow == 2 && export_spec_allows(&cfg.exports[0], "hostB") == 1 &&
	   export_spec_allows(&cfg.exports[1], "whoever") == 0 && cfg.exports[2].nallow == 0 &&
	   export_spec_allows(&cfg.exports[2], "hostA") == -EACCES,
	   "allow = in the file; an export without it lets nobody in");
	auth_off = true;
	ok(cmdline(NULL, NULL, NULL, 0, byid, 1, false) == -EINVAL &&
	   strstr(err, "unproven") && strstr(err, "hostA"),
	   "--no-auth with an allow list by id: refused (%s)", err);
	ok(cmdline(NULL, NULL, NULL, 0, star, 1, false) == 0, "--no-auth with allow=*: fine");
	ok(cmdline(NULL, NULL, NULL, 0, dupid, 1, false) == -EINVAL && strstr(err, "twice"),
	   "a host allowed twice (%s)", err);
	ok(cmdline(NULL, NULL, NULL, 0, badid, 1, false) == -EINVAL && strstr(err, "allow"),
	   "allow= without hosts (%s)", err);
	ok(cmdline("max_handshakes = 8\n[export x]\npath = /x\n", NULL, NULL, 0, NULL, 0, false) ==
		   0 && cfg.max_handshakes == 8, "max_handshakes = 8 (%s)", err);
	ok(cmdline("max_handshakes = 0\n[export x]\npath = /x\n", NULL, NULL, 0, NULL, 0, false) ==
		   -EINVAL && strstr(err, "max_handshakes must be"), "max_handshakes = 0 (%s)", err);
	ok(cmdline(NULL, NULL, NULL, 0, star, 1, false) == 0 && cfg.max_handshakes == 256,
	   "max_handshakes defaults to 256");
	ok(cfg.max_handshakes_per_address == 64, "max_handshakes_per_address defaults to 64");
	ok(cmdline("max_handshakes_per_address = 8\n[export x]\npath = /x\n", NULL, NULL, 0, NULL, 0,
		   false) == 0 && cfg.max_handshakes_per_address == 8,
	   "max_handshakes_per_address = 8 (%s)", err);
	ok(cmdline("max_handshakes_per_address = 0\n[export x]\npath = /x\n", NULL, NULL, 0, NULL, 0,
		   false) == -EINVAL && strstr(err, "max_handshakes_per_address must be"),
	   "max_handshakes_per_address = 0 (%s)", err);
	ok(cmdline("[export x]\npath = /x\nallow = a\tb\n", NULL, NULL, 0, NULL, 0, false) ==
		   -EINVAL && strstr(err, "unproven"),
	   "an allow list in the file is checked too (%s)", err);
}

static void test_limits(void)
{
	const struct server_limits *l = &cfg.limits;

	config_init(&cfg);
	ok(l->max_connections == 1024 && l->max_connections_per_host == 64 &&
	   l->max_sessions_per_host == 8 && l->max_opens_per_session == 64 &&
	   l->max_slot_memory == 0, "limits: documented defaults (slot memory: chosen later)");
	ok(config_default_slot_memory(4ull << 30) == 2ull << 30,
	   "default slot memory: half of 4 GiB is 2 GiB");
	ok(config_default_slot_memory(256ull << 30) == 16ull << 30,
	   "default slot memory: at most 16 GiB");
	ok(config_default_slot_memory(0) == 16ull << 30,
	   "default slot memory: 16 GiB when the memory size is unknown");
	ok(parse("max_connections = 10\nmax_connections_per_host = 3\nmax_sessions_per_host = 2\n"
		 "max_opens_per_session = 5\nmax_slot_memory = 512M\n") == 0 &&
	   l->max_connections == 10 && l->max_connections_per_host == 3 &&
	   l->max_sessions_per_host == 2 && l->max_opens_per_session == 5 &&
	   l->max_slot_memory == 512ull << 20, "every limit is read (%s)", err);
	ok(parse("max_slot_memory = 2G\n") == 0 && l->max_slot_memory == 2ull << 30 &&
	   l->max_connections == 1024, "one limit set, the others keep their defaults");
	bad("max_connections = 0\n", "test.conf:1: ", "max_connections must be 1..65536",
	    "max_connections 0");
	bad("max_connections_per_host = many\n", "test.conf:1: ",
	    "max_connections_per_host must be 1..65536", "max_connections_per_host not a number");
	bad("max_sessions_per_host = 65537\n", "test.conf:1: ",
	    "max_sessions_per_host must be 1..65536", "max_sessions_per_host too large");
	bad("max_opens_per_session = 65\n", "test.conf:1: ", "max_opens_per_session must be 1..64",
	    "max_opens_per_session above what a connection can hold");
	bad("max_slot_memory = 1K\n", "test.conf:1: ",
	    "max_slot_memory must be a size of at least 1M", "max_slot_memory below 1 MiB");
	bad("max_slot_memory = lots\n", "test.conf:1: ", "max_slot_memory must be a size",
	    "max_slot_memory not a size");
	bad("[export a]\npath = /a\nmax_connections = 4\n", "test.conf:3: ",
	    "unknown key 'max_connections' in an export section", "a limit inside an export");
}

int main(void)
{
	test_defaults();
	test_good_file();
	test_doc_example();
	test_bad_file();
	test_limits();
	test_long_and_many();
	test_add_export();
	test_add_listen();
	test_load();
	test_cmdline();
	test_poll();
	test_access();
	return tap_done();
}
