/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The `_shoal._tcp` TXT record: the exact bytes shoald announces, and a
 * parser that takes whatever anyone on the LAN announces without trusting
 * it (unknown keys ignored, first occurrence wins, version checked first,
 * every malformed value of a known key refused with a reason).
 *
 *   test-txt                        run the tests
 *   test-txt --write-corpus DIR     write the seeds of the TXT fuzzer
 *                                   (tests/fuzz/corpus/txt) and exit */
#include <stdio.h>

#include "helpers.h"
#include "txt.h"

#define GOLDEN                                                                                                \
	"\x09txtvers=1"                                                                                       \
	"\x13id=0123456789abcdef"                                                                             \
	"\x0d" "fleet=default"                                                                                \
	"\x07proto=1"                                                                                         \
	"\x0crole=gateway"                                                                                    \
	"\x05rel=2"                                                                                           \
	"\x06load=3"

static const struct txt_info golden_info = {
	.id = "0123456789abcdef",
	.fleet = "default",
	.proto = 1,
	.role = TXT_ROLE_GATEWAY,
	.rel = 2,
	.load = 3,
};

/* The strings as separate heap blocks of exactly their length, so that
 * ASan sees a read past any of them. */
struct strs {
	struct txt_string v[16];
	size_t n;
};

static void strs_add(struct strs *s, const void *p, size_t len)
{
	uint8_t *copy = malloc(len ? len : 1);

	assert_non_null(copy);
	assert_true(s->n < ELEMENTSOF(s->v));
	memcpy(copy, p, len);
	s->v[s->n++] = (struct txt_string){ .p = copy, .len = len };
}

static void strs_free(struct strs *s)
{
	for (size_t i = 0; i < s->n; i++)
		free((void *)s->v[i].p);
	s->n = 0;
}

/* parse_list(&info, &err, "a=1", "b=2", NULL) */
static int parse_list(struct txt_info *ret, struct perr *err, ...)
{
	struct strs s = { .n = 0 };
	const char *str;
	va_list ap;
	int k;

	va_start(ap, err);
	while ((str = va_arg(ap, const char *)))
		strs_add(&s, str, strlen(str));
	va_end(ap);
	k = txt_parse(s.v, s.n, ret, err);
	strs_free(&s);
	return k;
}

#define BASE "txtvers=1", "id=0123456789abcdef", "fleet=default", "proto=1"

static void assert_info_equal(const struct txt_info *a, const struct txt_info *b)
{
	assert_string_equal(a->id, b->id);
	assert_string_equal(a->fleet, b->fleet);
	assert_int_equal(a->proto, b->proto);
	assert_int_equal(a->role, b->role);
	assert_int_equal(a->rel, b->rel);
	assert_int_equal(a->load, b->load);
}

/* ---- format ---- */

static void test_format_golden(void **state)
{
	struct txt_wire w;
	struct perr err = { "" };

	(void)state;
	assert_int_equal(txt_format(&golden_info, &w, &err), 0);
	assert_int_equal(w.len, sizeof(GOLDEN) - 1);
	assert_memory_equal(w.buf, GOLDEN, w.len);
	assert_string_equal(txt_role_name(TXT_ROLE_DEVICE), "device");
	assert_string_equal(txt_role_name(TXT_ROLE_GATEWAY), "gateway");
	assert_null(txt_role_name((enum txt_role)2));
}

/* Every field at its largest: the record stays within TXT_RECORD_MAX and
 * every key within 9 characters, txtvers first. */
static void test_format_largest(void **state)
{
	struct txt_info t = golden_info, back;
	struct txt_string v[TXT_N_STRINGS + 1];
	struct txt_wire w;
	size_t n;

	(void)state;
	memset(t.fleet, 'f', TXT_FLEET_MAX);
	t.fleet[TXT_FLEET_MAX] = '\0';
	t.proto = UINT32_MAX;
	t.rel = UINT64_MAX;
	t.load = UINT32_MAX;
	assert_int_equal(txt_format(&t, &w, NULL), 0);
	assert_true(w.len <= TXT_RECORD_MAX);
	assert_int_equal(txt_split(w.buf, w.len, v, ELEMENTSOF(v), &n), 0);
	assert_int_equal(n, TXT_N_STRINGS);
	assert_true(v[0].len == 9 && !memcmp(v[0].p, "txtvers=1", 9));
	for (size_t i = 0; i < n; i++) {
		const uint8_t *eq = memchr(v[i].p, '=', v[i].len);

		assert_non_null(eq);
		assert_true(eq - v[i].p >= 1 && eq - v[i].p <= (ptrdiff_t)TXT_KEY_MAX);
	}
	assert_int_equal(txt_parse(v, n, &back, NULL), 0);
	assert_info_equal(&back, &t);
}

