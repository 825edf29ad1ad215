// SPDX-License-Identifier: GPL-2.0-only
/*
 * The server's control socket and its two verbs (control.h).
 * docs/control-protocol.md ("The server's socket") documents the answers.
 */
#include "control.h"

#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "ctl.h"
#include "export.h"
#include "log.h"
#include "registry.h"
#include "sessions.h"
#include "stats.h"
#include "worker.h"

#define CONTROL_CALL_TIMEOUT_MS 10000

struct server_control {
	struct ctl_server *ctl;
	const struct server_metrics_src *src;
	int stop_fd;
	pthread_t thread;
};

static json_object *io_object(const struct io_counts *io)
{
	json_object *o = json_object_new_object();

#define IO_FIELD(f) json_object_object_add(o, #f, json_object_new_int64((int64_t)io->f));
	IO_COUNTS_FIELDS(IO_FIELD)
#undef IO_FIELD
	return o;
}

/* ---- list-sessions: the registry's connections, one entry a session ---- */

static json_object *list_sessions(const struct server_metrics_src *s)
{
	unsigned int nexp = __atomic_load_n(s->nexports, __ATOMIC_ACQUIRE);
	struct session_rows l = { 0 };
	json_object *arr = json_object_new_array(), *resp;
	char uuid[REGISTRY_UUID_STR];

	session_rows_collect(s->registry, &l);
	for (size_t i = 0; i < l.n; i++) {
		const struct session_row *r = &l.v[i];
		json_object *o = json_object_new_object(), *peers = json_object_new_array(),
			    *opens = json_object_new_array();

		registry_uuid_str(r->uuid, uuid);
		json_object_object_add(o, "host", json_object_new_string(r->host_id));
		json_object_object_add(o, "session", json_object_new_string(r->zero_uuid ? "" : uuid));
		json_object_object_add(o, "connections", json_object_new_int((int)r->conns));
		json_object_object_add(o, "superseded", json_object_new_int((int)r->superseded));
		for (unsigned int p = 0; p < r->npeers; p++)
			json_object_array_add(peers, json_object_new_string(r->peers[p]));
		json_object_object_add(o, "addresses", peers);
		for (unsigned int e = 0; e < nexp && e < SERVER_MAX_EXPORTS; e++) {
			json_object *x;

			if (!r->handles[e])
				continue;
			x = json_object_new_object();
			json_object_object_add(x, "export", json_object_new_string(s->exports[e]->name));
			json_object_object_add(x, "access", json_object_new_string(r->rw[e] ? "rw" : "ro"));
			json_object_object_add(x, "handles", json_object_new_int((int)r->handles[e]));
			json_object_array_add(opens, x);
		}
		json_object_object_add(o, "exports", opens);
		json_object_object_add(o, "slot_memory_bytes",
				       json_object_new_int64((int64_t)r->slot_bytes));
		json_object_object_add(o, "io", io_object(&r->io));
		json_object_array_add(arr, o);
	}
	session_rows_free(&l);
	if (l.oom) {
		json_object_put(arr);
		return ctl_error("out of memory");
	}
	resp = ctl_ok();
	json_object_object_add(resp, "sessions", arr);
	return resp;
}

/* ---- list-exports ---- */

static json_object *list_exports(const struct server_metrics_src *s)
{
	unsigned int n = __atomic_load_n(s->nexports, __ATOMIC_ACQUIRE);
	struct session_rows l = { 0 };
	json_object *arr, *resp;

	if (session_rows_collect(s->registry, &l)) {
		session_rows_free(&l);
		return ctl_error("out of memory");
	}
	arr = json_object_new_array();
	for (unsigned int e = 0; e < n; e++) {
		const struct export *x = s->exports[e];
		struct io_counts io = { 0 };
		uint64_t errors = 0;
		unsigned int sessions = 0;
		const char *writer = "";
		json_object *o;

		if (export_removed(x))
			continue;
		for (size_t r = 0; r < l.n; r++) {
			sessions += l.v[r].handles[e] != 0;
			if (l.v[r].rw[e] && !*writer)
				writer = l.v[r].host_id;
		}
		for (unsigned int w = 0; w < s->nworkers; w++) {
			io_counts_sum(&io, &s->workers[w].estats[e].io);
			errors += stat_read(&s->workers[w].estats[e].io_errors);
		}
		o = json_object_new_object();
		json_object_object_add(o, "export", json_object_new_string(x->name));
		json_object_object_add(o, "path", json_object_new_string(x->path));
		json_object_object_add(o, "size", json_object_new_int64((int64_t)export_size(x)));
		json_object_object_add(o, "access", json_object_new_string(x->ro ? "ro" : "rw"));
		json_object_object_add(o, "shared", json_object_new_boolean(x->shared));
		json_object_object_add(o, "sessions", json_object_new_int((int)sessions));
		json_object_object_add(o, "writer", json_object_new_string(writer));
		json_object_object_add(o, "io", io_object(&io));
		json_object_object_add(o, "io_errors", json_object_new_int64((int64_t)errors));
		json_object_array_add(arr, o);
	}
	session_rows_free(&l);
	resp = ctl_ok();
	json_object_object_add(resp, "exports", arr);
	return resp;
}

