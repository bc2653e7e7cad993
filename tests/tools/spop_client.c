/* SPDX-License-Identifier: Apache-2.0 */
/* spop_client: a command-line SPOP peer acting like HAProxy, for integration
 * tests and benchmarks against a running agent. Blocking sockets with
 * timeouts (poll for the pipelined mode); this is a test tool, not the agent.
 *
 *   spop_client ADDR notify --count N --pipeline K --message M --arg name=type:value ...
 *   spop_client ADDR bench --seconds D --pipeline K --message M --arg name=type:value ...
 *   spop_client ADDR garbage --count N --seed S
 *   spop_client ADDR http01 --host H --token T
 *   spop_client ADDR hello | healthcheck
 * ADDR is host:port, [ipv6]:port or unix:/path.
 */
#include "tests/tools/spop_io.h"

static void usage(void)
{
	fprintf(stderr,
		"usage: spop_client ADDR notify [--count N] [--pipeline K] --message M [--arg name=type:value]...\n"
		"       spop_client ADDR bench [--seconds D] [--pipeline K] --message M [--arg name=type:value]...\n"
		"       spop_client ADDR garbage [--count N] [--seed S]\n"
		"       spop_client ADDR http01 --host H --token T\n"
		"       spop_client ADDR hello | healthcheck\n"
		"  ADDR: host:port, [ipv6]:port, unix:/path; types: str bin int uint bool ipv4 ipv6 null\n"
		"  --timeout SECONDS (default 5); bench: --seconds D (default 5) after D/10 of warm-up,\n"
		"  prints rate=ACKs/s acks= seconds= all_acks= (warm-up included) acks_per_read=\n");
	exit(2);
}

static int cmd_notify(const struct opts *o)
{
	char *out = NULL, *in = NULL;
	unsigned char *acked = NULL;
	size_t outlen = 0, outoff = 0, inlen = 0, outcap;
	long sent = 0, acks = 0, errors = 0, inflight;
	double t0, last;
	int fd, ret = 1;

	fd = dial(o->addr, o->timeout);
	if (fd == -1) {
		fprintf(stderr, "notify: cannot connect to %s\n", o->addr);
		return 1;
	}
	if (!hello(fd, 0, 0))
		goto out;
	outcap = (size_t)o->pipeline * 512 + BUF_SIZE;
	out = malloc(outcap);
	in = malloc(BUF_SIZE * 2);
	acked = calloc((size_t)o->count + 1, 1);
	if (!out || !in || !acked)
		goto out;
	t0 = last = now_ms();
	while (acks + errors < o->count) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		size_t flen;
		int r;

		inflight = sent - acks - errors;
		/* top up to K frames in flight; stream-id i (0 first, as 2.6 does), frame-id i+1 */
		while (sent < o->count && inflight < o->pipeline && outlen + 512 <= outcap) {
			size_t n = build_notify(o, out + outlen, outcap - outlen, (uint64_t)sent,
						(uint64_t)sent + 1);

			if (!n) {
				fprintf(stderr, "notify: message does not fit a frame\n");
				goto out;
			}
			outlen += n;
			sent++;
			inflight++;
		}
		if (outoff < outlen)
			pfd.events |= POLLOUT;
		r = poll(&pfd, 1, 100);
		if (r == -1 && errno != EINTR)
			goto out;
		if (now_ms() - last > o->timeout * 1e3) {
			fprintf(stderr, "notify: timeout with %ld frames in flight\n", inflight);
			errors += sent - acks - errors;
			break;
		}
		if (r <= 0)
			continue;
		if (pfd.revents & POLLOUT) {
			ssize_t n = send(fd, out + outoff, outlen - outoff, MSG_NOSIGNAL | MSG_DONTWAIT);

			if (n > 0) {
				outoff += (size_t)n;
				if (outoff == outlen)
					outoff = outlen = 0;
			} else if (n == -1 && errno != EAGAIN && errno != EINTR) {
				fprintf(stderr, "notify: send: %s\n", strerror(errno));
				break;
			}
		}
		if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t n = recv(fd, in + inlen, BUF_SIZE * 2 - inlen, MSG_DONTWAIT);

			if (n == 0 || (n == -1 && errno != EAGAIN && errno != EINTR)) {
				fprintf(stderr, "notify: connection closed by agent\n");
				break;
			}
			if (n > 0) {
				inlen += (size_t)n;
				last = now_ms();
			}
			while ((r = spop_frame_peek(in, inlen, BUF_SIZE - 4, &flen)) == 1) {
				struct spop_frame f;

				if (spop_frame_parse(in + 4, flen, &f) == -1 || f.type != SPOP_FRM_ACK) {
					if (f.type == SPOP_FRM_AGENT_DISCONNECT)
						print_disconnect(&f);
					fprintf(stderr, "notify: unexpected frame\n");
					errors = o->count;
					goto done;
				}
				if (f.frame_id == 0 || f.frame_id > (uint64_t)sent || acked[f.frame_id] ||
				    f.stream_id != f.frame_id - 1 || !(f.flags & SPOP_FRAME_FL_FIN) ||
				    check_ack(&f, NULL, 0) < 1) {
					fprintf(stderr, "notify: bad ACK stream-id=%llu frame-id=%llu\n",
						(unsigned long long)f.stream_id,
						(unsigned long long)f.frame_id);
					errors++;
				} else {
					acked[f.frame_id] = 1;
					acks++;
				}
				memmove(in, in + 4 + flen, inlen - 4 - flen);
				inlen -= 4 + flen;
			}
			if (r == -1) {
				fprintf(stderr, "notify: oversized frame from agent\n");
				errors = o->count;
				break;
			}
		}
	}
