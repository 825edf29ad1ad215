// SPDX-License-Identifier: GPL-2.0-only
#include "transport/conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "clock.h"
#include "log.h"
#include "cm.h"
#include "verbs.h"

/* Work request ids: the kind in the top byte, the index below (a request
 * send: its slot; WR_CTRL_INDEX: the control message). */
#define WR_RECV (1ull << 56)
#define WR_SEND (2ull << 56)
#define WR_CTRL_INDEX 0xffffu
#define WR_KIND(id) ((id) & (0xffull << 56))
#define WR_INDEX(id) ((id) & 0xffffffffull)

/* One request send in this many asks for a completion: the answer tells
 * us the request arrived, so the others would only cost a CQ event (at
 * queue depth 1, a second wakeup per IO). */
#define SIGNAL_EVERY 16

struct conn {
	char host_id[IBNBD_HOST_ID_MAX]; /* the one it presented, for errors */
	struct rdma_event_channel *ech;
	struct rdma_cm_id *id;
	struct ibv_pd *pd; /* borrowed: the client's, per RDMA device */
	struct ibv_comp_channel *cc;
	struct ibv_cq *cq;
	bool cq_armed; /* polling: the CQ raises an event for its next completion */
	bool qp_created;
	bool connected;

	/* Receive ring: one buffer per credit (queue depth + control). */
	uint8_t *rx;
	struct ibv_mr *rx_mr;
	unsigned int nr_rx;
	/* One request header per slot (the second SGE of a WRITE, or the
	 * whole SEND of other opcodes) and one control message buffer. */
	struct ibnbd_io_req *hdr;
	struct ibv_mr *hdr_mr;
	uint8_t ctrl[IBNBD_MSG_MAX];
	struct ibv_mr *ctrl_mr;

	struct ibnbd_slot_desc slots;
	uint64_t features;
	uint16_t depth;
	uint64_t *gen; /* per slot: the generation of its current request */
	int64_t last_rx_ms;
	unsigned int nr_sends; /* request sends posted, for SIGNAL_EVERY */
	/* Requests conn_submit() queued, posted together by conn_flush(): one
	 * doorbell (on soft-RoCE, one system call) for a worker's batch. */
	struct conn_wr {
		struct ibv_send_wr wr;
		struct ibv_sge sge[2];
	} *wrs;                /* per slot */
	struct ibv_send_wr *batch_head, *batch_tail;
	bool inline_hdr;       /* header-only requests go inline */
	char peer[300];
};

static int post_recv(struct conn *c, unsigned int i)
{
	struct ibv_sge sge = {
		.addr = (uintptr_t)(c->rx + (size_t)i * IBNBD_MSG_MAX),
		.length = IBNBD_MSG_MAX,
		.lkey = c->rx_mr->lkey,
	};
	struct ibv_recv_wr wr = { .wr_id = WR_RECV | i, .sg_list = &sge, .num_sge = 1 };

	return verbs_post_recv(c->id->qp, &wr);
}

/* Waits for one receive (a control response) on the CQ until deadline,
 * polling: only the handshake does this, before the queue thread owns us. */
static int wait_recv(struct conn *c, int64_t deadline, void **msg, uint32_t *len,
		     unsigned int *index)
{
	struct ibv_wc wc;
	int n;

	while (clock_now_ms() < deadline) {
		n = ibv_poll_cq(c->cq, 1, &wc);
		if (n < 0)
			return -EIO;
		if (n == 0) {
			usleep(200);
			continue;
		}
		if (wc.status != IBV_WC_SUCCESS)
			return -ECONNRESET;
		if (WR_KIND(wc.wr_id) != WR_RECV)
			continue; /* our own SEND completing */
		*index = (unsigned int)WR_INDEX(wc.wr_id);
		*msg = c->rx + (size_t)*index * IBNBD_MSG_MAX;
		*len = wc.byte_len;
		return 0;
	}
	return -ETIMEDOUT;
}

