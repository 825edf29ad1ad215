// SPDX-License-Identifier: GPL-2.0-only
/*
 * How a server connection starts and what it is told on the control
 * credit (conn.h): the accept with its negotiated limits, HELLO (after any
 * fencing wait), OPEN and CLOSE of exports (with the writer rule and
 * takeovers), KEEPALIVE, and dropping a client that fell silent.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <openssl/crypto.h>

#include "access.h"
#include "clock.h"
#include "cm.h"
#include "conn_priv.h"
#include "log.h"
#include "verbs.h"

_Static_assert(SERVER_MAX_OPENS_PER_SESSION <= CONN_MAX_OPENS, "opens per connection");

int conn_cq_need(const struct ibnbd_conn_params *p)
{
	/*
	 * SQ: each request needs at most 2 WRs (READ data + response); twice
	 * that as slack, because send completions of answered tags may still
	 * be unpolled when the client reuses them. RQ: one per credit.
	 */
	return (4 * p->queue_depth + IBNBD_CTRL_CREDITS) + (p->queue_depth + IBNBD_CTRL_CREDITS);
}

/*
 * Before HELLO a connection can only exchange control messages, one at a
 * time: it has that many receives posted and answers in flight (plus
 * sq_drain()'s marker), and only that much of the worker's CQ. The rest of
 * its share is taken at HELLO, once its host is known and admitted, so
 * connections that never authenticate cannot use up the CQ.
 */
#define PRE_HELLO_RECVS (IBNBD_CTRL_CREDITS + 1)
#define PRE_HELLO_SENDS (2 * (IBNBD_CTRL_CREDITS + 1))
#define PRE_HELLO_CQ (PRE_HELLO_RECVS + PRE_HELLO_SENDS + 1)

int conn_cq_held(const struct conn *c)
{
	return c->cq_held;
}

/* n more entries of the worker's CQ for c, or -EBUSY (logged). */
static int take_cq(struct conn *c, int n)
{
	if (worker_cq_reserve(c->w, c->dev, n)) {
		log_warn("%s: refused: this worker's CQ is fully committed (%d of %d entries left, %d needed); try a smaller queue depth or more workers",
			 c->name, c->dev->cq_budget, c->dev->cq_size, n);
		return -EBUSY;
	}
	c->cq_held += n;
	return 0;
}

/* ---- control messages (one credit, answered from send buffer qd) ---- */

static int ctrl_post(struct conn *c, size_t len)
{
	if (!c->hello_done && sq_used(c) + 1 > PRE_HELLO_SENDS) {
		conn_violation(c, "control messages before HELLO faster than their answers complete");
		return -ENOSPC;
	}
	if (sq_used(c) + 1 > c->sq_depth) {
		conn_violation(c, "control message while the previous answer is unsent");
		return -ENOSPC;
	}
	return conn_post_answer(c, c->qd, len, NULL, c->qd);
}

static void uuid_tag(const struct conn *c, char *buf, size_t len)
{
	char u[REGISTRY_UUID_STR];

	if (registry_uuid_is_zero(c->reg.uuid)) {
		snprintf(buf, len, "no session uuid");
		return;
	}
	registry_uuid_str(c->reg.uuid, u);
	snprintf(buf, len, "session %s conn %u/%u", u, c->reg.conn_index, c->reg.conn_count);
}

static void *map_mem(size_t len);

/*
 * The slots, made only for a host that said HELLO (and proved who it is,
 * unless --no-auth): until then a connection holds no slot memory, nothing
 * of it registered, and no rkey or address has been sent. 0 or -errno.
 */
