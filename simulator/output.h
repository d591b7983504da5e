/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What a simulator run shows and leaves behind, the same for model mode and
 * process mode: a live terminal view while it runs, a summary table at the
 * end, DIR/results.json and DIR/report.svg (every node's progress over time
 * with the Kumar-Ross bound marked). A mode fills struct sim_results and a
 * struct sim_trace; these writers know nothing of how they were measured. */
#pragma once

#include <stdio.h>

#include "scenario.h"

struct sim_node_result {
	char name[SCN_NAME_MAX];
	enum scn_state final_state;
	char release[SCN_NAME_MAX]; /* the version it runs at the end */
	uint64_t bytes_from_seed;   /* new chunk bytes received from the gateway */
	uint64_t bytes_from_peers;  /* ... from other devices */
	uint64_t bytes_reused;      /* found locally (version 1) */
	uint64_t bytes_sent;        /* uploaded to other devices */
	uint32_t banned_peers;
	double complete_s;  /* held the whole image; < 0: never */
	double committed_s; /* committed (or rolled back); < 0: never */
	bool expect_set;
	enum scn_state expect;
	/* rollout = campaign: the device's phase ("canary", "rest") and its
	 * target state in the campaign ("pending", "commanded", "installing",
	 * "done", "failed", "cancelled"); "" otherwise */
	char campaign_phase[12];
	char campaign_target[12];
};

struct sim_results {
	const char *scenario; /* path */
	const char *mode;     /* "model" or "process" */
	uint64_t seed;
	uint32_t nodes;               /* devices */
	uint64_t image_bytes;
	uint64_t fetch_bytes;         /* per device, what the bound is computed for */
	uint64_t seed_bytes_sent;     /* by the gateway, duplicates and bad chunks included */
	uint64_t peer_bytes_sent;     /* by devices */
	uint64_t local_bytes_reused;
	double time_all_complete_s;   /* < 0: not every device completed */
	double time_all_committed_s;  /* every device committed or rolled back; < 0: not */
	double kumar_ross_bound_s;
	double end_s;                 /* simulated (or real) time at the end */
	double wall_s;                /* wall-clock time the run took */
	/* rollout = campaign: how the campaign ended ("done", "paused",
	 * "running", "aborted") and why; campaign_state[0] == 0 otherwise */
	char campaign_state[12];
	char campaign_reason[160];
	uint32_t campaign_failures;
	struct sim_node_result *node; /* nodes entries, owned by the caller */
};

/* Every node's final state matches its expectation (nodes without one
 * count as matching). When f is not NULL, each mismatch is printed to it. */
bool sim_results_expect_ok(const struct sim_results *r, FILE *f);

/* ---- progress over time ---- */

struct sim_trace;

/* A trace of n_nodes nodes. *ret (sim_trace_free) on success; -ENOMEM. */
int sim_trace_new(size_t n_nodes, struct sim_trace **ret);
void sim_trace_free(struct sim_trace *t);
static inline void sim_trace_freep(struct sim_trace **t)
{
	sim_trace_free(*t);
}

/* Node `node` held `fraction` (0..1) of the image at t_s. Points that add
 * less than half a percent to the previous one are dropped (the first and
 * a fraction of 1 are always kept), so a node costs a few hundred points
 * at most. Times must not go backwards per node. 0, -EINVAL, -ENOMEM. */
int sim_trace_add(struct sim_trace *t, size_t node, double t_s, double fraction);

/* ---- files (written to PATH.tmp, then renamed: never half a file) ---- */

/* Creates dir (and its parents) if needed. 0 or -errno with err. */
int sim_output_dir(const char *dir, struct perr *err);

/* results.json: see docs/simulator.md for every field. */
int sim_results_write_json(const struct sim_results *r, const char *path, struct perr *err);

/* report.svg: one polyline per node (progress in percent of the image
 * over seconds), a legend (per node up to 12 nodes, per final state above),
 * axes with units, the Kumar-Ross bound as a vertical line. */
int sim_report_write_svg(const struct sim_results *r, const struct sim_trace *t, const char *path,
			 struct perr *err);

/* The table at the end: totals, then one row per node (for more than 40
 * nodes: counts per state and the ten that took longest). */
void sim_summary_print(FILE *f, const struct sim_results *r);

/* ---- the live view ---- */

struct sim_live_node {
	const char *name;
	double fraction;   /* of the image held */
	const char *state; /* "fetching", "installing", "committed", ... */
};

struct sim_live_state {
	double t_s;
	double swarm_rate_bps; /* bytes per second received by all devices, lately */
	uint64_t seed_bytes, peer_bytes;
	size_t n_nodes;
	const struct sim_live_node *nodes;
};

struct sim_live;

/* A live view on f, or *ret = NULL (and 0) when f is not a terminal: the
 * caller then simply skips the updates. -ENOMEM. */
int sim_live_new(FILE *f, struct sim_live **ret);
/* Redraws, at most ten times a second of wall time (force: now). */
void sim_live_update(struct sim_live *l, const struct sim_live_state *st, bool force);
/* Leaves the last frame on screen and frees l (NULL is fine). */
void sim_live_free(struct sim_live *l);
