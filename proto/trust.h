/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Who may sign what. Devices hold trusted root keys. A root signs keyrings;
 * a keyring names release keys with validity periods and a threshold; a
 * manifest is authorised by a root signature, or by `threshold` distinct
 * release keys of a root-signed keyring. Any signature that does not verify
 * makes the whole object refused: a tampered manifest is never "mostly
 * signed". Times are unix seconds, passed in by the caller (a device uses
 * max(clock, its persisted time floor)). */
#pragma once

#include "keyring.h"
#include "manifest.h"

struct trust_roots {
	const uint8_t (*keys)[PUBKEY_SIZE];
	size_t n;
};

/* Every signature verifies, at least one is by a trusted root, and the
 * keyring has not expired at `now`. */
int trust_check_keyring(const struct trust_roots *roots, const struct keyring *kr, uint64_t now,
			struct perr *err);

struct trust_result {
	size_t root_signers;    /* valid signatures by trusted roots */
	size_t release_signers; /* valid signatures by keyring keys valid now and at creation */
	size_t other_signers;   /* valid signatures by keys we do not trust (ignored) */
	unsigned threshold;     /* release signers needed */
};

/* kr must already have passed trust_check_keyring (or be NULL). Checks
 * every signature, the threshold, key validity periods and the manifest's
 * own expiry against `now`. res (optional) says who signed. */
int trust_check_manifest(const struct trust_roots *roots, const struct keyring *kr, const struct manifest *m,
			 uint64_t now, struct trust_result *res, struct perr *err);

/* What a device adds to signatures: its product, its version floors, its
 * time floor. A field left zero or NULL is not checked. */
struct trust_policy {
	const char *product;
	uint64_t min_counter;   /* refuse a release counter below this (rollback) */
	uint64_t min_keyring;   /* refuse a keyring version below this */
	uint64_t max_image_size; /* refuse an image that does not fit the slot */
};

int trust_check_policy(const struct trust_policy *pol, const struct manifest *m, const struct keyring *kr,
		       struct perr *err);
