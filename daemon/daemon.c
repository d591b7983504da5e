/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <jansson.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "daemon.h"
#include "device.h"
#include "discovery.h"
#include "fleetd.h"
#include "http.h"
#include "install.h"
#include "keys.h"
#include "log.h"
#include "netwatch.h"
#include "origin.h"
#include "swarm.h"

/* ---- control socket: one JSON request per line, one JSON reply per line ---- */

#define CONTROL_LINE_MAX 65536

struct control_client {
	uv_pipe_t pipe;
	struct daemon *d;
	char buf[CONTROL_LINE_MAX];
	size_t len;
};

static void client_close_cb(uv_handle_t *h)
{
	free(container_of((uv_pipe_t *)h, struct control_client, pipe));
}

static void write_done_cb(uv_write_t *w, int status)
{
	(void)status;
	free(w->data);
	free(w);
}

static void client_send(struct control_client *c, json_t *reply)
{
	char *text = json_dumps(reply, JSON_COMPACT);
	uv_write_t *w = malloc(sizeof(*w));
	size_t n;

	json_decref(reply);
	if (!text || !w) {
		free(text);
		free(w);
		return;
	}
	n = strlen(text);
	text[n] = '\n'; /* json_dumps leaves room for the NUL we replace */
	w->data = text;
	if (uv_write(w, (uv_stream_t *)&c->pipe, &(uv_buf_t){ .base = text, .len = n + 1 }, 1, write_done_cb) < 0)
		write_done_cb(w, 0);
}

static int add_release(void *ud, const struct state_release *r)
{
	static const char *names[] = { "fetching", "complete", "seeding", "refused", "replaced" };
	char hex[2 * HASH_SIZE + 1];

	json_array_append_new(ud, json_pack("{s:s, s:s, s:s, s:I, s:s}", "id", hex_encode(r->id, HASH_SIZE, hex),
					    "product", r->product, "version", r->version, "counter",
					    (json_int_t)r->counter, "state",
					    (unsigned)r->st < ELEMENTSOF(names) ? names[r->st] : "unknown"));
	return 0;
}

static int add_ban(void *ud, const struct state_ban *b)
{
	char id[17];
	uint64_t now = (uint64_t)time(NULL);

	json_array_append_new(ud, json_pack("{s:s, s:s, s:s, s:I, s:I, s:b}", "id", hex_encode(b->device, 8, id),
					    "address", b->address, "reason", b->reason, "since", (json_int_t)b->since_s,
					    "until", (json_int_t)b->until_s, "active", b->until_s > now));
	return 0;
}

/* Every peer this node ever banned (ended bans too: what a run did is
 * still there to see), from the state database. */
static json_t *bans_json(struct daemon *d)
{
	json_t *a = json_array();

	state_ban_foreach(d->st, add_ban, a);
	return a;
}

/* A byte counter as the database has it, plus what the swarm counted
 * since it last wrote it. */
static uint64_t counter(struct daemon *d, const char *name)
{
	return state_counter_get(d->st, name) + swarm_unsaved(d->swarm, name);
}

static json_t *status_json(struct daemon *d)
{
	char hex[2 * PUBKEY_SIZE + 1];
	json_t *rel = json_array(), *o;

	state_release_foreach(d->st, add_release, rel);
	o = json_pack("{s:b, s:s, s:s, s:s, s:s, s:i, s:I, s:o, s:{s:I, s:I, s:I, s:I}}", "ok", 1, "device_id",
		      hex_encode(d->device_pk, PUBKEY_SIZE, hex), "name", d->conf.name, "role",
		      d->conf.role == ROLE_GATEWAY ? "gateway" : "device", "product", d->conf.product, "port",
		      (int)d->port, "uptime_ms", (json_int_t)(uv_now(&d->loop) - d->started_ms), "releases", rel,
		      "bytes", "local", (json_int_t)state_counter_get(d->st, "rx_local"), "peers",
		      (json_int_t)counter(d, "rx_peers"), "gateway", (json_int_t)counter(d, "rx_seed"), "sent",
		      (json_int_t)counter(d, "tx"));
	if (o) {
		json_t *peers = swarm_peers_json(d->swarm);

		json_object_set_new(o, "peer_count", json_integer((json_int_t)json_array_size(peers)));
		json_decref(peers);
		json_object_set_new(o, "fetch", swarm_fetch_json(d->swarm));
		json_object_set_new(o, "banned", bans_json(d));
		if (d->conf.role == ROLE_DEVICE)
			json_object_set_new(o, "forward_cache", swarm_cache_json(d->swarm));
		if (d->dev)
			json_object_set_new(o, "device", device_status_json(d));
		if (d->origin)
			json_object_set_new(o, "origins", origin_json(d->origin));
		json_object_set_new(json_object_get(o, "bytes"), "origin",
				    json_integer((json_int_t)state_counter_get(d->st, "rx_origin")));
	}
	return o;
}

