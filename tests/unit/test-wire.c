/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The peer protocol's message codec (proto/wire.h). Every message type
 * goes through encode and decode and back; every bound of the message table
 * in docs/protocol.md is hit from both sides (the last value allowed is
 * accepted, the first one past it is refused with a message naming the
 * field); a few encodings are pinned byte for byte from the spec's table.
 *
 *   test-wire                      run the tests
 *   test-wire --write-corpus DIR   write the seeds of the frame fuzzer
 *                                  (tests/fuzz/corpus/frame) and exit */
#include <stdio.h>

#include "helpers.h"
#include "wire.h"

/* --- samples: one or more valid messages of every type ---------------- */

struct sample {
	const char *name;
	struct msg m;
	/* Where the payload's last field, a run of "the rest" of the frame,
	 * starts (0: the message is self-delimiting), and the fewest bytes
	 * that run may have. */
	size_t rest_at;
	size_t rest_min;
};

#define SAMPLES_MAX 32

static uint8_t bits18[3] = { 0xa5, 0x5a, 0x03 }; /* 18 chunks: the last byte uses bits 0 and 1 */
static uint8_t bits16[2] = { 0xff, 0x80 };
static uint8_t manifest_bytes[100];
static uint8_t keyring_bytes[60];
static uint8_t chunk_plain[40];
static uint8_t chunk_zstd[13];
static const uint8_t ext_bytes[5] = { 1, 2, 3, 4, 5 };

static void fill_id(uint8_t id[HASH_SIZE], uint8_t b)
{
	for (size_t i = 0; i < HASH_SIZE; i++)
		id[i] = (uint8_t)(b + i);
}

static size_t encoded_len(const struct msg *m)
{
	struct wbuf w = { 0 };
	size_t n;

	assert_int_equal(wire_encode(m, &w), 0);
	n = w.len;
	wbuf_free(&w);
	return n;
}

static size_t make_samples(struct sample *v)
{
	size_t n = 0;
	uint64_t seed = 42;
	struct test_key key;
	struct msg *m;

	prng_fill(&seed, manifest_bytes, sizeof(manifest_bytes));
	prng_fill(&seed, keyring_bytes, sizeof(keyring_bytes));
	prng_fill(&seed, chunk_plain, sizeof(chunk_plain));
	prng_fill(&seed, chunk_zstd, sizeof(chunk_zstd));

#define NEXT(nm) (v[n] = (struct sample){ .name = (nm) }, m = &v[n++].m)

	NEXT("ident");
	make_key(0x31, &key);
	m->type = MSG_IDENT;
	memcpy(m->ident.pub, key.pk, PUBKEY_SIZE);
	memset(m->ident.sig, 0x5c, SIG_SIZE);

	NEXT("hello");
	m->type = MSG_HELLO;
	m->hello = (struct msg_hello){ .version = 1, .role = HELLO_ROLE_DEVICE, .port = 7441, .load = 3,
				       .product = "acme-gw:2.x", .product_len = 11, .name = "kitchen \xc3\xa9",
				       .name_len = 10 };

	NEXT("hello-gateway-no-name");
	m->type = MSG_HELLO;
	m->hello = (struct msg_hello){ .version = 7, .role = HELLO_ROLE_GATEWAY, .port = 0,
				       .load = UINT32_MAX, .product = "P", .product_len = 1 };

	NEXT("releases");
	m->type = MSG_RELEASES;
	m->releases.n = 2;
	fill_id(m->releases.v[0].id, 0x10);
	m->releases.v[0].counter = UINT64_C(0x1122334455667788);
	m->releases.v[0].held = 0;
	m->releases.v[0].total = 1;
	fill_id(m->releases.v[1].id, 0x20);
	m->releases.v[1].counter = 1;
	m->releases.v[1].held = MANIFEST_MAX_CHUNKS;
	m->releases.v[1].total = MANIFEST_MAX_CHUNKS;

	NEXT("releases-none");
	m->type = MSG_RELEASES;
	m->releases.n = 0;

	NEXT("get-manifest");
	m->type = MSG_GET_MANIFEST;
	fill_id(m->get_manifest.id, 0x30);
	m->get_manifest.offset = 262144;

	NEXT("manifest-part");
	v[n - 1].rest_at = 1 + HASH_SIZE + 4 + 4;
	v[n - 1].rest_min = 1;
	m->type = MSG_MANIFEST_PART;
	fill_id(m->manifest_part.id, 0x30);
	m->manifest_part.total = 1200;
	m->manifest_part.offset = 900;
	m->manifest_part.bytes = manifest_bytes;
	m->manifest_part.len = sizeof(manifest_bytes);

	NEXT("get-keyring");
	m->type = MSG_GET_KEYRING;
	m->get_keyring.min_version = 3;

	NEXT("keyring");
	v[n - 1].rest_at = 1;
	v[n - 1].rest_min = 1;
	m->type = MSG_KEYRING;
	m->keyring.bytes = keyring_bytes;
	m->keyring.len = sizeof(keyring_bytes);

	NEXT("bitfield");
	m->type = MSG_BITFIELD;
	fill_id(m->bitfield.id, 0x40);
	m->bitfield.count = 18;
	m->bitfield.bits = bits18;

	NEXT("bitfield-whole-bytes");
	m->type = MSG_BITFIELD;
	fill_id(m->bitfield.id, 0x41);
	m->bitfield.count = 16;
	m->bitfield.bits = bits16;

	NEXT("have");
	m->type = MSG_HAVE;
	fill_id(m->have.id, 0x50);
	m->have.n = 3;
	m->have.idx[0] = 0;
	m->have.idx[1] = 17;
	m->have.idx[2] = MANIFEST_MAX_CHUNKS - 1;

	NEXT("request");
	m->type = MSG_REQUEST;
	m->request.n = 2;
	fill_id(m->request.ids[0], 0x60);
	fill_id(m->request.ids[1], 0x70);

	NEXT("chunk-plain");
	m->type = MSG_CHUNK;
	fill_id(m->chunk.id, 0x80);
	m->chunk.enc = 0;
	m->chunk.plain_len = sizeof(chunk_plain);
	m->chunk.stored = chunk_plain;
	m->chunk.stored_len = sizeof(chunk_plain);

	NEXT("chunk-zstd");
	v[n - 1].rest_at = 1 + HASH_SIZE + 1 + 4;
	v[n - 1].rest_min = 1;
	m->type = MSG_CHUNK;
	fill_id(m->chunk.id, 0x90);
	m->chunk.enc = 1;
	m->chunk.plain_len = 4096;
	m->chunk.stored = chunk_zstd;
	m->chunk.stored_len = sizeof(chunk_zstd);

	NEXT("not-found");
	m->type = MSG_NOT_FOUND;
	fill_id(m->not_found.id, 0xa0);

	NEXT("cancel");
	m->type = MSG_CANCEL;
	fill_id(m->cancel.id, 0xb0);

	NEXT("report");
	m->type = MSG_REPORT;
	fixture_report(&m->report);

	NEXT("command");
	m->type = MSG_COMMAND;
	m->command = (struct msg_command){ .version = 1, .action = COMMAND_INSTALL, .campaign = 7, .counter = 42 };
	fill_id(m->command.release, 0xc0);

	NEXT("ping");
	m->type = MSG_PING;
	m->ping.nonce = UINT64_C(0x0102030405060708);

	NEXT("pong");
	m->type = MSG_PONG;
	m->pong.nonce = UINT64_MAX;

	NEXT("goodbye");
	m->type = MSG_GOODBYE;
	m->goodbye.reason = GOODBYE_BAD_CHUNK;
	m->goodbye.text = "chunk 0a1b2c3d did not match its id";
	m->goodbye.text_len = strlen(m->goodbye.text);

	NEXT("goodbye-no-text");
	m->type = MSG_GOODBYE;
	m->goodbye.reason = GOODBYE_INCOMPATIBLE;

	NEXT("report-minimal");
	m->type = MSG_REPORT;
	m->report = (struct msg_report){ .version = 1, .product = { "p", 1 }, .booted_slot = REPORT_SLOT_NONE };

	/* a newer device: its version-1 fields, then fields this codec keeps
	 * without understanding them ("the rest" of the frame) */
	NEXT("report-v2");
	m->type = MSG_REPORT;
	fixture_report(&m->report);
	v[n - 1].rest_at = encoded_len(m);
	m->report.version = 2;
	m->report.ext = ext_bytes;
	m->report.ext_len = sizeof(ext_bytes);

	NEXT("command-v2");
	m->type = MSG_COMMAND;
	m->command = (struct msg_command){ .version = 1, .action = COMMAND_CANCEL, .campaign = UINT64_MAX };
	v[n - 1].rest_at = encoded_len(m);
	m->command.version = 3;
	m->command.ext = ext_bytes;
	m->command.ext_len = sizeof(ext_bytes);
#undef NEXT
	assert_true(n <= SAMPLES_MAX);
	return n;
}

