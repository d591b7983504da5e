/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <limits.h>
#include <stdio.h>
#include <sodium.h>
#include <sys/stat.h>

#include "state.h"

struct state {
	sqlite3 *db;
};

/* Converts an SQLite result where it enters our code. */
static int sql_errno(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_ROW:
	case SQLITE_DONE:
		return 0;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EBUSY;
	case SQLITE_READONLY:
	case SQLITE_PERM:
	case SQLITE_AUTH:
		return -EACCES;
	case SQLITE_CANTOPEN:
		return -ENOENT;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return -EUCLEAN;
	case SQLITE_CONSTRAINT:
		return -EEXIST;
	default:
		return -EIO;
	}
}

/* Each step of a migration takes the schema from version i to i+1. Never
 * edit a step that has shipped: add one. */
static const char *const migrations[] = {
	/* 0 -> 1 */
	"CREATE TABLE releases ("
	"  id BLOB PRIMARY KEY, product TEXT NOT NULL, version TEXT NOT NULL,"
	"  counter INTEGER NOT NULL, state INTEGER NOT NULL, manifest BLOB NOT NULL,"
	"  added INTEGER NOT NULL DEFAULT (strftime('%s','now')));"
	"CREATE TABLE have (release BLOB NOT NULL, idx INTEGER NOT NULL, PRIMARY KEY (release, idx)) WITHOUT ROWID;"
	"CREATE TABLE floors (name TEXT PRIMARY KEY, value INTEGER NOT NULL);"
	"CREATE TABLE keyrings (version INTEGER PRIMARY KEY, bytes BLOB NOT NULL);"
	"CREATE TABLE bans (device BLOB PRIMARY KEY, until INTEGER NOT NULL, reason TEXT NOT NULL);"
	"CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);",
	/* 1 -> 2: the installer's state, shared by shoald and `shoal install` */
	"CREATE TABLE install ("
	"  id INTEGER PRIMARY KEY CHECK (id = 1), release BLOB NOT NULL, version TEXT NOT NULL,"
	"  counter INTEGER NOT NULL, slot INTEGER NOT NULL, phase TEXT NOT NULL, source TEXT NOT NULL,"
	"  boot_id TEXT NOT NULL DEFAULT '', manifest BLOB NOT NULL,"
	"  started INTEGER NOT NULL DEFAULT (strftime('%s','now')),"
	"  updated INTEGER NOT NULL DEFAULT (strftime('%s','now')));"
	"CREATE TABLE slots ("
	"  slot INTEGER PRIMARY KEY, state TEXT NOT NULL, release BLOB, version TEXT NOT NULL DEFAULT '',"
	"  counter INTEGER NOT NULL DEFAULT 0, manifest BLOB,"
	"  updated INTEGER NOT NULL DEFAULT (strftime('%s','now')));"
	"CREATE TABLE refused ("
	"  release BLOB PRIMARY KEY, version TEXT NOT NULL, counter INTEGER NOT NULL, reason TEXT NOT NULL,"
	"  at INTEGER NOT NULL DEFAULT (strftime('%s','now')));"
	"CREATE TABLE install_events ("
	"  seq INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL DEFAULT (strftime('%s','now')),"
	"  release BLOB, version TEXT NOT NULL DEFAULT '', slot INTEGER NOT NULL DEFAULT -1,"
	"  phase TEXT NOT NULL, result TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '');",
	/* 2 -> 3: a gateway's fleet (daemon/fleet.c): the latest REPORT of each
	 * device and a bounded history (payloads as they came off the wire),
	 * campaigns and where each of their devices stands */
	"CREATE TABLE devices ("
	"  id BLOB PRIMARY KEY, name TEXT NOT NULL, report BLOB NOT NULL,"
	"  first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL);"
	"CREATE TABLE device_reports ("
	"  seq INTEGER PRIMARY KEY AUTOINCREMENT, device BLOB NOT NULL, at INTEGER NOT NULL, report BLOB NOT NULL);"
	"CREATE INDEX device_reports_by_device ON device_reports (device, seq);"
	"CREATE TABLE campaigns ("
	"  id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, release BLOB NOT NULL,"
	"  version TEXT NOT NULL, counter INTEGER NOT NULL, selector TEXT NOT NULL,"
	"  canary_count INTEGER NOT NULL, canary_percent INTEGER NOT NULL, max_parallel INTEGER NOT NULL,"
	"  failure_threshold INTEGER NOT NULL, windows TEXT NOT NULL, state INTEGER NOT NULL,"
	"  canary_n INTEGER NOT NULL, failures INTEGER NOT NULL, reason TEXT NOT NULL,"
	"  created INTEGER NOT NULL DEFAULT (strftime('%s','now')));"
	"CREATE TABLE campaign_targets ("
	"  campaign INTEGER NOT NULL, device BLOB NOT NULL, phase INTEGER NOT NULL, state INTEGER NOT NULL,"
	"  since INTEGER NOT NULL, PRIMARY KEY (campaign, device)) WITHOUT ROWID;",
	/* 3 -> 4: where a banned peer was and when it was banned, for
	 * `shoal status` and `shoal peers` */
	"ALTER TABLE bans ADD COLUMN address TEXT NOT NULL DEFAULT '';"
	"ALTER TABLE bans ADD COLUMN since INTEGER NOT NULL DEFAULT 0;",
};

