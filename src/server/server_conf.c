// SPDX-License-Identifier: GPL-2.0-only
#include "server_conf.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "errmsg.h"
#include "ini.h"
#include "metrics_http.h"
#include "hostid.h"
#include "parse.h"

void config_init(struct server_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->queue_depth = 128;
	cfg->max_io_size = 512 * 1024;
	cfg->keepalive_timeout = SERVER_DEFAULT_KEEPALIVE_TIMEOUT;
	cfg->max_handshakes = SERVER_DEFAULT_MAX_HANDSHAKES;
	cfg->max_handshakes_per_address = SERVER_DEFAULT_MAX_HANDSHAKES_PER_ADDRESS;
	cfg->limits = (struct server_limits){
		.max_connections = SERVER_DEFAULT_MAX_CONNECTIONS,
		.max_connections_per_host = SERVER_DEFAULT_MAX_CONNECTIONS_PER_HOST,
		.max_sessions_per_host = SERVER_DEFAULT_MAX_SESSIONS_PER_HOST,
		.max_opens_per_session = SERVER_MAX_OPENS_PER_SESSION,
	};
}

uint64_t config_default_slot_memory(uint64_t mem_bytes)
{
	uint64_t half = mem_bytes / 2;

	return half && half < SERVER_MAX_SLOT_MEMORY_DEFAULT_CAP ? half
								  : SERVER_MAX_SLOT_MEMORY_DEFAULT_CAP;
}

/* The count limits: key, where it goes, its range. */
static const struct {
	const char *key;
	size_t off;
	unsigned int max;
} count_limits[] = {
	{ "max_connections", offsetof(struct server_limits, max_connections), 65536 },
	{ "max_connections_per_host", offsetof(struct server_limits, max_connections_per_host),
	  65536 },
	{ "max_sessions_per_host", offsetof(struct server_limits, max_sessions_per_host), 65536 },
	{ "max_opens_per_session", offsetof(struct server_limits, max_opens_per_session),
	  SERVER_MAX_OPENS_PER_SESSION },
};

/* 1 when key is not a limit; else 0 or -EINVAL with a sentence. */
static int set_limit(struct server_limits *l, const char *key, const char *val, char *err,
		     size_t errlen)
{
	unsigned int n;
	uint64_t sz;

	for (size_t i = 0; i < sizeof(count_limits) / sizeof(count_limits[0]); i++) {
		if (strcmp(key, count_limits[i].key))
			continue;
		if (parse_uint(val, 1, count_limits[i].max, &n))
			return errmsg(err, errlen, "%s must be 1..%u, not '%s'", key,
				      count_limits[i].max, val);
		*(unsigned int *)((char *)l + count_limits[i].off) = n;
		return 0;
	}
	if (strcmp(key, "max_slot_memory"))
		return 1;
	if (parse_size(val, &sz) || sz < (1u << 20))
		return errmsg(err, errlen,
			      "max_slot_memory must be a size of at least 1M (e.g. 512M, 4G), not '%s'",
			      val);
	l->max_slot_memory = sz;
	return 0;
}

static int check_name(const char *name, char *err, size_t errlen)
{
	const char *p;

	if (!*name)
		return errmsg(err, errlen, "the export name is empty");
	if (strlen(name) >= IBNBD_EXPORT_NAME_MAX)
		return errmsg(err, errlen, "export name '%.32s...' is longer than %d characters",
			    name, IBNBD_EXPORT_NAME_MAX - 1);
	for (p = name; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("-_.:", *p))
			return errmsg(err, errlen,
				    "export name '%s' may only use letters, digits and - _ . :",
				    name);
	return 0;
}

static int add_export(struct server_config *cfg, const char *name, char *err, size_t errlen)
{
	unsigned int i;
	int ret = check_name(name, err, errlen);

	if (ret)
		return ret;
	for (i = 0; i < cfg->nexports; i++)
		if (!strcmp(cfg->exports[i].name, name))
			return errmsg(err, errlen, "export '%s' is defined twice", name);
	if (cfg->nexports == SERVER_MAX_EXPORTS)
		return errmsg(err, errlen, "more than %d exports", SERVER_MAX_EXPORTS);
	snprintf(cfg->exports[cfg->nexports].name, IBNBD_EXPORT_NAME_MAX, "%s", name);
	cfg->nexports++;
	return 0;
}

