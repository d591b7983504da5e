/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <arpa/inet.h>
#include <dirent.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <syslog.h>
#include <unistd.h>

#include "conf.h"
#include "txt.h"
#include "wire.h"

static const char *const role_names[] = { "device", "gateway", NULL };
static const int role_values[] = { ROLE_DEVICE, ROLE_GATEWAY };
static const char *const install_names[] = { "auto", "manual", NULL };
static const int install_values[] = { INSTALL_AUTO, INSTALL_MANUAL };
static const char *const level_names[] = { "error", "warning", "notice", "info", "debug", NULL };
static const int level_values[] = { LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO, LOG_DEBUG };

#define K(sec, key, t, field, lo, hi) { sec, key, CONF_##t, offsetof(struct conf, field), lo, hi, NULL, NULL }
#define E(sec, key, field, n, v) { sec, key, CONF_ENUM, offsetof(struct conf, field), 0, 0, n, v }

/* Keep in step with docs/configuration.md. */
static const struct conf_key keys[] = {
	E("daemon", "role", role, role_names, role_values),
	K("daemon", "name", STR, name, 0, 0),
	K("daemon", "state_dir", STR, state_dir, 0, 0),
	K("daemon", "listen_address", STR, listen_address, 0, 0),
	K("daemon", "listen_port", PORT, listen_port, 0, 65535),
	K("daemon", "control_socket", STR, control_socket, 0, 0),
	E("daemon", "log_level", log_level, level_names, level_values),
	K("daemon", "tags", STR, tags, 0, 0),
	K("daemon", "report_interval", DURATION, report_interval_ms, 1000, UINT64_C(86400000)),
	K("fleet", "product", STR, product, 0, 0),
	K("fleet", "secret_file", STR, fleet_secret_file, 0, 0),
	K("fleet", "tag", STR, fleet_tag, 0, 0),
	K("fleet", "trust", LIST, trust, 0, 0),
	K("discovery", "mdns", BOOL, mdns, 0, 0),
	K("discovery", "static_peer", LIST, static_peers, 0, 0),
	K("discovery", "gateway", STR, gateway, 0, 0),
	K("discovery", "max_peers", U32, max_peers, 1, 1024),
	K("transfer", "upload_rate", SIZE, upload_rate, 0, UINT64_MAX),
	K("transfer", "download_rate", SIZE, download_rate, 0, UINT64_MAX),
	K("transfer", "peer_upload_rate", SIZE, peer_upload_rate, 0, UINT64_MAX),
	K("transfer", "upload_slots", U32, upload_slots, 1, 256),
	K("transfer", "max_connections", U32, max_connections, 1, 4096),
	K("transfer", "request_timeout", DURATION, request_timeout_ms, 100, 3600000),
	K("transfer", "ban_time", DURATION, ban_ms, 1000, UINT64_C(30) * 86400000),
	K("gateway", "store_dir", STR, store_dir, 0, 0),
	K("gateway", "import", LIST, import, 0, 0),
	K("gateway", "origin", LIST, origin, 0, 0),
	K("gateway", "origin_interval", DURATION, origin_interval_ms, 1000, UINT64_C(7) * 86400000),
	K("gateway", "origin_connections", U32, origin_connections, 1, 64),
	K("gateway", "origin_rate", SIZE, origin_rate, 0, UINT64_MAX),
	K("gateway", "origin_ca_file", STR, origin_ca_file, 0, 0),
	K("gateway", "offline_after", DURATION, offline_after_ms, 1000, UINT64_C(7) * 86400000),
	K("gateway", "report_history", U32, report_history, 1, 100000),
	K("gateway", "http_listen", STR, http_listen, 0, 0),
	K("gateway", "http_token_file", STR, http_token_file, 0, 0),
	K("device", "target", STR, target, 0, 0),
	K("device", "reuse", LIST, reuse, 0, 0),
	K("device", "auto_fetch", BOOL, auto_fetch, 0, 0),
	K("device", "inventory_dir", STR, inventory_dir, 0, 0),
	K("device", "inventory_timeout", DURATION, inventory_timeout_ms, 100, 600000),
	K("device", "system_conf", STR, system_conf, 0, 0),
	E("device", "install", install, install_names, install_values),
	K("device", "reboot", STR, reboot, 0, 0),
};

static int handler(void *user, const char *section, const char *name, const char *value, struct perr *err)
{
	return conf_keys_apply(user, keys, ELEMENTSOF(keys), section, name, value, err);
}

