// SPDX-License-Identifier: GPL-2.0-only
/*
 * Latency histograms and the Prometheus text exposition format (version
 * 0.0.4): pure functions, unit-tested (tests/unit/test_metrics.c).
 */
#include "metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint64_t bounds_ns[LAT_BUCKETS] = {
	10000ULL,      25000ULL,      50000ULL,      /* 10, 25, 50 us */
	100000ULL,     250000ULL,     500000ULL,     /* 100, 250, 500 us */
	1000000ULL,    2500000ULL,    5000000ULL,    /* 1, 2.5, 5 ms */
	10000000ULL,   25000000ULL,   50000000ULL,   /* 10, 25, 50 ms */
	100000000ULL,  250000000ULL,  500000000ULL,  /* 100, 250, 500 ms */
	1000000000ULL, 2500000000ULL, 5000000000ULL, /* 1, 2.5, 5 s */
	10000000000ULL,                              /* 10 s */
};

uint64_t lat_bucket_bound_ns(unsigned int i)
{
	return bounds_ns[i];
}

unsigned int lat_bucket_of(uint64_t ns)
{
	unsigned int i = 0;

	while (i < LAT_BUCKETS && ns > bounds_ns[i])
		i++;
	return i;
}

void lat_hist_sum(struct lat_hist *dst, const struct lat_hist *src)
{
	for (unsigned int i = 0; i <= LAT_BUCKETS; i++)
		dst->bucket[i] += stat_read(&src->bucket[i]);
	dst->sum_ns += stat_read(&src->sum_ns);
}

void prom_init(struct prom *p)
{
	*p = (struct prom){ 0 };
}

void prom_free(struct prom *p)
{
	free(p->buf);
	*p = (struct prom){ 0 };
}

static bool prom_reserve(struct prom *p, size_t more)
{
	size_t cap = p->cap ? p->cap : 16384;
	char *b;

	if (p->oom)
		return false;
	while (cap < p->len + more + 1)
		cap *= 2;
	if (cap == p->cap)
		return true;
	b = realloc(p->buf, cap);
	if (!b) {
		p->oom = true;
		return false;
	}
	p->buf = b;
	p->cap = cap;
	return true;
}

void prom_printf(struct prom *p, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || !prom_reserve(p, (size_t)n))
		return;
	va_start(ap, fmt);
	vsnprintf(p->buf + p->len, p->cap - p->len, fmt, ap);
	va_end(ap);
	p->len += (size_t)n;
}

void prom_family(struct prom *p, const char *name, const char *type, const char *help)
{
	prom_printf(p, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

int prom_labels(char *out, size_t len, ...)
{
	const char *name, *v;
	size_t o = 0;
	va_list ap;

	va_start(ap, len);
	while ((name = va_arg(ap, const char *))) {
		v = va_arg(ap, const char *);
		if (o && o < len)
			out[o++] = ',';
		o += (size_t)snprintf(out + (o < len ? o : len), o < len ? len - o : 0, "%s=\"", name);
		for (; v && *v; v++) {
			const char *esc = *v == '\\' ? "\\\\" : *v == '"' ? "\\\"" : *v == '\n' ? "\\n" : NULL;
			size_t n = esc ? 2 : 1;

			if (o + n < len)
				memcpy(out + o, esc ? esc : v, n);
			o += n;
		}
		if (o < len)
			out[o] = '"';
		o++;
	}
	va_end(ap);
	if (o >= len) {
		if (len)
			out[0] = '\0';
		return -ENOSPC;
	}
	out[o] = '\0';
	return 0;
}

static void sample_head(struct prom *p, const char *name, const char *labels)
{
	if (labels && *labels)
		prom_printf(p, "%s{%s} ", name, labels);
	else
		prom_printf(p, "%s ", name);
}

void prom_u64(struct prom *p, const char *name, const char *labels, uint64_t v)
{
	sample_head(p, name, labels);
	prom_printf(p, "%" PRIu64 "\n", v);
}

void prom_f64(struct prom *p, const char *name, const char *labels, double v)
{
	sample_head(p, name, labels);
	prom_printf(p, "%.9g\n", v);
}

void prom_hist(struct prom *p, const char *name, const char *labels, const struct lat_hist *h)
{
	const char *sep = labels && *labels ? "," : "";
	uint64_t cum = 0;

	if (!labels)
		labels = "";
	for (unsigned int i = 0; i <= LAT_BUCKETS; i++) {
		cum += h->bucket[i];
		if (i < LAT_BUCKETS)
			prom_printf(p, "%s_bucket{%s%sle=\"%g\"} %" PRIu64 "\n", name, labels, sep,
				    (double)bounds_ns[i] / 1e9, cum);
		else
			prom_printf(p, "%s_bucket{%s%sle=\"+Inf\"} %" PRIu64 "\n", name, labels, sep,
				    cum);
	}
	prom_printf(p, "%s_sum%s%s%s %.9g\n", name, *labels ? "{" : "", labels, *labels ? "}" : "",
		    (double)h->sum_ns / 1e9);
	prom_printf(p, "%s_count%s%s%s %" PRIu64 "\n", name, *labels ? "{" : "", labels,
		    *labels ? "}" : "", cum);
}