static int send_ctrl(struct conn *c, size_t len)
{
	struct ibv_sge sge = { .addr = (uintptr_t)c->ctrl, .length = (uint32_t)len,
			       .lkey = c->ctrl_mr->lkey };
	struct ibv_send_wr wr = {
		.wr_id = WR_SEND | WR_CTRL_INDEX, .sg_list = &sge, .num_sge = 1,
		.opcode = IBV_WR_SEND, .send_flags = IBV_SEND_SIGNALED,
	};

	return verbs_post_send(c->id->qp, &wr);
}

/* One control exchange: send c->ctrl (len bytes), wait for the reply. */
static int ctrl_exchange(struct conn *c, size_t len, int64_t deadline, void **reply,
			 uint32_t *rlen)
{
	unsigned int index;
	int ret = send_ctrl(c, len);

	if (ret)
		return ret;
	ret = wait_recv(c, deadline, reply, rlen, &index);
	if (ret)
		return ret;
	/* The buffer stays valid until re-posted; the caller decodes first. */
	return post_recv(c, index) ? -EIO : 0;
}

static int setup_qp(struct conn *c, const struct conn_params *p)
{
	uint16_t depth = p->queue_depth;
	struct cm_qp_caps caps;
	unsigned int i;
	int ret;

	c->pd = p->get_pd(p->get_pd_ctx, c->id->verbs);
	if (!c->pd)
		return -ENOMEM;
	ret = verbs_comp_channel_create(c->id->verbs, &c->cc);
	if (ret)
		return ret;
	c->nr_rx = depth + IBNBD_CTRL_CREDITS;
	/* Every request may complete a send; responses fill the receives. */
	c->cq = ibv_create_cq(c->id->verbs, (int)(2 * c->nr_rx + 8), c, c->cc, 0);
	if (!c->cq)
		return -ENOMEM;
	caps = (struct cm_qp_caps){
		/* Requests are sent unsignaled but every SIGNAL_EVERY-th: a send
		 * queue entry is only retired by a later signaled completion,
		 * which may be reaped after the answers it precedes. */
		.max_send_wr = 3 * c->nr_rx + SIGNAL_EVERY, .max_recv_wr = c->nr_rx,
		.max_send_sge = 2, .max_recv_sge = 1,
		.max_inline_data = sizeof(struct ibnbd_io_req),
	};
	ret = cm_create_qp(c->id, c->pd, c->cq, &caps);
	if (ret) {
		/* Some devices have no inline data: do without. */
		caps.max_inline_data = 0;
		ret = cm_create_qp(c->id, c->pd, c->cq, &caps);
		if (ret)
			return ret;
	}
	c->inline_hdr = caps.max_inline_data >= sizeof(struct ibnbd_io_req);
	c->qp_created = true;
	if (posix_memalign((void **)&c->rx, 4096, (size_t)c->nr_rx * IBNBD_MSG_MAX))
		return -ENOMEM;
	ret = verbs_reg_mr(c->pd, c->rx, (size_t)c->nr_rx * IBNBD_MSG_MAX,
			       IBV_ACCESS_LOCAL_WRITE, &c->rx_mr);
	if (!ret)
		ret = verbs_reg_mr(c->pd, c->ctrl, sizeof(c->ctrl), IBV_ACCESS_LOCAL_WRITE,
				       &c->ctrl_mr);
	for (i = 0; !ret && i < c->nr_rx; i++)
		ret = post_recv(c, i);
	return ret;
}

/*
 * The server answered HELLO with a challenge: checks its proof, then sends
 * ours. 0 with the next reply in *reply, or -errno with a sentence.
 */
