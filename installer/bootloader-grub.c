/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The grub backend: a grubenv edited with the real grub-editenv. It
 * rewrites the 1 KiB block in place, so shoal edits a copy and renames it
 * over the original (fsync of the file and the directory): a torn write
 * leaves the old or the new block.
 *
 * The scheme is RAUC's (ORDER, <slot>_OK, <slot>_TRY) plus SHOAL_TRIAL:
 * grub.cfg boots the first slot of ORDER whose _OK is 1; when that slot is
 * SHOAL_TRIAL it sets its _TRY to 1 first, and a slot on trial that still
 * has _TRY=1 at the next boot failed its trial: _OK=0, SHOAL_TRIAL is
 * cleared and the next slot of ORDER boots. docs/operations.md has the
 * grub.cfg. */
#include <stdio.h>
#include <unistd.h>

#include "bootloader.h"
#include "fileio.h"
#include "spawn.h"

static int grub_load(struct bootloader *b, struct env_vars *e, struct perr *err)
{
	const char *argv[] = { b->sc->grub_editenv, b->sc->grubenv, "list", NULL };
	struct spawn_result r;
	int k;

	if (access(b->sc->grubenv, R_OK) < 0)
		return perr_set(err, -errno, "bootloader environment: %s: %s", b->sc->grubenv, strerror(errno));
	if ((k = spawn_run(argv, NULL, 30000, NULL, &r, err)) < 0)
		return k;
	if (r.status != 0 || r.truncated) {
		r.output[strcspn(r.output, "\n")] = '\0';
		return perr_set(err, -EUCLEAN, "%s: corrupt environment (%s list: %s)", b->sc->grubenv,
				b->sc->grub_editenv, r.output);
	}
	return env_parse_lines(b->sc->grubenv, r.output, e, err);
}

static int grub_store(struct bootloader *b, const struct env_vars *e, struct perr *err)
{
	const char *argv[4 + ENV_MAX_VARS] = { b->sc->grub_editenv, NULL, "set" };
	char tmp[4096], sets[ENV_MAX_VARS][ENV_NAME_MAX + ENV_VALUE_MAX + 2];
	struct spawn_result r;
	size_t n = 3;
	int k;

	if (snprintf(tmp, sizeof(tmp), "%s.shoal-tmp", b->sc->grubenv) >= (int)sizeof(tmp))
		return perr_set(err, -ENAMETOOLONG, "%s: path too long", b->sc->grubenv);
	argv[1] = tmp;
	for (size_t i = 0; i < e->n; i++) {
		if (!e->v[i].dirty)
			continue;
		snprintf(sets[n - 3], sizeof(sets[0]), "%s=%s", e->v[i].name, e->v[i].value);
		argv[n] = sets[n - 3];
		n++;
	}
	argv[n] = NULL;
	if (n == 3)
		return 0;
	if ((k = file_copy(b->sc->grubenv, tmp, 0644, err)) < 0)
		return k;
	if ((k = spawn_run(argv, NULL, 30000, NULL, &r, err)) < 0 || r.status != 0) {
		unlink(tmp);
		if (k < 0)
			return k;
		r.output[strcspn(r.output, "\n")] = '\0';
		return perr_set(err, -EIO, "%s: %s set failed: %s", b->sc->grubenv, b->sc->grub_editenv, r.output);
	}
	return file_replace(tmp, b->sc->grubenv, err);
}

const struct env_store_ops env_grub_ops = {
	.load = grub_load,
	.store = grub_store,
};

static const char *slot_var(struct bootloader *b, int slot, const char *suffix, char *buf, size_t size)
{
	snprintf(buf, size, "%s_%s", b->sc->slots[slot].bootname, suffix);
	return buf;
}

static bool is_one(const char *s)
{
	return s && !strcmp(s, "1");
}

/* The slots of ORDER as indexes, at most SYSCONF_SLOTS. */
static size_t order_of(struct bootloader *b, const struct env_vars *e, int *out)
{
	const char *order = env_get(e, "ORDER");
	size_t n = 0;

	while (order && *order && n < SYSCONF_SLOTS) {
		char name[ENV_VALUE_MAX];
		size_t len = strcspn(order, " ");
		int s;

		snprintf(name, sizeof(name), "%.*s", (int)len, order);
		if ((s = sysconf_slot_by_bootname(b->sc, name)) >= 0)
			out[n++] = s;
		order += len;
		order += strspn(order, " ");
	}
	return n;
}

