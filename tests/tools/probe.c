// SPDX-License-Identifier: GPL-2.0-only
/*
 * ibnbd-probe: a small synchronous ibnbd client for tests (not installed).
 *
 *   ibnbd-probe [options] ADDR[:PORT] EXPORT CMD [ARG]...
 *   ibnbd-probe --fill-pattern PATH SEED     (local: write the read-verify
 *                                              pattern into a file or device)
 *
 * It speaks the protocol of include/ibnbd/proto.h the way a real client must:
 * connect with ibnbd_conn_req, HELLO, OPEN, then IO on tags (credits) with
 * WRITE as RDMA_WRITE_WITH_IMM [data | header] and the rest as SENDs.
 * --session/--conn-index/--host-id make it one connection of a client
 * session, as a reconnecting client would present itself.
 */
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "endpoint.h"
#include "proto.h"
#include "cm.h"
#include "verbs.h"

#define PROBE_QD 16
#define PROBE_MAX_IO (128u * 1024)
#define PROBE_WAIT_MS 10000

struct probe {
	struct endpoint ep;
	const char *export;
	bool want_ro;
	int timeout_ms;
	uint64_t range_off, range_len; /* --range: where random IO may go (0: all) */
	uint8_t session_uuid[16];      /* --session; zero: none */
	uint16_t conn_index, conn_count;
	const char *host_id;           /* --host-id; default ibnbd-probe-PID */
	bool has_key;                  /* --key-file: answer a challenge */
	unsigned char secret[AUTH_SECRET_LEN];
	enum { PROOF_RIGHT, PROOF_BAD, PROOF_REFLECT } proof; /* --bad-proof, --reflect-proof */
	const char *save_proof;        /* --save-proof FILE: keep HELLO's nonce and the proof */
	const char *replay_proof;      /* --replay-proof FILE: send those again, keyless */
	bool no_hello;                 /* --no-hello: connect, then say nothing */
	uint16_t ask_qd;               /* --queue-depth (with --no-hello); 0: PROBE_QD */
	bool verbose;
	unsigned int nowait; /* tags used by write-nowait */

	struct rdma_event_channel *ch;
	struct rdma_cm_id *id;
	struct ibv_pd *pd;
	struct ibv_comp_channel *cc;
	struct ibv_cq *cq;
	bool qp;
	uint8_t *data; /* qd * max_io (a page with --no-hello: no IO) */
	size_t data_len;
	struct ibv_mr *data_mr;
	uint8_t *msgs; /* nbufs receive buffers, then nbufs send buffers */
	struct ibv_mr *msgs_mr;
	unsigned int nbufs;

	struct ibnbd_conn_params conn;
	struct ibnbd_slot_desc slots;
	struct ibnbd_dev_info dev;
	bool dropped; /* the server closed the connection */
	uint64_t gen;
	int32_t rsp_status[PROBE_QD];
	bool rsp_done[PROBE_QD];
};

static const char *prog = "ibnbd-probe";
static bool quiet; /* no error lines: a command counts the failures itself */

#define say(...) do { printf(__VA_ARGS__); printf("\n"); fflush(stdout); } while (0)
static void __attribute__((format(printf, 1, 2))) err(const char *fmt, ...)
{
	va_list ap;

	if (quiet)
		return;
	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
}

static uint8_t *rbuf(struct probe *p, unsigned int i) { return p->msgs + (size_t)i * IBNBD_MSG_MAX; }
static uint8_t *sbuf(struct probe *p, unsigned int i) { return p->msgs + (size_t)(p->nbufs + i) * IBNBD_MSG_MAX; }
static uint8_t *dbuf(struct probe *p, unsigned int tag) { return p->data + (size_t)tag * PROBE_MAX_IO; }

static void probe_close(struct probe *p)
{
	if (p->id && p->qp) {
		rdma_disconnect(p->id);
		rdma_destroy_qp(p->id);
	}
	if (p->id)
		rdma_destroy_id(p->id);
	if (p->cq)
		ibv_destroy_cq(p->cq);
	if (p->cc)
		ibv_destroy_comp_channel(p->cc);
	verbs_dereg_mr(p->data_mr);
	verbs_dereg_mr(p->msgs_mr);
	if (p->pd)
		ibv_dealloc_pd(p->pd);
	cm_channel_destroy(p->ch);
	free(p->data);
	free(p->msgs);
	p->id = NULL; p->qp = false; p->cq = NULL; p->cc = NULL; p->data_mr = NULL;
	p->msgs_mr = NULL; p->pd = NULL; p->ch = NULL; p->data = NULL; p->msgs = NULL;
	p->dropped = false;
}

static int post_recv(struct probe *p, unsigned int i)
{
	struct ibv_sge sge = { (uintptr_t)rbuf(p, i), IBNBD_MSG_MAX, p->msgs_mr->lkey };
	struct ibv_recv_wr wr = { .wr_id = i, .sg_list = &sge, .num_sge = 1 };

	return verbs_post_recv(p->id->qp, &wr);
}

static int post_send_buf(struct probe *p, unsigned int buf, size_t len)
{
	struct ibv_sge sge = { (uintptr_t)sbuf(p, buf), (uint32_t)len, p->msgs_mr->lkey };
	struct ibv_send_wr wr = { .wr_id = 1000 + buf, .sg_list = &sge, .num_sge = 1,
				  .opcode = IBV_WR_SEND, .send_flags = IBV_SEND_SIGNALED };

	return verbs_post_send(p->id->qp, &wr);
}

/*
 * Waits for one receive (returns its buffer index, *len set), -ECONNRESET if
 * the connection died, -ETIMEDOUT. Send completions are consumed silently.
 */
static int wait_recv(struct probe *p, int timeout_ms, size_t *len)
{
	struct timespec t0, t;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		struct ibv_wc wc;
		struct rdma_cm_event *ev;
		struct pollfd pfd[2] = { { p->cc->fd, POLLIN, 0 }, { p->ch->fd, POLLIN, 0 } };
		struct ibv_cq *cq;
		int n, left;

		while ((n = ibv_poll_cq(p->cq, 1, &wc)) > 0) {
			if (wc.status != IBV_WC_SUCCESS) {
				p->dropped = true;
				return -ECONNRESET;
			}
			if (wc.wr_id < 1000) {
				*len = wc.byte_len;
				return (int)wc.wr_id;
			}
		}
		while (cm_get_event(p->ch, &ev) == 0) {
			enum rdma_cm_event_type e = ev->event;

			rdma_ack_cm_event(ev);
			if (e == RDMA_CM_EVENT_DISCONNECTED) {
				p->dropped = true;
				return -ECONNRESET;
			}
		}
		while (verbs_cq_event(p->cc, &cq) == 0)
			;
		if ((n = ibv_poll_cq(p->cq, 1, &wc)) > 0) { /* raced with the re-arm */
			if (wc.status != IBV_WC_SUCCESS) {
				p->dropped = true;
				return -ECONNRESET;
			}
			if (wc.wr_id < 1000) {
				*len = wc.byte_len;
				return (int)wc.wr_id;
			}
			continue;
		}
		clock_gettime(CLOCK_MONOTONIC, &t);
		left = timeout_ms - (int)((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000);
		if (left <= 0)
			return -ETIMEDOUT;
		poll(pfd, 2, left < 100 ? left : 100);
	}
}

