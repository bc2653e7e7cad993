/* SPDX-License-Identifier: Apache-2.0 */
/* spoe_probe: sends one NOTIFY every --interval-ms for --seconds on one SPOP
 * connection, acting like HAProxy, and times every ACK (matched by frame-id:
 * ACKs may come back out of order). For the stall tests and the bench.
 *
 *   spoe_probe ADDR --seconds D --interval-ms I --message M --arg name=type:value...
 *
 * "{n}" in a str argument is replaced by the message's sequence number, so
 * each message can carry a new name. Prints one line:
 *   sent=N acks=N errors=E max_ms=X p99_ms=Y p50_ms=Z max_at_s=T
 * (T: when the slowest one was sent, in seconds from the first)
 * and exits 0 when every NOTIFY got its ACK. Sends stay on schedule while
 * ACKs are late, so a stall shows in the latency of every message it held. */
#include "tests/tools/spop_io.h"

#include <poll.h>

/* build_notify() with "{n}" in str arguments replaced by <seq>. */
static size_t probe_notify(const struct opts *o, char *buf, size_t cap, uint64_t seq)
{
	struct opts m = *o;
	static char vals[MAX_ARGS][512];
	unsigned i;

	for (i = 0; i < m.nargs; i++) {
		const struct spop_data *d = &o->args[i];
		const char *at;

		if (d->type != SPOP_T_STR || !(at = memmem(d->u.s.ptr, d->u.s.len, "{n}", 3)))
			continue;
		snprintf(vals[i], sizeof(vals[i]), "%.*s%llu%.*s", (int)(at - d->u.s.ptr), d->u.s.ptr,
			 (unsigned long long)seq, (int)(d->u.s.len - (at - d->u.s.ptr) - 3), at + 3);
		m.args[i].u.s.ptr = vals[i];
		m.args[i].u.s.len = strlen(vals[i]);
	}
	return build_notify(&m, buf, cap, seq, seq);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	struct opts o = { .timeout = 5, .seconds = 5 };
	double interval = 10, *sent = NULL, *lat = NULL, t0, next, end, now;
	long total, nsent = 0, acks = 0, errors = 0, i;
	char *in = NULL, out[BUF_SIZE];
	size_t inlen = 0, flen;
	int fd = -1, r, ret = 1;

	if (argc < 2) {
		fprintf(stderr, "usage: spoe_probe ADDR --seconds D --interval-ms I --message M "
			"[--arg name=type:value]...\n");
		return 2;
	}
	o.addr = argv[1];
	for (i = 2; i < argc; i++) {
		if (i + 1 >= argc)
			return 2;
		if (!strcmp(argv[i], "--seconds"))
			o.seconds = atof(argv[++i]);
		else if (!strcmp(argv[i], "--interval-ms"))
			interval = atof(argv[++i]);
		else if (!strcmp(argv[i], "--message"))
			o.message = argv[++i];
		else if (!strcmp(argv[i], "--arg")) {
			if (parse_arg(&o, argv[++i]) == -1) {
				fprintf(stderr, "bad --arg %s (want name=type:value)\n", argv[i]);
				return 2;
			}
		} else {
			fprintf(stderr, "unknown option %s\n", argv[i]);
			return 2;
		}
	}
	if (!o.message || o.seconds <= 0 || interval < 1)
		return 2;
	total = (long)(o.seconds * 1000 / interval) + 1;
	sent = calloc((size_t)total + 1, sizeof(*sent));
	lat = calloc((size_t)total + 1, sizeof(*lat));
	in = malloc(1 << 20);
	if (!sent || !lat || !in)
		goto out;
	fd = dial(o.addr, o.timeout);
	if (fd == -1 || !hello(fd, 0, 0)) {
		fprintf(stderr, "spoe_probe: cannot connect or say hello to %s\n", o.addr);
		goto out;
	}
	t0 = next = now_ms();
	end = t0 + o.seconds * 1000;
	/* after the last send, 2 s for the last ACKs */
	while ((now = now_ms()) < end + 2000 && (nsent < total || acks + errors < nsent)) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int wait_ms;

		if (nsent < total && now >= next) {
			size_t n = probe_notify(&o, out, sizeof(out), (uint64_t)nsent + 1);

			if (!n || send_all(fd, out, n) == -1) {
				fprintf(stderr, "spoe_probe: send failed\n");
				break;
			}
			sent[++nsent] = now_ms();
			next += interval;
			continue;
		}
		wait_ms = nsent < total ? (int)(next - now) + 1 : 50;
		if (poll(&pfd, 1, wait_ms < 0 ? 0 : wait_ms) <= 0)
			continue;
		r = (int)recv(fd, in + inlen, (1 << 20) - inlen, 0);
		if (r <= 0) {
			fprintf(stderr, "spoe_probe: connection closed by the agent\n");
			break;
		}
		inlen += (size_t)r;
		now = now_ms();
		{
			size_t off = 0;

			while ((r = spop_frame_peek(in + off, inlen - off, BUF_SIZE - 4, &flen)) == 1) {
				struct spop_frame f;

				if (spop_frame_parse(in + off + 4, flen, &f) == -1 || f.type != SPOP_FRM_ACK ||
				    f.frame_id < 1 || f.frame_id > (uint64_t)nsent || lat[f.frame_id] > 0 ||
				    check_ack(&f, NULL, 0) < 1) {
					errors++;
				} else {
					lat[f.frame_id] = now - sent[f.frame_id] + 1e-6;
					acks++;
				}
				off += 4 + flen;
			}
			if (r == -1) {
				fprintf(stderr, "spoe_probe: malformed frame from the agent\n");
				break;
			}
			memmove(in, in + off, inlen - off);
			inlen -= off;
		}
	}
	errors += nsent - acks;	/* bad frames plus NOTIFYs left without an ACK */
	{
		double *v = calloc((size_t)acks + 1, sizeof(*v)), max = 0, max_at = 0;
		long k = 0;

		if (!v)
			goto out;
		for (i = 1; i <= nsent; i++) {
			if (lat[i] > 0)
				v[k++] = lat[i];
			if (lat[i] > max) {
				max = lat[i];
				max_at = (sent[i] - t0) / 1000;
			}
		}
		qsort(v, (size_t)k, sizeof(*v), cmp_double);
		printf("sent=%ld acks=%ld errors=%ld max_ms=%.2f p99_ms=%.2f p50_ms=%.2f max_at_s=%.2f\n",
		       nsent, acks, errors, max, k ? v[(k * 99) / 100 < k ? (k * 99) / 100 : k - 1] : 0.,
		       k ? v[k / 2] : 0., max_at);
		free(v);
	}
	ret = errors == 0 && acks == total ? 0 : 1;
out:
	if (fd != -1)
		close(fd);
	free(sent);
	free(lat);
	free(in);
	return ret;
}
