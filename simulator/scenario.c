/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <ctype.h>
#include <ini.h>
#include <math.h>
#include <stdio.h>
#include <sys/stat.h>

#include "scenario.h"

/* One key = value as read, kept until every section is known: [expect] may
 * name groups defined further down, [links.G] needs [groups]. */
struct ent {
	char sec[64];
	char key[64];
	char *val;
	unsigned line;
};

struct pctx {
	const char *name;
	const char *text; /* the reader's position */
	unsigned line;
	struct ent *e;
	size_t n_e, cap_e;
	unsigned fail_line;
	struct perr msg;
	bool failed;
};

/* The reader hands inih one line at a time and counts them: Debian's inih
 * does not pass line numbers to the handler. */
static char *mem_reader(char *str, int num, void *stream)
{
	struct pctx *c = stream;
	int i = 0;

	if (!*c->text)
		return NULL;
	while (i < num - 1 && c->text[0]) {
		char ch = *c->text++;

		str[i++] = ch;
		if (ch == '\n')
			break;
	}
	str[i] = '\0';
	c->line++;
	return str;
}

static bool section_known(const char *s)
{
	static const char *const fixed[] = { "fleet", "groups", "image", "links", "rollout", "expect", "sim" };

	for (size_t i = 0; i < ELEMENTSOF(fixed); i++)
		if (!strcmp(s, fixed[i]))
			return true;
	return (!strncmp(s, "links.", 6) && s[6]) || (!strncmp(s, "fault.", 6) && s[6]);
}

static int ctx_fail(struct pctx *c, unsigned line, int code, const char *fmt, ...) _printf_(4, 5);
static int ctx_fail(struct pctx *c, unsigned line, int code, const char *fmt, ...)
{
	va_list ap;

	if (c->failed)
		return code;
	c->failed = true;
	c->fail_line = line;
	va_start(ap, fmt);
	vsnprintf(c->msg.msg, sizeof(c->msg.msg), fmt, ap);
	va_end(ap);
	return code;
}

static int collect(void *user, const char *section, const char *name, const char *value)
{
	struct pctx *c = user;
	struct ent *e;

	if (c->failed)
		return 1;
	if (!*section) {
		ctx_fail(c, c->line, -EINVAL, "key '%s' outside any [section]", name);
		return 0;
	}
	if (!section_known(section)) {
		ctx_fail(c, c->line, -EINVAL, "unknown section [%s]", section);
		return 0;
	}
	if (strlen(section) >= sizeof(e->sec) || strlen(name) >= sizeof(e->key)) {
		ctx_fail(c, c->line, -EINVAL, "section or key name too long");
		return 0;
	}
	for (size_t i = 0; i < c->n_e; i++)
		if (!strcmp(c->e[i].sec, section) && !strcmp(c->e[i].key, name)) {
			ctx_fail(c, c->line, -EINVAL, "'%s' given twice in [%s] (first on line %u)", name, section,
				 c->e[i].line);
			return 0;
		}
	if (array_reserve((void **)&c->e, &c->cap_e, c->n_e + 1, sizeof(*c->e), 32) < 0) {
		ctx_fail(c, c->line, -ENOMEM, "out of memory");
		return 0;
	}
	e = &c->e[c->n_e];
	*e = (struct ent){ .line = c->line };
	snprintf(e->sec, sizeof(e->sec), "%s", section);
	snprintf(e->key, sizeof(e->key), "%s", name);
	if (!(e->val = strdup(value))) {
		ctx_fail(c, c->line, -ENOMEM, "out of memory");
		return 0;
	}
	c->n_e++;
	return 1;
}

/* ---- values ---- */

struct unit {
	const char *name;
	double mult;
};

/* A decimal number and one of the units (exact match after optional
 * spaces). */
static int parse_unit(const char *v, const struct unit *u, size_t n_u, double *ret)
{
	char *end;
	double x;

	if (!*v || isspace((unsigned char)*v) || *v == '-' || *v == '+')
		return -EINVAL;
	errno = 0;
	x = strtod(v, &end);
	if (errno || end == v || !isfinite(x) || x < 0)
		return -EINVAL;
	while (*end == ' ')
		end++;
	for (size_t i = 0; i < n_u; i++)
		if (!strcmp(end, u[i].name)) {
			*ret = x * u[i].mult;
			return 0;
		}
	return -EINVAL;
}

