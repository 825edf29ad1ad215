// SPDX-License-Identifier: GPL-2.0-only
/*
 * The client's configuration (src/client/control/client_conf.c): the file
 * format of docs/client-config.md, the command line over it, and the edits
 * `map --persist` and `unmap --persist` make to a real file.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "control/client_conf.h"
#include "tap.h"

static struct client_config cfg;
static char err[512];

static int parse(const char *text)
{
	FILE *f;
	int ret;

	memset(&cfg, 0, sizeof(cfg));
	err[0] = '\0';
	f = fmemopen((void *)text, strlen(text), "r");
	if (!f) {
		printf("Bail out! fmemopen: %s\n", strerror(errno));
		exit(1);
	}
	ret = client_conf_parse(&cfg, f, "client.conf", err, sizeof(err));
	fclose(f);
	return ret;
}

static void bad(const char *text, const char *prefix, const char *what, const char *desc)
{
	int ret = parse(text);

	ok(ret == -EINVAL && !strncmp(err, prefix, strlen(prefix)) && strstr(err, what),
	   "%s: rejected as '%s...%s' (got %d '%s')", desc, prefix, what, ret, err);
}

static void test_options(void)
{
	ok(parse("") == 0 && cfg.nmaps == 0 && cfg.workers == 0 && cfg.loss_timeout_s == 0,
	   "an empty file sets nothing");
	ok(parse("workers = 2\ndead_timeout = 3\nloss_timeout = 0\nio_timeout = 45\n"
		 "key_file = /etc/ibnbd/k   # the key\n") == 0 &&
	   cfg.workers == 2 && cfg.dead_timeout_ms == 3000 && cfg.loss_timeout_s == -1 &&
	   cfg.io_timeout_s == 45 && !strcmp(cfg.key_file, "/etc/ibnbd/k"),
	   "options at the top: workers, timeouts (0 = never), key_file with a comment");
	ok(parse("[client]\nworkers = 4\nhost_id = rack1-node7\n") == 0 && cfg.workers == 4 &&
	   !strcmp(cfg.host_id, "rack1-node7"), "options in a [client] section");
	bad("workers = 0\n", "client.conf:1: ", "workers must be a number from 1 to 64",
	    "workers 0");
	bad("\ndead_timeout = 0\n", "client.conf:2: ", "dead_timeout must be a number of seconds from 1",
	    "dead_timeout 0");
	bad("loss_timeout = soon\n", "client.conf:1: ", "not 'soon'", "loss_timeout not a number");
	bad("io_timeout = 86401\n", "client.conf:1: ", "from 0 to 86400", "io_timeout too long");
	bad("host_id = has space\n", "client.conf:1: ", "host_id: ", "host id with a blank");
	bad("key_file =\n", "client.conf:1: ", "key_file must be a path", "empty key_file");
	bad("colour = blue\n", "client.conf:1: ", "unknown key 'colour'", "unknown key");
	bad("metrics = 127.0.0.1\n", "client.conf:1: ", "has no port", "metrics without a port");
	bad("metrics = [::1\n", "client.conf:1: ", "metrics", "metrics: a malformed address");
	ok(!parse("metrics = 127.0.0.1:9643\n") && !strcmp(cfg.metrics, "127.0.0.1:9643"),
	   "metrics = ADDR:PORT");
	ok(!parse("max_io_size = 512K\n") && cfg.max_io_size == 512u << 10, "max_io_size = 512K");
	ok(!parse("max_io_size = 1M\n") && cfg.max_io_size == 1u << 20, "max_io_size = 1M");
	ok(!parse("max_io_size = 4096\n") && cfg.max_io_size == 4096, "max_io_size = 4096");
	bad("max_io_size = 2M\n", "client.conf:1: ", "from 4K to 1024K", "max_io_size above 1M");
	bad("max_io_size = 6000\n", "client.conf:1: ", "multiple of 4K", "max_io_size not 4K-aligned");
	bad("max_io_size = 0\n", "client.conf:1: ", "max_io_size must be", "max_io_size 0");
	bad("max_io_size = big\n", "client.conf:1: ", "not 'big'", "max_io_size not a size");
	bad("[server]\n", "client.conf:1: ", "unknown section [server]", "a server.conf section");
}

static void test_maps(void)
{
	ok(parse("[map db]\nserver = 192.0.2.1\nexport = vol1\n\n"
		 "[map logs]\nserver = [fd00::5]:4500\nexport = vol2\nro\n") == 0 &&
	   cfg.nmaps == 2 && !strcmp(cfg.maps[0].name, "db") &&
	   !strcmp(cfg.maps[0].server.host, "192.0.2.1") && cfg.maps[0].server.port == 4422 &&
	   !strcmp(cfg.maps[0].export_name, "vol1") && !cfg.maps[0].read_only &&
	   !strcmp(cfg.maps[1].server.host, "fd00::5") && cfg.maps[1].server.port == 4500 &&
	   cfg.maps[1].read_only, "two maps: default port, IPv6 with port, ro");
	ok(client_conf_find_map(&cfg, "logs") == &cfg.maps[1] &&
	   !client_conf_find_map(&cfg, "nope"), "a map is found by its name");
	ok(parse("workers = 2\n[map a]\nserver = h\nexport = e\n[client]\nio_timeout = 5\n") == 0 &&
	   cfg.nmaps == 1 && cfg.io_timeout_s == 5, "[client] after a map takes options again");
	bad("[map]\n", "client.conf:1: ", "needs the device's name", "map without a name");
	bad("[map ublkb3]\nserver = h\nexport = e\n", "client.conf:1: ", "is reserved",
	    "a ublkbN name");
	bad("[map a/b]\n", "client.conf:1: ", "may only use", "a name with a slash");
	bad("[map a]\nserver = h\nexport = e\n[map a]\n", "client.conf:4: ", "a second [map a]",
	    "the same name twice");
	bad("[map a]\nexport = e\n", "client.conf:1: ", "map 'a' has no 'server =' line",
	    "no server: the error names the header's line");
	bad("[map a]\nserver = h\n\n[map b]\nserver = h\nexport = e\n", "client.conf:1: ",
	    "map 'a' has no 'export =' line", "no export in a middle section");
	bad("[map a]\nserver = h:99999\n", "client.conf:2: ", "bad server address", "bad port");
	bad("[map a]\nserver = h1,h2\n", "client.conf:2: ", "several addresses",
	    "several addresses: not yet");
	bad("[map a]\nserver = h\nro = maybe\n", "client.conf:3: ", "ro must be yes or no",
	    "ro with a bad value");
	ok(parse("loss_timeout = 60\n[map a]\nserver = h\nexport = e\nloss_timeout = 5\n"
		 "[map b]\nserver = h\nexport = e\nloss_timeout = 0\n[map c]\nserver = h\n"
		 "export = e\n") == 0 && cfg.loss_timeout_s == 60 && cfg.maps[0].loss_timeout_s == 5 &&
	   cfg.maps[1].loss_timeout_s == -1 && cfg.maps[2].loss_timeout_s == 0,
	   "a map's own loss_timeout (0: forever), or none: the daemon's");
	bad("[map a]\nserver = h\nexport = e\nloss_timeout = 1h\n", "client.conf:4: ",
	    "loss_timeout must be a number of seconds from 0", "a map's loss_timeout not a number");
	bad("[map a]\nserver = h\nworkers = 2\n", "client.conf:3: ",
	    "unknown key 'workers' in a map section", "a daemon option inside a map");
}

static void test_overlay(void)
{
	struct client_config over = { 0 };

	parse("workers = 2\nloss_timeout = 60\nkey_file = /a\n");
	ok(client_conf_set(&over, "loss_timeout", "0", "--loss-timeout", err, sizeof(err)) == 0,
	   "an option from the command line");
	ok(client_conf_set(&over, "workers", "x", "--workers", err, sizeof(err)) == -EINVAL &&
	   !strncmp(err, "--workers must be", 17), "its error names the option as given: %s", err);
	client_conf_overlay(&cfg, &over);
	ok(cfg.workers == 2 && cfg.loss_timeout_s == -1 && !strcmp(cfg.key_file, "/a"),
	   "the command line wins where it says something, the file elsewhere");

	/* Polling: a file's idle time stays under a bare --poll; an
	 * --poll-idle-us (even 0) wins over the file's. */
	memset(&over, 0, sizeof(over));
	parse("poll_idle_us = 300\n");
	ok(!cfg.poll.on && cfg.poll.idle_us == 300, "poll_idle_us alone: not polling");
	ok(client_conf_set(&over, "poll", "yes", "--poll", err, sizeof(err)) == 0, "--poll");
	client_conf_overlay(&cfg, &over);
	ok(cfg.poll.on && cfg.poll.idle_us == 300, "--poll keeps the file's poll_idle_us");
	ok(client_conf_set(&over, "poll_idle_us", "0", "--poll-idle-us", err, sizeof(err)) == 0,
	   "--poll-idle-us 0");
	client_conf_overlay(&cfg, &over);
	ok(cfg.poll.on && cfg.poll.idle_us == 0, "--poll-idle-us 0 wins over the file's 300");
	ok(client_conf_set(&over, "poll_idle_us", "x", "--poll-idle-us", err, sizeof(err)) ==
	   -EINVAL && !strncmp(err, "--poll-idle-us must be a number of microseconds", 47),
	   "a bad --poll-idle-us is named as given: %s", err);
	ok(parse("poll = yes\npoll_idle_us = 1000\n") == 0 && cfg.poll.on &&
	   cfg.poll.idle_us == 1000, "poll = yes, poll_idle_us = 1000");
	bad("poll = maybe\n", "client.conf:1: ", "poll must be yes or no, not 'maybe'", "poll = maybe");
	bad("poll_idle_us = 2000000\n", "client.conf:1: ", "to 1000000", "poll_idle_us too long");
}

