// SPDX-License-Identifier: GPL-2.0-only
#include "sd_notify.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int ibnbd_sd_notify(const char *state)
{
	const char *name = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t len, slen = strlen(state);
	socklen_t salen;
	ssize_t n;
	int fd, ret = 0;

	if (!name || !*name)
		return 0;
	len = strlen(name);
	/* A path needs room for its NUL; an abstract name has none and its
	 * leading '@' stands for the NUL that starts it. */
	if ((name[0] != '/' && name[0] != '@') || len < 2 ||
	    len > sizeof(sa.sun_path) - (name[0] == '/'))
		return -EINVAL;
	memcpy(sa.sun_path, name, len);
	if (name[0] == '@')
		sa.sun_path[0] = '\0';
	salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (name[0] == '/'));

	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	n = sendto(fd, state, slen, MSG_NOSIGNAL, (const struct sockaddr *)&sa, salen);
	if (n < 0)
		ret = -errno;
	else if ((size_t)n != slen)
		ret = -EMSGSIZE;
	close(fd);
	return ret;
}