static void test_format_refuses(void **state)
{
	static const char *bad_ids[] = { "0123456789ABCDEF", "0123456789abcde", "0123456789abcdeg", "", " 123456789abcdef" };
	static const char *bad_fleets[] = { "", "tab\there", "del\x7f", "\xc3(", "\xed\xa0\x80" /* surrogate */ };
	struct txt_wire w, sentinel;
	struct txt_info t;
	struct perr err;

	(void)state;
	memset(&sentinel, 0xa5, sizeof(sentinel));
	for (size_t i = 0; i < ELEMENTSOF(bad_ids); i++) {
		t = golden_info;
		snprintf(t.id, sizeof(t.id), "%s", bad_ids[i]);
		w = sentinel;
		err.msg[0] = '\0';
		assert_err(txt_format(&t, &w, &err), -EINVAL, &err, "id");
		assert_memory_equal(&w, &sentinel, sizeof(w));
	}
	for (size_t i = 0; i < ELEMENTSOF(bad_fleets); i++) {
		t = golden_info;
		snprintf(t.fleet, sizeof(t.fleet), "%s", bad_fleets[i]);
		assert_err(txt_format(&t, &w, &err), -EINVAL, &err, "fleet");
	}
	t = golden_info;
	memset(t.fleet, 'x', sizeof(t.fleet)); /* no NUL: 64 bytes and more */
	assert_err(txt_format(&t, &w, &err), -EINVAL, &err, "fleet");
	t = golden_info;
	t.role = (enum txt_role)5;
	assert_err(txt_format(&t, &w, &err), -EINVAL, &err, "role");
	assert_int_equal(txt_format(&t, &w, NULL), -EINVAL);
}

static void test_roundtrip(void **state)
{
	static const char *fleets[] = { "default", "a", "line-3/acme", "h\xc3\xa4\x66\x65n \xe2\x9c\x93", "x=y=z", "with space" };
	struct txt_string v[TXT_N_STRINGS];
	uint64_t seed = 5;

	(void)state;
	for (size_t i = 0; i < ELEMENTSOF(fleets); i++) {
		struct txt_info t = golden_info, back;
		struct txt_wire w;
		uint8_t raw[8];
		size_t n;

		prng_fill(&seed, raw, sizeof(raw));
		hex_encode(raw, sizeof(raw), t.id);
		snprintf(t.fleet, sizeof(t.fleet), "%s", fleets[i]);
		t.role = (enum txt_role)(i & 1);
		t.rel = i * 1000003;
		t.load = (uint32_t)i;
		t.proto = (uint32_t)i + 1;
		assert_int_equal(txt_format(&t, &w, NULL), 0);
		assert_int_equal(txt_split(w.buf, w.len, v, ELEMENTSOF(v), &n), 0);
		assert_int_equal(txt_parse(v, n, &back, NULL), 0);
		assert_info_equal(&back, &t);
	}
}

/* ---- parse ---- */

static void test_parse_minimal(void **state)
{
	struct txt_info t;
	struct perr err = { "" };

	(void)state;
	assert_int_equal(parse_list(&t, &err, BASE, NULL), 0);
	assert_string_equal(t.id, "0123456789abcdef");
	assert_string_equal(t.fleet, "default");
	assert_int_equal(t.proto, 1);
	assert_int_equal(t.role, TXT_ROLE_DEVICE);
	assert_int_equal(t.rel, 0);
	assert_int_equal(t.load, 0);

	/* keys in any case, txtvers anywhere, the id's hex in any case */
	assert_int_equal(parse_list(&t, &err, "ID=0123456789ABCDEF", "Fleet=f", "PROTO=7", "TxtVers=1", "Role=gateway",
				    "REL=18446744073709551615", "LOAD=4294967295", NULL),
			 0);
	assert_string_equal(t.id, "0123456789abcdef");
	assert_string_equal(t.fleet, "f");
	assert_int_equal(t.proto, 7);
	assert_int_equal(t.role, TXT_ROLE_GATEWAY);
	assert_true(t.rel == UINT64_MAX);
	assert_int_equal(t.load, UINT32_MAX);
}

