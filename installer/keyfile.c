/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <ctype.h>
#include <sodium.h>
#include <sys/stat.h>

#include "fileio.h"
#include "keyfile.h"

int key_read_hex(const char *path, const char *prefix, size_t n, unsigned flags, uint8_t *out, struct perr *err)
{
	_cleanup_(freep) uint8_t *buf = NULL;
	size_t len, plen = strlen(prefix);
	struct stat st;
	const char *s;
	int k;

	if ((flags & KEYFILE_PRIVATE) && stat(path, &st) == 0 && (st.st_mode & 077))
		return perr_set(err, -EPERM, "%s: readable by others (mode %03o); chmod 600 it", path,
				st.st_mode & 0777);
	if ((k = read_file(path, 4096, &buf, &len, err)) < 0)
		return k;
	s = (const char *)buf; /* read_file ends it with a NUL */
	k = 0;
	if (len < plen + 2 * n || strncmp(s, prefix, plen) != 0 || hex_decode(s + plen, n, out) < 0 ||
	    (s[plen + 2 * n] && !isspace((unsigned char)s[plen + 2 * n]))) {
		if (*prefix)
			k = perr_set(err, -EINVAL, "%s: not a shoal key file (expected '%s' and %zu hex digits)", path,
				     prefix, 2 * n);
		else
			k = perr_set(err, -EINVAL, "%s: expected one line of %zu hex digits", path, 2 * n);
	}
	sodium_memzero(buf, len);
	return k;
}

int key_read_public(const char *path, uint8_t pub[PUBKEY_SIZE], struct perr *err)
{
	return key_read_hex(path, "ed25519:", PUBKEY_SIZE, 0, pub, err);
}

int key_read_secret(const char *path, unsigned flags, uint8_t **ret_sk, struct perr *err)
{
	uint8_t *sk = sodium_malloc(SECKEY_SIZE), *sk2 = sodium_malloc(SECKEY_SIZE);
	uint8_t pk[PUBKEY_SIZE], pk2[PUBKEY_SIZE], seed[32];
	int k;

	if (!sk || !sk2) {
		k = perr_set(err, -ENOMEM, "out of memory");
		goto fail;
	}
	if ((k = key_read_hex(path, "ed25519-secret:", SECKEY_SIZE, flags, sk, err)) < 0)
		goto fail;
	/* the secret key embeds its public half: a mismatch means a damaged file */
	crypto_sign_ed25519_sk_to_pk(pk, sk);
	crypto_sign_ed25519_sk_to_seed(seed, sk);
	crypto_sign_seed_keypair(pk2, sk2, seed);
	sodium_memzero(seed, sizeof(seed));
	sodium_free(sk2);
	if (memcmp(pk, pk2, PUBKEY_SIZE) != 0) {
		sodium_free(sk);
		return perr_set(err, -EINVAL, "%s: secret key is damaged (its halves do not match)", path);
	}
	*ret_sk = sk;
	return 0;
fail:
	sodium_free(sk);
	sodium_free(sk2);
	return k;
}