static bool bytes_eq(const void *a, size_t an, const void *b, size_t bn)
{
	return an == bn && (an == 0 || memcmp(a, b, an) == 0);
}

/* Field by field, and the bytes behind every pointer. */
static bool msg_equal(const struct msg *a, const struct msg *b)
{
	if (a->type != b->type)
		return false;
	switch (a->type) {
	case MSG_IDENT:
		return !memcmp(&a->ident, &b->ident, sizeof(a->ident));
	case MSG_HELLO:
		return a->hello.version == b->hello.version && a->hello.role == b->hello.role &&
		       a->hello.port == b->hello.port && a->hello.load == b->hello.load &&
		       bytes_eq(a->hello.product, a->hello.product_len, b->hello.product, b->hello.product_len) &&
		       bytes_eq(a->hello.name, a->hello.name_len, b->hello.name, b->hello.name_len);
	case MSG_RELEASES:
		if (a->releases.n != b->releases.n)
			return false;
		for (size_t i = 0; i < a->releases.n; i++) {
			const struct release_info *x = &a->releases.v[i], *y = &b->releases.v[i];

			if (memcmp(x->id, y->id, HASH_SIZE) || x->counter != y->counter || x->held != y->held ||
			    x->total != y->total)
				return false;
		}
		return true;
	case MSG_GET_MANIFEST:
		return !memcmp(a->get_manifest.id, b->get_manifest.id, HASH_SIZE) &&
		       a->get_manifest.offset == b->get_manifest.offset;
	case MSG_MANIFEST_PART:
		return !memcmp(a->manifest_part.id, b->manifest_part.id, HASH_SIZE) &&
		       a->manifest_part.total == b->manifest_part.total &&
		       a->manifest_part.offset == b->manifest_part.offset &&
		       bytes_eq(a->manifest_part.bytes, a->manifest_part.len, b->manifest_part.bytes,
				b->manifest_part.len);
	case MSG_GET_KEYRING:
		return a->get_keyring.min_version == b->get_keyring.min_version;
	case MSG_KEYRING:
		return bytes_eq(a->keyring.bytes, a->keyring.len, b->keyring.bytes, b->keyring.len);
	case MSG_BITFIELD:
		return !memcmp(a->bitfield.id, b->bitfield.id, HASH_SIZE) && a->bitfield.count == b->bitfield.count &&
		       !memcmp(a->bitfield.bits, b->bitfield.bits, (a->bitfield.count + 7) / 8);
	case MSG_HAVE:
		return !memcmp(a->have.id, b->have.id, HASH_SIZE) && a->have.n == b->have.n &&
		       !memcmp(a->have.idx, b->have.idx, a->have.n * sizeof(uint32_t));
	case MSG_REQUEST:
		return a->request.n == b->request.n && !memcmp(a->request.ids, b->request.ids, a->request.n * HASH_SIZE);
	case MSG_CHUNK:
		return !memcmp(a->chunk.id, b->chunk.id, HASH_SIZE) && a->chunk.enc == b->chunk.enc &&
		       a->chunk.plain_len == b->chunk.plain_len &&
		       bytes_eq(a->chunk.stored, a->chunk.stored_len, b->chunk.stored, b->chunk.stored_len);
	case MSG_NOT_FOUND:
		return !memcmp(a->not_found.id, b->not_found.id, HASH_SIZE);
	case MSG_CANCEL:
		return !memcmp(a->cancel.id, b->cancel.id, HASH_SIZE);
	case MSG_REPORT:
		return report_equal(&a->report, &b->report);
	case MSG_COMMAND:
		return a->command.version == b->command.version && a->command.action == b->command.action &&
		       a->command.campaign == b->command.campaign && a->command.counter == b->command.counter &&
		       !memcmp(a->command.release, b->command.release, HASH_SIZE) &&
		       bytes_eq(a->command.ext, a->command.ext_len, b->command.ext, b->command.ext_len);
	case MSG_PING:
		return a->ping.nonce == b->ping.nonce;
	case MSG_PONG:
		return a->pong.nonce == b->pong.nonce;
	case MSG_GOODBYE:
		return a->goodbye.reason == b->goodbye.reason &&
		       bytes_eq(a->goodbye.text, a->goodbye.text_len, b->goodbye.text, b->goodbye.text_len);
	}
	return false;
}

