/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The interface, U-Boot's bootcount scheme (shared by the uboot and file
 * backends), booted-slot detection and the boot simulator. */
#include <ctype.h>
#include <limits.h>
#include <stdio.h>

#include "bootloader.h"
#include "fileio.h"

const char *env_get(const struct env_vars *e, const char *name)
{
	for (size_t i = 0; i < e->n; i++)
		if (!strcmp(e->v[i].name, name))
			return e->v[i].value;
	return NULL;
}

int env_set(struct env_vars *e, const char *name, const char *value)
{
	size_t i;

	if (strlen(name) >= ENV_NAME_MAX || strlen(value) >= ENV_VALUE_MAX)
		return -ENAMETOOLONG;
	for (i = 0; i < e->n; i++)
		if (!strcmp(e->v[i].name, name))
			break;
	if (i == e->n) {
		if (e->n >= ENV_MAX_VARS)
			return -E2BIG;
		e->n++;
		snprintf(e->v[i].name, ENV_NAME_MAX, "%s", name);
		e->v[i].value[0] = '\0';
		e->v[i].dirty = false;
	}
	if (strcmp(e->v[i].value, value) != 0 || !e->v[i].dirty) {
		snprintf(e->v[i].value, ENV_VALUE_MAX, "%s", value);
		e->v[i].dirty = true;
	}
	return 0;
}

static int env_load(struct bootloader *b, struct env_vars *e, struct perr *err)
{
	memset(e, 0, sizeof(*e));
	return b->env->load(b, e, err);
}

static int parse_count(const char *s, unsigned *ret)
{
	char *end;
	unsigned long v;

	if (!s || !*s) {
		*ret = 0;
		return 0;
	}
	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v > 1000000)
		return -EINVAL;
	*ret = (unsigned)v;
	return 0;
}

static int other_slot(int slot)
{
	return slot ? 0 : 1;
}

/* ---- U-Boot's scheme: shoal_slot, upgrade_available, bootcount, bootlimit ---- */

static int uboot_read(struct bootloader *b, struct boot_env *ret, struct perr *err)
{
	struct env_vars e;
	const char *slot, *ua;
	int k;

	if ((k = env_load(b, &e, err)) < 0)
		return k;
	slot = env_get(&e, "shoal_slot");
	ua = env_get(&e, "upgrade_available");
	*ret = (struct boot_env){ .primary = -1, .bootlimit = b->bootlimit };
	if (slot && (ret->primary = sysconf_slot_by_bootname(b->sc, slot)) < 0)
		return perr_set(err, -EUCLEAN, "%s: shoal_slot=%s is not the bootname of a slot", b->env_path, slot);
	if (!slot)
		ret->primary = -1;
	ret->trial = ua && !strcmp(ua, "1");
	if (parse_count(env_get(&e, "bootcount"), &ret->bootcount) < 0 ||
	    parse_count(env_get(&e, "bootlimit"), &ret->bootlimit) < 0)
		return perr_set(err, -EUCLEAN, "%s: bootcount or bootlimit is not a number", b->env_path);
	if (!env_get(&e, "bootlimit"))
		ret->bootlimit = b->bootlimit;
	return 0;
}

static int uboot_switch(struct bootloader *b, int slot, bool trial, struct perr *err)
{
	struct env_vars e;
	char lim[16];
	int k;

	if ((k = env_load(b, &e, err)) < 0)
		return k;
	snprintf(lim, sizeof(lim), "%u", b->bootlimit);
	if (env_set(&e, "shoal_slot", b->sc->slots[slot].bootname) < 0 ||
	    env_set(&e, "upgrade_available", trial ? "1" : "0") < 0 || env_set(&e, "bootcount", "0") < 0 ||
	    env_set(&e, "bootlimit", lim) < 0)
		return perr_set(err, -E2BIG, "%s: too many variables", b->env_path);
	return b->env->store(b, &e, err);
}

static int uboot_set_trial(struct bootloader *b, int slot, struct perr *err)
{
	return uboot_switch(b, slot, true, err);
}

static int uboot_commit(struct bootloader *b, int slot, struct perr *err)
{
	return uboot_switch(b, slot, false, err);
}

static int uboot_mark_bad(struct bootloader *b, int slot, struct perr *err)
{
	return uboot_switch(b, other_slot(slot), false, err);
}

/* U-Boot with CONFIG_BOOTCOUNT_ENV: while upgrade_available=1 every boot
 * increments bootcount (saved); past bootlimit it runs altbootcmd instead
 * of bootcmd, and ours switches to the other slot for good. */
