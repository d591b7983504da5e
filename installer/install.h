/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The A/B install flow, shared by `shoal install`, shoald and the
 * simulator. Every step is a named phase persisted (synchronous=FULL)
 * before its work starts, so that an interrupted install resumes or is
 * cleanly abandoned:
 *
 *   verify -> pre-install -> write -> verify-slot -> post-install ->
 *   mark-trial -> reboot-pending || (next boot) health -> commit | rollback
 *
 * The bootloader is switched only after the slot is written, synced and
 * its whole-image hash checked; the counter floor is raised durably before
 * the bootloader commit and before commit is reported. A release is
 * refused from then on only for its own faults (unhealthy, a commit hook
 * said no, the new slot never booted); a failure that is not its fault
 * (disk full, a corrupt copy of the bundle, a pre-install hook) abandons
 * the install and leaves the release installable.
 *
 * Fault injection: SHOAL_INSTALLER_CRASH_AT=<phase> makes the process
 * _exit(137) right after that phase is persisted (the kill sweep). */
#pragma once

#include "bootloader.h"
#include "manifest.h"
#include "state.h"
#include "sysconf.h"

enum install_phase {
	PHASE_NONE = 0,
	PHASE_VERIFY,
	PHASE_PRE_INSTALL,
	PHASE_WRITE,
	PHASE_VERIFY_SLOT,
	PHASE_POST_INSTALL,
	PHASE_MARK_TRIAL,
	PHASE_REBOOT_PENDING,
	PHASE_HEALTH,
	PHASE_COMMIT,
	PHASE_ROLLBACK,
	PHASE__MAX,
};

/* "verify", "pre-install", ... ; "none" for PHASE_NONE. */
const char *install_phase_name(enum install_phase p);
/* PHASE_NONE when s names no phase. */
enum install_phase install_phase_from_name(const char *s);

/* What the caller wants to hear about; every member may be NULL. */
struct installer_opts {
	/* bytes of the image settled so far in the current phase */
	void (*progress)(void *ud, enum install_phase phase, uint64_t done, uint64_t total);
	/* one line for a person: what happened and why */
	void (*log)(void *ud, int level, const char *msg);
	/* the install entered phase (recorded; its work starts now) */
	void (*phase)(void *ud, enum install_phase phase);
	void *ud;
	/* root public key files added to [system] trust */
	const char *const *extra_trust;
	size_t n_extra_trust;
};

struct installer;

/* Opens the state database (creating it) in sc->state_dir and the
 * bootloader backend. sc must outlive the installer. */
int installer_open(const struct sysconf *sc, const struct installer_opts *o, struct installer **ret,
		   struct perr *err);
void installer_free(struct installer *in);
static inline void installer_freep(struct installer **in)
{
	installer_free(*in);
}
/* Takes the lock (install.lock in the state directory) now rather than at
 * the first install: shoald holds it from its start, so that no `shoal
 * --no-daemon` writes a slot under it. -EBUSY when another holds it. */
int installer_lock(struct installer *in, struct perr *err);
/* The database connection it uses (owned by the installer). A connection
 * serves one thread at a time: a caller that runs installer steps on
 * another thread keeps its own connection for itself (shoald does). */
struct state *installer_state(struct installer *in);
/* Safe from any thread, for a shutdown: a pre-install or post-install hook
 * running on another thread is killed (with its process group) and its
 * step returns -EINTR at once, leaving the install in its phase as a
 * power cut would (the next installer_boot_check abandons it as cut
 * short); every later such hook does the same. Nothing else is cut short:
 * not a write, a hash, a bootloader switch, nor commit or rollback hooks.
 * The callbacks of installer_opts are called from the thread that runs
 * the step. */
void installer_cancel(struct installer *in);

struct install_result {
	uint8_t release[HASH_SIZE];
	char version[MANIFEST_VERSION_MAX + 1];
	uint64_t counter;
	int slot;                 /* the slot written */
	enum install_phase phase; /* where it stopped: reboot-pending on success */
	uint64_t image_size;
	uint64_t bytes_reused;    /* copied from the active slot */
	uint64_t bytes_in_slot;   /* already right in the target (a resumed install) */
	uint64_t bytes_read;      /* read from the release source (each distinct chunk once) */
	bool rebooting;           /* reboot-command was run */
};

