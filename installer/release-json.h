/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The JSON rendering of a release for people and programs: what
 * `shoal release show --json` prints and what an update module finds in
 * WORKDIR/header/manifest.json (docs/formats.md, "Manifest as JSON"). */
#pragma once

#include <jansson.h>

#include "release.h"

/* A new object (the caller owns the reference): source, product, version,
 * counter, created, expires, payload_type, image_size, image_hash,
 * chunking, chunk_count, distinct_chunks, metadata, signed_by, keyring,
 * chunks. NULL when out of memory. */
json_t *release_json(const struct release *r);