static const struct unit size_units[] = {
	{ "", 1 }, { "B", 1 }, { "K", 1024 }, { "KiB", 1024 }, { "M", 1048576 }, { "MiB", 1048576 },
	{ "G", 1073741824 }, { "GiB", 1073741824 },
};

static const struct unit rate_units[] = {
	{ "bit", 1 / 8.0 }, { "kbit", 1e3 / 8 }, { "Mbit", 1e6 / 8 }, { "Gbit", 1e9 / 8 },
	{ "B/s", 1 }, { "K/s", 1024 }, { "M/s", 1048576 }, { "G/s", 1073741824 },
};

static const struct unit time_units[] = {
	{ "us", 1e-3 }, { "ms", 1 }, { "s", 1e3 }, { "m", 60e3 }, { "h", 3600e3 },
};

struct vctx {
	struct pctx *c;
	const struct ent *e;
};

static int bad(struct vctx *v, const char *want)
{
	return ctx_fail(v->c, v->e->line, -EINVAL, "%s wants %s, not '%s'", v->e->key, want, v->e->val);
}

static int val_size(struct vctx *v, uint64_t lo, uint64_t hi, uint64_t *ret)
{
	double x;

	if (parse_unit(v->e->val, size_units, ELEMENTSOF(size_units), &x) < 0 || x < (double)lo || x > (double)hi)
		return bad(v, "a size such as 64K, 256M or 1G within the limits of docs/simulator.md");
	*ret = (uint64_t)x;
	return 0;
}

static int val_rate(struct vctx *v, uint64_t *ret)
{
	double x;

	if (parse_unit(v->e->val, rate_units, ELEMENTSOF(rate_units), &x) < 0 || x < 1000 || x > 1e12)
		return bad(v, "a rate from 8kbit to 8000Gbit such as 100Mbit or 12M/s");
	*ret = (uint64_t)x;
	return 0;
}

static int val_time(struct vctx *v, uint64_t lo_ms, uint64_t hi_ms, uint64_t *ret_us)
{
	double x;

	if (parse_unit(v->e->val, time_units, ELEMENTSOF(time_units), &x) < 0 || x < (double)lo_ms ||
	    x > (double)hi_ms)
		return bad(v, "a duration such as 500ms, 20s or 2m, within the limits of docs/simulator.md");
	*ret_us = (uint64_t)llround(x * 1000);
	return 0;
}

static int val_ms(struct vctx *v, uint64_t lo_ms, uint64_t hi_ms, uint64_t *ret)
{
	uint64_t us;
	int k = val_time(v, lo_ms, hi_ms, &us);

	if (k == 0)
		*ret = us / 1000;
	return k;
}

static int val_percent(struct vctx *v, uint32_t *ret_ppm)
{
	static const struct unit pct[] = { { "%", 1e4 } };
	double x;

	if (parse_unit(v->e->val, pct, 1, &x) < 0 || x > 1e6)
		return bad(v, "a percentage from 0% to 100% such as 10% or 0.5%");
	*ret_ppm = (uint32_t)llround(x);
	return 0;
}

static int val_uint(struct vctx *v, uint64_t lo, uint64_t hi, uint64_t *ret)
{
	char *end;
	unsigned long long x;

	errno = 0;
	if (!isdigit((unsigned char)v->e->val[0]) || (x = strtoull(v->e->val, &end, 10), errno) || *end || x < lo ||
	    x > hi) {
		char want[96];

		snprintf(want, sizeof(want), "a whole number from %" PRIu64 " to %" PRIu64, lo, hi);
		return bad(v, want);
	}
	*ret = x;
	return 0;
}

static int val_name(struct vctx *v, char out[SCN_NAME_MAX])
{
	const char *s = v->e->val;
	size_t n = strlen(s);

	if (!n || n >= SCN_NAME_MAX)
		return bad(v, "a name of 1 to 31 characters");
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr("._-", s[i]))
			return bad(v, "a name of letters, digits, '.', '_' and '-'");
	memcpy(out, s, n + 1);
	return 0;
}

static int val_choice(struct vctx *v, const char *const *names, size_t n, int *ret)
{
	char want[160] = "one of:";

	for (size_t i = 0; i < n; i++)
		if (!strcmp(v->e->val, names[i])) {
			*ret = (int)i;
			return 0;
		}
	for (size_t i = 0; i < n; i++)
		snprintf(want + strlen(want), sizeof(want) - strlen(want), " %s", names[i]);
	return bad(v, want);
}

/* ---- names of nodes ---- */

static bool is_ident(const char *s)
{
	if (!*s || strlen(s) >= SCN_NAME_MAX)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr("._-", *s))
			return false;
	return true;
}