/* The encoding of m; fails the test if wire_encode refuses it. */
static struct wbuf encode(const struct msg *m)
{
	struct wbuf w = { 0 };

	assert_int_equal(wire_encode(m, &w), 0);
	assert_true(w.len >= 1);
	return w;
}

static bool points_into(const void *p, const struct wbuf *w)
{
	return (const uint8_t *)p >= w->p && (const uint8_t *)p <= w->p + w->len;
}

/* --- tests ---------------------------------------------------------------- */

static void test_type_names(void **state)
{
	(void)state;
	for (unsigned t = 0; t < 256; t++) {
		const char *name = msg_type_name(t);

		if (t >= MSG_TYPE_FIRST && t <= MSG_TYPE_LAST)
			assert_non_null(name);
		else
			assert_null(name);
	}
	assert_string_equal(msg_type_name(MSG_IDENT), "IDENT");
	assert_string_equal(msg_type_name(MSG_MANIFEST_PART), "MANIFEST_PART");
	assert_string_equal(msg_type_name(MSG_GOODBYE), "GOODBYE");
}

static void test_roundtrip(void **state)
{
	struct sample v[SAMPLES_MAX];
	size_t n = make_samples(v);
	bool seen[MSG_TYPE_LAST + 1] = { false };

	(void)state;
	for (size_t i = 0; i < n; i++) {
		struct wbuf w = encode(&v[i].m), w2;
		struct perr err = { "" };
		struct msg d;

		print_message("%s: %zu bytes\n", v[i].name, w.len);
		assert_int_equal(w.p[0], v[i].m.type);
		assert_err(wire_decode(w.p, w.len, &d, &err), 0, &err, NULL);
		assert_true(msg_equal(&v[i].m, &d));
		/* canonical: the decoded message encodes to the same bytes */
		w2 = encode(&d);
		assert_true(bytes_eq(w.p, w.len, w2.p, w2.len));
		/* byte runs point into the input rather than being copied */
		if (d.type == MSG_HELLO)
			assert_true(points_into(d.hello.product, &w) && points_into(d.hello.name, &w));
		if (d.type == MSG_CHUNK)
			assert_true(points_into(d.chunk.stored, &w));
		if (d.type == MSG_BITFIELD)
			assert_true(points_into(d.bitfield.bits, &w));
		seen[d.type] = true;
		wbuf_free(&w);
		wbuf_free(&w2);
	}
	for (unsigned t = MSG_TYPE_FIRST; t <= MSG_TYPE_LAST; t++)
		assert_true(seen[t]);
}

/* Byte layouts written down from the table in docs/protocol.md, not from
 * the encoder. */
static void expect_hex(const struct msg *m, const char *hex)
{
	struct wbuf w = encode(m);
	char got[2 * 256 + 1];

	assert_true(w.len <= 256);
	hex_encode(w.p, w.len, got);
	assert_string_equal(got, hex);
	wbuf_free(&w);
}

