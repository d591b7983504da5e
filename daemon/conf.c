/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <ini.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <syslog.h>
#include <unistd.h>

#include "conf.h"

enum key_type {
	T_STR,
	T_BOOL,
	T_PORT,
	T_U32,
	T_SIZE,
	T_DURATION,
	T_LIST,
	T_ROLE,
	T_LOGLEVEL,
};

struct key_def {
	const char *section;
	const char *name;
	enum key_type type;
	size_t off;
	uint64_t min, max; /* for numbers */
};

#define K(sec, key, t, field, lo, hi) { sec, key, t, offsetof(struct conf, field), lo, hi }

/* Keep in step with docs/configuration.md. */
static const struct key_def keys[] = {
	K("daemon", "role", T_ROLE, role, 0, 0),
	K("daemon", "name", T_STR, name, 0, 0),
	K("daemon", "state_dir", T_STR, state_dir, 0, 0),
	K("daemon", "listen_address", T_STR, listen_address, 0, 0),
	K("daemon", "listen_port", T_PORT, listen_port, 0, 65535),
	K("daemon", "control_socket", T_STR, control_socket, 0, 0),
	K("daemon", "log_level", T_LOGLEVEL, log_level, 0, 0),
	K("fleet", "product", T_STR, product, 0, 0),
	K("fleet", "secret_file", T_STR, fleet_secret_file, 0, 0),
	K("fleet", "tag", T_STR, fleet_tag, 0, 0),
	K("fleet", "trust", T_LIST, trust, 0, 0),
	K("discovery", "mdns", T_BOOL, mdns, 0, 0),
	K("discovery", "static_peer", T_LIST, static_peers, 0, 0),
	K("discovery", "gateway", T_STR, gateway, 0, 0),
	K("discovery", "max_peers", T_U32, max_peers, 1, 1024),
	K("transfer", "upload_rate", T_SIZE, upload_rate, 0, UINT64_MAX),
	K("transfer", "download_rate", T_SIZE, download_rate, 0, UINT64_MAX),
	K("transfer", "peer_upload_rate", T_SIZE, peer_upload_rate, 0, UINT64_MAX),
	K("transfer", "upload_slots", T_U32, upload_slots, 1, 256),
	K("transfer", "max_connections", T_U32, max_connections, 1, 4096),
	K("transfer", "request_timeout", T_DURATION, request_timeout_ms, 100, 3600000),
	K("transfer", "ban_time", T_DURATION, ban_ms, 1000, UINT64_C(30) * 86400000),
	K("gateway", "store_dir", T_STR, store_dir, 0, 0),
	K("gateway", "import", T_LIST, import, 0, 0),
	K("device", "target", T_STR, target, 0, 0),
	K("device", "reuse", T_LIST, reuse, 0, 0),
	K("device", "auto_fetch", T_BOOL, auto_fetch, 0, 0),
};

static bool known_section(const char *s)
{
	for (size_t i = 0; i < ELEMENTSOF(keys); i++)
		if (!strcmp(keys[i].section, s))
			return true;
	return false;
}

int conf_parse_bool(const char *s, bool *ret)
{
	static const char *yes[] = { "yes", "true", "on", "1" }, *no[] = { "no", "false", "off", "0" };

	for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
		if (!strcasecmp(s, yes[i])) {
			*ret = true;
			return 0;
		}
		if (!strcasecmp(s, no[i])) {
			*ret = false;
			return 0;
		}
	}
	return -EINVAL;
}

static int parse_scaled(const char *s, const char *const *units, const uint64_t *mult, size_t n, uint64_t *ret)
{
	unsigned long long v;
	char *end;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -ERANGE;
	for (size_t i = 0; i < n; i++) {
		uint64_t r;

		if (strcmp(end, units[i]) != 0)
			continue;
		if (!mul_u64(v, mult[i], &r))
			return -ERANGE;
		*ret = r;
		return 0;
	}
	return -EINVAL;
}

