/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The helpers every parser stands on: hex, the text check that keeps
 * control characters out of terminals and JSON, error messages, and the
 * bounded read cursor. */
#include <stdio.h>

#include "codec.h"
#include "helpers.h"

static void test_hex_encode(void **state)
{
	static const uint8_t in[] = { 0x00, 0xff, 0x10, 0xab, 0x7f };
	char out[2 * sizeof(in) + 1];

	(void)state;
	assert_ptr_equal(hex_encode(in, sizeof(in), out), out);
	assert_string_equal(out, "00ff10ab7f");
	assert_string_equal(hex_encode(in, 0, out), "");
}

static void test_hex_decode(void **state)
{
	uint8_t out[4], rnd[32], back[32];
	char hex[65];
	uint64_t s = 9;

	(void)state;
	assert_int_equal(hex_decode("00FFaB10", 4, out), 0);
	assert_memory_equal(out, ((uint8_t[]){ 0x00, 0xff, 0xab, 0x10 }), 4);
	assert_int_equal(hex_decode("", 0, out), 0);

	prng_fill(&s, rnd, sizeof(rnd));
	assert_int_equal(hex_decode(hex_encode(rnd, sizeof(rnd), hex), sizeof(rnd), back), 0);
	assert_memory_equal(rnd, back, sizeof(rnd));

	/* a bad digit anywhere, in either half of a byte */
	for (size_t at = 0; at < 8; at++) {
		static const char bad[] = "gG -:/@`\x80";

		for (const char *b = bad; *b; b++) {
			char in[] = "0123abCD";

			in[at] = *b;
			assert_int_equal(hex_decode(in, 4, out), -EINVAL);
		}
	}
	/* odd or short input: the NUL is not read past */
	assert_int_equal(hex_decode("abc", 2, out), -EINVAL);
	assert_int_equal(hex_decode("a", 1, out), -EINVAL);
	assert_int_equal(hex_decode("", 1, out), -EINVAL);
}

/* Runs text_is_clean on an exact-size heap copy, so that ASan catches a
 * read past n. */
static bool clean(const char *s, size_t n)
{
	_cleanup_(freep) char *p = malloc(n ? n : 1);

	assert_non_null(p);
	memcpy(p, s, n);
	return text_is_clean(p, n);
}

static void test_text_is_clean(void **state)
{
	static const struct {
		const char *s;
		bool ok;
	} cases[] = {
		{ "", true },
		{ "release 1.2.3 (build 42) ~!", true },
		{ "\t", false },
		{ "line\nbreak", false },
		{ "\x1f", false },
		{ "\x7f", false },
		{ "\x1b[31m", false },              /* terminal escape */
		/* 2 bytes */
		{ "gr\xc3\xbcn", true },            /* ü */
		{ "\xc2\xa0", true },               /* U+00A0, first after C1 */
		{ "\xdf\xbf", true },               /* U+07FF */
		{ "\xc2\x80", false },              /* U+0080: C1 control */
		{ "\xc2\x9f", false },              /* U+009F: C1 control */
		{ "\xc0\x80", false },              /* overlong NUL */
		{ "\xc1\xbf", false },              /* overlong U+007F */
		/* 3 bytes */
		{ "\xe2\x82\xac", true },           /* € */
		{ "\xe0\xa0\x80", true },           /* U+0800 */
		{ "\xed\x9f\xbf", true },           /* U+D7FF, last before surrogates */
		{ "\xee\x80\x80", true },           /* U+E000, first after */
		{ "\xef\xbf\xbf", true },           /* U+FFFF */
		{ "\xe0\x80\x80", false },          /* overlong */
		{ "\xe0\x9f\xbf", false },          /* overlong U+07FF */
		{ "\xed\xa0\x80", false },          /* surrogate U+D800 */
		{ "\xed\xbf\xbf", false },          /* surrogate U+DFFF */
		/* 4 bytes */
		{ "\xf0\x9f\x98\x80", true },       /* U+1F600 */
		{ "\xf0\x90\x80\x80", true },       /* U+10000 */
		{ "\xf4\x8f\xbf\xbf", true },       /* U+10FFFF */
		{ "\xf0\x8f\xbf\xbf", false },      /* overlong U+FFFF */
		{ "\xf4\x90\x80\x80", false },      /* U+110000 */
		{ "\xf5\x80\x80\x80", false },
		{ "\xf8\x88\x80\x80\x80", false },  /* old 5-byte form */
		{ "\xfe", false },
		{ "\xff", false },
		/* truncated or broken sequences */
		{ "\xc3", false },
		{ "\xe2\x82", false },
		{ "\xf0\x9f\x98", false },
		{ "ok\xe2", false },
		{ "\xc3\x28", false },
		{ "\xe2\x28\xa1", false },
		{ "\xe2\x82\x28", false },
		{ "\xf0\x9f\x28\x80", false },
		{ "\x80", false },                  /* lone continuation */
		{ "\xbf", false },
		{ "\xc3\xbc\xbc", false },          /* one continuation too many */
	};

	(void)state;
	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		if (clean(cases[i].s, strlen(cases[i].s)) != cases[i].ok)
			print_error("case %zu: expected %s\n", i, cases[i].ok ? "clean" : "refused");
		assert_int_equal(clean(cases[i].s, strlen(cases[i].s)), cases[i].ok);
	}
	/* n is the end, even when more bytes follow in memory */
	assert_false(clean("\xc3\xbc", 1));
	assert_false(clean("\xf0\x9f\x98\x80", 3));
	assert_true(clean("ab\x01", 2));
	/* an embedded NUL is a control character */
	assert_false(clean("a\0b", 3));
}