static void test_golden(void **state)
{
	struct msg m = { .type = MSG_PING, .ping.nonce = UINT64_C(0x0102030405060708) };
	static const uint8_t bits[2] = { 0x81, 0x01 };

	(void)state;
	expect_hex(&m, "10" "0807060504030201");
	m = (struct msg){ .type = MSG_PONG, .pong.nonce = 1 };
	expect_hex(&m, "11" "0100000000000000");
	m = (struct msg){ .type = MSG_HELLO,
			  .hello = { .version = 1, .role = 1, .port = 0x1d11, .load = 0x01020304, .product = "ab",
				     .product_len = 2, .name = "c", .name_len = 1 } };
	expect_hex(&m, "02" "0100" "01" "111d" "04030201" "0200" "6162" "0100" "63");
	m = (struct msg){ .type = MSG_GOODBYE, .goodbye = { .reason = 4, .text = "full", .text_len = 4 } };
	expect_hex(&m, "12" "04" "0400" "66756c6c");
	m = (struct msg){ .type = MSG_GET_KEYRING, .get_keyring.min_version = 0x0a };
	expect_hex(&m, "06" "0a00000000000000");
	m = (struct msg){ .type = MSG_BITFIELD, .bitfield = { .count = 9, .bits = bits } };
	expect_hex(&m, "08" "0000000000000000000000000000000000000000000000000000000000000000" "09000000" "8101");
	m = (struct msg){ .type = MSG_HAVE, .have = { .n = 2, .idx = { 1, 0x10203 } } };
	expect_hex(&m, "09" "0000000000000000000000000000000000000000000000000000000000000000" "0200" "01000000"
		       "03020100");
	m = (struct msg){ .type = MSG_CHUNK, .chunk = { .enc = 0, .plain_len = 2, .stored = bits, .stored_len = 2 } };
	expect_hex(&m, "0b" "0000000000000000000000000000000000000000000000000000000000000000" "00" "02000000" "8101");
	m = (struct msg){ .type = MSG_MANIFEST_PART,
			  .manifest_part = { .total = 3, .offset = 1, .bytes = bits, .len = 2 } };
	expect_hex(&m, "05" "0000000000000000000000000000000000000000000000000000000000000000" "03000000" "01000000"
		       "8101");
	m = (struct msg){ .type = MSG_RELEASES,
			  .releases = { .n = 1, .v = { { .counter = 2, .held = 3, .total = 4 } } } };
	expect_hex(&m, "03" "0100" "0000000000000000000000000000000000000000000000000000000000000000"
		       "0200000000000000" "03000000" "04000000");
}

/* Self-delimiting messages refuse every truncation. A message that ends in
 * "the rest of the frame" cannot tell a cut inside that run from a shorter
 * run: the frame layer's length and MAC are what catch those. */
static void test_truncations(void **state)
{
	struct sample v[SAMPLES_MAX];
	size_t n = make_samples(v);

	(void)state;
	for (size_t i = 0; i < n; i++) {
		struct wbuf w = encode(&v[i].m);

		for (size_t cut = 0; cut < w.len; cut++) {
			struct perr err = { "" };
			struct msg d;
			int k = wire_decode(w.p, cut, &d, &err);

			if (v[i].rest_at && cut >= v[i].rest_at + v[i].rest_min) {
				assert_int_equal(k, 0);
				assert_int_equal(d.type, v[i].m.type);
			} else {
				if (k != -EBADMSG)
					print_error("%s cut at %zu: %d\n", v[i].name, cut, k);
				assert_err(k, -EBADMSG, &err, NULL);
				assert_true(err.msg[0] != '\0');
			}
		}
		wbuf_free(&w);
	}
}

static void test_trailing_byte(void **state)
{
	struct sample v[SAMPLES_MAX];
	size_t n = make_samples(v);

	(void)state;
	for (size_t i = 0; i < n; i++) {
		struct wbuf w = encode(&v[i].m);
		struct perr err = { "" };
		struct msg d;
		int k;

		wbuf_u8(&w, 0);
		k = wire_decode(w.p, w.len, &d, &err);
		if (v[i].m.type == MSG_CHUNK && v[i].m.chunk.enc == 0) {
			/* plain stored bytes must be exactly plain_len */
			assert_err(k, -EBADMSG, &err, "stored bytes (plain) at byte 38 has length 41, allowed 40..40");
		} else if (!v[i].rest_at) {
			assert_err(k, -EBADMSG, &err, "1 unexpected bytes after the payload");
			assert_non_null(strstr(err.msg, msg_type_name(v[i].m.type)));
		} else {
			/* the run grows by one byte and stays within its bounds */
			assert_err(k, 0, &err, NULL);
		}
		wbuf_free(&w);
	}
}

/* --- bounds ----------------------------------------------------------------- */

static struct wbuf raw(uint8_t type)
{
	struct wbuf w = { 0 };

	wbuf_u8(&w, type);
	return w;
}

static void raw_id(struct wbuf *w, uint8_t b)
{
	uint8_t id[HASH_SIZE];

	fill_id(id, b);
	wbuf_put(w, id, HASH_SIZE);
}

static void raw_fill(struct wbuf *w, uint8_t b, size_t n)
{
	uint8_t *p = malloc(n ? n : 1);

	assert_non_null(p);
	memset(p, b, n);
	wbuf_put(w, p, n);
	free(p);
}

static void raw_str(struct wbuf *w, const char *s, size_t n)
{
	wbuf_u16(w, (uint16_t)n);
	wbuf_put(w, s, n);
}

#define reject(w, needle) reject_at((w), (needle), __FILE__, __LINE__)
static void reject_at(struct wbuf *w, const char *needle, const char *file, int line)
{
	struct perr err = { "" };
	struct msg d;

	assert_int_equal(w->err, 0);
	assert_err_at(wire_decode(w->p, w->len, &d, &err), -EBADMSG, &err, needle, file, line);
	wbuf_free(w);
}

#define accept(w, ret) accept_at((w), (ret), __FILE__, __LINE__)
static void accept_at(struct wbuf *w, struct msg *ret, const char *file, int line)
{
	struct perr err = { "" };
	struct wbuf again = { 0 };

	assert_int_equal(w->err, 0);
	assert_err_at(wire_decode(w->p, w->len, ret, &err), 0, &err, NULL, file, line);
	/* and the encoder agrees, byte for byte */
	_assert_int_equal(wire_encode(ret, &again), 0, file, line);
	_assert_true(bytes_eq(w->p, w->len, again.p, again.len), "re-encodes the same", file, line);
	wbuf_free(&again);
}

static struct wbuf hello(uint16_t version, uint8_t role, const char *product, size_t plen, const char *name,
			 size_t nlen)
{
	struct wbuf w = raw(MSG_HELLO);

	wbuf_u16(&w, version);
	wbuf_u8(&w, role);
	wbuf_u16(&w, 7441);
	wbuf_u32(&w, 0);
	raw_str(&w, product, plen);
	raw_str(&w, name, nlen);
	return w;
}