static char *slurp(const char *path)
{
	static char buf[8192];
	FILE *f = fopen(path, "r");
	size_t n;

	if (!f)
		return NULL;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static void test_edit(void)
{
	char dir[] = "/tmp/ibnbd-conf-XXXXXX", path[64];
	struct map_conf m = { .name = "db", .server = { "192.0.2.9", 4423 },
			      .export_name = "vol", .read_only = true };
	struct map_conf m6 = { .name = "v6", .server = { "fd00::1", 4422 }, .export_name = "e" };
	struct stat st;
	FILE *f;
	char *text;

	if (!mkdtemp(dir)) {
		printf("Bail out! mkdtemp: %s\n", strerror(errno));
		exit(1);
	}
	snprintf(path, sizeof(path), "%s/client.conf", dir);
	ok(client_conf_add_map(path, &m, err, sizeof(err)) == 0, "a map added to a new file");
	text = slurp(path);
	ok(text && strstr(text, "[map db]\nserver = 192.0.2.9:4423\nexport = vol\nro\n"),
	   "it is written as a section: %s", text ? text : "(none)");
	ok(!stat(path, &st) && (st.st_mode & 0777) == 0644, "a new file is 0644");

	f = fopen(path, "w");
	fputs("# keep me\nworkers = 2   # two\n\n[map db]\nserver = h\n# old\nexport = e\n", f);
	fclose(f);
	chmod(path, 0600);
	ok(client_conf_add_map(path, &m6, err, sizeof(err)) == 0, "a second map added");
	text = slurp(path);
	ok(text && !strncmp(text, "# keep me\nworkers = 2   # two\n\n[map db]\n", 39) &&
	   strstr(text, "[map v6]\nserver = [fd00::1]:4422\nexport = e\n"),
	   "the rest of the file is kept; an IPv6 address is bracketed");
	ok(!stat(path, &st) && (st.st_mode & 0777) == 0600, "an existing file keeps its mode");
	ok(client_conf_add_map(path, &m6, err, sizeof(err)) == -EINVAL &&
	   strstr(err, "would not be valid") && strstr(err, "a second [map v6]"),
	   "adding a name twice is refused, the file unchanged: %s", err);

	{
		struct map_conf ml = { .name = "l", .server = { "h", 4422 }, .export_name = "e",
				       .loss_timeout_s = 7 };
		struct client_config back = { 0 };
		char buf[512];

		ok(client_conf_format_map(&ml, buf, sizeof(buf)) > 0 &&
		   !strcmp(buf, "[map l]\nserver = h:4422\nexport = e\nloss_timeout = 7\n"),
		   "a map's loss_timeout is written: '%s'", buf);
		ml.loss_timeout_s = -1;
		ok(client_conf_format_map(&ml, buf, sizeof(buf)) > 0 &&
		   strstr(buf, "loss_timeout = 0\n"), "forever is written as 0");
		f = fmemopen(buf, strlen(buf), "r");
		ok(f && !client_conf_parse(&back, f, "x", err, sizeof(err)) && back.nmaps == 1 &&
		   back.maps[0].loss_timeout_s == -1, "and read back as forever");
		if (f)
			fclose(f);
	}
	ok(client_conf_remove_map(path, "db", err, sizeof(err)) == 0, "a map removed");
	text = slurp(path);
	ok(text && !strcmp(text, "# keep me\nworkers = 2   # two\n\n[map v6]\nserver = [fd00::1]:4422\nexport = e\n"),
	   "only its section went: '%s'", text ? text : "(none)");
	f = fopen(path, "a");
	fputs("\n# the logs volume\n[map logs]\nserver = h\nexport = l\n", f);
	fclose(f);
	ok(client_conf_remove_map(path, "v6", err, sizeof(err)) == 0 && (text = slurp(path)) &&
	   !strcmp(text, "# keep me\nworkers = 2   # two\n\n# the logs volume\n[map logs]\n"
		   "server = h\nexport = l\n"),
	   "the comment before the next section stays with it: '%s'", text ? text : "(none)");
	ok(client_conf_remove_map(path, "logs", err, sizeof(err)) == 0 && (text = slurp(path)) &&
	   !strcmp(text, "# keep me\nworkers = 2   # two\n"),
	   "and it goes with its section: '%s'", text ? text : "(none)");
	ok(client_conf_add_map(path, &m6, err, sizeof(err)) == 0, "back to one map, v6");
	ok(client_conf_remove_map(path, "db", err, sizeof(err)) == -ENOENT &&
	   strstr(err, "has no [map db]"), "removing it again: %s", err);
	ok(client_conf_remove_map(path, "v6", err, sizeof(err)) == 0 &&
	   (text = slurp(path)) && !strcmp(text, "# keep me\nworkers = 2   # two\n"),
	   "the last map removed leaves the options: '%s'", text ? text : "(none)");
	ok(memset(&cfg, 0, sizeof(cfg)) && client_conf_load(&cfg, path, err, sizeof(err)) == 0 &&
	   cfg.workers == 2 && cfg.nmaps == 0, "the edited file loads");
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	test_options();
	test_maps();
	test_overlay();
	test_edit();
	return tap_done();
}
