/* SPDX-License-Identifier: Apache-2.0 */
/* SPOP codec fed byte arrays: varints, typed data, KV lists, frames as
 * HAProxy sends them (built by hand from SPOE.txt section 3). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <cmocka.h>

#include "spoa/spop.h"

/* HAPROXY-HELLO as HAProxy 2.6 writes it (without the length prefix):
 * type 1, flags FIN, stream-id 0, frame-id 0, then the KV list. */
static const char hello_frame[] =
	"\x01" "\x00\x00\x00\x01" "\x00" "\x00"
	"\x12" "supported-versions" "\x08" "\x03" "2.0"
	"\x0e" "max-frame-size" "\x03" "\xfc\xf0\x06"          /* 16380 */
	"\x0c" "capabilities" "\x08" "\x0a" "pipelining"
	"\x09" "engine-id" "\x08" "\x24" "3c6d5b1e-2f0a-4d7e-9c1b-8a5e4f3d2c1b";

/* NOTIFY with stream-id 300, frame-id 7, two messages */
static const char notify_frame[] =
	"\x03" "\x00\x00\x00\x01" "\xfc\x03" "\x07"           /* 300 = 0xfc 0x03 */
	"\x08" "acme-sni" "\x01"
	"\x03" "sni" "\x08" "\x06" "a.test"
	"\x0b" "acme-http01" "\x02"
	"\x04" "host" "\x08" "\x06" "a.test"
	"\x05" "token" "\x08" "\x03" "abc";

static void test_varint_edges(void **state)
{
	static const struct {
		uint64_t v;
		int len;
	} cases[] = {
		{ 0, 1 }, { 1, 1 }, { 239, 1 }, { 240, 2 }, { 2287, 2 }, { 2288, 3 },
		{ 264431, 3 }, { 264432, 4 }, { 33818863, 4 }, { 33818864, 5 },
		{ UINT32_MAX, 5 }, { (uint64_t)INT64_MAX, 10 }, { UINT64_MAX, 10 },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char buf[16], *p = buf;
		const char *q = buf;
		uint64_t v = 12345;

		assert_int_equal(spop_encode_varint(&p, buf + sizeof(buf), cases[i].v), cases[i].len);
		assert_ptr_equal(p, buf + cases[i].len);
		assert_int_equal(spop_decode_varint(&q, buf + cases[i].len, &v), cases[i].len);
		assert_true(v == cases[i].v);
		assert_ptr_equal(q, p);
		/* no room: nothing written, p unchanged */
		p = buf;
		assert_int_equal(spop_encode_varint(&p, buf + cases[i].len - 1, cases[i].v), -1);
		assert_ptr_equal(p, buf);
	}
}

static void test_varint_bytes(void **state)
{
	char buf[16], *p = buf;

	assert_int_equal(spop_encode_varint(&p, buf + 16, 240), 2);
	assert_memory_equal(buf, "\xf0\x00", 2);
	p = buf;
	assert_int_equal(spop_encode_varint(&p, buf + 16, 2287), 2);
	assert_memory_equal(buf, "\xff\x7f", 2);
	p = buf;
	assert_int_equal(spop_encode_varint(&p, buf + 16, 2288), 3);
	assert_memory_equal(buf, "\xf0\x80\x00", 3);
	p = buf;
	assert_int_equal(spop_encode_varint(&p, buf + 16, 16380), 3);
	assert_memory_equal(buf, "\xfc\xf0\x06", 3);
}

static void test_varint_overflow_truncated(void **state)
{
	/* 11 continuation bytes: more than 64 bits */
	static const char eleven[] = "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f";
	/* 10 bytes whose last one carries bits past bit 63 */
	static const char past63[] = "\xf0\x80\x80\x80\x80\x80\x80\x80\x80\x10";
	char max[16], *w = max, big[16];
	const char *q;
	uint64_t v;
	int n, i;

	q = eleven;
	assert_int_equal(spop_decode_varint(&q, eleven + 11, &v), -1);
	assert_ptr_equal(q, eleven);
	q = past63;
	assert_int_equal(spop_decode_varint(&q, past63 + 10, &v), -1);
	/* UINT64_MAX with its last byte raised: the sum wraps */
	n = spop_encode_varint(&w, max + 16, UINT64_MAX);
	assert_int_equal(n, 10);
	memcpy(big, max, 10);
	assert_true((unsigned char)big[9] < 15);
	big[9] = 15;
	q = big;
	assert_int_equal(spop_decode_varint(&q, big + 10, &v), -1);
	/* every truncation of a 10-byte varint fails without moving */
	for (i = 0; i < 10; i++) {
		q = max;
		assert_int_equal(spop_decode_varint(&q, max + i, &v), -1);
		assert_ptr_equal(q, max);
	}
}