static int name_cmp(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

static int conf_filter(const struct dirent *d)
{
	size_t n = strlen(d->d_name);

	return d->d_name[0] != '.' && n > 5 && !strcmp(d->d_name + n - 5, ".conf");
}

int conf_load(struct conf *c, const char *path, struct perr *err)
{
	char dir[PATH_MAX], tmp[PATH_MAX];
	struct dirent **list = NULL;
	int n, k;

	if ((k = conf_ini_load(path, handler, c, err)) < 0)
		return k;
	snprintf(tmp, sizeof(tmp), "%s", path);
	if (snprintf(dir, sizeof(dir), "%s/conf.d", dirname(tmp)) >= (int)sizeof(dir))
		return perr_set(err, -ENAMETOOLONG, "%s: path too long", path);
	n = scandir(dir, &list, conf_filter, name_cmp);
	if (n < 0)
		return errno == ENOENT ? 0 : perr_set(err, -errno, "%s: %s", dir, strerror(errno));
	k = 0;
	for (int i = 0; i < n; i++) {
		char p[PATH_MAX * 2];

		snprintf(p, sizeof(p), "%s/%s", dir, list[i]->d_name);
		if (k == 0)
			k = conf_ini_load(p, handler, c, err);
		free(list[i]);
	}
	free(list);
	return k;
}

int conf_init(struct conf *c)
{
	char host[256] = "shoal";

	*c = (struct conf){
		.role = ROLE_DEVICE,
		.listen_port = 0,
		.log_level = LOG_INFO,
		.mdns = true,
		.max_peers = 32,
		.upload_slots = 4,
		.max_connections = 64,
		.request_timeout_ms = 10000,
		.ban_ms = 600000,
		.auto_fetch = true,
		.origin_interval_ms = 15 * 60000,
		.origin_connections = 4,
		.report_interval_ms = 60000,
		.offline_after_ms = 180000,
		.report_history = 100,
		.inventory_timeout_ms = 5000,
	};
	gethostname(host, sizeof(host) - 1);
	if (conf_set_str(&c->name, host) < 0 || conf_set_str(&c->state_dir, "/var/lib/shoal") < 0 ||
	    conf_set_str(&c->listen_address, "0.0.0.0") < 0 || conf_set_str(&c->control_socket, "/run/shoal/control.sock") < 0 ||
	    conf_set_str(&c->fleet_secret_file, "/etc/shoal/fleet.key") < 0 || conf_set_str(&c->fleet_tag, "default") < 0)
		return -ENOMEM;
	return 0;
}

void conf_deinit(struct conf *c)
{
	conf_keys_free(c, keys, ELEMENTSOF(keys));
}

int conf_parse_hostport(const char *s, struct sockaddr_in *ret)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	const char *colon = strrchr(s, ':');
	unsigned long port;
	char host[64], *end;

	if (!colon || (size_t)(colon - s) >= sizeof(host) || colon[1] < '0' || colon[1] > '9')
		return -EINVAL;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (errno || *end || port == 0 || port > 65535 || inet_pton(AF_INET, host, &sa.sin_addr) != 1)
		return -EINVAL;
	sa.sin_port = htons((uint16_t)port);
	*ret = sa;
	return 0;
}

static int parse_hhmm(const char *s, unsigned *ret)
{
	unsigned h, m;
	int n = 0;

	if (sscanf(s, "%2u:%2u%n", &h, &m, &n) != 2 || n != 5 || h > 23 || m > 59)
		return -EINVAL;
	*ret = h * 60 + m;
	return 0;
}

int conf_parse_reboot(const char *s, struct conf_reboot *ret)
{
	struct conf_reboot r = { 0 };

	if (!strcmp(s, "now"))
		r.when = DEV_REBOOT_NOW;
	else if (!strcmp(s, "none"))
		r.when = DEV_REBOOT_NONE;
	else if (!strncmp(s, "window ", 7) && strlen(s) == 7 + 11 && s[7 + 5] == '-' &&
		 parse_hhmm(s + 7, &r.start_min) == 0 && parse_hhmm(s + 7 + 6, &r.end_min) == 0 &&
		 r.start_min != r.end_min)
		r.when = DEV_REBOOT_WINDOW;
	else
		return -EINVAL;
	*ret = r;
	return 0;
}

/* Would a HELLO with this product and name go out? The codec refuses what
 * a peer would. */
static int hello_encodes(const char *product, const char *name)
{
	struct msg m = { .type = MSG_HELLO };
	struct wbuf w = { 0 };
	int k;

	m.hello.version = WIRE_VERSION;
	m.hello.product = product;
	m.hello.product_len = strlen(product);
	m.hello.name = name;
	m.hello.name_len = strlen(name);
	k = wire_encode(&m, &w);
	wbuf_free(&w);
	return k;
}

