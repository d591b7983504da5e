/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What the fuzz targets, the replay driver and the corpus generator share.
 *
 * Each fuzz-*.c defines LLVMFuzzerTestOneInput only. Linked with
 * -fsanitize=fuzzer it is a libFuzzer target; linked with replay.c it runs a
 * corpus as a TAP test, under any compiler. A target aborts only on a broken
 * invariant (a round trip that changes bytes), never on invalid input. */
#pragma once

#include <sodium.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "trust.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The keys the corpus is signed with. They are published in the source on
 * purpose: seeds signed by the root reach the paths that trust a signature,
 * which random keys never would. Never use them for anything else. */
#define FUZZ_ROOT_SEED "shoal fuzz root key seed.......!"
#define FUZZ_RELEASE_A_SEED "shoal fuzz release key A seed..!"
#define FUZZ_RELEASE_B_SEED "shoal fuzz release key B seed..!"
#define FUZZ_STRANGER_SEED "shoal fuzz untrusted key seed..!"

/* The clock the trust checks run at, and that the seeds were made around. */
#define FUZZ_NOW UINT64_C(1717243200) /* 2024-06-01 12:00:00 UTC */

static inline void fuzz_keypair(const char *seed, uint8_t pk[PUBKEY_SIZE], uint8_t sk[SECKEY_SIZE])
{
	_Static_assert(sizeof(FUZZ_ROOT_SEED) - 1 == crypto_sign_SEEDBYTES, "seed size");
	_Static_assert(sizeof(FUZZ_RELEASE_A_SEED) - 1 == crypto_sign_SEEDBYTES, "seed size");
	_Static_assert(sizeof(FUZZ_RELEASE_B_SEED) - 1 == crypto_sign_SEEDBYTES, "seed size");
	_Static_assert(sizeof(FUZZ_STRANGER_SEED) - 1 == crypto_sign_SEEDBYTES, "seed size");

	crypto_sign_seed_keypair(pk, sk, (const unsigned char *)seed);
}

/* The one trusted root, computed once. */
static inline struct trust_roots fuzz_roots(void)
{
	static uint8_t keys[1][PUBKEY_SIZE];
	static int done;

	if (!done) {
		uint8_t sk[SECKEY_SIZE];

		if (sodium_init() < 0)
			abort();
		fuzz_keypair(FUZZ_ROOT_SEED, keys[0], sk);
		sodium_memzero(sk, sizeof(sk));
		done = 1;
	}
	return (struct trust_roots){ .keys = (const uint8_t (*)[PUBKEY_SIZE])keys, .n = 1 };
}