/* Connects and sends nothing; pdata overrides the connect request if given. */
static int probe_connect_raw(struct probe *p, const void *pdata, uint8_t pdata_len)
{
	struct ibnbd_conn_params cp = {
		.version = IBNBD_PROTO_VERSION, .queue_depth = p->ask_qd ? p->ask_qd : PROBE_QD,
		.features = IBNBD_FEAT_ALL, .max_io_size = PROBE_MAX_IO,
		.conn_index = p->conn_index, .conn_count = p->conn_count,
	};
	struct cm_qp_caps caps = { 2 * PROBE_QD + 4, PROBE_QD + 2, 2, 1, 0 };
	struct ibnbd_conn_req req;
	uint8_t rep[64];
	size_t got = 0;
	int ret;

	memcpy(cp.session_uuid, p->session_uuid, sizeof(cp.session_uuid));
	p->nbufs = PROBE_QD + IBNBD_CTRL_CREDITS;
	ret = cm_channel_create(&p->ch);
	if (ret) {
		err("cannot open the RDMA CM (%s): is rdma_ucm loaded?", strerror(-ret));
		return ret;
	}
	ret = cm_resolve(p->ch, &p->ep, 2000, &p->id);
	if (ret) {
		err("cannot reach %s port %u: address/route resolution failed: %s", p->ep.host,
		    p->ep.port, strerror(-ret));
		return ret;
	}
	p->pd = ibv_alloc_pd(p->id->verbs);
	p->data_len = p->no_hello ? 4096 : (size_t)PROBE_QD * PROBE_MAX_IO;
	if (posix_memalign((void **)&p->data, 4096, p->data_len))
		p->data = NULL;
	if (posix_memalign((void **)&p->msgs, 4096, (size_t)2 * p->nbufs * IBNBD_MSG_MAX))
		p->msgs = NULL;
	if (!p->pd || !p->data || !p->msgs)
		return err("out of memory"), -ENOMEM;
	ret = verbs_comp_channel_create(p->id->verbs, &p->cc);
	if (ret)
		return err("completion channel: %s", strerror(-ret)), ret;
	p->cq = ibv_create_cq(p->id->verbs, 4 * PROBE_QD + 16, NULL, p->cc, 0);
	if (!p->cq || ibv_req_notify_cq(p->cq, 0))
		return err("cannot create a CQ"), -ENOMEM;
	ret = verbs_reg_mr(p->pd, p->data, p->data_len,
			       IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE, &p->data_mr);
	if (!ret)
		ret = verbs_reg_mr(p->pd, p->msgs, (size_t)2 * p->nbufs * IBNBD_MSG_MAX,
				       IBV_ACCESS_LOCAL_WRITE, &p->msgs_mr);
	if (ret)
		return err("memory registration: %s", strerror(-ret)), ret;
	ret = cm_create_qp(p->id, p->pd, p->cq, &caps);
	if (ret)
		return err("cannot create a QP: %s", strerror(-ret)), ret;
	p->qp = true;
	for (unsigned int i = 0; i < p->nbufs; i++)
		if ((ret = post_recv(p, i)))
			return err("post_recv: %s", strerror(-ret)), ret;
	ibnbd_conn_req_encode(&req, &cp);
	if (!pdata) {
		pdata = &req;
		pdata_len = sizeof(req);
	}
	/* Resolution took at most ~3.5 s: keep the whole attempt under 10 s. */
	ret = cm_connect(p->id, pdata, pdata_len, p->timeout_ms < 6000 ? p->timeout_ms : 6000,
				rep, sizeof(rep), &got);
	if (ret == -ECONNREFUSED && ibnbd_conn_rep_decode(rep, got, &p->conn) == 0 &&
	    p->conn.status) {
		err("%s port %u refused the connection: %s", p->ep.host, p->ep.port,
		    strerror(-p->conn.status));
		return p->conn.status;
	}
	if (ret) {
		err("cannot connect to %s port %u: %s (is ibnbd-server running and listening there?)",
		    p->ep.host, p->ep.port,
		    ret == -ECONNREFUSED ? "connection refused" : strerror(-ret));
		return ret;
	}
	if (ibnbd_conn_rep_decode(rep, got, &p->conn)) {
		err("%s port %u accepted with malformed private data", p->ep.host, p->ep.port);
		return -EPROTO;
	}
	return 0;
}

static int ctrl_roundtrip(struct probe *p, size_t len, uint8_t *out, size_t *out_len)
{
	int ret = post_send_buf(p, PROBE_QD, len), i;

	if (ret)
		return ret;
	i = wait_recv(p, p->timeout_ms, out_len);
	if (i < 0)
		return i;
	memcpy(out, rbuf(p, (unsigned int)i), *out_len > IBNBD_MSG_MAX ? IBNBD_MSG_MAX : *out_len);
	return post_recv(p, (unsigned int)i);
}

/* Answers the server's challenge (checking its proof) as --key-file and
 * --bad-proof/--reflect-proof say; the reply to the proof lands in rsp. */
static int probe_auth(struct probe *p, const struct ibnbd_hello_params *h, uint8_t *rsp,
		      size_t *len)
{
	struct ibnbd_auth_challenge_params ch;
	struct auth_transcript t = { .version = IBNBD_PROTO_VERSION, .conn_index = p->conn_index,
				     .host_id = h->host_id };
	unsigned char proof[AUTH_MAC_LEN];
	int ret;

	if (ibnbd_auth_challenge_decode(rsp, *len, &ch))
		return err("malformed AUTH_CHALLENGE"), -EPROTO;
	if (p->replay_proof) {
		/* An eavesdropper's replay: no key, the proof recorded earlier
		 * (its HELLO, with the same nonce, went out already). */
		FILE *f = fopen(p->replay_proof, "re");
		size_t n = f && !fseek(f, IBNBD_NONCE_LEN, SEEK_SET) ? fread(proof, 1, sizeof(proof), f) : 0;

		if (f)
			fclose(f);
		if (n != sizeof(proof))
			return err("--replay-proof: cannot read %s", p->replay_proof), -EIO;
		ibnbd_auth_proof_encode((struct ibnbd_auth_proof *)sbuf(p, PROBE_QD), proof);
		return ctrl_roundtrip(p, sizeof(struct ibnbd_auth_proof), rsp, len);
	}
	if (!p->has_key)
		return err("the server authenticates hosts; give --key-file"), -EACCES;
	t.server_id = ch.server_id;
	memcpy(t.session_uuid, p->session_uuid, sizeof(t.session_uuid));
	memcpy(t.client_nonce, h->nonce, sizeof(t.client_nonce));
	memcpy(t.server_nonce, ch.nonce, sizeof(t.server_nonce));
	ret = auth_answer(p->secret, &t, ch.proof, proof);
	if (ret == -EACCES)
		return err("the server (id %s) could not prove it holds our key", ch.server_id), ret;
	if (ret)
		return err("libcrypto failed"), ret;
	if (p->proof == PROOF_BAD)
		proof[0] ^= 1;
	else if (p->proof == PROOF_REFLECT)
		memcpy(proof, ch.proof, sizeof(proof));
	if (p->save_proof) {
		FILE *f = fopen(p->save_proof, "we");

		if (!f || fwrite(h->nonce, 1, IBNBD_NONCE_LEN, f) != IBNBD_NONCE_LEN ||
		    fwrite(proof, 1, sizeof(proof), f) != sizeof(proof))
			return err("--save-proof: cannot write %s", p->save_proof), -EIO;
		fclose(f);
	}
	ibnbd_auth_proof_encode((struct ibnbd_auth_proof *)sbuf(p, PROBE_QD), proof);
	return ctrl_roundtrip(p, sizeof(struct ibnbd_auth_proof), rsp, len);
}

