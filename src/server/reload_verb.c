// SPDX-License-Identifier: GPL-2.0-only
/*
 * `ibnbd-server reload [--config FILE]`: asks the running server that
 * reads FILE (default: the installed server.conf) to re-read it, by
 * SIGHUP, as `systemctl reload ibnbd-server` does. The server is found by
 * its command line in /proc: several may run, each with its own file.
 */
#include "reload.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/* The configuration file process pid reads, resolved, into out (or ""). */
static void config_of(pid_t pid, char *out, size_t outlen)
{
	char path[64], buf[8192], cwd[PATH_MAX], joined[2 * PATH_MAX + 2];
	const char *conf = NULL, *p;
	bool exports = false;
	ssize_t n, cn;
	int fd;

	*out = '\0';
	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	for (p = buf; p < buf + n; p += strlen(p) + 1) {
		const char *next = p + strlen(p) + 1;

		if ((!strcmp(p, "--config") || !strcmp(p, "-c")) && next < buf + n)
			conf = next;
		else if (!strncmp(p, "--config=", 9))
			conf = p + 9;
		else if (!strncmp(p, "-c", 2) && p[2])
			conf = p + 2;
		else if (!strcmp(p, "--export") || !strncmp(p, "--export=", 9) || !strncmp(p, "-e", 2))
			exports = true;
	}
	/* Without --config the server reads the default file, unless it was
	 * given exports on its command line. */
	if (!conf && !exports)
		conf = SERVER_DEFAULT_CONFIG;
	if (!conf)
		return;
	if (conf[0] != '/') {
		snprintf(path, sizeof(path), "/proc/%d/cwd", (int)pid);
		cn = readlink(path, cwd, sizeof(cwd) - 1);
		if (cn < 0)
			return;
		cwd[cn] = '\0';
		snprintf(joined, sizeof(joined), "%s/%s", cwd, conf);
		conf = joined;
	}
	if (!realpath(conf, cwd))
		return;
	snprintf(out, outlen, "%s", cwd);
}

static bool is_server(pid_t pid)
{
	char path[64], comm[32] = "";
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, comm, sizeof(comm) - 1);
	close(fd);
	if (n <= 0)
		return false;
	comm[n] = '\0';
	comm[strcspn(comm, "\n")] = '\0';
	return !strcmp(comm, "ibnbd-server");
}

int reload_verb(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *config = SERVER_DEFAULT_CONFIG;
	char want[PATH_MAX], have[PATH_MAX];
	unsigned int sent = 0;
	struct dirent *de;
	DIR *proc;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			config = optarg;
			break;
		case 'h':
			printf("Usage: ibnbd-server reload [--config FILE]\n"
			       "Asks the running ibnbd-server that reads FILE (default %s)\n"
			       "to re-read it and its hosts file (SIGHUP); its log says what changed.\n",
			       SERVER_DEFAULT_CONFIG);
			return 0;
		default:
			log_err("usage: ibnbd-server reload [--config FILE]");
			return 2;
		}
	}
	if (optind < argc) {
		log_err("reload: unexpected argument '%s' (usage: ibnbd-server reload [--config FILE])",
			argv[optind]);
		return 2;
	}
	if (!realpath(config, want)) {
		log_err("reload: %s: %s", config, strerror(errno));
		return 1;
	}
	proc = opendir("/proc");
	if (!proc) {
		log_err("reload: /proc: %s", strerror(errno));
		return 1;
	}
	while ((de = readdir(proc))) {
		pid_t pid;

		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		pid = (pid_t)atoi(de->d_name);
		if (pid == getpid() || !is_server(pid))
			continue;
		config_of(pid, have, sizeof(have));
		if (strcmp(have, want))
			continue;
		if (kill(pid, SIGHUP)) {
			log_err("reload: cannot signal ibnbd-server %d: %s", (int)pid, strerror(errno));
			continue;
		}
		printf("asked ibnbd-server %d to re-read %s; its log says what changed\n", (int)pid,
		       want);
		sent++;
	}
	closedir(proc);
	if (!sent) {
		log_err("reload: no running ibnbd-server reads %s", want);
		return 1;
	}
	return 0;
}
