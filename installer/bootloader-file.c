/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The file backend's environment: name=value lines in one small file,
 * replaced as a whole (temporary, fsync, rename, fsync of the directory). */
#include <stdio.h>

#include "bootloader.h"
#include "fileio.h"

#define ENV_FILE_MAX 16384

static bool name_ok(const char *s, size_t n)
{
	if (n == 0 || n >= ENV_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
		      s[i] == '_' || s[i] == '.' || s[i] == '-'))
			return false;
	return true;
}

int env_parse_lines(const char *path, const char *text, struct env_vars *e, struct perr *err)
{
	const char *p = text;
	int line = 0;

	while (*p) {
		size_t n = strcspn(p, "\n"), eq;
		char name[ENV_NAME_MAX], value[ENV_VALUE_MAX];

		line++;
		if (n && p[0] != '#') {
			eq = strcspn(p, "=\n");
			if (eq >= n || !name_ok(p, eq) || n - eq - 1 >= ENV_VALUE_MAX)
				return perr_set(err, -EUCLEAN, "%s:%d: corrupt environment (expected name=value)", path, line);
			for (size_t i = eq + 1; i < n; i++)
				if ((unsigned char)p[i] < 0x20)
					return perr_set(err, -EUCLEAN, "%s:%d: corrupt environment (control character)", path,
							line);
			memcpy(name, p, eq);
			name[eq] = '\0';
			memcpy(value, p + eq + 1, n - eq - 1);
			value[n - eq - 1] = '\0';
			if (env_set(e, name, value) < 0)
				return perr_set(err, -E2BIG, "%s:%d: more than %d variables", path, line, ENV_MAX_VARS);
		}
		p += n;
		if (*p == '\n')
			p++;
	}
	for (size_t i = 0; i < e->n; i++)
		e->v[i].dirty = false;
	return 0;
}

static int file_load(struct bootloader *b, struct env_vars *e, struct perr *err)
{
	_cleanup_(freep) uint8_t *buf = NULL;
	size_t len;
	int k;

	if ((k = read_file(b->sc->file_env, ENV_FILE_MAX, &buf, &len, err)) < 0)
		return perr_prefix(err, k, "bootloader environment: ");
	if (memchr(buf, '\0', len))
		return perr_set(err, -EUCLEAN, "%s: corrupt environment (binary data)", b->sc->file_env);
	return env_parse_lines(b->sc->file_env, (char *)buf, e, err);
}

static int file_store(struct bootloader *b, const struct env_vars *e, struct perr *err)
{
	char buf[ENV_MAX_VARS * (ENV_NAME_MAX + ENV_VALUE_MAX + 2)];
	size_t len = 0;

	for (size_t i = 0; i < e->n; i++)
		len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s=%s\n", e->v[i].name, e->v[i].value);
	return write_file_atomic(b->sc->file_env, buf, len, 0644, err);
}

const struct env_store_ops env_file_ops = {
	.load = file_load,
	.store = file_store,
};