static int set_path(struct export_spec *e, const char *path, char *err, size_t errlen)
{
	if (path[0] != '/')
		return errmsg(err, errlen, "export '%s': path '%s' must be absolute", e->name, path);
	if (strlen(path) >= sizeof(e->path))
		return errmsg(err, errlen, "export '%s': path is too long", e->name);
	snprintf(e->path, sizeof(e->path), "%s", path);
	return 0;
}

/* "ID ID:ro * ..." (blanks or '+' between): appended to e's allow list. */
static int parse_allow(struct export_spec *e, char *list, char *err, size_t errlen)
{
	char *save = NULL, *w;
	bool any = false;

	for (w = strtok_r(list, " \t+", &save); w; w = strtok_r(NULL, " \t+", &save)) {
		struct allow_entry a = { .ro = false };
		char *colon = strrchr(w, ':');
		char why[128];

		any = true;
		if (colon && !strcmp(colon, ":ro")) {
			*colon = '\0';
			a.ro = true;
		} else if (colon && !strcmp(colon, ":rw")) {
			*colon = '\0';
		}
		if (strcmp(w, "*") && host_id_check(w, why, sizeof(why)))
			return errmsg(err, errlen, "export '%s': allow: '%s': %s", e->name, w, why);
		if (e->nallow == SERVER_MAX_ALLOW)
			return errmsg(err, errlen, "export '%s': more than %d hosts in allow", e->name,
				      SERVER_MAX_ALLOW);
		for (unsigned int i = 0; i < e->nallow; i++)
			if (!strcmp(e->allow[i].id, w))
				return errmsg(err, errlen, "export '%s': allow names '%s' twice", e->name, w);
		snprintf(a.id, sizeof(a.id), "%s", w);
		e->allow[e->nallow++] = a;
	}
	if (!any)
		return errmsg(err, errlen, "export '%s': allow needs host ids, or *", e->name);
	return 0;
}

int export_spec_allows(const struct export_spec *e, const char *host_id)
{
	const struct allow_entry *all = NULL;

	for (unsigned int i = 0; i < e->nallow; i++) {
		if (!strcmp(e->allow[i].id, host_id))
			return e->allow[i].ro ? 1 : 0;
		if (!strcmp(e->allow[i].id, "*"))
			all = &e->allow[i];
	}
	if (all)
		return all->ro ? 1 : 0;
	return -EACCES;
}

int config_add_export(struct server_config *cfg, const char *spec, char *err, size_t errlen)
{
	char buf[4096 + IBNBD_EXPORT_NAME_MAX + 8 + SERVER_MAX_ALLOW * IBNBD_HOST_ID_MAX];
	bool ro = false, shared = false, first;
	char *eq, *comma, *allow = NULL;
	int ret;

	if (strlen(spec) >= sizeof(buf))
		return errmsg(err, errlen, "export '%.32s...' is too long", spec);
	snprintf(buf, sizeof(buf), "%s", spec);
	eq = strchr(buf, '=');
	if (!eq)
		return errmsg(err, errlen, "export '%s' must be NAME=PATH[,ro][,shared][,allow=IDS]", spec);
	*eq = '\0';
	/* Options trail the path, which may itself contain commas: the text
	 * after the last comma must be an option, and options before it are
	 * taken while they are options ("/srv/a,b,rw" is the path "/srv/a,b"). */
	for (first = true; (comma = strrchr(eq + 1, ',')); first = false) {
		const char *opt = comma + 1;

		if (!strcmp(opt, "ro"))
			ro = true;
		else if (!strcmp(opt, "shared"))
			shared = true;
		else if (!strncmp(opt, "allow=", 6) && !allow)
			allow = comma + 7;
		else if (strcmp(opt, "rw") && first)
			return errmsg(err, errlen,
				    "export '%s': unknown option '%s' (known: ro, rw, shared, allow=)", buf,
				    opt);
		else if (strcmp(opt, "rw"))
			break;
		*comma = '\0';
	}
	ret = add_export(cfg, buf, err, errlen);
	if (ret)
		return ret;
	cfg->exports[cfg->nexports - 1].ro = ro;
	cfg->exports[cfg->nexports - 1].shared = shared;
	cfg->exports[cfg->nexports - 1].nallow = 0;
	ret = allow ? parse_allow(&cfg->exports[cfg->nexports - 1], allow, err, errlen) : 0;
	if (!ret)
		ret = set_path(&cfg->exports[cfg->nexports - 1], eq + 1, err, errlen);
	if (ret)
		cfg->nexports--;
	return ret;
}

