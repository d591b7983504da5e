/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Process mode: the scenario on real processes. A gateway and every device
 * are real shoald daemons, each in network, mount and UTS namespaces of its
 * own, joined by veth pairs to a bridge that lives in yet another namespace
 * (nothing reaches the machine's own network). Links are shaped with tc;
 * devices have file-backed A/B slots, the file bootloader and the boot
 * simulator; a reboot stops the node's shoald, powers it on through the boot
 * simulator and starts shoald again. docs/simulator.md says what is real and
 * what is not. Needs root, except in loopback mode (proc_opts.loopback). */
#pragma once

#include "output.h"
#include "scenario.h"

struct proc_opts {
	uint64_t seed; /* replaces the scenario's [sim] seed when seed_set */
	bool seed_set;
	bool mdns;          /* discovery by mDNS (a dbus-daemon and avahi-daemon per node); else static */
	bool loopback;      /* no namespaces, no tc, no root: every shoald on 127.0.0.1 with a port of its own,
			       static discovery, the links' rates as shoald's own rate limits */
	FILE *live;         /* the live view goes here if it is a terminal; NULL: none */
	FILE *log;          /* what the run does, step by step (stderr); NULL: quiet */
	const char *keep;   /* keep the work directory (logs, slots, state): its path; NULL: a temporary one, removed */
	double time_limit_s; /* > 0: replaces the scenario's time_limit */
};

/* Whether process mode can run here: root, the tools, namespaces (in
 * loopback mode: nothing of that). 0, or -EPERM / -ENOENT / -EOPNOTSUPP
 * with the reason in err. */
int proc_usable(bool loopback, struct perr *err);

/* Builds the LAN, runs the rollout to its end (every device settled, the
 * time limit, or SIGINT/SIGTERM), takes everything down (every process by
 * its pid; the namespaces go with their last process) and fills *ret (its
 * node array is malloc'ed: the caller frees ret->node) and *ret_trace
 * (sim_trace_free). 0; -EINTR when interrupted (nothing is left behind,
 * no results); -errno with err when the LAN or a node could not be set up. */
int proc_run(const struct scenario *s, const struct proc_opts *o, struct sim_results *ret,
	     struct sim_trace **ret_trace, struct perr *err);