static void roundtrip(const struct spop_data *in, const char *expect, size_t expect_len)
{
	char buf[64], *p = buf;
	const char *q = buf;
	struct spop_data out;
	size_t len, i;

	assert_int_equal(spop_encode_data(&p, buf + sizeof(buf), in), 0);
	len = (size_t)(p - buf);
	if (expect) {
		assert_int_equal(len, expect_len);
		assert_memory_equal(buf, expect, expect_len);
	}
	assert_int_equal(spop_decode_data(&q, buf + len, &out), 0);
	assert_ptr_equal(q, buf + len);
	assert_int_equal(out.type, in->type);
	switch (in->type) {
	case SPOP_T_BOOL:
		assert_int_equal(out.u.b, in->u.b);
		break;
	case SPOP_T_INT32:
	case SPOP_T_INT64:
		assert_true(out.u.i == in->u.i);
		break;
	case SPOP_T_UINT32:
	case SPOP_T_UINT64:
		assert_true(out.u.u == in->u.u);
		break;
	case SPOP_T_IPV4:
		assert_memory_equal(&out.u.v4, &in->u.v4, 4);
		break;
	case SPOP_T_IPV6:
		assert_memory_equal(&out.u.v6, &in->u.v6, 16);
		break;
	case SPOP_T_STR:
	case SPOP_T_BIN:
		assert_int_equal(out.u.s.len, in->u.s.len);
		assert_memory_equal(out.u.s.ptr, in->u.s.ptr, in->u.s.len);
		break;
	default:
		break;
	}
	/* every truncation fails (except NULL/BOOL which are 1 byte) */
	for (i = 0; i < len; i++) {
		q = buf;
		assert_int_equal(spop_decode_data(&q, buf + i, &out), -1);
		assert_ptr_equal(q, buf);
	}
	/* encoding into too little room fails and leaves p */
	for (i = 0; i < len; i++) {
		p = buf;
		assert_int_equal(spop_encode_data(&p, buf + i, in), -1);
		assert_ptr_equal(p, buf);
	}
}

static void test_types_roundtrip(void **state)
{
	struct spop_data d;

	memset(&d, 0, sizeof(d));
	d.type = SPOP_T_NULL;
	roundtrip(&d, "\x00", 1);
	d.type = SPOP_T_BOOL;
	d.u.b = 1;
	roundtrip(&d, "\x11", 1);
	d.u.b = 0;
	roundtrip(&d, "\x01", 1);
	d.type = SPOP_T_INT32;
	d.u.i = -5;
	roundtrip(&d, NULL, 0);
	d.u.i = INT32_MAX;
	roundtrip(&d, NULL, 0);
	d.u.i = INT32_MIN;
	roundtrip(&d, NULL, 0);
	d.type = SPOP_T_UINT32;
	d.u.u = UINT32_MAX;
	roundtrip(&d, NULL, 0);
	d.type = SPOP_T_INT64;
	d.u.i = INT64_MIN;
	roundtrip(&d, NULL, 0);
	d.u.i = 1;
	roundtrip(&d, "\x04\x01", 2);
	d.type = SPOP_T_UINT64;
	d.u.u = UINT64_MAX;
	roundtrip(&d, NULL, 0);
	d.type = SPOP_T_IPV4;
	inet_pton(AF_INET, "192.0.2.7", &d.u.v4);
	roundtrip(&d, "\x06\xc0\x00\x02\x07", 5);
	d.type = SPOP_T_IPV6;
	inet_pton(AF_INET6, "2001:db8::1", &d.u.v6);
	roundtrip(&d, NULL, 0);
	d.type = SPOP_T_STR;
	d.u.s.ptr = "a.test";
	d.u.s.len = 6;
	roundtrip(&d, "\x08\x06" "a.test", 8);
	d.u.s.len = 0;
	roundtrip(&d, "\x08\x00", 2);
	d.type = SPOP_T_BIN;
	d.u.s.ptr = "\x00\x01\xff";
	d.u.s.len = 3;
	roundtrip(&d, "\x09\x03\x00\x01\xff", 5);
}

