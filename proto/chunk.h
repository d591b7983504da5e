/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Chunk ids and the encodings chunks travel and rest in. A chunk's id is
 * BLAKE2b-256 of its plain bytes, whatever encoding carried it; a receiver
 * always decodes first and checks the id after. */
#pragma once

#include <zstd.h>

#include "manifest.h"

enum chunk_enc {
	CHUNK_ENC_PLAIN = 0,
	CHUNK_ENC_ZSTD = 1,
};

void chunk_id(const uint8_t *p, size_t n, uint8_t ret[HASH_SIZE]);

/* The largest stored form a chunk of at most CHUNKER_MAX_LIMIT bytes can
 * take: parsers bound lengths by this before reading. */
size_t chunk_stored_max(void);

/* Compresses p into out (capacity ZSTD_compressBound(n)); the compressed
 * size goes to *ret_len. Returns 0 or a negative errno. */
int chunk_compress(ZSTD_CCtx *cctx, int level, const uint8_t *p, size_t n, uint8_t *out, size_t cap,
		   size_t *ret_len);

/* Decodes a stored chunk into out (exactly `len` bytes) and checks that its
 * id matches. Never writes past out[len-1]. -EBADMSG for a malformed
 * encoding or a wrong size, -EILSEQ for an id mismatch (a corrupt or
 * malicious chunk); err names the chunk. */
int chunk_decode(ZSTD_DCtx *dctx, enum chunk_enc enc, const uint8_t *stored, size_t stored_len,
		 const uint8_t id[HASH_SIZE], uint32_t len, uint8_t *out, struct perr *err);