/* The fleet's requests: {"cmd": "devices"}, {"cmd": "device", "id": ID},
 * {"cmd": "campaigns"}, {"cmd": "campaign", "id": N},
 * {"cmd": "campaign-create", ...fields of POST /api/v1/campaigns},
 * {"cmd": "campaign-pause" | "campaign-resume" | "campaign-abort", "id": N}.
 * NULL: not a fleet command. */
static json_t *fleet_control(struct daemon *d, const char *cmd, json_t *req)
{
	struct perr err = { "" };
	int status = 200;
	json_t *r = NULL;
	const char *key = NULL;
	uint64_t id = (uint64_t)json_integer_value(json_object_get(req, "id"));

	if (strcmp(cmd, "devices") && strcmp(cmd, "device") && strcmp(cmd, "campaigns") && strncmp(cmd, "campaign", 8))
		return NULL;
	if (d->conf.role != ROLE_GATEWAY)
		return json_pack("{s:b, s:s}", "ok", 0, "error", "only a gateway keeps devices and campaigns");
	if (!strcmp(cmd, "devices"))
		return json_pack("{s:b, s:o}", "ok", 1, "devices", fleet_devices_json(d->fleet));
	if (!strcmp(cmd, "campaigns"))
		return json_pack("{s:b, s:o}", "ok", 1, "campaigns", fleet_campaigns_json(d->fleet));
	if (!strcmp(cmd, "device")) {
		if (!(key = json_string_value(json_object_get(req, "id"))))
			return json_pack("{s:b, s:s}", "ok", 0, "error", "\"id\" (a device id or name) is required");
		r = fleet_device_json(d->fleet, key, &status, &err);
	} else if (!strcmp(cmd, "campaign-create")) {
		r = fleet_campaign_create(d->fleet, req, &status, &err);
	} else if (!strcmp(cmd, "campaign")) {
		r = fleet_campaign_json(d->fleet, id, &status, &err);
	} else if (!strncmp(cmd, "campaign-", 9)) {
		r = fleet_campaign_act(d->fleet, id, cmd + 9, &status, &err);
	} else {
		return NULL;
	}
	if (!r)
		return json_pack("{s:b, s:s}", "ok", 0, "error", err.msg);
	return json_pack("{s:b, s:o}", "ok", 1, !strcmp(cmd, "device") ? "device" : "campaign", r);
}

/* {"cmd": "import", "path": P}: a gateway seeds the release directory or
 * bundle at P from now on (`shoal publish`); its signatures are checked
 * first, as for [gateway] import. */
static json_t *import_json(struct daemon *d, const char *path)
{
	struct perr err = { "" };

	if (d->conf.role != ROLE_GATEWAY)
		return json_pack("{s:b, s:s}", "ok", 0, "error", "only a gateway publishes releases");
	if (!path || path[0] != '/')
		return json_pack("{s:b, s:s}", "ok", 0, "error", "\"path\" (an absolute path) is required");
	if (swarm_import(d->swarm, path, &err) < 0)
		return json_pack("{s:b, s:s}", "ok", 0, "error", err.msg);
	return json_pack("{s:b}", "ok", 1);
}

static json_t *error_json(int k, const struct perr *err)
{
	return json_pack("{s:b, s:s, s:i}", "ok", 0, "error", err->msg, "errno", -k);
}

/* "reboot": "now" | "none" | absent (the policy) */
static int reboot_field(json_t *req, int *ret, struct perr *err)
{
	json_t *v = json_object_get(req, "reboot");
	const char *s = json_string_value(v);

	*ret = -1;
	if (!v || json_is_null(v))
		return 0;
	if (s && !strcmp(s, "now"))
		*ret = REBOOT_NOW;
	else if (s && !strcmp(s, "none"))
		*ret = REBOOT_NONE;
	else
		return perr_set(err, -EINVAL, "\"reboot\" is \"now\" or \"none\"");
	return 0;
}

/* {"cmd": "install", "path": P, "reboot": R}: installs the release
 * directory or bundle at P (`shoal install PATH`); the reply has the id
 * that {"cmd": "install-progress", "id": N} follows. */