static void test_types_bad(void **state)
{
	struct spop_data d;
	const char *q;
	char buf[32];
	int t;

	/* reserved types 10..15, with and without flags */
	for (t = 10; t < 16; t++) {
		buf[0] = (char)t;
		buf[1] = (char)(t | 0x10);
		q = buf;
		assert_int_equal(spop_decode_data(&q, buf + 1, &d), -1);
		q = buf + 1;
		assert_int_equal(spop_decode_data(&q, buf + 2, &d), -1);
	}
	/* INT32 out of range: 2^40 */
	{
		char *p = buf + 1;

		buf[0] = SPOP_T_INT32;
		spop_encode_varint(&p, buf + sizeof(buf), (uint64_t)1 << 40);
		q = buf;
		assert_int_equal(spop_decode_data(&q, p, &d), -1);
		buf[0] = SPOP_T_UINT32;
		q = buf;
		assert_int_equal(spop_decode_data(&q, p, &d), -1);
		buf[0] = SPOP_T_INT64;
		q = buf;
		assert_int_equal(spop_decode_data(&q, p, &d), 0);
		assert_true(d.u.i == (int64_t)1 << 40);
	}
	/* string length past the end, and a huge length */
	memcpy(buf, "\x08\x05" "abc", 5);
	q = buf;
	assert_int_equal(spop_decode_data(&q, buf + 5, &d), -1);
	{
		char *p = buf + 1;

		buf[0] = SPOP_T_BIN;
		spop_encode_varint(&p, buf + sizeof(buf), UINT64_MAX);
		q = buf;
		assert_int_equal(spop_decode_data(&q, p, &d), -1);
	}
	/* empty input */
	q = buf;
	assert_int_equal(spop_decode_data(&q, buf, &d), -1);
	/* encoder refuses an out-of-range type */
	{
		char *p = buf;

		memset(&d, 0, sizeof(d));
		d.type = SPOP_T__MAX;
		assert_int_equal(spop_encode_data(&p, buf + sizeof(buf), &d), -1);
		assert_ptr_equal(p, buf);
	}
}

static void test_frame_peek_parse(void **state)
{
	char buf[512];
	struct spop_frame f;
	size_t flen = 0, n = sizeof(hello_frame) - 1;

	buf[0] = 0;
	buf[1] = 0;
	buf[2] = (char)(n >> 8);
	buf[3] = (char)n;
	memcpy(buf + 4, hello_frame, n);
	assert_int_equal(spop_frame_peek(buf, 0, 16384, &flen), 0);
	assert_int_equal(spop_frame_peek(buf, 3, 16384, &flen), 0);
	assert_int_equal(spop_frame_peek(buf, 4 + n - 1, 16384, &flen), 0);
	assert_int_equal(spop_frame_peek(buf, 4 + n, 16384, &flen), 1);
	assert_int_equal(flen, n);
	assert_int_equal(spop_frame_peek(buf, 4 + n, (uint32_t)n - 1, &flen), -1);
	/* a length bigger than max is refused from the 4 bytes alone */
	assert_int_equal(spop_frame_peek("\xff\xff\xff\xff", 4, 16384, &flen), -1);

	assert_int_equal(spop_frame_parse(hello_frame, n, &f), 0);
	assert_int_equal(f.type, SPOP_FRM_HAPROXY_HELLO);
	assert_int_equal(f.flags, SPOP_FRAME_FL_FIN);
	assert_true(f.stream_id == 0 && f.frame_id == 0);
	assert_ptr_equal(f.payload, hello_frame + 7);
	assert_int_equal(f.payload_len, n - 7);

	assert_int_equal(spop_frame_parse(notify_frame, sizeof(notify_frame) - 1, &f), 0);
	assert_int_equal(f.type, SPOP_FRM_NOTIFY);
	assert_true(f.stream_id == 300 && f.frame_id == 7);
	/* header truncated everywhere */
	for (n = 0; n < 8; n++)
		assert_int_equal(spop_frame_parse(notify_frame, n, &f), -1);
	/* a stream-id varint that runs off the end */
	assert_int_equal(spop_frame_parse("\x03\x00\x00\x00\x01\xff\xff", 7, &f), -1);
}