static bool reserved(const char *s)
{
	static const char *const r[] = { "all", "rest", "gateway", "none", "default" };

	for (size_t i = 0; i < ELEMENTSOF(r); i++)
		if (!strcmp(s, r[i]))
			return true;
	return false;
}

int scenario_node_find(const struct scenario *s, const char *name)
{
	for (uint32_t i = 0; i < s->n_devices; i++)
		if (!strcmp(s->nodes[i].name, name))
			return (int)i;
	return -ENOENT;
}

static int group_find(const struct scenario *s, const char *name)
{
	for (uint32_t i = 0; i < s->n_groups; i++)
		if (!strcmp(s->groups[i].name, name))
			return (int)i;
	return -ENOENT;
}

enum {
	LIST_GATEWAY = 1, /* "gateway" may be named */
	LIST_REST = 2,    /* "rest" may be named */
};

/* A list of devices, groups, "all" (and "gateway", "rest" where allowed),
 * separated by commas or spaces, into mark[] (n_devices). *gateway and
 * *rest say whether those were named. */
static int val_nodes(struct vctx *v, const struct scenario *s, unsigned allow, bool *mark, bool *gateway, bool *rest)
{
	char *dup = strdup(v->e->val), *save = NULL;
	int k = 0;

	if (!dup)
		return ctx_fail(v->c, v->e->line, -ENOMEM, "out of memory");
	if (gateway)
		*gateway = false;
	if (rest)
		*rest = false;
	memset(mark, 0, s->n_devices * sizeof(*mark));
	for (char *t = strtok_r(dup, ", \t", &save); t; t = strtok_r(NULL, ", \t", &save)) {
		int i;

		if (!strcmp(t, "all")) {
			memset(mark, 1, s->n_devices * sizeof(*mark));
		} else if (!strcmp(t, "gateway") && (allow & LIST_GATEWAY)) {
			*gateway = true;
		} else if (!strcmp(t, "rest") && (allow & LIST_REST)) {
			*rest = true;
		} else if ((i = scenario_node_find(s, t)) >= 0) {
			mark[i] = true;
		} else if ((i = group_find(s, t)) >= 0) {
			for (uint32_t d = 0; d < s->n_devices; d++)
				if (s->nodes[d].group == (uint32_t)i)
					mark[d] = true;
		} else {
			k = ctx_fail(v->c, v->e->line, -EINVAL, "%s: '%s' is no device, group%s%s", v->e->key, t,
				     allow & LIST_GATEWAY ? ", gateway" : "", allow & LIST_REST ? ", rest" : "");
			k = k < 0 ? k : -EINVAL;
			break;
		}
	}
	free(dup);
	return k;
}

/* ---- sections ---- */

static int unknown_key(struct vctx *v)
{
	return ctx_fail(v->c, v->e->line, -EINVAL, "unknown key '%s' in [%s]", v->e->key, v->e->sec);
}

static int do_fleet(struct vctx *v, struct scenario *s, char prefix[SCN_NAME_MAX])
{
	const char *k = v->e->key;
	uint64_t u = 0;

	if (!strcmp(k, "devices")) {
		if (val_uint(v, 1, SCN_MAX_DEVICES, &u) < 0)
			return -EINVAL;
		s->n_devices = (uint32_t)u;
		return 0;
	}
	if (!strcmp(k, "max_connections")) {
		if (val_uint(v, 2, 1024, &u) < 0)
			return -EINVAL;
		s->max_connections = (uint32_t)u;
		return 0;
	}
	if (!strcmp(k, "name_prefix"))
		return val_name(v, prefix);
	return unknown_key(v);
}

