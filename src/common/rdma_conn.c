// SPDX-License-Identifier: GPL-2.0-only
#include "rdma_conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "clock.h"

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

/* librdmacm: -1 + errno; keep a sane value if errno was left at 0. */
static int cm_err(void)
{
	return errno ? -errno : -EIO;
}

int rdma_conn_channel_create(struct rdma_event_channel **out)
{
	struct rdma_event_channel *ch = rdma_create_event_channel();
	int ret;

	if (!ch)
		return cm_err();
	ret = set_nonblock(ch->fd);
	if (ret) {
		rdma_destroy_event_channel(ch);
		return ret;
	}
	*out = ch;
	return 0;
}

void rdma_conn_channel_destroy(struct rdma_event_channel *ch)
{
	if (ch)
		rdma_destroy_event_channel(ch);
}

int rdma_conn_get_event(struct rdma_event_channel *ch, struct rdma_cm_event **ev)
{
	if (rdma_get_cm_event(ch, ev))
		return errno == EWOULDBLOCK ? -EAGAIN : cm_err();
	return 0;
}

int rdma_conn_wait_event(struct rdma_event_channel *ch, int timeout_ms,
			 struct rdma_cm_event **ev)
{
	int64_t deadline = clock_now_ms() + timeout_ms;

	for (;;) {
		struct pollfd pfd = { .fd = ch->fd, .events = POLLIN };
		int left = -1, ret;

		ret = rdma_conn_get_event(ch, ev);
		if (ret != -EAGAIN)
			return ret;
		if (timeout_ms >= 0) {
			left = (int)(deadline - clock_now_ms());
			if (left <= 0)
				return -ETIMEDOUT;
		}
		ret = poll(&pfd, 1, left);
		if (ret < 0 && errno != EINTR)
			return -errno;
	}
}

int rdma_conn_sockaddr(const struct endpoint *ep, struct sockaddr_storage *ss, bool passive)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct addrinfo *res;
	char port[8];
	int ret;

	hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
	snprintf(port, sizeof(port), "%u", ep->port);
	ret = getaddrinfo(ep->host, port, &hints, &res);
	if (ret)
		return ret == EAI_SYSTEM ? -errno : -EADDRNOTAVAIL;
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	return 0;
}

int rdma_conn_listen(struct rdma_event_channel *ch, const struct endpoint *ep,
		     int backlog, struct rdma_cm_id **out)
{
	struct sockaddr_storage ss;
	struct rdma_cm_id *id;
	int ret;

	ret = rdma_conn_sockaddr(ep, &ss, true);
	if (ret)
		return ret;
	if (rdma_create_id(ch, &id, NULL, RDMA_PS_TCP))
		return cm_err();
	if (rdma_bind_addr(id, (struct sockaddr *)&ss) || rdma_listen(id, backlog)) {
		ret = cm_err();
		rdma_destroy_id(id);
		return ret;
	}
	*out = id;
	return 0;
}

/* Waits for one CM event of the wanted type; any other is an error. */
static int expect_event(struct rdma_event_channel *ch, enum rdma_cm_event_type want,
			int timeout_ms)
{
	struct rdma_cm_event *ev;
	int ret = rdma_conn_wait_event(ch, timeout_ms, &ev);

	if (ret)
		return ret;
	if (ev->event == want)
		ret = 0;
	else if (ev->event == RDMA_CM_EVENT_ADDR_ERROR)
		ret = ev->status < 0 ? ev->status : -EHOSTUNREACH;
	else if (ev->event == RDMA_CM_EVENT_ROUTE_ERROR)
		ret = ev->status < 0 ? ev->status : -ENETUNREACH;
	else
		ret = -EHOSTUNREACH;
	rdma_ack_cm_event(ev);
	return ret;
}

int rdma_conn_resolve(struct rdma_event_channel *ch, const struct endpoint *ep,
		      int timeout_ms, struct rdma_cm_id **out)
{
	struct sockaddr_storage ss;
	struct rdma_cm_id *id;
	int ret;

	ret = rdma_conn_sockaddr(ep, &ss, false);
	if (ret)
		return ret;
	if (rdma_create_id(ch, &id, NULL, RDMA_PS_TCP))
		return cm_err();
	if (rdma_resolve_addr(id, NULL, (struct sockaddr *)&ss, timeout_ms)) {
		ret = cm_err();
		goto out_destroy;
	}
	ret = expect_event(ch, RDMA_CM_EVENT_ADDR_RESOLVED, timeout_ms + 500);
	if (ret)
		goto out_destroy;
	if (rdma_resolve_route(id, timeout_ms)) {
		ret = cm_err();
		goto out_destroy;
	}
	ret = expect_event(ch, RDMA_CM_EVENT_ROUTE_RESOLVED, timeout_ms + 500);
	if (ret)
		goto out_destroy;
	*out = id;
	return 0;
out_destroy:
	rdma_destroy_id(id);
	return ret;
}

