/* SPDX-License-Identifier: Apache-2.0 */
/* SPOP codec: see spop.h. Layouts follow doc/SPOE.txt section 3. */
#include <string.h>

#include "spoa/spop.h"

const char *const spop_status_names[SPOP_ST__MAX] = {
	[SPOP_ST_NORMAL] = "normal",
	[SPOP_ST_IO] = "I/O error",
	[SPOP_ST_TIMEOUT] = "a timeout occurred",
	[SPOP_ST_TOO_BIG] = "frame is too big",
	[SPOP_ST_INVALID] = "invalid frame received",
	[SPOP_ST_NO_VERSION] = "version value not found",
	[SPOP_ST_NO_FRAME_SIZE] = "max-frame-size value not found",
	[SPOP_ST_NO_CAPABILITIES] = "capabilities value not found",
	[SPOP_ST_BAD_VERSION] = "unsupported version",
	[SPOP_ST_BAD_FRAME_SIZE] = "max-frame-size too big or too small",
	[SPOP_ST_FRAG_NOT_SUPPORTED] = "payload fragmentation is not supported",
	[SPOP_ST_INTERLACED_FRAMES] = "invalid interlaced frames",
	[SPOP_ST_FRAME_ID_NOT_FOUND] = "frame-id not found",
	[SPOP_ST_RES_ALLOC] = "resource allocation error",
	[SPOP_ST_UNKNOWN] = "an unknown error occurred",
};

const char *const spop_type_names[SPOP_T__MAX] = {
	[SPOP_T_NULL] = "null", [SPOP_T_BOOL] = "bool", [SPOP_T_INT32] = "int32",
	[SPOP_T_UINT32] = "uint32", [SPOP_T_INT64] = "int64", [SPOP_T_UINT64] = "uint64",
	[SPOP_T_IPV4] = "ipv4", [SPOP_T_IPV6] = "ipv6", [SPOP_T_STR] = "str",
	[SPOP_T_BIN] = "bin",
};

const char *const spop_scope_names[SPOP_SCOPE__MAX] = {
	[SPOP_SCOPE_PROC] = "proc", [SPOP_SCOPE_SESS] = "sess", [SPOP_SCOPE_TXN] = "txn",
	[SPOP_SCOPE_REQ] = "req", [SPOP_SCOPE_RES] = "res",
};

const char *spop_status_str(unsigned code)
{
	if (code < SPOP_ST__MAX && spop_status_names[code])
		return spop_status_names[code];
	return "unknown status";
}

/* Peers encoding: the first byte carries 4 bits once >= 240, then 7 bits per
 * byte, high bit = more. */
int spop_decode_varint(const char **p, const char *end, uint64_t *v)
{
	const unsigned char *q = (const unsigned char *)*p;
	const unsigned char *e = (const unsigned char *)end;
	uint64_t val, add;
	unsigned shift = 4;
	unsigned b;
	int n;

	if (!q || q >= e)
		return -1;
	val = *q++;
	if (val < 240) {
		/* one byte: nearly every length and id on the hot path */
		*v = val;
		*p = (const char *)q;
		return 1;
	}
	do {
		if (q >= e || shift >= 64)
			return -1;
		b = *q++;
		/* reject bits that a shift would drop, then a carry out */
		if (shift > 56 && ((uint64_t)b >> (64 - shift)) != 0)
			return -1;
		add = (uint64_t)b << shift;
		if (val + add < val)
			return -1;
		val += add;
		shift += 7;
	} while (b >= 128);
	*v = val;
	n = (int)((const char *)q - *p);
	*p = (const char *)q;
	return n;
}

int spop_encode_varint(char **p, char *end, uint64_t v)
{
	unsigned char tmp[SPOP_VARINT_MAX_LEN];
	int n = 0;

	if (v < 240) {
		if (!*p || *p >= end)
			return -1;
		*(*p)++ = (char)v;
		return 1;
	}
	tmp[n++] = (unsigned char)(v | 240);
	v = (v - 240) >> 4;
	while (v >= 128) {
		tmp[n++] = (unsigned char)(v | 128);
		v = (v - 128) >> 7;
	}
	tmp[n++] = (unsigned char)v;
	if (!*p || end - *p < n)
		return -1;
	memcpy(*p, tmp, n);
	*p += n;
	return n;
}

