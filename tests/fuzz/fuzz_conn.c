// SPDX-License-Identifier: GPL-2.0-only
/*
 * libFuzzer target for the server's whole per-connection message handling:
 * the real conn_handshake.c, conn_io.c, conn_teardown.c, registry.c,
 * access.c and io_engine.c, driven through a fake transport.
 *
 * The fake stands in for the RDMA device, the CM and the worker's io_uring:
 * it keeps each queue pair's posted receives and sends, completes them the
 * way an RC queue pair does (in order; a signaled send retires the
 * unsignaled ones before it; a QP in error flushes everything), writes a
 * client's WRITE_WITH_IMM data into the slot memory the server registered,
 * and holds backing IOs until the input completes them. The input is a
 * program for one or two connections of one session: connect requests,
 * HELLOs (with a correct or a wrong authentication answer), OPEN, CLOSE,
 * KEEPALIVE, IO requests by SEND and by WRITE_WITH_IMM, raw messages,
 * completions, CM events, ticks and shutdown. Whatever it does, the server
 * must not crash, and these must hold (else abort()):
 *   - it never posts beyond the send or receive queue it created;
 *   - every buffer it hands the device lies inside a memory region it
 *     registered, and a SEND fits a receive buffer;
 *   - every backing IO is on an export this connection opened (writes
 *     only read-write), inside the export, from the request's own slot;
 *   - its challenge proves the key in the hosts file;
 *   - at the end, with every completion delivered, it can be reaped and
 *     gives back everything: registry entries, handshake count, CQ
 *     budget, memory regions, protection domains.
 *
 * IBNBD_FUZZ_CONN_SEEDS=DIR writes the seed corpus (tests/fuzz/corpus/conn)
 * and exits. Built only with clang -fsanitize=fuzzer (tests/e2e/server/meson.build).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "access.h"
#include "auth.h"
#include "cm.h"
#include "conn_priv.h"
#include "export.h"
#include "registry.h"
#include "verbs.h"
#include "worker.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FAIL(...)                                                              \
	do {                                                                   \
		fprintf(stderr, "fuzz-conn: " __VA_ARGS__);                    \
		fputc('\n', stderr);                                           \
		abort();                                                       \
	} while (0)

#define MAX_CONNS 2
#define QUEUE_MAX 256
#define MAX_SQES 64
#define NEXPORTS 3
#define HOST "fuzz-host"
#define HOST_RO "ro-host"

/* ---- the fake device: memory regions and protection domains ---- */

struct fake_mr {
	struct ibv_mr mr;
	uintptr_t base; /* where the memory is */
	bool zero_based;
	struct fake_mr *next;
};

static struct fake_mr *mrs;
static uint32_t next_key = 0x100;
static int live_pds;

static int fake_reg(void *addr, size_t len, int access, bool zero_based, struct ibv_mr **out)
{
	struct fake_mr *m = calloc(1, sizeof(*m));

	if (!m)
		return -ENOMEM;
	m->mr.addr = zero_based ? NULL : addr;
	m->mr.length = len;
	m->mr.lkey = next_key++;
	m->mr.rkey = (access & IBV_ACCESS_REMOTE_WRITE) ? next_key++ : 0;
	m->base = (uintptr_t)addr;
	m->zero_based = zero_based;
	m->next = mrs;
	mrs = m;
	*out = &m->mr;
	return 0;
}

int verbs_reg_mr(struct ibv_pd *pd, void *addr, size_t len, int access, struct ibv_mr **out)
{
	(void)pd;
	return fake_reg(addr, len, access, false, out);
}

int verbs_reg_mr_zero_based(struct ibv_pd *pd, void *addr, size_t len, int access,
			    struct ibv_mr **out)
{
	(void)pd;
	return fake_reg(addr, len, access, true, out);
}

void verbs_dereg_mr(struct ibv_mr *mr)
{
	struct fake_mr **p;

	if (!mr)
		return;
	for (p = &mrs; *p; p = &(*p)->next) {
		if (&(*p)->mr == mr) {
			struct fake_mr *m = *p;

			*p = m->next;
			free(m);
			return;
		}
	}
	FAIL("deregistering a memory region that is not registered");
}

/* Where [addr, addr+len) of a local SGE is, or 0 if outside every MR. */
static uintptr_t mr_resolve(uint32_t key, bool remote, uint64_t addr, uint64_t len)
{
	struct fake_mr *m;

	for (m = mrs; m; m = m->next) {
		uint64_t start = m->zero_based ? 0 : m->base;

		if ((remote ? m->mr.rkey : m->mr.lkey) != key || (remote && !key))
			continue;
		if (addr < start || len > m->mr.length || addr - start > m->mr.length - len)
			return 0;
		return m->base + (uintptr_t)(addr - start);
	}
	return 0;
}

struct ibv_pd *ibv_alloc_pd(struct ibv_context *ctx)
{
	struct ibv_pd *pd = calloc(1, sizeof(*pd));

	if (pd) {
		pd->context = ctx;
		live_pds++;
	}
	return pd;
}

int ibv_dealloc_pd(struct ibv_pd *pd)
{
	free(pd);
	live_pds--;
	return 0;
}

/* ---- the fake queue pair ---- */

struct posted {
	uint64_t wr_id;
	bool signaled;
	enum ibv_wc_opcode opcode;
	uintptr_t addr; /* receives: where a SEND lands */
	uint32_t length;
};

struct fake_qp {
	struct ibv_qp qp;
	unsigned int sq_cap, rq_cap;
	struct posted sq[QUEUE_MAX], rq[QUEUE_MAX];
	unsigned int sq_head, sq_n, rq_head, rq_n;
	bool error;
	int slot; /* which harness connection */
};

