/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* shoal-sim: rollouts on simulated fleets. Only argument handling lives
 * here; the scenario parser, the model and the output writers are in the
 * library the tests link. */
#include <getopt.h>
#include <stdio.h>

#include "config.h"
#include "model.h"
#include "output.h"
#include "process.h"
#include "scenario.h"

enum { EXIT_MISMATCH = 1, EXIT_USAGE = 2, EXIT_ERROR = 3 };

static void usage(FILE *f)
{
	fprintf(f,
		"usage: shoal-sim run SCENARIO [--out DIR] [--discovery mdns|static] [--seed S]\n"
		"                     [--keep DIR] [--time-limit SECONDS] [--loopback] [--quiet]\n"
		"       shoal-sim model SCENARIO [--out DIR] [--seed S] [--quiet]\n"
		"       shoal-sim check SCENARIO\n"
		"\n"
		"  run     process mode (root, or --loopback): a gateway and every device are real shoald\n"
		"          daemons, each in network namespaces of its own on a bridge, with\n"
		"          tc-shaped links, file-backed A/B slots and the boot simulator.\n"
		"          Same outputs as model.\n"
		"  model   simulate the scenario in one process: every device runs the real\n"
		"          transfer scheduler over modelled links and a simulated clock.\n"
		"          Writes DIR/results.json and DIR/report.svg (DIR: sim-out) and\n"
		"          prints a summary; a live view while it runs on a terminal.\n"
		"  check   parse the scenario and print what it resolves to.\n"
		"\n"
		"  --out DIR   where results.json and report.svg go (created if needed)\n"
		"  --seed S    replaces the scenario's [sim] seed\n"
		"  --quiet     no live view and no summary table\n"
		"  --discovery mdns|static   (run) how the nodes find each other: a dbus-daemon\n"
		"              and avahi-daemon per node (mdns, the default), or addresses in\n"
		"              each shoald.conf (static, for large fleets)\n"
		"  --keep DIR  (run) build the nodes in DIR and keep it (logs, slots, state)\n"
		"  --time-limit SECONDS  (run) instead of the scenario's [sim] time_limit\n"
		"  --loopback  (run) without root: every shoald on 127.0.0.1 with a port of\n"
		"              its own, static discovery, the links' rates as shoald's own\n"
		"              upload_rate/download_rate; no namespaces, tc or avahi, so no\n"
		"              latency, loss or link cuts\n"
		"\n"
		"Exit status: 0 every device ended as [expect] says, 1 some did not,\n"
		"2 bad usage or scenario, 3 the run or its output failed.\n"
		"The scenario format is in docs/simulator.md.\n");
}

static int cmd_check(const struct scenario *s)
{
	printf("%s: %u devices in %u groups, image %" PRIu64 " bytes (chunks ~%u bytes, %.2f%% changed%s)\n", s->path,
	       s->n_devices, s->n_groups, s->image_size, s->chunk_avg, s->changed_ppm / 1e4,
	       s->base_v1 ? "" : ", no version 1 on the devices");
	printf("gateway: up %" PRIu64 " B/s, down %" PRIu64 " B/s, latency %u us\n", s->gateway.up_bps,
	       s->gateway.down_bps, s->gateway.latency_us);
	printf("rollout: %s, %u canaries, install %" PRIu64 " ms, reboot %" PRIu64 " ms, health %" PRIu64 " ms\n",
	       s->rollout == SCN_ROLLOUT_CAMPAIGN ? "campaign" : "auto", s->n_canaries, s->install_ms, s->reboot_ms,
	       s->health_ms);
	for (uint32_t i = 0; i < s->n_faults; i++)
		printf("fault %s: %s on %s at %" PRIu64 " ms for %" PRIu64 " ms\n", s->faults[i].name,
		       scn_fault_kind_name(s->faults[i].kind),
		       s->faults[i].node == SCN_GATEWAY ? "gateway" : s->nodes[s->faults[i].node].name, s->faults[i].at_ms,
		       s->faults[i].duration_ms);
	for (uint32_t i = 0; i < s->n_devices; i++)
		printf("%s group=%s up=%" PRIu64 " down=%" PRIu64 " latency_us=%u loss_ppm=%u%s expect=%s\n",
		       s->nodes[i].name, s->groups[s->nodes[i].group].name, s->nodes[i].link.up_bps,
		       s->nodes[i].link.down_bps, s->nodes[i].link.latency_us, s->nodes[i].link.loss_ppm,
		       s->nodes[i].canary ? " canary" : "",
		       s->nodes[i].has_expect ? scn_state_name(s->nodes[i].expect) : "-");
	printf("Kumar-Ross bound: %.3f s\n", scenario_kumar_ross_s(s, scenario_fetch_bytes(s)));
	return 0;
}

/* Writes the outputs of a finished run and says how it went. */
static int finish(const struct scenario *s, const char *out, struct sim_results *r, const struct sim_trace *tr,
		  bool quiet)
{
	struct perr err = { "" };
	char path[4096];
	bool ok;

	snprintf(path, sizeof(path), "%s/results.json", out);
	if (sim_results_write_json(r, path, &err) < 0)
		goto fail;
	snprintf(path, sizeof(path), "%s/report.svg", out);
	if (sim_report_write_svg(r, tr, path, &err) < 0)
		goto fail;
	if (!quiet)
		sim_summary_print(stdout, r);
	ok = sim_results_expect_ok(r, stderr);
	printf("results: %s/results.json, report: %s/report.svg%s\n", out, out,
	       s->has_expect ? (ok ? "; every device ended as expected" : "; SOME DEVICES DID NOT END AS EXPECTED") : "");
	free(r->node);
	return ok ? 0 : EXIT_MISMATCH;
fail:
	fprintf(stderr, "shoal-sim: %s\n", err.msg);
	free(r->node);
	return EXIT_ERROR;
}

