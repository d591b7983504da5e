/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The campaign state machine (proto/campaign.h) on a fleet of simulated
 * devices: the canary goes first, the rest waits for it, no more than
 * max_parallel install at once, a failure at the threshold pauses, resume
 * goes on, abort cancels what has not begun, joiners join phase 1, and
 * maintenance windows hold commands back. */
#include "helpers.h"
#include "campaign.h"

#define N 6

struct fleet {
	struct campaign c;
	struct campaign_target t[N + 2];
	size_t n;
	bool idle[N + 2];
	uint64_t now;
};

static const struct campaign_obs OBS_BUSY = { .busy_with_release = true };
static const struct campaign_obs OBS_DONE = { .runs_release = true, .idle = true };
static const struct campaign_obs OBS_FAIL = { .failed_release = true, .idle = true };

static void start(struct fleet *f, const struct campaign_params *p, size_t n)
{
	memset(f, 0, sizeof(*f));
	f->c.p = *p;
	f->n = n;
	f->now = 1000;
	campaign_plan(&f->c, f->t, n, f->now);
}

static size_t next(struct fleet *f, size_t *out)
{
	return campaign_next(&f->c, f->t, f->n, f->idle, f->now, 12 * 3600, out, N + 2);
}

static void test_canary_then_rest(void **state)
{
	struct campaign_params p = { .canary_count = 1, .max_parallel = 2, .failure_threshold = 1, .resend_ms = 30000 };
	struct fleet f;
	size_t out[N + 2], k;
	uint32_t counts[2][TARGET_STATE_COUNT];

	(void)state;
	assert_int_equal(campaign_params_check(&p, NULL), 0);
	start(&f, &p, N);
	assert_int_equal(f.c.canary_n, 1);
	assert_int_equal(f.t[0].phase, 0);
	assert_int_equal(f.t[1].phase, 1);
	/* only the canary, although two could install */
	k = next(&f, out);
	assert_int_equal(k, 1);
	assert_int_equal(out[0], 0);
	assert_int_equal(next(&f, out), 0);
	assert_true(campaign_observe(&f.c, &f.t[0], &OBS_BUSY, "d0", f.now));
	assert_int_equal(f.t[0].state, TARGET_INSTALLING);
	assert_int_equal(next(&f, out), 0);
	assert_true(campaign_observe(&f.c, &f.t[0], &OBS_DONE, "d0", f.now));
	assert_false(campaign_observe(&f.c, &f.t[0], &OBS_DONE, "d0", f.now));
	/* the rest, two at a time */
	k = next(&f, out);
	assert_int_equal(k, 2);
	assert_int_equal(out[0], 1);
	assert_int_equal(out[1], 2);
	assert_int_equal(next(&f, out), 0);
	campaign_observe(&f.c, &f.t[1], &OBS_DONE, "d1", f.now);
	assert_int_equal(next(&f, out), 1);
	assert_int_equal(out[0], 3);
	campaign_counts(f.t, f.n, counts);
	assert_int_equal(counts[0][TARGET_DONE], 1);
	assert_int_equal(counts[1][TARGET_DONE], 1);
	assert_int_equal(counts[1][TARGET_COMMANDED], 2);
	assert_int_equal(counts[1][TARGET_PENDING], 2);
	for (size_t i = 2; i < N; i++) {
		campaign_observe(&f.c, &f.t[i], &OBS_DONE, "d", f.now);
		next(&f, out);
	}
	assert_int_equal(next(&f, out), 0);
	assert_int_equal(f.c.state, CAMPAIGN_DONE);
	assert_string_equal(campaign_state_name(f.c.state), "done");
}

static void test_failure_pauses_resume_goes_on(void **state)
{
	struct campaign_params p = { .canary_count = 1, .max_parallel = 5, .failure_threshold = 1 };
	struct fleet f;
	size_t out[N + 2];

	(void)state;
	start(&f, &p, 4);
	next(&f, out);
	campaign_observe(&f.c, &f.t[0], &OBS_DONE, "d0", f.now);
	assert_int_equal(next(&f, out), 3);
	/* a report that says nothing about the release changes nothing */
	assert_false(campaign_observe(&f.c, &f.t[1], &(struct campaign_obs){ .idle = true }, "d1", f.now));
	assert_true(campaign_observe(&f.c, &f.t[2], &OBS_FAIL, "d2", f.now));
	assert_int_equal(f.t[2].state, TARGET_FAILED);
	assert_int_equal(f.c.state, CAMPAIGN_PAUSED);
	assert_non_null(strstr(f.c.reason, "1 failure(s), the last on d2 (threshold 1)"));
	/* paused: in-flight devices go on and are counted, nothing new is sent */
	campaign_observe(&f.c, &f.t[1], &OBS_DONE, "d1", f.now);
	assert_int_equal(f.t[1].state, TARGET_DONE);
	assert_int_equal(next(&f, out), 0);
	assert_int_equal(campaign_pause(&f.c, "again"), -EALREADY);
	assert_int_equal(campaign_resume(&f.c), 0);
	assert_int_equal(campaign_resume(&f.c), -EALREADY);
	campaign_observe(&f.c, &f.t[3], &OBS_DONE, "d3", f.now);
	assert_int_equal(next(&f, out), 0);
	assert_int_equal(f.c.state, CAMPAIGN_DONE);
	assert_int_equal(campaign_resume(&f.c), -EINVAL);
}

