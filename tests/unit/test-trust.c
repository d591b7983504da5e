/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Who may sign what: roots, root-signed keyrings of release keys,
 * thresholds, validity periods, revocation by a newer keyring, expiry,
 * and the device policy (product, rollback floors, slot size). Every
 * manifest and keyring here goes through format and parse first, because
 * a device only ever checks what it parsed. */
#include "helpers.h"

#define IMG_SIZE 100000u

static struct test_key root, root2, rel_a, rel_b, rel_c, stranger;

static int setup_keys(void **state)
{
	(void)state;
	make_key(0x10, &root);
	make_key(0x11, &root2);
	make_key(0x20, &rel_a);
	make_key(0x21, &rel_b);
	make_key(0x22, &rel_c);
	make_key(0x30, &stranger);
	return 0;
}

/* Trusted roots: `root` only, or both roots. */
static uint8_t roots_buf[2][PUBKEY_SIZE];

static struct trust_roots one_root(void)
{
	return roots_of(&root, 1, roots_buf);
}

static struct trust_roots two_roots(void)
{
	const struct test_key both[] = { root, root2 };

	return roots_of(both, 2, roots_buf);
}

/* A manifest as a device sees it: signed, formatted, parsed back. */
static struct manifest *signed_manifest(const struct mf_opts *o, const struct test_key *signers, size_t n)
{
	_cleanup_(freep) uint8_t *img = prng_image(1, IMG_SIZE), *buf = NULL;
	_cleanup_(manifest_freep) struct manifest *m = NULL;
	struct manifest *back = NULL;
	struct perr err = { "" };
	size_t len;

	m = make_manifest(img, IMG_SIZE, o);
	buf = sign_and_format(m, signers, n, &len);
	assert_err(manifest_parse(buf, len, &back, &err), 0, &err, NULL);
	return back;
}

static struct keyring *reparse_keyring(struct keyring *kr)
{
	_cleanup_(keyring_freep) struct keyring *owned = kr;
	_cleanup_(freep) uint8_t *buf = NULL;
	struct keyring *back = NULL;
	struct perr err = { "" };
	size_t len;

	assert_err(keyring_format(owned, &buf, &len, &err), 0, &err, NULL);
	assert_err(keyring_parse(buf, len, &back, &err), 0, &err, NULL);
	return back;
}

/* A parsed keyring listing keys (always valid), signed by signers. */
static struct keyring *keyring_of(uint64_t version, uint8_t threshold, const struct test_key *keys, size_t n_keys,
				  const struct test_key *signers, size_t n_signers)
{
	return reparse_keyring(make_keyring(version, 0, threshold, keys, n_keys, signers, n_signers));
}

static void test_root_signed(void **state)
{
	_cleanup_(manifest_freep) struct manifest *m = signed_manifest(NULL, &root, 1);
	_cleanup_(keyring_freep) struct keyring *kr = keyring_of(1, 1, &rel_a, 1, &root, 1);
	struct trust_roots roots = one_root();
	struct trust_result res;
	struct perr err = { "" };

	(void)state;
	assert_err(trust_check_manifest(&roots, NULL, m, T0, &res, &err), 0, &err, NULL);
	assert_int_equal(res.root_signers, 1);
	assert_int_equal(res.release_signers, 0);
	assert_int_equal(res.other_signers, 0);
	/* a keyring does not take a root's authority away */
	assert_err(trust_check_manifest(&roots, kr, m, T0, &res, &err), 0, &err, NULL);
	assert_int_equal(res.root_signers, 1);
	/* res is optional */
	assert_int_equal(trust_check_manifest(&roots, NULL, m, T0, NULL, NULL), 0);
}

