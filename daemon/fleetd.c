/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>
#include <sys/statvfs.h>
#include <time.h>

#include "campaign.h"
#include "daemon.h"
#include "device.h"
#include "fleetd.h"
#include "hooks.h"
#include "log.h"
#include "swarm.h"

#define TICK_MS 1000u
#define RESEND_MS 30000u
#define INV_BUF 8192u /* the inventory's keys and values, NUL-separated */

struct target {
	uint8_t device[PUBKEY_SIZE];
	struct campaign_target t;
};

struct fcampaign {
	struct fcampaign *next;
	uint64_t id;
	char name[65];
	uint8_t release[HASH_SIZE];
	char version[MANIFEST_VERSION_MAX + 1];
	char product[MANIFEST_PRODUCT_MAX + 1];
	uint64_t counter;
	char selector[512];
	struct report_tag sel[REPORT_TAGS_MAX]; /* point into selector */
	size_t n_sel;
	char windows[128];
	struct campaign c;
	struct target *t;
	size_t n, cap;
	bool dirty;
};

struct inv_work {
	uv_work_t req;
	struct fleet *f;
	char buf[INV_BUF];
	size_t len;
	struct report_inv inv[REPORT_INVENTORY_MAX];
	uint8_t n;
};

struct fleet {
	struct daemon *d;
	uv_timer_t tick;
	bool stopping;
	/* device */
	struct report_tag tags[REPORT_TAGS_MAX];
	size_t n_tags;
	uint64_t seq;
	uint64_t last_sent_ms;
	uint8_t *last_sig; /* the report as last sent, without the fields that always move */
	size_t last_sig_len;
	bool gateway_new;
	struct inv_work *inv_running;
	struct inv_work *inv;  /* the last finished run */
	uint64_t inv_at_ms;
	char *boot_report;
	bool has_cmd;
	struct msg_command cmd;
	/* gateway */
	struct fcampaign *campaigns;
};

static uint64_t now_s(void)
{
	return (uint64_t)time(NULL);
}

static char *hex(const uint8_t *p, size_t n, char *out)
{
	return hex_encode(p, n, out);
}

static bool is_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* ================= device: the report ================= */

static void tick_cb(uv_timer_t *t);
static void inv_work_cb(uv_work_t *req);
static void inv_done_cb(uv_work_t *req, int status);

static void inventory_start(struct fleet *f)
{
	struct inv_work *w;

	if (!f->d->conf.inventory_dir || f->inv_running || f->stopping)
		return;
	w = calloc(1, sizeof(*w));
	if (!w)
		return;
	w->f = f;
	w->req.data = w;
	f->inv_running = w;
	f->inv_at_ms = uv_now(&f->d->loop);
	if (uv_queue_work(&f->d->loop, &w->req, inv_work_cb, inv_done_cb) < 0) {
		f->inv_running = NULL;
		free(w);
	}
}

struct inv_ctx {
	struct inv_work *w;
	uint64_t timeout;
};

/* Keeps "key=value" lines of what a program printed: bounded keys and
 * values, later ones for the same key win, the rest is ignored. */
static void inv_program_cb(void *ud, const char *name, const struct spawn_result *r)
{
	struct inv_work *w = ud;
	const char *p = r->output, *end = r->output + r->output_len;

	if (r->status || r->timed_out)
		log_warn("inventory %s: %s", name, r->timed_out ? "ran out of time" : "exited non-zero");
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p)), *eq;
		size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
		size_t kl, vl;

		eq = memchr(p, '=', len);
		if (eq && (kl = (size_t)(eq - p)) >= 1 && kl <= REPORT_INV_KEY_MAX && fleet_key_ok(p, kl)) {
			vl = len - kl - 1;
			if (vl > REPORT_INV_VALUE_MAX)
				vl = REPORT_INV_VALUE_MAX;
			if (w->n < REPORT_INVENTORY_MAX && w->len + kl + vl + 2 <= sizeof(w->buf)) {
				char *k = w->buf + w->len, *v = k + kl + 1;

				memcpy(k, p, kl);
				k[kl] = '\0';
				memcpy(v, eq + 1, vl);
				v[vl] = '\0';
				fleet_sanitize(v, vl, true);
				w->len += kl + vl + 2;
				w->inv[w->n++] = (struct report_inv){ { k, kl }, { v, vl } };
			}
		}
		p += len + 1;
	}
}

/* On a worker thread: the programs run with their own time limits, and the
 * loop goes on meanwhile. Touches only w. */
static void inv_work_cb(uv_work_t *req)
{
	struct inv_work *w = req->data;
	struct perr err = { "" };
	const struct conf *c = &w->f->d->conf;

	if (hooks_run(c->inventory_dir, NULL, c->inventory_timeout_ms, false, NULL, inv_program_cb, w, &err) < 0 &&
	    err.msg[0])
		log_warn("inventory: %s", err.msg);
}

static void inv_done_cb(uv_work_t *req, int status)
{
	struct inv_work *w = req->data;
	struct fleet *f = w->f;

	f->inv_running = NULL;
	if (status < 0 || f->stopping) {
		free(w);
		return;
	}
	free(f->inv);
	f->inv = w;
}

struct last_event {
	bool found;
	struct state_event e;
};

static int last_event_cb(void *ud, const struct state_event *e)
{
	struct last_event *l = ud;

	l->found = true;
	l->e = *e;
	return -1;
}

static bool failed_result(const char *r)
{
	return !strcmp(r, "rolled-back") || !strcmp(r, "fell-back") || !strcmp(r, "refused") ||
	       !strcmp(r, "abandoned") || !strcmp(r, "failed");
}

/* Everything a report says, from the state database, the swarm and the
 * inventory. Strings point into f, st and the buffers given. */
static void report_fill(struct fleet *f, struct msg_report *r, struct state_install *in, struct state_slot *slot,
			struct last_event *ev, char *health_buf)
{
	struct daemon *d = f->d;
	struct statvfs vfs;
	json_t *fetch;
	uint64_t best = 0;

	*r = (struct msg_report){ .version = FLEET_VERSION, .booted_slot = REPORT_SLOT_NONE };
	r->seq = ++f->seq;
	r->uptime_s = (uv_now(&d->loop) - d->started_ms) / 1000;
	if (statvfs(d->conf.state_dir, &vfs) == 0)
		r->free_bytes = (uint64_t)vfs.f_bavail * vfs.f_frsize;
	r->rx_gateway = state_counter_get(d->st, "rx_seed");
	r->rx_peers = state_counter_get(d->st, "rx_peers");
	r->product = (struct report_str){ d->conf.product, strlen(d->conf.product) };
	r->name = (struct report_str){ d->conf.name, strnlen(d->conf.name, WIRE_NAME_MAX) };
	r->n_tags = (uint8_t)f->n_tags;
	memcpy(r->tags, f->tags, f->n_tags * sizeof(f->tags[0]));

	/* the installed release: the newest slot that is good (committed); a
	 * slot on trial is the target until its boot check commits it, or a
	 * campaign would count a device done before it even rebooted */
	for (int i = 0; i < (int)REPORT_SLOTS_MAX; i++) {
		struct state_slot s;

		if (state_slot_get(d->st, i, &s) < 0)
			continue;
		free(s.manifest);
		if (s.has_release && !strcmp(s.state, "good") && s.updated >= best) {
			best = s.updated;
			*slot = s;
			r->booted_slot = (uint8_t)i;
		}
	}
	if (r->booted_slot != REPORT_SLOT_NONE) {
		memcpy(r->installed, slot->release, HASH_SIZE);
		r->installed_counter = slot->counter;
		r->installed_version = (struct report_str){ slot->version, strlen(slot->version) };
	}

