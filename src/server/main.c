// SPDX-License-Identifier: GPL-2.0-only
/*
 * ibnbd-server: exports files and block devices to ibnbd clients over RDMA.
 *
 * Threads: the main thread parses the configuration, opens the exports,
 * starts the workers, then runs the listener and signal handling (signalfd)
 * until SIGTERM/SIGINT; workers own sessions and the IO path (worker.c).
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access.h"
#include "config.h" /* build configuration: IBNBD_VERSION */
#include "server_conf.h"
#include "export.h"
#include "listener.h"
#include "log.h"
#include "util.h"
#include "metrics_http.h"
#include "registry.h"
#include "control.h"
#include "ctl.h"
#include "reload.h"
#include "server_metrics.h"
#include "verbs.h"
#include "sd_notify.h"
#include "worker.h"


static void usage(FILE *f)
{
	fprintf(f,
		"Usage: ibnbd-server [--config FILE] [--listen ADDR[:PORT]]... [--export NAME=PATH[,ro][,shared]]...\n"
		"  -c, --config FILE   read exports and listen addresses from FILE\n"
		"  -l, --listen ADDR   listen on ADDR[:PORT] (default port %d)\n"
		"  -e, --export SPEC   export PATH (file or block device) as NAME; shared:\n"
		"                      several client sessions may open it read-write\n"
		"  -w, --workers N     worker threads (default: min(online CPUs, 4))\n"
		"  -k, --keepalive-timeout S  drop a connection silent for S seconds\n"
		"                      (default %d, 0 = never)\n"
		"  -H, --hosts-file FILE  the hosts that may connect: HOSTID KEY per line\n"
		"                      (re-read on SIGHUP)\n"
		"      --no-auth       let every host connect without authentication\n"
		"  -M, --metrics ADDR:PORT  serve Prometheus metrics at http://ADDR:PORT/metrics\n"
		"      --control-socket PATH  where list-sessions and list-exports ask (default\n"
		"                      %s; none: no socket)\n"
		"      --poll          workers busy-poll their completion queues and io_uring\n"
		"                      instead of sleeping (a CPU each while they serve)\n"
		"      --poll-idle-us US  polling, a worker idle for US microseconds sleeps\n"
		"                      until the next event (implies --poll; 0: never)\n"
		"  -d, --debug CATS    debug logs: io,rdma,proto,ctl or all\n"
		"  -h, --help          this text\n"
		"  -V, --version       print the version\n"
		"       ibnbd-server reload [--config FILE]   re-read a running server's file\n"
		"       ibnbd-server list-sessions|list-exports [--json] [--control-socket PATH]\n"
		"                      what a running server serves: sessions, exports, IO\n"
		"SIGUSR1 prints the counters; SIGHUP re-reads the hosts file and the\n"
		"configuration file; SIGTERM finishes in-flight IO and exits.\n",
		IBNBD_DEFAULT_PORT, SERVER_DEFAULT_KEEPALIVE_TIMEOUT, ctl_server_socket_path());
}

/* The counters, then what the limits count now (connections past HELLO
 * and their pinned slot memory). */
static void print_stats(struct worker *workers, unsigned int n, struct registry *r,
			const char *when)
{
	struct server_stats sum = { 0 };
	struct io_counts io = { 0 };
	unsigned int conns;
	uint64_t slot_bytes;
	char line[1024];
	size_t len;

	for (unsigned int i = 0; i < n; i++) {
#define ADD(f) sum.f += stat_read(&workers[i].stats.f);
		STATS_FIELDS(ADD)
#undef ADD
		for (unsigned int e = 0; e < worker_nexports(workers[i].shared); e++)
			io_counts_sum(&io, &workers[i].estats[e].io);
	}
	len = (size_t)snprintf(line, sizeof(line), "stats (%s):", when);
#define PRINT(s, f)                                                                     \
	if (len < sizeof(line))                                                        \
		len += (size_t)snprintf(line + len, sizeof(line) - len, " " #f "=%llu", \
					(unsigned long long)s.f);
#define PRINT_IO(f) PRINT(io, f)
#define PRINT_SUM(f) PRINT(sum, f)
	IO_COUNTS_FIELDS(PRINT_IO)
	STATS_FIELDS(PRINT_SUM)
#undef PRINT_SUM
#undef PRINT_IO
#undef PRINT
	registry_usage(r, &conns, &slot_bytes);
	log_info("%s connections_now=%u slot_memory_bytes=%llu", line, conns,
		 (unsigned long long)slot_bytes);
}

