/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The device's own Ed25519 key (made at first start, kept in the state
 * directory) and the fleet secret. Both live in sodium_malloc'ed memory. */
#pragma once

#include "sig.h"

#define FLEET_KEY_SIZE 32u

/* Loads STATE_DIR/device.key, creating it (mode 0600) when missing. *ret_sk
 * is sodium_malloc'ed (free with sodium_free). */
int device_key_load(const char *state_dir, uint8_t **ret_sk, uint8_t pub[PUBKEY_SIZE], struct perr *err);

/* Reads a fleet secret file: 64 hex digits (one line). Refuses a file that
 * others can read. *ret is sodium_malloc'ed. */
int fleet_key_load(const char *path, uint8_t **ret, struct perr *err);