done:
	printf("acks=%ld errors=%ld elapsed_ms=%.1f\n", acks, errors, now_ms() - t0);
	ret = (acks == o->count && errors == 0) ? 0 : 1;
out:
	free(out);
	free(in);
	free(acked);
	close(fd);
	return ret;
}

/* Load generator: keeps <pipeline> NOTIFYs in flight on one connection for
 * <seconds> (after a warm-up of a tenth of it) and prints the ACK rate. Each
 * in-flight frame owns a slot: stream-id = slot, frame-id = a sequence number,
 * so ACKs are matched whatever their order. Blocking recv/send, one of each
 * per batch: the generator must cost less than what it measures. */
static int cmd_bench(const struct opts *o)
{
	char *out = NULL, *in = NULL;
	uint64_t *expect = NULL, seq = 0;
	unsigned *free_slots = NULL, nfree = 0;
	size_t inlen = 0, incap = 1 << 20, outcap, off, flen;
	long acks = 0, errors = 0, win_acks = 0, reads = 0, win_reads = 0;
	double t0, t_warm, t_end, t_win = 0, now;
	int fd, ret = 1, r;
	unsigned i;

	fd = dial(o->addr, o->timeout);
	if (fd == -1) {
		fprintf(stderr, "bench: cannot connect to %s\n", o->addr);
		return 1;
	}
	if (!hello(fd, 0, 0))
		goto out;
	outcap = (size_t)o->pipeline * 512 + BUF_SIZE;
	out = malloc(outcap);
	in = malloc(incap);
	expect = calloc((size_t)o->pipeline, sizeof(*expect));
	free_slots = calloc((size_t)o->pipeline, sizeof(*free_slots));
	if (!out || !in || !expect || !free_slots)
		goto out;
	for (i = 0; i < (unsigned)o->pipeline; i++)
		free_slots[nfree++] = (unsigned)o->pipeline - 1 - i;
	t0 = now_ms();
	t_warm = t0 + o->seconds * 100;
	t_end = t_warm + o->seconds * 1e3;
	for (;;) {
		size_t outlen = 0;

		while (nfree) {
			unsigned slot = free_slots[--nfree];
			size_t n = build_notify(o, out + outlen, outcap - outlen, slot, ++seq);

			if (!n) {
				fprintf(stderr, "bench: message does not fit a frame\n");
				goto out;
			}
			expect[slot] = seq;
			outlen += n;
		}
		if (outlen && send_all(fd, out, outlen) == -1) {
			fprintf(stderr, "bench: send: %s\n", strerror(errno));
			goto done;
		}
		r = (int)recv(fd, in + inlen, incap - inlen, 0);
		if (r <= 0) {
			fprintf(stderr, "bench: %s\n", r == 0 ? "connection closed by agent" :
				"recv timeout or error");
			errors++;
			goto done;
		}
		inlen += (size_t)r;
		reads++;
		off = 0;
		while ((r = spop_frame_peek(in + off, inlen - off, BUF_SIZE - 4, &flen)) == 1) {
			struct spop_frame f;

			if (spop_frame_parse(in + off + 4, flen, &f) == -1 || f.type != SPOP_FRM_ACK) {
				if (f.type == SPOP_FRM_AGENT_DISCONNECT)
					print_disconnect(&f);
				fprintf(stderr, "bench: unexpected frame\n");
				errors++;
				goto done;
			}
			if (f.stream_id >= (uint64_t)o->pipeline || expect[f.stream_id] != f.frame_id ||
			    !(f.flags & SPOP_FRAME_FL_FIN) || check_ack(&f, NULL, 0) < 1) {
				fprintf(stderr, "bench: bad ACK stream-id=%llu frame-id=%llu\n",
					(unsigned long long)f.stream_id, (unsigned long long)f.frame_id);
				errors++;
				goto done;
			}
			expect[f.stream_id] = 0;
			free_slots[nfree++] = (unsigned)f.stream_id;
			acks++;
			off += 4 + flen;
		}
		if (r == -1) {
			fprintf(stderr, "bench: oversized frame from agent\n");
			errors++;
			goto done;
		}
		memmove(in, in + off, inlen - off);
		inlen -= off;
		now = now_ms();
		if (!t_win && now >= t_warm) {
			t_win = now;
			win_acks = acks;
			win_reads = reads;
		}
		if (now >= t_end)
			break;
	}
done:
	now = now_ms();
	if (t_win && now > t_win)
		printf("rate=%.0f acks=%ld seconds=%.3f all_acks=%ld pipeline=%ld acks_per_read=%.1f errors=%ld\n",
		       (double)(acks - win_acks) * 1e3 / (now - t_win), acks - win_acks,
		       (now - t_win) / 1e3, acks, o->pipeline,
		       reads > win_reads ? (double)(acks - win_acks) / (double)(reads - win_reads) : 0.,
		       errors);
	else
		printf("rate=0 acks=0 seconds=0 all_acks=%ld pipeline=%ld errors=%ld\n", acks,
		       o->pipeline, errors);
	ret = errors == 0 && t_win ? 0 : 1;
out:
	free(out);
	free(in);
	free(expect);
	free(free_slots);
	close(fd);
	return ret;
}