int config_add_listen(struct server_config *cfg, const char *addr, char *err, size_t errlen)
{
	const char *why = NULL;

	if (cfg->nlisten == SERVER_MAX_LISTEN)
		return errmsg(err, errlen, "more than %d listen addresses", SERVER_MAX_LISTEN);
	if (endpoint_parse(addr, IBNBD_DEFAULT_PORT, &cfg->listen[cfg->nlisten], &why))
		return errmsg(err, errlen, "listen address '%s': %s", addr, why);
	cfg->nlisten++;
	return 0;
}

/* An absolute path that fits a socket address, or "none". */
static int config_set_control_socket(struct server_config *cfg, const char *v, char *err,
				     size_t errlen)
{
	if (strcmp(v, "none") && (v[0] != '/' || strlen(v) >= sizeof(cfg->control_socket)))
		return errmsg(err, errlen, "control_socket must be an absolute path of at most %zu "
			      "bytes, or none, not '%s'", sizeof(cfg->control_socket) - 1, v);
	snprintf(cfg->control_socket, sizeof(cfg->control_socket), "%s", v);
	return 0;
}

/* The /metrics address; its form is checked now, the bind at start. */
static int config_set_metrics(struct server_config *cfg, const char *v, char *err, size_t errlen)
{
	if (strlen(v) >= sizeof(cfg->metrics))
		return errmsg(err, errlen, "metrics: an address of at most %zu bytes",
			      sizeof(cfg->metrics) - 1);
	if (metrics_addr_check(v, err, errlen))
		return -EINVAL;
	snprintf(cfg->metrics, sizeof(cfg->metrics), "%s", v);
	return 0;
}

int config_set_keepalive_timeout(struct server_config *cfg, const char *v, char *err,
				 size_t errlen)
{
	unsigned int n;

	if (parse_uint(v, 0, SERVER_MAX_KEEPALIVE_TIMEOUT, &n))
		return errmsg(err, errlen, "keepalive_timeout must be 0 (never) to %d seconds, not '%s'",
			    SERVER_MAX_KEEPALIVE_TIMEOUT, v);
	cfg->keepalive_timeout = (unsigned int)n;
	return 0;
}

/* One "key = value" (or bare "key") line of the file. */
static int config_line(struct server_config *cfg, struct export_spec *sect, const char *key,
		       char *val, char *err, size_t errlen)
{
	unsigned int n;
	bool b;
	int ret;

	if (sect) {
		if (!strcmp(key, "path"))
			return set_path(sect, val, err, errlen);
		if (!strcmp(key, "ro")) {
			if (ini_bool(val, &b))
				return errmsg(err, errlen, "ro must be yes or no, not '%s'", val);
			sect->ro = b;
			return 0;
		}
		if (!strcmp(key, "shared")) {
			if (ini_bool(val, &b))
				return errmsg(err, errlen, "shared must be yes or no, not '%s'", val);
			sect->shared = b;
			return 0;
		}
		if (!strcmp(key, "allow"))
			return parse_allow(sect, val, err, errlen);
		return errmsg(err, errlen,
			    "unknown key '%s' in an export section (known: path, ro, shared, allow)", key);
	}
	if (!strcmp(key, "listen"))
		return config_add_listen(cfg, val, err, errlen);
	if (!strcmp(key, "workers")) {
		if (parse_uint(val, 1, SERVER_MAX_WORKERS, &n))
			return errmsg(err, errlen, "workers must be 1..%d", SERVER_MAX_WORKERS);
		cfg->workers = (unsigned int)n;
		return 0;
	}
	if (!strcmp(key, "queue_depth")) {
		if (parse_uint(val, 1, IBNBD_MAX_QUEUE_DEPTH, &n))
			return errmsg(err, errlen, "queue_depth must be 1..%d", IBNBD_MAX_QUEUE_DEPTH);
		cfg->queue_depth = (unsigned int)n;
		return 0;
	}
	if (!strcmp(key, "max_io_size")) {
		if (parse_uint(val, IBNBD_MIN_IO_SIZE, IBNBD_MAX_IO_SIZE, &n) || n % 4096)
			return errmsg(err, errlen, "max_io_size must be a multiple of 4096 from %u to %u",
				    IBNBD_MIN_IO_SIZE, IBNBD_MAX_IO_SIZE);
		cfg->max_io_size = (uint32_t)n;
		return 0;
	}
	if (!strcmp(key, "keepalive_timeout"))
		return config_set_keepalive_timeout(cfg, val, err, errlen);
	if (!strcmp(key, "max_handshakes")) {
		if (parse_uint(val, 1, 65536, &n))
			return errmsg(err, errlen, "max_handshakes must be 1..65536");
		cfg->max_handshakes = n;
		return 0;
	}
	if (!strcmp(key, "max_handshakes_per_address")) {
		if (parse_uint(val, 1, 65536, &n))
			return errmsg(err, errlen, "max_handshakes_per_address must be 1..65536");
		cfg->max_handshakes_per_address = n;
		return 0;
	}
	ret = set_limit(&cfg->limits, key, val, err, errlen);
	if (ret <= 0)
		return ret;
	ret = busypoll_config_set(&cfg->poll, key, val, err, errlen);
	if (ret <= 0)
		return ret;
	if (!strcmp(key, "metrics"))
		return config_set_metrics(cfg, val, err, errlen);
	if (!strcmp(key, "control_socket"))
		return config_set_control_socket(cfg, val, err, errlen);
	if (!strcmp(key, "hosts_file")) {
		if (!*val || strlen(val) >= sizeof(cfg->hosts_file))
			return errmsg(err, errlen, "hosts_file must be a path of 1 to %zu bytes",
				      sizeof(cfg->hosts_file) - 1);
		snprintf(cfg->hosts_file, sizeof(cfg->hosts_file), "%s", val);
		return 0;
	}
	return errmsg(err, errlen,
		    "unknown key '%s' (known: listen, workers, queue_depth, max_io_size, keepalive_timeout, hosts_file, metrics, control_socket, poll, poll_idle_us, max_handshakes, max_handshakes_per_address, max_connections, max_connections_per_host, max_sessions_per_host, max_opens_per_session, max_slot_memory)",
		    key);
}

