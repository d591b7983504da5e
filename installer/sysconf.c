/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <ctype.h>
#include <stdio.h>

#include "sysconf.h"

static const char *const bootloader_names[] = { "uboot", "grub", "file", NULL };
static const int bootloader_values[] = { BOOTLOADER_UBOOT, BOOTLOADER_GRUB, BOOTLOADER_FILE };
static const char *const reboot_names[] = { "now", "none", NULL };
static const int reboot_values[] = { REBOOT_NOW, REBOOT_NONE };

#define K(sec, key, t, field, lo, hi) { sec, key, CONF_##t, offsetof(struct sysconf, field), lo, hi, NULL, NULL }
#define E(sec, key, field, n, v) { sec, key, CONF_ENUM, offsetof(struct sysconf, field), 0, 0, n, v }

/* Keep in step with docs/configuration.md, "System configuration". */
static const struct conf_key keys[] = {
	K("system", "product", STR, product, 0, 0),
	E("system", "bootloader", bootloader, bootloader_names, bootloader_values),
	K("system", "state-dir", STR, state_dir, 0, 0),
	K("system", "hooks-dir", STR, hooks_dir, 0, 0),
	K("system", "health-dir", STR, health_dir, 0, 0),
	K("system", "health-timeout", DURATION, health_timeout_ms, 100, 3600000),
	K("system", "hook-timeout", DURATION, hook_timeout_ms, 100, 3600000),
	K("system", "reboot-command", STR, reboot_command, 0, 0),
	E("system", "reboot", reboot, reboot_names, reboot_values),
	K("system", "trust", LIST, trust, 0, 0),
	K("system", "booted-slot", STR, booted_slot, 0, 0),
	K("system", "boot-slot-file", STR, boot_slot_file, 0, 0),
	K("system", "cmdline", STR, cmdline, 0, 0),
	K("system", "store-dir", STR, store_dir, 0, 0),
	K("system", "modules-dir", STR, modules_dir, 0, 0),
	K("system", "module-timeout", DURATION, module_timeout_ms, 100, 86400000),
	K("uboot", "fw-env-config", STR, fw_env_config, 0, 0),
	K("uboot", "bootlimit", U32, uboot_bootlimit, 1, 100),
	K("grub", "grubenv", STR, grubenv, 0, 0),
	K("grub", "grub-editenv", STR, grub_editenv, 0, 0),
	K("file", "env", STR, file_env, 0, 0),
	K("file", "bootlimit", U32, file_bootlimit, 1, 100),
	K("slot.rootfs.0", "device", STR, slots[0].device, 0, 0),
	K("slot.rootfs.0", "bootname", STR, slots[0].bootname, 0, 0),
	K("slot.rootfs.1", "device", STR, slots[1].device, 0, 0),
	K("slot.rootfs.1", "bootname", STR, slots[1].bootname, 0, 0),
};

const char *bootloader_kind_name(int kind)
{
	return kind >= BOOTLOADER_UBOOT && kind <= BOOTLOADER_FILE ? bootloader_names[kind - 1] : "none";
}

const char *sysconf_path(const char *path)
{
	const char *e = getenv(SYSCONF_ENV);

	return path ? path : e && *e ? e : SYSCONF_DEFAULT;
}

static bool bootname_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > SYSCONF_BOOTNAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-')
			return false;
	return true;
}

static int handler(void *user, const char *section, const char *name, const char *value, struct perr *err)
{
	struct sysconf *sc = user;
	int k;

	if (!strncmp(section, "slot.", 5) && strcmp(section, "slot.rootfs.0") && strcmp(section, "slot.rootfs.1"))
		return perr_set(err, -EINVAL, "unknown slot [%s]: shoal has two, [slot.rootfs.0] and [slot.rootfs.1]",
				section);
	if ((k = conf_keys_apply(sc, keys, ELEMENTSOF(keys), section, name, value, err)) < 0)
		return k;
	if (!strcmp(name, "bootname") && !bootname_ok(value))
		return perr_set(err, -EINVAL, "bootname wants 1 to %d letters, digits, '-' or '_', not '%s'",
				SYSCONF_BOOTNAME_MAX, value);
	if (!strcmp(name, "reboot-command") && strchr(value, '\n'))
		return perr_set(err, -EINVAL, "reboot-command must be one line");
	return 0;
}

