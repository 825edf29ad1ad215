// SPDX-License-Identifier: GPL-2.0-only
/*
 * ibnbd-client daemon: the control thread. Holds the single-instance lock,
 * accepts on the control socket (ctl.h), and runs every request on a
 * thread of its own, so that a verb that waits - a map to a server that
 * does not answer, an unmap of a device whose server is gone - holds back
 * no other, and signals are always taken at once. It never touches the IO
 * path.
 *
 * SIGTERM (and SIGINT) is an upgrade, not an unmap: the daemon leaves its
 * devices to the next one, which takes them over from the state file (the
 * kernel holds their IO meanwhile). `ibnbd-client unmap --all` unmaps.
 */
#include "control/daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <infiniband/verbs.h>
#include <mntent.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "control/client.h"
#include "config.h"
#include "control/client_conf.h"
#include "control/client_metrics.h"
#include "ctl.h"
#include "control/devlink.h"
#include "control/maps.h"
#include "hostid.h"
#include "log.h"
#include "metrics_http.h"
#include "parse.h"
#include "sd_notify.h"
#include "verbs.h"

/* Requests served at once; more wait in the socket's backlog. */
#define MAX_REQUEST_THREADS 32
/* How often devices a predecessor left, not taken over yet, are tried. */
#define RECOVERY_RETRY_MS 3000
/* How long a stop waits for verbs under way before it leaves anyway. */
#define STOP_WAIT_MS 5000
#define DEFAULT_CONFIG IBNBD_SYSCONFDIR "/client.conf"

struct daemon {
	struct client *client;
	struct ctl_server *ctl;
	int lock_fd;
	int sig_fd;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned int running; /* request threads */
	bool retrying;        /* a recovery retry thread runs */
	struct maps *maps;    /* client.conf's [map NAME] sections */
	bool mapping;         /* a maps thread runs */
	struct metrics_server *metrics; /* --metrics: /metrics over HTTP */
	/* client.conf: the daemon options it had at the start or the last
	 * reload (a reload says which changed), and whether it was named
	 * (--config: it must exist). reload_lock serialises reloads. */
	struct client_config *file_cfg;
	bool config_named;
	pthread_mutex_t reload_lock;
};

struct request_job {
	struct daemon *d;
	int fd;
};

static const char *rundir(void)
{
	const char *env = getenv("IBNBD_RUNDIR");

	return env && *env ? env : IBNBD_RUNDIR;
}

/* One daemon per machine: an exclusive flock on <rundir>/client.lock,
 * which holds the owner's pid for the error message. */
