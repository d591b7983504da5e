/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Update modules: installs of payloads that are not a whole slot (a
 * directory tree, one file, a container image, ...), in the spirit of
 * Mender's update modules. An executable MODULES_DIR/<payload-type> is
 * called as `MODULE STATE WORKDIR` through a documented sequence
 *
 *   Download -> Install -> [reboot] -> health -> Commit | Rollback/Failure
 *   -> Cleanup
 *
 * and answers the queries SupportsRollback (Yes/No) and NeedsReboot
 * (No/Yes/Automatic). docs/operations.md ("Update modules") is the
 * protocol; docs/formats.md the work directory. Each step is a phase of the
 * pending install (module-verify, module-pre-install, module-download,
 * module-install, module-reboot-pending, module-health, module-commit,
 * module-rollback, module-failure), recorded durably before it starts,
 * with slot -1, so that an interrupted install is finished at the next
 * start: before Install it is abandoned (Cleanup); between Install and
 * Commit the module rolls back (Failure when it cannot). */
#pragma once

#include "install.h"
#include "release.h"

#define MODULE_WORKDIR "module" /* under [system] state-dir */

/* installer_install for a manifest whose payload type is not an A/B
 * image: verify (the payload type's own counter floor "counter:TYPE"),
 * pre-install hooks, the payload assembled and checked into the work
 * directory, Download, Install, then either a reboot (NeedsReboot) or at
 * once health checks and Commit. res->slot is -1; res->phase ends at
 * commit, reboot-pending or rollback. Errors as installer_install, plus
 * -EOPNOTSUPP when no module handles the payload type, -ECANCELED when a
 * module state, a hook or a health check said no (err says which, and
 * whether the module rolled back). */
int module_install(struct installer *in, struct release *r, const uint8_t id[HASH_SIZE], const uint8_t *mbytes,
		   size_t mlen, const char *source, const char *boot_id, int reboot, struct install_result *res,
		   struct perr *err);

/* installer_boot_check for a pending module install (p->slot < 0). */
int module_resume(struct installer *in, const struct state_install *p, const char *boot_id, int reboot,
		  struct boot_check_result *res, struct perr *err);

/* mark-good (good), mark-bad and rollback for a pending module install:
 * only an install waiting for its reboot can be judged; before the
 * reboot, "bad" undoes it with Rollback without refusing the release. */
int module_judge(struct installer *in, const struct state_install *p, bool good, const char *boot_id, int reboot,
		 const char *why, struct boot_check_result *res, struct perr *err);
