/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>

#include "txt.h"

enum txt_key {
	K_TXTVERS,
	K_ID,
	K_FLEET,
	K_PROTO,
	K_ROLE,
	K_REL,
	K_LOAD,
	K_COUNT,
};

static const char *const key_names[K_COUNT] = {
	[K_TXTVERS] = "txtvers", [K_ID] = "id",     [K_FLEET] = "fleet", [K_PROTO] = "proto",
	[K_ROLE] = "role",       [K_REL] = "rel",   [K_LOAD] = "load",
};

static const char *const role_names[] = {
	[TXT_ROLE_DEVICE] = "device",
	[TXT_ROLE_GATEWAY] = "gateway",
};

const char *txt_role_name(enum txt_role role)
{
	return (unsigned)role < ELEMENTSOF(role_names) ? role_names[role] : NULL;
}

static bool is_lower_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

/* ---- format ---- */

static int put(struct txt_wire *w, const char *key, const char *value)
{
	size_t k = strlen(key), v = strlen(value);

	if (k + 1 + v > TXT_STRING_MAX || w->len + 1 + k + 1 + v > sizeof(w->buf))
		return -E2BIG; /* cannot happen with the bounds txt_format checks */
	w->buf[w->len++] = (uint8_t)(k + 1 + v);
	memcpy(w->buf + w->len, key, k);
	w->buf[w->len + k] = '=';
	memcpy(w->buf + w->len + k + 1, value, v);
	w->len += k + 1 + v;
	return 0;
}

int txt_format(const struct txt_info *t, struct txt_wire *ret, struct perr *err)
{
	struct txt_wire w = { .len = 0 };
	char num[3][24];
	size_t fl = strnlen(t->fleet, sizeof(t->fleet));

	if (strnlen(t->id, sizeof(t->id)) != TXT_ID_LEN || !is_lower_hex(t->id, TXT_ID_LEN))
		return perr_set(err, -EINVAL, "TXT id must be %u lowercase hex digits", TXT_ID_LEN);
	if (fl == 0 || fl > TXT_FLEET_MAX)
		return perr_set(err, -EINVAL, "fleet tag must be 1 to %u bytes, not %zu", TXT_FLEET_MAX, fl);
	if (!text_is_clean(t->fleet, fl))
		return perr_set(err, -EINVAL, "fleet tag must be UTF-8 text without control characters");
	if (!txt_role_name(t->role))
		return perr_set(err, -EINVAL, "unknown role %d", (int)t->role);
	snprintf(num[0], sizeof(num[0]), "%" PRIu32, t->proto);
	snprintf(num[1], sizeof(num[1]), "%" PRIu64, t->rel);
	snprintf(num[2], sizeof(num[2]), "%" PRIu32, t->load);
	/* txtvers first (RFC 6763 6.7) */
	if (put(&w, "txtvers", "1") < 0 || put(&w, "id", t->id) < 0 || put(&w, "fleet", t->fleet) < 0 ||
	    put(&w, "proto", num[0]) < 0 || put(&w, "role", txt_role_name(t->role)) < 0 ||
	    put(&w, "rel", num[1]) < 0 || put(&w, "load", num[2]) < 0)
		return perr_set(err, -E2BIG, "TXT record too long");
	*ret = w;
	return 0;
}

/* ---- parse ---- */

static bool key_equal(const uint8_t *k, size_t n, const char *name)
{
	size_t i;

	for (i = 0; i < n && name[i]; i++) {
		uint8_t c = k[i];

		if (c >= 'A' && c <= 'Z')
			c = (uint8_t)(c - 'A' + 'a');
		if (c != (uint8_t)name[i])
			return false;
	}
	return i == n && !name[i];
}

/* Finds the first string of each key we know. */
static void index_keys(const struct txt_string *v, size_t n, const struct txt_string *found[K_COUNT],
		       bool has_value[K_COUNT])
{
	for (size_t i = 0; i < n; i++) {
		const uint8_t *eq;
		size_t klen;

		if (v[i].len == 0 || !v[i].p)
			continue;
		eq = memchr(v[i].p, '=', v[i].len);
		klen = eq ? (size_t)(eq - v[i].p) : v[i].len;
		if (klen == 0 || klen > TXT_KEY_MAX)
			continue; /* "=..." is ignored; a longer key is none of ours */
		for (int k = 0; k < K_COUNT; k++) {
			if (!found[k] && key_equal(v[i].p, klen, key_names[k])) {
				found[k] = &v[i];
				has_value[k] = eq != NULL;
				break;
			}
		}
	}
}

/* The value of s as something safe to put in a message. */
static const char *shown(const uint8_t *p, size_t n, char out[40])
{
	if (n <= 32 && text_is_clean((const char *)p, n)) {
		memcpy(out, p, n);
		out[n] = '\0';
		return out;
	}
	snprintf(out, 40, "(%zu bytes that are not short text)", n);
	return out;
}

/* Decimal without sign, spaces or leading zeros, up to max. */
static bool parse_uint(const uint8_t *p, size_t n, uint64_t max, uint64_t *ret)
{
	uint64_t v = 0;

	if (n == 0 || n > 20 || (n > 1 && p[0] == '0'))
		return false;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9' || !mul_u64(v, 10, &v) || !add_u64(v, p[i] - '0', &v))
			return false;
	}
	if (v > max)
		return false;
	*ret = v;
	return true;
}