static void test_release_key(void **state)
{
	const struct test_key listed[] = { rel_a, rel_b };
	_cleanup_(manifest_freep) struct manifest *m = signed_manifest(NULL, &rel_a, 1);
	_cleanup_(keyring_freep) struct keyring *kr = keyring_of(1, 1, listed, 2, &root, 1);
	struct trust_roots roots = one_root();
	struct trust_result res;
	struct perr err = { "" };

	(void)state;
	assert_err(trust_check_keyring(&roots, kr, T0, &err), 0, &err, NULL);
	assert_err(trust_check_manifest(&roots, kr, m, T0, &res, &err), 0, &err, NULL);
	assert_int_equal(res.root_signers, 0);
	assert_int_equal(res.release_signers, 1);
	assert_int_equal(res.threshold, 1);
}

static void test_unknown_key(void **state)
{
	_cleanup_(manifest_freep) struct manifest *m = signed_manifest(NULL, &stranger, 1);
	_cleanup_(keyring_freep) struct keyring *kr = keyring_of(1, 1, &rel_a, 1, &root, 1);
	struct trust_roots roots = one_root();
	struct trust_result res;
	struct perr err = { "" };
	char id[17];

	(void)state;
	/* the message names the key to look for */
	key_short_id(stranger.pk, id);
	assert_err(trust_check_manifest(&roots, kr, m, T0, &res, &err), -ENOKEY, &err, id);
	assert_int_equal(res.other_signers, 1);
	assert_err(trust_check_manifest(&roots, NULL, m, T0, NULL, &err), -ENOKEY, &err, id);
	assert_non_null(strstr(err.msg, "none was given"));
}

/* A release key without a keyring is nobody. */
static void test_release_key_without_keyring(void **state)
{
	_cleanup_(manifest_freep) struct manifest *m = signed_manifest(NULL, &rel_a, 1);
	struct trust_roots roots = one_root();
	struct perr err = { "" };

	(void)state;
	assert_err(trust_check_manifest(&roots, NULL, m, T0, NULL, &err), -ENOKEY, &err, NULL);
}

static void test_keyring_not_by_root(void **state)
{
	_cleanup_(keyring_freep) struct keyring *by_release = keyring_of(1, 1, &rel_b, 1, &rel_a, 1);
	_cleanup_(keyring_freep) struct keyring *unsigned_kr = keyring_of(1, 1, &rel_b, 1, NULL, 0);
	_cleanup_(keyring_freep) struct keyring *by_root2 = keyring_of(1, 1, &rel_b, 1, &root2, 1);
	struct trust_roots roots = one_root();
	struct perr err = { "" };

	(void)state;
	assert_err(trust_check_keyring(&roots, by_release, T0, &err), -ENOKEY, &err, "not signed by any trusted root");
	assert_err(trust_check_keyring(&roots, unsigned_kr, T0, &err), -ENOKEY, &err, "not signed by any trusted root");
	assert_err(trust_check_keyring(&roots, by_root2, T0, &err), -ENOKEY, &err, NULL);
	/* any of several roots will do */
	roots = two_roots();
	assert_err(trust_check_keyring(&roots, by_root2, T0, &err), 0, &err, NULL);
}

static void test_keyring_bad_signature(void **state)
{
	const struct test_key signers[] = { root, stranger };
	_cleanup_(keyring_freep) struct keyring *kr = keyring_of(1, 1, &rel_a, 1, &root, 1);
	_cleanup_(keyring_freep) struct keyring *two = keyring_of(1, 1, &rel_a, 1, signers, 2);
	struct trust_roots roots = one_root();
	struct perr err = { "" };
	char id[17];

	(void)state;
	kr->sigs.v[0].sig[10] ^= 0x04;
	assert_err(trust_check_keyring(&roots, kr, T0, &err), -EKEYREJECTED, &err, key_short_id(root.pk, id));
	/* a root signature does not excuse a bad one next to it */
	assert_err(trust_check_keyring(&roots, two, T0, &err), 0, &err, NULL);
	for (size_t i = 0; i < two->sigs.n; i++)
		if (!memcmp(two->sigs.v[i].pub, stranger.pk, PUBKEY_SIZE))
			two->sigs.v[i].sig[0] ^= 1;
	assert_err(trust_check_keyring(&roots, two, T0, &err), -EKEYREJECTED, &err, key_short_id(stranger.pk, id));
}

