/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A rollout campaign's decisions, without I/O (the gateway stores the
 * structs in SQLite and sends the COMMANDs; the simulator and the tests
 * drive it directly). Caller-driven: the gateway tells it what devices
 * report (campaign_observe) and asks it whom to command now
 * (campaign_next); the machine owns every decision in between.
 *
 *   running --(failures >= threshold)--> paused --(resume)--> running
 *   running|paused --(abort)--> aborted      running --(all finished)--> done
 *
 * Targets go pending -> commanded -> installing -> done | failed. Targets
 * are in phase 0 (the canary: the first canary_count devices, or
 * canary_percent of those matching at creation, at least one) or phase 1
 * (the rest, and every device that joins later); phase 1 starts when no
 * canary is pending, commanded or installing and the campaign runs. At
 * most max_parallel targets are commanded or installing at once, and only
 * inside a maintenance window (none: always). */
#pragma once

#include "util.h"

#define CAMPAIGN_WINDOWS_MAX 4u

enum campaign_state {
	CAMPAIGN_RUNNING = 0,
	CAMPAIGN_PAUSED = 1,
	CAMPAIGN_ABORTED = 2,
	CAMPAIGN_DONE = 3,
};

enum target_state {
	TARGET_PENDING = 0,
	TARGET_COMMANDED = 1,  /* COMMAND sent, the device has not started */
	TARGET_INSTALLING = 2, /* fetching, installing, rebooting or on trial */
	TARGET_DONE = 3,       /* runs the release (committed) */
	TARGET_FAILED = 4,     /* refused it, failed or rolled back */
	TARGET_CANCELLED = 5,  /* the campaign was aborted before it began */
};
#define TARGET_STATE_COUNT 6

struct campaign_window {
	uint16_t start_min, end_min; /* minutes of the UTC day; end < start wraps midnight */
};

struct campaign_params {
	uint32_t canary_count;      /* devices in phase 0; 0: use canary_percent */
	uint32_t canary_percent;    /* 0..100, of the devices matching at creation */
	uint32_t max_parallel;      /* >= 1 */
	uint32_t failure_threshold; /* failures that pause; 0: never pause */
	uint64_t resend_ms;         /* a commanded device still idle after this is sent it again */
	uint8_t n_windows;
	struct campaign_window windows[CAMPAIGN_WINDOWS_MAX];
};

struct campaign {
	struct campaign_params p;
	enum campaign_state state;
	uint32_t canary_n; /* set by campaign_plan */
	uint32_t failures;
	char reason[160];  /* why it paused or stopped */
};

struct campaign_target {
	uint8_t phase; /* 0 canary, 1 the rest */
	uint8_t state; /* enum target_state */
	uint64_t since_ms; /* when state last changed, or the last COMMAND went out */
};

/* What a device reported, seen from one campaign's release. */
struct campaign_obs {
	bool runs_release;      /* its installed (booted) release is the campaign's */
	bool busy_with_release; /* fetching/installing/rebooting/trial with the release as target */
	bool failed_release;    /* state failed with the release as target */
	bool idle;              /* not busy with anything */
};

const char *campaign_state_name(unsigned s);
const char *target_state_name(unsigned s);

/* Checks the parameters; -EINVAL with err naming the field. */
int campaign_params_check(const struct campaign_params *p, struct perr *err);
/* Parses "22:00-04:30" (UTC) into w; -EINVAL. */
int campaign_window_parse(const char *s, struct campaign_window *w);

/* Starts a campaign over the n devices matching now: decides canary_n
 * and puts the first canary_n targets into phase 0, the others into 1. */
void campaign_plan(struct campaign *c, struct campaign_target *t, size_t n, uint64_t now_ms);
/* A device that matched after the start joins phase 1. */
void campaign_join(struct campaign *c, struct campaign_target *t, uint64_t now_ms);

/* Applies a report. Returns true when t or c changed (the caller stores
 * them). A failure that reaches the threshold pauses the campaign. */
bool campaign_observe(struct campaign *c, struct campaign_target *t, const struct campaign_obs *o,
		      const char *device_name, uint64_t now_ms);

/* Whom to send COMMAND(install) now: fills out[] with target indexes
 * (at most max) and marks them commanded. Also re-sends to commanded
 * targets that have been idle for resend_ms (idle[i] true). Finishes the
 * campaign (done) when every target is done or failed. Returns how many. */
size_t campaign_next(struct campaign *c, struct campaign_target *t, size_t n, const bool *idle, uint64_t now_ms,
		     uint64_t utc_s, size_t *out, size_t max);

/* Operator actions. pause/resume: -EALREADY when already so, -EINVAL
 * when finished. abort marks targets not yet installing cancelled and
 * returns their count in *cancel (the gateway sends COMMAND(cancel) to
 * those that were commanded: out[], at most max). */
int campaign_pause(struct campaign *c, const char *why);
int campaign_resume(struct campaign *c);
int campaign_abort(struct campaign *c, struct campaign_target *t, size_t n, uint64_t now_ms, size_t *out, size_t max,
		   size_t *ret_n);

/* Targets per phase and state: counts[phase][state]. */
void campaign_counts(const struct campaign_target *t, size_t n, uint32_t counts[2][TARGET_STATE_COUNT]);

/* Inside a maintenance window at utc_s (always, with none). */
bool campaign_in_window(const struct campaign_params *p, uint64_t utc_s);
