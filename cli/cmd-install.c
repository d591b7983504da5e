/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* shoal install | boot-check | mark-good | mark-bad | rollback | boot-sim,
 * and the system half of shoal status: the installer library used
 * directly, with the system config, the state database and the bootloader
 * environment, so that they work with no shoald running; install,
 * mark-good, mark-bad and rollback go through shoald when it runs for the
 * same system config (it holds the installer then). */
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <time.h>
#include <jansson.h>
#include <stdio.h>
#include <syslog.h>
#include <unistd.h>

#include "cli.h"
#include "install.h"

struct ui {
	struct progress prog;
	enum install_phase phase;
	bool json;
};

static void ui_progress(void *ud, enum install_phase phase, uint64_t done, uint64_t total)
{
	struct ui *u = ud;

	if (u->phase != phase) {
		if (u->phase != PHASE_NONE)
			progress_end(&u->prog);
		u->phase = phase;
		progress_start(&u->prog, phase == PHASE_WRITE ? "writing" : "verifying", total);
	}
	progress_update(&u->prog, done);
}

static void ui_done(struct ui *u)
{
	if (u->phase != PHASE_NONE) {
		progress_end(&u->prog);
		u->phase = PHASE_NONE;
	}
}

static void ui_log(void *ud, int level, const char *msg)
{
	ui_done(ud);
	if (level <= LOG_WARNING)
		log_error("%s", msg);
	else
		log_info("%s", msg);
}

static int open_installer(const char *conf, struct ui *u, const char *const *trust, size_t n_trust,
			  struct sysconf **ret_sc, struct installer **ret, struct perr *err)
{
	struct installer_opts o = { .progress = ui_progress, .log = ui_log, .ud = u, .extra_trust = trust,
				    .n_extra_trust = n_trust };
	int k;

	if ((k = sysconf_load(sysconf_path(conf), ret_sc, err)) < 0)
		return k;
	if ((k = installer_open(*ret_sc, &o, ret, err)) < 0) {
		sysconf_free(*ret_sc);
		*ret_sc = NULL;
	}
	return k;
}

/* Exit codes beyond 0..3, documented in `shoal --help`. */
static int install_exit_code(int k)
{
	switch (-k) {
	case EPERM:
	case EFBIG:
	case EOPNOTSUPP:
		return EXIT_REFUSED;
	default:
		return exit_code_for(k);
	}
}

static int parse_reboot(const char *s, int *ret)
{
	if (!strcmp(s, "now"))
		*ret = REBOOT_NOW;
	else if (!strcmp(s, "none"))
		*ret = REBOOT_NONE;
	else
		return -EINVAL;
	return 0;
}

static void print_json(json_t *o)
{
	json_dumpf(o, stdout, JSON_INDENT(2));
	fputc('\n', stdout);
	json_decref(o);
}

static const char *hex_id(const uint8_t id[HASH_SIZE], char buf[2 * HASH_SIZE + 1])
{
	return hex_encode(id, HASH_SIZE, buf);
}

/* ---- options shared by the verbs ---- */

struct opts {
	const char *conf;
	bool json;
	int reboot;
	const char *trust[SIGSET_MAX];
	size_t n_trust;
	bool fetched;
	const char *socket;
	bool no_daemon;
};

enum { O_CONF = 0x100, O_JSON, O_REBOOT, O_TRUST, O_HELP, O_FETCHED, O_SOCKET, O_NO_DAEMON };

/* with_daemon: --socket and --no-daemon (install, mark-good, mark-bad,
 * rollback); with_trust: --trust and --fetched (install). */
