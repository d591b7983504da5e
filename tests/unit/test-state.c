/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* shoald's SQLite state: migrations, releases, progress, floors that never
 * go down, bans that survive a restart, and a database it must not touch. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "state.h"

#define SCRATCH_NAME "state"
#include "scratch.h"


static struct state *open_ok(void)
{
	struct state *st = NULL;
	struct perr err = { "" };

	if (state_open(dir, &st, &err) < 0)
		fail_msg("state_open: %s", err.msg);
	return st;
}

static void fake_manifest(struct manifest *m, const char *version, uint64_t counter)
{
	memset(m, 0, sizeof(*m));
	m->product = (char *)"acme";
	m->version = (char *)version;
	m->counter = counter;
}

static int collect_release(void *ud, const struct state_release *r)
{
	char *out = ud;

	strcat(out, r->version);
	strcat(out, r->st == REL_COMPLETE ? "+ " : " ");
	return 0;
}

static int sum_idx(void *ud, uint32_t idx)
{
	*(uint64_t *)ud += idx + 1;
	return 0;
}

static void test_releases_and_progress(void **state)
{
	struct state *st = open_ok();
	struct manifest m;
	struct state_release r;
	uint8_t a[HASH_SIZE] = { 1 }, b[HASH_SIZE] = { 2 }, bytes[10] = { 9, 8, 7 };
	const uint32_t idx[] = { 0, 5, 7, 5 };
	char list[64] = "";
	uint64_t sum = 0;

	(void)state;
	fake_manifest(&m, "1.0", 1);
	assert_int_equal(state_release_put(st, a, &m, bytes, sizeof(bytes), REL_COMPLETE), 0);
	fake_manifest(&m, "2.0", 2);
	assert_int_equal(state_release_put(st, b, &m, bytes, 3, REL_FETCHING), 0);
	assert_int_equal(state_release_get(st, b, &r), 0);
	assert_string_equal(r.version, "2.0");
	assert_int_equal(r.counter, 2);
	assert_int_equal(r.manifest_len, 3);
	assert_memory_equal(r.manifest, bytes, 3);
	free(r.manifest);
	assert_int_equal(state_release_get(st, (uint8_t[HASH_SIZE]){ 3 }, &r), -ENOENT);
	assert_int_equal(state_release_foreach(st, collect_release, list), 0);
	assert_string_equal(list, "2.0 1.0+ ");

	assert_int_equal(state_have_add(st, b, idx, 4), 0); /* the repeated 5 is fine */
	state_close(st);

	/* progress survives a restart */
	st = open_ok();
	assert_int_equal(state_have_foreach(st, b, sum_idx, &sum), 0);
	assert_int_equal(sum, 1 + 6 + 8);
	assert_int_equal(state_release_set_state(st, b, REL_COMPLETE), 0);
	assert_int_equal(state_release_set_state(st, (uint8_t[HASH_SIZE]){ 3 }, REL_COMPLETE), -ENOENT);
	assert_int_equal(state_have_clear(st, b), 0);
	sum = 0;
	assert_int_equal(state_have_foreach(st, b, sum_idx, &sum), 0);
	assert_int_equal(sum, 0);
	state_close(st);
}

static void test_floors_never_go_down(void **state)
{
	struct state *st = open_ok();
	uint64_t v;

	(void)state;
	assert_int_equal(state_floor_get(st, "counter", &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(state_floor_raise(st, "counter", 7), 0);
	assert_int_equal(state_floor_raise(st, "counter", 3), 0);
	state_close(st);
	st = open_ok();
	assert_int_equal(state_floor_get(st, "counter", &v), 0);
	assert_int_equal(v, 7);
	state_close(st);
}

static int ban_cb(void *ud, const struct state_ban *b)
{
	char *out = ud;

	snprintf(out + strlen(out), 256 - strlen(out), "%02x %" PRIu64 " %s %s %d;", b->device[0], b->until_s, b->reason,
		 b->address, b->since_s > 0);
	return 0;
}

static void test_keyrings_bans_counters(void **state)
{
	struct state *st = open_ok();
	uint8_t dev[PUBKEY_SIZE] = { 0xaa }, *p = NULL;
	size_t n;

	(void)state;
	assert_int_equal(state_keyring_get(st, &p, &n), -ENOENT);
	assert_int_equal(state_keyring_put(st, 2, (const uint8_t *)"two", 3), 0);
	assert_int_equal(state_keyring_put(st, 1, (const uint8_t *)"one", 3), 0);
	assert_int_equal(state_keyring_get(st, &p, &n), 0);
	assert_memory_equal(p, "two", 3);
	free(p);
	assert_int_equal(state_ban_until(st, dev), 0);
	assert_int_equal(state_ban_put(st, dev, 1234, "bad chunk", "10.0.0.7:7000"), 0);
	assert_int_equal(state_counter_add(st, "rx_peers", 100), 0);
	assert_int_equal(state_counter_add(st, "rx_peers", 23), 0);
	state_close(st);
	st = open_ok();
	assert_int_equal(state_ban_until(st, dev), 1234);
	{
		char seen[256] = "";

		/* every ban ever made, with where it came from and when */
		assert_int_equal(state_ban_foreach(st, ban_cb, seen), 0);
		assert_string_equal(seen, "aa 1234 bad chunk 10.0.0.7:7000 1;");
	}
	assert_int_equal(state_counter_get(st, "rx_peers"), 123);
	assert_int_equal(state_counter_get(st, "none"), 0);
	state_close(st);
}

static void test_refuses_newer_schema_and_garbage(void **state)
{
	char other[96], cmd[512];
	struct state *st = NULL;
	struct perr err = { "" };
	FILE *f;

	(void)state;
	snprintf(other, sizeof(other), "%s/newer", dir);
	{
		/* a database written by a future shoald */
		struct state *tmp = NULL;
		sqlite3 *db;

		assert_int_equal(state_open(other, &tmp, &err), 0);
		state_close(tmp);
		snprintf(cmd, sizeof(cmd), "%s/shoal.db", other);
		assert_int_equal(sqlite3_open(cmd, &db), SQLITE_OK);
		assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
		sqlite3_close(db);
	}
	assert_int_equal(state_open(other, &st, &err), -EPROTONOSUPPORT);
	assert_non_null(strstr(err.msg, "newer than this shoald understands"));

	snprintf(other, sizeof(other), "%s/garbage", dir);
	snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", other);
	assert_int_equal(system(cmd), 0);
	snprintf(cmd, sizeof(cmd), "%s/shoal.db", other);
	f = fopen(cmd, "w");
	assert_non_null(f);
	for (int i = 0; i < 4096; i++)
		fputc("not a database"[i % 14], f);
	fclose(f);
	err.msg[0] = 0;
	assert_true(state_open(other, &st, &err) < 0);
	assert_true(err.msg[0] != 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_releases_and_progress),
		cmocka_unit_test(test_floors_never_go_down),
		cmocka_unit_test(test_keyrings_bans_counters),
		cmocka_unit_test(test_refuses_newer_schema_and_garbage),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
