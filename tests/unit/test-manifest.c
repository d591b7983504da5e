/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The manifest format: what release tooling writes is what a device reads
 * back, byte for byte; the bytes are pinned by a golden vector; and the
 * parser refuses every truncation, inconsistency and tampering. The
 * property the whole system rests on is checked by flipping every byte:
 * a changed manifest either fails to parse or fails the signature check.
 *
 *   test-manifest VECTOR                  compare with tests/vectors/manifest-v1.bin
 *   test-manifest --write-golden VECTOR   (re)write it, only when the format
 *                                         changes on purpose */
#include <stdio.h>

#include "chunk.h"
#include "codec.h"
#include "helpers.h"

static const char *golden_path;

static const struct chunker_params small = { 64, 256, 1024 };

/* --- fixtures ----------------------------------------------------------- */

#define SIGNER_A 0x01
#define SIGNER_B 0x02

/* The golden manifest: a 3000-byte image chunked with small parameters,
 * every optional field used, two signatures. Everything in it is fixed, and
 * Ed25519 is deterministic, so its bytes are too. Caller frees both. */
static uint8_t *golden_manifest(size_t *ret_len, struct manifest **ret_m)
{
	static const char *const meta[] = { "build", "ci-1234", "board", "rev-b", "notes", "", NULL };
	const struct mf_opts o = {
		.product = "shoal-golden",
		.version = "2.0.1-rc.1 (gr\xc3\xbcn)",
		.counter = 7,
		.created = T0,
		.expires = T0 + YEAR,
		.chunking = small,
		.meta = meta,
	};
	_cleanup_(freep) uint8_t *img = prng_image(7, 3000);
	struct test_key keys[2];
	struct manifest *m = make_manifest(img, 3000, &o);
	uint8_t *buf;

	make_key(SIGNER_A, &keys[0]);
	make_key(SIGNER_B, &keys[1]);
	buf = sign_and_format(m, keys, 2, ret_len);
	if (ret_m)
		*ret_m = m;
	else
		manifest_free(m);
	return buf;
}

/* Roots holding both golden signers. */
static struct trust_roots golden_roots(uint8_t (*storage)[PUBKEY_SIZE])
{
	struct test_key keys[2];

	make_key(SIGNER_A, &keys[0]);
	make_key(SIGNER_B, &keys[1]);
	return roots_of(keys, 2, storage);
}

/* Parses an exact-size heap copy, so that ASan catches a read past len.
 * *ret is checked to be written only on success. */
static int parse_copy(const uint8_t *buf, size_t len, struct manifest **ret, struct perr *err)
{
	_cleanup_(freep) uint8_t *copy = malloc(len ? len : 1);
	struct manifest *m = NULL;
	int k;

	assert_non_null(copy);
	memcpy(copy, buf, len);
	if (err)
		err->msg[0] = 0;
	k = manifest_parse(copy, len, &m, err);
	if (k < 0)
		assert_null(m);
	else
		assert_non_null(m);
	if (ret)
		*ret = m;
	else
		manifest_free(m);
	return k;
}

static void assert_manifest_equal(const struct manifest *a, const struct manifest *b)
{
	assert_string_equal(a->product, b->product);
	assert_string_equal(a->version, b->version);
	assert_string_equal(a->payload_type, b->payload_type);
	assert_int_equal(a->counter, b->counter);
	assert_int_equal(a->created, b->created);
	assert_int_equal(a->expires, b->expires);
	assert_int_equal(a->image_size, b->image_size);
	assert_memory_equal(a->image_hash, b->image_hash, HASH_SIZE);
	assert_int_equal(a->chunking.min, b->chunking.min);
	assert_int_equal(a->chunking.avg, b->chunking.avg);
	assert_int_equal(a->chunking.max, b->chunking.max);
	assert_int_equal(a->n_meta, b->n_meta);
	for (size_t i = 0; i < a->n_meta; i++) {
		assert_string_equal(a->meta[i].key, b->meta[i].key);
		assert_string_equal(a->meta[i].value, b->meta[i].value);
	}
	assert_int_equal(a->n_chunks, b->n_chunks);
	for (size_t i = 0; i < a->n_chunks; i++) {
		assert_memory_equal(a->chunks[i].id, b->chunks[i].id, HASH_SIZE);
		assert_int_equal(a->chunks[i].len, b->chunks[i].len);
		assert_int_equal(a->chunks[i].offset, b->chunks[i].offset);
	}
	assert_int_equal(a->sigs.n, b->sigs.n);
	for (size_t i = 0; i < a->sigs.n; i++) {
		assert_memory_equal(a->sigs.v[i].pub, b->sigs.v[i].pub, PUBKEY_SIZE);
		assert_memory_equal(a->sigs.v[i].sig, b->sigs.v[i].sig, SIG_SIZE);
	}
	assert_int_equal(a->signed_len, b->signed_len);
	assert_memory_equal(a->signed_bytes, b->signed_bytes, a->signed_len);
}

