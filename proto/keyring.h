/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The keyring: a list of release-signing keys, signed by one or more root
 * keys. Devices trust roots only; a keyring gains authority from a root
 * signature, and a newer keyring version replaces an older one (revoking a
 * key is a new version without it). Format in docs/formats.md. */
#pragma once

#include "sig.h"

#define KEYRING_MAGIC "SHOAL-KR"
#define KEYRING_FORMAT 1u
#define KEYRING_HEADER_SIZE 16u
#define KEYRING_SIG_DOMAIN "shoal keyring v1"
#define KEYRING_MAX_KEYS 256u
#define KEYRING_NAME_MAX 64u
#define KEYRING_MAX_SIZE (KEYRING_HEADER_SIZE + 8 * 3 + 1 + 2 + \
			  KEYRING_MAX_KEYS * (PUBKEY_SIZE + 16 + 2 + KEYRING_NAME_MAX) + \
			  1 + SIGSET_MAX * (PUBKEY_SIZE + SIG_SIZE))

struct keyring_key {
	uint8_t pub[PUBKEY_SIZE];
	uint64_t not_before; /* unix seconds; 0: always */
	uint64_t not_after;  /* 0: never expires */
	char *name;          /* for people, may be empty */
};

struct keyring {
	uint64_t version; /* >= 1, monotonic */
	uint64_t created;
	uint64_t expires; /* 0: never */
	uint8_t threshold; /* distinct listed keys a manifest needs, 1..n_keys */
	struct keyring_key *keys; /* sorted by public key, unique */
	size_t n_keys;
	struct sigset sigs;
	uint8_t *signed_bytes;
	size_t signed_len;
};

struct keyring *keyring_new(void);
void keyring_free(struct keyring *kr);
static inline void keyring_freep(struct keyring **kr)
{
	keyring_free(*kr);
}

int keyring_add_key(struct keyring *kr, const uint8_t pub[PUBKEY_SIZE], uint64_t not_before,
		    uint64_t not_after, const char *name, struct perr *err);
/* Checks and encodes the body; drops older signatures. */
int keyring_seal(struct keyring *kr, struct perr *err);
int keyring_sign(struct keyring *kr, const uint8_t sk[SECKEY_SIZE], struct perr *err);
int keyring_format(const struct keyring *kr, uint8_t **ret, size_t *ret_len, struct perr *err);
/* Rejects truncation, trailing bytes, out-of-range values, unsorted or
 * duplicate keys, a threshold above the key count. No signature check. */
int keyring_parse(const uint8_t *buf, size_t len, struct keyring **ret, struct perr *err);

const struct keyring_key *keyring_find(const struct keyring *kr, const uint8_t pub[PUBKEY_SIZE]);
