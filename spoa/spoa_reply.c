/* SPDX-License-Identifier: Apache-2.0 */
/* ACK builder and deferred ACKs: see spoa.h.
 *
 * An ACK is built in place in the connection's write buffer, where room for a
 * whole frame was reserved before its NOTIFY was handled. When a handler
 * defers it, what it has so far moves into a struct spoa_deferred (a small
 * buffer inside it, grown up to the negotiated max-frame-size if a handler
 * adds that much). Once every deferral of the frame is done (or
 * defer_timeout passes) the ACK goes on the connection's ready list, and into
 * the write buffer as soon as it fits there (the connection is run from an
 * ev_prepare watcher, so all the ACKs completed in one loop turn go out in
 * one write before the loop waits again): a peer that stops reading holds
 * at most max_deferred_per_conn such buffers, never a growing write buffer.
 *
 * A struct spoa_deferred is freed when neither a handle (refs) nor a
 * connection (conn) holds it, so handles outlive connections and servers.
 */
#include <stdlib.h>
#include <string.h>

#include <ev.h>

#include "lib/log.h"
#include "spoa/spoa_int.h"

/* ---- building ------------------------------------------------------------ */

/* Gives a deferred ACK's builder a bigger buffer. Returns 0, or -1 when it is
 * at its limit or out of memory. */
static int reply_grow(struct spoa_reply *r)
{
	struct spoa_deferred *d = r->def;
	size_t used, cap;
	char *nb;

	if (!d || d->cap >= d->limit)
		return -1;
	cap = d->cap < 512 ? 1024 : d->cap * 2;
	if (cap > d->limit)
		cap = d->limit;
	nb = malloc(cap);
	if (!nb)
		return -1;
	used = (size_t)(r->p - r->start);
	memcpy(nb, r->start, used);
	free(d->heap);
	d->heap = nb;
	d->cap = cap;
	r->start = nb;
	r->p = nb + used;
	r->end = nb + cap;
	return 0;
}

static int reply_add(struct spoa_reply *r, enum spop_scope scope, const char *name,
		     const struct spop_data *val)
{
	size_t nlen;
	int ret;

	if (!r || !name || (unsigned)scope >= SPOP_SCOPE__MAX)
		return -1;
	nlen = strlen(name);
	for (;;) {
		/* on failure the encoders leave r->p where it was */
		if (val)
			ret = spop_encode_set_var(&r->p, r->end, scope, name, nlen, val);
		else
			ret = spop_encode_unset_var(&r->p, r->end, scope, name, nlen);
		if (ret == 0)
			break;
		if (reply_grow(r) == -1)
			return -1;
	}
	r->count++;
	return 0;
}

int spoa_reply_set_str(struct spoa_reply *r, enum spop_scope scope, const char *name,
		       const char *val, size_t len)
{
	struct spop_data d = { .type = SPOP_T_STR };

	if (!val && len)
		return -1;
	d.u.s.ptr = val;
	d.u.s.len = len;
	return reply_add(r, scope, name, &d);
}

int spoa_reply_set_int(struct spoa_reply *r, enum spop_scope scope, const char *name, int64_t v)
{
	struct spop_data d = { .type = SPOP_T_INT64 };

	d.u.i = v;
	return reply_add(r, scope, name, &d);
}

int spoa_reply_set_bool(struct spoa_reply *r, enum spop_scope scope, const char *name, int v)
{
	struct spop_data d = { .type = SPOP_T_BOOL };

	d.u.b = v ? 1 : 0;
	return reply_add(r, scope, name, &d);
}

int spoa_reply_unset(struct spoa_reply *r, enum spop_scope scope, const char *name)
{
	return reply_add(r, scope, name, NULL);
}

unsigned spoa_reply_count(const struct spoa_reply *r)
{
	return r ? r->count : 0;
}

int spoa_reply_begin(struct spoa_reply *r, struct spoa_conn *c, char *w, char *end,
		     uint64_t stream_id, uint64_t frame_id)
{
	r->conn = c;
	r->def = NULL;
	r->count = 0;
	if (spop_frame_begin(&w, end, &r->start, SPOP_FRM_ACK, SPOP_FRAME_FL_FIN, stream_id,
			     frame_id) == -1)
		return -1;
	r->p = w;
	r->end = r->start + 4 + c->max_frame;
	if (r->end > end)
		r->end = end;
	return 0;
}

size_t spoa_reply_finish(struct spoa_reply *r)
{
	/* HAProxy 3.1 stalls on an ACK without actions */
	if (r->count == 0)
		spoa_reply_set_bool(r, SPOP_SCOPE_TXN, "ack", 1);
	return spop_frame_end(r->start, r->p);
}

/* ---- deferred ACKs ------------------------------------------------------- */

static void def_free(struct spoa_deferred *d)
{
	free(d->heap);
	free(d);
}

/* Takes <d> off its connection: written, or dropped with the connection. */
static void def_detach(struct spoa_deferred *d)
{
	struct spoa_conn *c = d->conn;

	ev_timer_stop(c->srv->loop, &d->timer);
	if (d->state == SPOA_DEF_WAITING)
		TAILQ_REMOVE(&c->waiting, d, link);
	else
		TAILQ_REMOVE(&c->ready, d, link);
	c->ndeferred--;
	c->srv->stats.deferred_current--;
	d->conn = NULL;
	d->state = SPOA_DEF_DETACHED;
	if (!d->refs)
		def_free(d);
}

