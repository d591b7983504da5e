/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "trust.h"

static bool is_root(const struct trust_roots *roots, const uint8_t pub[PUBKEY_SIZE])
{
	for (size_t i = 0; i < roots->n; i++)
		if (memcmp(roots->keys[i], pub, PUBKEY_SIZE) == 0)
			return true;
	return false;
}

int trust_check_keyring(const struct trust_roots *roots, const struct keyring *kr, uint64_t now,
			struct perr *err)
{
	size_t by_root = 0;
	char id[17];

	for (size_t i = 0; i < kr->sigs.n; i++) {
		const struct signature *s = &kr->sigs.v[i];

		if (!signature_check(s, KEYRING_SIG_DOMAIN, kr->signed_bytes, kr->signed_len))
			return perr_set(err, -EKEYREJECTED, "keyring v%" PRIu64 ": signature by key %s does not verify",
					kr->version, key_short_id(s->pub, id));
		if (is_root(roots, s->pub))
			by_root++;
	}
	if (by_root == 0)
		return perr_set(err, -ENOKEY, "keyring v%" PRIu64 " is not signed by any trusted root key",
				kr->version);
	if (kr->expires && kr->expires <= now)
		return perr_set(err, -EKEYEXPIRED, "keyring v%" PRIu64 " expired at %" PRIu64, kr->version,
				kr->expires);
	return 0;
}

static bool key_valid_at(const struct keyring_key *k, uint64_t t)
{
	return t >= k->not_before && (k->not_after == 0 || t < k->not_after);
}

int trust_check_manifest(const struct trust_roots *roots, const struct keyring *kr, const struct manifest *m,
			 uint64_t now, struct trust_result *res, struct perr *err)
{
	struct trust_result r = { .threshold = kr ? kr->threshold : 1 };
	const struct signature *expired = NULL;
	bool expired_now = false;
	char id[17];

	if (!m->signed_bytes)
		return perr_set(err, -EINVAL, "manifest has no signed body");
	if (m->sigs.n == 0)
		return perr_set(err, -ENOKEY, "manifest is not signed");
	for (size_t i = 0; i < m->sigs.n; i++) {
		const struct signature *s = &m->sigs.v[i];
		const struct keyring_key *k;

		if (!signature_check(s, MANIFEST_SIG_DOMAIN, m->signed_bytes, m->signed_len))
			return perr_set(err, -EKEYREJECTED, "manifest signature by key %s does not verify",
					key_short_id(s->pub, id));
		if (is_root(roots, s->pub)) {
			r.root_signers++;
		} else if (kr && (k = keyring_find(kr, s->pub))) {
			/* An expired co-signer does not count, and does not
			 * veto: rotating keys means signing with old and new
			 * for a while. */
			if (key_valid_at(k, now) && key_valid_at(k, m->created))
				r.release_signers++;
			else if (!expired) {
				expired = s;
				expired_now = !key_valid_at(k, now);
			}
		} else {
			r.other_signers++;
		}
	}
	if (res)
		*res = r;
	if (r.root_signers == 0 && r.release_signers < r.threshold) {
		if (expired && expired_now)
			return perr_set(err, -EKEYEXPIRED, "manifest signed by key %s outside its validity period",
					key_short_id(expired->pub, id));
		if (expired)
			return perr_set(err, -EKEYEXPIRED,
					"manifest created at %" PRIu64 ", outside the validity of its signing key %s",
					m->created, key_short_id(expired->pub, id));
		if (r.release_signers == 0) {
			/* name the first signer we could not place: that is the key to look for */
			return perr_set(err, -ENOKEY,
					"manifest is signed by key %s, which is neither a trusted root nor in %s",
					key_short_id(m->sigs.v[0].pub, id),
					kr ? "the trusted keyring" : "a keyring (none was given)");
		}
		return perr_set(err, -ENOKEY, "manifest has %zu valid release signatures, the keyring requires %u",
				r.release_signers, r.threshold);
	}
	if (m->expires && m->expires <= now)
		return perr_set(err, -EKEYEXPIRED, "manifest expired at %" PRIu64 " (now %" PRIu64 ")", m->expires, now);
	return 0;
}

int trust_check_policy(const struct trust_policy *pol, const struct manifest *m, const struct keyring *kr,
		       struct perr *err)
{
	if (pol->product && strcmp(pol->product, m->product) != 0)
		return perr_set(err, -EPERM, "release is for product '%s', this device is '%s'", m->product,
				pol->product);
	if (m->counter < pol->min_counter)
		return perr_set(err, -EPERM, "release counter %" PRIu64 " is below the installed floor %" PRIu64
				" (rollback refused)", m->counter, pol->min_counter);
	if (kr && kr->version < pol->min_keyring)
		return perr_set(err, -EPERM, "keyring version %" PRIu64 " is below the stored floor %" PRIu64,
				kr->version, pol->min_keyring);
	if (pol->max_image_size && m->image_size > pol->max_image_size)
		return perr_set(err, -EFBIG, "image of %" PRIu64 " bytes does not fit the slot of %" PRIu64 " bytes",
				m->image_size, pol->max_image_size);
	return 0;
}