static int setup_slots(struct conn *c)
{
	struct iovec iov;
	int ret;

	if (c->cq_held < c->cq_need) {
		ret = take_cq(c, c->cq_need - c->cq_held);
		if (ret)
			return ret;
		/* The receives for IO: 0..PRE_HELLO_RECVS-1 are posted already. */
		for (unsigned int i = PRE_HELLO_RECVS; i < c->nbufs; i++) {
			ret = conn_post_recv(c, i);
			if (ret) {
				log_err("%s: posting receive %u failed: %s", c->name, i,
					strerror(-ret));
				return ret;
			}
		}
	}
	if (!c->slot_mem)
		c->slot_mem = map_mem(c->slot_len);
	if (!c->slot_mem) {
		log_err("%s: out of memory for %u slots of %u bytes", c->name, c->qd, c->stride);
		return -ENOMEM;
	}
	/* The client writes into slots; it never reads them (READ data is pushed). */
	ret = verbs_reg_mr_zero_based(c->pd, c->slot_mem, c->slot_len,
				      IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE, &c->slot_mr);
	if (ret) {
		log_err("%s: registering %zu bytes of slots with the RDMA device failed: %s (check the memlock limit)",
			c->name, c->slot_len, strerror(-ret));
		return ret;
	}
	iov = (struct iovec){ .iov_base = c->slot_mem, .iov_len = c->slot_len };
	ret = io_uring_register_buffers_update_tag(&c->w->ring, c->idx, &iov, NULL, 1);
	if (ret < 0) {
		log_err("%s: registering slots as io_uring fixed buffer %u failed: %s", c->name,
			c->idx, strerror(-ret));
		return ret;
	}
	c->buf_registered = true;
	return 0;
}

/* Sends the HELLO_RSP for h (now, or after a deferral). */
static void answer_hello(struct conn *c, const struct ibnbd_hello_params *h)
{
	struct ibnbd_slot_desc d = {
		.version = IBNBD_PROTO_VERSION,
		.queue_depth = c->qd,
		.features = c->features,
		.slot_stride = c->stride,
		.max_io_size = c->max_io_size,
	};
	char tag[96], why[256];

	if (c->hello_done) {
		d.status = -EALREADY;
	} else if (h->version != IBNBD_PROTO_VERSION) {
		d.status = -EPROTONOSUPPORT;
	} else if (!c->slot_mr && (d.limit = registry_admit(c->w->shared->registry, &c->reg,
							     c->slot_len, why, sizeof(why)))) {
		d.status = -EDQUOT;
		stat_add(&c->w->stats.limits_refused, 1);
		log_ratelimited(&c->w->auth_log, "%s: host '%s' refused: %s", c->name, h->host_id,
				why);
	} else if (!c->slot_mr && (d.status = setup_slots(c)) != 0) {
		/* setup_slots() logged why; the status says it */
	} else {
		char *p = strstr(c->name, " host ");

		/* After any fencing wait. */
		conn_hello_done(c);
		if (p)
			*p = '\0';
		snprintf(c->name + strlen(c->name), sizeof(c->name) - strlen(c->name),
			 " host '%s'", h->host_id);
		uuid_tag(c, tag, sizeof(tag));
		log_info("%s: HELLO, %s, queue depth %u, max IO %u bytes, features 0x%llx", c->name,
			 tag, c->qd, c->max_io_size, (unsigned long long)c->features);
	}
	if (!d.status) {
		d.slot_addr = 0; /* zero-based: no address of ours leaves the host */
		d.slot_rkey = c->slot_mr->rkey;
	}
	ibnbd_hello_rsp_encode((struct ibnbd_hello_rsp *)send_buf(c, c->qd), &d);
	ctrl_post(c, sizeof(struct ibnbd_hello_rsp));
}

/* Refuses the connection's host: a HELLO_RSP with -EACCES, then nothing
 * more is taken from it (the client closes it). */
static void refuse_host(struct conn *c, const struct ibnbd_hello_params *h, const char *why)
{
	struct ibnbd_slot_desc d = { .version = IBNBD_PROTO_VERSION, .status = -EACCES };

	stat_add(&c->w->stats.auth_failures, 1);
	log_ratelimited(&c->w->auth_log, "%s: host '%s' refused: %s", c->name, h->host_id, why);
	c->auth_failed = true;
	c->auth_pending = false;
	OPENSSL_cleanse(c->auth_secret, sizeof(c->auth_secret));
	ibnbd_hello_rsp_encode((struct ibnbd_hello_rsp *)send_buf(c, c->qd), &d);
	ctrl_post(c, sizeof(struct ibnbd_hello_rsp));
}