static int cmd_model(const struct scenario *s, const char *out, const struct model_opts *o, bool quiet)
{
	_cleanup_(sim_trace_freep) struct sim_trace *tr = NULL;
	struct sim_results r;
	struct perr err = { "" };

	if (sim_output_dir(out, &err) < 0) {
		fprintf(stderr, "shoal-sim: %s\n", err.msg);
		return EXIT_ERROR;
	}
	if (model_run(s, o, &r, &tr, &err) < 0) {
		fprintf(stderr, "shoal-sim: %s\n", err.msg);
		return EXIT_ERROR;
	}
	return finish(s, out, &r, tr, quiet);
}

static int cmd_run(const struct scenario *s, const char *out, const struct proc_opts *o, bool quiet)
{
	_cleanup_(sim_trace_freep) struct sim_trace *tr = NULL;
	struct sim_results r;
	struct perr err = { "" };
	int k;

	if (proc_usable(o->loopback, &err) < 0) {
		fprintf(stderr,
			"shoal-sim: %s\n"
			"shoal-sim: without root, `shoal-sim run --loopback %s` runs the same fleet of\n"
			"           real shoald on 127.0.0.1 (each on a port of its own, static discovery,\n"
			"           the links' rates as shoald's own rate limits; no latency, loss or link\n"
			"           cuts), and `shoal-sim model %s` simulates it in one process.\n",
			err.msg, s->path, s->path);
		return EXIT_ERROR;
	}
	if (sim_output_dir(out, &err) < 0) {
		fprintf(stderr, "shoal-sim: %s\n", err.msg);
		return EXIT_ERROR;
	}
	if ((k = proc_run(s, o, &r, &tr, &err)) < 0) {
		fprintf(stderr, "shoal-sim: %s\n", err.msg);
		return k == -EINTR ? 130 : EXIT_ERROR;
	}
	return finish(s, out, &r, tr, quiet);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "out", required_argument, NULL, 'o' },
		{ "seed", required_argument, NULL, 's' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "discovery", required_argument, NULL, 'd' },
		{ "keep", required_argument, NULL, 'k' },
		{ "time-limit", required_argument, NULL, 't' },
		{ "loopback", no_argument, NULL, 'L' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{}
	};
	_cleanup_(scenario_freep) struct scenario *s = NULL;
	struct model_opts mo = { .live = stdout };
	struct proc_opts po = { .live = stdout, .log = stderr, .mdns = true };
	struct perr err = { "" };
	const char *out = "sim-out", *cmd;
	bool quiet = false, discovery_set = false;
	int c;

	while ((c = getopt_long(argc, argv, "o:s:qhVd:k:t:L", opts, NULL)) != -1) {
		switch (c) {
		case 'o':
			out = optarg;
			break;
		case 's': {
			char *end;

			errno = 0;
			mo.seed = strtoull(optarg, &end, 0);
			if (errno || *end || !*optarg || *optarg == '-') {
				fprintf(stderr, "shoal-sim: --seed wants a whole number, not '%s'\n", optarg);
				return EXIT_USAGE;
			}
			mo.seed_set = true;
			po.seed = mo.seed;
			po.seed_set = true;
			break;
		}
		case 'q':
			quiet = true;
			mo.live = NULL;
			po.live = NULL;
			break;
		case 'd':
			if (strcmp(optarg, "mdns") && strcmp(optarg, "static")) {
				fprintf(stderr, "shoal-sim: --discovery is mdns or static, not '%s'\n", optarg);
				return EXIT_USAGE;
			}
			po.mdns = !strcmp(optarg, "mdns");
			discovery_set = true;
			break;
		case 'k':
			po.keep = optarg;
			break;
		case 't': {
			char *end;

			po.time_limit_s = strtod(optarg, &end);
			if (*end || !(po.time_limit_s > 0)) {
				fprintf(stderr, "shoal-sim: --time-limit wants seconds, not '%s'\n", optarg);
				return EXIT_USAGE;
			}
			break;
		}
		case 'L':
			po.loopback = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("shoal-sim %s\n", SHOAL_VERSION);
			return 0;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (argc - optind != 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (po.loopback && discovery_set && po.mdns) {
		fprintf(stderr, "shoal-sim: --loopback finds the nodes statically (every shoald on 127.0.0.1): "
				"--discovery mdns does not go with it\n");
		return EXIT_USAGE;
	}
	if (po.loopback)
		po.mdns = false;
	cmd = argv[optind];
	if (strcmp(cmd, "model") != 0 && strcmp(cmd, "check") != 0 && strcmp(cmd, "run") != 0) {
		fprintf(stderr, "shoal-sim: unknown command '%s'\n", cmd);
		return EXIT_USAGE;
	}
	if (scenario_load(argv[optind + 1], &s, &err) < 0) {
		fprintf(stderr, "shoal-sim: %s\n", err.msg);
		return EXIT_USAGE;
	}
	if (!strcmp(cmd, "check"))
		return cmd_check(s);
	if (!strcmp(cmd, "run"))
		return cmd_run(s, out, &po, quiet);
	return cmd_model(s, out, &mo, quiet);
}