static int probe_hello(struct probe *p)
{
	struct ibnbd_hello_params h = { .version = IBNBD_PROTO_VERSION, .features = IBNBD_FEAT_ALL };
	uint8_t rsp[IBNBD_MSG_MAX];
	struct timespec t0, t1;
	size_t len;
	int ret;

	if (p->host_id)
		snprintf(h.host_id, sizeof(h.host_id), "%s", p->host_id);
	else
		snprintf(h.host_id, sizeof(h.host_id), "ibnbd-probe-%d", (int)getpid());
	if (p->replay_proof) {
		/* The recorded HELLO's nonce: a replay of the whole exchange. */
		FILE *f = fopen(p->replay_proof, "re");
		size_t n = f ? fread(h.nonce, 1, sizeof(h.nonce), f) : 0;

		if (f)
			fclose(f);
		if (n != sizeof(h.nonce))
			return err("--replay-proof: cannot read %s", p->replay_proof), -EIO;
	} else if (auth_nonce(h.nonce)) {
		return err("no nonce from libcrypto"), -EIO;
	}
	ibnbd_hello_encode((struct ibnbd_hello *)sbuf(p, PROBE_QD), &h);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ret = ctrl_roundtrip(p, sizeof(struct ibnbd_hello), rsp, &len);
	if (!ret && len >= sizeof(struct ibnbd_msg_hdr) &&
	    le16toh(((struct ibnbd_msg_hdr *)rsp)->type) == IBNBD_MSG_AUTH_CHALLENGE)
		ret = probe_auth(p, &h, rsp, &len);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (p->verbose)
		say("hello: answered after %ld ms",
		    (long)((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000));
	if (ret)
		return err("HELLO to %s port %u failed: %s", p->ep.host, p->ep.port, strerror(-ret)), ret;
	if (ibnbd_hello_rsp_decode(rsp, len, &p->slots))
		return err("malformed HELLO_RSP"), -EPROTO;
	if (p->slots.status == -EDQUOT)
		return err("HELLO refused: the server's %s is reached", ibnbd_limit_name(p->slots.limit)),
		       -EDQUOT;
	if (p->slots.status)
		return err("HELLO refused: %s", strerror(-p->slots.status)), p->slots.status;
	if (p->slots.max_io_size > PROBE_MAX_IO || p->slots.queue_depth > PROBE_QD)
		return err("server granted more than asked"), -EPROTO;
	return 0;
}

static void open_error(struct probe *p, int status)
{
	if (status == -ENOENT)
		err("export '%s' not found on server %s port %u (check the server's --export / config)",
		    p->export, p->ep.host, p->ep.port);
	else
		err("opening export '%s' on %s port %u failed: %s", p->export, p->ep.host,
		    p->ep.port, strerror(-status));
}

/* OPEN with one access mode: 0, the server's -errno, or a transport -errno. */
static int probe_open_mode(struct probe *p, uint8_t access)
{
	struct ibnbd_open_params o = { .access = access };
	uint8_t rsp[IBNBD_MSG_MAX];
	size_t len;
	int ret;

	snprintf(o.name, sizeof(o.name), "%s", p->export);
	if (ibnbd_open_encode((struct ibnbd_open *)sbuf(p, PROBE_QD), &o))
		return err("export name too long"), -ENAMETOOLONG;
	ret = ctrl_roundtrip(p, sizeof(struct ibnbd_open), rsp, &len);
	if (ret)
		return err("OPEN failed: %s", strerror(-ret)), ret;
	if (ibnbd_open_rsp_decode(rsp, len, &p->dev))
		return err("malformed OPEN_RSP"), -EPROTO;
	return p->dev.status;
}

/* Read-write unless --ro; a read-only export is opened read-only. */
static int probe_open(struct probe *p)
{
	int ret = probe_open_mode(p, p->want_ro ? IBNBD_ACCESS_RO : IBNBD_ACCESS_RW);

	if (ret == -EROFS && !p->want_ro)
		ret = probe_open_mode(p, IBNBD_ACCESS_RO);
	if (ret > -4096 && ret < 0 && ret != -ETIMEDOUT && ret != -ECONNRESET)
		open_error(p, ret);
	return ret;
}

static int probe_start(struct probe *p)
{
	int ret = probe_connect_raw(p, NULL, 0);

	if (p->no_hello)
		return ret;
	if (!ret)
		ret = probe_hello(p);
	if (!ret && strcmp(p->export, "-")) /* "-": HELLO only */
		ret = probe_open(p);
	return ret;
}

/* Posts one IO on tag; data for WRITE must already be in dbuf(tag). */
static int io_post(struct probe *p, unsigned int tag, const struct ibnbd_io *io, uint32_t imm,
		   uint32_t slot)
{
	struct ibnbd_io_req *hdr = (struct ibnbd_io_req *)sbuf(p, tag);
	struct ibv_sge sge[2];
	struct ibv_send_wr wr = { .wr_id = 1000 + tag, .sg_list = sge, .send_flags = IBV_SEND_SIGNALED };

	ibnbd_io_req_encode(hdr, io);
	p->rsp_done[tag] = false;
	if (io->opcode == IBNBD_OP_WRITE) {
		sge[0] = (struct ibv_sge){ (uintptr_t)dbuf(p, tag), io->length, p->data_mr->lkey };
		sge[1] = (struct ibv_sge){ (uintptr_t)hdr, sizeof(*hdr), p->msgs_mr->lkey };
		wr.num_sge = 2;
		wr.opcode = IBV_WR_RDMA_WRITE_WITH_IMM;
		wr.imm_data = htonl(imm);
		wr.wr.rdma.remote_addr = ibnbd_slot_remote_addr(&p->slots, (uint16_t)slot);
		wr.wr.rdma.rkey = p->slots.slot_rkey;
	} else {
		sge[0] = (struct ibv_sge){ (uintptr_t)hdr, sizeof(*hdr), p->msgs_mr->lkey };
		wr.num_sge = 1;
		wr.opcode = IBV_WR_SEND;
	}
	return verbs_post_send(p->id->qp, &wr);
}

static struct ibnbd_io mkio(struct probe *p, unsigned int tag, uint8_t op, uint64_t off,
			    uint32_t len, uint16_t flags)
{
	struct ibnbd_io io = {
		.req_id = ibnbd_req_id((uint16_t)tag, ++p->gen), .offset = off, .length = len,
		.handle = p->dev.handle, .cookie = p->dev.cookie, .opcode = op, .flags = flags,
	};

	if (op == IBNBD_OP_READ) {
		io.addr = (uintptr_t)dbuf(p, tag % PROBE_QD);
		io.rkey = p->data_mr->rkey;
	}
	return io;
}

/* Waits for one IO response; returns its tag, or -errno. */
static int io_wait_one(struct probe *p, int timeout_ms)
{
	uint64_t id;
	int32_t st;
	size_t len;
	int i = wait_recv(p, timeout_ms, &len), ret;

	if (i < 0)
		return i;
	ret = ibnbd_io_rsp_decode(rbuf(p, (unsigned int)i), len, &id, &st);
	post_recv(p, (unsigned int)i);
	if (ret || ibnbd_req_tag(id) >= PROBE_QD)
		return err("malformed IO response"), -EPROTO;
	p->rsp_status[ibnbd_req_tag(id)] = st;
	p->rsp_done[ibnbd_req_tag(id)] = true;
	return ibnbd_req_tag(id);
}

/* One IO on tag 0, synchronously; returns its status or -errno of transport. */
static int io_sync(struct probe *p, const struct ibnbd_io *io, int *status)
{
	int ret = io_post(p, ibnbd_req_tag(io->req_id), io, ibnbd_req_tag(io->req_id),
			  ibnbd_req_tag(io->req_id));

	if (ret)
		return ret;
	ret = io_wait_one(p, p->timeout_ms);
	if (ret < 0)
		return ret;
	*status = p->rsp_status[ret];
	return 0;
}

static uint64_t pattern_word(uint64_t byte_off, uint64_t seed)
{
	return (byte_off / 8 + seed) * 0x9E3779B97F4A7C15ull ^ (seed << 17);
}

static void fill_pattern(uint8_t *buf, uint64_t off, uint32_t len, uint64_t seed)
{
	for (uint32_t i = 0; i < len; i += 8) {
		uint64_t w = pattern_word(off + i, seed);

		memcpy(buf + i, &w, 8);
	}
}

static long check_pattern(const uint8_t *buf, uint64_t off, uint32_t len, uint64_t seed)
{
	for (uint32_t i = 0; i < len; i += 8) {
		uint64_t w = pattern_word(off + i, seed);

		if (memcmp(buf + i, &w, 8))
			return (long)i;
	}
	return -1;
}

static uint64_t rnd(void)
{
	return ((uint64_t)random() << 31) ^ (uint64_t)random();
}

static int cmd_info(struct probe *p)
{
	say("export %s: size %" PRIu64 " bytes, logical block %u, physical block %u", p->export,
	    p->dev.size, p->dev.logical_block_size, p->dev.physical_block_size);
	say("  handle %u, max discard %u sectors, max write-zeroes %u sectors", p->dev.handle,
	    p->dev.max_discard_sectors, p->dev.max_write_zeroes_sectors);
	say("  flags:%s%s%s%s", p->dev.flags & IBNBD_DEV_VOLATILE_CACHE ? " volatile-cache" : "",
	    p->dev.flags & IBNBD_DEV_FUA ? " fua" : "", p->dev.flags & IBNBD_DEV_READ_ONLY ? " read-only" : "",
	    p->dev.flags & IBNBD_DEV_ROTATIONAL ? " rotational" : "");
	say("  connection: queue depth %u, max IO %u bytes, features 0x%" PRIx64,
	    p->slots.queue_depth, p->slots.max_io_size, p->slots.features);
	return 0;
}

/*
 * n random writes in batches of up to 16 concurrent, non-overlapping
 * requests (random aligned offset and size, some FUA), then reads of the
 * same regions compared with what was written. A fresh seed per run means
 * stale data from an earlier run cannot pass.
 */
static int cmd_write_read_verify(struct probe *p, long n, bool ro_pattern_only, uint64_t seed_arg)
{
	uint32_t lbs = p->dev.logical_block_size, maxio = p->slots.max_io_size;
	/* All the credits at once: the server must cope with a full queue. */
	unsigned int batch = p->slots.queue_depth < PROBE_QD ? p->slots.queue_depth : PROBE_QD;
	uint64_t seed = seed_arg ? seed_arg : rnd() | 1;
	uint64_t offs[PROBE_QD];
	uint32_t lens[PROBE_QD];
	long done = 0, bad = 0;

	uint64_t base = p->range_off, span = p->range_len ? p->range_len : p->dev.size;

	if (base % lbs || span % lbs || base > p->dev.size || span > p->dev.size - base)
		return err("--range %" PRIu64 ":%" PRIu64 " is not aligned or not inside the device",
			   base, span), 1;
	if (maxio > 64 * 1024)
		maxio = 64 * 1024;
	if (maxio > span)
		maxio = (uint32_t)span;
	while (done < n) {
		unsigned int k = (unsigned int)(n - done < batch ? n - done : batch), i, got;

		for (i = 0; i < k; i++) {
			bool overlap;

			do {
				lens[i] = (uint32_t)(1 + rnd() % (maxio / lbs)) * lbs;
				offs[i] = base + rnd() % ((span - lens[i]) / lbs + 1) * lbs;
				overlap = false;
				for (unsigned int j = 0; j < i; j++)
					if (offs[i] < offs[j] + lens[j] && offs[j] < offs[i] + lens[i])
						overlap = true;
			} while (overlap);
		}
		if (!ro_pattern_only) {
			for (i = 0; i < k; i++) {
				struct ibnbd_io io = mkio(p, i, IBNBD_OP_WRITE, offs[i], lens[i],
							  (rnd() % 4 == 0) ? IBNBD_IOF_FUA : 0);

				fill_pattern(dbuf(p, i), offs[i], lens[i], seed);
				if (io_post(p, i, &io, i, i))
					return err("posting a write failed"), 1;
			}
			for (got = 0; got < k; got++) {
				int t = io_wait_one(p, p->timeout_ms);

				if (t < 0)
					return err("waiting for write responses: %s", strerror(-t)), 1;
				if (p->rsp_status[t])
					return err("write of %u bytes at %" PRIu64 " failed: %s", lens[t],
						   offs[t], strerror(-p->rsp_status[t])), 1;
			}
		}
		for (i = 0; i < k; i++) {
			struct ibnbd_io io = mkio(p, i, IBNBD_OP_READ, offs[i], lens[i], 0);

			memset(dbuf(p, i), 0xa5, lens[i]);
			if (io_post(p, i, &io, i, i))
				return err("posting a read failed"), 1;
		}
		for (got = 0; got < k; got++) {
			int t = io_wait_one(p, p->timeout_ms);
			long at;

			if (t < 0)
				return err("waiting for read responses: %s", strerror(-t)), 1;
			if (p->rsp_status[t])
				return err("read of %u bytes at %" PRIu64 " failed: %s", lens[t], offs[t],
					   strerror(-p->rsp_status[t])), 1;
			at = check_pattern(dbuf(p, (unsigned int)t), offs[t], lens[t], seed);
			if (at >= 0) {
				err("MISMATCH: read of %u bytes at offset %" PRIu64 " differs at byte %ld",
				    lens[t], offs[t], at);
				bad++;
			}
		}
		done += k;
	}
	if (bad)
		return err("%ld of %ld regions did not read back what was written", bad, n), 1;
	say("%s: %ld IOs verified", ro_pattern_only ? "read-verify" : "write-read-verify", n);
	return 0;
}

static int simple_op(struct probe *p, uint8_t op, uint64_t off, uint32_t len, uint16_t flags,
		     const char *what)
{
	struct ibnbd_io io = mkio(p, 0, op, off, len, flags);
	int st, ret;

	if (op == IBNBD_OP_WRITE)
		fill_pattern(dbuf(p, 0), off, len, 7);
	ret = io_sync(p, &io, &st);
	if (ret)
		return err("%s: %s", what, strerror(-ret)), 1;
	if (st)
		return err("%s failed: %s", what, strerror(-st)), 1;
	say("%s: ok", what);
	return 0;
}

/* Reads [off, off+len) in max-IO pieces; every byte must be zero. */
static int cmd_expect_zero(struct probe *p, uint64_t off, uint32_t len)
{
	uint64_t end = off + len;

	while (off < end) {
		uint32_t n = end - off < p->slots.max_io_size ? (uint32_t)(end - off)
							     : p->slots.max_io_size;
		struct ibnbd_io io = mkio(p, 0, IBNBD_OP_READ, off, n, 0);
		int st, ret;

		memset(dbuf(p, 0), 0xee, n);
		ret = io_sync(p, &io, &st);
		if (ret || st)
			return err("expect-zero: read at %" PRIu64 ": %s", off, strerror(-(ret ? ret : st))), 1;
		for (uint32_t k = 0; k < n; k++)
			if (dbuf(p, 0)[k])
				return err("expect-zero: byte %" PRIu64 " is 0x%02x, not zero", off + k,
					   dbuf(p, 0)[k]), 1;
		off += n;
	}
	say("expect-zero: ok");
	return 0;
}

/* ---- connection liveness: the server's keepalive timeout and fencing ---- */

static long elapsed_ms(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long)((t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000);
}

/*
 * Sends nothing for up to secs seconds (answers to requests still in
 * flight are consumed). Returns 1 if the server dropped the connection,
 * 0 if it was still up at the end, -errno on another failure.
 */
static int stay_silent(struct probe *p, long secs, long *dropped_after_ms)
{
	struct timespec t0;
	size_t len;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		long left = secs * 1000 - elapsed_ms(&t0);
		int i;

		if (left <= 0)
			return 0;
		i = wait_recv(p, (int)left, &len);
		if (i == -ETIMEDOUT)
			return 0;
		if (i == -ECONNRESET) {
			*dropped_after_ms = elapsed_ms(&t0);
			return 1;
		}
		if (i < 0)
			return i;
		post_recv(p, (unsigned int)i);
	}
}

