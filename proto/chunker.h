/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* FastCDC content-defined chunking (gear hash, normalised chunking, level 2).
 *
 * Streaming: feed any number of buffers of any size; the cut points depend
 * only on the bytes and the parameters, never on how the input was split,
 * so a 1 GiB image is chunked in constant memory. See docs/formats.md for
 * the exact definition (gear table, masks, the skipped minimum). */
#pragma once

#include "util.h"

#define CHUNKER_MIN_DEFAULT (16u * 1024)
#define CHUNKER_AVG_DEFAULT (64u * 1024)
#define CHUNKER_MAX_DEFAULT (256u * 1024)

/* Bounds every manifest enforces on its recorded parameters. */
#define CHUNKER_MIN_LIMIT 64u
#define CHUNKER_AVG_MIN_LIMIT 256u
#define CHUNKER_MAX_LIMIT (4u * 1024 * 1024) /* one chunk fits one peer frame */

#define CHUNKER_NO_CUT ((size_t)-1)

struct chunker_params {
	uint32_t min;
	uint32_t avg; /* a power of two */
	uint32_t max;
};

struct chunker {
	struct chunker_params p;
	uint64_t mask_s; /* used while the chunk is shorter than avg: harder to match */
	uint64_t mask_l; /* used from avg on: easier to match */
	uint64_t h;
	uint64_t pos; /* bytes of the current chunk seen so far */
	uint64_t gear[256];
};

/* Checks min <= avg <= max within the limits above and avg a power of two. */
int chunker_params_check(const struct chunker_params *p, struct perr *err);

/* Returns 0, or -EINVAL (with err filled) for bad parameters. */
int chunker_init(struct chunker *c, const struct chunker_params *p, struct perr *err);

/* Continues the current chunk with buf[0..n). When a cut point lies in it,
 * returns k (1 <= k <= n): the chunk ends after buf[k-1] and the chunker is
 * ready for the next one, whose bytes start at buf[k]. Otherwise returns
 * CHUNKER_NO_CUT, all n bytes belonging to the current chunk. At the end of
 * the input, whatever the current chunk holds is the last chunk. */
size_t chunker_scan(struct chunker *c, const uint8_t *buf, size_t n);
