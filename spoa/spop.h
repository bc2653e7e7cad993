/* SPDX-License-Identifier: Apache-2.0 */
/* SPOP codec (HAProxy SPOE protocol 2.0, doc/SPOE.txt section 3).
 *
 * Pure functions: no I/O, no allocation. Decoded strings are views into the
 * caller's buffer and live as long as it. Decoders never read past <end>;
 * encoders never write past <end> and leave <*p> untouched when they fail.
 */
#ifndef ACME_SPOA_SPOP_H
#define ACME_SPOA_SPOP_H

#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>

/* Typed data (TYPE is the low nibble, FLAGS the high nibble). */
enum spop_type {
	SPOP_T_NULL = 0,
	SPOP_T_BOOL,
	SPOP_T_INT32,
	SPOP_T_UINT32,
	SPOP_T_INT64,
	SPOP_T_UINT64,
	SPOP_T_IPV4,
	SPOP_T_IPV6,
	SPOP_T_STR,
	SPOP_T_BIN,
	SPOP_T__MAX
};

#define SPOP_DATA_T_MASK    0x0F
#define SPOP_DATA_FL_TRUE   0x10

/* One typed value. INT32/INT64 use u.i, UINT32/UINT64 use u.u, BOOL u.b,
 * STR/BIN u.s (a view, not NUL-terminated). */
struct spop_data {
	enum spop_type type;
	union {
		int b;
		int64_t i;
		uint64_t u;
		struct in_addr v4;
		struct in6_addr v6;
		struct {
			const char *ptr;
			size_t len;
		} s;
	} u;
};

/* A named value: a NOTIFY argument or a KV-list item (name may be empty). */
struct spop_arg {
	const char *name;
	size_t name_len;
	struct spop_data val;
};

/* Variable scopes of set-var/unset-var actions. */
enum spop_scope {
	SPOP_SCOPE_PROC = 0,
	SPOP_SCOPE_SESS,
	SPOP_SCOPE_TXN,
	SPOP_SCOPE_REQ,
	SPOP_SCOPE_RES,
	SPOP_SCOPE__MAX
};

/* Frame types. HAProxy sends 1-3, agents 101-103, 0 is a continuation
 * fragment. */
enum spop_frame_type {
	SPOP_FRM_UNSET = 0,
	SPOP_FRM_HAPROXY_HELLO = 1,
	SPOP_FRM_HAPROXY_DISCONNECT = 2,
	SPOP_FRM_NOTIFY = 3,
	SPOP_FRM_AGENT_HELLO = 101,
	SPOP_FRM_AGENT_DISCONNECT = 102,
	SPOP_FRM_ACK = 103,
	SPOP_FRM__MAX
};

#define SPOP_FRAME_FL_FIN    0x00000001u
#define SPOP_FRAME_FL_ABORT  0x00000002u

/* Action types in an ACK. */
enum spop_action_type {
	SPOP_ACT_NONE = 0,
	SPOP_ACT_SET_VAR = 1,
	SPOP_ACT_UNSET_VAR = 2,
	SPOP_ACT__MAX
};

/* Status codes of DISCONNECT frames (SPOE.txt 3.5). */
enum spop_status {
	SPOP_ST_NORMAL = 0,
	SPOP_ST_IO = 1,
	SPOP_ST_TIMEOUT = 2,
	SPOP_ST_TOO_BIG = 3,
	SPOP_ST_INVALID = 4,
	SPOP_ST_NO_VERSION = 5,
	SPOP_ST_NO_FRAME_SIZE = 6,
	SPOP_ST_NO_CAPABILITIES = 7,
	SPOP_ST_BAD_VERSION = 8,
	SPOP_ST_BAD_FRAME_SIZE = 9,
	SPOP_ST_FRAG_NOT_SUPPORTED = 10,
	SPOP_ST_INTERLACED_FRAMES = 11,
	SPOP_ST_FRAME_ID_NOT_FOUND = 12,
	SPOP_ST_RES_ALLOC = 13,
	SPOP_ST_UNKNOWN = 99,
	SPOP_ST__MAX
};