int rdma_conn_connect(struct rdma_cm_id *id, const void *pdata, uint8_t pdata_len,
		      int timeout_ms, void *rep, size_t rep_len, size_t *got)
{
	struct rdma_conn_param param = {
		.private_data = pdata,
		.private_data_len = pdata_len,
		.responder_resources = 1,
		.initiator_depth = 1,
		.retry_count = 7,
		.rnr_retry_count = 7,
	};
	struct rdma_cm_event *ev;
	int ret;

	*got = 0;
	if (rdma_connect(id, &param))
		return cm_err();
	ret = rdma_conn_wait_event(id->channel, timeout_ms, &ev);
	if (ret)
		return ret;
	switch (ev->event) {
	case RDMA_CM_EVENT_ESTABLISHED:
		ret = 0;
		break;
	case RDMA_CM_EVENT_REJECTED:
		ret = -ECONNREFUSED;
		break;
	case RDMA_CM_EVENT_UNREACHABLE:
		ret = -EHOSTUNREACH;
		break;
	default:
		ret = -ECONNABORTED;
		break;
	}
	if (ev->param.conn.private_data && rep) {
		size_t n = ev->param.conn.private_data_len;

		*got = n < rep_len ? n : rep_len;
		memcpy(rep, ev->param.conn.private_data, *got);
	}
	rdma_ack_cm_event(ev);
	return ret;
}

int rdma_conn_create_qp(struct rdma_cm_id *id, struct ibv_pd *pd, struct ibv_cq *cq,
			const struct rdma_conn_qp_caps *caps)
{
	struct ibv_qp_init_attr attr = {
		.send_cq = cq,
		.recv_cq = cq,
		.qp_type = IBV_QPT_RC,
		.cap = {
			.max_send_wr = caps->max_send_wr,
			.max_recv_wr = caps->max_recv_wr,
			.max_send_sge = caps->max_send_sge,
			.max_recv_sge = caps->max_recv_sge,
			.max_inline_data = caps->max_inline_data,
		},
	};

	if (rdma_create_qp(id, pd, &attr))
		return cm_err();
	return 0;
}

int rdma_conn_reg_mr(struct ibv_pd *pd, void *addr, size_t len, int access,
		     struct ibv_mr **out)
{
	struct ibv_mr *mr = ibv_reg_mr(pd, addr, len, access);

	if (!mr)
		return errno ? -errno : -ENOMEM;
	*out = mr;
	return 0;
}

void rdma_conn_dereg_mr(struct ibv_mr *mr)
{
	if (mr)
		ibv_dereg_mr(mr);
}

int rdma_conn_comp_channel_create(struct ibv_context *ctx, struct ibv_comp_channel **out)
{
	struct ibv_comp_channel *ch = ibv_create_comp_channel(ctx);
	int ret;

	if (!ch)
		return errno ? -errno : -ENOMEM;
	ret = set_nonblock(ch->fd);
	if (ret) {
		ibv_destroy_comp_channel(ch);
		return ret;
	}
	*out = ch;
	return 0;
}

int rdma_conn_cq_event(struct ibv_comp_channel *ch, struct ibv_cq **cq)
{
	void *ctx;
	int ret;

	if (ibv_get_cq_event(ch, cq, &ctx))
		return errno == EAGAIN || errno == EWOULDBLOCK ? -EAGAIN : (errno ? -errno : -EIO);
	ibv_ack_cq_events(*cq, 1);
	ret = ibv_req_notify_cq(*cq, 0);
	return ret > 0 ? -ret : ret;
}

void rdma_conn_peer_str(struct rdma_cm_id *id, char *buf, size_t len)
{
	struct sockaddr *sa = rdma_get_peer_addr(id);
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned int port = 0;

	if (sa && sa->sa_family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
		port = ntohs(sin->sin_port);
		snprintf(buf, len, "%s:%u", host, port);
	} else if (sa && sa->sa_family == AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)sa;

		inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
		port = ntohs(sin6->sin6_port);
		snprintf(buf, len, "[%s]:%u", host, port);
	} else {
		snprintf(buf, len, "?");
	}
}