static void auth_transcript_of(const struct conn *c, struct auth_transcript *t)
{
	*t = (struct auth_transcript){
		.version = IBNBD_PROTO_VERSION,
		.conn_index = c->reg.conn_index,
		.host_id = c->auth_hello.host_id,
		.server_id = server_auth_id(c->w->shared->auth),
	};
	memcpy(t->session_uuid, c->reg.uuid, sizeof(t->session_uuid));
	memcpy(t->client_nonce, c->auth_hello.nonce, sizeof(t->client_nonce));
	memcpy(t->server_nonce, c->auth_nonce, sizeof(t->server_nonce));
}

/* Answers a HELLO from a listed host with our proof and a nonce of ours. */
static void challenge(struct conn *c, const struct ibnbd_hello_params *h)
{
	struct ibnbd_auth_challenge_params p = { .version = IBNBD_PROTO_VERSION };
	struct auth_transcript t;

	c->auth_hello = *h;
	if (!server_auth_secret(c->w->shared->auth, h->host_id, c->auth_secret)) {
		refuse_host(c, h, "not in the hosts file");
		return;
	}
	if (auth_nonce(c->auth_nonce)) {
		refuse_host(c, h, "no random nonce from libcrypto");
		return;
	}
	auth_transcript_of(c, &t);
	if (auth_proof(c->auth_secret, AUTH_PROOF_SERVER, &t, p.proof)) {
		refuse_host(c, h, "libcrypto failed to make our proof");
		return;
	}
	snprintf(p.server_id, sizeof(p.server_id), "%s", t.server_id);
	memcpy(p.nonce, c->auth_nonce, sizeof(p.nonce));
	c->auth_pending = true;
	ibnbd_auth_challenge_encode((struct ibnbd_auth_challenge *)send_buf(c, c->qd), &p);
	ctrl_post(c, sizeof(struct ibnbd_auth_challenge));
}

static void hello_accepted(struct conn *c, const struct ibnbd_hello_params *h);

static void handle_auth_proof(struct conn *c, const void *msg, size_t len)
{
	uint8_t got[IBNBD_PROOF_LEN], want[AUTH_MAC_LEN];
	struct auth_transcript t;

	if (!c->auth_pending) {
		conn_violation(c, "AUTH_PROOF without a challenge");
		return;
	}
	if (ibnbd_auth_proof_decode(msg, len, got)) {
		conn_violation(c, "malformed AUTH_PROOF");
		return;
	}
	auth_transcript_of(c, &t);
	if (auth_proof(c->auth_secret, AUTH_PROOF_CLIENT, &t, want) ||
	    !auth_proof_equal(got, want)) {
		refuse_host(c, &c->auth_hello, "authentication failed (its key is not the one in the hosts file)");
		return;
	}
	c->auth_pending = false;
	OPENSSL_cleanse(c->auth_secret, sizeof(c->auth_secret));
	hello_accepted(c, &c->auth_hello);
}

static void handle_hello(struct conn *c, const void *msg, size_t len)
{
	struct ibnbd_hello_params h;

	if (ibnbd_hello_decode(msg, len, &h)) {
		conn_violation(c, "malformed HELLO");
		return;
	}
	if (c->auth_pending) {
		conn_violation(c, "HELLO while authenticating");
		return;
	}
	if (!c->hello_done && h.version == IBNBD_PROTO_VERSION && c->w->shared->auth) {
		challenge(c, &h);
		return;
	}
	hello_accepted(c, &h);
}

