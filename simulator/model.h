/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Model mode: a discrete-event simulation of a whole fleet in one process.
 * Every device runs the real proto/ transfer scheduler (one struct sched per
 * device, driven with the calls shoald's swarm.c makes) and the real upload
 * slots; the network, the clock, the daemons' reboots and faults are
 * simulated. docs/simulator.md says what is modelled and what is not. */
#pragma once

#include "output.h"
#include "scenario.h"

struct model_opts {
	uint64_t seed;      /* replaces the scenario's [sim] seed when seed_set */
	bool seed_set;
	FILE *live;         /* the live view goes here if it is a terminal; NULL: none */
};

/* Runs the scenario to its end (every device settled, nothing left to
 * happen, or [sim] time_limit). Fills *ret (its node array is malloc'ed:
 * the caller frees ret->node) and *ret_trace (sim_trace_free). 0, or
 * -ENOMEM / -EINVAL with err. */
int model_run(const struct scenario *s, const struct model_opts *o, struct sim_results *ret,
	      struct sim_trace **ret_trace, struct perr *err);
