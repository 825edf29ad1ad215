// SPDX-License-Identifier: GPL-2.0-only
/*
 * The verbs of ibnbd-client that talk to the daemon: map, unmap, list, show.
 * Each builds one control request (ctl.h), prints the answer for a person
 * (or as JSON), and exits non-zero with a sentence on any error.
 */
#include "cli/cli.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "cli/cli_args.h"
#include "ctl.h"
#include "auth.h"
#include "hostid.h"
#include "log.h"

/* Mapping waits for the connection (unreachable servers fail within 10 s)
 * and for the kernel to start the device. */
#define MAP_TIMEOUT_MS 60000
#define CTL_TIMEOUT_MS 30000

/* The client daemon, for ctl_call()'s sentences. */
static struct ctl_peer daemon_peer(void)
{
	return (struct ctl_peer){
		.path = ctl_socket_path(),
		.name = "the ibnbd client daemon",
		.start = "'ibnbd-client daemon' or 'systemctl start ibnbd-client'",
	};
}

/* Sends req (consumed) and checks the answer's "ok". */
static int call(json_object *req, json_object **resp, int timeout_ms)
{
	struct ctl_peer peer = daemon_peer();
	char err[512];
	int ret = ctl_call(&peer, req, resp, timeout_ms, err, sizeof(err));

	if (ret) {
		log_err("%s", err);
		return ret;
	}
	if (!json_object_get_boolean(json_object_object_get(*resp, "ok"))) {
		json_object *e = json_object_object_get(*resp, "error");

		log_err("%s", e ? json_object_get_string(e) : "the daemon refused without saying why");
		json_object_put(*resp);
		return -EIO;
	}
	return 0;
}

static const char *jstr(json_object *o, const char *key)
{
	json_object *v = json_object_object_get(o, key);

	return v ? json_object_get_string(v) : "";
}

static int cmd_map(const struct cli_args *a)
{
	json_object *req, *resp;

	req = json_object_new_object();
	json_object_object_add(req, "cmd", json_object_new_string("map"));
	json_object_object_add(req, "server", json_object_new_string(a->server.host));
	json_object_object_add(req, "port", json_object_new_int(a->server.port));
	json_object_object_add(req, "export", json_object_new_string(a->export_name));
	/* Neither --ro nor --rw: read-write, or read-only if that is all
	 * the export offers (the daemon says so). */
	if (a->read_only || a->read_write)
		json_object_object_add(req, "access",
				       json_object_new_string(a->read_only ? "ro" : "rw"));
	if (a->name)
		json_object_object_add(req, "name", json_object_new_string(a->name));
	if (a->loss_timeout_s)
		json_object_object_add(req, "loss_timeout", json_object_new_int(
			a->loss_timeout_s < 0 ? 0 : a->loss_timeout_s));
	if (a->persist)
		json_object_object_add(req, "persist", json_object_new_boolean(true));
	if (call(req, &resp, MAP_TIMEOUT_MS))
		return 1;
	if (*jstr(resp, "note"))
		log_warn("%s", jstr(resp, "note"));
	printf("%s\n", jstr(resp, "device"));
	json_object_put(resp);
	return 0;
}

/* Resolves NAME or /dev/ublkbN to the device path through the daemon, and
 * its name; a device with no node yet (not taken over, or a configured map
 * not made yet) resolves to its name. */
static int resolve_device(const char *arg, char *path, size_t len, char *name, size_t namelen)
{
	json_object *req = json_object_new_object(), *resp, *devs;
	size_t i;

	json_object_object_add(req, "cmd", json_object_new_string("list"));
	if (call(req, &resp, CTL_TIMEOUT_MS))
		return -EIO;
	devs = json_object_object_get(resp, "devices");
	for (i = 0; devs && i < json_object_array_length(devs); i++) {
		json_object *d = json_object_array_get_idx(devs, i);

		if (!strcmp(jstr(d, "device"), arg) || !strcmp(jstr(d, "name"), arg)) {
			snprintf(path, len, "%s", *jstr(d, "device") ? jstr(d, "device") : jstr(d, "name"));
			snprintf(name, namelen, "%s", jstr(d, "name"));
			json_object_put(resp);
			return 0;
		}
	}
	json_object_put(resp);
	log_err("no mapped device is called '%s' (see 'ibnbd-client list')", arg);
	return -ENOENT;
}

/* Is anything using the block device? Mounted here, held by another
 * device (dm, md), or open by any process. */