/* What the harness, as the client, learnt from the server's messages. */
struct client_view {
	bool have_desc;
	struct ibnbd_slot_desc desc;
	bool have_challenge;
	struct ibnbd_auth_challenge_params challenge;
	/* The HELLO being delivered, and the one the challenge answers. */
	char sending_host[IBNBD_HOST_ID_MAX];
	uint8_t sending_nonce[IBNBD_NONCE_LEN];
	char host_id[IBNBD_HOST_ID_MAX];
	uint8_t nonce[IBNBD_NONCE_LEN];
	uint32_t handles[CONN_MAX_OPENS];
	uint64_t cookies[CONN_MAX_OPENS];
	unsigned int nhandles;
};

struct hconn {
	struct conn *c;
	struct rdma_cm_id *id;
	struct fake_qp *qp;
	struct ibnbd_conn_params req;
	struct client_view view;
};

static struct hconn conns[MAX_CONNS];
static int creating; /* the connection conn_create() is making */

static void view_sent(struct client_view *v, const uint8_t *msg, size_t len)
{
	struct ibnbd_dev_info di;
	uint16_t type;

	if (ibnbd_msg_peek(msg, len, &type))
		FAIL("the server sent a message it cannot frame itself (%zu bytes)", len);
	switch (type) {
	case IBNBD_MSG_HELLO_RSP:
		if (!ibnbd_hello_rsp_decode(msg, len, &v->desc) && v->desc.status == 0)
			v->have_desc = true;
		break;
	case IBNBD_MSG_AUTH_CHALLENGE:
		if (!ibnbd_auth_challenge_decode(msg, len, &v->challenge)) {
			v->have_challenge = true;
			memcpy(v->host_id, v->sending_host, sizeof(v->host_id));
			memcpy(v->nonce, v->sending_nonce, sizeof(v->nonce));
		}
		break;
	case IBNBD_MSG_OPEN_RSP:
		if (!ibnbd_open_rsp_decode(msg, len, &di) && di.status == 0) {
			unsigned int i = v->nhandles % CONN_MAX_OPENS;

			v->handles[i] = di.handle;
			v->cookies[i] = di.cookie;
			if (v->nhandles < CONN_MAX_OPENS)
				v->nhandles++;
		}
		break;
	}
}

static int fake_post_send(struct ibv_qp *ibqp, struct ibv_send_wr *wr, struct ibv_send_wr **bad)
{
	struct fake_qp *q = (struct fake_qp *)ibqp;

	for (; wr; wr = wr->next) {
		struct posted *p;
		uintptr_t at = 0;

		*bad = wr;
		if (q->sq_n == q->sq_cap)
			FAIL("send queue overrun: %u WRs posted on a QP of %u", q->sq_n + 1, q->sq_cap);
		if (wr->num_sge > 1)
			FAIL("%d SGEs on a QP created with 1", wr->num_sge);
		if (wr->num_sge == 1) {
			at = mr_resolve(wr->sg_list[0].lkey, false, wr->sg_list[0].addr,
					wr->sg_list[0].length);
			if (!at)
				FAIL("a send WR's buffer (lkey 0x%x, addr 0x%llx, %u bytes) is outside every registered region",
				     wr->sg_list[0].lkey, (unsigned long long)wr->sg_list[0].addr,
				     wr->sg_list[0].length);
		}
		p = &q->sq[(q->sq_head + q->sq_n) % QUEUE_MAX];
		*p = (struct posted){
			.wr_id = wr->wr_id,
			.signaled = wr->send_flags & IBV_SEND_SIGNALED,
			.opcode = wr->opcode == IBV_WR_RDMA_WRITE ? IBV_WC_RDMA_WRITE : IBV_WC_SEND,
		};
		q->sq_n++;
		if (wr->opcode == IBV_WR_SEND && wr->num_sge == 1) {
			if (wr->sg_list[0].length > IBNBD_MSG_MAX)
				FAIL("a SEND of %u bytes: the client's receives hold %d",
				     wr->sg_list[0].length, IBNBD_MSG_MAX);
			view_sent(&conns[q->slot].view, (const uint8_t *)at, wr->sg_list[0].length);
		} else if (wr->opcode != IBV_WR_SEND && wr->opcode != IBV_WR_RDMA_WRITE) {
			FAIL("unexpected send opcode %d", wr->opcode);
		}
	}
	*bad = NULL;
	return 0;
}

static int fake_post_recv(struct ibv_qp *ibqp, struct ibv_recv_wr *wr, struct ibv_recv_wr **bad)
{
	struct fake_qp *q = (struct fake_qp *)ibqp;

	for (; wr; wr = wr->next) {
		uintptr_t at;

		*bad = wr;
		if (q->rq_n == q->rq_cap)
			FAIL("receive queue overrun: %u receives on a QP of %u", q->rq_n + 1, q->rq_cap);
		if (wr->num_sge != 1)
			FAIL("a receive with %d SGEs", wr->num_sge);
		at = mr_resolve(wr->sg_list[0].lkey, false, wr->sg_list[0].addr, wr->sg_list[0].length);
		if (!at)
			FAIL("a receive buffer outside every registered region");
		q->rq[(q->rq_head + q->rq_n) % QUEUE_MAX] = (struct posted){
			.wr_id = wr->wr_id, .signaled = true, .opcode = IBV_WC_RECV,
			.addr = at, .length = wr->sg_list[0].length,
		};
		q->rq_n++;
	}
	*bad = NULL;
	return 0;
}

static struct ibv_context fake_ctx = {
	.ops = { .post_send = fake_post_send, .post_recv = fake_post_recv },
};

