/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <limits.h>
#include <stdio.h>
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
};

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

int state_floor_raise(struct state *st, const char *name, uint64_t value)
{
	sqlite3_stmt *s;
	int k, k2;

	/* durable before the caller acts on the new floor */
	if ((k = exec(st, "PRAGMA synchronous=FULL")) < 0)
		return k;
	if ((k = prepare(st, "INSERT INTO floors (name, value) VALUES (?, ?) "
			     "ON CONFLICT(name) DO UPDATE SET value = max(value, excluded.value)", &s)) == 0) {
		sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 2, (sqlite3_int64)value);
		k = run(s);
	}
	k2 = exec(st, "PRAGMA synchronous=NORMAL");
	return k < 0 ? k : k2;
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

int state_ban_put(struct state *st, const uint8_t device[PUBKEY_SIZE], uint64_t until_s, const char *reason)
{
	sqlite3_stmt *s;
	int k;

	if ((k = prepare(st, "INSERT OR REPLACE INTO bans (device, until, reason) VALUES (?, ?, ?)", &s)) < 0)
		return k;
	sqlite3_bind_blob(s, 1, device, PUBKEY_SIZE, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)until_s);
	sqlite3_bind_text(s, 3, reason, -1, SQLITE_STATIC);
	return run(s);
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