int spop_decode_string(const char **p, const char *end, const char **s, size_t *len)
{
	const char *q = *p;
	uint64_t l;

	if (spop_decode_varint(&q, end, &l) == -1)
		return -1;
	if (l > (uint64_t)(end - q))
		return -1;
	*s = q;
	*len = (size_t)l;
	*p = q + l;
	return 0;
}

int spop_encode_string(char **p, char *end, const char *s, size_t len)
{
	char *q = *p;

	if (spop_encode_varint(&q, end, len) == -1)
		return -1;
	if ((size_t)(end - q) < len)
		return -1;
	if (len)
		memcpy(q, s, len);
	*p = q + len;
	return 0;
}

int spop_decode_data(const char **p, const char *end, struct spop_data *d)
{
	const char *q = *p;
	unsigned char tb;
	uint64_t v;

	if (q >= end)
		return -1;
	tb = (unsigned char)*q++;
	memset(d, 0, sizeof(*d));
	d->type = (enum spop_type)(tb & SPOP_DATA_T_MASK);
	switch (d->type) {
	case SPOP_T_NULL:
		break;
	case SPOP_T_BOOL:
		d->u.b = (tb & SPOP_DATA_FL_TRUE) ? 1 : 0;
		break;
	case SPOP_T_INT32:
	case SPOP_T_INT64:
		if (spop_decode_varint(&q, end, &v) == -1)
			return -1;
		d->u.i = (int64_t)v;
		if (d->type == SPOP_T_INT32 && (d->u.i < INT32_MIN || d->u.i > INT32_MAX))
			return -1;
		break;
	case SPOP_T_UINT32:
	case SPOP_T_UINT64:
		if (spop_decode_varint(&q, end, &v) == -1)
			return -1;
		if (d->type == SPOP_T_UINT32 && v > UINT32_MAX)
			return -1;
		d->u.u = v;
		break;
	case SPOP_T_IPV4:
		if (end - q < 4)
			return -1;
		memcpy(&d->u.v4, q, 4);
		q += 4;
		break;
	case SPOP_T_IPV6:
		if (end - q < 16)
			return -1;
		memcpy(&d->u.v6, q, 16);
		q += 16;
		break;
	case SPOP_T_STR:
	case SPOP_T_BIN:
		if (spop_decode_string(&q, end, &d->u.s.ptr, &d->u.s.len) == -1)
			return -1;
		break;
	default:
		return -1;
	}
	*p = q;
	return 0;
}

int spop_encode_data(char **p, char *end, const struct spop_data *d)
{
	char *q = *p;

	if (!q || q >= end || (unsigned)d->type >= SPOP_T__MAX)
		return -1;
	*q++ = (char)(d->type | (d->type == SPOP_T_BOOL && d->u.b ? SPOP_DATA_FL_TRUE : 0));
	switch (d->type) {
	case SPOP_T_NULL:
	case SPOP_T_BOOL:
		break;
	case SPOP_T_INT32:
	case SPOP_T_INT64:
		if (spop_encode_varint(&q, end, (uint64_t)d->u.i) == -1)
			return -1;
		break;
	case SPOP_T_UINT32:
	case SPOP_T_UINT64:
		if (spop_encode_varint(&q, end, d->u.u) == -1)
			return -1;
		break;
	case SPOP_T_IPV4:
		if (end - q < 4)
			return -1;
		memcpy(q, &d->u.v4, 4);
		q += 4;
		break;
	case SPOP_T_IPV6:
		if (end - q < 16)
			return -1;
		memcpy(q, &d->u.v6, 16);
		q += 16;
		break;
	case SPOP_T_STR:
	case SPOP_T_BIN:
		if (spop_encode_string(&q, end, d->u.s.ptr, d->u.s.len) == -1)
			return -1;
		break;
	default:
		return -1;
	}
	*p = q;
	return 0;
}

int spop_kv_next(const char **p, const char *end, struct spop_arg *kv)
{
	const char *q = *p;

	if (q == end)
		return 0;
	if (q > end)
		return -1;
	if (spop_decode_string(&q, end, &kv->name, &kv->name_len) == -1)
		return -1;
	if (spop_decode_data(&q, end, &kv->val) == -1)
		return -1;
	*p = q;
	return 1;
}

int spop_encode_kv(char **p, char *end, const char *name, const struct spop_data *val)
{
	char *q = *p;

	if (spop_encode_string(&q, end, name, name ? strlen(name) : 0) == -1)
		return -1;
	if (spop_encode_data(&q, end, val) == -1)
		return -1;
	*p = q;
	return 0;
}