static int authenticate(struct conn *c, const struct conn_params *p,
			const struct ibnbd_hello_params *hello, int64_t deadline, void **reply,
			uint32_t *rlen, char *err, size_t errlen)
{
	struct ibnbd_auth_challenge_params ch;
	unsigned char proof[AUTH_MAC_LEN];
	struct auth_transcript t = { .version = IBNBD_PROTO_VERSION, .conn_index = p->conn_index,
				     .host_id = hello->host_id };
	int ret;

	if (ibnbd_auth_challenge_decode(*reply, *rlen, &ch)) {
		snprintf(err, errlen, "%s sent a malformed authentication challenge", c->peer);
		return -EPROTO;
	}
	if (!p->secret) {
		snprintf(err, errlen,
			 "%s authenticates hosts and this one has no key: give the daemon --key-file (default %s) holding the key the server lists for host '%s'",
			 c->peer, CONN_DEFAULT_KEY_FILE, hello->host_id);
		return -EACCES;
	}
	t.server_id = ch.server_id;
	if (p->session_uuid)
		memcpy(t.session_uuid, p->session_uuid, sizeof(t.session_uuid));
	memcpy(t.client_nonce, hello->nonce, sizeof(t.client_nonce));
	memcpy(t.server_nonce, ch.nonce, sizeof(t.server_nonce));
	ret = auth_answer(p->secret, &t, ch.proof, proof);
	if (ret == -EACCES) {
		snprintf(err, errlen,
			 "%s (server id %s) could not prove it holds this host's key: the keys differ, or it is not the server it claims to be",
			 c->peer, ch.server_id);
		return ret;
	}
	if (ret) {
		snprintf(err, errlen, "authenticating to %s: libcrypto failed", c->peer);
		return ret;
	}
	ibnbd_auth_proof_encode((struct ibnbd_auth_proof *)c->ctrl, proof);
	ret = ctrl_exchange(c, sizeof(struct ibnbd_auth_proof), deadline, reply, rlen);
	if (ret)
		snprintf(err, errlen, "authenticating to %s failed: %s", c->peer, strerror(-ret));
	return ret;
}

static int hello(struct conn *c, const struct conn_params *p, int64_t deadline,
		 char *err, size_t errlen)
{
	struct ibnbd_hello_params hello = { .version = IBNBD_PROTO_VERSION,
					    .features = IBNBD_FEAT_ALL };
	bool challenged = false;
	uint16_t type = 0;
	void *reply;
	uint32_t rlen;
	int ret;

	snprintf(hello.host_id, sizeof(hello.host_id), "%s", p->host_id ? p->host_id : "");
	if (auth_nonce(hello.nonce)) {
		snprintf(err, errlen, "no random nonce from libcrypto");
		return -EIO;
	}
	ibnbd_hello_encode((struct ibnbd_hello *)c->ctrl, &hello);
	ret = ctrl_exchange(c, sizeof(struct ibnbd_hello), deadline, &reply, &rlen);
	if (!ret && !ibnbd_msg_peek(reply, rlen, &type) && type == IBNBD_MSG_AUTH_CHALLENGE) {
		challenged = true;
		ret = authenticate(c, p, &hello, deadline, &reply, &rlen, err, errlen);
		if (ret)
			return ret;
	}
	if (!ret)
		ret = ibnbd_hello_rsp_decode(reply, rlen, &c->slots);
	if (!ret && c->slots.status)
		ret = c->slots.status;
	if (ret == -EACCES) {
		snprintf(err, errlen,
			 challenged ? "%s refused host '%s': its key is not the one the server lists for it"
				    : "%s refused host '%s': it is not in the server's hosts file",
			 c->peer, hello.host_id);
		return ret;
	}
	if (ret == -EDQUOT) {
		snprintf(err, errlen,
			 "%s refused host '%s': the server's %s is reached (see its log)", c->peer,
			 hello.host_id, ibnbd_limit_name(c->slots.limit));
		return ret;
	}
	if (ret) {
		snprintf(err, errlen, "handshake with %s failed: %s", c->peer, strerror(-ret));
		return ret;
	}
	if (p->secret && !challenged) {
		snprintf(err, errlen,
			 "%s did not authenticate itself (it runs with --no-auth): refused, since this host has a key",
			 c->peer);
		return -EACCES;
	}
	if (c->slots.queue_depth < c->depth) {
		/* Fewer slots than the connect reply promised: a broken peer. */
		snprintf(err, errlen, "%s offered %u slots for a queue depth of %u", c->peer,
			 c->slots.queue_depth, c->depth);
		return -EPROTO;
	}
	return 0;
}

