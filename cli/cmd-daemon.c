/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The daemon's client: shoal status | peers | releases, over shoald's
 * control socket (one JSON request line, one JSON reply line). */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <jansson.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define DEFAULT_SOCKET "/run/shoal/control.sock"

const char *socket_path(const char *opt)
{
	const char *e = getenv("SHOAL_CONTROL_SOCKET");

	return opt ? opt : e && *e ? e : DEFAULT_SOCKET;
}

/* Sends {"cmd": cmd} and returns the reply object, or NULL after saying
 * why (quiet: not a word when no shoald listens). */
static json_t *control_call(const char *path, const char *cmd, bool quiet)
{
	json_t *req = json_pack("{s:s}", "cmd", cmd), *r = control_request(path, req, quiet);

	json_decref(req);
	return r;
}

json_t *control_request(const char *path, json_t *request, bool quiet)
{
	json_t *reply = control_exchange(path, request, quiet);

	if (reply && !json_is_true(json_object_get(reply, "ok"))) {
		log_error("shoald: %s", json_string_value(json_object_get(reply, "error")) ?: "request failed");
		json_decref(reply);
		return NULL;
	}
	return reply;
}

json_t *control_exchange(const char *path, json_t *request, bool quiet)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char *req, *buf = NULL;
	size_t len = 0, cap = 0;
	json_error_t jerr;
	json_t *reply;
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		log_error("control socket path too long: %s", path);
		return NULL;
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (!quiet)
			log_error("cannot reach shoald at %s: %s (is it running? --socket or SHOAL_CONTROL_SOCKET "
			  "names another socket)", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	req = json_dumps(request, JSON_COMPACT);
	if (!req || write(fd, req, strlen(req)) != (ssize_t)strlen(req) || write(fd, "\n", 1) != 1) {
		log_error("%s: write failed: %s", path, strerror(errno));
		free(req);
		close(fd);
		return NULL;
	}
	free(req);
	for (;;) {
		ssize_t n;

		if (len + 4096 > cap) {
			char *p = realloc(buf, cap = cap ? cap * 2 : 8192);

			if (!p || cap > (16u << 20)) {
				free(p ? p : buf);
				close(fd);
				log_error("reply from shoald too large");
				return NULL;
			}
			buf = p;
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n <= 0)
			break;
		len += (size_t)n;
		if (memchr(buf + len - (size_t)n, '\n', (size_t)n))
			break;
	}
	close(fd);
	if (!buf) {
		log_error("shoald closed the connection without a reply");
		return NULL;
	}
	buf[len] = '\0';
	reply = json_loads(buf, JSON_DISABLE_EOF_CHECK, &jerr);
	free(buf);
	if (!reply)
		log_error("malformed reply from shoald: %s", jerr.text);
	return reply;
}

static void print_releases(json_t *rel)
{
	size_t i;
	json_t *r;

	if (!json_array_size(rel)) {
		printf("Releases:  none\n");
		return;
	}
	json_array_foreach(rel, i, r)
		printf("%s %s %s (counter %" JSON_INTEGER_FORMAT "), %s, id %.16s\n", i ? "          " : "Releases: ",
		       json_string_value(json_object_get(r, "product")), json_string_value(json_object_get(r, "version")),
		       json_integer_value(json_object_get(r, "counter")), json_string_value(json_object_get(r, "state")),
		       json_string_value(json_object_get(r, "id")));
}

static void print_fetch(json_t *f)
{
	char a[32], b[32];
	json_int_t held, total;

	if (!json_is_object(f))
		return;
	held = json_integer_value(json_object_get(f, "bytes_held"));
	total = json_integer_value(json_object_get(f, "bytes_total"));
	printf("Fetching:  %s: %s of %s (%d%%), %" JSON_INTEGER_FORMAT "/%" JSON_INTEGER_FORMAT " chunks\n",
	       json_string_value(json_object_get(f, "version")), size_format((uint64_t)held, a, sizeof(a)),
	       size_format((uint64_t)total, b, sizeof(b)), total ? (int)(held * 100 / total) : 0,
	       json_integer_value(json_object_get(f, "chunks_held")), json_integer_value(json_object_get(f, "chunks_total")));
}