sqlite3 *state_db(struct state *st)
{
	return st->db;
}

int state_errno(int rc)
{
	return sql_errno(rc);
}

static int exec(struct state *st, const char *sql)
{
	return sql_errno(sqlite3_exec(st->db, sql, NULL, NULL, NULL));
}

static int migrate(struct state *st, struct perr *err)
{
	sqlite3_stmt *s;
	int version, k;

	if (sqlite3_prepare_v2(st->db, "PRAGMA user_version", -1, &s, NULL) != SQLITE_OK)
		return perr_set(err, -EIO, "state: %s", sqlite3_errmsg(st->db));
	sqlite3_step(s);
	version = sqlite3_column_int(s, 0);
	sqlite3_finalize(s);
	if (version > (int)ELEMENTSOF(migrations))
		return perr_set(err, -EPROTONOSUPPORT,
				"state: database schema %d is newer than this shoald understands (%zu); refusing to touch it",
				version, ELEMENTSOF(migrations));
	for (; version < (int)ELEMENTSOF(migrations); version++) {
		char pragma[64];

		snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d;", version + 1);
		if ((k = exec(st, "BEGIN IMMEDIATE")) < 0 || (k = exec(st, migrations[version])) < 0 ||
		    (k = exec(st, pragma)) < 0 || (k = exec(st, "COMMIT")) < 0) {
			perr_set(err, k, "state: migrating the schema to version %d failed: %s", version + 1,
				 sqlite3_errmsg(st->db));
			exec(st, "ROLLBACK");
			return k;
		}
	}
	return 0;
}

