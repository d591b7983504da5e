/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The release manifest: a canonical, versioned, size-bounded binary format.
 * docs/formats.md describes it byte by byte. A manifest names one image (or
 * an update-module payload), how it was chunked, every chunk id and length,
 * and carries Ed25519 signatures over its canonical body. */
#pragma once

#include "chunker.h"
#include "sig.h"
#include "util.h"

#define MANIFEST_MAGIC "SHOAL-MF"
#define MANIFEST_FORMAT 1u
#define MANIFEST_HEADER_SIZE 16u
#define MANIFEST_SIG_DOMAIN "shoal manifest v1"

#define MANIFEST_MAX_SIZE (40u * 1024 * 1024)
#define MANIFEST_MAX_CHUNKS (1u << 20)
#define MANIFEST_MAX_META 64u
#define MANIFEST_PRODUCT_MAX 64u
#define MANIFEST_VERSION_MAX 64u
#define MANIFEST_PAYLOAD_MAX 32u
#define MANIFEST_META_KEY_MAX 64u
#define MANIFEST_META_VALUE_MAX 1024u

#define HASH_SIZE 32u /* BLAKE2b-256 */

#define PAYLOAD_AB_IMAGE "ab-image"

struct manifest_chunk {
	uint8_t id[HASH_SIZE];
	uint32_t len;
	uint64_t offset; /* implied by the lengths before it; filled by the parser */
};

struct manifest_meta {
	char *key;
	char *value;
};

struct manifest {
	char *product;
	char *version;
	char *payload_type;
	uint64_t counter;
	uint64_t created;
	uint64_t expires; /* 0: never */
	uint64_t image_size;
	uint8_t image_hash[HASH_SIZE];
	struct chunker_params chunking;
	struct manifest_meta *meta; /* sorted by key, keys unique */
	size_t n_meta;
	struct manifest_chunk *chunks;
	size_t n_chunks;
	size_t chunks_cap;
	struct sigset sigs;

	/* The exact signed bytes (header + body) kept from parsing or
	 * formatting, so that verifying never re-encodes. */
	uint8_t *signed_bytes;
	size_t signed_len;
};

struct manifest *manifest_new(void);
void manifest_free(struct manifest *m);
static inline void manifest_freep(struct manifest **m)
{
	manifest_free(*m);
}

/* Setters for building a manifest (release create). They copy their input
 * and check it against the limits; -EINVAL with err filled when it does not
 * fit. manifest_add_chunk appends in image order. */
int manifest_set_strings(struct manifest *m, const char *product, const char *version,
			 const char *payload_type, struct perr *err);
int manifest_add_meta(struct manifest *m, const char *key, const char *value, struct perr *err);
int manifest_add_chunk(struct manifest *m, const uint8_t id[HASH_SIZE], uint32_t len, struct perr *err);

/* Checks every field and cross-field rule (the same ones the parser
 * applies) and encodes the body into m->signed_bytes, dropping any
 * signatures made over an older body. */
int manifest_seal(struct manifest *m, struct perr *err);

/* Signs m->signed_bytes (manifest_seal first) with an Ed25519 secret key
 * (libsodium's 64-byte form). A second signature by the same key replaces
 * the first. */
int manifest_sign(struct manifest *m, const uint8_t sk[SECKEY_SIZE], struct perr *err);

/* The whole file: header, body, signatures. *ret is malloc'ed, caller frees. */
int manifest_format(const struct manifest *m, uint8_t **ret, size_t *ret_len, struct perr *err);

/* Parses a whole manifest file. Rejects truncation, trailing bytes, any
 * length, count or value out of bounds, chunk lengths that do not add up to
 * the image size, unsorted or duplicate metadata keys or signers. Does not
 * check signatures (see trust.h). *ret is written only on success. */
int manifest_parse(const uint8_t *buf, size_t len, struct manifest **ret, struct perr *err);

/* Number of distinct chunk ids (zero runs and repeated blocks share one). */
size_t manifest_unique_chunks(const struct manifest *m);