static void test_perr_set(void **state)
{
	struct perr err = { "" };
	char big[400];

	(void)state;
	assert_int_equal(perr_set(&err, -EBADMSG, "chunk %d of %s", 3, "x"), -EBADMSG);
	assert_string_equal(err.msg, "chunk 3 of x");
	assert_int_equal(perr_set(NULL, -EINVAL, "nobody reads this"), -EINVAL);

	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	perr_set(&err, -E2BIG, "%s", big);
	assert_int_equal(strlen(err.msg), sizeof(err.msg) - 1);
}

static void test_perr_prefix(void **state)
{
	struct perr err = { "" };
	char big[300];

	(void)state;
	perr_set(&err, -EBADMSG, "bad magic");
	assert_int_equal(perr_prefix(&err, -EPROTO, "manifest %s: ", "v1"), -EPROTO);
	assert_string_equal(err.msg, "manifest v1: bad magic");
	perr_prefix(&err, 0, "bundle: ");
	assert_string_equal(err.msg, "bundle: manifest v1: bad magic");
	assert_int_equal(perr_prefix(NULL, -EIO, "x"), -EIO);

	/* a long message loses its tail, never the prefix, and stays terminated */
	memset(big, 'm', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	perr_set(&err, -EBADMSG, "%s", big);
	perr_prefix(&err, -EBADMSG, "context: ");
	assert_int_equal(strlen(err.msg), sizeof(err.msg) - 1);
	assert_memory_equal(err.msg, "context: mmm", 12);

	/* a prefix beyond its 127-byte buffer is cut, the message kept */
	memset(big, 'p', 200);
	big[200] = 0;
	perr_set(&err, -EBADMSG, "tail");
	perr_prefix(&err, -EBADMSG, "%s", big);
	assert_int_equal(strlen(err.msg), 127 + 4);
	assert_string_equal(err.msg + 127, "tail");

	/* an empty message takes just the prefix */
	err.msg[0] = 0;
	perr_prefix(&err, -EBADMSG, "only");
	assert_string_equal(err.msg, "only");
}

/* u8 | u16 | u32 | u64 | str("shoal"): 1 + 2 + 4 + 8 + 2 + 5 bytes */
#define REC_SIZE 22u

static uint8_t *make_record(size_t *ret_len)
{
	struct wbuf w = { 0 };

	wbuf_u8(&w, 0xa1);
	wbuf_u16(&w, 0xb2c3);
	wbuf_u32(&w, 0xd4e5f607);
	wbuf_u64(&w, UINT64_C(0x0102030405060708));
	wbuf_str(&w, "shoal");
	assert_int_equal(w.err, 0);
	return wbuf_steal(&w, ret_len);
}

/* Reads field i of the record and checks its value. A failed read must
 * leave both the cursor and the output alone. */
static int read_field(struct rd *r, unsigned i)
{
	static const uint64_t want[] = { 0xa1, 0xb2c3, 0xd4e5f607, UINT64_C(0x0102030405060708) };
	union {
		uint8_t u8;
		uint16_t u16;
		uint32_t u32;
		uint64_t u64;
	} out;
	const char *s = NULL;
	size_t at = r->off, n = 0;
	uint64_t got = 0;
	int k = -EINVAL;

	memset(&out, 0x55, sizeof(out));
	switch (i) {
	case 0:
		k = rd_u8(r, &out.u8, "field 0");
		got = out.u8;
		break;
	case 1:
		k = rd_u16(r, &out.u16, "field 1");
		got = out.u16;
		break;
	case 2:
		k = rd_u32(r, &out.u32, "field 2");
		got = out.u32;
		break;
	case 3:
		k = rd_u64(r, &out.u64, "field 3");
		got = out.u64;
		break;
	case 4:
		k = rd_str(r, 1, 16, &s, &n, "field 4");
		break;
	default:
		fail();
	}
	if (k < 0) {
		assert_int_equal(r->off, at);
		assert_int_equal(out.u64, UINT64_C(0x5555555555555555));
		assert_null(s);
		assert_int_equal(n, 0);
		return k;
	}
	if (i < 4) {
		assert_int_equal(got, want[i]);
	} else {
		assert_int_equal(n, 5);
		assert_memory_equal(s, "shoal", 5);
	}
	return 0;
}

static int read_record(struct rd *r)
{
	for (unsigned i = 0; i < 5; i++) {
		int k = read_field(r, i);

		if (k < 0)
			return k;
	}
	return 0;
}

static void test_rd_truncation(void **state)
{
	_cleanup_(freep) uint8_t *rec = NULL;
	size_t len;

	(void)state;
	rec = make_record(&len);
	assert_int_equal(len, REC_SIZE);
	for (size_t cut = 0; cut <= len; cut++) {
		_cleanup_(freep) uint8_t *p = malloc(cut ? cut : 1);
		struct perr err = { "" };
		struct rd r;
		int k;

		assert_non_null(p);
		memcpy(p, rec, cut);
		rd_init(&r, p, cut, &err);
		k = read_record(&r);
		if (cut == len) {
			assert_int_equal(k, 0);
			assert_int_equal(rd_left(&r), 0);
			continue;
		}
		assert_err(k, -EBADMSG, &err, "truncated");
		assert_non_null(strstr(err.msg, "field"));
	}
}

static void test_rd_str_bounds(void **state)
{
	static const uint8_t buf[] = { 3, 0, 'a', 'b', 'c', 9, 0, 'x' };
	struct perr err = { "" };
	const char *s;
	size_t n;
	struct rd r;

	(void)state;
	rd_init(&r, buf, sizeof(buf), &err);
	assert_err(rd_str(&r, 4, 10, &s, &n, "name"), -EBADMSG, &err, "length 3, allowed 4..10");
	assert_int_equal(r.off, 0);
	assert_err(rd_str(&r, 0, 2, &s, &n, "name"), -EBADMSG, &err, "name");
	assert_int_equal(r.off, 0);
	assert_int_equal(rd_str(&r, 3, 3, &s, &n, "name"), 0);
	assert_int_equal(r.off, 5);
	/* length 9 with one byte behind it */
	assert_err(rd_str(&r, 0, 100, &s, &n, "label"), -EBADMSG, &err, "truncated");
	assert_int_equal(r.off, 5);
	/* without an error report, the same answer */
	r.err = NULL;
	assert_int_equal(rd_str(&r, 0, 100, &s, &n, "label"), -EBADMSG);
	assert_int_equal(r.off, 5);
}

static void test_rd_bytes(void **state)
{
	static const uint8_t buf[4] = { 1, 2, 3, 4 };
	const uint8_t *p = NULL;
	struct rd r;

	(void)state;
	rd_init(&r, buf, sizeof(buf), NULL);
	assert_int_equal(rd_bytes(&r, 0, &p, "nothing"), 0);
	assert_ptr_equal(p, buf);
	assert_int_equal(rd_bytes(&r, 4, &p, "all"), 0);
	assert_int_equal(rd_left(&r), 0);
	assert_int_equal(rd_bytes(&r, 0, &p, "nothing at the end"), 0);
	p = NULL;
	assert_int_equal(rd_bytes(&r, 1, &p, "one more"), -EBADMSG);
	assert_null(p);
	/* a huge count must not wrap around the bounds check */
	rd_init(&r, buf, sizeof(buf), NULL);
	assert_int_equal(rd_bytes(&r, SIZE_MAX, &p, "huge"), -EBADMSG);
}

static void test_wbuf(void **state)
{
	struct wbuf w = { 0 };
	_cleanup_(freep) uint8_t *p = NULL;
	char big[70000];
	size_t at, len;

	(void)state;
	wbuf_put(&w, "AB", 2);
	at = wbuf_reserve(&w, 4);
	assert_int_equal(at, 2);
	wbuf_u16(&w, 0x0201);
	wr_le32(w.p + at, 0xdeadbeef);
	assert_int_equal(w.err, 0);
	p = wbuf_steal(&w, &len);
	assert_int_equal(len, 8);
	assert_memory_equal(p, ((uint8_t[]){ 'A', 'B', 0xef, 0xbe, 0xad, 0xde, 1, 2 }), 8);
	assert_null(w.p);
	assert_int_equal(w.len, 0);

	/* a string its u16 length cannot describe is an error, not a wrap */
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	assert_int_equal(wbuf_str(&w, big), -E2BIG);
	assert_int_equal(w.err, -E2BIG);
	assert_int_equal(wbuf_u8(&w, 1), -E2BIG);
	wbuf_free(&w);
}

static void test_checked_math(void **state)
{
	uint64_t r;

	(void)state;
	assert_true(add_u64(UINT64_MAX - 1, 1, &r));
	assert_int_equal(r, UINT64_MAX);
	assert_false(add_u64(UINT64_MAX, 1, &r));
	assert_true(mul_u64(UINT64_C(1) << 32, (UINT64_C(1) << 32) - 1, &r));
	assert_false(mul_u64(UINT64_C(1) << 32, UINT64_C(1) << 32, &r));
	assert_int_equal(rd_le64((const uint8_t *)"\x08\x07\x06\x05\x04\x03\x02\x01"), UINT64_C(0x0102030405060708));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hex_encode),
		cmocka_unit_test(test_hex_decode),
		cmocka_unit_test(test_text_is_clean),
		cmocka_unit_test(test_perr_set),
		cmocka_unit_test(test_perr_prefix),
		cmocka_unit_test(test_rd_truncation),
		cmocka_unit_test(test_rd_str_bounds),
		cmocka_unit_test(test_rd_bytes),
		cmocka_unit_test(test_wbuf),
		cmocka_unit_test(test_checked_math),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