static bool device_in_use(const char *path, char *why, size_t len)
{
	struct stat st;
	char line[4096], sys[PATH_MAX];
	FILE *f;
	DIR *d;
	struct dirent *de;

	if (stat(path, &st) || !S_ISBLK(st.st_mode))
		return false;
	f = fopen("/proc/self/mountinfo", "r");
	while (f && fgets(line, sizeof(line), f)) {
		unsigned int maj, min;

		if (sscanf(line, "%*u %*u %u:%u", &maj, &min) == 2 &&
		    maj == major(st.st_rdev) && min == minor(st.st_rdev)) {
			char mnt[PATH_MAX];

			if (sscanf(line, "%*u %*u %*u:%*u %*s %4095s", mnt) != 1)
				snprintf(mnt, sizeof(mnt), "?");
			snprintf(why, len, "it is mounted on %s", mnt);
			fclose(f);
			return true;
		}
	}
	if (f)
		fclose(f);
	snprintf(sys, sizeof(sys), "/sys/dev/block/%u:%u/holders", major(st.st_rdev),
		 minor(st.st_rdev));
	d = opendir(sys);
	while (d && (de = readdir(d))) {
		if (de->d_name[0] != '.') {
			snprintf(why, len, "%s holds it", de->d_name);
			closedir(d);
			return true;
		}
	}
	if (d)
		closedir(d);
	d = opendir("/proc");
	while (d && (de = readdir(d))) {
		char fddir[PATH_MAX];
		DIR *fds;
		struct dirent *fe;

		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		snprintf(fddir, sizeof(fddir), "/proc/%s/fd", de->d_name);
		fds = opendir(fddir);
		while (fds && (fe = readdir(fds))) {
			char link[PATH_MAX + 256];
			struct stat fst;

			snprintf(link, sizeof(link), "%s/%s", fddir, fe->d_name);
			if (!stat(link, &fst) && S_ISBLK(fst.st_mode) && fst.st_rdev == st.st_rdev) {
				snprintf(why, len, "process %s has it open", de->d_name);
				closedir(fds);
				closedir(d);
				return true;
			}
		}
		if (fds)
			closedir(fds);
	}
	if (d)
		closedir(d);
	return false;
}

/* Unmaps path (a /dev/ublkbN, or the name of a device not taken over,
 * which has no node): refused while in use, unless force. */
static int unmap_one(const char *path, const char *name, bool force, bool persist)
{
	char why[PATH_MAX + 64];
	json_object *req, *resp;

	if (!force && device_in_use(path, why, sizeof(why))) {
		log_err("%s is in use: %s; unmount or close it first, or use --force "
			"(IO still in flight then fails)", path, why);
		return 1;
	}
	req = json_object_new_object();
	json_object_object_add(req, "cmd", json_object_new_string("unmap"));
	json_object_object_add(req, "device", json_object_new_string(path));
	json_object_object_add(req, "force", json_object_new_boolean(force));
	if (name)
		json_object_object_add(req, "name", json_object_new_string(name));
	if (persist)
		json_object_object_add(req, "persist", json_object_new_boolean(true));
	if (call(req, &resp, CTL_TIMEOUT_MS))
		return 1;
	json_object_put(resp);
	return 0;
}

/* Every mapped device, one after the other; says which could not be. */
static int unmap_all(bool force)
{
	json_object *req = json_object_new_object(), *resp, *devs;
	size_t i, n;
	int failed = 0;

	json_object_object_add(req, "cmd", json_object_new_string("list"));
	if (call(req, &resp, CTL_TIMEOUT_MS))
		return 1;
	devs = json_object_object_get(resp, "devices");
	n = devs ? json_object_array_length(devs) : 0;
	for (i = 0; i < n; i++) {
		json_object *d = json_object_array_get_idx(devs, i);
		const char *dev = jstr(d, "device");

		failed += unmap_one(*dev ? dev : jstr(d, "name"), jstr(d, "name"), force, false);
	}
	json_object_put(resp);
	if (failed)
		log_err("%d of %zu device(s) were not unmapped", failed, n);
	return failed ? 1 : 0;
}

static int cmd_unmap(const struct cli_args *a)
{
	char path[PATH_MAX], name[CLI_NAME_MAX + 1];

	if (a->all)
		return unmap_all(a->force);
	if (resolve_device(a->device, path, sizeof(path), name, sizeof(name)))
		return 1;
	return unmap_one(path, name, a->force, a->persist);
}

/* The id this host presents: the running daemon's, else the one it would
 * derive from the machine id. */
