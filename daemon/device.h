/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A device with a system config ([device] system_conf): shoald drives the
 * A/B installer. At start it finishes what the last boot left (the boot
 * check: health checks and commit or rollback of a trial, a bootloader
 * fallback) before it joins the swarm; it fetches releases straight into
 * the inactive slot, after copying what the active slot already holds;
 * once a fetch is complete it installs (install = auto, or on command)
 * with every step that may block (hooks, write, whole-image check) off the
 * event loop, and reboots as [device] reboot says. It serves the releases
 * its slots hold.
 *
 * The state database is the installer's; d->st is shoald's own connection
 * to it, the installer's connection serves the installer's steps (see
 * device.c). */
#pragma once

#include <jansson.h>

#include "manifest.h"

struct daemon;
struct device;

/* Loads the system config, opens the installer and d->st and runs the boot
 * check (on the calling thread). Before the swarm exists. Errors only for what makes the device unusable
 * (a bad system config, another product); a failed boot check is logged
 * and leaves installs off. */
int device_open(struct daemon *d, struct perr *err);
/* After the swarm exists: serves the releases the slots hold. */
void device_start(struct daemon *d);
void device_stop(struct daemon *d);
void device_free(struct device *dev);

/* ---- for swarm.c ---- */

/* Nothing may be fetched into the inactive slot now: an install runs or
 * waits for its reboot, a rollback waits for its reboot, or the boot
 * check failed. */
bool device_busy(struct daemon *d);
int device_inactive_slot(struct daemon *d);
const char *device_slot_name(struct daemon *d, int slot);
/* The size of the inactive slot (the largest image accepted). */
int device_slot_size(struct daemon *d, uint64_t *ret, struct perr *err);
/* The inactive slot is being fetched into (a fetch may resume there). */
bool device_slot_fetching(struct daemon *d);
/* Claims the inactive slot for m's fetch and opens it; *ret_slot is its
 * index. Returns the fd or a negative errno (err says why). */
int device_fetch_target(struct daemon *d, const struct manifest *m, int *ret_slot, struct perr *err);
/* The active slot for local reuse: fd (caller closes), its release's
 * manifest when known (*ret_old, caller frees; NULL: chunk it), and a
 * name for the log. -ENOENT when there is nothing to read. */
int device_active_source(struct daemon *d, struct manifest **ret_old, char *what, size_t size);
/* Every chunk of a release is in the inactive slot, each verified. */
void device_fetched(struct daemon *d, const uint8_t id[HASH_SIZE], const uint8_t *mbytes, size_t mlen);

/* ---- Device install API (control socket, and the gateway's commands) ---- */

/* Installs the release the last fetch completed in the inactive slot:
 * verify, pre-install hooks, verify-slot (off the loop), post-install
 * hooks, mark-trial, then the reboot policy. Returns at once: 0 when the
 * install started, -ENOENT when no fetched release waits, -EBUSY when an
 * install runs or waits for its reboot; err says why. The outcome shows
 * in device_status_json and the log. */
int device_install_fetched(struct daemon *d, struct perr *err);
/* Runs the reboot an install left pending now (the gateway's word, or an
 * operator), whatever [device] reboot says. -ENOENT when none is due. */
int device_reboot_now(struct daemon *d, struct perr *err);
/* Installs the release directory or bundle at path (`shoal install PATH`):
 * checked as the installer checks any release, and as the swarm checks
 * an offered one (newer than every release held; a fetch of an older
 * release stops for it, a fetch of one as new or newer makes it -EBUSY);
 * then written into the inactive slot (local reuse first) and hashed off
 * the loop, post-install hooks, mark-trial, served to peers, and the
 * reboot as reboot (REBOOT_NOW, REBOOT_NONE, -1: [device] reboot) says.
 * Returns at once: 0 and *ret (the reply: "id" to follow it with
 * device_install_progress, "release", "version", "counter", "slot") when
 * it started; else the refusal (-EPERM, -EKEYREJECTED, ...) or -EBUSY,
 * err says why, and nothing was touched. */
int device_install_path(struct daemon *d, const char *path, int reboot, json_t **ret, struct perr *err);
/* Install id while it runs: {"running": true, "phase", "done", "total"};
 * after it: {"running": false, "installed", "phase", "error", "errno",
 * "bytes_*", "rebooting"}; "ok": false for an id it does not know. */
json_t *device_install_progress(struct daemon *d, uint64_t id);
/* verb "mark-good", "mark-bad" or "rollback" on the installer, then the
 * daemon follows: the refused release is no longer served (nor fetched),
 * a reboot into the other slot follows reboot (as for
 * device_install_path). Errors as installer_mark_good & co.; -EBUSY
 * while an install runs. */
struct boot_check_result;
int device_judge(struct daemon *d, const char *verb, int reboot, struct boot_check_result *res, struct perr *err);
/* reboot-command ran (the device is going down). */
bool device_rebooting(struct daemon *d);
/* The install side of the device, for status and reports:
 *   {"system_conf", "install": "auto"|"manual", "reboot": "now"|...,
 *    "booted": "A", "inactive": "B",
 *    "state": "idle"|"fetched"|"installing"|"reboot-pending"|"rebooting"|"off",
 *    "phase": install phase name, "release", "version", "counter",
 *    "boot_check": {"outcome", "version", "report"},
 *    "last": {"result", "version", "detail", "bytes_reused", "verify_ms"},
 *    "error": why installs are off (only then)} */
json_t *device_status_json(struct daemon *d);