/* --- building, writing, reading back ------------------------------------ */

static void test_roundtrip(void **state)
{
	static const char *const meta[] = { "zeta", "last", "alpha", "first", "git", "0123abc", NULL };
	const size_t size = 4u << 20;
	_cleanup_(freep) uint8_t *img = prng_image(3, size), *buf = NULL, *again = NULL;
	_cleanup_(manifest_freep) struct manifest *m = NULL, *back = NULL;
	uint8_t roots_buf[2][PUBKEY_SIZE];
	struct trust_roots roots = golden_roots(roots_buf);
	struct test_key keys[2];
	struct trust_result res;
	struct perr err = { "" };
	size_t len, len2;

	(void)state;
	make_key(SIGNER_A, &keys[0]);
	make_key(SIGNER_B, &keys[1]);
	m = make_manifest(img, size, &(struct mf_opts){ .counter = 12, .expires = T0 + DAY, .meta = meta });
	buf = sign_and_format(m, keys, 2, &len);
	assert_err(parse_copy(buf, len, &back, &err), 0, &err, NULL);
	assert_manifest_equal(m, back);

	/* metadata comes out sorted, whatever order it went in */
	assert_string_equal(back->meta[0].key, "alpha");
	assert_string_equal(back->meta[2].key, "zeta");
	/* the implied offsets address the image the ids were made from */
	for (size_t i = 0; i < back->n_chunks; i++) {
		uint8_t id[HASH_SIZE];

		assert_true(back->chunks[i].offset + back->chunks[i].len <= size);
		chunk_id(img + back->chunks[i].offset, back->chunks[i].len, id);
		assert_memory_equal(id, back->chunks[i].id, HASH_SIZE);
	}
	/* writing what was read gives the same bytes: the format is canonical */
	assert_int_equal(manifest_format(back, &again, &len2, &err), 0);
	assert_int_equal(len, len2);
	assert_memory_equal(buf, again, len);

	assert_err(trust_check_manifest(&roots, NULL, back, T0, &res, &err), 0, &err, NULL);
	assert_int_equal(res.root_signers, 2);
}

static void test_golden(void **state)
{
	_cleanup_(freep) uint8_t *want = NULL, *got = NULL;
	size_t want_len, got_len;

	(void)state;
	got = golden_manifest(&got_len, NULL);
	assert_int_equal(read_file(golden_path, &want, &want_len), 0);
	assert_int_equal(got_len, want_len);
	assert_memory_equal(got, want, got_len);
	assert_int_equal(parse_copy(want, want_len, NULL, NULL), 0);
}

static void test_unique_chunks(void **state)
{
	const size_t mib = 1u << 20;
	_cleanup_(freep) uint8_t *img = calloc(1, 3 * mib);
	_cleanup_(manifest_freep) struct manifest *m = NULL;
	uint64_t s = 4;
	size_t want = 0;

	(void)state;
	assert_non_null(img);
	prng_fill(&s, img + mib, mib);
	m = make_manifest(img, 3 * mib, NULL);
	/* brute force: the first chunk with each id */
	for (size_t i = 0; i < m->n_chunks; i++) {
		bool seen = false;

		for (size_t j = 0; j < i && !seen; j++)
			seen = !memcmp(m->chunks[i].id, m->chunks[j].id, HASH_SIZE);
		want += !seen;
	}
	assert_true(want < m->n_chunks);
	assert_int_equal(manifest_unique_chunks(m), want);
}

/* --- what the parser refuses -------------------------------------------- */

static void test_truncations(void **state)
{
	_cleanup_(freep) uint8_t *buf = NULL;
	size_t len;

	(void)state;
	buf = golden_manifest(&len, NULL);
	for (size_t cut = 0; cut < len; cut++) {
		struct perr err = { "" };

		assert_failed(parse_copy(buf, cut, NULL, &err), &err);
		assert_true(parse_copy(buf, cut, NULL, NULL) < 0);
	}
}

static void test_trailing_garbage(void **state)
{
	_cleanup_(freep) uint8_t *buf = NULL, *longer = NULL;
	struct perr err = { "" };
	size_t len;

	(void)state;
	buf = golden_manifest(&len, NULL);
	longer = calloc(1, len + SIG_SIZE + PUBKEY_SIZE);
	assert_non_null(longer);
	memcpy(longer, buf, len);
	assert_err(parse_copy(longer, len + 1, NULL, &err), -EBADMSG, &err, "signatures need");
	/* even a whole signature's worth: the count says how many there are */
	assert_err(parse_copy(longer, len + SIG_SIZE + PUBKEY_SIZE, NULL, &err), -EBADMSG, &err, "signatures need");
}

