/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The FastCDC chunker: its cut points are part of the format (every device
 * must cut an image the way the release tool did, or no chunk is shared),
 * so they are pinned by a golden vector; and the properties delta updates
 * rely on are checked: independence from how the input is fed, size
 * bounds, and shift resistance.
 *
 *   test-chunker LENGTHS IDS                   compare with the vectors
 *   test-chunker --write-golden LENGTHS IDS    (re)write them, only when the
 *                                              format changes on purpose */
#include <stdio.h>

#include "chunk.h"
#include "helpers.h"

#define GOLDEN_SIZE (8u << 20)
#define GOLDEN_SEED 1
#define GOLDEN_IDS 3

static const struct chunker_params defaults = { CHUNKER_MIN_DEFAULT, CHUNKER_AVG_DEFAULT, CHUNKER_MAX_DEFAULT };
/* Small parameters put many cut points and phase boundaries into little
 * input, where off-by-one errors show up quickly. */
static const struct chunker_params small = { 64, 256, 1024 };

static const char *lengths_path, *ids_path;

static size_t golden_chunks(uint8_t **ret_img, uint32_t **ret_lens)
{
	*ret_img = prng_image(GOLDEN_SEED, GOLDEN_SIZE);
	return chunk_lengths(*ret_img, GOLDEN_SIZE, &defaults, NULL, ret_lens);
}

static void assert_same_lengths(const uint32_t *a, size_t na, const uint32_t *b, size_t nb)
{
	for (size_t i = 0; i < na && i < nb; i++)
		if (a[i] != b[i]) {
			print_error("chunk %zu: %u bytes, expected %u\n", i, b[i], a[i]);
			fail();
		}
	assert_int_equal(na, nb);
}

