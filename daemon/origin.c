/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <sodium.h>
#include <zstd.h>

#include "chunk.h"
#include "config.h"
#include "fileio.h"
#include "log.h"
#include "ratelimit.h"
#include "origin.h"
#include "release.h"
#include "store.h"
#include "swarm.h"
#include "wire.h"

#define ORIGIN_MAX 8              /* [gateway] origin entries (conf list is bounded anyway) */
#define RETRY_FIRST_MS 5000u      /* after a failure, retry soon, then back off */
#define CONNECT_TIMEOUT_S 20L
#define LOW_SPEED_S 60L           /* abort a transfer that moves < 1 byte/s for this long */

enum phase {
	PH_IDLE = 0,
	PH_MANIFEST,
	PH_KEYRING,
	PH_CHUNKS,
};

struct source {
	struct origin *o;
	char *url; /* with a trailing '/' */
	enum phase phase;
	uv_timer_t poll;
	uint64_t retry_ms;
	/* the import in progress */
	uint8_t *mbytes, *kbytes;
	size_t mlen, klen;
	struct manifest *m;
	struct keyring *kr;
	uint8_t rel_id[HASH_SIZE];
	uint32_t *todo; /* chunk indexes still to fetch (unique ids) */
	size_t n_todo, next_todo;
	unsigned inflight;
	bool failed;
	/* what the last import did (origin_json) */
	char last_error[256];
	char last_version[MANIFEST_VERSION_MAX + 1];
	uint64_t chunks_fetched, bytes_fetched, chunks_reused, chunks_corrupt;
	uint64_t bytes_counted; /* of bytes_fetched, already in the "rx_origin" counter */
	uint64_t last_ok_s;
};

struct xfer {
	struct xfer *next, *prev;
	struct source *src;
	CURL *e;
	char *url;
	uint8_t *buf;
	size_t len, cap, max;
	uint32_t chunk; /* PH_CHUNKS: manifest index */
	bool too_big;
};

struct sock {
	uv_poll_t poll;
	struct origin *o;
	curl_socket_t fd;
	struct sock *next;
};

struct origin {
	struct daemon *d;
	CURLM *multi;
	uv_timer_t timer;
	uv_timer_t rate_timer; /* [gateway] origin_rate: the next start */
	struct tbucket rate;
	struct sock *socks;
	struct xfer *xfers; /* in the multi handle */
	struct source src[ORIGIN_MAX];
	size_t n_src;
	char *chunks_dir, *releases_dir;
	ZSTD_DCtx *dctx;
	uint8_t *plain; /* WIRE_CHUNK_MAX bytes for verifying */
	unsigned max_inflight;
	bool stopping;
};

static void source_next(struct source *s);
static void chunks_pump(struct source *s);
static void source_schedule(struct source *s, uint64_t ms);

/* ---- libcurl on the libuv loop ---- */

static void check_done(struct origin *o);

static void sock_close_cb(uv_handle_t *h)
{
	free(container_of((uv_poll_t *)h, struct sock, poll));
}

static void sock_forget(struct origin *o, struct sock *s)
{
	for (struct sock **pp = &o->socks; *pp; pp = &(*pp)->next)
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	uv_close((uv_handle_t *)&s->poll, sock_close_cb);
}

static void poll_cb(uv_poll_t *h, int status, int events)
{
	struct sock *s = container_of(h, struct sock, poll);
	struct origin *o = s->o;
	int flags = 0, running;

	if (status < 0)
		flags = CURL_CSELECT_ERR;
	if (events & UV_READABLE)
		flags |= CURL_CSELECT_IN;
	if (events & UV_WRITABLE)
		flags |= CURL_CSELECT_OUT;
	curl_multi_socket_action(o->multi, s->fd, flags, &running);
	check_done(o);
}