int state_open(const char *dir, struct state **ret, struct perr *err)
{
	char path[PATH_MAX];
	struct state *st;
	int rc, k;

	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return perr_set(err, -errno, "%s: %s", dir, strerror(errno));
	if (snprintf(path, sizeof(path), "%s/shoal.db", dir) >= (int)sizeof(path))
		return perr_set(err, -ENAMETOOLONG, "%s: path too long", dir);
	st = calloc(1, sizeof(*st));
	if (!st)
		return perr_set(err, -ENOMEM, "out of memory");
	rc = sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		k = perr_set(err, sql_errno(rc), "%s: %s", path, st->db ? sqlite3_errmsg(st->db) : "cannot open");
		state_close(st);
		return k;
	}
	sqlite3_busy_timeout(st->db, 5000);
	/* WAL: readers do not block the writer. NORMAL is durable at
	 * checkpoints; the writes that must be durable at once (floors,
	 * install state) switch to FULL for their transaction. */
	if ((k = exec(st, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;")) < 0 ||
	    (k = migrate(st, err)) < 0) {
		if (!err || !err->msg[0])
			perr_set(err, k, "%s: %s", path, sqlite3_errmsg(st->db));
		state_close(st);
		return k;
	}
	*ret = st;
	return 0;
}

void state_close(struct state *st)
{
	if (!st)
		return;
	sqlite3_close_v2(st->db);
	free(st);
}

static int prepare(struct state *st, const char *sql, sqlite3_stmt **s)
{
	return sql_errno(sqlite3_prepare_v2(st->db, sql, -1, s, NULL));
}

/* Steps a statement that returns no rows and finalizes it. */
static int run(sqlite3_stmt *s)
{
	int rc = sqlite3_step(s);

	sqlite3_finalize(s);
	return rc == SQLITE_DONE ? 0 : sql_errno(rc);
}

int state_release_put(struct state *st, const uint8_t id[HASH_SIZE], const struct manifest *m,
		      const uint8_t *bytes, size_t len, enum release_state rs)
{
	sqlite3_stmt *s;
	int k;

	if ((k = prepare(st, "INSERT INTO releases (id, product, version, counter, state, manifest) "
			     "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET state = excluded.state", &s)) < 0)
		return k;
	sqlite3_bind_blob(s, 1, id, HASH_SIZE, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, m->product, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, m->version, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 4, (sqlite3_int64)m->counter);
	sqlite3_bind_int(s, 5, (int)rs);
	sqlite3_bind_blob64(s, 6, bytes, len, SQLITE_STATIC);
	return run(s);
}

int state_release_set_state(struct state *st, const uint8_t id[HASH_SIZE], enum release_state rs)
{
	sqlite3_stmt *s;
	int k;

	if ((k = prepare(st, "UPDATE releases SET state = ? WHERE id = ?", &s)) < 0)
		return k;
	sqlite3_bind_int(s, 1, (int)rs);
	sqlite3_bind_blob(s, 2, id, HASH_SIZE, SQLITE_STATIC);
	if ((k = run(s)) < 0)
		return k;
	return sqlite3_changes(st->db) ? 0 : -ENOENT;
}

static void row_to_release(sqlite3_stmt *s, struct state_release *r, bool with_manifest)
{
	const void *id = sqlite3_column_blob(s, 0);

	memset(r, 0, sizeof(*r));
	if (id && sqlite3_column_bytes(s, 0) == HASH_SIZE)
		memcpy(r->id, id, HASH_SIZE);
	snprintf(r->product, sizeof(r->product), "%s", (const char *)sqlite3_column_text(s, 1));
	snprintf(r->version, sizeof(r->version), "%s", (const char *)sqlite3_column_text(s, 2));
	r->counter = (uint64_t)sqlite3_column_int64(s, 3);
	r->st = (enum release_state)sqlite3_column_int(s, 4);
	if (with_manifest) {
		size_t n = (size_t)sqlite3_column_bytes(s, 5);

		r->manifest = malloc(n ? n : 1);
		if (r->manifest) {
			memcpy(r->manifest, sqlite3_column_blob(s, 5), n);
			r->manifest_len = n;
		}
	}
}

int state_release_get(struct state *st, const uint8_t id[HASH_SIZE], struct state_release *ret)
{
	sqlite3_stmt *s;
	int rc, k;

	if ((k = prepare(st, "SELECT id, product, version, counter, state, manifest FROM releases WHERE id = ?", &s)) < 0)
		return k;
	sqlite3_bind_blob(s, 1, id, HASH_SIZE, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		row_to_release(s, ret, true);
		k = ret->manifest ? 0 : -ENOMEM;
	} else {
		k = rc == SQLITE_DONE ? -ENOENT : sql_errno(rc);
	}
	sqlite3_finalize(s);
	return k;
}

int state_release_foreach(struct state *st, int (*cb)(void *ud, const struct state_release *r), void *ud)
{
	sqlite3_stmt *s;
	int rc, k;

	if ((k = prepare(st, "SELECT id, product, version, counter, state FROM releases ORDER BY counter DESC", &s)) < 0)
		return k;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct state_release r;

		row_to_release(s, &r, false);
		if ((k = cb(ud, &r)) < 0)
			break;
	}
	if (rc != SQLITE_ROW)
		k = sql_errno(rc);
	sqlite3_finalize(s);
	return k;
}

int state_have_add(struct state *st, const uint8_t id[HASH_SIZE], const uint32_t *idx, size_t n)
{
	sqlite3_stmt *s;
	int k;

	if (n == 0)
		return 0;
	if ((k = exec(st, "BEGIN")) < 0)
		return k;
	if ((k = prepare(st, "INSERT OR IGNORE INTO have (release, idx) VALUES (?, ?)", &s)) < 0)
		goto fail;
	sqlite3_bind_blob(s, 1, id, HASH_SIZE, SQLITE_STATIC);
	for (size_t i = 0; i < n; i++) {
		sqlite3_bind_int64(s, 2, idx[i]);
		if (sqlite3_step(s) != SQLITE_DONE) {
			k = sql_errno(sqlite3_errcode(st->db));
			sqlite3_finalize(s);
			goto fail;
		}
		sqlite3_reset(s);
	}
	sqlite3_finalize(s);
	if ((k = exec(st, "COMMIT")) < 0)
		goto fail;
	return 0;
fail:
	exec(st, "ROLLBACK");
	return k < 0 ? k : -EIO;
}