	if (state_install_get(d->st, in) == 0) {
		free(in->manifest);
		in->manifest = NULL;
		r->state = !strcmp(in->phase, "reboot-pending") ? REPORT_REBOOT_PENDING
			   : !strcmp(in->phase, "health")       ? REPORT_TRIAL
								: REPORT_INSTALLING;
		r->phase = (struct report_str){ in->phase, strnlen(in->phase, REPORT_PHASE_MAX) };
		memcpy(r->target, in->release, HASH_SIZE);
		r->target_counter = in->counter;
	} else if ((fetch = swarm_fetch_json(d->swarm)) && json_is_object(fetch)) { /* the macro evaluates twice */
		const char *id = json_string_value(json_object_get(fetch, "id"));

		r->state = REPORT_FETCHING;
		if (id)
			hex_decode(id, HASH_SIZE, r->target);
		r->progress_total = (uint64_t)json_integer_value(json_object_get(fetch, "bytes_total"));
		r->progress_done = (uint64_t)json_integer_value(json_object_get(fetch, "bytes_held"));
		if (r->progress_done > r->progress_total)
			r->progress_done = r->progress_total;
		json_decref(fetch);
	} else {
		json_decref(fetch);
		if (f->has_cmd && memcmp(f->cmd.release, r->installed, HASH_SIZE)) {
			memcpy(r->target, f->cmd.release, HASH_SIZE);
			r->target_counter = f->cmd.counter;
		}
	}
	/* the callback stops the walk after one event: the return value says so */
	state_event_foreach(d->st, 1, last_event_cb, ev);
	if (ev->found && failed_result(ev->e.result)) {
		fleet_sanitize(ev->e.detail, strlen(ev->e.detail), true);
		r->last_error = (struct report_str){ ev->e.detail, strnlen(ev->e.detail, REPORT_ERROR_MAX) };
		if (r->state == REPORT_IDLE && ev->e.has_release && memcmp(ev->e.release, r->installed, HASH_SIZE)) {
			r->state = REPORT_FAILED;
			memcpy(r->target, ev->e.release, HASH_SIZE);
		}
	}
	if (f->boot_report) {
		strcpy(health_buf, f->boot_report);
		r->n_health = (uint8_t)fleet_health_parse(health_buf, r->health);
	}
	if (f->inv) {
		r->n_inv = f->inv->n;
		memcpy(r->inv, f->inv->inv, f->inv->n * sizeof(r->inv[0]));
	}
}

/* With install = manual a device installs a fetched release when the
 * gateway asks for that release (the installer still checks everything). */
static void command_tick(struct fleet *f)
{
	struct daemon *d = f->d;
	char want[2 * HASH_SIZE + 1];
	struct perr err = { "" };
	json_t *st;
	int k;

	if (!f->has_cmd || !d->dev || d->conf.install != INSTALL_MANUAL)
		return;
	st = device_status_json(d);
	hex(f->cmd.release, HASH_SIZE, want);
	if (json_is_object(st) && !strcmp(json_string_value(json_object_get(st, "state")) ?: "", "fetched") &&
	    !strcmp(json_string_value(json_object_get(st, "release")) ?: "", want)) {
		log_notice("campaign %" PRIu64 ": installing %s as the gateway asked", f->cmd.campaign,
			   json_string_value(json_object_get(st, "version")));
		if ((k = device_install_fetched(d, &err)) < 0)
			log_warn("campaign %" PRIu64 ": install refused: %s", f->cmd.campaign, err.msg);
		f->has_cmd = false; /* asked once; the gateway sends it again if we stay idle */
	}
	json_decref(st);
}

static void report_tick(struct fleet *f)
{
	struct daemon *d = f->d;
	struct msg m = { .type = MSG_REPORT };
	struct state_install in;
	struct state_slot slot;
	struct last_event ev = { 0 };
	struct wbuf w = { 0 }, sig = { 0 };
	_cleanup_(freep) char *health = f->boot_report ? malloc(strlen(f->boot_report) + 1) : NULL;
	uint64_t now = uv_now(&d->loop);
	bool changed, due;

	if (f->d->conf.inventory_dir && now - f->inv_at_ms >= d->conf.report_interval_ms)
		inventory_start(f);
	if (f->boot_report && !health)
		return;
	report_fill(f, &m.report, &in, &slot, &ev, health);
	/* what always moves (seq, uptime, free space, byte counts) is no change */
	{
		struct msg s = m;

		s.report.seq = s.report.uptime_s = s.report.free_bytes = s.report.rx_gateway = s.report.rx_peers = 0;
		if (wire_encode(&s, &sig) < 0) {
			f->seq--;
			return;
		}
	}
	changed = sig.len != f->last_sig_len || memcmp(sig.p, f->last_sig, sig.len);
	due = now - f->last_sent_ms >= d->conf.report_interval_ms;
	if (!changed && !due && !f->gateway_new) {
		f->seq--;
		wbuf_free(&sig);
		return;
	}
	if (wire_encode(&m, &w) < 0) {
		log_warn("fleet: the report does not encode; not sent");
		f->seq--;
		wbuf_free(&sig);
		return;
	}
	if (swarm_send_gateways(d->swarm, &m) > 0) {
		f->gateway_new = false;
		f->last_sent_ms = now;
		free(f->last_sig);
		f->last_sig_len = sig.len;
		f->last_sig = wbuf_steal(&sig, &f->last_sig_len);
		log_debug("fleet: report %" PRIu64 " sent (%zu bytes)", m.report.seq, w.len);
	} else {
		f->seq--;
	}
	wbuf_free(&w);
	wbuf_free(&sig);
}

void fleet_gateway_hello(struct fleet *f)
{
	if (!f)
		return;
	f->gateway_new = true;
	/* after the HELLO in the same turn: the gateway knows who we are */
	uv_timer_start(&f->tick, tick_cb, 0, TICK_MS);
}

void fleet_on_command(struct fleet *f, const char *peer, const struct msg_command *c)
{
	char id[2 * HASH_SIZE + 1];

	if (!f)
		return;
	log_notice("gateway %s: campaign %" PRIu64 " asks to %s release %.16s (counter %" PRIu64
		   "); it is checked here like any other", peer, c->campaign, command_action_name(c->action),
		   hex(c->release, HASH_SIZE, id), c->counter);
	if (c->action == COMMAND_CANCEL) {
		if (f->has_cmd && !memcmp(f->cmd.release, c->release, HASH_SIZE))
			f->has_cmd = false;
		return;
	}
	f->cmd = *c;
	f->cmd.ext = NULL;
	f->cmd.ext_len = 0;
	f->has_cmd = true;
	f->gateway_new = true; /* answer with a report at once */
}

bool fleet_wanted_release(struct fleet *f, uint8_t id[HASH_SIZE], uint64_t *counter)
{
	if (!f || !f->has_cmd)
		return false;
	memcpy(id, f->cmd.release, HASH_SIZE);
	*counter = f->cmd.counter;
	return true;
}

void fleet_set_boot_report(struct fleet *f, const char *report)
{
	char *copy;

	if (!f || !(copy = strdup(report)))
		return;
	fleet_sanitize(copy, strlen(copy), false);
	free(f->boot_report);
	f->boot_report = copy;
}

/* ================= gateway: devices ================= */

static int sql_prepare(struct fleet *f, const char *sql, sqlite3_stmt **s)
{
	int rc = sqlite3_prepare_v2(state_db(f->d->st), sql, -1, s, NULL);

	if (rc != SQLITE_OK) {
		log_err("fleet: SQL: %s", sqlite3_errmsg(state_db(f->d->st)));
		return state_errno(rc);
	}
	return 0;
}