static void test_bounds_hello(void **state)
{
	char big[WIRE_NAME_MAX + 2];
	struct wbuf w;
	struct msg d;

	(void)state;
	memset(big, 'x', sizeof(big));
	w = hello(0, 0, "p", 1, "", 0);
	reject(&w, "protocol version");
	w = hello(1, 2, "p", 1, "", 0);
	reject(&w, "role");
	w = hello(1, 0xff, "p", 1, "", 0);
	reject(&w, "role");
	w = hello(1, 0, "", 0, "", 0);
	reject(&w, "product");
	w = hello(1, 0, big, WIRE_PRODUCT_MAX + 1, "", 0);
	reject(&w, "HELLO: product at byte 10 has length 65, allowed 1..64");
	w = hello(1, 0, big, WIRE_PRODUCT_MAX, big, WIRE_NAME_MAX);
	accept(&w, &d);
	assert_int_equal(d.hello.product_len, WIRE_PRODUCT_MAX);
	assert_int_equal(d.hello.name_len, WIRE_NAME_MAX);
	wbuf_free(&w);
	w = hello(1, 0, "p", 1, big, WIRE_NAME_MAX + 1);
	reject(&w, "name");
	w = hello(1, 0, "a b", 3, "", 0);
	reject(&w, "product at byte 10 is not made of");
	w = hello(1, 0, "a/b", 3, "", 0);
	reject(&w, "product");
	w = hello(1, 0, "p", 1, "a\nb", 3);
	reject(&w, "name at byte 13 is not UTF-8 text");
	w = hello(1, 0, "p", 1, "\xc3", 1);
	reject(&w, "name");
	w = hello(UINT16_MAX, 1, "Az09._+:-", 9, "\xe2\x82\xac", 3);
	accept(&w, &d);
	assert_int_equal(d.hello.version, UINT16_MAX);
	wbuf_free(&w);
	/* a string length that runs past the frame */
	w = raw(MSG_HELLO);
	wbuf_u16(&w, 1);
	wbuf_u8(&w, 0);
	wbuf_u16(&w, 1);
	wbuf_u32(&w, 0);
	wbuf_u16(&w, 5);
	wbuf_put(&w, "abc", 3);
	reject(&w, "truncated at byte 12: product needs 5 bytes, 3 left");
}

static struct wbuf releases(uint16_t n, uint32_t held, uint32_t total)
{
	struct wbuf w = raw(MSG_RELEASES);

	wbuf_u16(&w, n);
	for (uint16_t i = 0; i < n; i++) {
		raw_id(&w, (uint8_t)i);
		wbuf_u64(&w, i);
		wbuf_u32(&w, held);
		wbuf_u32(&w, total);
	}
	return w;
}

static void test_bounds_releases(void **state)
{
	struct wbuf w;
	struct msg d;

	(void)state;
	w = releases(WIRE_RELEASES_MAX, 5, 10);
	accept(&w, &d);
	assert_int_equal(d.releases.n, WIRE_RELEASES_MAX);
	wbuf_free(&w);
	w = releases(WIRE_RELEASES_MAX + 1, 5, 10);
	reject(&w, "release count 65 exceeds 64");
	w = releases(1, 0, 0);
	reject(&w, "chunks total 0, allowed 1..1048576");
	w = releases(1, 0, MANIFEST_MAX_CHUNKS + 1);
	reject(&w, "chunks total");
	w = releases(2, 11, 10);
	reject(&w, "release 0: chunks held 11 exceeds total 10");
	/* a count that promises more entries than there are */
	w = releases(2, 1, 1);
	w.len -= 1;
	reject(&w, "truncated");
	w = raw(MSG_RELEASES);
	wbuf_u16(&w, UINT16_MAX);
	reject(&w, "release count");
}

static struct wbuf manifest_part(uint32_t total, uint32_t offset, size_t len)
{
	struct wbuf w = raw(MSG_MANIFEST_PART);

	raw_id(&w, 1);
	wbuf_u32(&w, total);
	wbuf_u32(&w, offset);
	raw_fill(&w, 0xab, len);
	return w;
}

static void test_bounds_manifest(void **state)
{
	struct wbuf w;
	struct msg d;

	(void)state;
	w = raw(MSG_GET_MANIFEST);
	raw_id(&w, 2);
	wbuf_u32(&w, WIRE_MANIFEST_TOTAL_MAX - 1);
	accept(&w, &d);
	wbuf_free(&w);
	w = raw(MSG_GET_MANIFEST);
	raw_id(&w, 2);
	wbuf_u32(&w, WIRE_MANIFEST_TOTAL_MAX);
	reject(&w, "GET_MANIFEST: offset 41943040 is past");

	w = manifest_part(WIRE_MANIFEST_TOTAL_MAX, WIRE_MANIFEST_TOTAL_MAX - WIRE_MANIFEST_PART_MAX,
			  WIRE_MANIFEST_PART_MAX);
	accept(&w, &d);
	assert_int_equal(d.manifest_part.len, WIRE_MANIFEST_PART_MAX);
	wbuf_free(&w);
	w = manifest_part(1, 0, 1);
	accept(&w, &d);
	wbuf_free(&w);
	w = manifest_part(0, 0, 1);
	reject(&w, "total length 0, allowed 1..41943040");
	w = manifest_part(WIRE_MANIFEST_TOTAL_MAX + 1, 0, 1);
	reject(&w, "total length");
	w = manifest_part(10, 0, 0);
	reject(&w, "manifest bytes at byte 41 has length 0, allowed 1..262144");
	w = manifest_part(WIRE_MANIFEST_TOTAL_MAX, 0, WIRE_MANIFEST_PART_MAX + 1);
	reject(&w, "manifest bytes");
	w = manifest_part(100, 90, 11);
	reject(&w, "manifest bytes 90..101 run past the total length 100");
	w = manifest_part(100, UINT32_MAX, 1);
	reject(&w, "run past the total length");
	w = manifest_part(100, 90, 10);
	accept(&w, &d);
	wbuf_free(&w);
}