int state_have_foreach(struct state *st, const uint8_t id[HASH_SIZE], int (*cb)(void *ud, uint32_t idx), void *ud)
{
	sqlite3_stmt *s;
	int rc, k;

	if ((k = prepare(st, "SELECT idx FROM have WHERE release = ?", &s)) < 0)
		return k;
	sqlite3_bind_blob(s, 1, id, HASH_SIZE, SQLITE_STATIC);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		if ((k = cb(ud, (uint32_t)sqlite3_column_int64(s, 0))) < 0)
			break;
	if (rc != SQLITE_ROW)
		k = sql_errno(rc);
	sqlite3_finalize(s);
	return k;
}

int state_have_clear(struct state *st, const uint8_t id[HASH_SIZE])
{
	sqlite3_stmt *s;
	int k;

	if ((k = prepare(st, "DELETE FROM have WHERE release = ?", &s)) < 0)
		return k;
	sqlite3_bind_blob(s, 1, id, HASH_SIZE, SQLITE_STATIC);
	return run(s);
}

int state_floor_get(struct state *st, const char *name, uint64_t *ret)
{
	sqlite3_stmt *s;
	int rc, k;

	if ((k = prepare(st, "SELECT value FROM floors WHERE name = ?", &s)) < 0)
		return k;
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	*ret = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(s, 0) : 0;
	sqlite3_finalize(s);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : sql_errno(rc);
}

/* Every statement from here to durable_end is written with
 * synchronous=FULL: on disk when the COMMIT returns. */
static int durable_begin(struct state *st)
{
	int k;

	if ((k = exec(st, "PRAGMA synchronous=FULL")) < 0)
		return k;
	if ((k = exec(st, "BEGIN IMMEDIATE")) < 0)
		exec(st, "PRAGMA synchronous=NORMAL");
	return k;
}

static int durable_end(struct state *st, int k)
{
	int k2;

	if (k >= 0)
		k = exec(st, "COMMIT");
	if (k < 0)
		exec(st, "ROLLBACK");
	k2 = exec(st, "PRAGMA synchronous=NORMAL");
	return k < 0 ? k : k2;
}

static int floor_raise(struct state *st, const char *name, uint64_t value)
{
	sqlite3_stmt *s;
	int k;

	if ((k = prepare(st, "INSERT INTO floors (name, value) VALUES (?, ?) "
			     "ON CONFLICT(name) DO UPDATE SET value = max(value, excluded.value)", &s)) < 0)
		return k;
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)value);
	return run(s);
}

int state_floor_raise(struct state *st, const char *name, uint64_t value)
{
	int k;

	/* durable before the caller acts on the new floor */
	if ((k = durable_begin(st)) < 0)
		return k;
	return durable_end(st, floor_raise(st, name, value));
}

int state_keyring_put(struct state *st, uint64_t version, const uint8_t *bytes, size_t len)
{
	sqlite3_stmt *s;
	int k;

	if ((k = prepare(st, "INSERT OR REPLACE INTO keyrings (version, bytes) VALUES (?, ?)", &s)) < 0)
		return k;
	sqlite3_bind_int64(s, 1, (sqlite3_int64)version);
	sqlite3_bind_blob64(s, 2, bytes, len, SQLITE_STATIC);
	return run(s);
}

int state_keyring_get(struct state *st, uint8_t **ret, size_t *ret_len)
{
	sqlite3_stmt *s;
	int rc, k;

	if ((k = prepare(st, "SELECT bytes FROM keyrings ORDER BY version DESC LIMIT 1", &s)) < 0)
		return k;
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		size_t n = (size_t)sqlite3_column_bytes(s, 0);
		uint8_t *p = malloc(n ? n : 1);

		if (p) {
			memcpy(p, sqlite3_column_blob(s, 0), n);
			*ret = p;
			*ret_len = n;
			k = 0;
		} else {
			k = -ENOMEM;
		}
	} else {
		k = rc == SQLITE_DONE ? -ENOENT : sql_errno(rc);
	}
	sqlite3_finalize(s);
	return k;
}