static int sql_done(struct fleet *f, sqlite3_stmt *s)
{
	int rc = sqlite3_step(s), k = state_errno(rc);

	if (k < 0)
		log_err("fleet: SQL: %s", sqlite3_errmsg(state_db(f->d->st)));
	sqlite3_finalize(s);
	return k;
}

/* Decodes a stored REPORT payload. Returns the buffer the strings of
 * ret point into (the caller frees it), or NULL. */
static uint8_t *report_load(const void *p, size_t n, struct msg *ret)
{
	uint8_t *buf = malloc(n + 1);

	if (!buf)
		return NULL;
	buf[0] = MSG_REPORT;
	memcpy(buf + 1, p, n);
	if (wire_decode(buf, n + 1, ret, NULL) < 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

static json_t *str_json(const struct report_str *s)
{
	return json_stringn(s->s, s->len);
}

static json_t *report_json(const struct msg_report *r)
{
	char a[2 * HASH_SIZE + 1], b[2 * HASH_SIZE + 1];
	json_t *tags = json_object(), *health = json_array(), *inv = json_object();

	for (size_t i = 0; i < r->n_tags; i++) {
		char k[REPORT_TAG_KEY_MAX + 1];

		snprintf(k, sizeof(k), "%.*s", (int)r->tags[i].key.len, r->tags[i].key.s);
		json_object_set_new(tags, k, str_json(&r->tags[i].value));
	}
	for (size_t i = 0; i < r->n_health; i++)
		json_array_append_new(health, json_pack("{s:o, s:b, s:o}", "name", str_json(&r->health[i].name), "ok",
							r->health[i].ok, "output", str_json(&r->health[i].output)));
	for (size_t i = 0; i < r->n_inv; i++) {
		char k[REPORT_INV_KEY_MAX + 1];

		snprintf(k, sizeof(k), "%.*s", (int)r->inv[i].key.len, r->inv[i].key.s);
		json_object_set_new(inv, k, str_json(&r->inv[i].value));
	}
	return json_pack("{s:I, s:I, s:I, s:{s:I, s:I}, s:o, s:o, s:o, s:o?, s:{s:o?, s:o, s:I}, s:s, s:o, "
			 "s:{s:o?, s:I}, s:{s:I, s:I}, s:o, s:o, s:o}",
			 "seq", (json_int_t)r->seq, "uptime_s", (json_int_t)r->uptime_s, "free_bytes",
			 (json_int_t)r->free_bytes, "received", "gateway", (json_int_t)r->rx_gateway, "peers",
			 (json_int_t)r->rx_peers, "product", str_json(&r->product), "name", str_json(&r->name), "tags",
			 tags, "slot", r->booted_slot == REPORT_SLOT_NONE ? NULL : json_integer(r->booted_slot),
			 "installed", "id",
			 is_zero(r->installed, HASH_SIZE) ? NULL : json_string(hex(r->installed, HASH_SIZE, a)),
			 "version", str_json(&r->installed_version), "counter", (json_int_t)r->installed_counter,
			 "state", report_state_name(r->state), "phase", str_json(&r->phase), "target", "id",
			 is_zero(r->target, HASH_SIZE) ? NULL : json_string(hex(r->target, HASH_SIZE, b)), "counter",
			 (json_int_t)r->target_counter, "progress", "done", (json_int_t)r->progress_done, "total",
			 (json_int_t)r->progress_total, "last_error", str_json(&r->last_error), "health", health,
			 "inventory", inv);
}

static bool online(struct fleet *f, uint64_t last_seen)
{
	return now_s() - last_seen < f->d->conf.offline_after_ms / 1000;
}

/* A device's row as JSON (NULL when its report no longer decodes). */
static json_t *device_row_json(struct fleet *f, sqlite3_stmt *s)
{
	char id[2 * PUBKEY_SIZE + 1];
	struct msg m;
	_cleanup_(freep) uint8_t *buf = report_load(sqlite3_column_blob(s, 1), (size_t)sqlite3_column_bytes(s, 1), &m);
	uint64_t last = (uint64_t)sqlite3_column_int64(s, 3);
	json_t *o;

	if (!buf || sqlite3_column_bytes(s, 0) != PUBKEY_SIZE)
		return NULL;
	o = report_json(&m.report);
	hex(sqlite3_column_blob(s, 0), PUBKEY_SIZE, id);
	json_object_set_new(o, "id", json_string(id));
	json_object_set_new(o, "first_seen", json_integer(sqlite3_column_int64(s, 2)));
	json_object_set_new(o, "last_seen", json_integer((json_int_t)last));
	json_object_set_new(o, "online", json_boolean(online(f, last)));
	return o;
}

json_t *fleet_devices_json(struct fleet *f)
{
	sqlite3_stmt *s;
	json_t *a = json_array();

	if (sql_prepare(f, "SELECT id, report, first_seen, last_seen FROM devices ORDER BY name, id", &s) < 0)
		return a;
	while (sqlite3_step(s) == SQLITE_ROW) {
		json_t *o = device_row_json(f, s);

		if (o)
			json_array_append_new(a, o);
	}
	sqlite3_finalize(s);
	return a;
}

/* A device named by its id in hex (64 digits, or a unique prefix of at
 * least 8) or its name. */
static int find_device(struct fleet *f, const char *key, uint8_t ret[PUBKEY_SIZE], struct perr *err)
{
	sqlite3_stmt *s;
	size_t kl = strlen(key);
	int found = 0;

	if (sql_prepare(f, "SELECT id, name FROM devices", &s) < 0)
		return perr_set(err, -EIO, "database error");
	while (sqlite3_step(s) == SQLITE_ROW) {
		char id[2 * PUBKEY_SIZE + 1];
		const char *name = (const char *)sqlite3_column_text(s, 1);

		if (sqlite3_column_bytes(s, 0) != PUBKEY_SIZE)
			continue;
		hex(sqlite3_column_blob(s, 0), PUBKEY_SIZE, id);
		if ((kl >= 8 && !strncmp(id, key, kl)) || (name && !strcmp(name, key))) {
			memcpy(ret, sqlite3_column_blob(s, 0), PUBKEY_SIZE);
			found++;
		}
	}
	sqlite3_finalize(s);
	if (found == 0)
		return perr_set(err, -ENOENT, "no device '%s'", key);
	if (found > 1)
		return perr_set(err, -ENOENT, "'%s' names %d devices; give more of the id", key, found);
	return 0;
}

json_t *fleet_device_json(struct fleet *f, const char *key, int *status, struct perr *err)
{
	uint8_t dev[PUBKEY_SIZE];
	sqlite3_stmt *s;
	json_t *o = NULL, *hist;

	if (find_device(f, key, dev, err) < 0) {
		*status = 404;
		return NULL;
	}
	if (sql_prepare(f, "SELECT id, report, first_seen, last_seen FROM devices WHERE id = ?", &s) == 0) {
		sqlite3_bind_blob(s, 1, dev, PUBKEY_SIZE, SQLITE_STATIC);
		if (sqlite3_step(s) == SQLITE_ROW)
			o = device_row_json(f, s);
		sqlite3_finalize(s);
	}
	if (!o) {
		*status = 500;
		perr_set(err, -EIO, "the stored report does not decode");
		return NULL;
	}
	hist = json_array();
	if (sql_prepare(f, "SELECT at, report FROM device_reports WHERE device = ? ORDER BY seq DESC", &s) == 0) {
		sqlite3_bind_blob(s, 1, dev, PUBKEY_SIZE, SQLITE_STATIC);
		while (sqlite3_step(s) == SQLITE_ROW) {
			struct msg m;
			_cleanup_(freep) uint8_t *buf =
				report_load(sqlite3_column_blob(s, 1), (size_t)sqlite3_column_bytes(s, 1), &m);
			json_t *h;

			if (!buf)
				continue;
			h = report_json(&m.report);
			json_object_set_new(h, "at", json_integer(sqlite3_column_int64(s, 0)));
			json_array_append_new(hist, h);
		}
		sqlite3_finalize(s);
	}
	json_object_set_new(o, "history", hist);
	return o;
}

/* ================= gateway: campaigns ================= */

static void campaign_free(struct fcampaign *c)
{
	if (c) {
		free(c->t);
		free(c);
	}
}

static bool campaign_open(const struct fcampaign *c)
{
	return c->c.state == CAMPAIGN_RUNNING || c->c.state == CAMPAIGN_PAUSED;
}

static int campaign_save(struct fleet *f, struct fcampaign *c)
{
	sqlite3 *db = state_db(f->d->st);
	sqlite3_stmt *s;
	int k;

	sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
	if ((k = sql_prepare(f, "UPDATE campaigns SET state = ?, canary_n = ?, failures = ?, reason = ? WHERE id = ?", &s)) <
	    0)
		goto out;
	sqlite3_bind_int(s, 1, (int)c->c.state);
	sqlite3_bind_int64(s, 2, c->c.canary_n);
	sqlite3_bind_int64(s, 3, c->c.failures);
	sqlite3_bind_text(s, 4, c->c.reason, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 5, (sqlite3_int64)c->id);
	if ((k = sql_done(f, s)) < 0)
		goto out;
	for (size_t i = 0; i < c->n && k == 0; i++) {
		if ((k = sql_prepare(f, "INSERT OR REPLACE INTO campaign_targets (campaign, device, phase, state, since) "
					"VALUES (?, ?, ?, ?, ?)", &s)) < 0)
			break;
		sqlite3_bind_int64(s, 1, (sqlite3_int64)c->id);
		sqlite3_bind_blob(s, 2, c->t[i].device, PUBKEY_SIZE, SQLITE_STATIC);
		sqlite3_bind_int(s, 3, c->t[i].t.phase);
		sqlite3_bind_int(s, 4, c->t[i].t.state);
		/* since is in the loop's clock: stored as wall-clock seconds */
		sqlite3_bind_int64(s, 5, (sqlite3_int64)now_s());
		k = sql_done(f, s);
	}
out:
	sqlite3_exec(db, k < 0 ? "ROLLBACK" : "COMMIT", NULL, NULL, NULL);
	if (k == 0)
		c->dirty = false;
	return k;
}

static int add_target(struct fcampaign *c, const uint8_t dev[PUBKEY_SIZE])
{
	if (array_reserve((void **)&c->t, &c->cap, c->n + 1, sizeof(c->t[0]), 8) < 0)
		return -ENOMEM;
	memset(&c->t[c->n], 0, sizeof(c->t[0]));
	memcpy(c->t[c->n].device, dev, PUBKEY_SIZE);
	c->n++;
	return 0;
}

static struct target *target_of(struct fcampaign *c, const uint8_t dev[PUBKEY_SIZE])
{
	for (size_t i = 0; i < c->n; i++)
		if (!memcmp(c->t[i].device, dev, PUBKEY_SIZE))
			return &c->t[i];
	return NULL;
}

static bool selects(const struct fcampaign *c, const struct msg_report *r)
{
	return r->product.len == strlen(c->product) && !memcmp(r->product.s, c->product, r->product.len) &&
	       fleet_tags_match(c->sel, c->n_sel, r->tags, r->n_tags);
}

static struct campaign_obs observe(const struct fcampaign *c, const struct msg_report *r)
{
	bool target = !memcmp(r->target, c->release, HASH_SIZE);

	return (struct campaign_obs){
		.runs_release = !memcmp(r->installed, c->release, HASH_SIZE) && r->state != REPORT_TRIAL &&
				r->state != REPORT_FAILED,
		.busy_with_release = target && r->state >= REPORT_FETCHING && r->state <= REPORT_TRIAL,
		.failed_release = target && r->state == REPORT_FAILED,
		.idle = r->state == REPORT_IDLE || !target,
	};
}

static void send_command(struct fleet *f, struct fcampaign *c, const uint8_t dev[PUBKEY_SIZE], uint8_t action)
{
	struct msg m = { .type = MSG_COMMAND };
	char id[17];
	int k;

	m.command = (struct msg_command){ .version = FLEET_VERSION, .action = action, .campaign = c->id,
					  .counter = c->counter };
	memcpy(m.command.release, c->release, HASH_SIZE);
	k = swarm_send_to(f->d->swarm, dev, &m);
	log_info("campaign %" PRIu64 ": %s %s to device %s%s", c->id, command_action_name(action), c->version,
		 hex(dev, 8, id), k < 0 ? " (not connected: sent when it is)" : "");
}

/* The latest report of a device, decoded (buffer returned, caller frees). */
static uint8_t *latest_report(struct fleet *f, const uint8_t dev[PUBKEY_SIZE], struct msg *m, uint64_t *last_seen)
{
	sqlite3_stmt *s;
	uint8_t *buf = NULL;

	if (sql_prepare(f, "SELECT report, last_seen FROM devices WHERE id = ?", &s) < 0)
		return NULL;
	sqlite3_bind_blob(s, 1, dev, PUBKEY_SIZE, SQLITE_STATIC);
	if (sqlite3_step(s) == SQLITE_ROW) {
		buf = report_load(sqlite3_column_blob(s, 0), (size_t)sqlite3_column_bytes(s, 0), m);
		if (last_seen)
			*last_seen = (uint64_t)sqlite3_column_int64(s, 1);
	}
	sqlite3_finalize(s);
	return buf;
}

/* Asks the machine whom to command and sends it. */
static void campaign_step(struct fleet *f, struct fcampaign *c)
{
	size_t *out, k;
	bool *idle;
	enum campaign_state before = c->c.state;

	if (!campaign_open(c) || !c->n)
		return;
	out = calloc(c->n, sizeof(*out));
	idle = calloc(c->n, sizeof(*idle));
	if (!out || !idle)
		goto done;
	for (size_t i = 0; i < c->n; i++) {
		struct msg m;
		uint64_t seen = 0;
		_cleanup_(freep) uint8_t *buf = latest_report(f, c->t[i].device, &m, &seen);

		/* an offline device is not idle: it may be rebooting */
		idle[i] = buf && online(f, seen) && observe(c, &m.report).idle;
	}
	{
		struct campaign_target *ts = calloc(c->n, sizeof(*ts));

		if (!ts)
			goto done;
		for (size_t i = 0; i < c->n; i++)
			ts[i] = c->t[i].t;
		k = campaign_next(&c->c, ts, c->n, idle, uv_now(&f->d->loop), now_s(), out, c->n);
		for (size_t i = 0; i < c->n; i++) {
			if (memcmp(&ts[i], &c->t[i].t, sizeof(ts[i])))
				c->dirty = true;
			c->t[i].t = ts[i];
		}
		free(ts);
	}
	for (size_t i = 0; i < k; i++)
		send_command(f, c, c->t[out[i]].device, COMMAND_INSTALL);
	if (c->c.state != before) {
		c->dirty = true;
		log_notice("campaign %" PRIu64 " (%s): %s: %s", c->id, c->name, campaign_state_name(c->c.state),
			   c->c.reason);
	}
done:
	free(out);
	free(idle);
	if (c->dirty)
		campaign_save(f, c);
}

static void campaigns_on_report(struct fleet *f, const uint8_t dev[PUBKEY_SIZE], const struct msg_report *r)
{
	for (struct fcampaign *c = f->campaigns; c; c = c->next) {
		struct target *t;
		char name[WIRE_NAME_MAX + 1];

		if (!campaign_open(c))
			continue;
		t = target_of(c, dev);
		if (!t) {
			if (!selects(c, r) || add_target(c, dev) < 0)
				continue;
			t = &c->t[c->n - 1];
			campaign_join(&c->c, &t->t, uv_now(&f->d->loop));
			c->dirty = true;
		}
		snprintf(name, sizeof(name), "%.*s", (int)r->name.len, r->name.s);
		{
			enum campaign_state before = c->c.state;
			struct campaign_obs o = observe(c, r);

			if (campaign_observe(&c->c, &t->t, &o, name, uv_now(&f->d->loop)))
				c->dirty = true;
			if (c->c.state != before)
				log_warn("campaign %" PRIu64 " (%s): %s", c->id, c->name, c->c.reason);
		}
		/* whom to command next is decided on the tick (once a second), not
		 * per report: that reads every target's report */
		if (c->dirty)
			campaign_save(f, c);
	}
}

void fleet_on_report(struct fleet *f, const uint8_t dev[PUBKEY_SIZE], const struct msg_report *r,
		     const uint8_t *payload, size_t len)
{
	sqlite3_stmt *s;
	struct msg old;
	_cleanup_(freep) uint8_t *prev = NULL;
	bool changed = true;
	uint64_t now = now_s();
	char id[17];

	if (!f)
		return;
	prev = latest_report(f, dev, &old, NULL);
	if (prev) {
		/* the history keeps changes, not the periodic "still the same" */
		struct msg_report a = old.report, b = *r;

		a.seq = b.seq = a.uptime_s = b.uptime_s = a.free_bytes = b.free_bytes = 0;
		a.rx_gateway = b.rx_gateway = a.rx_peers = b.rx_peers = 0;
		{
			struct wbuf wa = { 0 }, wb = { 0 };

			report_encode(&a, &wa);
			report_encode(&b, &wb);
			changed = wa.len != wb.len || wa.err || memcmp(wa.p, wb.p, wa.len);
			wbuf_free(&wa);
			wbuf_free(&wb);
		}
	}
	log_debug("device %s: report %" PRIu64 " (%s)%s", hex(dev, 8, id), r->seq, report_state_name(r->state),
		  changed ? ", changed" : "");
	if (sql_prepare(f, "INSERT INTO devices (id, name, report, first_seen, last_seen) VALUES (?, ?, ?, ?, ?) "
			   "ON CONFLICT (id) DO UPDATE SET name = excluded.name, report = excluded.report, "
			   "last_seen = excluded.last_seen", &s) < 0)
		return;
	sqlite3_bind_blob(s, 1, dev, PUBKEY_SIZE, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, r->name.s, (int)r->name.len, SQLITE_STATIC);
	sqlite3_bind_blob(s, 3, payload, (int)len, SQLITE_STATIC);
	sqlite3_bind_int64(s, 4, (sqlite3_int64)now);
	sqlite3_bind_int64(s, 5, (sqlite3_int64)now);
	if (sql_done(f, s) < 0)
		return;
	if (changed && sql_prepare(f, "INSERT INTO device_reports (device, at, report) VALUES (?, ?, ?)", &s) == 0) {
		sqlite3_bind_blob(s, 1, dev, PUBKEY_SIZE, SQLITE_STATIC);
		sqlite3_bind_int64(s, 2, (sqlite3_int64)now);
		sqlite3_bind_blob(s, 3, payload, (int)len, SQLITE_STATIC);
		sql_done(f, s);
		if (sql_prepare(f, "DELETE FROM device_reports WHERE device = ?1 AND seq <= (SELECT seq FROM "
				   "device_reports WHERE device = ?1 ORDER BY seq DESC LIMIT 1 OFFSET ?2)", &s) == 0) {
			sqlite3_bind_blob(s, 1, dev, PUBKEY_SIZE, SQLITE_STATIC);
			sqlite3_bind_int64(s, 2, f->d->conf.report_history);
			sql_done(f, s);
		}
	}
	campaigns_on_report(f, dev, r);
}

static json_t *campaign_json(struct fleet *f, const struct fcampaign *c, bool targets)
{
	char rel[2 * HASH_SIZE + 1];
	uint32_t counts[2][TARGET_STATE_COUNT];
	json_t *phases = json_array(), *o;
	struct campaign_target *ts = calloc(c->n ? c->n : 1, sizeof(*ts));

	for (size_t i = 0; ts && i < c->n; i++)
		ts[i] = c->t[i].t;
	campaign_counts(ts, ts ? c->n : 0, counts);
	free(ts);
	for (int p = 0; p < 2; p++) {
		json_t *st = json_object();
		uint32_t total = 0;

		for (int s = 0; s < TARGET_STATE_COUNT; s++) {
			json_object_set_new(st, target_state_name((unsigned)s), json_integer(counts[p][s]));
			total += counts[p][s];
		}
		json_array_append_new(phases, json_pack("{s:s, s:I, s:o}", "phase", p ? "rest" : "canary", "total",
							(json_int_t)total, "targets", st));
	}
	o = json_pack("{s:I, s:s, s:s, s:s, s:I, s:s, s:s, s:s, s:I, s:{s:I, s:I, s:I, s:I, s:s}, s:I, s:o}", "id",
		      (json_int_t)c->id, "name", c->name, "release", hex(c->release, HASH_SIZE, rel), "version",
		      c->version, "counter", (json_int_t)c->counter, "selector", c->selector, "state",
		      campaign_state_name(c->c.state), "reason", c->c.reason, "failures", (json_int_t)c->c.failures,
		      "params", "canary_count", (json_int_t)c->c.p.canary_count, "canary_percent",
		      (json_int_t)c->c.p.canary_percent, "max_parallel", (json_int_t)c->c.p.max_parallel,
		      "failure_threshold", (json_int_t)c->c.p.failure_threshold, "windows", c->windows, "canary_n",
		      (json_int_t)c->c.canary_n, "phases", phases);
	if (o && targets) {
		json_t *a = json_array();

		for (size_t i = 0; i < c->n; i++) {
			char id[2 * PUBKEY_SIZE + 1];
			struct msg m;
			_cleanup_(freep) uint8_t *buf = latest_report(f, c->t[i].device, &m, NULL);

			json_array_append_new(a, json_pack("{s:s, s:s%, s:s, s:s}", "device",
							   hex(c->t[i].device, PUBKEY_SIZE, id), "name",
							   buf ? m.report.name.s : "", buf ? m.report.name.len : 0,
							   "phase", c->t[i].t.phase ? "rest" : "canary", "state",
							   target_state_name(c->t[i].t.state)));
		}
		json_object_set_new(o, "targets", a);
	}
	return o;
}

json_t *fleet_campaigns_json(struct fleet *f)
{
	json_t *a = json_array();

	for (struct fcampaign *c = f->campaigns; c; c = c->next)
		json_array_append_new(a, campaign_json(f, c, false));
	return a;
}

static struct fcampaign *campaign_find(struct fleet *f, uint64_t id)
{
	for (struct fcampaign *c = f->campaigns; c; c = c->next)
		if (c->id == id)
			return c;
	return NULL;
}

json_t *fleet_campaign_json(struct fleet *f, uint64_t id, int *status, struct perr *err)
{
	struct fcampaign *c = campaign_find(f, id);

	if (!c) {
		*status = 404;
		perr_set(err, -ENOENT, "no campaign %" PRIu64, id);
		return NULL;
	}
	return campaign_json(f, c, true);
}

static int parse_windows(struct fcampaign *c, struct perr *err)
{
	char buf[sizeof(c->windows)], *save = NULL;

	snprintf(buf, sizeof(buf), "%s", c->windows);
	c->c.p.n_windows = 0;
	for (char *w = strtok_r(buf, " ,", &save); w; w = strtok_r(NULL, " ,", &save)) {
		if (c->c.p.n_windows == CAMPAIGN_WINDOWS_MAX)
			return perr_set(err, -EINVAL, "windows: at most %u", CAMPAIGN_WINDOWS_MAX);
		if (campaign_window_parse(w, &c->c.p.windows[c->c.p.n_windows++]) < 0)
			return perr_set(err, -EINVAL, "windows: '%s' is not HH:MM-HH:MM (UTC)", w);
	}
	return 0;
}

static int selector_parse(struct fcampaign *c, struct perr *err)
{
	int k = fleet_tags_parse(c->selector, c->sel, err);

	if (k < 0)
		return perr_prefix(err, k, "selector: ");
	c->n_sel = (size_t)k;
	return 0;
}

/* The release a campaign names: a version or (a prefix of) an id of a
 * release this gateway seeds. */
struct rel_find {
	const char *key;
	struct state_release r;
	int n;
};

static int rel_find_cb(void *ud, const struct state_release *r)
{
	struct rel_find *q = ud;
	char id[2 * HASH_SIZE + 1];
	size_t kl = strlen(q->key);

	if (r->st != REL_SEEDING && r->st != REL_COMPLETE)
		return 0;
	hex(r->id, HASH_SIZE, id);
	if (!strcmp(r->version, q->key) || (kl >= 8 && !strncmp(id, q->key, kl))) {
		q->r = *r;
		q->r.manifest = NULL;
		q->n++;
	}
	return 0;
}

static bool get_uint(json_t *o, const char *key, uint64_t max, uint32_t *ret, struct perr *err, int *bad)
{
	json_t *v = json_object_get(o, key);

	if (!v)
		return true;
	if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) > max) {
		*bad = perr_set(err, -EINVAL, "\"%s\" must be an integer 0..%" PRIu64, key, max);
		return false;
	}
	*ret = (uint32_t)json_integer_value(v);
	return true;
}