static void test_bounds_keyring(void **state)
{
	struct wbuf w;
	struct msg d;

	(void)state;
	w = raw(MSG_KEYRING);
	reject(&w, "KEYRING: keyring bytes at byte 1 has length 0");
	w = raw(MSG_KEYRING);
	raw_fill(&w, 1, WIRE_KEYRING_MAX);
	accept(&w, &d);
	wbuf_free(&w);
	w = raw(MSG_KEYRING);
	raw_fill(&w, 1, WIRE_KEYRING_MAX + 1);
	reject(&w, "keyring bytes");
	w = raw(MSG_GET_KEYRING);
	wbuf_u32(&w, 1);
	reject(&w, "truncated at byte 1: lowest version");
}

static struct wbuf bitfield(uint32_t count, size_t nbytes, uint8_t fill, uint8_t last)
{
	struct wbuf w = raw(MSG_BITFIELD);

	raw_id(&w, 3);
	wbuf_u32(&w, count);
	if (nbytes) {
		raw_fill(&w, fill, nbytes - 1);
		wbuf_u8(&w, last);
	}
	return w;
}

static void test_bounds_bitfield(void **state)
{
	struct wbuf w;
	struct msg d;

	(void)state;
	w = bitfield(WIRE_BITFIELD_CHUNKS_MAX, WIRE_BITFIELD_CHUNKS_MAX / 8, 0xff, 0xff);
	accept(&w, &d);
	assert_int_equal(d.bitfield.count, WIRE_BITFIELD_CHUNKS_MAX);
	wbuf_free(&w);
	w = bitfield(0, 0, 0, 0);
	reject(&w, "BITFIELD: chunk count 0, allowed 1..1048576");
	w = bitfield(WIRE_BITFIELD_CHUNKS_MAX + 1, WIRE_BITFIELD_CHUNKS_MAX / 8 + 1, 0, 0);
	reject(&w, "chunk count");
	w = bitfield(1, 1, 0, 0x01);
	accept(&w, &d);
	wbuf_free(&w);
	/* every unused high bit on its own */
	for (uint32_t count = 1; count <= 16; count++) {
		if (count % 8 == 0)
			continue;
		for (unsigned bit = count % 8; bit < 8; bit++) {
			w = bitfield(count, (count + 7) / 8, 0, (uint8_t)(1u << bit));
			reject(&w, "unused high bits of the last byte");
		}
		w = bitfield(count, (count + 7) / 8, 0xff, (uint8_t)((1u << (count % 8)) - 1));
		accept(&w, &d);
		wbuf_free(&w);
	}
	w = bitfield(17, 2, 0, 0);
	reject(&w, "truncated at byte 37: bits needs 3 bytes");
	w = bitfield(16, 3, 0, 0);
	reject(&w, "unexpected bytes after the payload");
}

static struct wbuf have(uint16_t n, uint32_t idx)
{
	struct wbuf w = raw(MSG_HAVE);

	raw_id(&w, 4);
	wbuf_u16(&w, n);
	for (uint16_t i = 0; i < n; i++)
		wbuf_u32(&w, idx);
	return w;
}

static void test_bounds_have_request(void **state)
{
	struct wbuf w;
	struct msg d;

	(void)state;
	w = have(WIRE_HAVE_MAX, MANIFEST_MAX_CHUNKS - 1);
	accept(&w, &d);
	assert_int_equal(d.have.n, WIRE_HAVE_MAX);
	assert_int_equal(d.have.idx[WIRE_HAVE_MAX - 1], MANIFEST_MAX_CHUNKS - 1);
	wbuf_free(&w);
	w = have(0, 0);
	reject(&w, "HAVE: index count 0, allowed 1..1024");
	w = have(WIRE_HAVE_MAX + 1, 0);
	reject(&w, "index count 1025");
	w = have(1, MANIFEST_MAX_CHUNKS);
	reject(&w, "chunk index 1048576 is beyond any manifest");

	w = raw(MSG_REQUEST);
	wbuf_u16(&w, WIRE_REQUEST_MAX);
	for (unsigned i = 0; i < WIRE_REQUEST_MAX; i++)
		raw_id(&w, (uint8_t)i);
	accept(&w, &d);
	assert_int_equal(d.request.n, WIRE_REQUEST_MAX);
	assert_int_equal(d.request.ids[WIRE_REQUEST_MAX - 1][0], WIRE_REQUEST_MAX - 1);
	wbuf_free(&w);
	w = raw(MSG_REQUEST);
	wbuf_u16(&w, 0);
	reject(&w, "REQUEST: chunk id count 0, allowed 1..64");
	w = raw(MSG_REQUEST);
	wbuf_u16(&w, WIRE_REQUEST_MAX + 1);
	for (unsigned i = 0; i <= WIRE_REQUEST_MAX; i++)
		raw_id(&w, (uint8_t)i);
	reject(&w, "chunk id count 65");
	w = raw(MSG_REQUEST);
	wbuf_u16(&w, 2);
	raw_id(&w, 1);
	reject(&w, "truncated at byte 35: chunk id");
	w = raw(MSG_NOT_FOUND);
	raw_fill(&w, 0, HASH_SIZE - 1);
	reject(&w, "NOT_FOUND: truncated at byte 1: chunk id");
	w = raw(MSG_CANCEL);
	raw_fill(&w, 0, HASH_SIZE + 1);
	reject(&w, "CANCEL: 1 unexpected bytes");
}

static struct wbuf chunk(uint8_t enc, uint32_t plain_len, size_t stored_len)
{
	struct wbuf w = raw(MSG_CHUNK);