static json_t *install_path_json(struct daemon *d, json_t *req)
{
	const char *path = json_string_value(json_object_get(req, "path"));
	struct perr err = { "" };
	json_t *reply = NULL;
	int reboot, k;

	if (!path || path[0] != '/')
		return json_pack("{s:b, s:s, s:i}", "ok", 0, "error", "\"path\" (an absolute path) is required", "errno",
				 EINVAL);
	if ((k = reboot_field(req, &reboot, &err)) < 0 || (k = device_install_path(d, path, reboot, &reply, &err)) < 0)
		return error_json(k, &err);
	return reply;
}

/* {"cmd": "mark-good" | "mark-bad" | "rollback", "reboot": R} */
static json_t *judge_json(struct daemon *d, const char *cmd, json_t *req)
{
	struct boot_check_result r;
	struct perr err = { "" };
	int reboot, k;

	if ((k = reboot_field(req, &reboot, &err)) < 0 || (k = device_judge(d, cmd, reboot, &r, &err)) < 0)
		return error_json(k, &err);
	return json_pack("{s:b, s:s, s:s, s:I, s:s, s:s, s:b}", "ok", 1, "outcome", boot_check_outcome_name(r.outcome),
			 "version", r.version, "counter", (json_int_t)r.counter, "booted", device_slot_name(d, r.booted),
			 "report", r.report, "rebooting", device_rebooting(d));
}

static json_t *handle_request(struct daemon *d, const char *line)
{
	json_error_t jerr;
	json_t *req = json_loads(line, 0, &jerr), *reply;
	const char *cmd;

	if (!req || !json_is_object(req) || !(cmd = json_string_value(json_object_get(req, "cmd")))) {
		json_decref(req);
		return json_pack("{s:b, s:s}", "ok", 0, "error", "request must be a JSON object with \"cmd\"");
	}
	if (!strcmp(cmd, "status"))
		reply = status_json(d);
	else if (!strcmp(cmd, "releases")) {
		json_t *rel = json_array();

		state_release_foreach(d->st, add_release, rel);
		reply = json_pack("{s:b, s:o}", "ok", 1, "releases", rel);
	} else if (!strcmp(cmd, "install") && json_object_get(req, "path")) {
		reply = install_path_json(d, req);
	} else if (!strcmp(cmd, "install-progress")) {
		reply = device_install_progress(d, (uint64_t)json_integer_value(json_object_get(req, "id")));
	} else if (!strcmp(cmd, "mark-good") || !strcmp(cmd, "mark-bad") || !strcmp(cmd, "rollback")) {
		reply = judge_json(d, cmd, req);
	} else if (!strcmp(cmd, "install") || !strcmp(cmd, "reboot")) {
		struct perr err = { "" };
		int k = !strcmp(cmd, "install") ? device_install_fetched(d, &err) : device_reboot_now(d, &err);

		reply = k < 0 ? error_json(k, &err) : json_pack("{s:b}", "ok", 1);
	} else if (!strcmp(cmd, "peers"))
		reply = json_pack("{s:b, s:o, s:o}", "ok", 1, "peers", swarm_peers_json(d->swarm), "banned", bans_json(d));
	else if (!strcmp(cmd, "import"))
		reply = import_json(d, json_string_value(json_object_get(req, "path")));
	else if (!(reply = fleet_control(d, cmd, req)))
		reply = json_pack("{s:b, s:s+}", "ok", 0, "error", "unknown command: ", cmd);
	json_decref(req);
	return reply;
}

static void client_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct control_client *c = container_of((uv_pipe_t *)h, struct control_client, pipe);

	(void)hint;
	buf->base = c->buf + c->len;
	buf->len = sizeof(c->buf) - c->len;
}

static void client_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct control_client *c = container_of((uv_pipe_t *)s, struct control_client, pipe);
	char *nl;

	(void)buf;
	if (n < 0) {
		uv_close((uv_handle_t *)s, client_close_cb);
		return;
	}
	c->len += (size_t)n;
	while ((nl = memchr(c->buf, '\n', c->len))) {
		*nl = '\0';
		client_send(c, handle_request(c->d, c->buf));
		c->len -= (size_t)(nl + 1 - c->buf);
		memmove(c->buf, nl + 1, c->len);
	}
	if (c->len == sizeof(c->buf)) {
		log_warn("control: request longer than %d bytes, closing", CONTROL_LINE_MAX);
		uv_close((uv_handle_t *)s, client_close_cb);
	}
}

