/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* system.conf: every key, defaults, and bad lines reported as FILE:LINE. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <cmocka.h>

#include "sysconf.h"

#define SCRATCH_NAME "sysconf"
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

static int load(const char *name, struct sysconf **sc, struct perr *err)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return sysconf_load(path, sc, err);
}

#define SLOTS "[slot.rootfs.0]\ndevice = /dev/sda2\nbootname = A\n[slot.rootfs.1]\ndevice = /dev/sda3\nbootname = B\n"

static void test_full_and_defaults(void **state)
{
	struct sysconf *sc = NULL;
	struct perr err = { "" };

	(void)state;
	write_text("min.conf", "[system]\nproduct = acme\nbootloader = uboot\n" SLOTS);
	assert_int_equal(load("min.conf", &sc, &err), 0);
	assert_string_equal(sc->product, "acme");
	assert_int_equal(sc->bootloader, BOOTLOADER_UBOOT);
	assert_string_equal(sc->state_dir, "/var/lib/shoal");
	assert_string_equal(sc->hooks_dir, "/etc/shoal/hooks.d");
	assert_string_equal(sc->reboot_command, "systemctl reboot");
	assert_string_equal(sc->fw_env_config, "/etc/fw_env.config");
	assert_int_equal(sc->uboot_bootlimit, 3);
	assert_int_equal(sc->health_timeout_ms, 60000);
	assert_int_equal(sc->reboot, REBOOT_NOW);
	assert_int_equal(sysconf_slot_by_bootname(sc, "B"), 1);
	assert_int_equal(sysconf_slot_by_bootname(sc, "C"), -ENOENT);
	sysconf_free(sc);

	write_text("full.conf", "# a test device\n[system]\nproduct = acme\nbootloader = file\nstate-dir = /tmp/s\n"
				"hooks-dir = /tmp/h\nhealth-dir = /tmp/hd\nhealth-timeout = 5s\nhook-timeout = 2s\n"
				"reboot-command = true\nreboot = none\ntrust = /a.pub\ntrust = /b.pub\n"
				"boot-slot-file = /tmp/booted\ncmdline = /tmp/cmdline\nstore-dir = /tmp/store\n"
				"[uboot]\nfw-env-config = /tmp/fw\nbootlimit = 2\n[grub]\ngrubenv = /tmp/g\n"
				"grub-editenv = /usr/bin/grub-editenv\n[file]\nenv = /tmp/env\nbootlimit = 1\n" SLOTS);
	assert_int_equal(load("full.conf", &sc, &err), 0);
	assert_int_equal(sc->bootloader, BOOTLOADER_FILE);
	assert_int_equal(sc->reboot, REBOOT_NONE);
	assert_int_equal(sc->trust.n, 2);
	assert_int_equal(sc->hook_timeout_ms, 2000);
	assert_int_equal(sc->file_bootlimit, 1);
	assert_int_equal(sc->uboot_bootlimit, 2);
	assert_string_equal(sc->file_env, "/tmp/env");
	assert_string_equal(sc->slots[1].device, "/dev/sda3");
	sysconf_free(sc);
}

static void expect_error(const char *text, const char *want)
{
	struct sysconf *sc = NULL;
	struct perr err = { "" };

	write_text("bad.conf", text);
	assert_int_equal(load("bad.conf", &sc, &err), -EINVAL);
	assert_null(sc);
	if (!strstr(err.msg, want))
		fail_msg("message '%s' lacks '%s'", err.msg, want);
}

static void test_errors_name_file_line(void **state)
{
	(void)state;
	expect_error("[system]\nproduct = acme\nbootloadr = uboot\n", "bad.conf:3: unknown key 'bootloadr' in [system]");
	expect_error("[system]\nbootloader = lilo\n", "bad.conf:2: bootloader is uboot, grub or file, not 'lilo'");
	expect_error("[sytem]\nproduct = a\n", "bad.conf:2: unknown section [sytem]");
	expect_error("product = a\n", "bad.conf:1: key 'product' outside any [section]");
	expect_error("[system]\nproduct = a\n[slot.rootfs.2]\ndevice = /x\n", "bad.conf:4: unknown slot [slot.rootfs.2]");
	expect_error("[system]\nhealth-timeout = 5\n", "bad.conf:2: health-timeout wants a duration");
	expect_error("[uboot]\nbootlimit = 0\n", "bad.conf:2: bootlimit wants a whole number from 1 to 100");
	expect_error("[system]\nreboot = later\n", "bad.conf:2: reboot is now or none, not 'later'");
	expect_error("[slot.rootfs.0]\nbootname = A B\n", "bad.conf:2: bootname wants");
	expect_error("[system]\nproduct = a\nthis is not ini\n", "bad.conf:3: syntax error");
	expect_error("[system]\nstate-dir =\n", "bad.conf:2: state-dir must not be empty");
	/* cross-key checks name the file */
	expect_error("[system]\nbootloader = uboot\n" SLOTS, "bad.conf: [system] product is required");
	expect_error("[system]\nproduct = a\n" SLOTS, "bootloader is required");
	expect_error("[system]\nproduct = a\nbootloader = file\n" SLOTS, "[file] env is required");
	expect_error("[system]\nproduct = a\nbootloader = uboot\n[slot.rootfs.0]\ndevice = /x\nbootname = A\n",
		     "[slot.rootfs.1] needs device and bootname");
	expect_error("[system]\nproduct = a\nbootloader = uboot\n[slot.rootfs.0]\ndevice = /x\nbootname = A\n"
		     "[slot.rootfs.1]\ndevice = /x\nbootname = B\n", "both slots name the device /x");
	expect_error("[system]\nproduct = a\nbootloader = uboot\nbooted-slot = C\n" SLOTS, "booted-slot C is not");
}

static void test_missing_file_and_path(void **state)
{
	struct sysconf *sc = NULL;
	struct perr err = { "" };

	(void)state;
	assert_int_equal(load("nope.conf", &sc, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "nope.conf"));
	setenv(SYSCONF_ENV, "/x/system.conf", 1);
	assert_string_equal(sysconf_path(NULL), "/x/system.conf");
	assert_string_equal(sysconf_path("/y"), "/y");
	unsetenv(SYSCONF_ENV);
	assert_string_equal(sysconf_path(NULL), SYSCONF_DEFAULT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_full_and_defaults),
		cmocka_unit_test(test_errors_name_file_line),
		cmocka_unit_test(test_missing_file_and_path),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
