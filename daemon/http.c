/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <jansson.h>
#include <microhttpd.h>
#include <sodium.h>
#include <stdio.h>

#include "conf.h"
#include "daemon.h"
#include "dashboard.h" /* dashboard_html: daemon/dashboard/index.html, generated */
#include "fileio.h"
#include "fleetd.h"
#include "http.h"
#include "log.h"

#define BODY_MAX (64u * 1024)
#define TOKEN_MIN 16u

struct http {
	struct daemon *d;
	struct MHD_Daemon *mhd;
	uv_poll_t poll;
	uv_timer_t timer;
	bool poll_open, stopping;
	char *token;
	size_t token_len;
};

struct body {
	char *p;
	size_t len;
	bool too_big;
};

static void drive(struct http *h);

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *type, char *text)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	if (!text)
		return MHD_NO;
	r = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(text);
		return MHD_NO;
	}
	MHD_add_response_header(r, "Content-Type", type);
	MHD_add_response_header(r, "Cache-Control", "no-store");
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	if (status == MHD_HTTP_UNAUTHORIZED)
		MHD_add_response_header(r, "WWW-Authenticate", "Bearer realm=\"shoal\"");
	ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result reply_json(struct MHD_Connection *c, unsigned status, json_t *o)
{
	char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;

	json_decref(o);
	return reply(c, status, "application/json", text);
}

static enum MHD_Result reply_error(struct MHD_Connection *c, unsigned status, const char *msg)
{
	return reply_json(c, status, json_pack("{s:s}", "error", msg));
}

static bool authorized(struct http *h, struct MHD_Connection *c)
{
	const char *a = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);

	if (!a || strncmp(a, "Bearer ", 7))
		return false;
	a += 7;
	return strlen(a) == h->token_len && sodium_memcmp(a, h->token, h->token_len) == 0;
}

/* "/api/v1/campaigns/12/pause" -> 12 and "pause". */
static bool campaign_path(const char *rest, uint64_t *id, const char **action)
{
	char *end;

	if (*rest < '1' || *rest > '9')
		return false;
	errno = 0;
	*id = strtoull(rest, &end, 10);
	if (errno)
		return false;
	if (!*end) {
		*action = NULL;
		return true;
	}
	if (*end != '/' || !end[1] || strchr(end + 1, '/'))
		return false;
	*action = end + 1;
	return true;
}

static enum MHD_Result api(struct http *h, struct MHD_Connection *c, const char *method, const char *url,
			   struct body *b)
{
	struct fleet *f = h->d->fleet;
	struct perr err = { "" };
	int status = 200;
	bool get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
	json_t *r = NULL;
	const char *wrap = NULL, *action;
	uint64_t id;

	if (!strcmp(url, "/api/v1/devices")) {
		if (!get)
			return reply_error(c, 405, "GET only");
		return reply_json(c, 200, json_pack("{s:o}", "devices", fleet_devices_json(f)));
	}
	if (!strncmp(url, "/api/v1/devices/", 16)) {
		if (!get)
			return reply_error(c, 405, "GET only");
		r = fleet_device_json(f, url + 16, &status, &err);
		wrap = "device";
	} else if (!strcmp(url, "/api/v1/releases")) {
		if (!get)
			return reply_error(c, 405, "GET only");
		return reply_json(c, 200, json_pack("{s:o}", "releases", fleet_releases_json(f)));
	} else if (!strcmp(url, "/api/v1/campaigns")) {
		json_error_t jerr;
		json_t *req;

		if (get)
			return reply_json(c, 200, json_pack("{s:o}", "campaigns", fleet_campaigns_json(f)));
		if (!post)
			return reply_error(c, 405, "GET or POST");
		if (b->too_big)
			return reply_error(c, 413, "the request body is larger than 64 KiB");
		req = json_loadb(b->p ? b->p : "", b->len, JSON_REJECT_DUPLICATES, &jerr);
		if (!req) {
			char msg[256];

			snprintf(msg, sizeof(msg), "malformed JSON at line %d, column %d: %s", jerr.line, jerr.column,
				 jerr.text);
			return reply_error(c, 400, msg);
		}
		if (json_object_get(req, "cmd")) {
			json_decref(req);
			return reply_error(c, 400, "unknown field \"cmd\"");
		}
		r = fleet_campaign_create(f, req, &status, &err);
		json_decref(req);
		wrap = "campaign";
	} else if (!strncmp(url, "/api/v1/campaigns/", 18) && campaign_path(url + 18, &id, &action)) {
		if (!action && !get)
			return reply_error(c, 405, "GET only");
		if (action && !post)
			return reply_error(c, 405, "POST only");
		r = action ? fleet_campaign_act(f, id, action, &status, &err) : fleet_campaign_json(f, id, &status, &err);
		wrap = "campaign";
	} else {
		return reply_error(c, 404, "no such endpoint");
	}
	if (!r)
		return reply_error(c, (unsigned)status, err.msg);
	return reply_json(c, (unsigned)status, json_pack("{s:o}", wrap, r));
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
			       const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
	struct http *h = cls;
	struct body *b = *con_cls;