/* A signature made for one kind of object is not valid on the other. */
static void test_domain_separation(void **state)
{
	_cleanup_(manifest_freep) struct manifest *m = signed_manifest(NULL, NULL, 0);
	_cleanup_(keyring_freep) struct keyring *kr = keyring_of(1, 1, &rel_a, 1, NULL, 0);
	struct trust_roots roots = one_root();
	struct perr err = { "" };

	(void)state;
	assert_int_equal(sigset_sign(&m->sigs, KEYRING_SIG_DOMAIN, m->signed_bytes, m->signed_len, root.sk, &err), 0);
	assert_err(trust_check_manifest(&roots, NULL, m, T0, NULL, &err), -EKEYREJECTED, &err, "does not verify");
	assert_int_equal(sigset_sign(&kr->sigs, MANIFEST_SIG_DOMAIN, kr->signed_bytes, kr->signed_len, root.sk, &err),
			 0);
	assert_err(trust_check_keyring(&roots, kr, T0, &err), -EKEYREJECTED, &err, "does not verify");
}

static void test_revoked(void **state)
{
	const struct test_key v1_keys[] = { rel_a, rel_b };
	_cleanup_(manifest_freep) struct manifest *m = signed_manifest(NULL, &rel_b, 1);
	_cleanup_(keyring_freep) struct keyring *v1 = keyring_of(1, 1, v1_keys, 2, &root, 1);
	_cleanup_(keyring_freep) struct keyring *v2 = keyring_of(2, 1, &rel_a, 1, &root, 1);
	struct trust_roots roots = one_root();
	struct trust_policy pol = { .min_keyring = 2 };
	struct perr err = { "" };
	char id[17];

	(void)state;
	assert_err(trust_check_manifest(&roots, v1, m, T0, NULL, &err), 0, &err, NULL);
	assert_err(trust_check_keyring(&roots, v2, T0, &err), 0, &err, NULL);
	assert_err(trust_check_manifest(&roots, v2, m, T0, NULL, &err), -ENOKEY, &err, key_short_id(rel_b.pk, id));
	/* and a device that has seen v2 does not go back to v1 */
	assert_err(trust_check_policy(&pol, m, v1, &err), -EPERM, &err, "keyring version 1 is below the stored floor 2");
	assert_err(trust_check_policy(&pol, m, v2, &err), 0, &err, NULL);
}

static void test_threshold(void **state)
{
	const struct test_key listed[] = { rel_a, rel_b, rel_c };
	const struct test_key ab[] = { rel_a, rel_b }, a_stranger[] = { rel_a, stranger };
	_cleanup_(keyring_freep) struct keyring *kr = keyring_of(1, 2, listed, 3, &root, 1);
	_cleanup_(manifest_freep) struct manifest *one = signed_manifest(NULL, &rel_a, 1);
	_cleanup_(manifest_freep) struct manifest *two = signed_manifest(NULL, ab, 2);
	_cleanup_(manifest_freep) struct manifest *plus_stranger = signed_manifest(NULL, a_stranger, 2);
	_cleanup_(manifest_freep) struct manifest *by_root = signed_manifest(NULL, &root, 1);
	struct trust_roots roots = one_root();
	struct trust_result res;
	struct perr err = { "" };

	(void)state;
	assert_err(trust_check_manifest(&roots, kr, one, T0, &res, &err), -ENOKEY, &err,
		   "1 valid release signatures, the keyring requires 2");
	assert_err(trust_check_manifest(&roots, kr, two, T0, &res, &err), 0, &err, NULL);
	assert_int_equal(res.release_signers, 2);
	assert_int_equal(res.threshold, 2);
	/* a key we do not know is no second signer */
	assert_err(trust_check_manifest(&roots, kr, plus_stranger, T0, &res, &err), -ENOKEY, &err, "requires 2");
	assert_int_equal(res.other_signers, 1);
	/* a root needs no company */
	assert_err(trust_check_manifest(&roots, kr, by_root, T0, &res, &err), 0, &err, NULL);
}

