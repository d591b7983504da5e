/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"
#include "keys.h"

static int read_hex_secret(const char *path, const char *prefix, size_t n, uint8_t *out, struct perr *err)
{
	_cleanup_(freep) uint8_t *buf = NULL;
	size_t len, plen = strlen(prefix);
	struct stat st;
	int k;

	if (stat(path, &st) == 0 && (st.st_mode & 077))
		return perr_set(err, -EPERM, "%s: readable by others (mode %03o); chmod 600 it", path,
				st.st_mode & 0777);
	if ((k = read_file(path, 4096, &buf, &len, err)) < 0)
		return k;
	k = 0;
	if (len < plen + 2 * n || strncmp((char *)buf, prefix, plen) != 0 ||
	    hex_decode((char *)buf + plen, n, out) < 0 ||
	    (len > plen + 2 * n && buf[plen + 2 * n] != '\n'))
		k = perr_set(err, -EINVAL, "%s: expected %s%zu hex digits", path, prefix, 2 * n);
	sodium_memzero(buf, len);
	return k;
}

int device_key_load(const char *state_dir, uint8_t **ret_sk, uint8_t pub[PUBKEY_SIZE], struct perr *err)
{
	char path[PATH_MAX], hex[2 * SECKEY_SIZE + 1];
	uint8_t *sk = sodium_malloc(SECKEY_SIZE);
	int k;

	if (!sk)
		return perr_set(err, -ENOMEM, "out of memory");
	snprintf(path, sizeof(path), "%s/device.key", state_dir);
	if (access(path, F_OK) != 0) {
		char *line = sodium_malloc(sizeof(hex) + 32);

		if (!line) {
			sodium_free(sk);
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
	} else if ((k = read_hex_secret(path, "ed25519-secret:", SECKEY_SIZE, sk, err)) < 0) {
		sodium_free(sk);
		return k;
	}
	crypto_sign_ed25519_sk_to_pk(pub, sk);
	*ret_sk = sk;
	return 0;
}

int fleet_key_load(const char *path, uint8_t **ret, struct perr *err)
{
	uint8_t *k = sodium_malloc(FLEET_KEY_SIZE);
	int r;

	if (!k)
		return perr_set(err, -ENOMEM, "out of memory");
	r = read_hex_secret(path, "", FLEET_KEY_SIZE, k, err);
	if (r < 0) {
		sodium_free(k);
		return r;
	}
	*ret = k;
	return 0;
}
