/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Token buckets and upload slots. Time is a variable the tests advance:
 * nothing sleeps, and every figure is checked to the byte and the ms. */
#include "helpers.h"
#include "ratelimit.h"

static void test_bucket_exact(void **state)
{
	struct tbucket b;

	(void)state;
	/* 1000 B/s: one byte per ms */
	assert_int_equal(tbucket_init(&b, 1000, 100, 0), 0);
	assert_int_equal(tbucket_take(&b, 100, 0), 0);
	assert_int_equal(tbucket_take(&b, 1, 0), -EAGAIN);
	assert_int_equal(tbucket_delay_ms(&b, 1, 0), 1);
	assert_int_equal(tbucket_delay_ms(&b, 50, 0), 50);
	assert_int_equal(tbucket_take(&b, 50, 49), -EAGAIN);
	assert_int_equal(tbucket_take(&b, 50, 50), 0);
	assert_int_equal(tbucket_take(&b, 1, 50), -EAGAIN);

	/* 3 B/s: fractions of a byte add up exactly */
	assert_int_equal(tbucket_init(&b, 3, 10, 1000), 0);
	assert_int_equal(tbucket_take(&b, 10, 1000), 0);
	assert_int_equal(tbucket_delay_ms(&b, 1, 1000), 334); /* 333 ms make 0.999 bytes */
	assert_int_equal(tbucket_take(&b, 1, 1333), -EAGAIN);
	assert_int_equal(tbucket_take(&b, 1, 1334), 0);
	/* 2000 ms after emptying: exactly 6 bytes, one of them taken at 1334 */
	assert_int_equal(tbucket_take(&b, 5, 3000), 0);
	assert_int_equal(tbucket_take(&b, 1, 3000), -EAGAIN);
	assert_int_equal(b.tokens, 0);

	/* a zero-byte take always passes, even from an empty bucket */
	assert_int_equal(tbucket_take(&b, 0, 3000), 0);
	assert_int_equal(tbucket_delay_ms(&b, 0, 3000), 0);
}

static void test_bucket_burst(void **state)
{
	struct tbucket b;

	(void)state;
	assert_int_equal(tbucket_init(&b, 1000, 100, 0), 0);
	assert_int_equal(tbucket_take(&b, 60, 0), 0);
	/* a long idle fills the bucket to the burst, no more */
	assert_int_equal(tbucket_take(&b, 101, 100000), 0); /* larger than the burst: passes when full ... */
	assert_int_equal(b.tokens, -1000);                  /* ... and leaves a debt of one byte */
	assert_int_equal(tbucket_delay_ms(&b, 1, 100000), 2);
	assert_int_equal(tbucket_delay_ms(&b, 100, 100000), 101);
	assert_int_equal(tbucket_delay_ms(&b, 1000, 100000), 101); /* needs only a full bucket */
	assert_int_equal(tbucket_take(&b, 100, 100100), -EAGAIN);
	assert_int_equal(tbucket_take(&b, 100, 100101), 0);

	/* over a long run, big takes still average out at the rate */
	{
		uint64_t now = 200000, sent = 0;

		assert_int_equal(tbucket_init(&b, 1000, 100, now), 0);
		for (int i = 0; i < 50; i++) {
			now += tbucket_delay_ms(&b, 250, now);
			assert_int_equal(tbucket_take(&b, 250, now), 0);
			sent += 250;
		}
		/* 100 bytes of burst, 1 byte per ms, and the 150 bytes of debt
		 * the last take left */
		assert_int_equal(now - 200000, sent - 100 - 150);
		assert_int_equal(b.tokens, -150 * 1000);
	}
}