static int do_groups(struct vctx *v, struct scenario *s, bool *mark)
{
	struct scn_group *g;
	uint64_t count;
	uint32_t gi;

	if (!is_ident(v->e->key) || reserved(v->e->key) || scenario_node_find(s, v->e->key) >= 0)
		return ctx_fail(v->c, v->e->line, -EINVAL, "'%s' cannot name a group (reserved, a device, or not a name)",
				v->e->key);
	if (group_find(s, v->e->key) >= 0)
		return ctx_fail(v->c, v->e->line, -EINVAL, "group '%s' defined twice", v->e->key);
	if (s->n_groups >= SCN_MAX_GROUPS)
		return ctx_fail(v->c, v->e->line, -E2BIG, "more than %u groups", SCN_MAX_GROUPS);
	gi = s->n_groups++;
	g = &s->groups[gi];
	snprintf(g->name, sizeof(g->name), "%.*s", SCN_NAME_MAX - 1, v->e->key);
	if (isdigit((unsigned char)v->e->val[0])) {
		if (val_uint(v, 1, s->n_devices, &count) < 0)
			return -EINVAL;
		/* the next devices that are in no group yet */
		for (uint32_t d = 0; d < s->n_devices && g->n_members < count; d++)
			if (s->nodes[d].group == 0) {
				s->nodes[d].group = gi;
				g->n_members++;
			}
		if (g->n_members < count)
			return ctx_fail(v->c, v->e->line, -EINVAL, "group %s wants %" PRIu64 " devices, only %u are left",
					g->name, count, g->n_members);
		return 0;
	}
	if (val_nodes(v, s, 0, mark, NULL, NULL) < 0)
		return -EINVAL;
	for (uint32_t d = 0; d < s->n_devices; d++) {
		if (!mark[d])
			continue;
		if (s->nodes[d].group != 0)
			return ctx_fail(v->c, v->e->line, -EINVAL, "%s is in group %s already", s->nodes[d].name,
					s->groups[s->nodes[d].group].name);
		s->nodes[d].group = gi;
		g->n_members++;
	}
	return 0;
}

static int do_image(struct vctx *v, struct scenario *s)
{
	const char *k = v->e->key;
	uint64_t u = 0;
	int c;

	if (!strcmp(k, "size"))
		return val_size(v, 1, UINT64_C(1) << 40, &s->image_size);
	if (!strcmp(k, "chunk_avg")) {
		if (val_size(v, 4096, 4u << 20, &u) < 0)
			return -EINVAL;
		s->chunk_avg = (uint32_t)u;
		return 0;
	}
	if (!strcmp(k, "changed"))
		return val_percent(v, &s->changed_ppm);
	if (!strcmp(k, "base")) {
		if (val_choice(v, (const char *const[]){ "none", "v1" }, 2, &c) < 0)
			return -EINVAL;
		s->base_v1 = c == 1;
		return 0;
	}
	if (!strcmp(k, "seed"))
		return val_uint(v, 0, UINT64_MAX, &s->image_seed);
	if (!strcmp(k, "version"))
		return val_name(v, s->version);
	if (!strcmp(k, "from_version"))
		return val_name(v, s->from_version);
	return unknown_key(v);
}

/* up/down/latency/loss of one link, shared by [links] (prefix "" for the
 * devices, "gateway_" for the gateway) and [links.GROUP]. 1: not such a
 * key. */
static int do_link_key(struct vctx *v, const char *key, struct scn_link *l)
{
	uint64_t us;

	if (!strcmp(key, "up"))
		return val_rate(v, &l->up_bps);
	if (!strcmp(key, "down"))
		return val_rate(v, &l->down_bps);
	if (!strcmp(key, "latency")) {
		if (val_time(v, 0, 10000, &us) < 0)
			return -EINVAL;
		l->latency_us = (uint32_t)us;
		return 0;
	}
	if (!strcmp(key, "loss")) {
		if (val_percent(v, &l->loss_ppm) < 0)
			return -EINVAL;
		if (l->loss_ppm > 200000)
			return bad(v, "a loss of at most 20%");
		return 0;
	}
	return 1;
}

static int do_links(struct vctx *v, struct scenario *s, struct scn_link *dev)
{
	const char *k = v->e->key;
	int r;

	if (!strncmp(k, "gateway_", 8))
		r = do_link_key(v, k + 8, &s->gateway);
	else
		r = do_link_key(v, k, dev);
	return r > 0 ? unknown_key(v) : r;
}