int state_ban_put(struct state *st, const uint8_t device[PUBKEY_SIZE], uint64_t until_s, const char *reason,
		  const char *address)
{
	sqlite3_stmt *s;
	int k;

	if ((k = prepare(st, "INSERT OR REPLACE INTO bans (device, until, reason, address, since) "
			     "VALUES (?, ?, ?, ?, strftime('%s','now'))", &s)) < 0)
		return k;
	sqlite3_bind_blob(s, 1, device, PUBKEY_SIZE, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)until_s);
	sqlite3_bind_text(s, 3, reason, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 4, address ? address : "", -1, SQLITE_STATIC);
	return run(s);
}

int state_ban_foreach(struct state *st, int (*cb)(void *ud, const struct state_ban *b), void *ud)
{
	sqlite3_stmt *s;
	int rc, k = 0;

	if ((k = prepare(st, "SELECT device, until, reason, address, since FROM bans ORDER BY since, device", &s)) < 0)
		return k;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct state_ban b = { .until_s = (uint64_t)sqlite3_column_int64(s, 1),
				       .reason = (const char *)sqlite3_column_text(s, 2),
				       .address = (const char *)sqlite3_column_text(s, 3),
				       .since_s = (uint64_t)sqlite3_column_int64(s, 4) };

		if (sqlite3_column_bytes(s, 0) != PUBKEY_SIZE)
			continue; /* not ours: skip rather than read past it */
		memcpy(b.device, sqlite3_column_blob(s, 0), PUBKEY_SIZE);
		if (!b.reason)
			b.reason = "";
		if (!b.address)
			b.address = "";
		if ((k = cb(ud, &b)) < 0)
			break;
	}
	if (rc != SQLITE_ROW)
		k = sql_errno(rc);
	sqlite3_finalize(s);
	return k;
}

uint64_t state_ban_until(struct state *st, const uint8_t device[PUBKEY_SIZE])
{
	sqlite3_stmt *s;
	uint64_t v = 0;

	if (prepare(st, "SELECT until FROM bans WHERE device = ?", &s) < 0)
		return 0;
	sqlite3_bind_blob(s, 1, device, PUBKEY_SIZE, SQLITE_STATIC);
	if (sqlite3_step(s) == SQLITE_ROW)
		v = (uint64_t)sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return v;
}

int state_counter_add(struct state *st, const char *name, uint64_t delta)
{
	sqlite3_stmt *s;
	int k;

	if ((k = prepare(st, "INSERT INTO counters (name, value) VALUES (?, ?) "
			     "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value", &s)) < 0)
		return k;
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)delta);
	return run(s);
}

uint64_t state_counter_get(struct state *st, const char *name)
{
	sqlite3_stmt *s;
	uint64_t v = 0;

	if (prepare(st, "SELECT value FROM counters WHERE name = ?", &s) < 0)
		return 0;
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	if (sqlite3_step(s) == SQLITE_ROW)
		v = (uint64_t)sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return v;
}

/* ---- installer state ---- */

static void copy_text(char *dst, size_t size, sqlite3_stmt *s, int col)
{
	const unsigned char *t = sqlite3_column_text(s, col);

	snprintf(dst, size, "%s", t ? (const char *)t : "");
}

static bool copy_id(uint8_t dst[HASH_SIZE], sqlite3_stmt *s, int col)
{
	const void *p = sqlite3_column_blob(s, col);

	if (!p || sqlite3_column_bytes(s, col) != HASH_SIZE)
		return false;
	memcpy(dst, p, HASH_SIZE);
	return true;
}

static int copy_blob(uint8_t **dst, size_t *len, sqlite3_stmt *s, int col)
{
	size_t n = (size_t)sqlite3_column_bytes(s, col);
	const void *p = sqlite3_column_blob(s, col);

	*dst = NULL;
	*len = 0;
	if (!p)
		return 0;
	if (!(*dst = malloc(n ? n : 1)))
		return -ENOMEM;
	memcpy(*dst, p, n);
	*len = n;
	return 0;
}

