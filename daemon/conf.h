/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* shoald's configuration: an INI file plus drop-ins (FILE.d/ or conf.d/
 * beside it, *.conf in name order, later ones override single values and
 * add to lists). Every key is described in docs/configuration.md; an
 * unknown section or key, or a value that does not parse, is an error that
 * names the file, the line and what was wrong. */
#pragma once

#include <netinet/in.h>

#include "confparse.h"

enum conf_role {
	ROLE_DEVICE = 0,
	ROLE_GATEWAY = 1,
};

struct conf {
	/* [daemon] */
	enum conf_role role;
	char *name;           /* shown to peers and the gateway; default: hostname */
	char *state_dir;      /* SQLite database, device key */
	char *listen_address; /* default "0.0.0.0" */
	uint16_t listen_port; /* 0: any free port */
	char *control_socket;
	int log_level;        /* LOG_ERR .. LOG_DEBUG */
	char *tags;           /* "customer=acme line=3": what campaigns select on */
	uint64_t report_interval_ms; /* a device reports to the gateway at least this often */

	/* [fleet] */
	char *product;
	char *fleet_secret_file;
	char *fleet_tag;
	struct conf_list trust; /* root public key files */

	/* [discovery] */
	bool mdns;
	struct conf_list static_peers; /* host:port */
	char *gateway;                 /* host:port */
	uint32_t max_peers;

	/* [transfer] */
	uint64_t upload_rate;      /* bytes/s, 0: unlimited */
	uint64_t download_rate;
	uint64_t peer_upload_rate;
	uint32_t upload_slots;
	uint32_t max_connections;
	uint64_t request_timeout_ms;
	uint64_t ban_ms;

	/* [gateway] */
	char *store_dir;
	struct conf_list import; /* release directories or bundles seeded at start */
	struct conf_list origin; /* HTTP(S) URLs of release directories */
	uint64_t origin_interval_ms;
	uint32_t origin_connections;
	uint64_t origin_rate;  /* bytes/s over all origin transfers, 0: unlimited */
	char *origin_ca_file;
	uint64_t offline_after_ms; /* a device without a report for this long shows offline */
	uint32_t report_history;   /* reports kept per device */
	char *http_listen;         /* "127.0.0.1:8080": the API, dashboard and /metrics; NULL: none */
	char *http_token_file;     /* the API's bearer token */

	/* [device] */
	char *target;            /* where a fetched image is assembled */
	struct conf_list reuse;  /* files whose chunks are copied before fetching */
	bool auto_fetch;
	char *inventory_dir;     /* executables that print key=value lines for the report */
	uint64_t inventory_timeout_ms;
	char *system_conf;       /* the installer's system.conf: fetch into the inactive slot, install */
	int install;             /* enum conf_install */
	char *reboot;            /* "now", "none", "window HH:MM-HH:MM"; NULL: [system] reboot */
};

enum conf_install {
	INSTALL_AUTO = 0,   /* install a release as soon as it is fetched */
	INSTALL_MANUAL = 1, /* wait for `shoal install --fetched` or the gateway */
};

enum conf_reboot_when {
	DEV_REBOOT_NOW = 0,
	DEV_REBOOT_NONE,
	DEV_REBOOT_WINDOW,
};

struct conf_reboot {
	enum conf_reboot_when when;
	unsigned start_min, end_min; /* the window, minutes after local midnight; end < start wraps */
};

/* Parses [device] reboot: "now", "none" or "window HH:MM-HH:MM". */
int conf_parse_reboot(const char *s, struct conf_reboot *ret);

/* Fills c with the defaults. */
int conf_init(struct conf *c);
void conf_deinit(struct conf *c);

/* Parses path, then its drop-in directory. On error, err says
 * "FILE:LINE: reason". The first error stops loading; c then holds a
 * partial configuration the caller must not use (only conf_deinit). */
int conf_load(struct conf *c, const char *path, struct perr *err);

/* Cross-key checks that a single line cannot make (a gateway needs a
 * store, a device a target, and so on), and every check of a value that
 * would otherwise only fail at start (the fleet tag fits a TXT record, the
 * product and name fit HELLO, addresses parse), so that `shoald --check`
 * and a start agree. Files (keys, the fleet secret) are read at start. */
int conf_check(const struct conf *c, struct perr *err);

/* Parses "192.0.2.1:7070" (an IPv4 address, a port 1..65535). */
int conf_parse_hostport(const char *s, struct sockaddr_in *ret);
