/* SPDX-License-Identifier: Apache-2.0 */
/* The per-client budget of new names (clientbudget.h): a map network ->
 * window with a list in order of last count, the least recent first, which
 * the bound evicts from. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "core/clientbudget.h"
#include "lib/hmap.h"

struct cb_net {
	TAILQ_ENTRY(cb_net) lru;
	time_t start;		/* the window's first counted name */
	unsigned n;		/* names counted in the window */
	char net[];
};

struct clientbudget {
	struct hmap nets;		/* network -> struct cb_net */
	TAILQ_HEAD(, cb_net) lru;	/* least recently counted first */
	size_t max_nets;
	uint64_t evicted;
};

struct clientbudget *clientbudget_new(size_t max_nets)
{
	struct clientbudget *b = calloc(1, sizeof(*b));

	if (!b || hmap_init(&b->nets) == -1) {
		free(b);
		return NULL;
	}
	TAILQ_INIT(&b->lru);
	b->max_nets = max_nets ? max_nets : 1;
	return b;
}

void clientbudget_free(struct clientbudget *b)
{
	if (!b)
		return;
	hmap_clear(&b->nets, free);
	free(b);
}

void clientbudget_net4(const struct in_addr *a, char *out)
{
	const unsigned char *p = (const unsigned char *)&a->s_addr;

	snprintf(out, CLIENTBUDGET_NET_MAX, "%u.%u.%u.0/24", p[0], p[1], p[2]);
}

void clientbudget_net6(const struct in6_addr *a, char *out)
{
	struct in6_addr m;
	char s[INET6_ADDRSTRLEN];

	if (IN6_IS_ADDR_V4MAPPED(a)) {
		struct in_addr v4;

		memcpy(&v4.s_addr, &a->s6_addr[12], 4);
		clientbudget_net4(&v4, out);
		return;
	}
	memset(&m, 0, sizeof(m));
	memcpy(m.s6_addr, a->s6_addr, 7);	/* 56 bits */
	if (!inet_ntop(AF_INET6, &m, s, sizeof(s)))
		snprintf(s, sizeof(s), "::");
	snprintf(out, CLIENTBUDGET_NET_MAX, "%s/56", s);
}

int clientbudget_over(struct clientbudget *b, const char *net, unsigned limit, time_t now)
{
	const struct cb_net *e;

	if (limit == 0)
		return 0;
	e = hmap_get(&b->nets, net);
	if (!e || now - e->start >= CLIENTBUDGET_WINDOW_S || now < e->start)
		return 0;
	return e->n >= limit;
}

int clientbudget_count(struct clientbudget *b, const char *net, time_t now)
{
	struct cb_net *e = hmap_get(&b->nets, net);
	size_t len;

	if (e) {
		TAILQ_REMOVE(&b->lru, e, lru);
	} else {
		if (b->nets.count >= b->max_nets) {
			struct cb_net *old = TAILQ_FIRST(&b->lru);

			TAILQ_REMOVE(&b->lru, old, lru);
			hmap_del(&b->nets, old->net);
			free(old);
			b->evicted++;
		}
		len = strlen(net);
		e = calloc(1, sizeof(*e) + len + 1);
		if (!e)
			return -1;
		memcpy(e->net, net, len + 1);
		if (hmap_put(&b->nets, e->net, e, NULL) == -1) {
			free(e);
			return -1;
		}
		e->start = now;
	}
	TAILQ_INSERT_TAIL(&b->lru, e, lru);
	/* a window that ended (or a clock that went back) starts again */
	if (now - e->start >= CLIENTBUDGET_WINDOW_S || now < e->start) {
		e->start = now;
		e->n = 0;
	}
	e->n++;
	return 0;
}

void clientbudget_stats(const struct clientbudget *b, struct clientbudget_stats *out)
{
	out->evicted = b->evicted;
	out->nets = b->nets.count;
}