int state_install_get(struct state *st, struct state_install *ret)
{
	sqlite3_stmt *s;
	int rc, k;

	if ((k = prepare(st, "SELECT release, version, counter, slot, phase, source, boot_id, manifest, started, updated "
			     "FROM install WHERE id = 1", &s)) < 0)
		return k;
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		memset(ret, 0, sizeof(*ret));
		copy_id(ret->release, s, 0);
		copy_text(ret->version, sizeof(ret->version), s, 1);
		ret->counter = (uint64_t)sqlite3_column_int64(s, 2);
		ret->slot = sqlite3_column_int(s, 3);
		copy_text(ret->phase, sizeof(ret->phase), s, 4);
		copy_text(ret->source, sizeof(ret->source), s, 5);
		copy_text(ret->boot_id, sizeof(ret->boot_id), s, 6);
		k = copy_blob(&ret->manifest, &ret->manifest_len, s, 7);
		ret->started = (uint64_t)sqlite3_column_int64(s, 8);
		ret->updated = (uint64_t)sqlite3_column_int64(s, 9);
	} else {
		k = rc == SQLITE_DONE ? -ENOENT : sql_errno(rc);
	}
	sqlite3_finalize(s);
	return k;
}

static int event_add(struct state *st, const uint8_t *release, const char *version, int slot, const char *phase,
		     const char *result, const char *detail)
{
	sqlite3_stmt *s;
	int k;

	if ((k = prepare(st, "INSERT INTO install_events (release, version, slot, phase, result, detail) "
			     "VALUES (?, ?, ?, ?, ?, ?)", &s)) < 0)
		return k;
	if (release)
		sqlite3_bind_blob(s, 1, release, HASH_SIZE, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, version ? version : "", -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 3, slot);
	sqlite3_bind_text(s, 4, phase, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 5, result, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 6, detail ? detail : "", -1, SQLITE_STATIC);
	return run(s);
}

int state_event_add(struct state *st, const uint8_t *release, const char *version, int slot, const char *phase,
		    const char *result, const char *detail)
{
	return event_add(st, release, version, slot, phase, result, detail);
}

static int install_begin(struct state *st, const struct state_install *in)
{
	sqlite3_stmt *s;
	int k;

	if ((k = prepare(st, "INSERT OR REPLACE INTO install (id, release, version, counter, slot, phase, source, "
			     "boot_id, manifest) VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?)", &s)) < 0)
		return k;
	sqlite3_bind_blob(s, 1, in->release, HASH_SIZE, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, in->version, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, (sqlite3_int64)in->counter);
	sqlite3_bind_int(s, 4, in->slot);
	sqlite3_bind_text(s, 5, in->phase, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 6, in->source, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 7, in->boot_id, -1, SQLITE_STATIC);
	sqlite3_bind_blob64(s, 8, in->manifest, in->manifest_len, SQLITE_STATIC);
	if ((k = run(s)) < 0)
		return k;
	return event_add(st, in->release, in->version, in->slot, in->phase, "started", in->source);
}

int state_install_begin(struct state *st, const struct state_install *in)
{
	int k;

	if ((k = durable_begin(st)) < 0)
		return k;
	return durable_end(st, install_begin(st, in));
}

static int install_set_phase(struct state *st, const char *phase, const char *boot_id)
{
	sqlite3_stmt *s;
	int k;

	if ((k = prepare(st, "UPDATE install SET phase = ?, boot_id = coalesce(?, boot_id), "
			     "updated = strftime('%s','now') WHERE id = 1", &s)) < 0)
		return k;
	sqlite3_bind_text(s, 1, phase, -1, SQLITE_STATIC);
	if (boot_id)
		sqlite3_bind_text(s, 2, boot_id, -1, SQLITE_STATIC);
	if ((k = run(s)) < 0)
		return k;
	if (!sqlite3_changes(st->db))
		return -ENOENT;
	return exec(st, "INSERT INTO install_events (release, version, slot, phase, result) "
			"SELECT release, version, slot, phase, 'entered' FROM install WHERE id = 1");
}

int state_install_set_phase(struct state *st, const char *phase, const char *boot_id)
{
	int k;

	if ((k = durable_begin(st)) < 0)
		return k;
	return durable_end(st, install_set_phase(st, phase, boot_id));
}