static void test_bucket_idle_no_overflow(void **state)
{
	struct tbucket b;

	(void)state;
	assert_int_equal(tbucket_init(&b, TBUCKET_MAX_RATE, TBUCKET_MAX_TAKE, 0), 0);
	assert_int_equal(tbucket_take(&b, TBUCKET_MAX_TAKE, 0), 0);
	assert_int_equal(tbucket_take(&b, TBUCKET_MAX_TAKE, UINT64_MAX), 0);
	assert_int_equal(tbucket_take(&b, TBUCKET_MAX_TAKE, UINT64_MAX), -EAGAIN);
	assert_int_equal(tbucket_delay_ms(&b, 1, UINT64_MAX), 1);

	assert_int_equal(tbucket_init(&b, 1, 1, 0), 0);
	assert_int_equal(tbucket_take(&b, 1, 0), 0);
	assert_int_equal(tbucket_delay_ms(&b, 1, 0), 1000);
	assert_int_equal(tbucket_take(&b, 1, UINT64_MAX - 1), 0);
	assert_int_equal(b.tokens, 0);
	assert_int_equal(tbucket_take(&b, 1, UINT64_MAX), -EAGAIN);

	/* a clock that goes back earns nothing and loses nothing */
	assert_int_equal(tbucket_init(&b, 1000, 10, 5000), 0);
	assert_int_equal(tbucket_take(&b, 10, 5000), 0);
	assert_int_equal(tbucket_take(&b, 1, 4000), -EAGAIN);
	assert_int_equal(tbucket_delay_ms(&b, 1, 4000), 1001);
	assert_int_equal(tbucket_take(&b, 1, 5001), 0);
}

/* For many random buckets and sizes, the delay is exact: one ms earlier
 * the take fails, at the delay it passes. */
static void test_bucket_delay_exact(void **state)
{
	uint64_t seed = 17;

	(void)state;
	for (int i = 0; i < 20000; i++) {
		uint64_t rate = 1 + prng_next(&seed) % 5000000, burst = 1 + prng_next(&seed) % 300000;
		uint64_t now = prng_next(&seed) % 1000000, n = prng_next(&seed) % 400000;
		struct tbucket b, c;
		uint64_t d;

		assert_int_equal(tbucket_init(&b, rate, burst, now), 0);
		assert_int_equal(tbucket_take(&b, prng_next(&seed) % (2 * burst), now), 0);
		now += prng_next(&seed) % 1000;
		d = tbucket_delay_ms(&b, n, now);
		c = b;
		if (d > 0)
			assert_int_equal(tbucket_take(&c, n, now + d - 1), -EAGAIN);
		c = b;
		assert_int_equal(tbucket_take(&c, n, now + d), 0);
	}
}

/* A charge for bytes that already moved leaves a debt that delays the
 * next take by exactly the time the rate needs to pay it back. */
static void test_bucket_charge(void **state)
{
	struct tbucket b;

	(void)state;
	assert_int_equal(tbucket_init(&b, 1000, 500, 0), 0);
	tbucket_charge(&b, 2500, 0); /* 500 held: 2000 of debt */
	assert_int_equal(tbucket_take(&b, 1, 0), -EAGAIN);
	assert_int_equal(tbucket_delay_ms(&b, 1, 0), 2001);
	assert_int_equal(tbucket_take(&b, 1, 2000), -EAGAIN);
	assert_int_equal(tbucket_take(&b, 1, 2001), 0);
	/* an unlimited bucket ignores charges */
	assert_int_equal(tbucket_init(&b, 0, 0, 0), 0);
	tbucket_charge(&b, UINT64_MAX, 0);
	assert_int_equal(tbucket_take(&b, 1u << 20, 0), 0);
}

static void test_bucket_limits(void **state)
{
	struct tbucket b, c, *both[] = { &b, &c, NULL };

	(void)state;
	assert_int_equal(tbucket_init(&b, 1000, 0, 0), -EINVAL);
	assert_int_equal(tbucket_init(&b, TBUCKET_MAX_RATE + 1, 10, 0), -EINVAL);
	assert_int_equal(tbucket_init(&b, 10, TBUCKET_MAX_TAKE + 1, 0), -EINVAL);

	/* unlimited */
	assert_int_equal(tbucket_init(&b, 0, 0, 0), 0);
	for (int i = 0; i < 10; i++)
		assert_int_equal(tbucket_take(&b, TBUCKET_MAX_TAKE, 0), 0);
	assert_int_equal(tbucket_delay_ms(&b, TBUCKET_MAX_TAKE, 0), 0);
	assert_int_equal(tbucket_take(&b, TBUCKET_MAX_TAKE + 1, 0), -EINVAL);

	/* node and peer buckets: all or none */
	assert_int_equal(tbucket_init(&b, 1000, 100, 0), 0); /* node */
	assert_int_equal(tbucket_init(&c, 100, 50, 0), 0);   /* peer */
	assert_int_equal(tbucket_take_all(both, 3, 50, 0), 0);
	assert_int_equal(b.tokens, 50000);
	assert_int_equal(tbucket_take_all(both, 3, 10, 0), -EAGAIN);
	assert_int_equal(b.tokens, 50000); /* the node bucket kept its tokens */
	assert_int_equal(tbucket_delay_all_ms(both, 3, 10, 0), 100);
	assert_int_equal(tbucket_take_all(both, 3, 10, 100), 0);
	assert_int_equal(b.tokens, 100000 - 10000);

	/* lowering the limits clamps what is held */
	assert_int_equal(tbucket_set(&b, 500, 20, 100), 0);
	assert_int_equal(b.tokens, 20000);
	assert_int_equal(tbucket_take(&b, 20, 100), 0);
	assert_int_equal(tbucket_delay_ms(&b, 1, 100), 2);
	assert_int_equal(tbucket_set(&b, 0, 0, 100), 0);
	assert_int_equal(tbucket_take(&b, 1000, 100), 0);
}