static void test_too_big(void **state)
{
	_cleanup_(freep) uint8_t *buf = calloc(1, MANIFEST_MAX_SIZE + 1);
	struct manifest *m = NULL;
	struct perr err = { "" };

	(void)state;
	assert_non_null(buf);
	memcpy(buf, MANIFEST_MAGIC, 8);
	assert_err(manifest_parse(buf, MANIFEST_MAX_SIZE + 1, &m, &err), -EFBIG, &err, "limit");
	assert_null(m);
}

/* Never installs what was not signed: any changed byte makes the manifest
 * unparseable or its signature invalid, never both acceptable. */
static void test_byte_flips(void **state)
{
	static const uint8_t masks[] = { 0x01, 0x80 };
	_cleanup_(manifest_freep) struct manifest *m = NULL;
	_cleanup_(freep) uint8_t *buf = NULL;
	uint8_t roots_buf[2][PUBKEY_SIZE];
	struct trust_roots roots = golden_roots(roots_buf);
	size_t len, parsed = 0;

	(void)state;
	buf = golden_manifest(&len, &m);
	/* unchanged, it is trusted: the flips below are what breaks it */
	assert_int_equal(trust_check_manifest(&roots, NULL, m, T0, NULL, NULL), 0);
	for (size_t at = 0; at < len; at++)
		for (size_t i = 0; i < ELEMENTSOF(masks); i++) {
			_cleanup_(manifest_freep) struct manifest *flipped = NULL;
			struct perr err = { "" };
			int k;

			buf[at] ^= masks[i];
			k = parse_copy(buf, len, &flipped, &err);
			buf[at] ^= masks[i];
			if (k < 0) {
				assert_true(err.msg[0]);
				continue;
			}
			parsed++;
			k = trust_check_manifest(&roots, NULL, flipped, T0, NULL, &err);
			if (k >= 0)
				print_error("byte %zu ^ 0x%02x parses and is trusted\n", at, masks[i]);
			assert_true(k < 0);
		}
	/* many flips (ids, hashes, signatures) parse: the signature is what stops them */
	assert_true(parsed > len / 2);
}

/* A manifest written field by field, independently of manifest_seal(), so
 * that each rejection test can break exactly one rule. */
struct raw {
	const char *magic;
	uint32_t format;
	int32_t body_len_adj;
	const char *product, *version, *payload;
	uint64_t counter, created, expires, image_size;
	struct chunker_params chunking;
	const char *meta[4][2];
	size_t n_meta;
	int64_t meta_count;  /* written instead of n_meta when >= 0 */
	uint32_t lens[4];
	size_t n_chunks;
	int64_t chunk_count; /* written instead of n_chunks when >= 0 */
};

/* A valid manifest: a short last chunk, two metadata entries, no signature. */
static struct raw raw_valid(void)
{
	return (struct raw){
		.magic = MANIFEST_MAGIC,
		.format = MANIFEST_FORMAT,
		.product = "shoal-test",
		.version = "1.0",
		.payload = PAYLOAD_AB_IMAGE,
		.counter = 1,
		.created = T0,
		.image_size = 650,
		.chunking = small,
		.meta = { { "a", "1" }, { "b", "2" } },
		.n_meta = 2,
		.meta_count = -1,
		.lens = { 300, 300, 50 },
		.n_chunks = 3,
		.chunk_count = -1,
	};
}

static void raw_chunk_id(size_t i, uint8_t id[HASH_SIZE])
{
	memset(id, (int)(i + 1), HASH_SIZE);
}

static uint8_t *raw_encode(const struct raw *r, size_t *ret_len)
{
	struct wbuf w = { 0 };
	uint8_t id[HASH_SIZE];
	size_t at;

	wbuf_put(&w, r->magic, 8);
	wbuf_u32(&w, r->format);
	at = wbuf_reserve(&w, 4);
	wbuf_str(&w, r->product);
	wbuf_str(&w, r->version);
	wbuf_u64(&w, r->counter);
	wbuf_u64(&w, r->created);
	wbuf_u64(&w, r->expires);
	wbuf_str(&w, r->payload);
	wbuf_u64(&w, r->image_size);
	memset(id, 0xee, HASH_SIZE);
	wbuf_put(&w, id, HASH_SIZE);
	wbuf_u32(&w, r->chunking.min);
	wbuf_u32(&w, r->chunking.avg);
	wbuf_u32(&w, r->chunking.max);
	wbuf_u16(&w, (uint16_t)(r->meta_count >= 0 ? (size_t)r->meta_count : r->n_meta));
	for (size_t i = 0; i < r->n_meta; i++) {
		wbuf_str(&w, r->meta[i][0]);
		wbuf_str(&w, r->meta[i][1]);
	}
	wbuf_u32(&w, (uint32_t)(r->chunk_count >= 0 ? (size_t)r->chunk_count : r->n_chunks));
	for (size_t i = 0; i < r->n_chunks; i++) {
		raw_chunk_id(i, id);
		wbuf_put(&w, id, HASH_SIZE);
		wbuf_u32(&w, r->lens[i]);
	}
	assert_int_equal(w.err, 0);
	wr_le32(w.p + at, (uint32_t)((int64_t)(w.len - MANIFEST_HEADER_SIZE) + r->body_len_adj));
	wbuf_u8(&w, 0); /* no signatures: the parser does not check them */
	assert_int_equal(w.err, 0);
	return wbuf_steal(&w, ret_len);
}