int cm_create_qp(struct rdma_cm_id *id, struct ibv_pd *pd, struct ibv_cq *cq,
		 const struct cm_qp_caps *caps)
{
	struct fake_qp *q = calloc(1, sizeof(*q));

	(void)cq;
	if (!q)
		return -ENOMEM;
	if (caps->max_send_wr > QUEUE_MAX || caps->max_recv_wr > QUEUE_MAX)
		FAIL("a QP of %u/%u WRs: the harness's limits keep it under %d", caps->max_send_wr,
		     caps->max_recv_wr, QUEUE_MAX);
	q->qp.context = &fake_ctx;
	q->qp.pd = pd;
	q->sq_cap = caps->max_send_wr;
	q->rq_cap = caps->max_recv_wr;
	q->slot = creating;
	id->qp = &q->qp;
	conns[q->slot].qp = q;
	return 0;
}

void rdma_destroy_qp(struct rdma_cm_id *id)
{
	struct fake_qp *q = (struct fake_qp *)id->qp;

	conns[q->slot].qp = NULL;
	free(q);
	id->qp = NULL;
}

int ibv_modify_qp(struct ibv_qp *qp, struct ibv_qp_attr *attr, int mask)
{
	if ((mask & IBV_QP_STATE) && attr->qp_state == IBV_QPS_ERR)
		((struct fake_qp *)qp)->error = true;
	return 0;
}

static bool accept_fails;

int rdma_accept(struct rdma_cm_id *id, struct rdma_conn_param *p)
{
	(void)id;
	(void)p;
	if (accept_fails) {
		errno = ECONNREFUSED;
		return -1;
	}
	return 0;
}

int rdma_reject(struct rdma_cm_id *id, const void *pd, uint8_t len)
{
	(void)id;
	(void)pd;
	(void)len;
	return 0;
}

int rdma_disconnect(struct rdma_cm_id *id)
{
	(void)id;
	return 0;
}

int rdma_destroy_id(struct rdma_cm_id *id)
{
	free(id);
	return 0;
}

const char *rdma_event_str(enum rdma_cm_event_type event)
{
	(void)event;
	return "RDMA_CM_EVENT";
}

const char *ibv_wc_status_str(enum ibv_wc_status status)
{
	(void)status;
	return "status";
}

/* ---- the fake worker: its io_uring and CQ ---- */

static struct io_uring_sqe sqes[MAX_SQES];
static bool sqe_used[MAX_SQES], sqe_checked[MAX_SQES];
static unsigned int nsqes;

struct io_uring_sqe *worker_get_sqe(struct worker *w)
{
	unsigned int i;

	(void)w;
	for (i = 0; i < MAX_SQES; i++) {
		if (!sqe_used[i]) {
			sqe_used[i] = true;
			sqe_checked[i] = false;
			nsqes++;
			memset(&sqes[i], 0, sizeof(sqes[i]));
			return &sqes[i];
		}
	}
	return NULL;
}

int worker_cq_reserve(struct worker *w, struct worker_dev *d, int need)
{
	(void)w;
	if (d->cq_budget < need)
		return -EBUSY;
	d->cq_budget -= need;
	return 0;
}

int io_uring_register_buffers_update_tag(struct io_uring *ring, unsigned int off,
					 const struct iovec *iovecs, const __u64 *tags,
					 unsigned int nr)
{
	(void)ring;
	(void)off;
	(void)iovecs;
	(void)tags;
	(void)nr;
	return 0;
}

/* ---- the server side that stays put across inputs ---- */

#define CQ_BUDGET 4096

static struct registry *registry;
static struct handshakes handshakes;
static struct server_auth *auth;
static unsigned char host_secret[AUTH_SECRET_LEN], ro_secret[AUTH_SECRET_LEN];
static struct export *exports[NEXPORTS];
static struct export_spec specs_open[NEXPORTS], specs_auth[NEXPORTS];
static struct worker_shared shared;
static struct worker worker;
static struct worker_dev dev;

static void add_export(unsigned int i, const char *name, bool ro, bool removed)
{
	struct export *e = calloc(1, sizeof(*e));

	if (!e)
		abort();
	snprintf(e->name, sizeof(e->name), "%s", name);
	e->index = i;
	e->fd = -1;
	e->ro = ro;
	e->removed = removed;
	e->size = 1 << 20;
	e->logical_block_size = 512;
	e->physical_block_size = 4096;
	e->max_discard_sectors = 2048;
	e->max_write_zeroes_sectors = 2048;
	e->flags = IBNBD_DEV_FUA;
	e->export_id = 0x1000 + i;
	exports[i] = e;
	snprintf(specs_open[i].name, sizeof(specs_open[i].name), "%s", name);
	specs_open[i].ro = ro;
	specs_auth[i] = specs_open[i];
	/* With authentication: the first export for HOST (rw) and HOST_RO
	 * (ro), the others for every authenticated host. */
	if (i == 0) {
		snprintf(specs_auth[i].allow[0].id, IBNBD_HOST_ID_MAX, HOST);
		snprintf(specs_auth[i].allow[1].id, IBNBD_HOST_ID_MAX, HOST_RO);
		specs_auth[i].allow[1].ro = true;
		specs_auth[i].nallow = 2;
	} else {
		snprintf(specs_auth[i].allow[0].id, IBNBD_HOST_ID_MAX, "*");
		specs_auth[i].nallow = 1;
	}
}

