/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Logging for both daemons and the CLI: one line per message on stderr
 * (systemd's journal adds time and unit), prefixed with the program name;
 * when stderr is the journal (JOURNAL_STREAM names it), each line starts
 * with its syslog priority, so `journalctl -p err` shows the errors.
 * Debug messages are per category and switched on at run time
 * (IBNBD_DEBUG=io,rdma or "all", or log_debug_enable()).
 */
#ifndef IBNBD_LOG_H
#define IBNBD_LOG_H

#include <stdbool.h>
#include <stdint.h>

enum log_level { LOG_LVL_ERR, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

enum log_cat {
	LOG_CAT_IO = 1u << 0,
	LOG_CAT_RDMA = 1u << 1,
	LOG_CAT_UBLK = 1u << 2,
	LOG_CAT_CTL = 1u << 3,
	LOG_CAT_PROTO = 1u << 4,
};

void log_init(const char *progname);
/* Parses a comma-separated category list ("io,rdma", "all"); -EINVAL on an
 * unknown name, leaving the enabled set unchanged. */
int log_debug_enable(const char *list);
extern unsigned int log_debug_mask;

void log_msg(enum log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/*
 * A warning a peer can provoke at will (a refused host) is rate-limited:
 * at most LOG_RL_BURST per LOG_RL_WINDOW_MS per limiter, then one line
 * saying how many were left out. A limiter belongs to one thread.
 */
#define LOG_RL_BURST 10
#define LOG_RL_WINDOW_MS 10000
struct log_rl {
	int64_t window_start_ms;
	unsigned int logged, suppressed;
};
/* Whether to log now; says how many were left out when a window reopens. */
bool log_rl_allow(struct log_rl *rl);
#define log_ratelimited(rl, ...)                                               \
	do {                                                                   \
		if (log_rl_allow(rl))                                          \
			log_msg(LOG_LVL_WARN, __VA_ARGS__);                    \
	} while (0)

#define log_err(...) log_msg(LOG_LVL_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(cat, ...)                                                    \
	do {                                                                   \
		if (__builtin_expect(log_debug_mask & (cat), 0))               \
			log_msg(LOG_LVL_DEBUG, __VA_ARGS__);                   \
	} while (0)

#endif
