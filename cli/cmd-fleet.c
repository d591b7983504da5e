/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The gateway's fleet from the command line: shoal devices and shoal
 * campaign create|list|show|pause|resume|abort, over shoald's control
 * socket (the HTTP API offers the same). */
#include <getopt.h>
#include <stdio.h>
#include <time.h>

#include "cli.h"

static void print_json(json_t *o)
{
	json_dumpf(o, stdout, JSON_INDENT(2));
	fputc('\n', stdout);
}

static const char *ago(json_int_t t, char *buf, size_t size)
{
	long long s = (long long)time(NULL) - t;

	if (s < 0)
		s = 0;
	if (s < 90)
		snprintf(buf, size, "%llds ago", s);
	else if (s < 5400)
		snprintf(buf, size, "%lldm ago", s / 60);
	else
		snprintf(buf, size, "%lldh ago", s / 3600);
	return buf;
}

static const char *sget(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));

	return s ? s : "";
}

static void print_devices(json_t *devs)
{
	size_t i;
	json_t *d;

	if (!json_array_size(devs)) {
		printf("no devices have reported\n");
		return;
	}
	printf("%-20s %-16s %-28s %-12s %-16s %s\n", "NAME", "ID", "TAGS", "VERSION", "STATE", "LAST SEEN");
	json_array_foreach(devs, i, d) {
		char tags[256] = "", state[64], when[32];
		const char *k;
		json_t *v;

		json_object_foreach(json_object_get(d, "tags"), k, v)
			snprintf(tags + strlen(tags), sizeof(tags) - strlen(tags), "%s%s=%s", *tags ? " " : "", k,
				 json_string_value(v));
		snprintf(state, sizeof(state), "%s%s%s%s", sget(d, "state"), *sget(d, "phase") ? "/" : "", sget(d, "phase"),
			 "");
		printf("%-20s %-16.16s %-28s %-12s %-16s %s, %s\n", sget(d, "name"), sget(d, "id"), *tags ? tags : "-",
		       *sget(json_object_get(d, "installed"), "version") ? sget(json_object_get(d, "installed"), "version")
									  : "none",
		       state, json_is_true(json_object_get(d, "online")) ? "online" : "OFFLINE",
		       ago(json_integer_value(json_object_get(d, "last_seen")), when, sizeof(when)));
	}
}

int cmd_devices(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "socket", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{}
	};
	const char *sock = NULL;
	bool json = false;
	json_t *req, *r;
	int c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
		switch (c) {
		case 'j': json = true; break;
		case 's': sock = optarg; break;
		case 'h':
			printf("Usage: shoal devices [--json] [--socket PATH] [DEVICE]\n\n"
			       "Lists the devices that report to this gateway: name, id, tags, installed\n"
			       "version, state and when it last reported (OFFLINE after offline_after).\n"
			       "With DEVICE (an id prefix or a name): that device's latest report and history.\n\n"
			       "  --json          print the answer as JSON\n"
			       "  --socket PATH   shoald's control socket\n"
			       "  -h, --help      this text\n");
			return EXIT_OK;
		default: return usage_error("devices", "invalid option");
		}
	}
	if (optind + 1 < argc)
		return usage_error("devices", "unexpected argument '%s'", argv[optind + 1]);
	req = optind < argc ? json_pack("{s:s, s:s}", "cmd", "device", "id", argv[optind])
			    : json_pack("{s:s}", "cmd", "devices");
	r = control_request(socket_path(sock), req, false);
	json_decref(req);
	if (!r)
		return EXIT_FAIL;
	json_object_del(r, "ok");
	if (json || optind < argc)
		print_json(optind < argc ? json_object_get(r, "device") : r);
	else
		print_devices(json_object_get(r, "devices"));
	json_decref(r);
	return EXIT_OK;
}

static void print_campaign(json_t *c, bool long_form)
{
	size_t i;
	json_t *p, *t;

	printf("%-4" JSON_INTEGER_FORMAT " %-20s %-10s %-24s %-8s", json_integer_value(json_object_get(c, "id")),
	       sget(c, "name"), sget(c, "version"), *sget(c, "selector") ? sget(c, "selector") : "(every device)",
	       sget(c, "state"));
	json_array_foreach(json_object_get(c, "phases"), i, p) {
		json_t *s = json_object_get(p, "targets");

		if (json_integer_value(json_object_get(p, "total")))
			printf(" %s %" JSON_INTEGER_FORMAT "/%" JSON_INTEGER_FORMAT " done%s", sget(p, "phase"),
			       json_integer_value(json_object_get(s, "done")), json_integer_value(json_object_get(p, "total")),
			       json_integer_value(json_object_get(s, "failed")) ? " (failures)" : "");
	}
	printf("\n");
	if (!long_form)
		return;
	if (*sget(c, "reason"))
		printf("     %s\n", sget(c, "reason"));
	json_array_foreach(json_object_get(c, "targets"), i, t)
		printf("     %-20s %.16s %-7s %s\n", sget(t, "name"), sget(t, "device"), sget(t, "phase"), sget(t, "state"));
}

