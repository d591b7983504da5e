/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* keyring_parse on arbitrary bytes. A keyring that parses must come back
 * byte for byte from keyring_format, and re-sealing it must reproduce the
 * signed bytes (one encoding per keyring). */
#include <stdio.h>

#include "fuzz.h"
#include "keyring.h"

static void check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz-keyring: invariant broken: %s\n", what);
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	_cleanup_(keyring_freep) struct keyring *kr = NULL;
	_cleanup_(freep) uint8_t *out = NULL;
	_cleanup_(freep) uint8_t *body = NULL;
	const struct trust_roots roots = fuzz_roots();
	struct perr err = { { 0 } };
	size_t out_len, body_len;

	if (keyring_parse(data, size, &kr, &err) < 0)
		return 0;

	check(kr->n_keys >= 1 && kr->n_keys <= KEYRING_MAX_KEYS, "key count within 1..KEYRING_MAX_KEYS");
	check(kr->threshold >= 1 && kr->threshold <= kr->n_keys, "threshold within 1..n_keys");
	for (size_t i = 0; i < kr->n_keys; i++) {
		check(keyring_find(kr, kr->keys[i].pub) == &kr->keys[i], "keyring_find finds every key");
		check(i == 0 || memcmp(kr->keys[i - 1].pub, kr->keys[i].pub, PUBKEY_SIZE) < 0, "keys sorted");
	}

	check(keyring_format(kr, &out, &out_len, &err) == 0, "keyring_format of a parsed keyring");
	check(out_len == size && memcmp(out, data, size) == 0, "keyring_format gives back the input");

	(void)trust_check_keyring(&roots, kr, FUZZ_NOW, &err);
	(void)trust_check_keyring(&roots, kr, kr->created, &err);

	/* Last, because sealing drops the signatures. */
	check(kr->signed_len >= KEYRING_HEADER_SIZE, "signed bytes hold the header");
	body_len = kr->signed_len;
	body = malloc(body_len);
	check(body != NULL, "malloc");
	memcpy(body, kr->signed_bytes, body_len);
	check(keyring_seal(kr, &err) == 0, "keyring_seal of a parsed keyring");
	check(kr->signed_len == body_len && memcmp(kr->signed_bytes, body, body_len) == 0,
	      "re-sealing gives back the signed bytes");
	return 0;
}