void conn_open_error(const struct conn *c, const char *export_name, int status, char *err,
		     size_t errlen)
{
	switch (status) {
	case -ENOENT:
		snprintf(err, errlen, "%s has no export named '%s'", c->peer, export_name);
		break;
	case -EROFS:
		snprintf(err, errlen, "export '%s' on %s is read-only: map it with --ro",
			 export_name, c->peer);
		break;
	case -EACCES:
	case -EPERM:
		snprintf(err, errlen, "host %s is not allowed to open export '%s' on %s (it is not in the export's allow list)",
			 c->host_id, export_name, c->peer);
		break;
	case -EBUSY:
		snprintf(err, errlen, "export '%s' on %s is already open for writing elsewhere",
			 export_name, c->peer);
		break;
	case -EMFILE:
		snprintf(err, errlen,
			 "%s refused to open export '%s': this session has as many exports open as the server allows (max_opens_per_session)",
			 c->peer, export_name);
		break;
	case -ENAMETOOLONG:
		snprintf(err, errlen, "the export name '%s' is longer than %d bytes",
			 export_name, IBNBD_EXPORT_NAME_MAX - 1);
		break;
	case -ETIMEDOUT:
		snprintf(err, errlen, "%s did not answer the OPEN of '%s' in time", c->peer,
			 export_name);
		break;
	case -ECONNRESET:
		snprintf(err, errlen, "the connection to %s failed while opening '%s'", c->peer,
			 export_name);
		break;
	default:
		snprintf(err, errlen, "%s could not open export '%s': %s", c->peer, export_name,
			 strerror(-status));
	}
}

int conn_open_sync(struct conn *c, const char *export_name, uint8_t access,
		   unsigned int timeout_ms, struct ibnbd_dev_info *info)
{
	struct ibnbd_open_params open = { .access = access };
	int64_t deadline = clock_now_ms() + timeout_ms;
	void *reply;
	uint32_t rlen;
	int ret;

	if (strlen(export_name) >= sizeof(open.name)) {
		info->status = -ENAMETOOLONG;
		return 0;
	}
	snprintf(open.name, sizeof(open.name), "%s", export_name);
	ret = ibnbd_open_encode((struct ibnbd_open *)c->ctrl, &open);
	if (!ret)
		ret = ctrl_exchange(c, sizeof(struct ibnbd_open), deadline, &reply, &rlen);
	if (!ret)
		ret = ibnbd_open_rsp_decode(reply, rlen, info);
	return ret;
}

int conn_close_sync(struct conn *c, uint32_t handle, unsigned int timeout_ms)
{
	int64_t deadline = clock_now_ms() + timeout_ms;
	int32_t status;
	void *reply;
	uint32_t rlen;
	int ret;

	ibnbd_close_encode((struct ibnbd_close *)c->ctrl, handle);
	ret = ctrl_exchange(c, sizeof(struct ibnbd_close), deadline, &reply, &rlen);
	if (!ret)
		ret = ibnbd_close_rsp_decode(reply, rlen, &status);
	return ret ? ret : status;
}

/* The sentence for a failed connect, from its -errno. */
static void connect_error(struct conn *c, int ret, const struct ibnbd_conn_params *rep,
			  size_t rep_len, char *err, size_t errlen)
{
	if (ret == -ECONNREFUSED && rep_len && rep->status == -EBUSY)
		snprintf(err, errlen,
			 "%s refused the connection: it has no room for another one now (too many connections in their handshake, or its completion queues are full; its log says which)",
			 c->peer);
	else if (ret == -ECONNREFUSED && rep_len && rep->status)
		snprintf(err, errlen, "%s refused the connection: %s", c->peer,
			 strerror(-rep->status));
	else if (ret == -ECONNREFUSED)
		snprintf(err, errlen,
			 "%s refused the connection (is ibnbd-server listening on that port?)",
			 c->peer);
	else if (ret == -ETIMEDOUT)
		snprintf(err, errlen, "no answer from %s (is the address right and the host up?)",
			 c->peer);
	else
		snprintf(err, errlen, "cannot reach %s: %s", c->peer, strerror(-ret));
}

