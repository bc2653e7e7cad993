/* SPDX-License-Identifier: Apache-2.0 */
/* Prometheus text exposition (format 0.0.4) builder: no registry, no globals.
 * Each module keeps its own counters and appends them to a metrics_buf when the
 * admin API is scraped. */
#ifndef ACME_SPOA_METRICS_H
#define ACME_SPOA_METRICS_H

#include <stddef.h>
#include <stdint.h>

/* A growing text buffer. Zero-initialise it ({0}); <data> is NUL-terminated once
 * anything was appended. Release with metrics_buf_free(). */
struct metrics_buf {
	char *data;
	size_t len, cap;
};

/* Most buckets a metrics_hist can hold (not counting +Inf). */
#define METRICS_HIST_MAX 16

/* A histogram accumulator. <counts>[i] is cumulative: observations <= bounds[i]. */
struct metrics_hist {
	size_t nbounds;
	double bounds[METRICS_HIST_MAX];
	uint64_t counts[METRICS_HIST_MAX];
	double sum;
	uint64_t count;
};

/* Releases <b>'s storage and zeroes it, so it can be reused. Accepts NULL. */
void metrics_buf_free(struct metrics_buf *b);

/* Appends <len> raw bytes of <s> to <b>. Returns 0, or -1 when out of memory
 * (<b> is then unchanged). */
int metrics_buf_append(struct metrics_buf *b, const char *s, size_t len);

/* Appends "# HELP <name> <help>" (help escaped: \\ and \n) and
 * "# TYPE <name> <type>". <type> is "counter", "gauge" or "histogram"; <help>
 * may be NULL (no HELP line). Returns 0 or -1 (out of memory). */
int metrics_header(struct metrics_buf *b, const char *name, const char *type,
		   const char *help);

/* Appends one sample "<name>{<labels>} <v>\n". <labels> is already formatted
 * (e.g. built with metrics_label()) such as `reason="dns"`, or NULL/"" for none.
 * Integral values print without a fraction, NaN/Inf as NaN, +Inf, -Inf.
 * Returns 0 or -1 (out of memory). */
int metrics_value(struct metrics_buf *b, const char *name, const char *labels,
		  double v);

/* Writes the label pair `<name>="<value>"` into <dst> (size <dstlen>),
 * replacing what was there. The value is escaped (\\, \", \n). Returns 0, or
 * -1 when it does not fit (<dst> is then ""). */
int metrics_label(char *dst, size_t dstlen, const char *name, const char *value);

/* Like metrics_label() but appends to the NUL-terminated labels already in
 * <dst>, with a comma between. Returns 0, or -1 when it does not fit (<dst>
 * then unchanged). */
int metrics_label_add(char *dst, size_t dstlen, const char *name, const char *value);

/* Appends a histogram's samples: <name>_bucket{<labels>,le="<bound>"} for each
 * of the <n> bounds with the cumulative count <cumulative>[i], then le="+Inf"
 * with <count>, then <name>_sum and <name>_count. <labels> may be NULL.
 * Returns 0 or -1 (out of memory). */
int metrics_histogram(struct metrics_buf *b, const char *name, const char *labels,
		      const double *bounds, const uint64_t *cumulative, size_t n,
		      double sum, uint64_t count);

/* Sets up <h> with <n> ascending bucket bounds (at most METRICS_HIST_MAX; extra
 * ones are ignored) and zero counts. */
void metrics_hist_init(struct metrics_hist *h, const double *bounds, size_t n);

/* Records one observation <v> in <h>. */
void metrics_hist_observe(struct metrics_hist *h, double v);

/* metrics_histogram() over the contents of <h>. */
int metrics_hist_write(struct metrics_buf *b, const char *name, const char *labels,
		       const struct metrics_hist *h);

#endif