static void test_parse_version(void **state)
{
	static const char *bad[] = { "txtvers=2", "txtvers=0", "txtvers=", "txtvers", "txtvers=01", "txtvers=1x",
				     "txtvers= 1", "txtvers=-1", "txtvers=4294967297" };
	struct txt_info t, sentinel;
	struct perr err;

	(void)state;
	memset(&sentinel, 0xa5, sizeof(sentinel));
	t = sentinel;
	assert_err(parse_list(&t, &err, "id=0123456789abcdef", "fleet=default", "proto=1", NULL), -EPROTONOSUPPORT, &err,
		   "txtvers");
	assert_memory_equal(&t, &sentinel, sizeof(t));
	assert_err(txt_parse(NULL, 0, &t, &err), -EPROTONOSUPPORT, &err, "txtvers");
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		t = sentinel;
		assert_err(parse_list(&t, &err, bad[i], "id=0123456789abcdef", "fleet=default", "proto=1", NULL),
			   -EPROTONOSUPPORT, &err, "txtvers");
		assert_memory_equal(&t, &sentinel, sizeof(t));
	}
	/* a record of another version may look any way it likes: the version
	 * is what is refused, not its fields */
	assert_err(parse_list(&t, &err, "txtvers=2", "id=nothex", "proto=x", NULL), -EPROTONOSUPPORT, &err,
		   "txtvers 2 is not supported");
	/* a value that is not short text is not echoed */
	assert_err(parse_list(&t, &err, "txtvers=\x01\x02", BASE, NULL), -EPROTONOSUPPORT, &err, "not short text");
}

static void test_parse_ignores(void **state)
{
	struct strs s = { .n = 0 };
	struct txt_info t;

	(void)state;
	/* unknown keys, boolean attributes, "=value", long keys, empty strings */
	strs_add(&s, "", 0);
	strs_add(&s, "txtvers=1", 9);
	strs_add(&s, "=fleet=other", 12);
	strs_add(&s, "flag", 4);
	strs_add(&s, "fleetwood=mac", 13);
	strs_add(&s, "identifier=xyz", 14);
	strs_add(&s, "id=0123456789abcdef", 19);
	strs_add(&s, "fleet=default", 13);
	strs_add(&s, "proto=1", 7);
	strs_add(&s, "\xff\xfe=\x00\x01", 5);
	strs_add(&s, "version=99", 10);
	assert_int_equal(txt_parse(s.v, s.n, &t, NULL), 0);
	assert_string_equal(t.fleet, "default");
	strs_free(&s);
}

static void test_parse_first_wins(void **state)
{
	struct txt_info t;
	struct perr err;

	(void)state;
	assert_int_equal(parse_list(&t, &err, BASE, "id=ffffffffffffffff", "fleet=second", "proto=2", NULL), 0);
	assert_string_equal(t.id, "0123456789abcdef");
	assert_string_equal(t.fleet, "default");
	assert_int_equal(t.proto, 1);
	/* a later duplicate is ignored entirely, even when it is malformed */
	assert_int_equal(parse_list(&t, &err, BASE, "rel=5", "rel=junk", "txtvers=2", "ROLE=gateway", "role=x", NULL), 0);
	assert_int_equal(t.rel, 5);
	assert_int_equal(t.role, TXT_ROLE_GATEWAY);
	/* and a first one that is malformed is not rescued by a later one */
	assert_err(parse_list(&t, &err, BASE, "rel=junk", "rel=5", NULL), -EBADMSG, &err, "rel 'junk'");
	assert_err(parse_list(&t, &err, "txtvers=2", BASE, NULL), -EPROTONOSUPPORT, &err, "txtvers");
}