int conn_connect(const struct conn_params *p, struct conn **out, char *err, size_t errlen)
{
	int timeout = (int)(p->timeout_ms ? p->timeout_ms : 10000);
	int64_t deadline = clock_now_ms() + timeout;
	struct ibnbd_conn_params req = {
		.version = IBNBD_PROTO_VERSION, .queue_depth = p->queue_depth,
		.features = IBNBD_FEAT_ALL, .max_io_size = p->max_io_size,
		.conn_index = p->conn_index, .conn_count = p->conn_count,
	}, rep = { 0 };
	struct ibnbd_conn_req wire;
	struct ibnbd_conn_rep wire_rep;
	struct endpoint ep = { .port = p->port };
	size_t got = 0;
	struct conn *c;
	int ret;

	if (p->session_uuid)
		memcpy(req.session_uuid, p->session_uuid, sizeof(req.session_uuid));
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	snprintf(c->peer, sizeof(c->peer), "%s:%u", p->host, p->port);
	snprintf(c->host_id, sizeof(c->host_id), "%s", p->host_id ? p->host_id : "");
	snprintf(ep.host, sizeof(ep.host), "%s", p->host);
	ret = cm_channel_create(&c->ech);
	if (ret) {
		snprintf(err, errlen, "cannot use RDMA: %s (is an RDMA device configured?)",
			 strerror(-ret));
		goto out_free;
	}
	/* Address and route get part of the budget each; the rest is for
	 * the connect and the handshake. */
	ret = cm_resolve(c->ech, &ep, timeout / 3, &c->id);
	if (ret) {
		connect_error(c, ret, &rep, 0, err, errlen);
		goto out_free;
	}
	ret = setup_qp(c, p);
	if (ret) {
		snprintf(err, errlen, "cannot set up an RDMA queue pair for %s: %s", c->peer,
			 strerror(-ret));
		goto out_free;
	}
	ibnbd_conn_req_encode(&wire, &req);
	ret = cm_connect(c->id, &wire, sizeof(wire), (int)(deadline - clock_now_ms()), &wire_rep,
				sizeof(wire_rep), &got);
	if (got && ibnbd_conn_rep_decode(&wire_rep, got, &rep))
		got = 0;
	if (ret) {
		connect_error(c, ret, &rep, got, err, errlen);
		goto out_free;
	}
	c->connected = true;
	if (p->accepted)
		*p->accepted = true;
	if (!got || rep.status || !rep.queue_depth || rep.queue_depth > p->queue_depth) {
		snprintf(err, errlen, "%s is not an ibnbd server (bad connect reply)", c->peer);
		ret = -EPROTO;
		goto out_free;
	}
	c->depth = rep.queue_depth;
	c->features = rep.features;
	ret = hello(c, p, deadline, err, errlen);
	if (ret)
		goto out_free;
	c->gen = calloc(c->depth, sizeof(*c->gen));
	c->wrs = calloc(c->depth, sizeof(*c->wrs));
	if (posix_memalign((void **)&c->hdr, 4096, (size_t)c->depth * sizeof(*c->hdr)) ||
	    !c->gen || !c->wrs) {
		ret = -ENOMEM;
		goto out_free;
	}
	ret = verbs_reg_mr(c->pd, c->hdr, (size_t)c->depth * sizeof(*c->hdr),
			       IBV_ACCESS_LOCAL_WRITE, &c->hdr_mr);
	if (!ret)
		ret = -ibv_req_notify_cq(c->cq, 0);
	c->cq_armed = !ret;
	if (ret) {
		snprintf(err, errlen, "cannot register memory for %s: %s", c->peer, strerror(-ret));
		goto out_free;
	}
	c->last_rx_ms = clock_now_ms();
	*out = c;
	return 0;
out_free:
	conn_destroy(c);
	return ret;
}

void conn_destroy(struct conn *c)
{
	if (!c)
		return;
	if (c->connected)
		rdma_disconnect(c->id);
	if (c->qp_created)
		rdma_destroy_qp(c->id);
	verbs_dereg_mr(c->hdr_mr);
	verbs_dereg_mr(c->rx_mr);
	verbs_dereg_mr(c->ctrl_mr);
	if (c->cq)
		ibv_destroy_cq(c->cq);
	if (c->cc)
		ibv_destroy_comp_channel(c->cc);
	if (c->id)
		rdma_destroy_id(c->id);
	cm_channel_destroy(c->ech);
	free(c->rx);
	free(c->hdr);
	free(c->gen);
	free(c->wrs);
	free(c);
}

uint16_t conn_depth(const struct conn *c)
{
	return c->depth;
}

