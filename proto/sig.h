/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Ed25519 signature sets as manifests and keyrings carry them: a count byte,
 * then (public key, signature) pairs sorted by key, one per key. Each format
 * signs "domain\0" || header || body, so that a signature over a manifest can
 * never be replayed as one over a keyring. */
#pragma once

#include "codec.h"

#define PUBKEY_SIZE 32u
#define SECKEY_SIZE 64u
#define SIG_SIZE 64u
#define SIGSET_MAX 16u

struct signature {
	uint8_t pub[PUBKEY_SIZE];
	uint8_t sig[SIG_SIZE];
};

struct sigset {
	struct signature *v;
	size_t n;
};

void sigset_clear(struct sigset *s);

/* Signs the message with sk (libsodium's 64-byte secret key) and adds the
 * signature, replacing one by the same key. */
int sigset_sign(struct sigset *s, const char *domain, const uint8_t *msg, size_t len,
		const uint8_t sk[SECKEY_SIZE], struct perr *err);

/* True when sig is a valid signature by its key over the message. */
bool signature_check(const struct signature *sig, const char *domain, const uint8_t *msg, size_t len);

/* Reads a signature set that must end exactly where the input ends. */
int sigset_parse(struct rd *r, struct sigset *ret);
int sigset_format(const struct sigset *s, struct wbuf *w);

/* The id Ed25519 public keys are shown by: the first 8 bytes in hex. */
char *key_short_id(const uint8_t pub[PUBKEY_SIZE], char out[17]);