static int do_rollout(struct vctx *v, struct scenario *s, bool *mark)
{
	static const char *const modes[] = { "auto", "campaign" };
	static const char *const policies[] = { "strict", "offload", "peer" };
	const char *k = v->e->key;
	uint64_t u = 0;
	int c;

	if (!strcmp(k, "mode")) {
		if (val_choice(v, modes, ELEMENTSOF(modes), &c) < 0)
			return -EINVAL;
		s->rollout = (enum scn_rollout)c;
		return 0;
	}
	if (!strcmp(k, "canary")) {
		if (isdigit((unsigned char)v->e->val[0])) {
			if (val_uint(v, 0, s->n_devices, &u) < 0)
				return -EINVAL;
			for (uint32_t d = 0; d < s->n_devices; d++)
				mark[d] = d < u;
		} else if (val_nodes(v, s, 0, mark, NULL, NULL) < 0) {
			return -EINVAL;
		}
		s->n_canaries = 0;
		for (uint32_t d = 0; d < s->n_devices; d++)
			if ((s->nodes[d].canary = mark[d]))
				s->n_canaries++;
		return 0;
	}
	if (!strcmp(k, "install"))
		return val_ms(v, 0, 3600000, &s->install_ms);
	if (!strcmp(k, "reboot"))
		return val_ms(v, 0, 3600000, &s->reboot_ms);
	if (!strcmp(k, "health"))
		return val_ms(v, 0, 3600000, &s->health_ms);
	if (!strcmp(k, "max_installing")) {
		if (val_uint(v, 0, SCN_MAX_DEVICES, &u) < 0)
			return -EINVAL;
		s->max_installing = (uint32_t)u;
		return 0;
	}
	if (!strcmp(k, "seed_policy")) {
		if (val_choice(v, policies, ELEMENTSOF(policies), &c) < 0)
			return -EINVAL;
		s->seed_policy = (enum scn_seed_policy)c;
		return 0;
	}
	if (!strcmp(k, "upload_slots")) {
		if (val_uint(v, 1, 256, &u) < 0)
			return -EINVAL;
		s->upload_slots = (uint32_t)u;
		return 0;
	}
	if (!strcmp(k, "request_timeout"))
		return val_ms(v, 100, 3600000, &s->request_timeout_ms);
	if (!strcmp(k, "ban_time"))
		return val_ms(v, 1000, UINT64_C(30) * 86400000, &s->ban_ms);
	return unknown_key(v);
}

static int do_sim(struct vctx *v, struct scenario *s)
{
	if (!strcmp(v->e->key, "seed"))
		return val_uint(v, 0, UINT64_MAX, &s->seed);
	if (!strcmp(v->e->key, "time_limit"))
		return val_ms(v, 1000, UINT64_C(7) * 86400000, &s->time_limit_ms);
	return unknown_key(v);
}

static const char *const fault_kinds[] = {
	[SCN_FAULT_KILL] = "kill",
	[SCN_FAULT_POWER_CUT_INSTALL] = "power-cut-during-install",
	[SCN_FAULT_HEALTH_FAIL] = "health-fail",
	[SCN_FAULT_MALICIOUS] = "malicious-peer",
	[SCN_FAULT_GATEWAY_DOWN] = "gateway-down",
	[SCN_FAULT_LINK_CUT] = "link-cut",
};

const char *scn_fault_kind_name(enum scn_fault_kind k)
{
	return (unsigned)k < ELEMENTSOF(fault_kinds) ? fault_kinds[k] : "?";
}