static int cmd_idle(struct probe *p, long secs)
{
	long after = 0;
	int ret = stay_silent(p, secs, &after);

	if (ret == 1)
		return err("idle: the server dropped the connection after %ld ms", after), 1;
	if (ret < 0)
		return err("idle: %s", strerror(-ret)), 1;
	say("idle: connection still up after %ld s", secs);
	return 0;
}

/*
 * An RDMA WRITE of 4 KiB, on our own connection, into memory named by an
 * rkey and address another connection was given: it must fail (a remote
 * access error, our connection dropped), never land.
 */
static int cmd_foreign_write(struct probe *p, uint32_t rkey, uint64_t addr)
{
	struct ibv_sge sge = { (uintptr_t)dbuf(p, 0), 4096, p->data_mr->lkey };
	struct ibv_send_wr wr = {
		.wr_id = 2000, .sg_list = &sge, .num_sge = 1, .opcode = IBV_WR_RDMA_WRITE,
		.send_flags = IBV_SEND_SIGNALED,
		.wr.rdma = { .remote_addr = addr, .rkey = rkey },
	};
	size_t len;
	int ret;

	memset(dbuf(p, 0), 0xee, 4096);
	ret = verbs_post_send(p->id->qp, &wr);
	if (ret)
		return err("foreign-write: post: %s", strerror(-ret)), 1;
	/* A successful write completes silently here; a refused one fails
	 * the connection. */
	ret = wait_recv(p, 5000, &len);
	if (ret == -ECONNRESET) {
		say("foreign-write: refused (rkey 0x%x, address 0x%llx): our connection failed",
		    rkey, (unsigned long long)addr);
		return 0;
	}
	return err("foreign-write: the write into rkey 0x%x was not refused (%s)", rkey,
		   ret < 0 ? strerror(-ret) : "a message arrived"), 1;
}

