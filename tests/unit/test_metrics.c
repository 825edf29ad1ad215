// SPDX-License-Identifier: GPL-2.0-only
/*
 * The metrics' pure parts: latency buckets (src/common/metrics.c), the
 * Prometheus text format it writes, and the client's rendering of its
 * `list --json` answer (src/client/control/client_metrics.c).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "control/client_metrics.h"
#include "metrics.h"
#include "config.h"
#include "tap.h"

static bool has(const struct prom *p, const char *line)
{
	const char *s = p->buf;
	size_t n = strlen(line);

	while (s && (s = strstr(s, line))) {
		if ((s == p->buf || s[-1] == '\n') && (s[n] == '\n' || s[n] == '\0'))
			return true;
		s++;
	}
	return false;
}

static unsigned int count(const struct prom *p, const char *needle)
{
	unsigned int n = 0;

	for (const char *s = p->buf; s && (s = strstr(s, needle)); s++)
		n++;
	return n;
}

static void buckets(void)
{
	ok(lat_bucket_of(0) == 0, "0 ns falls in the first bucket");
	ok(lat_bucket_of(10000) == 0, "10 us is in the 10 us bucket (le is inclusive)");
	ok(lat_bucket_of(10001) == 1, "10.001 us is in the 25 us bucket");
	ok(lat_bucket_of(999999) == 6 && lat_bucket_bound_ns(6) == 1000000,
	   "999 us is in the 1 ms bucket");
	ok(lat_bucket_of(10000000000ULL) == LAT_BUCKETS - 1, "10 s is in the last bounded bucket");
	ok(lat_bucket_of(10000000001ULL) == LAT_BUCKETS, "past 10 s is in +Inf");
	for (unsigned int i = 1; i < LAT_BUCKETS; i++)
		if (lat_bucket_bound_ns(i) <= lat_bucket_bound_ns(i - 1))
			ok(0, "bounds increase at %u", i);
}

static void text_format(void)
{
	struct lat_hist h = { 0 }, sum = { 0 };
	struct prom p;
	char l[64];

	ok(!prom_labels(l, sizeof(l), "a", "x\"y\\z\nw", "b", "", NULL) &&
	   !strcmp(l, "a=\"x\\\"y\\\\z\\nw\",b=\"\""), "label values are escaped: %s", l);
	ok(prom_labels(l, 8, "name", "a long value", NULL) == -ENOSPC && !l[0],
	   "labels that do not fit: -ENOSPC and empty");

	lat_observe(&h, 5000);      /* 10 us */
	lat_observe(&h, 300000);    /* 500 us */
	lat_observe(&h, 20000000000ULL); /* +Inf */
	lat_hist_sum(&sum, &h);
	lat_hist_sum(&sum, &h);
	prom_init(&p);
	prom_family(&p, "x_seconds", "histogram", "Help.");
	prom_hist(&p, "x_seconds", "d=\"a\"", &sum);
	prom_u64(&p, "y_total", NULL, 7);
	prom_f64(&p, "z", "", 0.25);
	ok(!p.oom && p.buf, "the exposition was written");
	ok(has(&p, "# HELP x_seconds Help.") && has(&p, "# TYPE x_seconds histogram"),
	   "HELP and TYPE lines");
	ok(has(&p, "x_seconds_bucket{d=\"a\",le=\"1e-05\"} 2"), "first bucket: 2 (two snapshots summed)");
	ok(has(&p, "x_seconds_bucket{d=\"a\",le=\"0.00025\"} 2"), "buckets are cumulative: 250 us has 2");
	ok(has(&p, "x_seconds_bucket{d=\"a\",le=\"0.0005\"} 4"), "500 us has 4");
	ok(has(&p, "x_seconds_bucket{d=\"a\",le=\"10\"} 4"), "10 s has 4");
	ok(has(&p, "x_seconds_bucket{d=\"a\",le=\"+Inf\"} 6"), "+Inf has all 6");
	ok(has(&p, "x_seconds_count{d=\"a\"} 6"), "_count equals +Inf");
	ok(has(&p, "x_seconds_sum{d=\"a\"} 40.00061"), "_sum in seconds");
	ok(count(&p, "x_seconds_bucket{") == LAT_BUCKETS + 1, "%u bucket lines", LAT_BUCKETS + 1);
	ok(has(&p, "y_total 7") && has(&p, "z 0.25"), "samples without labels");
	prom_free(&p);
}

