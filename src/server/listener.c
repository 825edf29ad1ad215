// SPDX-License-Identifier: GPL-2.0-only
#include "listener.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "log.h"
#include "cm.h"
#include "verbs.h"

struct listener {
	struct rdma_event_channel *ch;
	struct rdma_cm_id *ids[SERVER_MAX_LISTEN];
	unsigned int nids;
	struct worker *workers;
	unsigned int nworkers;
	unsigned int next; /* round-robin start among equally loaded workers */
};

int listener_create(const struct server_config *cfg, struct worker *workers,
		    unsigned int nworkers, struct listener **out)
{
	struct listener *l = calloc(1, sizeof(*l));
	int ret;

	if (!l)
		return -ENOMEM;
	l->workers = workers;
	l->nworkers = nworkers;
	ret = cm_channel_create(&l->ch);
	if (ret) {
		log_err("cannot create an RDMA CM event channel: %s (is rdma_ucm loaded, /dev/infiniband/rdma_cm accessible?)",
			strerror(-ret));
		goto out_destroy;
	}
	for (unsigned int i = 0; i < cfg->nlisten; i++) {
		const struct endpoint *ep = &cfg->listen[i];

		ret = cm_listen(l->ch, ep, 128, &l->ids[l->nids]);
		if (ret) {
			log_err("cannot listen on %s port %u: %s (is the address assigned to an RDMA-capable interface, e.g. an rxe/RoCE netdev?)",
				ep->host, ep->port, strerror(-ret));
			goto out_destroy;
		}
		l->nids++;
		log_info("listening on %s port %u", ep->host, ep->port);
	}
	*out = l;
	return 0;
out_destroy:
	listener_destroy(l);
	return ret;
}

void listener_destroy(struct listener *l)
{
	if (!l)
		return;
	for (unsigned int i = 0; i < l->nids; i++)
		rdma_destroy_id(l->ids[i]);
	cm_channel_destroy(l->ch);
	free(l);
}

int listener_fd(const struct listener *l)
{
	return l->ch->fd;
}

static struct worker *pick_worker(struct listener *l)
{
	struct worker *best = NULL;
	unsigned int best_n = ~0u;

	for (unsigned int k = 0; k < l->nworkers; k++) {
		struct worker *w = &l->workers[(l->next + k) % l->nworkers];
		unsigned int n = __atomic_load_n(&w->nconns_hint, __ATOMIC_RELAXED);

		if (n < best_n) {
			best = w;
			best_n = n;
		}
	}
	l->next = (l->next + 1) % l->nworkers;
	return best;
}

static void on_connect_request(struct listener *l, struct rdma_cm_event *ev)
{
	struct rdma_cm_id *id = ev->id;
	struct ibnbd_conn_params req;
	struct worker *w;
	char peer[64];
	int ret;

	cm_peer_str(id, peer, sizeof(peer));
	ret = ibnbd_conn_req_decode(ev->param.conn.private_data,
				    ev->param.conn.private_data_len, &req);
	if (ret) {
		log_warn("connection from %s refused: its connect data is not an ibnbd request (%u bytes)",
			 peer, ev->param.conn.private_data_len);
		conn_reject(id, -EPROTO);
		rdma_ack_cm_event(ev);
		rdma_destroy_id(id);
		return;
	}
	w = pick_worker(l);
	/* rdma_migrate_id waits for this id's events to be acked: ack first. */
	rdma_ack_cm_event(ev);
	if (rdma_migrate_id(id, w->cm_ch)) {
		ret = errno ? -errno : -EIO;
		log_err("connection from %s refused: moving it to worker %u failed: %s", peer,
			w->index, strerror(-ret));
		conn_reject(id, ret);
		rdma_destroy_id(id);
		return;
	}
	ret = worker_handoff(w, id, &req, peer);
	if (ret) {
		log_err("connection from %s refused: handing it to worker %u failed: %s", peer,
			w->index, strerror(-ret));
		conn_reject(id, ret);
		rdma_destroy_id(id);
	}
}

void listener_handle_events(struct listener *l)
{
	struct rdma_cm_event *ev;

	while (cm_get_event(l->ch, &ev) == 0) {
		switch (ev->event) {
		case RDMA_CM_EVENT_CONNECT_REQUEST:
			on_connect_request(l, ev); /* acks ev */
			continue;
		case RDMA_CM_EVENT_DEVICE_REMOVAL:
			log_err("the RDMA device of a listening address was removed; restart the server once it is back");
			break;
		default:
			log_debug(LOG_CAT_RDMA, "listener: ignoring %s", rdma_event_str(ev->event));
			break;
		}
		rdma_ack_cm_event(ev);
	}
}