static int cmd_http01(struct opts *o)
{
	char buf[BUF_SIZE], ka[BUF_SIZE];
	struct spop_frame f;
	size_t n;
	int fd, ret = 1;

	if (!o->host || !o->token)
		usage();
	o->message = o->message ? o->message : "acme-http01";
	o->nargs = 2;
	o->arg_names[0] = "host";
	o->args[0].type = SPOP_T_STR;
	o->args[0].u.s.ptr = o->host;
	o->args[0].u.s.len = strlen(o->host);
	o->arg_names[1] = "token";
	o->args[1].type = SPOP_T_STR;
	o->args[1].u.s.ptr = o->token;
	o->args[1].u.s.len = strlen(o->token);
	fd = dial(o->addr, o->timeout);
	if (fd == -1) {
		fprintf(stderr, "http01: cannot connect to %s\n", o->addr);
		return 1;
	}
	if (!hello(fd, 0, 0))
		goto out;
	n = build_notify(o, buf, sizeof(buf), 1, 1);
	if (!n || send_all(fd, buf, n) == -1 || read_frame(fd, buf, sizeof(buf), &f) == -1) {
		fprintf(stderr, "http01: no ACK\n");
		goto out;
	}
	if (f.type != SPOP_FRM_ACK || f.stream_id != 1 || f.frame_id != 1) {
		fprintf(stderr, "http01: unexpected frame type %u\n", f.type);
		goto out;
	}
	ka[0] = '\0';
	if (check_ack(&f, ka, sizeof(ka)) < 1) {
		fprintf(stderr, "http01: empty or malformed ACK\n");
		goto out;
	}
	printf("%s\n", ka[0] ? ka : "<none>");
	ret = 0;
out:
	close(fd);
	return ret;
}