static void control_conn_cb(uv_stream_t *server, int status)
{
	struct daemon *d = container_of((uv_pipe_t *)server, struct daemon, control);
	struct control_client *c;

	if (status < 0)
		return;
	c = calloc(1, sizeof(*c));
	if (!c)
		return;
	c->d = d;
	uv_pipe_init(&d->loop, &c->pipe, 0);
	c->pipe.data = (void *)client_close_cb;
	if (uv_accept(server, (uv_stream_t *)&c->pipe) < 0 ||
	    uv_read_start((uv_stream_t *)&c->pipe, client_alloc_cb, client_read_cb) < 0)
		uv_close((uv_handle_t *)&c->pipe, client_close_cb);
}

/* ---- listener ---- */

static void peer_conn_cb(uv_stream_t *server, int status)
{
	struct daemon *d = container_of((uv_tcp_t *)server, struct daemon, listener);

	if (status < 0) {
		log_warn("accepting a connection: %s", uv_strerror(status));
		return;
	}
	swarm_accept(d->swarm, server);
}

static int listen_tcp(struct daemon *d, struct perr *err)
{
	struct sockaddr_storage ss;
	int namelen = sizeof(ss), k;

	uv_tcp_init(&d->loop, &d->listener);
	if (uv_ip4_addr(d->conf.listen_address, d->conf.listen_port, (struct sockaddr_in *)&ss) < 0 &&
	    uv_ip6_addr(d->conf.listen_address, d->conf.listen_port, (struct sockaddr_in6 *)&ss) < 0)
		return perr_set(err, -EINVAL, "listen_address '%s' is not an IP address", d->conf.listen_address);
	if ((k = uv_tcp_bind(&d->listener, (struct sockaddr *)&ss, 0)) < 0 ||
	    (k = uv_listen((uv_stream_t *)&d->listener, 64, peer_conn_cb)) < 0)
		return perr_set(err, k, "listening on %s:%u: %s", d->conf.listen_address, d->conf.listen_port,
				uv_strerror(k));
	uv_tcp_getsockname(&d->listener, (struct sockaddr *)&ss, &namelen);
	d->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
						 : ((struct sockaddr_in *)&ss)->sin_port);
	return 0;
}

static int listen_control(struct daemon *d, struct perr *err)
{
	const char *path = d->conf.control_socket;
	char dir[512], *slash;
	int k;

	snprintf(dir, sizeof(dir), "%s", path);
	if ((slash = strrchr(dir, '/')) && slash != dir) {
		*slash = '\0';
		mkdir(dir, 0755);
	}
	unlink(path); /* a stale socket from a killed daemon */
	uv_pipe_init(&d->loop, &d->control, 0);
	d->control_open = true;
	if ((k = uv_pipe_bind(&d->control, path)) < 0 || (k = uv_listen((uv_stream_t *)&d->control, 16, control_conn_cb)) < 0)
		return perr_set(err, k, "control socket %s: %s", path, uv_strerror(k));
	chmod(path, 0660);
	return 0;
}

/* ---- life cycle ---- */

/* Handles that own memory say so through h->data = their close callback. */
static void close_walk_cb(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, h->type == UV_NAMED_PIPE && h->data ? (uv_close_cb)h->data : NULL);
}

static void link_up_cb(void *ud, const char *ifname, uint64_t down_ms)
{
	struct daemon *d = ud;

	swarm_link_up(d->swarm, ifname, down_ms);
}

static void signal_cb(uv_signal_t *s, int signum)
{
	struct daemon *d = s->data;

	if (d->stopping)
		return;
	d->stopping = true;
#ifdef HAVE_SYSTEMD
	sd_notify(0, "STOPPING=1");
#endif
	log_notice("received %s, shutting down", signum == SIGTERM ? "SIGTERM" : "SIGINT");
	unlink(d->conf.control_socket);
	fleet_stop(d->fleet);
	http_stop(d->http);
	swarm_stop(d->swarm);
	netwatch_stop(d->netwatch); /* frees it once the loop closes its handle */
	d->netwatch = NULL;
	origin_stop(d->origin);
	device_stop(d);
	discovery_stop(d->disc); /* closes its handles with their own callbacks */
	uv_walk(&d->loop, close_walk_cb, NULL);
}