json_t *fleet_campaign_create(struct fleet *f, json_t *req, int *status, struct perr *err)
{
	static const char *const known[] = { "name", "release", "selector", "canary_count", "canary_percent",
					     "max_parallel", "failure_threshold", "windows", NULL };
	_cleanup_(freep) struct fcampaign *c = calloc(1, sizeof(*c));
	struct rel_find q = { 0 };
	const char *key, *rel, *str;
	json_t *v;
	sqlite3_stmt *s;
	int bad = 0;

	*status = 400;
	if (!c) {
		*status = 500;
		perr_set(err, -ENOMEM, "out of memory");
		return NULL;
	}
	if (!json_is_object(req)) {
		perr_set(err, -EINVAL, "the request must be a JSON object");
		return NULL;
	}
	json_object_foreach(req, key, v) {
		size_t i = 0;

		while (known[i] && strcmp(known[i], key))
			i++;
		if (!known[i] && strcmp(key, "cmd")) {
			perr_set(err, -EINVAL, "unknown field \"%s\"", key);
			return NULL;
		}
	}
	if (!(rel = json_string_value(json_object_get(req, "release")))) {
		perr_set(err, -EINVAL, "\"release\" (a version or release id the gateway seeds) is required");
		return NULL;
	}
	c->c.p = (struct campaign_params){ .max_parallel = 1, .failure_threshold = 1, .resend_ms = RESEND_MS };
	str = json_string_value(json_object_get(req, "name"));
	snprintf(c->name, sizeof(c->name), "%s", str ? str : rel);
	str = json_string_value(json_object_get(req, "selector"));
	if (json_object_get(req, "selector") && !str) {
		perr_set(err, -EINVAL, "\"selector\" must be a string of key=value tags");
		return NULL;
	}
	if (snprintf(c->selector, sizeof(c->selector), "%s", str ? str : "") >= (int)sizeof(c->selector)) {
		perr_set(err, -EINVAL, "\"selector\" is too long");
		return NULL;
	}
	v = json_object_get(req, "windows");
	if (v && !json_is_string(v)) {
		perr_set(err, -EINVAL, "\"windows\" must be a string such as \"22:00-04:00 12:00-13:00\" (UTC)");
		return NULL;
	}
	snprintf(c->windows, sizeof(c->windows), "%s", v ? json_string_value(v) : "");
	if (!get_uint(req, "canary_count", 100000, &c->c.p.canary_count, err, &bad) ||
	    !get_uint(req, "canary_percent", 100, &c->c.p.canary_percent, err, &bad) ||
	    !get_uint(req, "max_parallel", 100000, &c->c.p.max_parallel, err, &bad) ||
	    !get_uint(req, "failure_threshold", 100000, &c->c.p.failure_threshold, err, &bad) ||
	    selector_parse(c, err) < 0 || parse_windows(c, err) < 0 || campaign_params_check(&c->c.p, err) < 0)
		return NULL;
	q.key = rel;
	state_release_foreach(f->d->st, rel_find_cb, &q);
	if (q.n != 1) {
		*status = q.n ? 409 : 404;
		perr_set(err, -ENOENT, q.n ? "release '%s' names %d releases" : "this gateway seeds no release '%s'",
			 rel, q.n);
		return NULL;
	}
	memcpy(c->release, q.r.id, HASH_SIZE);
	snprintf(c->version, sizeof(c->version), "%s", q.r.version);
	snprintf(c->product, sizeof(c->product), "%s", q.r.product);
	c->counter = q.r.counter;

	/* who matches now, in the order they were first seen: the canary is
	 * the oldest members of the group */
	if (sql_prepare(f, "SELECT id, report, last_seen FROM devices ORDER BY first_seen, id", &s) == 0) {
		while (sqlite3_step(s) == SQLITE_ROW) {
			struct msg m;
			_cleanup_(freep) uint8_t *buf =
				report_load(sqlite3_column_blob(s, 1), (size_t)sqlite3_column_bytes(s, 1), &m);

			if (buf && sqlite3_column_bytes(s, 0) == PUBKEY_SIZE && selects(c, &m.report) &&
			    add_target(c, sqlite3_column_blob(s, 0)) < 0)
				break;
		}
		sqlite3_finalize(s);
	}
	{
		struct campaign_target *ts = calloc(c->n ? c->n : 1, sizeof(*ts));

		if (!ts) {
			*status = 500;
			perr_set(err, -ENOMEM, "out of memory");
			return NULL;
		}
		campaign_plan(&c->c, ts, c->n, uv_now(&f->d->loop));
		for (size_t i = 0; i < c->n; i++)
			c->t[i].t = ts[i];
		free(ts);
	}
	if (sql_prepare(f, "INSERT INTO campaigns (name, release, version, counter, selector, canary_count, "
			   "canary_percent, max_parallel, failure_threshold, windows, state, canary_n, failures, reason) "
			   "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, 0, '')", &s) < 0) {
		*status = 500;
		perr_set(err, -EIO, "database error");
		return NULL;
	}
	sqlite3_bind_text(s, 1, c->name, -1, SQLITE_STATIC);
	sqlite3_bind_blob(s, 2, c->release, HASH_SIZE, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, c->version, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 4, (sqlite3_int64)c->counter);
	sqlite3_bind_text(s, 5, c->selector, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 6, c->c.p.canary_count);
	sqlite3_bind_int64(s, 7, c->c.p.canary_percent);
	sqlite3_bind_int64(s, 8, c->c.p.max_parallel);
	sqlite3_bind_int64(s, 9, c->c.p.failure_threshold);
	sqlite3_bind_text(s, 10, c->windows, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 11, c->c.canary_n);
	if (sql_done(f, s) < 0) {
		*status = 500;
		perr_set(err, -EIO, "database error");
		return NULL;
	}
	c->id = (uint64_t)sqlite3_last_insert_rowid(state_db(f->d->st));
	c->dirty = true;
	log_notice("campaign %" PRIu64 " (%s): %s to %zu device(s) matching '%s', canary %" PRIu32, c->id, c->name,
		   c->version, c->n, c->selector, c->c.canary_n);
	c->next = f->campaigns;
	f->campaigns = c;
	{
		struct fcampaign *mine = TAKE_PTR(c);

		/* devices already running it count as done at once */
		for (size_t i = 0; i < mine->n; i++) {
			struct msg m;
			_cleanup_(freep) uint8_t *buf = latest_report(f, mine->t[i].device, &m, NULL);
			struct campaign_obs o;

			if (!buf)
				continue;
			o = observe(mine, &m.report);
			campaign_observe(&mine->c, &mine->t[i].t, &o, "", uv_now(&f->d->loop));
		}
		campaign_step(f, mine);
		campaign_save(f, mine);
		*status = 201;
		return campaign_json(f, mine, true);
	}
}