static int grub_read(struct bootloader *b, struct boot_env *ret, struct perr *err)
{
	struct env_vars e = { 0 };
	int order[SYSCONF_SLOTS];
	char v[ENV_NAME_MAX];
	size_t n;
	int k;

	if ((k = b->env->load(b, &e, err)) < 0)
		return k;
	*ret = (struct boot_env){ .primary = -1, .bootlimit = 1 };
	n = order_of(b, &e, order);
	for (size_t i = 0; i < n; i++) {
		if (!is_one(env_get(&e, slot_var(b, order[i], "OK", v, sizeof(v)))))
			continue;
		ret->primary = order[i];
		break;
	}
	if (ret->primary >= 0) {
		const char *trial = env_get(&e, "SHOAL_TRIAL");

		ret->trial = trial && !strcmp(trial, b->sc->slots[ret->primary].bootname);
		ret->bootcount = is_one(env_get(&e, slot_var(b, ret->primary, "TRY", v, sizeof(v)))) ? 1 : 0;
	}
	return 0;
}

static int grub_switch(struct bootloader *b, int slot, bool trial, bool bad, struct perr *err)
{
	struct env_vars e = { 0 };
	int first = bad ? (slot ? 0 : 1) : slot, second = first ? 0 : 1;
	char order[2 * SYSCONF_BOOTNAME_MAX + 2], v[ENV_NAME_MAX];
	int k;

	if ((k = b->env->load(b, &e, err)) < 0)
		return k;
	snprintf(order, sizeof(order), "%s %s", b->sc->slots[first].bootname, b->sc->slots[second].bootname);
	if (env_set(&e, "ORDER", order) < 0 || env_set(&e, slot_var(b, first, "OK", v, sizeof(v)), "1") < 0 ||
	    env_set(&e, slot_var(b, first, "TRY", v, sizeof(v)), "0") < 0 ||
	    env_set(&e, "SHOAL_TRIAL", trial ? b->sc->slots[slot].bootname : "") < 0 ||
	    (bad && env_set(&e, slot_var(b, slot, "OK", v, sizeof(v)), "0") < 0) ||
	    (bad && env_set(&e, slot_var(b, slot, "TRY", v, sizeof(v)), "0") < 0))
		return perr_set(err, -E2BIG, "%s: too many variables", b->sc->grubenv);
	return b->env->store(b, &e, err);
}

static int grub_set_trial(struct bootloader *b, int slot, struct perr *err)
{
	return grub_switch(b, slot, true, false, err);
}

static int grub_commit(struct bootloader *b, int slot, struct perr *err)
{
	return grub_switch(b, slot, false, false, err);
}

static int grub_mark_bad(struct bootloader *b, int slot, struct perr *err)
{
	return grub_switch(b, slot, false, true, err);
}

/* What the grub.cfg of docs/operations.md does at power-on. */
static int grub_power_on(struct bootloader *b, int *ret_slot, struct perr *err)
{
	struct env_vars e = { 0 };
	int order[SYSCONF_SLOTS], boot = -1;
	char v[ENV_NAME_MAX];
	size_t n;
	int k;

	if ((k = b->env->load(b, &e, err)) < 0)
		return k;
	n = order_of(b, &e, order);
	for (size_t i = 0; i < n && boot < 0; i++) {
		const char *trial = env_get(&e, "SHOAL_TRIAL");
		int s = order[i];

		if (!is_one(env_get(&e, slot_var(b, s, "OK", v, sizeof(v)))))
			continue;
		if (trial && !strcmp(trial, b->sc->slots[s].bootname)) {
			if (is_one(env_get(&e, slot_var(b, s, "TRY", v, sizeof(v))))) {
				/* its one try is spent: fall back */
				if (env_set(&e, slot_var(b, s, "OK", v, sizeof(v)), "0") < 0 ||
				    env_set(&e, slot_var(b, s, "TRY", v, sizeof(v)), "0") < 0 || env_set(&e, "SHOAL_TRIAL", "") < 0)
					return perr_set(err, -E2BIG, "%s: too many variables", b->sc->grubenv);
				continue;
			}
			if (env_set(&e, slot_var(b, s, "TRY", v, sizeof(v)), "1") < 0)
				return perr_set(err, -E2BIG, "%s: too many variables", b->sc->grubenv);
		}
		boot = s;
	}
	if (boot < 0)
		return perr_set(err, -ENOENT, "%s: no slot in ORDER has _OK=1: nothing to boot", b->sc->grubenv);
	if ((k = b->env->store(b, &e, err)) < 0)
		return k;
	*ret_slot = boot;
	return 0;
}

const struct bootloader_ops bootloader_grub_scheme = {
	.name = "grub",
	.read = grub_read,
	.set_trial = grub_set_trial,
	.commit = grub_commit,
	.mark_bad = grub_mark_bad,
	.power_on = grub_power_on,
};
