/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>

#include "campaign.h"

static const char *const c_names[] = { "running", "paused", "aborted", "done" };
static const char *const t_names[] = { "pending", "commanded", "installing", "done", "failed", "cancelled" };

const char *campaign_state_name(unsigned s)
{
	return s < ELEMENTSOF(c_names) ? c_names[s] : NULL;
}

const char *target_state_name(unsigned s)
{
	return s < ELEMENTSOF(t_names) ? t_names[s] : NULL;
}

int campaign_params_check(const struct campaign_params *p, struct perr *err)
{
	if (p->canary_percent > 100)
		return perr_set(err, -EINVAL, "canary_percent %" PRIu32 " is above 100", p->canary_percent);
	if (p->max_parallel < 1)
		return perr_set(err, -EINVAL, "max_parallel must be at least 1");
	if (p->n_windows > CAMPAIGN_WINDOWS_MAX)
		return perr_set(err, -EINVAL, "more than %u maintenance windows", CAMPAIGN_WINDOWS_MAX);
	for (size_t i = 0; i < p->n_windows; i++)
		if (p->windows[i].start_min >= 1440 || p->windows[i].end_min >= 1440 ||
		    p->windows[i].start_min == p->windows[i].end_min)
			return perr_set(err, -EINVAL, "maintenance window %zu is empty or not within a day", i + 1);
	return 0;
}

static int hhmm(const char *s, uint16_t *ret)
{
	unsigned h, m;
	int used = 0;

	if (sscanf(s, "%2u:%2u%n", &h, &m, &used) != 2 || used != 5 || h > 23 || m > 59)
		return -EINVAL;
	*ret = (uint16_t)(h * 60 + m);
	return 0;
}

int campaign_window_parse(const char *s, struct campaign_window *w)
{
	struct campaign_window v;

	if (strlen(s) != 11 || s[5] != '-' || hhmm(s, &v.start_min) < 0 || hhmm(s + 6, &v.end_min) < 0 ||
	    v.start_min == v.end_min)
		return -EINVAL;
	*w = v;
	return 0;
}

bool campaign_in_window(const struct campaign_params *p, uint64_t utc_s)
{
	uint16_t now = (uint16_t)((utc_s / 60) % 1440);

	if (!p->n_windows)
		return true;
	for (size_t i = 0; i < p->n_windows; i++) {
		const struct campaign_window *w = &p->windows[i];

		if (w->start_min < w->end_min ? now >= w->start_min && now < w->end_min
					      : now >= w->start_min || now < w->end_min)
			return true;
	}
	return false;
}

static void set_state(struct campaign_target *t, enum target_state s, uint64_t now_ms)
{
	t->state = (uint8_t)s;
	t->since_ms = now_ms;
}

void campaign_plan(struct campaign *c, struct campaign_target *t, size_t n, uint64_t now_ms)
{
	uint64_t canary = c->p.canary_count;

	if (!canary && c->p.canary_percent)
		canary = ((uint64_t)n * c->p.canary_percent + 99) / 100;
	if (!canary && n)
		canary = 1; /* every campaign starts with one device */
	if (canary > n)
		canary = n;
	c->canary_n = (uint32_t)canary;
	for (size_t i = 0; i < n; i++) {
		t[i].phase = i < canary ? 0 : 1;
		set_state(&t[i], TARGET_PENDING, now_ms);
	}
}

void campaign_join(struct campaign *c, struct campaign_target *t, uint64_t now_ms)
{
	(void)c;
	t->phase = 1;
	set_state(t, TARGET_PENDING, now_ms);
}

static bool finished(uint8_t s)
{
	return s == TARGET_DONE || s == TARGET_FAILED || s == TARGET_CANCELLED;
}

