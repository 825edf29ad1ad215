// SPDX-License-Identifier: GPL-2.0-only
/*
 * /metrics over HTTP with libmicrohttpd: a small, long-maintained C library
 * in Debian (the GNU project's), so that ibnbd parses no HTTP itself. One
 * internal polling thread, a few connections, short timeouts: a scraper
 * that misbehaves costs little and cannot reach the IO path.
 */
#include "metrics_http.h"

#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "endpoint.h"
#include "log.h"

#define METRICS_MAX_CONNECTIONS 8
#define METRICS_TIMEOUT_S 10

struct metrics_server {
	struct MHD_Daemon *mhd;
	metrics_fill_fn fill;
	void *arg;
	pthread_mutex_t lock; /* one scrape at a time */
	char addr[300];
};

static int resolve(const char *addr, struct sockaddr_storage *ss, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE };
	struct addrinfo *res;
	struct endpoint ep;
	const char *why;
	char port[8];
	int ret;

	if (endpoint_parse(addr, 0, &ep, &why)) {
		snprintf(err, errlen, "metrics address '%s': %s", addr, why);
		return -EINVAL;
	}
	if (!ep.port) {
		snprintf(err, errlen,
			 "metrics address '%s' has no port: write ADDR:PORT, e.g. 127.0.0.1:9642 or [::]:9642",
			 addr);
		return -EINVAL;
	}
	snprintf(port, sizeof(port), "%u", ep.port);
	ret = getaddrinfo(ep.host, port, &hints, &res);
	if (ret) {
		snprintf(err, errlen, "metrics address '%s': %s", addr, gai_strerror(ret));
		return -EINVAL;
	}
	if (ss) {
		memset(ss, 0, sizeof(*ss));
		memcpy(ss, res->ai_addr, res->ai_addrlen);
	}
	freeaddrinfo(res);
	return 0;
}

int metrics_addr_check(const char *addr, char *err, size_t errlen)
{
	return resolve(addr, NULL, err, errlen);
}

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned int code, const char *type,
			     char *body, size_t len, enum MHD_ResponseMemoryMode mode)
{
	struct MHD_Response *rsp = MHD_create_response_from_buffer(len, body, mode);
	enum MHD_Result ret;

	if (!rsp) {
		if (mode == MHD_RESPMEM_MUST_FREE)
			free(body);
		return MHD_NO;
	}
	MHD_add_response_header(rsp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	ret = MHD_queue_response(conn, code, rsp);
	MHD_destroy_response(rsp);
	return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version,
				  const char *upload_data, size_t *upload_data_size, void **state)
{
	static const char text[] = "text/plain; charset=utf-8";
	struct metrics_server *m = cls;
	struct prom p;

	if (strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD))
		return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, text, (char *)"only GET\n", 9,
			     MHD_RESPMEM_PERSISTENT);
	if (strcmp(url, "/metrics"))
		return reply(conn, MHD_HTTP_NOT_FOUND, text, (char *)"ibnbd serves /metrics\n", 22,
			     MHD_RESPMEM_PERSISTENT);
	prom_init(&p);
	pthread_mutex_lock(&m->lock);
	m->fill(m->arg, &p);
	pthread_mutex_unlock(&m->lock);
	if (p.oom || !p.buf) {
		prom_free(&p);
		return reply(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, text, (char *)"out of memory\n", 14,
			     MHD_RESPMEM_PERSISTENT);
	}
	return reply(conn, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", p.buf, p.len,
		     MHD_RESPMEM_MUST_FREE);
}

__attribute__((format(printf, 2, 0)))
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	const struct metrics_server *m = cls;
	char msg[512];
	size_t n;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	n = strlen(msg);
	while (n && msg[n - 1] == '\n')
		msg[--n] = '\0';
	log_warn("metrics %s: %s", m->addr, msg);
}

int metrics_server_start(const char *addr, metrics_fill_fn fill, void *arg,
			 struct metrics_server **out, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	struct metrics_server *m;
	unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
	int ret;

	ret = resolve(addr, &ss, err, errlen);
	if (ret)
		return ret;
	m = calloc(1, sizeof(*m));
	if (!m) {
		snprintf(err, errlen, "metrics: out of memory");
		return -ENOMEM;
	}
	m->fill = fill;
	m->arg = arg;
	snprintf(m->addr, sizeof(m->addr), "%s", addr);
	pthread_mutex_init(&m->lock, NULL);
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	/* errno tells why a bind failed (MHD logs it too). */
	errno = 0;
	m->mhd = MHD_start_daemon(flags, 0, NULL, NULL, on_request, m,
				  MHD_OPTION_EXTERNAL_LOGGER, mhd_log, m,
				  MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
				  MHD_OPTION_CONNECTION_LIMIT, (unsigned int)METRICS_MAX_CONNECTIONS,
				  MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)METRICS_TIMEOUT_S,
				  MHD_OPTION_END);
	if (!m->mhd) {
		ret = errno ? -errno : -EADDRNOTAVAIL;
		snprintf(err, errlen, "cannot serve metrics on %s: %s (is the address this host's, and the port free?)",
			 addr, strerror(-ret));
		pthread_mutex_destroy(&m->lock);
		free(m);
		return ret;
	}
	*out = m;
	return 0;
}

void metrics_server_stop(struct metrics_server *m)
{
	if (!m)
		return;
	if (m->mhd)
		MHD_stop_daemon(m->mhd);
	pthread_mutex_destroy(&m->lock);
	free(m);
}
