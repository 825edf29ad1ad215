/* SPDX-License-Identifier: GPL-2.0-only */
/* A minimal TAP producer for the unit tests (meson: protocol 'tap'). */
#ifndef IBNBD_TAP_H
#define IBNBD_TAP_H

#include <stdarg.h>
#include <stdio.h>

static int tap_n, tap_failed;

/* One test line: the description on that line, whatever it holds (a
 * newline in it, e.g. a configuration file quoted, is written as \n, so
 * the harness never reads the rest as output that is not TAP). */
static inline __attribute__((format(printf, 2, 3))) void tap_line(int ok_, const char *fmt, ...)
{
	char buf[2048];
	const char *p;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	printf("%s %d - ", ok_ ? "ok" : "not ok", ++tap_n);
	for (p = buf; *p; p++) {
		if (*p == '\n')
			fputs("\\n", stdout);
		else
			putchar(*p);
	}
	putchar('\n');
}

#define ok(cond, ...)                                                          \
	do {                                                                   \
		int ok_ = !!(cond);                                            \
		tap_line(ok_, __VA_ARGS__);                                    \
		if (!ok_) {                                                    \
			tap_failed++;                                          \
			printf("#   failed at %s:%d: %s\n", __FILE__, __LINE__,    \
			       #cond);                                         \
		}                                                              \
	} while (0)

static inline int tap_done(void)
{
	printf("1..%d\n", tap_n);
	return tap_failed ? 1 : 0;
}

#endif