static void print_device(json_t *v)
{
	json_t *last = json_object_get(v, "last"), *bc = json_object_get(v, "boot_check");
	const char *ver = json_string_value(json_object_get(v, "version")), *ph = json_string_value(json_object_get(v, "phase"));

	if (!json_is_object(v))
		return;
	printf("Install:   %s%s%s%s%s (install = %s, reboot = %s)\n", json_string_value(json_object_get(v, "state")),
	       ver ? " " : "", ver ? ver : "", ph ? ", phase " : "", ph ? ph : "",
	       json_string_value(json_object_get(v, "install")), json_string_value(json_object_get(v, "reboot")));
	if (json_object_get(v, "error"))
		printf("           installs are off: %s\n", json_string_value(json_object_get(v, "error")));
	if (bc && strcmp(json_string_value(json_object_get(bc, "outcome")) ?: "", "nothing"))
		printf("Boot:      check at start: %s %s\n", json_string_value(json_object_get(bc, "outcome")),
		       json_string_value(json_object_get(bc, "version")));
	if (json_is_object(last))
		printf("Last:      %s %s%s%s\n", json_string_value(json_object_get(last, "result")),
		       json_string_value(json_object_get(last, "version")),
		       *(json_string_value(json_object_get(last, "detail")) ?: "") ? ": " : "",
		       json_string_value(json_object_get(last, "detail")) ?: "");
}

static void print_status(json_t *s)
{
	json_t *b = json_object_get(s, "bytes");
	char a[32], c[32], d[32], e[32];

	printf("Device:    %.16s (%s), %s for %s\n", json_string_value(json_object_get(s, "device_id")),
	       json_string_value(json_object_get(s, "name")), json_string_value(json_object_get(s, "role")),
	       json_string_value(json_object_get(s, "product")));
	printf("Listening: port %" JSON_INTEGER_FORMAT ", up %" JSON_INTEGER_FORMAT " s\n",
	       json_integer_value(json_object_get(s, "port")), json_integer_value(json_object_get(s, "uptime_ms")) / 1000);
	print_releases(json_object_get(s, "releases"));
	print_fetch(json_object_get(s, "fetch"));
	print_device(json_object_get(s, "device"));
	printf("Received:  %s local, %s from peers, %s from the gateway; sent %s\n",
	       size_format((uint64_t)json_integer_value(json_object_get(b, "local")), a, sizeof(a)),
	       size_format((uint64_t)json_integer_value(json_object_get(b, "peers")), c, sizeof(c)),
	       size_format((uint64_t)json_integer_value(json_object_get(b, "gateway")), d, sizeof(d)),
	       size_format((uint64_t)json_integer_value(json_object_get(b, "sent")), e, sizeof(e)));
}

/* Peers this node banned: who, from where, why, until when (ended bans
 * stay listed as such). */
static void print_bans(json_t *bans)
{
	size_t i;
	json_t *b;

	if (!json_array_size(bans))
		return;
	printf("banned:\n");
	json_array_foreach(bans, i, b) {
		time_t until = (time_t)json_integer_value(json_object_get(b, "until"));
		const char *addr = json_string_value(json_object_get(b, "address"));
		struct tm tm;
		char when[32] = "?";

		if (gmtime_r(&until, &tm))
			strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%SZ", &tm);
		printf("  %s %s %s %s: %s\n", json_string_value(json_object_get(b, "id")) ?: "?",
		       addr && *addr ? addr : "(address unknown)",
		       json_is_true(json_object_get(b, "active")) ? "until" : "ended", when,
		       json_string_value(json_object_get(b, "reason")) ?: "");
	}
}