static void key_line(FILE *f, const char *host, unsigned char secret[AUTH_SECRET_LEN])
{
	char text[AUTH_KEY_TEXT_LEN], err[256];

	if (auth_key_generate(text, err, sizeof(err)) ||
	    auth_key_parse(text, secret, err, sizeof(err)))
		FAIL("cannot make a key: %s", err);
	fprintf(f, "%s %s\n", host, text);
}

static void setup_server(void)
{
	static const struct server_limits limits = {
		.max_connections = 16, .max_connections_per_host = 16,
		.max_sessions_per_host = 4, .max_opens_per_session = 4,
		.max_slot_memory = 64u << 20,
	};
	char dir[] = "/tmp/fuzz-conn.XXXXXX", path[64], err[512];
	FILE *f;
	int fd;

	log_init("fuzz-conn");
	if (registry_create(&registry))
		abort();
	registry_set_limits(registry, &limits);
	if (!mkdtemp(dir))
		abort();
	snprintf(path, sizeof(path), "%s/hosts", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	f = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (!f)
		abort();
	key_line(f, HOST, host_secret);
	key_line(f, HOST_RO, ro_secret);
	fclose(f);
	if (server_auth_create(path, &auth, err, sizeof(err)))
		FAIL("hosts file: %s", err);
	unlink(path);
	rmdir(dir);
	add_export(0, "a", false, false);
	add_export(1, "ro", true, false);
	add_export(2, "gone", false, true);
	shared = (struct worker_shared){
		.exports = exports,
		.nexports = NEXPORTS,
		.limits = { .max_queue_depth = 8, .max_io_size = 16384, .features = IBNBD_FEAT_ALL },
		.registry = registry,
		.keepalive_timeout_ms = 30000,
		.max_opens = limits.max_opens_per_session,
		.handshakes = &handshakes,
	};
	/* Both limits reachable: 2 connections in all (flags) or 1 per address. */
	if (handshakes_init(&handshakes, 2, 1))
		abort();
	worker.shared = &shared;
	worker.efd = eventfd(0, EFD_NONBLOCK);
	if (worker.efd < 0)
		abort();
	dev.verbs = &fake_ctx;
	dev.cq_size = dev.cq_max = dev.cq_budget = CQ_BUDGET;
}

/* ---- the input ---- */

struct input {
	const uint8_t *p;
	size_t n;
};

static uint8_t u8(struct input *in)
{
	if (!in->n)
		return 0;
	in->n--;
	return *in->p++;
}

static uint16_t u16(struct input *in)
{
	return (uint16_t)(u8(in) | u8(in) << 8);
}

static uint32_t u32(struct input *in)
{
	return u16(in) | (uint32_t)u16(in) << 16;
}

static uint64_t u64(struct input *in)
{
	return u32(in) | (uint64_t)u32(in) << 32;
}

static void bytes(struct input *in, void *buf, size_t len)
{
	size_t k = len < in->n ? len : in->n;

	memset(buf, 0, len);
	memcpy(buf, in->p, k);
	in->p += k;
	in->n -= k;
}

/* ---- delivering completions ---- */

/* The connection a backing IO belongs to (by its user data, as the
 * worker finds it). */
static struct hconn *hconn_of_sqe(const struct io_uring_sqe *s)
{
	unsigned int ci;

	for (ci = 0; ci < MAX_CONNS; ci++)
		if (conns[ci].c && conns[ci].c->idx == wrid_conn(s->user_data))
			break;
	if (wrid_type(s->user_data) != WRID_IO || ci == MAX_CONNS)
		FAIL("an SQE with user data 0x%llx", (unsigned long long)s->user_data);
	return &conns[ci];
}

/* The backing IO in sqe, checked against what the connection may do. */
static void check_sqe(const struct hconn *h, const struct io_uring_sqe *s, unsigned int tag)
{
	const struct conn *c = h->c;
	const struct export *e;
	bool writes = false;
	uint64_t off = s->off, len = 0;
	unsigned int i;

	if (!(s->flags & IOSQE_FIXED_FILE) || s->fd < 0 || s->fd >= NEXPORTS)
		FAIL("backing IO on file %d, not an export's fixed file", s->fd);
	e = exports[s->fd];
	switch (s->opcode) {
	case IORING_OP_READ_FIXED:
	case IORING_OP_WRITE_FIXED:
		writes = s->opcode == IORING_OP_WRITE_FIXED;
		len = s->len;
		if (s->buf_index != c->idx)
			FAIL("backing IO into fixed buffer %u of connection %u", s->buf_index, c->idx);
		if (s->addr < (uintptr_t)slot_data((struct conn *)c, tag) ||
		    s->addr + len > (uintptr_t)slot_data((struct conn *)c, tag) + c->stride)
			FAIL("backing IO of tag %u outside its slot", tag);
		break;
	case IORING_OP_FALLOCATE:
		writes = true;
		len = s->addr;
		break;
	case IORING_OP_FSYNC:
		break;
	default:
		FAIL("unexpected io_uring opcode %u", s->opcode);
	}
	if (off > e->size || len > e->size - off)
		FAIL("backing IO at %llu+%llu beyond export '%s' of %llu bytes",
		     (unsigned long long)off, (unsigned long long)len, e->name,
		     (unsigned long long)e->size);
	if (writes && e->ro)
		FAIL("a write to read-only export '%s'", e->name);
	for (i = 0; i < CONN_MAX_OPENS; i++)
		if (c->opens[i].exp == e && (!writes || c->opens[i].writable))
			return;
	FAIL("backing IO on export '%s' that this connection has not opened%s", e->name,
	     writes ? " read-write" : "");
}

/* The backing IOs the last server step prepared, checked while the
 * connection is as it was when it submitted them. */
static void check_new_sqes(void)
{
	unsigned int i;

	for (i = 0; i < MAX_SQES; i++) {
		const struct io_uring_sqe *s = &sqes[i];

		if (!sqe_used[i] || sqe_checked[i])
			continue;
		sqe_checked[i] = true;
		check_sqe(hconn_of_sqe(s), s, wrid_index(s->user_data));
	}
}

/* After every call into the server: what it prepared, then the answers it
 * queued, posted as the worker does before it waits again. */
static void flush_answers(void)
{
	check_new_sqes();
	while (worker.flush_list)
		worker.flush_list = conn_flush(worker.flush_list);
}

static void deliver(struct hconn *h, const struct ibv_wc *wc)
{
	conn_on_wc(h->c, wc);
	flush_answers();
}

/* A QP in error flushes every posted WR, each with a completion. */
static void pump_errors(struct hconn *h)
{
	while (h->qp && h->qp->error && (h->qp->sq_n || h->qp->rq_n)) {
		struct fake_qp *q = h->qp;
		struct posted p;
		struct ibv_wc wc = { .status = IBV_WC_WR_FLUSH_ERR };

		if (q->sq_n) {
			p = q->sq[q->sq_head];
			q->sq_head = (q->sq_head + 1) % QUEUE_MAX;
			q->sq_n--;
		} else {
			p = q->rq[q->rq_head];
			q->rq_head = (q->rq_head + 1) % QUEUE_MAX;
			q->rq_n--;
		}
		wc.wr_id = p.wr_id;
		wc.opcode = p.opcode;
		deliver(h, &wc);
	}
}

/* A SEND from the client: into the oldest posted receive (none: the
 * client's RNR retries would wait; the message is not delivered). */
static void client_send(struct hconn *h, const void *msg, size_t len)
{
	struct fake_qp *q = h->qp;
	struct ibv_wc wc = { .status = IBV_WC_SUCCESS, .opcode = IBV_WC_RECV };
	struct posted p;

	if (!q || q->error || !q->rq_n)
		return;
	p = q->rq[q->rq_head];
	if (len > p.length) {
		/* The device fails the receive: a local length error. */
		wc.status = IBV_WC_LOC_LEN_ERR;
		len = 0;
	}
	q->rq_head = (q->rq_head + 1) % QUEUE_MAX;
	q->rq_n--;
	memcpy((void *)p.addr, msg, len);
	wc.wr_id = p.wr_id;
	wc.byte_len = (uint32_t)len;
	if (wc.status != IBV_WC_SUCCESS)
		q->error = true;
	deliver(h, &wc);
}

/* A WRITE_WITH_IMM of len bytes at the slot address for tag (by the
 * server's HELLO_RSP): lands only where the rkey allows. */
static void client_write_imm(struct hconn *h, uint32_t imm, uint64_t raddr, const void *data,
			     uint32_t len)
{
	struct fake_qp *q = h->qp;
	struct ibv_wc wc = { .status = IBV_WC_SUCCESS, .opcode = IBV_WC_RECV_RDMA_WITH_IMM,
			     .wc_flags = IBV_WC_WITH_IMM };
	uintptr_t at;

	if (!q || q->error || !q->rq_n || !h->view.have_desc)
		return;
	at = mr_resolve(h->view.desc.slot_rkey, true, raddr, len);
	if (!at)
		return; /* a remote access error: the client's QP, not ours */
	memcpy((void *)at, data, len);
	wc.wr_id = q->rq[q->rq_head].wr_id;
	q->rq_head = (q->rq_head + 1) % QUEUE_MAX;
	q->rq_n--;
	wc.byte_len = len;
	wc.imm_data = htonl(imm);
	deliver(h, &wc);
}

/* Send completions: in order, up to and including the next signaled WR
 * (only that one is seen); with fail, the head fails and the QP errors. */
static void complete_sends(struct hconn *h, bool fail)
{
	struct fake_qp *q = h->qp;

	if (!q || q->error || !q->sq_n)
		return;
	if (fail) {
		struct ibv_wc wc = { .wr_id = q->sq[q->sq_head].wr_id,
				     .status = IBV_WC_RETRY_EXC_ERR,
				     .opcode = q->sq[q->sq_head].opcode };

		q->sq_head = (q->sq_head + 1) % QUEUE_MAX;
		q->sq_n--;
		q->error = true;
		deliver(h, &wc);
		return;
	}
	while (q->sq_n) {
		struct posted p = q->sq[q->sq_head];

		q->sq_head = (q->sq_head + 1) % QUEUE_MAX;
		q->sq_n--;
		if (p.signaled) {
			struct ibv_wc wc = { .wr_id = p.wr_id, .status = IBV_WC_SUCCESS,
					     .opcode = p.opcode };

			deliver(h, &wc);
			return;
		}
	}
}

/* Completes the k-th pending backing IO with a result picked by how. */
static void complete_io(unsigned int k, uint8_t how)
{
	unsigned int i, seen = 0;

	if (!nsqes)
		return;
	k %= nsqes;
	for (i = 0; i < MAX_SQES; i++) {
		struct io_uring_sqe s;
		struct hconn *h;
		int res;

		if (!sqe_used[i] || seen++ != k)
			continue;
		s = sqes[i];
		sqe_used[i] = false;
		nsqes--;
		h = hconn_of_sqe(&s);
		switch (how % 6) {
		case 0: case 1: case 2:
			res = s.opcode == IORING_OP_READ_FIXED || s.opcode == IORING_OP_WRITE_FIXED ?
				      (int)s.len : 0;
			break;
		case 3:
			res = -EIO;
			break;
		case 4:
			res = -EOPNOTSUPP;
			break;
		default:
			res = s.len / 2; /* short */
			break;
		}
		conn_on_io(h->c, wrid_index(s.user_data), res);
		flush_answers();
		return;
	}
}

/* ---- the client's messages ---- */

static void connect_conn(unsigned int slot, struct input *in, const uint8_t uuid[16],
			 uint16_t conn_index)
{
	struct hconn *h = &conns[slot];
	struct rdma_cm_id *id = calloc(1, sizeof(*id));
	uint8_t v = u8(in);
	int ret;

	if (!id)
		abort();
	memset(h, 0, sizeof(*h));
	id->verbs = &fake_ctx;
	creating = (int)slot;
	h->req = (struct ibnbd_conn_params){
		.version = v & 0x80 ? u16(in) : IBNBD_PROTO_VERSION,
		.queue_depth = (uint16_t)(u8(in) % 12),
		.features = u8(in),
		.max_io_size = (uint32_t)(u8(in) % 8) * 4096,
		.conn_index = conn_index,
		.conn_count = (uint16_t)(1 + (v & 1)),
	};
	memcpy(h->req.session_uuid, uuid, 16);
	h->id = id;
	accept_fails = (v & 0x70) == 0x70;
	ret = conn_create(&worker, &dev, slot, id, &h->req, "fuzz", &h->c);
	accept_fails = false;
	if (ret) {
		conn_reject(id, ret);
		rdma_destroy_id(id);
		h->id = NULL;
		h->c = NULL;
	}
}

static const char *pick_host(struct input *in, char *raw)
{
	switch (u8(in) % 5) {
	case 0: case 1:
		return HOST;
	case 2:
		return HOST_RO;
	case 3:
		return "stranger";
	default:
		bytes(in, raw, 12);
		return raw;
	}
}

static void send_hello(struct hconn *h, struct input *in)
{
	struct ibnbd_hello_params p = { .version = IBNBD_PROTO_VERSION };
	struct ibnbd_hello w;
	char raw[16] = "";
	uint8_t v = u8(in);

	if (v & 1)
		p.version = u16(in);
	p.features = u8(in);
	snprintf(p.host_id, sizeof(p.host_id), "%s", pick_host(in, raw));
	memset(p.nonce, v, sizeof(p.nonce));
	ibnbd_hello_encode(&w, &p);
	if (v & 2) /* a corrupted byte of the message */
		((uint8_t *)&w)[u8(in) % sizeof(w)] ^= (uint8_t)(1u << (v >> 5));
	/* Who the server will take it for, if anyone. */
	if (!ibnbd_hello_decode(&w, sizeof(w), &p)) {
		memcpy(h->view.sending_host, p.host_id, sizeof(h->view.sending_host));
		memcpy(h->view.sending_nonce, p.nonce, sizeof(h->view.sending_nonce));
	}
	client_send(h, &w, sizeof(w));
}

/* The client's proof: right (the server's challenge checked first, as the
 * real client does), or one bit wrong. */
static void send_proof(struct hconn *h, struct input *in)
{
	struct auth_transcript t = {
		.version = IBNBD_PROTO_VERSION,
		.conn_index = h->req.conn_index,
		.host_id = h->view.host_id,
		.server_id = h->view.challenge.server_id,
	};
	unsigned char proof[AUTH_MAC_LEN] = { 0 };
	struct ibnbd_auth_proof w;
	uint8_t v = u8(in);

	if (h->view.have_challenge) {
		const unsigned char *secret = strcmp(h->view.host_id, HOST_RO) ? host_secret : ro_secret;

		memcpy(t.session_uuid, h->req.session_uuid, sizeof(t.session_uuid));
		memcpy(t.client_nonce, h->view.nonce, sizeof(t.client_nonce));
		memcpy(t.server_nonce, h->view.challenge.nonce, sizeof(t.server_nonce));
		if (auth_answer(secret, &t, h->view.challenge.proof, proof))
			FAIL("the server's challenge to '%s' does not prove the hosts file's key",
			     h->view.host_id);
	}
	if (v & 1)
		proof[v % AUTH_MAC_LEN] ^= 1;
	ibnbd_auth_proof_encode(&w, proof);
	client_send(h, &w, sizeof(w));
}

static void send_open(struct hconn *h, struct input *in)
{
	static const char *const names[] = { "a", "ro", "gone", "nosuch", "" };
	struct ibnbd_open_params p = { 0 };
	struct ibnbd_open w;
	uint8_t v = u8(in);

	p.access = v % 3;
	if ((v >> 2) % 6 == 5)
		bytes(in, p.name, 16);
	else
		snprintf(p.name, sizeof(p.name), "%s", names[(v >> 2) % 6 % 5]);
	p.name[sizeof(p.name) - 1] = 0;
	if (ibnbd_open_encode(&w, &p))
		return;
	client_send(h, &w, sizeof(w));
}

static uint32_t pick_handle(const struct hconn *h, struct input *in, uint64_t *cookie)
{
	uint8_t v = u8(in);

	if (h->view.nhandles && !(v & 0x80)) {
		unsigned int i = v % h->view.nhandles;

		*cookie = (v & 0x40) ? h->view.cookies[i] ^ 1 : h->view.cookies[i];
		return h->view.handles[i];
	}
	*cookie = u64(in);
	return v & 0x7f;
}

static void send_close(struct hconn *h, struct input *in)
{
	struct ibnbd_close w;
	uint64_t cookie;

	ibnbd_close_encode(&w, pick_handle(h, in, &cookie));
	client_send(h, &w, sizeof(w));
}

static void send_keepalive(struct hconn *h, struct input *in)
{
	struct ibnbd_keepalive w;
	uint8_t v = u8(in);

	ibnbd_keepalive_encode(&w, v & 1 ? IBNBD_MSG_KEEPALIVE_RSP : IBNBD_MSG_KEEPALIVE, u32(in));
	client_send(h, &w, sizeof(w));
}

/* An IO request, mostly well-formed against an open handle. */
static void make_io(const struct hconn *h, struct input *in, struct ibnbd_io *io)
{
	uint8_t v = u8(in), lenv = u8(in);
	uint16_t tag = (uint16_t)(u8(in) % ((h->c ? h->c->qd : 1) + 2));

	memset(io, 0, sizeof(*io));
	io->req_id = ibnbd_req_id(tag, u8(in));
	io->opcode = v % 6;
	io->handle = pick_handle(h, in, &io->cookie);
	if (v & 0x80)
		io->offset = u64(in);
	else
		io->offset = (uint64_t)u8(in) * 4096;
	io->length = (v & 0x40) ? u32(in) : (uint32_t)lenv * 512;
	if (io->opcode == IBNBD_OP_FLUSH && !(v & 0x20))
		io->length = 0;
	io->flags = (v & 0x10) ? u16(in) : 0;
	io->rkey = u32(in);
	io->addr = u64(in);
}

static void send_io(struct hconn *h, struct input *in)
{
	struct ibnbd_io_req w;
	struct ibnbd_io io;

	make_io(h, in, &io);
	ibnbd_io_req_encode(&w, &io);
	client_send(h, &w, sizeof(w));
}

/* [data | header] at the tag's slot address, as the client writes it. */
static void send_write_imm(struct hconn *h, struct input *in)
{
	static uint8_t buf[16384 + 2 * sizeof(struct ibnbd_io_req)];
	struct ibnbd_io_req w;
	struct ibnbd_io io;
	uint32_t len, imm;
	uint64_t raddr;
	uint8_t v = u8(in);

	if (!h->view.have_desc)
		return;
	make_io(h, in, &io);
	if (!(v & 1))
		io.opcode = IBNBD_OP_WRITE;
	len = io.length > 16384 ? 16384 : io.length;
	memset(buf, v, len);
	ibnbd_io_req_encode(&w, &io);
	memcpy(buf + len, &w, sizeof(w)); /* wherever the data ends: unaligned too */
	len += sizeof(w);
	imm = (v & 2) ? u8(in) : ibnbd_req_tag(io.req_id);
	raddr = ibnbd_slot_remote_addr(&h->view.desc, (uint16_t)imm);
	if (v & 4)
		raddr += u16(in);
	client_write_imm(h, imm, raddr, buf, len);
}

static void send_raw(struct hconn *h, struct input *in)
{
	uint8_t msg[IBNBD_MSG_MAX + 8];
	size_t len = u8(in) % sizeof(msg);

	bytes(in, msg, len);
	client_send(h, msg, len);
}

static void cm_event(struct hconn *h, struct input *in)
{
	static const enum rdma_cm_event_type types[] = {
		RDMA_CM_EVENT_ESTABLISHED, RDMA_CM_EVENT_DISCONNECTED,
		RDMA_CM_EVENT_TIMEWAIT_EXIT, RDMA_CM_EVENT_DEVICE_REMOVAL,
	};
	struct rdma_cm_event ev = { .id = h->id, .event = types[u8(in) % 4] };

	conn_on_cm_event(h->c, &ev);
	flush_answers();
}

/* ---- one input ---- */

static void finish(void)
{
	unsigned int i, k;

	for (i = 0; i < MAX_CONNS; i++) {
		struct hconn *h = &conns[i];

		if (!h->c)
			continue;
		conn_close(h->c, "end of the input");
		flush_answers();
		pump_errors(h);
	}
	/* The kernel ends every backing IO (cancelled ones too). */
	while (nsqes)
		complete_io(0, 3);
	for (i = 0; i < MAX_CONNS; i++) {
		struct hconn *h = &conns[i];

		if (!h->c)
			continue;
		pump_errors(h);
		h->c->dreq_due_ms = 0; /* its delayed disconnect: not worth waiting for */
		if (!conn_reapable(h->c))
			FAIL("connection %u cannot be reaped with every completion delivered: %u backing IO(s), %u send(s), %u receive(s) outstanding",
			     i, h->c->io_inflight, sq_used(h->c), h->c->rq_posted);
		conn_destroy(h->c);
		h->c = NULL;
	}
	registry_usage(registry, &k, &(uint64_t){ 0 });
	if (k)
		FAIL("%u connection(s) still counted by the registry", k);
	if (handshakes_count(&handshakes, NULL))
		FAIL("%u connection(s) still counted as in their handshake",
		     handshakes_count(&handshakes, NULL));
	if (dev.cq_budget != CQ_BUDGET)
		FAIL("CQ budget %d of %d after every connection went", dev.cq_budget, CQ_BUDGET);
	if (mrs || live_pds)
		FAIL("memory regions or protection domains left registered");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input in = { data, size };
	uint8_t flags = u8(&in);
	uint8_t uuid[16] = { 0 };
	unsigned int i;
	uint64_t drain;

	memset(conns, 0, sizeof(conns));
	shared.auth = (flags & 1) ? auth : NULL;
	handshakes.max_total = (flags & 2) ? 1 : 2;
	handshakes.max_per_addr = (flags & 8) ? 1 : 2;
	for (i = 0; i < NEXPORTS; i++)
		exports[i]->spec = (flags & 1) ? &specs_auth[i] : &specs_open[i];
	if (!(flags & 4))
		uuid[0] = (uint8_t)(1 + (flags >> 4));
	connect_conn(0, &in, uuid, 0);
	while (in.n) {
		uint8_t op = u8(&in);
		struct hconn *h = &conns[(op >> 4) & 1];

		if (!h->c) {
			if ((op & 0x0f) == 15 && h == &conns[1])
				connect_conn(1, &in, uuid, (op & 0x20) ? 0 : 1);
			continue;
		}
		switch (op & 0x0f) {
		case 0: send_hello(h, &in); break;
		case 1: send_proof(h, &in); break;
		case 2: send_open(h, &in); break;
		case 3: send_close(h, &in); break;
		case 4: send_keepalive(h, &in); break;
		case 5: case 6: send_io(h, &in); break;
		case 7: send_write_imm(h, &in); break;
		case 8: send_raw(h, &in); break;
		case 9: complete_sends(h, op & 0x80); break;
		case 10: complete_io(u8(&in), u8(&in)); break;
		case 11: cm_event(h, &in); break;
		case 12: conn_tick(h->c); flush_answers(); break;
		case 13: conn_on_kick(h->c); flush_answers(); break;
		case 14: conn_shutdown(h->c); flush_answers(); break;
		default: break;
		}
		pump_errors(h);
	}
	finish();
	while (read(worker.efd, &drain, sizeof(drain)) > 0)
		;
	return 0;
}

/* ---- the seed corpus ---- */

struct seed {
	uint8_t b[4096];
	size_t n;
};

static void put(struct seed *s, const void *p, size_t n)
{
	if (s->n + n > sizeof(s->b))
		abort();
	memcpy(s->b + s->n, p, n);
	s->n += n;
}

static void put8(struct seed *s, unsigned int v)
{
	uint8_t b = (uint8_t)v;

	put(s, &b, 1);
}

static void write_seed(const char *dir, const char *name, const struct seed *s)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	if (!f || fwrite(s->b, 1, s->n, f) != s->n || fclose(f))
		FAIL("cannot write %s", path);
}