static int uboot_power_on(struct bootloader *b, int *ret_slot, struct perr *err)
{
	struct boot_env be;
	struct env_vars e;
	char cnt[16];
	int k, slot;

	if ((k = uboot_read(b, &be, err)) < 0 || (k = env_load(b, &e, err)) < 0)
		return k;
	slot = be.primary < 0 ? 0 : be.primary;
	if (be.trial) {
		be.bootcount++;
		snprintf(cnt, sizeof(cnt), "%u", be.bootcount);
		if (env_set(&e, "bootcount", cnt) < 0)
			return perr_set(err, -E2BIG, "%s: too many variables", b->env_path);
		if (be.bootcount > be.bootlimit) {
			/* altbootcmd */
			slot = other_slot(slot);
			if (env_set(&e, "shoal_slot", b->sc->slots[slot].bootname) < 0 ||
			    env_set(&e, "upgrade_available", "0") < 0 || env_set(&e, "bootcount", "0") < 0)
				return perr_set(err, -E2BIG, "%s: too many variables", b->env_path);
		}
		if ((k = b->env->store(b, &e, err)) < 0)
			return k;
	}
	*ret_slot = slot;
	return 0;
}

static const struct bootloader_ops uboot_scheme = {
	.name = "uboot",
	.read = uboot_read,
	.set_trial = uboot_set_trial,
	.commit = uboot_commit,
	.mark_bad = uboot_mark_bad,
	.power_on = uboot_power_on,
};

static const struct bootloader_ops file_scheme = {
	.name = "file",
	.read = uboot_read,
	.set_trial = uboot_set_trial,
	.commit = uboot_commit,
	.mark_bad = uboot_mark_bad,
	.power_on = uboot_power_on,
};

int bootloader_open(const struct sysconf *sc, struct bootloader **ret, struct perr *err)
{
	struct bootloader *b = calloc(1, sizeof(*b));

	if (!b)
		return perr_set(err, -ENOMEM, "out of memory");
	b->sc = sc;
	switch (sc->bootloader) {
	case BOOTLOADER_UBOOT:
		b->ops = &uboot_scheme;
		b->env = &env_uboot_ops;
		b->bootlimit = sc->uboot_bootlimit;
		b->env_path = sc->fw_env_config;
		break;
	case BOOTLOADER_FILE:
		b->ops = &file_scheme;
		b->env = &env_file_ops;
		b->bootlimit = sc->file_bootlimit;
		b->env_path = sc->file_env;
		break;
	case BOOTLOADER_GRUB:
		b->ops = &bootloader_grub_scheme;
		b->env = &env_grub_ops;
		b->bootlimit = 1;
		b->env_path = sc->grubenv;
		break;
	default:
		free(b);
		return perr_set(err, -EINVAL, "no bootloader configured");
	}
	*ret = b;
	return 0;
}

void bootloader_free(struct bootloader *b)
{
	free(b);
}

const struct bootloader_ops *bootloader_ops(const struct bootloader *b)
{
	return b->ops;
}

static int check_slot(struct bootloader *b, int slot, struct perr *err)
{
	if (slot < 0 || slot >= SYSCONF_SLOTS)
		return perr_set(err, -EINVAL, "%s: no slot %d", b->env_path, slot);
	return 0;
}

int bootloader_read(struct bootloader *b, struct boot_env *ret, struct perr *err)
{
	return b->ops->read(b, ret, err);
}

int bootloader_set_trial(struct bootloader *b, int slot, struct perr *err)
{
	int k = check_slot(b, slot, err);

	return k < 0 ? k : b->ops->set_trial(b, slot, err);
}

int bootloader_commit(struct bootloader *b, int slot, struct perr *err)
{
	int k = check_slot(b, slot, err);

	return k < 0 ? k : b->ops->commit(b, slot, err);
}

int bootloader_mark_bad(struct bootloader *b, int slot, struct perr *err)
{
	int k = check_slot(b, slot, err);

	return k < 0 ? k : b->ops->mark_bad(b, slot, err);
}

/* ---- which slot runs ---- */

static int cmdline_slot(const struct sysconf *sc, const char *text, int *ret)
{
	static const char *const keys[] = { "shoal.slot=", "rauc.slot=" };
	const char *p = text;

	while (*p) {
		char tok[PATH_MAX];
		size_t n = strcspn(p, " \t\n");

		if (n && n < sizeof(tok)) {
			memcpy(tok, p, n);
			tok[n] = '\0';
			for (size_t i = 0; i < ELEMENTSOF(keys); i++)
				if (!strncmp(tok, keys[i], strlen(keys[i])) &&
				    (*ret = sysconf_slot_by_bootname(sc, tok + strlen(keys[i]))) >= 0)
					return 0;
			if (!strncmp(tok, "root=", 5))
				for (int s = 0; s < SYSCONF_SLOTS; s++)
					if (!strcmp(tok + 5, sc->slots[s].device)) {
						*ret = s;
						return 0;
					}
		}
		p += n;
		p += strspn(p, " \t\n");
	}
	return -ENOENT;
}