/* Completes <d>'s ACK and queues it on its connection's ready list. */
static void def_ready(struct spoa_deferred *d)
{
	struct spoa_conn *c = d->conn;

	ev_timer_stop(c->srv->loop, &d->timer);
	d->len = spoa_reply_finish(&d->reply);
	TAILQ_REMOVE(&c->waiting, d, link);
	TAILQ_INSERT_TAIL(&c->ready, d, link);
	d->state = SPOA_DEF_READY;
	spoa_srv_latency(c->srv, spoa_now_us() - d->t_read, 1);
}

static void cb_def_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct spoa_deferred *d = w->data;
	struct spoa_conn *c = d->conn;

	c->srv->stats.deferred_timeouts++;
	log_debug("spoa: conn=%llu peer=%s deferred ACK sent by timeout with %u actions",
		  (unsigned long long)c->id, c->peer, d->reply.count);
	def_ready(d);
	spoa_conn_kick(c);
}

struct spoa_deferred *spoa_reply_defer(struct spoa_reply *r)
{
	struct spoa_deferred *d;
	struct spoa_conn *c;
	struct spoa_server *srv;
	size_t used;

	if (!r || !r->conn)
		return NULL;
	if (r->def) {
		r->def->refs++;
		return r->def;
	}
	c = r->conn;
	srv = c->srv;
	if (c->ndeferred >= srv->conf.max_deferred_per_conn ||
	    srv->stats.deferred_current >= srv->conf.max_deferred) {
		srv->stats.deferred_refused++;
		return NULL;
	}
	d = calloc(1, sizeof(*d));
	if (!d) {
		srv->stats.deferred_refused++;
		return NULL;
	}
	used = (size_t)(r->p - r->start);
	d->limit = 4 + (size_t)c->max_frame;
	d->cap = sizeof(d->ibuf);
	if (used + 64 > d->cap) {
		d->cap = used * 2 < 1024 ? 1024 : used * 2;
		if (d->cap > d->limit)
			d->cap = d->limit;
		d->heap = malloc(d->cap);
		if (!d->heap) {
			free(d);
			srv->stats.deferred_refused++;
			return NULL;
		}
	}
	memcpy(d->heap ? d->heap : d->ibuf, r->start, used);
	r->start = d->heap ? d->heap : d->ibuf;
	r->p = r->start + used;
	r->end = r->start + d->cap;
	r->def = d;
	d->conn = c;
	d->state = SPOA_DEF_WAITING;
	d->refs = 2; /* the caller's, and the frame's until its handlers return */
	d->rp = r;
	ev_init(&d->timer, cb_def_timeout);
	d->timer.data = d;
	TAILQ_INSERT_TAIL(&c->waiting, d, link);
	c->ndeferred++;
	srv->stats.deferred_current++;
	srv->stats.deferred_total++;
	return d;
}

struct spoa_reply *spoa_deferred_reply(struct spoa_deferred *d)
{
	if (!d || d->state != SPOA_DEF_WAITING)
		return NULL;
	return d->rp;
}

void spoa_deferred_set_timeout(struct spoa_deferred *d, double seconds)
{
	if (!d || d->state != SPOA_DEF_WAITING || seconds <= 0)
		return;
	/* the longest asked of the frame's deferrals wins */
	if (seconds <= d->timeout)
		return;
	d->timeout = seconds;
	if (ev_is_active(&d->timer)) {
		ev_timer_stop(d->conn->srv->loop, &d->timer);
		ev_timer_set(&d->timer, seconds, 0.);
		ev_timer_start(d->conn->srv->loop, &d->timer);
	}
}

void spoa_deferred_done(struct spoa_deferred *d)
{
	struct spoa_conn *c;

	if (!d || !d->refs)
		return;
	if (--d->refs)
		return;
	c = d->conn;
	if (!c) {
		def_free(d);
		return;
	}
	if (d->state == SPOA_DEF_WAITING) {
		/* sent before the loop next waits, with the others completed
		 * meanwhile: we may be inside a handler of this very connection */
		def_ready(d);
		spoa_conn_kick(c);
	}
	/* READY: the connection frees it once written */
}

struct spoa_deferred *spoa_reply_end_frame(struct spoa_reply *r, char *w, size_t *len,
					   double t_read)
{
	struct spoa_deferred *d = r->def;
	struct spoa_conn *c = r->conn;

	if (!d) {
		*len = spoa_reply_finish(r);
		return NULL;
	}
	d->reply = *r;
	d->reply.conn = NULL;
	d->rp = &d->reply;
	d->t_read = t_read;
	if (--d->refs) {
		ev_timer_set(&d->timer, d->timeout > 0 ? d->timeout : c->srv->conf.defer_timeout, 0.);
		ev_timer_start(c->srv->loop, &d->timer);
		return d;
	}
	/* every deferral was done before the handlers returned: answer now, in
	 * the room reserved for this frame */
	*len = spoa_reply_finish(&d->reply);
	memcpy(w, d->reply.start, *len);
	def_detach(d);
	return NULL;
}

void spoa_conn_write_ready(struct spoa_conn *c)
{
	struct spoa_deferred *d;

	while ((d = TAILQ_FIRST(&c->ready)) && c->wcap - c->wlen >= d->len) {
		memcpy(c->wbuf + c->wlen, d->reply.start, d->len);
		c->wlen += d->len;
		c->srv->stats.acks++;
		def_detach(d);
	}
}

void spoa_conn_drop_deferred(struct spoa_conn *c)
{
	while (!TAILQ_EMPTY(&c->waiting))
		def_detach(TAILQ_FIRST(&c->waiting));
	while (!TAILQ_EMPTY(&c->ready))
		def_detach(TAILQ_FIRST(&c->ready));
}