static void expect_event(struct upslots *u, enum upslots_event_type type, uint64_t key)
{
	struct upslots_event ev;

	assert_int_equal(upslots_event_next(u, &ev), 1);
	assert_int_equal(ev.type, type);
	assert_int_equal(ev.key, key);
}

static void expect_no_event(struct upslots *u)
{
	struct upslots_event ev;

	assert_int_equal(upslots_event_next(u, &ev), 0);
}

static void test_upslots_fifo(void **state)
{
	struct upslots_params p = { .slots = 2, .slice_ms = 0, .slice_bytes = 0 };
	struct upslots u;

	(void)state;
	assert_int_equal(upslots_init(&u, &(struct upslots_params){ .slots = 0 }), -EINVAL);
	assert_int_equal(upslots_init(&u, &p), 0);
	assert_int_equal(upslots_want(&u, 'A', 0), 1);
	assert_int_equal(upslots_want(&u, 'B', 0), 1);
	assert_int_equal(upslots_want(&u, 'C', 1), 0);
	assert_int_equal(upslots_want(&u, 'D', 2), 0);
	assert_int_equal(upslots_want(&u, 'C', 3), 0); /* idempotent */
	assert_int_equal(upslots_want(&u, 'A', 3), 1);
	expect_event(&u, UPSLOTS_EV_UNCHOKE, 'A');
	expect_event(&u, UPSLOTS_EV_UNCHOKE, 'B');
	expect_no_event(&u);
	assert_true(upslots_may_send(&u, 'A'));
	assert_false(upslots_may_send(&u, 'C'));

	/* without slices nobody is rotated, however long */
	assert_int_equal(upslots_sent(&u, 'A', UINT64_C(1) << 40, 1000000), 0);
	assert_int_equal(upslots_tick(&u, 1000000), 0);
	assert_int_equal(upslots_next_deadline(&u), UPSLOTS_NEVER);
	expect_no_event(&u);

	/* slots go to waiters in the order they came */
	assert_int_equal(upslots_done(&u, 'B', 10), 0);
	expect_event(&u, UPSLOTS_EV_UNCHOKE, 'C');
	assert_int_equal(upslots_want(&u, 'E', 11), 0);
	assert_int_equal(upslots_done(&u, 'D', 12), 0); /* leaves the queue */
	assert_int_equal(upslots_done(&u, 'A', 13), 0);
	expect_event(&u, UPSLOTS_EV_UNCHOKE, 'E');
	assert_int_equal(upslots_done(&u, 'C', 14), 0);
	assert_int_equal(upslots_done(&u, 'E', 15), 0);
	expect_no_event(&u);
	assert_int_equal(upslots_done(&u, 'E', 16), -ENOENT);
	assert_int_equal(upslots_sent(&u, 'E', 1, 16), -ENOENT);
	assert_int_equal(upslots_want(&u, 'F', 17), 1);
	expect_event(&u, UPSLOTS_EV_UNCHOKE, 'F');
	upslots_deinit(&u);
}

/* One slot, three peers that always want more: each holds the slot for one
 * slice of bytes in turn, A B C A B C ..., and over a long run they get the
 * same bytes give or take one slice. */
