/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A scratch directory per test, for the unit tests that read and write
 * files: `dir` is /tmp/shoal-SCRATCH_NAME-XXXXXX while a test runs, and
 * is removed with everything in it afterwards. Define SCRATCH_NAME, then
 * include this after cmocka.h; pass setup/teardown to
 * cmocka_unit_test_setup_teardown. */
#pragma once

#include <stdio.h>
#include <stdlib.h>

static char dir[64];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/shoal-" SCRATCH_NAME "-XXXXXX");
	assert_non_null(mkdtemp(dir));
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd);
}