int conf_parse_size(const char *s, uint64_t *ret)
{
	static const char *const u[] = { "", "K", "M", "G", "k", "m", "g" };
	static const uint64_t m[] = { 1, 1 << 10, 1 << 20, 1 << 30, 1 << 10, 1 << 20, 1 << 30 };

	return parse_scaled(s, u, m, ELEMENTSOF(u), ret);
}

int conf_parse_duration_ms(const char *s, uint64_t *ret)
{
	static const char *const u[] = { "ms", "s", "m", "h", "d" };
	static const uint64_t m[] = { 1, 1000, 60000, 3600000, 86400000 };

	return parse_scaled(s, u, m, ELEMENTSOF(u), ret);
}

struct load_ctx {
	struct conf *c;
	FILE *f;
	int line;      /* lines read so far: the handler's line */
	int fail_line; /* where our first error was */
	struct perr msg; /* the first error, without location */
	bool failed;
};

/* inih in Debian is built without line numbers for handlers; reading
 * through this counts them. */
static char *counting_reader(char *str, int num, void *stream)
{
	struct load_ctx *ctx = stream;
	char *r = fgets(str, num, ctx->f);

	if (r)
		ctx->line++;
	return r;
}

static int set_str(char **dst, const char *v)
{
	char *p = strdup(v);

	if (!p)
		return -ENOMEM;
	free(*dst);
	*dst = p;
	return 0;
}

static int apply(struct conf *c, const struct key_def *d, const char *v, struct perr *err)
{
	void *field = (char *)c + d->off;
	uint64_t u;
	bool b;

	switch (d->type) {
	case T_STR:
		if (!*v)
			return perr_set(err, -EINVAL, "%s must not be empty", d->name);
		return set_str(field, v) < 0 ? perr_set(err, -ENOMEM, "out of memory") : 0;
	case T_LIST: {
		struct conf_list *l = field;

		if (!*v)
			return perr_set(err, -EINVAL, "%s must not be empty", d->name);
		if (l->n >= CONF_MAX_LIST)
			return perr_set(err, -E2BIG, "%s given more than %d times", d->name, CONF_MAX_LIST);
		if (!(l->v[l->n] = strdup(v)))
			return perr_set(err, -ENOMEM, "out of memory");
		l->n++;
		return 0;
	}
	case T_BOOL:
		if (conf_parse_bool(v, &b) < 0)
			return perr_set(err, -EINVAL, "%s wants yes or no, not '%s'", d->name, v);
		*(bool *)field = b;
		return 0;
	case T_PORT:
	case T_U32:
		if (parse_scaled(v, (const char *const[]){ "" }, (const uint64_t[]){ 1 }, 1, &u) < 0 || u < d->min ||
		    u > d->max)
			return perr_set(err, -EINVAL, "%s wants a whole number from %" PRIu64 " to %" PRIu64 ", not '%s'",
					d->name, d->min, d->max, v);
		if (d->type == T_PORT)
			*(uint16_t *)field = (uint16_t)u;
		else
			*(uint32_t *)field = (uint32_t)u;
		return 0;
	case T_SIZE:
		if (conf_parse_size(v, &u) < 0)
			return perr_set(err, -EINVAL, "%s wants a size such as 512K, 10M or 1G (0: unlimited), not '%s'",
					d->name, v);
		*(uint64_t *)field = u;
		return 0;
	case T_DURATION:
		if (conf_parse_duration_ms(v, &u) < 0 || u < d->min || u > d->max)
			return perr_set(err, -EINVAL,
					"%s wants a duration such as 500ms, 30s, 10m or 2h within %" PRIu64 "ms..%" PRIu64
					"ms, not '%s'", d->name, d->min, d->max, v);
		*(uint64_t *)field = u;
		return 0;
	case T_ROLE:
		if (!strcmp(v, "device"))
			c->role = ROLE_DEVICE;
		else if (!strcmp(v, "gateway"))
			c->role = ROLE_GATEWAY;
		else
			return perr_set(err, -EINVAL, "role is device or gateway, not '%s'", v);
		return 0;
	case T_LOGLEVEL: {
		static const char *names[] = { "error", "warning", "notice", "info", "debug" };
		static const int levels[] = { LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO, LOG_DEBUG };

		for (size_t i = 0; i < ELEMENTSOF(names); i++)
			if (!strcmp(v, names[i])) {
				c->log_level = levels[i];
				return 0;
			}
		return perr_set(err, -EINVAL, "log_level is error, warning, notice, info or debug, not '%s'", v);
	}
	}
	return perr_set(err, -EINVAL, "internal: key type");
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
	struct load_ctx *ctx = user;

	if (ctx->failed)
		return 1; /* report the first error only */
	ctx->fail_line = ctx->line;
	if (!*section) {
		perr_set(&ctx->msg, -EINVAL, "key '%s' outside any [section]", name);
		goto fail;
	}
	if (!known_section(section)) {
		perr_set(&ctx->msg, -EINVAL, "unknown section [%s]", section);
		goto fail;
	}
	for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
		if (strcmp(keys[i].section, section) != 0 || strcmp(keys[i].name, name) != 0)
			continue;
		if (apply(ctx->c, &keys[i], value, &ctx->msg) < 0)
			goto fail;
		return 1;
	}
	perr_set(&ctx->msg, -EINVAL, "unknown key '%s' in [%s]", name, section);