uint32_t conn_max_io(const struct conn *c)
{
	return c->slots.max_io_size;
}

uint64_t conn_features(const struct conn *c)
{
	return c->features;
}

struct ibv_pd *conn_pd(const struct conn *c)
{
	return c->pd;
}

const char *conn_peer(const struct conn *c)
{
	return c->peer;
}

int64_t conn_last_rx_ms(const struct conn *c)
{
	return c->last_rx_ms;
}

int conn_comp_fd(const struct conn *c)
{
	return c->cc->fd;
}

int conn_cm_fd(const struct conn *c)
{
	return c->ech->fd;
}

int conn_cm_check(struct conn *c)
{
	struct rdma_cm_event *ev;
	int ret = 0;

	while (cm_get_event(c->ech, &ev) == 0) {
		/* Established was consumed by the connect; anything now is
		 * the end: DISCONNECTED, DEVICE_REMOVAL, ADDR_CHANGE, ... */
		log_warn("%s: %s", c->peer, rdma_event_str(ev->event));
		rdma_ack_cm_event(ev);
		ret = -ECONNRESET;
	}
	return ret;
}

int conn_post_ctrl(struct conn *c, const void *msg, size_t len)
{
	if (len > sizeof(c->ctrl))
		return -EINVAL;
	memcpy(c->ctrl, msg, len);
	return send_ctrl(c, len);
}

void conn_submit(struct conn *c, uint16_t tag, uint32_t handle, uint64_t cookie,
		 uint8_t opcode, uint16_t flags, uint64_t offset, uint32_t length, void *buf,
		 const struct ibv_mr *mr)
{
	struct ibnbd_io io = {
		.req_id = ibnbd_req_id(tag, ++c->gen[tag]),
		.offset = offset, .length = length, .handle = handle, .cookie = cookie,
		.opcode = opcode, .flags = flags,
	};
	struct ibv_sge *sge = c->wrs[tag].sge;
	struct ibv_send_wr *wrp = &c->wrs[tag].wr, wr = { .wr_id = WR_SEND | tag, .sg_list = sge };

	if (opcode == IBNBD_OP_READ) {
		io.addr = (uintptr_t)buf;
		io.rkey = mr->rkey;
	}
	ibnbd_io_req_encode(&c->hdr[tag], &io);
	sge[1].addr = (uintptr_t)&c->hdr[tag];
	sge[1].length = sizeof(c->hdr[tag]);
	sge[1].lkey = c->hdr_mr->lkey;
	if (opcode == IBNBD_OP_WRITE) {
		/* [data | header] lands contiguously in the slot; the
		 * immediate names the slot. */
		sge[0].addr = (uintptr_t)buf;
		sge[0].length = length;
		sge[0].lkey = mr->lkey;
		wr.num_sge = 2;
		wr.opcode = IBV_WR_RDMA_WRITE_WITH_IMM;
		wr.imm_data = htonl(tag);
		wr.wr.rdma.remote_addr = c->slots.slot_addr + (uint64_t)tag * c->slots.slot_stride;
		wr.wr.rdma.rkey = c->slots.slot_rkey;
	} else {
		wr.sg_list = &sge[1];
		wr.num_sge = 1;
		wr.opcode = IBV_WR_SEND;
		if (c->inline_hdr) /* copied into the work request: no DMA read */
			wr.send_flags |= IBV_SEND_INLINE;
	}
	if (++c->nr_sends % SIGNAL_EVERY == 0)
		wr.send_flags |= IBV_SEND_SIGNALED;
	log_debug(LOG_CAT_IO, "%s: tag %u %s off %llu len %u", c->peer, tag,
		  ibnbd_op_name(opcode), (unsigned long long)offset, length);
	*wrp = wr;
	if (c->batch_tail)
		c->batch_tail->next = wrp;
	else
		c->batch_head = wrp;
	c->batch_tail = wrp;
}

int conn_flush(struct conn *c)
{
	struct ibv_send_wr *head = c->batch_head;

	if (!head)
		return 0;
	c->batch_head = c->batch_tail = NULL;
	return verbs_post_send(c->id->qp, head);
}

/* One receive: an IO response or a control response. -EPROTO if it is
 * neither (the connection is then dropped). */
