/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The keyring format: round trip, a golden vector, and the parser's
 * refusals. Keyrings travel peer to peer like any data, so as with
 * manifests every changed byte must make it unparseable or untrusted.
 *
 *   test-keyring VECTOR                  compare with tests/vectors/keyring-v1.bin
 *   test-keyring --write-golden VECTOR   (re)write it, only when the format
 *                                        changes on purpose */
#include <stdio.h>

#include "codec.h"
#include "helpers.h"

static const char *golden_path;

#define ROOT_A 0x10
#define ROOT_B 0x11

/* The golden keyring: three release keys (one with a validity period, one
 * without a name), threshold 2, an expiry, signed by two roots. */
static struct keyring *golden_keyring(void)
{
	static const struct {
		uint8_t seed;
		uint64_t not_before, not_after;
		const char *name;
	} keys[] = {
		{ 0x20, 0, 0, "release-a" },
		{ 0x21, T0 - 100, T0 + 10 * YEAR, "release-b (gr\xc3\xbcn)" },
		{ 0x22, 0, 0, NULL },
	};
	struct keyring *kr = keyring_new();
	struct perr err = { "" };
	struct test_key k;

	assert_non_null(kr);
	kr->version = 3;
	kr->created = T0;
	kr->expires = T0 + YEAR;
	kr->threshold = 2;
	for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
		make_key(keys[i].seed, &k);
		assert_err(keyring_add_key(kr, k.pk, keys[i].not_before, keys[i].not_after, keys[i].name, &err), 0,
			   &err, NULL);
	}
	assert_err(keyring_seal(kr, &err), 0, &err, NULL);
	make_key(ROOT_A, &k);
	assert_int_equal(keyring_sign(kr, k.sk, &err), 0);
	make_key(ROOT_B, &k);
	assert_int_equal(keyring_sign(kr, k.sk, &err), 0);
	return kr;
}

static uint8_t *golden_bytes(size_t *ret_len)
{
	_cleanup_(keyring_freep) struct keyring *kr = golden_keyring();
	struct perr err = { "" };
	uint8_t *buf = NULL;

	assert_err(keyring_format(kr, &buf, ret_len, &err), 0, &err, NULL);
	return buf;
}

static struct trust_roots golden_roots(uint8_t (*storage)[PUBKEY_SIZE])
{
	struct test_key keys[2];

	make_key(ROOT_A, &keys[0]);
	make_key(ROOT_B, &keys[1]);
	return roots_of(keys, 2, storage);
}

/* Parses an exact-size heap copy (ASan sees any read past len); *ret must
 * be written only on success. */
static int parse_copy(const uint8_t *buf, size_t len, struct keyring **ret, struct perr *err)
{
	_cleanup_(freep) uint8_t *copy = malloc(len ? len : 1);
	struct keyring *kr = NULL;
	int k;

	assert_non_null(copy);
	memcpy(copy, buf, len);
	if (err)
		err->msg[0] = 0;
	k = keyring_parse(copy, len, &kr, err);
	if (k < 0)
		assert_null(kr);
	else
		assert_non_null(kr);
	if (ret)
		*ret = kr;
	else
		keyring_free(kr);
	return k;
}

static void assert_keyring_equal(const struct keyring *a, const struct keyring *b)
{
	assert_int_equal(a->version, b->version);
	assert_int_equal(a->created, b->created);
	assert_int_equal(a->expires, b->expires);
	assert_int_equal(a->threshold, b->threshold);
	assert_int_equal(a->n_keys, b->n_keys);
	for (size_t i = 0; i < a->n_keys; i++) {
		assert_memory_equal(a->keys[i].pub, b->keys[i].pub, PUBKEY_SIZE);
		assert_int_equal(a->keys[i].not_before, b->keys[i].not_before);
		assert_int_equal(a->keys[i].not_after, b->keys[i].not_after);
		assert_string_equal(a->keys[i].name, b->keys[i].name);
	}
	assert_int_equal(a->sigs.n, b->sigs.n);
	for (size_t i = 0; i < a->sigs.n; i++) {
		assert_memory_equal(a->sigs.v[i].pub, b->sigs.v[i].pub, PUBKEY_SIZE);
		assert_memory_equal(a->sigs.v[i].sig, b->sigs.v[i].sig, SIG_SIZE);
	}
	assert_int_equal(a->signed_len, b->signed_len);
	assert_memory_equal(a->signed_bytes, b->signed_bytes, a->signed_len);
}

