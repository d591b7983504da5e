/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "wire.h"

static const char *const state_names[] = {
	[REPORT_IDLE] = "idle",
	[REPORT_FETCHING] = "fetching",
	[REPORT_INSTALLING] = "installing",
	[REPORT_REBOOT_PENDING] = "reboot-pending",
	[REPORT_TRIAL] = "trial",
	[REPORT_FAILED] = "failed",
};

const char *report_state_name(unsigned s)
{
	return s <= REPORT_STATE_LAST ? state_names[s] : NULL;
}

const char *command_action_name(unsigned a)
{
	return a == COMMAND_INSTALL ? "install" : a == COMMAND_CANCEL ? "cancel" : NULL;
}

bool fleet_key_ok(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
		      c == '_' || c == '-'))
			return false;
	}
	return true;
}

/* Health output is what a script printed: several lines are the norm. */
bool fleet_output_ok(const char *s, size_t n)
{
	size_t start = 0;

	for (size_t i = 0; i <= n; i++)
		if (i == n || s[i] == '\n' || s[i] == '\t') {
			if (!text_is_clean(s + start, i - start))
				return false;
			start = i + 1;
		}
	return true;
}

static bool value_ok(const char *s, size_t n)
{
	return text_is_clean(s, n) && !memchr(s, ' ', n);
}

size_t fleet_sanitize(char *s, size_t n, bool one_line)
{
	size_t i = 0;

	while (i < n) {
		size_t len = 0;

		for (size_t l = 1; l <= 4 && i + l <= n; l++)
			if (text_is_clean(s + i, l)) {
				len = l;
				break;
			}
		if (!len) {
			if (one_line || (s[i] != '\n' && s[i] != '\t'))
				s[i] = '?';
			len = 1;
		}
		i += len;
	}
	return n;
}

/* ---- decoding ---- */

static int rd_text(struct rd *r, size_t min, size_t max, struct report_str *ret, bool (*ok)(const char *, size_t),
		   const char *what)
{
	size_t at = r->base + r->off;
	int k = rd_str(r, min, max, &ret->s, &ret->len, what);

	if (k < 0)
		return k;
	if (!ok(ret->s, ret->len))
		return perr_set(r->err, -EBADMSG, "%s at byte %zu holds characters it may not", what, at);
	return 0;
}

static int rd_version(struct rd *r, uint8_t *ret)
{
	int k = rd_u8(r, ret, "version");

	if (k < 0)
		return k;
	if (*ret < 1)
		return perr_set(r->err, -EBADMSG, "version 0 does not exist");
	return 0;
}

/* The fields of a later version: kept, not understood. */
static void rd_ext(struct rd *r, uint8_t version, const uint8_t **ret, size_t *ret_len)
{
	*ret = NULL;
	*ret_len = 0;
	if (version > FLEET_VERSION && rd_left(r)) {
		*ret = r->p + r->off;
		*ret_len = rd_left(r);
		r->off = r->len;
	}
}

static int dec_tags(struct rd *r, struct msg_report *m)
{
	int k;

	if ((k = rd_u8(r, &m->n_tags, "tag count")) < 0)
		return k;
	if (m->n_tags > REPORT_TAGS_MAX)
		return perr_set(r->err, -EBADMSG, "tag count %u exceeds %u", m->n_tags, REPORT_TAGS_MAX);
	for (size_t i = 0; i < m->n_tags; i++) {
		struct report_tag *t = &m->tags[i];

		if ((k = rd_text(r, 1, REPORT_TAG_KEY_MAX, &t->key, fleet_key_ok, "tag key")) < 0 ||
		    (k = rd_text(r, 0, REPORT_TAG_VALUE_MAX, &t->value, value_ok, "tag value")) < 0)
			return k;
	}
	return 0;
}