/* rel_a may sign during [T0 - DAY, T0 + DAY) only. */
static struct keyring *keyring_with_period(void)
{
	struct keyring *kr = keyring_new();
	struct perr err = { "" };

	assert_non_null(kr);
	kr->created = T0 - 2 * DAY;
	assert_int_equal(keyring_add_key(kr, rel_a.pk, T0 - DAY, T0 + DAY, "a", &err), 0);
	assert_int_equal(keyring_seal(kr, &err), 0);
	assert_int_equal(keyring_sign(kr, root.sk, &err), 0);
	return reparse_keyring(kr);
}

static void test_key_validity(void **state)
{
	_cleanup_(keyring_freep) struct keyring *kr = keyring_with_period();
	_cleanup_(manifest_freep) struct manifest *m = signed_manifest(NULL, &rel_a, 1);
	_cleanup_(manifest_freep) struct manifest *late = signed_manifest(&(struct mf_opts){ .created = T0 + 2 * DAY },
									  &rel_a, 1);
	struct trust_roots roots = one_root();
	struct perr err = { "" };

	(void)state;
	assert_err(trust_check_manifest(&roots, kr, m, T0, NULL, &err), 0, &err, NULL);
	assert_err(trust_check_manifest(&roots, kr, m, T0 - DAY, NULL, &err), 0, &err, NULL);
	assert_err(trust_check_manifest(&roots, kr, m, T0 + DAY - 1, NULL, &err), 0, &err, NULL);
	/* not_after is the first second the key is no longer valid */
	assert_err(trust_check_manifest(&roots, kr, m, T0 + DAY, NULL, &err), -EKEYEXPIRED, &err, "validity");
	assert_err(trust_check_manifest(&roots, kr, m, T0 + YEAR, NULL, &err), -EKEYEXPIRED, &err, "validity");
	assert_err(trust_check_manifest(&roots, kr, m, T0 - DAY - 1, NULL, &err), -EKEYEXPIRED, &err, "validity");
	/* a manifest dated outside the key's period, checked while the key is valid */
	assert_err(trust_check_manifest(&roots, kr, late, T0, NULL, &err), -EKEYEXPIRED, &err, "created at");
}

/* A keyring key outside its validity period does not count towards the
 * threshold, but it does not veto either: rotating release keys means
 * signing with the old and the new key for a while, and a root-signed
 * release co-signed by a retired key is still root-signed. Only when the
 * expired key was needed does the manifest fail (test_key_validity).
 * What outlives an assertion is in *state, freed by the teardown. */
struct cosign {
	struct keyring *kr;
	struct manifest *rotated, *by_root;
};

static int free_cosign(void **state)
{
	struct cosign *c = *state;

	if (c) {
		keyring_free(c->kr);
		manifest_free(c->rotated);
		manifest_free(c->by_root);
		free(c);
	}
	return 0;
}

static void test_expired_cosigner(void **state)
{
	const struct test_key old_new[] = { rel_a, rel_b }, root_old[] = { root, rel_a };
	struct cosign *c = calloc(1, sizeof(*c));
	struct keyring *kr;
	struct trust_roots roots = one_root();
	struct trust_result res;
	struct perr err = { "" };

	assert_non_null(c);
	*state = c;
	c->rotated = signed_manifest(NULL, old_new, 2);
	c->by_root = signed_manifest(NULL, root_old, 2);
	kr = keyring_new();
	assert_non_null(kr);
	kr->created = T0 - 2 * DAY;
	assert_int_equal(keyring_add_key(kr, rel_a.pk, 0, T0 + DAY, "old", &err), 0);
	assert_int_equal(keyring_add_key(kr, rel_b.pk, 0, 0, "new", &err), 0);
	assert_int_equal(keyring_seal(kr, &err), 0);
	assert_int_equal(keyring_sign(kr, root.sk, &err), 0);
	c->kr = kr = reparse_keyring(kr);
	/* while both keys are valid, both count */
	assert_err(trust_check_manifest(&roots, kr, c->rotated, T0, &res, &err), 0, &err, NULL);
	assert_int_equal(res.release_signers, 2);

	/* after the old key's end, the new key alone meets the threshold of 1 */
	assert_err(trust_check_manifest(&roots, kr, c->rotated, T0 + 2 * DAY, &res, &err), 0, &err, NULL);
	assert_int_equal(res.release_signers, 1);
	/* and a root needs no release key at all */
	assert_err(trust_check_manifest(&roots, kr, c->by_root, T0 + 2 * DAY, &res, &err), 0, &err, NULL);
	assert_int_equal(res.root_signers, 1);
}

