/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Key files, read the same way by shoal, shoald and the installer:
 *   NAME.pub   "ed25519:<64 hex>[ comment]\n"      (a public key)
 *   NAME.key   "ed25519-secret:<128 hex>\n"       (mode 0600)
 *   fleet.key  "<64 hex>\n"                       (the fleet secret, 0600) */
#pragma once

#include "sig.h"

enum {
	KEYFILE_PRIVATE = 1 << 0, /* refuse a file that group or others can read */
};

/* Reads one line: prefix, then exactly 2*n hex digits into out (n bytes),
 * then the end of the file, or whitespace and anything after it (a
 * comment). The file is wiped from memory after reading. -EINVAL names
 * the file and what it should hold; -EPERM (KEYFILE_PRIVATE) when others
 * can read it. out may be written on failure: pass guarded memory for a
 * secret. */
int key_read_hex(const char *path, const char *prefix, size_t n, unsigned flags, uint8_t *out, struct perr *err);

/* A NAME.pub file. */
int key_read_public(const char *path, uint8_t pub[PUBKEY_SIZE], struct perr *err);

/* A NAME.key file; refuses one whose halves do not match (damaged). *ret_sk
 * is sodium_malloc'ed: the caller frees it with sodium_free. flags as for
 * key_read_hex (shoald passes KEYFILE_PRIVATE for its own key). */
int key_read_secret(const char *path, unsigned flags, uint8_t **ret_sk, struct perr *err);