/* One [fault.NAME] section: its entries, then one fault per device named. */
static int do_fault(struct pctx *c, struct scenario *s, const char *sec, bool *mark)
{
	const struct ent *kind_e = NULL, *on_e = NULL, *at_e = NULL, *dur_e = NULL;
	struct scn_fault f = { 0 };
	bool has_at = false, has_dur = false, gw = false;
	unsigned sec_line = 0;
	int kind = 0;

	for (size_t i = 0; i < c->n_e; i++) {
		const struct ent *e = &c->e[i];
		struct vctx v = { c, e };

		if (strcmp(e->sec, sec) != 0)
			continue;
		if (!sec_line)
			sec_line = e->line;
		if (!strcmp(e->key, "kind"))
			kind_e = e;
		else if (!strcmp(e->key, "on"))
			on_e = e;
		else if (!strcmp(e->key, "at"))
			at_e = e;
		else if (!strcmp(e->key, "duration"))
			dur_e = e;
		else
			return unknown_key(&v);
	}
	if (!kind_e)
		return ctx_fail(c, sec_line, -EINVAL, "[%s] has no kind= (one of kill, power-cut-during-install, "
				"health-fail, malicious-peer, gateway-down, link-cut)", sec);
	if (val_choice(&(struct vctx){ c, kind_e }, fault_kinds, ELEMENTSOF(fault_kinds), &kind) < 0)
		return -EINVAL;
	snprintf(f.name, sizeof(f.name), "%.*s", SCN_NAME_MAX - 1, sec + 6);
	f.kind = (enum scn_fault_kind)kind;
	f.line = kind_e->line;
	if (at_e) {
		if (val_ms(&(struct vctx){ c, at_e }, 0, UINT64_C(7) * 86400000, &f.at_ms) < 0)
			return -EINVAL;
		has_at = true;
	}
	if (dur_e) {
		if (val_ms(&(struct vctx){ c, dur_e }, 0, UINT64_C(7) * 86400000, &f.duration_ms) < 0)
			return -EINVAL;
		has_dur = true;
	}
	if (on_e && val_nodes(&(struct vctx){ c, on_e }, s, LIST_GATEWAY, mark, &gw, NULL) < 0)
		return -EINVAL;
	switch (f.kind) {
	case SCN_FAULT_GATEWAY_DOWN:
		if (on_e && !gw)
			return ctx_fail(c, on_e->line, -EINVAL, "gateway-down happens on the gateway: leave out on= or say on = gateway");
		if (!has_at)
			return ctx_fail(c, kind_e->line, -EINVAL, "gateway-down needs at= (when the gateway leaves)");
		f.node = SCN_GATEWAY;
		break;
	case SCN_FAULT_KILL:
	case SCN_FAULT_LINK_CUT:
		if (!has_at)
			return ctx_fail(c, kind_e->line, -EINVAL, "%s needs at= (when it happens)", fault_kinds[kind]);
		if (!has_dur)
			f.duration_ms = 10000;
		if (!f.duration_ms)
			return ctx_fail(c, dur_e->line, -EINVAL, "%s needs a duration above 0", fault_kinds[kind]);
		break;
	case SCN_FAULT_POWER_CUT_INSTALL:
		if (!has_at)
			f.at_ms = s->install_ms / 2;
		if (!has_dur)
			f.duration_ms = s->reboot_ms;
		break;
	case SCN_FAULT_HEALTH_FAIL:
		if (has_at || has_dur)
			return ctx_fail(c, (at_e ? at_e : dur_e)->line, -EINVAL,
					"health-fail takes no at= or duration=: the health check after the trial boot fails");
		break;
	case SCN_FAULT_MALICIOUS:
		if (has_dur)
			return ctx_fail(c, dur_e->line, -EINVAL, "malicious-peer takes no duration: it lies from at= on");
		break;
	}
	if (f.kind == SCN_FAULT_GATEWAY_DOWN) {
		s->faults[s->n_faults++] = f;
		return 0;
	}
	if (!on_e)
		return ctx_fail(c, kind_e->line, -EINVAL, "%s needs on= (which devices)", fault_kinds[kind]);
	if (gw)
		return ctx_fail(c, on_e->line, -EINVAL, "%s happens on devices, not on the gateway (see gateway-down)",
				fault_kinds[kind]);
	for (uint32_t d = 0; d < s->n_devices; d++) {
		if (!mark[d])
			continue;
		if (s->n_faults >= SCN_MAX_FAULTS)
			return ctx_fail(c, on_e->line, -E2BIG, "more than %u faults (one per device named)", SCN_MAX_FAULTS);
		f.node = d;
		s->faults[s->n_faults++] = f;
	}
	return 0;
}

static int do_expect(struct pctx *c, struct scenario *s, bool *mark)
{
	static const char *const names[] = { "committed", "rolled_back", "failed" };
	int rest_state = -1;
	unsigned rest_line = 0;

	for (size_t i = 0; i < c->n_e; i++) {
		const struct ent *e = &c->e[i];
		struct vctx v = { c, e };
		bool rest = false;
		int st = -1;

		if (strcmp(e->sec, "expect") != 0)
			continue;
		for (size_t j = 0; j < ELEMENTSOF(names); j++)
			if (!strcmp(e->key, names[j]))
				st = (int)j;
		if (st < 0)
			return unknown_key(&v);
		if (val_nodes(&v, s, LIST_REST, mark, NULL, &rest) < 0)
			return -EINVAL;
		if (rest) {
			if (rest_state >= 0)
				return ctx_fail(c, e->line, -EINVAL, "'rest' named twice (also on line %u)", rest_line);
			rest_state = st;
			rest_line = e->line;
		}
		for (uint32_t d = 0; d < s->n_devices; d++) {
			if (!mark[d])
				continue;
			if (s->nodes[d].has_expect)
				return ctx_fail(c, e->line, -EINVAL, "%s is expected to end %s already", s->nodes[d].name,
						names[s->nodes[d].expect]);
			s->nodes[d].has_expect = true;
			s->nodes[d].expect = (enum scn_state)st;
		}
		s->has_expect = true;
	}
	if (rest_state >= 0)
		for (uint32_t d = 0; d < s->n_devices; d++)
			if (!s->nodes[d].has_expect) {
				s->nodes[d].has_expect = true;
				s->nodes[d].expect = (enum scn_state)rest_state;
			}
	return 0;
}