static int cmd_expect_drop(struct probe *p, long secs)
{
	long after = 0;
	int ret = stay_silent(p, secs, &after);

	if (ret == 0)
		return err("expect-drop: the connection is still up after %ld s", secs), 1;
	if (ret < 0)
		return err("expect-drop: %s", strerror(-ret)), 1;
	say("expect-drop: dropped after %ld ms", after);
	return 0;
}

static int keepalive_once(struct probe *p)
{
	struct ibnbd_keepalive *k = (struct ibnbd_keepalive *)sbuf(p, PROBE_QD);
	uint8_t rsp[IBNBD_MSG_MAX];
	size_t len;
	uint64_t token;

	ibnbd_keepalive_encode(k, IBNBD_MSG_KEEPALIVE, 42);
	return ctrl_roundtrip(p, sizeof(*k), rsp, &len) ||
	       ibnbd_keepalive_decode(rsp, len, IBNBD_MSG_KEEPALIVE_RSP, &token) ||
	       token != 42;
}

/* What the reconnecting client does on an idle connection: one a second. */
static int cmd_keepalive_for(struct probe *p, long secs)
{
	struct timespec t0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (elapsed_ms(&t0) < secs * 1000) {
		if (keepalive_once(p))
			return err("keepalive-for: KEEPALIVE failed after %ld ms", elapsed_ms(&t0)), 1;
		usleep(1000 * 1000);
	}
	say("keepalive-for: %ld s of keepalives answered", secs);
	return 0;
}

/* A WRITE left in flight (tags 1, 2, ...): its answer is not awaited. */
static int cmd_write_nowait(struct probe *p, uint64_t off, uint32_t len)
{
	unsigned int tag = ++p->nowait;
	struct ibnbd_io io = mkio(p, tag, IBNBD_OP_WRITE, off, len, 0);

	if (len > p->slots.max_io_size || tag >= p->slots.queue_depth)
		return err("write-nowait: %u bytes on tag %u do not fit this connection", len, tag), 1;
	fill_pattern(dbuf(p, tag), off, len, 11);
	if (io_post(p, tag, &io, tag, tag))
		return err("write-nowait: posting failed"), 1;
	say("write-nowait: posted %u bytes at %" PRIu64, len, off);
	return 0;
}

static int parse_uuid(const char *s, uint8_t out[16])
{
	unsigned int n = 0;

	for (; *s && n < 32; s++) {
		int v;

		if (*s == '-')
			continue;
		if (*s >= '0' && *s <= '9')
			v = *s - '0';
		else if ((*s | 0x20) >= 'a' && (*s | 0x20) <= 'f')
			v = (*s | 0x20) - 'a' + 10;
		else
			return -EINVAL;
		out[n / 2] = (uint8_t)(n % 2 ? out[n / 2] | v : v << 4);
		n++;
	}
	return n == 32 && !*s ? 0 : -EINVAL;
}

/* ---- garbage: every case must get an error status or a dropped connection ---- */

enum expect { EXPECT_STATUS, EXPECT_DROP, EXPECT_EITHER };

struct gcase {
	const char *name;
	enum expect expect;
	int status; /* EXPECT_STATUS: this -errno */
};

static int g_report(const struct gcase *c, int got_transport, int st)
{
	bool dropped = got_transport == -ECONNRESET;
	bool ok;

	if (got_transport && !dropped) {
		say("not ok - garbage: %s: %s (server neither answered nor dropped)", c->name,
		    strerror(-got_transport));
		return 1;
	}
	if (dropped)
		ok = c->expect != EXPECT_STATUS;
	else
		ok = c->expect != EXPECT_DROP && st < 0 && (c->expect == EXPECT_EITHER || st == c->status);
	say("%s - garbage: %s: %s%s%s", ok ? "ok" : "not ok", c->name,
	    dropped ? "connection dropped" : "status ", dropped ? "" : strerror(-st),
	    ok ? "" : " (unexpected)");
	return ok ? 0 : 1;
}

static int g_fresh(struct probe *p, bool hello, bool open)
{
	probe_close(p);
	if (probe_connect_raw(p, NULL, 0))
		return -1;
	if (hello && probe_hello(p))
		return -1;
	if (open && probe_open(p))
		return -1;
	return 0;
}

/* Sends raw bytes as a SEND and waits for an answer or a drop. */
static int g_raw_send(struct probe *p, const void *msg, size_t len, int *st)
{
	size_t rlen;
	uint64_t id;
	int i, ret;

	memcpy(sbuf(p, 0), msg, len);
	ret = post_send_buf(p, 0, len);
	if (ret)
		return ret;
	i = wait_recv(p, 5000, &rlen);
	if (i < 0)
		return i;
	if (ibnbd_io_rsp_decode(rbuf(p, (unsigned int)i), rlen, &id, st))
		*st = -EPROTO; /* some other answer: a control error */
	{
		uint16_t type;

		if (!ibnbd_msg_peek(rbuf(p, (unsigned int)i), rlen, &type) && type != IBNBD_MSG_IO_RSP) {
			/* Every control answer has its status where CLOSE_RSP has. */
			struct ibnbd_close_rsp c;

			memcpy(&c, rbuf(p, (unsigned int)i), sizeof(c));
			*st = (int32_t)le32toh((uint32_t)c.status);
		}
	}
	post_recv(p, (unsigned int)i);
	return 0;
}