	(void)version;
	if (!b) {
		/* the first call: headers only */
		if (!(b = calloc(1, sizeof(*b))))
			return MHD_NO;
		*con_cls = b;
		return MHD_YES;
	}
	if (*upload_size) {
		if (b->len + *upload_size > BODY_MAX) {
			b->too_big = true;
		} else {
			char *p = realloc(b->p, b->len + *upload_size + 1);

			if (!p)
				return MHD_NO;
			memcpy(p + b->len, upload, *upload_size);
			b->p = p;
			b->len += *upload_size;
		}
		*upload_size = 0;
		return MHD_YES;
	}
	if (!strcmp(url, "/") || !strcmp(url, "/index.html")) {
		if (strcmp(method, "GET") && strcmp(method, "HEAD"))
			return reply_error(c, 405, "GET only");
		return reply(c, 200, "text/html; charset=utf-8", strdup(dashboard_html));
	}
	if (strcmp(url, "/metrics") && strncmp(url, "/api/", 5))
		return reply_error(c, 404, "no such page");
	/* the token guards the data: the API and the metrics (device names, tags) */
	if (!authorized(h, c))
		return reply_error(c, 401, "missing or wrong token: send \"Authorization: Bearer TOKEN\"");
	if (!strcmp(url, "/metrics")) {
		if (strcmp(method, "GET"))
			return reply_error(c, 405, "GET only");
		return reply(c, 200, "text/plain; version=0.0.4", fleet_metrics(h->d->fleet));
	}
	return api(h, c, method, url, b);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	struct body *b = *con_cls;

	(void)cls;
	(void)c;
	(void)toe;
	if (b) {
		free(b->p);
		free(b);
		*con_cls = NULL;
	}
}

static void timer_cb(uv_timer_t *t)
{
	drive(t->data);
}

static void poll_cb(uv_poll_t *p, int status, int events)
{
	(void)status;
	(void)events;
	drive(p->data);
}

/* Runs MHD for what is ready, then sleeps until its next timeout (a
 * connection's idle limit) or until the epoll descriptor wakes the loop. */
static void drive(struct http *h)
{
	MHD_UNSIGNED_LONG_LONG ms;

	if (h->stopping)
		return;
	MHD_run(h->mhd);
	if (MHD_get_timeout(h->mhd, &ms) == MHD_YES)
		uv_timer_start(&h->timer, timer_cb, ms, 0);
	else
		uv_timer_stop(&h->timer);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char buf[256];

	(void)cls;
	vsnprintf(buf, sizeof(buf), fmt, ap);
	buf[strcspn(buf, "\n")] = '\0';
	log_warn("http: %s", buf);
}

static int read_token(struct http *h, const char *path, struct perr *err)
{
	uint8_t *p = NULL;
	size_t n = 0;
	int k = read_file(path, 4096, &p, &n, err);

	if (k < 0)
		return perr_prefix(err, k, "[gateway] http_token_file: ");
	while (n && (p[n - 1] == '\n' || p[n - 1] == '\r' || p[n - 1] == ' '))
		n--;
	if (n < TOKEN_MIN || memchr(p, '\n', n) || !text_is_clean((char *)p, n) || memchr(p, ' ', n)) {
		sodium_memzero(p, n);
		free(p);
		return perr_set(err, -EINVAL, "[gateway] http_token_file %s: the token must be one line of at least %u "
				"characters without spaces", path, TOKEN_MIN);
	}
	h->token = sodium_malloc(n + 1);
	if (!h->token) {
		free(p);
		return perr_set(err, -ENOMEM, "out of memory");
	}
	memcpy(h->token, p, n);
	h->token[n] = '\0';
	h->token_len = n;
	sodium_memzero(p, n);
	free(p);
	return 0;
}

int http_new(struct daemon *d, struct http **ret, struct perr *err)
{
	struct sockaddr_in sa;
	const union MHD_DaemonInfo *info;
	struct http *h;
	int k;

	*ret = NULL;
	if (!d->conf.http_listen)
		return 0;
	if (conf_parse_hostport(d->conf.http_listen, &sa) < 0)
		return perr_set(err, -EINVAL, "[gateway] http_listen '%s' is not IPv4-ADDRESS:PORT", d->conf.http_listen);
	if (!(h = calloc(1, sizeof(*h))))
		return perr_set(err, -ENOMEM, "out of memory");
	h->d = d;
	*ret = h;
	uv_timer_init(&d->loop, &h->timer);
	h->timer.data = h;
	if ((k = read_token(h, d->conf.http_token_file, err)) < 0)
		return k;
	/* no thread of its own: MHD_USE_EPOLL gives one descriptor for the loop */
	h->mhd = MHD_start_daemon(MHD_USE_EPOLL | MHD_USE_ERROR_LOG, ntohs(sa.sin_port), NULL, NULL, handler, h,
				  MHD_OPTION_EXTERNAL_LOGGER, mhd_log, h, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
				  MHD_OPTION_NOTIFY_COMPLETED, completed, h, MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
				  MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30, MHD_OPTION_END);
	if (!h->mhd)
		return perr_set(err, -EADDRINUSE, "[gateway] http_listen %s: cannot listen there (in use?)",
				d->conf.http_listen);
	info = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_EPOLL_FD);
	if (!info)
		return perr_set(err, -EIO, "http: libmicrohttpd has no epoll descriptor");
	if ((k = uv_poll_init(&d->loop, &h->poll, info->epoll_fd)) < 0)
		return perr_set(err, k, "http: %s", uv_strerror(k));
	h->poll_open = true;
	h->poll.data = h;
	uv_poll_start(&h->poll, UV_READABLE, poll_cb);
	log_notice("http: API, dashboard and /metrics on http://%s/", d->conf.http_listen);
	return 0;
}

void http_stop(struct http *h)
{
	if (!h || h->stopping)
		return;
	h->stopping = true;
	if (h->poll_open)
		uv_poll_stop(&h->poll);
	uv_timer_stop(&h->timer);
}

void http_free(struct http *h)
{
	if (!h)
		return;
	if (h->mhd)
		MHD_stop_daemon(h->mhd);
	if (h->token)
		sodium_free(h->token);
	free(h);
}
