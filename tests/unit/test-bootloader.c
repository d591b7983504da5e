/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Bootloader backends and the boot simulator: the same trial / commit /
 * fall-back semantics on the file backend, on a real U-Boot environment
 * (libubootenv on files made by fw_setenv) and on a real grubenv (made by
 * grub-editenv); corrupt environments; booted-slot detection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <cmocka.h>

#include "bootloader.h"

#define SCRATCH_NAME "boot"
#include "scratch.h"


static void write_text(const char *name, const char *text)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static char *p(const char *name)
{
	char *s;

	assert_true(asprintf(&s, "%s/%s", dir, name) > 0);
	return s;
}

static struct sysconf *make_conf(int kind)
{
	struct sysconf *sc = calloc(1, sizeof(*sc));

	assert_non_null(sc);
	sc->product = strdup("acme");
	sc->bootloader = kind;
	sc->slots[0].device = p("slot-a");
	sc->slots[0].bootname = strdup("A");
	sc->slots[1].device = p("slot-b");
	sc->slots[1].bootname = strdup("B");
	sc->boot_slot_file = p("booted");
	sc->cmdline = p("cmdline");
	sc->file_env = p("env");
	sc->file_bootlimit = 2;
	sc->fw_env_config = p("fw_env.config");
	sc->uboot_bootlimit = 2;
	sc->grubenv = p("grubenv");
	sc->grub_editenv = strdup("grub-editenv");
	unlink(sc->boot_slot_file);
	return sc;
}

static int boot(struct sysconf *sc)
{
	struct perr err = { "" };
	int slot = -1, k = bootsim_power_on(sc, &slot, &err);

	if (k < 0)
		fail_msg("power on: %s", err.msg);
	return slot;
}

static void expect_env(struct bootloader *b, int primary, bool trial, unsigned count)
{
	struct boot_env e;
	struct perr err = { "" };

	if (bootloader_read(b, &e, &err) < 0)
		fail_msg("read: %s", err.msg);
	assert_int_equal(e.primary, primary);
	assert_int_equal(e.trial, trial);
	assert_int_equal(e.bootcount, count);
}

/* The life of an A/B device, whatever the backend. */
static void run_semantics(struct sysconf *sc, unsigned bootlimit)
{
	struct bootloader *b = NULL;
	struct perr err = { "" };
	char id1[64], id2[64];
	int slot;

	assert_int_equal(bootloader_open(sc, &b, &err), 0);
	assert_int_equal(bootloader_commit(b, 0, &err), 0);
	expect_env(b, 0, false, 0);
	assert_int_equal(boot(sc), 0);
	assert_int_equal(boot_booted_slot(sc, &slot, id1, sizeof(id1), &err), 0);
	assert_int_equal(slot, 0);

	/* a trial that is committed */
	assert_int_equal(bootloader_set_trial(b, 1, &err), 0);
	expect_env(b, 1, true, 0);
	assert_int_equal(boot(sc), 1);
	expect_env(b, 1, true, 1);
	assert_int_equal(boot_booted_slot(sc, &slot, id2, sizeof(id2), &err), 0);
	assert_int_equal(slot, 1);
	assert_string_not_equal(id1, id2);
	assert_int_equal(bootloader_commit(b, 1, &err), 0);
	expect_env(b, 1, false, 0);
	for (int i = 0; i < 5; i++)
		assert_int_equal(boot(sc), 1);
	expect_env(b, 1, false, 0);

	/* a trial that never reaches user space: the bootloader falls back */
	assert_int_equal(bootloader_set_trial(b, 0, &err), 0);
	for (unsigned i = 0; i < bootlimit; i++)
		assert_int_equal(boot(sc), 0);
	assert_int_equal(boot(sc), 1);
	expect_env(b, 1, false, 0);
	assert_int_equal(boot(sc), 1);

	/* mark-bad during a trial goes back to the other slot */
	assert_int_equal(bootloader_set_trial(b, 0, &err), 0);
	assert_int_equal(boot(sc), 0);
	assert_int_equal(bootloader_mark_bad(b, 0, &err), 0);
	expect_env(b, 1, false, 0);
	assert_int_equal(boot(sc), 1);
	/* and a later install may use that slot again */
	assert_int_equal(bootloader_set_trial(b, 0, &err), 0);
	assert_int_equal(boot(sc), 0);
	assert_int_equal(bootloader_commit(b, 0, &err), 0);
	assert_int_equal(boot(sc), 0);
	bootloader_free(b);
}

