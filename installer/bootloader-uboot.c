/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The uboot backend's environment through libubootenv, as fw_printenv and
 * fw_setenv see it (fw_env.config names the device or file, its offset and
 * size, and a second copy for a redundant environment). libubootenv
 * writes the copy not in use and then flips the active flag, so a torn
 * write leaves the old environment. */
#include <stddef.h>
#include <stdio.h>
#include <unistd.h>

#include <libuboot.h>

#include "bootloader.h"

static const char *const uboot_vars[] = { "shoal_slot", "upgrade_available", "bootcount", "bootlimit" };

static void ctx_freep(struct uboot_ctx **ctx)
{
	if (*ctx) {
		libuboot_close(*ctx);
		libuboot_exit(*ctx);
	}
}

static int ctx_open(struct bootloader *b, struct uboot_ctx **ret, struct perr *err)
{
	const char *cfg = b->sc->fw_env_config;
	struct uboot_ctx *ctx = NULL;
	int k;

	if (access(cfg, R_OK) < 0)
		return perr_set(err, -errno, "%s: %s", cfg, strerror(errno));
	if ((k = libuboot_initialize(&ctx, NULL)) < 0)
		return perr_set(err, k, "libubootenv: cannot initialise (%s)", strerror(-k));
	if ((k = libuboot_read_config(ctx, cfg)) < 0) {
		libuboot_exit(ctx);
		return perr_set(err, k < -1 ? k : -EINVAL, "%s: not a valid fw_env.config", cfg);
	}
	if ((k = libuboot_open(ctx)) < 0) {
		libuboot_exit(ctx);
		return perr_set(err, -EUCLEAN,
				"%s: the U-Boot environment it names cannot be read (bad CRC in every copy, or the device is "
				"missing): corrupt environment", cfg);
	}
	*ret = ctx;
	return 0;
}

static int uboot_load(struct bootloader *b, struct env_vars *e, struct perr *err)
{
	__attribute__((cleanup(ctx_freep))) struct uboot_ctx *ctx = NULL;
	int k;

	if ((k = ctx_open(b, &ctx, err)) < 0)
		return k;
	for (size_t i = 0; i < ELEMENTSOF(uboot_vars); i++) {
		char *v = libuboot_get_env(ctx, uboot_vars[i]);

		if (!v)
			continue;
		k = env_set(e, uboot_vars[i], v);
		free(v);
		if (k < 0)
			return perr_set(err, -EUCLEAN, "%s: %s is too long", b->sc->fw_env_config, uboot_vars[i]);
	}
	for (size_t i = 0; i < e->n; i++)
		e->v[i].dirty = false;
	return 0;
}

static int uboot_store(struct bootloader *b, const struct env_vars *e, struct perr *err)
{
	__attribute__((cleanup(ctx_freep))) struct uboot_ctx *ctx = NULL;
	int k;

	if ((k = ctx_open(b, &ctx, err)) < 0)
		return k;
	for (size_t i = 0; i < e->n; i++)
		if (e->v[i].dirty && (k = libuboot_set_env(ctx, e->v[i].name, e->v[i].value)) < 0)
			return perr_set(err, k < -1 ? k : -EINVAL, "%s: setting %s failed", b->sc->fw_env_config,
					e->v[i].name);
	if ((k = libuboot_env_store(ctx)) < 0)
		return perr_set(err, k < -1 ? k : -EIO, "%s: storing the U-Boot environment failed: %s",
				b->sc->fw_env_config, strerror(k < -1 ? -k : EIO));
	return 0;
}

const struct env_store_ops env_uboot_ops = {
	.load = uboot_load,
	.store = uboot_store,
};
