/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The simulator's scenario files: every section resolved to per-node
 * values, the shipped scenarios, and bad files that must fail with
 * FILE:LINE and the reason. */
#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include <cmocka.h>

#include "scenario.h"

static const char *scenario_dir;

static const char good[] =
	"# a comment\n"
	"[sim]\n"
	"seed = 7\n"
	"time_limit = 10m\n"
	"[fleet]\n"
	"devices = 6\n"
	"max_connections = 8\n"
	"[groups]\n"
	"front = dev-5, dev-6\n"
	"line = 2\n"
	"[image]\n"
	"size = 1.5M\n"
	"chunk_avg = 32K\n"
	"changed = 12.5%\n"
	"version = 2.1\n"
	"[links]\n"
	"up = 80Mbit\n"
	"down = 2M/s\n"
	"latency = 1.5ms\n"
	"loss = 0.1%\n"
	"gateway_up = 1Gbit\n"
	"[links.front]\n"
	"up = 10Mbit\n"
	"latency = 20ms\n"
	"[rollout]\n"
	"mode = campaign\n"
	"canary = line\n"
	"install = 30s\n"
	"reboot = 1m\n"
	"seed_policy = offload\n"
	"[fault.k]\n"
	"kind = kill\n"
	"on = front\n"
	"at = 2s\n"
	"[fault.pc]\n"
	"kind = power-cut-during-install\n"
	"on = dev-3\n"
	"[fault.gw]\n"
	"kind = gateway-down\n"
	"at = 1m\n"
	"[fault.h]\n"
	"kind = health-fail\n"
	"on = dev-2\n"
	"[expect]\n"
	"rolled_back = dev-2\n"
	"committed = rest\n";

static void test_good(void **state)
{
	struct scenario *s = NULL;
	struct perr err = { "" };

	(void)state;
	assert_int_equal(scenario_parse(good, "good.ini", &s, &err), 0);
	assert_int_equal(s->seed, 7);
	assert_int_equal(s->time_limit_ms, 600000);
	assert_int_equal(s->n_devices, 6);
	assert_int_equal(s->max_connections, 8);
	assert_string_equal(s->nodes[0].name, "dev-1");
	/* groups: the list first, then a count of the devices left, in order */
	assert_int_equal(s->n_groups, 3);
	assert_string_equal(s->groups[s->nodes[4].group].name, "front");
	assert_string_equal(s->groups[s->nodes[0].group].name, "line");
	assert_string_equal(s->groups[s->nodes[1].group].name, "line");
	assert_int_equal(s->nodes[2].group, 0);
	assert_int_equal(s->image_size, 1572864);
	assert_int_equal(s->chunk_avg, 32768);
	assert_int_equal(s->changed_ppm, 125000);
	assert_string_equal(s->version, "2.1");
	/* links: [links] for all, [links.front] over it for its members */
	assert_int_equal(s->nodes[0].link.up_bps, 10000000);
	assert_int_equal(s->nodes[0].link.down_bps, 2097152);
	assert_int_equal(s->nodes[0].link.latency_us, 1500);
	assert_int_equal(s->nodes[0].link.loss_ppm, 1000);
	assert_int_equal(s->nodes[5].link.up_bps, 1250000);
	assert_int_equal(s->nodes[5].link.latency_us, 20000);
	assert_int_equal(s->nodes[5].link.loss_ppm, 1000);
	assert_int_equal(s->gateway.up_bps, 125000000);
	assert_int_equal(s->rollout, SCN_ROLLOUT_CAMPAIGN);
	assert_int_equal(s->n_canaries, 2);
	assert_true(s->nodes[0].canary && s->nodes[1].canary && !s->nodes[2].canary);
	assert_int_equal(s->seed_policy, SCN_SEED_OFFLOAD);
	/* faults: one per device named; defaults from [rollout] */
	assert_int_equal(s->n_faults, 5);
	assert_int_equal(s->faults[0].kind, SCN_FAULT_KILL);
	assert_int_equal(s->faults[0].node, 4);
	assert_int_equal(s->faults[1].node, 5);
	assert_int_equal(s->faults[1].duration_ms, 10000);
	assert_int_equal(s->faults[2].kind, SCN_FAULT_POWER_CUT_INSTALL);
	assert_int_equal(s->faults[2].at_ms, 15000);
	assert_int_equal(s->faults[2].duration_ms, 60000);
	assert_int_equal(s->faults[3].node, SCN_GATEWAY);
	assert_int_equal(s->faults[3].duration_ms, 0);
	assert_int_equal(s->faults[4].kind, SCN_FAULT_HEALTH_FAIL);
	assert_true(s->has_expect);
	assert_int_equal(s->nodes[1].expect, SCN_STATE_ROLLED_BACK);
	for (uint32_t i = 0; i < 6; i++)
		assert_true(s->nodes[i].has_expect);
	assert_int_equal(s->nodes[0].expect, SCN_STATE_COMMITTED);
	scenario_free(s);
}

