/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Shared pieces of the `shoal` command: exit codes, key files, times,
 * output helpers. */
#pragma once

#include <stdio.h>

#include "keyfile.h" /* key_read_public, key_read_secret */
#include "manifest.h"
#include "util.h"

/* Exit codes (documented in `shoal --help` and docs/operations.md). */
enum {
	EXIT_OK = 0,
	EXIT_FAIL = 1,     /* an operation failed: I/O, missing file, ... */
	EXIT_USAGE = 2,    /* bad command line */
	EXIT_INVALID = 3,  /* verification failed: signature, trust, corrupt or malformed data */
	EXIT_REFUSED = 4,  /* install: the release is not for this device (product, older than the
			    * installed one, refused after a rollback, does not fit the slot) */
	EXIT_ROLLED_BACK = 5, /* boot-check, mark-bad, rollback: the device went back to the other slot */
};

struct verb {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
};

/* shoald's control socket: opt, else $SHOAL_CONTROL_SOCKET, else the
 * default. control_request sends one JSON request and returns the reply
 * when it says "ok", or NULL after printing why (quiet: nothing when no
 * shoald listens). The caller frees the reply. */
#include <jansson.h>
const char *socket_path(const char *opt);
json_t *control_request(const char *path, json_t *request, bool quiet);
/* The same, returning the reply whatever its "ok" (NULL: no reply, said
 * why unless quiet and nothing listens). */
json_t *control_exchange(const char *path, json_t *request, bool quiet);

/* Runs the verb named by argv[0] from the table, or prints the table. */
int run_verbs(const char *prog, const struct verb *verbs, size_t n, int argc, char **argv);

/* Messages go to stderr as "shoal: ..." */
void log_error(const char *fmt, ...) _printf_(1, 2);
void log_info(const char *fmt, ...) _printf_(1, 2);
/* Prints the usage error and returns EXIT_USAGE. */
int usage_error(const char *verb, const char *fmt, ...) _printf_(2, 3);
/* Maps a negative errno from a verifier to EXIT_INVALID or EXIT_FAIL. */
int exit_code_for(int k);

/* Accepts "2027-01-31", "2027-01-31T12:00:00Z", "@1700000000", "+30d",
 * "+12h", "+90m", "+3600s" (relative to now). */
int time_parse(const char *s, uint64_t now, uint64_t *ret, struct perr *err);
/* "1.5 GiB" */
const char *size_format(uint64_t n, char *buf, size_t size);
/* Parses "65536", "64K", "1M". */
int size_parse(const char *s, uint64_t *ret);

/* Seconds since the epoch, honouring SOURCE_DATE_EPOCH for reproducible builds. */
uint64_t now_or_source_date(void);

/* A progress bar on stderr when it is a terminal, silent otherwise. */
struct progress {
	const char *what;
	uint64_t total;
	uint64_t done;
	double started;
	double last_draw;
	bool tty;
};
void progress_start(struct progress *p, const char *what, uint64_t total);
void progress_update(struct progress *p, uint64_t done);
void progress_end(struct progress *p);
double mono_seconds(void);

int cmd_keygen(int argc, char **argv);
int cmd_keyring(int argc, char **argv);
int cmd_release(int argc, char **argv);
int cmd_bundle(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_peers(int argc, char **argv);
int cmd_devices(int argc, char **argv);
int cmd_campaign(int argc, char **argv);
int cmd_releases(int argc, char **argv);
int cmd_publish(int argc, char **argv);
int cmd_install(int argc, char **argv);
int cmd_boot_check(int argc, char **argv);
int cmd_mark_good(int argc, char **argv);
int cmd_mark_bad(int argc, char **argv);
int cmd_rollback(int argc, char **argv);
int cmd_boot_sim(int argc, char **argv);

/* The system half of `shoal status` (system.conf, state, bootloader), as
 * JSON (caller decrefs). quiet: NULL without a word when there is no
 * system config; otherwise NULL after saying why. */
struct json_t;
struct json_t *install_status_json(const char *conf, bool quiet);
void install_status_print(struct json_t *s);
