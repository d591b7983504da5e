/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* shoald: argument parsing only; the daemon lives in libshoal-daemon. */
#include <getopt.h>
#include <malloc.h>
#include <sodium.h>
#include <stdio.h>

#include "config.h"
#include "daemon.h"
#include "log.h"

static void help(void)
{
	printf("Usage: shoald [-c FILE] [--check] [--version]\n\n"
	       "Shares signed, content-addressed updates with the other devices of the\n"
	       "fleet on the LAN, and (role = gateway) seeds releases and runs the fleet.\n\n"
	       "  -c, --config FILE  configuration (default /etc/shoal/shoal.conf, plus\n"
	       "                     *.conf in conf.d/ beside it; see docs/configuration.md)\n"
	       "      --check        load and check the configuration, then exit\n"
	       "      --version      print the version\n"
	       "  -h, --help         this text\n\n"
	       "Signals: SIGTERM and SIGINT shut down cleanly.\n"
	       "Exit codes: 0 clean shutdown, 1 failure at start (the log says why),\n"
	       "2 bad command line or configuration.\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check", no_argument, NULL, 'C' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{}
	};
	const char *path = "/etc/shoal/shoal.conf";
	struct daemon d = { 0 };
	struct perr err = { "" };
	bool check = false;
	int c, k;

	while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) >= 0) {
		switch (c) {
		case 'c': path = optarg; break;
		case 'C': check = true; break;
		case 'V': printf("shoald %s\n", SHOAL_VERSION); return 0;
		case 'h': help(); return 0;
		default: fprintf(stderr, "Try 'shoald --help'.\n"); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "shoald: unexpected argument '%s'\nTry 'shoald --help'.\n", argv[optind]);
		return 2;
	}
	/* Chunk buffers (up to a few MiB) come and go all the time: keep them
	 * on the heap instead of an mmap and a page-fault storm per chunk. */
	mallopt(M_MMAP_THRESHOLD, 8 << 20);
	mallopt(M_TRIM_THRESHOLD, 32 << 20);
	if (sodium_init() < 0) {
		log_err("libsodium failed to initialise");
		return 1;
	}
	if (conf_init(&d.conf) < 0 || conf_load(&d.conf, path, &err) < 0 || conf_check(&d.conf, &err) < 0) {
		log_err("configuration: %s", err.msg);
		conf_deinit(&d.conf);
		return 2;
	}
	if (check) {
		printf("%s: configuration is valid\n", path);
		conf_deinit(&d.conf);
		return 0;
	}
	if ((k = daemon_init(&d, &err)) < 0) {
		log_err("%s", err.msg);
		daemon_deinit(&d);
		return 1;
	}
	daemon_run(&d);
	daemon_deinit(&d);
	log_notice("stopped");
	return 0;
}