static int take_lock(struct daemon *d)
{
	char path[4096], pid[32];
	ssize_t n;

	snprintf(path, sizeof(path), "%s/client.lock", rundir());
	d->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (d->lock_fd < 0) {
		log_err("cannot open %s: %s", path, strerror(errno));
		return -errno;
	}
	if (flock(d->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		int ret = -errno;

		n = pread(d->lock_fd, pid, sizeof(pid) - 1, 0);
		pid[n > 0 ? n : 0] = '\0';
		pid[strcspn(pid, "\n")] = '\0';
		if (ret == -EWOULDBLOCK)
			log_err("another ibnbd-client daemon is already running (pid %s); "
				"stop it first", *pid ? pid : "unknown");
		else
			log_err("cannot lock %s: %s", path, strerror(-ret));
		return ret;
	}
	n = snprintf(pid, sizeof(pid), "%d\n", getpid());
	if (ftruncate(d->lock_fd, 0) < 0 || pwrite(d->lock_fd, pid, (size_t)n, 0) != n)
		log_warn("cannot write the pid into %s: %s", path, strerror(errno));
	return 0;
}

/* The environment errors an operator can fix, said before anything else. */
static int check_environment(void)
{
	struct ibv_device **devs;
	int n = 0;

	if (access("/dev/ublk-control", R_OK | W_OK) < 0) {
		log_err("no ublk driver: /dev/ublk-control is %s; load it with 'modprobe ublk_drv' "
			"(Linux 6.0 or later, CONFIG_BLK_DEV_UBLK)",
			errno == ENOENT ? "missing" : strerror(errno));
		return -ENODEV;
	}
	devs = ibv_get_device_list(&n);
	if (devs)
		ibv_free_device_list(devs);
	if (n <= 0) {
		log_err("no RDMA device: ibv_devices lists none; load the NIC's RDMA driver, or "
			"for soft-RoCE: rdma link add rxe0 type rxe netdev ETH");
		return -ENODEV;
	}
	return 0;
}

static json_object *handle_map(struct daemon *d, json_object *req)
{
	json_object *port = json_object_object_get(req, "port");
	json_object *name = json_object_object_get(req, "name");
	json_object *loss = json_object_object_get(req, "loss_timeout");
	const char *access = json_object_get_string(json_object_object_get(req, "access"));
	struct map_args args = {
		.server = json_object_get_string(json_object_object_get(req, "server")),
		.export_name = json_object_get_string(json_object_object_get(req, "export")),
		.name = name ? json_object_get_string(name) : NULL,
	};
	bool persist = json_object_get_boolean(json_object_object_get(req, "persist"));
	char dev[256], err[512], why[256];
	struct map_conf mc = { 0 };
	bool mapped_ro = false;
	json_object *resp;

	if (!args.server || !*args.server || !args.export_name || !*args.export_name ||
	    !port || json_object_get_int(port) < 1 || json_object_get_int(port) > 65535)
		return ctl_error("map needs server, port (1-65535) and export");
	if (access && strcmp(access, "ro") && strcmp(access, "rw"))
		return ctl_error("access must be \"ro\" or \"rw\", not \"%s\"", access);
	if (loss) {
		/* Seconds, 0: forever (the command line's --loss-timeout). */
		if (!json_object_is_type(loss, json_type_int) || json_object_get_int64(loss) < 0 ||
		    json_object_get_int64(loss) > CLI_MAX_SECONDS)
			return ctl_error("loss_timeout must be a number of seconds from 0 to %d",
					 CLI_MAX_SECONDS);
		args.loss_timeout_s = json_object_get_int(loss) ? json_object_get_int(loss) : -1;
	}
	args.port = (uint16_t)json_object_get_int(port);
	args.read_only = access && !strcmp(access, "ro");
	args.rw_required = access && !strcmp(access, "rw");
	args.mapped_ro = &mapped_ro;
	if (persist) {
		/* A persistent map is known by its name, at every start: the
		 * export's unless one is given. */
		if (!args.name)
			args.name = args.export_name;
		if (cli_name_check(args.name, why, sizeof(why)))
			return ctl_error("map --persist needs a device name (--name): the export "
					 "name does not do: %s", why);
		if (strlen(args.server) >= sizeof(mc.server.host) ||
		    strlen(args.export_name) >= sizeof(mc.export_name))
			return ctl_error("the server or export name is too long to record");
		snprintf(mc.name, sizeof(mc.name), "%s", args.name);
		snprintf(mc.server.host, sizeof(mc.server.host), "%s", args.server);
		mc.server.port = args.port;
		snprintf(mc.export_name, sizeof(mc.export_name), "%s", args.export_name);
		mc.read_only = args.read_only;
		mc.loss_timeout_s = args.loss_timeout_s;
		if (maps_waiting(d->maps, mc.name))
			return ctl_error("'%s' is already configured and not mapped yet (see "
					 "'ibnbd-client list')", mc.name);
	}
	if (client_map(d->client, &args, dev, sizeof(dev), err, sizeof(err)))
		return ctl_error("%s", err);
	log_info("mapped %s from %s:%u as %s", args.export_name, args.server, args.port, dev);
	if (persist && maps_persist(d->maps, &mc, err, sizeof(err)))
		return ctl_error("%s is mapped as %s, but not made persistent: %s", mc.name, dev,
				 err);
	resp = ctl_ok();
	json_object_object_add(resp, "device", json_object_new_string(dev));
	if (mapped_ro)
		json_object_object_add(resp, "note", json_object_new_string(
			"the export is read-only for this host: mapped read-only (--rw refuses instead)"));
	return resp;
}

static json_object *handle_unmap(struct daemon *d, json_object *req)
{
	const char *dev = json_object_get_string(json_object_object_get(req, "device"));
	const char *name = json_object_get_string(json_object_object_get(req, "name"));
	bool force = json_object_get_boolean(json_object_object_get(req, "force"));
	bool persist = json_object_get_boolean(json_object_object_get(req, "persist"));
	char err[512];

	if (!dev || !*dev)
		return ctl_error("unmap needs a device");
	if (!name || !*name)
		name = dev;
	/* A configured map not made yet: stop trying it. */
	if (maps_unmap_begin(d->maps, name)) {
		log_info("map %s: no longer tried%s", name,
			 persist ? "" : " (until the next start: it stays in the configuration)");
	} else if (client_unmap(d->client, dev, force, err, sizeof(err))) {
		maps_unmap_failed(d->maps, name);
		return ctl_error("%s", err);
	} else {
		log_info("unmapped %s%s", dev, force ? " (forced)" : "");
	}
	if (persist && maps_forget(d->maps, name, err, sizeof(err)))
		return ctl_error("%s is unmapped, but still in the configuration: %s", name, err);
	return ctl_ok();
}

/* What `list` shows: the devices, and the maps not made yet. */
static json_object *list_devices(struct daemon *d)
{
	json_object *devs = client_list(d->client);

	maps_describe(d->maps, devs);
	return devs;
}

/* A scrape of /metrics (on the metrics thread): the same as `list`. */
static void fill_metrics(void *arg, struct prom *p)
{
	struct daemon *d = arg;
	json_object *devs = list_devices(d);

	client_metrics_render(devs, client_host_id(d->client), p);
	json_object_put(devs);
}

/* The daemon options of a and b that differ, named as in the file. */
static void options_changed(const struct client_config *a, const struct client_config *b,
			    char *out, size_t len)
{
	const struct {
		const char *key;
		bool differs;
	} opts[] = {
		{ "workers", a->workers != b->workers },
		{ "dead_timeout", a->dead_timeout_ms != b->dead_timeout_ms },
		{ "loss_timeout", a->loss_timeout_s != b->loss_timeout_s },
		{ "io_timeout", a->io_timeout_s != b->io_timeout_s },
		{ "host_id", strcmp(a->host_id, b->host_id) != 0 },
		{ "key_file", strcmp(a->key_file, b->key_file) != 0 },
		{ "metrics", strcmp(a->metrics, b->metrics) != 0 },
		{ "max_io_size", a->max_io_size != b->max_io_size },
		{ "poll", a->poll.on != b->poll.on || a->poll.idle_us != b->poll.idle_us },
	};
	size_t n = 0;

	*out = '\0';
	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++)
		if (opts[i].differs && n < len)
			n += (size_t)snprintf(out + n, len - n, "%s%s", n ? ", " : "", opts[i].key);
}