int txt_parse(const struct txt_string *v, size_t n, struct txt_info *ret, struct perr *err)
{
	const struct txt_string *f[K_COUNT] = { NULL };
	bool has_value[K_COUNT] = { false };
	const uint8_t *val[K_COUNT] = { NULL };
	size_t vlen[K_COUNT] = { 0 };
	struct txt_info t = { .role = TXT_ROLE_DEVICE };
	char show[40];
	uint64_t u;

	if (n && !v)
		return perr_set(err, -EINVAL, "no strings");
	index_keys(v, n, f, has_value);
	for (int k = 0; k < K_COUNT; k++) {
		if (f[k] && has_value[k]) {
			size_t klen = strlen(key_names[k]);

			val[k] = f[k]->p + klen + 1;
			vlen[k] = f[k]->len - klen - 1;
		}
	}

	/* the version first: a record of another version may be shaped
	 * any way it likes */
	if (!f[K_TXTVERS])
		return perr_set(err, -EPROTONOSUPPORT, "no txtvers: not a shoal TXT record of a version we know");
	if (!has_value[K_TXTVERS] || !parse_uint(val[K_TXTVERS], vlen[K_TXTVERS], UINT32_MAX, &u) || u != TXT_VERSION)
		return perr_set(err, -EPROTONOSUPPORT, "txtvers %s is not supported (this is version %u)",
				has_value[K_TXTVERS] ? shown(val[K_TXTVERS], vlen[K_TXTVERS], show) : "(no value)",
				TXT_VERSION);

	for (int k = K_ID; k < K_COUNT; k++)
		if (f[k] && !has_value[k])
			return perr_set(err, -EBADMSG, "TXT key '%s' has no value", key_names[k]);
	if (!f[K_ID] || !f[K_FLEET] || !f[K_PROTO])
		return perr_set(err, -EBADMSG, "TXT record lacks '%s'",
				!f[K_ID] ? "id" : !f[K_FLEET] ? "fleet" : "proto");

	if (vlen[K_ID] != TXT_ID_LEN)
		return perr_set(err, -EBADMSG, "TXT id must be %u hex digits, not %zu bytes", TXT_ID_LEN, vlen[K_ID]);
	for (size_t i = 0; i < TXT_ID_LEN; i++) {
		uint8_t c = val[K_ID][i];

		if (c >= 'A' && c <= 'F')
			c = (uint8_t)(c - 'A' + 'a');
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return perr_set(err, -EBADMSG, "TXT id '%s' is not hex", shown(val[K_ID], vlen[K_ID], show));
		t.id[i] = (char)c;
	}

	if (vlen[K_FLEET] == 0 || vlen[K_FLEET] > TXT_FLEET_MAX)
		return perr_set(err, -EBADMSG, "TXT fleet tag must be 1 to %u bytes, not %zu", TXT_FLEET_MAX,
				vlen[K_FLEET]);
	if (!text_is_clean((const char *)val[K_FLEET], vlen[K_FLEET])) /* no NUL either */
		return perr_set(err, -EBADMSG, "TXT fleet tag is not clean text");
	memcpy(t.fleet, val[K_FLEET], vlen[K_FLEET]);

	if (!parse_uint(val[K_PROTO], vlen[K_PROTO], UINT32_MAX, &u))
		return perr_set(err, -EBADMSG, "TXT proto '%s' is not a number", shown(val[K_PROTO], vlen[K_PROTO], show));
	t.proto = (uint32_t)u;

	if (f[K_ROLE]) {
		bool ok = false;

		for (size_t r = 0; r < ELEMENTSOF(role_names); r++) {
			if (vlen[K_ROLE] == strlen(role_names[r]) && !memcmp(val[K_ROLE], role_names[r], vlen[K_ROLE])) {
				t.role = (enum txt_role)r;
				ok = true;
			}
		}
		if (!ok)
			return perr_set(err, -EBADMSG, "TXT role '%s' is neither device nor gateway",
					shown(val[K_ROLE], vlen[K_ROLE], show));
	}
	if (f[K_REL] && !parse_uint(val[K_REL], vlen[K_REL], UINT64_MAX, &t.rel))
		return perr_set(err, -EBADMSG, "TXT rel '%s' is not a number", shown(val[K_REL], vlen[K_REL], show));
	if (f[K_LOAD]) {
		if (!parse_uint(val[K_LOAD], vlen[K_LOAD], UINT32_MAX, &u))
			return perr_set(err, -EBADMSG, "TXT load '%s' is not a number",
					shown(val[K_LOAD], vlen[K_LOAD], show));
		t.load = (uint32_t)u;
	}
	*ret = t;
	return 0;
}

int txt_split(const uint8_t *wire, size_t len, struct txt_string *v, size_t cap, size_t *ret_n)
{
	size_t n = 0, i = 0;

	while (i < len) {
		size_t l = wire[i];

		if (l > len - i - 1)
			return -EBADMSG;
		if (n == cap)
			return -E2BIG;
		v[n++] = (struct txt_string){ .p = wire + i + 1, .len = l };
		i += 1 + l;
	}
	*ret_n = n;
	return 0;
}