static void test_golden_lengths(void **state)
{
	_cleanup_(freep) uint8_t *img = NULL, *text = NULL;
	_cleanup_(freep) uint32_t *lens = NULL, *want = NULL;
	size_t n = golden_chunks(&img, &lens), n_want = 0, len;
	char *line, *save = NULL;
	uint64_t sum = 0;

	(void)state;
	assert_int_equal(read_file(lengths_path, &text, &len), 0);
	want = calloc(len / 2 + 1, sizeof(*want));
	assert_non_null(want);
	for (line = strtok_r((char *)text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *end;
		unsigned long v = strtoul(line, &end, 10);

		assert_true(*end == '\0' && v > 0 && v <= UINT32_MAX);
		want[n_want++] = (uint32_t)v;
		sum += v;
	}
	/* a vector that does not describe the whole image pins nothing */
	assert_int_equal(sum, GOLDEN_SIZE);
	assert_same_lengths(want, n_want, lens, n);
}

static void test_golden_ids(void **state)
{
	_cleanup_(freep) uint8_t *img = NULL, *text = NULL, *ids = NULL;
	_cleanup_(freep) uint32_t *lens = NULL;
	size_t n = golden_chunks(&img, &lens), len;
	char hex[2 * HASH_SIZE + 2];

	(void)state;
	assert_true(n >= GOLDEN_IDS);
	ids = chunk_ids(img, lens, GOLDEN_IDS);
	assert_int_equal(read_file(ids_path, &text, &len), 0);
	assert_int_equal(len, GOLDEN_IDS * (2 * HASH_SIZE + 1));
	for (size_t i = 0; i < GOLDEN_IDS; i++) {
		hex_encode(ids + i * HASH_SIZE, HASH_SIZE, hex);
		strcat(hex, "\n");
		assert_memory_equal(text + i * (2 * HASH_SIZE + 1), hex, 2 * HASH_SIZE + 1);
	}
}

/* Sanity of the pinned output itself: normalised chunking keeps the mean
 * near avg; a wrong mask would move it by a factor of four or more. */
static void test_golden_mean(void **state)
{
	_cleanup_(freep) uint8_t *img = NULL;
	_cleanup_(freep) uint32_t *lens = NULL;
	size_t n = golden_chunks(&img, &lens);

	(void)state;
	assert_in_range(GOLDEN_SIZE / n, CHUNKER_AVG_DEFAULT / 2, CHUNKER_AVG_DEFAULT * 2);
}

static void check_split_invariance(const struct chunker_params *p, uint64_t img_seed, size_t size)
{
	_cleanup_(freep) uint8_t *img = prng_image(img_seed, size);
	_cleanup_(freep) uint32_t *whole = NULL;
	size_t n_whole = chunk_lengths(img, size, p, NULL, &whole);

	for (uint64_t seed = 1; seed <= 4; seed++) {
		_cleanup_(freep) uint32_t *pieces = NULL;
		uint64_t s = seed;
		size_t n = chunk_lengths(img, size, p, &s, &pieces);

		assert_same_lengths(whole, n_whole, pieces, n);
	}
}

static void test_split_invariance(void **state)
{
	(void)state;
	check_split_invariance(&defaults, GOLDEN_SEED, GOLDEN_SIZE);
	check_split_invariance(&small, 5, 1u << 20);
	/* min == avg == max: every cut is forced, the hashing phases are empty */
	check_split_invariance(&(struct chunker_params){ 256, 256, 256 }, 6, 100000);
}

/* An empty buffer is no input: neither a cut nor a step forward. */
static void test_empty_scan(void **state)
{
	_cleanup_(freep) uint8_t *img = prng_image(7, 4096);
	_cleanup_(freep) uint32_t *want = NULL;
	size_t n_want = chunk_lengths(img, 4096, &small, NULL, &want), n = 0;
	uint32_t got[4096 / 64 + 1];
	struct chunker c;
	uint64_t cur = 0;

	(void)state;
	assert_int_equal(chunker_init(&c, &small, NULL), 0);
	assert_int_equal(chunker_scan(&c, img, 0), CHUNKER_NO_CUT);
	for (size_t at = 0; at < 4096; at++) {
		assert_int_equal(chunker_scan(&c, img + at, 0), CHUNKER_NO_CUT);
		cur++;
		if (chunker_scan(&c, img + at, 1) == 1) {
			assert_true(n < ELEMENTSOF(got));
			got[n++] = (uint32_t)cur;
			cur = 0;
		}
	}
	if (cur)
		got[n++] = (uint32_t)cur;
	assert_same_lengths(want, n_want, got, n);
}

static void check_bounds(const struct chunker_params *p, uint64_t seed, size_t size)
{
	_cleanup_(freep) uint8_t *img = prng_image(seed, size);
	_cleanup_(freep) uint32_t *lens = NULL;
	size_t n = chunk_lengths(img, size, p, NULL, &lens);
	uint64_t sum = 0;

	assert_true(n >= 1);
	for (size_t i = 0; i < n; i++) {
		/* only the last chunk may be cut short, by the end of the input */
		assert_in_range(lens[i], i + 1 < n ? p->min : 1, p->max);
		sum += lens[i];
	}
	assert_int_equal(sum, size);
}

static void test_bounds(void **state)
{
	static const struct chunker_params ps[] = {
		{ CHUNKER_MIN_DEFAULT, CHUNKER_AVG_DEFAULT, CHUNKER_MAX_DEFAULT },
		{ 64, 256, 1024 },
		{ 64, 256, 256 },
		{ 256, 256, 4096 },
		{ 1000, 4096, 5000 },
	};
	static const size_t sizes[] = { 1, 63, 64, 65, 255, 256, 1023, 1024, 1025, 100000, 3u << 20 };

	(void)state;
	for (size_t i = 0; i < ELEMENTSOF(ps); i++)
		for (size_t j = 0; j < ELEMENTSOF(sizes); j++)
			check_bounds(&ps[i], 10 + j, sizes[j]);
}

/* Zeros never match a mask, so a zero run (free space in an image) becomes
 * a row of identical max-size chunks that all share one id. */
static void test_zero_input(void **state)
{
	const size_t max = CHUNKER_MAX_DEFAULT;
	_cleanup_(freep) uint8_t *img = calloc(1, 4 * max + 100);
	_cleanup_(freep) uint32_t *lens = NULL, *lens2 = NULL;
	size_t n;

	(void)state;
	assert_non_null(img);
	n = chunk_lengths(img, 4 * max, &defaults, NULL, &lens);
	assert_int_equal(n, 4);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(lens[i], max);

	n = chunk_lengths(img, 4 * max + 100, &small, NULL, &lens2);
	assert_int_equal(n, (4 * max + 100) / small.max + 1);
	for (size_t i = 0; i + 1 < n; i++)
		assert_int_equal(lens2[i], small.max);
	assert_int_equal(lens2[n - 1], (4 * max + 100) % small.max);
}

static void test_params_check(void **state)
{
	static const struct {
		struct chunker_params p;
		bool ok;
	} cases[] = {
		{ { CHUNKER_MIN_DEFAULT, CHUNKER_AVG_DEFAULT, CHUNKER_MAX_DEFAULT }, true },
		{ { 64, 256, 1024 }, true },
		{ { 64, 256, 4u << 20 }, true },
		{ { 4u << 20, 4u << 20, 4u << 20 }, true },
		{ { 256, 256, 256 }, true },
		{ { 63, 256, 1024 }, false },        /* min below 64 */
		{ { 0, 256, 1024 }, false },
		{ { 64, 300, 1024 }, false },        /* avg not a power of two */
		{ { 64, 65535, 1u << 20 }, false },
		{ { 64, 128, 1024 }, false },        /* avg below its limit */
		{ { 64, 0, 1024 }, false },
		{ { 512, 256, 1024 }, false },       /* min > avg */
		{ { 64, 1024, 512 }, false },        /* avg > max */
		{ { 64, 256, (4u << 20) + 1 }, false }, /* max above 4 MiB */
		{ { 64, 32u << 20, 32u << 20 }, false },
		{ { 64, 1u << 31, UINT32_MAX }, false },
	};

	(void)state;
	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		struct perr err = { "" };
		struct chunker c;

		if (cases[i].ok) {
			assert_int_equal(chunker_params_check(&cases[i].p, &err), 0);
			assert_int_equal(chunker_init(&c, &cases[i].p, &err), 0);
			continue;
		}
		assert_err(chunker_params_check(&cases[i].p, &err), -EINVAL, &err, "chunk");
		err.msg[0] = 0;
		assert_err(chunker_init(&c, &cases[i].p, &err), -EINVAL, &err, "chunk");
		assert_int_equal(chunker_params_check(&cases[i].p, NULL), -EINVAL);
	}
}

