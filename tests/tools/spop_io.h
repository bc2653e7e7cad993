/* SPDX-License-Identifier: Apache-2.0 */
/* Shared by the SPOP test tools (spop_client, spoe_probe): blocking socket
 * I/O with timeouts, the HAProxy side of HELLO, NOTIFY building, ACK
 * checking and "--arg name=type:value" parsing. Header-only: each tool is
 * built from one .c file. This is test tooling, not the agent. */
#ifndef ACME_SPOA_SPOP_IO_H
#define ACME_SPOA_SPOP_IO_H

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>

#include "spoa/spop.h"

#define MAX_ARGS   16
#define FRAME_MAX  16380
#define BUF_SIZE   (FRAME_MAX + 4)

struct opts {
	const char *addr;
	const char *mode;
	long count;
	long pipeline;
	unsigned long long seed;
	const char *message;
	const char *host;
	const char *token;
	double timeout;
	double seconds;
	unsigned nargs;
	char *arg_names[MAX_ARGS];
	struct spop_data args[MAX_ARGS];
};

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}


static int set_timeouts(int fd, double secs)
{
	struct timeval tv;

	tv.tv_sec = (time_t)secs;
	tv.tv_usec = (suseconds_t)((secs - (double)tv.tv_sec) * 1e6);
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == -1 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) == -1)
		return -1;
	return 0;
}