static int on_recv(struct conn *c, const uint8_t *msg, uint32_t len,
		   const struct conn_handlers *h, void *ctx)
{
	uint64_t req_id;
	int32_t status;
	uint16_t type;
	uint16_t tag;

	if (ibnbd_msg_peek(msg, len, &type))
		return -EPROTO;
	switch (type) {
	case IBNBD_MSG_IO_RSP:
		if (ibnbd_io_rsp_decode(msg, len, &req_id, &status))
			return -EPROTO;
		tag = ibnbd_req_tag(req_id);
		if (tag >= c->depth)
			return -EPROTO;
		if ((req_id >> IBNBD_REQ_TAG_BITS) != c->gen[tag]) {
			log_warn("%s: stale response for slot %u ignored", c->peer, tag);
			return 0;
		}
		h->io_done(ctx, tag, status);
		return 1;
	case IBNBD_MSG_OPEN_RSP:
	case IBNBD_MSG_CLOSE_RSP:
	case IBNBD_MSG_KEEPALIVE_RSP:
		h->ctrl_done(ctx, type, msg, len);
		return 0;
	}
	return -EPROTO;
}

int conn_process(struct conn *c, const struct conn_handlers *h, void *ctx)
{
	struct ibv_cq *ev_cq;

	/* Consume the channel's event (it re-arms the CQ; an armed CQ raises
	 * one event, so there is never a second to read), then poll the CQ
	 * empty: a completion after the re-arm raises a new event. */
	verbs_cq_event(c->cc, &ev_cq);
	return conn_poll(c, h, ctx, NULL);
}

void conn_take_event(struct conn *c)
{
	struct ibv_cq *ev_cq;

	if (!verbs_cq_event_take(c->cc, &ev_cq))
		c->cq_armed = false;
}

/* An armed CQ stays armed until it raises its event, which the worker
 * takes (conn_take_event()) when it wakes: a sleep that another wakeup
 * ended (a ublk request, the tick) needs no second arm. */
int conn_arm(struct conn *c)
{
	int ret;

	if (c->cq_armed)
		return 0;
	ret = -ibv_req_notify_cq(c->cq, 0);
	c->cq_armed = !ret;
	return ret;
}

int conn_poll(struct conn *c, const struct conn_handlers *h, void *ctx, unsigned int *taken)
{
	struct ibv_wc wc[32];
	int n, i, ret, count = 0, failed = 0;

	while ((n = ibv_poll_cq(c->cq, 32, wc)) > 0) {
		if (taken)
			*taken += (unsigned int)n;
		for (i = 0; i < n; i++) {
			unsigned int index;
			uint8_t msg[IBNBD_MSG_MAX];

			if (wc[i].status != IBV_WC_SUCCESS) {
				if (wc[i].status != IBV_WC_WR_FLUSH_ERR)
					log_err("%s: %s work request failed: %s", c->peer,
						WR_KIND(wc[i].wr_id) == WR_RECV ? "receive" : "send",
						ibv_wc_status_str(wc[i].status));
				failed = 1;
				continue;
			}
			if (failed)
				continue;
			if (WR_KIND(wc[i].wr_id) != WR_RECV) {
				/* Signaled: it retired every WR before it. */
				if (WR_INDEX(wc[i].wr_id) == WR_CTRL_INDEX && h->ctrl_sent)
					h->ctrl_sent(ctx);
				continue;
			}
			index = (unsigned int)WR_INDEX(wc[i].wr_id);
			c->last_rx_ms = clock_now_ms();
			/* Re-post first: a handler may send, and the server
			 * may answer before we return. The message is small. */
			memcpy(msg, c->rx + (size_t)index * IBNBD_MSG_MAX,
			       wc[i].byte_len < sizeof(msg) ? wc[i].byte_len : sizeof(msg));
			if (post_recv(c, index)) {
				failed = 1;
				continue;
			}
			ret = on_recv(c, msg, wc[i].byte_len, h, ctx);
			if (ret < 0) {
				log_err("%s: malformed response, dropping the connection", c->peer);
				failed = 1;
				continue;
			}
			count += ret;
		}
	}
	if (n < 0 || failed)
		return -ECONNRESET;
	return count;
}