static int campaign_usage(void)
{
	printf("Usage: shoal campaign create --release VERSION|ID [--name NAME] [--selector 'k=v ...']\n"
	       "                             [--canary-count N | --canary-percent P] [--max-parallel N]\n"
	       "                             [--failure-threshold N] [--windows 'HH:MM-HH:MM ...']\n"
	       "       shoal campaign list|show ID|pause ID|resume ID|abort ID [--json] [--socket PATH]\n\n"
	       "Rolls a release this gateway seeds out to the devices whose tags match the\n"
	       "selector: a canary first, then the rest, at most max-parallel at once; a\n"
	       "failure threshold pauses it (resume goes on); windows are UTC.\n\n"
	       "  --release V       a version or release id (prefix) the gateway seeds\n"
	       "  --name NAME       a name for people (default: the release)\n"
	       "  --selector TAGS   key=value tags a device must all have (default: every device)\n"
	       "  --canary-count N  devices in the canary phase (default 1)\n"
	       "  --canary-percent P  instead: P%% of the matching devices\n"
	       "  --max-parallel N  devices installing or rebooting at once (default 1)\n"
	       "  --failure-threshold N  failures that pause the campaign (default 1; 0: never)\n"
	       "  --windows W       maintenance windows, e.g. '22:00-04:00' (UTC; default: always)\n"
	       "  --json            print the answer as JSON\n"
	       "  --socket PATH     shoald's control socket\n"
	       "  -h, --help        this text\n");
	return EXIT_OK;
}

int cmd_campaign(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "release", required_argument, NULL, 'r' },
		{ "name", required_argument, NULL, 'n' },
		{ "selector", required_argument, NULL, 'S' },
		{ "canary-count", required_argument, NULL, 'c' },
		{ "canary-percent", required_argument, NULL, 'p' },
		{ "max-parallel", required_argument, NULL, 'm' },
		{ "failure-threshold", required_argument, NULL, 'f' },
		{ "windows", required_argument, NULL, 'w' },
		{ "json", no_argument, NULL, 'j' },
		{ "socket", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{}
	};
	const char *sock = NULL, *sub;
	bool json = false;
	json_t *req = json_object(), *r;
	char cmd[32];
	int c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
		const char *key = NULL;
		char *end;
		unsigned long long v;

		switch (c) {
		case 'r': json_object_set_new(req, "release", json_string(optarg)); break;
		case 'n': json_object_set_new(req, "name", json_string(optarg)); break;
		case 'S': json_object_set_new(req, "selector", json_string(optarg)); break;
		case 'w': json_object_set_new(req, "windows", json_string(optarg)); break;
		case 'c': key = "canary_count"; break;
		case 'p': key = "canary_percent"; break;
		case 'm': key = "max_parallel"; break;
		case 'f': key = "failure_threshold"; break;
		case 'j': json = true; break;
		case 's': sock = optarg; break;
		case 'h': json_decref(req); return campaign_usage();
		default: json_decref(req); return usage_error("campaign", "invalid option");
		}
		if (key) {
			errno = 0;
			v = strtoull(optarg, &end, 10);
			if (errno || *end || !*optarg || v > 1000000) {
				json_decref(req);
				return usage_error("campaign", "--%s wants a number, not '%s'", opts[c == 'c' ? 3 : c == 'p' ? 4 : c == 'm' ? 5 : 6].name, optarg);
			}
			json_object_set_new(req, key, json_integer((json_int_t)v));
		}
	}
	if (optind >= argc) {
		json_decref(req);
		return usage_error("campaign", "create, list, show, pause, resume or abort?");
	}
	sub = argv[optind++];
	if (!strcmp(sub, "create")) {
		if (!json_object_get(req, "release")) {
			json_decref(req);
			return usage_error("campaign", "create needs --release");
		}
		snprintf(cmd, sizeof(cmd), "campaign-create");
	} else if (!strcmp(sub, "list")) {
		snprintf(cmd, sizeof(cmd), "campaigns");
	} else if (!strcmp(sub, "show") || !strcmp(sub, "pause") || !strcmp(sub, "resume") || !strcmp(sub, "abort")) {
		char *end;
		unsigned long long id;

		if (optind >= argc || !(id = strtoull(argv[optind], &end, 10)) || *end) {
			json_decref(req);
			return usage_error("campaign", "%s needs a campaign id (a number)", sub);
		}
		optind++;
		json_object_set_new(req, "id", json_integer((json_int_t)id));
		snprintf(cmd, sizeof(cmd), "%s%s", !strcmp(sub, "show") ? "campaign" : "campaign-",
			 !strcmp(sub, "show") ? "" : sub);
	} else {
		json_decref(req);
		return usage_error("campaign", "unknown subcommand '%s'", sub);
	}
	if (optind < argc) {
		json_decref(req);
		return usage_error("campaign", "unexpected argument '%s'", argv[optind]);
	}
	json_object_set_new(req, "cmd", json_string(cmd));
	r = control_request(socket_path(sock), req, false);
	json_decref(req);
	if (!r)
		return EXIT_FAIL;
	json_object_del(r, "ok");
	if (json) {
		print_json(r);
	} else if (!strcmp(sub, "list")) {
		size_t i;
		json_t *x;

		if (!json_array_size(json_object_get(r, "campaigns")))
			printf("no campaigns\n");
		json_array_foreach(json_object_get(r, "campaigns"), i, x)
			print_campaign(x, false);
	} else {
		print_campaign(json_object_get(r, "campaign"), true);
	}
	json_decref(r);
	return EXIT_OK;
}
