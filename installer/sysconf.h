/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The system configuration (/etc/shoal/system.conf, INI): what the device
 * is (product, trusted roots), how it boots (bootloader backend, the two
 * root filesystem slots) and how installs are run (state directory, hooks,
 * health checks, reboot). Read by `shoal install` and shoald alike. Every
 * key is described in docs/configuration.md ("System configuration"); an
 * unknown section or key, or a bad value, is "FILE:LINE: reason". */
#pragma once

#include "confparse.h"

#define SYSCONF_DEFAULT "/etc/shoal/system.conf"
#define SYSCONF_ENV "SHOAL_SYSTEM_CONF"
#define SYSCONF_SLOTS 2
#define SYSCONF_BOOTNAME_MAX 16
#define SYSCONF_MODULES_DIR "/usr/lib/shoal/modules"

enum bootloader_kind {
	BOOTLOADER_NONE = 0,
	BOOTLOADER_UBOOT,
	BOOTLOADER_GRUB,
	BOOTLOADER_FILE,
};

enum reboot_policy {
	REBOOT_NOW = 0, /* run reboot-command once the trial is set */
	REBOOT_NONE,    /* leave the reboot to the operator, a maintenance window or the gateway */
};

struct sysconf_slot {
	char *device;   /* block device or file */
	char *bootname; /* what the bootloader calls it: A, B */
};

struct sysconf {
	char *path;

	/* [system] */
	char *product;
	int bootloader;          /* enum bootloader_kind */
	char *state_dir;         /* default /var/lib/shoal */
	char *hooks_dir;         /* default /etc/shoal/hooks.d */
	char *health_dir;        /* default /etc/shoal/health.d */
	uint64_t health_timeout_ms;
	uint64_t hook_timeout_ms;
	char *reboot_command;    /* default "systemctl reboot", run by /bin/sh -c */
	int reboot;              /* enum reboot_policy */
	struct conf_list trust;  /* root public key files */
	char *booted_slot;       /* the bootname we run from when the command line names none */
	char *boot_slot_file;    /* written by the boot simulator */
	char *cmdline;           /* default /proc/cmdline */
	char *store_dir;         /* a store the built-in health check reads */
	char *modules_dir;       /* update modules, one executable per payload type */
	uint64_t module_timeout_ms;

	/* [uboot] */
	char *fw_env_config;     /* default /etc/fw_env.config */
	uint32_t uboot_bootlimit;
	/* [grub] */
	char *grubenv;           /* default /boot/grub/grubenv */
	char *grub_editenv;      /* default grub-editenv */
	/* [file] */
	char *file_env;
	uint32_t file_bootlimit;

	/* [slot.rootfs.0], [slot.rootfs.1] */
	struct sysconf_slot slots[SYSCONF_SLOTS];
};

/* The path to read: path when given, else $SHOAL_SYSTEM_CONF, else the
 * default. */
const char *sysconf_path(const char *path);

/* Loads and checks (sysconf_check) path. On error, err says
 * "FILE:LINE: reason" or names the missing key; *ret is written only on
 * success. Free with sysconf_free. */
int sysconf_load(const char *path, struct sysconf **ret, struct perr *err);
void sysconf_free(struct sysconf *sc);
static inline void sysconf_freep(struct sysconf **sc)
{
	sysconf_free(*sc);
}

/* Cross-key checks: a product, a bootloader and its environment, two
 * slots with distinct devices and bootnames. */
int sysconf_check(const struct sysconf *sc, struct perr *err);

/* The slot index of a bootname, or -ENOENT. */
int sysconf_slot_by_bootname(const struct sysconf *sc, const char *bootname);
const char *bootloader_kind_name(int kind);