/* Installs a release directory or bundle into the inactive slot and sets
 * a trial boot of it. reboot: REBOOT_NOW runs reboot-command at the end,
 * REBOOT_NONE leaves it pending, -1 follows [system] reboot. Errors:
 * -EPERM refused by policy (product, counter below the floor, refused
 * before), -EFBIG does not fit the slot, -EKEYREJECTED & co. signature
 * and trust, -EILSEQ/-EBADMSG corrupt source or slot, -ECANCELED a hook
 * said no, -EBUSY another install is pending; res (may be NULL) is filled
 * as far as it got. */
int installer_install(struct installer *in, const char *source, int reboot, struct install_result *res,
		      struct perr *err);

/* installer_install in steps, for a caller that keeps the long parts off
 * its event loop (shoald installing a bundle it was handed):
 *   open:    the lock, the booted slot, a sound environment, the source
 *            opened and verified as installer_install does (a newer
 *            keyring [system] trust vouches for is stored); nothing else
 *            changes, so the caller may still say no. An update module's
 *            payload is only opened (installer_job_is_module).
 *   begin:   the install recorded, pre-install hooks, the running slot kept
 *            primary, phase write; the target opened for writing.
 *   write:   local reuse from the active slot, then the rest from the
 *            source, synced. Touches no state: any thread.
 *   written: on the caller's thread: k (what write returned) < 0 abandons
 *            the install, else phase verify-slot.
 *   hash:    the whole slot hashed. Any thread.
 *   finish:  on the caller's thread: k (what hash returned), the hash
 *            against the manifest, post-install hooks, mark-trial, the
 *            reboot as for installer_install.
 * res (given to open) is filled as each step gets on; errors as
 * installer_install. The job holds the source and the target open. */
struct installer_job;
int installer_job_open(struct installer *in, const char *source, struct install_result *res,
		       struct installer_job **ret, struct perr *err);
bool installer_job_is_module(const struct installer_job *j);
/* The release's manifest and its canonical bytes (their hash is the id). */
const struct manifest *installer_job_manifest(const struct installer_job *j, const uint8_t **ret_bytes,
					      size_t *ret_len);
int installer_job_begin(struct installer_job *j, struct perr *err);
int installer_job_write(struct installer_job *j, struct perr *err);
int installer_job_written(struct installer_job *j, int k, struct perr *err);
int installer_job_hash(struct installer_job *j, struct perr *err);
int installer_job_finish(struct installer_job *j, int k, int reboot, struct perr *err);
void installer_job_free(struct installer_job *j);
static inline void installer_job_freep(struct installer_job **j)
{
	installer_job_free(*j);
}

/* ---- a release shoald fetched straight into the inactive slot ---- */

/* The slot a fetch writes into (the one not booted), opened O_RDWR
 * (O_RDONLY without claim: to learn its size); its size in *ret_size. claim: the fetch is about to write, so the slot is
 * recorded as "writing" (durably: its old release is gone from then on)
 * and an install interrupted before its trial is abandoned. -EBUSY when
 * an install waits for or is in its trial boot (the inactive slot holds
 * it). Returns the fd (caller closes). */
int installer_fetch_target(struct installer *in, bool claim, int *ret_slot, uint64_t *ret_size, struct perr *err);

struct installer_fetched {
	const uint8_t *manifest; /* canonical bytes; their BLAKE2b is the release id */
	size_t manifest_len;
	const uint8_t *keyring;  /* a keyring that came with it (may be NULL: the stored one) */
	size_t keyring_len;
	const char *source;      /* for the record and SHOAL_SOURCE (NULL: "fetched") */
};

