/* SPDX-License-Identifier: Apache-2.0 */
/* Prometheus text exposition builder (see lib/metrics.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/metrics.h"

void metrics_buf_free(struct metrics_buf *b)
{
	if (!b)
		return;
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

int metrics_buf_append(struct metrics_buf *b, const char *s, size_t len)
{
	size_t cap;
	char *p;

	if (b->len + len + 1 > b->cap) {
		cap = b->cap ? b->cap : 1024;
		while (cap < b->len + len + 1)
			cap *= 2;
		p = realloc(b->data, cap);
		if (!p)
			return -1;
		b->data = p;
		b->cap = cap;
	}
	memcpy(b->data + b->len, s, len);
	b->len += len;
	b->data[b->len] = '\0';
	return 0;
}

static int metrics_buf_str(struct metrics_buf *b, const char *s)
{
	return metrics_buf_append(b, s, strlen(s));
}

/* Writes <v> as Prometheus expects into <out> (at least 32 bytes). */
static void metrics_fmt_double(char *out, size_t outlen, double v)
{
	if (isnan(v)) {
		snprintf(out, outlen, "NaN");
	} else if (isinf(v)) {
		snprintf(out, outlen, v > 0 ? "+Inf" : "-Inf");
	} else if (v > -1e15 && v < 1e15 && (double)(long long)v == v) {
		snprintf(out, outlen, "%lld", (long long)v);
	} else {
		/* shortest of 15 or 17 digits that reads back the same value */
		snprintf(out, outlen, "%.15g", v);
		if (strtod(out, NULL) != v)
			snprintf(out, outlen, "%.17g", v);
	}
}

int metrics_header(struct metrics_buf *b, const char *name, const char *type,
		   const char *help)
{
	size_t mark = b->len;
	const char *p;

	if (help) {
		if (metrics_buf_str(b, "# HELP ") || metrics_buf_str(b, name) ||
		    metrics_buf_str(b, " "))
			goto fail;
		for (p = help; *p; p++) {
			int rc;

			if (*p == '\\')
				rc = metrics_buf_str(b, "\\\\");
			else if (*p == '\n')
				rc = metrics_buf_str(b, "\\n");
			else
				rc = metrics_buf_append(b, p, 1);
			if (rc)
				goto fail;
		}
		if (metrics_buf_str(b, "\n"))
			goto fail;
	}
	if (metrics_buf_str(b, "# TYPE ") || metrics_buf_str(b, name) ||
	    metrics_buf_str(b, " ") || metrics_buf_str(b, type) ||
	    metrics_buf_str(b, "\n"))
		goto fail;
	return 0;
fail:
	b->len = mark;
	if (b->data)
		b->data[mark] = '\0';
	return -1;
}

/* Appends "<name><suffix>{<labels>[,<extra>]} <v>\n". */
static int metrics_sample(struct metrics_buf *b, const char *name, const char *suffix,
			  const char *labels, const char *extra, double v)
{
	size_t mark = b->len;
	int has_labels = labels && *labels;
	int has_extra = extra && *extra;
	char num[64];

	metrics_fmt_double(num, sizeof(num), v);
	if (metrics_buf_str(b, name) || metrics_buf_str(b, suffix))
		goto fail;
	if (has_labels || has_extra) {
		if (metrics_buf_str(b, "{") ||
		    (has_labels && metrics_buf_str(b, labels)) ||
		    (has_labels && has_extra && metrics_buf_str(b, ",")) ||
		    (has_extra && metrics_buf_str(b, extra)) ||
		    metrics_buf_str(b, "}"))
			goto fail;
	}
	if (metrics_buf_str(b, " ") || metrics_buf_str(b, num) || metrics_buf_str(b, "\n"))
		goto fail;
	return 0;
fail:
	b->len = mark;
	if (b->data)
		b->data[mark] = '\0';
	return -1;
}

int metrics_value(struct metrics_buf *b, const char *name, const char *labels, double v)
{
	return metrics_sample(b, name, "", labels, NULL, v);
}

int metrics_label_add(char *dst, size_t dstlen, const char *name, const char *value)
{
	size_t len = strnlen(dst, dstlen), n = len;
	const char *p;

	if (len >= dstlen)
		return -1;
#define PUT(c) do { if (n + 1 >= dstlen) goto fail; dst[n++] = (c); } while (0)
	if (len > 0)
		PUT(',');
	for (p = name; *p; p++)
		PUT(*p);
	PUT('=');
	PUT('"');
	for (p = value; *p; p++) {
		if (*p == '\\') {
			PUT('\\');
			PUT('\\');
		} else if (*p == '"') {
			PUT('\\');
			PUT('"');
		} else if (*p == '\n') {
			PUT('\\');
			PUT('n');
		} else {
			PUT(*p);
		}
	}
	PUT('"');
#undef PUT
	dst[n] = '\0';
	return 0;
fail:
	dst[len] = '\0';
	return -1;
}

int metrics_label(char *dst, size_t dstlen, const char *name, const char *value)
{
	if (dstlen == 0)
		return -1;
	dst[0] = '\0';
	return metrics_label_add(dst, dstlen, name, value);
}

int metrics_histogram(struct metrics_buf *b, const char *name, const char *labels,
		      const double *bounds, const uint64_t *cumulative, size_t n,
		      double sum, uint64_t count)
{
	size_t mark = b->len, i;
	char le[80], num[64];

	for (i = 0; i < n; i++) {
		metrics_fmt_double(num, sizeof(num), bounds[i]);
		snprintf(le, sizeof(le), "le=\"%s\"", num);
		if (metrics_sample(b, name, "_bucket", labels, le, (double)cumulative[i]))
			goto fail;
	}
	if (metrics_sample(b, name, "_bucket", labels, "le=\"+Inf\"", (double)count) ||
	    metrics_sample(b, name, "_sum", labels, NULL, sum) ||
	    metrics_sample(b, name, "_count", labels, NULL, (double)count))
		goto fail;
	return 0;
fail:
	b->len = mark;
	if (b->data)
		b->data[mark] = '\0';
	return -1;
}

void metrics_hist_init(struct metrics_hist *h, const double *bounds, size_t n)
{
	memset(h, 0, sizeof(*h));
	if (n > METRICS_HIST_MAX)
		n = METRICS_HIST_MAX;
	memcpy(h->bounds, bounds, n * sizeof(*bounds));
	h->nbounds = n;
}

void metrics_hist_observe(struct metrics_hist *h, double v)
{
	size_t i;

	for (i = 0; i < h->nbounds; i++)
		if (v <= h->bounds[i])
			h->counts[i]++;
	h->sum += v;
	h->count++;
}

int metrics_hist_write(struct metrics_buf *b, const char *name, const char *labels,
		       const struct metrics_hist *h)
{
	return metrics_histogram(b, name, labels, h->bounds, h->counts, h->nbounds,
				 h->sum, h->count);
}