int conf_check(const struct conf *c, struct perr *err)
{
	struct sockaddr_in sa;
	struct in6_addr a6;
	int k;

	if (!c->product)
		return perr_set(err, -EINVAL, "[fleet] product is required: devices only take releases for their product");
	if (c->trust.n == 0)
		return perr_set(err, -EINVAL, "[fleet] trust is required: at least one root public key file");
	if (c->role == ROLE_GATEWAY && !c->store_dir)
		return perr_set(err, -EINVAL, "[gateway] store_dir is required for role = gateway");
	if (c->role == ROLE_DEVICE && !c->target && !c->system_conf)
		return perr_set(err, -EINVAL, "[device] target or system_conf is required for role = device");
	if (c->target && c->system_conf)
		return perr_set(err, -EINVAL, "[device] target and system_conf exclude each other: with system_conf "
				"releases are fetched into the inactive slot");
	if (c->reboot && conf_parse_reboot(c->reboot, &(struct conf_reboot){ 0 }) < 0)
		return perr_set(err, -EINVAL, "[device] reboot '%s' is not now, none or window HH:MM-HH:MM", c->reboot);
	for (size_t i = 0; i < c->origin.n; i++)
		if (strncmp(c->origin.v[i], "http://", 7) && strncmp(c->origin.v[i], "https://", 8))
			return perr_set(err, -EINVAL, "[gateway] origin '%s': only http:// and https:// URLs",
					c->origin.v[i]);
	if (c->role == ROLE_DEVICE && (c->store_dir || c->import.n || c->origin.n || c->http_listen))
		return perr_set(err, -EINVAL, "[gateway] keys are only for role = gateway");
	if (!c->mdns && c->static_peers.n == 0 && !c->gateway && c->role == ROLE_DEVICE)
		return perr_set(err, -EINVAL, "with mdns = no a device needs static_peer or gateway in [discovery]");
	if (c->http_listen && !c->http_token_file)
		return perr_set(err, -EINVAL, "[gateway] http_listen needs http_token_file: the API is never open");
	if (c->http_listen && conf_parse_hostport(c->http_listen, &sa) < 0)
		return perr_set(err, -EINVAL, "[gateway] http_listen '%s' is not IPv4-ADDRESS:PORT", c->http_listen);
	if (c->tags) {
		struct report_tag t[REPORT_TAGS_MAX];

		if ((k = fleet_tags_parse(c->tags, t, err)) < 0)
			return perr_prefix(err, k, "[daemon] tags: ");
	}
	/* what would otherwise only fail at start, so that --check agrees */
	if (hello_encodes(c->product, "x") < 0)
		return perr_set(err, -EINVAL, "[fleet] product '%s' must be 1 to %u characters of A-Z a-z 0-9 . _ + : -",
				c->product, WIRE_PRODUCT_MAX);
	if (hello_encodes(c->product, c->name) < 0)
		return perr_set(err, -EINVAL, "[daemon] name '%s' must be at most %u bytes of text without control characters",
				c->name, WIRE_NAME_MAX);
	if (inet_pton(AF_INET, c->listen_address, &sa.sin_addr) != 1 && inet_pton(AF_INET6, c->listen_address, &a6) != 1)
		return perr_set(err, -EINVAL, "[daemon] listen_address '%s' is not an IPv4 or IPv6 address",
				c->listen_address);
	for (size_t i = 0; i < c->static_peers.n; i++)
		if (conf_parse_hostport(c->static_peers.v[i], &sa) < 0)
			return perr_set(err, -EINVAL, "[discovery] static_peer '%s' is not IPv4-ADDRESS:PORT",
					c->static_peers.v[i]);
	if (c->gateway && conf_parse_hostport(c->gateway, &sa) < 0)
		return perr_set(err, -EINVAL, "[discovery] gateway '%s' is not IPv4-ADDRESS:PORT", c->gateway);
	if (c->mdns) {
		struct txt_info t = { .id = "0000000000000000", .proto = WIRE_VERSION };
		struct txt_wire w;

		if (strlen(c->fleet_tag) > TXT_FLEET_MAX)
			return perr_set(err, -EINVAL, "[fleet] tag is %zu bytes; mDNS announces at most %u",
					strlen(c->fleet_tag), TXT_FLEET_MAX);
		snprintf(t.fleet, sizeof(t.fleet), "%s", c->fleet_tag);
		if ((k = txt_format(&t, &w, err)) < 0)
			return perr_prefix(err, k, "[fleet] tag cannot be announced over mDNS: ");
	}
	return 0;
}