static void test_upslots_rotation_bytes(void **state)
{
	struct upslots_params p = { .slots = 1, .slice_ms = 0, .slice_bytes = 4 * 65536 };
	uint64_t got[3] = { 0 }, holder, now = 0;
	char order[32] = "", *o = order;
	struct upslots_event ev;
	struct upslots u;

	(void)state;
	assert_int_equal(upslots_init(&u, &p), 0);
	for (uint64_t k = 0; k < 3; k++)
		upslots_want(&u, k, 0);
	assert_int_equal(upslots_event_next(&u, &ev), 1);
	holder = ev.key;
	*o++ = (char)('A' + holder);
	for (int i = 0; i < 3000; i++) {
		assert_true(upslots_may_send(&u, holder));
		got[holder] += 65536;
		assert_int_equal(upslots_sent(&u, holder, 65536, ++now), 0);
		while (upslots_event_next(&u, &ev)) {
			if (ev.type == UPSLOTS_EV_UNCHOKE) {
				holder = ev.key;
				if (o < order + 12)
					*o++ = (char)('A' + holder);
			} else {
				assert_false(upslots_may_send(&u, ev.key));
			}
		}
	}
	assert_string_equal(order, "ABCABCABCABC");
	for (int k = 0; k < 3; k++)
		assert_in_range(got[k], 1000 * 65536 - 4 * 65536, 1000 * 65536 + 4 * 65536);
	upslots_deinit(&u);
}

static void test_upslots_rotation_time(void **state)
{
	struct upslots_params p = { .slots = 2, .slice_ms = 1000, .slice_bytes = 0 };
	struct upslots u;

	(void)state;
	assert_int_equal(upslots_init(&u, &p), 0);
	assert_int_equal(upslots_want(&u, 'A', 0), 1);
	assert_int_equal(upslots_want(&u, 'B', 500), 1);
	expect_event(&u, UPSLOTS_EV_UNCHOKE, 'A');
	expect_event(&u, UPSLOTS_EV_UNCHOKE, 'B');
	/* nobody waits: no deadline, no rotation */
	assert_int_equal(upslots_next_deadline(&u), UPSLOTS_NEVER);
	assert_int_equal(upslots_tick(&u, 5000), 0);
	expect_no_event(&u);

	/* C waits: the longest-served holder yields when its slice is over */
	assert_int_equal(upslots_want(&u, 'C', 6000), 0);
	assert_int_equal(upslots_next_deadline(&u), 1000);
	assert_int_equal(upslots_tick(&u, 6000), 1);
	expect_event(&u, UPSLOTS_EV_UNCHOKE, 'C');
	expect_event(&u, UPSLOTS_EV_CHOKE, 'A');
	expect_no_event(&u);
	/* A waits now; B's slice is over too and B yields to A */
	assert_int_equal(upslots_next_deadline(&u), 1500);
	assert_int_equal(upslots_tick(&u, 6000), 1);
	expect_event(&u, UPSLOTS_EV_UNCHOKE, 'A');
	expect_event(&u, UPSLOTS_EV_CHOKE, 'B');
	/* B waits; C's and A's slices started at 6000 */
	assert_int_equal(upslots_next_deadline(&u), 7000);
	assert_int_equal(upslots_tick(&u, 6999), 0);
	assert_int_equal(upslots_tick(&u, 7000), 1);
	expect_event(&u, UPSLOTS_EV_UNCHOKE, 'B');
	expect_event(&u, UPSLOTS_EV_CHOKE, 'C');
	expect_no_event(&u);
	assert_true(upslots_may_send(&u, 'A'));
	assert_true(upslots_may_send(&u, 'B'));
	assert_false(upslots_may_send(&u, 'C'));

	/* with two waiting and both slices over, both yield in one tick, in
	 * the order they were served, and nobody gets its slot straight back */
	assert_int_equal(upslots_want(&u, 'D', 7000), 0);
	assert_int_equal(upslots_tick(&u, 8000), 2);
	expect_event(&u, UPSLOTS_EV_UNCHOKE, 'C');
	expect_event(&u, UPSLOTS_EV_CHOKE, 'A');
	expect_event(&u, UPSLOTS_EV_UNCHOKE, 'D');
	expect_event(&u, UPSLOTS_EV_CHOKE, 'B');
	expect_no_event(&u);
	upslots_deinit(&u);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bucket_exact),
		cmocka_unit_test(test_bucket_burst),
		cmocka_unit_test(test_bucket_idle_no_overflow),
		cmocka_unit_test(test_bucket_delay_exact),
		cmocka_unit_test(test_bucket_charge),
		cmocka_unit_test(test_bucket_limits),
		cmocka_unit_test(test_upslots_fifo),
		cmocka_unit_test(test_upslots_rotation_bytes),
		cmocka_unit_test(test_upslots_rotation_time),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
