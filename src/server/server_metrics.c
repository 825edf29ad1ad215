// SPDX-License-Identifier: GPL-2.0-only
/*
 * The server's metrics: the workers' counters summed at scrape time, per
 * export and in all, and what the registry knows of the hosts connected.
 * Runs on the metrics thread; reads counters with relaxed loads only.
 */
#include "server_metrics.h"

#include <stdlib.h>
#include <string.h>

#include "config.h" /* IBNBD_VERSION */
#include "export.h"
#include "registry.h"
#include "sessions.h"
#include "stats.h"
#include "worker.h"

static void server_totals(const struct server_metrics_src *s, struct prom *p)
{
	struct server_stats sum = { 0 };
	unsigned int conns;
	uint64_t slot_bytes;

	for (unsigned int i = 0; i < s->nworkers; i++) {
#define ADD(f) sum.f += stat_read(&s->workers[i].stats.f);
		STATS_FIELDS(ADD)
#undef ADD
	}
#define TOTAL(f, help)                                                    \
	prom_family(p, "ibnbd_server_" #f "_total", "counter", help);      \
	prom_u64(p, "ibnbd_server_" #f "_total", NULL, sum.f);
	TOTAL(connections, "Connections accepted.")
	TOTAL(rejected, "Requests refused as invalid (bad handle, range, length or flags).")
	TOTAL(dropped, "Connections closed for a protocol violation.")
	TOTAL(keepalive_timeouts, "Connections dropped after keepalive_timeout of silence.")
	TOTAL(superseded, "Connections closed for a reconnect or a writer takeover.")
	TOTAL(busy_opens, "Read-write opens refused: another session writes the export.")
	TOTAL(auth_failures, "Hosts refused: not listed, or a wrong key.")
	TOTAL(handshake_timeouts, "Connections that did not finish the handshake in time.")
	TOTAL(denied_opens, "Opens refused by an export's allow list.")
	TOTAL(handshakes_refused, "Connects refused: max_handshakes or max_handshakes_per_address reached.")
	TOTAL(limits_refused, "Handshakes and opens refused by a configured limit.")
	TOTAL(fua_writes, "Writes with FUA served.")
#undef TOTAL
	registry_usage(s->registry, &conns, &slot_bytes);
	prom_family(p, "ibnbd_server_connections", "gauge", "Connections past the handshake now.");
	prom_u64(p, "ibnbd_server_connections", NULL, conns);
	prom_family(p, "ibnbd_server_pinned_slot_memory_bytes", "gauge",
		    "Slot memory pinned for the connections now (RDMA and io_uring registered).");
	prom_u64(p, "ibnbd_server_pinned_slot_memory_bytes", NULL, slot_bytes);
}

/* One family over every export; field is an offset into export_stats. */
static void export_counter(const struct server_metrics_src *s, unsigned int n, struct prom *p,
			   const struct export_stats *sums, const char *name, const char *help,
			   size_t field)
{
	char labels[512];

	prom_family(p, name, "counter", help);
	for (unsigned int e = 0; e < n; e++) {
		if (export_removed(s->exports[e]))
			continue;
		prom_labels(labels, sizeof(labels), "export", s->exports[e]->name, NULL);
		prom_u64(p, name, labels, *(const uint64_t *)((const char *)&sums[e] + field));
	}
}

/* Removed exports (a reload) are left out. */
static void exports(const struct server_metrics_src *s, struct prom *p)
{
	unsigned int n = __atomic_load_n(s->nexports, __ATOMIC_ACQUIRE);
	struct export_stats *sums = calloc(n ? n : 1, sizeof(*sums));
	char labels[512];

	if (!sums) {
		p->oom = true;
		return;
	}
	for (unsigned int i = 0; i < s->nworkers; i++) {
		for (unsigned int e = 0; e < n; e++) {
			const struct export_stats *w = &s->workers[i].estats[e];

			io_counts_sum(&sums[e].io, &w->io);
			sums[e].io_errors += stat_read(&w->io_errors);
			lat_hist_sum(&sums[e].backing, &w->backing);
		}
	}
#define COUNTER(f, name, help) \
	export_counter(s, n, p, sums, "ibnbd_server_export_" name, help, offsetof(struct export_stats, f));
	COUNTER(io.reads, "reads_total", "Reads served.")
	COUNTER(io.writes, "writes_total", "Writes served.")
	COUNTER(io.flushes, "flushes_total", "Flushes served.")
	COUNTER(io.discards, "discards_total", "Discards served.")
	COUNTER(io.write_zeroes, "write_zeroes_total", "Write-zeroes served.")
	COUNTER(io.read_bytes, "read_bytes_total", "Bytes read.")
	COUNTER(io.write_bytes, "written_bytes_total", "Bytes written.")
	COUNTER(io_errors, "io_errors_total", "Backing IOs that failed.")
#undef COUNTER
	prom_family(p, "ibnbd_server_export_size_bytes", "gauge", "The export's size.");
	for (unsigned int e = 0; e < n; e++) {
		if (export_removed(s->exports[e]))
			continue;
		prom_labels(labels, sizeof(labels), "export", s->exports[e]->name, NULL);
		prom_u64(p, "ibnbd_server_export_size_bytes", labels, s->exports[e]->size);
	}
	prom_family(p, "ibnbd_server_export_backing_duration_seconds", "histogram",
		    "From a request's arrival to the end of its backing IO.");
	for (unsigned int e = 0; e < n; e++) {
		if (export_removed(s->exports[e]))
			continue;
		prom_labels(labels, sizeof(labels), "export", s->exports[e]->name, NULL);
		prom_hist(p, "ibnbd_server_export_backing_duration_seconds", labels,
			  &sums[e].backing);
	}
	free(sums);
}

/* Per host: connections now and sessions (distinct session uuids). */
struct host_count {
	char host_id[IBNBD_HOST_ID_MAX];
	uint8_t uuid[16];
};

struct host_list {
	struct host_count *v;
	size_t n, cap;
	bool oom;
};

static void collect_host(const struct reg_entry *e, void *arg)
{
	struct host_list *l = arg;
	struct host_count *v;

	if (l->n == l->cap) {
		v = realloc(l->v, (l->cap ? l->cap * 2 : 64) * sizeof(*v));
		if (!v) {
			l->oom = true;
			return;
		}
		l->v = v;
		l->cap = l->cap ? l->cap * 2 : 64;
	}
	memcpy(l->v[l->n].host_id, e->host_id, sizeof(e->host_id));
	memcpy(l->v[l->n].uuid, e->uuid, sizeof(e->uuid));
	l->n++;
}

static bool seen_before(const struct host_list *l, size_t i, bool same_uuid)
{
	for (size_t j = 0; j < i; j++)
		if (!strcmp(l->v[j].host_id, l->v[i].host_id) &&
		    (!same_uuid || !memcmp(l->v[j].uuid, l->v[i].uuid, 16)))
			return true;
	return false;
}

static void hosts(const struct server_metrics_src *s, struct prom *p)
{
	struct host_list l = { 0 };
	char labels[512];

	registry_visit(s->registry, collect_host, &l);
	if (l.oom)
		p->oom = true;
	prom_family(p, "ibnbd_server_host_connections", "gauge",
		    "Connections of a host now (joined to their session).");
	for (size_t i = 0; i < l.n; i++) {
		unsigned int conns = 0;

		if (seen_before(&l, i, false))
			continue;
		for (size_t j = i; j < l.n; j++)
			conns += !strcmp(l.v[j].host_id, l.v[i].host_id);
		prom_labels(labels, sizeof(labels), "host", l.v[i].host_id, NULL);
		prom_u64(p, "ibnbd_server_host_connections", labels, conns);
	}
	prom_family(p, "ibnbd_server_host_sessions", "gauge", "Sessions of a host now.");
	for (size_t i = 0; i < l.n; i++) {
		unsigned int sessions = 0;

		if (seen_before(&l, i, false))
			continue;
		for (size_t j = i; j < l.n; j++)
			sessions += !strcmp(l.v[j].host_id, l.v[i].host_id) &&
				    !seen_before(&l, j, true);
		prom_labels(labels, sizeof(labels), "host", l.v[i].host_id, NULL);
		prom_u64(p, "ibnbd_server_host_sessions", labels, sessions);
	}
	free(l.v);
}

/*
 * Per session (uuid, and its host): connections, slot memory and what its
 * IO did. The IO counts are those of the connections there now, so a
 * reconnect starts them again: a counter reset, as rate() expects.
 */
static void sessions(const struct server_metrics_src *s, struct prom *p)
{
	struct session_rows l = { 0 };
	char uuid[REGISTRY_UUID_STR];
	char(*lv)[512];

	if (session_rows_collect(s->registry, &l))
		p->oom = true;
	lv = calloc(l.n ? l.n : 1, sizeof(*lv));
	if (!lv) {
		p->oom = true;
		session_rows_free(&l);
		return;
	}
	for (size_t i = 0; i < l.n; i++) {
		registry_uuid_str(l.v[i].uuid, uuid);
		prom_labels(lv[i], sizeof(lv[i]), "host", l.v[i].host_id, "session", uuid, NULL);
	}
#define EACH(name, type, help, value)                                  \
	prom_family(p, "ibnbd_server_session_" name, type, help);        \
	for (size_t i = 0; i < l.n; i++)                                 \
		if (!l.v[i].zero_uuid)                                   \
			prom_u64(p, "ibnbd_server_session_" name, lv[i], l.v[i].value);
	EACH("connections", "gauge", "Connections of the session now.", conns)
	EACH("slot_memory_bytes", "gauge", "Slot memory its connections pin.", slot_bytes)
	EACH("reads_total", "counter", "Reads served to the session.", io.reads)
	EACH("writes_total", "counter", "Writes served to the session.", io.writes)
	EACH("flushes_total", "counter", "Flushes served to the session.", io.flushes)
	EACH("discards_total", "counter", "Discards served to the session.", io.discards)
	EACH("write_zeroes_total", "counter", "Write-zeroes served to the session.", io.write_zeroes)
	EACH("read_bytes_total", "counter", "Bytes read for the session.", io.read_bytes)
	EACH("written_bytes_total", "counter", "Bytes written for the session.", io.write_bytes)
#undef EACH
	free(lv);
	session_rows_free(&l);
}

void server_metrics_fill(void *arg, struct prom *p)
{
	const struct server_metrics_src *s = arg;

	prom_family(p, "ibnbd_server_info", "gauge", "This server's version.");
	prom_printf(p, "ibnbd_server_info{version=\"%s\"} 1\n", IBNBD_VERSION);
	server_totals(s, p);
	exports(s, p);
	hosts(s, p);
	sessions(s, p);
}