static int g_io(struct probe *p, const struct gcase *c, struct ibnbd_io io)
{
	struct ibnbd_io_req w;
	int st = 0, ret;

	ibnbd_io_req_encode(&w, &io);
	ret = g_raw_send(p, &w, sizeof(w), &st);
	return g_report(c, ret, st);
}

/* A WRITE_WITH_IMM with chosen slot/imm/header; len bytes of data. */
static int g_write(struct probe *p, const struct gcase *c, struct ibnbd_io io, uint32_t imm,
		   uint32_t slot)
{
	int ret = io_post(p, 0, &io, imm, slot), st = 0;

	if (!ret) {
		ret = io_wait_one(p, 5000);
		if (ret >= 0) {
			st = p->rsp_status[ret];
			ret = 0;
		}
	}
	return g_report(c, ret, st);
}

static int cmd_garbage(struct probe *p)
{
	uint32_t lbs, maxio;
	uint64_t size;
	int fails = 0, ro_export;
	struct ibnbd_io io;

	if (g_fresh(p, true, true))
		return 1;
	lbs = p->dev.logical_block_size;
	maxio = p->slots.max_io_size;
	size = p->dev.size;
	ro_export = !!(p->dev.flags & IBNBD_DEV_READ_ONLY) && !p->want_ro;

#define CASE(nm, ex, stv) (&(struct gcase){ nm, ex, stv })
	/* Framing errors: the server cannot trust the message: drop. */
	io = mkio(p, 0, IBNBD_OP_READ, 0, lbs, 0);
	{
		struct ibnbd_io_req w;

		ibnbd_io_req_encode(&w, &io);
		w.hdr.magic ^= 0x01010101;
		fails += g_report(CASE("bad magic", EXPECT_DROP, 0), g_raw_send(p, &w, sizeof(w), &(int){ 0 }), 0);
	}
	if (!g_fresh(p, true, true)) {
		uint8_t junk[5] = { 1, 2, 3, 4, 5 };

		fails += g_report(CASE("5-byte message", EXPECT_DROP, 0), g_raw_send(p, junk, 5, &(int){ 0 }), 0);
	} else fails++;
	if (!g_fresh(p, true, true)) {
		struct ibnbd_io_req w;

		ibnbd_io_req_encode(&w, &io);
		w.hdr.type = htole16(99);
		fails += g_report(CASE("unknown message type", EXPECT_DROP, 0), g_raw_send(p, &w, sizeof(w), &(int){ 0 }), 0);
	} else fails++;
	if (!g_fresh(p, true, true)) {
		struct ibnbd_io_req w;

		ibnbd_io_req_encode(&w, &io);
		w.hdr.len = htole16(200);
		fails += g_report(CASE("length field larger than the message", EXPECT_DROP, 0),
				  g_raw_send(p, &w, sizeof(w), &(int){ 0 }), 0);
	} else fails++;
	if (!g_fresh(p, true, true)) {
		io = mkio(p, 0, IBNBD_OP_READ, 0, lbs, 0);
		io.req_id = ibnbd_req_id((uint16_t)(p->slots.queue_depth + 5), 1);
		fails += g_io(p, CASE("tag beyond the queue depth", EXPECT_DROP, 0), io);
	} else fails++;
	if (!g_fresh(p, true, true)) {
		struct ibnbd_io_req w;

		ibnbd_io_req_encode(&w, &io);
		w.reserved1 = htole64(1);
		fails += g_report(CASE("a non-zero reserved field", EXPECT_DROP, 0),
				  g_raw_send(p, &w, sizeof(w), &(int){ 0 }), 0);
	} else fails++;

	/* Semantic errors: answered with a status, connection kept. */
	if (g_fresh(p, true, true))
		return 1;
	fails += g_io(p, CASE("unknown opcode", EXPECT_STATUS, -EOPNOTSUPP), mkio(p, 0, 99, 0, lbs, 0));
	fails += g_io(p, CASE("offset at the end of the device", EXPECT_STATUS, -ERANGE),
		      mkio(p, 0, IBNBD_OP_READ, size, lbs, 0));
	fails += g_io(p, CASE("offset + length overflowing 64 bits", EXPECT_STATUS, -ERANGE),
		      mkio(p, 0, IBNBD_OP_READ, ~0ull & ~(uint64_t)(lbs - 1), 2 * lbs, 0));
	fails += g_io(p, CASE("misaligned offset", EXPECT_STATUS, -EINVAL),
		      mkio(p, 0, IBNBD_OP_READ, 100, lbs, 0));
	fails += g_io(p, CASE("misaligned length", EXPECT_STATUS, -EINVAL),
		      mkio(p, 0, IBNBD_OP_READ, 0, lbs + 100, 0));
	fails += g_io(p, CASE("length above max IO size", EXPECT_STATUS, -EINVAL),
		      mkio(p, 0, IBNBD_OP_READ, 0, 2 * maxio, 0));
	fails += g_io(p, CASE("zero length read", EXPECT_STATUS, -EINVAL),
		      mkio(p, 0, IBNBD_OP_READ, 0, 0, 0));
	io = mkio(p, 0, IBNBD_OP_READ, 0, lbs, 0);
	io.handle = 77;
	fails += g_io(p, CASE("bad device handle", EXPECT_STATUS, -EBADF), io);
	io = mkio(p, 0, IBNBD_OP_READ, 0, lbs, 0);
	io.cookie++;
	fails += g_io(p, CASE("a stale handle (the cookie of an earlier open)", EXPECT_STATUS, -EBADF),
		      io);
	fails += g_io(p, CASE("unknown flag bits", EXPECT_STATUS, -EINVAL),
		      mkio(p, 0, IBNBD_OP_READ, 0, lbs, 0x80));
	fails += g_io(p, CASE("WRITE sent without data (as SEND)", EXPECT_STATUS, -EINVAL),
		      mkio(p, 0, IBNBD_OP_WRITE, 0, lbs, 0));

	/* Read-only: a ro handle refuses every modifying opcode. */
	p->want_ro = true;
	if (!g_fresh(p, true, true)) {
		fails += g_write(p, CASE("WRITE through a read-only handle", EXPECT_STATUS, -EROFS),
				 mkio(p, 0, IBNBD_OP_WRITE, 0, lbs, 0), 0, 0);
		fails += g_io(p, CASE("DISCARD through a read-only handle", EXPECT_STATUS, -EROFS),
			      mkio(p, 0, IBNBD_OP_DISCARD, 0, lbs, 0));
	} else fails++;
	p->want_ro = false;
	if (ro_export) {
		probe_close(p);
		if (probe_connect_raw(p, NULL, 0) || probe_hello(p)) {
			fails++;
		} else {
			int st = probe_open_mode(p, IBNBD_ACCESS_RW);

			fails += g_report(CASE("OPEN read-write of a read-only export", EXPECT_STATUS, -EROFS), 0, st);
		}
	}
	/* Slots: WRITE_WITH_IMM whose immediate or header doesn't match. */
	if (!g_fresh(p, true, true)) {
		io = mkio(p, 0, IBNBD_OP_WRITE, 0, lbs, 0);
		fails += g_write(p, CASE("WRITE_WITH_IMM naming a slot beyond the depth", EXPECT_DROP, 0),
				 io, p->slots.queue_depth + 3, 0);
	} else fails++;
	if (!g_fresh(p, true, true)) {
		io = mkio(p, 0, IBNBD_OP_WRITE, 0, lbs, 0);
		fails += g_write(p, CASE("header for tag 0 written into slot 1", EXPECT_DROP, 0), io, 1, 1);
	} else fails++;
	if (!g_fresh(p, true, true)) {
		io = mkio(p, 0, IBNBD_OP_READ, 0, lbs, 0);
		io.rkey ^= 0x5a5a5a;
		fails += g_io(p, CASE("READ with a bad rkey for the client buffer", EXPECT_DROP, 0), io);
	} else fails++;
	/* Order: IO before HELLO; HELLO twice. */
	if (!g_fresh(p, false, false)) {
		io = mkio(p, 0, IBNBD_OP_READ, 0, lbs, 0);
		io.handle = 0;
		fails += g_io(p, CASE("IO before HELLO", EXPECT_STATUS, -ENOTCONN), io);
	} else fails++;
	/* Connect data: not ours, wrong version. */
	{
		uint8_t junk[40];
		struct ibnbd_conn_req req;
		struct ibnbd_conn_params cp = { .version = 99, .queue_depth = 4, .max_io_size = 65536 };
		int r;

		memset(junk, 0x33, sizeof(junk));
		probe_close(p);
		r = probe_connect_raw(p, junk, sizeof(junk));
		fails += g_report(CASE("connect with foreign private data", EXPECT_STATUS, -EPROTO), 0,
				  r < 0 ? r : 0);
		probe_close(p);
		ibnbd_conn_req_encode(&req, &cp);
		r = probe_connect_raw(p, &req, sizeof(req));
		fails += g_report(CASE("connect with protocol version 99", EXPECT_STATUS, -EPROTONOSUPPORT),
				  0, r < 0 ? r : 0);
	}
#undef CASE
	/* And the server still serves. */
	probe_close(p);
	if (probe_start(p) || simple_op(p, IBNBD_OP_READ, 0, lbs, 0, "read after garbage")) {
		say("not ok - garbage: the server still serves a new connection");
		fails++;
	} else {
		say("ok - garbage: the server still serves a new connection");
	}
	if (fails)
		err("%d garbage case(s) misbehaved", fails);
	return fails ? 1 : 0;
}

