/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <libgen.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sodium.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chunk.h"
#include "daemon.h"
#include "device.h"
#include "fileio.h"
#include "fleetd.h"
#include "keyfile.h"
#include "log.h"
#include "release.h"
#include "reuse.h"
#include "ratelimit.h"
#include "scheduler.h"
#include "session.h"
#include "store.h"
#include "swarm.h"
#include "trust.h"
#include "wire.h"

#define TICK_MS 200
#define SYNC_EVERY_MS 1000
/* Chunks verified within this long go out in one HAVE to every peer: a
 * HAVE per chunk cost every device N frames (each sealed, written and
 * woken for) per chunk, which at 16 devices was most of its CPU. */
#define HAVE_DELAY_MS 20
#define DIAL_RETRY_MS 2000
#define LINK_OUTAGE_MS 1000 /* a carrier lost this long: silent connections are dropped when it is back */
#define LINK_REDIAL_MS 5000 /* after the carrier is back, a failed dial is tried again at the next tick */
/* Chunks are handed to a peer's socket just in time: a new one only when
 * less than SERVE_AHEAD bytes wait in our queue and the kernel holds at
 * most NOTSENT_LOWAT unsent bytes (TCP_NOTSENT_LOWAT). Which chunk to send
 * is decided as late as possible, with the freshest HAVEs, and a request
 * never waits seconds behind a full socket buffer. */
#define SERVE_AHEAD (128u << 10)
#define NOTSENT_LOWAT (128u << 10)
#define UPQ_MAX 1024u                /* requests queued per peer */
/* A chunk that just went out to one peer is served to others only after
 * this long, when anything else is asked for: the first receiver announces
 * it and the others fetch it there (the seed uploads it about once). A
 * gateway answers such a request NOT_FOUND ("later"; the device asks a
 * peer, or the gateway again after a while) while the receiver is
 * connected. */
#define RECENT_MS 3000u
/* A device forwards chunks the way they came (compressed): the chunks its
 * peers ask for are mostly the ones it just received. The cache holds the
 * newest ones up to this many bytes; a miss is compressed again. */
#define ZCACHE_BYTES (8u << 20)
#define ZCACHE_MAX 512u
#define ZSTD_SERVE_LEVEL 1

/* A release this node can serve: imported (gateway: chunks from a release
 * directory or bundle) or fetched (device: chunks from the target file,
 * those whose bit is set). */
struct held {
	struct held *next;
	uint8_t id[HASH_SIZE];
	struct manifest *m;
	uint8_t *mbytes;
	size_t mlen;
	struct release *src; /* gateway */
	int fd;              /* device: the target or a slot, -1 otherwise */
	int slot;            /* the installer's slot fd reads, -1 otherwise */
	uint8_t *have;       /* NULL: every chunk */
	uint32_t n_have;
	uint32_t *order;     /* chunk indexes sorted by id */
	uint64_t *sent_ms;   /* when each chunk last went out (0: never) */
	uint64_t *sent_to;   /* to whom (peer key) */
};

struct fetch {
	struct held *h;
	struct sched *sched;
	uint32_t *same_as;
	uint32_t *pending; /* written, not yet synced and recorded */
	size_t n_pending, cap_pending;
	uint8_t *buf;
	ZSTD_DCtx *dctx;
	uint64_t last_sync_ms;
	uint64_t started_ms;
	uint32_t announce[WIRE_HAVE_MAX]; /* verified since the last HAVE */
	size_t n_announce;
	bool verifying; /* complete: the target is read back off the loop */
	bool reusing;   /* local reuse runs off the loop: no requests, no writes here */
	bool syncing;   /* a periodic fdatasync runs off the loop (sync_work) */
	bool complete_after_sync; /* completion waits for it */
	char abort_why[128]; /* swarm_fetch_abort while reusing: done when it ends */
};

struct dialer {
	struct sockaddr_in addr;
	char text[64];
	struct peer *p;
	uint64_t next_try_ms;
	bool dynamic; /* learnt at run time; removed when it goes away */
	bool gone;
};

struct peer {
	struct peer *next;
	struct swarm *sw;
	uv_tcp_t tcp;
	uv_connect_t conn;
	struct session *s;
	struct dialer *dialer;
	bool initiator, established, closing, is_seed;
	uint8_t pub[PUBKEY_SIZE];
	char id[17];
	char addr[64];
	char name[WIRE_NAME_MAX + 1];
	char product[WIRE_PRODUCT_MAX + 1];
	uint16_t port;
	bool in_sched;
	uint32_t sp;
	bool sent_bitfield; /* ours for bitfield_id: HAVEs for it follow */
	uint8_t bitfield_id[HASH_SIZE];
	bool asked_keyring;
	/* a manifest being received */
	uint8_t mid[HASH_SIZE];
	uint8_t *mbuf;
	uint32_t mtotal, mgot;
	struct release_info rel[WIRE_RELEASES_MAX];
	uint16_t n_rel;
	size_t backlog;
	uint64_t rx_bytes, tx_bytes;
	uint64_t last_rx_ms; /* when bytes last came in (uv_now) */
	bool reset_on_close; /* dead across a link outage: RST, not a FIN behind stuck data */
	uint8_t (*upq)[HASH_SIZE]; /* requests to serve, a ring of UPQ_MAX */
	size_t upq_head, upq_n;
	bool wants_slot;
	struct tbucket up;
};

struct zcache_entry {
	uint8_t id[HASH_SIZE];
	uint8_t *data; /* one zstd frame */
	size_t len;
};

/* A ring of the newest compressed chunks (insertion order = eviction
 * order). */
struct zcache {
	struct zcache_entry e[ZCACHE_MAX];
	size_t head, n, bytes;
};

struct swarm {
	struct daemon *d;
	uint64_t link_back_ms; /* when a carrier last came back (0: never) */
	struct zcache zc;
	ZSTD_CCtx *cctx; /* a device compressing a chunk the cache misses */
	uint64_t zc_hits, zc_misses;
	struct peer *peers;
	struct held *held;
	struct fetch *fetch;
	struct keyring *keyring; /* the newest accepted */
	uint8_t *keyring_bytes;
	size_t keyring_len;
	struct trust_roots roots;
	uint8_t (*root_keys)[PUBKEY_SIZE];
	struct dialer *dialers;
	size_t n_dialers, cap_dialers;
	uv_timer_t tick, serve_timer, have_timer;
	uint8_t rbuf[256 << 10]; /* every peer's reads: consumed before the next */
	struct tbucket up_all, down_all;
	struct upslots slots;
	bool stopping;
	bool fault_corrupt;
	/* byte counters not yet in the database: written once a second, not
	 * once a chunk */
	uint64_t pending_rx_peers, pending_rx_seed, pending_tx;
	uint64_t last_counters_ms;
	uint8_t refused[16][HASH_SIZE]; /* releases refused this run: not asked for again */
	size_t n_refused;
};

static void peer_close(struct peer *p, const char *why);
static void pump(struct swarm *sw);
static void serve_pump(struct swarm *sw);
static void release_slot(struct swarm *sw, struct peer *p);

/* A bucket holds a fifth of a second of its rate, and at least one chunk. */
static uint64_t burst_for(uint64_t rate)
{
	return rate / 5 > (256u << 10) ? rate / 5 : (256u << 10);
}

static uint64_t now_s(void)
{
	return (uint64_t)time(NULL);
}

static char *hex16(const uint8_t *id, char out[17])
{
	return hex_encode(id, 8, out);
}

/* ---- releases held ---- */

static const struct manifest_chunk *chunk_of(const struct held *h, uint32_t i)
{
	return &h->m->chunks[i];
}

static int order_cmp(const void *a, const void *b, void *ud)
{
	const struct held *h = ud;

	return memcmp(chunk_of(h, *(const uint32_t *)a)->id, chunk_of(h, *(const uint32_t *)b)->id, HASH_SIZE);
}