json_t *fleet_campaign_act(struct fleet *f, uint64_t id, const char *action, int *status, struct perr *err)
{
	struct fcampaign *c = campaign_find(f, id);
	int k;

	if (!c) {
		*status = 404;
		perr_set(err, -ENOENT, "no campaign %" PRIu64, id);
		return NULL;
	}
	if (!strcmp(action, "pause")) {
		k = campaign_pause(&c->c, "paused by the operator");
	} else if (!strcmp(action, "resume")) {
		k = campaign_resume(&c->c);
	} else if (!strcmp(action, "abort")) {
		size_t *out = calloc(c->n ? c->n : 1, sizeof(*out)), n = 0;
		struct campaign_target *ts = calloc(c->n ? c->n : 1, sizeof(*ts));

		if (!out || !ts) {
			free(out);
			free(ts);
			*status = 500;
			perr_set(err, -ENOMEM, "out of memory");
			return NULL;
		}
		for (size_t i = 0; i < c->n; i++)
			ts[i] = c->t[i].t;
		k = campaign_abort(&c->c, ts, c->n, uv_now(&f->d->loop), out, c->n, &n);
		for (size_t i = 0; k == 0 && i < c->n; i++)
			c->t[i].t = ts[i];
		for (size_t i = 0; k == 0 && i < n; i++)
			send_command(f, c, c->t[out[i]].device, COMMAND_CANCEL);
		free(out);
		free(ts);
	} else {
		*status = 404;
		perr_set(err, -EINVAL, "unknown action '%s': pause, resume or abort", action);
		return NULL;
	}
	if (k < 0) {
		*status = 409;
		perr_set(err, k, "campaign %" PRIu64 " is %s: cannot %s it", id, campaign_state_name(c->c.state), action);
		return NULL;
	}
	log_notice("campaign %" PRIu64 " (%s): %s by the operator", id, c->name, campaign_state_name(c->c.state));
	c->dirty = true;
	campaign_step(f, c);
	campaign_save(f, c);
	*status = 200;
	return campaign_json(f, c, true);
}