static void test_frame_begin_end(void **state)
{
	char buf[64], *p = buf, *start;
	struct spop_frame f;
	size_t flen, total;

	assert_int_equal(spop_frame_begin(&p, buf + sizeof(buf), &start, SPOP_FRM_ACK,
					  SPOP_FRAME_FL_FIN, 0, 2288), 0);
	total = spop_frame_end(start, p);
	assert_int_equal(total, 4 + 1 + 4 + 1 + 3);
	assert_int_equal(spop_frame_peek(buf, total, 256, &flen), 1);
	assert_int_equal(spop_frame_parse(buf + 4, flen, &f), 0);
	assert_int_equal(f.type, SPOP_FRM_ACK);
	assert_true(f.stream_id == 0 && f.frame_id == 2288);
	assert_int_equal(f.payload_len, 0);
	p = buf;
	assert_int_equal(spop_frame_begin(&p, buf + 8, &start, SPOP_FRM_ACK, 1, 0, 0), -1);
	assert_ptr_equal(p, buf);
}

static void test_hello_real(void **state)
{
	struct spop_frame f;
	struct spop_hello h;
	size_t n = sizeof(hello_frame) - 1, i;

	assert_int_equal(spop_frame_parse(hello_frame, n, &f), 0);
	assert_int_equal(spop_hello_decode(f.payload, f.payload_len, &h), SPOP_ST_NORMAL);
	assert_int_equal(h.versions_len, 3);
	assert_memory_equal(h.versions, "2.0", 3);
	assert_true(h.has_max_frame_size && h.max_frame_size == 16380);
	assert_int_equal(h.capabilities_len, 10);
	assert_memory_equal(h.capabilities, "pipelining", 10);
	assert_int_equal(h.engine_id_len, 36);
	assert_int_equal(h.healthcheck, 0);
	/* every truncation is refused, except right before the optional engine-id */
	for (i = 0; i < f.payload_len; i++) {
		if (i == f.payload_len - (1 + 9 + 1 + 1 + 36))
			assert_int_equal(spop_hello_decode(f.payload, i, &h), SPOP_ST_NORMAL);
		else
			assert_int_not_equal(spop_hello_decode(f.payload, i, &h), SPOP_ST_NORMAL);
	}
}

static enum spop_status hello_of(const char *versions, const struct spop_data *mfs,
				 const char *caps, int hc)
{
	char buf[512], *p = buf;
	struct spop_data d;
	struct spop_hello h;

	memset(&d, 0, sizeof(d));
	if (versions) {
		d.type = SPOP_T_STR;
		d.u.s.ptr = versions;
		d.u.s.len = strlen(versions);
		assert_int_equal(spop_encode_kv(&p, buf + sizeof(buf), "supported-versions", &d), 0);
	}
	if (mfs)
		assert_int_equal(spop_encode_kv(&p, buf + sizeof(buf), "max-frame-size", mfs), 0);
	if (caps) {
		d.type = SPOP_T_STR;
		d.u.s.ptr = caps;
		d.u.s.len = strlen(caps);
		assert_int_equal(spop_encode_kv(&p, buf + sizeof(buf), "capabilities", &d), 0);
	}
	if (hc) {
		d.type = SPOP_T_BOOL;
		d.u.b = 1;
		assert_int_equal(spop_encode_kv(&p, buf + sizeof(buf), "healthcheck", &d), 0);
	}
	return spop_hello_decode(buf, (size_t)(p - buf), &h);
}