/* First position in h->order whose id is >= id. */
static size_t order_find(const struct held *h, const uint8_t id[HASH_SIZE])
{
	size_t lo = 0, hi = h->m->n_chunks;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (memcmp(chunk_of(h, h->order[mid])->id, id, HASH_SIZE) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static bool held_has(const struct held *h, uint32_t i)
{
	return !h->have || (h->have[i / 8] >> (i % 8) & 1);
}

static void held_free(struct held *h)
{
	if (!h)
		return;
	manifest_free(h->m);
	free(h->mbytes);
	release_close(h->src);
	if (h->fd >= 0)
		close(h->fd);
	free(h->have);
	free(h->order);
	free(h->sent_ms);
	free(h->sent_to);
	free(h);
}

/* Takes mbytes (malloc'ed) and m. */
static struct held *held_new(struct manifest *m, uint8_t *mbytes, size_t mlen)
{
	struct held *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	h->fd = -1;
	h->slot = -1;
	h->m = m;
	h->mbytes = mbytes;
	h->mlen = mlen;
	crypto_generichash(h->id, HASH_SIZE, mbytes, mlen, NULL, 0);
	h->order = malloc(m->n_chunks * sizeof(*h->order));
	h->sent_ms = calloc(m->n_chunks, sizeof(*h->sent_ms));
	h->sent_to = calloc(m->n_chunks, sizeof(*h->sent_to));
	if (!h->order || !h->sent_ms || !h->sent_to) {
		h->m = NULL;
		h->mbytes = NULL;
		held_free(h);
		return NULL;
	}
	for (uint32_t i = 0; i < m->n_chunks; i++)
		h->order[i] = i;
	qsort_r(h->order, m->n_chunks, sizeof(*h->order), order_cmp, h);
	return h;
}

static struct held *held_find(struct swarm *sw, const uint8_t id[HASH_SIZE])
{
	for (struct held *h = sw->held; h; h = h->next)
		if (!memcmp(h->id, id, HASH_SIZE))
			return h;
	return NULL;
}

/* Reads chunk i of h in its stored form for sending: zstd from a store,
 * whatever the bundle holds, plain from a device's target. */
static void zcache_drop_oldest(struct zcache *zc)
{
	struct zcache_entry *e = &zc->e[zc->head];

	zc->bytes -= e->len;
	free(e->data);
	e->data = NULL;
	zc->head = (zc->head + 1) % ZCACHE_MAX;
	zc->n--;
}

/* Keeps a copy of one stored (zstd) chunk; the oldest go first. */
static void zcache_put(struct zcache *zc, const uint8_t id[HASH_SIZE], const uint8_t *data, size_t len)
{
	struct zcache_entry *e;
	uint8_t *copy;

	if (len > ZCACHE_BYTES / 4 || !(copy = malloc(len)))
		return;
	memcpy(copy, data, len);
	while (zc->n && (zc->n == ZCACHE_MAX || zc->bytes + len > ZCACHE_BYTES))
		zcache_drop_oldest(zc);
	e = &zc->e[(zc->head + zc->n) % ZCACHE_MAX];
	memcpy(e->id, id, HASH_SIZE);
	e->data = copy;
	e->len = len;
	zc->bytes += len;
	zc->n++;
}

/* Newest first: a chunk cached twice is found by its latest copy. */
static const struct zcache_entry *zcache_get(const struct zcache *zc, const uint8_t id[HASH_SIZE])
{
	for (size_t i = zc->n; i-- > 0;) {
		const struct zcache_entry *e = &zc->e[(zc->head + i) % ZCACHE_MAX];

		if (!memcmp(e->id, id, HASH_SIZE))
			return e;
	}
	return NULL;
}

static void zcache_clear(struct zcache *zc)
{
	while (zc->n)
		zcache_drop_oldest(zc);
}

/* A chunk of a device's image: from the cache of compressed chunks, or
 * read and compressed again (and cached: the next peer wants it too);
 * plain when compressing does not pay. */
static int device_read(struct swarm *sw, struct held *h, const struct manifest_chunk *c, struct msg *out,
		       uint8_t **buf, struct perr *err)
{
	const struct zcache_entry *z = zcache_get(&sw->zc, c->id);
	uint8_t *zbuf;
	size_t zlen;
	int k;

	if (z) {
		sw->zc_hits++;
		if (!(*buf = malloc(z->len)))
			return -ENOMEM;
		memcpy(*buf, z->data, z->len);
		out->chunk.enc = CHUNK_ENC_ZSTD;
		out->chunk.stored = *buf;
		out->chunk.stored_len = z->len;
		return 0;
	}
	sw->zc_misses++;
	if (!(*buf = malloc(c->len)))
		return -ENOMEM;
	if ((k = pread_full(h->fd, *buf, c->len, (off_t)c->offset)) < 0)
		return perr_set(err, k, "target: %s", strerror(-k));
	out->chunk.enc = CHUNK_ENC_PLAIN;
	out->chunk.stored = *buf;
	out->chunk.stored_len = c->len;
	if (!sw->cctx && !(sw->cctx = ZSTD_createCCtx()))
		return 0;
	if (!(zbuf = malloc(c->len)))
		return 0;
	/* worth it only when it saves at least 1/32 */
	if (chunk_compress(sw->cctx, ZSTD_SERVE_LEVEL, *buf, c->len, zbuf, c->len - c->len / 32, &zlen) < 0) {
		free(zbuf);
		return 0;
	}
	zcache_put(&sw->zc, c->id, zbuf, zlen);
	free(*buf);
	*buf = zbuf;
	out->chunk.enc = CHUNK_ENC_ZSTD;
	out->chunk.stored = zbuf;
	out->chunk.stored_len = zlen;
	return 0;
}

static int held_read(struct swarm *sw, struct held *h, uint32_t i, struct msg *out, uint8_t **buf,
		     struct perr *err)
{
	const struct manifest_chunk *c = chunk_of(h, i);
	int k;

	out->type = MSG_CHUNK;
	memcpy(out->chunk.id, c->id, HASH_SIZE);
	out->chunk.plain_len = c->len;
	if (h->src && h->src->is_bundle) {
		const struct bundle_entry *e = bundle_find(h->src->entries, h->src->info.n_entries, c->id);

		if (!e)
			return -ENOENT;
		*buf = malloc(e->stored_len);
		if (!*buf)
			return -ENOMEM;
		if ((k = pread_full(h->src->fd, *buf, e->stored_len, (off_t)e->offset)) < 0)
			return perr_set(err, k, "%s: %s", h->src->path, strerror(-k));
		out->chunk.enc = e->enc;
		out->chunk.stored = *buf;
		out->chunk.stored_len = e->stored_len;
		return 0;
	}
	if (h->src) {
		size_t n;

		if ((k = store_get(h->src->chunks_dir, c->id, buf, &n, err)) < 0)
			return k;
		out->chunk.enc = CHUNK_ENC_ZSTD;
		out->chunk.stored = *buf;
		out->chunk.stored_len = n;
		return 0;
	}
	return device_read(sw, h, c, out, buf, err);
}

/* ---- sending ---- */

struct wreq {
	uv_write_t w;
	struct peer *p;
	size_t n;
	uint8_t data[];
};

static void write_cb(uv_write_t *w, int status)
{
	struct wreq *r = container_of(w, struct wreq, w);
	bool was_full = r->p->backlog >= SERVE_AHEAD;

	r->p->backlog -= r->n;
	if (was_full && r->p->backlog < SERVE_AHEAD && r->p->upq_n && !r->p->closing && !r->p->sw->stopping)
		serve_pump(r->p->sw);
	if (status < 0 && !r->p->closing)
		peer_close(r->p, uv_strerror(status));
	free(r);
}

static int session_send_cb(void *ud, const uint8_t *p, size_t n)
{
	struct peer *peer = ud;
	struct wreq *r;
	int k;

	if (peer->closing)
		return -EPIPE;
	r = malloc(sizeof(*r) + n);
	if (!r)
		return -ENOMEM;
	r->p = peer;
	r->n = n;
	memcpy(r->data, p, n);
	k = uv_write(&r->w, (uv_stream_t *)&peer->tcp, &(uv_buf_t){ .base = (char *)r->data, .len = n }, 1, write_cb);
	if (k < 0) {
		free(r);
		return k;
	}
	peer->backlog += n;
	peer->tx_bytes += n;
	return 0;
}

static int send_msg(struct peer *p, const struct msg *m)
{
	struct wbuf w = { 0 };
	int k;

	if (p->closing || !p->established)
		return -ENOTCONN;
	/* a chunk frame is sized once, not grown by doubling copies */
	if (m->type == MSG_CHUNK && (w.p = malloc(m->chunk.stored_len + 64)))
		w.cap = m->chunk.stored_len + 64;
	k = wire_encode(m, &w);
	if (k == 0)
		k = session_send(p->s, w.p, w.len, m->type == MSG_GOODBYE);
	wbuf_free(&w);
	return k;
}

static void send_goodbye(struct peer *p, enum goodbye_reason reason, const char *text)
{
	struct msg m = { .type = MSG_GOODBYE };

	m.goodbye.reason = (uint8_t)reason;
	m.goodbye.text = text;
	m.goodbye.text_len = strlen(text);
	send_msg(p, &m);
}

static void send_releases(struct peer *p)
{
	struct msg m = { .type = MSG_RELEASES };

	for (struct held *h = p->sw->held; h && m.releases.n < WIRE_RELEASES_MAX; h = h->next) {
		struct release_info *r = &m.releases.v[m.releases.n++];

		memcpy(r->id, h->id, HASH_SIZE);
		r->counter = h->m->counter;
		r->total = (uint32_t)h->m->n_chunks;
		r->held = h->have ? h->n_have : r->total;
	}
	send_msg(p, &m);
}

static bool sent_bitfield_for(const struct peer *p, const struct held *h)
{
	return p->sent_bitfield && !memcmp(p->bitfield_id, h->id, HASH_SIZE);
}

static void send_bitfield(struct peer *p, struct held *h)
{
	size_t nb = (h->m->n_chunks + 7) / 8;
	uint8_t *bits = h->have;
	struct msg m = { .type = MSG_BITFIELD };

	if (!bits) {
		bits = malloc(nb);
		if (!bits)
			return;
		memset(bits, 0xff, nb);
		if (h->m->n_chunks % 8)
			bits[nb - 1] = (uint8_t)((1u << (h->m->n_chunks % 8)) - 1);
	}
	memcpy(m.bitfield.id, h->id, HASH_SIZE);
	m.bitfield.count = (uint32_t)h->m->n_chunks;
	m.bitfield.bits = bits;
	send_msg(p, &m);
	p->sent_bitfield = true;
	memcpy(p->bitfield_id, h->id, HASH_SIZE);
	if (bits != h->have)
		free(bits);
}

static void broadcast_releases(struct swarm *sw)
{
	for (struct peer *p = sw->peers; p; p = p->next)
		if (p->established && !p->closing)
			send_releases(p);
}

/* ---- closing ---- */

static void peer_free_cb(uv_handle_t *h)
{
	struct peer *p = container_of((uv_tcp_t *)h, struct peer, tcp);

	session_free(p->s);
	free(p->mbuf);
	free(p->upq);
	free(p);
}

static void peer_close(struct peer *p, const char *why)
{
	struct swarm *sw = p->sw;

	if (p->closing)
		return;
	p->closing = true;
	if (p->established)
		log_info("peer %s (%s): disconnected: %s", p->id, p->addr, why);
	else
		log_debug("connection %s: closed: %s", p->addr, why);
	if (p->in_sched && sw->fetch)
		sched_peer_remove(sw->fetch->sched, p->sp);
	release_slot(sw, p);
	p->upq_n = 0;
	p->in_sched = false;
	if (p->dialer)
		p->dialer->p = NULL;
	for (struct peer **pp = &sw->peers; *pp; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	if (!p->reset_on_close || uv_tcp_close_reset(&p->tcp, peer_free_cb) < 0)
		uv_close((uv_handle_t *)&p->tcp, peer_free_cb);
}

/* ---- fetching ---- */

static bool refused_here(struct swarm *sw, const uint8_t id[HASH_SIZE])
{
	for (size_t i = 0; i < sw->n_refused && i < ELEMENTSOF(sw->refused); i++)
		if (!memcmp(sw->refused[i], id, HASH_SIZE))
			return true;
	return false;
}

static void refuse(struct swarm *sw, const uint8_t id[HASH_SIZE])
{
	if (!refused_here(sw, id))
		memcpy(sw->refused[sw->n_refused++ % ELEMENTSOF(sw->refused)], id, HASH_SIZE);
}

/* Refused this run, or for good by the installer (rolled back, fell back). */
static bool refused(struct swarm *sw, const uint8_t id[HASH_SIZE])
{
	if (refused_here(sw, id))
		return true;
	if (state_refused(sw->d->st, id, NULL, NULL, 0) == 1) {
		refuse(sw, id);
		return true;
	}
	return false;
}

/* The highest counter we hold or fetch: only newer releases are wanted. */
static uint64_t best_counter(struct swarm *sw)
{
	uint64_t best = 0, floor = 0;

	for (struct held *h = sw->held; h; h = h->next)
		if (h->m->counter > best)
			best = h->m->counter;
	state_floor_get(sw->d->st, "counter", &floor);
	return best > floor ? best : floor;
}

uint64_t swarm_unsaved(const struct swarm *sw, const char *counter)
{
	if (!sw)
		return 0;
	return !strcmp(counter, "rx_peers") ? sw->pending_rx_peers
	       : !strcmp(counter, "rx_seed") ? sw->pending_rx_seed
	       : !strcmp(counter, "tx")      ? sw->pending_tx
					     : 0;
}

static void flush_counters(struct swarm *sw)
{
	static const char *names[] = { "rx_peers", "rx_seed", "tx" };
	uint64_t *v[] = { &sw->pending_rx_peers, &sw->pending_rx_seed, &sw->pending_tx };

	for (size_t i = 0; i < ELEMENTSOF(names); i++)
		if (*v[i] && state_counter_add(sw->d->st, names[i], *v[i]) == 0)
			*v[i] = 0;
}

/* Records chunks whose data is on disk (fdatasync done); 0 on success. */
static int record_progress(struct swarm *sw, struct fetch *f, const uint32_t *idx, size_t n, size_t unsynced)
{
	int k = state_have_add(sw->d->st, f->h->id, idx, n);

	if (k < 0)
		log_err("state: recording progress failed: %s", strerror(-k));
	else
		log_debug("release %s: progress recorded: %" PRIu32 " of %zu chunks", f->h->m->version,
			  f->h->n_have - (uint32_t)unsynced, f->h->m->n_chunks);
	f->last_sync_ms = uv_now(&sw->d->loop);
	return k;
}

/* What was written and not yet recorded reaches the disk, then the record
 * saying it is there; on the loop: at the end of a fetch and at stop. */
static void fetch_sync(struct swarm *sw)
{
	struct fetch *f = sw->fetch;

	if (!f || !f->n_pending)
		return;
	/* the data reaches the disk before the record saying it is there */
	if (fdatasync(f->h->fd) < 0) {
		log_err("target: fdatasync failed: %s", strerror(errno));
		return;
	}
	if (record_progress(sw, f, f->pending, f->n_pending, 0) == 0)
		f->n_pending = 0;
}

/* An abort that came while a pool thread used the target; true if done. */
static bool abort_if_asked(struct swarm *sw, struct fetch *f)
{
	char why[sizeof(f->abort_why)];

	if (!f->abort_why[0])
		return false;
	snprintf(why, sizeof(why), "%s", f->abort_why);
	swarm_fetch_abort(sw, why);
	return true;
}

/* The periodic sync while chunks arrive: the fdatasync (on slow flash,
 * a second's worth of chunks can take most of a second) runs in the
 * thread pool, the record follows on the loop. The chunks written
 * meanwhile wait for the next one. While it runs the fetch is not freed:
 * completion and aborts wait for it. */
struct sync_work {
	uv_work_t w;
	struct swarm *sw;
	struct fetch *f;
	int fd;
	uint32_t *idx;
	size_t n;
	int err;
};

static void fetch_complete(struct swarm *sw);

static void sync_work_cb(uv_work_t *w)
{
	struct sync_work *sj = container_of(w, struct sync_work, w);

	sj->err = fdatasync(sj->fd) < 0 ? errno : 0;
}

static void sync_after_cb(uv_work_t *w, int status)
{
	struct sync_work *sj = container_of(w, struct sync_work, w);
	struct swarm *sw = sj->sw;
	struct fetch *f = sj->f;

	f->syncing = false;
	if (status < 0 || sj->err) {
		log_err("target: fdatasync failed: %s", status < 0 ? uv_strerror(status) : strerror(sj->err));
		f->last_sync_ms = uv_now(&sw->d->loop);
	} else {
		record_progress(sw, f, sj->idx, sj->n, f->n_pending);
	}
	free(sj->idx);
	free(sj);
	if (sw->stopping || abort_if_asked(sw, f))
		return;
	if (f->complete_after_sync) {
		f->complete_after_sync = false;
		fetch_complete(sw);
	}
}

static void fetch_sync_async(struct swarm *sw)
{
	struct fetch *f = sw->fetch;
	struct sync_work *sj;
	int k;

	if (!f || f->syncing || !f->n_pending)
		return;
	if (!(sj = calloc(1, sizeof(*sj)))) {
		fetch_sync(sw);
		return;
	}
	sj->sw = sw;
	sj->f = f;
	sj->fd = f->h->fd;
	sj->idx = f->pending; /* the next chunks start a new list */
	sj->n = f->n_pending;
	f->pending = NULL;
	f->n_pending = f->cap_pending = 0;
	if ((k = uv_queue_work(&sw->d->loop, &sj->w, sync_work_cb, sync_after_cb)) < 0) {
		f->pending = sj->idx;
		f->n_pending = f->cap_pending = sj->n;
		free(sj);
		fetch_sync(sw);
		return;
	}
	f->syncing = true;
	f->last_sync_ms = uv_now(&sw->d->loop);
}

static void flush_haves(struct swarm *sw)
{
	struct fetch *f = sw->fetch;
	struct msg m = { .type = MSG_HAVE };

	if (!f || !f->n_announce)
		return;
	memcpy(m.have.id, f->h->id, HASH_SIZE);
	m.have.n = (uint16_t)f->n_announce;
	memcpy(m.have.idx, f->announce, f->n_announce * sizeof(f->announce[0]));
	f->n_announce = 0;
	for (struct peer *p = sw->peers; p; p = p->next)
		if (p->established && !p->closing && sent_bitfield_for(p, f->h))
			send_msg(p, &m);
}

static void have_timer_cb(uv_timer_t *t)
{
	flush_haves(t->data);
}

static void mark_have(struct swarm *sw, uint32_t i)
{
	struct fetch *f = sw->fetch;
	struct held *h = f->h;

	if (held_has(h, i))
		return;
	h->have[i / 8] |= (uint8_t)(1u << (i % 8));
	h->n_have++;
	if (f->n_announce == ELEMENTSOF(f->announce))
		flush_haves(sw);
	if (!f->n_announce && !uv_is_active((uv_handle_t *)&sw->have_timer) && !sw->stopping)
		uv_timer_start(&sw->have_timer, have_timer_cb, HAVE_DELAY_MS, 0);
	f->announce[f->n_announce++] = i;
	if (f->n_pending == f->cap_pending) {
		size_t cap = f->cap_pending ? f->cap_pending * 2 : 256;
		uint32_t *p = realloc(f->pending, cap * sizeof(*p));

		if (!p)
			return;
		f->pending = p;
		f->cap_pending = cap;
	}
	f->pending[f->n_pending++] = i;
}

/* Writes a verified chunk at every index that has its id. */
/* Writes data at every place of h's image whose chunk has this id and
 * that `skip` does not rule out (held already), and calls `wrote` for
 * each. *ret_first: the id's first place. -ENOENT: not in the image;
 * -EBADMSG: its length differs from the manifest's. */
static int write_places(struct held *h, const uint8_t id[HASH_SIZE], const uint8_t *data, uint32_t len,
			bool (*skip)(void *ud, uint32_t i), void (*wrote)(void *ud, uint32_t i), void *ud,
			uint32_t *ret_first)
{
	size_t pos = order_find(h, id);
	bool any = false;
	int k;

	for (; pos < h->m->n_chunks; pos++) {
		uint32_t i = h->order[pos];
		const struct manifest_chunk *c = chunk_of(h, i);

		if (memcmp(c->id, id, HASH_SIZE) != 0)
			break;
		if (!any)
			*ret_first = i;
		any = true;
		if (skip(ud, i))
			continue;
		if (c->len != len)
			return -EBADMSG;
		if ((k = pwrite_full(h->fd, data, len, (off_t)c->offset)) < 0)
			return k;
		wrote(ud, i);
	}
	return any ? 0 : -ENOENT;
}

static bool fetched_skip(void *ud, uint32_t i)
{
	return held_has(((struct swarm *)ud)->fetch->h, i);
}

static void fetched_wrote(void *ud, uint32_t i)
{
	mark_have(ud, i);
}

/* A verified chunk into the target, at every place it goes. */
static int write_unit(struct swarm *sw, const uint8_t id[HASH_SIZE], const uint8_t *data, uint32_t len,
		      uint32_t *ret_first)
{
	return write_places(sw->fetch->h, id, data, len, fetched_skip, fetched_wrote, sw, ret_first);
}

static void fetch_free(struct fetch *f)
{
	if (!f)
		return;
	sched_free(f->sched);
	free(f->same_as);
	free(f->pending);
	free(f->buf);
	ZSTD_freeDCtx(f->dctx);
	free(f);
}

static int verify_target(struct held *h, struct perr *err)
{
	uint8_t got[HASH_SIZE];
	int k = image_hash_fd(h->fd, h->m->image_size, got, NULL, NULL, err);

	if (k < 0)
		return perr_prefix(err, k, "the target: ");
	if (sodium_memcmp(got, h->m->image_hash, HASH_SIZE) != 0)
		return perr_set(err, -EILSEQ, "the assembled image does not match the manifest's image hash");
	return 0;
}

/* What a fetch into a plain target ends with: the whole image read back
 * and hashed, in the thread pool, so that the loop goes on serving the
 * peers that still fetch (at 16 devices on 2 cores, the hash on the loop
 * held every peer of a finishing device up for a quarter of a second). */
struct verify_work {
	uv_work_t w;
	struct swarm *sw;
	struct held *h;
	struct perr err;
	int k;
	uint64_t ms;
};

static void fetch_finish(struct swarm *sw, uint64_t verify_ms)
{
	struct fetch *f = sw->fetch;
	struct held *h = f->h;
	struct sched_stats st;
	char hashed[64] = "";

	sched_get_stats(f->sched, &st);
	/* the next fetch has a scheduler of its own: nobody is in it yet */
	for (struct peer *p = sw->peers; p; p = p->next)
		p->in_sched = false;
	state_release_set_state(sw->d->st, h->id, REL_COMPLETE);
	free(h->have);
	h->have = NULL;
	if (h->slot < 0)
		snprintf(hashed, sizeof(hashed), " (read back and hashed in %" PRIu64 " ms)", verify_ms);
	log_notice("release %s %s (counter %" PRIu64 "): complete and verified%s in %.1f s; %" PRIu64
		   " bytes from peers, %" PRIu64 " from the gateway, %" PRIu64 " wasted",
		   h->m->product, h->m->version, h->m->counter,
		   h->slot < 0 ? hashed : " chunk by chunk (the installer checks the whole slot)",
		   (double)(uv_now(&sw->d->loop) - f->started_ms) / 1000,
		   st.bytes_from_peers, st.bytes_from_seeds, st.bytes_wasted);
	fetch_free(f);
	sw->fetch = NULL;
	broadcast_releases(sw);
	if (h->slot >= 0)
		device_fetched(sw->d, h->id, h->mbytes, h->mlen);
}

static int commit_partial(struct swarm *sw, struct held *h, struct perr *err);

static void verify_work_cb(uv_work_t *w)
{
	struct verify_work *v = container_of(w, struct verify_work, w);
	uint64_t t0 = uv_hrtime();
	int prio = daemon_thread_background();

	v->k = verify_target(v->h, &v->err);
	daemon_thread_foreground(prio);
	v->ms = (uv_hrtime() - t0) / 1000000;
}

static void verify_after_cb(uv_work_t *w, int status)
{
	_cleanup_(freep) struct verify_work *v = container_of(w, struct verify_work, w);
	struct swarm *sw = v->sw;
	struct fetch *f = sw->fetch;
	char id[17];

	f->verifying = false;
	if (status < 0 || sw->stopping)
		return; /* every chunk is recorded: the next start checks again */
	if (v->k < 0) {
		log_err("release %s %s: %s; starting over", v->h->m->version, hex16(v->h->id, id), v->err.msg);
		state_have_clear(sw->d->st, v->h->id);
		memset(v->h->have, 0, (v->h->m->n_chunks + 7) / 8);
		v->h->n_have = 0;
		return; /* the scheduler is done; a restart refetches (rare: every chunk was verified) */
	}
	if (commit_partial(sw, v->h, &v->err) < 0) {
		log_err("release %s: %s; the next start tries again", v->h->m->version, v->err.msg);
		return;
	}
	fetch_finish(sw, v->ms);
}

static void fetch_complete(struct swarm *sw)
{
	struct fetch *f = sw->fetch;
	struct verify_work *v;
	int k;

	if (f->verifying)
		return;
	if (f->syncing) { /* its after-work callback comes back here */
		f->complete_after_sync = true;
		return;
	}
	flush_haves(sw);
	fetch_sync(sw);
	flush_counters(sw);
	if (f->h->slot >= 0) {
		fetch_finish(sw, 0);
		return;
	}
	if (!(v = calloc(1, sizeof(*v)))) {
		log_err("release %s: out of memory to verify the target; it is checked at the next start", f->h->m->version);
		return;
	}
	v->sw = sw;
	v->h = f->h;
	log_info("release %s %s: every chunk verified and written in %.1f s; reading the target back against the "
		 "image hash", f->h->m->product, f->h->m->version, (double)(uv_now(&sw->d->loop) - f->started_ms) / 1000);
	if ((k = uv_queue_work(&sw->d->loop, &v->w, verify_work_cb, verify_after_cb)) < 0) {
		log_err("release %s: cannot verify the target: %s; it is checked at the next start", f->h->m->version,
			uv_strerror(k));
		free(v);
		return;
	}
	f->verifying = true;
}

/* Local reuse (installer/reuse.c): chunks the device already holds (the
 * active slot, the release the target held, configured seed files) are
 * copied into the target and count as fetched. It runs in the thread
 * pool: a 1 GiB slot takes about 15 s to read, hash and write, which on
 * the loop left peers unserved, `shoal status` unanswered and the
 * systemd watchdog (30 s) close. Meanwhile the fetch asks nobody for
 * anything and writes nothing to the target; the loop reads only.
 * When it ends, what it wrote is marked held (and synced and recorded
 * like fetched chunks) and the fetch starts asking its peers. */
struct reuse_src {
	int fd;
	struct manifest *old; /* what fd holds, by its table; NULL: chunk it */
	char what[256];
	uint64_t bytes;       /* written from it */
	struct perr err;
	int k;
};

struct reuse_work {
	uv_work_t w;
	struct swarm *sw;
	struct held *h;
	struct reuse_src *src;
	size_t n_src;
	uint8_t *got;     /* chunk indexes written by this job */
	uint32_t *firsts; /* one index per id written, for the scheduler */
	size_t n_firsts, cap_firsts;
	struct reuse_src *cur;
};

static bool got_has(const struct reuse_work *rw, uint32_t i)
{
	return rw->got[i / 8] & (1u << (i % 8));
}

static bool reuse_wanted(void *ud, const uint8_t id[HASH_SIZE], uint32_t len)
{
	struct reuse_work *rw = ud;
	struct held *h = rw->h;
	size_t pos = order_find(h, id);

	for (; pos < h->m->n_chunks && !memcmp(chunk_of(h, h->order[pos])->id, id, HASH_SIZE); pos++)
		if (!held_has(h, h->order[pos]) && !got_has(rw, h->order[pos]) && chunk_of(h, h->order[pos])->len == len)
			return true;
	return false;
}

static bool reuse_skip(void *ud, uint32_t i)
{
	struct reuse_work *rw = ud;

	return held_has(rw->h, i) || got_has(rw, i);
}

static void reuse_wrote(void *ud, uint32_t i)
{
	struct reuse_work *rw = ud;

	rw->got[i / 8] |= (uint8_t)(1u << (i % 8));
}

/* In the pool thread: the bytes go to every place of the image with this
 * id that is not held yet; marking them is for the loop, later. */
static int reuse_offer(void *ud, const uint8_t id[HASH_SIZE], const uint8_t *buf, uint32_t len, struct perr *err)
{
	struct reuse_work *rw = ud;
	uint32_t first = 0;
	int k;

	if (__atomic_load_n(&rw->sw->stopping, __ATOMIC_RELAXED))
		return perr_set(err, -ECANCELED, "shoald is stopping");
	k = write_places(rw->h, id, buf, len, reuse_skip, reuse_wrote, rw, &first);
	if (k == -ENOENT)
		return 0;
	if (k == -EBADMSG)
		return perr_set(err, k, "a chunk's length differs from the manifest's");
	if (k < 0)
		return perr_set(err, k, "writing the target failed: %s", strerror(-k));
	if ((k = array_reserve((void **)&rw->firsts, &rw->cap_firsts, rw->n_firsts + 1, sizeof(*rw->firsts), 256)) < 0)
		return perr_set(err, k, "out of memory");
	rw->firsts[rw->n_firsts++] = first;
	rw->cur->bytes += len;
	return 0;
}

static void reuse_work_cb(uv_work_t *w)
{
	struct reuse_work *rw = container_of(w, struct reuse_work, w);
	struct reuse_ops ops = { reuse_wanted, reuse_offer, rw };

	for (size_t i = 0; i < rw->n_src; i++) {
		struct reuse_src *r = &rw->src[i];
		uint64_t size;

		rw->cur = r;
		if ((r->k = fd_size(r->fd, &size)) < 0)
			perr_set(&r->err, r->k, "%s", strerror(-r->k));
		else if (r->old)
			r->k = reuse_known(r->fd, size, r->old, &ops, &r->err);
		else
			r->k = reuse_scan(r->fd, size, &rw->h->m->chunking, &ops, &r->err);
		if (r->k == -ECANCELED)
			return;
	}
	/* the copy reaches the disk here, not in the loop's next sync */
	if (rw->n_firsts && fdatasync(rw->h->fd) < 0)
		rw->src[0].k = perr_set(&rw->src[0].err, -errno, "syncing the target: %s", strerror(errno));
}

static void reuse_work_free(struct reuse_work *rw)
{
	for (size_t i = 0; i < rw->n_src; i++) {
		if (rw->src[i].fd >= 0)
			close(rw->src[i].fd);
		manifest_free(rw->src[i].old);
	}
	free(rw->src);
	free(rw->got);
	free(rw->firsts);
	free(rw);
}

static void fetch_go(struct swarm *sw);

static void reuse_after_cb(uv_work_t *w, int status)
{
	struct reuse_work *rw = container_of(w, struct reuse_work, w);
	struct swarm *sw = rw->sw;
	struct fetch *f = sw->fetch;
	uint64_t total = 0;

	if (status < 0 || sw->stopping || !f || f->h != rw->h) {
		/* stopping: nothing was marked held, the next start copies again */
		reuse_work_free(rw);
		return;
	}
	f->reusing = false;
	for (uint32_t i = 0; i < f->h->m->n_chunks; i++)
		if (got_has(rw, i))
			mark_have(sw, i);
	for (size_t i = 0; i < rw->n_firsts; i++)
		if (sched_have(f->sched, rw->firsts[i]) == 1)
			total += chunk_of(f->h, rw->firsts[i])->len;
	for (size_t i = 0; i < rw->n_src; i++) {
		struct reuse_src *r = &rw->src[i];

		if (r->k < 0)
			log_warn("reuse %s: %s", r->what, r->err.msg);
		log_info("reuse %s: %" PRIu64 " bytes of the new release were already here", r->what, r->bytes);
	}
	state_counter_add(sw->d->st, "rx_local", total);
	reuse_work_free(rw);
	if (!abort_if_asked(sw, f))
		fetch_go(sw);
}

static void reuse_add(struct reuse_work *rw, int fd, struct manifest *old, const char *what)
{
	struct reuse_src *r = &rw->src[rw->n_src++];

	r->fd = fd;
	r->old = old;
	snprintf(r->what, sizeof(r->what), "%s", what);
}

/* The release TARGET holds now: its chunks by its manifest, or by
 * chunking the file when no release we know is in it. */
static void reuse_target(struct swarm *sw, struct reuse_work *rw)
{
	const char *target = sw->d->conf.target;
	int fd;

	for (struct held *o = sw->held; o; o = o->next)
		if (o != rw->h && o->fd >= 0 && o->slot < 0 && !o->src && !o->have) {
			struct manifest *old = NULL;
			struct perr err = { "" };

			/* copies: the loop may let go of o while the job runs */
			if ((fd = dup(o->fd)) < 0 || manifest_parse(o->mbytes, o->mlen, &old, &err) < 0) {
				log_warn("reuse %s: %s", target, fd < 0 ? strerror(errno) : err.msg);
				if (fd >= 0)
					close(fd);
				return;
			}
			reuse_add(rw, fd, old, target);
			return;
		}
	if ((fd = open(target, O_RDONLY | O_CLOEXEC)) < 0) {
		if (errno != ENOENT)
			log_warn("reuse %s: %s", target, strerror(errno));
		return;
	}
	reuse_add(rw, fd, NULL, target);
}

/* Starts the local reuse of the fetch just set up, off the loop; 0 when
 * there is nothing to reuse from (the caller goes on at once), 1 when
 * the job runs (fetch_go follows it). */
static int reuse_start(struct swarm *sw)
{
	struct fetch *f = sw->fetch;
	struct conf *c = &sw->d->conf;
	struct reuse_work *rw = calloc(1, sizeof(*rw));
	int k;

	if (!rw || !(rw->src = calloc(2 + c->reuse.n, sizeof(*rw->src))) ||
	    !(rw->got = calloc((f->h->m->n_chunks + 7) / 8, 1))) {
		log_err("reuse: out of memory; every chunk is fetched");
		if (rw)
			reuse_work_free(rw);
		return 0;
	}
	rw->sw = sw;
	rw->h = f->h;
	if (sw->d->dev) {
		struct manifest *old = NULL;
		char what[256];
		int afd = device_active_source(sw->d, &old, what, sizeof(what));

		if (afd >= 0)
			reuse_add(rw, afd, old, what);
		else
			manifest_free(old);
	} else {
		reuse_target(sw, rw);
	}
	for (size_t i = 0; i < c->reuse.n; i++) {
		int fd = open(c->reuse.v[i], O_RDONLY | O_CLOEXEC);

		if (fd < 0)
			log_warn("reuse %s: %s", c->reuse.v[i], strerror(errno));
		else
			reuse_add(rw, fd, NULL, c->reuse.v[i]);
	}
	if (!rw->n_src) {
		reuse_work_free(rw);
		return 0;
	}
	if ((k = uv_queue_work(&sw->d->loop, &rw->w, reuse_work_cb, reuse_after_cb)) < 0) {
		log_err("reuse: %s; every chunk is fetched", uv_strerror(k));
		reuse_work_free(rw);
		return 0;
	}
	f->reusing = true;
	return 1;
}

static int resume_cb(void *ud, uint32_t idx)
{
	struct swarm *sw = ud;
	struct held *h = sw->fetch->h;

	if (idx >= h->m->n_chunks || held_has(h, idx))
		return 0;
	h->have[idx / 8] |= (uint8_t)(1u << (idx % 8));
	h->n_have++;
	sched_have(sw->fetch->sched, idx);
	return 0;
}

/* A plain target is assembled in TARGET.partial and renamed over TARGET
 * once read back whole: TARGET keeps the release it held, served and
 * reused from, until then. A .partial that is not there (lost, or from
 * before this layout) makes the progress recorded for it void. */
static int open_partial(struct swarm *sw, struct held *h, struct perr *err)
{
	_cleanup_(freep) char *path = NULL;
	bool existed;

	if (asprintf(&path, "%s.partial", sw->d->conf.target) < 0)
		return perr_set(err, -ENOMEM, "out of memory");
	existed = access(path, F_OK) == 0;
	if ((h->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0)
		return perr_set(err, -errno, "target %s: %s", path, strerror(errno));
	if (!existed)
		state_have_clear(sw->d->st, h->id);
	return 0;
}

struct replaced {
	const uint8_t *keep;
	uint8_t ids[16][HASH_SIZE];
	size_t n;
};

/* the releases recorded complete: in the target no more (the newest 16,
 * more never pile up: each completion marks the one before) */
static int replaced_cb(void *ud, const struct state_release *r)
{
	struct replaced *rc = ud;

	if (r->st == REL_COMPLETE && memcmp(r->id, rc->keep, HASH_SIZE) && rc->n < ELEMENTSOF(rc->ids))
		memcpy(rc->ids[rc->n++], r->id, HASH_SIZE);
	return 0;
}

/* TARGET.partial, read back whole, becomes TARGET; the release TARGET
 * held is no longer there and no longer served. */
static int commit_partial(struct swarm *sw, struct held *h, struct perr *err)
{
	const char *target = sw->d->conf.target;
	_cleanup_(freep) char *path = NULL;
	_cleanup_(freep) char *dir = NULL;
	struct replaced rc = { .keep = h->id };
	int k, dfd;

	if (asprintf(&path, "%s.partial", target) < 0 || !(dir = strdup(target)))
		return perr_set(err, -ENOMEM, "out of memory");
	if (fsync(h->fd) < 0)
		return perr_set(err, -errno, "fsync %s: %s", path, strerror(errno));
	if (rename(path, target) < 0)
		return perr_set(err, -errno, "rename %s to %s: %s", path, target, strerror(errno));
	/* the rename itself reaches the disk */
	if ((dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		k = fsync(dfd);
		close(dfd);
		if (k < 0)
			log_warn("fsync of %s: %s", dir, strerror(errno));
	}
	state_release_foreach(sw->d->st, replaced_cb, &rc);
	for (size_t i = 0; i < rc.n; i++)
		state_release_set_state(sw->d->st, rc.ids[i], REL_REPLACED);
	for (struct held **pp = &sw->held; *pp;) {
		struct held *o = *pp;

		if (o != h && o->fd >= 0 && o->slot < 0 && !o->src) {
			log_info("release %s %s is no longer in %s: no longer served", o->m->product, o->m->version,
				 target);
			*pp = o->next;
			held_free(o);
		} else {
			pp = &o->next;
		}
	}
	return 0;
}

void swarm_drop_slot(struct swarm *sw, int slot, const char *why)
{
	for (struct held **pp = &sw->held; *pp;) {
		struct held *o = *pp;

		if (slot >= 0 && o->slot == slot && !(sw->fetch && sw->fetch->h == o)) {
			log_info("release %s in slot %s %s: no longer served", o->m->version, device_slot_name(sw->d, o->slot),
				 why);
			*pp = o->next;
			held_free(o);
		} else {
			pp = &o->next;
		}
	}
	broadcast_releases(sw);
}

const struct manifest *swarm_fetching(struct swarm *sw)
{
	return sw->fetch ? sw->fetch->h->m : NULL;
}

void swarm_fetch_abort(struct swarm *sw, const char *why)
{
	struct fetch *f = sw->fetch;
	struct held *h;

	/* (a plain target read back off the loop is not stopped: only a
	 * device aborts, and its slot is checked by the install instead) */
	if (!f || f->verifying)
		return;
	if (f->reusing || f->syncing) { /* a pool thread uses the target: when it ends */
		snprintf(f->abort_why, sizeof(f->abort_why), "%s", why);
		return;
	}
	h = f->h;
	log_notice("the fetch of %s (counter %" PRIu64 ") stops: %s", h->m->version, h->m->counter, why);
	for (struct peer *p = sw->peers; p; p = p->next) {
		if (p->in_sched)
			sched_peer_remove(f->sched, p->sp);
		p->in_sched = false;
		p->sent_bitfield = false;
	}
	fetch_free(f);
	sw->fetch = NULL;
	for (struct held **pp = &sw->held; *pp; pp = &(*pp)->next)
		if (*pp == h) {
			*pp = h->next;
			break;
		}
	/* its chunks in the slot are about to be overwritten */
	state_have_clear(sw->d->st, h->id);
	held_free(h);
	broadcast_releases(sw);
}

void swarm_keyring_reload(struct swarm *sw)
{
	struct keyring *kr = NULL;
	uint8_t *bytes = NULL;
	size_t len;

	if (state_keyring_get(sw->d->st, &bytes, &len) < 0)
		return;
	if (keyring_parse(bytes, len, &kr, NULL) < 0 || (sw->keyring && kr->version <= sw->keyring->version)) {
		keyring_free(kr);
		free(bytes);
		return;
	}
	log_notice("keyring v%" PRIu64 " from the installer is served from now on", kr->version);
	keyring_free(sw->keyring);
	free(sw->keyring_bytes);
	sw->keyring = kr;
	sw->keyring_bytes = bytes;
	sw->keyring_len = len;
}

/* Starts fetching h (accepted, recorded). Takes h. */
static int fetch_start(struct swarm *sw, struct held *h, struct perr *err)
{
	struct conf *c = &sw->d->conf;
	struct fetch *f = calloc(1, sizeof(*f));
	uint32_t *lens = NULL;
	uint64_t resumed;
	struct sched_params sp;
	int k;

	if (!f)
		return perr_set(err, -ENOMEM, "out of memory");
	sched_params_default(&sp);
	sp.ban_ms = c->ban_ms;
	sp.timeout_floor_ms = (uint32_t)c->request_timeout_ms;
	/* the gateway uploads each chunk about once: ask it only for what no
	 * peer has, and never for endgame copies */
	sp.seed_policy = getenv("SHOAL_SEED_POLICY") && !strcmp(getenv("SHOAL_SEED_POLICY"), "offload")
				 ? SCHED_SEED_OFFLOAD : SCHED_SEED_STRICT;
	if (sw->d->dev) {
		/* straight into the inactive slot: whatever it held is gone */
		swarm_drop_slot(sw, device_inactive_slot(sw->d), "is overwritten");
		h->fd = device_fetch_target(sw->d, h->m, &h->slot, err);
		if (h->fd < 0) {
			fetch_free(f);
			return h->fd;
		}
	} else if ((k = open_partial(sw, h, err)) < 0) {
		fetch_free(f);
		return k;
	}
	h->have = calloc((h->m->n_chunks + 7) / 8, 1);
	lens = malloc(h->m->n_chunks * sizeof(*lens));
	f->buf = malloc(h->m->chunking.max);
	f->dctx = ZSTD_createDCtx();
	if (!h->have || !lens || !f->buf || !f->dctx) {
		free(lens);
		fetch_free(f);
		return perr_set(err, -ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < h->m->n_chunks; i++)
		lens[i] = h->m->chunks[i].len;
	if ((k = sched_dedup(h->m->chunks[0].id, HASH_SIZE, sizeof(struct manifest_chunk), h->m->n_chunks,
			     &f->same_as)) < 0 ||
	    (k = sched_new(&sp, h->m->n_chunks, lens, f->same_as, (uint64_t)getpid() ^ rd_le64(h->id), &f->sched,
			   err)) < 0) {
		free(lens);
		fetch_free(f);
		return k < 0 ? k : -ENOMEM;
	}
	free(lens);
	/* a target that is too long keeps old bytes past the image: trim it
	 * (a slot keeps its size) */
	if (h->slot < 0 && ftruncate(h->fd, (off_t)h->m->image_size) < 0)
		log_warn("target: cannot set its size: %s", strerror(errno));
	f->h = h;
	f->started_ms = uv_now(&sw->d->loop);
	sw->fetch = f;
	h->next = sw->held;
	sw->held = h;

	state_have_foreach(sw->d->st, h->id, resume_cb, sw);
	resumed = h->n_have;
	if (resumed) {
		uint64_t bytes = 0;

		for (size_t i = 0; i < h->m->n_chunks; i++)
			if (held_has(h, (uint32_t)i))
				bytes += h->m->chunks[i].len;
		log_info("release %s: resuming with %" PRIu64 " of %zu chunks (%" PRIu64 " bytes) verified before",
			 h->m->version, resumed, h->m->n_chunks, bytes);
	}
	for (struct peer *p = sw->peers; p; p = p->next) {
		p->sent_bitfield = false;
		p->in_sched = false; /* this scheduler is new: bitfields add them */
	}
	if (reuse_start(sw) == 0)
		fetch_go(sw);
	return 0;
}

/* The fetch set up and what the device holds copied: ask the peers. */
static void fetch_go(struct swarm *sw)
{
	struct fetch *f = sw->fetch;

	fetch_sync(sw);
	if (sched_done(f->sched))
		fetch_complete(sw);
	else
		broadcast_releases(sw);
}

/* A whole manifest arrived from p: check it as the installer would. */
static void manifest_received(struct peer *p)
{
	struct swarm *sw = p->sw;
	struct manifest *m = NULL;
	struct perr err = { "" };
	uint8_t id[HASH_SIZE];
	uint64_t floor = 0, tfloor = 0, now;
	char hex[17];
	struct held *h;
	int k;

	if (sw->fetch || held_find(sw, p->mid)) {
		/* the same manifest came from another peer first: one fetch only */
		free(p->mbuf);
		p->mbuf = NULL;
		return;
	}
	crypto_generichash(id, HASH_SIZE, p->mbuf, p->mtotal, NULL, 0);
	if (memcmp(id, p->mid, HASH_SIZE) != 0) {
		log_warn("peer %s: manifest %s does not match its id; dropping the peer", p->id, hex16(p->mid, hex));
		peer_close(p, "manifest did not match its id");
		return;
	}
	if ((k = manifest_parse(p->mbuf, p->mtotal, &m, &err)) < 0)
		goto refuse;
	/* by its signed body too: signatures added since do not make it new */
	if (refused(sw, id) || state_refused(sw->d->st, id, m, NULL, 0) == 1) {
		k = perr_set(&err, -EPERM, "release %s is refused on this device (rolled back before)", m->version);
		goto refuse;
	}
	state_floor_get(sw->d->st, "time", &tfloor);
	now = now_s() > tfloor ? now_s() : tfloor;
	if ((k = trust_check_manifest(&sw->roots, sw->keyring, m, now, NULL, &err)) < 0) {
		if (k == -ENOKEY && !p->asked_keyring) {
			/* maybe signed by a key of a keyring we have not seen yet */
			struct msg g = { .type = MSG_GET_KEYRING };

			g.get_keyring.min_version = sw->keyring ? sw->keyring->version + 1 : 1;
			p->asked_keyring = true;
			send_msg(p, &g);
			manifest_free(m);
			free(p->mbuf);
			p->mbuf = NULL;
			return;
		}
		goto refuse;
	}
	{
		struct trust_policy pol = { .product = sw->d->conf.product };

		/* with a slot: an image that does not fit it is refused here */
		if (sw->d->dev && (k = device_slot_size(sw->d, &pol.max_image_size, &err)) < 0)
			goto refuse;
		if ((k = trust_check_policy(&pol, m, NULL, &err)) < 0)
			goto refuse;
	}
	/* a peer's RELEASES may claim any counter: the signed one decides, and
	 * it must be above what is installed and what the target holds */
	if (m->counter <= (floor = best_counter(sw))) {
		k = perr_set(&err, -EPERM, "release counter %" PRIu64 " is not above %" PRIu64
			     ", the newest this device holds or installed (rollback refused)", m->counter, floor);
		goto refuse;
	}
	/* the clock may be set back (an RTC that lost power): expiry is
	 * measured against the latest time seen at an acceptance */
	state_floor_raise(sw->d->st, "time", now);
	if (strcmp(m->payload_type, PAYLOAD_AB_IMAGE) != 0) {
		k = perr_set(&err, -EOPNOTSUPP, "payload type %s needs an update module", m->payload_type);
		goto refuse;
	}
	h = held_new(m, p->mbuf, p->mtotal);
	p->mbuf = NULL;
	if (!h) {
		manifest_free(m);
		return;
	}
	state_release_put(sw->d->st, h->id, m, h->mbytes, h->mlen, REL_FETCHING);
	log_notice("release %s %s (counter %" PRIu64 ", %s, %zu chunks) accepted from peer %s: fetching", m->product,
		   m->version, m->counter, hex16(h->id, hex), m->n_chunks, p->id);
	if ((k = fetch_start(sw, h, &err)) < 0) {
		log_err("cannot fetch release %s: %s", m->version, err.msg);
		held_free(h);
	}
	return;
refuse:
	log_warn("release %s from peer %s refused: %s", hex16(p->mid, hex), p->id, err.msg);
	refuse(sw, p->mid);
	manifest_free(m);
	free(p->mbuf);
	p->mbuf = NULL;
}

/* Does p offer a release we want? Then ask for its manifest. */
static void consider_releases(struct peer *p)
{
	struct swarm *sw = p->sw;
	const struct release_info *best = NULL;
	struct msg m = { .type = MSG_GET_MANIFEST };

	if (sw->d->conf.role != ROLE_DEVICE || !sw->d->conf.auto_fetch || sw->fetch || p->mbuf)
		return;
	if (sw->d->dev && device_busy(sw->d))
		return; /* the inactive slot holds an install, or a reboot is due */
	if (strcmp(p->product, sw->d->conf.product) != 0)
		return;
	for (uint16_t i = 0; i < p->n_rel; i++) {
		const struct release_info *r = &p->rel[i];

		if (r->counter <= best_counter(sw) || refused(sw, r->id) || held_find(sw, r->id))
			continue;
		if (!best || r->counter > best->counter)
			best = r;
	}
	if (!best)
		return;
	memcpy(p->mid, best->id, HASH_SIZE);
	memcpy(m.get_manifest.id, best->id, HASH_SIZE);
	m.get_manifest.offset = 0;
	p->mtotal = p->mgot = 0;
	send_msg(p, &m);
}

/* Says once per RELEASES why older releases a peer offers are not taken
 * (consider_releases() skips them without a word, every tick). */
static void log_old_offers(struct peer *p)
{
	struct swarm *sw = p->sw;
	uint64_t best, newest = 0;
	unsigned n = 0;

	if (sw->d->conf.role != ROLE_DEVICE || strcmp(p->product, sw->d->conf.product) != 0)
		return;
	best = best_counter(sw);
	for (uint16_t i = 0; i < p->n_rel; i++)
		if (p->rel[i].counter <= best && !held_find(sw, p->rel[i].id)) {
			n++;
			if (p->rel[i].counter > newest)
				newest = p->rel[i].counter;
		}
	if (n)
		log_info("peer %s offers %u release(s) up to counter %" PRIu64 ", not above %" PRIu64
			 " that this device holds or installed: not taken (no rollback)", p->id, n, newest, best);
	for (uint16_t i = 0; i < p->n_rel; i++)
		if (p->rel[i].counter > best && refused(sw, p->rel[i].id))
			log_info("peer %s offers release %s (counter %" PRIu64 "), refused on this device: not taken",
				 p->id, hex16(p->rel[i].id, (char[17]){ 0 }), p->rel[i].counter);
}

/* ---- the scheduler, driven ---- */

static struct peer *peer_by_key(struct swarm *sw, uint64_t key)
{
	for (struct peer *p = sw->peers; p; p = p->next)
		if ((uint64_t)(uintptr_t)p == key)
			return p;
	return NULL;
}

static bool peer_offers(const struct peer *p, const uint8_t id[HASH_SIZE])
{
	for (uint16_t i = 0; i < p->n_rel; i++)
		if (!memcmp(p->rel[i].id, id, HASH_SIZE))
			return true; /* holding or fetching it: bitfields and HAVEs flow both ways */
	return false;
}

static void pump_peer(struct swarm *sw, struct peer *p)
{
	struct fetch *f = sw->fetch;
	struct msg m = { .type = MSG_REQUEST };
	uint32_t idx[WIRE_REQUEST_MAX];
	size_t n = 0;

	if (!f || f->reusing || !p->established || p->closing)
		return;
	if (!sent_bitfield_for(p, f->h) && peer_offers(p, f->h->id)) {
		/* our bitfield asks for theirs */
		send_bitfield(p, f->h);
	}
	if (!p->in_sched)
		return;
	/* download limit: no new requests while the bucket is in debt */
	if (sw->d->conf.download_rate && tbucket_delay_ms(&sw->down_all, 1, uv_now(&sw->d->loop)) > 0)
		return;
	if (sched_pick(f->sched, p->sp, uv_now(&sw->d->loop), idx, ELEMENTSOF(idx), &n) < 0 || n == 0)
		return;
	for (size_t i = 0; i < n; i++)
		memcpy(m.request.ids[i], chunk_of(f->h, idx[i])->id, HASH_SIZE);
	m.request.n = (uint16_t)n;
	send_msg(p, &m);
}

static void drain_events(struct swarm *sw)
{
	struct sched_event ev;

	while (sw->fetch && sched_event_next(sw->fetch->sched, &ev) > 0) {
		struct peer *p = peer_by_key(sw, ev.peer_key);

		if (!p)
			continue;
		if (ev.type == SCHED_EV_CANCEL) {
			struct msg m = { .type = MSG_CANCEL };

			memcpy(m.cancel.id, chunk_of(sw->fetch->h, ev.idx)->id, HASH_SIZE);
			send_msg(p, &m);
		} else if (ev.type == SCHED_EV_PEER_STALLED) {
			log_info("peer %s: stalled (requests keep timing out); dropping it", p->id);
			send_goodbye(p, GOODBYE_IDLE, "stalled");
			peer_close(p, "stalled");
		}
	}
}

static void pump(struct swarm *sw)
{
	drain_events(sw);
	for (struct peer *p = sw->peers; p; p = p->next)
		pump_peer(sw, p);
}

static void on_chunk(struct peer *p, const struct msg_chunk *c)
{
	struct swarm *sw = p->sw;
	struct fetch *f = sw->fetch;
	struct perr err = { "" };
	uint32_t first = 0;
	size_t pos;
	char hex[17];
	int k;

	if (!f || f->reusing || !p->in_sched)
		return; /* late: after completion or a restart of the fetch */
	pos = order_find(f->h, c->id);
	if (pos >= f->h->m->n_chunks || memcmp(chunk_of(f->h, f->h->order[pos])->id, c->id, HASH_SIZE) != 0)
		return; /* not ours (an old request): ignore */
	first = f->h->order[pos];
	if (chunk_of(f->h, first)->len != c->plain_len) {
		k = perr_set(&err, -EBADMSG, "chunk %s announced with the wrong length", hex16(c->id, hex));
	} else {
		k = chunk_decode(f->dctx, (enum chunk_enc)c->enc, c->stored, c->stored_len, c->id, c->plain_len, f->buf,
				 &err);
	}
	if (k < 0) {
		uint64_t until = now_s() + sw->d->conf.ban_ms / 1000;

		sched_on_chunk(f->sched, p->sp, first, false, uv_now(&sw->d->loop));
		log_warn("peer %s (%s): banned for %" PRIu64 " s: %s", p->id, p->addr, sw->d->conf.ban_ms / 1000, err.msg);
		state_ban_put(sw->d->st, p->pub, until, err.msg, p->addr);
		send_goodbye(p, GOODBYE_BAD_CHUNK, "bad chunk");
		peer_close(p, "sent a bad chunk");
		return;
	}
	if ((k = write_unit(sw, c->id, f->buf, c->plain_len, &first)) < 0) {
		log_err("target: writing chunk %s failed: %s", hex16(c->id, hex), strerror(-k));
		return;
	}
	/* to forward as it came, when compression paid (by the same 1/32 as
	 * device_read): a gateway's store keeps even random data as zstd
	 * frames, and caching those would hold 8 MiB for nothing */
	if (c->enc == CHUNK_ENC_ZSTD && c->stored_len <= c->plain_len - c->plain_len / 32)
		zcache_put(&sw->zc, c->id, c->stored, c->stored_len);
	sched_on_chunk(f->sched, p->sp, first, true, uv_now(&sw->d->loop));
	if (tbucket_take(&sw->down_all, c->stored_len, uv_now(&sw->d->loop)) < 0)
		sw->down_all.tokens -= (int64_t)c->stored_len * 1000; /* already here: owe it */
	if (p->is_seed)
		sw->pending_rx_seed += c->plain_len;
	else
		sw->pending_rx_peers += c->plain_len;
	if (uv_now(&sw->d->loop) - f->last_sync_ms >= SYNC_EVERY_MS)
		fetch_sync_async(sw);
	if (sched_done(f->sched))
		fetch_complete(sw);
}

/* ---- serving ---- */

/* Fault injection for the tests of what peers do with a liar:
 * SHOAL_FAULT=corrupt-chunks makes this node flip a byte of every chunk it
 * serves. Read once at start; never set in production. */
static void fault_corrupt(struct swarm *sw, struct msg *out)
{
	if (!sw->fault_corrupt || !out->chunk.stored_len)
		return;
	((uint8_t *)out->chunk.stored)[out->chunk.stored_len / 2] ^= 0x5a;
}

/* Finds a chunk we hold by id: the release and the index. */
static struct held *find_chunk(struct swarm *sw, const uint8_t id[HASH_SIZE], uint32_t *ret)
{
	for (struct held *h = sw->held; h; h = h->next)
		for (size_t pos = order_find(h, id);
		     pos < h->m->n_chunks && !memcmp(chunk_of(h, h->order[pos])->id, id, HASH_SIZE); pos++)
			if (held_has(h, h->order[pos])) {
				*ret = h->order[pos];
				return h;
			}
	return NULL;
}

static void send_not_found(struct peer *p, const uint8_t id[HASH_SIZE])
{
	struct msg nf = { .type = MSG_NOT_FOUND };

	memcpy(nf.not_found.id, id, HASH_SIZE);
	send_msg(p, &nf);
}

static uint8_t *head_of(struct peer *p)
{
	return p->upq[p->upq_head];
}

/* Requests are queued per peer and served by serve_pump() as the upload
 * slots and the token buckets (node and per peer) allow. */
static void queue_requests(struct peer *p, const struct msg_request *r)
{
	struct swarm *sw = p->sw;

	for (uint16_t i = 0; i < r->n; i++) {
		uint32_t ci;

		if (!find_chunk(sw, r->ids[i], &ci) || p->upq_n >= UPQ_MAX) {
			send_not_found(p, r->ids[i]);
			continue;
		}
		memcpy(p->upq[(p->upq_head + p->upq_n) % UPQ_MAX], r->ids[i], HASH_SIZE);
		p->upq_n++;
	}
	if (p->upq_n && !p->wants_slot) {
		p->wants_slot = true;
		upslots_want(&sw->slots, (uint64_t)(uintptr_t)p, uv_now(&sw->d->loop));
	}
}

static void upq_del(struct peer *p, size_t i)
{
	/* close the gap: later entries move up one */
	for (size_t j = i; j + 1 < p->upq_n; j++)
		memcpy(p->upq[(p->upq_head + j) % UPQ_MAX], p->upq[(p->upq_head + j + 1) % UPQ_MAX], HASH_SIZE);
	p->upq_n--;
}

static void cancel_request(struct peer *p, const uint8_t id[HASH_SIZE])
{
	for (size_t i = 0; i < p->upq_n; i++) {
		uint8_t *slot = p->upq[(p->upq_head + i) % UPQ_MAX];

		if (memcmp(slot, id, HASH_SIZE) != 0)
			continue;
		upq_del(p, i);
		return;
	}
}

static void release_slot(struct swarm *sw, struct peer *p)
{
	if (p->wants_slot) {
		p->wants_slot = false;
		upslots_done(&sw->slots, (uint64_t)(uintptr_t)p, uv_now(&sw->d->loop));
	}
}

static void serve_timer_cb(uv_timer_t *t);

static struct peer *peer_by_key(struct swarm *sw, uint64_t key);

/* Chunk ci of h went to another peer less than RECENT_MS ago, and that
 * peer is still here to pass it on. */
static bool sent_elsewhere(struct swarm *sw, const struct held *h, uint32_t ci, const struct peer *p, uint64_t now)
{
	struct peer *q;

	if (!h->sent_ms[ci] || now - h->sent_ms[ci] >= RECENT_MS || h->sent_to[ci] == (uint64_t)(uintptr_t)p)
		return false;
	q = peer_by_key(sw, h->sent_to[ci]);
	return q && q->established && !q->closing;
}

/* Moves to the head of p's queue the request to serve next and returns its
 * release and index; NULL when the chunk is not here (any more). Leaves
 * the queue empty when every request was answered "later".
 *
 * The oldest request for a chunk that never went out comes first, then the
 * oldest for one that did not go out recently. A gateway (super-seeding)
 * answers NOT_FOUND to requests for a chunk it sent another connected
 * peer moments ago: the requester gets it from that peer, or asks again
 * later, and the gateway uploads each chunk about once. A device serves
 * the oldest recent one when nothing else is asked for: waiting for the
 * first receiver to announce it would run into the requester's timeouts. */
static struct held *pick_queued(struct swarm *sw, struct peer *p, uint64_t now, uint8_t id[HASH_SIZE], uint32_t *ret)
{
	bool gateway = sw->d->conf.role == ROLE_GATEWAY;
	size_t best = SIZE_MAX, fresh = SIZE_MAX;
	struct held *h;
	uint32_t ci;

	for (size_t i = 0; i < p->upq_n && fresh == SIZE_MAX;) {
		uint8_t *slot = p->upq[(p->upq_head + i) % UPQ_MAX];

		h = find_chunk(sw, slot, &ci);
		if (!h || !h->sent_ms[ci]) {
			fresh = i;
		} else if (now - h->sent_ms[ci] >= RECENT_MS) {
			if (best == SIZE_MAX)
				best = i;
		} else if (gateway && sent_elsewhere(sw, h, ci, p, now)) {
			send_not_found(p, slot);
			upq_del(p, i);
			continue;
		}
		i++;
	}
	if (!p->upq_n)
		return NULL;
	if (fresh != SIZE_MAX)
		best = fresh;
	if (best == SIZE_MAX)
		best = 0;
	if (best) {
		uint8_t *head = p->upq[p->upq_head], *slot = p->upq[(p->upq_head + best) % UPQ_MAX], tmp[HASH_SIZE];

		memcpy(tmp, head, HASH_SIZE);
		memcpy(head, slot, HASH_SIZE);
		memcpy(slot, tmp, HASH_SIZE);
	}
	memcpy(id, head_of(p), HASH_SIZE);
	return find_chunk(sw, id, ret);
}

static void serve_pump(struct swarm *sw)
{
	uint64_t now = uv_now(&sw->d->loop), next = UINT64_MAX;
	struct upslots_event ev;
	bool progress = true;

	upslots_tick(&sw->slots, now);
	while (upslots_event_next(&sw->slots, &ev) > 0)
		; /* may_send below reads the outcome */
	while (progress) {
		progress = false;
		for (struct peer *p = sw->peers; p; p = p->next) {
			struct tbucket *b[2] = { &sw->up_all, &p->up };
			struct msg out = { 0 };
			struct perr err = { "" };
			uint8_t *buf = NULL, id[HASH_SIZE];
			struct held *h;
			uint32_t ci;
			uint64_t d;

			if (!p->upq_n || p->closing || !p->established || p->backlog >= SERVE_AHEAD ||
			    !upslots_may_send(&sw->slots, (uint64_t)(uintptr_t)p))
				continue;
			h = pick_queued(sw, p, now, id, &ci);
			if (!p->upq_n) { /* every request was answered "later" */
				release_slot(sw, p);
				continue;
			}
			if (h && tbucket_take_all(b, 2, chunk_of(h, ci)->len, now) < 0) {
				d = tbucket_delay_all_ms(b, 2, chunk_of(h, ci)->len, now);
				if (d < next)
					next = d;
				continue;
			}
			p->upq_head = (p->upq_head + 1) % UPQ_MAX;
			p->upq_n--;
			progress = true;
			if (!h) {
				send_not_found(p, id);
			} else if (held_read(sw, h, ci, &out, &buf, &err) == 0) {
				fault_corrupt(sw, &out);
				h->sent_ms[ci] = now;
				h->sent_to[ci] = (uint64_t)(uintptr_t)p;
				if (send_msg(p, &out) == 0) {
					sw->pending_tx += out.chunk.stored_len;
					upslots_sent(&sw->slots, (uint64_t)(uintptr_t)p, out.chunk.stored_len, now);
				}
			} else {
				log_err("serving chunk: %s", err.msg);
				send_not_found(p, id);
			}
			free(buf);
			if (!p->upq_n)
				release_slot(sw, p);
		}
	}
	if (next != UINT64_MAX)
		uv_timer_start(&sw->serve_timer, serve_timer_cb, next ? next : 1, 0);
}

static void serve_timer_cb(uv_timer_t *t)
{
	serve_pump(t->data);
}

/* ---- frames ---- */

static int on_frame(void *ud, const uint8_t *plain, size_t n)
{
	struct peer *p = ud;
	struct swarm *sw = p->sw;
	struct perr err = { "" };
	struct msg m;
	int k;

	if ((k = wire_decode(plain, n, &m, &err)) < 0) {
		log_warn("peer %s: malformed frame: %s", p->id, err.msg);
		send_goodbye(p, GOODBYE_PROTOCOL_ERROR, "malformed frame");
		return k;
	}
	p->rx_bytes += n;
	switch (m.type) {
	case MSG_HELLO:
		snprintf(p->product, sizeof(p->product), "%.*s", (int)m.hello.product_len, m.hello.product);
		snprintf(p->name, sizeof(p->name), "%.*s", (int)m.hello.name_len, m.hello.name);
		p->port = m.hello.port;
		p->is_seed = m.hello.role == HELLO_ROLE_GATEWAY;
		log_info("peer %s: %s '%s' for %s", p->id, p->is_seed ? "gateway" : "device", p->name, p->product);
		if (p->is_seed && sw->d->conf.role == ROLE_DEVICE)
			fleet_gateway_hello(sw->d->fleet);
		break;
	case MSG_RELEASES:
		p->n_rel = m.releases.n;
		memcpy(p->rel, m.releases.v, m.releases.n * sizeof(m.releases.v[0]));
		log_old_offers(p);
		consider_releases(p);
		break;
	case MSG_GET_MANIFEST: {
		struct held *h = held_find(sw, m.get_manifest.id);
		struct msg out = { .type = MSG_MANIFEST_PART };

		if (!h || m.get_manifest.offset >= h->mlen)
			break;
		memcpy(out.manifest_part.id, h->id, HASH_SIZE);
		out.manifest_part.total = (uint32_t)h->mlen;
		out.manifest_part.offset = m.get_manifest.offset;
		out.manifest_part.bytes = h->mbytes + m.get_manifest.offset;
		out.manifest_part.len = h->mlen - m.get_manifest.offset;
		if (out.manifest_part.len > WIRE_MANIFEST_PART_MAX)
			out.manifest_part.len = WIRE_MANIFEST_PART_MAX;
		send_msg(p, &out);
		break;
	}
	case MSG_MANIFEST_PART: {
		const struct msg_manifest_part *mp = &m.manifest_part;

		if (memcmp(mp->id, p->mid, HASH_SIZE) != 0 || mp->offset != p->mgot ||
		    (p->mbuf && mp->total != p->mtotal))
			break; /* unasked or out of order: ignore */
		if (!p->mbuf) {
			p->mbuf = malloc(mp->total);
			p->mtotal = mp->total;
			if (!p->mbuf)
				break;
		}
		memcpy(p->mbuf + mp->offset, mp->bytes, mp->len);
		p->mgot += (uint32_t)mp->len;
		if (p->mgot == p->mtotal) {
			manifest_received(p);
		} else {
			struct msg g = { .type = MSG_GET_MANIFEST };

			memcpy(g.get_manifest.id, p->mid, HASH_SIZE);
			g.get_manifest.offset = p->mgot;
			send_msg(p, &g);
		}
		break;
	}
	case MSG_GET_KEYRING:
		if (sw->keyring_bytes && sw->keyring->version >= m.get_keyring.min_version) {
			struct msg out = { .type = MSG_KEYRING };

			out.keyring.bytes = sw->keyring_bytes;
			out.keyring.len = sw->keyring_len;
			send_msg(p, &out);
		}
		break;
	case MSG_KEYRING: {
		struct keyring *kr = NULL;
		uint64_t floor = 0;

		state_floor_get(sw->d->st, "keyring", &floor);
		if (keyring_parse(m.keyring.bytes, m.keyring.len, &kr, &err) < 0 ||
		    trust_check_keyring(&sw->roots, kr, now_s(), &err) < 0) {
			log_warn("peer %s: keyring refused: %s", p->id, err.msg);
			keyring_free(kr);
			break;
		}
		if (kr->version < floor) {
			log_warn("peer %s: keyring v%" PRIu64 " refused: below the stored keyring version %" PRIu64
				 " (rollback refused)", p->id, kr->version, floor);
			keyring_free(kr);
			break;
		}
		if (sw->keyring && kr->version <= sw->keyring->version) {
			log_debug("peer %s: keyring v%" PRIu64 " is not newer than ours (v%" PRIu64 ")", p->id, kr->version,
				  sw->keyring->version);
			keyring_free(kr);
			break;
		}
		/* the floor is durable before the keyring is used */
		if (state_floor_raise(sw->d->st, "keyring", kr->version) < 0 ||
		    state_keyring_put(sw->d->st, kr->version, m.keyring.bytes, m.keyring.len) < 0) {
			keyring_free(kr);
			break;
		}
		log_notice("keyring v%" PRIu64 " accepted from peer %s", kr->version, p->id);
		keyring_free(sw->keyring);
		free(sw->keyring_bytes);
		sw->keyring = kr;
		sw->keyring_bytes = malloc(m.keyring.len);
		if (sw->keyring_bytes)
			memcpy(sw->keyring_bytes, m.keyring.bytes, sw->keyring_len = m.keyring.len);
		consider_releases(p);
		break;
	}
	case MSG_BITFIELD: {
		struct held *h = held_find(sw, m.bitfield.id);

		if (!h)
			break;
		/* theirs asks for ours, for this release: a connection carries
		 * one release after another (version 2, then 3) */
		if (!sent_bitfield_for(p, h))
			send_bitfield(p, h);
		if (sw->fetch && sw->fetch->h == h && m.bitfield.count == h->m->n_chunks) {
			if (!p->in_sched && sched_peer_add(sw->fetch->sched, (uint64_t)(uintptr_t)p, p->is_seed, &p->sp) == 0)
				p->in_sched = true;
			if (p->in_sched)
				sched_peer_bitfield(sw->fetch->sched, p->sp, m.bitfield.bits, m.bitfield.count);
		}
		break;
	}
	case MSG_HAVE:
		if (sw->fetch && p->in_sched && !memcmp(m.have.id, sw->fetch->h->id, HASH_SIZE))
			for (uint16_t i = 0; i < m.have.n; i++)
				if (m.have.idx[i] < sw->fetch->h->m->n_chunks)
					sched_peer_has(sw->fetch->sched, p->sp, m.have.idx[i]);
		break;
	case MSG_REQUEST:
		queue_requests(p, &m.request);
		serve_pump(sw);
		break;
	case MSG_CHUNK:
		on_chunk(p, &m.chunk);
		break;
	case MSG_NOT_FOUND:
		if (sw->fetch && p->in_sched) {
			size_t pos = order_find(sw->fetch->h, m.not_found.id);

			if (pos < sw->fetch->h->m->n_chunks)
				sched_on_not_found(sw->fetch->sched, p->sp, sw->fetch->h->order[pos], uv_now(&sw->d->loop));
		}
		break;
	case MSG_PING: {
		struct msg out = { .type = MSG_PONG };

		out.pong.nonce = m.ping.nonce;
		send_msg(p, &out);
		break;
	}
	case MSG_GOODBYE:
		log_info("peer %s: says goodbye (reason %u: %.*s)", p->id, m.goodbye.reason, (int)m.goodbye.text_len,
			 m.goodbye.text);
		return -ECONNRESET;
	case MSG_CANCEL:
		cancel_request(p, m.cancel.id);
		if (!p->upq_n)
			release_slot(sw, p);
		break;
	case MSG_REPORT:
		if (sw->d->conf.role == ROLE_GATEWAY)
			fleet_on_report(sw->d->fleet, p->pub, &m.report, plain + 1, n - 1);
		break;
	case MSG_COMMAND:
		if (p->is_seed && sw->d->conf.role == ROLE_DEVICE)
			fleet_on_command(sw->d->fleet, p->id, &m.command);
		break;
	case MSG_PONG:
	case MSG_IDENT:
		break;
	}
	if (!p->closing)
		pump(sw);
	return 0;
}

static int on_established(void *ud, const uint8_t pub[PUBKEY_SIZE])
{
	struct peer *p = ud;
	struct swarm *sw = p->sw;
	struct daemon *d = sw->d;
	struct msg m = { .type = MSG_HELLO };
	uint64_t until;

	memcpy(p->pub, pub, PUBKEY_SIZE);
	hex16(pub, p->id);
	if (!memcmp(pub, d->device_pk, PUBKEY_SIZE))
		return -ELOOP; /* we dialled ourselves */
	if ((until = state_ban_until(d->st, pub)) > now_s()) {
		log_info("peer %s (%s): still banned for %" PRIu64 " s", p->id, p->addr, until - now_s());
		p->established = true;
		send_goodbye(p, GOODBYE_BANNED, "banned");
		return -EACCES;
	}
	for (struct peer *o = sw->peers; o; o = o->next)
		if (o != p && o->established && !o->closing && !memcmp(o->pub, pub, PUBKEY_SIZE)) {
			/* one connection per pair: keep the one dialled by the smaller key */
			bool keep_new = (memcmp(d->device_pk, pub, PUBKEY_SIZE) < 0) == p->initiator;

			if (!keep_new)
				return -EEXIST;
			peer_close(o, "duplicate connection");
			break;
		}
	p->established = true;
	log_info("peer %s (%s): connected", p->id, p->addr);
	m.hello.version = WIRE_VERSION;
	m.hello.role = d->conf.role == ROLE_GATEWAY ? HELLO_ROLE_GATEWAY : HELLO_ROLE_DEVICE;
	m.hello.port = d->port;
	m.hello.product = d->conf.product;
	m.hello.product_len = strlen(d->conf.product);
	m.hello.name = d->conf.name;
	m.hello.name_len = strnlen(d->conf.name, WIRE_NAME_MAX);
	send_msg(p, &m);
	send_releases(p);
	if (d->conf.role == ROLE_DEVICE) {
		struct msg g = { .type = MSG_GET_KEYRING };

		g.get_keyring.min_version = sw->keyring ? sw->keyring->version + 1 : 1;
		send_msg(p, &g);
	}
	return 0;
}

static const struct session_ops ops = {
	.send = session_send_cb,
	.on_established = on_established,
	.on_frame = on_frame,
};

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct peer *p = container_of((uv_tcp_t *)h, struct peer, tcp);

	(void)hint;
	buf->base = (char *)p->sw->rbuf;
	buf->len = sizeof(p->sw->rbuf);
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct peer *p = container_of((uv_tcp_t *)s, struct peer, tcp);
	int k;

	(void)buf;
	if (p->closing)
		return;
	if (n < 0) {
		peer_close(p, n == UV_EOF ? "closed by the peer" : uv_strerror((int)n));
		return;
	}
	p->last_rx_ms = uv_now(&p->sw->d->loop);
	k = session_feed(p->s, p->sw->rbuf, (size_t)n);
	if (k < 0 && !p->closing) {
		if (k == -EACCES && !p->established)
			log_info("connection %s: not a member of this fleet (wrong fleet secret)", p->addr);
		else if (k != -ECONNRESET && k != -EEXIST && k != -ELOOP && k != -EACCES)
			log_warn("peer %s (%s): %s", p->established ? p->id : "?", p->addr, session_error(p->s));
		peer_close(p, k == -EEXIST ? "duplicate connection" : k == -ELOOP ? "ourselves" : "session ended");
	}
}

static struct peer *peer_new(struct swarm *sw, bool initiator)
{
	struct peer *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->sw = sw;
	p->initiator = initiator;
	p->last_rx_ms = uv_now(&sw->d->loop);
	snprintf(p->id, sizeof(p->id), "?");
	p->upq = malloc(UPQ_MAX * HASH_SIZE);
	tbucket_init(&p->up, sw->d->conf.peer_upload_rate, burst_for(sw->d->conf.peer_upload_rate),
		     uv_now(&sw->d->loop));
	if (!p->upq) {
		free(p);
		return NULL;
	}
	if (session_new(initiator, sw->d->fleet_key, sw->d->device_sk, &ops, p, &p->s) < 0) {
		free(p->upq);
		free(p);
		return NULL;
	}
	uv_tcp_init(&sw->d->loop, &p->tcp);
	uv_tcp_nodelay(&p->tcp, 1);
	p->next = sw->peers;
	sw->peers = p;
	return p;
}

/* The kernel keeps at most NOTSENT_LOWAT unsent bytes of the connection:
 * the rest waits in our queue, where serve_pump() sees it (SERVE_AHEAD). */
static void limit_unsent(struct peer *p)
{
	int v = NOTSENT_LOWAT;
	uv_os_fd_t fd;

	if (uv_fileno((uv_handle_t *)&p->tcp, &fd) == 0 &&
	    setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &v, sizeof(v)) < 0)
		log_debug("connection %s: TCP_NOTSENT_LOWAT: %s", p->addr, strerror(errno));
}

static void addr_text(uv_tcp_t *t, char *out, size_t size)
{
	struct sockaddr_storage ss;
	int len = sizeof(ss);
	char ip[64] = "?";

	if (uv_tcp_getpeername(t, (struct sockaddr *)&ss, &len) == 0) {
		if (ss.ss_family == AF_INET)
			uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof(ip));
		else
			uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof(ip));
		snprintf(out, size, "%s:%u", ip,
			 ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
						       : ((struct sockaddr_in6 *)&ss)->sin6_port));
	} else {
		snprintf(out, size, "?");
	}
}

void swarm_accept(struct swarm *sw, uv_stream_t *server)
{
	size_t n = 0;
	struct peer *p;

	for (p = sw->peers; p; p = p->next)
		n++;
	p = peer_new(sw, false);
	if (!p)
		return;
	if (uv_accept(server, (uv_stream_t *)&p->tcp) < 0) {
		peer_close(p, "accept failed");
		return;
	}
	addr_text(&p->tcp, p->addr, sizeof(p->addr));
	limit_unsent(p);
	if (sw->stopping || n >= sw->d->conf.max_connections) {
		peer_close(p, "too many connections");
		return;
	}
	session_start(p->s);
	uv_read_start((uv_stream_t *)&p->tcp, alloc_cb, read_cb);
}

static void connect_cb(uv_connect_t *c, int status)
{
	struct peer *p = container_of(c, struct peer, conn);

	if (p->closing)
		return;
	if (status < 0) {
		struct swarm *sw = p->sw;
		uint64_t now = uv_now(&sw->d->loop);

		/* Right after a link outage the kernel may still hold the
		 * neighbour entries that failed while the cable was out: the
		 * first dials fail at once (EHOSTUNREACH) and the next one
		 * resolves afresh. Try again at the next tick, not in 2 s. */
		if (p->dialer && sw->link_back_ms && now - sw->link_back_ms < LINK_REDIAL_MS &&
		    (status == UV_EHOSTUNREACH || status == UV_ENETUNREACH))
			p->dialer->next_try_ms = now;
		peer_close(p, uv_strerror(status));
		return;
	}
	addr_text(&p->tcp, p->addr, sizeof(p->addr));
	limit_unsent(p);
	uv_read_start((uv_stream_t *)&p->tcp, alloc_cb, read_cb);
	if (session_start(p->s) < 0)
		peer_close(p, "handshake could not start");
}

static void dial(struct swarm *sw, struct dialer *dl)
{
	struct peer *p = peer_new(sw, true);

	if (!p)
		return;
	p->dialer = dl;
	dl->p = p;
	snprintf(p->addr, sizeof(p->addr), "%s", dl->text);
	if (uv_tcp_connect(&p->conn, &p->tcp, (struct sockaddr *)&dl->addr, connect_cb) < 0)
		peer_close(p, "connect failed");
}

/* A connection to the node a dialer names, whichever side dialled: both
 * ends of a pair may dial each other, one connection survives, and the
 * other dialer must not redial it every DIAL_RETRY_MS. */
static bool dialer_connected(struct swarm *sw, const struct dialer *dl)
{
	char ip[INET_ADDRSTRLEN];
	size_t n;

	if (uv_ip4_name(&dl->addr, ip, sizeof(ip)) < 0)
		return false;
	n = strlen(ip);
	for (struct peer *p = sw->peers; p; p = p->next)
		if (p->established && !p->closing && p->port == ntohs(dl->addr.sin_port) &&
		    !strncmp(p->addr, ip, n) && p->addr[n] == ':')
			return true;
	return false;
}

static void tick_cb(uv_timer_t *t)
{
	struct swarm *sw = t->data;
	uint64_t now = uv_now(&sw->d->loop);

	for (size_t i = 0; i < sw->n_dialers; i++) {
		struct dialer *dl = &sw->dialers[i];

		if (dl->gone)
			continue;
		if (!dl->p && now >= dl->next_try_ms) {
			dl->next_try_ms = now + DIAL_RETRY_MS;
			if (dialer_connected(sw, dl))
				continue;
			dial(sw, dl);
		}
	}
	if (sw->fetch) {
		sched_tick(sw->fetch->sched, now);
		if (now - sw->fetch->last_sync_ms >= SYNC_EVERY_MS)
			fetch_sync_async(sw);
	}
	if (now - sw->last_counters_ms >= SYNC_EVERY_MS) {
		flush_counters(sw);
		sw->last_counters_ms = now;
	}
	pump(sw);
	for (struct peer *p = sw->peers; p; p = p->next)
		consider_releases(p);
}

/* Is something of ours or theirs waiting on this connection: our own
 * bytes unacknowledged (TCP_INFO), or chunks we are fetching from it?
 * An idle connection that was silent across an outage is healthy. */
static bool stuck(struct swarm *sw, struct peer *p)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	uv_os_fd_t fd;

	if (sw->fetch && p->in_sched)
		return true;
	if (uv_fileno((uv_handle_t *)&p->tcp, &fd) < 0 || getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
		return false;
	return ti.tcpi_unacked > 0 || ti.tcpi_backoff > 0;
}

void swarm_link_up(struct swarm *sw, const char *ifname, uint64_t down_ms)
{
	uint64_t now;
	unsigned dropped = 0;

	if (!sw || sw->stopping)
		return;
	now = uv_now(&sw->d->loop);
	/* A connection that heard nothing since the carrier went away had its
	 * data lost in the outage, and TCP retries it only when its backed-off
	 * timer fires. After a second or more that can be seconds away: drop
	 * it (with a reset, which leaves at once) and dial again now. Shorter
	 * outages are left to TCP, which retries soon enough. */
	if (down_ms >= LINK_OUTAGE_MS)
		for (struct peer *p = sw->peers, *next; p; p = next) {
			next = p->next;
			if (p->closing)
				continue;
			if (!p->established && p->initiator) {
				/* a dial or handshake begun in the outage: its SYN
				 * or first frame waits for TCP's backed-off retry */
				peer_close(p, "dialled across the link outage");
				continue;
			}
			if (p->established && now - p->last_rx_ms >= down_ms && stuck(sw, p)) {
				p->reset_on_close = true;
				peer_close(p, "heard nothing across the link outage");
				dropped++;
			}
		}
	sw->link_back_ms = now;
	if (down_ms)
		log_notice("network: %s has its carrier back after %.1f s; %u silent connection(s) dropped, dialling "
			   "peers now", ifname, (double)down_ms / 1000, dropped);
	else
		log_notice("network: %s has its carrier back (its loss was not seen); dialling peers now", ifname);
	for (size_t i = 0; i < sw->n_dialers; i++)
		sw->dialers[i].next_try_ms = now;
	tick_cb(&sw->tick);
}

static bool same_addr(const struct sockaddr_in *a, const struct sockaddr_in *b)
{
	return a->sin_addr.s_addr == b->sin_addr.s_addr && a->sin_port == b->sin_port;
}

int swarm_add_candidate(struct swarm *sw, const struct sockaddr_in *addr, const char *device_id)
{
	struct dialer *free_slot = NULL;
	char ip[INET_ADDRSTRLEN];

	for (size_t i = 0; i < sw->n_dialers; i++) {
		struct dialer *dl = &sw->dialers[i];

		if (same_addr(&dl->addr, addr)) {
			dl->gone = false;
			return -EEXIST;
		}
		if (dl->dynamic && dl->gone && !dl->p && !free_slot)
			free_slot = dl;
	}
	/* our own announcement comes back too: the handshake would catch it,
	 * but it is cheaper not to dial */
	if (device_id && !strncmp(device_id, hex16(sw->d->device_pk, (char[17]){ 0 }), 16))
		return -ELOOP;
	if (!free_slot) {
		if (sw->n_dialers >= sw->cap_dialers)
			return -ENOSPC; /* the peer table is bounded: a flood changes nothing */
		free_slot = &sw->dialers[sw->n_dialers++];
	}
	*free_slot = (struct dialer){ .addr = *addr, .dynamic = true };
	uv_ip4_name(addr, ip, sizeof(ip));
	snprintf(free_slot->text, sizeof(free_slot->text), "%s:%u", ip, ntohs(addr->sin_port));
	log_debug("discovered %s (device %s)", free_slot->text, device_id ? device_id : "?");
	return 0;
}

void swarm_remove_candidate(struct swarm *sw, const struct sockaddr_in *addr)
{
	for (size_t i = 0; i < sw->n_dialers; i++)
		if (sw->dialers[i].dynamic && same_addr(&sw->dialers[i].addr, addr))
			sw->dialers[i].gone = true;
}

/* ---- setup ---- */

/* The keyring a release would be checked with: its own when newer than
 * ours (and then it must pass the roots), ours otherwise. */
static const struct keyring *keyring_for(struct swarm *sw, const struct keyring *own)
{
	return own && (!sw->keyring || own->version > sw->keyring->version) ? own : sw->keyring;
}

int swarm_check_release(struct swarm *sw, const struct manifest *m, const struct keyring *own, struct perr *err)
{
	const struct keyring *kr = keyring_for(sw, own);
	int k;

	if (kr == own && kr && (k = trust_check_keyring(&sw->roots, kr, now_s(), err)) < 0)
		return k;
	return trust_check_manifest(&sw->roots, kr, m, now_s(), NULL, err);
}

int swarm_hold(struct swarm *sw, const uint8_t *mbytes, size_t mlen, int fd, int slot, struct perr *err)
{
	struct manifest *m = NULL;
	uint8_t *copy;
	struct held *h;
	int k;

	if ((k = manifest_parse(mbytes, mlen, &m, err)) < 0) {
		close(fd);
		return k;
	}
	copy = malloc(mlen);
	if (copy)
		memcpy(copy, mbytes, mlen);
	if (!copy || !(h = held_new(m, copy, mlen))) {
		free(copy);
		manifest_free(m);
		close(fd);
		return perr_set(err, -ENOMEM, "out of memory");
	}
	if (held_find(sw, h->id)) {
		held_free(h);
		close(fd);
		return 0;
	}
	h->fd = fd;
	h->slot = slot;
	h->next = sw->held;
	sw->held = h;
	broadcast_releases(sw);
	return 0;
}

void swarm_forget(struct swarm *sw, const uint8_t id[HASH_SIZE])
{
	for (struct held **pp = &sw->held; *pp; pp = &(*pp)->next) {
		struct held *h = *pp;

		if (memcmp(h->id, id, HASH_SIZE) != 0 || (sw->fetch && sw->fetch->h == h))
			continue;
		*pp = h->next;
		held_free(h);
		break;
	}
	state_have_clear(sw->d->st, id);
	state_release_set_state(sw->d->st, id, REL_FETCHING);
	broadcast_releases(sw);
}

bool swarm_holds(struct swarm *sw, const uint8_t id[HASH_SIZE])
{
	return held_find(sw, id) != NULL;
}

static int import_release(struct swarm *sw, const char *path, struct perr *err)
{
	struct release *r = NULL;
	uint8_t *mbytes = NULL;
	size_t mlen;
	struct held *h;
	char hex[17];
	int k;

	if ((k = release_open(path, &r, err)) < 0)
		return k;
	if ((k = swarm_check_release(sw, r->manifest, r->keyring, err)) < 0)
		goto fail;
	if (r->keyring && keyring_for(sw, r->keyring) == r->keyring) {
		keyring_free(sw->keyring);
		free(sw->keyring_bytes);
		sw->keyring = NULL;
		if ((k = keyring_format(r->keyring, &sw->keyring_bytes, &sw->keyring_len, err)) < 0 ||
		    (k = keyring_parse(sw->keyring_bytes, sw->keyring_len, &sw->keyring, err)) < 0)
			goto fail;
	}
	if ((k = manifest_format(r->manifest, &mbytes, &mlen, err)) < 0)
		goto fail;
	h = held_new(r->manifest, mbytes, mlen);
	if (!h) {
		k = perr_set(err, -ENOMEM, "out of memory");
		goto fail;
	}
	if (held_find(sw, h->id)) { /* the same release from another source */
		h->m = NULL;
		held_free(h);
		release_close(r);
		return 0;
	}
	r->manifest = NULL;
	h->src = r;
	h->next = sw->held;
	sw->held = h;
	state_release_put(sw->d->st, h->id, h->m, h->mbytes, h->mlen, REL_SEEDING);
	log_notice("seeding %s %s (counter %" PRIu64 ", %zu chunks, id %s) from %s", h->m->product, h->m->version,
		   h->m->counter, h->m->n_chunks, hex16(h->id, hex), path);
	return 0;
fail:
	free(mbytes);
	release_close(r);
	return perr_prefix(err, k, "%s: ", path);
}

int swarm_import(struct swarm *sw, const char *path, struct perr *err)
{
	int k = import_release(sw, path, err);

	if (k >= 0)
		broadcast_releases(sw);
	return k;
}

static int restore_cb(void *ud, const struct state_release *r)
{
	struct swarm *sw = ud;
	struct state_release full;
	struct manifest *m = NULL;
	struct perr err = { "" };
	struct held *h;

	if (sw->d->conf.role != ROLE_DEVICE || (r->st != REL_FETCHING && r->st != REL_COMPLETE) ||
	    sw->fetch || held_find(sw, r->id))
		return 0;
	/* with slots: only a fetch cut short (or not installed yet) in the
	 * inactive slot resumes; the slots' own releases are held by device.c */
	if (sw->d->dev && (r->counter <= best_counter(sw) || refused(sw, r->id) || !device_slot_fetching(sw->d)))
		return 0;
	/* only the newest matters: older ones are no longer in the target */
	if (sw->held)
		return 0;
	if (state_release_get(sw->d->st, r->id, &full) < 0)
		return 0;
	if (manifest_parse(full.manifest, full.manifest_len, &m, &err) < 0 || !(h = held_new(m, full.manifest,
											       full.manifest_len))) {
		log_err("state: stored manifest of %s unreadable: %s", r->version, err.msg);
		manifest_free(m);
		free(full.manifest);
		return 0;
	}
	if (r->st == REL_FETCHING || sw->d->dev) {
		if (fetch_start(sw, h, &err) < 0) {
			log_err("cannot resume %s: %s", r->version, err.msg);
			held_free(h);
		}
	} else {
		h->fd = open(sw->d->conf.target, O_RDONLY | O_CLOEXEC);
		if (h->fd < 0) {
			held_free(h);
			return 0;
		}
		h->next = sw->held;
		sw->held = h;
		log_info("holding %s %s (counter %" PRIu64 ") in %s", h->m->product, h->m->version, h->m->counter,
			 sw->d->conf.target);
	}
	return 0;
}

int swarm_new(struct daemon *d, struct swarm **ret, struct perr *err)
{
	struct conf *c = &d->conf;
	struct swarm *sw = calloc(1, sizeof(*sw));
	int k;

	if (!sw)
		return perr_set(err, -ENOMEM, "out of memory");
	sw->d = d;
	*ret = sw;
	/* first: swarm_stop closes them, also after a failure below */
	uv_timer_init(&d->loop, &sw->serve_timer);
	sw->serve_timer.data = sw;
	uv_timer_init(&d->loop, &sw->tick);
	sw->tick.data = sw;
	uv_timer_init(&d->loop, &sw->have_timer);
	sw->have_timer.data = sw;
	{
		const char *f = getenv("SHOAL_FAULT");

		sw->fault_corrupt = f && !strcmp(f, "corrupt-chunks");
		if (sw->fault_corrupt)
			log_warn("fault injection: every chunk served will be corrupt (SHOAL_FAULT=corrupt-chunks)");
	} /* swarm_free cleans up after a failure below */
	sw->root_keys = calloc(c->trust.n ? c->trust.n : 1, PUBKEY_SIZE);
	if (!sw->root_keys)
		return perr_set(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < c->trust.n; i++)
		if ((k = key_read_public(c->trust.v[i], sw->root_keys[i], err)) < 0)
			return perr_prefix(err, k, "[fleet] trust: ");
	sw->roots = (struct trust_roots){ .keys = (const uint8_t(*)[PUBKEY_SIZE])sw->root_keys, .n = c->trust.n };

	if (state_keyring_get(d->st, &sw->keyring_bytes, &sw->keyring_len) == 0 &&
	    keyring_parse(sw->keyring_bytes, sw->keyring_len, &sw->keyring, err) < 0) {
		log_warn("state: stored keyring unreadable (%s); ignoring it", err->msg);
		free(sw->keyring_bytes);
		sw->keyring_bytes = NULL;
	}
	for (size_t i = 0; c->role == ROLE_GATEWAY && i < c->import.n; i++)
		if ((k = import_release(sw, c->import.v[i], err)) < 0)
			return k;
	state_release_foreach(d->st, restore_cb, sw);

	sw->cap_dialers = c->static_peers.n + 1 + c->max_peers;
	sw->dialers = calloc(sw->cap_dialers, sizeof(*sw->dialers));
	if (!sw->dialers)
		return perr_set(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i <= c->static_peers.n; i++) {
		const char *s = i < c->static_peers.n ? c->static_peers.v[i] : c->gateway;

		if (!s)
			continue;
		if (conf_parse_hostport(s, &sw->dialers[sw->n_dialers].addr) < 0)
			return perr_set(err, -EINVAL, "'%s' is not IPv4-ADDRESS:PORT", s);
		snprintf(sw->dialers[sw->n_dialers].text, sizeof(sw->dialers[0].text), "%s", s);
		sw->n_dialers++;
	}
	{
		struct upslots_params up;
		uint64_t now = uv_now(&d->loop);

		upslots_params_default(&up);
		up.slots = c->upload_slots;
		if (upslots_init(&sw->slots, &up) < 0)
			return perr_set(err, -ENOMEM, "out of memory");
		tbucket_init(&sw->up_all, c->upload_rate, burst_for(c->upload_rate), now);
		tbucket_init(&sw->down_all, c->download_rate, burst_for(c->download_rate), now);
	}
	uv_timer_start(&sw->tick, tick_cb, 0, TICK_MS);
	return 0;
}

void swarm_stop(struct swarm *sw)
{
	if (!sw || sw->stopping)
		return;
	sw->stopping = true;
	fetch_sync(sw);
	flush_counters(sw);
	while (sw->peers) {
		struct peer *p = sw->peers;

		send_goodbye(p, GOODBYE_SHUTDOWN, "shutting down");
		peer_close(p, "shutting down");
	}
	if (!uv_is_closing((uv_handle_t *)&sw->tick))
		uv_close((uv_handle_t *)&sw->tick, NULL);
	if (!uv_is_closing((uv_handle_t *)&sw->serve_timer))
		uv_close((uv_handle_t *)&sw->serve_timer, NULL);
	if (!uv_is_closing((uv_handle_t *)&sw->have_timer))
		uv_close((uv_handle_t *)&sw->have_timer, NULL);
}

void swarm_free(struct swarm *sw)
{
	if (!sw)
		return;
	fetch_free(sw->fetch);
	zcache_clear(&sw->zc);
	ZSTD_freeCCtx(sw->cctx);
	while (sw->held) {
		struct held *h = sw->held;

		sw->held = h->next;
		held_free(h);
	}
	keyring_free(sw->keyring);
	free(sw->keyring_bytes);
	upslots_deinit(&sw->slots);
	free(sw->root_keys);
	free(sw->dialers);
	free(sw);
}

json_t *swarm_cache_json(struct swarm *sw)
{
	return json_pack("{s:I, s:I, s:I, s:I}", "hits", (json_int_t)sw->zc_hits, "misses", (json_int_t)sw->zc_misses,
			 "chunks", (json_int_t)sw->zc.n, "bytes", (json_int_t)sw->zc.bytes);
}

json_t *swarm_peers_json(struct swarm *sw)
{
	json_t *a = json_array();

	for (struct peer *p = sw->peers; p; p = p->next) {
		struct sched_peer_stats ps = { 0 };

		if (!p->established || p->closing)
			continue;
		if (p->in_sched && sw->fetch)
			sched_get_peer_stats(sw->fetch->sched, p->sp, &ps);
		json_array_append_new(a, json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I}", "id", p->id, "name", p->name,
						   "address", p->addr, "role", p->is_seed ? "gateway" : "device", "rx",
						   (json_int_t)p->rx_bytes, "tx", (json_int_t)p->tx_bytes, "rate_bps",
						   (json_int_t)ps.rate_bps, "in_flight", (json_int_t)ps.in_flight));
	}
	return a;
}

