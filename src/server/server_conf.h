/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * ibnbd-server configuration: listen addresses, exports and tunables, from
 * the command line and/or an INI-like file:
 *
 *   # comment (also after a blank, ending a value; ';' starts a line comment)
 *   listen = 192.0.2.10:4422        (repeatable; also in a [server] section)
 *   workers = 4                     (decimal, or hex after 0x)
 *   queue_depth = 128
 *   max_io_size = 524288
 *   keepalive_timeout = 15          (seconds; 0 = never)
 *   hosts_file = /etc/ibnbd/hosts   (HOSTID KEY per line: who may connect)
 *   metrics = 127.0.0.1:9642        (Prometheus /metrics over HTTP; default off)
 *   control_socket = /run/ibnbd/server.sock  (list-sessions asks there; none: off)
 *   poll = no                       (yes: workers busy-poll, never sleep)
 *   poll_idle_us = 0                (polling: sleep after this long idle; 0 never)
 *   max_handshakes = 256            (connections not through HELLO yet, in all)
 *   max_handshakes_per_address = 64 (the same, from one source address)
 *   max_connections = 1024          (connections past HELLO, in all)
 *   max_connections_per_host = 64
 *   max_sessions_per_host = 8
 *   max_opens_per_session = 64      (exports a session holds open)
 *   max_slot_memory = 4G            (pinned slot memory, in all; default:
 *                                    half the memory, at most 16G)
 *   [export NAME]
 *   path = /dev/nvme0n1
 *   ro                              (or: ro = yes|no|true|false|1|0)
 *   shared                          (several client sessions may write)
 *   allow = HOSTID HOSTID:ro ...    (who may open it; * = every host; none:
 *                                    nobody, unless --no-auth)
 *
 * Errors name the file and line. docs/server-config.md and
 * ibnbd-server.conf(5) describe the format for operators.
 */
#ifndef IBNBD_SERVER_CONF_H
#define IBNBD_SERVER_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h" /* IBNBD_SYSCONFDIR */
#include "busypoll.h"
#include "endpoint.h"
#include "ibnbd/proto.h"

#define SERVER_MAX_LISTEN 16
#define SERVER_MAX_EXPORTS 256
/* Read when neither --config nor --export is given. */
#define SERVER_DEFAULT_CONFIG IBNBD_SYSCONFDIR "/server.conf"
#define SERVER_MAX_WORKERS 64

#define SERVER_MAX_ALLOW 64

/* What authenticated hosts may hold (checked at HELLO and OPEN). */
struct server_limits {
	unsigned int max_connections;
	unsigned int max_connections_per_host;
	unsigned int max_sessions_per_host;
	unsigned int max_opens_per_session;
	uint64_t max_slot_memory; /* bytes; 0 until the server picks it from its memory */
};

#define SERVER_DEFAULT_MAX_CONNECTIONS 1024
#define SERVER_DEFAULT_MAX_CONNECTIONS_PER_HOST 64
#define SERVER_DEFAULT_MAX_SESSIONS_PER_HOST 8
#define SERVER_MAX_OPENS_PER_SESSION 64 /* also the default */
#define SERVER_MAX_SLOT_MEMORY_DEFAULT_CAP (16ull << 30)

/* The default max_slot_memory for a host with mem_bytes of memory: half
 * of it, at most SERVER_MAX_SLOT_MEMORY_DEFAULT_CAP. */
uint64_t config_default_slot_memory(uint64_t mem_bytes);

/* One host an export lets in: by id, or every host ("*"). */
struct allow_entry {
	char id[IBNBD_HOST_ID_MAX]; /* "*": every (authenticated) host */
	bool ro;                    /* ":ro": read-only for this host */
};

struct export_spec {
	char name[IBNBD_EXPORT_NAME_MAX];
	char path[4096];
	bool ro;
	bool shared; /* no single-writer rule: several sessions may open it rw */
	unsigned int nallow; /* 0: nobody may open it, unless --no-auth */
	struct allow_entry allow[SERVER_MAX_ALLOW];
};

/*
 * Whether host_id may open e, and how: 0 (read-write, if the export is),
 * 1 (read-only), or -EACCES (not listed).
 */
int export_spec_allows(const struct export_spec *e, const char *host_id);