static int install_end(struct state *st, const char *result, const char *detail)
{
	sqlite3_stmt *s;
	int k;

	if ((k = prepare(st, "INSERT INTO install_events (release, version, slot, phase, result, detail) "
			     "SELECT release, version, slot, phase, ?, ? FROM install WHERE id = 1", &s)) < 0)
		return k;
	sqlite3_bind_text(s, 1, result, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, detail ? detail : "", -1, SQLITE_STATIC);
	if ((k = run(s)) < 0)
		return k;
	return exec(st, "DELETE FROM install WHERE id = 1");
}

int state_install_end(struct state *st, const char *result, const char *detail)
{
	int k;

	if ((k = durable_begin(st)) < 0)
		return k;
	return durable_end(st, install_end(st, result, detail));
}

static int slot_set(struct state *st, int slot, const char *state, const uint8_t *id, const struct manifest *m,
		    const uint8_t *bytes, size_t len)
{
	sqlite3_stmt *s;
	int k;

	if ((k = prepare(st, "INSERT OR REPLACE INTO slots (slot, state, release, version, counter, manifest) "
			     "VALUES (?, ?, ?, ?, ?, ?)", &s)) < 0)
		return k;
	sqlite3_bind_int(s, 1, slot);
	sqlite3_bind_text(s, 2, state, -1, SQLITE_STATIC);
	if (id && m) {
		sqlite3_bind_blob(s, 3, id, HASH_SIZE, SQLITE_STATIC);
		sqlite3_bind_text(s, 4, m->version, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 5, (sqlite3_int64)m->counter);
		if (bytes)
			sqlite3_bind_blob64(s, 6, bytes, len, SQLITE_STATIC);
	} else {
		sqlite3_bind_text(s, 4, "", -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 5, 0);
	}
	return run(s);
}

int state_slot_set(struct state *st, int slot, const char *state, const uint8_t *id, const struct manifest *m,
		   const uint8_t *bytes, size_t len)
{
	int k;

	if ((k = durable_begin(st)) < 0)
		return k;
	return durable_end(st, slot_set(st, slot, state, id, m, bytes, len));
}

int state_slot_set_state(struct state *st, int slot, const char *state)
{
	sqlite3_stmt *s;
	int k;

	if ((k = durable_begin(st)) < 0)
		return k;
	if ((k = prepare(st, "UPDATE slots SET state = ?, updated = strftime('%s','now') WHERE slot = ?", &s)) == 0) {
		sqlite3_bind_text(s, 1, state, -1, SQLITE_STATIC);
		sqlite3_bind_int(s, 2, slot);
		if ((k = run(s)) == 0 && !sqlite3_changes(st->db))
			k = -ENOENT;
	}
	return durable_end(st, k);
}

int state_slot_get(struct state *st, int slot, struct state_slot *ret)
{
	sqlite3_stmt *s;
	int rc, k;

	if ((k = prepare(st, "SELECT state, release, version, counter, manifest, updated FROM slots WHERE slot = ?", &s)) < 0)
		return k;
	sqlite3_bind_int(s, 1, slot);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		memset(ret, 0, sizeof(*ret));
		ret->slot = slot;
		copy_text(ret->state, sizeof(ret->state), s, 0);
		ret->has_release = copy_id(ret->release, s, 1);
		copy_text(ret->version, sizeof(ret->version), s, 2);
		ret->counter = (uint64_t)sqlite3_column_int64(s, 3);
		k = copy_blob(&ret->manifest, &ret->manifest_len, s, 4);
		ret->updated = (uint64_t)sqlite3_column_int64(s, 5);
	} else {
		k = rc == SQLITE_DONE ? -ENOENT : sql_errno(rc);
	}
	sqlite3_finalize(s);
	return k;
}

void state_refusal_key(const struct manifest *m, const uint8_t id[HASH_SIZE], uint8_t key[HASH_SIZE])
{
	if (m && m->signed_bytes)
		crypto_generichash(key, HASH_SIZE, m->signed_bytes, m->signed_len, NULL, 0);
	else
		memcpy(key, id, HASH_SIZE);
}

