/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The single-file bundle for USB sticks and offline sites:
 *
 *   header (64 bytes) | manifest | keyring (optional) | index | chunk data
 *
 * The index lists each distinct chunk once, sorted by id, with its stored
 * length and encoding; the data holds the stored chunks back to back in
 * index order, so offsets are implied and nothing can overlap. Nothing in a
 * bundle but the manifest and keyring signatures is trusted: every chunk is
 * checked against its id when read. */
#pragma once

#include "chunk.h"
#include "keyring.h"
#include "manifest.h"

#define BUNDLE_MAGIC "SHOAL-BD"
#define BUNDLE_FORMAT 1u
#define BUNDLE_HEADER_SIZE 64u
#define BUNDLE_ENTRY_SIZE 40u

struct bundle_info {
	uint64_t manifest_off;
	uint32_t manifest_len;
	uint64_t keyring_off;
	uint32_t keyring_len; /* 0: no keyring */
	uint64_t index_off;
	uint32_t n_entries;
	uint64_t data_off;
	uint64_t data_len;
};

struct bundle_entry {
	uint8_t id[HASH_SIZE];
	uint32_t stored_len;
	uint8_t enc;     /* enum chunk_enc */
	uint64_t offset; /* absolute, in the file */
};

/* Parses the fixed header (buf holds at least BUNDLE_HEADER_SIZE bytes) of
 * a file of file_size bytes, checking every section lies within the file. */
int bundle_parse_header(const uint8_t *buf, size_t len, uint64_t file_size, struct bundle_info *ret,
			struct perr *err);

/* Parses the index (buf holds exactly n_entries * BUNDLE_ENTRY_SIZE bytes).
 * Ids strictly ascending, encodings known, lengths within bounds and adding
 * up to data_len. *ret is malloc'ed, caller frees. */
int bundle_parse_index(const struct bundle_info *info, const uint8_t *buf, size_t len,
		       struct bundle_entry **ret, struct perr *err);

const struct bundle_entry *bundle_find(const struct bundle_entry *v, size_t n, const uint8_t id[HASH_SIZE]);

/* Encodes a header; entries (sorted by id) into an index. */
void bundle_format_header(const struct bundle_info *info, uint8_t out[BUNDLE_HEADER_SIZE]);
void bundle_format_entry(const struct bundle_entry *e, uint8_t out[BUNDLE_ENTRY_SIZE]);

/* Lays out info from the section sizes (offsets follow one another). */
int bundle_layout(struct bundle_info *info, uint32_t manifest_len, uint32_t keyring_len, uint32_t n_entries,
		  uint64_t data_len, struct perr *err);
