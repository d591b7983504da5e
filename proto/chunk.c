/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <sodium.h>

#include "chunk.h"

void chunk_id(const uint8_t *p, size_t n, uint8_t ret[HASH_SIZE])
{
	crypto_generichash(ret, HASH_SIZE, p, n, NULL, 0);
}

size_t chunk_stored_max(void)
{
	return ZSTD_COMPRESSBOUND(CHUNKER_MAX_LIMIT);
}

int chunk_compress(ZSTD_CCtx *cctx, int level, const uint8_t *p, size_t n, uint8_t *out, size_t cap,
		   size_t *ret_len)
{
	size_t r;

	if (ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level)) ||
	    ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 1)) ||
	    ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 0)))
		return -EINVAL;
	r = ZSTD_compress2(cctx, out, cap, p, n);
	if (ZSTD_isError(r))
		return -ENOBUFS;
	*ret_len = r;
	return 0;
}

int chunk_decode(ZSTD_DCtx *dctx, enum chunk_enc enc, const uint8_t *stored, size_t stored_len,
		 const uint8_t id[HASH_SIZE], uint32_t len, uint8_t *out, struct perr *err)
{
	uint8_t got[HASH_SIZE];
	char hex[2 * HASH_SIZE + 1];
	unsigned long long fcs;
	size_t r;

	switch (enc) {
	case CHUNK_ENC_PLAIN:
		if (stored_len != len)
			return perr_set(err, -EBADMSG, "chunk %s: stored as %zu plain bytes, manifest says %u",
					hex_encode(id, HASH_SIZE, hex), stored_len, len);
		memcpy(out, stored, len);
		break;
	case CHUNK_ENC_ZSTD:
		/* A frame that announces another size is refused before any work;
		 * one that does not announce it cannot write past `len` either. */
		fcs = ZSTD_getFrameContentSize(stored, stored_len);
		if (fcs == ZSTD_CONTENTSIZE_ERROR || (fcs != ZSTD_CONTENTSIZE_UNKNOWN && fcs != len))
			return perr_set(err, -EBADMSG, "chunk %s: not a zstd frame of %u bytes",
					hex_encode(id, HASH_SIZE, hex), len);
		/* exactly one frame: no second frame or trailing bytes riding along */
		if (ZSTD_findFrameCompressedSize(stored, stored_len) != stored_len)
			return perr_set(err, -EBADMSG, "chunk %s: stored data is not exactly one zstd frame",
					hex_encode(id, HASH_SIZE, hex));
		r = ZSTD_decompressDCtx(dctx, out, len, stored, stored_len);
		if (ZSTD_isError(r) || r != len)
			return perr_set(err, -EBADMSG, "chunk %s: zstd data is corrupt (%s)",
					hex_encode(id, HASH_SIZE, hex),
					ZSTD_isError(r) ? ZSTD_getErrorName(r) : "short output");
		break;
	default:
		return perr_set(err, -EBADMSG, "chunk %s: unknown encoding %d", hex_encode(id, HASH_SIZE, hex),
				(int)enc);
	}
	chunk_id(out, len, got);
	if (sodium_memcmp(got, id, HASH_SIZE) != 0)
		return perr_set(err, -EILSEQ, "chunk %s: content does not match its id (corrupt)",
				hex_encode(id, HASH_SIZE, hex));
	return 0;
}