static int dec_health(struct rd *r, struct msg_report *m)
{
	int k;

	if ((k = rd_u8(r, &m->n_health, "health check count")) < 0)
		return k;
	if (m->n_health > REPORT_HEALTH_MAX)
		return perr_set(r->err, -EBADMSG, "health check count %u exceeds %u", m->n_health, REPORT_HEALTH_MAX);
	for (size_t i = 0; i < m->n_health; i++) {
		struct report_health *h = &m->health[i];
		size_t at;

		if ((k = rd_text(r, 1, REPORT_HEALTH_NAME_MAX, &h->name, text_is_clean, "health check name")) < 0)
			return k;
		at = r->base + r->off;
		if ((k = rd_u8(r, &h->ok, "health check result")) < 0)
			return k;
		if (h->ok > 1)
			return perr_set(r->err, -EBADMSG, "health check result at byte %zu is %u, allowed 0 or 1", at,
					h->ok);
		if ((k = rd_text(r, 0, REPORT_HEALTH_OUTPUT_MAX, &h->output, fleet_output_ok, "health check output")) < 0)
			return k;
	}
	return 0;
}

static int dec_inventory(struct rd *r, struct msg_report *m)
{
	int k;

	if ((k = rd_u8(r, &m->n_inv, "inventory count")) < 0)
		return k;
	if (m->n_inv > REPORT_INVENTORY_MAX)
		return perr_set(r->err, -EBADMSG, "inventory count %u exceeds %u", m->n_inv, REPORT_INVENTORY_MAX);
	for (size_t i = 0; i < m->n_inv; i++) {
		struct report_inv *v = &m->inv[i];

		if ((k = rd_text(r, 1, REPORT_INV_KEY_MAX, &v->key, fleet_key_ok, "inventory key")) < 0 ||
		    (k = rd_text(r, 0, REPORT_INV_VALUE_MAX, &v->value, text_is_clean, "inventory value")) < 0)
			return k;
	}
	return 0;
}

int report_decode(struct rd *r, struct msg_report *m)
{
	size_t at;
	int k;

	if ((k = rd_version(r, &m->version)) < 0 || (k = rd_u64(r, &m->seq, "sequence number")) < 0 ||
	    (k = rd_u64(r, &m->uptime_s, "uptime")) < 0 || (k = rd_u64(r, &m->free_bytes, "free space")) < 0 ||
	    (k = rd_u64(r, &m->rx_gateway, "bytes from gateways")) < 0 ||
	    (k = rd_u64(r, &m->rx_peers, "bytes from peers")) < 0 ||
	    (k = rd_text(r, 1, MANIFEST_PRODUCT_MAX, &m->product, wire_product_ok, "product")) < 0 ||
	    (k = rd_text(r, 0, 64, &m->name, text_is_clean, "name")) < 0 || (k = dec_tags(r, m)) < 0)
		return k;
	at = r->base + r->off;
	if ((k = rd_u8(r, &m->booted_slot, "booted slot")) < 0)
		return k;
	if (m->booted_slot >= REPORT_SLOTS_MAX && m->booted_slot != REPORT_SLOT_NONE)
		return perr_set(r->err, -EBADMSG, "booted slot at byte %zu is %u, allowed 0..%u or 255 (unknown)", at,
				m->booted_slot, REPORT_SLOTS_MAX - 1);
	if ((k = wire_rd_id(r, m->installed, "installed release")) < 0 ||
	    (k = rd_u64(r, &m->installed_counter, "installed counter")) < 0 ||
	    (k = rd_text(r, 0, MANIFEST_VERSION_MAX, &m->installed_version, text_is_clean, "installed version")) < 0)
		return k;
	at = r->base + r->off;
	if ((k = rd_u8(r, &m->state, "state")) < 0)
		return k;
	if (m->state > REPORT_STATE_LAST)
		return perr_set(r->err, -EBADMSG, "state at byte %zu is %u, allowed 0..%u", at, m->state,
				REPORT_STATE_LAST);
	if ((k = rd_text(r, 0, REPORT_PHASE_MAX, &m->phase, text_is_clean, "phase")) < 0 ||
	    (k = wire_rd_id(r, m->target, "target release")) < 0 ||
	    (k = rd_u64(r, &m->target_counter, "target counter")) < 0 ||
	    (k = rd_u64(r, &m->progress_done, "progress done")) < 0 ||
	    (k = rd_u64(r, &m->progress_total, "progress total")) < 0)
		return k;
	if (m->progress_done > m->progress_total)
		return perr_set(r->err, -EBADMSG, "progress %" PRIu64 " exceeds its total %" PRIu64, m->progress_done,
				m->progress_total);
	if ((k = rd_text(r, 0, REPORT_ERROR_MAX, &m->last_error, text_is_clean, "last error")) < 0 ||
	    (k = dec_health(r, m)) < 0 || (k = dec_inventory(r, m)) < 0)
		return k;
	rd_ext(r, m->version, &m->ext, &m->ext_len);
	return 0;
}