int spop_frame_peek(const char *buf, size_t len, uint32_t max_frame, size_t *frame_len)
{
	const unsigned char *b = (const unsigned char *)buf;
	uint32_t fl;

	if (len < 4)
		return 0;
	fl = ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | b[3];
	if (fl > max_frame)
		return -1;
	if (len - 4 < fl)
		return 0;
	*frame_len = fl;
	return 1;
}

int spop_frame_parse(const char *frame, size_t len, struct spop_frame *f)
{
	const unsigned char *b = (const unsigned char *)frame;
	const char *q, *end = frame + len;

	if (len < 7)
		return -1;
	f->type = b[0];
	f->flags = ((uint32_t)b[1] << 24) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 8) | b[4];
	q = frame + 5;
	if (spop_decode_varint(&q, end, &f->stream_id) == -1)
		return -1;
	if (spop_decode_varint(&q, end, &f->frame_id) == -1)
		return -1;
	f->payload = q;
	f->payload_len = (size_t)(end - q);
	return 0;
}

int spop_frame_begin(char **p, char *end, char **start, unsigned type, uint32_t flags,
		     uint64_t stream_id, uint64_t frame_id)
{
	char *q = *p;

	if (!q || end - q < 9)
		return -1;
	*start = q;
	q += 4;
	*q++ = (char)type;
	*q++ = (char)(flags >> 24);
	*q++ = (char)(flags >> 16);
	*q++ = (char)(flags >> 8);
	*q++ = (char)flags;
	if (spop_encode_varint(&q, end, stream_id) == -1 ||
	    spop_encode_varint(&q, end, frame_id) == -1)
		return -1;
	*p = q;
	return 0;
}

size_t spop_frame_end(char *start, const char *p)
{
	size_t total = (size_t)(p - start);
	uint32_t fl = (uint32_t)(total - 4);

	start[0] = (char)(fl >> 24);
	start[1] = (char)(fl >> 16);
	start[2] = (char)(fl >> 8);
	start[3] = (char)fl;
	return total;
}

static int name_is(const struct spop_arg *kv, const char *name)
{
	size_t n = strlen(name);

	return kv->name_len == n && memcmp(kv->name, name, n) == 0;
}

static int data_as_uint(const struct spop_data *d, uint64_t *v)
{
	switch (d->type) {
	case SPOP_T_UINT32:
	case SPOP_T_UINT64:
		*v = d->u.u;
		return 0;
	case SPOP_T_INT32:
	case SPOP_T_INT64:
		if (d->u.i < 0)
			return -1;
		*v = (uint64_t)d->u.i;
		return 0;
	default:
		return -1;
	}
}

int spop_versions_has_major(const char *s, size_t len, unsigned major)
{
	size_t i = 0;

	while (i < len) {
		unsigned long mj = 0;
		int digits = 0, ok = 1;

		while (i < len && (s[i] == ' ' || s[i] == '\t'))
			i++;
		while (i < len && s[i] >= '0' && s[i] <= '9') {
			if (mj < 100000)
				mj = mj * 10 + (unsigned long)(s[i] - '0');
			digits++;
			i++;
		}
		while (i < len && (s[i] == ' ' || s[i] == '\t'))
			i++;
		if (!digits || i >= len || s[i] != '.')
			ok = 0;
		else {
			i++;
			while (i < len && (s[i] == ' ' || s[i] == '\t'))
				i++;
			digits = 0;
			while (i < len && s[i] >= '0' && s[i] <= '9') {
				digits++;
				i++;
			}
			while (i < len && (s[i] == ' ' || s[i] == '\t'))
				i++;
			if (!digits || (i < len && s[i] != ','))
				ok = 0;
		}
		if (ok && mj == major)
			return 1;
		while (i < len && s[i] != ',')
			i++;
		if (i < len)
			i++;
	}
	return 0;
}

enum spop_status spop_hello_decode(const char *payload, size_t len, struct spop_hello *h)
{
	const char *p = payload, *end = payload + len;
	struct spop_arg kv;
	int r;

