// SPDX-License-Identifier: GPL-2.0-only
#include "log.h"

#include "clock.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

unsigned int log_debug_mask;
static const char *log_prog = "ibnbd";
/* IBNBD_LOG_TIME=1: each line starts with the monotonic time in seconds,
 * so that two daemons' logs on one host can be lined up (the tests measure
 * how long after a server listens its clients are back). */
static bool log_time;
/* stderr is systemd's journal stream: each line starts with its syslog
 * priority ("<3>" for an error), so that `journalctl -p err` finds it. */
static bool log_journal;

static const struct {
	const char *name;
	unsigned int bit;
} log_cats[] = {
	{ "io", LOG_CAT_IO },     { "rdma", LOG_CAT_RDMA },
	{ "ublk", LOG_CAT_UBLK }, { "ctl", LOG_CAT_CTL },
	{ "proto", LOG_CAT_PROTO },
};

/* JOURNAL_STREAM is "DEV:INODE" of the journal's stream; it holds only if
 * stderr is still that stream (not redirected by a script the unit runs). */
static bool stderr_is_journal(void)
{
	const char *env = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;
	int n = 0;

	if (!env || sscanf(env, "%llu:%llu%n", &dev, &ino, &n) != 2 || env[n])
		return false;
	return !fstat(STDERR_FILENO, &st) && st.st_dev == dev && st.st_ino == ino;
}

void log_init(const char *progname)
{
	const char *env = getenv("IBNBD_DEBUG");

	log_prog = progname;
	log_time = getenv("IBNBD_LOG_TIME") && strcmp(getenv("IBNBD_LOG_TIME"), "0");
	log_journal = stderr_is_journal();
	if (env && log_debug_enable(env) < 0)
		log_warn("IBNBD_DEBUG: unknown category in '%s' (known: io, rdma, ublk, ctl, proto, all)",
			 env);
}

int log_debug_enable(const char *list)
{
	unsigned int mask = 0;
	const char *p = list;

	while (*p) {
		size_t len = strcspn(p, ",");
		size_t i;
		bool found = false;

		if (len == 3 && !strncmp(p, "all", 3)) {
			mask = ~0u;
			found = true;
		}
		for (i = 0; !found && i < sizeof(log_cats) / sizeof(log_cats[0]); i++) {
			if (strlen(log_cats[i].name) == len && !strncmp(p, log_cats[i].name, len)) {
				mask |= log_cats[i].bit;
				found = true;
			}
		}
		if (!found && len)
			return -EINVAL;
		p += len;
		if (*p == ',')
			p++;
	}
	log_debug_mask |= mask;
	return 0;
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	static const char *const tag[] = { "error: ", "warning: ", "", "debug: " };
	/* syslog's LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG */
	static const char *const prio[] = { "<3>", "<4>", "<6>", "<7>" };
	const char *p = log_journal ? prio[lvl] : "";
	char buf[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	/* One write per line, so lines of concurrent threads don't interleave. */
	if (log_time) {
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		fprintf(stderr, "%s[%lld.%03ld] %s: %s%s\n", p, (long long)ts.tv_sec,
			ts.tv_nsec / 1000000, log_prog, tag[lvl], buf);
	} else {
		fprintf(stderr, "%s%s: %s%s\n", p, log_prog, tag[lvl], buf);
	}
}

bool log_rl_allow(struct log_rl *rl)
{
	int64_t now = clock_now_ms();

	if (now - rl->window_start_ms >= LOG_RL_WINDOW_MS) {
		if (rl->suppressed)
			log_warn("(%u more such messages in the last %d s were not logged)",
				 rl->suppressed, LOG_RL_WINDOW_MS / 1000);
		rl->window_start_ms = now;
		rl->logged = rl->suppressed = 0;
	}
	if (rl->logged < LOG_RL_BURST) {
		rl->logged++;
		return true;
	}
	rl->suppressed++;
	return false;
}