static int fill_pattern_file(const char *path, const char *seed_s)
{
	uint64_t seed = strtoull(seed_s, NULL, 0), off = 0;
	uint8_t *buf = malloc(1 << 20);
	int fd = open(path, O_WRONLY);
	off_t size;

	if (fd < 0 || !buf)
		return err("%s: %s", path, strerror(errno)), 1;
	size = lseek(fd, 0, SEEK_END);
	for (off = 0; off < (uint64_t)size; off += 1 << 20) {
		uint32_t n = (uint64_t)size - off < (1 << 20) ? (uint32_t)((uint64_t)size - off) : 1 << 20;

		fill_pattern(buf, off, n, seed);
		if (pwrite(fd, buf, n, (off_t)off) != (ssize_t)n)
			return err("%s: write: %s", path, strerror(errno)), 1;
	}
	fsync(fd);
	close(fd);
	free(buf);
	return 0;
}

/*
 * connections N SECS: N more connections as the options say (each a
 * session of its own, unless --session: then indexes 0..N-1 of it), made
 * one after another and held SECS seconds. Prints how many were served
 * (through HELLO; with --no-hello, accepted), refused and why, and, held,
 * how many the server dropped. A refusal is an answer, not a failure: 1
 * only if one failed otherwise (a transport or protocol error).
 */
static int cmd_connections(const struct probe *tmpl, long n, long secs)
{
	static const uint8_t zero_uuid[16];
	struct probe *ps = calloc((size_t)n, sizeof(*ps));
	long served = 0, busy = 0, failed = 0, dropped = 0, quota[5] = { 0 };
	struct timespec t0, tk;
	size_t len;
	long left;

	if (!ps || n <= 0 || n > 65535)
		return err("connections: cannot make %ld", n), 1;
	quiet = true;
	clock_gettime(CLOCK_MONOTONIC, &tk);
	for (long i = 0; i < n; i++) {
		struct probe *p = &ps[i];
		int ret;

		/* Those made already are kept alive while the rest are made: on
		 * a slow host making them all can take longer than the
		 * server's keepalive timeout. */
		if (!tmpl->no_hello && elapsed_ms(&tk) >= 2000) {
			for (long j = 0; j < i; j++)
				if (ps[j].id && !ps[j].dropped)
					keepalive_once(&ps[j]);
			clock_gettime(CLOCK_MONOTONIC, &tk);
		}
		*p = *tmpl;
		if (!memcmp(tmpl->session_uuid, zero_uuid, sizeof(zero_uuid))) {
			unsigned char rnd[IBNBD_NONCE_LEN];

			if (auth_nonce(rnd))
				return err("no random session uuid"), 1;
			memcpy(p->session_uuid, rnd, sizeof(p->session_uuid));
		} else {
			p->conn_index = (uint16_t)i;
			p->conn_count = (uint16_t)n;
		}
		ret = probe_connect_raw(p, NULL, 0);
		if (!ret && !p->no_hello)
			ret = probe_hello(p);
		if (!ret)
			served++;
		else if (ret == -EBUSY)
			busy++;
		else if (ret == -EDQUOT)
			quota[p->slots.limit < 5 ? p->slots.limit : 0]++;
		else
			failed++;
		if (ret)
			probe_close(p);
	}
	printf("connections: asked %ld served %ld", n, served);
	for (uint32_t l = 1; l < 5; l++)
		printf(" refused-%s %ld", ibnbd_limit_name(l), quota[l]);
	say(" refused-other-limit %ld busy %ld failed %ld", quota[0], busy, failed);
	/* Held as a live client holds them: authenticated ones send a
	 * KEEPALIVE every 2 s, so only the server's limits end them. */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while ((left = secs * 1000 - elapsed_ms(&t0)) > 0) {
		for (long i = 0; i < n && !tmpl->no_hello; i++)
			if (ps[i].id && !ps[i].dropped)
				keepalive_once(&ps[i]);
		usleep((useconds_t)(left < 2000 ? left : 2000) * 1000);
	}
	for (long i = 0; i < n; i++)
		if (ps[i].id && (ps[i].dropped || wait_recv(&ps[i], 0, &len) == -ECONNRESET))
			dropped++;
	quiet = false;
	say("held: %ld s, dropped by the server %ld", secs, dropped);
	for (long i = 0; i < n; i++)
		probe_close(&ps[i]);
	free(ps);
	return failed ? 1 : 0;
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: ibnbd-probe [--ro] [--timeout SECS] [--range START:LEN] [--session UUID]\n"
		"                   [--conn-index I] [--conn-count N] [--host-id ID] [--verbose]\n"
		"                   [--key-file FILE [--bad-proof|--reflect-proof] [--save-proof F]]\n"
		"                   [--replay-proof F] [--no-hello [--queue-depth N]]\n"
		"                   ADDR[:PORT] EXPORT|- CMD [ARG]...   (-: HELLO, no OPEN)\n"
		"       ibnbd-probe --fill-pattern PATH SEED\n"
		"Commands (run in order):\n"
		"  info                     print size, block sizes, flags\n"
		"  write-read-verify N      N random writes, read back and compare\n"
		"  read-verify N SEED       N random reads checked against --fill-pattern SEED\n"
		"  write OFF LEN | read OFF LEN | fua-write OFF LEN\n"
		"  flush | discard OFF LEN | write-zeroes[-nounmap] OFF LEN | keepalive\n"
		"  expect-zero OFF LEN      read back: every byte must be zero\n"
		"  garbage                  malformed requests: each must fail cleanly\n"
		"  idle SECS                send nothing; fails if the server drops us\n"
		"  expect-drop SECS         send nothing; fails unless the server drops us\n"
		"  keepalive-for SECS       a KEEPALIVE every second\n"
		"  write-nowait OFF LEN     a WRITE whose answer is not awaited\n"
		"  print-slots              print the slots' rkey and address\n"
		"  foreign-write RKEY ADDR  RDMA WRITE there on our connection: must fail\n"
		"  connections N SECS       N more connections (HELLO unless --no-hello), held\n"
		"                           SECS: prints how many were served and refused\n");
}