int command_decode(struct rd *r, struct msg_command *m)
{
	size_t at;
	int k;

	if ((k = rd_version(r, &m->version)) < 0)
		return k;
	at = r->base + r->off;
	if ((k = rd_u8(r, &m->action, "action")) < 0)
		return k;
	if (!command_action_name(m->action))
		return perr_set(r->err, -EBADMSG, "action at byte %zu is %u, allowed 1..%u", at, m->action,
				COMMAND_ACTION_LAST);
	if ((k = rd_u64(r, &m->campaign, "campaign id")) < 0)
		return k;
	if (m->campaign < 1)
		return perr_set(r->err, -EBADMSG, "campaign id 0 does not exist");
	if ((k = wire_rd_id(r, m->release, "release id")) < 0 || (k = rd_u64(r, &m->counter, "release counter")) < 0)
		return k;
	rd_ext(r, m->version, &m->ext, &m->ext_len);
	return 0;
}

/* ---- encoding: fields as they are; wire_encode judges them ---- */

static void wr_str(struct wbuf *w, const struct report_str *s)
{
	size_t n = s->len > UINT16_MAX ? UINT16_MAX : s->len;

	wbuf_u16(w, (uint16_t)n);
	wbuf_put(w, s->s, n);
}

int report_encode(const struct msg_report *m, struct wbuf *w)
{
	if (m->n_tags > REPORT_TAGS_MAX || m->n_health > REPORT_HEALTH_MAX || m->n_inv > REPORT_INVENTORY_MAX)
		return -EINVAL;
	wbuf_u8(w, m->version);
	wbuf_u64(w, m->seq);
	wbuf_u64(w, m->uptime_s);
	wbuf_u64(w, m->free_bytes);
	wbuf_u64(w, m->rx_gateway);
	wbuf_u64(w, m->rx_peers);
	wr_str(w, &m->product);
	wr_str(w, &m->name);
	wbuf_u8(w, m->n_tags);
	for (size_t i = 0; i < m->n_tags; i++) {
		wr_str(w, &m->tags[i].key);
		wr_str(w, &m->tags[i].value);
	}
	wbuf_u8(w, m->booted_slot);
	wbuf_put(w, m->installed, HASH_SIZE);
	wbuf_u64(w, m->installed_counter);
	wr_str(w, &m->installed_version);
	wbuf_u8(w, m->state);
	wr_str(w, &m->phase);
	wbuf_put(w, m->target, HASH_SIZE);
	wbuf_u64(w, m->target_counter);
	wbuf_u64(w, m->progress_done);
	wbuf_u64(w, m->progress_total);
	wr_str(w, &m->last_error);
	wbuf_u8(w, m->n_health);
	for (size_t i = 0; i < m->n_health; i++) {
		wr_str(w, &m->health[i].name);
		wbuf_u8(w, m->health[i].ok);
		wr_str(w, &m->health[i].output);
	}
	wbuf_u8(w, m->n_inv);
	for (size_t i = 0; i < m->n_inv; i++) {
		wr_str(w, &m->inv[i].key);
		wr_str(w, &m->inv[i].value);
	}
	if (m->ext_len)
		wbuf_put(w, m->ext, m->ext_len);
	return w->err;
}