int state_refuse(struct state *st, const uint8_t id[HASH_SIZE], const struct manifest *m, const char *version,
		 uint64_t counter, const char *reason)
{
	uint8_t key[HASH_SIZE];
	sqlite3_stmt *s;
	int k;

	state_refusal_key(m, id, key);
	if ((k = durable_begin(st)) < 0)
		return k;
	/* by the signed body (the same release signed again is refused too),
	 * and by the id peers advertise it under, so that a device does not
	 * even fetch the manifest of a release it refused */
	for (int i = 0; i < 2 && k == 0; i++) {
		const uint8_t *row = i ? id : key;

		if (i && !memcmp(key, id, HASH_SIZE))
			break;
		if ((k = prepare(st, "INSERT OR IGNORE INTO refused (release, version, counter, reason) "
				     "VALUES (?, ?, ?, ?)", &s)) < 0)
			break;
		sqlite3_bind_blob(s, 1, row, HASH_SIZE, SQLITE_STATIC);
		sqlite3_bind_text(s, 2, version, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 3, (sqlite3_int64)counter);
		sqlite3_bind_text(s, 4, reason, -1, SQLITE_STATIC);
		k = run(s);
	}
	/* the swarm must not fetch it again either */
	if (k == 0 && (k = prepare(st, "UPDATE releases SET state = ? WHERE id = ?", &s)) == 0) {
		sqlite3_bind_int(s, 1, REL_REFUSED);
		sqlite3_bind_blob(s, 2, id, HASH_SIZE, SQLITE_STATIC);
		k = run(s);
	}
	return durable_end(st, k);
}

static int refused_row(struct state *st, const uint8_t key[HASH_SIZE], char *reason, size_t size)
{
	sqlite3_stmt *s;
	int rc, k;

	if ((k = prepare(st, "SELECT reason, at FROM refused WHERE release = ?", &s)) < 0)
		return k;
	sqlite3_bind_blob(s, 1, key, HASH_SIZE, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		if (reason && size)
			copy_text(reason, size, s, 0);
		k = 1;
	} else {
		k = rc == SQLITE_DONE ? 0 : sql_errno(rc);
	}
	sqlite3_finalize(s);
	return k;
}

int state_refused(struct state *st, const uint8_t id[HASH_SIZE], const struct manifest *m, char *reason, size_t size)
{
	uint8_t key[HASH_SIZE];
	int k;

	state_refusal_key(m, id, key);
	if ((k = refused_row(st, key, reason, size)) != 0 || !m)
		return k;
	return refused_row(st, id, reason, size); /* a row from before the refused list was keyed on the body */
}

int state_event_foreach(struct state *st, size_t limit, int (*cb)(void *ud, const struct state_event *e), void *ud)
{
	sqlite3_stmt *s;
	int rc, k;

	if ((k = prepare(st, "SELECT seq, at, release, version, slot, phase, result, detail FROM install_events "
			     "ORDER BY seq DESC LIMIT ?", &s)) < 0)
		return k;
	sqlite3_bind_int64(s, 1, (sqlite3_int64)limit);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct state_event e = { 0 };

		e.seq = (uint64_t)sqlite3_column_int64(s, 0);
		e.at = (uint64_t)sqlite3_column_int64(s, 1);
		e.has_release = copy_id(e.release, s, 2);
		copy_text(e.version, sizeof(e.version), s, 3);
		e.slot = sqlite3_column_int(s, 4);
		copy_text(e.phase, sizeof(e.phase), s, 5);
		copy_text(e.result, sizeof(e.result), s, 6);
		copy_text(e.detail, sizeof(e.detail), s, 7);
		if ((k = cb(ud, &e)) < 0)
			break;
	}
	if (rc != SQLITE_ROW)
		k = sql_errno(rc);
	sqlite3_finalize(s);
	return k;
}

int state_quick_check(struct state *st, struct perr *err)
{
	sqlite3_stmt *s;
	int rc, k;

	if ((k = prepare(st, "PRAGMA quick_check", &s)) < 0)
		return perr_set(err, k, "state: %s", sqlite3_errmsg(st->db));
	rc = sqlite3_step(s);
	if (rc != SQLITE_ROW) {
		k = perr_set(err, sql_errno(rc) ? sql_errno(rc) : -EIO, "state: quick_check: %s", sqlite3_errmsg(st->db));
	} else {
		const unsigned char *t = sqlite3_column_text(s, 0);

		k = t && !strcmp((const char *)t, "ok") ? 0
			: perr_set(err, -EUCLEAN, "state: quick_check says: %s", t ? (const char *)t : "?");
	}
	sqlite3_finalize(s);
	return k;
}