json_t *fleet_releases_json(struct fleet *f)
{
	sqlite3_stmt *s;
	json_t *a = json_array();

	if (sql_prepare(f, "SELECT id, product, version, counter, state FROM releases ORDER BY counter DESC", &s) < 0)
		return a;
	while (sqlite3_step(s) == SQLITE_ROW) {
		static const char *const names[] = { "fetching", "complete", "seeding", "refused", "replaced" };
		char id[2 * HASH_SIZE + 1];
		int st = sqlite3_column_int(s, 4);

		if (sqlite3_column_bytes(s, 0) != HASH_SIZE)
			continue;
		json_array_append_new(a, json_pack("{s:s, s:s, s:s, s:I, s:s}", "id",
						   hex(sqlite3_column_blob(s, 0), HASH_SIZE, id), "product",
						   (const char *)sqlite3_column_text(s, 1), "version",
						   (const char *)sqlite3_column_text(s, 2), "counter",
						   (json_int_t)sqlite3_column_int64(s, 3), "state",
						   st >= 0 && st < 4 ? names[st] : "unknown"));
	}
	sqlite3_finalize(s);
	return a;
}

/* ================= metrics ================= */

static void label_escape(struct wbuf *w, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\\' || s[i] == '"')
			wbuf_u8(w, '\\');
		if (s[i] == '\n') {
			wbuf_put(w, "\\n", 2);
			continue;
		}
		wbuf_u8(w, (uint8_t)s[i]);
	}
}