static void make_maps(struct daemon *d);

/*
 * SIGHUP and `ibnbd-client reload`: client.conf again. Its maps apply now
 * (maps_reload()); its daemon options at the next start, as the log and
 * the answer say. A file with an error changes nothing.
 */
static json_object *reload_config(struct daemon *d)
{
	struct client_config *cfg = calloc(1, sizeof(*cfg));
	struct maps_changes n;
	char err[512], changed[256] = "";
	json_object *resp;
	int ret;

	if (!cfg)
		return ctl_error("out of memory");
	pthread_mutex_lock(&d->reload_lock);
	ret = maps_reload(d->maps, d->config_named, cfg, &n, err, sizeof(err));
	if (!ret) {
		options_changed(d->file_cfg, cfg, changed, sizeof(changed));
		memcpy(d->file_cfg, cfg, sizeof(*cfg));
	}
	pthread_mutex_unlock(&d->reload_lock);
	free(cfg);
	if (ret) {
		log_err("reload: %s; the configuration in use is kept", err);
		return ctl_error("%s; the configuration in use is kept", err);
	}
	log_info("reload: %u map(s) added, %u removed, %u changed", n.added, n.removed, n.changed);
	if (*changed)
		log_warn("reload: %s changed in the file: it takes effect at the next start "
			 "(which keeps the devices)", changed);
	make_maps(d);
	resp = ctl_ok();
	json_object_object_add(resp, "added", json_object_new_int((int)n.added));
	json_object_object_add(resp, "removed", json_object_new_int((int)n.removed));
	json_object_object_add(resp, "changed", json_object_new_int((int)n.changed));
	json_object_object_add(resp, "restart_needed", json_object_new_string(changed));
	return resp;
}