static void test_threshold_two(void **state)
{
	struct campaign_params p = { .canary_percent = 50, .max_parallel = 10, .failure_threshold = 2 };
	struct fleet f;
	size_t out[N + 2];

	(void)state;
	start(&f, &p, 5);
	assert_int_equal(f.c.canary_n, 3); /* 50% of 5, rounded up */
	assert_int_equal(next(&f, out), 3);
	campaign_observe(&f.c, &f.t[0], &OBS_FAIL, "d0", f.now);
	assert_int_equal(f.c.state, CAMPAIGN_RUNNING);
	campaign_observe(&f.c, &f.t[1], &OBS_FAIL, "d1", f.now);
	assert_int_equal(f.c.state, CAMPAIGN_PAUSED);
	/* a failed target is not failed twice */
	assert_false(campaign_observe(&f.c, &f.t[1], &OBS_FAIL, "d1", f.now));
	assert_int_equal(f.c.failures, 2);
}

static void test_abort_join_resend(void **state)
{
	struct campaign_params p = { .canary_count = 2, .max_parallel = 1, .resend_ms = 5000 };
	struct fleet f;
	size_t out[N + 2], n_cancel = 0;

	(void)state;
	start(&f, &p, 3);
	assert_int_equal(next(&f, out), 1);
	/* the command was lost: the device stays idle; sent again after resend_ms */
	f.idle[0] = true;
	f.now += 4999;
	assert_int_equal(next(&f, out), 0);
	f.now += 1;
	assert_int_equal(next(&f, out), 1);
	assert_int_equal(out[0], 0);
	/* a device that appears joins the rest */
	campaign_join(&f.c, &f.t[f.n++], f.now);
	assert_int_equal(f.t[3].phase, 1);
	assert_int_equal(f.t[3].state, TARGET_PENDING);
	campaign_observe(&f.c, &f.t[0], &OBS_BUSY, "d0", f.now);
	assert_int_equal(campaign_abort(&f.c, f.t, f.n, f.now, out, N, &n_cancel), 0);
	assert_int_equal(n_cancel, 0); /* nothing was commanded and not begun */
	assert_int_equal(f.t[0].state, TARGET_INSTALLING);
	assert_int_equal(f.t[1].state, TARGET_CANCELLED);
	assert_int_equal(f.t[3].state, TARGET_CANCELLED);
	assert_int_equal(next(&f, out), 0);
	assert_int_equal(campaign_abort(&f.c, f.t, f.n, f.now, out, N, &n_cancel), -EINVAL);
	assert_int_equal(campaign_pause(&f.c, "x"), -EINVAL);
}

static void test_windows(void **state)
{
	struct campaign_params p = { .max_parallel = 1, .n_windows = 1 };
	struct campaign_window w;
	struct fleet f;
	size_t out[N + 2];

	(void)state;
	assert_int_equal(campaign_window_parse("22:00-04:30", &w), 0);
	assert_int_equal(w.start_min, 22 * 60);
	assert_int_equal(w.end_min, 4 * 60 + 30);
	assert_int_equal(campaign_window_parse("22:00-22:00", &w), -EINVAL);
	assert_int_equal(campaign_window_parse("24:00-01:00", &w), -EINVAL);
	assert_int_equal(campaign_window_parse("2:00-04:00", &w), -EINVAL);
	assert_int_equal(campaign_window_parse("22:00-04:30", &p.windows[0]), 0);
	assert_true(campaign_in_window(&p, 23 * 3600));
	assert_true(campaign_in_window(&p, 86400 * 3 + 4 * 3600 + 29 * 60));
	assert_false(campaign_in_window(&p, 4 * 3600 + 30 * 60));
	assert_false(campaign_in_window(&p, 12 * 3600));
	start(&f, &p, 2);
	assert_int_equal(next(&f, out), 0); /* noon is outside */
	assert_int_equal(campaign_next(&f.c, f.t, f.n, NULL, f.now, 23 * 3600, out, N), 1);
	p.n_windows = 0;
	assert_true(campaign_in_window(&p, 12 * 3600));
	p.max_parallel = 0;
	assert_int_equal(campaign_params_check(&p, NULL), -EINVAL);
	p.max_parallel = 1;
	p.canary_percent = 101;
	assert_int_equal(campaign_params_check(&p, NULL), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_canary_then_rest),
		cmocka_unit_test(test_failure_pauses_resume_goes_on),
		cmocka_unit_test(test_threshold_two),
		cmocka_unit_test(test_abort_join_resend),
		cmocka_unit_test(test_windows),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