	raw_id(&w, 5);
	wbuf_u8(&w, enc);
	wbuf_u32(&w, plain_len);
	raw_fill(&w, 0x3c, stored_len);
	return w;
}

static void test_bounds_chunk(void **state)
{
	struct wbuf w;
	struct msg d;

	(void)state;
	/* the largest chunk, plain: its frame is the biggest message there is */
	w = chunk(0, WIRE_CHUNK_MAX, WIRE_CHUNK_MAX);
	assert_true(w.len <= FRAME_MAX);
	accept(&w, &d);
	assert_int_equal(d.chunk.stored_len, WIRE_CHUNK_MAX);
	wbuf_free(&w);
	w = chunk(0, 0, 0);
	reject(&w, "CHUNK: plain length 0, allowed 1..4194304");
	w = chunk(1, 0, 10);
	reject(&w, "plain length 0");
	w = chunk(0, WIRE_CHUNK_MAX + 1, WIRE_CHUNK_MAX + 1);
	reject(&w, "plain length 4194305");
	w = chunk(1, WIRE_CHUNK_MAX + 1, 100);
	reject(&w, "plain length 4194305");
	w = chunk(2, 10, 10);
	reject(&w, "encoding at byte 33 is 2");
	w = chunk(0xff, 10, 10);
	reject(&w, "encoding");
	w = chunk(0, 10, 9);
	reject(&w, "stored bytes (plain) at byte 38 has length 9, allowed 10..10");
	w = chunk(0, 10, 11);
	reject(&w, "stored bytes (plain)");
	w = chunk(1, 10, 0);
	reject(&w, "stored bytes (zstd) at byte 38 has length 0");
	w = chunk(1, WIRE_CHUNK_MAX, WIRE_CHUNK_MAX + 100);
	accept(&w, &d);
	wbuf_free(&w);
	/* nothing larger than a frame */
	w = chunk(1, 1, FRAME_MAX);
	reject(&w, "exceeds");
}

static void test_bounds_ping_goodbye(void **state)
{
	char text[WIRE_GOODBYE_TEXT_MAX + 1];
	struct wbuf w;
	struct msg d;

	(void)state;
	w = raw(MSG_PING);
	wbuf_u32(&w, 0);
	reject(&w, "PING: truncated at byte 1: nonce");
	w = raw(MSG_PONG);
	wbuf_u64(&w, 0);
	wbuf_u8(&w, 0);
	reject(&w, "PONG: 1 unexpected bytes after the payload, at byte 9");

	memset(text, 'z', sizeof(text));
	w = raw(MSG_GOODBYE);
	wbuf_u8(&w, GOODBYE_REASON_LAST);
	raw_str(&w, text, WIRE_GOODBYE_TEXT_MAX);
	accept(&w, &d);
	wbuf_free(&w);
	w = raw(MSG_GOODBYE);
	wbuf_u8(&w, GOODBYE_REASON_LAST + 1);
	raw_str(&w, "", 0);
	reject(&w, "GOODBYE: reason at byte 1 is 7, allowed 0..6");
	w = raw(MSG_GOODBYE);
	wbuf_u8(&w, 0);
	raw_str(&w, text, WIRE_GOODBYE_TEXT_MAX + 1);
	reject(&w, "text at byte 2 has length 257, allowed 0..256");
	w = raw(MSG_GOODBYE);
	wbuf_u8(&w, 0);
	raw_str(&w, "bye\x1b[2J", 7);
	reject(&w, "text at byte 2 is not UTF-8");
	w = raw(MSG_GOODBYE);
	wbuf_u8(&w, 0);
	reject(&w, "truncated at byte 2: text");
}

static void test_unknown_and_empty(void **state)
{
	static const uint8_t types[] = { 0x00, MSG_TYPE_LAST + 1, 0x7f, 0x80, 0xff };
	struct perr err = { "" };
	struct msg d;
	uint8_t frame[9] = { 0 };
	uint8_t *big;

	(void)state;
	for (size_t i = 0; i < ELEMENTSOF(types); i++) {
		frame[0] = types[i];
		assert_err(wire_decode(frame, sizeof(frame), &d, &err), -EBADMSG, &err, "unknown message type");
		assert_err(wire_decode(frame, 1, &d, &err), -EBADMSG, &err, "unknown message type");
	}
	assert_err(wire_decode(frame, 0, &d, &err), -EBADMSG, &err, "empty frame");
	/* IDENT decodes (the session uses it) with its exact size */
	frame[0] = MSG_IDENT;
	assert_err(wire_decode(frame, 1, &d, &err), -EBADMSG, &err, "IDENT: truncated at byte 1: public key");
	big = calloc(1, FRAME_MAX + 1);
	assert_non_null(big);
	big[0] = MSG_KEYRING;
	assert_err(wire_decode(big, FRAME_MAX + 1, &d, &err), -EBADMSG, &err, "exceeds 4198400");
	free(big);
}

/* The encoder refuses what the decoder refuses, and leaves the buffer as
 * it was, so that a caller can keep appending to it. */