	memset(h, 0, sizeof(*h));
	while ((r = spop_kv_next(&p, end, &kv)) == 1) {
		if (name_is(&kv, "supported-versions")) {
			if (kv.val.type == SPOP_T_STR) {
				h->versions = kv.val.u.s.ptr;
				h->versions_len = kv.val.u.s.len;
			}
		} else if (name_is(&kv, "max-frame-size")) {
			if (data_as_uint(&kv.val, &h->max_frame_size) == 0)
				h->has_max_frame_size = 1;
		} else if (name_is(&kv, "capabilities")) {
			if (kv.val.type == SPOP_T_STR) {
				h->capabilities = kv.val.u.s.ptr;
				h->capabilities_len = kv.val.u.s.len;
			}
		} else if (name_is(&kv, "healthcheck")) {
			if (kv.val.type == SPOP_T_BOOL)
				h->healthcheck = kv.val.u.b;
		} else if (name_is(&kv, "engine-id")) {
			if (kv.val.type == SPOP_T_STR) {
				h->engine_id = kv.val.u.s.ptr;
				h->engine_id_len = kv.val.u.s.len;
			}
		}
	}
	if (r == -1)
		return SPOP_ST_INVALID;
	if (!h->versions)
		return SPOP_ST_NO_VERSION;
	if (!h->has_max_frame_size)
		return SPOP_ST_NO_FRAME_SIZE;
	if (!h->capabilities)
		return SPOP_ST_NO_CAPABILITIES;
	if (!spop_versions_has_major(h->versions, h->versions_len, 2))
		return SPOP_ST_BAD_VERSION;
	if (h->max_frame_size < SPOP_MIN_FRAME_SIZE || h->max_frame_size > UINT32_MAX)
		return SPOP_ST_BAD_FRAME_SIZE;
	return SPOP_ST_NORMAL;
}

int spop_disconnect_decode(const char *payload, size_t len, struct spop_disconnect *d)
{
	const char *p = payload, *end = payload + len;
	struct spop_arg kv;
	int r;

	memset(d, 0, sizeof(*d));
	while ((r = spop_kv_next(&p, end, &kv)) == 1) {
		if (name_is(&kv, "status-code")) {
			if (data_as_uint(&kv.val, &d->status_code) == 0)
				d->has_status_code = 1;
		} else if (name_is(&kv, "message")) {
			if (kv.val.type == SPOP_T_STR) {
				d->message = kv.val.u.s.ptr;
				d->message_len = kv.val.u.s.len;
			}
		}
	}
	return r == -1 ? -1 : 0;
}

int spop_notify_next(const char **p, const char *end, struct spop_message *m,
		     struct spop_arg *args, size_t max_args, size_t *nargs)
{
	const char *q = *p;
	struct spop_arg tmp;
	unsigned i;

	*nargs = 0;
	if (q == end)
		return 0;
	if (q > end)
		return -1;
	if (spop_decode_string(&q, end, &m->name, &m->name_len) == -1)
		return -1;
	if (q >= end)
		return -1;
	m->nargs = (unsigned char)*q++;
	for (i = 0; i < m->nargs; i++) {
		struct spop_arg *a = i < max_args ? &args[i] : &tmp;

		/* an announced arg that is not there is a lie: reject */
		if (q >= end)
			return -1;
		if (spop_decode_string(&q, end, &a->name, &a->name_len) == -1)
			return -1;
		if (spop_decode_data(&q, end, &a->val) == -1)
			return -1;
	}
	*nargs = m->nargs < max_args ? m->nargs : max_args;
	*p = q;
	return 1;
}

int spop_encode_message(char **p, char *end, const char *name, size_t name_len, unsigned nargs)
{
	char *q = *p;

	if (nargs > 255 || spop_encode_string(&q, end, name, name_len) == -1 || q >= end)
		return -1;
	*q++ = (char)nargs;
	*p = q;
	return 0;
}

int spop_encode_set_var(char **p, char *end, enum spop_scope scope,
			const char *name, size_t name_len, const struct spop_data *val)
{
	char *q = *p;

	if ((unsigned)scope >= SPOP_SCOPE__MAX || !q || end - q < 3)
		return -1;
	*q++ = SPOP_ACT_SET_VAR;
	*q++ = 3;
	*q++ = (char)scope;
	if (spop_encode_string(&q, end, name, name_len) == -1 ||
	    spop_encode_data(&q, end, val) == -1)
		return -1;
	*p = q;
	return 0;
}

int spop_encode_unset_var(char **p, char *end, enum spop_scope scope,
			  const char *name, size_t name_len)
{
	char *q = *p;

	if ((unsigned)scope >= SPOP_SCOPE__MAX || !q || end - q < 3)
		return -1;
	*q++ = SPOP_ACT_UNSET_VAR;
	*q++ = 2;
	*q++ = (char)scope;
	if (spop_encode_string(&q, end, name, name_len) == -1)
		return -1;
	*p = q;
	return 0;
}

