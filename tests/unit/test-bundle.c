/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The single-file bundle: header and index codecs. A bundle comes from a
 * USB stick nobody vouches for, so the parsers must refuse any header whose
 * sections do not tile the file exactly and any index that could make two
 * chunks overlap or one read run past the data. */
#include "bundle.h"
#include "helpers.h"

#define N_ENTRIES 6u

/* A bundle as bytes: header | manifest | keyring | index | data, with real
 * chunks (half of them zstd) and stand-in manifest and keyring bytes. */
struct fixture {
	uint8_t *file;
	size_t size;
	struct bundle_info info;
	struct bundle_entry entries[N_ENTRIES];
	uint8_t *plain[N_ENTRIES];
	uint32_t plain_len[N_ENTRIES];
};

/* An index entry and its stored bytes, sorted together by id. */
struct item {
	struct bundle_entry e;
	uint8_t *stored;
};

static int item_cmp(const void *a, const void *b)
{
	return memcmp(((const struct item *)a)->e.id, ((const struct item *)b)->e.id, HASH_SIZE);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct item items[N_ENTRIES] = { 0 };
	ZSTD_CCtx *cctx = ZSTD_createCCtx();
	uint64_t data_len = 0, off;
	struct perr err = { "" };

	assert_non_null(f);
	assert_non_null(cctx);
	for (size_t i = 0; i < N_ENTRIES; i++) {
		struct item *it = &items[i];
		size_t cap, len;

		f->plain_len[i] = (uint32_t)(1000 + 777 * i);
		f->plain[i] = prng_image(100 + i, f->plain_len[i]);
		if (i % 2)
			memset(f->plain[i], 'z', f->plain_len[i] / 2); /* worth compressing */
		chunk_id(f->plain[i], f->plain_len[i], it->e.id);
		cap = ZSTD_compressBound(f->plain_len[i]);
		it->stored = malloc(cap);
		assert_non_null(it->stored);
		if (i % 2) {
			assert_int_equal(chunk_compress(cctx, 3, f->plain[i], f->plain_len[i], it->stored, cap, &len), 0);
			it->e.enc = CHUNK_ENC_ZSTD;
		} else {
			memcpy(it->stored, f->plain[i], f->plain_len[i]);
			len = f->plain_len[i];
			it->e.enc = CHUNK_ENC_PLAIN;
		}
		it->e.stored_len = (uint32_t)len;
		data_len += len;
	}
	ZSTD_freeCCtx(cctx);
	qsort(items, N_ENTRIES, sizeof(items[0]), item_cmp);

	assert_err(bundle_layout(&f->info, 500, 300, N_ENTRIES, data_len, &err), 0, &err, NULL);
	f->size = f->info.data_off + data_len;
	f->file = calloc(1, f->size);
	assert_non_null(f->file);
	bundle_format_header(&f->info, f->file);
	memset(f->file + f->info.manifest_off, 'M', f->info.manifest_len);
	memset(f->file + f->info.keyring_off, 'K', f->info.keyring_len);
	off = f->info.data_off;
	for (size_t i = 0; i < N_ENTRIES; i++) {
		struct bundle_entry *e = &f->entries[i];

		*e = items[i].e;
		e->offset = off;
		memcpy(f->file + off, items[i].stored, e->stored_len);
		off += e->stored_len;
		bundle_format_entry(e, f->file + f->info.index_off + i * BUNDLE_ENTRY_SIZE);
		free(items[i].stored);
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	for (size_t i = 0; i < N_ENTRIES; i++)
		free(f->plain[i]);
	free(f->file);
	free(f);
	return 0;
}

/* Header parse on an exact-size copy of the first 64 bytes. */
static int parse_header(const uint8_t *hdr, size_t len, uint64_t file_size, struct bundle_info *ret,
			struct perr *err)
{
	_cleanup_(freep) uint8_t *copy = malloc(len ? len : 1);

	assert_non_null(copy);
	memcpy(copy, hdr, len);
	err->msg[0] = 0;
	return bundle_parse_header(copy, len, file_size, ret, err);
}

static int parse_index(const struct bundle_info *info, const uint8_t *idx, size_t len, struct perr *err)
{
	_cleanup_(freep) uint8_t *copy = malloc(len ? len : 1);
	_cleanup_(freep) struct bundle_entry *v = NULL;
	int k;

	assert_non_null(copy);
	memcpy(copy, idx, len);
	err->msg[0] = 0;
	k = bundle_parse_index(info, copy, len, &v, err);
	if (k < 0)
		assert_null(v);
	return k;
}

/* Field by field: the struct has padding that no one initialises. */
static void assert_info_equal(const struct bundle_info *a, const struct bundle_info *b)
{
	assert_int_equal(a->manifest_off, b->manifest_off);
	assert_int_equal(a->manifest_len, b->manifest_len);
	assert_int_equal(a->keyring_off, b->keyring_off);
	assert_int_equal(a->keyring_len, b->keyring_len);
	assert_int_equal(a->index_off, b->index_off);
	assert_int_equal(a->n_entries, b->n_entries);
	assert_int_equal(a->data_off, b->data_off);
	assert_int_equal(a->data_len, b->data_len);
}

static void test_layout(void **state)
{
	struct fixture *f = *state;
	struct bundle_info i;
	struct perr err = { "" };

	assert_int_equal(f->info.manifest_off, BUNDLE_HEADER_SIZE);
	assert_int_equal(f->info.keyring_off, BUNDLE_HEADER_SIZE + 500);
	assert_int_equal(f->info.index_off, BUNDLE_HEADER_SIZE + 800);
	assert_int_equal(f->info.data_off, BUNDLE_HEADER_SIZE + 800 + N_ENTRIES * BUNDLE_ENTRY_SIZE);

	/* a bundle without a keyring: the index follows the manifest */
	assert_int_equal(bundle_layout(&i, 10, 0, 1, 1, &err), 0);
	assert_int_equal(i.keyring_off, i.index_off);
	assert_err(bundle_layout(&i, 0, 0, 1, 1, &err), -EBADMSG, &err, "manifest length 0");
	assert_err(bundle_layout(&i, MANIFEST_MAX_SIZE + 1, 0, 1, 1, &err), -EBADMSG, &err, "manifest length");
	assert_err(bundle_layout(&i, 10, KEYRING_MAX_SIZE + 1, 1, 1, &err), -EBADMSG, &err, "keyring length");
	assert_err(bundle_layout(&i, 10, 0, 0, 1, &err), -EBADMSG, &err, "index count 0");
	assert_err(bundle_layout(&i, 10, 0, MANIFEST_MAX_CHUNKS + 1, 1, &err), -EBADMSG, &err, "index count");
	assert_err(bundle_layout(&i, 10, 0, 1, UINT64_MAX - 100, &err), -EBADMSG, &err, "overflows");
}

static void test_roundtrip(void **state)
{
	struct fixture *f = *state;
	_cleanup_(freep) struct bundle_entry *v = NULL;
	struct bundle_info info;
	struct perr err = { "" };
	ZSTD_DCtx *dctx = ZSTD_createDCtx();

	assert_non_null(dctx);
	assert_err(bundle_parse_header(f->file, BUNDLE_HEADER_SIZE, f->size, &info, &err), 0, &err, NULL);
	assert_info_equal(&info, &f->info);
	assert_err(bundle_parse_index(&info, f->file + info.index_off, N_ENTRIES * BUNDLE_ENTRY_SIZE, &v, &err), 0,
		   &err, NULL);
	for (size_t i = 0; i < N_ENTRIES; i++) {
		assert_memory_equal(v[i].id, f->entries[i].id, HASH_SIZE);
		assert_int_equal(v[i].stored_len, f->entries[i].stored_len);
		assert_int_equal(v[i].enc, f->entries[i].enc);
		assert_int_equal(v[i].offset, f->entries[i].offset);
		assert_true(v[i].offset + v[i].stored_len <= f->size);
	}
	/* and every chunk read at its implied offset is the chunk its id names */
	for (size_t i = 0; i < N_ENTRIES; i++) {
		const struct bundle_entry *e = bundle_find(v, N_ENTRIES, f->entries[i].id);
		uint32_t len = 0;
		_cleanup_(freep) uint8_t *out = NULL;

		for (size_t j = 0; j < N_ENTRIES; j++) {
			uint8_t id[HASH_SIZE];

			chunk_id(f->plain[j], f->plain_len[j], id);
			if (!memcmp(id, e->id, HASH_SIZE))
				len = f->plain_len[j];
		}
		out = malloc(len);
		assert_non_null(out);
		assert_err(chunk_decode(dctx, (enum chunk_enc)e->enc, f->file + e->offset, e->stored_len, e->id, len,
					out, &err), 0, &err, NULL);
	}
	ZSTD_freeDCtx(dctx);
}

static void test_find(void **state)
{
	struct fixture *f = *state;
	uint8_t absent[HASH_SIZE];

	for (size_t i = 0; i < N_ENTRIES; i++)
		assert_ptr_equal(bundle_find(f->entries, N_ENTRIES, f->entries[i].id), &f->entries[i]);
	/* below the first, above the last, and between every two neighbours */
	memset(absent, 0, HASH_SIZE);
	assert_null(bundle_find(f->entries, N_ENTRIES, absent));
	memset(absent, 0xff, HASH_SIZE);
	assert_null(bundle_find(f->entries, N_ENTRIES, absent));
	for (size_t i = 0; i < N_ENTRIES; i++) {
		memcpy(absent, f->entries[i].id, HASH_SIZE);
		absent[HASH_SIZE - 1] ^= 1;
		assert_null(bundle_find(f->entries, N_ENTRIES, absent));
	}
	assert_null(bundle_find(f->entries, 0, f->entries[0].id));
	assert_ptr_equal(bundle_find(f->entries, 1, f->entries[0].id), &f->entries[0]);
}

static void test_header_short(void **state)
{
	struct fixture *f = *state;
	struct bundle_info info;
	struct perr err;

	for (size_t len = 0; len < BUNDLE_HEADER_SIZE; len++)
		assert_err(parse_header(f->file, len, f->size, &info, &err), -EBADMSG, &err, "shorter than");
	assert_err(parse_header(f->file, BUNDLE_HEADER_SIZE, BUNDLE_HEADER_SIZE - 1, &info, &err), -EBADMSG, &err,
		   "shorter than");
}

static void test_header_fields(void **state)
{
	struct fixture *f = *state;
	struct bundle_info info;
	struct perr err;
	uint8_t h[BUNDLE_HEADER_SIZE];

	memcpy(h, f->file, sizeof(h));
	h[0] = 'X';
	assert_err(parse_header(h, sizeof(h), f->size, &info, &err), -EBADMSG, &err, "bad magic");

	memcpy(h, f->file, sizeof(h));
	wr_le32(h + 8, 2);
	assert_err(parse_header(h, sizeof(h), f->size, &info, &err), -EPROTONOSUPPORT, &err, "format 2");

	/* flags and every reserved byte must be zero: they are for later formats */
	for (size_t at = 12; at < BUNDLE_HEADER_SIZE; at++) {
		if (at >= 16 && at < 28)
			continue; /* section lengths */
		if (at >= 32 && at < 40)
			continue; /* data length */
		memcpy(h, f->file, sizeof(h));
		h[at] = 1;
		assert_err(parse_header(h, sizeof(h), f->size, &info, &err), -EBADMSG, &err, "bundle header");
	}

	memcpy(h, f->file, sizeof(h));
	wr_le32(h + 16, 0);
	assert_err(parse_header(h, sizeof(h), f->size, &info, &err), -EBADMSG, &err, "manifest length 0");
	memcpy(h, f->file, sizeof(h));
	wr_le32(h + 24, 0);
	assert_err(parse_header(h, sizeof(h), f->size, &info, &err), -EBADMSG, &err, "index count 0");
	memcpy(h, f->file, sizeof(h));
	wr_le64(h + 32, UINT64_MAX);
	assert_err(parse_header(h, sizeof(h), f->size, &info, &err), -EBADMSG, &err, "overflows");
}

/* The sections must end exactly where the file does. */
static void test_header_file_size(void **state)
{
	struct fixture *f = *state;
	struct bundle_info info;
	struct perr err;

	assert_err(parse_header(f->file, BUNDLE_HEADER_SIZE, f->size - 1, &info, &err), -EBADMSG, &err,
		   "truncated or padded");
	assert_err(parse_header(f->file, BUNDLE_HEADER_SIZE, f->size + 1, &info, &err), -EBADMSG, &err,
		   "truncated or padded");
	assert_err(parse_header(f->file, BUNDLE_HEADER_SIZE, BUNDLE_HEADER_SIZE, &info, &err), -EBADMSG, &err,
		   "truncated or padded");
	assert_err(parse_header(f->file, BUNDLE_HEADER_SIZE, UINT64_MAX, &info, &err), -EBADMSG, &err,
		   "truncated or padded");
	assert_err(parse_header(f->file, BUNDLE_HEADER_SIZE, f->size, &info, &err), 0, &err, NULL);
}

/* A copy of the fixture's index to break. */
static uint8_t *index_copy(const struct fixture *f)
{
	uint8_t *idx = malloc(N_ENTRIES * BUNDLE_ENTRY_SIZE);

	assert_non_null(idx);
	memcpy(idx, f->file + f->info.index_off, N_ENTRIES * BUNDLE_ENTRY_SIZE);
	return idx;
}

static uint8_t *entry_at(uint8_t *idx, size_t i)
{
	return idx + i * BUNDLE_ENTRY_SIZE;
}

static void test_index_order(void **state)
{
	struct fixture *f = *state;
	_cleanup_(freep) uint8_t *idx = index_copy(f);
	uint8_t tmp[BUNDLE_ENTRY_SIZE];
	struct perr err;

	assert_err(parse_index(&f->info, idx, N_ENTRIES * BUNDLE_ENTRY_SIZE, &err), 0, &err, NULL);
	/* swapping two entries keeps the sum, breaks the order */
	memcpy(tmp, entry_at(idx, 2), BUNDLE_ENTRY_SIZE);
	memcpy(entry_at(idx, 2), entry_at(idx, 3), BUNDLE_ENTRY_SIZE);
	memcpy(entry_at(idx, 3), tmp, BUNDLE_ENTRY_SIZE);
	assert_err(parse_index(&f->info, idx, N_ENTRIES * BUNDLE_ENTRY_SIZE, &err), -EBADMSG, &err,
		   "entry 3 (");
	assert_non_null(strstr(err.msg, "duplicated or out of order"));

	/* a duplicate id: the same chunk listed twice */
	free(idx);
	idx = index_copy(f);
	memcpy(entry_at(idx, 1), entry_at(idx, 0), HASH_SIZE);
	assert_err(parse_index(&f->info, idx, N_ENTRIES * BUNDLE_ENTRY_SIZE, &err), -EBADMSG, &err,
		   "entry 1 (");
	assert_non_null(strstr(err.msg, "duplicated or out of order"));
}

static void test_index_fields(void **state)
{
	struct fixture *f = *state;
	_cleanup_(freep) uint8_t *idx = NULL;
	struct perr err;

	for (uint8_t enc = 2; enc != 0; enc = (uint8_t)(enc << 1)) {
		free(idx);
		idx = index_copy(f);
		entry_at(idx, 4)[36] = enc;
		assert_err(parse_index(&f->info, idx, N_ENTRIES * BUNDLE_ENTRY_SIZE, &err), -EBADMSG, &err,
			   "unknown encoding");
	}
	for (size_t at = 37; at < BUNDLE_ENTRY_SIZE; at++) {
		free(idx);
		idx = index_copy(f);
		entry_at(idx, 0)[at] = 0x80;
		assert_err(parse_index(&f->info, idx, N_ENTRIES * BUNDLE_ENTRY_SIZE, &err), -EBADMSG, &err,
			   "reserved bytes not zero");
	}

	free(idx);
	idx = index_copy(f);
	wr_le32(entry_at(idx, 5) + 32, 0);
	assert_err(parse_index(&f->info, idx, N_ENTRIES * BUNDLE_ENTRY_SIZE, &err), -EBADMSG, &err,
		   "stored length 0 is out of bounds");
	wr_le32(entry_at(idx, 5) + 32, (uint32_t)chunk_stored_max() + 1);
	assert_err(parse_index(&f->info, idx, N_ENTRIES * BUNDLE_ENTRY_SIZE, &err), -EBADMSG, &err,
		   "out of bounds");
	wr_le32(entry_at(idx, 5) + 32, UINT32_MAX);
	assert_err(parse_index(&f->info, idx, N_ENTRIES * BUNDLE_ENTRY_SIZE, &err), -EBADMSG, &err,
		   "out of bounds");
}

/* The stored lengths must tile the data section: one byte more or less and
 * a chunk would overlap the next or leave a gap. */
static void test_index_sum(void **state)
{
	struct fixture *f = *state;
	_cleanup_(freep) uint8_t *idx = index_copy(f);
	struct bundle_info info = f->info;
	struct perr err;
	uint32_t len = rd_le32(entry_at(idx, 2) + 32);

	wr_le32(entry_at(idx, 2) + 32, len + 1);
	assert_err(parse_index(&info, idx, N_ENTRIES * BUNDLE_ENTRY_SIZE, &err), -EBADMSG, &err, "adds up to");
	wr_le32(entry_at(idx, 2) + 32, len - 1);
	assert_err(parse_index(&info, idx, N_ENTRIES * BUNDLE_ENTRY_SIZE, &err), -EBADMSG, &err, "adds up to");
	wr_le32(entry_at(idx, 2) + 32, len);
	info.data_len++;
	assert_err(parse_index(&info, idx, N_ENTRIES * BUNDLE_ENTRY_SIZE, &err), -EBADMSG, &err, "adds up to");
}

static void test_index_length(void **state)
{
	struct fixture *f = *state;
	_cleanup_(freep) uint8_t *idx = index_copy(f);
	struct perr err;

	assert_err(parse_index(&f->info, idx, N_ENTRIES * BUNDLE_ENTRY_SIZE - 1, &err), -EBADMSG, &err,
		   "entries need");
	assert_err(parse_index(&f->info, idx, (N_ENTRIES - 1) * BUNDLE_ENTRY_SIZE, &err), -EBADMSG, &err,
		   "entries need");
	assert_err(parse_index(&f->info, idx, 0, &err), -EBADMSG, &err, "entries need");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_layout),
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_find),
		cmocka_unit_test(test_header_short),
		cmocka_unit_test(test_header_fields),
		cmocka_unit_test(test_header_file_size),
		cmocka_unit_test(test_index_order),
		cmocka_unit_test(test_index_fields),
		cmocka_unit_test(test_index_sum),
		cmocka_unit_test(test_index_length),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, setup, teardown);
}