static void test_roundtrip(void **state)
{
	_cleanup_(keyring_freep) struct keyring *kr = golden_keyring(), *back = NULL;
	_cleanup_(freep) uint8_t *buf = NULL, *again = NULL;
	uint8_t roots_buf[2][PUBKEY_SIZE];
	struct trust_roots roots = golden_roots(roots_buf);
	struct perr err = { "" };
	size_t len, len2;

	(void)state;
	assert_int_equal(keyring_format(kr, &buf, &len, &err), 0);
	assert_err(parse_copy(buf, len, &back, &err), 0, &err, NULL);
	assert_keyring_equal(kr, back);
	/* keys come out sorted by public key, and a missing name is empty */
	for (size_t i = 1; i < back->n_keys; i++)
		assert_true(memcmp(back->keys[i - 1].pub, back->keys[i].pub, PUBKEY_SIZE) < 0);
	for (size_t i = 0; i < back->n_keys; i++)
		assert_non_null(back->keys[i].name);
	assert_int_equal(keyring_format(back, &again, &len2, &err), 0);
	assert_int_equal(len, len2);
	assert_memory_equal(buf, again, len);
	assert_err(trust_check_keyring(&roots, back, T0, &err), 0, &err, NULL);
}

static void test_golden(void **state)
{
	_cleanup_(freep) uint8_t *want = NULL, *got = NULL;
	size_t want_len, got_len;

	(void)state;
	got = golden_bytes(&got_len);
	assert_int_equal(read_file(golden_path, &want, &want_len), 0);
	assert_int_equal(got_len, want_len);
	assert_memory_equal(got, want, got_len);
	assert_int_equal(parse_copy(want, want_len, NULL, NULL), 0);
}

static void test_find(void **state)
{
	_cleanup_(keyring_freep) struct keyring *kr = golden_keyring();
	struct test_key k;
	const struct keyring_key *e;

	(void)state;
	make_key(0x21, &k);
	e = keyring_find(kr, k.pk);
	assert_non_null(e);
	assert_string_equal(e->name, "release-b (gr\xc3\xbcn)");
	assert_int_equal(e->not_after, T0 + 10 * YEAR);
	make_key(ROOT_A, &k);
	assert_null(keyring_find(kr, k.pk));
}

static void test_truncations(void **state)
{
	_cleanup_(freep) uint8_t *buf = NULL;
	size_t len;

	(void)state;
	buf = golden_bytes(&len);
	for (size_t cut = 0; cut < len; cut++) {
		struct perr err = { "" };

		assert_failed(parse_copy(buf, cut, NULL, &err), &err);
	}
}

static void test_trailing_garbage(void **state)
{
	_cleanup_(freep) uint8_t *buf = NULL, *longer = NULL;
	struct perr err = { "" };
	size_t len;

	(void)state;
	buf = golden_bytes(&len);
	longer = calloc(1, len + 1);
	assert_non_null(longer);
	memcpy(longer, buf, len);
	assert_err(parse_copy(longer, len + 1, NULL, &err), -EBADMSG, &err, "signatures need");
}

static void test_too_big(void **state)
{
	_cleanup_(freep) uint8_t *buf = calloc(1, KEYRING_MAX_SIZE + 1);
	struct keyring *kr = NULL;
	struct perr err = { "" };

	(void)state;
	assert_non_null(buf);
	memcpy(buf, KEYRING_MAGIC, 8);
	assert_err(keyring_parse(buf, KEYRING_MAX_SIZE + 1, &kr, &err), -EFBIG, &err, "limit");
	assert_null(kr);
}

/* A changed keyring either does not parse or is not trusted. */
static void test_byte_flips(void **state)
{
	static const uint8_t masks[] = { 0x01, 0x80 };
	_cleanup_(freep) uint8_t *buf = NULL;
	uint8_t roots_buf[2][PUBKEY_SIZE];
	struct trust_roots roots = golden_roots(roots_buf);
	size_t len, parsed = 0;

	(void)state;
	buf = golden_bytes(&len);
	for (size_t at = 0; at < len; at++)
		for (size_t i = 0; i < ELEMENTSOF(masks); i++) {
			_cleanup_(keyring_freep) struct keyring *kr = NULL;
			struct perr err = { "" };
			int k;

			buf[at] ^= masks[i];
			k = parse_copy(buf, len, &kr, &err);
			buf[at] ^= masks[i];
			if (k < 0) {
				assert_true(err.msg[0]);
				continue;
			}
			parsed++;
			k = trust_check_keyring(&roots, kr, T0, &err);
			if (k >= 0)
				print_error("byte %zu ^ 0x%02x parses and is trusted\n", at, masks[i]);
			assert_true(k < 0);
		}
	assert_true(parsed > len / 2);
}

