/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Chunk ids and stored encodings. A chunk arrives from a peer or a bundle
 * that nobody vouches for, so chunk_decode() must refuse every malformed or
 * mismatching input and must never write past the `len` bytes the manifest
 * promised: all output buffers here are exactly that size, so that ASan
 * sees a single byte too many. */
#include <stdio.h>

#include "chunk.h"
#include "helpers.h"

enum fill { RANDOM, TEXT, ZEROS };

/* Chunk contents of three kinds: incompressible, compressible, and the
 * zero runs a filesystem image is full of. Malloc'ed, caller frees. */
static uint8_t *make_data(enum fill f, size_t n, uint64_t seed)
{
	static const char words[] = "shoal moves signed updates device to device ";
	uint8_t *p = prng_image(seed, n);

	if (f == TEXT)
		for (size_t i = 0; i < n; i++)
			p[i] = (p[i] & 7) ? (uint8_t)words[i % (sizeof(words) - 1)] : p[i];
	else if (f == ZEROS)
		memset(p, 0, n);
	return p;
}

/* The stored zstd form of p, with or without the content size in the
 * frame header. Malloc'ed, caller frees. */
static uint8_t *compress(const uint8_t *p, size_t n, bool content_size, size_t *ret_len)
{
	ZSTD_CCtx *cctx = ZSTD_createCCtx();
	size_t cap = ZSTD_compressBound(n), r;
	uint8_t *out = malloc(cap);

	assert_non_null(cctx);
	assert_non_null(out);
	if (content_size) {
		assert_int_equal(chunk_compress(cctx, 3, p, n, out, cap, ret_len), 0);
	} else {
		assert_false(ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 0)));
		r = ZSTD_compress2(cctx, out, cap, p, n);
		assert_false(ZSTD_isError(r));
		*ret_len = r;
	}
	ZSTD_freeCCtx(cctx);
	return out;
}

/* Decodes into a heap buffer of exactly len bytes and, on success, checks
 * the bytes; returns what chunk_decode returned. */
static int decode(enum chunk_enc enc, const uint8_t *stored, size_t stored_len, const uint8_t *id, uint32_t len,
		  const uint8_t *want, struct perr *err)
{
	_cleanup_(freep) uint8_t *out = malloc(len ? len : 1);
	_cleanup_(freep) uint8_t *copy = malloc(stored_len ? stored_len : 1);
	ZSTD_DCtx *dctx = ZSTD_createDCtx();
	int k;

	assert_non_null(out);
	assert_non_null(copy);
	assert_non_null(dctx);
	/* an exact-size copy of the input too: no read past stored_len either */
	memcpy(copy, stored, stored_len);
	k = chunk_decode(dctx, enc, copy, stored_len, id, len, out, err);
	ZSTD_freeDCtx(dctx);
	if (k == 0 && want)
		assert_memory_equal(out, want, len);
	return k;
}

static void test_chunk_id(void **state)
{
	uint8_t id[HASH_SIZE];
	char hex[2 * HASH_SIZE + 1];

	(void)state;
	/* BLAKE2b with a 32-byte digest, unkeyed (RFC 7693 parameters) */
	chunk_id((const uint8_t *)"", 0, id);
	assert_string_equal(hex_encode(id, HASH_SIZE, hex),
			    "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8");
	chunk_id((const uint8_t *)"abc", 3, id);
	assert_string_equal(hex_encode(id, HASH_SIZE, hex),
			    "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319");
	assert_true(chunk_stored_max() >= ZSTD_compressBound(CHUNKER_MAX_LIMIT));
}

static void test_roundtrip(void **state)
{
	static const size_t sizes[] = { 1, 100, 4096, CHUNKER_MIN_DEFAULT, 65537, CHUNKER_MAX_DEFAULT };

	(void)state;
	for (enum fill f = RANDOM; f <= ZEROS; f++)
		for (size_t i = 0; i < ELEMENTSOF(sizes); i++) {
			size_t n = sizes[i], slen;
			_cleanup_(freep) uint8_t *data = make_data(f, n, i), *z = compress(data, n, true, &slen);
			uint8_t id[HASH_SIZE];
			struct perr err = { "" };

			chunk_id(data, n, id);
			assert_int_equal(ZSTD_getFrameContentSize(z, slen), n);
			assert_err(decode(CHUNK_ENC_ZSTD, z, slen, id, (uint32_t)n, data, &err), 0, &err, NULL);
			assert_err(decode(CHUNK_ENC_PLAIN, data, n, id, (uint32_t)n, data, &err), 0, &err, NULL);
			if (f != RANDOM && n >= 4096)
				assert_true(slen < n / 2);
		}
}

