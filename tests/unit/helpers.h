/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fixtures shared by the proto/ unit tests: fixed keys, seeded images,
 * chunked and sealed manifests, signed keyrings, golden files. Everything
 * is deterministic, so that vectors can be pinned and a failure reproduced. */
#pragma once

/* cmocka.h needs these first */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sodium.h>

#include "chunker.h"
#include "keyring.h"
#include "manifest.h"
#include "prng.h"
#include "trust.h"

/* A fixed "now" for manifests and keyrings (2023-11-14). */
#define T0 UINT64_C(1700000000)
#define DAY UINT64_C(86400)
#define YEAR (365 * DAY)

/* Test keys are fixed and public, so they live in ordinary memory, unlike
 * the device keys the house style puts in sodium_malloc. */
struct test_key {
	uint8_t pk[PUBKEY_SIZE];
	uint8_t sk[SECKEY_SIZE];
};

/* The Ed25519 key pair whose 32-byte seed is `seed` repeated: the same key
 * on every machine, and Ed25519 signing is deterministic, so signed
 * vectors are too. */
void make_key(uint8_t seed, struct test_key *ret);

/* n bytes of prng_fill() from `seed`. Malloc'ed, caller frees. */
uint8_t *prng_image(uint64_t seed, size_t n);

/* Chunks img with p and returns the number of chunks; *ret_lens
 * (malloc'ed, caller frees) receives their lengths. The image is fed in
 * one piece when piece_seed is NULL, else in pieces of 1 byte .. 1 MiB
 * drawn from that prng state, most of them small. */
size_t chunk_lengths(const uint8_t *img, size_t n, const struct chunker_params *p, uint64_t *piece_seed,
		     uint32_t **ret_lens);

/* The BLAKE2b ids of the chunks that lens cuts img into: n_chunks * HASH_SIZE
 * bytes, malloc'ed, caller frees. */
uint8_t *chunk_ids(const uint8_t *img, const uint32_t *lens, size_t n_chunks);

/* What make_manifest() varies; a zeroed field takes the default below. */
struct mf_opts {
	const char *product;   /* "shoal-test" */
	const char *version;   /* "1.0" */
	const char *payload;   /* "ab-image" */
	uint64_t counter;      /* 1 */
	uint64_t created;      /* T0 */
	uint64_t expires;      /* 0: never */
	struct chunker_params chunking; /* the defaults */
	const char *const *meta; /* key, value, key, value, ..., NULL; any order */
};

/* A sealed, unsigned manifest describing img, chunked for real with
 * o->chunking. Caller frees. Fails the test when anything is refused. */
struct manifest *make_manifest(const uint8_t *img, size_t n, const struct mf_opts *o);

/* Signs m with every key given and formats it. Malloc'ed, caller frees. */
uint8_t *sign_and_format(struct manifest *m, const struct test_key *keys, size_t n_keys, size_t *ret_len);

/* A sealed keyring listing `keys` (always valid, no names), signed by each
 * of `signers`. Caller frees. */
struct keyring *make_keyring(uint64_t version, uint64_t expires, uint8_t threshold, const struct test_key *keys,
			     size_t n_keys, const struct test_key *signers, size_t n_signers);

/* A struct trust_roots over the public keys of `keys`, using storage
 * (at least n entries) that the caller keeps alive. */
struct trust_roots roots_of(const struct test_key *keys, size_t n, uint8_t (*storage)[PUBKEY_SIZE]);

/* Whole-file I/O for golden vectors. 0 or a negative errno. */
int read_file(const char *path, uint8_t **ret, size_t *ret_len);
int write_file(const char *path, const void *p, size_t n);

/* Asserts that a proto/ call returned `want` and, when needle is not NULL,
 * that its message says so: a rejection for the wrong reason is a bug too.
 * The failure names the caller's line. */
#define assert_err(got, want, err, needle) assert_err_at((got), (want), (err), (needle), __FILE__, __LINE__)
void assert_err_at(int got, int want, const struct perr *err, const char *needle, const char *file, int line);

/* Asserts a negative errno together with a non-empty message. */
#define assert_failed(got, err) assert_failed_at((got), (err), __FILE__, __LINE__)
void assert_failed_at(int got, const struct perr *err, const char *file, int line);

/* A REPORT with every field and list in use (tags, health checks with a
 * multi-line output, inventory), pointing into static strings. */
struct msg_report;
void fixture_report(struct msg_report *ret);
/* Field by field, and the bytes behind every string. */
bool report_equal(const struct msg_report *a, const struct msg_report *b);