int main(int argc, char **argv)
{
	static struct probe pr;
	struct probe *p = &pr;
	const char *why;
	int i, rc = 0, c;
	static const struct option opts[] = {
		{ "ro", no_argument, NULL, 'r' },
		{ "timeout", required_argument, NULL, 't' },
		{ "range", required_argument, NULL, 'R' },
		{ "fill-pattern", no_argument, NULL, 'F' },
		{ "session", required_argument, NULL, 'S' },
		{ "conn-index", required_argument, NULL, 'I' },
		{ "conn-count", required_argument, NULL, 'N' },
		{ "host-id", required_argument, NULL, 'H' },
		{ "key-file", required_argument, NULL, 'K' },
		{ "bad-proof", no_argument, NULL, 'B' },
		{ "reflect-proof", no_argument, NULL, 'X' },
		{ "no-hello", no_argument, NULL, 'O' },
		{ "queue-depth", required_argument, NULL, 'Q' },
		{ "save-proof", required_argument, NULL, 'P' },
		{ "replay-proof", required_argument, NULL, 'Y' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	bool fill = false;

	p->timeout_ms = PROBE_WAIT_MS;
	srandom((unsigned int)(time(NULL) ^ getpid()));
	p->conn_count = 1;
	while ((c = getopt_long(argc, argv, "+rt:hv", opts, NULL)) != -1) {
		switch (c) {
		case 'r': p->want_ro = true; break;
		case 't': p->timeout_ms = atoi(optarg) * 1000; break;
		case 'F': fill = true; break;
		case 'S':
			if (parse_uuid(optarg, p->session_uuid)) {
				err("--session wants 32 hex digits (dashes allowed)");
				return 2;
			}
			break;
		case 'I': p->conn_index = (uint16_t)atoi(optarg); break;
		case 'N': p->conn_count = (uint16_t)atoi(optarg); break;
		case 'H': p->host_id = optarg; break;
		case 'K': {
			char msg[512];

			if (auth_key_file_load(optarg, p->secret, msg, sizeof(msg))) {
				err("--key-file: %s", msg);
				return 2;
			}
			p->has_key = true;
			break;
		}
		case 'B': p->proof = PROOF_BAD; break;
		case 'X': p->proof = PROOF_REFLECT; break;
		case 'O': p->no_hello = true; break;
		case 'Q': p->ask_qd = (uint16_t)atoi(optarg); break;
		case 'P': p->save_proof = optarg; break;
		case 'Y': p->replay_proof = optarg; break;
		case 'v': p->verbose = true; break;
		case 'R':
			if (sscanf(optarg, "%" SCNu64 ":%" SCNu64, &p->range_off, &p->range_len) != 2 ||
			    !p->range_len) {
				err("--range wants START:LENGTH in bytes");
				return 2;
			}
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (p->ask_qd && !p->no_hello) {
		err("--queue-depth is for --no-hello connections (IO uses %d slots)", PROBE_QD);
		return 2;
	}
	if (fill)
		return argc - optind == 2 ? fill_pattern_file(argv[optind], argv[optind + 1]) : (usage(stderr), 2);
	if (argc - optind < 3) {
		usage(stderr);
		return 2;
	}
	if (endpoint_parse(argv[optind], IBNBD_DEFAULT_PORT, &p->ep, &why)) {
		err("'%s': %s", argv[optind], why);
		return 2;
	}
	p->export = argv[optind + 1];
	i = optind + 2;
	if (strcmp(argv[i], "garbage") && strcmp(argv[i], "connections") && probe_start(p)) {
		probe_close(p);
		return 1;
	}
	for (; i < argc && !rc; i++) {
		const char *cmd = argv[i];
		uint64_t a = i + 1 < argc ? strtoull(argv[i + 1], NULL, 0) : 0;
		uint32_t b = i + 2 < argc ? (uint32_t)strtoul(argv[i + 2], NULL, 0) : 0;

		if (!strcmp(cmd, "info")) {
			rc = cmd_info(p);
		} else if (!strcmp(cmd, "write-read-verify") && i + 1 < argc) {
			rc = cmd_write_read_verify(p, (long)a, false, 0);
			i++;
		} else if (!strcmp(cmd, "read-verify") && i + 2 < argc) {
			rc = cmd_write_read_verify(p, (long)a, true, strtoull(argv[i + 2], NULL, 0));
			i += 2;
		} else if (!strcmp(cmd, "flush")) {
			rc = simple_op(p, IBNBD_OP_FLUSH, 0, 0, 0, "flush");
		} else if (!strcmp(cmd, "keepalive")) {
			rc = keepalive_once(p);
			say("keepalive: %s", rc ? "FAILED" : "ok");
		} else if (!strcmp(cmd, "idle") && i + 1 < argc) {
			rc = cmd_idle(p, (long)a);
			i++;
		} else if (!strcmp(cmd, "expect-drop") && i + 1 < argc) {
			rc = cmd_expect_drop(p, (long)a);
			i++;
		} else if (!strcmp(cmd, "keepalive-for") && i + 1 < argc) {
			rc = cmd_keepalive_for(p, (long)a);
			i++;
		} else if (!strcmp(cmd, "print-slots")) {
			say("slots: rkey 0x%x address 0x%llx stride %u", p->slots.slot_rkey,
			    (unsigned long long)p->slots.slot_addr, p->slots.slot_stride);
		} else if (!strcmp(cmd, "foreign-write") && i + 2 < argc) {
			rc = cmd_foreign_write(p, (uint32_t)a, strtoull(argv[i + 2], NULL, 0));
			i += 2;
		} else if (!strcmp(cmd, "write-nowait") && i + 2 < argc) {
			rc = cmd_write_nowait(p, a, b);
			i += 2;
		} else if (!strcmp(cmd, "connections") && i + 2 < argc) {
			rc = cmd_connections(p, (long)a, (long)b);
			i += 2;
		} else if (!strcmp(cmd, "garbage")) {
			rc = cmd_garbage(p);
		} else if (!strcmp(cmd, "expect-zero") && i + 2 < argc) {
			rc = cmd_expect_zero(p, a, b);
			i += 2;
		} else if (!strcmp(cmd, "write-zeroes-nounmap") && i + 2 < argc) {
			rc = simple_op(p, IBNBD_OP_WRITE_ZEROES, a, b, IBNBD_IOF_NOUNMAP, cmd);
			i += 2;
		} else if (i + 2 < argc && (!strcmp(cmd, "write") || !strcmp(cmd, "fua-write") ||
					    !strcmp(cmd, "read") || !strcmp(cmd, "discard") ||
					    !strcmp(cmd, "write-zeroes"))) {
			uint8_t op = !strcmp(cmd, "read") ? IBNBD_OP_READ
				     : !strcmp(cmd, "discard") ? IBNBD_OP_DISCARD
				     : !strcmp(cmd, "write-zeroes") ? IBNBD_OP_WRITE_ZEROES
								   : IBNBD_OP_WRITE;

			rc = simple_op(p, op, a, b, !strcmp(cmd, "fua-write") ? IBNBD_IOF_FUA : 0, cmd);
			i += 2;
		} else {
			err("unknown command or missing argument: '%s'", cmd);
			rc = 2;
		}
	}
	probe_close(p);
	return rc;
}