static void printw(struct wbuf *w, const char *fmt, ...) _printf_(2, 3);
static void printw(struct wbuf *w, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n > 0)
		wbuf_put(w, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
}

char *fleet_metrics(struct fleet *f)
{
	struct wbuf w = { 0 };
	json_t *devs = fleet_devices_json(f), *d, *by_state = json_object(), *by_version = json_object();
	uint64_t rx_gw = 0, rx_peers = 0;
	size_t i, n_online = 0;
	const char *key;
	json_t *v;

	json_array_foreach(devs, i, d) {
		const char *st = json_string_value(json_object_get(d, "state"));
		const char *ver = json_string_value(json_object_get(json_object_get(d, "installed"), "version"));
		json_t *rx = json_object_get(d, "received");
		bool on = json_is_true(json_object_get(d, "online"));
		char k[128];

		snprintf(k, sizeof(k), "%s\n%s", st ? st : "", on ? "true" : "false");
		json_object_set_new(by_state, k, json_integer(json_integer_value(json_object_get(by_state, k)) + 1));
		snprintf(k, sizeof(k), "%s", ver && *ver ? ver : "none");
		json_object_set_new(by_version, k, json_integer(json_integer_value(json_object_get(by_version, k)) + 1));
		rx_gw += (uint64_t)json_integer_value(json_object_get(rx, "gateway"));
		rx_peers += (uint64_t)json_integer_value(json_object_get(rx, "peers"));
		n_online += on;
	}
	printw(&w, "# HELP shoal_devices Devices known to the gateway, by reported state and whether online.\n"
		   "# TYPE shoal_devices gauge\n");
	json_object_foreach(by_state, key, v) {
		const char *nl = strchr(key, '\n');

		printw(&w, "shoal_devices{state=\"");
		label_escape(&w, key, (size_t)(nl - key));
		printw(&w, "\",online=\"%s\"} %" JSON_INTEGER_FORMAT "\n", nl + 1, json_integer_value(v));
	}
	printw(&w, "# HELP shoal_devices_online Devices that reported within offline_after.\n"
		   "# TYPE shoal_devices_online gauge\nshoal_devices_online %zu\n", n_online);
	printw(&w, "# HELP shoal_devices_by_version Devices by installed version.\n# TYPE shoal_devices_by_version gauge\n");
	json_object_foreach(by_version, key, v) {
		printw(&w, "shoal_devices_by_version{version=\"");
		label_escape(&w, key, strlen(key));
		printw(&w, "\"} %" JSON_INTEGER_FORMAT "\n", json_integer_value(v));
	}
	printw(&w, "# HELP shoal_fleet_received_bytes Chunk bytes the devices received, by source, as they last reported.\n"
		   "# TYPE shoal_fleet_received_bytes counter\n"
		   "shoal_fleet_received_bytes{source=\"gateway\"} %" PRIu64 "\n"
		   "shoal_fleet_received_bytes{source=\"peers\"} %" PRIu64 "\n", rx_gw, rx_peers);
	printw(&w, "# HELP shoal_gateway_sent_bytes Chunk bytes this gateway sent.\n# TYPE shoal_gateway_sent_bytes counter\n"
		   "shoal_gateway_sent_bytes %" PRIu64 "\n", state_counter_get(f->d->st, "tx"));
	printw(&w, "# HELP shoal_campaign_targets Devices of a campaign by phase and state.\n"
		   "# TYPE shoal_campaign_targets gauge\n");
	for (struct fcampaign *c = f->campaigns; c; c = c->next) {
		json_t *cj = campaign_json(f, c, false), *ph;
		size_t pi;

		json_array_foreach(json_object_get(cj, "phases"), pi, ph) {
			json_object_foreach(json_object_get(ph, "targets"), key, v) {
				printw(&w, "shoal_campaign_targets{campaign=\"%" PRIu64 "\",name=\"", c->id);
				label_escape(&w, c->name, strlen(c->name));
				printw(&w, "\",phase=\"%s\",state=\"%s\"} %" JSON_INTEGER_FORMAT "\n",
				       json_string_value(json_object_get(ph, "phase")), key, json_integer_value(v));
			}
		}
		json_decref(cj);
	}
	printw(&w, "# HELP shoal_campaign_running 1 while a campaign runs, 0 otherwise.\n# TYPE shoal_campaign_running gauge\n");
	for (struct fcampaign *c = f->campaigns; c; c = c->next)
		printw(&w, "shoal_campaign_running{campaign=\"%" PRIu64 "\",state=\"%s\"} %d\n", c->id,
		       campaign_state_name(c->c.state), c->c.state == CAMPAIGN_RUNNING);
	json_decref(devs);
	json_decref(by_state);
	json_decref(by_version);
	wbuf_u8(&w, 0);
	if (w.err) {
		wbuf_free(&w);
		return NULL;
	}
	return (char *)wbuf_steal(&w, &(size_t){ 0 });
}