static const char list_json[] =
	"[ { \"device\": \"/dev/ublkb0\", \"name\": \"vol\\\"a\", \"server\": \"192.0.2.1\", \"port\": 4422,"
	"    \"export\": \"a\", \"size\": 1048576, \"access\": \"rw\", \"session\": \"live\","
	"    \"reconnects\": 3, \"reissued\": 16, \"timeouts\": 0, \"last_outage_ms\": 2500,"
	"    \"keepalive_rtt_us\": 250, \"state\": \"live\","
	"    \"io\": { \"reads\": 10, \"writes\": 20, \"flushes\": 1, \"discards\": 0,"
	"              \"write_zeroes\": 0, \"read_bytes\": 40960, \"write_bytes\": 81920,"
	"              \"errors\": 2, \"reissued\": 16, \"timeouts\": 0, \"waiting\": 1,"
	"              \"in_flight\": 4, \"latency_sum_ns\": 1500000000,"
	"              \"latency_buckets\": [0,0,0,0,0,0,30,0,0,0,0,0,0,0,0,0,0,0,0,3] } },"
	"  { \"device\": \"/dev/ublkb1\", \"name\": \"b\", \"server\": \"192.0.2.1\", \"port\": 4422,"
	"    \"export\": \"b\", \"size\": 4096, \"access\": \"ro\", \"session\": \"live\","
	"    \"reconnects\": 3, \"reissued\": 16, \"timeouts\": 0, \"last_outage_ms\": 2500,"
	"    \"keepalive_rtt_us\": 250, \"state\": \"failed\","
	"    \"io\": { \"reads\": 1, \"latency_buckets\": [1], \"latency_sum_ns\": 1000 } },"
	"  { \"device\": \"\", \"name\": \"later\", \"server\": \"192.0.2.2\", \"port\": 4422,"
	"    \"export\": \"c\", \"size\": 0, \"access\": \"rw\", \"state\": \"reconnecting\","
	"    \"persistent\": true, \"not_mapped_yet\": true } ]";

static void client_render(void)
{
	json_object *devs = json_tokener_parse(list_json);
	struct prom p;

	ok(devs != NULL, "the fixture parses");
	prom_init(&p);
	client_metrics_render(devs, "host-1", &p);
	ok(!p.oom && p.buf, "rendered");
	ok(has(&p, "ibnbd_client_info{version=\"" IBNBD_VERSION "\",host_id=\"host-1\"} 1"),
	   "info with version and host id");
	ok(has(&p, "ibnbd_client_device_reads_total{device=\"/dev/ublkb0\",name=\"vol\\\"a\"} 10"),
	   "reads, name escaped");
	ok(has(&p, "ibnbd_client_device_written_bytes_total{device=\"/dev/ublkb0\",name=\"vol\\\"a\"} 81920"),
	   "bytes written");
	ok(has(&p, "ibnbd_client_device_requests_in_flight{device=\"/dev/ublkb0\",name=\"vol\\\"a\"} 4"),
	   "in flight");
	ok(has(&p, "ibnbd_client_device_state{device=\"/dev/ublkb1\",name=\"b\",state=\"failed\"} 1") &&
	   has(&p, "ibnbd_client_device_state{device=\"/dev/ublkb1\",name=\"b\",state=\"live\"} 0"),
	   "state: one series per state, 1 for the current");
	ok(has(&p, "ibnbd_client_device_state{device=\"\",name=\"later\",state=\"reconnecting\"} 1"),
	   "a map not made yet is reconnecting");
	ok(!strstr(p.buf, "ibnbd_client_device_reads_total{device=\"\""),
	   "a map not made yet has no IO counters");
	ok(has(&p, "ibnbd_client_device_request_duration_seconds_bucket{device=\"/dev/ublkb0\",name=\"vol\\\"a\",le=\"0.001\"} 30") &&
	   has(&p, "ibnbd_client_device_request_duration_seconds_count{device=\"/dev/ublkb0\",name=\"vol\\\"a\"} 33") &&
	   has(&p, "ibnbd_client_device_request_duration_seconds_sum{device=\"/dev/ublkb0\",name=\"vol\\\"a\"} 1.5"),
	   "the latency histogram from the buckets");
	ok(count(&p, "ibnbd_client_session_reconnects_total{") == 1 &&
	   has(&p, "ibnbd_client_session_reconnects_total{server=\"192.0.2.1:4422\"} 3"),
	   "a session's numbers once, not per device");
	ok(has(&p, "ibnbd_client_session_keepalive_rtt_seconds{server=\"192.0.2.1:4422\"} 0.00025"),
	   "round trip in seconds");
	ok(has(&p, "ibnbd_client_session_up{server=\"192.0.2.1:4422\"} 1"), "session up");
	ok(count(&p, "# TYPE ibnbd_client_device_reads_total counter") == 1, "one TYPE per family");
	prom_free(&p);
	json_object_put(devs);
}

int main(void)
{
	buckets();
	text_format();
	client_render();
	return tap_done();
}