/* How many chunks of b are not in a at the same place from either end:
 * what a device that holds a has to fetch to build b. */
static size_t changed_chunks(const uint8_t *a, size_t na, const uint8_t *b, size_t nb)
{
	size_t head = 0, tail = 0;

	while (head < na && head < nb && !memcmp(a + head * HASH_SIZE, b + head * HASH_SIZE, HASH_SIZE))
		head++;
	while (tail < na - head && tail < nb - head &&
	       !memcmp(a + (na - 1 - tail) * HASH_SIZE, b + (nb - 1 - tail) * HASH_SIZE, HASH_SIZE))
		tail++;
	return nb - head - tail;
}

static void check_shift(size_t at)
{
	const size_t size = 4u << 20, ins = 100;
	_cleanup_(freep) uint8_t *a = prng_image(2, size), *b = malloc(size + ins), *ida = NULL, *idb = NULL;
	_cleanup_(freep) uint32_t *la = NULL, *lb = NULL;
	size_t na, nb, changed;
	uint64_t s = 3;

	assert_non_null(b);
	memcpy(b, a, at);
	prng_fill(&s, b + at, ins);
	memcpy(b + at + ins, a + at, size - at);
	na = chunk_lengths(a, size, &defaults, NULL, &la);
	nb = chunk_lengths(b, size + ins, &defaults, NULL, &lb);
	ida = chunk_ids(a, la, na);
	idb = chunk_ids(b, lb, nb);
	changed = changed_chunks(ida, na, idb, nb);
	assert_true(na > 32);
	assert_in_range(changed, 1, 3);
	/* and the old image loses as few: everything else is reused */
	assert_in_range(changed_chunks(idb, nb, ida, na), 1, 3);
}

static void test_shift_resistance(void **state)
{
	(void)state;
	check_shift(1000);
	check_shift(2u << 20);
}

static int write_golden(const char *lpath, const char *ipath)
{
	_cleanup_(freep) uint8_t *img = NULL, *ids = NULL;
	_cleanup_(freep) uint32_t *lens = NULL;
	_cleanup_(freep) char *text = NULL;
	size_t n = golden_chunks(&img, &lens), at = 0;
	char hex[3 * (2 * HASH_SIZE + 1) + 1];
	int k;

	text = malloc(n * 12 + 1);
	if (!text)
		return 1;
	for (size_t i = 0; i < n; i++)
		at += (size_t)sprintf(text + at, "%u\n", lens[i]);
	ids = chunk_ids(img, lens, GOLDEN_IDS);
	for (size_t i = 0; i < GOLDEN_IDS; i++) {
		hex_encode(ids + i * HASH_SIZE, HASH_SIZE, hex + i * (2 * HASH_SIZE + 1));
		hex[(i + 1) * (2 * HASH_SIZE + 1) - 1] = '\n';
	}
	if ((k = write_file(lpath, text, at)) < 0 || (k = write_file(ipath, hex, sizeof(hex) - 1)) < 0) {
		fprintf(stderr, "writing the vectors: %s\n", strerror(-k));
		return 1;
	}
	printf("%zu chunks\n", n);
	return 0;
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_golden_lengths),
		cmocka_unit_test(test_golden_ids),
		cmocka_unit_test(test_golden_mean),
		cmocka_unit_test(test_split_invariance),
		cmocka_unit_test(test_empty_scan),
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_zero_input),
		cmocka_unit_test(test_params_check),
		cmocka_unit_test(test_shift_resistance),
	};

	if (sodium_init() < 0)
		return 1;
	if (argc == 4 && !strcmp(argv[1], "--write-golden"))
		return write_golden(argv[2], argv[3]);
	if (argc != 3) {
		fprintf(stderr, "usage: %s LENGTHS IDS | --write-golden LENGTHS IDS\n", argv[0]);
		return 2;
	}
	lengths_path = argv[1];
	ids_path = argv[2];
	return cmocka_run_group_tests(tests, NULL, NULL);
}
