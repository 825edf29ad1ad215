// SPDX-License-Identifier: GPL-2.0-only
/*
 * ibnbd_sd_notify() against a real AF_UNIX datagram socket standing in for
 * the service manager: a path one and an abstract one.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "sd_notify.h"
#include "tap.h"

/* Binds a datagram socket; name starts with '/' or '@' as in NOTIFY_SOCKET. */
static int listen_on(const char *name)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t len = strlen(name);
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (fd < 0 || len >= sizeof(sa.sun_path)) {
		printf("Bail out! socket: %s\n", strerror(errno));
		exit(1);
	}
	memcpy(sa.sun_path, name, len);
	if (name[0] == '@')
		sa.sun_path[0] = '\0';
	if (bind(fd, (struct sockaddr *)&sa,
		 (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (name[0] == '/')))) {
		printf("Bail out! bind %s: %s\n", name, strerror(errno));
		exit(1);
	}
	return fd;
}

/* The next datagram, or "" when none is waiting. */
static const char *received(int fd)
{
	static char buf[256];
	ssize_t n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);

	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

static void test_to(const char *name, const char *desc)
{
	int fd = listen_on(name), ret;
	const char *got;

	setenv("NOTIFY_SOCKET", name, 1);
	ret = ibnbd_sd_notify("READY=1");
	got = received(fd);
	ok(ret == 0 && !strcmp(got, "READY=1"), "%s: READY=1 arrives (%d, '%s')", desc, ret, got);
	ret = ibnbd_sd_notify("STOPPING=1\nSTATUS=draining");
	got = received(fd);
	ok(ret == 0 && !strcmp(got, "STOPPING=1\nSTATUS=draining"),
	   "%s: several assignments in one datagram (%d)", desc, ret);
	ok(!strcmp(getenv("NOTIFY_SOCKET"), name), "%s: NOTIFY_SOCKET is left as it was", desc);
	close(fd);
}

int main(void)
{
	char dir[] = "/tmp/ibnbd-test-notify-XXXXXX", path[128], name[160];
	char *d = mkdtemp(dir);

	if (!d) {
		printf("Bail out! mkdtemp: %s\n", strerror(errno));
		return 1;
	}
	unsetenv("NOTIFY_SOCKET");
	ok(ibnbd_sd_notify("READY=1") == 0, "no NOTIFY_SOCKET: nothing to do, 0");
	setenv("NOTIFY_SOCKET", "", 1);
	ok(ibnbd_sd_notify("READY=1") == 0, "an empty NOTIFY_SOCKET: nothing to do, 0");

	snprintf(path, sizeof(path), "%s/notify", dir);
	test_to(path, "a path socket");
	unlink(path);

	snprintf(name, sizeof(name), "@ibnbd-test-notify-%d", (int)getpid());
	test_to(name, "an abstract socket");

	setenv("NOTIFY_SOCKET", path, 1);
	ok(ibnbd_sd_notify("READY=1") == -ENOENT, "nobody at the path: -ENOENT");
	setenv("NOTIFY_SOCKET", "notify", 1);
	ok(ibnbd_sd_notify("READY=1") == -EINVAL, "a relative path: -EINVAL");
	setenv("NOTIFY_SOCKET", "@", 1);
	ok(ibnbd_sd_notify("READY=1") == -EINVAL, "an empty abstract name: -EINVAL");
	memset(name, 'x', sizeof(name) - 1);
	name[0] = '/';
	name[sizeof(name) - 1] = '\0';
	setenv("NOTIFY_SOCKET", name, 1);
	ok(ibnbd_sd_notify("READY=1") == -EINVAL, "a path too long for sun_path: -EINVAL");
	rmdir(dir);
	return tap_done();
}
