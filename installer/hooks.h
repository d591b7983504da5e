/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Drop-in directories of executables, in the spirit of Mender's state
 * scripts: HOOKS_DIR/<state>.d/ (pre-install.d, post-install.d, commit.d,
 * rollback.d, ...) and the health-check directory. Every executable runs
 * in name order with a time limit and the SHOAL_* environment described
 * in docs/operations.md; files whose name starts with '.' or ends with
 * '~' are skipped. */
#pragma once

#include "spawn.h"

/* Called after every program with its name and what it did. */
typedef void (*hooks_report_fn)(void *ud, const char *name, const struct spawn_result *r);

/* Runs the executables of dir (a missing directory holds none). env is
 * NULL-terminated "NAME=value" strings added to the environment.
 * stop_on_failure: the first failure ends the run (hooks); otherwise every
 * program runs (health checks). cancel as for spawn_run (may be NULL):
 * the program running is killed and no other starts. Returns the number that ran (>= 0) when
 * all succeeded, -ECANCELED when one exited non-zero or ran out of time
 * (err names the first and quotes its output), or another negative errno
 * when the directory cannot be read or a program not started. */
int hooks_run(const char *dir, const char *const *env, uint64_t timeout_ms, bool stop_on_failure, const int *cancel,
	      hooks_report_fn report, void *ud, struct perr *err);