/* ================= life cycle ================= */

static int campaigns_load(struct fleet *f, struct perr *err)
{
	sqlite3_stmt *s;
	struct fcampaign **tail = &f->campaigns;

	if (sql_prepare(f, "SELECT id, name, release, version, counter, selector, canary_count, canary_percent, "
			   "max_parallel, failure_threshold, windows, state, canary_n, failures, reason FROM campaigns "
			   "ORDER BY id DESC", &s) < 0)
		return perr_set(err, -EIO, "fleet: cannot read the campaigns");
	while (sqlite3_step(s) == SQLITE_ROW) {
		struct fcampaign *c = calloc(1, sizeof(*c));
		struct perr e = { "" };
		struct rel_find q = { 0 };
		char id[2 * HASH_SIZE + 1];

		if (!c)
			break;
		c->id = (uint64_t)sqlite3_column_int64(s, 0);
		snprintf(c->name, sizeof(c->name), "%s", sqlite3_column_text(s, 1));
		if (sqlite3_column_bytes(s, 2) == HASH_SIZE)
			memcpy(c->release, sqlite3_column_blob(s, 2), HASH_SIZE);
		snprintf(c->version, sizeof(c->version), "%s", sqlite3_column_text(s, 3));
		c->counter = (uint64_t)sqlite3_column_int64(s, 4);
		snprintf(c->selector, sizeof(c->selector), "%s", sqlite3_column_text(s, 5));
		c->c.p = (struct campaign_params){ .canary_count = (uint32_t)sqlite3_column_int64(s, 6),
						   .canary_percent = (uint32_t)sqlite3_column_int64(s, 7),
						   .max_parallel = (uint32_t)sqlite3_column_int64(s, 8),
						   .failure_threshold = (uint32_t)sqlite3_column_int64(s, 9),
						   .resend_ms = RESEND_MS };
		snprintf(c->windows, sizeof(c->windows), "%s", sqlite3_column_text(s, 10));
		c->c.state = (enum campaign_state)sqlite3_column_int(s, 11);
		c->c.canary_n = (uint32_t)sqlite3_column_int64(s, 12);
		c->c.failures = (uint32_t)sqlite3_column_int64(s, 13);
		snprintf(c->c.reason, sizeof(c->c.reason), "%s", sqlite3_column_text(s, 14));
		q.key = hex(c->release, HASH_SIZE, id);
		state_release_foreach(f->d->st, rel_find_cb, &q);
		snprintf(c->product, sizeof(c->product), "%s", q.n == 1 ? q.r.product : f->d->conf.product);
		if (selector_parse(c, &e) < 0 || parse_windows(c, &e) < 0)
			log_warn("campaign %" PRIu64 ": %s", c->id, e.msg);
		*tail = c;
		tail = &c->next;
	}
	sqlite3_finalize(s);
	for (struct fcampaign *c = f->campaigns; c; c = c->next) {
		if (sql_prepare(f, "SELECT device, phase, state FROM campaign_targets WHERE campaign = ?", &s) < 0)
			continue;
		sqlite3_bind_int64(s, 1, (sqlite3_int64)c->id);
		while (sqlite3_step(s) == SQLITE_ROW)
			if (sqlite3_column_bytes(s, 0) == PUBKEY_SIZE && add_target(c, sqlite3_column_blob(s, 0)) == 0) {
				c->t[c->n - 1].t.phase = (uint8_t)sqlite3_column_int(s, 1);
				c->t[c->n - 1].t.state = (uint8_t)sqlite3_column_int(s, 2);
				/* a COMMAND in flight before the restart is sent again
				 * if the device is still idle after resend_ms */
				c->t[c->n - 1].t.since_ms = uv_now(&f->d->loop);
			}
		sqlite3_finalize(s);
		if (campaign_open(c))
			log_notice("campaign %" PRIu64 " (%s): %s, %zu device(s), continues", c->id, c->name,
				   campaign_state_name(c->c.state), c->n);
	}
	return 0;
}

static void tick_cb(uv_timer_t *t)
{
	struct fleet *f = t->data;

	if (f->stopping)
		return;
	if (f->d->conf.role == ROLE_DEVICE) {
		command_tick(f);
		report_tick(f);
		return;
	}
	for (struct fcampaign *c = f->campaigns; c; c = c->next)
		campaign_step(f, c);
}

int fleet_new(struct daemon *d, struct fleet **ret, struct perr *err)
{
	struct fleet *f = calloc(1, sizeof(*f));
	int k = 0;

	if (!f)
		return perr_set(err, -ENOMEM, "out of memory");
	f->d = d;
	*ret = f;
	if (d->conf.tags && (k = fleet_tags_parse(d->conf.tags, f->tags, err)) < 0)
		return perr_prefix(err, k, "[daemon] tags: ");
	f->n_tags = d->conf.tags ? (size_t)k : 0;
	if (d->conf.role == ROLE_GATEWAY && (k = campaigns_load(f, err)) < 0)
		return k;
	uv_timer_init(&d->loop, &f->tick);
	f->tick.data = f;
	uv_timer_start(&f->tick, tick_cb, TICK_MS, TICK_MS);
	if (d->conf.role == ROLE_DEVICE)
		inventory_start(f);
	return 0;
}

void fleet_stop(struct fleet *f)
{
	if (!f || f->stopping)
		return;
	f->stopping = true;
	uv_timer_stop(&f->tick);
	for (struct fcampaign *c = f->campaigns; c; c = c->next)
		if (c->dirty)
			campaign_save(f, c);
}

void fleet_free(struct fleet *f)
{
	if (!f)
		return;
	while (f->campaigns) {
		struct fcampaign *c = f->campaigns;

		f->campaigns = c->next;
		campaign_free(c);
	}
	free(f->inv);
	free(f->last_sig);
	free(f->boot_report);
	free(f);
}
