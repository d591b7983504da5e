/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A release as it lies on disk: a directory (manifest.shoal, keyring.shoal,
 * chunks/) or a single bundle file. Opening parses the manifest and keyring
 * (their signatures are checked by the caller, with trust.h); every chunk
 * read is decoded and checked against its id. */
#pragma once

#include "bundle.h"
#include "keyring.h"
#include "manifest.h"

#define RELEASE_MANIFEST "manifest.shoal"
#define RELEASE_KEYRING "keyring.shoal"
#define RELEASE_CHUNKS "chunks"

struct release {
	char *path;
	bool is_bundle;
	struct manifest *manifest;
	struct keyring *keyring; /* NULL when the release carries none */

	/* directory */
	char *chunks_dir;
	/* bundle */
	int fd;
	struct bundle_info info;
	struct bundle_entry *entries;

	void *dctx;       /* ZSTD_DCtx */
	uint8_t *scratch; /* chunk_stored_max() bytes for reading stored chunks */
};

/* Opens a directory or a bundle file, telling them apart by what path is.
 * Fails, naming the file and the field, on any malformed part. */
int release_open(const char *path, struct release **ret, struct perr *err);
void release_close(struct release *r);
static inline void release_closep(struct release **r)
{
	release_close(*r);
}

/* Reads chunk (id, len) into out (len bytes), decoding and checking its id.
 * -ENOENT when the release does not hold it, -EILSEQ when it is corrupt,
 * -EBADMSG when it cannot be decoded. */
int release_read_chunk(struct release *r, const uint8_t id[HASH_SIZE], uint32_t len, uint8_t *out,
		       struct perr *err);