/*
 * Slots are pinned twice over (an RDMA MR and an io_uring fixed buffer,
 * each counted against RLIMIT_MEMLOCK), and the message buffers once: a
 * max_slot_memory past the limit would turn admitted connections into
 * allocation failures. A configured one is refused; the default is
 * lowered to 7/8 of the limit (the rest for message buffers).
 */
static int fit_slot_memory(struct server_limits *l, char *err, size_t errlen)
{
	uint64_t mem = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE);
	uint64_t room = verbs_pin_limit();

	if (!room) {
		if (!l->max_slot_memory)
			l->max_slot_memory = config_default_slot_memory(mem);
		return 0;
	}
	if (l->max_slot_memory > room) {
		snprintf(err, errlen,
			 "max_slot_memory (%llu MiB) is more than this process may pin (its memlock limit, %llu MiB): raise LimitMEMLOCK (ulimit -l) or lower max_slot_memory",
			 (unsigned long long)(l->max_slot_memory >> 20),
			 (unsigned long long)(room >> 20));
		return -EINVAL;
	}
	if (!l->max_slot_memory) {
		l->max_slot_memory = config_default_slot_memory(mem);
		if (l->max_slot_memory > room - room / 8) {
			l->max_slot_memory = room - room / 8;
			log_info("max_slot_memory lowered to %llu MiB: 7/8 of the memlock limit",
				 (unsigned long long)(l->max_slot_memory >> 20));
		}
	}
	return 0;
}

/*
 * This host's boot, from the kernel's random boot id: the OPEN answer
 * carries it, so that a client learns when the server host restarted (and
 * writes it had not flushed may be lost). All zero if it cannot be read.
 */
static void read_boot_id(uint8_t id[16])
{
	char text[64];
	unsigned int n = 0;
	FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");

	memset(id, 0, 16);
	if (!f)
		return;
	if (fgets(text, sizeof(text), f)) {
		for (const char *p = text; *p && n < 32; p++) {
			unsigned int v;

			if (*p == '-')
				continue;
			if (sscanf(p, "%1x", &v) != 1)
				break;
			id[n / 2] |= (uint8_t)(v << (n % 2 ? 0 : 4));
			n++;
		}
	}
	fclose(f);
	if (n != 32)
		memset(id, 0, 16);
}

