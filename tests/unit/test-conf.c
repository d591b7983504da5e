/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* shoald's configuration: every key type, drop-ins, and errors that name
 * the file, the line and the reason. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <cmocka.h>

#include "conf.h"

#define SCRATCH_NAME "conf"
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

/* Loads dir/NAME into a fresh conf; returns conf_load's result. */
static int load(const char *name, struct conf *c, struct perr *err)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	assert_int_equal(conf_init(c), 0);
	return conf_load(c, path, err);
}

static void test_full(void **state)
{
	struct conf c;
	struct perr err = { "" };

	(void)state;
	write_text("full.conf",
		   "# a gateway\n"
		   "[daemon]\nrole = gateway\nname = gw-1\nstate_dir = /tmp/x\nlisten_port = 7070\nlog_level = debug\n"
		   "[fleet]\nproduct = acme\nsecret_file = /etc/k\ntag = line3\ntrust = /a.pub\ntrust = /b.pub\n"
		   "[discovery]\nmdns = no\nstatic_peer = 10.0.0.2:7070\ngateway = 10.0.0.1:7070\nmax_peers = 8\n"
		   "[transfer]\nupload_rate = 10M\ndownload_rate = 512K\npeer_upload_rate = 0\nupload_slots = 3\n"
		   "request_timeout = 1500ms\nban_time = 10m\n"
		   "[gateway]\nstore_dir = /srv/shoal\nimport = /srv/r1\n");
	assert_int_equal(load("full.conf", &c, &err), 0);
	assert_int_equal(c.role, ROLE_GATEWAY);
	assert_string_equal(c.name, "gw-1");
	assert_int_equal(c.listen_port, 7070);
	assert_int_equal(c.log_level, LOG_DEBUG);
	assert_int_equal(c.trust.n, 2);
	assert_string_equal(c.trust.v[1], "/b.pub");
	assert_false(c.mdns);
	assert_int_equal(c.max_peers, 8);
	assert_int_equal(c.upload_rate, 10u << 20);
	assert_int_equal(c.download_rate, 512u << 10);
	assert_int_equal(c.request_timeout_ms, 1500);
	assert_int_equal(c.ban_ms, 600000);
	assert_int_equal(conf_check(&c, &err), 0);
	conf_deinit(&c);
}

static void expect_error(const char *text, const char *want)
{
	struct conf c;
	struct perr err = { "" };

	write_text("bad.conf", text);
	assert_int_equal(load("bad.conf", &c, &err), -EINVAL);
	if (!strstr(err.msg, want))
		fail_msg("message '%s' lacks '%s'", err.msg, want);
	conf_deinit(&c);
}

static void test_errors_name_file_line_reason(void **state)
{
	(void)state;
	expect_error("[daemon]\nrole = device\nrloe = gateway\n", "bad.conf:3: unknown key 'rloe' in [daemon]");
	expect_error("[demon]\nrole = device\n", "bad.conf:2: unknown section [demon]");
	expect_error("[daemon]\nrole = server\n", "bad.conf:2: role is device or gateway, not 'server'");
	expect_error("[daemon]\nlisten_port = 70000\n", "listen_port wants a whole number from 0 to 65535");
	expect_error("[discovery]\nmdns = maybe\n", "mdns wants yes or no");
	expect_error("[transfer]\nupload_rate = fast\n", "upload_rate wants a size");
	expect_error("[transfer]\nupload_rate = 99999999999999999999G\n", "upload_rate wants a size");
	expect_error("[transfer]\nrequest_timeout = 5\n", "request_timeout wants a duration");
	expect_error("[transfer]\nrequest_timeout = 10ms\n", "within 100ms");
	expect_error("[daemon]\nname =\n", "name must not be empty");
	expect_error("[daemon\nrole = device\n", "bad.conf:1: syntax error");
	expect_error("[daemon]\njust words\n", "bad.conf:2: syntax error");
	/* the first error is the one reported */
	expect_error("[daemon]\nrole = x\nfoo = 1\n", "bad.conf:2:");
}

static void test_dropins_override_and_extend(void **state)
{
	struct conf c;
	struct perr err = { "" };
	char d[128];

	(void)state;
	snprintf(d, sizeof(d), "%s/conf.d", dir);
	mkdir(d, 0755);
	write_text("main.conf", "[fleet]\nproduct = acme\ntrust = /a.pub\n[device]\ntarget = /t\n");
	write_text("conf.d/20-late.conf", "[daemon]\nname = late\n");
	write_text("conf.d/10-early.conf", "[daemon]\nname = early\n[fleet]\ntrust = /b.pub\n");
	write_text("conf.d/ignored.txt", "this is not a conf file\n");
	assert_int_equal(load("main.conf", &c, &err), 0);
	assert_string_equal(c.name, "late");
	assert_int_equal(c.trust.n, 2);
	assert_int_equal(conf_check(&c, &err), 0);
	conf_deinit(&c);

	write_text("conf.d/30-bad.conf", "[daemon]\nnope = 1\n");
	assert_int_equal(load("main.conf", &c, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "conf.d/30-bad.conf:2: unknown key 'nope'"));
	conf_deinit(&c);
	snprintf(d, sizeof(d), "rm -rf '%s/conf.d'", dir);
	assert_int_equal(system(d), 0);
}