static int parse_opts(const char *verb, int argc, char **argv, bool with_reboot, bool with_trust, bool with_daemon,
		      const char *usage, struct opts *o)
{
	static const struct option all[] = {
		{ "system-conf", required_argument, NULL, O_CONF },
		{ "json", no_argument, NULL, O_JSON },
		{ "reboot", required_argument, NULL, O_REBOOT },
		{ "trust", required_argument, NULL, O_TRUST },
		{ "help", no_argument, NULL, O_HELP },
		{ "fetched", no_argument, NULL, O_FETCHED },
		{ "socket", required_argument, NULL, O_SOCKET },
		{ "no-daemon", no_argument, NULL, O_NO_DAEMON },
		{}
	};
	int c;

	*o = (struct opts){ .reboot = -1 };
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", all, NULL)) >= 0) {
		switch (c) {
		case O_CONF: o->conf = optarg; break;
		case O_JSON: o->json = true; break;
		case O_REBOOT:
			if (!with_reboot || parse_reboot(optarg, &o->reboot) < 0)
				return usage_error(verb, "--reboot is now or none");
			break;
		case O_TRUST:
			if (!with_trust || o->n_trust >= ELEMENTSOF(o->trust))
				return usage_error(verb, "--trust is for install, at most %zu", ELEMENTSOF(o->trust));
			o->trust[o->n_trust++] = optarg;
			break;
		case O_FETCHED:
			if (!with_trust)
				return usage_error(verb, "--fetched is for install");
			o->fetched = true;
			break;
		case O_SOCKET:
		case O_NO_DAEMON:
			if (!with_daemon)
				return usage_error(verb, "--socket and --no-daemon are for install, mark-good, mark-bad and "
						   "rollback");
			if (c == O_SOCKET)
				o->socket = optarg;
			else
				o->no_daemon = true;
			break;
		case 'h':
		case O_HELP:
			printf("%s", usage);
			return -1;
		default: return usage_error(verb, "invalid option");
		}
	}
	if (o->socket && o->no_daemon)
		return usage_error(verb, "--socket and --no-daemon contradict each other");
	return 0;
}

#define COMMON_HELP \
	"  --system-conf FILE  the system config (default $" SYSCONF_ENV " or " SYSCONF_DEFAULT ")\n" \
	"  --json              print the result as JSON\n"
#define REBOOT_HELP "  --reboot now|none   reboot when done, or leave it to the operator ([system] reboot;\n" \
	"                      through shoald: [device] reboot)\n"
#define DAEMON_HELP \
	"  --socket PATH       shoald's control socket (default $SHOAL_CONTROL_SOCKET or\n" \
	"                      /run/shoal/control.sock): when shoald runs there for this\n" \
	"                      system config it does the work; named, it must answer\n" \
	"  --no-daemon         use the installer directly (fails while shoald runs it)\n"

/* ---- through shoald ---- */

/* 1: shoald at the socket drives this system config, so the verb goes
 * through it; 0: the installer is used directly; <0: -(exit code). A
 * shoald that does not answer, has no system config, or drives another
 * one is not used, unless --socket named it. */
static int through_daemon(const char *verb, const struct opts *o)
{
	const char *path = socket_path(o->socket), *theirs;
	char a[PATH_MAX], b[PATH_MAX];
	json_t *req, *r;
	int yes;

	if (o->no_daemon)
		return 0;
	req = json_pack("{s:s}", "cmd", "status");
	r = control_request(path, req, !o->socket);
	json_decref(req);
	if (!r)
		return o->socket ? -EXIT_FAIL : 0;
	theirs = json_string_value(json_object_get(json_object_get(r, "device"), "system_conf"));
	yes = theirs && realpath(theirs, a) && realpath(sysconf_path(o->conf), b) && !strcmp(a, b);
	if (!yes && o->socket) {
		if (theirs)
			log_error("%s: shoald at %s drives %s, not %s", verb, path, theirs, sysconf_path(o->conf));
		else
			log_error("%s: shoald at %s has no [device] system_conf: it installs nothing", verb, path);
	}
	json_decref(r);
	return yes ? 1 : o->socket ? -EXIT_FAIL : 0;
}

static const char *reboot_word(int reboot)
{
	return reboot == REBOOT_NOW ? "now" : reboot == REBOOT_NONE ? "none" : NULL;
}