static int parse_args(int argc, char **argv, struct server_config *cfg)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "listen", required_argument, NULL, 'l' },
		{ "export", required_argument, NULL, 'e' },
		{ "workers", required_argument, NULL, 'w' },
		{ "keepalive-timeout", required_argument, NULL, 'k' },
		{ "hosts-file", required_argument, NULL, 'H' },
		{ "no-auth", no_argument, NULL, 'N' },
		{ "metrics", required_argument, NULL, 'M' },
		{ "control-socket", required_argument, NULL, 'S' },
		{ "poll", no_argument, NULL, 'P' },
		{ "poll-idle-us", required_argument, NULL, 'I' },
		{ "debug", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	/* Collected here, applied by config_from_cmdline() after the file. */
	const char **listens = calloc((size_t)argc, sizeof(char *));
	const char **exports = calloc((size_t)argc, sizeof(char *));
	struct server_cmdline cl = { .default_config = SERVER_DEFAULT_CONFIG };
	char err[512];
	int c, ret = 0;

	if (!listens || !exports) {
		log_err("out of memory");
		ret = 1;
		goto out;
	}
	cl.listen = listens;
	cl.exports = exports;
	while ((c = getopt_long(argc, argv, "c:l:e:w:k:H:M:d:hV", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			usage(stdout);
			ret = -1;
			goto out;
		case 'V':
			printf("ibnbd-server %s\n", IBNBD_VERSION);
			ret = -1;
			goto out;
		case 'c':
			cl.config = optarg;
			break;
		case 'l':
			listens[cl.nlisten++] = optarg;
			break;
		case 'e':
			exports[cl.nexports++] = optarg;
			break;
		case 'w':
			cl.workers = optarg;
			break;
		case 'k':
			cl.keepalive_timeout = optarg;
			break;
		case 'H':
			cl.hosts_file = optarg;
			break;
		case 'N':
			cl.no_auth = true;
			break;
		case 'M':
			cl.metrics = optarg;
			break;
		case 'S':
			cl.control_socket = optarg;
			break;
		case 'P':
			cl.poll = true;
			break;
		case 'I':
			cl.poll_idle_us = optarg;
			break;
		case 'd':
			if (log_debug_enable(optarg)) {
				log_err("--debug: unknown category in '%s' (known: io, rdma, ublk, ctl, proto, all)",
					optarg);
				ret = 2;
				goto out;
			}
			break;
		default:
			usage(stderr);
			ret = 2;
			goto out;
		}
	}
	if (optind < argc) {
		log_err("unexpected argument '%s'", argv[optind]);
		ret = 2;
		goto out;
	}
	if (config_from_cmdline(cfg, &cl, err, sizeof(err))) {
		log_err("%s", err);
		ret = 2;
		goto out;
	}
	if (!cfg->workers)
		cfg->workers = default_worker_count();
out:
	free(listens);
	free(exports);
	return ret;
}

int main(int argc, char **argv)
{
	static struct server_config cfg;
	struct export *exports[SERVER_MAX_EXPORTS] = { 0 };
	struct worker_shared shared = { 0 };
	struct registry *registry = NULL;
	struct server_auth *auth = NULL;
	static struct handshakes handshakes;
	struct worker *workers = NULL;
	unsigned int nworkers = 0;
	struct listener *l = NULL;
	struct metrics_server *metrics = NULL;
	struct server_control *control = NULL;
	const char *csock;
	struct server_metrics_src msrc;
	struct server_state state = { .cfg = &cfg, .exports = exports };
	struct pollfd pfd[2];
	sigset_t mask;
	int sfd = -1, ret, rc = 1;
	char err[512], mode[64];

	log_init("ibnbd-server");
	if (argc > 1 && !strcmp(argv[1], "reload"))
		return reload_verb(argc - 1, argv + 1);
	if (argc > 1 && (!strcmp(argv[1], "list-sessions") || !strcmp(argv[1], "list-exports")))
		return server_list_verb(argc - 1, argv + 1);
	config_init(&cfg);
	ret = parse_args(argc, argv, &cfg);
	if (ret)
		return ret < 0 ? 0 : ret;

	/* Signals go to the signalfd only, in every thread (workers inherit). */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGUSR1);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
	sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0) {
		log_err("signalfd: %s", strerror(errno));
		goto out;
	}

	for (unsigned int i = 0; i < cfg.nexports; i++) {
		ret = export_create(&cfg.exports[i], i, &exports[i], err, sizeof(err));
		if (ret) {
			log_err("%s", err);
			goto out;
		}
		exports[i]->from_cmdline = i >= cfg.nfile_exports;
		log_info("export '%s': %s, %llu bytes, logical block %u, physical block %u%s%s, identity %s",
			 exports[i]->name, exports[i]->path, (unsigned long long)exports[i]->size,
			 exports[i]->logical_block_size, exports[i]->physical_block_size,
			 exports[i]->ro ? ", read-only" : "",
			 exports[i]->shared ? ", shared (several writers)" : "",
			 exports[i]->identity);
		if (cfg.nexports && !cfg.no_auth && !cfg.exports[i].nallow)
			log_warn("export '%s' has no allow list: no host may open it (allow = HOSTID ..., or allow = * for every authenticated host)",
				 exports[i]->name);
		else if (cfg.exports[i].nallow)
			log_info("export '%s': %u entr%s in its allow list", exports[i]->name,
				 cfg.exports[i].nallow, cfg.exports[i].nallow == 1 ? "y" : "ies");
		if (exports[i]->identity_unstable)
			log_warn("export '%s': %s has no stable identity (no device-mapper or md UUID, WWID, serial, or UUID on it): its device number stands in, and should it change (renumbered minors), clients fail their devices as if it were another disk",
				 exports[i]->name, exports[i]->path);
	}
	if (cfg.no_auth) {
		log_warn("--no-auth: every host that reaches this server may open every export, and host ids are unproven");
	} else {
		ret = server_auth_create(cfg.hosts_file, &auth, err, sizeof(err));
		if (ret) {
			log_err("%s", err);
			goto out;
		}
		log_info("authenticating hosts: %zu listed in %s; this server's id is %s",
			 server_auth_count(auth), cfg.hosts_file, server_auth_id(auth));
	}
	shared.auth = auth;
	if (registry_create(&registry)) {
		log_err("out of memory");
		goto out;
	}
	cfg.slot_memory_picked = !cfg.limits.max_slot_memory;
	if (fit_slot_memory(&cfg.limits, err, sizeof(err))) {
		log_err("%s", err);
		goto out;
	}
	registry_set_limits(registry, &cfg.limits);
	log_info("limits: %u connections, %u per host, %u sessions per host, %u exports open per session, %llu MiB of slot memory",
		 cfg.limits.max_connections, cfg.limits.max_connections_per_host,
		 cfg.limits.max_sessions_per_host, cfg.limits.max_opens_per_session,
		 (unsigned long long)(cfg.limits.max_slot_memory >> 20));
	shared.registry = registry;
	shared.max_opens = cfg.limits.max_opens_per_session;
	read_boot_id(shared.boot_id);
	shared.keepalive_timeout_ms = cfg.keepalive_timeout * 1000;
	shared.poll = cfg.poll;
	if (handshakes_init(&handshakes, cfg.max_handshakes, cfg.max_handshakes_per_address)) {
		log_err("out of memory");
		goto out;
	}
	log_info("handshakes: at most %u connections before HELLO, %u from one address",
		 cfg.max_handshakes, cfg.max_handshakes_per_address);
	shared.handshakes = &handshakes;
	shared.exports = exports;
	shared.nexports = cfg.nexports;
	shared.limits = (struct ibnbd_conn_limits){
		.max_queue_depth = (uint16_t)cfg.queue_depth,
		.max_io_size = cfg.max_io_size,
		.features = IBNBD_FEAT_ALL,
	};

	workers = calloc(cfg.workers, sizeof(*workers));
	if (!workers) {
		log_err("out of memory");
		goto out;
	}
	for (nworkers = 0; nworkers < cfg.workers; nworkers++) {
		ret = worker_create(&workers[nworkers], nworkers, &shared);
		if (ret) {
			log_err("starting worker %u failed: %s%s", nworkers, strerror(-ret),
				ret == -ENODEV || ret == -ENOENT
					? " (no RDMA CM: load rdma_ucm and configure an RDMA device, e.g. 'rdma link add rxe0 type rxe netdev eth0')"
					: "");
			nworkers++; /* destroy the half-built one too */
			goto out;
		}
	}
	ret = listener_create(&cfg, workers, nworkers, &l);
	if (ret)
		goto out;
	state.nexports = &shared.nexports;
	state.workers = workers;
	state.nworkers = nworkers;
	msrc = (struct server_metrics_src){ .workers = workers, .nworkers = nworkers,
					    .exports = exports, .nexports = &shared.nexports,
					    .registry = registry };
	csock = cfg.control_socket[0] ? cfg.control_socket : ctl_server_socket_path();
	if (!cfg.control_socket[0] && !getenv("IBNBD_SERVER_SOCKET") &&
	    mkdir(IBNBD_RUNDIR, 0755) < 0 && errno != EEXIST)
		log_warn("cannot create %s: %s", IBNBD_RUNDIR, strerror(errno));
	if (strcmp(csock, "none")) {
		/* Only for the operator's look: a server runs without it. */
		if (server_control_start(csock, &msrc, &control, err, sizeof(err)))
			log_warn("no control socket: %s", err);
		else
			log_info("control socket %s", csock);
	}
	if (cfg.metrics[0]) {
		if (metrics_server_start(cfg.metrics, server_metrics_fill, &msrc, &metrics, err,
					 sizeof(err))) {
			log_err("%s", err);
			goto out;
		}
		log_info("metrics: http://%s/metrics", cfg.metrics);
	}
	if (cfg.keepalive_timeout)
		snprintf(err, sizeof(err), "%u s", cfg.keepalive_timeout);
	else
		snprintf(err, sizeof(err), "off");
	log_info("serving %u export(s) with %u worker(s) (%s), keepalive timeout %s",
		 cfg.nexports, nworkers, busypoll_describe(&cfg.poll, mode, sizeof(mode)), err);
	/* Under systemd (Type=notify) units ordered after us start now. */
	ret = ibnbd_sd_notify("READY=1");
	if (ret)
		log_warn("cannot tell the service manager we are ready: %s", strerror(-ret));

	pfd[0] = (struct pollfd){ .fd = sfd, .events = POLLIN };
	pfd[1] = (struct pollfd){ .fd = listener_fd(l), .events = POLLIN };
	for (;;) {
		struct signalfd_siginfo si;

		if (poll(pfd, 2, -1) < 0 && errno != EINTR) {
			log_err("poll: %s", strerror(errno));
			goto out;
		}
		if (pfd[1].revents)
			listener_handle_events(l);
		if (read(sfd, &si, sizeof(si)) != sizeof(si))
			continue;
		if (si.ssi_signo == SIGUSR1) {
			print_stats(workers, nworkers, registry, "SIGUSR1");
		} else if (si.ssi_signo == SIGHUP) {
			if (!auth)
				log_info("SIGHUP: no hosts file to re-read (--no-auth)");
			else if (server_auth_reload(auth, err, sizeof(err)))
				log_err("SIGHUP: %s; the hosts listed before stay", err);
			else
				log_info("SIGHUP: %zu host(s) in %s", server_auth_count(auth),
					 cfg.hosts_file);
			if (!cfg.config_path[0])
				log_info("SIGHUP: no configuration file to re-read (started without --config)");
			else if (server_reload(&state, err, sizeof(err)))
				log_err("SIGHUP: %s; the exports stay as they were", err);
		} else if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
			log_info("%s: no new connections; finishing in-flight IO",
				 strsignal((int)si.ssi_signo));
			ibnbd_sd_notify("STOPPING=1");
			break;
		}
	}
	rc = 0;