fail:
	ctx->failed = true;
	return 0;
}

static int load_one(struct conf *c, const char *path, struct perr *err)
{
	struct load_ctx ctx = { .c = c };
	int line;

	ctx.f = fopen(path, "re");
	if (!ctx.f)
		return perr_set(err, -errno, "%s: %s", path, strerror(errno));
	line = ini_parse_stream(counting_reader, &ctx, handler, &ctx);
	fclose(ctx.f);
	if (line == 0)
		return 0;
	if (line < 0)
		return perr_set(err, -ENOMEM, "%s: out of memory", path);
	/* inih reports the first error of all, ours or a syntax error */
	if (!ctx.failed || line < ctx.fail_line)
		return perr_set(err, -EINVAL, "%s:%d: syntax error (expected [section] or key = value)", path, line);
	return perr_set(err, -EINVAL, "%s:%d: %s", path, ctx.fail_line, ctx.msg.msg);
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

	if ((k = load_one(c, path, err)) < 0)
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
			k = load_one(c, p, err);
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
	};
	gethostname(host, sizeof(host) - 1);
	if (set_str(&c->name, host) < 0 || set_str(&c->state_dir, "/var/lib/shoal") < 0 ||
	    set_str(&c->listen_address, "0.0.0.0") < 0 || set_str(&c->control_socket, "/run/shoal/control.sock") < 0 ||
	    set_str(&c->fleet_secret_file, "/etc/shoal/fleet.key") < 0 || set_str(&c->fleet_tag, "default") < 0)
		return -ENOMEM;
	return 0;
}

static void list_free(struct conf_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	l->n = 0;
}

void conf_deinit(struct conf *c)
{
	for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
		void *field = (char *)c + keys[i].off;

		if (keys[i].type == T_STR) {
			free(*(char **)field);
			*(char **)field = NULL;
		} else if (keys[i].type == T_LIST) {
			list_free(field);
		}
	}
}

int conf_check(const struct conf *c, struct perr *err)
{
	if (!c->product)
		return perr_set(err, -EINVAL, "[fleet] product is required: devices only take releases for their product");
	if (c->trust.n == 0)
		return perr_set(err, -EINVAL, "[fleet] trust is required: at least one root public key file");
	if (c->role == ROLE_GATEWAY && !c->store_dir)
		return perr_set(err, -EINVAL, "[gateway] store_dir is required for role = gateway");
	if (c->role == ROLE_DEVICE && !c->target)
		return perr_set(err, -EINVAL, "[device] target is required for role = device");
	if (c->role == ROLE_DEVICE && (c->store_dir || c->import.n))
		return perr_set(err, -EINVAL, "[gateway] keys are only for role = gateway");
	if (!c->mdns && c->static_peers.n == 0 && !c->gateway && c->role == ROLE_DEVICE)
		return perr_set(err, -EINVAL, "with mdns = no a device needs static_peer or gateway in [discovery]");
	return 0;
}
