/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Allocation failures in the builders: after an -ENOMEM, the object must
 * still be usable (or at least freeable), never left half-changed. This
 * binary replaces strdup() so that the N-th call fails; malloc itself stays
 * the C library's (or ASan's), so the sanitizers still watch everything. */
#include "helpers.h"

/* 0: never fail; n: the n-th strdup() from now returns NULL. */
static unsigned fail_strdup_in;

char *strdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *p;

	if (fail_strdup_in && --fail_strdup_in == 0)
		return NULL;
	p = malloc(n);
	if (p)
		memcpy(p, s, n);
	return p;
}

/* The keyring builder gets this right: the reference for the one below. */
static void test_keyring_add_key_enomem(void **state)
{
	_cleanup_(keyring_freep) struct keyring *kr = keyring_new();
	struct perr err = { "" };
	uint8_t pub[PUBKEY_SIZE];

	(void)state;
	assert_non_null(kr);
	memset(pub, 0x10, PUBKEY_SIZE);
	assert_int_equal(keyring_add_key(kr, pub, 0, 0, "a", &err), 0);
	memset(pub, 0x20, PUBKEY_SIZE);
	fail_strdup_in = 1;
	assert_err(keyring_add_key(kr, pub, 0, 0, "b", &err), -ENOMEM, &err, "out of memory");
	assert_int_equal(fail_strdup_in, 0); /* the override was used */
	assert_int_equal(kr->n_keys, 1);
	assert_int_equal(keyring_add_key(kr, pub, 0, 0, "b", &err), 0);
	assert_err(keyring_seal(kr, &err), 0, &err, NULL);
}

/* Regression: manifest_add_meta() once counted the new entry before its
 * strdup() calls succeeded, so an -ENOMEM left an entry with a NULL key
 * behind and the next call or manifest_seal() crashed. A failed call must
 * leave the manifest as it was. The manifest lives in *state so that the
 * teardown frees it whatever an assertion does. */
static int free_manifest(void **state)
{
	manifest_free(*state);
	return 0;
}

static void test_manifest_add_meta_enomem(void **state)
{
	struct manifest *m = manifest_new();
	struct perr err = { "" };
	uint8_t id[HASH_SIZE] = { 0 };

	assert_non_null(m);
	*state = m;
	assert_int_equal(manifest_set_strings(m, "p", "1", PAYLOAD_AB_IMAGE, &err), 0);
	assert_int_equal(manifest_add_chunk(m, id, 100, &err), 0);
	m->image_size = 100;
	assert_int_equal(manifest_add_meta(m, "a", "1", &err), 0);
	for (unsigned n = 1; n <= 2; n++) { /* the key's copy fails, then the value's */
		size_t before = m->n_meta;

		fail_strdup_in = n;
		assert_err(manifest_add_meta(m, "b", "2", &err), -ENOMEM, &err, "out of memory");
		assert_int_equal(fail_strdup_in, 0);
		assert_int_equal(m->n_meta, before);
		assert_int_equal(manifest_add_meta(m, n == 1 ? "c" : "d", "3", &err), 0);
		assert_err(manifest_seal(m, &err), 0, &err, NULL);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_keyring_add_key_enomem),
		cmocka_unit_test_teardown(test_manifest_add_meta_enomem, free_manifest),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