static int raw_parse(const struct raw *r, struct perr *err)
{
	_cleanup_(freep) uint8_t *buf = NULL;
	size_t len;

	buf = raw_encode(r, &len);
	return parse_copy(buf, len, NULL, err);
}

/* The test encoder writes what manifest_seal() writes: otherwise the
 * rejections below would test some other format. */
static void test_raw_matches_seal(void **state)
{
	struct raw r = raw_valid();
	_cleanup_(manifest_freep) struct manifest *m = manifest_new();
	_cleanup_(freep) uint8_t *raw = NULL, *sealed = NULL;
	struct perr err = { "" };
	size_t raw_len, sealed_len;

	(void)state;
	assert_non_null(m);
	assert_int_equal(manifest_set_strings(m, r.product, r.version, r.payload, &err), 0);
	m->counter = r.counter;
	m->created = r.created;
	m->image_size = r.image_size;
	memset(m->image_hash, 0xee, HASH_SIZE);
	m->chunking = r.chunking;
	assert_int_equal(manifest_add_meta(m, "b", "2", &err), 0);
	assert_int_equal(manifest_add_meta(m, "a", "1", &err), 0);
	for (size_t i = 0; i < r.n_chunks; i++) {
		uint8_t id[HASH_SIZE];

		raw_chunk_id(i, id);
		assert_int_equal(manifest_add_chunk(m, id, r.lens[i], &err), 0);
	}
	assert_err(manifest_seal(m, &err), 0, &err, NULL);
	assert_int_equal(manifest_format(m, &sealed, &sealed_len, &err), 0);
	raw = raw_encode(&r, &raw_len);
	assert_int_equal(raw_len, sealed_len);
	assert_memory_equal(raw, sealed, raw_len);
	assert_err(raw_parse(&r, &err), 0, &err, NULL);
}

static void test_reject_chunks(void **state)
{
	struct perr err = { "" };
	struct raw r;

	(void)state;
	r = raw_valid();
	r.image_size = 651;
	assert_err(raw_parse(&r, &err), -EBADMSG, &err, "add up to 650 bytes, image size says 651");
	r = raw_valid();
	r.lens[0] = 63; /* 63 + 300 + 287 = 650 */
	r.lens[2] = 287;
	assert_err(raw_parse(&r, &err), -EBADMSG, &err, "chunk 0 has length 63, below the minimum 64");
	r = raw_valid();
	r.lens[0] = 1025;
	r.image_size = 1375;
	assert_err(raw_parse(&r, &err), -EBADMSG, &err, "chunk 0 has length 1025, outside 1..1024");
	r = raw_valid();
	r.lens[1] = 0;
	r.lens[2] = 350;
	assert_err(raw_parse(&r, &err), -EBADMSG, &err, "chunk 1 has length 0");
	r = raw_valid();
	r.n_chunks = 0;
	assert_err(raw_parse(&r, &err), -EBADMSG, &err, "chunk table is empty");
	r = raw_valid();
	r.n_chunks = 0;
	r.image_size = 0;
	assert_err(raw_parse(&r, &err), -EBADMSG, &err, "image size is zero");
	r = raw_valid();
	r.chunking.avg = 300;
	assert_err(raw_parse(&r, &err), -EBADMSG, &err, "chunker parameters: chunk average 300");

	/* what is allowed: a single chunk shorter than min, a max-size chunk */
	r = raw_valid();
	r.n_chunks = 1;
	r.lens[0] = 1;
	r.image_size = 1;
	assert_err(raw_parse(&r, &err), 0, &err, NULL);
	r = raw_valid();
	r.lens[0] = 1024;
	r.image_size = 1374;
	assert_err(raw_parse(&r, &err), 0, &err, NULL);
}

/* A count that promises more than the bytes left is refused before any
 * allocation: 2^20 chunks would be a 48 MiB array. */