static void test_compress_no_room(void **state)
{
	_cleanup_(freep) uint8_t *data = make_data(RANDOM, 4096, 1), *out = malloc(100);
	ZSTD_CCtx *cctx = ZSTD_createCCtx();
	size_t len = 12345;

	(void)state;
	assert_non_null(cctx);
	assert_int_equal(chunk_compress(cctx, 3, data, 4096, out, 100, &len), -ENOBUFS);
	assert_int_equal(len, 12345);
	ZSTD_freeCCtx(cctx);
}

static void test_wrong_id(void **state)
{
	_cleanup_(freep) uint8_t *data = make_data(TEXT, 5000, 2), *z = NULL;
	uint8_t id[HASH_SIZE];
	char hex[2 * HASH_SIZE + 1];
	struct perr err = { "" };
	size_t slen;

	(void)state;
	z = compress(data, 5000, true, &slen);
	chunk_id(data, 5000, id);
	id[HASH_SIZE - 1] ^= 1;
	hex_encode(id, HASH_SIZE, hex);
	/* the message names the id that was asked for: that is the chunk to refetch */
	assert_err(decode(CHUNK_ENC_ZSTD, z, slen, id, 5000, NULL, &err), -EILSEQ, &err, hex);
	assert_err(decode(CHUNK_ENC_PLAIN, data, 5000, id, 5000, NULL, &err), -EILSEQ, &err, hex);
}

/* A frame that announces another size than the manifest's is refused
 * before it is decompressed: out stays untouched. */
static void test_other_content_size(void **state)
{
	_cleanup_(freep) uint8_t *data = make_data(TEXT, 5001, 3);
	ZSTD_DCtx *dctx = ZSTD_createDCtx();
	uint8_t id[HASH_SIZE];

	(void)state;
	assert_non_null(dctx);
	chunk_id(data, 5000, id);
	for (int d = -1; d <= 1; d += 2) {
		size_t slen;
		_cleanup_(freep) uint8_t *z = compress(data, (size_t)(5000 + d), true, &slen), *out = malloc(5000);
		struct perr err = { "" };

		memset(out, 0xaa, 5000);
		assert_err(chunk_decode(dctx, CHUNK_ENC_ZSTD, z, slen, id, 5000, out, &err), -EBADMSG, &err,
			   "not a zstd frame of 5000 bytes");
		for (size_t i = 0; i < 5000; i++)
			assert_int_equal(out[i], 0xaa);
	}
	ZSTD_freeDCtx(dctx);
}

/* Frames that do not announce their size: too long must fail inside the
 * buffer, too short must fail, exact must work. */
static void test_unknown_content_size(void **state)
{
	_cleanup_(freep) uint8_t *data = make_data(TEXT, 6000, 4);
	uint8_t id[HASH_SIZE];
	struct perr err = { "" };

	(void)state;
	chunk_id(data, 5000, id);
	for (size_t n = 4999; n <= 5001; n++) {
		size_t slen;
		_cleanup_(freep) uint8_t *z = compress(data, n, false, &slen);

		assert_int_equal(ZSTD_getFrameContentSize(z, slen), ZSTD_CONTENTSIZE_UNKNOWN);
		assert_err(decode(CHUNK_ENC_ZSTD, z, slen, id, 5000, data, &err), n == 5000 ? 0 : -EBADMSG, &err,
			   n == 5000 ? NULL : "corrupt");
	}
	/* the same with a whole extra chunk behind it */
	{
		size_t slen;
		_cleanup_(freep) uint8_t *z = compress(data, 6000, false, &slen);

		assert_err(decode(CHUNK_ENC_ZSTD, z, slen, id, 5000, NULL, &err), -EBADMSG, &err, "corrupt");
	}
}

/* A first frame of the right size passes the header check; a second frame
 * behind it is refused before decoding: a stored chunk is exactly one frame. */