static void test_hello_errors(void **state)
{
	struct spop_data mfs = { .type = SPOP_T_UINT32 }, bad = { .type = SPOP_T_STR };

	mfs.u.u = 16380;
	bad.u.s.ptr = "16380";
	bad.u.s.len = 5;
	assert_int_equal(hello_of("2.0", &mfs, "pipelining,async", 0), SPOP_ST_NORMAL);
	assert_int_equal(hello_of("2.0", &mfs, "", 1), SPOP_ST_NORMAL);
	assert_int_equal(hello_of("2.0, 1.5", &mfs, "", 0), SPOP_ST_NORMAL);
	assert_int_equal(hello_of(" 1.0 , 2.1 ", &mfs, "", 0), SPOP_ST_NORMAL);
	assert_int_equal(hello_of("1.0", &mfs, "", 0), SPOP_ST_BAD_VERSION);
	assert_int_equal(hello_of("3.0,20.0", &mfs, "", 0), SPOP_ST_BAD_VERSION);
	assert_int_equal(hello_of("2", &mfs, "", 0), SPOP_ST_BAD_VERSION);
	assert_int_equal(hello_of("2.x", &mfs, "", 0), SPOP_ST_BAD_VERSION);
	assert_int_equal(hello_of(NULL, &mfs, "", 0), SPOP_ST_NO_VERSION);
	assert_int_equal(hello_of("2.0", NULL, "", 0), SPOP_ST_NO_FRAME_SIZE);
	assert_int_equal(hello_of("2.0", &bad, "", 0), SPOP_ST_NO_FRAME_SIZE); /* wrong type */
	assert_int_equal(hello_of("2.0", &mfs, NULL, 0), SPOP_ST_NO_CAPABILITIES);
	mfs.u.u = 255;
	assert_int_equal(hello_of("2.0", &mfs, "", 0), SPOP_ST_BAD_FRAME_SIZE);
	mfs.type = SPOP_T_UINT64;
	mfs.u.u = (uint64_t)UINT32_MAX + 1;
	assert_int_equal(hello_of("2.0", &mfs, "", 0), SPOP_ST_BAD_FRAME_SIZE);
	/* garbage KV */
	{
		struct spop_hello h;

		assert_int_equal(spop_hello_decode("\x05" "ab", 3, &h), SPOP_ST_INVALID);
		assert_int_equal(spop_hello_decode("\x02" "ab" "\x0c", 4, &h), SPOP_ST_INVALID);
	}
	assert_int_equal(spop_versions_has_major("2.0", 3, 2), 1);
	assert_int_equal(spop_versions_has_major("12.0", 4, 2), 0);
	assert_int_equal(spop_versions_has_major("", 0, 2), 0);
	assert_int_equal(spop_versions_has_major(",,2.0,", 6, 2), 1);
}

static void test_notify_real(void **state)
{
	struct spop_frame f;
	struct spop_message m;
	struct spop_arg args[4];
	const char *p, *end;
	size_t nargs;

	assert_int_equal(spop_frame_parse(notify_frame, sizeof(notify_frame) - 1, &f), 0);
	p = f.payload;
	end = f.payload + f.payload_len;
	assert_int_equal(spop_notify_next(&p, end, &m, args, 4, &nargs), 1);
	assert_int_equal(m.name_len, 8);
	assert_memory_equal(m.name, "acme-sni", 8);
	assert_int_equal(nargs, 1);
	assert_int_equal(args[0].name_len, 3);
	assert_memory_equal(args[0].name, "sni", 3);
	assert_int_equal(args[0].val.type, SPOP_T_STR);
	assert_memory_equal(args[0].val.u.s.ptr, "a.test", 6);
	assert_int_equal(spop_notify_next(&p, end, &m, args, 4, &nargs), 1);
	assert_memory_equal(m.name, "acme-http01", 11);
	assert_int_equal(nargs, 2);
	assert_memory_equal(args[1].name, "token", 5);
	assert_memory_equal(args[1].val.u.s.ptr, "abc", 3);
	assert_int_equal(spop_notify_next(&p, end, &m, args, 4, &nargs), 0);
	/* fewer slots than args: count clipped, rest still checked */
	p = f.payload;
	assert_int_equal(spop_notify_next(&p, end, &m, args, 0, &nargs), 1);
	assert_int_equal(nargs, 0);
	assert_int_equal(m.nargs, 1);
}

