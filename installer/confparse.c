/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <ini.h>
#include <stdio.h>

#include "confparse.h"

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

int conf_parse_uint(const char *s, uint64_t *ret)
{
	return parse_scaled(s, (const char *const[]){ "" }, (const uint64_t[]){ 1 }, 1, ret);
}

struct load_ctx {
	conf_line_fn fn;
	void *ud;
	FILE *f;
	int line;        /* lines read so far: the handler's line */
	int fail_line;   /* where the first error of the handler was */
	struct perr msg; /* that error, without location */
	int code;
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

static int handler(void *user, const char *section, const char *name, const char *value)
{
	struct load_ctx *ctx = user;

	if (ctx->failed)
		return 1; /* report the first error only */
	ctx->fail_line = ctx->line;
	if ((ctx->code = ctx->fn(ctx->ud, section, name, value, &ctx->msg)) < 0) {
		ctx->failed = true;
		return 0;
	}
	return 1;
}

int conf_ini_load(const char *path, conf_line_fn fn, void *ud, struct perr *err)
{
	struct load_ctx ctx = { .fn = fn, .ud = ud };
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
	return perr_set(err, ctx.code, "%s:%d: %s", path, ctx.fail_line, ctx.msg.msg);
}

int conf_set_str(char **dst, const char *v)
{
	char *p = strdup(v);

	if (!p)
		return -ENOMEM;
	free(*dst);
	*dst = p;
	return 0;
}

static int apply(void *base, const struct conf_key *d, const char *v, struct perr *err)
{
	void *field = (char *)base + d->off;
	uint64_t u;
	bool b;

	switch (d->type) {
	case CONF_STR:
		if (!*v)
			return perr_set(err, -EINVAL, "%s must not be empty", d->name);
		return conf_set_str(field, v) < 0 ? perr_set(err, -ENOMEM, "out of memory") : 0;
	case CONF_LIST: {
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
	case CONF_BOOL:
		if (conf_parse_bool(v, &b) < 0)
			return perr_set(err, -EINVAL, "%s wants yes or no, not '%s'", d->name, v);
		*(bool *)field = b;
		return 0;
	case CONF_PORT:
	case CONF_U32:
		if (conf_parse_uint(v, &u) < 0 || u < d->min || u > d->max)
			return perr_set(err, -EINVAL, "%s wants a whole number from %" PRIu64 " to %" PRIu64 ", not '%s'",
					d->name, d->min, d->max, v);
		if (d->type == CONF_PORT)
			*(uint16_t *)field = (uint16_t)u;
		else
			*(uint32_t *)field = (uint32_t)u;
		return 0;
	case CONF_SIZE:
		if (conf_parse_size(v, &u) < 0)
			return perr_set(err, -EINVAL, "%s wants a size such as 512K, 10M or 1G (0: unlimited), not '%s'",
					d->name, v);
		*(uint64_t *)field = u;
		return 0;
	case CONF_DURATION:
		if (conf_parse_duration_ms(v, &u) < 0 || u < d->min || u > d->max)
			return perr_set(err, -EINVAL,
					"%s wants a duration such as 500ms, 30s, 10m or 2h within %" PRIu64 "ms..%" PRIu64
					"ms, not '%s'", d->name, d->min, d->max, v);
		*(uint64_t *)field = u;
		return 0;
	case CONF_ENUM: {
		char list[256] = "";
		size_t i;

		for (i = 0; d->names[i]; i++) {
			if (!strcmp(v, d->names[i])) {
				*(int *)field = d->values[i];
				return 0;
			}
		}
		for (i = 0; d->names[i]; i++)
			snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i ? (d->names[i + 1] ? ", " : " or ") : "",
				 d->names[i]);
		return perr_set(err, -EINVAL, "%s is %s, not '%s'", d->name, list, v);
	}
	}
	return perr_set(err, -EINVAL, "internal: key type");
}

int conf_keys_apply(void *base, const struct conf_key *keys, size_t n, const char *section, const char *name,
		    const char *value, struct perr *err)
{
	bool section_known = false;

	if (!*section)
		return perr_set(err, -EINVAL, "key '%s' outside any [section]", name);
	for (size_t i = 0; i < n; i++) {
		if (strcmp(keys[i].section, section) != 0)
			continue;
		section_known = true;
		if (!strcmp(keys[i].name, name))
			return apply(base, &keys[i], value, err);
	}
	if (!section_known)
		return perr_set(err, -EINVAL, "unknown section [%s]", section);
	return perr_set(err, -EINVAL, "unknown key '%s' in [%s]", name, section);
}

void conf_keys_free(void *base, const struct conf_key *keys, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		void *field = (char *)base + keys[i].off;

		if (keys[i].type == CONF_STR) {
			free(*(char **)field);
			*(char **)field = NULL;
		} else if (keys[i].type == CONF_LIST) {
			struct conf_list *l = field;

			for (size_t j = 0; j < l->n; j++)
				free(l->v[j]);
			l->n = 0;
		}
	}
}
