/* SPDX-License-Identifier: GPL-2.0-only */
/* Small helpers every part of ibnbd uses. */
#ifndef IBNBD_UTIL_H
#define IBNBD_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <unistd.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static inline bool is_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

/* 0 or -errno. */
static inline int fd_set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

/* Worker threads unless told otherwise: one per online CPU, at most 4. */
static inline unsigned int default_worker_count(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n < 1 ? 1 : n > 4 ? 4 : (unsigned int)n;
}

#endif