/* The host is who it says (or --no-auth): the writer rule may know it. */
static void hello_accepted(struct conn *c, const struct ibnbd_hello_params *h)
{
	char tag[96];

	if (!c->hello_done && h->version == IBNBD_PROTO_VERSION) {
		registry_set_host(c->w->shared->registry, &c->reg, h->host_id);
		if (registry_fence_pending(c->w->shared->registry, &c->reg)) {
			/*
			 * The connection this one replaces may still have backing IO
			 * in flight: no IO of ours may run before that has landed.
			 */
			uuid_tag(c, tag, sizeof(tag));
			log_info("%s: reconnect of %s host '%s': HELLO answered once the superseded connection has drained",
				 c->name, tag, h->host_id);
			c->deferred = DEFER_HELLO;
			c->deferred_hello = *h;
			c->deferred_since_ms = clock_now_ms();
			return;
		}
	}
	answer_hello(c, h);
}

static const struct export *find_export(struct conn *c, const char *name)
{
	const struct worker_shared *sh = c->w->shared;

	unsigned int n = worker_nexports(sh);

	for (unsigned int i = 0; i < n; i++)
		if (!export_removed(sh->exports[i]) && !strcmp(sh->exports[i]->name, name))
			return sh->exports[i];
	return NULL;
}

/*
 * Whether the connection's host may open e: 0 (as asked), 1 (read-only),
 * -EACCES. Without authentication every host may, but "*:ro" still holds.
 */
static int host_allowed(const struct conn *c, const struct export *e)
{
	const struct export_spec *spec = export_spec_of(e);

	if (!c->w->shared->auth && !spec->nallow)
		return 0;
	return export_spec_allows(spec, c->reg.host_id); /* its owner wrote it */
}

/*
 * An OPEN, first time or retried after a deferral. Returns without
 * answering when a takeover has to wait for the old session to drain.
 */
static void open_export(struct conn *c, const struct ibnbd_open_params *o)
{
	const struct export *e = find_export(c, o->name);
	struct ibnbd_dev_info d = { 0 };
	char holder[256];
	unsigned int h;
	int ret, allowed = 0;

	for (h = 0; h < c->w->shared->max_opens && c->opens[h].exp; h++)
		;
	if (!c->hello_done) {
		d.status = -ENOTCONN;
	} else if (!e) {
		d.status = -ENOENT;
		log_warn("%s: OPEN of unknown export '%s'", c->name, o->name);
	} else if ((allowed = host_allowed(c, e)) < 0) {
		d.status = -EACCES;
		stat_add(&c->w->stats.denied_opens, 1);
		log_ratelimited(&c->w->auth_log, "%s: host '%s' is not allowed to open export '%s' (not in its allow list)",
				c->name, c->reg.host_id, e->name);
	} else if (o->access == IBNBD_ACCESS_RW && (e->ro || allowed == 1)) {
		d.status = -EROFS;
		log_warn("%s: OPEN read-write of %s export '%s' refused", c->name,
			 e->ro ? "read-only" : "this host's read-only", o->name);
	} else if (h == c->w->shared->max_opens) {
		d.status = -EMFILE;
		stat_add(&c->w->stats.limits_refused, 1);
		log_ratelimited(&c->w->auth_log, "%s: OPEN of '%s' refused: the session has %u exports open (max_opens_per_session)",
				c->name, o->name, h);
	} else if (o->access == IBNBD_ACCESS_RW &&
		   (ret = registry_open_rw(c->w->shared->registry, &c->reg, e->index, e->shared,
					   e->name, holder, sizeof(holder)))) {
		if (ret > 0) {
			if (c->deferred != DEFER_OPEN) {
				log_info("%s: OPEN read-write of '%s': taking it over from %s; answered once that session has drained",
					 c->name, e->name, holder);
				c->deferred = DEFER_OPEN;
				c->deferred_open = *o;
				c->deferred_since_ms = clock_now_ms();
			}
			return;
		}
		d.status = ret;
		stat_add(&c->w->stats.busy_opens, 1);
		log_warn("%s: OPEN read-write of '%s' refused: it is open read-write by %s (an export has one writing session unless it is shared)",
			 c->name, e->name, holder);
	} else {
		c->opens[h].exp = e;
		c->opens[h].writable = o->access == IBNBD_ACCESS_RW;
		__atomic_add_fetch(&c->reg.opened[e->index], 1, __ATOMIC_RELAXED);
		c->opens[h].cookie = registry_open_cookie(c->w->shared->registry);
		d.handle = h;
		d.cookie = c->opens[h].cookie;
		memcpy(d.boot_id, c->w->shared->boot_id, sizeof(d.boot_id));
		d.size = export_size(e);
		d.logical_block_size = e->logical_block_size;
		d.physical_block_size = e->physical_block_size;
		d.max_discard_sectors =
			(c->features & IBNBD_FEAT_DISCARD) ? e->max_discard_sectors : 0;
		d.max_write_zeroes_sectors =
			(c->features & IBNBD_FEAT_WRITE_ZEROES) ? e->max_write_zeroes_sectors : 0;
		d.flags = e->flags | (c->opens[h].writable ? 0 : IBNBD_DEV_READ_ONLY);
		if (!(c->features & IBNBD_FEAT_FUA))
			d.flags &= ~IBNBD_DEV_FUA;
		d.export_id = e->export_id;
		log_info("%s: opened export '%s' (%s) %s as handle %u", c->name, e->name, e->path,
			 c->opens[h].writable ? "read-write" : "read-only", h);
	}
	if (c->deferred == DEFER_OPEN)
		log_info("%s: OPEN read-write of '%s' answered after %lld ms of waiting for the old session: %s",
			 c->name, o->name, (long long)(clock_now_ms() - c->deferred_since_ms),
			 d.status ? strerror(-d.status) : "granted");
	c->deferred = DEFER_NONE;
	ibnbd_open_rsp_encode((struct ibnbd_open_rsp *)send_buf(c, c->qd), &d);
	ctrl_post(c, sizeof(struct ibnbd_open_rsp));
}