static int dial(const char *addr, double timeout)
{
	struct addrinfo hints, *res = NULL, *ai;
	char host[256];
	const char *port, *colon;
	int fd = -1, one = 1;

	if (strncmp(addr, "unix:", 5) == 0) {
		struct sockaddr_un sun = { .sun_family = AF_UNIX };

		if (strlen(addr + 5) >= sizeof(sun.sun_path))
			return -1;
		strcpy(sun.sun_path, addr + 5);
		fd = socket(AF_UNIX, SOCK_STREAM, 0);
		if (fd == -1 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
			if (fd != -1)
				close(fd);
			return -1;
		}
		set_timeouts(fd, timeout);
		return fd;
	}
	if (addr[0] == '[') {
		const char *rb = strchr(addr, ']');

		if (!rb || rb[1] != ':' || (size_t)(rb - addr) > sizeof(host))
			return -1;
		snprintf(host, sizeof(host), "%.*s", (int)(rb - addr - 1), addr + 1);
		port = rb + 2;
	} else {
		colon = strrchr(addr, ':');
		if (!colon || (size_t)(colon - addr) >= sizeof(host))
			return -1;
		snprintf(host, sizeof(host), "%.*s", (int)(colon - addr), addr);
		port = colon + 1;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	if (getaddrinfo(host, port, &hints, &res) != 0)
		return -1;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
		if (fd == -1)
			continue;
		set_timeouts(fd, timeout);
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd != -1)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

static int send_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

		if (n <= 0) {
			if (n == -1 && errno == EINTR)
				continue;
			return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static int recv_all(int fd, char *buf, size_t len)
{
	while (len) {
		ssize_t n = recv(fd, buf, len, 0);

		if (n <= 0) {
			if (n == -1 && errno == EINTR)
				continue;
			return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Reads one frame (blocking, with the socket timeout). Returns 0 or -1. */
static int read_frame(int fd, char *buf, size_t cap, struct spop_frame *f)
{
	size_t flen;

	if (recv_all(fd, buf, 4) == -1)
		return -1;
	if (spop_frame_peek(buf, 4, (uint32_t)(cap - 4), &flen) == -1)
		return -1;
	flen = ((size_t)(unsigned char)buf[0] << 24) | ((size_t)(unsigned char)buf[1] << 16) |
	       ((size_t)(unsigned char)buf[2] << 8) | (unsigned char)buf[3];
	if (recv_all(fd, buf + 4, flen) == -1)
		return -1;
	return spop_frame_parse(buf + 4, flen, f);
}

static void print_disconnect(const struct spop_frame *f)
{
	struct spop_disconnect d;

	if (spop_disconnect_decode(f->payload, f->payload_len, &d) == 0)
		fprintf(stderr, "agent disconnect: status=%llu message=%.*s\n",
			(unsigned long long)d.status_code, (int)d.message_len,
			d.message ? d.message : "");
}

/* HELLO handshake. Returns the negotiated max-frame-size, or 0. */
static uint32_t hello(int fd, int healthcheck, int verbose)
{
	char buf[BUF_SIZE];
	struct spop_frame f;
	struct spop_arg kv;
	const char *p;
	uint32_t mfs = 0;
	int n;

	n = spop_encode_haproxy_hello(buf, sizeof(buf), "2.0", FRAME_MAX, "pipelining",
				      healthcheck, "spop-client");
	if (n < 0 || send_all(fd, buf, (size_t)n) == -1 || read_frame(fd, buf, sizeof(buf), &f) == -1) {
		fprintf(stderr, "hello: no answer\n");
		return 0;
	}
	if (f.type == SPOP_FRM_AGENT_DISCONNECT) {
		print_disconnect(&f);
		return 0;
	}
	if (f.type != SPOP_FRM_AGENT_HELLO) {
		fprintf(stderr, "hello: unexpected frame type %u\n", f.type);
		return 0;
	}
	p = f.payload;
	while (spop_kv_next(&p, f.payload + f.payload_len, &kv) == 1) {
		if (kv.name_len == 14 && !memcmp(kv.name, "max-frame-size", 14))
			mfs = (uint32_t)kv.val.u.u;
		if (verbose && (kv.val.type == SPOP_T_STR))
			printf("%.*s=%.*s\n", (int)kv.name_len, kv.name, (int)kv.val.u.s.len,
			       kv.val.u.s.ptr);
		else if (verbose)
			printf("%.*s=%llu\n", (int)kv.name_len, kv.name, (unsigned long long)kv.val.u.u);
	}
	return mfs;
}

static size_t build_notify(const struct opts *o, char *buf, size_t cap, uint64_t sid, uint64_t fid)
{
	char *p = buf, *start;
	unsigned i;

	if (spop_frame_begin(&p, buf + cap, &start, SPOP_FRM_NOTIFY, SPOP_FRAME_FL_FIN, sid, fid) == -1 ||
	    spop_encode_message(&p, buf + cap, o->message, strlen(o->message), o->nargs) == -1)
		return 0;
	for (i = 0; i < o->nargs; i++) {
		if (spop_encode_kv(&p, buf + cap, o->arg_names[i], &o->args[i]) == -1)
			return 0;
	}
	return spop_frame_end(start, p);
}

/* Checks one ACK frame; returns its action count or -1. <ka> receives a
 * "keyauth" set-var value if any. */
static int check_ack(const struct spop_frame *f, char *ka, size_t kalen)
{
	struct spop_action a;
	const char *p = f->payload;
	int n = 0, r;

	while ((r = spop_action_next(&p, f->payload + f->payload_len, &a)) == 1) {
		n++;
		if (ka && a.type == SPOP_ACT_SET_VAR && a.name_len == 7 &&
		    !memcmp(a.name, "keyauth", 7) &&
		    (a.val.type == SPOP_T_STR || a.val.type == SPOP_T_BIN))
			snprintf(ka, kalen, "%.*s", (int)a.val.u.s.len, a.val.u.s.ptr);
	}
	return r == -1 ? -1 : n;
}

static int parse_arg(struct opts *o, char *spec)
{
	char *eq = strchr(spec, '='), *colon, *val;
	struct spop_data *d;

	if (!eq || o->nargs >= MAX_ARGS)
		return -1;
	*eq = '\0';
	colon = strchr(eq + 1, ':');
	if (!colon)
		return -1;
	*colon = '\0';
	val = colon + 1;
	d = &o->args[o->nargs];
	memset(d, 0, sizeof(*d));
	if (!strcmp(eq + 1, "str") || !strcmp(eq + 1, "bin")) {
		d->type = eq[1] == 's' ? SPOP_T_STR : SPOP_T_BIN;
		d->u.s.ptr = val;
		d->u.s.len = strlen(val);
	} else if (!strcmp(eq + 1, "int")) {
		d->type = SPOP_T_INT64;
		d->u.i = strtoll(val, NULL, 10);
	} else if (!strcmp(eq + 1, "uint")) {
		d->type = SPOP_T_UINT64;
		d->u.u = strtoull(val, NULL, 10);
	} else if (!strcmp(eq + 1, "bool")) {
		d->type = SPOP_T_BOOL;
		d->u.b = !strcmp(val, "true") || !strcmp(val, "1");
	} else if (!strcmp(eq + 1, "ipv4")) {
		d->type = SPOP_T_IPV4;
		if (inet_pton(AF_INET, val, &d->u.v4) != 1)
			return -1;
	} else if (!strcmp(eq + 1, "ipv6")) {
		d->type = SPOP_T_IPV6;
		if (inet_pton(AF_INET6, val, &d->u.v6) != 1)
			return -1;
	} else if (!strcmp(eq + 1, "null")) {
		d->type = SPOP_T_NULL;
	} else {
		return -1;
	}
	o->arg_names[o->nargs++] = spec;
	return 0;
}


#endif