static void test_defaults_and_bound(void **state)
{
	struct scenario *s = NULL;
	double f, want;

	(void)state;
	assert_int_equal(scenario_parse("[fleet]\ndevices = 10\n[image]\nsize = 100M\nbase = none\n[links]\nup = 8Mbit\n"
					"down = 80Mbit\ngateway_up = 16Mbit\n",
					"d.ini", &s, NULL),
			 0);
	assert_int_equal(s->max_connections, 64);
	assert_int_equal(s->upload_slots, 4);
	assert_int_equal(s->seed_policy, SCN_SEED_STRICT);
	assert_false(s->has_expect);
	f = (double)scenario_fetch_bytes(s);
	assert_true(f == 104857600.0);
	/* N F / (u_s + sum u_i) = 10 F / (2 + 10) MB/s beats F / u_s = F / 2 MB/s */
	want = 10 * f / (2e6 + 10 * 1e6);
	assert_true(fabs(scenario_kumar_ross_s(s, (uint64_t)f) - want) < 1e-9);
	scenario_free(s);
}

struct bad {
	const char *text;
	const char *msg; /* the whole message, FILE:LINE: reason (a prefix of it) */
};

static const struct bad bads[] = {
	{ "[fleet]\ndevices = 4\ncolour = red\n", "b.ini:3: unknown key 'colour' in [fleet]" },
	{ "[fleet]\ndevices = 2\n[bogus]\nx = 1\n", "b.ini:4: unknown section [bogus]" },
	{ "devices = 2\n", "b.ini:1: key 'devices' outside any [section]" },
	{ "[fleet\ndevices = 2\n", "b.ini:1: syntax error" },
	{ "[image]\nsize = 1M\n", "b.ini: [fleet] needs devices = N" },
	{ "[fleet]\ndevices = 0\n", "b.ini:2: devices wants a whole number from 1" },
	{ "[fleet]\ndevices = 2\ndevices = 3\n", "b.ini:3: 'devices' given twice in [fleet] (first on line 2)" },
	{ "[fleet]\ndevices = 2\n[links]\nup = fast\n", "b.ini:4: up wants a rate" },
	{ "[fleet]\ndevices = 2\n[links]\nlatency = -1ms\n", "b.ini:4: latency wants a duration" },
	{ "[fleet]\ndevices = 2\n[links]\nloss = 30%\n", "b.ini:4: loss wants a loss of at most 20%" },
	{ "[fleet]\ndevices = 2\n[image]\nchanged = 101%\n", "b.ini:4: changed wants a percentage" },
	{ "[fleet]\ndevices = 2\n[image]\nsize = 12X\n", "b.ini:4: size wants a size" },
	{ "[fleet]\ndevices = 2\n[image]\nbase = v3\n", "b.ini:4: base wants one of: none v1" },
	{ "[fleet]\ndevices = 4\n[groups]\na = 5\n", "b.ini:4: a wants a whole number from 1 to 4" },
	{ "[fleet]\ndevices = 4\n[groups]\na = 3\nb = 2\n", "b.ini:5: group b wants 2 devices, only 1 are left" },
	{ "[fleet]\ndevices = 4\n[groups]\na = dev-1\nb = dev-1\n", "b.ini:5: dev-1 is in group a already" },
	{ "[fleet]\ndevices = 4\n[groups]\nall = 1\n", "b.ini:4: 'all' cannot name a group" },
	{ "[fleet]\ndevices = 4\n[links.nope]\nup = 1Mbit\n", "b.ini:4: [links.nope]: no group 'nope' in [groups]" },
	{ "[fleet]\ndevices = 4\n[groups]\ng = 1\n[links.g]\nspeed = 1Mbit\n", "b.ini:6: unknown key 'speed' in [links.g]" },
	{ "[fleet]\ndevices = 4\n[rollout]\nmode = yolo\n", "b.ini:4: mode wants one of: auto campaign" },
	{ "[fleet]\ndevices = 4\n[rollout]\ncanary = dev-9\n", "b.ini:4: canary: 'dev-9' is no device, group" },
	{ "[fleet]\ndevices = 4\n[fault.x]\non = dev-1\n", "b.ini:4: [fault.x] has no kind=" },
	{ "[fleet]\ndevices = 4\n[fault.x]\nkind = explode\n", "b.ini:4: kind wants one of: kill" },
	{ "[fleet]\ndevices = 4\n[fault.x]\nkind = kill\non = dev-1\n", "b.ini:4: kill needs at=" },
	{ "[fleet]\ndevices = 4\n[fault.x]\nkind = kill\nat = 1s\n", "b.ini:4: kill needs on=" },
	{ "[fleet]\ndevices = 4\n[fault.x]\nkind = health-fail\non = dev-1\nat = 1s\n", "b.ini:6: health-fail takes no at=" },
	{ "[fleet]\ndevices = 4\n[fault.x]\nkind = gateway-down\non = dev-1\nat = 1s\n", "b.ini:5: gateway-down happens on the gateway" },
	{ "[fleet]\ndevices = 4\n[fault.x]\nkind = kill\non = gateway\nat = 1s\n", "b.ini:5: kill happens on devices" },
	{ "[fleet]\ndevices = 4\n[fault.x]\nkind = kill\non = dev-1\nat = 1s\nwhen = now\n", "b.ini:7: unknown key 'when' in [fault.x]" },
	{ "[fleet]\ndevices = 4\n[expect]\ncommitted = dev-1\nfailed = dev-1\n", "b.ini:5: dev-1 is expected to end committed already" },
	{ "[fleet]\ndevices = 4\n[expect]\ncommitted = rest\nfailed = rest\n", "b.ini:5: 'rest' named twice (also on line 4)" },
	{ "[fleet]\ndevices = 4\n[expect]\nhappy = all\n", "b.ini:4: unknown key 'happy' in [expect]" },
	{ "[fleet]\ndevices = 4\n[expect]\ncommitted = gateway\n", "b.ini:4: committed: 'gateway' is no device, group, rest" },
	{ "[fleet]\ndevices = 4\n[sim]\ntime_limit = 10ms\n", "b.ini:4: time_limit wants a duration" },
};

