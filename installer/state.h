/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The device's persistent state in SQLite (WAL), one database
 * (STATE_DIR/shoal.db) shared by shoald and `shoal install`: releases and
 * their manifests, keyrings, download progress, peers and bans, the floors
 * (release counter, keyring version, time) that protect against rollback,
 * and the installer's state (the pending install and its phase, what each
 * slot holds, releases refused for good, an event history). Floors
 * are written with synchronous=FULL before they are acted on; progress is
 * written in batches after the data it records reached the disk. SQLite's
 * result codes are converted to negative errno here, where they enter. */
#pragma once

#include <sqlite3.h>

#include "manifest.h"

#define STATE_SCHEMA_VERSION 3

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
	REL_REPLACED = 4, /* was in a plain target, until a newer release took its place */
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

/* Bans survive restarts: a peer that sent a bad chunk stays banned.
 * address is where it was connected from ("IP:PORT"; NULL: unknown). */
int state_ban_put(struct state *st, const uint8_t device[PUBKEY_SIZE], uint64_t until_s, const char *reason,
		  const char *address);

struct state_ban {
	uint8_t device[PUBKEY_SIZE];
	uint64_t until_s;    /* ended when in the past: the row is kept */
	uint64_t since_s;    /* when it was (last) banned; 0 for bans older than schema 4 */
	const char *reason;  /* valid during the callback only */
	const char *address; /* "" when unknown */
};
/* Calls cb for every ban ever made (ended ones too), oldest first; a
 * negative return stops and is returned. */
int state_ban_foreach(struct state *st, int (*cb)(void *ud, const struct state_ban *b), void *ud);
/* The ban's end, or 0. */
uint64_t state_ban_until(struct state *st, const uint8_t device[PUBKEY_SIZE]);

/* Counters that survive restarts (bytes received by source, ...). */
int state_counter_add(struct state *st, const char *name, uint64_t delta);
uint64_t state_counter_get(struct state *st, const char *name);

/* ---- installer state (schema 2) ---- */

#define STATE_PHASE_MAX 32
#define STATE_DETAIL_MAX 512

/* The one install in progress. Written with synchronous=FULL at every
 * phase change, before the phase's work starts. */
struct state_install {
	uint8_t release[HASH_SIZE];
	char version[MANIFEST_VERSION_MAX + 1];
	uint64_t counter;
	int slot;                        /* target slot index (0 or 1) */
	char phase[STATE_PHASE_MAX];
	char source[1024];               /* release directory or bundle it came from */
	char boot_id[64];                /* the boot that set the trial ("" before) */
	uint8_t *manifest;               /* malloc'ed by state_install_get, caller frees */
	size_t manifest_len;
	uint64_t started, updated;       /* unix seconds */
};

/* -ENOENT when no install is pending. */
int state_install_get(struct state *st, struct state_install *ret);
/* Starts (replaces) the pending install, durably. */
int state_install_begin(struct state *st, const struct state_install *in);
/* Moves the pending install to phase (and records boot_id when not NULL),
 * durably, with an event. -ENOENT when none is pending. */
int state_install_set_phase(struct state *st, const char *phase, const char *boot_id);
/* Ends the pending install, durably, recording result ("committed",
 * "rolled-back", "abandoned", ...) and detail as its last event. */
int state_install_end(struct state *st, const char *result, const char *detail);

/* What a slot holds. state is "empty", "writing", "installed", "trial",
 * "good" or "bad". */
struct state_slot {
	int slot;
	char state[16];
	bool has_release;
	uint8_t release[HASH_SIZE];
	char version[MANIFEST_VERSION_MAX + 1];
	uint64_t counter;
	uint8_t *manifest; /* malloc'ed by state_slot_get (NULL when none), caller frees */
	size_t manifest_len;
	uint64_t updated;
};

/* Sets a slot's record durably. id/m/bytes NULL: the slot holds no known
 * release (it is being written, or was never written by shoal). */
int state_slot_set(struct state *st, int slot, const char *state, const uint8_t *id, const struct manifest *m,
		   const uint8_t *bytes, size_t len);
/* Changes only the state word; -ENOENT when the slot has no record. */
int state_slot_set_state(struct state *st, int slot, const char *state);
/* -ENOENT when the slot has no record. */
int state_slot_get(struct state *st, int slot, struct state_slot *ret);

/* What the refused list is keyed on: the hash of m's signed body, so that
 * the same release with a signature added or dropped (a new manifest id)
 * stays refused. id (the whole manifest's hash) when m is NULL. */
void state_refusal_key(const struct manifest *m, const uint8_t id[HASH_SIZE], uint8_t key[HASH_SIZE]);
/* Refuses a release from then on (rolled back, fell back), durably: id is
 * its manifest's hash, m the parsed manifest (NULL: keyed on id). */
int state_refuse(struct state *st, const uint8_t id[HASH_SIZE], const struct manifest *m, const char *version,
		 uint64_t counter, const char *reason);
/* 1 when refused (reason copied into buf), 0 when not, or a negative errno.
 * With m: by its signed body (and by id, as rows older than that were
 * keyed); without (a peer's advert, no manifest yet): by id only (refusals
 * are recorded under both), so the manifest must be checked again once it
 * arrives. */
int state_refused(struct state *st, const uint8_t id[HASH_SIZE], const struct manifest *m, char *reason, size_t size);

/* The install history, newest first; at most limit events. */
struct state_event {
	uint64_t seq, at;
	bool has_release;
	uint8_t release[HASH_SIZE];
	char version[MANIFEST_VERSION_MAX + 1];
	int slot;
	char phase[STATE_PHASE_MAX];
	char result[32];
	char detail[STATE_DETAIL_MAX];
};
int state_event_add(struct state *st, const uint8_t *release, const char *version, int slot, const char *phase,
		    const char *result, const char *detail);
int state_event_foreach(struct state *st, size_t limit, int (*cb)(void *ud, const struct state_event *e), void *ud);

/* ---- a gateway's fleet (schema 3) ---- */

/* The connection, for daemon/fleet.c, which keeps its own statements on
 * the tables of schema 3 (devices, device_reports, campaigns,
 * campaign_targets); and the one conversion of SQLite's codes. */
sqlite3 *state_db(struct state *st);
int state_errno(int rc);

/* PRAGMA quick_check: 0 when the database is sound, -EUCLEAN (err says
 * what SQLite found) when not. */
int state_quick_check(struct state *st, struct perr *err);