static json_object *handle_request(void *ctx, json_object *req)
{
	struct daemon *d = ctx;
	const char *cmd = json_object_get_string(json_object_object_get(req, "cmd"));
	json_object *resp;

	if (!cmd)
		return ctl_error("the request has no \"cmd\"");
	log_debug(LOG_CAT_CTL, "control: %s", json_object_to_json_string(req));
	if (!strcmp(cmd, "map"))
		return handle_map(d, req);
	if (!strcmp(cmd, "unmap"))
		return handle_unmap(d, req);
	if (!strcmp(cmd, "list")) {
		resp = ctl_ok();
		json_object_object_add(resp, "devices", list_devices(d));
		return resp;
	}
	if (!strcmp(cmd, "reload"))
		return reload_config(d);
	if (!strcmp(cmd, "host-id")) {
		resp = ctl_ok();
		json_object_object_add(resp, "host_id",
				       json_object_new_string(client_host_id(d->client)));
		return resp;
	}
	return ctl_error("unknown command \"%s\" (map, unmap, list, reload, host-id)", cmd);
}

static void *request_thread(void *arg)
{
	struct request_job *j = arg;
	struct daemon *d = j->d;

	ctl_serve_fd(j->fd, handle_request, d);
	free(j);
	pthread_mutex_lock(&d->lock);
	d->running--;
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
	return NULL;
}

/* Takes one connection off the socket and serves it on a thread of its
 * own; past MAX_REQUEST_THREADS, on this thread, which only happens when
 * the socket is flooded. */
static void accept_request(struct daemon *d)
{
	int fd = ctl_server_accept(d->ctl);
	struct request_job *j;
	pthread_t t;

	if (fd < 0)
		return;
	j = malloc(sizeof(*j));
	pthread_mutex_lock(&d->lock);
	if (j && d->running < MAX_REQUEST_THREADS) {
		*j = (struct request_job){ d, fd };
		d->running++;
		if (!pthread_create(&t, NULL, request_thread, j)) {
			pthread_detach(t);
			pthread_mutex_unlock(&d->lock);
			return;
		}
		d->running--;
	}
	pthread_mutex_unlock(&d->lock);
	free(j);
	{
		json_object *resp = ctl_error("the daemon is busy with %u requests; try again",
					      MAX_REQUEST_THREADS);
		const char *s = json_object_to_json_string_ext(resp, JSON_C_TO_STRING_PLAIN);

		if (write(fd, s, strlen(s)) < 0 || write(fd, "\n", 1) < 0)
			log_debug(LOG_CAT_CTL, "control: cannot answer a request refused as busy");
		json_object_put(resp);
		close(fd);
	}
}

/* A background thread of d's ends: *busy (its "running" flag) clears. */
static void background_done(struct daemon *d, bool *busy)
{
	pthread_mutex_lock(&d->lock);
	*busy = false;
	d->running--;
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
}

/* Starts fn on a thread of its own unless *busy says one runs already;
 * it counts as a request under way, which a stop waits for. */
static void start_background(struct daemon *d, bool *busy, void *(*fn)(void *))
{
	pthread_t t;

	pthread_mutex_lock(&d->lock);
	if (!*busy) {
		*busy = true;
		d->running++;
		if (pthread_create(&t, NULL, fn, d)) {
			*busy = false;
			d->running--;
		} else {
			pthread_detach(t);
		}
	}
	pthread_mutex_unlock(&d->lock);
}