static void free_conf(struct sysconf *sc)
{
	sc->path = NULL;
	free(sc->product);
	free(sc->slots[0].device);
	free(sc->slots[0].bootname);
	free(sc->slots[1].device);
	free(sc->slots[1].bootname);
	free(sc->boot_slot_file);
	free(sc->cmdline);
	free(sc->file_env);
	free(sc->fw_env_config);
	free(sc->grubenv);
	free(sc->grub_editenv);
	free(sc);
}

static void test_file_backend(void **state)
{
	struct sysconf *sc = make_conf(BOOTLOADER_FILE);
	struct bootloader *b = NULL;
	struct perr err = { "" };
	struct boot_env e;
	char *text;

	(void)state;
	write_text("env", "# made by the test\nbootcmd=run distro_bootcmd\nshoal_slot=A\n");
	run_semantics(sc, 2);
	/* variables shoal does not own survive */
	text = p("env");
	{
		FILE *f = fopen(text, "r");
		char buf[1024] = "";

		assert_non_null(f);
		assert_true(fread(buf, 1, sizeof(buf) - 1, f) > 0);
		fclose(f);
		assert_non_null(strstr(buf, "bootcmd=run distro_bootcmd\n"));
	}
	free(text);

	/* corrupt and missing environments are named, not guessed at */
	assert_int_equal(bootloader_open(sc, &b, &err), 0);
	write_text("env", "shoal_slot=A\n\x01\x02garbage\n");
	assert_int_equal(bootloader_read(b, &e, &err), -EUCLEAN);
	assert_non_null(strstr(err.msg, "env:2: corrupt environment"));
	write_text("env", "shoal_slot=Q\n");
	assert_int_equal(bootloader_read(b, &e, &err), -EUCLEAN);
	assert_non_null(strstr(err.msg, "shoal_slot=Q"));
	write_text("env", "bootcount=x\n");
	assert_int_equal(bootloader_read(b, &e, &err), -EUCLEAN);
	text = p("env");
	unlink(text);
	free(text);
	assert_int_equal(bootloader_read(b, &e, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "env"));
	bootloader_free(b);
	free_conf(sc);
}

static bool have(const char *prog)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null 2>&1", prog);
	return system(cmd) == 0;
}

static void test_uboot_backend(void **state)
{
	struct sysconf *sc;
	struct bootloader *b = NULL;
	struct perr err = { "" };
	struct boot_env e;
	char cmd[1024];

	(void)state;
	if (!have("fw_setenv"))
		skip();
	sc = make_conf(BOOTLOADER_UBOOT);
	/* a redundant environment in two files, made by the real fw_setenv */
	snprintf(cmd, sizeof(cmd),
		 "cd %s && truncate -s 16K env1 env2 && printf '%%s 0x0 0x4000\\n%%s 0x0 0x4000\\n' %s/env1 %s/env2 "
		 "> fw_env.config && printf 'bootcmd=run shoal_boot\\nshoal_slot=A\\n' > default.env && "
		 "fw_setenv -c fw_env.config -f default.env bootlimit 2 2>/dev/null && "
		 "fw_printenv -c fw_env.config shoal_slot | grep -qx shoal_slot=A", dir, dir, dir);
	assert_int_equal(system(cmd), 0);
	run_semantics(sc, 2);
	/* what fw_printenv sees is what shoal wrote */
	snprintf(cmd, sizeof(cmd), "cd %s && fw_printenv -c fw_env.config | grep -qx upgrade_available=0 && "
		 "fw_printenv -c fw_env.config | grep -qx 'bootcmd=run shoal_boot'", dir);
	assert_int_equal(system(cmd), 0);
	/* both copies corrupt: refused with a clear error */
	snprintf(cmd, sizeof(cmd), "cd %s && printf 'XXXXXXXX' | dd of=env1 bs=1 seek=8 conv=notrunc 2>/dev/null && "
		 "printf 'XXXXXXXX' | dd of=env2 bs=1 seek=8 conv=notrunc 2>/dev/null && "
		 "! fw_printenv -c fw_env.config >/dev/null 2>&1", dir);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(bootloader_open(sc, &b, &err), 0);
	assert_int_equal(bootloader_read(b, &e, &err), -EUCLEAN);
	assert_non_null(strstr(err.msg, "corrupt environment"));
	bootloader_free(b);
	free_conf(sc);
}