static void test_reject_counts(void **state)
{
	struct perr err = { "" };
	struct raw r;

	(void)state;
	r = raw_valid();
	r.chunk_count = MANIFEST_MAX_CHUNKS;
	assert_err(raw_parse(&r, &err), -EBADMSG, &err, "chunk count 1048576 needs");
	r.chunk_count = 4;
	assert_err(raw_parse(&r, &err), -EBADMSG, &err, "chunk count 4 needs 144 bytes, the body has 108 left");
	r.chunk_count = 2;
	assert_err(raw_parse(&r, &err), -EBADMSG, &err, "chunk count 2 needs");
	r.chunk_count = MANIFEST_MAX_CHUNKS + 1;
	assert_err(raw_parse(&r, &err), -EBADMSG, &err, "exceeds");
	r.chunk_count = UINT32_MAX;
	assert_err(raw_parse(&r, &err), -EBADMSG, &err, "exceeds");

	r = raw_valid();
	r.meta_count = 40;
	assert_err(raw_parse(&r, &err), -EBADMSG, &err, "metadata count 40 does not fit");
	r.meta_count = MANIFEST_MAX_META + 1;
	assert_err(raw_parse(&r, &err), -EBADMSG, &err, "metadata count 65 exceeds 64");
	r.meta_count = UINT16_MAX;
	assert_err(raw_parse(&r, &err), -EBADMSG, &err, "exceeds");
}

static void test_reject_meta(void **state)
{
	char long_value[MANIFEST_META_VALUE_MAX + 2];
	struct perr err = { "" };
	struct raw r;

	(void)state;
	r = raw_valid();
	r.meta[0][0] = "b";
	r.meta[1][0] = "a";
	assert_err(raw_parse(&r, &err), -EBADMSG, &err, "metadata key 'a' is duplicated or out of order");
	r = raw_valid();
	r.meta[1][0] = "a";
	assert_err(raw_parse(&r, &err), -EBADMSG, &err, "metadata key 'a' is duplicated or out of order");
	/* "ab" after "a": a prefix sorts first */
	r = raw_valid();
	r.meta[1][0] = "ab";
	assert_err(raw_parse(&r, &err), 0, &err, NULL);
	r = raw_valid();
	r.meta[0][0] = "a b";
	assert_err(raw_parse(&r, &err), -EBADMSG, &err, "metadata key");
	r = raw_valid();
	r.meta[0][0] = "";
	assert_err(raw_parse(&r, &err), -EBADMSG, &err, "metadata key");
	r = raw_valid();
	r.meta[0][1] = "two\nlines";
	assert_err(raw_parse(&r, &err), -EBADMSG, &err, "metadata value");
	r = raw_valid();
	r.meta[0][1] = "";
	assert_err(raw_parse(&r, &err), 0, &err, NULL);

	memset(long_value, 'v', sizeof(long_value) - 1);
	long_value[sizeof(long_value) - 1] = 0;
	r.meta[0][1] = long_value;
	assert_err(raw_parse(&r, &err), -EBADMSG, &err, "metadata value at byte");
	long_value[MANIFEST_META_VALUE_MAX] = 0;
	assert_err(raw_parse(&r, &err), 0, &err, NULL);
}

static void test_reject_header(void **state)
{
	struct perr err = { "" };
	struct raw r;

	(void)state;
	r = raw_valid();
	r.magic = "SHOAL-KR";
	assert_err(raw_parse(&r, &err), -EBADMSG, &err, "bad magic");
	r = raw_valid();
	r.format = 2;
	assert_err(raw_parse(&r, &err), -EPROTONOSUPPORT, &err, "format 2 is not supported");
	r.format = 0;
	assert_err(raw_parse(&r, &err), -EPROTONOSUPPORT, &err, "format 0");
	r = raw_valid();
	/* the signature count byte follows the body: +1 still fits the file */
	r.body_len_adj = 1;
	assert_failed(raw_parse(&r, &err), &err);
	r.body_len_adj = 2;
	assert_err(raw_parse(&r, &err), -EBADMSG, &err, "body length");
	r.body_len_adj = 1 << 30;
	assert_err(raw_parse(&r, &err), -EBADMSG, &err, "body length");
	r.body_len_adj = -1;
	assert_failed(raw_parse(&r, &err), &err);
	r.body_len_adj = -36;
	assert_failed(raw_parse(&r, &err), &err);
}