int spop_action_next(const char **p, const char *end, struct spop_action *a)
{
	const unsigned char *q = (const unsigned char *)*p;
	const char *c;

	if (*p == end)
		return 0;
	if (*p > end || end - *p < 3)
		return -1;
	memset(a, 0, sizeof(*a));
	if (q[0] == SPOP_ACT_SET_VAR && q[1] == 3)
		a->type = SPOP_ACT_SET_VAR;
	else if (q[0] == SPOP_ACT_UNSET_VAR && q[1] == 2)
		a->type = SPOP_ACT_UNSET_VAR;
	else
		return -1;
	if (q[2] >= SPOP_SCOPE__MAX)
		return -1;
	a->scope = (enum spop_scope)q[2];
	c = *p + 3;
	if (spop_decode_string(&c, end, &a->name, &a->name_len) == -1)
		return -1;
	if (a->type == SPOP_ACT_SET_VAR && spop_decode_data(&c, end, &a->val) == -1)
		return -1;
	*p = c;
	return 1;
}

static struct spop_data str_data(const char *s)
{
	struct spop_data d;

	memset(&d, 0, sizeof(d));
	d.type = SPOP_T_STR;
	d.u.s.ptr = s ? s : "";
	d.u.s.len = s ? strlen(s) : 0;
	return d;
}

static struct spop_data uint32_data(uint32_t v)
{
	struct spop_data d;

	memset(&d, 0, sizeof(d));
	d.type = SPOP_T_UINT32;
	d.u.u = v;
	return d;
}

int spop_encode_agent_hello(char *buf, size_t size, uint32_t max_frame_size,
			    const char *capabilities)
{
	char *p = buf, *end = buf + size, *start;
	struct spop_data d;

	if (spop_frame_begin(&p, end, &start, SPOP_FRM_AGENT_HELLO, SPOP_FRAME_FL_FIN, 0, 0) == -1)
		return -1;
	d = str_data("2.0");
	if (spop_encode_kv(&p, end, "version", &d) == -1)
		return -1;
	d = uint32_data(max_frame_size);
	if (spop_encode_kv(&p, end, "max-frame-size", &d) == -1)
		return -1;
	d = str_data(capabilities);
	if (spop_encode_kv(&p, end, "capabilities", &d) == -1)
		return -1;
	return (int)spop_frame_end(start, p);
}

int spop_encode_disconnect(char *buf, size_t size, unsigned type, uint32_t status,
			   const char *message)
{
	char *p = buf, *end = buf + size, *start;
	struct spop_data d;

	if (spop_frame_begin(&p, end, &start, type, SPOP_FRAME_FL_FIN, 0, 0) == -1)
		return -1;
	d = uint32_data(status);
	if (spop_encode_kv(&p, end, "status-code", &d) == -1)
		return -1;
	d = str_data(message);
	if (spop_encode_kv(&p, end, "message", &d) == -1)
		return -1;
	return (int)spop_frame_end(start, p);
}

int spop_encode_haproxy_hello(char *buf, size_t size, const char *versions,
			      uint32_t max_frame_size, const char *capabilities,
			      int healthcheck, const char *engine_id)
{
	char *p = buf, *end = buf + size, *start;
	struct spop_data d;

	if (spop_frame_begin(&p, end, &start, SPOP_FRM_HAPROXY_HELLO, SPOP_FRAME_FL_FIN, 0, 0) == -1)
		return -1;
	d = str_data(versions);
	if (spop_encode_kv(&p, end, "supported-versions", &d) == -1)
		return -1;
	d = uint32_data(max_frame_size);
	if (spop_encode_kv(&p, end, "max-frame-size", &d) == -1)
		return -1;
	d = str_data(capabilities);
	if (spop_encode_kv(&p, end, "capabilities", &d) == -1)
		return -1;
	if (healthcheck) {
		memset(&d, 0, sizeof(d));
		d.type = SPOP_T_BOOL;
		d.u.b = 1;
		if (spop_encode_kv(&p, end, "healthcheck", &d) == -1)
			return -1;
	}
	if (engine_id) {
		d = str_data(engine_id);
		if (spop_encode_kv(&p, end, "engine-id", &d) == -1)
			return -1;
	}
	return (int)spop_frame_end(start, p);
}