void sysconf_free(struct sysconf *sc)
{
	if (!sc)
		return;
	conf_keys_free(sc, keys, ELEMENTSOF(keys));
	free(sc->path);
	free(sc);
}

static int defaults(struct sysconf *sc)
{
	sc->health_timeout_ms = 60000;
	sc->hook_timeout_ms = 60000;
	sc->module_timeout_ms = 3600000;
	sc->uboot_bootlimit = 3;
	sc->file_bootlimit = 3;
	sc->reboot = REBOOT_NOW;
	if (conf_set_str(&sc->state_dir, "/var/lib/shoal") < 0 || conf_set_str(&sc->hooks_dir, "/etc/shoal/hooks.d") < 0 ||
	    conf_set_str(&sc->health_dir, "/etc/shoal/health.d") < 0 ||
	    conf_set_str(&sc->reboot_command, "systemctl reboot") < 0 || conf_set_str(&sc->cmdline, "/proc/cmdline") < 0 ||
	    conf_set_str(&sc->modules_dir, SYSCONF_MODULES_DIR) < 0 ||
	    conf_set_str(&sc->fw_env_config, "/etc/fw_env.config") < 0 ||
	    conf_set_str(&sc->grubenv, "/boot/grub/grubenv") < 0 || conf_set_str(&sc->grub_editenv, "grub-editenv") < 0)
		return -ENOMEM;
	return 0;
}

int sysconf_check(const struct sysconf *sc, struct perr *err)
{
	const char *p = sc->path ? sc->path : "system.conf";

	if (!sc->product)
		return perr_set(err, -EINVAL, "%s: [system] product is required: the device only installs releases for it", p);
	if (sc->bootloader == BOOTLOADER_NONE)
		return perr_set(err, -EINVAL, "%s: [system] bootloader is required (uboot, grub or file)", p);
	if (sc->bootloader == BOOTLOADER_FILE && !sc->file_env)
		return perr_set(err, -EINVAL, "%s: [file] env is required with bootloader = file", p);
	for (int i = 0; i < SYSCONF_SLOTS; i++) {
		if (!sc->slots[i].device || !sc->slots[i].bootname)
			return perr_set(err, -EINVAL, "%s: [slot.rootfs.%d] needs device and bootname", p, i);
	}
	if (!strcmp(sc->slots[0].device, sc->slots[1].device))
		return perr_set(err, -EINVAL, "%s: both slots name the device %s", p, sc->slots[0].device);
	if (!strcmp(sc->slots[0].bootname, sc->slots[1].bootname))
		return perr_set(err, -EINVAL, "%s: both slots have the bootname %s", p, sc->slots[0].bootname);
	if (sc->booted_slot && sysconf_slot_by_bootname(sc, sc->booted_slot) < 0)
		return perr_set(err, -EINVAL, "%s: booted-slot %s is not the bootname of a slot", p, sc->booted_slot);
	return 0;
}

int sysconf_load(const char *path, struct sysconf **ret, struct perr *err)
{
	_cleanup_(sysconf_freep) struct sysconf *sc = calloc(1, sizeof(*sc));
	int k;

	if (!sc || defaults(sc) < 0 || !(sc->path = strdup(path)))
		return perr_set(err, -ENOMEM, "out of memory");
	if ((k = conf_ini_load(path, handler, sc, err)) < 0 || (k = sysconf_check(sc, err)) < 0)
		return k;
	*ret = TAKE_PTR(sc);
	return 0;
}

int sysconf_slot_by_bootname(const struct sysconf *sc, const char *bootname)
{
	for (int i = 0; i < SYSCONF_SLOTS; i++)
		if (sc->slots[i].bootname && !strcmp(sc->slots[i].bootname, bootname))
			return i;
	return -ENOENT;
}
