/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <unistd.h>

#include "fileio.h"
#include "keyfile.h"
#include "keys.h"

int device_key_load(const char *state_dir, uint8_t **ret_sk, uint8_t pub[PUBKEY_SIZE], struct perr *err)
{
	char path[PATH_MAX], hex[2 * SECKEY_SIZE + 1];
	uint8_t *sk;
	char *line;
	int k;

	snprintf(path, sizeof(path), "%s/device.key", state_dir);
	if (access(path, F_OK) == 0) {
		if ((k = key_read_secret(path, KEYFILE_PRIVATE, &sk, err)) < 0)
			return k;
		crypto_sign_ed25519_sk_to_pk(pub, sk);
		*ret_sk = sk;
		return 0;
	}
	/* first start: make the device's key */
	sk = sodium_malloc(SECKEY_SIZE);
	line = sodium_malloc(sizeof(hex) + 32);
	if (!sk || !line) {
		sodium_free(sk);
		sodium_free(line);
		return perr_set(err, -ENOMEM, "out of memory");
	}
	crypto_sign_keypair(pub, sk);
	snprintf(line, sizeof(hex) + 32, "ed25519-secret:%s\n", hex_encode(sk, SECKEY_SIZE, hex));
	sodium_memzero(hex, sizeof(hex));
	k = write_file_atomic(path, line, strlen(line), 0600, err);
	sodium_free(line);
	if (k < 0) {
		sodium_free(sk);
		return k;
	}
	*ret_sk = sk;
	return 0;
}

int fleet_key_load(const char *path, uint8_t **ret, struct perr *err)
{
	uint8_t *k = sodium_malloc(FLEET_KEY_SIZE);
	int r;

	if (!k)
		return perr_set(err, -ENOMEM, "out of memory");
	r = key_read_hex(path, "", FLEET_KEY_SIZE, KEYFILE_PRIVATE, k, err);
	if (r < 0) {
		sodium_free(k);
		return r;
	}
	*ret = k;
	return 0;
}
