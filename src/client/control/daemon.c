// SPDX-License-Identifier: GPL-2.0-only
/*
 * ibnbd-client daemon: the control thread. Holds the single-instance lock,
 * serves the control socket (ctl.h) and hands map/unmap/list to the data
 * plane (client.h). It never touches the IO path.
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

#include "control/client.h"
#include "config.h"
#include "control/ctl.h"
#include "log.h"
#include "parse.h"
#include "sd_notify.h"

struct daemon {
	struct client *client;
	struct ctl_server *ctl;
	int lock_fd;
	int sig_fd;
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
	const char *access = json_object_get_string(json_object_object_get(req, "access"));
	struct map_args args = {
		.server = json_object_get_string(json_object_object_get(req, "server")),
		.export_name = json_object_get_string(json_object_object_get(req, "export")),
		.name = name ? json_object_get_string(name) : NULL,
	};
	char dev[256], err[512];
	json_object *resp;

	if (!args.server || !*args.server || !args.export_name || !*args.export_name ||
	    !port || json_object_get_int(port) < 1 || json_object_get_int(port) > 65535)
		return ctl_error("map needs server, port (1-65535) and export");
	if (access && strcmp(access, "ro") && strcmp(access, "rw"))
		return ctl_error("access must be \"ro\" or \"rw\", not \"%s\"", access);
	args.port = (uint16_t)json_object_get_int(port);
	args.read_only = access && !strcmp(access, "ro");
	if (client_map(d->client, &args, dev, sizeof(dev), err, sizeof(err)))
		return ctl_error("%s", err);
	log_info("mapped %s from %s:%u as %s", args.export_name, args.server, args.port, dev);
	resp = ctl_ok();
	json_object_object_add(resp, "device", json_object_new_string(dev));
	return resp;
}

static json_object *handle_unmap(struct daemon *d, json_object *req)
{
	const char *dev = json_object_get_string(json_object_object_get(req, "device"));
	bool force = json_object_get_boolean(json_object_object_get(req, "force"));
	char err[512];

	if (!dev || !*dev)
		return ctl_error("unmap needs a device");
	if (client_unmap(d->client, dev, force, err, sizeof(err)))
		return ctl_error("%s", err);
	log_info("unmapped %s%s", dev, force ? " (forced)" : "");
	return ctl_ok();
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
		json_object_object_add(resp, "devices", client_list(d->client));
		return resp;
	}
	return ctl_error("unknown command \"%s\" (map, unmap, list)", cmd);
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

/*
 * Our private mount namespace starts as a copy of the host's, including any
 * filesystem mounted on an ibnbd device a previous daemon served (we are
 * taking it over). Our copy of such a mount would keep the device open after
 * the host unmounts it, and unmapping would then wait forever: drop ours.
 */
static void detach_ublk_mounts(void)
{
	FILE *f = setmntent("/proc/self/mounts", "r");
	struct mntent *m;

	if (!f)
		return;
	while ((m = getmntent(f)))
		if (!strncmp(m->mnt_fsname, "/dev/ublkb", 10) &&
		    umount2(m->mnt_dir, MNT_DETACH) < 0)
			log_warn("cannot detach our copy of %s on %s: %s", m->mnt_fsname,
				 m->mnt_dir, strerror(errno));
	endmntent(f);
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: ibnbd-client daemon [--config FILE] [--foreground] [--workers N]\n"
		"         [--dead-timeout SECS] [--loss-timeout SECS] [--io-timeout SECS]\n"
		"  --dead-timeout   silence after which a server is declared dead (default 4)\n"
		"  --loss-timeout   how long IO waits for a lost server before failing\n"
		"                   (default 120; 0 = wait forever)\n"
		"  --io-timeout     unanswered request: reconnect and send it again\n"
		"                   (default 30; 0 = never)\n");
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
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct daemon d = { .lock_fd = -1, .sig_fd = -1 };
	struct client_opts copts = { 0 };
	bool foreground = false;
	int c, ret, ready[2] = { -1, -1 };
	char state_path[4096];
	unsigned int v;

	optind = 1;
	while ((c = getopt_long(argc, argv, "c:fw:D:L:T:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			break; /* maps.conf restoring comes with persistent maps */
		case 'f':
			foreground = true;
			break;
		case 'w':
			if (parse_uint(optarg, 1, 64, &copts.workers)) {
				log_err("--workers must be a number from 1 to 64");
				return 2;
			}
			break;
		case 'D':
		case 'L':
		case 'T':
			if (parse_uint(optarg, c == 'D', 86400, &v)) {
				log_err("--%s must be a number of seconds from %d to 86400",
					c == 'D' ? "dead-timeout" : c == 'L' ? "loss-timeout" :
					"io-timeout", c == 'D');
				return 2;
			}
			if (c == 'D')
				copts.dead_timeout_ms = v * 1000;
			else if (c == 'L')
				copts.loss_timeout_s = v ? (int)v : -1;
			else
				copts.io_timeout_s = v ? (int)v : -1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
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
		detach_ublk_mounts();
	ret = setup_signals(&d);
	if (ret) {
		log_err("cannot set up signals: %s", strerror(-ret));
		goto out;
	}
	snprintf(state_path, sizeof(state_path), "%s/devices.json", rundir());
	copts.state_path = state_path;
	ret = client_create(&copts, &d.client);
	if (ret) {
		log_err("cannot start the data plane: %s", strerror(-ret));
		goto out;
	}
	/* Devices a killed daemon left behind come back before the socket
	 * answers, so a 'list' right after start shows them. */
	ret = client_recover(d.client);
	if (ret > 0)
		log_info("recovered %d device(s) left by the previous daemon", ret);
	ret = 0;
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
	for (;;) {
		struct pollfd pfd[2] = {
			{ .fd = ctl_server_fd(d.ctl), .events = POLLIN },
			{ .fd = d.sig_fd, .events = POLLIN },
		};

		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			ret = -errno;
			break;
		}
		if (pfd[1].revents) {
			struct signalfd_siginfo si;

			if (read(d.sig_fd, &si, sizeof(si)) == sizeof(si))
				log_info("signal %u: unmapping everything and exiting", si.ssi_signo);
			ibnbd_sd_notify("STOPPING=1");
			ret = 0;
			break;
		}
		if (pfd[0].revents)
			ctl_server_serve_one(d.ctl, handle_request, &d);
	}
out:
	ctl_server_destroy(d.ctl);
	client_destroy(d.client);
	if (d.sig_fd >= 0)
		close(d.sig_fd);
	if (d.lock_fd >= 0)
		close(d.lock_fd);
	return ret ? 1 : 0;
}