static void handle_open(struct conn *c, const void *msg, size_t len)
{
	struct ibnbd_open_params o;

	if (ibnbd_open_decode(msg, len, &o)) {
		conn_violation(c, "malformed OPEN");
		return;
	}
	open_export(c, &o);
}

static void handle_close(struct conn *c, const void *msg, size_t len)
{
	uint32_t h;
	int32_t status = 0;
	unsigned int i;

	if (ibnbd_close_decode(msg, len, &h)) {
		conn_violation(c, "malformed CLOSE");
		return;
	}
	if (h >= CONN_MAX_OPENS || !c->opens[h].exp) {
		status = -EBADF;
	} else {
		for (i = 0; i < c->qd; i++)
			if (c->slots[i].state != SLOT_FREE && c->slots[i].dev == &c->opens[h])
				status = -EBUSY;
		if (!status && c->opens[h].writable)
			registry_close_rw(c->w->shared->registry, &c->reg,
					  c->opens[h].exp->index);
		if (!status) {
			__atomic_sub_fetch(&c->reg.opened[c->opens[h].exp->index], 1,
					   __ATOMIC_RELAXED);
			c->opens[h].exp = NULL;
		}
	}
	ibnbd_close_rsp_encode((struct ibnbd_close_rsp *)send_buf(c, c->qd), status);
	ctrl_post(c, sizeof(struct ibnbd_close_rsp));
}

static void handle_keepalive(struct conn *c, const void *msg, size_t len)
{
	uint64_t token;

	if (ibnbd_keepalive_decode(msg, len, IBNBD_MSG_KEEPALIVE, &token)) {
		conn_violation(c, "malformed KEEPALIVE");
		return;
	}
	c->keepalive_seen = true;
	ibnbd_keepalive_encode((struct ibnbd_keepalive *)send_buf(c, c->qd),
			       IBNBD_MSG_KEEPALIVE_RSP, token);
	ctrl_post(c, sizeof(struct ibnbd_keepalive));
}