static void test_grub_backend(void **state)
{
	struct sysconf *sc;
	struct bootloader *b = NULL;
	struct perr err = { "" };
	struct boot_env e;
	char cmd[512];

	(void)state;
	if (!have("grub-editenv"))
		skip();
	sc = make_conf(BOOTLOADER_GRUB);
	snprintf(cmd, sizeof(cmd), "cd %s && grub-editenv grubenv create && grub-editenv grubenv set ORDER='A B' "
		 "A_OK=1 B_OK=1 A_TRY=0 B_TRY=0", dir);
	assert_int_equal(system(cmd), 0);
	run_semantics(sc, 1);
	snprintf(cmd, sizeof(cmd), "cd %s && grub-editenv grubenv list | grep -qx 'ORDER=A B' && "
		 "test $(stat -c %%s grubenv) = 1024 && ! ls grubenv.* 2>/dev/null", dir);
	assert_int_equal(system(cmd), 0);
	write_text("grubenv", "this is not a grub environment block\n");
	assert_int_equal(bootloader_open(sc, &b, &err), 0);
	assert_int_equal(bootloader_read(b, &e, &err), -EUCLEAN);
	assert_non_null(strstr(err.msg, "corrupt environment"));
	bootloader_free(b);
	free_conf(sc);
}

static void test_booted_slot_from_cmdline(void **state)
{
	struct sysconf *sc = make_conf(BOOTLOADER_FILE);
	struct perr err = { "" };
	char id[64], *dev;
	int slot = -1;

	(void)state;
	free(sc->boot_slot_file);
	sc->boot_slot_file = NULL;
	write_text("cmdline", "console=ttyS0 shoal.slot=B quiet\n");
	assert_int_equal(boot_booted_slot(sc, &slot, id, sizeof(id), &err), 0);
	assert_int_equal(slot, 1);
	write_text("cmdline", "rauc.slot=A\n");
	assert_int_equal(boot_booted_slot(sc, &slot, id, sizeof(id), &err), 0);
	assert_int_equal(slot, 0);
	dev = p("slot-b");
	{
		char line[256];

		snprintf(line, sizeof(line), "ro root=%s rootwait\n", dev);
		write_text("cmdline", line);
	}
	free(dev);
	assert_int_equal(boot_booted_slot(sc, &slot, id, sizeof(id), &err), 0);
	assert_int_equal(slot, 1);
	write_text("cmdline", "root=/dev/nfs shoal.slot=C\n");
	assert_int_equal(boot_booted_slot(sc, &slot, id, sizeof(id), &err), -ENOENT);
	assert_non_null(strstr(err.msg, "kernel command line"));
	assert_null(strstr(err.msg, "booted-slot")); /* no hint to pin a slot that may be wrong */
	sc->booted_slot = strdup("A");
	assert_int_equal(boot_booted_slot(sc, &slot, id, sizeof(id), &err), 0);
	assert_int_equal(slot, 0);
	free(sc->booted_slot);
	free_conf(sc);
}

/* The command line wins: a fixed booted-slot that contradicts it (or the
 * boot simulator's record) is an error, never the answer. */
static void test_booted_slot_disagrees(void **state)
{
	struct sysconf *sc = make_conf(BOOTLOADER_FILE);
	char *bsf = sc->boot_slot_file;
	struct perr err = { "" };
	char id[64];
	int slot = -1;

	(void)state;
	sc->boot_slot_file = NULL;
	sc->booted_slot = strdup("A");
	write_text("cmdline", "root=/dev/mmcblk0p3 shoal.slot=B\n");
	assert_int_equal(boot_booted_slot(sc, &slot, id, sizeof(id), &err), -EUCLEAN);
	assert_non_null(strstr(err.msg, "booted-slot = A"));
	assert_non_null(strstr(err.msg, "says slot B"));
	write_text("cmdline", "root=/dev/mmcblk0p3 shoal.slot=A\n");
	assert_int_equal(boot_booted_slot(sc, &slot, id, sizeof(id), &err), 0);
	assert_int_equal(slot, 0);
	/* no command line at all: booted-slot stands in */
	{
		char *c = p("cmdline");

		assert_int_equal(unlink(c), 0);
		free(c);
	}
	assert_int_equal(boot_booted_slot(sc, &slot, id, sizeof(id), &err), 0);
	assert_int_equal(slot, 0);
	/* the boot simulator's record stands for the command line */
	sc->boot_slot_file = bsf;
	write_text("booted", "slot=B\nboot_id=3\n");
	assert_int_equal(boot_booted_slot(sc, &slot, id, sizeof(id), &err), -EUCLEAN);
	write_text("booted", "slot=A\nboot_id=4\n");
	assert_int_equal(boot_booted_slot(sc, &slot, id, sizeof(id), &err), 0);
	assert_int_equal(slot, 0);
	free(sc->booted_slot);
	sc->booted_slot = NULL;
	free_conf(sc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_file_backend),
		cmocka_unit_test(test_uboot_backend),
		cmocka_unit_test(test_grub_backend),
		cmocka_unit_test(test_booted_slot_from_cmdline),
		cmocka_unit_test(test_booted_slot_disagrees),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