/* A keyring written field by field, independently of keyring_seal(), so
 * that each test breaks exactly one rule. Public keys are fake (a byte
 * repeated): the parser does not look inside them. */
struct raw_key {
	uint8_t fill;
	uint64_t not_before, not_after;
	const char *name;
};

struct raw {
	const char *magic;
	uint32_t format;
	int32_t body_len_adj;
	uint64_t version, created, expires;
	uint8_t threshold;
	struct raw_key keys[4];
	size_t n_keys;
	int32_t key_count; /* written instead of n_keys when >= 0 */
	size_t extra;      /* zero bytes after the last key, inside the body */
};

static struct raw raw_valid(void)
{
	return (struct raw){
		.magic = KEYRING_MAGIC,
		.format = KEYRING_FORMAT,
		.version = 1,
		.created = T0,
		.threshold = 1,
		.keys = { { 0x10, 0, 0, "a" }, { 0x20, T0, T0 + YEAR, "b" } },
		.n_keys = 2,
		.key_count = -1,
	};
}

static uint8_t *raw_encode(const struct raw *r, size_t *ret_len)
{
	struct wbuf w = { 0 };
	uint8_t pub[PUBKEY_SIZE];
	size_t at;

	wbuf_put(&w, r->magic, 8);
	wbuf_u32(&w, r->format);
	at = wbuf_reserve(&w, 4);
	wbuf_u64(&w, r->version);
	wbuf_u64(&w, r->created);
	wbuf_u64(&w, r->expires);
	wbuf_u8(&w, r->threshold);
	wbuf_u16(&w, (uint16_t)(r->key_count >= 0 ? (size_t)r->key_count : r->n_keys));
	for (size_t i = 0; i < r->n_keys; i++) {
		memset(pub, r->keys[i].fill, PUBKEY_SIZE);
		wbuf_put(&w, pub, PUBKEY_SIZE);
		wbuf_u64(&w, r->keys[i].not_before);
		wbuf_u64(&w, r->keys[i].not_after);
		wbuf_str(&w, r->keys[i].name);
	}
	for (size_t i = 0; i < r->extra; i++)
		wbuf_u8(&w, 0);
	assert_int_equal(w.err, 0);
	wr_le32(w.p + at, (uint32_t)((int64_t)(w.len - KEYRING_HEADER_SIZE) + r->body_len_adj));
	wbuf_u8(&w, 0); /* no signatures */
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

/* The test encoder writes what keyring_seal() writes. */
static void test_raw_matches_seal(void **state)
{
	struct raw r = raw_valid();
	_cleanup_(keyring_freep) struct keyring *kr = keyring_new();
	_cleanup_(freep) uint8_t *raw = NULL, *sealed = NULL;
	struct perr err = { "" };
	uint8_t pub[PUBKEY_SIZE];
	size_t raw_len, sealed_len;

	(void)state;
	assert_non_null(kr);
	kr->created = T0;
	for (size_t i = r.n_keys; i-- > 0;) {
		memset(pub, r.keys[i].fill, PUBKEY_SIZE);
		assert_int_equal(keyring_add_key(kr, pub, r.keys[i].not_before, r.keys[i].not_after, r.keys[i].name,
						 &err), 0);
	}
	assert_err(keyring_seal(kr, &err), 0, &err, NULL);
	assert_int_equal(keyring_format(kr, &sealed, &sealed_len, &err), 0);
	raw = raw_encode(&r, &raw_len);
	assert_int_equal(raw_len, sealed_len);
	assert_memory_equal(raw, sealed, raw_len);
	assert_err(raw_parse(&r, &err), 0, &err, NULL);
}

static void test_reject_threshold(void **state)
{
	struct perr err = { "" };
	struct raw r = raw_valid();

	(void)state;
	r.threshold = 0;
	assert_err(raw_parse(&r, &err), -EBADMSG, &err, "threshold 0 is outside 1..2");
	r.threshold = 3;
	assert_err(raw_parse(&r, &err), -EBADMSG, &err, "threshold 3 is outside 1..2");
	r.threshold = 255;
	assert_err(raw_parse(&r, &err), -EBADMSG, &err, "threshold 255");
	r.threshold = 2;
	assert_err(raw_parse(&r, &err), 0, &err, NULL);
}

static void test_reject_keys(void **state)
{
	struct perr err = { "" };
	struct raw r;

	(void)state;
	r = raw_valid();
	r.keys[1].fill = 0x10;
	assert_err(raw_parse(&r, &err), -EBADMSG, &err, "key 1010101010101010 is duplicated or out of order");
	r = raw_valid();
	r.keys[0].fill = 0x30;
	assert_err(raw_parse(&r, &err), -EBADMSG, &err, "duplicated or out of order");

	r = raw_valid();
	r.keys[1].not_after = r.keys[1].not_before;
	assert_err(raw_parse(&r, &err), -EBADMSG, &err, "validity ends");
	r.keys[1].not_after = r.keys[1].not_before - 1;
	assert_err(raw_parse(&r, &err), -EBADMSG, &err, "validity ends");
	/* not_after 0 is "never", whatever not_before says */
	r.keys[1].not_after = 0;
	assert_err(raw_parse(&r, &err), 0, &err, NULL);

	r = raw_valid();
	r.keys[0].name = "bell\a";
	assert_err(raw_parse(&r, &err), -EBADMSG, &err, "name");
	r.keys[0].name = "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn"; /* 65 */
	assert_err(raw_parse(&r, &err), -EBADMSG, &err, "key name");
	r.keys[0].name = "";
	assert_err(raw_parse(&r, &err), 0, &err, NULL);
}

static void test_reject_counts(void **state)
{
	struct perr err = { "" };
	struct raw r;

	(void)state;
	r = raw_valid();
	r.key_count = 0;
	assert_failed(raw_parse(&r, &err), &err);
	r.n_keys = 0;
	assert_err(raw_parse(&r, &err), -EBADMSG, &err, "lists no key");
	r = raw_valid();
	r.key_count = 5;
	assert_err(raw_parse(&r, &err), -EBADMSG, &err, "key count 5 does not fit");
	r.key_count = KEYRING_MAX_KEYS + 1;
	assert_err(raw_parse(&r, &err), -EBADMSG, &err, "key count 257 exceeds 256");
	r.key_count = 1;
	assert_err(raw_parse(&r, &err), -EBADMSG, &err, "unexpected bytes after the last key");
	r = raw_valid();
	r.extra = 1;
	assert_err(raw_parse(&r, &err), -EBADMSG, &err, "1 unexpected bytes");
}

static void test_reject_header(void **state)
{
	struct perr err = { "" };
	struct raw r;

	(void)state;
	r = raw_valid();
	r.magic = MANIFEST_MAGIC; /* a manifest is not a keyring */
	assert_err(raw_parse(&r, &err), -EBADMSG, &err, "bad magic");
	r = raw_valid();
	r.format = 2;
	assert_err(raw_parse(&r, &err), -EPROTONOSUPPORT, &err, "format 2");
	r = raw_valid();
	r.body_len_adj = 2;
	assert_err(raw_parse(&r, &err), -EBADMSG, &err, "body length");
	r.body_len_adj = -1;
	assert_failed(raw_parse(&r, &err), &err);
	r = raw_valid();
	r.version = 0;
	assert_err(raw_parse(&r, &err), -EBADMSG, &err, "version must be at least 1");
	r = raw_valid();
	r.expires = T0;
	assert_err(raw_parse(&r, &err), -EBADMSG, &err, "expiry");
	r.expires = T0 + 1;
	assert_err(raw_parse(&r, &err), 0, &err, NULL);
}

static void test_reject_signers(void **state)
{
	_cleanup_(keyring_freep) struct keyring *kr = golden_keyring();
	struct perr err = { "" };
	struct wbuf w = { 0 };
	_cleanup_(freep) uint8_t *buf = NULL;
	size_t len;

	(void)state;
	/* the same root twice */
	wbuf_put(&w, kr->signed_bytes, kr->signed_len);
	wbuf_u8(&w, 2);
	for (int i = 0; i < 2; i++) {
		wbuf_put(&w, kr->sigs.v[0].pub, PUBKEY_SIZE);
		wbuf_put(&w, kr->sigs.v[0].sig, SIG_SIZE);
	}
	assert_int_equal(w.err, 0);
	buf = wbuf_steal(&w, &len);
	assert_err(parse_copy(buf, len, NULL, &err), -EBADMSG, &err, "duplicated or out of order");
}

static void test_setters(void **state)
{
	_cleanup_(keyring_freep) struct keyring *kr = keyring_new();
	_cleanup_(freep) uint8_t *buf = NULL;
	struct test_key k;
	struct perr err = { "" };
	uint8_t pub[PUBKEY_SIZE];
	size_t len;

	(void)state;
	assert_non_null(kr);
	assert_int_equal(kr->version, 1);
	assert_int_equal(kr->threshold, 1);
	make_key(ROOT_A, &k);

	/* nothing to sign or write before it is sealed, nothing to seal without keys */
	assert_err(keyring_sign(kr, k.sk, &err), -EINVAL, &err, "sealed before signing");
	assert_err(keyring_format(kr, &buf, &len, &err), -EINVAL, &err, "sealed before");
	assert_err(keyring_seal(kr, &err), -EBADMSG, &err, "lists no key");

	memset(pub, 0x20, PUBKEY_SIZE);
	assert_int_equal(keyring_add_key(kr, pub, 0, 0, "b", &err), 0);
	assert_err(keyring_add_key(kr, pub, 0, 0, "again", &err), -EEXIST, &err, "listed twice");
	memset(pub, 0x30, PUBKEY_SIZE);
	assert_failed(keyring_add_key(kr, pub, T0, T0, "x", &err), &err);
	assert_non_null(strstr(err.msg, "validity ends"));
	assert_failed(keyring_add_key(kr, pub, T0, T0 - 1, "x", &err), &err);
	assert_failed(keyring_add_key(kr, pub, 0, 0, "new\nline", &err), &err);
	assert_int_equal(kr->n_keys, 1);
	memset(pub, 0x10, PUBKEY_SIZE);
	assert_int_equal(keyring_add_key(kr, pub, T0, 0, NULL, &err), 0);
	assert_int_equal(kr->keys[0].pub[0], 0x10);
	assert_string_equal(kr->keys[0].name, "");

	kr->threshold = 0;
	assert_err(keyring_seal(kr, &err), -EBADMSG, &err, "threshold 0");
	kr->threshold = 3;
	assert_err(keyring_seal(kr, &err), -EBADMSG, &err, "threshold 3");
	kr->threshold = 2;
	kr->version = 0;
	assert_err(keyring_seal(kr, &err), -EBADMSG, &err, "version");
	kr->version = 1;
	assert_err(keyring_seal(kr, &err), 0, &err, NULL);

	/* one signature per signer; a new body drops them */
	assert_int_equal(keyring_sign(kr, k.sk, &err), 0);
	assert_int_equal(keyring_sign(kr, k.sk, &err), 0);
	assert_int_equal(kr->sigs.n, 1);
	kr->version = 2;
	assert_int_equal(keyring_seal(kr, &err), 0);
	assert_int_equal(kr->sigs.n, 0);

	for (unsigned i = 0; kr->n_keys < KEYRING_MAX_KEYS; i++) {
		memset(pub, 0x40, PUBKEY_SIZE);
		wr_le16(pub + 1, (uint16_t)i);
		assert_int_equal(keyring_add_key(kr, pub, 0, 0, NULL, &err), 0);
	}
	memset(pub, 0xff, PUBKEY_SIZE);
	assert_err(keyring_add_key(kr, pub, 0, 0, NULL, &err), -E2BIG, &err, "more than 256");
	/* the largest keyring still fits the parser's size limit */
	assert_err(keyring_seal(kr, &err), 0, &err, NULL);
	for (uint8_t s = 1; s <= SIGSET_MAX; s++) {
		make_key(s, &k);
		assert_int_equal(keyring_sign(kr, k.sk, &err), 0);
	}
	assert_int_equal(keyring_format(kr, &buf, &len, &err), 0);
	assert_true(len <= KEYRING_MAX_SIZE);
	assert_err(parse_copy(buf, len, NULL, &err), 0, &err, NULL);
}

static int write_golden(const char *path)
{
	_cleanup_(freep) uint8_t *buf = NULL;
	size_t len;
	int k;

	buf = golden_bytes(&len);
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
		cmocka_unit_test(test_find),
		cmocka_unit_test(test_truncations),
		cmocka_unit_test(test_trailing_garbage),
		cmocka_unit_test(test_too_big),
		cmocka_unit_test(test_byte_flips),
		cmocka_unit_test(test_raw_matches_seal),
		cmocka_unit_test(test_reject_threshold),
		cmocka_unit_test(test_reject_keys),
		cmocka_unit_test(test_reject_counts),
		cmocka_unit_test(test_reject_header),
		cmocka_unit_test(test_reject_signers),
		cmocka_unit_test(test_setters),
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