static int client_verb(const char *verb, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "socket", required_argument, NULL, 's' },
		{ "system-conf", required_argument, NULL, 'C' },
		{ "help", no_argument, NULL, 'h' },
		{}
	};
	const char *sock = NULL, *sysconf = NULL;
	bool json = false, is_status = !strcmp(verb, "status");
	json_t *reply, *sys = NULL;
	int c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
		switch (c) {
		case 'j': json = true; break;
		case 's': sock = optarg; break;
		case 'C': sysconf = optarg; break;
		case 'h':
			printf("Usage: shoal %s [--json] [--socket PATH]%s\n\n"
			       "Asks the running shoald and prints its answer.\n", verb,
			       is_status ? " [--system-conf FILE]" : "");
			if (is_status)
				printf("status also shows the slots, the booted slot, the bootloader's trial state\n"
				       "and the installed release from the system config; it needs no shoald for that.\n");
			printf("\n  --json              print the answer as JSON\n"
			       "  --socket PATH       shoald's control socket (default $SHOAL_CONTROL_SOCKET\n"
			       "                      or %s)\n", DEFAULT_SOCKET);
			if (is_status)
				printf("  --system-conf FILE  the system config (default $SHOAL_SYSTEM_CONF or\n"
				       "                      /etc/shoal/system.conf)\n");
			printf("  -h, --help          this text\n");
			return EXIT_OK;
		default: return usage_error(verb, "invalid option");
		}
	}
	if (optind < argc)
		return usage_error(verb, "unexpected argument '%s'", argv[optind]);
	if (is_status)
		sys = install_status_json(sysconf, !sysconf && !getenv("SHOAL_SYSTEM_CONF"));
	reply = control_call(socket_path(sock), verb, sys != NULL);
	/* the daemon names its system config: show the system part of that one */
	if (is_status && !sys && reply && json_is_string(json_object_get(json_object_get(reply, "device"), "system_conf")))
		sys = install_status_json(json_string_value(json_object_get(json_object_get(reply, "device"), "system_conf")),
					  false);
	if (!reply && !sys)
		return EXIT_FAIL;
	if (sys) {
		if (!reply)
			reply = json_object();
		if (!json)
			install_status_print(sys);
		json_object_set_new(reply, "system", sys);
		if (!json && json_object_size(reply) == 1) {
			json_decref(reply);
			return EXIT_OK;
		}
	}
	if (json) {
		json_object_del(reply, "ok");
		json_dumpf(reply, stdout, JSON_INDENT(2));
		fputc('\n', stdout);
	} else if (!strcmp(verb, "status")) {
		print_status(reply);
	} else if (!strcmp(verb, "releases")) {
		print_releases(json_object_get(reply, "releases"));
	} else {
		size_t i;
		json_t *p, *peers = json_object_get(reply, "peers");

		if (!json_array_size(peers))
			printf("no peers\n");
		json_array_foreach(peers, i, p) {
			char *line = json_dumps(p, JSON_COMPACT);

			printf("%s\n", line ? line : "?");
			free(line);
		}
		print_bans(json_object_get(reply, "banned"));
	}
	json_decref(reply);
	return EXIT_OK;
}

int cmd_status(int argc, char **argv)
{
	return client_verb("status", argc, argv);
}

int cmd_peers(int argc, char **argv)
{
	return client_verb("peers", argc, argv);
}

int cmd_releases(int argc, char **argv)
{
	return client_verb("releases", argc, argv);
}

int cmd_publish(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{}
	};
	const char *sock = NULL;
	char *path;
	json_t *req, *reply;
	int c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
		switch (c) {
		case 's': sock = optarg; break;
		case 'h':
			printf("Usage: shoal publish [--socket PATH] RELEASE-DIR-OR-BUNDLE\n\n"
			       "Asks the running gateway to seed a release from now on (it checks the\n"
			       "signatures first). To seed it at every start, name it in [gateway] import.\n\n"
			       "  --socket PATH  the gateway's control socket (default $SHOAL_CONTROL_SOCKET\n"
			       "                 or %s)\n"
			       "  -h, --help     this text\n", DEFAULT_SOCKET);
			return EXIT_OK;
		default: return usage_error("publish", "invalid option");
		}
	}
	if (optind + 1 != argc)
		return usage_error("publish", "one release directory or bundle is needed");
	if (!(path = realpath(argv[optind], NULL))) {
		log_error("%s: %s", argv[optind], strerror(errno));
		return EXIT_FAIL;
	}
	req = json_pack("{s:s, s:s}", "cmd", "import", "path", path);
	reply = control_request(socket_path(sock), req, false);
	json_decref(req);
	if (!reply) {
		free(path);
		return EXIT_FAIL;
	}
	printf("published %s\n", path);
	free(path);
	json_decref(reply);
	return EXIT_OK;
}
