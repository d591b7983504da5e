/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Runs a helper program (a hook, a health check, grub-editenv, the reboot
 * command) with a time limit, capturing what it prints. */
#pragma once

#include "util.h"

struct spawn_result {
	int status;      /* exit status (0..255), or 128 + signal */
	bool timed_out;  /* killed (with its process group) at the time limit */
	char output[2048]; /* stdout and stderr, the first bytes, NUL-terminated */
	size_t output_len;
	bool truncated;
};

/* Runs argv[0] (looked up in PATH) with argv, the current environment plus
 * env (NULL-terminated "NAME=value" strings, may be NULL), stdin from
 * /dev/null, in its own process group. timeout_ms 0 waits for ever.
 * cancel (may be NULL) is read atomically while it runs: once non-zero
 * (set by another thread), the program and its process group are killed
 * and -EINTR is returned, as when it could not be started.
 * When the program exits, what is left in its output is read for a short
 * while and its process group is killed: a child it left running (holding
 * the output) neither outlives it nor makes it time out.
 * Returns 0 when it ran (whatever its status: see res), or a negative
 * errno when it could not be started (err says why). */
int spawn_run(const char *const *argv, const char *const *env, uint64_t timeout_ms, const int *cancel,
	      struct spawn_result *res, struct perr *err);