/* The install of an image already in the inactive slot, in the phases of
 * installer_install without the write:
 *   begin:  verify (trust, floors, refused, fits the slot), pre-install
 *           hooks; leaves the install in phase verify-slot.
 *   hash:   installer_slot_hash reads only the slot (no state, no
 *           callbacks): run it on any thread, e.g. off an event loop.
 *   finish: the hash against the manifest, post-install hooks, mark-trial,
 *           then reboot as for installer_install.
 * installer_install_fetched does all three. Errors as installer_install;
 * finish is -ENOENT when no install waits in verify-slot; hash NULL means
 * the slot could not be read (err, filled by the caller, says why): the
 * install is abandoned. */
int installer_fetched_begin(struct installer *in, const struct installer_fetched *f, struct install_result *res,
			    struct perr *err);
int installer_slot_hash(struct installer *in, int slot, uint64_t size, uint8_t out[HASH_SIZE], struct perr *err);
int installer_fetched_finish(struct installer *in, const uint8_t hash[HASH_SIZE], int reboot, struct install_result *res,
			     struct perr *err);
int installer_install_fetched(struct installer *in, const struct installer_fetched *f, int reboot,
			      struct install_result *res, struct perr *err);

/* Runs [system] reboot-command (the reboot an install left pending). */
int installer_reboot(struct installer *in, bool *rebooting, struct perr *err);

enum boot_check_outcome {
	BOOT_CHECK_NOTHING = 0,     /* no install pending */
	BOOT_CHECK_REBOOT_PENDING,  /* a trial is set; this boot is still the old one */
	BOOT_CHECK_COMMITTED,       /* healthy: the new slot is permanent */
	BOOT_CHECK_ROLLED_BACK,     /* unhealthy or refused by a commit hook: switched back */
	BOOT_CHECK_FELL_BACK,       /* the bootloader gave up on the new slot */
	BOOT_CHECK_ABANDONED,       /* an install interrupted before the trial was set */
};
const char *boot_check_outcome_name(enum boot_check_outcome o);

struct boot_check_result {
	enum boot_check_outcome outcome;
	char version[MANIFEST_VERSION_MAX + 1];
	uint64_t counter;
	int booted;
	char report[4096]; /* what the health checks and hooks said */
	bool rebooting;
	bool interrupted; /* ABANDONED: an install cut short (a crash, a power
			   * cut) before the switch: nothing was wrong with it */
};

/* What runs at every start (shoald, a systemd unit, `shoal boot-check`):
 * looks at the pending install and the slot that booted, and finishes it:
 * health checks and commit or rollback on a trial boot, notice a fallback,
 * abandon an install cut short before the trial. Idempotent. reboot as
 * for installer_install (a rollback reboots into the old slot). */
int installer_boot_check(struct installer *in, int reboot, struct boot_check_result *res, struct perr *err);

/* The operator's word on a trial boot: mark-good commits without health
 * checks (commit hooks still run), mark-bad rolls back and refuses the
 * release. -ENOENT when no trial of the booted slot is pending. */
int installer_mark_good(struct installer *in, struct boot_check_result *res, struct perr *err);
int installer_mark_bad(struct installer *in, int reboot, struct boot_check_result *res, struct perr *err);

/* Goes back to the other slot: during a trial it is mark-bad; with an
 * install waiting for its reboot it cancels the trial (the release is not
 * refused), or, after a boot into the old slot, handles the fallback as
 * boot-check does; with no install pending it makes the other slot primary
 * when it is "good" (booted and passed its health checks). */
int installer_rollback(struct installer *in, int reboot, struct boot_check_result *res, struct perr *err);

struct installer_status {
	int booted;                     /* slot index, -1 unknown */
	char booted_error[256];
	bool env_ok;
	struct boot_env env;
	char env_error[256];
	bool slot_known[SYSCONF_SLOTS];
	struct state_slot slots[SYSCONF_SLOTS]; /* manifests not filled */
	bool pending;
	struct state_install install;   /* manifest not filled */
	uint64_t floor_counter, floor_keyring, floor_time;
};
int installer_status(struct installer *in, struct installer_status *ret, struct perr *err);