struct server_config {
	struct endpoint listen[SERVER_MAX_LISTEN];
	unsigned int nlisten;
	struct export_spec exports[SERVER_MAX_EXPORTS];
	unsigned int nexports;
	unsigned int workers;     /* 0: min(online CPUs, 4) */
	unsigned int queue_depth; /* per-connection cap */
	uint32_t max_io_size;     /* per-connection cap, bytes */
	unsigned int keepalive_timeout; /* seconds of silence before a drop; 0 = never */
	char hosts_file[4096]; /* "" unless given: then no_auth must be */
	bool no_auth;          /* --no-auth: every host may connect, unproven */
	char metrics[300];     /* ADDR:PORT to serve /metrics on, or "" */
	char control_socket[108]; /* "": the default (ctl.h); "none": no socket */
	struct busypoll_config poll;
	unsigned int max_handshakes; /* connections before HELLO, in all */
	unsigned int max_handshakes_per_address; /* the same, from one address */
	struct server_limits limits;
	/* The configuration file read ("" if none): SIGHUP reads it again,
	 * and its exports are exports[0 .. nfile_exports); --export's come
	 * after them and stay as they are. */
	char config_path[4096];
	unsigned int nfile_exports;
	/* The same for listen addresses, and the settings the command line
	 * gave (CMDLINE_*): a reload compares only what the file decides. */
	unsigned int nfile_listen;
	unsigned int cmdline_set;
	bool slot_memory_picked; /* max_slot_memory was not set: the server chose it */
};

enum {
	CMDLINE_WORKERS = 1 << 0,
	CMDLINE_KEEPALIVE = 1 << 1,
	CMDLINE_HOSTS_FILE = 1 << 2,
	CMDLINE_METRICS = 1 << 3,
	CMDLINE_CONTROL_SOCKET = 1 << 4,
	CMDLINE_POLL = 1 << 5,
};

/* What the command line said, as main() collected it with getopt. */
struct server_cmdline {
	const char *config;         /* --config FILE, or NULL */
	const char *default_config; /* read when neither --config nor --export is given */
	const char *workers;        /* --workers N, or NULL */
	const char *keepalive_timeout; /* --keepalive-timeout S, or NULL */
	const char *hosts_file;     /* --hosts-file FILE, or NULL */
	const char *metrics;        /* --metrics ADDR:PORT, or NULL */
	const char *control_socket; /* --control-socket PATH|none, or NULL */
	bool poll;                  /* --poll */
	const char *poll_idle_us;   /* --poll-idle-us US (implies --poll), or NULL */
	bool no_auth;               /* --no-auth */
	const char *const *listen;  /* --listen values, in order */
	unsigned int nlisten;
	const char *const *exports; /* --export values, in order */
	unsigned int nexports;
};

#define SERVER_DEFAULT_KEEPALIVE_TIMEOUT 15
#define SERVER_DEFAULT_MAX_HANDSHAKES 256
/* A host has at most max_connections_per_host (64) connections anyway. */
#define SERVER_DEFAULT_MAX_HANDSHAKES_PER_ADDRESS 64
#define SERVER_MAX_KEEPALIVE_TIMEOUT 3600

/* The defaults: no listeners or exports, queue_depth 128, max_io_size 512 KiB,
 * keepalive_timeout 15 s. */
void config_init(struct server_config *cfg);
/* "NAME=PATH[,ro|,rw][,shared][,allow=ID[:ro]+ID...|*]". 0 or -EINVAL
 * with a sentence in err. */
int config_add_export(struct server_config *cfg, const char *spec, char *err, size_t errlen);
/* "S" seconds, 0..SERVER_MAX_KEEPALIVE_TIMEOUT. */
int config_set_keepalive_timeout(struct server_config *cfg, const char *v, char *err,
				 size_t errlen);
/* "ADDR[:PORT]" or "[IPv6]:PORT". 0 or -EINVAL with a sentence in err. */
int config_add_listen(struct server_config *cfg, const char *addr, char *err, size_t errlen);
/*
 * Reads the file's lines from f; path only names it in errors, which read
 * "PATH:LINE: what" (or "PATH: what" for the whole file). 0, -EINVAL, or
 * -EIO when f cannot be read.
 */
int config_parse(struct server_config *cfg, FILE *f, const char *path, char *err,
		 size_t errlen);
/* config_parse() on the file at path; -errno when it cannot be opened. */
int config_load(struct server_config *cfg, const char *path, char *err, size_t errlen);
/*
 * The whole configuration on top of config_init(): the file first, then the
 * command line's listen addresses and exports after the file's, --workers
 * over the file's. No listen address means 0.0.0.0:4422; no export is an
 * error, and so are neither or both of a hosts file and --no-auth. workers stays 0 when neither says (the caller picks the default).
 * 0, or -errno with a sentence for the operator in err.
 */
int config_from_cmdline(struct server_config *cfg, const struct server_cmdline *cl,
			char *err, size_t errlen);

#endif