/* A connection (qd 8, 8 KiB IOs) and its handshake: no-auth or with the key. */
static void seed_start(struct seed *s, bool with_auth, unsigned int nconns)
{
	put8(s, with_auth ? 1 : 0); /* flags */
	/* connect: version and count, qd, features, max IO */
	put(s, (uint8_t[]){ nconns - 1, 8, 0x0f, 2 }, 4);
	put(s, (uint8_t[]){ 0x00, 0x04, 0x0f, 0 }, 4); /* HELLO, features, host HOST */
	if (with_auth)
		put(s, (uint8_t[]){ 0x09, 0x01, 0x00 }, 3); /* sends done, correct proof */
	put(s, (uint8_t[]){ 0x09, 0x0b, 0 }, 3);      /* sends done, ESTABLISHED */
	put(s, (uint8_t[]){ 0x02, 2 }, 2);            /* OPEN "a" rw */
}

static void seed_io(struct seed *s, uint8_t opv, uint8_t tag)
{
	put8(s, 0x05);
	/* v (opcode, aligned offset), length 8 x 512, tag, generation, handle 0 with its cookie,
	 * offset 4096 x 3, rkey, addr */
	put(s, (uint8_t[]){ opv, 8, tag, 1, 0x00, 3 }, 6);
	put(s, (uint8_t[]){ 1, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0 }, 12);
	put(s, (uint8_t[]){ 0x0a, 0, 0 }, 3); /* its backing IO completes */
	put8(s, 0x09);
}

