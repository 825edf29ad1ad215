/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Counters, latency histograms and the Prometheus text exposition both
 * daemons serve at /metrics (metrics_http.c).
 *
 * Counters on the IO path have one writer each (the worker that owns
 * them); a scrape sums every worker's copy. Relaxed atomic stores and loads
 * keep that race-free without a lock or a locked instruction per IO.
 */
#ifndef IBNBD_METRICS_H
#define IBNBD_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ibnbd/proto.h"

/* Single writer: a plain read of our own counter, a relaxed store. */
static inline void stat_add(uint64_t *c, uint64_t n)
{
	__atomic_store_n(c, *c + n, __ATOMIC_RELAXED);
}

static inline uint64_t stat_read(const uint64_t *c)
{
	return __atomic_load_n(c, __ATOMIC_RELAXED);
}

/* Requests done, by opcode, and their bytes: the client per device queue,
 * the server per export. */
struct io_counts {
	uint64_t reads, writes, flushes, discards, write_zeroes;
	uint64_t read_bytes, write_bytes;
};

#define IO_COUNTS_FIELDS(X) \
	X(reads) X(writes) X(flushes) X(discards) X(write_zeroes) X(read_bytes) X(write_bytes)

/* One request of opcode (IBNBD_OP_*) and len bytes done; single writer. */
static inline void io_counts_add(struct io_counts *c, uint8_t opcode, uint32_t len)
{
	switch (opcode) {
	case IBNBD_OP_READ:
		stat_add(&c->reads, 1);
		stat_add(&c->read_bytes, len);
		break;
	case IBNBD_OP_WRITE:
		stat_add(&c->writes, 1);
		stat_add(&c->write_bytes, len);
		break;
	case IBNBD_OP_FLUSH:
		stat_add(&c->flushes, 1);
		break;
	case IBNBD_OP_DISCARD:
		stat_add(&c->discards, 1);
		break;
	case IBNBD_OP_WRITE_ZEROES:
		stat_add(&c->write_zeroes, 1);
		break;
	}
}

/* Adds a snapshot of src (relaxed loads) to the plain dst. */
static inline void io_counts_sum(struct io_counts *dst, const struct io_counts *src)
{
#define IO_COUNTS_ADD(f) dst->f += stat_read(&src->f);
	IO_COUNTS_FIELDS(IO_COUNTS_ADD)
#undef IO_COUNTS_ADD
}

/* Latency buckets, upper bounds from 10 us to 10 s (1-2.5-5 per decade),
 * and one more for everything slower. */
#define LAT_BUCKETS 19

struct lat_hist {
	uint64_t bucket[LAT_BUCKETS + 1]; /* per bucket, not cumulative */
	uint64_t sum_ns;
};

/* The upper bound of bucket i (i < LAT_BUCKETS), in nanoseconds. */
uint64_t lat_bucket_bound_ns(unsigned int i);
/* The bucket a latency falls in: the first whose bound is >= ns. */
unsigned int lat_bucket_of(uint64_t ns);

/* Records one latency; the histogram's single writer only. */
static inline void lat_observe(struct lat_hist *h, uint64_t ns)
{
	stat_add(&h->bucket[lat_bucket_of(ns)], 1);
	stat_add(&h->sum_ns, ns);
}

/* Adds a snapshot of src (read with relaxed loads) to the plain dst. */
void lat_hist_sum(struct lat_hist *dst, const struct lat_hist *src);

/* A growing text buffer holding one exposition. */
struct prom {
	char *buf;
	size_t len, cap;
	bool oom; /* an allocation failed: the scrape answers 500 */
};

void prom_init(struct prom *p);
void prom_free(struct prom *p);
/* printf into p. */
void prom_printf(struct prom *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A metric family's HELP and TYPE lines ("counter", "gauge", "histogram"). */
void prom_family(struct prom *p, const char *name, const char *type, const char *help);

/*
 * Label sets, written once per object and reused for its samples: pairs
 * of name and value ending with NULL, e.g.
 *   prom_labels(l, sizeof(l), "device", "/dev/ublkb0", "export", "vol", NULL);
 * gives device="/dev/ublkb0",export="vol" with the values escaped (\\, \",
 * \n). Returns 0, or -ENOSPC if it does not fit (l is then empty).
 */
int prom_labels(char *out, size_t len, ...) __attribute__((sentinel));

/* One sample; labels may be NULL or "". */
void prom_u64(struct prom *p, const char *name, const char *labels, uint64_t v);
void prom_f64(struct prom *p, const char *name, const char *labels, double v);
/* A histogram's _bucket (cumulative, le in seconds), _sum and _count. */
void prom_hist(struct prom *p, const char *name, const char *labels, const struct lat_hist *h);

#endif
