/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* shoal: release tooling and (later) the daemon's client. Only argument
 * dispatch lives here; each verb is in its own cmd-*.c. */
#include <sodium.h>

#include "cli.h"
#include "config.h"
#include "sysconf.h"

static const struct verb verbs[] = {
	{ "keygen", cmd_keygen, "make an Ed25519 key pair (NAME.key, NAME.pub)" },
	{ "keyring", cmd_keyring, "create a keyring of release keys signed by a root key" },
	{ "release", cmd_release, "create, show or verify a release" },
	{ "bundle", cmd_bundle, "pack a release into one file for a USB stick" },
	{ "install", cmd_install, "install a bundle or release into the inactive slot (A/B)" },
	{ "status", cmd_status, "slots, booted slot, trial, installed release; and shoald's state" },
	{ "boot-check", cmd_boot_check, "after a boot: health checks, then commit or roll back" },
	{ "mark-good", cmd_mark_good, "commit the trial of the booted slot" },
	{ "mark-bad", cmd_mark_bad, "roll back the trial of the booted slot" },
	{ "rollback", cmd_rollback, "go back to the other slot" },
	{ "boot-sim", cmd_boot_sim, "boot simulator: what the bootloader does at power-on" },
	{ "peers", cmd_peers, "the peers shoald is connected to" },
	{ "devices", cmd_devices, "gateway: the devices that report to it" },
	{ "campaign", cmd_campaign, "gateway: roll a release out: create|list|show|pause|resume|abort" },
	{ "releases", cmd_releases, "the releases shoald knows" },
	{ "publish", cmd_publish, "a gateway seeds a release from now on" },
};

static void help(void)
{
	printf("Usage: shoal [--version] [--system-conf FILE] VERB [OPTIONS...]\n\n"
	       "Signed, content-addressed updates shared peer to peer on a LAN.\n\nVerbs:\n");
	for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
		printf("  %-10s %s\n", verbs[i].name, verbs[i].summary);
	printf("\nExit codes:\n"
	       "  0  success\n"
	       "  1  the operation failed (a file could not be read or written, ...)\n"
	       "  2  bad command line\n"
	       "  3  verification failed: a signature, the trust chain, a chunk or a\n"
	       "     malformed file (the message names which)\n"
	       "  4  install refused: the release is not for this device (another product,\n"
	       "     older than the installed one, refused after a rollback, too large)\n"
	       "  5  boot-check, mark-bad, rollback: the device went back to the other slot\n"
	       "\nRun 'shoal VERB --help' for the options of a verb.\n");
}

int main(int argc, char **argv)
{
	if (sodium_init() < 0) {
		log_error("libsodium failed to initialise");
		return EXIT_FAIL;
	}
	if (argc < 2) {
		help();
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		help();
		return EXIT_OK;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("shoal %s\n", SHOAL_VERSION);
		return EXIT_OK;
	}
	if (!strcmp(argv[1], "--system-conf")) {
		/* before the verb: for every verb that reads the system config */
		if (argc < 4)
			return usage_error("shoal", "--system-conf FILE VERB ...");
		setenv(SYSCONF_ENV, argv[2], 1);
		argc -= 2;
		argv += 2;
	}
	return run_verbs("shoal", verbs, ELEMENTSOF(verbs), argc - 1, argv + 1);
}
