// SPDX-License-Identifier: GPL-2.0-only
#include "cm.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "util.h"

/* librdmacm: -1 + errno; keep a sane value if errno was left at 0. */
static int cm_err(void)
{
	return errno ? -errno : -EIO;
}

int cm_channel_create(struct rdma_event_channel **out)
{
	struct rdma_event_channel *ch = rdma_create_event_channel();
	int ret;

	if (!ch)
		return cm_err();
	ret = fd_set_nonblock(ch->fd);
	if (ret) {
		rdma_destroy_event_channel(ch);
		return ret;
	}
	*out = ch;
	return 0;
}

void cm_channel_destroy(struct rdma_event_channel *ch)
{
	if (ch)
		rdma_destroy_event_channel(ch);
}

int cm_get_event(struct rdma_event_channel *ch, struct rdma_cm_event **ev)
{
	if (rdma_get_cm_event(ch, ev))
		return errno == EWOULDBLOCK ? -EAGAIN : cm_err();
	return 0;
}

int cm_wait_event(struct rdma_event_channel *ch, int timeout_ms,
			 struct rdma_cm_event **ev)
{
	int64_t deadline = clock_now_ms() + timeout_ms;

	for (;;) {
		struct pollfd pfd = { .fd = ch->fd, .events = POLLIN };
		int left = -1, ret;

		ret = cm_get_event(ch, ev);
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

int cm_sockaddr(const struct endpoint *ep, struct sockaddr_storage *ss, bool passive)
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

int cm_listen(struct rdma_event_channel *ch, const struct endpoint *ep,
		     int backlog, struct rdma_cm_id **out)
{
	struct sockaddr_storage ss;
	struct rdma_cm_id *id;
	int ret;

	ret = cm_sockaddr(ep, &ss, true);
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
	int ret = cm_wait_event(ch, timeout_ms, &ev);

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

int cm_resolve(struct rdma_event_channel *ch, const struct endpoint *ep,
		      int timeout_ms, struct rdma_cm_id **out)
{
	struct sockaddr_storage ss;
	struct rdma_cm_id *id;
	int ret;

	ret = cm_sockaddr(ep, &ss, false);
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

int cm_connect(struct rdma_cm_id *id, const void *pdata, uint8_t pdata_len,
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
	ret = cm_wait_event(id->channel, timeout_ms, &ev);
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

int cm_create_qp(struct rdma_cm_id *id, struct ibv_pd *pd, struct ibv_cq *cq,
			const struct cm_qp_caps *caps)
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

void cm_peer_str(struct rdma_cm_id *id, char *buf, size_t len)
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
