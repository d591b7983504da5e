/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What install.c lends to module.c: the parts of the install flow that
 * update modules share with A/B images (verification, phases, hooks,
 * health checks, reboot). Not an interface for shoald or shoal: they use
 * install.h. */
#pragma once

#include <limits.h>

#include "install.h"
#include "release.h"

struct hook_ctx {
	char release[2 * HASH_SIZE + 1];
	char e[10][PATH_MAX + 32];
	const char *env[11];
};

const struct sysconf *install_sysconf(const struct installer *in);
/* One line for the caller's log (installer_opts.log). */
void install_say(struct installer *in, int level, const char *fmt, ...) _printf_(3, 4);
void install_progress(struct installer *in, enum install_phase p, uint64_t done, uint64_t total);
/* Appends a line to res->report (truncating when full). */
void install_report(struct boot_check_result *res, const char *fmt, ...) _printf_(2, 3);

/* SHOAL_INSTALLER_CRASH_AT=phase: _exit(137) here (the kill sweep). */
void install_crash_point(const char *phase);
/* Records the pending install's phase (any name) durably, with boot_id
 * when not NULL, then passes the crash point of that name. */
int install_enter(struct installer *in, const char *phase, const char *boot_id, struct perr *err);

/* The checks of the verify phase: signatures and keyring against the
 * trusted roots (a newer keyring [system] trust vouches for is stored;
 * its floor waits for the commit), product,
 * expiry, the counter against the floor named counter_floor (NULL: the
 * A/B images' "counter", which also requires an A/B payload), size
 * against max_size (0: no limit), the refused list. */
int install_verify(struct installer *in, struct release *r, const uint8_t id[HASH_SIZE], uint64_t max_size,
		   const char *counter_floor, struct perr *err);

/* At a commit, before the bootloader's: the counter floor named
 * counter_floor, the time floor, and the keyring floor to the stored
 * keyring that vouches for m under [system] trust alone. Durable. */
int install_commit_floors(struct installer *in, const char *counter_floor, uint64_t counter, const struct manifest *m,
			  struct perr *err);

/* Refuses p's release for good, on its signed body (state_refusal_key). */
int install_refuse(struct installer *in, const struct state_install *p, const char *why, struct perr *err);

/* The SHOAL_* environment of hooks and health checks for an install that
 * has no slot (SHOAL_SLOT and friends empty). */
void install_hook_env(struct installer *in, struct hook_ctx *h, const uint8_t id[HASH_SIZE], const char *version,
		      uint64_t counter, enum install_phase phase, const char *source);
/* HOOKS_DIR/<state_name>.d: -ECANCELED (err names the hook) when one said no. */
int install_run_hooks(struct installer *in, const char *state_name, const struct hook_ctx *h, char *report,
		      size_t report_size, struct perr *err);
/* Built-in checks, then health-dir; the report goes into res->report.
 * -ECANCELED (err says which) when one failed. */
int install_health(struct installer *in, const struct hook_ctx *h, struct boot_check_result *res, struct perr *err);
/* Runs reboot-command when the policy (reboot < 0: [system] reboot) is now. */
int install_reboot(struct installer *in, int reboot, bool *rebooting, struct perr *err);
