// SPDX-License-Identifier: GPL-2.0-only
#include "verbs.h"

#include <errno.h>
#include <linux/capability.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "util.h"

/* ibv_reg_mr*'s answer as 0 or -errno. */
static int mr_result(struct ibv_mr *mr, struct ibv_mr **out)
{
	if (!mr)
		return errno ? -errno : -ENOMEM;
	*out = mr;
	return 0;
}

int verbs_reg_mr(struct ibv_pd *pd, void *addr, size_t len, int access,
		     struct ibv_mr **out)
{
	return mr_result(ibv_reg_mr(pd, addr, len, access), out);
}

int verbs_reg_mr_zero_based(struct ibv_pd *pd, void *addr, size_t len, int access,
			    struct ibv_mr **out)
{
	return mr_result(ibv_reg_mr_iova2(pd, addr, len, 0, (unsigned int)access), out);
}

void verbs_dereg_mr(struct ibv_mr *mr)
{
	if (mr)
		ibv_dereg_mr(mr);
}

int verbs_comp_channel_create(struct ibv_context *ctx, struct ibv_comp_channel **out)
{
	struct ibv_comp_channel *ch = ibv_create_comp_channel(ctx);
	int ret;

	if (!ch)
		return errno ? -errno : -ENOMEM;
	ret = fd_set_nonblock(ch->fd);
	if (ret) {
		ibv_destroy_comp_channel(ch);
		return ret;
	}
	*out = ch;
	return 0;
}

int verbs_cq_event_take(struct ibv_comp_channel *ch, struct ibv_cq **cq)
{
	void *ctx;

	if (ibv_get_cq_event(ch, cq, &ctx))
		return errno == EAGAIN || errno == EWOULDBLOCK ? -EAGAIN : (errno ? -errno : -EIO);
	ibv_ack_cq_events(*cq, 1);
	return 0;
}

int verbs_cq_event(struct ibv_comp_channel *ch, struct ibv_cq **cq)
{
	int ret = verbs_cq_event_take(ch, cq);

	if (ret)
		return ret;
	ret = ibv_req_notify_cq(*cq, 0);
	return ret > 0 ? -ret : ret;
}

bool verbs_may_pin_past_limit(void)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[2] = { 0 };

	if (syscall(SYS_capget, &h, d))
		return false;
	return d[CAP_IPC_LOCK / 32].effective & (1u << (CAP_IPC_LOCK % 32));
}

uint64_t verbs_pin_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_MEMLOCK, &rl) || rl.rlim_cur == RLIM_INFINITY ||
	    verbs_may_pin_past_limit())
		return 0;
	return (uint64_t)rl.rlim_cur;
}

void verbs_reg_why(int ret, size_t len, char *buf, size_t buflen)
{
	uint64_t limit = verbs_pin_limit();

	if ((ret == -ENOMEM || ret == -EAGAIN || ret == -EPERM) && limit)
		snprintf(buf, buflen,
			 "%s: pinning %zu MiB more passes the locked-memory limit "
			 "(%llu MiB; raise LimitMEMLOCK= or ulimit -l)",
			 strerror(-ret), len >> 20, (unsigned long long)(limit >> 20));
	else
		snprintf(buf, buflen, "%s", strerror(-ret));
}
