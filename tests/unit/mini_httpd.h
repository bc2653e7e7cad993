/* SPDX-License-Identifier: Apache-2.0 */
/* A tiny HTTP/1.1 server for unit tests: listens on 127.0.0.1:0 in a thread,
 * one detached thread per connection, one request per connection. The test's
 * handler returns the raw response bytes (status line, headers, body). */
#ifndef TESTS_MINI_HTTPD_H
#define TESTS_MINI_HTTPD_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

struct mini_req {
	char method[16];
	char path[512];
	char content_type[128];
	char accept[128];
	char *body;
	size_t body_len;
};

/* Returns a malloc'd raw response (length in *len); *delay_ms delays the answer. */
typedef char *mini_handler(const struct mini_req *req, size_t *len, int *delay_ms, void *arg);

struct mini_httpd {
	int fd;
	int port;
	volatile int stop;
	pthread_t th;
	mini_handler *handler;
	void *arg;
};

struct mini_conn {
	struct mini_httpd *s;
	int fd;
};

static void mini_hdr(const char *buf, const char *name, char *out, size_t outlen)
{
	const char *p = buf;
	size_t n = strlen(name);

	out[0] = '\0';
	while ((p = strstr(p, "\r\n"))) {
		p += 2;
		if (!strncasecmp(p, name, n) && p[n] == ':') {
			const char *v = p + n + 1, *e;

			while (*v == ' ')
				v++;
			e = strstr(v, "\r\n");
			if (!e)
				return;
			snprintf(out, outlen, "%.*s", (int)(e - v), v);
			return;
		}
	}
}

static void *mini_conn_main(void *arg)
{
	struct mini_conn *cn = arg;
	char buf[65536], cl[32];
	size_t len = 0, hlen, want;
	struct mini_req req;
	char *resp, *hend;
	size_t rlen = 0, off = 0;
	int delay = 0;
	ssize_t n;

	memset(&req, 0, sizeof(req));
	while (len < sizeof(buf) - 1) {
		n = read(cn->fd, buf + len, sizeof(buf) - 1 - len);
		if (n <= 0)
			goto out;
		len += (size_t)n;
		buf[len] = '\0';
		if ((hend = strstr(buf, "\r\n\r\n")))
			break;
	}
	hend = strstr(buf, "\r\n\r\n");
	if (!hend)
		goto out;
	hlen = (size_t)(hend - buf) + 4;
	mini_hdr(buf, "Content-Length", cl, sizeof(cl));
	want = (size_t)atol(cl);
	if (want > sizeof(buf) - 1 - hlen)
		goto out;
	while (len < hlen + want) {
		n = read(cn->fd, buf + len, sizeof(buf) - 1 - len);
		if (n <= 0)
			goto out;
		len += (size_t)n;
	}
	buf[len] = '\0';
	sscanf(buf, "%15s %511s", req.method, req.path);
	mini_hdr(buf, "Content-Type", req.content_type, sizeof(req.content_type));
	mini_hdr(buf, "Accept", req.accept, sizeof(req.accept));
	req.body = buf + hlen;
	req.body_len = want;
	resp = cn->s->handler(&req, &rlen, &delay, cn->s->arg);
	if (delay > 0)
		usleep((useconds_t)delay * 1000);
	while (resp && off < rlen) {
		n = write(cn->fd, resp + off, rlen - off);
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	free(resp);
out:
	close(cn->fd);
	free(cn);
	return NULL;
}

static void *mini_accept_main(void *arg)
{
	struct mini_httpd *s = arg;

	while (!s->stop) {
		struct pollfd pfd = { .fd = s->fd, .events = POLLIN };
		struct mini_conn *cn;
		pthread_t th;
		int fd;

		if (poll(&pfd, 1, 50) <= 0)
			continue;
		fd = accept(s->fd, NULL, NULL);
		if (fd < 0)
			continue;
		cn = malloc(sizeof(*cn));
		if (!cn) {
			close(fd);
			continue;
		}
		cn->s = s;
		cn->fd = fd;
		if (pthread_create(&th, NULL, mini_conn_main, cn) != 0) {
			close(fd);
			free(cn);
			continue;
		}
		pthread_detach(th);
	}
	return NULL;
}

static int mini_httpd_start(struct mini_httpd *s, mini_handler *h, void *arg)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	int one = 1;

	memset(s, 0, sizeof(*s));
	s->handler = h;
	s->arg = arg;
	s->fd = socket(AF_INET, SOCK_STREAM, 0);
	if (s->fd < 0)
		return -1;
	setsockopt(s->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(s->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(s->fd, 64) < 0 ||
	    getsockname(s->fd, (struct sockaddr *)&sa, &sl) < 0) {
		close(s->fd);
		return -1;
	}
	s->port = ntohs(sa.sin_port);
	return pthread_create(&s->th, NULL, mini_accept_main, s) == 0 ? 0 : -1;
}

static void mini_httpd_stop(struct mini_httpd *s)
{
	s->stop = 1;
	pthread_join(s->th, NULL);
	close(s->fd);
}

/* Builds a response: status, extra header lines (each ending "\r\n"), body. */
static char *mini_response(int status, const char *headers, const char *body, size_t blen, size_t *len)
{
	char *out = NULL;
	int n;

	n = asprintf(&out, "HTTP/1.1 %d X\r\nConnection: close\r\nContent-Length: %zu\r\n%s\r\n", status,
		     blen, headers ? headers : "");
	if (n < 0)
		return NULL;
	out = realloc(out, (size_t)n + blen);
	if (!out)
		return NULL;
	memcpy(out + n, body, blen);
	*len = (size_t)n + blen;
	return out;
}

#endif
