/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the input is a byte stream as the agent reads it from
 * HAProxy. Every frame goes through the header parser and every payload
 * decoder (HELLO, DISCONNECT, NOTIFY, ACK), and decoded typed values must
 * survive an encode/decode round trip. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "spoa/spop.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_roundtrip(const struct spop_data *d)
{
	char buf[64], *p = buf;
	const char *q = buf;
	struct spop_data back;

	if (d->type == SPOP_T_STR || d->type == SPOP_T_BIN)
		return; /* length-bounded: covered by the decoder's own checks */
	if (spop_encode_data(&p, buf + sizeof(buf), d) == -1)
		__builtin_trap();
	if (spop_decode_data(&q, p, &back) == -1 || q != p || back.type != d->type)
		__builtin_trap();
	switch (d->type) {
	case SPOP_T_BOOL:
		if (back.u.b != d->u.b)
			__builtin_trap();
		break;
	case SPOP_T_INT32:
	case SPOP_T_INT64:
		if (back.u.i != d->u.i)
			__builtin_trap();
		break;
	case SPOP_T_UINT32:
	case SPOP_T_UINT64:
		if (back.u.u != d->u.u)
			__builtin_trap();
		break;
	default:
		break;
	}
}

static void fuzz_payload(const struct spop_frame *f)
{
	const char *p, *end = f->payload + f->payload_len;
	struct spop_hello h;
	struct spop_disconnect d;
	struct spop_message m;
	struct spop_arg args[256], kv;
	struct spop_action a;
	size_t nargs, i;
	int r;

	(void)spop_hello_decode(f->payload, f->payload_len, &h);
	(void)spop_disconnect_decode(f->payload, f->payload_len, &d);
	p = f->payload;
	while (spop_kv_next(&p, end, &kv) == 1) {
		if (p > end)
			__builtin_trap();
		check_roundtrip(&kv.val);
	}
	p = f->payload;
	while ((r = spop_notify_next(&p, end, &m, args, 256, &nargs)) == 1) {
		if (p > end || nargs != m.nargs)
			__builtin_trap();
		for (i = 0; i < nargs; i++) {
			if (args[i].name + args[i].name_len > end)
				__builtin_trap();
			check_roundtrip(&args[i].val);
		}
	}
	/* a small arg array must still walk the same messages */
	p = f->payload;
	while (spop_notify_next(&p, end, &m, args, 2, &nargs) == 1) {
		if (nargs > 2)
			__builtin_trap();
	}
	p = f->payload;
	while (spop_action_next(&p, end, &a) == 1) {
		if (p > end || (unsigned)a.scope >= SPOP_SCOPE__MAX)
			__builtin_trap();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data, *p;
	size_t off = 0, flen;
	uint64_t v;

	/* raw varint and version-list parsing on the whole input */
	p = buf;
	if (spop_decode_varint(&p, buf + size, &v) > 0) {
		char tmp[SPOP_VARINT_MAX_LEN], *w = tmp;
		const char *q = tmp;
		uint64_t back;

		if (spop_encode_varint(&w, tmp + sizeof(tmp), v) == -1 ||
		    spop_decode_varint(&q, w, &back) == -1 || back != v)
			__builtin_trap();
	}
	(void)spop_versions_has_major(buf, size, 2);

	while (off < size) {
		struct spop_frame f;

		if (spop_frame_peek(buf + off, size - off, 16384, &flen) != 1)
			break;
		if (spop_frame_parse(buf + off + 4, flen, &f) == 0) {
			if (f.payload + f.payload_len != buf + off + 4 + flen)
				__builtin_trap();
			fuzz_payload(&f);
		}
		off += 4 + flen;
	}
	return 0;
}