static void test_parse_bad_values(void **state)
{
	static const struct {
		const char *s, *needle;
	} bad[] = {
		{ "id=0123456789abcde", "16 hex digits" },
		{ "id=0123456789abcdef0", "16 hex digits" },
		{ "id=0123456789abcdeg", "not hex" },
		{ "id=0123456789abcd f", "not hex" },
		{ "id=", "16 hex digits" },
		{ "id", "has no value" },
		{ "fleet=", "fleet tag must be 1 to 63" },
		{ "fleet", "has no value" },
		{ "fleet=tab\there", "not clean" },
		{ "fleet=\xc0\xaf", "not clean" },
		{ "fleet=" "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "not 64" },
		{ "proto=", "proto '' is not a number" },
		{ "proto=-1", "proto" },
		{ "proto=+1", "proto" },
		{ "proto=1 ", "proto" },
		{ "proto=01", "proto" },
		{ "proto=4294967296", "proto" },
		{ "proto=0x1", "proto" },
		{ "role=Device", "neither device nor gateway" },
		{ "role=admin", "neither" },
		{ "role=", "neither" },
		{ "role", "has no value" },
		{ "rel=18446744073709551616", "rel" },
		{ "rel=99999999999999999999999", "rel" },
		{ "rel=1e3", "rel" },
		{ "rel=", "rel" },
		{ "load=4294967296", "load" },
		{ "load=-0", "load" },
		{ "load", "has no value" },
	};
	struct txt_info t, sentinel;
	struct perr err;

	(void)state;
	memset(&sentinel, 0xa5, sizeof(sentinel));
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		/* first, so that it wins over the good value in BASE */
		t = sentinel;
		assert_err(parse_list(&t, &err, bad[i].s, BASE, NULL), -EBADMSG, &err, bad[i].needle);
		assert_memory_equal(&t, &sentinel, sizeof(t));
		assert_int_equal(parse_list(&t, NULL, bad[i].s, BASE, NULL), -EBADMSG);
	}
}

static void test_parse_binary(void **state)
{
	struct strs s = { .n = 0 };
	struct txt_info t;
	struct perr err;
	uint8_t big[TXT_STRING_MAX];

	(void)state;
	/* a NUL inside a value */
	strs_add(&s, "txtvers=1", 9);
	strs_add(&s, "id=0123456789abcdef", 19);
	strs_add(&s, "fleet=def\0ault", 14);
	strs_add(&s, "proto=1", 7);
	assert_err(txt_parse(s.v, s.n, &t, &err), -EBADMSG, &err, "fleet");
	strs_free(&s);

	strs_add(&s, "txtvers=1", 9);
	strs_add(&s, "id=0123456789ab\0def", 19);
	strs_add(&s, "fleet=default", 13);
	strs_add(&s, "proto=1", 7);
	assert_err(txt_parse(s.v, s.n, &t, &err), -EBADMSG, &err, "not hex");
	strs_free(&s);

	/* a full-size string of a known key */
	memset(big, '7', sizeof(big));
	memcpy(big, "rel=", 4);
	strs_add(&s, "txtvers=1", 9);
	strs_add(&s, big, sizeof(big));
	strs_add(&s, "id=0123456789abcdef", 19);
	strs_add(&s, "fleet=default", 13);
	strs_add(&s, "proto=1", 7);
	assert_err(txt_parse(s.v, s.n, &t, &err), -EBADMSG, &err, "not short text");
	strs_free(&s);
}

static void test_parse_missing(void **state)
{
	struct txt_info t;
	struct perr err;

	(void)state;
	assert_err(parse_list(&t, &err, "txtvers=1", "fleet=default", "proto=1", NULL), -EBADMSG, &err, "lacks 'id'");
	assert_err(parse_list(&t, &err, "txtvers=1", "id=0123456789abcdef", "proto=1", NULL), -EBADMSG, &err,
		   "lacks 'fleet'");
	assert_err(parse_list(&t, &err, "txtvers=1", "id=0123456789abcdef", "fleet=default", NULL), -EBADMSG, &err,
		   "lacks 'proto'");
}

/* ---- split ---- */