/* ---- the whole file ---- */

static void defaults(struct scenario *s)
{
	s->max_connections = 64; /* shoald's [transfer] max_connections */
	s->image_size = 64u << 20;
	s->chunk_avg = 64u << 10;
	s->changed_ppm = 1000000;
	s->base_v1 = true;
	s->image_seed = 1;
	snprintf(s->version, sizeof(s->version), "2.0");
	snprintf(s->from_version, sizeof(s->from_version), "1.0");
	s->gateway = (struct scn_link){ .up_bps = 12500000, .down_bps = 12500000, .latency_us = 500 };
	s->rollout = SCN_ROLLOUT_AUTO;
	s->install_ms = 20000;
	s->reboot_ms = 30000;
	s->health_ms = 10000;
	s->seed_policy = SCN_SEED_STRICT;
	s->upload_slots = 4;
	s->request_timeout_ms = 10000;
	s->ban_ms = 600000;
	s->seed = 1;
	s->time_limit_ms = 2 * 3600000;
}

/* Calls fn for every entry of section sec, in file order. */
#define EACH_IN(c, secname, body)                                   \
	for (size_t i_ = 0; i_ < (c)->n_e; i_++) {                   \
		struct vctx v = { (c), &(c)->e[i_] };                \
		if (strcmp((c)->e[i_].sec, (secname)) != 0)          \
			continue;                                    \
		if ((body) < 0)                                      \
			return -EINVAL;                              \
	}

static int build(struct pctx *c, struct scenario *s)
{
	_cleanup_(freep) bool *mark = NULL;
	struct scn_link dev = { .up_bps = 12500000, .down_bps = 12500000, .latency_us = 500 };
	char prefix[SCN_NAME_MAX] = "dev-";
	bool seen_devices = false;

	defaults(s);
	EACH_IN(c, "sim", do_sim(&v, s));
	EACH_IN(c, "fleet", do_fleet(&v, s, prefix));
	for (size_t i = 0; i < c->n_e; i++)
		if (!strcmp(c->e[i].sec, "fleet") && !strcmp(c->e[i].key, "devices"))
			seen_devices = true;
	if (!seen_devices)
		return ctx_fail(c, 0, -EINVAL, "[fleet] needs devices = N");
	s->nodes = calloc(s->n_devices, sizeof(*s->nodes));
	s->groups = calloc(SCN_MAX_GROUPS, sizeof(*s->groups));
	s->faults = calloc(SCN_MAX_FAULTS, sizeof(*s->faults));
	mark = calloc(s->n_devices, sizeof(*mark));
	if (!s->nodes || !s->groups || !s->faults || !mark)
		return ctx_fail(c, 0, -ENOMEM, "out of memory");
	for (uint32_t d = 0; d < s->n_devices; d++)
		if (snprintf(s->nodes[d].name, SCN_NAME_MAX, "%s%u", prefix, d + 1) >= SCN_NAME_MAX)
			return ctx_fail(c, 0, -EINVAL, "name_prefix too long for %u devices", s->n_devices);
	snprintf(s->groups[0].name, SCN_NAME_MAX, "default");
	s->n_groups = 1;
	EACH_IN(c, "groups", do_groups(&v, s, mark));
	for (uint32_t d = 0; d < s->n_devices; d++)
		if (s->nodes[d].group == 0)
			s->groups[0].n_members++;
	EACH_IN(c, "image", do_image(&v, s));
	EACH_IN(c, "links", do_links(&v, s, &dev));
	for (uint32_t d = 0; d < s->n_devices; d++)
		s->nodes[d].link = dev;
	/* group overrides start from the [links] values */
	for (size_t i = 0; i < c->n_e; i++) {
		const struct ent *e = &c->e[i];
		struct vctx v = { c, e };
		struct scn_link l;
		int g, r;

		if (strncmp(e->sec, "links.", 6) != 0)
			continue;
		if ((g = group_find(s, e->sec + 6)) < 0)
			return ctx_fail(c, e->line, -EINVAL, "[%s]: no group '%s' in [groups]", e->sec, e->sec + 6);
		for (uint32_t d = 0; d < s->n_devices; d++) {
			if (s->nodes[d].group != (uint32_t)g)
				continue;
			l = s->nodes[d].link;
			if ((r = do_link_key(&v, e->key, &l)) != 0)
				return r > 0 ? unknown_key(&v) : r;
			s->nodes[d].link = l;
		}
	}
	EACH_IN(c, "rollout", do_rollout(&v, s, mark));
	/* faults read install/reboot times: after [rollout] */
	for (size_t i = 0; i < c->n_e; i++) {
		bool first = true;

		if (strncmp(c->e[i].sec, "fault.", 6) != 0)
			continue;
		for (size_t j = 0; j < i; j++)
			if (!strcmp(c->e[j].sec, c->e[i].sec))
				first = false;
		if (first && do_fault(c, s, c->e[i].sec, mark) < 0)
			return -EINVAL;
	}
	if (do_expect(c, s, mark) < 0)
		return -EINVAL;
	if (s->chunk_avg > s->image_size)
		s->chunk_avg = (uint32_t)s->image_size;
	return 0;
}