/* Status texts as SPOE.txt words them, indexed by enum spop_status (holes
 * are NULL: use spop_status_str()). */
extern const char *const spop_status_names[SPOP_ST__MAX];
extern const char *const spop_type_names[SPOP_T__MAX];
extern const char *const spop_scope_names[SPOP_SCOPE__MAX];

/* Smallest max-frame-size a peer may announce. */
#define SPOP_MIN_FRAME_SIZE  256u
/* Longest varint encoding (64 bits: 4 + 9 * 7 bits). */
#define SPOP_VARINT_MAX_LEN  10

/* A parsed frame header; <payload> points into the frame buffer. */
struct spop_frame {
	unsigned type;            /* enum spop_frame_type, or any unknown byte */
	uint32_t flags;           /* SPOP_FRAME_FL_* */
	uint64_t stream_id;
	uint64_t frame_id;
	const char *payload;
	size_t payload_len;
};

/* HAPROXY-HELLO items. A missing string has ptr NULL. */
struct spop_hello {
	const char *versions;
	size_t versions_len;
	const char *capabilities;
	size_t capabilities_len;
	const char *engine_id;
	size_t engine_id_len;
	uint64_t max_frame_size;
	int has_max_frame_size;
	int healthcheck;
};

/* DISCONNECT (either side) items. */
struct spop_disconnect {
	uint64_t status_code;
	int has_status_code;
	const char *message;
	size_t message_len;
};

/* One message of a NOTIFY frame. */
struct spop_message {
	const char *name;
	size_t name_len;
	unsigned nargs;           /* as announced by the frame (0..255) */
};

/* One action of an ACK frame. */
struct spop_action {
	enum spop_action_type type;
	enum spop_scope scope;
	const char *name;
	size_t name_len;
	struct spop_data val;     /* SPOP_T_NULL for unset-var */
};

/* Returns a text for status <code>, never NULL. */
const char *spop_status_str(unsigned code);

/* Decodes a varint at <*p>, never reading at or past <end>. On success stores
 * it in <*v>, advances <*p> and returns the bytes consumed; returns -1 when
 * truncated or when it does not fit 64 bits (<*p> is then unchanged). */
int spop_decode_varint(const char **p, const char *end, uint64_t *v);

/* Encodes <v> at <*p>. Returns the bytes written and advances <*p>, or -1 if
 * it does not fit before <end>. */
int spop_encode_varint(char **p, char *end, uint64_t v);

/* Decodes a length-prefixed string (no type byte: names). Sets a view.
 * Returns 0 and advances <*p>, or -1 (truncated / length past end). */
int spop_decode_string(const char **p, const char *end, const char **s, size_t *len);

/* Encodes a length-prefixed string. Returns 0 or -1 (no room). */
int spop_encode_string(char **p, char *end, const char *s, size_t len);

/* Decodes one typed value. Returns 0 and advances <*p>, or -1 on truncation,
 * a reserved type (10-15), an INT32/UINT32 out of its range or a length past
 * <end>. */
int spop_decode_data(const char **p, const char *end, struct spop_data *d);

/* Encodes one typed value. Returns 0 or -1 (no room, bad type). */
int spop_encode_data(char **p, char *end, const struct spop_data *d);

/* Reads the next KV item (name then typed value) at <*p>. Returns 1 with
 * <*kv> filled, 0 at end of list (<*p> == end), -1 when malformed. */
int spop_kv_next(const char **p, const char *end, struct spop_arg *kv);

/* Encodes one KV item. Returns 0 or -1 (no room). */
int spop_encode_kv(char **p, char *end, const char *name, const struct spop_data *val);

/* Looks at the start of a byte stream for a length-prefixed frame. With a
 * frame larger than <max_frame> returns -1; with fewer than 4 bytes, or an
 * incomplete frame, returns 0; else returns 1 and stores the frame length
 * (without the 4-byte prefix) in <*frame_len>. */