static int daemon_exit_code(json_t *reply)
{
	return install_exit_code(-(int)json_integer_value(json_object_get(reply, "errno")));
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

/* shoal install PATH with shoald: it checks, writes and switches; we
 * follow its progress and say what came of it, as the direct mode does. */
static int install_via_daemon(const struct opts *o, const char *source)
{
	const char *sock = socket_path(o->socket);
	char abs[PATH_MAX], a[32], b[32], c[32];
	struct ui u = { .json = o->json };
	json_t *req, *start, *r = NULL;
	json_int_t id;
	int code;

	if (o->n_trust) {
		log_error("install: --trust is for a direct install: shoald trusts what [system] trust names (stop it "
			  "and use --no-daemon)");
		return EXIT_USAGE;
	}
	if (!realpath(source, abs)) {
		log_error("install: %s: %s", source, strerror(errno));
		return EXIT_FAIL;
	}
	req = json_pack("{s:s, s:s, s:s?}", "cmd", "install", "path", abs, "reboot", reboot_word(o->reboot));
	start = control_exchange(sock, req, false);
	json_decref(req);
	if (!start)
		return EXIT_FAIL;
	if (!json_is_true(json_object_get(start, "ok"))) {
		code = daemon_exit_code(start);
		if (o->json)
			print_json(json_pack("{s:b, s:s, s:s, s:O?}", "ok", 0, "via", "shoald", "phase", "verify", "error",
					     json_object_get(start, "error")));
		log_error("install failed in phase verify: shoald: %s",
			  json_string_value(json_object_get(start, "error")) ?: "request failed");
		json_decref(start);
		return code;
	}
	id = json_integer_value(json_object_get(start, "id"));
	if (!o->json)
		log_info("shoald installs %s (counter %" JSON_INTEGER_FORMAT ") into slot %s",
			 json_string_value(json_object_get(start, "version")),
			 json_integer_value(json_object_get(start, "counter")),
			 json_string_value(json_object_get(start, "slot")));
	for (;;) {
		enum install_phase ph;

		req = json_pack("{s:s, s:I}", "cmd", "install-progress", "id", id);
		r = control_exchange(sock, req, false);
		json_decref(req);
		if (!r || !json_is_true(json_object_get(r, "ok"))) {
			ui_done(&u);
			log_error("install: lost track of the install shoald runs%s%s; 'shoal status' shows where it stands",
				  r ? ": " : "", r ? json_string_value(json_object_get(r, "error")) ?: "" : "");
			json_decref(r);
			json_decref(start);
			return EXIT_FAIL;
		}
		if (!json_is_true(json_object_get(r, "running")))
			break;
		ph = install_phase_from_name(json_string_value(json_object_get(r, "phase")) ?: "");
		if (ph == PHASE_WRITE || ph == PHASE_VERIFY_SLOT)
			ui_progress(&u, ph, (uint64_t)json_integer_value(json_object_get(r, "done")),
				    (uint64_t)json_integer_value(json_object_get(r, "total")));
		json_decref(r);
		sleep_ms(100);
	}
	ui_done(&u);
	code = json_is_true(json_object_get(r, "installed")) ? EXIT_OK : daemon_exit_code(r);
	if (o->json) {
		json_t *j = json_pack("{s:b, s:s, s:O, s:O, s:O, s:O, s:O, s:O, s:O, s:O, s:O, s:O}", "ok", code == EXIT_OK,
				      "via", "shoald", "release", json_object_get(start, "release"), "version",
				      json_object_get(start, "version"), "counter", json_object_get(start, "counter"),
				      "slot", json_object_get(start, "slot"), "phase", json_object_get(r, "phase"),
				      "image_size", json_object_get(r, "image_size"), "bytes_reused",
				      json_object_get(r, "bytes_reused"), "bytes_in_slot", json_object_get(r, "bytes_in_slot"),
				      "bytes_read", json_object_get(r, "bytes_read"), "rebooting", json_object_get(r, "rebooting"));

		if (code != EXIT_OK)
			json_object_set(j, "error", json_object_get(r, "error"));
		print_json(j);
	}
	if (code != EXIT_OK) {
		log_error("install failed in phase %s: %s", json_string_value(json_object_get(r, "phase")),
			  json_string_value(json_object_get(r, "error")) ?: "(no reason given)");
	} else if (!o->json) {
		const char *slot = json_string_value(json_object_get(start, "slot"));

		printf("installed %s (counter %" JSON_INTEGER_FORMAT ") into slot %s through shoald: %s image, %s reused "
		       "from the active slot, %s read from %s\n", json_string_value(json_object_get(start, "version")),
		       json_integer_value(json_object_get(start, "counter")), slot,
		       size_format((uint64_t)json_integer_value(json_object_get(r, "image_size")), a, sizeof(a)),
		       size_format((uint64_t)json_integer_value(json_object_get(r, "bytes_reused")), b, sizeof(b)),
		       size_format((uint64_t)json_integer_value(json_object_get(r, "bytes_read")), c, sizeof(c)), abs);
		if (json_integer_value(json_object_get(r, "bytes_in_slot")))
			printf("resumed: %s were already written\n",
			       size_format((uint64_t)json_integer_value(json_object_get(r, "bytes_in_slot")), a, sizeof(a)));
		printf(json_is_true(json_object_get(r, "rebooting"))
			       ? "rebooting into slot %s on trial\n"
			       : "slot %s boots on trial at the next reboot (shoald reboots as [device] reboot says, and "
				 "runs the health checks after it)\n", slot);
	}
	json_decref(r);
	json_decref(start);
	return code;
}

/* ---- install ---- */

int cmd_install(int argc, char **argv)
{
	static const char usage[] =
		"Usage: shoal install [OPTIONS] BUNDLE-OR-RELEASE-DIR\n\n"
		"Installs a release into the inactive slot and boots it on trial: verify the\n"
		"manifest (signatures, product, counter floor, refused releases, slot size),\n"
		"pre-install hooks, write the slot (chunks the active slot holds are copied\n"
		"from it first), check the whole slot against the manifest, post-install hooks,\n"
		"set the trial in the bootloader, reboot. After the reboot 'shoal boot-check'\n"
		"runs the health checks and commits or rolls back.\n\n"
		"When shoald runs for this system config (its control socket answers), it\n"
		"does the install: the same checks, and also the swarm's (the release must be\n"
		"newer than every release the device holds; a fetch of an older one stops for\n"
		"it, a fetch of one as new or newer makes this fail: shoald is busy), the write\n"
		"and the slot check off its event loop, then [device] reboot. The device\n"
		"serves the release to its peers from then on. With no shoald running the\n"
		"installer is used directly. Exit codes are the same either way.\n\n"
		"A release whose payload type is not 'ab-image' goes to the update module\n"
		"[system] modules-dir/TYPE instead: Download, Install, then (unless it needs a\n"
		"reboot) health checks and Commit, or Rollback. Exit 5 when it was rolled back.\n\n"
		COMMON_HELP REBOOT_HELP
		"  --trust ROOT.pub    a trusted root key besides [system] trust, for this install\n"
		"                      only (repeatable): a keyring only it signs is not kept;\n"
		"                      direct installs only\n"
		DAEMON_HELP
		"\nUsage: shoal install --fetched [--socket PATH] [--json]\n\n"
		"Asks the running shoald to install the release it fetched into the inactive\n"
		"slot ([device] install = manual waits for this). Exit 1 when none waits.\n";
	_cleanup_(sysconf_freep) struct sysconf *sc = NULL;
	_cleanup_(installer_freep) struct installer *in = NULL;
	struct ui u = { 0 };
	struct install_result res;
	struct perr err = { "" };
	struct opts o;
	char a[32], b[32], c[32], hex[2 * HASH_SIZE + 1];
	int k;

	if ((k = parse_opts("install", argc, argv, true, true, true, usage, &o)) != 0)
		return k < 0 ? EXIT_OK : k;
	if (o.fetched) {
		json_t *req, *r;

		if (optind != argc)
			return usage_error("install", "--fetched takes no bundle: shoald installs what it fetched");
		if (o.no_daemon)
			return usage_error("install", "--fetched asks shoald: not with --no-daemon");
		req = json_pack("{s:s}", "cmd", "install");
		r = control_request(socket_path(o.socket), req, false); /* says why when not "ok" */
		json_decref(req);
		if (!r)
			return EXIT_FAIL;
		if (o.json)
			print_json(r);
		else {
			printf("shoald installs the fetched release ('shoal status' shows its phase)\n");
			json_decref(r);
		}
		return EXIT_OK;
	}
	if (optind + 1 != argc)
		return usage_error("install", "expects one bundle or release directory");
	if ((k = through_daemon("install", &o)) < 0)
		return -k;
	if (k)
		return install_via_daemon(&o, argv[optind]);
	u.json = o.json;
	if ((k = open_installer(o.conf, &u, o.trust, o.n_trust, &sc, &in, &err)) < 0) {
		log_error("%s", err.msg);
		return exit_code_for(k);
	}
	k = installer_install(in, argv[optind], o.reboot, &res, &err);
	ui_done(&u);
	if (o.json) {
		json_t *j = json_pack("{s:b, s:s, s:s, s:I, s:s, s:s, s:I, s:I, s:I, s:I, s:b}", "ok", k == 0, "release",
				      hex_id(res.release, hex), "version", res.version, "counter", (json_int_t)res.counter,
				      "slot", res.slot >= 0 ? sc->slots[res.slot].bootname : "", "phase",
				      install_phase_name(res.phase), "image_size", (json_int_t)res.image_size,
				      "bytes_reused", (json_int_t)res.bytes_reused, "bytes_in_slot",
				      (json_int_t)res.bytes_in_slot, "bytes_read", (json_int_t)res.bytes_read, "rebooting",
				      res.rebooting);

		if (k < 0)
			json_object_set_new(j, "error", json_string(err.msg));
		print_json(j);
	}
	if (k < 0) {
		log_error("install failed in phase %s: %s", install_phase_name(res.phase), err.msg);
		/* an update module's install was undone: the update did not stick */
		return res.slot < 0 && res.phase == PHASE_ROLLBACK ? EXIT_ROLLED_BACK : install_exit_code(k);
	}
	if (!o.json && res.slot < 0) {
		printf("installed %s (counter %" PRIu64 ") with an update module: %s payload read from %s\n", res.version,
		       res.counter, size_format(res.image_size, a, sizeof(a)), argv[optind]);
		printf(res.phase == PHASE_COMMIT ? "committed %s\n"
			: res.rebooting ? "%s: rebooting; 'shoal boot-check' after it commits or rolls back\n"
					: "%s waits for a reboot; run 'shoal boot-check' after it\n", res.version);
	} else if (!o.json) {
		printf("installed %s (counter %" PRIu64 ") into slot %s: %s image, %s reused from the active slot, "
		       "%s read from %s\n", res.version, res.counter, sc->slots[res.slot].bootname,
		       size_format(res.image_size, a, sizeof(a)), size_format(res.bytes_reused, b, sizeof(b)),
		       size_format(res.bytes_read, c, sizeof(c)), argv[optind]);
		if (res.bytes_in_slot)
			printf("resumed: %s were already written\n", size_format(res.bytes_in_slot, a, sizeof(a)));
		printf(res.rebooting ? "rebooting into slot %s on trial\n"
				     : "slot %s boots on trial at the next reboot; run 'shoal boot-check' after it\n",
		       sc->slots[res.slot].bootname);
	}
	return EXIT_OK;
}

/* ---- boot-check, mark-good, mark-bad, rollback ---- */

static int finish(const char *verb, const char *booted, const struct opts *o, int k, const struct boot_check_result *r,
		  const struct perr *err)
{
	if (o->json) {
		json_t *j = json_pack("{s:b, s:s, s:s, s:I, s:s, s:s, s:b}", "ok", k == 0, "outcome",
				      boot_check_outcome_name(r->outcome), "version", r->version, "counter",
				      (json_int_t)r->counter, "booted", booted, "report", r->report, "rebooting", r->rebooting);

		if (k < 0)
			json_object_set_new(j, "error", json_string(err->msg));
		print_json(j);
	}
	if (k < 0) {
		log_error("%s: %s", verb, err->msg);
		return k == -ENOENT && strcmp(verb, "boot-check") ? EXIT_FAIL : exit_code_for(k);
	}
	if (!o->json) {
		if (*r->report)
			fputs(r->report, stdout);
		switch (r->outcome) {
		case BOOT_CHECK_NOTHING: printf("no install pending\n"); break;
		case BOOT_CHECK_REBOOT_PENDING: printf("%s waits for its trial boot (reboot to try it)\n", r->version); break;
		case BOOT_CHECK_COMMITTED: printf("committed %s (counter %" PRIu64 ")\n", r->version, r->counter); break;
		case BOOT_CHECK_ROLLED_BACK: printf("rolled back %s%s\n", r->version, r->rebooting ? ", rebooting" : ""); break;
		case BOOT_CHECK_FELL_BACK:
			printf("%s never completed a boot: the bootloader fell back; it is refused from now on\n", r->version);
			break;
		case BOOT_CHECK_ABANDONED: printf("the install of %s was abandoned\n", r->version); break;
		}
	}
	return r->outcome == BOOT_CHECK_ROLLED_BACK || r->outcome == BOOT_CHECK_FELL_BACK ? EXIT_ROLLED_BACK : EXIT_OK;
}

enum after_boot { AB_CHECK, AB_GOOD, AB_BAD, AB_ROLLBACK };

/* mark-good, mark-bad, rollback with shoald: it asks the installer and
 * follows (what it serves, refuses, when it reboots). */
static int judge_via_daemon(const char *verb, const struct opts *o)
{
	struct boot_check_result r = { .booted = -1 };
	struct perr err = { "" };
	const char *s;
	json_t *req, *reply;
	int k = 0;

	req = json_pack("{s:s, s:s?}", "cmd", verb, "reboot", reboot_word(o->reboot));
	reply = control_exchange(socket_path(o->socket), req, false);
	json_decref(req);
	if (!reply)
		return EXIT_FAIL;
	if (!json_is_true(json_object_get(reply, "ok"))) {
		k = -(int)json_integer_value(json_object_get(reply, "errno"));
		snprintf(err.msg, sizeof(err.msg), "shoald: %s",
			 json_string_value(json_object_get(reply, "error")) ?: "request failed");
		if (k >= 0)
			k = -EIO;
	} else {
		s = json_string_value(json_object_get(reply, "outcome")) ?: "";
		for (r.outcome = BOOT_CHECK_ABANDONED; r.outcome > BOOT_CHECK_NOTHING; r.outcome--)
			if (!strcmp(s, boot_check_outcome_name(r.outcome)))
				break;
		snprintf(r.version, sizeof(r.version), "%s", json_string_value(json_object_get(reply, "version")) ?: "");
		r.counter = (uint64_t)json_integer_value(json_object_get(reply, "counter"));
		snprintf(r.report, sizeof(r.report), "%s", json_string_value(json_object_get(reply, "report")) ?: "");
		r.rebooting = json_is_true(json_object_get(reply, "rebooting"));
	}
	k = finish(verb, json_string_value(json_object_get(reply, "booted")) ?: "", o, k, &r, &err);
	json_decref(reply);
	return k;
}

static int after_boot(const char *verb, enum after_boot what, const char *usage, int argc, char **argv)
{
	_cleanup_(sysconf_freep) struct sysconf *sc = NULL;
	_cleanup_(installer_freep) struct installer *in = NULL;
	struct boot_check_result r = { .booted = -1 };
	struct perr err = { "" };
	struct ui u = { 0 };
	struct opts o;
	int k;

	if ((k = parse_opts(verb, argc, argv, what != AB_GOOD, false, what != AB_CHECK, usage, &o)) != 0)
		return k < 0 ? EXIT_OK : k;
	if (optind != argc)
		return usage_error(verb, "unexpected argument '%s'", argv[optind]);
	if (what != AB_CHECK && (k = through_daemon(verb, &o)) != 0)
		return k < 0 ? -k : judge_via_daemon(verb, &o);
	if ((k = open_installer(o.conf, &u, NULL, 0, &sc, &in, &err)) < 0) {
		log_error("%s", err.msg);
		return exit_code_for(k);
	}
	switch (what) {
	case AB_CHECK: k = installer_boot_check(in, o.reboot, &r, &err); break;
	case AB_GOOD: k = installer_mark_good(in, &r, &err); break;
	case AB_BAD: k = installer_mark_bad(in, o.reboot, &r, &err); break;
	case AB_ROLLBACK: k = installer_rollback(in, o.reboot, &r, &err); break;
	}
	return finish(verb, r.booted >= 0 ? sc->slots[r.booted].bootname : "", &o, k, &r, &err);
}

int cmd_boot_check(int argc, char **argv)
{
	return after_boot("boot-check", AB_CHECK,
			  "Usage: shoal boot-check [OPTIONS]\n\n"
			  "Run at every start (shoald does, or a systemd unit before it): finishes the\n"
			  "pending install. Booted into the trial slot: health checks (built in, then\n"
			  "every executable of [system] health-dir), then commit hooks and commit, or\n"
			  "roll back. Booted into the old slot after a trial: the bootloader fell back;\n"
			  "the release is refused from then on. Exit 5 when the update did not stick.\n\n"
			  COMMON_HELP REBOOT_HELP, argc, argv);
}

int cmd_mark_good(int argc, char **argv)
{
	return after_boot("mark-good", AB_GOOD,
			  "Usage: shoal mark-good [OPTIONS]\n\n"
			  "Commits the trial of the booted slot without the health checks (the commit\n"
			  "hooks still run and can still refuse). Through shoald when it runs.\n\n"
			  COMMON_HELP DAEMON_HELP, argc, argv);
}

int cmd_mark_bad(int argc, char **argv)
{
	return after_boot("mark-bad", AB_BAD,
			  "Usage: shoal mark-bad [OPTIONS]\n\n"
			  "Rolls back the trial of the booted slot: the other slot boots next and the\n"
			  "release is refused from then on (shoald, when it runs, does it, serves the\n"
			  "release no more and does not fetch it again).\n\n" COMMON_HELP REBOOT_HELP DAEMON_HELP,
			  argc, argv);
}

int cmd_rollback(int argc, char **argv)
{
	return after_boot("rollback", AB_ROLLBACK,
			  "Usage: shoal rollback [OPTIONS]\n\n"
			  "During a trial: mark-bad. With an install waiting for its reboot: cancels the\n"
			  "trial (the release stays installable). Otherwise: the other slot boots next,\n"
			  "when it holds a verified release. Through shoald when it runs.\n\n"
			  COMMON_HELP REBOOT_HELP DAEMON_HELP, argc, argv);
}

int cmd_boot_sim(int argc, char **argv)
{
	static const char usage[] =
		"Usage: shoal boot-sim [OPTIONS]\n\n"
		"The boot simulator, for tests and the simulator: does what the bootloader does\n"
		"at power-on (count a trial boot; past the limit, fall back to the other slot)\n"
		"to the configured environment, and records the slot it boots in\n"
		"[system] boot-slot-file, where the installer reads the booted slot.\n\n" COMMON_HELP;
	_cleanup_(sysconf_freep) struct sysconf *sc = NULL;
	struct perr err = { "" };
	struct opts o;
	int k, slot;

	if ((k = parse_opts("boot-sim", argc, argv, false, false, false, usage, &o)) != 0)
		return k < 0 ? EXIT_OK : k;
	if (optind != argc)
		return usage_error("boot-sim", "unexpected argument '%s'", argv[optind]);
	if ((k = sysconf_load(sysconf_path(o.conf), &sc, &err)) < 0 || (k = bootsim_power_on(sc, &slot, &err)) < 0) {
		log_error("boot-sim: %s", err.msg);
		return exit_code_for(k);
	}
	if (o.json)
		print_json(json_pack("{s:s}", "booted", sc->slots[slot].bootname));
	else
		printf("booted slot %s\n", sc->slots[slot].bootname);
	return EXIT_OK;
}

/* ---- status ---- */

json_t *install_status_json(const char *conf, bool quiet)
{
	_cleanup_(sysconf_freep) struct sysconf *sc = NULL;
	_cleanup_(installer_freep) struct installer *in = NULL;
	struct installer_status s;
	struct perr err = { "" };
	struct ui u = { 0 };
	char hex[2 * HASH_SIZE + 1];
	json_t *j, *slots;

	if (quiet && access(sysconf_path(conf), F_OK) < 0)
		return NULL;
	if (open_installer(conf, &u, NULL, 0, &sc, &in, &err) < 0 || installer_status(in, &s, &err) < 0) {
		log_error("%s", err.msg);
		return NULL;
	}
	j = json_pack("{s:s, s:s, s:s?, s:{s:I, s:I, s:I}}", "product", sc->product, "bootloader",
		      bootloader_kind_name(sc->bootloader), "booted", s.booted >= 0 ? sc->slots[s.booted].bootname : NULL,
		      "floors", "counter", (json_int_t)s.floor_counter, "keyring", (json_int_t)s.floor_keyring, "time",
		      (json_int_t)s.floor_time);
	if (s.booted < 0)
		json_object_set_new(j, "booted_error", json_string(s.booted_error));
	if (s.env_ok)
		json_object_set_new(j, "bootloader_env",
				    json_pack("{s:s?, s:b, s:i, s:i}", "primary",
					      s.env.primary >= 0 ? sc->slots[s.env.primary].bootname : NULL, "trial",
					      s.env.trial, "bootcount", (int)s.env.bootcount, "bootlimit", (int)s.env.bootlimit));
	else
		json_object_set_new(j, "bootloader_error", json_string(s.env_error));
	slots = json_array();
	for (int i = 0; i < SYSCONF_SLOTS; i++) {
		json_t *o = json_pack("{s:s, s:s, s:b, s:b}", "bootname", sc->slots[i].bootname, "device",
				      sc->slots[i].device, "booted", s.booted == i, "primary", s.env_ok && s.env.primary == i);

		json_object_set_new(o, "state", json_string(s.slot_known[i] ? s.slots[i].state : "unknown"));
		if (s.slot_known[i] && s.slots[i].has_release) {
			json_object_set_new(o, "release", json_string(hex_id(s.slots[i].release, hex)));
			json_object_set_new(o, "version", json_string(s.slots[i].version));
			json_object_set_new(o, "counter", json_integer((json_int_t)s.slots[i].counter));
		}
		json_array_append_new(slots, o);
	}
	json_object_set_new(j, "slots", slots);
	if (s.booted >= 0 && s.slot_known[s.booted] && s.slots[s.booted].has_release)
		json_object_set_new(j, "installed", json_pack("{s:s, s:I}", "version", s.slots[s.booted].version, "counter",
							      (json_int_t)s.slots[s.booted].counter));
	if (s.pending)
		json_object_set_new(j, "pending",
				    json_pack("{s:s, s:s, s:I, s:s, s:s, s:s}", "release", hex_id(s.install.release, hex),
					      "version", s.install.version, "counter", (json_int_t)s.install.counter, "slot",
					      s.install.slot >= 0 ? sc->slots[s.install.slot].bootname : "(update module)", "phase", s.install.phase, "source",
					      s.install.source));
	return j;
}

void install_status_print(json_t *s)
{
	json_t *env = json_object_get(s, "bootloader_env"), *slots = json_object_get(s, "slots"), *p, *sl;
	size_t i;

	printf("System:    %s, bootloader %s, booted from slot %s\n", json_string_value(json_object_get(s, "product")),
	       json_string_value(json_object_get(s, "bootloader")),
	       json_string_value(json_object_get(s, "booted")) ?: "(unknown)");
	if (env)
		printf("Boot:      primary %s%s, bootcount %" JSON_INTEGER_FORMAT "/%" JSON_INTEGER_FORMAT "\n",
		       json_string_value(json_object_get(env, "primary")) ?: "(unset)",
		       json_is_true(json_object_get(env, "trial")) ? " on trial" : "",
		       json_integer_value(json_object_get(env, "bootcount")),
		       json_integer_value(json_object_get(env, "bootlimit")));
	else
		printf("Boot:      %s\n", json_string_value(json_object_get(s, "bootloader_error")));
	json_array_foreach(slots, i, sl) {
		const char *v = json_string_value(json_object_get(sl, "version"));

		printf("%s %s%s %-9s %s%s%s%s\n", i ? "          " : "Slots:    ", json_is_true(json_object_get(sl, "booted")) ? "*" : " ",
		       json_string_value(json_object_get(sl, "bootname")), json_string_value(json_object_get(sl, "state")),
		       json_string_value(json_object_get(sl, "device")), v ? " (" : "", v ? v : "", v ? ")" : "");
	}
	if ((p = json_object_get(s, "pending")))
		printf("Pending:   %s (counter %" JSON_INTEGER_FORMAT ") into slot %s, phase %s\n",
		       json_string_value(json_object_get(p, "version")), json_integer_value(json_object_get(p, "counter")),
		       json_string_value(json_object_get(p, "slot")), json_string_value(json_object_get(p, "phase")));
	printf("Floors:    counter %" JSON_INTEGER_FORMAT ", keyring %" JSON_INTEGER_FORMAT "\n",
	       json_integer_value(json_object_get(json_object_get(s, "floors"), "counter")),
	       json_integer_value(json_object_get(json_object_get(s, "floors"), "keyring")));
}
