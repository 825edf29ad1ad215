// SPDX-License-Identifier: GPL-2.0-only
/*
 * Prometheus exposition of the client's devices and sessions. Every
 * family's samples are written together (the text format wants them
 * grouped), one loop over the devices per family.
 */
#include "control/client_metrics.h"

#include <stdio.h>
#include <string.h>

#include "config.h" /* IBNBD_VERSION */

/* The states a device can be in (client.c's describe()); each is a
 * series of ibnbd_client_device_state, 1 for the current one. */
static const char *const dev_states[] = {
	"live", "recovering", "reconnecting", "failed", "mapping", "unmapping",
};

static const char *str(json_object *o, const char *key)
{
	json_object *v;

	return json_object_object_get_ex(o, key, &v) ? json_object_get_string(v) : "";
}

static uint64_t num(json_object *o, const char *key)
{
	json_object *v;

	if (!o || !json_object_object_get_ex(o, key, &v))
		return 0;
	return (uint64_t)json_object_get_int64(v);
}

static void dev_labels(json_object *d, char *out, size_t len)
{
	prom_labels(out, len, "device", str(d, "device"), "name", str(d, "name"), NULL);
}

/* A counter or gauge family from one number of each mapped device's "io". */
static void dev_family(json_object *devs, struct prom *p, const char *name, const char *type,
		       const char *help, const char *key)
{
	char labels[512];

	prom_family(p, name, type, help);
	for (size_t i = 0; i < json_object_array_length(devs); i++) {
		json_object *d = json_object_array_get_idx(devs, i), *io;

		if (!json_object_object_get_ex(d, "io", &io))
			continue;
		dev_labels(d, labels, sizeof(labels));
		prom_u64(p, name, labels, num(io, key));
	}
}

static void devices(json_object *devs, struct prom *p)
{
	char labels[1024], l2[1100];
	size_t n = json_object_array_length(devs);

	prom_family(p, "ibnbd_client_device_info", "gauge",
		    "A device this daemon maps (or will: not_mapped_yet) and what it maps.");
	for (size_t i = 0; i < n; i++) {
		json_object *d = json_object_array_get_idx(devs, i);
		char server[300];

		snprintf(server, sizeof(server), "%s:%llu", str(d, "server"),
			 (unsigned long long)num(d, "port"));
		prom_labels(labels, sizeof(labels), "device", str(d, "device"), "name",
			    str(d, "name"), "server", server, "export", str(d, "export"), "access",
			    str(d, "access"), NULL);
		prom_u64(p, "ibnbd_client_device_info", labels, 1);
	}
	prom_family(p, "ibnbd_client_device_state", "gauge",
		    "1 for the state the device is in (as `ibnbd-client list` shows it).");
	for (size_t i = 0; i < n; i++) {
		json_object *d = json_object_array_get_idx(devs, i);

		dev_labels(d, labels, sizeof(labels));
		for (size_t s = 0; s < sizeof(dev_states) / sizeof(dev_states[0]); s++) {
			snprintf(l2, sizeof(l2), "%s,state=\"%s\"", labels, dev_states[s]);
			prom_u64(p, "ibnbd_client_device_state", l2, !strcmp(str(d, "state"), dev_states[s]));
		}
	}
	prom_family(p, "ibnbd_client_device_size_bytes", "gauge", "The device's size.");
	for (size_t i = 0; i < n; i++) {
		json_object *d = json_object_array_get_idx(devs, i);

		dev_labels(d, labels, sizeof(labels));
		prom_u64(p, "ibnbd_client_device_size_bytes", labels, num(d, "size"));
	}
	dev_family(devs, p, "ibnbd_client_device_reads_total", "counter", "Reads completed.", "reads");
	dev_family(devs, p, "ibnbd_client_device_writes_total", "counter", "Writes completed.", "writes");
	dev_family(devs, p, "ibnbd_client_device_flushes_total", "counter", "Flushes completed.", "flushes");
	dev_family(devs, p, "ibnbd_client_device_discards_total", "counter", "Discards completed.",
		   "discards");
	dev_family(devs, p, "ibnbd_client_device_write_zeroes_total", "counter",
		   "Write-zeroes completed.", "write_zeroes");
	dev_family(devs, p, "ibnbd_client_device_read_bytes_total", "counter", "Bytes read.",
		   "read_bytes");
	dev_family(devs, p, "ibnbd_client_device_written_bytes_total", "counter", "Bytes written.",
		   "write_bytes");
	dev_family(devs, p, "ibnbd_client_device_errors_total", "counter",
		   "Requests completed with an error.", "errors");
	dev_family(devs, p, "ibnbd_client_device_reissued_total", "counter",
		   "Requests sent again after their connection was lost.", "reissued");
	dev_family(devs, p, "ibnbd_client_device_timeouts_total", "counter",
		   "Requests unanswered for the IO timeout (their connection was reset).", "timeouts");
	dev_family(devs, p, "ibnbd_client_device_requests_in_flight", "gauge",
		   "Requests the kernel handed over and not yet completed.", "in_flight");
	dev_family(devs, p, "ibnbd_client_device_requests_waiting", "gauge",
		   "Of those, requests waiting for a connection or a slot.", "waiting");
	prom_family(p, "ibnbd_client_device_request_duration_seconds", "histogram",
		    "From the kernel's hand-over of a request to its completion.");
	for (size_t i = 0; i < n; i++) {
		json_object *d = json_object_array_get_idx(devs, i), *io, *b;
		struct lat_hist h = { 0 };

		if (!json_object_object_get_ex(d, "io", &io) ||
		    !json_object_object_get_ex(io, "latency_buckets", &b))
			continue;
		for (size_t k = 0; k <= LAT_BUCKETS && k < json_object_array_length(b); k++)
			h.bucket[k] = (uint64_t)json_object_get_int64(json_object_array_get_idx(b, k));
		h.sum_ns = num(io, "latency_sum_ns");
		dev_labels(d, labels, sizeof(labels));
		prom_hist(p, "ibnbd_client_device_request_duration_seconds", labels, &h);
	}
}