int spop_frame_peek(const char *buf, size_t len, uint32_t max_frame, size_t *frame_len);

/* Parses the frame header of <frame> (<len> bytes, without the length
 * prefix). Returns 0 with <*f> filled, or -1 when truncated. The type is not
 * checked. */
int spop_frame_parse(const char *frame, size_t len, struct spop_frame *f);

/* Starts a frame at <*p>: reserves the 4-byte length, writes type, flags and
 * ids. Returns 0 and advances <*p>, or -1 (no room). <start> receives the frame
 * start to give to spop_frame_end(). */
int spop_frame_begin(char **p, char *end, char **start, unsigned type, uint32_t flags,
		     uint64_t stream_id, uint64_t frame_id);

/* Writes the length prefix of the frame begun at <start> and ending at <p>.
 * Returns the whole frame size including the prefix. */
size_t spop_frame_end(char *start, const char *p);

/* Decodes a HAPROXY-HELLO payload. Returns SPOP_ST_NORMAL, or the status to
 * send back: INVALID (bad KV), NO_VERSION, NO_FRAME_SIZE, NO_CAPABILITIES,
 * BAD_VERSION (no 2.x in supported-versions), BAD_FRAME_SIZE (< 256 or
 * > UINT32_MAX). Items of an unexpected type count as missing. */
enum spop_status spop_hello_decode(const char *payload, size_t len, struct spop_hello *h);

/* Tells whether the comma-separated "Major.Minor" list <s> contains a version
 * with major <major> (spaces ignored). Returns 1 or 0. */
int spop_versions_has_major(const char *s, size_t len, unsigned major);

/* Decodes a DISCONNECT payload. Returns 0, or -1 when the KV list is bad. */
int spop_disconnect_decode(const char *payload, size_t len, struct spop_disconnect *d);

/* Reads the next message of a NOTIFY payload at <*p>: its name, then its
 * announced args into <args> (at most <max_args> kept; the rest are checked
 * and skipped). <*nargs> gets the count kept. Returns 1 with a message, 0 at
 * end of payload, -1 when malformed (including an arg count larger than the
 * args actually present). */
int spop_notify_next(const char **p, const char *end, struct spop_message *m,
		     struct spop_arg *args, size_t max_args, size_t *nargs);

/* Writes a NOTIFY message header (name and arg count); the caller then adds
 * <nargs> spop_encode_kv() items. Returns 0 or -1. */
int spop_encode_message(char **p, char *end, const char *name, size_t name_len, unsigned nargs);

/* Encodes a set-var action. Returns 0 or -1 (no room, bad scope). */
int spop_encode_set_var(char **p, char *end, enum spop_scope scope,
			const char *name, size_t name_len, const struct spop_data *val);

/* Encodes an unset-var action. Returns 0 or -1. */
int spop_encode_unset_var(char **p, char *end, enum spop_scope scope,
			  const char *name, size_t name_len);

/* Reads the next action of an ACK payload. Returns 1, 0 at end, -1 when
 * malformed (bad type, bad scope, wrong arg count, truncation). */
int spop_action_next(const char **p, const char *end, struct spop_action *a);

/* Writes a whole AGENT-HELLO frame (length prefix included) into <buf>:
 * version "2.0", <max_frame_size>, <capabilities>. Returns its size or -1. */
int spop_encode_agent_hello(char *buf, size_t size, uint32_t max_frame_size,
			    const char *capabilities);

/* Writes a whole DISCONNECT frame of type <type> (AGENT- or HAPROXY-) with
 * <status> and <message> into <buf>. Returns its size or -1. */
int spop_encode_disconnect(char *buf, size_t size, unsigned type, uint32_t status,
			   const char *message);

/* Writes a whole HAPROXY-HELLO frame (what HAProxy sends; for tests and
 * tools). <engine_id> may be NULL. Returns its size or -1. */
int spop_encode_haproxy_hello(char *buf, size_t size, const char *versions,
			      uint32_t max_frame_size, const char *capabilities,
			      int healthcheck, const char *engine_id);

#endif