static void test_second_frame(void **state)
{
	_cleanup_(freep) uint8_t *data = make_data(TEXT, 5000, 5), *a = NULL, *b = NULL, *both = NULL;
	uint8_t id[HASH_SIZE];
	struct perr err = { "" };
	size_t alen, blen;

	(void)state;
	chunk_id(data, 5000, id);
	a = compress(data, 5000, true, &alen);
	b = compress(data, 100, true, &blen);
	both = malloc(alen + blen);
	assert_non_null(both);
	memcpy(both, a, alen);
	memcpy(both + alen, b, blen);
	assert_err(decode(CHUNK_ENC_ZSTD, both, alen + blen, id, 5000, NULL, &err), -EBADMSG, &err,
		   "not exactly one zstd frame");
}

/* Bit flips anywhere in a frame. zstd stores no checksum here and some bits
 * of its encoding are redundant, so a flip may still decode: then it must
 * decode to exactly the original bytes (decode() checks them), because the
 * id is what vouches for a chunk, not its stored form. Almost all flips
 * must be refused. */
static void test_corrupt_frame(void **state)
{
	static const uint8_t masks[] = { 0x01, 0x80, 0xff };
	_cleanup_(freep) uint8_t *data = make_data(TEXT, 3000, 6), *z = NULL;
	uint8_t id[HASH_SIZE];
	size_t slen, refused = 0, tried = 0;

	(void)state;
	chunk_id(data, 3000, id);
	z = compress(data, 3000, true, &slen);
	for (size_t at = 0; at < slen; at++)
		for (size_t m = 0; m < ELEMENTSOF(masks); m++) {
			struct perr err = { "" };
			int k;

			z[at] ^= masks[m];
			k = decode(CHUNK_ENC_ZSTD, z, slen, id, 3000, data, &err);
			z[at] ^= masks[m];
			if (k != 0 && k != -EBADMSG && k != -EILSEQ)
				print_error("byte %zu ^ 0x%02x: %d\n", at, masks[m], k);
			assert_true(k == 0 || k == -EBADMSG || k == -EILSEQ);
			if (k < 0) {
				assert_true(err.msg[0]);
				refused++;
			}
			tried++;
		}
	assert_true(refused * 100 >= tried * 95);
}

static void test_truncated_frame(void **state)
{
	_cleanup_(freep) uint8_t *data = make_data(RANDOM, 3000, 7), *z = NULL;
	uint8_t id[HASH_SIZE];
	size_t slen;

	(void)state;
	chunk_id(data, 3000, id);
	z = compress(data, 3000, true, &slen);
	for (size_t cut = 0; cut < slen; cut++) {
		struct perr err = { "" };

		assert_err(decode(CHUNK_ENC_ZSTD, z, cut, id, 3000, NULL, &err), -EBADMSG, &err, "chunk");
	}
	/* and the same frame whole still decodes: the loop tested truncation only */
	assert_int_equal(decode(CHUNK_ENC_ZSTD, z, slen, id, 3000, data, NULL), 0);
}

static void test_plain_wrong_length(void **state)
{
	_cleanup_(freep) uint8_t *data = make_data(RANDOM, 1001, 8);
	uint8_t id[HASH_SIZE];
	struct perr err = { "" };

	(void)state;
	chunk_id(data, 1000, id);
	assert_err(decode(CHUNK_ENC_PLAIN, data, 999, id, 1000, NULL, &err), -EBADMSG, &err, "999 plain bytes");
	assert_err(decode(CHUNK_ENC_PLAIN, data, 1001, id, 1000, NULL, &err), -EBADMSG, &err, "1001 plain bytes");
	assert_err(decode(CHUNK_ENC_PLAIN, data, 0, id, 1000, NULL, &err), -EBADMSG, &err, "plain");
}

static void test_unknown_encoding(void **state)
{
	_cleanup_(freep) uint8_t *data = make_data(RANDOM, 100, 9);
	uint8_t id[HASH_SIZE];
	struct perr err = { "" };

	(void)state;
	chunk_id(data, 100, id);
	assert_err(decode((enum chunk_enc)2, data, 100, id, 100, NULL, &err), -EBADMSG, &err, "unknown encoding 2");
	assert_err(decode((enum chunk_enc)255, data, 100, id, 100, NULL, &err), -EBADMSG, &err, "encoding");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_chunk_id),
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_compress_no_room),
		cmocka_unit_test(test_wrong_id),
		cmocka_unit_test(test_other_content_size),
		cmocka_unit_test(test_unknown_content_size),
		cmocka_unit_test(test_second_frame),
		cmocka_unit_test(test_corrupt_frame),
		cmocka_unit_test(test_truncated_frame),
		cmocka_unit_test(test_plain_wrong_length),
		cmocka_unit_test(test_unknown_encoding),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