static void *retry_thread(void *arg)
{
	struct daemon *d = arg;
	int n = client_retry_recovery(d->client);

	if (n > 0)
		log_info("took over %d more device(s) left by the previous daemon", n);
	background_done(d, &d->retrying);
	return NULL;
}

/* Devices a predecessor left and this daemon has not taken over yet are
 * tried again, every RECOVERY_RETRY_MS, off the control thread. */
static void retry_recovery(struct daemon *d)
{
	if (client_has_unrecovered(d->client))
		start_background(d, &d->retrying, retry_thread);
}

static void *maps_thread(void *arg)
{
	struct daemon *d = arg;

	maps_try(d->maps);
	background_done(d, &d->mapping);
	return NULL;
}

/* The configured maps that are due are made off the control thread: a
 * server that does not answer holds back nothing else. */
static void make_maps(struct daemon *d)
{
	start_background(d, &d->mapping, maps_thread);
}

/* No new request is taken; those under way get STOP_WAIT_MS. False if
 * some did not end (the caller must not tear down what they use). */
static bool wait_requests(struct daemon *d)
{
	struct timespec ts;
	bool done;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += STOP_WAIT_MS / 1000;
	pthread_mutex_lock(&d->lock);
	while (d->running && pthread_cond_timedwait(&d->cond, &d->lock, &ts) == 0)
		;
	done = !d->running;
	pthread_mutex_unlock(&d->lock);
	return done;
}

static int setup_signals(struct daemon *d)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	if (pthread_sigmask(SIG_BLOCK, &set, NULL))
		return -EINVAL;
	signal(SIGPIPE, SIG_IGN);
	d->sig_fd = signalfd(-1, &set, SFD_CLOEXEC);
	return d->sig_fd < 0 ? -errno : 0;
}

/* Whether the mount at dir holds path (dir is path or one of its parents). */
static bool mount_holds(const char *dir, const char *path)
{
	size_t n = strlen(dir);

	if (!strcmp(dir, "/"))
		return true;
	return !strncmp(dir, path, n) && (path[n] == '\0' || path[n] == '/');
}

/*
 * Our private mount namespace starts as a copy of the host's. Our copy of a
 * filesystem on a disk would keep that filesystem alive after the host
 * unmounts it: a device that cannot be detached or checked, an xfs that will
 * not mount again (its UUID still "mounted"), an ibnbd device a previous
 * daemon served that unmapping would wait for forever. We read nothing from
 * them but what lies under keep[] (our run directory, /etc): drop the rest.
 */
