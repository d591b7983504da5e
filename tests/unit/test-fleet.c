/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* REPORT and COMMAND payloads (proto/fleet.h): the bounds of every list
 * and string from both sides, the version rule (a newer version's extra
 * fields are kept, version 0 is refused), a golden COMMAND, and the tag
 * selector parser and matcher the campaigns use. */
#include <stdio.h>

#include "helpers.h"
#include "wire.h"

static int decode(const struct wbuf *w, struct msg *m, struct perr *err)
{
	return wire_decode(w->p, w->len, m, err);
}

/* Encodes m bypassing wire_encode's check, so that the decoder's
 * refusal is what is tested. */
static struct wbuf raw_report(const struct msg_report *r)
{
	struct wbuf w = { 0 };

	wbuf_u8(&w, MSG_REPORT);
	assert_int_equal(report_encode(r, &w), 0);
	return w;
}

#define refused(r, needle) refused_at((r), (needle), __LINE__)
static void refused_at(const struct msg_report *r, const char *needle, int line)
{
	struct wbuf w = raw_report(r), again = { 0 };
	struct msg m = { .type = MSG_REPORT, .report = *r };
	struct perr err = { "" };
	struct msg d;

	assert_err_at(decode(&w, &d, &err), -EBADMSG, &err, needle, __FILE__, line);
	_assert_int_equal(wire_encode(&m, &again), -EINVAL, __FILE__, line);
	wbuf_free(&again);
	wbuf_free(&w);
}

#define accepted(r) accepted_at((r), __LINE__)
static void accepted_at(const struct msg_report *r, int line)
{
	struct wbuf w = raw_report(r);
	struct perr err = { "" };
	struct msg d;

	assert_err_at(decode(&w, &d, &err), 0, &err, NULL, __FILE__, line);
	_assert_true(report_equal(r, &d.report), "decodes to the same report", __FILE__, line);
	wbuf_free(&w);
}

static void test_report_bounds(void **state)
{
	static char big[REPORT_HEALTH_OUTPUT_MAX + 1];
	struct msg_report r, base;

	(void)state;
	memset(big, 'x', sizeof(big));
	fixture_report(&base);
	accepted(&base);

	r = base;
	r.version = 0;
	refused(&r, "version 0 does not exist");
	r = base;
	r.product = (struct report_str){ "a b", 3 };
	refused(&r, "product at byte 42 holds characters");
	r = base;
	r.product.len = 0;
	refused(&r, "product at byte 42 has length 0");
	r = base;
	r.name = (struct report_str){ big, 64 };
	accepted(&r);
	r.name.len = 65;
	refused(&r, "name");
	r = base;
	r.tags[1].key = (struct report_str){ "li ne", 5 };
	refused(&r, "tag key");
	r = base;
	r.tags[1].value = (struct report_str){ "a b", 3 };
	refused(&r, "tag value");
	r = base;
	r.n_tags = REPORT_TAGS_MAX;
	for (size_t i = 0; i < REPORT_TAGS_MAX; i++)
		r.tags[i] = base.tags[i % 2];
	accepted(&r);
	r.n_tags = REPORT_TAGS_MAX + 1;
	{
		struct wbuf w = { 0 };

		assert_int_equal(report_encode(&r, &w), -EINVAL);
		wbuf_free(&w);
	}
	r = base;
	r.booted_slot = REPORT_SLOTS_MAX;
	refused(&r, "booted slot");
	r.booted_slot = REPORT_SLOT_NONE;
	accepted(&r);
	r = base;
	r.state = REPORT_STATE_LAST + 1;
	refused(&r, "state at byte");
	r = base;
	r.progress_done = r.progress_total + 1;
	refused(&r, "progress 21 exceeds its total 20");
	r = base;
	r.last_error = (struct report_str){ "two\nlines", 9 };
	refused(&r, "last error");
	r = base;
	r.health[1].ok = 2;
	refused(&r, "health check result at byte");
	r = base;
	r.health[1].output = (struct report_str){ big, REPORT_HEALTH_OUTPUT_MAX };
	accepted(&r);
	r.health[1].output.len++;
	refused(&r, "health check output");
	r = base;
	r.health[1].output = (struct report_str){ "esc\x1b[2J", 7 };
	refused(&r, "health check output");
	r = base;
	r.health[0].name.len = 0;
	refused(&r, "health check name");
	r = base;
	r.inv[0].key = (struct report_str){ "ke=y", 4 };
	refused(&r, "inventory key");
	r = base;
	r.inv[0].value = (struct report_str){ big, REPORT_INV_VALUE_MAX + 1 };
	refused(&r, "inventory value");
}

static void test_report_versions(void **state)
{
	static const uint8_t ext[3] = { 9, 8, 7 };
	struct msg_report r;
	struct wbuf w;
	struct perr err = { "" };
	struct msg d;

	(void)state;
	fixture_report(&r);
	/* version 1 with trailing bytes: malformed */
	w = raw_report(&r);
	wbuf_put(&w, ext, sizeof(ext));
	assert_err(decode(&w, &d, &err), -EBADMSG, &err, "3 unexpected bytes after the payload");
	wbuf_free(&w);
	/* version 2: the same bytes are a newer device's fields, kept */
	r.version = 2;
	w = raw_report(&r);
	wbuf_put(&w, ext, sizeof(ext));
	assert_err(decode(&w, &d, &err), 0, &err, NULL);
	assert_int_equal(d.report.version, 2);
	assert_int_equal(d.report.ext_len, 3);
	assert_memory_equal(d.report.ext, ext, 3);
	assert_int_equal(d.report.n_health, 2);
	wbuf_free(&w);
}