static int socket_fn(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct origin *o = userp;
	struct sock *s = socketp;
	int ev = 0;

	(void)e;
	if (what == CURL_POLL_REMOVE) {
		if (s) {
			curl_multi_assign(o->multi, fd, NULL);
			sock_forget(o, s);
		}
		return 0;
	}
	if (!s) {
		s = calloc(1, sizeof(*s));
		if (!s)
			return -1;
		if (uv_poll_init_socket(&o->d->loop, &s->poll, fd) < 0) {
			free(s);
			return -1;
		}
		s->o = o;
		s->fd = fd;
		s->next = o->socks;
		o->socks = s;
		curl_multi_assign(o->multi, fd, s);
	}
	if (what & CURL_POLL_IN)
		ev |= UV_READABLE;
	if (what & CURL_POLL_OUT)
		ev |= UV_WRITABLE;
	uv_poll_start(&s->poll, ev, poll_cb);
	return 0;
}

static void timeout_cb(uv_timer_t *t)
{
	struct origin *o = t->data;
	int running;

	curl_multi_socket_action(o->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_done(o);
}

static int timer_fn(CURLM *multi, long timeout_ms, void *userp)
{
	struct origin *o = userp;

	(void)multi;
	if (o->stopping)
		return 0;
	if (timeout_ms < 0)
		uv_timer_stop(&o->timer);
	else
		uv_timer_start(&o->timer, timeout_cb, (uint64_t)timeout_ms, 0);
	return 0;
}

static size_t write_fn(char *p, size_t size, size_t n, void *ud)
{
	struct xfer *x = ud;
	size_t len = size * n;

	if (len > x->max - x->len) {
		x->too_big = true;
		return 0; /* libcurl aborts the transfer */
	}
	if (x->len + len > x->cap) {
		size_t cap = x->cap ? x->cap : 64u << 10;
		uint8_t *b;

		while (cap < x->len + len)
			cap *= 2;
		if (cap > x->max)
			cap = x->max;
		if (!(b = realloc(x->buf, cap)))
			return 0;
		x->buf = b;
		x->cap = cap;
	}
	memcpy(x->buf + x->len, p, len);
	x->len += len;
	return len;
}

static void xfer_free(struct xfer *x)
{
	if (!x)
		return;
	if (x->prev)
		x->prev->next = x->next;
	else if (x->src && x->src->o->xfers == x)
		x->src->o->xfers = x->next;
	if (x->next)
		x->next->prev = x->prev;
	if (x->e)
		curl_easy_cleanup(x->e);
	free(x->url);
	free(x->buf);
	free(x);
}

/* Starts GET src->url + path; its end arrives in xfer_done. */
static int xfer_start(struct source *s, const char *path, size_t max, uint32_t chunk)
{
	struct origin *o = s->o;
	struct xfer *x = calloc(1, sizeof(*x));
	uint64_t rate = o->d->conf.origin_rate;

	if (!x)
		return -ENOMEM;
	if (asprintf(&x->url, "%s%s", s->url, path) < 0) {
		free(x);
		return -ENOMEM;
	}
	if (!(x->e = curl_easy_init())) {
		xfer_free(x);
		return -ENOMEM;
	}
	x->src = s;
	x->max = max;
	x->chunk = chunk;
	curl_easy_setopt(x->e, CURLOPT_URL, x->url);
	curl_easy_setopt(x->e, CURLOPT_PRIVATE, x);
	curl_easy_setopt(x->e, CURLOPT_WRITEFUNCTION, write_fn);
	curl_easy_setopt(x->e, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(x->e, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(x->e, CURLOPT_MAXREDIRS, 5L);
	curl_easy_setopt(x->e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(x->e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(x->e, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_S);
	curl_easy_setopt(x->e, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(x->e, CURLOPT_LOW_SPEED_TIME, LOW_SPEED_S);
	curl_easy_setopt(x->e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(x->e, CURLOPT_USERAGENT, "shoald/" SHOAL_VERSION);
	if (o->d->conf.origin_ca_file)
		curl_easy_setopt(x->e, CURLOPT_CAINFO, o->d->conf.origin_ca_file);
	if (rate) /* one transfer alone stays under the limit too */
		curl_easy_setopt(x->e, CURLOPT_MAX_RECV_SPEED_LARGE, (curl_off_t)rate);
	if (curl_multi_add_handle(o->multi, x->e) != CURLM_OK) {
		xfer_free(x);
		return -ENOMEM;
	}
	x->next = o->xfers;
	if (o->xfers)
		o->xfers->prev = x;
	o->xfers = x;
	s->inflight++;
	return 0;
}

/* ---- one import ---- */

static void source_reset(struct source *s)
{
	free(s->mbytes);
	free(s->kbytes);
	manifest_free(s->m);
	keyring_free(s->kr);
	free(s->todo);
	s->mbytes = s->kbytes = NULL;
	s->m = NULL;
	s->kr = NULL;
	s->todo = NULL;
	s->mlen = s->klen = s->n_todo = s->next_todo = 0;
	s->failed = false;
	s->phase = PH_IDLE;
}

static void source_fail(struct source *s, const char *fmt, ...) _printf_(2, 3);
static void source_fail(struct source *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->last_error, sizeof(s->last_error), fmt, ap);
	va_end(ap);
	log_err("origin %s: %s", s->url, s->last_error);
	s->failed = true;
}

static void source_end(struct source *s);
#define source_abort(s, ...) \
	do { \
		source_fail(s, __VA_ARGS__); \
		source_end(s); \
	} while (0)

/* The import ended (well or not): wait for the in-flight transfers, then
 * schedule the next poll. */
static void source_end(struct source *s)
{
	uint64_t next = s->o->d->conf.origin_interval_ms;

	if (s->inflight)
		return;
	if (s->bytes_fetched > s->bytes_counted) {
		state_counter_add(s->o->d->st, "rx_origin", s->bytes_fetched - s->bytes_counted);
		s->bytes_counted = s->bytes_fetched;
	}
	if (s->failed) {
		next = s->retry_ms < next ? s->retry_ms : next;
		s->retry_ms = s->retry_ms * 2 < s->o->d->conf.origin_interval_ms ? s->retry_ms * 2
										      : s->o->d->conf.origin_interval_ms;
	} else {
		s->retry_ms = RETRY_FIRST_MS;
	}
	source_reset(s);
	source_schedule(s, next);
}

static int id_cmp(const void *a, const void *b, void *ud)
{
	const struct manifest *m = ud;

	return memcmp(m->chunks[*(const uint32_t *)a].id, m->chunks[*(const uint32_t *)b].id, HASH_SIZE);
}

/* Writes STORE/releases/<id>/ once every chunk is in the store: manifest
 * and keyring atomically, the chunks link, then the directory itself is
 * synced; only then is the release seeded. */
static int publish(struct source *s, struct perr *err)
{
	struct origin *o = s->o;
	char hex[2 * HASH_SIZE + 1], *dir = NULL, *p = NULL;
	int k;

	hex_encode(s->rel_id, HASH_SIZE, hex);
	if ((k = store_sync(o->chunks_dir, err)) < 0)
		return k;
	if (asprintf(&dir, "%s/%s", o->releases_dir, hex) < 0)
		return perr_set(err, -ENOMEM, "out of memory");
	if (mkdir_p(dir, 0755) < 0) {
		k = perr_set(err, -errno, "%s: %s", dir, strerror(errno));
		goto out;
	}
	if (asprintf(&p, "%s/" RELEASE_CHUNKS, dir) < 0) {
		k = perr_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	if (symlink("../../chunks", p) < 0 && errno != EEXIST) {
		k = perr_set(err, -errno, "%s: %s", p, strerror(errno));
		goto out;
	}
	free(p);
	p = NULL;
	if (s->kbytes) {
		if (asprintf(&p, "%s/" RELEASE_KEYRING, dir) < 0) {
			k = perr_set(err, -ENOMEM, "out of memory");
			goto out;
		}
		if ((k = write_file_atomic(p, s->kbytes, s->klen, 0644, err)) < 0)
			goto out;
		free(p);
		p = NULL;
	}
	if (asprintf(&p, "%s/" RELEASE_MANIFEST, dir) < 0) {
		k = perr_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	/* the manifest last: a directory without it is not a release */
	if ((k = write_file_atomic(p, s->mbytes, s->mlen, 0644, err)) < 0)
		goto out;
	k = swarm_import(o->d->swarm, dir, err);
out:
	free(p);
	free(dir);
	return k;
}

static void rate_timer_cb(uv_timer_t *t)
{
	struct origin *o = t->data;

	for (size_t i = 0; i < o->n_src; i++)
		if (o->src[i].phase == PH_CHUNKS)
			chunks_pump(&o->src[i]);
}

/* origin_rate: chunks are charged when they arrive (their stored size is
 * only known then); while the charges are a debt, no transfer starts. */
static bool rate_allows(struct origin *o)
{
	uint64_t now = uv_now(&o->d->loop), wait = tbucket_delay_ms(&o->rate, 1, now);

	if (!wait)
		return true;
	if (!uv_is_active((uv_handle_t *)&o->rate_timer))
		uv_timer_start(&o->rate_timer, rate_timer_cb, wait, 0);
	return false;
}

static void chunks_pump(struct source *s)
{
	struct origin *o = s->o;
	char path[sizeof(RELEASE_CHUNKS) + 4 + 2 * HASH_SIZE + sizeof(STORE_SUFFIX) + 1];

	while (!s->failed && !o->stopping && s->inflight < o->max_inflight && s->next_todo < s->n_todo &&
	       rate_allows(o)) {
		uint32_t i = s->todo[s->next_todo++];

		store_chunk_path(RELEASE_CHUNKS, s->m->chunks[i].id, path, sizeof(path));
		if (xfer_start(s, path, chunk_stored_max(), i) < 0) {
			source_fail(s, "out of memory");
			break;
		}
	}
	if (s->failed || (s->next_todo == s->n_todo && !s->inflight)) {
		struct perr err = { "" };

		if (!s->failed && publish(s, &err) < 0)
			source_fail(s, "release %s: %s", s->m->version, err.msg);
		else if (!s->failed) {
			s->last_ok_s = (uint64_t)time(NULL);
			s->last_error[0] = '\0';
			log_notice("origin %s: imported %s %s (counter %" PRIu64 "): %" PRIu64 " chunks (%" PRIu64
				   " bytes) fetched, %" PRIu64 " already in the store",
				   s->url, s->m->product, s->m->version, s->m->counter, s->chunks_fetched,
				   s->bytes_fetched, s->chunks_reused);
		}
		source_end(s);
	}
}

/* The manifest and keyring are in: check them before fetching a chunk. */
static void begin_chunks(struct source *s)
{
	struct origin *o = s->o;
	struct perr err = { "" };
	uint32_t *ord;

	if (manifest_parse(s->mbytes, s->mlen, &s->m, &err) < 0) {
		source_abort(s, RELEASE_MANIFEST ": %s", err.msg);
		return;
	}
	if (s->kbytes && keyring_parse(s->kbytes, s->klen, &s->kr, &err) < 0) {
		source_abort(s, RELEASE_KEYRING ": %s", err.msg);
		return;
	}
	crypto_generichash(s->rel_id, HASH_SIZE, s->mbytes, s->mlen, NULL, 0);
	snprintf(s->last_version, sizeof(s->last_version), "%s", s->m->version);
	if (swarm_holds(o->d->swarm, s->rel_id)) {
		log_debug("origin %s: %s already seeded", s->url, s->m->version);
		source_end(s);
		return;
	}
	if (swarm_check_release(o->d->swarm, s->m, s->kr, &err) < 0) {
		source_abort(s, "release %s refused: %s", s->m->version, err.msg);
		return;
	}
	log_info("origin %s: release %s %s (counter %" PRIu64 ", %zu chunks) is new; fetching what the store lacks",
		 s->url, s->m->product, s->m->version, s->m->counter, s->m->n_chunks);

	/* each id once, and only those the store lacks */
	ord = malloc((s->m->n_chunks ? s->m->n_chunks : 1) * sizeof(*ord));
	if (!ord)
		{
		source_abort(s, "out of memory");
		return;
	}
	for (uint32_t i = 0; i < s->m->n_chunks; i++)
		ord[i] = i;
	qsort_r(ord, s->m->n_chunks, sizeof(*ord), id_cmp, s->m);
	s->chunks_fetched = s->bytes_fetched = s->bytes_counted = s->chunks_reused = s->chunks_corrupt = 0;
	for (size_t i = 0; i < s->m->n_chunks; i++) {
		const uint8_t *id = s->m->chunks[ord[i]].id;

		if (i && !memcmp(id, s->m->chunks[ord[i - 1]].id, HASH_SIZE))
			continue;
		if (store_has(o->chunks_dir, id))
			s->chunks_reused++;
		else
			ord[s->n_todo++] = ord[i];
	}
	s->todo = ord;
	s->phase = PH_CHUNKS;
	chunks_pump(s);
}

/* A stored chunk from the origin: decoded and checked against its id
 * before it enters the store. */
static void chunk_arrived(struct source *s, struct xfer *x)
{
	struct origin *o = s->o;
	const struct manifest_chunk *c = &s->m->chunks[x->chunk];
	struct perr err = { "" };
	char hex[2 * HASH_SIZE + 1];

	hex_encode(c->id, HASH_SIZE, hex);
	if (chunk_decode(o->dctx, CHUNK_ENC_ZSTD, x->buf, x->len, c->id, c->len, o->plain, &err) < 0) {
		s->chunks_corrupt++;
		source_fail(s, "chunk %s from %s is corrupt, refused: %s", hex, x->url, err.msg);
		return;
	}
	if (store_put(o->chunks_dir, c->id, x->buf, x->len, &err) < 0) {
		source_fail(s, "store: %s", err.msg);
		return;
	}
	s->chunks_fetched++;
	s->bytes_fetched += x->len;
	tbucket_charge(&o->rate, x->len, uv_now(&o->d->loop));
}

static void xfer_done(struct origin *o, struct xfer *x, CURLcode res)
{
	struct source *s = x->src;
	long status = 0;

	curl_multi_remove_handle(o->multi, x->e);
	s->inflight--;
	curl_easy_getinfo(x->e, CURLINFO_RESPONSE_CODE, &status);
	if (o->stopping) {
		xfer_free(x);
		return;
	}
	if (x->too_big)
		source_fail(s, "%s: larger than %zu bytes, refused", x->url, x->max);
	else if (res != CURLE_OK)
		source_fail(s, "%s: %s", x->url, curl_easy_strerror(res));
	else if (status == 404 && s->phase == PH_KEYRING)
		; /* a release may rely on the keyring the gateway has */
	else if (status != 200)
		source_fail(s, "%s: HTTP %ld", x->url, status);
	else if (s->phase == PH_MANIFEST) {
		s->mbytes = TAKE_PTR(x->buf);
		s->mlen = x->len;
	} else if (s->phase == PH_KEYRING) {
		s->kbytes = TAKE_PTR(x->buf);
		s->klen = x->len;
	} else if (s->phase == PH_CHUNKS)
		chunk_arrived(s, x);
	xfer_free(x);

	if (s->failed && s->phase != PH_CHUNKS) {
		source_end(s);
		return;
	}
	switch (s->phase) {
	case PH_MANIFEST:
		s->phase = PH_KEYRING;
		if (xfer_start(s, RELEASE_KEYRING, KEYRING_MAX_SIZE, 0) < 0)
			source_abort(s, "out of memory");
		break;
	case PH_KEYRING:
		begin_chunks(s);
		break;
	case PH_CHUNKS:
		chunks_pump(s);
		break;
	case PH_IDLE:
		break;
	}
}

static void check_done(struct origin *o)
{
	CURLMsg *msg;
	int left;

	while ((msg = curl_multi_info_read(o->multi, &left)))
		if (msg->msg == CURLMSG_DONE) {
			struct xfer *x = NULL;

			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
			xfer_done(o, x, msg->data.result);
		}
}

static void source_next(struct source *s)
{
	if (s->phase != PH_IDLE || s->o->stopping)
		return;
	log_debug("origin %s: polling", s->url);
	s->phase = PH_MANIFEST;
	if (xfer_start(s, RELEASE_MANIFEST, MANIFEST_MAX_SIZE, 0) < 0)
		source_abort(s, "out of memory");
}

static void poll_timer_cb(uv_timer_t *t)
{
	source_next(t->data);
}

static void source_schedule(struct source *s, uint64_t ms)
{
	if (!s->o->stopping)
		uv_timer_start(&s->poll, poll_timer_cb, ms, 0);
}

/* ---- the store ---- */

/* Seeds every complete release already in STORE/releases (a directory
 * whose manifest.shoal is there). A broken one is named and skipped. */
static void seed_store(struct origin *o)
{
	DIR *dir = opendir(o->releases_dir);
	struct dirent *de;

	if (!dir)
		return;
	while ((de = readdir(dir))) {
		struct perr err = { "" };
		uint8_t id[HASH_SIZE];
		char *path;

		if (strlen(de->d_name) != 2 * HASH_SIZE || hex_decode(de->d_name, HASH_SIZE, id) < 0)
			continue;
		if (swarm_holds(o->d->swarm, id) || asprintf(&path, "%s/%s", o->releases_dir, de->d_name) < 0)
			continue;
		if (swarm_import(o->d->swarm, path, &err) < 0)
			log_err("store: cannot seed %s: %s", path, err.msg);
		free(path);
	}
	closedir(dir);
}

int origin_new(struct daemon *d, struct origin **ret, struct perr *err)
{
	struct conf *c = &d->conf;
	struct origin *o;

	*ret = NULL;
	if (c->role != ROLE_GATEWAY)
		return 0;
	if (c->origin.n > ORIGIN_MAX)
		return perr_set(err, -EINVAL, "[gateway] origin: at most %d origins", ORIGIN_MAX);
	o = calloc(1, sizeof(*o));
	if (!o)
		return perr_set(err, -ENOMEM, "out of memory");
	*ret = o;
	o->d = d;
	o->max_inflight = c->origin_connections;
	if (asprintf(&o->chunks_dir, "%s/chunks", c->store_dir) < 0 ||
	    asprintf(&o->releases_dir, "%s/releases", c->store_dir) < 0) {
		o->chunks_dir = o->releases_dir = NULL;
		return perr_set(err, -ENOMEM, "out of memory");
	}
	if (mkdir_p(o->chunks_dir, 0755) < 0 || mkdir_p(o->releases_dir, 0755) < 0)
		return perr_set(err, -errno, "[gateway] store_dir %s: %s", c->store_dir, strerror(errno));
	seed_store(o);
	if (!c->origin.n)
		return 0;

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || !(o->multi = curl_multi_init()))
		return perr_set(err, -ENOMEM, "libcurl: cannot initialise");
	o->dctx = ZSTD_createDCtx();
	o->plain = malloc(WIRE_CHUNK_MAX);
	if (!o->dctx || !o->plain)
		return perr_set(err, -ENOMEM, "out of memory");
	curl_multi_setopt(o->multi, CURLMOPT_SOCKETFUNCTION, socket_fn);
	curl_multi_setopt(o->multi, CURLMOPT_SOCKETDATA, o);
	curl_multi_setopt(o->multi, CURLMOPT_TIMERFUNCTION, timer_fn);
	curl_multi_setopt(o->multi, CURLMOPT_TIMERDATA, o);
	curl_multi_setopt(o->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)o->max_inflight);
	uv_timer_init(&d->loop, &o->timer);
	o->timer.data = o;
	uv_timer_init(&d->loop, &o->rate_timer);
	o->rate_timer.data = o;
	if (tbucket_init(&o->rate, c->origin_rate, c->origin_rate / 5 > (256u << 10) ? c->origin_rate / 5 : 256u << 10,
			 uv_now(&d->loop)) < 0)
		return perr_set(err, -EINVAL, "[gateway] origin_rate is too large");
	for (size_t i = 0; i < c->origin.n; i++) {
		struct source *s = &o->src[o->n_src];
		size_t n = strlen(c->origin.v[i]);

		s->o = o;
		if (asprintf(&s->url, "%s%s", c->origin.v[i], n && c->origin.v[i][n - 1] == '/' ? "" : "/") < 0)
			return perr_set(err, -ENOMEM, "out of memory");
		s->retry_ms = RETRY_FIRST_MS;
		uv_timer_init(&d->loop, &s->poll);
		s->poll.data = s;
		o->n_src++;
		source_schedule(s, 0);
		log_info("origin %s: polled every %" PRIu64 " s", s->url, c->origin_interval_ms / 1000);
	}
	return 0;
}

void origin_stop(struct origin *o)
{
	if (!o || o->stopping)
		return;
	o->stopping = true;
	if (o->multi) {
		while (o->xfers) {
			curl_multi_remove_handle(o->multi, o->xfers->e);
			xfer_free(o->xfers);
		}
		/* closing the cached connections calls socket_fn: the loop
		 * must still be there */
		curl_multi_cleanup(o->multi);
		o->multi = NULL;
		curl_global_cleanup();
		uv_close((uv_handle_t *)&o->timer, NULL);
		uv_close((uv_handle_t *)&o->rate_timer, NULL);
	}
	while (o->socks)
		sock_forget(o, o->socks);
	for (size_t i = 0; i < o->n_src; i++)
		uv_close((uv_handle_t *)&o->src[i].poll, NULL);
}

void origin_free(struct origin *o)
{
	if (!o)
		return;
	for (size_t i = 0; i < o->n_src; i++) {
		source_reset(&o->src[i]);
		free(o->src[i].url);
	}
	if (o->multi) { /* never stopped: no loop ran */
		curl_multi_cleanup(o->multi);
		curl_global_cleanup();
	}
	ZSTD_freeDCtx(o->dctx);
	free(o->plain);
	free(o->chunks_dir);
	free(o->releases_dir);
	free(o);
}

json_t *origin_json(struct origin *o)
{
	json_t *a = json_array();

	for (size_t i = 0; o && a && i < o->n_src; i++) {
		struct source *s = &o->src[i];
		static const char *const names[] = { "idle", "manifest", "keyring", "chunks" };

		json_array_append_new(a, json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "url",
						   s->url, "phase", names[s->phase], "version", s->last_version,
						   "last_error", s->last_error, "chunks_fetched",
						   (json_int_t)s->chunks_fetched, "bytes_fetched",
						   (json_int_t)s->bytes_fetched, "chunks_reused",
						   (json_int_t)s->chunks_reused, "chunks_corrupt",
						   (json_int_t)s->chunks_corrupt, "chunks_todo",
						   (json_int_t)(s->n_todo - s->next_todo), "inflight",
						   (json_int_t)s->inflight, "last_ok", (json_int_t)s->last_ok_s));
	}
	return a;
}