static void test_manifest_expired(void **state)
{
	_cleanup_(manifest_freep) struct manifest *m = signed_manifest(&(struct mf_opts){ .expires = T0 + DAY },
								       &root, 1);
	struct trust_roots roots = one_root();
	struct perr err = { "" };

	(void)state;
	assert_err(trust_check_manifest(&roots, NULL, m, T0 + DAY - 1, NULL, &err), 0, &err, NULL);
	assert_err(trust_check_manifest(&roots, NULL, m, T0 + DAY, NULL, &err), -EKEYEXPIRED, &err, "expired");
	assert_err(trust_check_manifest(&roots, NULL, m, T0 + YEAR, NULL, &err), -EKEYEXPIRED, &err, "expired");
}

static void test_keyring_expired(void **state)
{
	_cleanup_(keyring_freep) struct keyring *kr =
		reparse_keyring(make_keyring(1, T0 + DAY, 1, &rel_a, 1, &root, 1));
	struct trust_roots roots = one_root();
	struct perr err = { "" };

	(void)state;
	assert_err(trust_check_keyring(&roots, kr, T0 + DAY - 1, &err), 0, &err, NULL);
	assert_err(trust_check_keyring(&roots, kr, T0 + DAY, &err), -EKEYEXPIRED, &err, "expired");
	assert_err(trust_check_keyring(&roots, kr, UINT64_MAX, &err), -EKEYEXPIRED, &err, "expired");
}

static void test_extra_unknown_signature(void **state)
{
	const struct test_key root_stranger[] = { root, stranger }, a_stranger[] = { rel_a, stranger };
	_cleanup_(manifest_freep) struct manifest *m = signed_manifest(NULL, root_stranger, 2);
	_cleanup_(manifest_freep) struct manifest *m2 = signed_manifest(NULL, a_stranger, 2);
	_cleanup_(keyring_freep) struct keyring *kr = keyring_of(1, 1, &rel_a, 1, &root, 1);
	struct trust_roots roots = one_root();
	struct trust_result res;
	struct perr err = { "" };

	(void)state;
	assert_err(trust_check_manifest(&roots, NULL, m, T0, &res, &err), 0, &err, NULL);
	assert_int_equal(res.root_signers, 1);
	assert_int_equal(res.other_signers, 1);
	assert_err(trust_check_manifest(&roots, kr, m2, T0, &res, &err), 0, &err, NULL);
	assert_int_equal(res.release_signers, 1);
	assert_int_equal(res.other_signers, 1);
}

/* Any signature that does not verify refuses the whole manifest, even next
 * to a valid root signature: a tampered manifest is never "mostly signed". */
static void test_bad_extra_signature(void **state)
{
	const struct test_key root_stranger[] = { root, stranger };
	_cleanup_(manifest_freep) struct manifest *m = signed_manifest(NULL, root_stranger, 2);
	struct trust_roots roots = one_root();
	struct perr err = { "" };
	char id[17];

	(void)state;
	for (size_t i = 0; i < m->sigs.n; i++)
		if (!memcmp(m->sigs.v[i].pub, stranger.pk, PUBKEY_SIZE))
			m->sigs.v[i].sig[63] ^= 0x01;
	assert_err(trust_check_manifest(&roots, NULL, m, T0, NULL, &err), -EKEYREJECTED, &err,
		   key_short_id(stranger.pk, id));
}