/* Devices of one session repeat its numbers: the first stands for it. */
static bool first_of_session(json_object *devs, size_t i)
{
	json_object *d = json_object_array_get_idx(devs, i);

	if (!json_object_object_get_ex(d, "session", NULL))
		return false;
	for (size_t j = 0; j < i; j++) {
		json_object *o = json_object_array_get_idx(devs, j);

		if (json_object_object_get_ex(o, "session", NULL) &&
		    !strcmp(str(o, "server"), str(d, "server")) && num(o, "port") == num(d, "port"))
			return false;
	}
	return true;
}

static void sess_family(json_object *devs, struct prom *p, const char *name, const char *type,
			const char *help, const char *key, double scale)
{
	char labels[512], server[300];

	prom_family(p, name, type, help);
	for (size_t i = 0; i < json_object_array_length(devs); i++) {
		json_object *d = json_object_array_get_idx(devs, i);

		if (!first_of_session(devs, i))
			continue;
		snprintf(server, sizeof(server), "%s:%llu", str(d, "server"),
			 (unsigned long long)num(d, "port"));
		prom_labels(labels, sizeof(labels), "server", server, NULL);
		if (!key)
			prom_u64(p, name, labels, !strcmp(str(d, "session"), "live"));
		else if (scale == 1.0)
			prom_u64(p, name, labels, num(d, key));
		else
			prom_f64(p, name, labels, (double)num(d, key) * scale);
	}
}

static void sessions(json_object *devs, struct prom *p)
{
	sess_family(devs, p, "ibnbd_client_session_up", "gauge",
		    "1 while the session's connections are up.", NULL, 1.0);
	sess_family(devs, p, "ibnbd_client_session_reconnects_total", "counter",
		    "Times the session was re-established after a loss.", "reconnects", 1.0);
	sess_family(devs, p, "ibnbd_client_session_reissued_total", "counter",
		    "Requests sent again after a lost connection.", "reissued", 1.0);
	sess_family(devs, p, "ibnbd_client_session_timeouts_total", "counter",
		    "Requests that hit the IO timeout.", "timeouts", 1.0);
	sess_family(devs, p, "ibnbd_client_session_last_outage_seconds", "gauge",
		    "How long the last outage lasted.", "last_outage_ms", 1e-3);
	sess_family(devs, p, "ibnbd_client_session_keepalive_rtt_seconds", "gauge",
		    "The last keepalive's round trip (the slowest connection's; 0 until one).",
		    "keepalive_rtt_us", 1e-6);
}

void client_metrics_render(json_object *devs, const char *host_id, struct prom *p)
{
	char labels[512];

	prom_labels(labels, sizeof(labels), "version", IBNBD_VERSION, "host_id", host_id, NULL);
	prom_family(p, "ibnbd_client_info", "gauge", "This daemon's version and host id.");
	prom_u64(p, "ibnbd_client_info", labels, 1);
	devices(devs, p);
	sessions(devs, p);
}
