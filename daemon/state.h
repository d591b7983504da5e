/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* shoald's persistent state in SQLite (WAL): releases and their manifests,
 * keyrings, download progress, peers and bans, and the floors (release
 * counter, keyring version, time) that protect against rollback. Floors
 * are written with synchronous=FULL before they are acted on; progress is
 * written in batches after the data it records reached the disk. SQLite's
 * result codes are converted to negative errno here, where they enter. */
#pragma once

#include <sqlite3.h>

#include "manifest.h"

#define STATE_SCHEMA_VERSION 1

struct state;

/* Opens (creating, migrating) DIR/shoal.db. */
int state_open(const char *dir, struct state **ret, struct perr *err);
void state_close(struct state *st);
static inline void state_closep(struct state **st)
{
	state_close(*st);
}

enum release_state {
	REL_FETCHING = 0, /* accepted, chunks being fetched */
	REL_COMPLETE = 1, /* every chunk held and verified */
	REL_SEEDING = 2,  /* imported on a gateway */
	REL_REFUSED = 3,  /* never again (rolled back, failed verification) */
};

struct state_release {
	uint8_t id[HASH_SIZE];
	char product[MANIFEST_PRODUCT_MAX + 1];
	char version[MANIFEST_VERSION_MAX + 1];
	uint64_t counter;
	enum release_state st;
	uint8_t *manifest; /* malloc'ed, caller frees (state_release_get only) */
	size_t manifest_len;
};

/* Adds a release (or updates its state when it is there). */
int state_release_put(struct state *st, const uint8_t id[HASH_SIZE], const struct manifest *m,
		      const uint8_t *bytes, size_t len, enum release_state s);
int state_release_set_state(struct state *st, const uint8_t id[HASH_SIZE], enum release_state s);
/* -ENOENT when unknown. */
int state_release_get(struct state *st, const uint8_t id[HASH_SIZE], struct state_release *ret);
/* Calls cb for every release, newest counter first; a negative return stops. */
int state_release_foreach(struct state *st, int (*cb)(void *ud, const struct state_release *r), void *ud);

/* Download progress: chunk indexes of a release that are written and
 * synced. add records a batch in one transaction. */
int state_have_add(struct state *st, const uint8_t id[HASH_SIZE], const uint32_t *idx, size_t n);
int state_have_foreach(struct state *st, const uint8_t id[HASH_SIZE], int (*cb)(void *ud, uint32_t idx), void *ud);
int state_have_clear(struct state *st, const uint8_t id[HASH_SIZE]);

/* Floors: "counter", "keyring", "time". A missing floor reads as 0. */
int state_floor_get(struct state *st, const char *name, uint64_t *ret);
/* Raises a floor (never lowers it), durably, before returning. */
int state_floor_raise(struct state *st, const char *name, uint64_t value);

/* The newest keyring accepted (bytes malloc'ed); -ENOENT when none. */
int state_keyring_put(struct state *st, uint64_t version, const uint8_t *bytes, size_t len);
int state_keyring_get(struct state *st, uint8_t **ret, size_t *ret_len);

/* Bans survive restarts: a peer that sent a bad chunk stays banned. */
int state_ban_put(struct state *st, const uint8_t device[PUBKEY_SIZE], uint64_t until_s, const char *reason);
/* The ban's end, or 0. */
uint64_t state_ban_until(struct state *st, const uint8_t device[PUBKEY_SIZE]);

/* Counters that survive restarts (bytes received by source, ...). */
int state_counter_add(struct state *st, const char *name, uint64_t delta);
uint64_t state_counter_get(struct state *st, const char *name);