static int cmd_host_id(void)
{
	json_object *req = json_object_new_object(), *resp;
	struct ctl_peer peer = daemon_peer();
	char id[HOST_ID_LEN], err[512];

	json_object_object_add(req, "cmd", json_object_new_string("host-id"));
	if (!ctl_call(&peer, req, &resp, CTL_TIMEOUT_MS, err, sizeof(err)) &&
	    json_object_get_boolean(json_object_object_get(resp, "ok"))) {
		printf("%s\n", jstr(resp, "host_id"));
		json_object_put(resp);
		return 0;
	}
	if (host_id_from_machine_id("/etc/machine-id", id, err, sizeof(err))) {
		log_err("%s", err);
		return 1;
	}
	printf("%s\n", id);
	return 0;
}

/* A new random key, in the text form key and hosts files hold. */
static int cmd_gen_key(void)
{
	char key[AUTH_KEY_TEXT_LEN], err[256];

	if (auth_key_generate(key, err, sizeof(err))) {
		log_err("%s", err);
		return 1;
	}
	printf("%s\n", key);
	return 0;
}

static void print_size(uint64_t bytes, char *buf, size_t len)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
	double v = (double)bytes;
	unsigned int u = 0;

	while (v >= 1024 && u < 5) {
		v /= 1024;
		u++;
	}
	snprintf(buf, len, u ? "%.1f%s" : "%.0f%s", v, unit[u]);
}

static int64_t jint(json_object *o, const char *key)
{
	json_object *v = json_object_object_get(o, key);

	return v ? json_object_get_int64(v) : 0;
}

/* The STATE column: the state, and what an operator asks next about it. */
static void state_text(json_object *d, char *buf, size_t len)
{
	const char *state = jstr(d, "state");

	if (!strcmp(state, "reconnecting") ||
	    (!strcmp(state, "failed") && !jint(d, "export_changed") &&
	     json_object_object_get(d, "attempt")))
		snprintf(buf, len, "%s (attempt %lld, down %.1f s, next try in %.1f s): %s", state,
			 (long long)jint(d, "attempt"), jint(d, "down_for_ms") / 1000.0,
			 jint(d, "next_try_ms") / 1000.0, jstr(d, "last_error"));
	else if (!strcmp(state, "recovering"))
		snprintf(buf, len, "recovering (%lld request(s) to answer again)",
			 (long long)jint(d, "resending"));
	else if (!strcmp(state, "failed"))
		snprintf(buf, len, "failed: %s", jstr(d, "last_error"));
	else
		snprintf(buf, len, "%s", state);
}

/* One CSV field (RFC 4180): quoted when it holds a comma, a quote or a
 * line break, its quotes doubled. */
static void csv_field(const char *s, bool last)
{
	if (strpbrk(s, ",\"\r\n")) {
		putchar('"');
		for (; *s; s++) {
			if (*s == '"')
				putchar('"');
			putchar(*s);
		}
		putchar('"');
	} else {
		fputs(s, stdout);
	}
	putchar(last ? '\n' : ',');
}

/* -o csv: a header, then one line per device, sizes in bytes. */
static void print_csv(json_object *devs, json_object *only)
{
	static const char *const cols[] = {
		"device", "name", "server", "port", "export", "size", "access", "state", "last_error",
	};
	const size_t ncols = sizeof(cols) / sizeof(cols[0]);

	for (size_t c = 0; c < ncols; c++)
		csv_field(cols[c], c + 1 == ncols);
	for (size_t i = 0; devs && i < json_object_array_length(devs); i++) {
		json_object *d = json_object_array_get_idx(devs, i);

		if (only && d != only)
			continue;
		for (size_t c = 0; c < ncols; c++)
			csv_field(jstr(d, cols[c]), c + 1 == ncols);
	}
}

static int cmd_list(const struct cli_args *a)
{
	json_object *req = json_object_new_object(), *resp, *devs;
	size_t i;

	json_object_object_add(req, "cmd", json_object_new_string("list"));
	if (call(req, &resp, CTL_TIMEOUT_MS))
		return 1;
	devs = json_object_object_get(resp, "devices");
	if (a->output == CLI_OUT_JSON) {
		printf("%s\n", json_object_to_json_string_ext(devs, JSON_C_TO_STRING_PRETTY |
								     JSON_C_TO_STRING_NOSLASHESCAPE));
	} else if (a->output == CLI_OUT_CSV) {
		print_csv(devs, NULL);
	} else {
		printf("%-14s %-12s %-22s %-16s %9s %-3s %s\n", "DEVICE", "NAME", "SERVER",
		       "EXPORT", "SIZE", "RW", "STATE");
		for (i = 0; devs && i < json_object_array_length(devs); i++) {
			json_object *d = json_object_array_get_idx(devs, i);
			char server[300], size[32], state[1024];

			snprintf(server, sizeof(server), "%s:%d", jstr(d, "server"),
				 json_object_get_int(json_object_object_get(d, "port")));
			print_size((uint64_t)json_object_get_int64(json_object_object_get(d, "size")),
				   size, sizeof(size));
			state_text(d, state, sizeof(state));
			printf("%-14s %-12s %-22s %-16s %9s %-3s %s\n", jstr(d, "device"),
			       jstr(d, "name"), server, jstr(d, "export"), size, jstr(d, "access"),
			       state);
		}
	}
	json_object_put(resp);
	return 0;
}