static void test_encode_refuses(void **state)
{
	struct sample v[SAMPLES_MAX];
	size_t n = make_samples(v);
	struct msg bad[24];
	size_t nb = 0;
	struct wbuf w = { 0 };
	static const uint8_t bits[3] = { 0, 0, 0x04 };

	(void)state;
#define BAD(i, field, value) (bad[nb] = v[i].m, bad[nb].field = (value), nb++)
	BAD(1, hello.version, 0);
	BAD(1, hello.role, 2);
	BAD(1, hello.product_len, 0);
	BAD(1, hello.name_len, 70000);
	BAD(1, hello.name, "a\tb\tc\td\te");
	BAD(3, releases.n, WIRE_RELEASES_MAX + 1);
	BAD(3, releases.v[0].held, 2);
	BAD(5, get_manifest.offset, WIRE_MANIFEST_TOTAL_MAX);
	BAD(6, manifest_part.offset, 1101);
	BAD(6, manifest_part.len, 0);
	BAD(6, manifest_part.len, WIRE_MANIFEST_PART_MAX + 1);
	BAD(8, keyring.len, 0);
	BAD(9, bitfield.count, 0);
	BAD(9, bitfield.count, WIRE_BITFIELD_CHUNKS_MAX + 1);
	BAD(9, bitfield.bits, bits);
	BAD(11, have.n, 0);
	BAD(11, have.idx[1], MANIFEST_MAX_CHUNKS);
	BAD(12, request.n, WIRE_REQUEST_MAX + 1);
	BAD(13, chunk.stored_len, 39);
	BAD(13, chunk.enc, 2);
	BAD(14, chunk.plain_len, 0);
	BAD(19, ping.nonce, 0); /* valid: the control case below */
	BAD(21, goodbye.reason, 7);
	BAD(22, type, (enum msg_type)0x13);
#undef BAD
	assert_int_equal(nb, ELEMENTSOF(bad));
	assert_int_equal(v[1].m.type, MSG_HELLO);
	assert_int_equal(v[3].m.type, MSG_RELEASES);
	assert_int_equal(v[5].m.type, MSG_GET_MANIFEST);
	assert_int_equal(v[6].m.type, MSG_MANIFEST_PART);
	assert_int_equal(v[8].m.type, MSG_KEYRING);
	assert_int_equal(v[9].m.type, MSG_BITFIELD);
	assert_int_equal(v[11].m.type, MSG_HAVE);
	assert_int_equal(v[12].m.type, MSG_REQUEST);
	assert_int_equal(v[13].m.type, MSG_CHUNK);
	assert_int_equal(v[14].m.type, MSG_CHUNK);
	assert_int_equal(v[19].m.type, MSG_PING);
	assert_int_equal(v[21].m.type, MSG_GOODBYE);

	wbuf_put(&w, "head", 4);
	for (size_t i = 0; i < nb; i++) {
		int want = bad[i].type == MSG_PING ? 0 : -EINVAL;

		assert_int_equal(wire_encode(&bad[i], &w), want);
		if (want == 0) {
			assert_int_equal(w.len, 4 + 9);
			w.len = 4;
		}
		assert_int_equal(w.len, 4);
		assert_int_equal(w.err, 0);
	}
	assert_memory_equal(w.p, "head", 4);
	assert_int_equal(wire_encode(&v[0].m, &w), 0);
	assert_int_equal(w.len, 4 + 1 + PUBKEY_SIZE + SIG_SIZE);
	wbuf_free(&w);
	(void)n;
}

/* --- the fuzzer's seeds ------------------------------------------------------ */

static int write_seed(const char *dir, const char *name, const uint8_t *p, size_t n)
{
	char path[4096];
	int k;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	k = write_file(path, p, n);
	if (k < 0) {
		fprintf(stderr, "%s: %s\n", path, strerror(-k));
		return k;
	}
	printf("%-40s %6zu bytes\n", path, n);
	return 0;
}

static int write_corpus(const char *dir)
{
	struct sample v[SAMPLES_MAX];
	size_t n = make_samples(v);
	uint8_t bad[64];
	int k = 0;

	for (size_t i = 0; i < n && k == 0; i++) {
		struct wbuf w = { 0 };

		if (wire_encode(&v[i].m, &w) < 0)
			return -EINVAL;
		k = write_seed(dir, v[i].name, w.p, w.len);
		if (k == 0 && !strcmp(v[i].name, "hello"))
			k = write_seed(dir, "bad-hello-truncated", w.p, w.len - 1);
		if (k == 0 && !strcmp(v[i].name, "bitfield")) {
			w.p[w.len - 1] |= 0x80;
			k = write_seed(dir, "bad-bitfield-high-bits", w.p, w.len);
		}
		if (k == 0 && !strcmp(v[i].name, "report")) {
			w.p[1] = 0;
			k = write_seed(dir, "bad-report-version-0", w.p, w.len);
		}
		if (k == 0 && !strcmp(v[i].name, "ping")) {
			wbuf_u8(&w, 0);
			k = write_seed(dir, "bad-ping-trailing-byte", w.p, w.len);
		}
		wbuf_free(&w);
	}
	memset(bad, 0, sizeof(bad));
	bad[0] = MSG_TYPE_LAST + 1;
	if (k == 0)
		k = write_seed(dir, "bad-unknown-type", bad, 9);
	bad[0] = MSG_HAVE;
	wr_le16(bad + 1 + HASH_SIZE, UINT16_MAX);
	if (k == 0)
		k = write_seed(dir, "bad-have-count-huge", bad, sizeof(bad));
	return k < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_type_names),
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_golden),
		cmocka_unit_test(test_truncations),
		cmocka_unit_test(test_trailing_byte),
		cmocka_unit_test(test_bounds_hello),
		cmocka_unit_test(test_bounds_releases),
		cmocka_unit_test(test_bounds_manifest),
		cmocka_unit_test(test_bounds_keyring),
		cmocka_unit_test(test_bounds_bitfield),
		cmocka_unit_test(test_bounds_have_request),
		cmocka_unit_test(test_bounds_chunk),
		cmocka_unit_test(test_bounds_ping_goodbye),
		cmocka_unit_test(test_unknown_and_empty),
		cmocka_unit_test(test_encode_refuses),
	};

	if (sodium_init() < 0)
		return 1;
	if (argc == 3 && !strcmp(argv[1], "--write-corpus"))
		return write_corpus(argv[2]);
	if (argc != 1) {
		fprintf(stderr, "usage: %s | --write-corpus DIR\n", argv[0]);
		return 2;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