static void test_unsigned(void **state)
{
	_cleanup_(manifest_freep) struct manifest *m = signed_manifest(NULL, NULL, 0);
	_cleanup_(manifest_freep) struct manifest *unsealed = manifest_new();
	struct trust_roots roots = one_root();
	struct perr err = { "" };

	(void)state;
	assert_err(trust_check_manifest(&roots, NULL, m, T0, NULL, &err), -ENOKEY, &err, "not signed");
	assert_non_null(unsealed);
	assert_err(trust_check_manifest(&roots, NULL, unsealed, T0, NULL, &err), -EINVAL, &err, NULL);
}

static void test_policy(void **state)
{
	_cleanup_(manifest_freep) struct manifest *m =
		signed_manifest(&(struct mf_opts){ .product = "board-a", .counter = 10 }, &root, 1);
	_cleanup_(keyring_freep) struct keyring *kr = keyring_of(5, 1, &rel_a, 1, &root, 1);
	struct perr err = { "" };

	(void)state;
	/* nothing asked, nothing refused */
	assert_err(trust_check_policy(&(struct trust_policy){ 0 }, m, kr, &err), 0, &err, NULL);
	assert_err(trust_check_policy(&(struct trust_policy){ 0 }, m, NULL, &err), 0, &err, NULL);

	assert_err(trust_check_policy(&(struct trust_policy){ .product = "board-b" }, m, kr, &err), -EPERM, &err,
		   "release is for product 'board-a', this device is 'board-b'");
	assert_err(trust_check_policy(&(struct trust_policy){ .product = "board-a" }, m, kr, &err), 0, &err, NULL);
	/* no prefix matching */
	assert_err(trust_check_policy(&(struct trust_policy){ .product = "board" }, m, kr, &err), -EPERM, &err, NULL);

	assert_err(trust_check_policy(&(struct trust_policy){ .min_counter = 11 }, m, kr, &err), -EPERM, &err,
		   "rollback");
	/* reinstalling the installed release is not a rollback */
	assert_err(trust_check_policy(&(struct trust_policy){ .min_counter = 10 }, m, kr, &err), 0, &err, NULL);
	assert_err(trust_check_policy(&(struct trust_policy){ .min_counter = 9 }, m, kr, &err), 0, &err, NULL);

	assert_err(trust_check_policy(&(struct trust_policy){ .min_keyring = 6 }, m, kr, &err), -EPERM, &err,
		   "keyring version 5");
	assert_err(trust_check_policy(&(struct trust_policy){ .min_keyring = 5 }, m, kr, &err), 0, &err, NULL);

	assert_err(trust_check_policy(&(struct trust_policy){ .max_image_size = IMG_SIZE - 1 }, m, kr, &err), -EFBIG,
		   &err, "does not fit");
	assert_err(trust_check_policy(&(struct trust_policy){ .max_image_size = IMG_SIZE }, m, kr, &err), 0, &err,
		   NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_root_signed),
		cmocka_unit_test(test_release_key),
		cmocka_unit_test(test_unknown_key),
		cmocka_unit_test(test_release_key_without_keyring),
		cmocka_unit_test(test_keyring_not_by_root),
		cmocka_unit_test(test_keyring_bad_signature),
		cmocka_unit_test(test_domain_separation),
		cmocka_unit_test(test_revoked),
		cmocka_unit_test(test_threshold),
		cmocka_unit_test(test_key_validity),
		cmocka_unit_test_teardown(test_expired_cosigner, free_cosign),
		cmocka_unit_test(test_manifest_expired),
		cmocka_unit_test(test_keyring_expired),
		cmocka_unit_test(test_extra_unknown_signature),
		cmocka_unit_test(test_bad_extra_signature),
		cmocka_unit_test(test_unsigned),
		cmocka_unit_test(test_policy),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, setup_keys, NULL);
}