static void test_notify_lies(void **state)
{
	/* says 3 args, carries 2 */
	static const char liar[] =
		"\x0b" "acme-http01" "\x03"
		"\x04" "host" "\x08" "\x01" "a"
		"\x05" "token" "\x08" "\x01" "b";
	/* says 1 arg, carries 2: the extra arg reads as a message that lies */
	static const char liar2[] =
		"\x08" "acme-sni" "\x01"
		"\x03" "sni" "\x08" "\x01" "a"
		"\x03" "xyz" "\x08" "\x01" "b";
	/* missing nb-args byte */
	static const char noargs[] = "\x08" "acme-sni";
	struct spop_message m;
	struct spop_arg args[8];
	const char *p;
	size_t nargs, i;
	int r;

	p = liar;
	assert_int_equal(spop_notify_next(&p, liar + sizeof(liar) - 1, &m, args, 8, &nargs), -1);
	assert_ptr_equal(p, liar);
	p = liar2;
	assert_int_equal(spop_notify_next(&p, liar2 + sizeof(liar2) - 1, &m, args, 8, &nargs), 1);
	assert_int_equal(spop_notify_next(&p, liar2 + sizeof(liar2) - 1, &m, args, 8, &nargs), -1);
	p = noargs;
	assert_int_equal(spop_notify_next(&p, noargs + sizeof(noargs) - 1, &m, args, 8, &nargs), -1);
	/* every truncation of a real NOTIFY payload is refused */
	for (i = 8; i < sizeof(notify_frame) - 1; i++) {
		const char *end = notify_frame + i;

		p = notify_frame + 8;
		while ((r = spop_notify_next(&p, end, &m, args, 8, &nargs)) == 1)
			;
		/* only cutting exactly between the two messages is well formed */
		if (i == 8 || i == 8 + 1 + 8 + 1 + 1 + 3 + 1 + 1 + 6)
			assert_int_equal(r, 0);
		else
			assert_int_equal(r, -1);
	}
}

static void test_actions(void **state)
{
	char buf[128], *p = buf;
	struct spop_data v = { .type = SPOP_T_STR };
	struct spop_action a;
	const char *q;
	size_t len;

	v.u.s.ptr = "tok.thumb";
	v.u.s.len = 9;
	assert_int_equal(spop_encode_set_var(&p, buf + sizeof(buf), SPOP_SCOPE_TXN, "keyauth", 7, &v), 0);
	assert_memory_equal(buf, "\x01\x03\x02\x07" "keyauth" "\x08\x09" "tok.thumb", 4 + 7 + 2 + 9);
	assert_int_equal(spop_encode_unset_var(&p, buf + sizeof(buf), SPOP_SCOPE_SESS, "seen", 4), 0);
	len = (size_t)(p - buf);
	q = buf;
	assert_int_equal(spop_action_next(&q, buf + len, &a), 1);
	assert_int_equal(a.type, SPOP_ACT_SET_VAR);
	assert_int_equal(a.scope, SPOP_SCOPE_TXN);
	assert_memory_equal(a.name, "keyauth", 7);
	assert_int_equal(a.val.type, SPOP_T_STR);
	assert_int_equal(spop_action_next(&q, buf + len, &a), 1);
	assert_int_equal(a.type, SPOP_ACT_UNSET_VAR);
	assert_int_equal(a.scope, SPOP_SCOPE_SESS);
	assert_int_equal(spop_action_next(&q, buf + len, &a), 0);
	/* bad scope, bad arg count, truncated */
	p = buf;
	assert_int_equal(spop_encode_set_var(&p, buf + sizeof(buf), SPOP_SCOPE__MAX, "x", 1, &v), -1);
	assert_ptr_equal(p, buf);
	q = "\x01\x03\x05\x01x\x00";
	assert_int_equal(spop_action_next(&q, q + 6, &a), -1);
	q = "\x01\x02\x02\x01x\x00";
	assert_int_equal(spop_action_next(&q, q + 6, &a), -1);
	q = "\x01\x03\x02\x01x";
	assert_int_equal(spop_action_next(&q, q + 5, &a), -1);
	/* no room: nothing written */
	p = buf;
	assert_int_equal(spop_encode_set_var(&p, buf + 10, SPOP_SCOPE_TXN, "keyauth", 7, &v), -1);
	assert_ptr_equal(p, buf);
}