/* A section ends at the next header or at the end of the file: by then it
 * must have said which file or device it exports. */
static int section_end(const struct export_spec *sect, char *err, size_t errlen)
{
	if (sect && !sect->path[0])
		return errmsg(err, errlen, "export '%s' has no 'path =' line", sect->name);
	return 0;
}

struct parse_state {
	struct server_config *cfg;
	struct export_spec *sect; /* the [export NAME] under way, or NULL */
};

static int on_section(void *arg, const char *kind, const char *name, char *msg, size_t len)
{
	struct parse_state *ps = arg;
	int ret;

	ps->sect = NULL;
	if (!strcmp(kind, "server") && !*name)
		return 0;
	if (strcmp(kind, "export"))
		return errmsg(msg, len, "unknown section [%s%s%s] (known: [server], [export NAME])",
			      kind, *name ? " " : "", name);
	if (!*name)
		return errmsg(msg, len, "an export section needs a name: [export NAME]");
	ret = add_export(ps->cfg, name, msg, len);
	if (ret)
		return ret;
	ps->sect = &ps->cfg->exports[ps->cfg->nexports - 1];
	return 0;
}

static int on_key(void *arg, const char *key, char *val, char *msg, size_t len)
{
	struct parse_state *ps = arg;

	return config_line(ps->cfg, ps->sect, key, val, msg, len);
}

static int on_section_end(void *arg, char *msg, size_t len)
{
	struct parse_state *ps = arg;

	return section_end(ps->sect, msg, len);
}

static const struct ini_ops server_ini = {
	.section = on_section,
	.key = on_key,
	.section_end = on_section_end,
};

int config_parse(struct server_config *cfg, FILE *f, const char *path, char *err,
		 size_t errlen)
{
	struct parse_state ps = { .cfg = cfg };

	return ini_parse(f, path, &server_ini, &ps, err, errlen);
}

int config_load(struct server_config *cfg, const char *path, char *err, size_t errlen)
{
	struct parse_state ps = { .cfg = cfg };

	return ini_load(path, &server_ini, &ps, err, errlen);
}