static void test_command(void **state)
{
	struct msg m = { .type = MSG_COMMAND,
			 .command = { .version = 1, .action = COMMAND_INSTALL, .campaign = 0x0102, .counter = 5 } };
	struct wbuf w = { 0 };
	struct perr err = { "" };
	char hex[256];
	struct msg d;

	(void)state;
	assert_int_equal(wire_encode(&m, &w), 0);
	assert_string_equal(hex_encode(w.p, w.len, hex),
			    "0f" "01" "01" "0201000000000000"
			    "0000000000000000000000000000000000000000000000000000000000000000" "0500000000000000");
	w.p[2] = 3;
	assert_err(decode(&w, &d, &err), -EBADMSG, &err, "action at byte 2 is 3, allowed 1..2");
	w.p[2] = 1;
	w.p[3] = 0;
	w.p[4] = 0;
	assert_err(decode(&w, &d, &err), -EBADMSG, &err, "campaign id 0 does not exist");
	wbuf_free(&w);
	assert_string_equal(command_action_name(COMMAND_CANCEL), "cancel");
	assert_null(command_action_name(0));
	assert_string_equal(report_state_name(REPORT_REBOOT_PENDING), "reboot-pending");
	assert_null(report_state_name(REPORT_STATE_LAST + 1));
}

static void test_tags(void **state)
{
	struct report_tag t[REPORT_TAGS_MAX], sel[REPORT_TAGS_MAX];
	struct perr err = { "" };
	char many[REPORT_TAGS_MAX * 8 + 16] = "";

	(void)state;
	assert_int_equal(fleet_tags_parse("  customer=acme\tline=3 empty= ", t, &err), 3);
	assert_int_equal(t[0].key.len, 8);
	assert_memory_equal(t[1].value.s, "3", 1);
	assert_int_equal(t[2].value.len, 0);
	assert_int_equal(fleet_tags_parse("", t, &err), 0);
	assert_err(fleet_tags_parse("customer", t, &err), -EINVAL, &err, "tag 'customer' is not key=value");
	assert_err(fleet_tags_parse("=x", t, &err), -EINVAL, &err, "the key must be 1 to 32");
	assert_err(fleet_tags_parse("a=1 a=2", t, &err), -EINVAL, &err, "tag 'a' is given twice");
	assert_err(fleet_tags_parse("a=\x01", t, &err), -EINVAL, &err, "the value must be");
	for (size_t i = 0; i <= REPORT_TAGS_MAX; i++)
		snprintf(many + strlen(many), sizeof(many) - strlen(many), "k%zu=v ", i);
	assert_err(fleet_tags_parse(many, t, &err), -EINVAL, &err, "more than 32 tags");

	assert_int_equal(fleet_tags_parse("customer=acme line=3 site=x", t, &err), 3);
	assert_int_equal(fleet_tags_parse("line=3 customer=acme", sel, &err), 2);
	assert_true(fleet_tags_match(sel, 2, t, 3));
	assert_true(fleet_tags_match(sel, 0, t, 0));
	assert_int_equal(fleet_tags_parse("line=4", sel, &err), 1);
	assert_false(fleet_tags_match(sel, 1, t, 3));
	assert_int_equal(fleet_tags_parse("line=", sel, &err), 1);
	assert_false(fleet_tags_match(sel, 1, t, 3));
}

static void test_sanitize(void **state)
{
	char a[] = "ok\n\tcaf\xc3\xa9 \x1b[1m\xff\xc3";
	char b[] = "one\nline";

	(void)state;
	fleet_sanitize(a, strlen(a), false);
	assert_string_equal(a, "ok\n\tcaf\xc3\xa9 ?[1m??");
	assert_true(fleet_output_ok(a, strlen(a)));
	fleet_sanitize(b, strlen(b), true);
	assert_string_equal(b, "one?line");
	assert_true(text_is_clean(b, strlen(b)));
}

static void test_health_parse(void **state)
{
	char text[] = "hook pre-install.d/10: ok\n"
		      "health state-db: ok\n"
		      "health 10-app: failed: port 80 closed\n"
		      "health 20-slow: timed out\n"
		      "health : nameless\n"
		      "health okish: okay\n";
	struct report_health h[REPORT_HEALTH_MAX];

	(void)state;
	assert_int_equal(fleet_health_parse(text, h), 4);
	assert_int_equal(h[0].name.len, 8);
	assert_memory_equal(h[0].name.s, "state-db", 8);
	assert_int_equal(h[0].ok, 1);
	assert_int_equal(h[0].output.len, 0);
	assert_memory_equal(h[1].name.s, "10-app", 6);
	assert_int_equal(h[1].ok, 0);
	assert_int_equal(h[1].output.len, strlen("port 80 closed"));
	assert_memory_equal(h[1].output.s, "port 80 closed", h[1].output.len);
	assert_int_equal(h[2].ok, 0);
	assert_int_equal(h[3].ok, 0); /* "okay" is not "ok" */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_report_bounds),
		cmocka_unit_test(test_report_versions),
		cmocka_unit_test(test_command),
		cmocka_unit_test(test_tags),
		cmocka_unit_test(test_sanitize),
		cmocka_unit_test(test_health_parse),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