static void write_seeds(const char *dir)
{
	struct seed s = { .n = 0 };
	unsigned int op;

	seed_start(&s, false, 1);
	write_seed(dir, "open-noauth", &s);
	for (op = 0; op < 5; op++)
		seed_io(&s, (uint8_t)op, (uint8_t)op);
	write_seed(dir, "io-noauth", &s);
	s.n = 0;
	seed_start(&s, true, 1);
	write_seed(dir, "open-auth", &s);
	seed_io(&s, 1, 0);
	put(&s, (uint8_t[]){ 0x07, 0x00, 1, 8, 2, 1, 0x00, 3 }, 8); /* WRITE_WITH_IMM on tag 2 */
	put(&s, (uint8_t[]){ 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 }, 12);
	put(&s, (uint8_t[]){ 0x0a, 0, 0, 0x09, 0x03, 0x00, 0x04, 0x00, 0, 0, 0, 0 }, 12);
	write_seed(dir, "io-auth", &s);
	s.n = 0;
	seed_start(&s, true, 2);
	put(&s, (uint8_t[]){ 0x1f, 1, 8, 0x0f, 2 }, 5); /* a second connection, conn index 1 */
	put(&s, (uint8_t[]){ 0x10, 0x04, 0x0f, 0, 0x19, 0x11, 0x00, 0x19, 0x1b, 0, 0x12, 2 }, 12);
	seed_io(&s, 1, 1);
	put(&s, (uint8_t[]){ 0x0e, 0x09, 0x0a, 0, 0 }, 5); /* shutdown */
	write_seed(dir, "two-conns", &s);
	s.n = 0;
	seed_start(&s, true, 1);
	put(&s, (uint8_t[]){ 0x3f, 0, 8, 0x0f, 2 }, 5); /* the same conn index again: fencing */
	put(&s, (uint8_t[]){ 0x10, 0x04, 0x0f, 0, 0x19, 0x11, 0x00, 0x0d, 0x1d, 0x19, 0x0b, 1 }, 12);
	write_seed(dir, "supersede", &s);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *seeds = getenv("IBNBD_FUZZ_CONN_SEEDS");

	(void)argc;
	(void)argv;
	setup_server();
	if (seeds) {
		write_seeds(seeds);
		exit(0);
	}
	return 0;
}
