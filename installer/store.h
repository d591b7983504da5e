/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The content-addressed chunk store directory: DIR/ab/abcdef...(64 hex).zst,
 * each file one zstd frame of one chunk (zstd stores incompressible blocks
 * raw, so nothing grows by more than a few bytes). Any static HTTP server
 * can serve it as it is. */
#pragma once

#include "chunk.h"

#define STORE_SUFFIX ".zst"

/* DIR/ab/<hex>.zst into buf. */
int store_chunk_path(const char *dir, const uint8_t id[HASH_SIZE], char *buf, size_t size);

bool store_has(const char *dir, const uint8_t id[HASH_SIZE]);

/* Writes one stored (zstd) chunk atomically (temporary + rename, no fsync:
 * call store_sync once when done). Succeeds without writing when the chunk
 * is already there. */
int store_put(const char *dir, const uint8_t id[HASH_SIZE], const uint8_t *stored, size_t len,
	      struct perr *err);

/* Flushes everything written to the store's file system. */
int store_sync(const char *dir, struct perr *err);

/* Reads the stored bytes of a chunk (at most chunk_stored_max()). *ret is
 * malloc'ed. -ENOENT when the store does not have it. */
int store_get(const char *dir, const uint8_t id[HASH_SIZE], uint8_t **ret, size_t *ret_len, struct perr *err);
