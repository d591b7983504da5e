/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Key files as shoal, shoald and the installer read them: a public key
 * with or without a comment, a secret key whose halves must match, the
 * fleet secret, and a private file that others can read. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "keyfile.h"

static char dir[64];

static const char *path_of(const char *name)
{
	static char path[256];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return path;
}

static const char *write_text(const char *name, const char *text, mode_t mode)
{
	const char *path = path_of(name);
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	assert_int_equal(chmod(path, mode), 0);
	return path;
}

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/shoal-keyfile-XXXXXX");
	assert_non_null(mkdtemp(dir));
	return sodium_init() < 0;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd);
}

static void test_public(void **state)
{
	uint8_t pub[PUBKEY_SIZE], want[PUBKEY_SIZE];
	char line[200], hex[2 * PUBKEY_SIZE + 1];
	struct perr err = { "" };

	(void)state;
	for (unsigned i = 0; i < PUBKEY_SIZE; i++)
		want[i] = (uint8_t)(i * 7 + 1);
	sodium_bin2hex(hex, sizeof(hex), want, sizeof(want));
	snprintf(line, sizeof(line), "ed25519:%s\n", hex);
	assert_int_equal(key_read_public(write_text("a.pub", line, 0644), pub, &err), 0);
	assert_memory_equal(pub, want, PUBKEY_SIZE);
	snprintf(line, sizeof(line), "ed25519:%s release key 2027\n", hex);
	assert_int_equal(key_read_public(write_text("b.pub", line, 0644), pub, &err), 0);
	assert_memory_equal(pub, want, PUBKEY_SIZE);
	snprintf(line, sizeof(line), "ed25519:%s", hex); /* no newline */
	assert_int_equal(key_read_public(write_text("c.pub", line, 0644), pub, &err), 0);

	snprintf(line, sizeof(line), "ed25519:%sff\n", hex); /* 66 digits */
	assert_int_equal(key_read_public(write_text("long.pub", line, 0644), pub, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "not a shoal key file (expected 'ed25519:' and 64 hex digits)"));
	assert_non_null(strstr(err.msg, "long.pub"));
	line[20] = 'g';
	assert_int_equal(key_read_public(write_text("bad.pub", line, 0644), pub, &err), -EINVAL);
	assert_int_equal(key_read_public(write_text("short.pub", "ed25519:abcd\n", 0644), pub, &err), -EINVAL);
	assert_int_equal(key_read_public(write_text("sec.pub", "ed25519-secret:00\n", 0644), pub, &err), -EINVAL);
	assert_int_equal(key_read_public(path_of("missing.pub"), pub, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "missing.pub"));
}

static void test_secret(void **state)
{
	uint8_t pk[PUBKEY_SIZE], sk[SECKEY_SIZE], *got = NULL;
	char line[300], hex[2 * SECKEY_SIZE + 1];
	struct perr err = { "" };

	(void)state;
	static const uint8_t seed[crypto_sign_SEEDBYTES] = { 7 }; /* deterministic */

	crypto_sign_seed_keypair(pk, sk, seed);
	sodium_bin2hex(hex, sizeof(hex), sk, sizeof(sk));
	snprintf(line, sizeof(line), "ed25519-secret:%s\n", hex);
	assert_int_equal(key_read_secret(write_text("a.key", line, 0600), KEYFILE_PRIVATE, &got, &err), 0);
	assert_memory_equal(got, sk, SECKEY_SIZE);
	sodium_free(got);

	/* others can read it: shoald refuses, shoal (flags 0) takes it */
	write_text("open.key", line, 0644);
	assert_int_equal(key_read_secret(path_of("open.key"), KEYFILE_PRIVATE, &got, &err), -EPERM);
	assert_non_null(strstr(err.msg, "readable by others (mode 644); chmod 600 it"));
	assert_int_equal(key_read_secret(path_of("open.key"), 0, &got, &err), 0);
	sodium_free(got);

	/* the public half no longer matches the seed */
	{ /* another hex digit: still hex, another public half */
		char *c = &line[strlen("ed25519-secret:") + 2 * SECKEY_SIZE - 1];

		*c = *c == '0' ? '1' : '0';
	}
	assert_int_equal(key_read_secret(write_text("damaged.key", line, 0600), 0, &got, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "secret key is damaged"));
	assert_int_equal(key_read_secret(write_text("pub.key", "ed25519:00\n", 0600), 0, &got, &err), -EINVAL);
}

static void test_fleet_secret(void **state)
{
	uint8_t key[32];
	struct perr err = { "" };
	const char *hex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
	char line[100];

	(void)state;
	snprintf(line, sizeof(line), "%s\n", hex);
	assert_int_equal(key_read_hex(write_text("fleet.key", line, 0600), "", 32, KEYFILE_PRIVATE, key, &err), 0);
	for (int i = 0; i < 32; i++)
		assert_int_equal(key[i], i);
	assert_int_equal(key_read_hex(write_text("fleet2.key", "0011\n", 0600), "", 32, KEYFILE_PRIVATE, key, &err),
			 -EINVAL);
	assert_non_null(strstr(err.msg, "expected one line of 64 hex digits"));
	assert_int_equal(key_read_hex(write_text("fleet3.key", line, 0640), "", 32, KEYFILE_PRIVATE, key, &err),
			 -EPERM);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_public),
		cmocka_unit_test(test_secret),
		cmocka_unit_test(test_fleet_secret),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