void conn_handle_ctrl(struct conn *c, uint16_t type, const uint8_t *msg, size_t len)
{
	if (c->deferred) {
		conn_violation(c, "%s while the answer to the previous control message is pending (one control credit)",
			       ibnbd_msg_name(type));
		return;
	}
	if (c->auth_failed) {
		conn_violation(c, "%s after its host was refused", ibnbd_msg_name(type));
		return;
	}
	if (c->auth_pending && type != IBNBD_MSG_AUTH_PROOF) {
		conn_violation(c, "%s while authenticating", ibnbd_msg_name(type));
		return;
	}
	switch (type) {
	case IBNBD_MSG_HELLO:
		handle_hello(c, msg, len);
		return;
	case IBNBD_MSG_AUTH_PROOF:
		handle_auth_proof(c, msg, len);
		return;
	case IBNBD_MSG_OPEN:
		handle_open(c, msg, len);
		return;
	case IBNBD_MSG_CLOSE:
		handle_close(c, msg, len);
		return;
	case IBNBD_MSG_KEEPALIVE:
		handle_keepalive(c, msg, len);
		return;
	default:
		conn_violation(c, "unexpected message type %u (%s)", type, ibnbd_msg_name(type));
		return;
	}
}

/* ---- lifecycle ---- */

void conn_on_cm_event(struct conn *c, const struct rdma_cm_event *ev)
{
	switch (ev->event) {
	case RDMA_CM_EVENT_ESTABLISHED:
		if (c->state == CONN_ACCEPTING) {
			conn_set_state(c, CONN_LIVE);
			log_info("%s: connected", c->name);
		}
		break;
	case RDMA_CM_EVENT_DISCONNECTED:
		conn_close(c, "client disconnected");
		break;
	case RDMA_CM_EVENT_TIMEWAIT_EXIT:
		break;
	default:
		log_warn("%s: %s", c->name, rdma_event_str(ev->event));
		conn_close(c, rdma_event_str(ev->event));
		break;
	}
}

void conn_on_kick(struct conn *c)
{
	struct registry *r = c->w->shared->registry;
	char why[256];

	if (c->state != CONN_CLOSING && c->reg.joined &&
	    registry_superseded(r, &c->reg, why, sizeof(why))) {
		log_warn("%s: %s; closing it, its in-flight IO finishes first", c->name, why);
		stat_add(&c->w->stats.superseded, 1);
		conn_close(c, "superseded");
		return;
	}
	if (c->deferred == DEFER_HELLO && !registry_fence_pending(r, &c->reg)) {
		log_info("%s: the superseded connection drained after %lld ms", c->name,
			 (long long)(clock_now_ms() - c->deferred_since_ms));
		c->deferred = DEFER_NONE;
		answer_hello(c, &c->deferred_hello);
	} else if (c->deferred == DEFER_OPEN) {
		open_export(c, &c->deferred_open);
	}
}

void conn_tick(struct conn *c)
{
	unsigned int timeout_ms = c->w->shared->keepalive_timeout_ms, limit_ms;
	int64_t now = clock_now_ms();
	bool joining;

	if (c->state == CONN_CLOSING || c->state == CONN_DRAINING)
		return;
	/* A connection that has not proven who it is gets a few seconds. */
	if (!c->hello_done && !c->deferred && now - c->created_ms > CONN_HANDSHAKE_MS) {
		log_ratelimited(&c->w->auth_log, "%s: no HELLO%s within %d s: dropping the connection",
				c->name, c->auth_pending ? " proof" : "",
				CONN_HANDSHAKE_MS / 1000);
		stat_add(&c->w->stats.handshake_timeouts, 1);
		conn_close(c, "handshake timeout");
		return;
	}
	/*
	 * Silence only counts while we owe the client nothing: with IO or a
	 * control answer pending it waits for us, and a dead peer shows up as
	 * a failed send of that answer.
	 */
	if (c->rx_count != c->rx_count_seen || c->busy || c->deferred) {
		c->rx_count_seen = c->rx_count;
		c->rx_last_ms = now;
		return;
	}
	/*
	 * Clients before reconnect offered the keepalive feature without
	 * sending any: watch a connection once it has a session uuid (a client
	 * that reconnects) or has sent a KEEPALIVE.
	 */
	if (!timeout_ms || !(c->features & IBNBD_FEAT_KEEPALIVE) ||
	    (registry_uuid_is_zero(c->reg.uuid) && !c->keepalive_seen))
		return;
	/* Its session's other connections may still be connecting. */
	joining = c->rx_count == c->rx_at_hello;
	limit_ms = joining && timeout_ms < CONN_JOIN_MS ? CONN_JOIN_MS : timeout_ms;
	if (now - c->rx_last_ms < limit_ms)
		return;
	log_warn("%s: nothing received for %lld ms%s (keepalive timeout %u s): the client is presumed dead, dropping the connection",
		 c->name, (long long)(now - c->rx_last_ms), joining ? " since its HELLO" : "",
		 timeout_ms / 1000);
	stat_add(&c->w->stats.keepalive_timeouts, 1);
	conn_close(c, "keepalive timeout");
}