int daemon_init(struct daemon *d, struct perr *err)
{
	char id[17];
	int k;

	log_set_level(d->conf.log_level);
	if ((k = uv_loop_init(&d->loop)) < 0)
		return perr_set(err, k, "event loop: %s", uv_strerror(k));
	d->loop_ready = true;
	/* with a system config, the boot check runs before anything joins the
	 * swarm; the installer's database is ours (on a connection of our own) */
	if ((k = d->conf.system_conf ? device_open(d, err) : state_open(d->conf.state_dir, &d->st, err)) < 0)
		return k;
	if ((k = device_key_load(d->conf.state_dir, &d->device_sk, d->device_pk, err)) < 0 ||
	    (k = fleet_key_load(d->conf.fleet_secret_file, &d->fleet_key, err)) < 0 ||
	    (k = listen_tcp(d, err)) < 0 || (k = listen_control(d, err)) < 0 ||
	    (k = swarm_new(d, &d->swarm, err)) < 0 || (k = origin_new(d, &d->origin, err)) < 0 ||
	    (k = discovery_new(d, &d->disc, err)) < 0 || (k = fleet_new(d, &d->fleet, err)) < 0 ||
	    (k = http_new(d, &d->http, err)) < 0)
		return k;
	d->netwatch = netwatch_new(&d->loop, link_up_cb, d);
	device_start(d);
	uv_signal_init(&d->loop, &d->sigterm);
	uv_signal_init(&d->loop, &d->sigint);
	d->sigterm.data = d->sigint.data = d;
	uv_signal_start(&d->sigterm, signal_cb, SIGTERM);
	uv_signal_start(&d->sigint, signal_cb, SIGINT);
	signal(SIGPIPE, SIG_IGN);
	d->started_ms = uv_now(&d->loop);
	log_notice("shoald %s: device %s (%s) for product %s, listening on port %u, control %s",
		   d->conf.role == ROLE_GATEWAY ? "gateway" : "device", key_short_id(d->device_pk, id), d->conf.name,
		   d->conf.product, d->port, d->conf.control_socket);
	return 0;
}

#ifdef HAVE_SYSTEMD
static void watchdog_cb(uv_timer_t *t)
{
	(void)t;
	sd_notify(0, "WATCHDOG=1");
}
#endif

/* Under systemd (Type=notify): ready once listening, and a watchdog ping
 * from the loop itself, so a wedged loop gets the daemon restarted. */
static void notify_ready(struct daemon *d)
{
#ifdef HAVE_SYSTEMD
	uint64_t usec = 0;

	sd_notifyf(0, "READY=1\nSTATUS=%s on port %u", d->conf.role == ROLE_GATEWAY ? "gateway" : "device", d->port);
	if (sd_watchdog_enabled(0, &usec) > 0 && usec >= 2000) {
		uv_timer_init(&d->loop, &d->watchdog);
		uv_timer_start(&d->watchdog, watchdog_cb, usec / 2000, usec / 2000);
	}
#else
	(void)d;
#endif
}

int daemon_thread_background(void)
{
	struct rlimit rl;
	int old;

	errno = 0;
	old = getpriority(PRIO_PROCESS, (id_t)gettid()); /* Linux: a thread's own nice value */
	if (old == -1 && errno)
		return INT_MIN;
	/* only when the old value can be had back: a pool thread left at 19
	 * would run the next install's hooks there too */
	if (geteuid() != 0 && (getrlimit(RLIMIT_NICE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY ||
			       20 - (long)rl.rlim_cur > old))
		return INT_MIN;
	if (setpriority(PRIO_PROCESS, (id_t)gettid(), 19) < 0) {
		log_debug("cannot lower a worker thread's priority: %s", strerror(errno));
		return INT_MIN;
	}
	return old;
}

void daemon_thread_foreground(int old)
{
	if (old != INT_MIN && setpriority(PRIO_PROCESS, (id_t)gettid(), old) < 0)
		log_warn("a worker thread stays at nice 19: %s", strerror(errno));
}

int daemon_run(struct daemon *d)
{
	notify_ready(d);
	return uv_run(&d->loop, UV_RUN_DEFAULT);
}

void daemon_deinit(struct daemon *d)
{
	if (d->loop_ready) {
		fleet_stop(d->fleet);
		http_stop(d->http);
		swarm_stop(d->swarm);
		netwatch_stop(d->netwatch); /* frees it once the loop closes its handle */
		d->netwatch = NULL;
		origin_stop(d->origin);
		device_stop(d);
		discovery_stop(d->disc);
		uv_walk(&d->loop, close_walk_cb, NULL);
		uv_run(&d->loop, UV_RUN_DEFAULT);
		uv_loop_close(&d->loop);
	}
	http_free(d->http);
	fleet_free(d->fleet);
	discovery_free(d->disc);
	origin_free(d->origin);
	swarm_free(d->swarm);
	device_free(d->dev); /* and with it the installer's connection */
	state_close(d->st);
	sodium_free(d->device_sk);
	sodium_free(d->fleet_key);
	conf_deinit(&d->conf);
}