static uint64_t rnd(uint64_t *s)
{
	/* xorshift64* */
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ULL;
}

static size_t put_len(char *buf, size_t len)
{
	buf[0] = (char)(len >> 24);
	buf[1] = (char)(len >> 16);
	buf[2] = (char)(len >> 8);
	buf[3] = (char)len;
	return len + 4;
}

/* Builds one malformed exchange into <buf>; returns its length. */
static size_t make_garbage(uint64_t *s, char *buf, size_t cap)
{
	char *p, *start;
	size_t len = 0, i, n;
	int kind = (int)(rnd(s) % 9);
	struct spop_data d = { .type = SPOP_T_STR };

	d.u.s.ptr = "a.test";
	d.u.s.len = 6;
	switch (kind) {
	case 0: /* random bytes, random length prefix */
		n = 4 + rnd(s) % 300;
		for (i = 0; i < n; i++)
			buf[i] = (char)rnd(s);
		return n;
	case 1: /* oversized length prefix */
		put_len(buf, 0x10000 + rnd(s) % 0x1000000);
		return 4;
	case 2: /* unknown frame type */
		buf[4] = (char)(4 + rnd(s) % 90);
		memcpy(buf + 5, "\x00\x00\x00\x01\x00\x00", 6);
		return put_len(buf, 7);
	default:
		break;
	}
	/* a valid HELLO, then (maybe) a NOTIFY, then mutate some bytes */
	len = (size_t)spop_encode_haproxy_hello(buf, cap, "2.0", FRAME_MAX, "pipelining", 0, NULL);
	if (kind == 3) /* NOTIFY before HELLO */
		len = 0;
	p = buf + len;
	if (spop_frame_begin(&p, buf + cap, &start, SPOP_FRM_NOTIFY,
			     kind == 4 ? 0 : SPOP_FRAME_FL_FIN, rnd(s) % 1000, rnd(s) % 1000) == 0 &&
	    spop_encode_message(&p, buf + cap, "acme-sni", 8, kind == 5 ? 3 : 1) == 0 &&
	    spop_encode_kv(&p, buf + cap, "sni", &d) == 0)
		len += spop_frame_end(start, p);
	if (kind >= 6) {
		n = 1 + rnd(s) % 4;
		for (i = 0; i < n; i++)
			buf[rnd(s) % len] ^= (char)(1 + rnd(s) % 255);
	}
	if (kind == 8) /* cut short */
		len = 1 + rnd(s) % len;
	return len;
}

/* Reads until close; returns 1 if an AGENT-DISCONNECT came, 0 if only a
 * close, -1 on timeout (a hang). */
static int await_close(int fd, double secs)
{
	char buf[BUF_SIZE];
	size_t have = 0, flen;
	int got_disc = 0;
	double deadline = now_ms() + secs * 1e3;

	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		double left = deadline - now_ms();
		ssize_t n;

		if (left <= 0)
			return -1;
		if (poll(&pfd, 1, (int)left + 1) <= 0)
			continue;
		n = recv(fd, buf + have, sizeof(buf) - have, MSG_DONTWAIT);
		if (n == 0 || (n == -1 && errno != EAGAIN && errno != EINTR))
			return got_disc;
		if (n < 0)
			continue;
		have += (size_t)n;
		while (spop_frame_peek(buf, have, BUF_SIZE - 4, &flen) == 1) {
			struct spop_frame f;

			if (spop_frame_parse(buf + 4, flen, &f) == 0 && f.type == SPOP_FRM_AGENT_DISCONNECT)
				got_disc = 1;
			memmove(buf, buf + 4 + flen, have - 4 - flen);
			have -= 4 + flen;
		}
		if (have == sizeof(buf))
			have = 0;
	}
}

