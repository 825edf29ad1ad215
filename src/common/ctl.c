// SPDX-License-Identifier: GPL-2.0-only
#include "ctl.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "log.h"

/* A request or response larger than this is refused, not buffered. */
#define CTL_MAX_MSG (1u << 20)
/* A client that does not finish its request within this is dropped. */
#define CTL_REQUEST_TIMEOUT_MS 5000

struct ctl_server {
	int fd;
	char path[108];
};

const char *ctl_socket_path(void)
{
	const char *env = getenv("IBNBD_CLIENT_SOCKET");

	return env && *env ? env : IBNBD_RUNDIR "/client.sock";
}

const char *ctl_server_socket_path(void)
{
	const char *env = getenv("IBNBD_SERVER_SOCKET");

	return env && *env ? env : IBNBD_RUNDIR "/server.sock";
}

/* Reads one '\n'-terminated line (or up to EOF) into a new buffer. */
static int read_line(int fd, int timeout_ms, char **out)
{
	long long deadline = clock_now_ms() + timeout_ms;
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap);

	if (!buf)
		return -ENOMEM;
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		long long left = deadline - clock_now_ms();
		ssize_t n;
		int ret;

		if (left <= 0) {
			free(buf);
			return -ETIMEDOUT;
		}
		ret = poll(&pfd, 1, (int)left);
		if (ret < 0 && errno == EINTR)
			continue;
		if (ret <= 0) {
			free(buf);
			return ret ? -errno : -ETIMEDOUT;
		}
		if (len + 1 >= cap) {
			char *nb;

			if (cap >= CTL_MAX_MSG) {
				free(buf);
				return -EMSGSIZE;
			}
			cap *= 2;
			nb = realloc(buf, cap);
			if (!nb) {
				free(buf);
				return -ENOMEM;
			}
			buf = nb;
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			free(buf);
			return -errno;
		}
		len += (size_t)n;
		buf[len] = '\0';
		if (n == 0 || memchr(buf + len - (size_t)n, '\n', (size_t)n)) {
			if (len == 0) {
				free(buf);
				return -ECONNRESET;
			}
			*out = buf;
			return 0;
		}
	}
}

static int write_all(int fd, const char *s, size_t len)
{
	while (len) {
		ssize_t n = send(fd, s, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		s += n;
		len -= (size_t)n;
	}
	return 0;
}

static int send_json(int fd, json_object *obj)
{
	const char *s = json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN);
	int ret = write_all(fd, s, strlen(s));

	return ret ? ret : write_all(fd, "\n", 1);
}

static int parse_json(const char *s, json_object **out)
{
	enum json_tokener_error jerr;
	json_object *obj = json_tokener_parse_verbose(s, &jerr);

	if (!obj || !json_object_is_type(obj, json_type_object)) {
		json_object_put(obj);
		return -EBADMSG;
	}
	*out = obj;
	return 0;
}

static int sock_addr(const char *path, struct sockaddr_un *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa->sun_path))
		return -ENAMETOOLONG;
	strcpy(sa->sun_path, path);
	return 0;
}

int ctl_call(const struct ctl_peer *peer, json_object *req, json_object **resp, int timeout_ms,
	     char *err, size_t errlen)
{
	const char *path = peer->path;
	struct sockaddr_un sa;
	char *line = NULL;
	int fd, ret;

	ret = sock_addr(path, &sa);
	if (ret) {
		snprintf(err, errlen, "control socket path too long: %s", path);
		json_object_put(req);
		return ret;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot create a socket: %s", strerror(-ret));
		json_object_put(req);
		return ret;
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		ret = -errno;
		if (ret == -ENOENT || ret == -ECONNREFUSED)
			snprintf(err, errlen, "%s is not running (nothing listens on %s); start it "
				 "with %s", peer->name, path, peer->start);
		else
			snprintf(err, errlen, "cannot reach %s at %s: %s", peer->name, path,
				 strerror(-ret));
		goto out_close;
	}
	ret = send_json(fd, req);
	if (ret) {
		snprintf(err, errlen, "cannot send to the daemon at %s: %s", path,
			 strerror(-ret));
		goto out_close;
	}
	shutdown(fd, SHUT_WR);
	ret = read_line(fd, timeout_ms, &line);
	if (ret) {
		snprintf(err, errlen, "no answer from the daemon at %s: %s", path,
			 ret == -ETIMEDOUT ? "timed out" : strerror(-ret));
		goto out_close;
	}
	ret = parse_json(line, resp);
	if (ret)
		snprintf(err, errlen, "the daemon at %s sent an unreadable answer", path);
	free(line);
out_close:
	close(fd);
	json_object_put(req);
	return ret;
}

/* Whether a live daemon accepts connections at sa. */
static bool answers(const struct sockaddr_un *sa)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool live = fd >= 0 && !connect(fd, (const struct sockaddr *)sa, sizeof(*sa));

	if (fd >= 0)
		close(fd);
	return live;
}

int ctl_server_create(const char *path, struct ctl_server **out)
{
	struct ctl_server *s;
	struct sockaddr_un sa;
	int ret;

	ret = sock_addr(path, &sa);
	if (ret)
		return ret;
	if (answers(&sa))
		return -EADDRINUSE;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	snprintf(s->path, sizeof(s->path), "%s", path);
	s->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (s->fd < 0) {
		ret = -errno;
		free(s);
		return ret;
	}
	/* A socket file nobody answers on belongs to a daemon that died. */
	unlink(path);
	if (bind(s->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    chmod(path, 0600) < 0 || listen(s->fd, 16) < 0) {
		ret = -errno;
		close(s->fd);
		free(s);
		return ret;
	}
	*out = s;
	return 0;
}

int ctl_server_fd(const struct ctl_server *s)
{
	return s->fd;
}

int ctl_server_accept(struct ctl_server *s)
{
	int fd = accept4(s->fd, NULL, NULL, SOCK_CLOEXEC);

	return fd < 0 ? -errno : fd;
}

void ctl_serve_fd(int fd, ctl_handler_fn fn, void *ctx)
{
	json_object *req = NULL, *resp;
	char *line = NULL;
	int ret;

	ret = read_line(fd, CTL_REQUEST_TIMEOUT_MS, &line);
	if (ret) {
		log_debug(LOG_CAT_CTL, "control: dropped a client: %s", strerror(-ret));
		goto out_close;
	}
	if (parse_json(line, &req))
		resp = ctl_error("the request is not a JSON object");
	else
		resp = fn(ctx, req);
	ret = send_json(fd, resp);
	if (ret)
		log_debug(LOG_CAT_CTL, "control: cannot answer: %s", strerror(-ret));
	json_object_put(resp);
	json_object_put(req);
	free(line);
out_close:
	close(fd);
}

void ctl_server_destroy(struct ctl_server *s)
{
	if (!s)
		return;
	close(s->fd);
	unlink(s->path);
	free(s);
}

json_object *ctl_error(const char *fmt, ...)
{
	json_object *o = json_object_new_object();
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	json_object_object_add(o, "ok", json_object_new_boolean(0));
	json_object_object_add(o, "error", json_object_new_string(buf));
	return o;
}

json_object *ctl_ok(void)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "ok", json_object_new_boolean(1));
	return o;
}