int command_encode(const struct msg_command *m, struct wbuf *w)
{
	wbuf_u8(w, m->version);
	wbuf_u8(w, m->action);
	wbuf_u64(w, m->campaign);
	wbuf_put(w, m->release, HASH_SIZE);
	wbuf_u64(w, m->counter);
	if (m->ext_len)
		wbuf_put(w, m->ext, m->ext_len);
	return w->err;
}

/* ---- tags ---- */

int fleet_tags_parse(const char *s, struct report_tag tags[REPORT_TAGS_MAX], struct perr *err)
{
	size_t n = 0;

	for (;;) {
		const char *word, *eq;
		size_t len;

		while (*s == ' ' || *s == '\t')
			s++;
		if (!*s)
			return (int)n;
		word = s;
		len = strcspn(s, " \t");
		s += len;
		eq = memchr(word, '=', len);
		if (!eq)
			return perr_set(err, -EINVAL, "tag '%.*s' is not key=value", (int)len, word);
		if (n == REPORT_TAGS_MAX)
			return perr_set(err, -EINVAL, "more than %u tags", REPORT_TAGS_MAX);
		tags[n] = (struct report_tag){ { word, (size_t)(eq - word) }, { eq + 1, len - (size_t)(eq - word) - 1 } };
		if (tags[n].key.len < 1 || tags[n].key.len > REPORT_TAG_KEY_MAX || !fleet_key_ok(word, tags[n].key.len))
			return perr_set(err, -EINVAL, "tag '%.*s': the key must be 1 to %u characters of A-Z a-z 0-9 . _ -",
					(int)len, word, REPORT_TAG_KEY_MAX);
		if (tags[n].value.len > REPORT_TAG_VALUE_MAX || !value_ok(tags[n].value.s, tags[n].value.len))
			return perr_set(err, -EINVAL, "tag '%.*s': the value must be at most %u bytes of text", (int)len,
					word, REPORT_TAG_VALUE_MAX);
		for (size_t i = 0; i < n; i++)
			if (tags[i].key.len == tags[n].key.len && !memcmp(tags[i].key.s, word, tags[n].key.len))
				return perr_set(err, -EINVAL, "tag '%.*s' is given twice", (int)tags[n].key.len, word);
		n++;
	}
}

static bool str_eq(const struct report_str *a, const struct report_str *b)
{
	return a->len == b->len && (a->len == 0 || !memcmp(a->s, b->s, a->len));
}

bool fleet_tags_match(const struct report_tag *sel, size_t n_sel, const struct report_tag *tags, size_t n_tags)
{
	for (size_t i = 0; i < n_sel; i++) {
		bool found = false;

		for (size_t j = 0; j < n_tags && !found; j++)
			found = str_eq(&sel[i].key, &tags[j].key) && str_eq(&sel[i].value, &tags[j].value);
		if (!found)
			return false;
	}
	return true;
}

size_t fleet_health_parse(char *text, struct report_health h[REPORT_HEALTH_MAX])
{
	size_t n = 0;

	for (char *line = text, *next; line && *line && n < REPORT_HEALTH_MAX; line = next) {
		char *colon, *rest;

		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		if (strncmp(line, "health ", 7) || !(colon = strstr(line + 7, ": ")) || colon == line + 7)
			continue;
		*colon = '\0';
		rest = colon + 2;
		h[n].name = (struct report_str){ line + 7, strnlen(line + 7, REPORT_HEALTH_NAME_MAX) };
		h[n].ok = !strncmp(rest, "ok", 2) && (rest[2] == '\0' || rest[2] == ':');
		rest = strstr(rest, ": ");
		h[n].output = rest ? (struct report_str){ rest + 2, strnlen(rest + 2, REPORT_HEALTH_OUTPUT_MAX) }
				   : (struct report_str){ "", 0 };
		n++;
	}
	return n;
}