int boot_booted_slot(const struct sysconf *sc, int *ret_slot, char *boot_id, size_t boot_id_size, struct perr *err)
{
	_cleanup_(freep) uint8_t *buf = NULL;
	size_t len;
	int k, slot;

	if (boot_id_size)
		boot_id[0] = '\0';
	if (sc->boot_slot_file) {
		struct env_vars e = { 0 };
		const char *name, *id;

		if ((k = read_file(sc->boot_slot_file, 4096, &buf, &len, err)) < 0)
			return k == -ENOENT ? perr_set(err, -ENOENT, "%s: no boot recorded yet (run the boot simulator)",
						       sc->boot_slot_file) : k;
		if ((k = env_parse_lines(sc->boot_slot_file, (char *)buf, &e, err)) < 0)
			return k;
		name = env_get(&e, "slot");
		id = env_get(&e, "boot_id");
		if (!name || (slot = sysconf_slot_by_bootname(sc, name)) < 0)
			return perr_set(err, -EUCLEAN, "%s: slot=%s is not the bootname of a slot", sc->boot_slot_file,
					name ? name : "(missing)");
		if (boot_id_size)
			snprintf(boot_id, boot_id_size, "sim-%s", id ? id : "0");
		if (sc->booted_slot && sysconf_slot_by_bootname(sc, sc->booted_slot) != slot)
			return perr_set(err, -EUCLEAN, "[system] booted-slot = %s, but %s says slot %s booted: refusing "
					"to guess which slot runs", sc->booted_slot, sc->boot_slot_file, name);
	} else {
		/* the command line is what the bootloader really booted: a fixed
		 * booted-slot only stands in where it says nothing, and one that
		 * contradicts it would send the install into the running root */
		struct perr e = { "" };
		int fixed = sc->booted_slot ? sysconf_slot_by_bootname(sc, sc->booted_slot) : -1;

		if ((k = read_file(sc->cmdline, 65536, &buf, &len, &e)) == 0 && cmdline_slot(sc, (char *)buf, &slot) == 0) {
			if (fixed >= 0 && fixed != slot)
				return perr_set(err, -EUCLEAN, "[system] booted-slot = %s in %s, but %s says slot %s booted: "
						"refusing to guess which slot runs", sc->booted_slot,
						sc->path ? sc->path : "system.conf", sc->cmdline, sc->slots[slot].bootname);
		} else if (fixed >= 0) {
			slot = fixed;
		} else if (k < 0) {
			return perr_set(err, k, "%s", e.msg);
		} else {
			return perr_set(err, -ENOENT, "%s names no slot: add shoal.slot=BOOTNAME (or rauc.slot=, or a "
					"root= naming a slot device) to the kernel command line", sc->cmdline);
		}
		free(TAKE_PTR(buf));
		if (boot_id_size && read_file("/proc/sys/kernel/random/boot_id", 256, &buf, &len, NULL) == 0) {
			buf[strcspn((char *)buf, "\n")] = '\0';
			snprintf(boot_id, boot_id_size, "%s", (char *)buf);
		}
	}
	*ret_slot = slot;
	return 0;
}

int bootsim_power_on(const struct sysconf *sc, int *ret_slot, struct perr *err)
{
	_cleanup_(bootloader_freep) struct bootloader *b = NULL;
	_cleanup_(freep) uint8_t *buf = NULL;
	unsigned long long boot = 0;
	char rec[128];
	size_t len;
	int k, slot;

	if (!sc->boot_slot_file)
		return perr_set(err, -EINVAL, "the boot simulator needs [system] boot-slot-file in %s",
				sc->path ? sc->path : "system.conf");
	if (read_file(sc->boot_slot_file, 4096, &buf, &len, NULL) == 0) {
		struct env_vars e = { 0 };
		const char *id;

		if (env_parse_lines(sc->boot_slot_file, (char *)buf, &e, NULL) == 0 && (id = env_get(&e, "boot_id")))
			boot = strtoull(id, NULL, 10);
	}
	if ((k = bootloader_open(sc, &b, err)) < 0 || (k = b->ops->power_on(b, &slot, err)) < 0)
		return k;
	snprintf(rec, sizeof(rec), "slot=%s\nboot_id=%llu\n", sc->slots[slot].bootname, boot + 1);
	if ((k = write_file_atomic(sc->boot_slot_file, rec, strlen(rec), 0644, err)) < 0)
		return k;
	*ret_slot = slot;
	return 0;
}