/* ---- construction ---- */

static void *map_mem(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
		       -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

int conn_create(struct worker *w, struct worker_dev *dev, unsigned int idx,
		struct rdma_cm_id *id, const struct ibnbd_conn_params *req, const char *peer,
		struct conn **out)
{
	struct ibnbd_conn_params rep;
	struct cm_qp_caps caps;
	struct rdma_conn_param cp = { 0 };
	struct ibnbd_conn_rep wire;
	enum hs_refusal refusal;
	struct handshakes *hs;
	struct hs_addr addr;
	struct conn *c;
	unsigned int i;
	int ret;

	ret = ibnbd_conn_negotiate(req, &w->shared->limits, &rep);
	if (ret) {
		log_warn("worker %u: connection from %s refused: version %u, depth %u, max IO %u: %s",
			 w->index, peer, req->version, req->queue_depth, req->max_io_size,
			 strerror(-ret));
		return ret;
	}
	/* Connections that have not proven who they are hold a little memory
	 * and CQ room each for up to CONN_HANDSHAKE_MS: capped in all and per
	 * source address, so a flood of them cannot crowd out the hosts that
	 * do, nor one address the others. */
	addr = hs_addr_of(rdma_get_peer_addr(id));
	hs = w->shared->handshakes;
	refusal = handshakes_enter(hs, &addr);
	if (refusal != HS_OK) {
		stat_add(&w->stats.handshakes_refused, 1);
		if (refusal == HS_TOTAL)
			log_ratelimited(&w->auth_log, "worker %u: connection from %s refused: %u connections are in their handshake already (max_handshakes)",
					w->index, peer, hs->max_total);
		else
			log_ratelimited(&w->auth_log, "worker %u: connection from %s refused: %u connections from its address are in their handshake already (max_handshakes_per_address)",
					w->index, peer, hs->max_per_addr);
		return -EBUSY;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		handshakes_leave(hs, &addr);
		return -ENOMEM;
	}
	c->peer_addr = addr;
	c->w = w;
	c->created_ms = clock_now_ms();
	c->dev = dev;
	c->idx = idx;
	c->gen = w->conn_gen[idx];
	c->id = id;
	snprintf(c->name, sizeof(c->name), "worker %u conn %u from %s", w->index, idx, peer);
	memcpy(c->reg.uuid, req->session_uuid, sizeof(c->reg.uuid));
	c->reg.conn_index = req->conn_index;
	c->reg.conn_count = req->conn_count;
	c->reg.kick_fd = w->efd;
	snprintf(c->reg.peer, sizeof(c->reg.peer), "%s", peer);
	c->rx_last_ms = clock_now_ms();
	c->max_io_size = rep.max_io_size;
	c->features = rep.features;
	c->stride = (uint32_t)((rep.max_io_size + sizeof(struct ibnbd_io_req) + 4095) & ~4095u);
	/* One io_uring fixed buffer is at most 1 GiB. */
	if ((uint64_t)rep.queue_depth * c->stride > (1u << 30))
		rep.queue_depth = (uint16_t)((1u << 30) / c->stride);
	c->qd = rep.queue_depth;
	c->nbufs = c->qd + IBNBD_CTRL_CREDITS;
	c->sq_depth = 4 * c->qd + IBNBD_CTRL_CREDITS;
	c->sq_last_signaled = UINT32_MAX; /* none yet */
	c->rq_depth = c->nbufs;
	rep.queue_depth = c->qd;
	c->cq_need = conn_cq_need(&rep);
	conn_set_state(c, CONN_ACCEPTING);
	ret = take_cq(c, PRE_HELLO_CQ);
	if (ret)
		goto out_destroy;

	ret = -ENOMEM;
	c->slots = calloc(c->qd, sizeof(*c->slots));
	c->pending = calloc(c->qd, sizeof(*c->pending));
	c->answers = calloc(c->qd + 1, sizeof(*c->answers));
	c->slot_len = (size_t)c->qd * c->stride;
	c->msg_len = (size_t)2 * c->nbufs * IBNBD_MSG_MAX;
	c->msg_mem = map_mem(c->msg_len);
	if (!c->slots || !c->pending || !c->answers || !c->msg_mem) {
		log_err("%s: out of memory for %u slots", c->name, c->qd);
		goto out_destroy;
	}
	/* A protection domain of its own: an rkey it hands out is good on its
	 * QP only, never on another client's. */
	c->pd = ibv_alloc_pd(id->verbs);
	if (!c->pd) {
		ret = errno ? -errno : -ENOMEM;
		log_err("%s: cannot allocate a protection domain: %s", c->name, strerror(-ret));
		goto out_destroy;
	}
	/* Only the message buffers now: the slots once the host is known. */
	ret = verbs_reg_mr(c->pd, c->msg_mem, c->msg_len, IBV_ACCESS_LOCAL_WRITE, &c->msg_mr);
	if (ret) {
		log_err("%s: registering %zu bytes of message buffers with the RDMA device failed: %s",
			c->name, c->msg_len, strerror(-ret));
		goto out_destroy;
	}
	caps = (struct cm_qp_caps){
		.max_send_wr = c->sq_depth + 1, /* + sq_drain()'s marker */
		.max_recv_wr = c->rq_depth,
		.max_send_sge = 1,
		.max_recv_sge = 1,
	};
	ret = cm_create_qp(id, c->pd, dev->cq, &caps);
	if (ret) {
		log_err("%s: creating the QP (%u send, %u receive WRs) failed: %s", c->name,
			c->sq_depth, c->rq_depth, strerror(-ret));
		goto out_destroy;
	}
	c->qp_created = true;
	for (i = 0; i < PRE_HELLO_RECVS && i < c->nbufs; i++) {
		ret = conn_post_recv(c, i);
		if (ret) {
			log_err("%s: posting receive %u failed: %s", c->name, i, strerror(-ret));
			goto out_destroy;
		}
	}
	ibnbd_conn_rep_encode(&wire, &rep);
	cp.private_data = &wire;
	cp.private_data_len = sizeof(wire);
	cp.responder_resources = 1;
	cp.initiator_depth = 1;
	cp.rnr_retry_count = 7;
	/* Before the accept: a connection it supersedes starts closing now. */
	registry_join(w->shared->registry, &c->reg);
	id->context = c;
	if (rdma_accept(id, &cp)) {
		ret = errno ? -errno : -EIO;
		log_err("%s: rdma_accept failed: %s", c->name, strerror(-ret));
		id->context = NULL;
		goto out_destroy;
	}
	log_info("%s: accepted: queue depth %u, max IO %u (%zu bytes of slots once it says HELLO)",
		 c->name, c->qd, c->max_io_size, c->slot_len);
	*out = c;
	return 0;
out_destroy:
	c->id = NULL; /* the caller rejects and destroys it */
	if (c->qp_created) {
		rdma_destroy_qp(id);
		c->qp_created = false;
	}
	conn_destroy(c);
	return ret;
}