int config_from_cmdline(struct server_config *cfg, const struct server_cmdline *cl,
			char *err, size_t errlen)
{
	const char *config = cl->config;
	unsigned int workers = 0;
	char msg[512];
	int ret;

	/* Usage errors first, before anything is read. */
	if (cl->workers && parse_uint(cl->workers, 1, SERVER_MAX_WORKERS, &workers))
		return errmsg(err, errlen, "--workers must be a number from 1 to %d",
			      SERVER_MAX_WORKERS);
	/* The default file is for a server described by it alone: given
	 * --export, it is not looked for. */
	if (!config && !cl->nexports && cl->default_config &&
	    !access(cl->default_config, R_OK))
		config = cl->default_config;
	if (config) {
		ret = config_load(cfg, config, err, errlen);
		if (ret)
			return ret;
		if (strlen(config) >= sizeof(cfg->config_path))
			return errmsg(err, errlen, "--config: a path of at most %zu bytes",
				      sizeof(cfg->config_path) - 1);
		snprintf(cfg->config_path, sizeof(cfg->config_path), "%s", config);
	}
	cfg->nfile_exports = cfg->nexports;
	cfg->nfile_listen = cfg->nlisten;
	cfg->cmdline_set = (cl->workers ? CMDLINE_WORKERS : 0) |
			   (cl->keepalive_timeout ? CMDLINE_KEEPALIVE : 0) |
			   (cl->hosts_file ? CMDLINE_HOSTS_FILE : 0) |
			   (cl->metrics ? CMDLINE_METRICS : 0) |
			   (cl->control_socket ? CMDLINE_CONTROL_SOCKET : 0) |
			   (cl->poll || cl->poll_idle_us ? CMDLINE_POLL : 0);
	for (unsigned int i = 0; i < cl->nlisten; i++)
		if (config_add_listen(cfg, cl->listen[i], msg, sizeof(msg)))
			return errmsg(err, errlen, "--listen: %s", msg);
	for (unsigned int i = 0; i < cl->nexports; i++)
		if (config_add_export(cfg, cl->exports[i], msg, sizeof(msg)))
			return errmsg(err, errlen, "--export: %s", msg);
	if (workers)
		cfg->workers = (unsigned int)workers;
	if (cl->keepalive_timeout &&
	    config_set_keepalive_timeout(cfg, cl->keepalive_timeout, msg, sizeof(msg)))
		return errmsg(err, errlen, "--keepalive-timeout: %s", msg);
	if (cl->hosts_file) {
		if (!*cl->hosts_file || strlen(cl->hosts_file) >= sizeof(cfg->hosts_file))
			return errmsg(err, errlen, "--hosts-file: a path of 1 to %zu bytes",
				      sizeof(cfg->hosts_file) - 1);
		snprintf(cfg->hosts_file, sizeof(cfg->hosts_file), "%s", cl->hosts_file);
	}
	if (cl->metrics && config_set_metrics(cfg, cl->metrics, msg, sizeof(msg)))
		return errmsg(err, errlen, "--metrics: %s", msg);
	if (cl->control_socket &&
	    config_set_control_socket(cfg, cl->control_socket, msg, sizeof(msg)))
		return errmsg(err, errlen, "--control-socket: %s", msg);
	if (cl->poll_idle_us &&
	    busypoll_config_set(&cfg->poll, "poll_idle_us", cl->poll_idle_us, msg, sizeof(msg)))
		return errmsg(err, errlen, "--poll-idle-us: %s", msg);
	if (cl->poll || cl->poll_idle_us)
		cfg->poll.on = true;
	cfg->no_auth = cl->no_auth;
	if (cfg->no_auth && *cfg->hosts_file)
		return errmsg(err, errlen,
			      "both a hosts file (%s) and --no-auth: authenticate hosts, or do not",
			      cfg->hosts_file);
	for (unsigned int i = 0; cfg->no_auth && i < cfg->nexports; i++)
		for (unsigned int j = 0; j < cfg->exports[i].nallow; j++)
			if (strcmp(cfg->exports[i].allow[j].id, "*"))
				return errmsg(err, errlen,
					      "export '%s' allows host '%s', but with --no-auth host ids are unproven: authenticate hosts (--hosts-file), or allow *",
					      cfg->exports[i].name, cfg->exports[i].allow[j].id);
	if (!cfg->no_auth && !*cfg->hosts_file)
		return errmsg(err, errlen,
			      "no hosts file: give --hosts-file FILE (or hosts_file in the configuration) listing the hosts that may connect and their keys, or --no-auth to let every host connect unauthenticated");
	if (!cfg->nlisten) {
		const char *why;

		endpoint_parse("0.0.0.0", IBNBD_DEFAULT_PORT, &cfg->listen[0], &why);
		cfg->nlisten = 1;
	}
	if (!cfg->nexports)
		return errmsg(err, errlen,
			    "nothing to export: give --export NAME=PATH or an [export NAME] section in %s",
			    config ? config : cl->default_config ? cl->default_config : "a --config file");
	return 0;
}