static int cmd_garbage(const struct opts *o)
{
	char buf[4096];
	uint64_t s = o->seed ? o->seed : 1;
	long i, disc = 0, closes = 0, hangs = 0, fails = 0;
	double t0 = now_ms();
	int alive = 0, fd;

	for (i = 0; i < o->count; i++) {
		size_t len = make_garbage(&s, buf, sizeof(buf));
		int r;

		fd = dial(o->addr, 2.0);
		if (fd == -1) {
			fails++;
			continue;
		}
		/* the agent may close before we finish writing: not an error */
		send_all(fd, buf, len);
		/* EOF after the garbage: even a partial frame must end in a close */
		shutdown(fd, SHUT_WR);
		r = await_close(fd, 2.0);
		if (r == 1)
			disc++;
		else if (r == 0)
			closes++;
		else {
			hangs++;
			fprintf(stderr, "garbage: #%ld hung (%zu bytes)\n", i, len);
		}
		close(fd);
	}
	/* the agent must still serve a well-formed peer */
	fd = dial(o->addr, 2.0);
	if (fd != -1) {
		alive = hello(fd, 0, 0) != 0;
		close(fd);
	}
	printf("garbage=%ld disconnects=%ld closes=%ld hangs=%ld connect_failures=%ld alive=%d elapsed_ms=%.1f\n",
	       o->count, disc, closes, hangs, fails, alive, now_ms() - t0);
	return (hangs == 0 && fails == 0 && alive) ? 0 : 1;
}

int main(int argc, char **argv)
{
	struct opts o = { .count = 1, .pipeline = 1, .timeout = 5.0, .seconds = 5.0 };
	int i;

	if (argc < 3)
		usage();
	o.addr = argv[1];
	o.mode = argv[2];
	for (i = 3; i < argc; i++) {
		const char *k = argv[i];

		if (i + 1 >= argc)
			usage();
		if (!strcmp(k, "--count"))
			o.count = atol(argv[++i]);
		else if (!strcmp(k, "--pipeline"))
			o.pipeline = atol(argv[++i]);
		else if (!strcmp(k, "--seed"))
			o.seed = strtoull(argv[++i], NULL, 10);
		else if (!strcmp(k, "--message"))
			o.message = argv[++i];
		else if (!strcmp(k, "--host"))
			o.host = argv[++i];
		else if (!strcmp(k, "--token"))
			o.token = argv[++i];
		else if (!strcmp(k, "--timeout"))
			o.timeout = atof(argv[++i]);
		else if (!strcmp(k, "--seconds"))
			o.seconds = atof(argv[++i]);
		else if (!strcmp(k, "--arg")) {
			if (parse_arg(&o, argv[++i]) == -1) {
				fprintf(stderr, "bad --arg %s (want name=type:value)\n", argv[i]);
				return 2;
			}
		} else
			usage();
	}
	if (o.count < 1 || o.pipeline < 1 || o.timeout <= 0)
		usage();
	if (!strcmp(o.mode, "notify")) {
		if (!o.message)
			usage();
		return cmd_notify(&o);
	}
	if (!strcmp(o.mode, "bench")) {
		if (!o.message || o.seconds < 0)
			usage();
		return cmd_bench(&o);
	}
	if (!strcmp(o.mode, "http01"))
		return cmd_http01(&o);
	if (!strcmp(o.mode, "garbage"))
		return cmd_garbage(&o);
	if (!strcmp(o.mode, "hello") || !strcmp(o.mode, "healthcheck")) {
		int fd = dial(o.addr, o.timeout), ok;

		if (fd == -1) {
			fprintf(stderr, "cannot connect to %s\n", o.addr);
			return 1;
		}
		ok = hello(fd, !strcmp(o.mode, "healthcheck"), 1) != 0;
		close(fd);
		return ok ? 0 : 1;
	}
	usage();
	return 2;
}
