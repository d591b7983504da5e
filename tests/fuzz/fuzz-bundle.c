/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A whole bundle file from arbitrary bytes, read the way the installer reads
 * a USB stick: header, index, manifest, keyring, then every chunk of the
 * manifest decoded from the data section into a buffer of exactly its
 * length, so that AddressSanitizer sees any write past it. */
#include <stdio.h>

#include "bundle.h"
#include "fuzz.h"

static void check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz-bundle: invariant broken: %s\n", what);
		abort();
	}
}

static void dctx_freep(ZSTD_DCtx **p)
{
	ZSTD_freeDCtx(*p);
}

static void decode_chunks(const uint8_t *data, const struct bundle_info *info, const struct bundle_entry *v,
			  const struct manifest *m)
{
	_cleanup_(dctx_freep) ZSTD_DCtx *dctx = ZSTD_createDCtx();
	const uint64_t end = info->data_off + info->data_len;

	check(dctx != NULL, "ZSTD_createDCtx");
	for (size_t i = 0; i < m->n_chunks; i++) {
		const struct manifest_chunk *c = &m->chunks[i];
		const struct bundle_entry *e = bundle_find(v, info->n_entries, c->id);
		_cleanup_(freep) uint8_t *out = NULL;
		struct perr err = { { 0 } };

		if (!e)
			continue;
		check(memcmp(e->id, c->id, HASH_SIZE) == 0, "bundle_find returns the entry asked for");
		check(e->offset >= info->data_off && e->offset <= end && e->stored_len <= end - e->offset,
		      "index entries lie within the data section");
		out = malloc(c->len);
		check(out != NULL, "malloc");
		/* Like the installer, give up at the first bad chunk: that bounds
		 * the work one input can cause to one chunk of at most
		 * CHUNKER_MAX_LIMIT bytes beyond the chunks that check out. */
		if (chunk_decode(dctx, (enum chunk_enc)e->enc, data + e->offset, e->stored_len, c->id, c->len, out,
				 &err) < 0)
			break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	_cleanup_(manifest_freep) struct manifest *m = NULL;
	_cleanup_(keyring_freep) struct keyring *kr = NULL;
	_cleanup_(freep) struct bundle_entry *v = NULL;
	const struct trust_roots roots = fuzz_roots();
	struct bundle_info info;
	struct perr err = { { 0 } };
	bool kr_trusted = false;

	if (bundle_parse_header(data, size, size, &info, &err) < 0)
		return 0;
	check(info.data_off + info.data_len == size, "sections end where the file ends");
	check(info.manifest_off + info.manifest_len <= info.keyring_off &&
	      info.keyring_off + info.keyring_len <= info.index_off &&
	      info.index_off + (uint64_t)info.n_entries * BUNDLE_ENTRY_SIZE <= info.data_off,
	      "sections follow one another");

	if (bundle_parse_index(&info, data + info.index_off, (size_t)info.n_entries * BUNDLE_ENTRY_SIZE, &v,
			       &err) < 0)
		return 0;
	if (manifest_parse(data + info.manifest_off, info.manifest_len, &m, &err) < 0)
		return 0;
	if (info.keyring_len > 0) {
		if (keyring_parse(data + info.keyring_off, info.keyring_len, &kr, &err) < 0)
			return 0;
		kr_trusted = trust_check_keyring(&roots, kr, FUZZ_NOW, &err) == 0;
	}
	(void)trust_check_manifest(&roots, kr_trusted ? kr : NULL, m, FUZZ_NOW, NULL, &err);

	decode_chunks(data, &info, v, m);
	return 0;
}
