/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* manifest_parse on arbitrary bytes. A manifest that parses must come back
 * byte for byte from manifest_format, and re-sealing it must reproduce the
 * signed bytes: the format has one encoding per manifest, which is what lets
 * a signature cover "the manifest" rather than one spelling of it. */
#include <stdio.h>

#include "fuzz.h"
#include "manifest.h"

static void check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz-manifest: invariant broken: %s\n", what);
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	_cleanup_(manifest_freep) struct manifest *m = NULL;
	_cleanup_(freep) uint8_t *out = NULL;
	_cleanup_(freep) uint8_t *body = NULL;
	const struct trust_roots roots = fuzz_roots();
	struct trust_result res;
	struct perr err = { { 0 } };
	size_t out_len, body_len, unique;
	uint64_t off = 0;

	if (manifest_parse(data, size, &m, &err) < 0)
		return 0;

	check(m->n_chunks >= 1, "a parsed manifest has chunks");
	for (size_t i = 0; i < m->n_chunks; i++) {
		check(m->chunks[i].offset == off, "chunk offsets follow the lengths");
		off += m->chunks[i].len;
	}
	check(off == m->image_size, "chunk lengths add up to the image size");
	unique = manifest_unique_chunks(m);
	check(unique >= 1 && unique <= m->n_chunks, "unique chunk count within 1..n_chunks");

	check(manifest_format(m, &out, &out_len, &err) == 0, "manifest_format of a parsed manifest");
	check(out_len == size && memcmp(out, data, size) == 0, "manifest_format gives back the input");

	(void)trust_check_manifest(&roots, NULL, m, FUZZ_NOW, &res, &err);
	(void)trust_check_manifest(&roots, NULL, m, m->created, NULL, &err);

	/* Last, because sealing drops the signatures. */
	check(m->signed_len >= MANIFEST_HEADER_SIZE, "signed bytes hold the header");
	body_len = m->signed_len;
	body = malloc(body_len);
	check(body != NULL, "malloc");
	memcpy(body, m->signed_bytes, body_len);
	check(manifest_seal(m, &err) == 0, "manifest_seal of a parsed manifest");
	check(m->signed_len == body_len && memcmp(m->signed_bytes, body, body_len) == 0,
	      "re-sealing gives back the signed bytes");
	return 0;
}