static void detach_disk_mounts(const char *const *keep, size_t nkeep)
{
	FILE *f = setmntent("/proc/self/mounts", "r");
	struct mntent *m;
	struct stat st;

	if (!f)
		return;
	while ((m = getmntent(f))) {
		bool needed = !strcmp(m->mnt_dir, "/");

		for (size_t i = 0; i < nkeep && !needed; i++)
			needed = mount_holds(m->mnt_dir, keep[i]);
		if (needed || strncmp(m->mnt_fsname, "/dev/", 5) || stat(m->mnt_fsname, &st) ||
		    !S_ISBLK(st.st_mode))
			continue;
		if (umount2(m->mnt_dir, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
			log_warn("cannot detach our copy of %s on %s: %s", m->mnt_fsname,
				 m->mnt_dir, strerror(errno));
		else
			log_debug(LOG_CAT_CTL, "detached our copy of %s on %s", m->mnt_fsname,
				  m->mnt_dir);
	}
	endmntent(f);
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: ibnbd-client daemon [--config FILE] [--foreground] [--workers N]\n"
		"         [--dead-timeout SECS] [--loss-timeout SECS] [--io-timeout SECS]\n"
		"         [--host-id ID] [--key-file FILE] [--metrics ADDR:PORT]\n"
		"         [--max-io-size BYTES] [--poll] [--poll-idle-us US]\n"
		"  --config         options and persistent maps (default " DEFAULT_CONFIG "\n"
		"                   when present; see ibnbd-client.conf(5)); options given\n"
		"                   here win over the file's\n"
		"  --dead-timeout   silence after which a server is declared dead (default 4)\n"
		"  --loss-timeout   how long IO waits for a lost server before failing\n"
		"                   (default 120; 0 = wait forever)\n"
		"  --io-timeout     unanswered request: reconnect and send it again\n"
		"                   (default 30; 0 = never)\n"
		"  --host-id        the id presented to servers (default: derived from\n"
		"                   /etc/machine-id; see 'ibnbd-client host-id')\n"
		"  --key-file       this host's key, for servers that authenticate hosts\n"
		"                   (default /etc/ibnbd/client.key when present;\n"
		"                   see 'ibnbd-client gen-key')\n"
		"  --metrics        serve Prometheus metrics at http://ADDR:PORT/metrics\n"
		"  --max-io-size    the largest request sent to a server (default 128K, up\n"
		"                   to 1M; the server's max_io_size may lower it); each\n"
		"                   device pins queues x 64 x this much memory\n"
		"  --poll           workers busy-poll their completion queues and io_uring\n"
		"                   instead of sleeping (a CPU each while they serve)\n"
		"  --poll-idle-us   polling, a worker idle this many microseconds sleeps\n"
		"                   until the next event (implies --poll; 0: never)\n"
		"SIGTERM leaves the devices to the next daemon; 'unmap --all' unmaps.\n");
}

int daemon_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "workers", required_argument, NULL, 'w' },
		{ "dead-timeout", required_argument, NULL, 'D' },
		{ "loss-timeout", required_argument, NULL, 'L' },
		{ "io-timeout", required_argument, NULL, 'T' },
		{ "host-id", required_argument, NULL, 'H' },
		{ "key-file", required_argument, NULL, 'K' },
		{ "max-io-size", required_argument, NULL, 'S' },
		{ "metrics", required_argument, NULL, 'M' },
		{ "poll", no_argument, NULL, 'P' },
		{ "poll-idle-us", required_argument, NULL, 'I' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct daemon d = { .lock_fd = -1, .sig_fd = -1, .lock = PTHREAD_MUTEX_INITIALIZER,
			    .cond = PTHREAD_COND_INITIALIZER,
			    .reload_lock = PTHREAD_MUTEX_INITIALIZER };
	struct client_config *cfg = calloc(1, sizeof(*cfg)), *cl = calloc(1, sizeof(*cl));
	struct client_opts copts = { 0 };
	const char *config = NULL;
	bool foreground = false;
	int c, ret, ready[2] = { -1, -1 };
	char state_path[4096], err[512];

	d.file_cfg = calloc(1, sizeof(*d.file_cfg));
	if (!cfg || !cl || !d.file_cfg) {
		log_err("out of memory");
		return 1;
	}
	/* The command line wins over the file: collected apart, laid over. */
	optind = 1;
	while ((c = getopt_long(argc, argv, "c:fw:D:L:T:H:K:M:S:h", opts, NULL)) != -1) {
		/* The options that client.conf has too, by their key there;
		 * the option is the key with '-' for '_'. */
		static const struct { char opt; const char *key; } keys[] = {
			{ 'w', "workers" },    { 'D', "dead_timeout" }, { 'L', "loss_timeout" },
			{ 'T', "io_timeout" }, { 'H', "host_id" },      { 'K', "key_file" },
			{ 'M', "metrics" },    { 'S', "max_io_size" },  { 'P', "poll" },
			{ 'I', "poll_idle_us" },
		};
		const char *key = NULL;
		char shown[64];

		switch (c) {
		case 'c':
			config = optarg;
			continue;
		case 'f':
			foreground = true;
			continue;
		case 'h':
			usage(stdout);
			return 0;
		}
		for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
			if (c == keys[i].opt)
				key = keys[i].key;
		if (!key) {
			usage(stderr);
			return 2;
		}
		snprintf(shown, sizeof(shown), "--%s", key);
		for (char *p = shown; *p; p++)
			if (*p == '_')
				*p = '-';
		if (client_conf_set(cl, key, c == 'P' ? "yes" : optarg, shown, err, sizeof(err))) {
			log_err("%s", err);
			return 2;
		}
		if (c == 'I')
			cl->poll.on = true; /* an idle time means polling */
	}
	if (optind < argc) {
		log_err("unexpected argument '%s' (see ibnbd-client daemon --help)", argv[optind]);
		return 2;
	}
	/* The default file is read when it is there; a named one must be. */
	if (config || !access(DEFAULT_CONFIG, F_OK)) {
		if (client_conf_load(cfg, config ? config : DEFAULT_CONFIG, err, sizeof(err))) {
			log_err("%s", err);
			return 2;
		}
	}
	memcpy(d.file_cfg, cfg, sizeof(*cfg));
	d.config_named = config != NULL;
	client_conf_overlay(cfg, cl);
	free(cl);
	copts.workers = cfg->workers;
	copts.dead_timeout_ms = cfg->dead_timeout_ms;
	copts.loss_timeout_s = cfg->loss_timeout_s;
	copts.io_timeout_s = cfg->io_timeout_s;
	copts.max_io_bytes = cfg->max_io_size;
	copts.poll = cfg->poll;
	copts.host_id = cfg->host_id[0] ? cfg->host_id : NULL;
	copts.key_file = cfg->key_file[0] ? cfg->key_file : NULL;
	if (mkdir(rundir(), 0755) < 0 && errno != EEXIST) {
		log_err("cannot create %s: %s", rundir(), strerror(errno));
		return 1;
	}
	if (check_environment())
		return 1;
	if (!foreground) {
		/* The parent returns once the child serves the socket, so a
		 * 'map' right after 'daemon' finds it. */
		pid_t pid;
		char b;

		if (pipe2(ready, O_CLOEXEC) < 0)
			return 1;
		pid = fork();
		if (pid < 0)
			return 1;
		if (pid > 0) {
			close(ready[1]);
			return read(ready[0], &b, 1) == 1 ? 0 : 1;
		}
		close(ready[0]);
		setsid();
	}
	if (take_lock(&d))
		return 1;
	/* A filesystem on one of our own devices must never be flushed
	 * through us while we exit: keep our mounts apart. */
	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		log_warn("cannot get a mount namespace of its own: %s", strerror(errno));
	else
		detach_disk_mounts((const char *const[]){ rundir(), IBNBD_SYSCONFDIR, "/etc",
							  config ? config : DEFAULT_CONFIG }, 4);
	ret = setup_signals(&d);
	if (ret) {
		log_err("cannot set up signals: %s", strerror(-ret));
		goto out;
	}
	snprintf(state_path, sizeof(state_path), "%s/devices.json", rundir());
	devlink_init(rundir());
	copts.state_path = state_path;
	ret = client_create(&copts, &d.client, err, sizeof(err));
	if (ret) {
		log_err("%s", err);
		goto out;
	}
	if (verbs_pin_limit())
		log_info("locked-memory limit %llu MiB: it bounds the devices this daemon can map "
			 "(each pins queues x queue depth x max IO size of buffers)",
			 (unsigned long long)(verbs_pin_limit() >> 20));
	log_info("%u worker(s), %s", client_workers(d.client),
		 busypoll_describe(&cfg->poll, err, sizeof(err)));
	log_info("host id %s, %s", client_host_id(d.client),
		 client_has_key(d.client) ? "authenticating with its key"
					  : "no key: only servers running with --no-auth will take it");
	/* Devices a killed daemon left behind come back before the socket
	 * answers, so a 'list' right after start shows them. */
	ret = client_recover(d.client);
	if (ret > 0)
		log_info("recovered %d device(s) left by the previous daemon", ret);
	/* Then what the configuration asks for and is not there yet. */
	d.maps = maps_create(d.client, config ? config : DEFAULT_CONFIG, cfg);
	if (!d.maps) {
		log_err("out of memory");
		ret = -ENOMEM;
		goto out;
	}
	if (cfg->nmaps)
		log_info("%u persistent map(s) in %s", cfg->nmaps, config ? config : DEFAULT_CONFIG);
	if (cfg->metrics[0]) {
		ret = metrics_server_start(cfg->metrics, fill_metrics, &d, &d.metrics, err,
					   sizeof(err));
		if (ret) {
			log_err("%s", err);
			goto out;
		}
		log_info("metrics: http://%s/metrics", cfg->metrics);
	}
	ret = ctl_server_create(ctl_socket_path(), &d.ctl);
	if (ret) {
		log_err("cannot listen on %s: %s", ctl_socket_path(), strerror(-ret));
		goto out;
	}
	log_info("ready, control socket %s", ctl_socket_path());
	if (ibnbd_sd_notify("READY=1"))
		log_warn("cannot tell the service manager we are ready");
	if (ready[1] >= 0) {
		if (write(ready[1], "r", 1) != 1)
			log_warn("cannot tell the parent we are ready");
		close(ready[1]);
		ready[1] = -1;
	}
	for (int64_t retry_at = clock_now_ms() + RECOVERY_RETRY_MS;;) {
		struct pollfd pfd[2] = {
			{ .fd = ctl_server_fd(d.ctl), .events = POLLIN },
			{ .fd = d.sig_fd, .events = POLLIN },
		};
		bool unrecovered = client_has_unrecovered(d.client);
		int64_t now = clock_now_ms(), maps_in = maps_due_in(d.maps, now);
		int timeout = -1, n;

		/* By the clock, not by idleness: a busy control socket (a
		 * script polling `list`) must not hold the retries off. */
		if (unrecovered && now >= retry_at) {
			retry_recovery(&d);
			retry_at = now + RECOVERY_RETRY_MS;
		}
		if (maps_in == 0) {
			make_maps(&d);
			maps_in = 1000; /* look again: the thread may be busy */
		}
		if (unrecovered)
			timeout = (int)(retry_at - now > 0 ? retry_at - now : 0);
		if (maps_in > 0 && (timeout < 0 || maps_in < timeout))
			timeout = (int)maps_in;
		n = poll(pfd, 2, timeout);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			ret = -errno;
			break;
		}
		if (n == 0)
			continue;
		if (pfd[1].revents) {
			struct signalfd_siginfo si;

			if (read(d.sig_fd, &si, sizeof(si)) != sizeof(si))
				continue;
			if (si.ssi_signo == SIGHUP) {
				log_info("SIGHUP: reading %s again", config ? config : DEFAULT_CONFIG);
				json_object_put(reload_config(&d));
				continue;
			}
			log_info("%s: leaving the devices to the next daemon and exiting "
				 "('ibnbd-client unmap --all' unmaps them)", strsignal((int)si.ssi_signo));
			ibnbd_sd_notify("STOPPING=1");
			ret = 0;
			break;
		}
		if (pfd[0].revents)
			accept_request(&d);
	}
	/* No new request from here; those under way finish first. */
	ctl_server_destroy(d.ctl);
	d.ctl = NULL;
	if (!wait_requests(&d)) {
		/* A verb is stuck (a server that does not answer): leave as
		 * after a crash. The kernel holds the devices' IO, the state
		 * file lists them, the next daemon takes them over. */
		log_warn("a request is still under way after %d s: exiting without waiting for it",
			 STOP_WAIT_MS / 1000);
		_exit(0);
	}
out:
	ctl_server_destroy(d.ctl);
	metrics_server_stop(d.metrics);
	client_destroy(d.client);
	maps_destroy(d.maps);
	free(cfg);
	free(d.file_cfg);
	if (d.sig_fd >= 0)
		close(d.sig_fd);
	if (d.lock_fd >= 0)
		close(d.lock_fd);
	return ret ? 1 : 0;
}