static void test_split(void **state)
{
	static const uint8_t golden[] = GOLDEN;
	struct txt_string v[TXT_N_STRINGS];
	size_t n = 99;

	(void)state;
	assert_int_equal(txt_split(golden, 0, v, ELEMENTSOF(v), &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(txt_split(golden, sizeof(golden) - 1, v, ELEMENTSOF(v), &n), 0);
	assert_int_equal(n, TXT_N_STRINGS);
	assert_int_equal(txt_split(golden, sizeof(golden) - 1, v, TXT_N_STRINGS - 1, &n), -E2BIG);

	/* a cut at a string boundary splits; any other runs past the end */
	for (size_t cut = 0, next = 0; cut < sizeof(golden); cut++) {
		n = 99;
		if (cut == next) {
			assert_int_equal(txt_split(golden, cut, v, ELEMENTSOF(v), &n), 0);
			if (cut < sizeof(golden) - 1)
				next = cut + 1 + golden[cut];
		} else {
			assert_int_equal(txt_split(golden, cut, v, ELEMENTSOF(v), &n), -EBADMSG);
			assert_int_equal(n, 99);
		}
	}
	/* zero-length strings are strings (the parser skips them) */
	assert_int_equal(txt_split((const uint8_t *)"\0\0\x01x", 4, v, ELEMENTSOF(v), &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(v[2].len, 1);
}

/* ---- the fuzzer's seeds ---- */

static int write_seed(const char *dir, const char *name, const void *p, size_t n)
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

#define SEED(name, lit) write_seed(dir, name, lit, sizeof(lit) - 1)

static int write_corpus(const char *dir)
{
	struct txt_info t = golden_info;
	struct txt_wire w;
	int k = 0;

	if (txt_format(&golden_info, &w, NULL) < 0)
		return 1;
	k = write_seed(dir, "valid-gateway", w.buf, w.len);
	t.role = TXT_ROLE_DEVICE;
	memset(t.fleet, 'f', TXT_FLEET_MAX);
	t.fleet[TXT_FLEET_MAX] = '\0';
	t.rel = UINT64_MAX;
	t.load = UINT32_MAX;
	if (!k && txt_format(&t, &w, NULL) == 0)
		k = write_seed(dir, "valid-largest", w.buf, w.len);
	if (!k)
		k = SEED("valid-minimal", "\x09txtvers=1\x13id=0123456789ABCDEF\x07" "fleet=x\x07proto=1");
	if (!k)
		k = SEED("valid-reordered-dups-unknown",
			 "\x00\x07" "fleet=x\x04" "flag\x13id=0123456789abcdef\x09TXTVERS=1\x07proto=1\x07" "fleet=y"
			 "\x0brole=device\x08rel=junk\x05rel=9\x06load=0");
	if (!k)
		k = SEED("bad-txtvers-2", "\x09txtvers=2\x13id=0123456789abcdef\x07" "fleet=x\x07proto=1");
	if (!k)
		k = SEED("bad-no-txtvers", "\x13id=0123456789abcdef\x07" "fleet=x\x07proto=1");
	if (!k)
		k = SEED("bad-id-not-hex", "\x09txtvers=1\x13id=0123456789abcdeg\x07" "fleet=x\x07proto=1");
	if (!k)
		k = SEED("bad-rel-overflow", "\x09txtvers=1\x13id=0123456789abcdef\x07" "fleet=x\x07proto=1"
					     "\x19rel=18446744073709551616");
	if (!k)
		k = SEED("bad-fleet-control", "\x09txtvers=1\x13id=0123456789abcdef\x07" "fleet=\x01\x07proto=1");
	if (!k)
		k = SEED("bad-length-past-end", "\x09txtvers=1\x30id=0123");
	return k < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_format_golden),
		cmocka_unit_test(test_format_largest),
		cmocka_unit_test(test_format_refuses),
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_parse_minimal),
		cmocka_unit_test(test_parse_version),
		cmocka_unit_test(test_parse_ignores),
		cmocka_unit_test(test_parse_first_wins),
		cmocka_unit_test(test_parse_bad_values),
		cmocka_unit_test(test_parse_binary),
		cmocka_unit_test(test_parse_missing),
		cmocka_unit_test(test_split),
	};

	if (argc == 3 && !strcmp(argv[1], "--write-corpus"))
		return write_corpus(argv[2]);
	if (argc != 1) {
		fprintf(stderr, "usage: %s | --write-corpus DIR\n", argv[0]);
		return 2;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
