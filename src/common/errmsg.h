/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Parsers report a bad value with a sentence for the operator in a caller's
 * buffer and -EINVAL, in one statement: return errmsg(err, errlen, "...").
 */
#ifndef IBNBD_ERRMSG_H
#define IBNBD_ERRMSG_H

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

static inline __attribute__((format(printf, 3, 4))) int errmsg(char *err, size_t errlen,
							      const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

#endif