static void test_bad(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
		struct scenario *s = NULL;
		struct perr err = { "" };

		assert_int_equal(scenario_parse(bads[i].text, "b.ini", &s, &err), -EINVAL);
		assert_null(s);
		if (strncmp(err.msg, bads[i].msg, strlen(bads[i].msg)) != 0)
			fail_msg("case %zu: got '%s', want '%s...'", i, err.msg, bads[i].msg);
	}
}

static void test_load_errors(void **state)
{
	struct scenario *s = NULL;
	struct perr err = { "" };

	(void)state;
	assert_int_equal(scenario_load("/nonexistent/x.ini", &s, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "/nonexistent/x.ini"));
	assert_null(s);
}

/* Every scenario shipped in simulator/scenarios/ parses and says what it
 * expects. */
static void test_shipped(void **state)
{
	DIR *d = opendir(scenario_dir);
	struct dirent *e;
	unsigned n = 0;

	(void)state;
	assert_non_null(d);
	while ((e = readdir(d))) {
		char path[1024];
		struct scenario *s = NULL;
		struct perr err = { "" };
		size_t l = strlen(e->d_name);

		if (l < 5 || strcmp(e->d_name + l - 4, ".ini") != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", scenario_dir, e->d_name);
		if (scenario_load(path, &s, &err) < 0)
			fail_msg("%s", err.msg);
		assert_true(s->has_expect);
		scenario_free(s);
		n++;
	}
	closedir(d);
	assert_true(n >= 6);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good),
		cmocka_unit_test(test_defaults_and_bound),
		cmocka_unit_test(test_bad),
		cmocka_unit_test(test_load_errors),
		cmocka_unit_test(test_shipped),
	};

	scenario_dir = argc > 1 ? argv[1] : "simulator/scenarios";
	return cmocka_run_group_tests(tests, NULL, NULL);
}