static json_object *handle(void *ctx, json_object *req)
{
	const struct server_control *c = ctx;
	const char *cmd = json_object_get_string(json_object_object_get(req, "cmd"));

	if (!cmd)
		return ctl_error("the request has no \"cmd\"");
	if (!strcmp(cmd, "list-sessions"))
		return list_sessions(c->src);
	if (!strcmp(cmd, "list-exports"))
		return list_exports(c->src);
	return ctl_error("unknown command \"%s\" (list-sessions, list-exports)", cmd);
}

/* One request at a time: each is a look at counters, answered at once. */
static void *control_thread(void *arg)
{
	struct server_control *c = arg;

	pthread_setname_np(pthread_self(), "ibnbd-ctl");
	for (;;) {
		struct pollfd pfd[2] = {
			{ .fd = ctl_server_fd(c->ctl), .events = POLLIN },
			{ .fd = c->stop_fd, .events = POLLIN },
		};
		int fd;

		if (poll(pfd, 2, -1) < 0 && errno != EINTR)
			break;
		if (pfd[1].revents)
			break;
		if (!pfd[0].revents)
			continue;
		fd = ctl_server_accept(c->ctl);
		if (fd >= 0)
			ctl_serve_fd(fd, handle, c);
	}
	return NULL;
}

int server_control_start(const char *path, const struct server_metrics_src *src,
			 struct server_control **out, char *err, size_t errlen)
{
	struct server_control *c = calloc(1, sizeof(*c));
	int ret;

	if (!c)
		return -ENOMEM;
	c->src = src;
	c->stop_fd = eventfd(0, EFD_CLOEXEC);
	if (c->stop_fd < 0) {
		ret = -errno;
		free(c);
		snprintf(err, errlen, "control socket: eventfd: %s", strerror(-ret));
		return ret;
	}
	ret = ctl_server_create(path, &c->ctl);
	if (ret) {
		if (ret == -EADDRINUSE)
			snprintf(err, errlen, "another running ibnbd-server answers on %s: give this "
				 "one --control-socket PATH (or none)", path);
		else
			snprintf(err, errlen, "cannot listen on %s: %s", path, strerror(-ret));
		goto fail;
	}
	ret = -pthread_create(&c->thread, NULL, control_thread, c);
	if (ret) {
		snprintf(err, errlen, "control socket: cannot start its thread: %s", strerror(-ret));
		ctl_server_destroy(c->ctl);
		goto fail;
	}
	*out = c;
	return 0;
fail:
	close(c->stop_fd);
	free(c);
	return ret;
}

void server_control_stop(struct server_control *c)
{
	uint64_t one = 1;

	if (!c)
		return;
	if (write(c->stop_fd, &one, sizeof(one)) != sizeof(one))
		log_warn("control socket: cannot stop its thread");
	pthread_join(c->thread, NULL);
	ctl_server_destroy(c->ctl);
	close(c->stop_fd);
	free(c);
}

/* ---- the verbs ---- */

static const char *jstr(json_object *o, const char *key)
{
	json_object *v = json_object_object_get(o, key);

	return v ? json_object_get_string(v) : "";
}

static long long jio(json_object *o, const char *key)
{
	json_object *io = json_object_object_get(o, "io"), *v;

	v = io ? json_object_object_get(io, key) : NULL;
	return v ? (long long)json_object_get_int64(v) : 0;
}