static void test_reject_strings(void **state)
{
	static const struct {
		const char *product, *version, *payload, *needle;
	} cases[] = {
		{ "my board", NULL, NULL, "product" },
		{ "", NULL, NULL, "product" },
		{ "board/7", NULL, NULL, "product" },
		{ "b\xc3\xbc", NULL, NULL, "product" },
		{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", NULL, NULL, "product" }, /* 65 */
		{ NULL, "1.0\x01", NULL, "version" },
		{ NULL, "1.0\n", NULL, "version" },
		{ NULL, "1.0\x7f", NULL, "version" },
		{ NULL, "\xff", NULL, "version" },
		{ NULL, "", NULL, "version" },
		{ NULL, NULL, "AB-image", "payload type" },
		{ NULL, NULL, "ab image", "payload type" },
		{ NULL, NULL, "", "payload type" },
	};
	struct perr err = { "" };
	struct raw r;

	(void)state;
	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		r = raw_valid();
		if (cases[i].product)
			r.product = cases[i].product;
		if (cases[i].version)
			r.version = cases[i].version;
		if (cases[i].payload)
			r.payload = cases[i].payload;
		assert_err(raw_parse(&r, &err), -EBADMSG, &err, cases[i].needle);
	}
	/* the whole charset and a 64-byte product are fine */
	r = raw_valid();
	r.product = "Board_2.rev+b:x-1";
	r.version = "2.0 \xe2\x80\x94 \xf0\x9f\x9a\x80";
	assert_err(raw_parse(&r, &err), 0, &err, NULL);
	r.product = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
	assert_err(raw_parse(&r, &err), 0, &err, NULL);
}

/* A NUL inside a string would make the text a device shows (and compares
 * against its product) differ from the bytes that were signed. */
static void test_reject_nul(void **state)
{
	static const char *const where[] = { "shoal-test", "1.0", "ab-image", "a", "1" };
	struct raw r = raw_valid();

	(void)state;
	for (size_t i = 0; i < ELEMENTSOF(where); i++) {
		_cleanup_(freep) uint8_t *buf = NULL;
		struct perr err = { "" };
		uint8_t *at;
		size_t len;

		buf = raw_encode(&r, &len);
		at = memmem(buf, len, where[i], strlen(where[i]));
		assert_non_null(at);
		at[strlen(where[i]) - 1] = 0;
		assert_failed(parse_copy(buf, len, NULL, &err), &err);
	}
}

/* Messages about body fields give offsets from the start of the file, so
 * that a person with a hex dump lands on the field: the product starts at
 * byte 16, right after the header. */
static void test_error_offsets(void **state)
{
	struct perr err = { "" };
	struct raw r = raw_valid();

	(void)state;
	r.product = "my board";
	assert_err(raw_parse(&r, &err), -EBADMSG, &err, "product at byte 16:");
}

static void test_reject_expiry(void **state)
{
	struct perr err = { "" };
	struct raw r;

	(void)state;
	r = raw_valid();
	r.expires = T0;
	assert_err(raw_parse(&r, &err), -EBADMSG, &err, "is not after creation");
	r.expires = T0 - 1;
	assert_err(raw_parse(&r, &err), -EBADMSG, &err, "is not after creation");
	r.expires = T0 + 1;
	assert_err(raw_parse(&r, &err), 0, &err, NULL);
}

/* The golden manifest's signed part followed by a hand-made signature set. */
static uint8_t *with_sigs(const struct manifest *m, uint8_t count, const struct signature *v, size_t n,
			  size_t *ret_len)
{
	struct wbuf w = { 0 };

	wbuf_put(&w, m->signed_bytes, m->signed_len);
	wbuf_u8(&w, count);
	for (size_t i = 0; i < n; i++) {
		wbuf_put(&w, v[i].pub, PUBKEY_SIZE);
		wbuf_put(&w, v[i].sig, SIG_SIZE);
	}
	assert_int_equal(w.err, 0);
	return wbuf_steal(&w, ret_len);
}

static int parse_with_sigs(const struct manifest *m, uint8_t count, const struct signature *v, size_t n,
			   struct perr *err)
{
	_cleanup_(freep) uint8_t *buf = NULL;
	size_t len;

	buf = with_sigs(m, count, v, n, &len);
	return parse_copy(buf, len, NULL, err);
}

static void test_reject_signers(void **state)
{
	_cleanup_(manifest_freep) struct manifest *m = NULL;
	_cleanup_(freep) uint8_t *golden = NULL;
	struct signature v[SIGSET_MAX + 1];
	struct perr err = { "" };
	size_t len;

	(void)state;
	golden = golden_manifest(&len, &m);
	assert_int_equal(m->sigs.n, 2);

	/* the same signer twice, and two signers out of order */
	v[0] = v[1] = m->sigs.v[0];
	assert_err(parse_with_sigs(m, 2, v, 2, &err), -EBADMSG, &err, "duplicated or out of order");
	v[0] = m->sigs.v[1];
	v[1] = m->sigs.v[0];
	assert_err(parse_with_sigs(m, 2, v, 2, &err), -EBADMSG, &err, "duplicated or out of order");

	/* 16 distinct signers parse (their signatures are trust's business), 17 do not */
	memset(v, 0, sizeof(v));
	for (size_t i = 0; i <= SIGSET_MAX; i++)
		v[i].pub[0] = (uint8_t)(i + 1);
	assert_err(parse_with_sigs(m, SIGSET_MAX, v, SIGSET_MAX, &err), 0, &err, NULL);
	assert_err(parse_with_sigs(m, SIGSET_MAX + 1, v, SIGSET_MAX + 1, &err), -EBADMSG, &err,
		   "signature count 17 exceeds 16");
	assert_err(parse_with_sigs(m, 255, v, 1, &err), -EBADMSG, &err, "exceeds");
	/* a count that does not match the bytes */
	assert_err(parse_with_sigs(m, 3, v, 2, &err), -EBADMSG, &err, "3 signatures need 288 bytes, 192 are left");
	assert_err(parse_with_sigs(m, 0, v, 1, &err), -EBADMSG, &err, "0 signatures need 0 bytes");
}