static void test_check(void **state)
{
	struct conf c;
	struct perr err = { "" };

	(void)state;
	write_text("dev.conf", "[fleet]\nproduct = acme\ntrust = /a.pub\n");
	assert_int_equal(load("dev.conf", &c, &err), 0);
	assert_int_equal(conf_check(&c, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "target or system_conf is required"));
	conf_deinit(&c);
	write_text("gw.conf", "[daemon]\nrole = gateway\n[fleet]\nproduct = acme\ntrust = /a.pub\n");
	assert_int_equal(load("gw.conf", &c, &err), 0);
	assert_int_equal(conf_check(&c, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "store_dir is required"));
	conf_deinit(&c);
	assert_int_equal(load("missing.conf", &c, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "missing.conf"));
	conf_deinit(&c);
}

/* conf_check on a device config with one more line: 0, or -EINVAL with
 * want in the message. */
static void check_one(const char *extra, const char *want)
{
	char text[1024];
	struct conf c;
	struct perr err = { "" };

	snprintf(text, sizeof(text), "[fleet]\nproduct = acme\ntrust = /a.pub\n[device]\ntarget = /t\n%s", extra);
	write_text("one.conf", text);
	assert_int_equal(load("one.conf", &c, &err), 0);
	if (!want) {
		if (conf_check(&c, &err) != 0)
			fail_msg("'%s' refused: %s", extra, err.msg);
	} else {
		assert_int_equal(conf_check(&c, &err), -EINVAL);
		if (!strstr(err.msg, want))
			fail_msg("'%s': message '%s' lacks '%s'", extra, err.msg, want);
	}
	conf_deinit(&c);
}

/* What only failed at start before: --check must refuse it too. */
static void test_check_what_start_refuses(void **state)
{
	char line[256];

	(void)state;
	snprintf(line, sizeof(line), "[fleet]\ntag = %063d\n", 0);
	check_one(line, NULL);
	snprintf(line, sizeof(line), "[fleet]\ntag = %064d\n", 0);
	check_one(line, "[fleet] tag is 64 bytes; mDNS announces at most 63");
	/* without mDNS the tag is not announced */
	snprintf(line, sizeof(line), "[fleet]\ntag = %064d\n[discovery]\nmdns = no\ngateway = 192.0.2.1:7070\n", 0);
	check_one(line, NULL);
	check_one("[daemon]\nlisten_address = ::1\n", NULL);
	check_one("[daemon]\nlisten_address = localhost\n", "listen_address 'localhost' is not an IPv4 or IPv6 address");
	check_one("[discovery]\nstatic_peer = 192.0.2.7:7070\nstatic_peer = gw.example:7070\n",
		  "static_peer 'gw.example:7070' is not IPv4-ADDRESS:PORT");
	check_one("[discovery]\ngateway = 192.0.2.1:0\n", "gateway '192.0.2.1:0' is not IPv4-ADDRESS:PORT");
	check_one("[discovery]\ngateway = 192.0.2.1:65536\n", "is not IPv4-ADDRESS:PORT");
	check_one("[discovery]\ngateway = 192.0.2.1\n", "is not IPv4-ADDRESS:PORT");
	check_one("[fleet]\nproduct = acme board\n", "[fleet] product 'acme board' must be 1 to 64 characters");
	snprintf(line, sizeof(line), "[fleet]\nproduct = %065d\n", 0);
	check_one(line, "must be 1 to 64 characters");
	snprintf(line, sizeof(line), "[daemon]\nname = %065d\n", 0);
	check_one(line, "[daemon] name '");
	snprintf(line, sizeof(line), "[daemon]\nname = %064d\n", 0);
	check_one(line, NULL);
}

static void test_parsers(void **state)
{
	uint64_t v;
	bool b;

	(void)state;
	assert_int_equal(conf_parse_size("0", &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(conf_parse_size("3G", &v), 0);
	assert_int_equal(v, UINT64_C(3) << 30);
	assert_int_equal(conf_parse_size("-1", &v), -EINVAL);
	assert_int_equal(conf_parse_size("1T", &v), -EINVAL);
	assert_int_equal(conf_parse_size("", &v), -EINVAL);
	assert_int_equal(conf_parse_duration_ms("2h", &v), 0);
	assert_int_equal(v, 7200000);
	assert_int_equal(conf_parse_duration_ms("2 h", &v), -EINVAL);
	assert_int_equal(conf_parse_bool("On", &b), 0);
	assert_true(b);
	assert_int_equal(conf_parse_bool("nope", &b), -EINVAL);
}

static void test_reboot_policy(void **state)
{
	struct conf_reboot r;
	static const char *const bad[] = { "", "later", "window", "window 2:00-04:00", "window 02:00-04:0",
					   "window 24:00-01:00", "window 01:60-02:00", "window 03:00-03:00",
					   "window 02:00-04:00x", "window 02:00 04:00", "Now" };

	(void)state;
	assert_int_equal(conf_parse_reboot("now", &r), 0);
	assert_int_equal(r.when, DEV_REBOOT_NOW);
	assert_int_equal(conf_parse_reboot("none", &r), 0);
	assert_int_equal(r.when, DEV_REBOOT_NONE);
	assert_int_equal(conf_parse_reboot("window 22:30-04:15", &r), 0);
	assert_int_equal(r.when, DEV_REBOOT_WINDOW);
	assert_int_equal(r.start_min, 22 * 60 + 30);
	assert_int_equal(r.end_min, 4 * 60 + 15);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(conf_parse_reboot(bad[i], &r), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_full),
		cmocka_unit_test(test_errors_name_file_line_reason),
		cmocka_unit_test(test_dropins_override_and_extend),
		cmocka_unit_test(test_check),
		cmocka_unit_test(test_check_what_start_refuses),
		cmocka_unit_test(test_parsers),
		cmocka_unit_test(test_reboot_policy),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