static void print_sessions(json_object *arr)
{
	printf("%-36s %-36s %5s %-22s %-24s %10s %10s\n", "HOST", "SESSION", "CONNS", "ADDRESSES",
	       "EXPORTS", "READS", "WRITES");
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		json_object *o = json_object_array_get_idx(arr, i);
		json_object *peers = json_object_object_get(o, "addresses");
		json_object *opens = json_object_object_get(o, "exports");
		char addrs[256] = "", exps[256] = "";
		size_t n = 0;

		for (size_t p = 0; p < json_object_array_length(peers) && n < sizeof(addrs); p++)
			n += (size_t)snprintf(addrs + n, sizeof(addrs) - n, "%s%s", p ? "," : "",
					      json_object_get_string(json_object_array_get_idx(peers, p)));
		n = 0;
		for (size_t x = 0; x < json_object_array_length(opens) && n < sizeof(exps); x++) {
			json_object *e = json_object_array_get_idx(opens, x);

			n += (size_t)snprintf(exps + n, sizeof(exps) - n, "%s%s(%s)", x ? "," : "",
					      jstr(e, "export"), jstr(e, "access"));
		}
		printf("%-36s %-36s %5s %-22s %-24s %10lld %10lld\n", jstr(o, "host"),
		       *jstr(o, "session") ? jstr(o, "session") : "-", jstr(o, "connections"),
		       addrs, *exps ? exps : "-", jio(o, "reads"), jio(o, "writes"));
	}
}

static void print_exports(json_object *arr)
{
	printf("%-16s %-32s %14s %-6s %8s %-36s %10s %10s %6s\n", "EXPORT", "PATH", "SIZE",
	       "ACCESS", "SESSIONS", "WRITER", "READS", "WRITES", "ERRORS");
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		json_object *o = json_object_array_get_idx(arr, i);
		bool shared = json_object_get_boolean(json_object_object_get(o, "shared"));
		char access[16];

		snprintf(access, sizeof(access), "%s%s", jstr(o, "access"), shared ? ",sh" : "");
		printf("%-16s %-32s %14s %-6s %8s %-36s %10lld %10lld %6s\n", jstr(o, "export"),
		       jstr(o, "path"), jstr(o, "size"), access, jstr(o, "sessions"),
		       *jstr(o, "writer") ? jstr(o, "writer") : "-", jio(o, "reads"),
		       jio(o, "writes"), jstr(o, "io_errors"));
	}
}

int server_list_verb(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "control-socket", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *verb = argv[0], *key;
	struct ctl_peer peer = {
		.path = ctl_server_socket_path(),
		.name = "the ibnbd server",
		.start = "'ibnbd-server' or 'systemctl start ibnbd-server' (a server started with "
			 "--control-socket answers there: give the same path)",
	};
	json_object *req, *resp;
	bool json = false;
	char err[512];
	int c;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 's':
			peer.path = optarg;
			break;
		case 'h':
			printf("Usage: ibnbd-server %s [--json] [--control-socket PATH]\n", verb);
			return 0;
		default:
			log_err("%s: %s (usage: ibnbd-server %s [--json] [--control-socket PATH])",
				verb, c == ':' ? "--control-socket needs a path" : "unknown option",
				verb);
			return 2;
		}
	}
	if (optind < argc) {
		log_err("%s: unexpected argument '%s'", verb, argv[optind]);
		return 2;
	}
	req = json_object_new_object();
	json_object_object_add(req, "cmd", json_object_new_string(verb));
	if (ctl_call(&peer, req, &resp, CONTROL_CALL_TIMEOUT_MS, err, sizeof(err))) {
		log_err("%s", err);
		return 1;
	}
	if (!json_object_get_boolean(json_object_object_get(resp, "ok"))) {
		log_err("%s", jstr(resp, "error"));
		json_object_put(resp);
		return 1;
	}
	key = !strcmp(verb, "list-sessions") ? "sessions" : "exports";
	if (json)
		printf("%s\n", json_object_to_json_string_ext(json_object_object_get(resp, key),
							      JSON_C_TO_STRING_PRETTY |
							      JSON_C_TO_STRING_NOSLASHESCAPE));
	else if (!strcmp(verb, "list-sessions"))
		print_sessions(json_object_object_get(resp, key));
	else
		print_exports(json_object_object_get(resp, key));
	json_object_put(resp);
	return 0;
}