/* --- building ----------------------------------------------------------- */

static void test_setters(void **state)
{
	_cleanup_(manifest_freep) struct manifest *m = manifest_new();
	struct perr err = { "" };
	char long_value[MANIFEST_META_VALUE_MAX + 2];
	uint8_t id[HASH_SIZE] = { 0 };

	(void)state;
	assert_non_null(m);
	/* the defaults a new manifest starts from */
	assert_int_equal(m->chunking.min, CHUNKER_MIN_DEFAULT);
	assert_int_equal(m->chunking.avg, CHUNKER_AVG_DEFAULT);
	assert_int_equal(m->chunking.max, CHUNKER_MAX_DEFAULT);

	assert_err(manifest_set_strings(m, "bad product", "1", "ab-image", &err), -EINVAL, &err, "product");
	assert_err(manifest_set_strings(m, "p", "1.0\x01", "ab-image", &err), -EINVAL, &err, "version");
	assert_err(manifest_set_strings(m, "p", "1.0", "AB", &err), -EINVAL, &err, "payload");
	/* nothing is kept from a refused call */
	assert_null(m->product);
	assert_int_equal(manifest_set_strings(m, "p", "1.0", "ab-image", &err), 0);
	assert_int_equal(manifest_set_strings(m, "q", "2.0", "mod.x_y-z", &err), 0);
	assert_string_equal(m->product, "q");
	assert_string_equal(m->payload_type, "mod.x_y-z");

	assert_int_equal(manifest_add_meta(m, "zeta", "z", &err), 0);
	assert_int_equal(manifest_add_meta(m, "alpha", "a", &err), 0);
	assert_int_equal(manifest_add_meta(m, "mid", "", &err), 0);
	assert_err(manifest_add_meta(m, "mid", "again", &err), -EEXIST, &err, "'mid' given twice");
	assert_err(manifest_add_meta(m, "", "x", &err), -EINVAL, &err, "metadata key");
	assert_err(manifest_add_meta(m, "a=b", "x", &err), -EINVAL, &err, "metadata key");
	assert_err(manifest_add_meta(m, "k", "tab\there", &err), -EINVAL, &err, "metadata value");
	memset(long_value, 'v', sizeof(long_value) - 1);
	long_value[sizeof(long_value) - 1] = 0;
	assert_err(manifest_add_meta(m, "k", long_value, &err), -EINVAL, &err, "metadata value");
	long_value[MANIFEST_META_VALUE_MAX] = 0;
	assert_int_equal(manifest_add_meta(m, "k", long_value, &err), 0);
	assert_int_equal(m->n_meta, 4);
	assert_string_equal(m->meta[0].key, "alpha");
	assert_string_equal(m->meta[1].key, "k");
	assert_string_equal(m->meta[2].key, "mid");
	assert_string_equal(m->meta[3].key, "zeta");
	for (size_t i = m->n_meta; i < MANIFEST_MAX_META; i++) {
		char key[16];

		snprintf(key, sizeof(key), "n%03zu", i);
		assert_int_equal(manifest_add_meta(m, key, "", &err), 0);
	}
	assert_err(manifest_add_meta(m, "one-more", "", &err), -E2BIG, &err, "more than 64");

	assert_int_equal(manifest_add_chunk(m, id, 100000, &err), 0);
	assert_int_equal(manifest_add_chunk(m, id, 20000, &err), 0);
	assert_int_equal(manifest_add_chunk(m, id, 5, &err), 0);
	assert_int_equal(m->chunks[1].offset, 100000);
	assert_int_equal(m->chunks[2].offset, 120000);
	m->image_size = 120005;
	assert_err(manifest_seal(m, &err), 0, &err, NULL);
	assert_int_equal(manifest_unique_chunks(m), 1);
}