void scenario_free(struct scenario *s)
{
	if (!s)
		return;
	free(s->path);
	free(s->nodes);
	free(s->groups);
	free(s->faults);
	free(s);
}

int scenario_parse(const char *text, const char *name, struct scenario **ret, struct perr *err)
{
	_cleanup_(scenario_freep) struct scenario *s = calloc(1, sizeof(*s));
	struct pctx c = { .name = name, .text = text };
	int line, k = 0;

	if (!s || !(s->path = strdup(name)))
		return perr_set(err, -ENOMEM, "out of memory");
	line = ini_parse_stream(mem_reader, &c, collect, &c);
	if (line < 0)
		k = perr_set(err, -ENOMEM, "%s: out of memory", name);
	else if (line > 0 && (!c.failed || (unsigned)line < c.fail_line))
		k = perr_set(err, -EINVAL, "%s:%d: syntax error (expected [section] or key = value)", name, line);
	else if (!c.failed && build(&c, s) < 0 && !c.failed)
		k = perr_set(err, -EINVAL, "%s: invalid", name);
	if (k == 0 && c.failed) {
		if (c.fail_line)
			k = perr_set(err, -EINVAL, "%s:%u: %s", name, c.fail_line, c.msg.msg);
		else
			k = perr_set(err, -EINVAL, "%s: %s", name, c.msg.msg);
	}
	for (size_t i = 0; i < c.n_e; i++)
		free(c.e[i].val);
	free(c.e);
	if (k < 0)
		return k;
	*ret = TAKE_PTR(s);
	return 0;
}

int scenario_load(const char *path, struct scenario **ret, struct perr *err)
{
	_cleanup_(freep) char *text = NULL;
	FILE *f = fopen(path, "re");
	struct stat st;
	size_t n;

	if (!f)
		return perr_set(err, -errno, "%s: %s", path, strerror(errno));
	if (fstat(fileno(f), &st) < 0 || st.st_size > (16 << 20)) {
		fclose(f);
		return perr_set(err, -EFBIG, "%s: not a regular file of at most 16 MiB", path);
	}
	text = malloc((size_t)st.st_size + 1);
	if (!text) {
		fclose(f);
		return perr_set(err, -ENOMEM, "out of memory");
	}
	n = fread(text, 1, (size_t)st.st_size, f);
	fclose(f);
	text[n] = '\0';
	if (strlen(text) != n)
		return perr_set(err, -EINVAL, "%s: contains a NUL byte", path);
	return scenario_parse(text, path, ret, err);
}

uint64_t scenario_fetch_bytes(const struct scenario *s)
{
	if (!s->base_v1)
		return s->image_size;
	return (uint64_t)((double)s->image_size * s->changed_ppm / 1e6);
}

double scenario_kumar_ross_s(const struct scenario *s, uint64_t fetch_bytes)
{
	double F = (double)fetch_bytes, us = (double)s->gateway.up_bps, sum_u = 0, dmin = INFINITY, t;

	for (uint32_t d = 0; d < s->n_devices; d++) {
		sum_u += (double)s->nodes[d].link.up_bps;
		if ((double)s->nodes[d].link.down_bps < dmin)
			dmin = (double)s->nodes[d].link.down_bps;
	}
	t = F / us;
	if (F / dmin > t)
		t = F / dmin;
	if (F * s->n_devices / (us + sum_u) > t)
		t = F * s->n_devices / (us + sum_u);
	return t;
}

const char *scn_state_name(enum scn_state st)
{
	static const char *const n[] = { "committed", "rolled_back", "failed" };

	return (unsigned)st < ELEMENTSOF(n) ? n[st] : "?";
}
