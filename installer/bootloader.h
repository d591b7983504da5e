/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Bootloader backends behind one small interface. Every backend keeps the
 * same meaning: one slot is primary (booted first); a trial marks the
 * primary slot for a limited number of boots; committing makes it
 * permanent; when the trial runs out, the bootloader itself falls back to
 * the other slot.
 *
 *   uboot  U-Boot environment through libubootenv (fw_env.config), with
 *          U-Boot's bootcount/bootlimit/altbootcmd: shoal_slot = primary
 *          bootname, upgrade_available = 1 during a trial, bootcount,
 *          bootlimit. altbootcmd (see docs/operations.md) switches
 *          shoal_slot to the other slot and clears upgrade_available.
 *   file   the same variables in a key=value file replaced atomically,
 *          for tests and the simulator.
 *   grub   a grubenv edited with grub-editenv on a copy that replaces the
 *          original atomically: ORDER, A_OK/B_OK, A_TRY/B_TRY in RAUC's
 *          scheme, plus SHOAL_TRIAL naming the slot on trial (one try).
 *
 * Every change is one atomic replacement of the environment: a torn write
 * leaves the old or the new one (libubootenv writes the redundant copy). */
#pragma once

#include "sysconf.h"

struct boot_env {
	int primary;        /* slot index booted first; -1 when the environment names none */
	bool trial;         /* a trial of primary is pending */
	unsigned bootcount; /* boots counted during that trial */
	unsigned bootlimit; /* boots allowed before falling back */
};

struct bootloader;

struct bootloader_ops {
	const char *name;
	int (*read)(struct bootloader *b, struct boot_env *ret, struct perr *err);
	/* primary = slot, trial pending, bootcount 0 */
	int (*set_trial)(struct bootloader *b, int slot, struct perr *err);
	/* primary = slot, no trial */
	int (*commit)(struct bootloader *b, int slot, struct perr *err);
	/* never boot slot again until a new install: primary = the other, no trial */
	int (*mark_bad)(struct bootloader *b, int slot, struct perr *err);
	/* What the firmware does at power-on (the boot simulator): count a
	 * trial boot, fall back once the limit is passed, and say which slot
	 * it boots. */
	int (*power_on)(struct bootloader *b, int *ret_slot, struct perr *err);
};

/* Opens the backend the system config names. Nothing is read or written
 * until an operation is called. Free with bootloader_free. */
int bootloader_open(const struct sysconf *sc, struct bootloader **ret, struct perr *err);
void bootloader_free(struct bootloader *b);
static inline void bootloader_freep(struct bootloader **b)
{
	bootloader_free(*b);
}
const struct bootloader_ops *bootloader_ops(const struct bootloader *b);

int bootloader_read(struct bootloader *b, struct boot_env *ret, struct perr *err);
int bootloader_set_trial(struct bootloader *b, int slot, struct perr *err);
int bootloader_commit(struct bootloader *b, int slot, struct perr *err);
int bootloader_mark_bad(struct bootloader *b, int slot, struct perr *err);

/* Which slot is running, and an id of this boot (changes at every boot):
 *   [system] boot-slot-file when set (written by the boot simulator, which
 *     stands in for the kernel command line): slot=NAME and boot_id=N lines;
 *   else the kernel command line ([system] cmdline, /proc/cmdline):
 *     shoal.slot=NAME or rauc.slot=NAME, or root= naming a slot's device;
 *     the boot id then comes from /proc/sys/kernel/random/boot_id;
 *   [system] booted-slot only when the command line names no slot (or
 *     cannot be read); when both name a slot and disagree: -EUCLEAN.
 * -ENOENT (err says why) when none of these names a slot. */
int boot_booted_slot(const struct sysconf *sc, int *ret_slot, char *boot_id, size_t boot_id_size,
		     struct perr *err);

/* The boot simulator: applies what the bootloader does at power-on to the
 * configured environment and records the slot it boots in boot-slot-file
 * (with a new boot id), the way a real boot shows in /proc/cmdline.
 * Needs [system] boot-slot-file. *ret_slot is the slot booted. */
int bootsim_power_on(const struct sysconf *sc, int *ret_slot, struct perr *err);

/* ---- backend internals (bootloader-*.c) ---- */

#define ENV_MAX_VARS 64
#define ENV_NAME_MAX 64
#define ENV_VALUE_MAX 256

/* The variables of an environment that shoal reads and changes. */
struct env_vars {
	size_t n;
	struct {
		char name[ENV_NAME_MAX];
		char value[ENV_VALUE_MAX];
		bool dirty;
	} v[ENV_MAX_VARS];
};

/* NULL when unset. */
const char *env_get(const struct env_vars *e, const char *name);
int env_set(struct env_vars *e, const char *name, const char *value);

/* Parses "name=value" lines (blank lines and # comments allowed) into e:
 * the file backend's format and the boot simulator's record. A line that
 * is not name=value is -EUCLEAN "PATH:LINE: ...". */
int env_parse_lines(const char *path, const char *text, struct env_vars *e, struct perr *err);

/* How a backend loads and stores its variables: store writes every dirty
 * one in one atomic replacement. */
struct env_store_ops {
	int (*load)(struct bootloader *b, struct env_vars *ret, struct perr *err);
	int (*store)(struct bootloader *b, const struct env_vars *e, struct perr *err);
};

struct bootloader {
	const struct sysconf *sc;
	const struct bootloader_ops *ops;
	const struct env_store_ops *env;
	unsigned bootlimit;
	const char *env_path; /* for messages */
};

extern const struct env_store_ops env_file_ops;
extern const struct env_store_ops env_uboot_ops;
extern const struct env_store_ops env_grub_ops;
extern const struct bootloader_ops bootloader_grub_scheme;