out:
	/* Stop accepting first, then let every worker drain and exit. */
	server_control_stop(control);
	metrics_server_stop(metrics);
	listener_destroy(l);
	for (unsigned int i = 0; i < nworkers; i++)
		worker_stop(&workers[i]);
	for (unsigned int i = 0; i < nworkers; i++)
		worker_destroy(&workers[i]);
	if (workers)
		print_stats(workers, nworkers, registry, "exit");
	free(workers);
	/* What clients were told is written may sit in the device's or the
	 * filesystem's cache: a stop (an upgrade, a reboot) makes it durable
	 * first, so only a crash of the host can lose unflushed writes. */
	for (unsigned int i = 0; i < SERVER_MAX_EXPORTS; i++)
		if (exports[i] && !exports[i]->ro && exports[i]->fd >= 0 &&
		    fdatasync(exports[i]->fd))
			log_err("export '%s': flushing %s before exit failed: %s", exports[i]->name,
				exports[i]->path, strerror(errno));
	for (unsigned int i = 0; i < SERVER_MAX_EXPORTS; i++)
		export_destroy(exports[i]);
	server_state_free(&state);
	registry_destroy(registry);
	handshakes_destroy(&handshakes);
	server_auth_destroy(auth);
	if (sfd >= 0)
		close(sfd);
	return rc;
}