static void test_seal_and_sign(void **state)
{
	_cleanup_(manifest_freep) struct manifest *m = manifest_new();
	_cleanup_(freep) uint8_t *img = prng_image(5, 50000), *buf = NULL;
	struct test_key key;
	struct perr err = { "" };
	uint8_t id[HASH_SIZE];
	size_t len;

	(void)state;
	make_key(SIGNER_A, &key);
	assert_non_null(m);
	chunk_id(img, 50000, id);
	assert_int_equal(manifest_add_chunk(m, id, 50000, &err), 0);
	m->image_size = 50000;
	assert_err(manifest_seal(m, &err), -EINVAL, &err, "must be set");
	assert_int_equal(manifest_set_strings(m, "p", "1", "ab-image", &err), 0);
	assert_err(manifest_sign(m, key.sk, &err), -EINVAL, &err, "sealed before signing");
	assert_err(manifest_format(m, &buf, &len, &err), -EINVAL, &err, "sealed before");
	assert_null(buf);

	/* seal applies the parser's rules: what it writes, a device accepts */
	m->image_size = 50001;
	assert_err(manifest_seal(m, &err), -EBADMSG, &err, "add up to");
	m->image_size = 50000;
	m->created = T0;
	m->expires = T0;
	assert_err(manifest_seal(m, &err), -EBADMSG, &err, "expiry");
	m->expires = 0;
	m->chunking = (struct chunker_params){ 64, 256, 40000 };
	assert_err(manifest_seal(m, &err), -EBADMSG, &err, "outside 1..40000");
	m->chunking.avg = 300;
	assert_err(manifest_seal(m, &err), -EBADMSG, &err, "chunker parameters");
	m->chunking = (struct chunker_params){ CHUNKER_MIN_DEFAULT, CHUNKER_AVG_DEFAULT, CHUNKER_MAX_DEFAULT };
	assert_err(manifest_seal(m, &err), 0, &err, NULL);

	/* signing twice with one key keeps one signature */
	assert_int_equal(manifest_sign(m, key.sk, &err), 0);
	assert_int_equal(manifest_sign(m, key.sk, &err), 0);
	assert_int_equal(m->sigs.n, 1);
	assert_memory_equal(m->sigs.v[0].pub, key.pk, PUBKEY_SIZE);
	/* up to 16 signers, sorted by key */
	for (uint8_t s = 2; s <= SIGSET_MAX; s++) {
		struct test_key k;

		make_key(s, &k);
		assert_int_equal(manifest_sign(m, k.sk, &err), 0);
	}
	assert_int_equal(m->sigs.n, SIGSET_MAX);
	for (size_t i = 1; i < m->sigs.n; i++)
		assert_true(memcmp(m->sigs.v[i - 1].pub, m->sigs.v[i].pub, PUBKEY_SIZE) < 0);
	make_key(SIGSET_MAX + 1, &key);
	assert_err(manifest_sign(m, key.sk, &err), -E2BIG, &err, "more than 16");
	/* a new body drops the signatures made over the old one */
	m->counter = 2;
	assert_int_equal(manifest_seal(m, &err), 0);
	assert_int_equal(m->sigs.n, 0);
}

static int write_golden(const char *path)
{
	_cleanup_(freep) uint8_t *buf = NULL;
	size_t len;
	int k;

	buf = golden_manifest(&len, NULL);
	k = write_file(path, buf, len);
	if (k < 0) {
		fprintf(stderr, "%s: %s\n", path, strerror(-k));
		return 1;
	}
	printf("%s: %zu bytes\n", path, len);
	return 0;
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_golden),
		cmocka_unit_test(test_unique_chunks),
		cmocka_unit_test(test_truncations),
		cmocka_unit_test(test_trailing_garbage),
		cmocka_unit_test(test_too_big),
		cmocka_unit_test(test_byte_flips),
		cmocka_unit_test(test_raw_matches_seal),
		cmocka_unit_test(test_reject_chunks),
		cmocka_unit_test(test_reject_counts),
		cmocka_unit_test(test_reject_meta),
		cmocka_unit_test(test_reject_header),
		cmocka_unit_test(test_reject_strings),
		cmocka_unit_test(test_reject_nul),
		cmocka_unit_test(test_error_offsets),
		cmocka_unit_test(test_reject_expiry),
		cmocka_unit_test(test_reject_signers),
		cmocka_unit_test(test_setters),
		cmocka_unit_test(test_seal_and_sign),
	};

	if (sodium_init() < 0)
		return 1;
	if (argc == 3 && !strcmp(argv[1], "--write-golden"))
		return write_golden(argv[2]);
	if (argc != 2) {
		fprintf(stderr, "usage: %s VECTOR | --write-golden VECTOR\n", argv[0]);
		return 2;
	}
	golden_path = argv[1];
	return cmocka_run_group_tests(tests, NULL, NULL);
}