/* key.latency_mean_us from the histogram's sum and bucket counts. */
static void print_mean_latency(const char *key, json_object *o)
{
	json_object *sum, *b;
	int64_t n = 0;

	if (!json_object_object_get_ex(o, "latency_sum_ns", &sum) ||
	    !json_object_object_get_ex(o, "latency_buckets", &b))
		return;
	for (size_t i = 0; i < json_object_array_length(b); i++)
		n += json_object_get_int64(json_object_array_get_idx(b, i));
	printf("%s.%-*s %.1f\n", key, (int)(14 - strlen(key)), "latency_mean_us",
	       n ? (double)json_object_get_int64(sum) / 1000.0 / (double)n : 0.0);
}

/* The daemon reads client.conf again (as on SIGHUP) and says what changed. */
static int cmd_reload(void)
{
	json_object *req = json_object_new_object(), *resp;

	json_object_object_add(req, "cmd", json_object_new_string("reload"));
	if (call(req, &resp, CTL_TIMEOUT_MS))
		return 1;
	printf("reloaded: %lld map(s) added, %lld removed, %lld changed\n",
	       (long long)jint(resp, "added"), (long long)jint(resp, "removed"),
	       (long long)jint(resp, "changed"));
	if (*jstr(resp, "restart_needed"))
		log_warn("%s changed in the file: it takes effect at the next start of the daemon "
			 "(which keeps the devices)", jstr(resp, "restart_needed"));
	json_object_put(resp);
	return 0;
}

/* One device, every field the daemon reports, one per line: the state of
 * its session (attempt, how long down, next try, last error) and the
 * counters of reconnects, re-issued requests and timeouts. */
static int cmd_show(const struct cli_args *a)
{
	json_object *req = json_object_new_object(), *resp, *devs, *d = NULL;
	size_t i;

	json_object_object_add(req, "cmd", json_object_new_string("list"));
	if (call(req, &resp, CTL_TIMEOUT_MS))
		return 1;
	devs = json_object_object_get(resp, "devices");
	for (i = 0; devs && i < json_object_array_length(devs) && !d; i++) {
		json_object *o = json_object_array_get_idx(devs, i);

		if (!strcmp(jstr(o, "device"), a->device) || !strcmp(jstr(o, "name"), a->device))
			d = o;
	}
	if (!d) {
		log_err("no mapped device is called '%s' (see 'ibnbd-client list')", a->device);
		json_object_put(resp);
		return 1;
	}
	if (a->output == CLI_OUT_JSON) {
		printf("%s\n", json_object_to_json_string_ext(d, JSON_C_TO_STRING_PRETTY |
								  JSON_C_TO_STRING_NOSLASHESCAPE));
	} else if (a->output == CLI_OUT_CSV) {
		print_csv(devs, d);
	} else {
		json_object_object_foreach(d, key, val) {
			if (!json_object_is_type(val, json_type_object)) {
				printf("%-15s %s\n", key, json_object_get_string(val));
				continue;
			}
			/* A nested object ("io"): its numbers as key.field; the
			 * histogram's buckets are for /metrics, its mean is here. */
			json_object_object_foreach(val, k2, v2) {
				if (!json_object_is_type(v2, json_type_array) &&
				    strcmp(k2, "latency_sum_ns"))
					printf("%s.%-*s %s\n", key, (int)(14 - strlen(key)), k2,
					       json_object_get_string(v2));
			}
			print_mean_latency(key, val);
		}
	}
	json_object_put(resp);
	return 0;
}

int cli_main(int argc, char **argv)
{
	struct cli_args a;
	char err[512];

	if (cli_args_parse(argc, argv, &a, err, sizeof(err))) {
		log_err("%s", err);
		return 2;
	}
	switch (a.verb) {
	case CLI_MAP:
		return cmd_map(&a);
	case CLI_UNMAP:
		return cmd_unmap(&a);
	case CLI_RELOAD:
		return cmd_reload();
	case CLI_HOST_ID:
		return cmd_host_id();
	case CLI_GEN_KEY:
		return cmd_gen_key();
	case CLI_LIST:
		return cmd_list(&a);
	case CLI_SHOW:
		return cmd_show(&a);
	}
	return 2;
}