int swarm_send_gateways(struct swarm *sw, const struct msg *m)
{
	int n = 0;

	for (struct peer *p = sw->peers; p; p = p->next)
		if (p->established && !p->closing && p->is_seed && send_msg(p, m) == 0)
			n++;
	return n;
}

int swarm_send_to(struct swarm *sw, const uint8_t pub[PUBKEY_SIZE], const struct msg *m)
{
	for (struct peer *p = sw->peers; p; p = p->next)
		if (p->established && !p->closing && !memcmp(p->pub, pub, PUBKEY_SIZE))
			return send_msg(p, m);
	return -ENOTCONN;
}

json_t *swarm_fetch_json(struct swarm *sw)
{
	struct sched_stats st;
	struct fetch *f = sw->fetch;
	char hex[2 * HASH_SIZE + 1];

	if (!f)
		return json_null();
	sched_get_stats(f->sched, &st);
	return json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I}", "id", hex_encode(f->h->id, HASH_SIZE, hex), "version",
			 f->h->m->version, "chunks_held", (json_int_t)f->h->n_have, "chunks_total",
			 (json_int_t)f->h->m->n_chunks, "bytes_held", (json_int_t)st.bytes_held, "bytes_total",
			 (json_int_t)st.bytes_total, "from_peers", (json_int_t)st.bytes_from_peers, "from_gateway",
			 (json_int_t)st.bytes_from_seeds);
}

uint64_t swarm_newest_counter(struct swarm *sw)
{
	uint64_t best = 0;

	for (struct held *h = sw->held; h; h = h->next)
		if (!h->have && h->m->counter > best)
			best = h->m->counter;
	return best;
}

unsigned swarm_load(struct swarm *sw)
{
	unsigned n = 0;

	for (struct peer *p = sw->peers; p; p = p->next)
		n += p->established && !p->closing;
	return n;
}