bool campaign_observe(struct campaign *c, struct campaign_target *t, const struct campaign_obs *o,
		      const char *device_name, uint64_t now_ms)
{
	if (t->state == TARGET_DONE)
		return false;
	if (o->runs_release) {
		/* also a device that already ran it, or got it elsewhere */
		set_state(t, TARGET_DONE, now_ms);
		return true;
	}
	if (t->state != TARGET_COMMANDED && t->state != TARGET_INSTALLING)
		return false;
	if (o->failed_release) {
		set_state(t, TARGET_FAILED, now_ms);
		c->failures++;
		if (c->state == CAMPAIGN_RUNNING && c->p.failure_threshold && c->failures >= c->p.failure_threshold) {
			c->state = CAMPAIGN_PAUSED;
			snprintf(c->reason, sizeof(c->reason),
				 "paused: %" PRIu32 " failure(s), the last on %s (threshold %" PRIu32 ")", c->failures,
				 device_name, c->p.failure_threshold);
		}
		return true;
	}
	if (o->busy_with_release && t->state == TARGET_COMMANDED) {
		set_state(t, TARGET_INSTALLING, now_ms);
		return true;
	}
	return false;
}

size_t campaign_next(struct campaign *c, struct campaign_target *t, size_t n, const bool *idle, uint64_t now_ms,
		     uint64_t utc_s, size_t *out, size_t max)
{
	size_t active = 0, canary_open = 0, open = 0, k = 0;

	if (c->state != CAMPAIGN_RUNNING)
		return 0;
	for (size_t i = 0; i < n; i++) {
		if (t[i].state == TARGET_COMMANDED || t[i].state == TARGET_INSTALLING)
			active++;
		if (!finished(t[i].state)) {
			open++;
			if (t[i].phase == 0)
				canary_open++;
		}
	}
	if (!open && n) {
		c->state = CAMPAIGN_DONE;
		snprintf(c->reason, sizeof(c->reason), "every device finished");
		return 0;
	}
	if (!campaign_in_window(&c->p, utc_s))
		return 0;
	/* a commanded device that stayed idle lost the COMMAND (reconnect, restart) */
	for (size_t i = 0; i < n && k < max; i++)
		if (t[i].state == TARGET_COMMANDED && idle && idle[i] && now_ms - t[i].since_ms >= c->p.resend_ms) {
			t[i].since_ms = now_ms;
			out[k++] = i;
		}
	for (size_t i = 0; i < n && k < max && active < c->p.max_parallel; i++) {
		if (t[i].state != TARGET_PENDING || (t[i].phase == 1 && canary_open))
			continue;
		set_state(&t[i], TARGET_COMMANDED, now_ms);
		active++;
		out[k++] = i;
	}
	return k;
}

int campaign_pause(struct campaign *c, const char *why)
{
	if (c->state == CAMPAIGN_ABORTED || c->state == CAMPAIGN_DONE)
		return -EINVAL;
	if (c->state == CAMPAIGN_PAUSED)
		return -EALREADY;
	c->state = CAMPAIGN_PAUSED;
	snprintf(c->reason, sizeof(c->reason), "%s", why);
	return 0;
}

int campaign_resume(struct campaign *c)
{
	if (c->state == CAMPAIGN_ABORTED || c->state == CAMPAIGN_DONE)
		return -EINVAL;
	if (c->state == CAMPAIGN_RUNNING)
		return -EALREADY;
	c->state = CAMPAIGN_RUNNING;
	/* the failures so far were seen: the threshold counts new ones */
	c->failures = 0;
	c->reason[0] = '\0';
	return 0;
}

int campaign_abort(struct campaign *c, struct campaign_target *t, size_t n, uint64_t now_ms, size_t *out, size_t max,
		   size_t *ret_n)
{
	size_t k = 0;

	if (c->state == CAMPAIGN_ABORTED || c->state == CAMPAIGN_DONE)
		return -EINVAL;
	c->state = CAMPAIGN_ABORTED;
	snprintf(c->reason, sizeof(c->reason), "aborted by the operator");
	for (size_t i = 0; i < n; i++) {
		if (t[i].state == TARGET_COMMANDED && k < max)
			out[k++] = i;
		if (t[i].state == TARGET_PENDING || t[i].state == TARGET_COMMANDED)
			set_state(&t[i], TARGET_CANCELLED, now_ms);
	}
	*ret_n = k;
	return 0;
}

void campaign_counts(const struct campaign_target *t, size_t n, uint32_t counts[2][TARGET_STATE_COUNT])
{
	memset(counts, 0, sizeof(uint32_t) * 2 * TARGET_STATE_COUNT);
	for (size_t i = 0; i < n; i++)
		if (t[i].phase < 2 && t[i].state < TARGET_STATE_COUNT)
			counts[t[i].phase][t[i].state]++;
}
