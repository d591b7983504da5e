/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What shoal.conf (daemon/conf.c) and system.conf (installer/sysconf.c)
 * share: value parsers and an INI reader that reports an error as
 * "FILE:LINE: reason", the line being the one that held the bad key. */
#pragma once

#include "util.h"

/* Parses "64K", "10M", "1G" (bytes) and "100ms", "30s", "5m", "2h", "1d"
 * (into milliseconds); yes/no, true/false, on/off, 1/0; a plain decimal
 * number. -EINVAL when s does not parse, -ERANGE when it overflows. */
int conf_parse_size(const char *s, uint64_t *ret);
int conf_parse_duration_ms(const char *s, uint64_t *ret);
int conf_parse_bool(const char *s, bool *ret);
int conf_parse_uint(const char *s, uint64_t *ret);

#define CONF_MAX_LIST 32

struct conf_list {
	char *v[CONF_MAX_LIST];
	size_t n;
};

/* A table of known keys: each names its [section], its type and where its
 * value goes (an offset into the caller's struct). */
enum conf_type {
	CONF_STR,      /* char *, never empty */
	CONF_BOOL,     /* bool */
	CONF_PORT,     /* uint16_t within min..max */
	CONF_U32,      /* uint32_t within min..max */
	CONF_SIZE,     /* uint64_t bytes */
	CONF_DURATION, /* uint64_t milliseconds within min..max */
	CONF_LIST,     /* struct conf_list */
	CONF_ENUM,     /* int: one of names[], stored as values[] */
};

struct conf_key {
	const char *section;
	const char *name;
	enum conf_type type;
	size_t off;
	uint64_t min, max;          /* numbers */
	const char *const *names;   /* CONF_ENUM, NULL-terminated */
	const int *values;
};

/* Finds section/name in the table and stores value into base. Errors
 * (unknown section, unknown key, bad value) go into err as a reason. */
int conf_keys_apply(void *base, const struct conf_key *keys, size_t n, const char *section, const char *name,
		    const char *value, struct perr *err);
/* Frees every string and list the table names in base. */
void conf_keys_free(void *base, const struct conf_key *keys, size_t n);
/* Replaces *dst with a copy of v; -ENOMEM. */
int conf_set_str(char **dst, const char *v);

/* Called for every key = value line. Returns 0, or a negative errno after
 * filling err with the reason (without file or line: the loader adds them).
 * section is "" for a key before any [section]. */
typedef int (*conf_line_fn)(void *ud, const char *section, const char *name, const char *value,
			    struct perr *err);

/* Reads one INI file. The first error stops it: the handler's, or a syntax
 * error, whichever comes first in the file, as "FILE:LINE: reason". */
int conf_ini_load(const char *path, conf_line_fn fn, void *ud, struct perr *err);