static void test_agent_frames(void **state)
{
	char buf[256];
	struct spop_frame f;
	struct spop_arg kv;
	struct spop_disconnect d;
	const char *p;
	size_t flen;
	int n;

	n = spop_encode_agent_hello(buf, sizeof(buf), 16380, "pipelining");
	assert_true(n > 0);
	assert_int_equal(spop_frame_peek(buf, (size_t)n, 16384, &flen), 1);
	assert_int_equal(flen + 4, (size_t)n);
	assert_int_equal(spop_frame_parse(buf + 4, flen, &f), 0);
	assert_int_equal(f.type, SPOP_FRM_AGENT_HELLO);
	assert_int_equal(f.flags, SPOP_FRAME_FL_FIN);
	p = f.payload;
	assert_int_equal(spop_kv_next(&p, f.payload + f.payload_len, &kv), 1);
	assert_memory_equal(kv.name, "version", 7);
	assert_memory_equal(kv.val.u.s.ptr, "2.0", 3);
	assert_int_equal(spop_kv_next(&p, f.payload + f.payload_len, &kv), 1);
	assert_memory_equal(kv.name, "max-frame-size", 14);
	assert_int_equal(kv.val.type, SPOP_T_UINT32);
	assert_true(kv.val.u.u == 16380);
	assert_int_equal(spop_kv_next(&p, f.payload + f.payload_len, &kv), 1);
	assert_memory_equal(kv.name, "capabilities", 12);
	assert_int_equal(kv.val.u.s.len, 10);
	assert_int_equal(spop_kv_next(&p, f.payload + f.payload_len, &kv), 0);
	assert_int_equal(spop_encode_agent_hello(buf, 20, 16380, "pipelining"), -1);

	n = spop_encode_disconnect(buf, sizeof(buf), SPOP_FRM_AGENT_DISCONNECT, SPOP_ST_TOO_BIG,
				   "frame is too big");
	assert_true(n > 0);
	assert_int_equal(spop_frame_peek(buf, (size_t)n, 16384, &flen), 1);
	assert_int_equal(spop_frame_parse(buf + 4, flen, &f), 0);
	assert_int_equal(f.type, SPOP_FRM_AGENT_DISCONNECT);
	assert_int_equal(spop_disconnect_decode(f.payload, f.payload_len, &d), 0);
	assert_true(d.has_status_code && d.status_code == SPOP_ST_TOO_BIG);
	assert_int_equal(d.message_len, 16);
	assert_int_equal(spop_disconnect_decode("\x03" "abc", 4, &d), -1);

	n = spop_encode_haproxy_hello(buf, sizeof(buf), "2.0", 16380, "pipelining", 1, "eng");
	assert_true(n > 0);
	assert_int_equal(spop_frame_peek(buf, (size_t)n, 16384, &flen), 1);
	assert_int_equal(spop_frame_parse(buf + 4, flen, &f), 0);
	{
		struct spop_hello h;

		assert_int_equal(spop_hello_decode(f.payload, f.payload_len, &h), SPOP_ST_NORMAL);
		assert_int_equal(h.healthcheck, 1);
		assert_int_equal(h.engine_id_len, 3);
	}
}

static void test_status_names(void **state)
{
	assert_string_equal(spop_status_str(SPOP_ST_NORMAL), "normal");
	assert_string_equal(spop_status_str(SPOP_ST_TOO_BIG), "frame is too big");
	assert_string_equal(spop_status_str(SPOP_ST_FRAG_NOT_SUPPORTED),
			    "payload fragmentation is not supported");
	assert_string_equal(spop_status_str(SPOP_ST_UNKNOWN), "an unknown error occurred");
	assert_string_equal(spop_status_str(50), "unknown status");
	assert_string_equal(spop_status_str(100000), "unknown status");
	assert_string_equal(spop_scope_names[SPOP_SCOPE_RES], "res");
	assert_string_equal(spop_type_names[SPOP_T_BIN], "bin");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_varint_edges),
		cmocka_unit_test(test_varint_bytes),
		cmocka_unit_test(test_varint_overflow_truncated),
		cmocka_unit_test(test_types_roundtrip),
		cmocka_unit_test(test_types_bad),
		cmocka_unit_test(test_frame_peek_parse),
		cmocka_unit_test(test_frame_begin_end),
		cmocka_unit_test(test_hello_real),
		cmocka_unit_test(test_hello_errors),
		cmocka_unit_test(test_notify_real),
		cmocka_unit_test(test_notify_lies),
		cmocka_unit_test(test_actions),
		cmocka_unit_test(test_agent_frames),
		cmocka_unit_test(test_status_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
