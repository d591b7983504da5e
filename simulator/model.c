/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Model mode. Time is in microseconds of simulated time; the scheduler gets
 * milliseconds, as shoald passes uv_now(). Node number n_devices is the
 * gateway.
 *
 * What a device does is what daemon/swarm.c does, call for call:
 *  - fetch start: sched_new() with shoald's parameters, sched_have() for the
 *    chunks reused from version 1 (and, after a restart, those verified
 *    before), then a bitfield exchange with every connected peer that
 *    offers the release (sched_peer_add() + sched_peer_bitfield());
 *  - a CHUNK: sched_on_chunk(valid) (invalid: the sender is banned and the
 *    connection closed), HAVE to every peer (batched for HAVE_DELAY_US),
 *    CANCEL events sent, then every peer pumped (sched_pick());
 *  - a HAVE: sched_peer_has(), then that peer and the seeds pumped (the only
 *    ones whose picks it can change; shoald pumps every peer, to the same
 *    effect);
 *  - NOT_FOUND: sched_on_not_found(); every 200 ms: sched_tick() and a pump;
 *    PEER_STALLED: the connection is closed and dialled again 2 s later.
 * Serving: requests queue per connection; upload slots (proto/ratelimit's
 * upslots, shoald's 4 by default) decide which connections are served; the
 * chunk sent is the oldest queued one that never went out, else the oldest
 * that did not go out in the last 3 s (shoald's RECENT_MS); the gateway
 * answers "later" for a chunk it sent another live node in those 3 s
 * (super-seeding), as in swarm.c's pick_queued().
 *
 * The network: a connection takes chunks while less than SEND_AHEAD bytes
 * wait in it (swarm.c's SERVE_AHEAD and TCP_NOTSENT_LOWAT) and carries them
 * one after the other; a transfer's rate is min(uplink of the sender / its
 * transfers, downlink of the receiver / its transfers), recomputed whenever
 * either side starts or ends one, and it moves wire bytes (headers of each
 * packet, the CHUNK frame). Latency delays requests, cancels, HAVEs and the
 * end of each chunk; a message also waits behind the chunk bytes already
 * committed to its connection (one TCP stream); each lost packet is sent
 * again and delays its chunk by one round trip. */
#include <math.h>
#include <time.h>

#include "model.h"
#include "ratelimit.h"
#include "scheduler.h"

#define TICK_US 200000u
#define HAVE_DELAY_US 20000u /* swarm.c's HAVE_DELAY_MS */
#define RECENT_US 3000000u
#define REDIAL_US 2000000u
#define MSS 1448u
#define REQ_MAX 64u        /* WIRE_REQUEST_MAX */
#define UPQ_MAX 1024u      /* requests queued per peer, as shoald */
#define MANIFEST_RTTS 3u   /* RELEASES, GET_MANIFEST, keyring: before the first request */
/* What a real daemon pays that links and latency alone leave out; each
 * measured or counted, none fitted (docs/simulator.md, "Costs the model
 * charges"):
 *  - WIRE_HDR: every MSS of payload travels in a frame with Ethernet (14),
 *    IPv4 (20), TCP (20) and timestamp (12) headers; a link's rate (a tbf,
 *    a switch port) counts them: payload is 1448/1514 of the rate;
 *  - CHUNK_FRAME: a CHUNK frame's own bytes: length prefix (4),
 *    secretstream tag and MAC (17), type (1), chunk id (32), encoding (1),
 *    plain length (4);
 *  - SEND_AHEAD: shoald hands a connection its next chunk while less than
 *    SERVE_AHEAD (128 KiB) waits in its own queue, and the kernel keeps up
 *    to NOTSENT_LOWAT (128 KiB) unsent: a chunk is chosen and committed up
 *    to this many bytes before the link gets to it (daemon/swarm.c);
 *  - REUSE_BPS: before its first request a device copies what its active
 *    slot already holds (reads, hashes and writes each reused chunk, then
 *    fdatasync); measured 16 MiB slots, 12.5 MiB reused, 97 to 225 ms,
 *    median 186 ms: 70 MB of reused bytes per second;
 *  - REARP_US, TICK_US: a device whose cable comes back dials its peers at
 *    once (netwatch.c), but its kernel still holds the neighbour entries
 *    that failed while the link was down: those first dials fail after
 *    66 to 101 ms (EHOSTUNREACH, measured in faults-4), and shoald dials
 *    again at its next tick (every 200 ms), which resolves afresh;
 *  - HANDSHAKE_RTTS: TCP's and the session's handshakes before a new
 *    connection carries anything. */
#define REARP_US 100000u
#define HANDSHAKE_RTTS 2u
#define WIRE_HDR 66u
#define CHUNK_FRAME 59u
#define SEND_AHEAD (256u << 10)
#define REUSE_BPS 70e6

enum ntype {
	N_IDLE,       /* on version 1, not (yet) told to fetch */
	N_FETCHING,
	N_WAIT_INSTALL,
	N_INSTALLING,
	N_REBOOTING,
	N_HEALTH,
	N_COMMITTED,
	N_ROLLING_BACK,
	N_ROLLED_BACK,
	N_FAILED,
};

static const char *const nstate_names[] = {
	"idle", "fetching", "waiting", "installing", "rebooting", "health check", "committed", "rolling back",
	"rolled back", "failed",
};

enum evtype {
	EV_FLOW_DONE,
	EV_CHUNK,      /* a = receiver, b = half at receiver, c = idx, x = corrupt */
	EV_REQUEST,    /* a = uploader, b = half at uploader, x = batch */
	EV_CANCEL,     /* a = uploader, b = half, c = idx */
	EV_NOT_FOUND,  /* a = requester, b = half, c = idx */
	EV_HAVE,       /* a = sender, c = idx, b = next position in the latency order */
	EV_TICK,       /* a = node */
	EV_START,      /* a = node: the manifest is here, fetching starts */
	EV_PHASE,      /* a = node, e = its phase epoch: the install step in progress ends */
	EV_REDIAL,     /* a = node, b = half */
	EV_FAULT,      /* c = fault index */
	EV_FAULT_END,  /* c = fault index */
	EV_POWER_CUT,  /* a = node, e = phase epoch */
};

struct event {
	uint64_t t;
	uint64_t seq;
	uint64_t x;
	uint32_t a, b, c, e;
	uint8_t type;
};

struct flow {
	uint32_t from, to, half; /* half at from */
	uint32_t idx;
	uint32_t pos_out, pos_in;
	double remaining; /* bytes */
	double rate;      /* bytes per microsecond */
	uint64_t last;
	uint64_t ver;
	uint64_t extra_us; /* retransmission delay */
	uint64_t event_t;  /* when its live EV_FLOW_DONE fires; 0: none */
	uint32_t epoch;
	bool corrupt;
	struct flow *next_free;
};

struct batch {
	struct batch *next_free;
	uint32_t n;
	uint32_t idx[REQ_MAX];
};

struct half {
	uint32_t other;
	uint32_t back;   /* index of the reverse half at other */
	uint32_t sp;     /* handle in this node's sched */
	uint32_t epoch;  /* of the connection: events of an older one are dropped */
	bool up;
	bool in_sched;
	bool tracked;    /* the other's scheduler has us (mirrors its in_sched) */
	bool wants_slot;
	uint64_t banned_until; /* this node banned the other (us); no connection before */
	uint32_t *q;           /* requests of other to serve, a ring of UPQ_MAX */
	uint32_t qh, qn;
	uint32_t *cq;          /* chunks committed to the connection, in order (a ring of cq_max) */
	uint32_t cqh, cqn;
	uint64_t cq_bytes;     /* ... their lengths: at most SEND_AHEAD plus one chunk */
	struct flow *flow;     /* the chunk going to other now: cq's head */
};

struct node {
	uint32_t id;
	enum ntype st;
	bool alive;   /* the daemon runs (not killed, not rebooting, powered) */
	bool link_ok;
	bool malicious;
	bool health_fail;
	bool is_gw;
	bool power_cut_pending;
	uint32_t power_cut_fault;
	uint32_t phase_epoch;
	uint32_t restarts;
	struct scn_link link;
	struct sched *s;
	uint8_t *have; /* LSB-first bitfield of chunk indexes, as on the wire */
	uint64_t have_bytes;
	uint32_t have_n;
	struct half *nb;
	uint32_t n_nb;
	uint32_t *half_of_sp;
	uint32_t gw_half; /* the connection to the gateway */
	struct upslots slots;
	uint64_t have_flush_at; /* when the HAVEs of the chunks verified lately go out */
	uint64_t *sent_us; /* when each chunk last went out (0: never) */
	uint32_t *sent_to; /* ... and to which node */
	struct flow **out, **in;
	uint32_t n_out, n_in, cap_out, cap_in;
	/* results */
	uint64_t from_seed, from_peers, reused, sent;
	uint32_t banned;
	double complete_s, settled_s;
	bool ticking;
};

struct model {
	const struct scenario *sc;
	uint32_t n_dev, n_nodes, n_chunks;
	uint32_t cq_max; /* chunks SEND_AHEAD holds at most, plus one */
	uint32_t *len;
	bool *changed;
	uint8_t *all_bits;
	uint64_t image_bytes, fetch_bytes;
	struct node *nodes;
	struct event *heap;
	size_t n_heap, cap_heap;
	uint64_t seq;
	uint64_t now;
	uint64_t rng;
	struct flow *free_flows;
	struct batch *free_batches;
	struct sched_params sp;
	uint64_t seed;
	/* campaign */
	bool wave2_started;
	uint32_t installing;
	uint32_t settled;
	/* totals */
	uint64_t seed_sent, peer_sent, received;
	struct sim_trace *trace;
	struct sim_live *live;
	struct sim_live_node *live_nodes;
	uint64_t live_last_t, live_last_rx;
	double live_rate;
	int err;
};

/* ---- random numbers (xoshiro-like splitmix; the seed fixes everything) ---- */

static uint64_t rnd(uint64_t *s)
{
	uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static double rnd01(uint64_t *s)
{
	return (double)(rnd(s) >> 11) / 9007199254740992.0;
}

/* ---- the event heap ---- */

static bool ev_less(const struct event *a, const struct event *b)
{
	return a->t < b->t || (a->t == b->t && a->seq < b->seq);
}

static void push(struct model *m, uint64_t t, uint8_t type, uint32_t a, uint32_t b, uint32_t c, uint32_t e,
		 uint64_t x)
{
	size_t i;

	if (array_reserve((void **)&m->heap, &m->cap_heap, m->n_heap + 1, sizeof(*m->heap), 4096) < 0) {
		m->err = -ENOMEM;
		return;
	}
	i = m->n_heap++;
	m->heap[i] = (struct event){ .t = t, .seq = m->seq++, .type = type, .a = a, .b = b, .c = c, .e = e, .x = x };
	while (i > 0) {
		size_t up = (i - 1) / 2;
		struct event tmp;

		if (!ev_less(&m->heap[i], &m->heap[up]))
			break;
		tmp = m->heap[i];
		m->heap[i] = m->heap[up];
		m->heap[up] = tmp;
		i = up;
	}
}

static struct event pop(struct model *m)
{
	struct event top = m->heap[0];
	size_t i = 0;

	m->heap[0] = m->heap[--m->n_heap];
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, min = i;
		struct event tmp;

		if (l < m->n_heap && ev_less(&m->heap[l], &m->heap[min]))
			min = l;
		if (r < m->n_heap && ev_less(&m->heap[r], &m->heap[min]))
			min = r;
		if (min == i)
			break;
		tmp = m->heap[i];
		m->heap[i] = m->heap[min];
		m->heap[min] = tmp;
		i = min;
	}
	return top;
}

/* ---- small things ---- */

static uint64_t now_ms(const struct model *m)
{
	return m->now / 1000;
}

static bool has_chunk(const struct node *n, uint32_t i)
{
	return n->is_gw || (n->have[i / 8] >> (i % 8) & 1);
}

/* The node offers version 2 to its peers (holds or fetches it). */
static bool offers(const struct node *n)
{
	return n->alive && n->link_ok &&
	       (n->is_gw || (n->st >= N_FETCHING && n->st <= N_COMMITTED && n->st != N_REBOOTING));
}

static uint32_t path_latency(const struct model *m, uint32_t a, uint32_t b)
{
	return m->nodes[a].link.latency_us + m->nodes[b].link.latency_us;
}

static void trace(struct model *m, struct node *n)
{
	if (!n->is_gw && sim_trace_add(m->trace, n->id, m->now / 1e6, (double)n->have_bytes / m->image_bytes) == -ENOMEM)
		m->err = -ENOMEM;
}

/* ---- flows: the network ---- */

static void flow_advance(struct model *m, struct flow *f)
{
	f->remaining -= f->rate * (double)(m->now - f->last);
	if (f->remaining < 0)
		f->remaining = 0;
	f->last = m->now;
}

static void flow_schedule(struct model *m, struct flow *f)
{
	double dt = f->rate > 0 ? ceil(f->remaining / f->rate) : 1e15;
	uint64_t t = m->now + (uint64_t)dt;

	/* An event that fires too early is harmless (it looks at what is left
	 * and comes back), so only an earlier end needs a new one; the
	 * version tells the live event from the stale ones. */
	if (f->event_t && f->event_t <= t)
		return;
	f->ver++;
	f->event_t = t;
	push(m, t, EV_FLOW_DONE, 0, 0, 0, (uint32_t)f->ver, (uint64_t)(uintptr_t)f);
}

/* The fair share: the sender's uplink over its transfers, the receiver's
 * downlink over its, whichever is smaller. */
static void flow_rerate(struct model *m, struct flow *f)
{
	const struct node *a = &m->nodes[f->from], *b = &m->nodes[f->to];
	double up = (double)a->link.up_bps / 1e6 / a->n_out, down = (double)b->link.down_bps / 1e6 / b->n_in;
	double r = up < down ? up : down;

	flow_advance(m, f);
	if (r == f->rate)
		return;
	f->rate = r;
	flow_schedule(m, f);
}

static void rerate_node(struct model *m, struct node *n)
{
	for (uint32_t i = 0; i < n->n_out; i++)
		flow_rerate(m, n->out[i]);
	for (uint32_t i = 0; i < n->n_in; i++)
		flow_rerate(m, n->in[i]);
}

static int list_add(struct flow ***v, uint32_t *n, uint32_t *cap, struct flow *f, uint32_t *pos)
{
	size_t c = *cap;

	if (array_reserve((void **)v, &c, *n + 1, sizeof(**v), 8) < 0)
		return -ENOMEM;
	*cap = (uint32_t)c;
	*pos = *n;
	(*v)[(*n)++] = f;
	return 0;
}

static void flow_start(struct model *m, uint32_t from, uint32_t half, uint32_t idx)
{
	struct node *a = &m->nodes[from];
	struct half *h = &a->nb[half];
	struct node *b = &m->nodes[h->other];
	struct flow *f = m->free_flows;
	uint32_t payload = m->len[idx] + CHUNK_FRAME, packets = (payload + MSS - 1) / MSS;
	uint32_t loss = a->link.loss_ppm + b->link.loss_ppm, lost = 0;

	if (f)
		m->free_flows = f->next_free;
	else if (!(f = calloc(1, sizeof(*f)))) {
		m->err = -ENOMEM;
		return;
	}
	*f = (struct flow){ .from = from, .to = h->other, .half = half, .idx = idx, .last = m->now, .ver = f->ver + 1,
			    .epoch = h->epoch, .corrupt = a->malicious };
	if (loss) {
		/* the gaps between lost packets are geometric */
		double p = loss / 1e6, lq = log1p(-p);

		for (double pos = floor(log(1 - rnd01(&m->rng)) / lq); pos < packets;
		     pos += 1 + floor(log(1 - rnd01(&m->rng)) / lq))
			lost++;
	}
	f->remaining = payload + (double)packets * WIRE_HDR + (double)lost * (MSS + WIRE_HDR);
	f->extra_us = (uint64_t)lost * 2 * path_latency(m, from, h->other);
	if (list_add(&a->out, &a->n_out, &a->cap_out, f, &f->pos_out) < 0 ||
	    list_add(&b->in, &b->n_in, &b->cap_in, f, &f->pos_in) < 0) {
		m->err = -ENOMEM;
		return;
	}
	h->flow = f;
	f->rate = -1;
	rerate_node(m, a);
	rerate_node(m, b);
}

/* Takes f off both nodes and recycles it; its pending event goes stale. */
static void flow_end(struct model *m, struct flow *f)
{
	struct node *a = &m->nodes[f->from], *b = &m->nodes[f->to];

	a->out[f->pos_out] = a->out[--a->n_out];
	a->out[f->pos_out]->pos_out = f->pos_out;
	b->in[f->pos_in] = b->in[--b->n_in];
	b->in[f->pos_in]->pos_in = f->pos_in;
	a->nb[f->half].flow = NULL;
	f->ver++;
	f->next_free = m->free_flows;
	m->free_flows = f;
	rerate_node(m, a);
	rerate_node(m, b);
}

/* A message from n on connection h waits behind the chunk bytes committed
 * to it before (one TCP stream): REQUEST, CANCEL, NOT_FOUND. */
static uint64_t queue_delay_us(struct model *m, struct half *h)
{
	struct flow *f = h->flow;
	double bytes;

	if (!f || f->rate <= 0)
		return 0;
	flow_advance(m, f);
	bytes = f->remaining + (double)(h->cq_bytes - m->len[f->idx]) * (MSS + WIRE_HDR) / MSS;
	return (uint64_t)(bytes / f->rate);
}

/* When a message n sends now on connection h arrives. */
static uint64_t msg_due(struct model *m, const struct node *n, struct half *h)
{
	return m->now + path_latency(m, n->id, h->other) + queue_delay_us(m, h);
}

/* ---- the downloading side (swarm.c's fetch) ---- */

static void set_in_sched(struct model *m, struct node *n, uint32_t hi, bool on)
{
	struct half *h = &n->nb[hi];

	h->in_sched = on;
	m->nodes[h->other].nb[h->back].tracked = on;
}

static void pump_peer(struct model *m, struct node *n, uint32_t hi)
{
	struct half *h = &n->nb[hi];
	struct batch *b;
	size_t k = 0;
	uint32_t out[REQ_MAX];

	if (!n->s || !h->in_sched || !h->up)
		return;
	if (sched_pick(n->s, h->sp, now_ms(m), out, REQ_MAX, &k) < 0) {
		m->err = -ENOMEM;
		return;
	}
	if (!k)
		return;
	if ((b = m->free_batches))
		m->free_batches = b->next_free;
	else if (!(b = malloc(sizeof(*b)))) {
		m->err = -ENOMEM;
		return;
	}
	b->n = (uint32_t)k;
	memcpy(b->idx, out, k * sizeof(out[0]));
	push(m, msg_due(m, n, h), EV_REQUEST, h->other, h->back, 0, h->epoch, (uint64_t)(uintptr_t)b);
}

static void pump_all(struct model *m, struct node *n)
{
	for (uint32_t i = 0; i < n->n_nb; i++)
		if (n->nb[i].in_sched)
			pump_peer(m, n, i);
}

static void pump_seeds(struct model *m, struct node *n)
{
	pump_peer(m, n, n->gw_half);
}

static void disconnect(struct model *m, struct node *n, uint32_t hi);

struct marks {
	uint32_t hi[16];
	uint32_t n;
	bool overflow;
};

/* Sends the CANCELs and handles stalls; notes in *mk (if any) the peers
 * that had a request cancelled: they have room again. */
static void drain_events_mark(struct model *m, struct node *n, struct marks *mk)
{
	struct sched_event ev;

	while (n->s && sched_event_next(n->s, &ev) > 0) {
		uint32_t hi = ev.peer < m->sp.max_peers ? n->half_of_sp[ev.peer] : UINT32_MAX;
		struct half *h;

		if (hi == UINT32_MAX || n->nb[hi].other != ev.peer_key || !n->nb[hi].in_sched)
			continue;
		h = &n->nb[hi];
		if (ev.type == SCHED_EV_CANCEL) {
			push(m, msg_due(m, n, h), EV_CANCEL, h->other, h->back, ev.idx, h->epoch, 0);
			if (mk && mk->n < ELEMENTSOF(mk->hi))
				mk->hi[mk->n++] = hi;
			else if (mk)
				mk->overflow = true;
		} else if (ev.type == SCHED_EV_PEER_STALLED) {
			disconnect(m, n, hi);
			push(m, m->now + REDIAL_US, EV_REDIAL, n->id, hi, 0, 0, 0);
		}
	}
}

static void drain_events(struct model *m, struct node *n)
{
	drain_events_mark(m, n, NULL);
}

static void add_to_sched(struct model *m, struct node *n, uint32_t hi)
{
	struct half *h = &n->nb[hi];
	struct node *o = &m->nodes[h->other];
	uint32_t sp;

	if (!n->s || h->in_sched || !h->up || !offers(o))
		return;
	if (sched_peer_add(n->s, h->other, o->is_gw, &sp) < 0)
		return; /* full (shoald too keeps such a peer out of the scheduler) */
	if (sched_peer_bitfield(n->s, sp, o->is_gw ? m->all_bits : o->have, m->n_chunks) < 0) {
		sched_peer_remove(n->s, sp);
		m->err = -ENOMEM;
		return;
	}
	h->sp = sp;
	set_in_sched(m, n, hi, true);
	n->half_of_sp[sp] = hi;
	drain_events(m, n);
}

static void start_phase(struct model *m, struct node *n, enum ntype st);

/* Under a campaign every device fetches at once, as shoald does (it
 * fetches any release it accepts); the campaign only says when it
 * installs: the canaries first, the rest once every canary committed. */
static bool held_by_campaign(const struct model *m, uint32_t i)
{
	return m->sc->rollout == SCN_ROLLOUT_CAMPAIGN && !m->sc->nodes[i].canary && m->sc->n_canaries &&
	       !m->wave2_started;
}

static void fetch_complete(struct model *m, struct node *n)
{
	sched_free(n->s);
	n->s = NULL;
	for (uint32_t i = 0; i < n->n_nb; i++)
		set_in_sched(m, n, i, false);
	n->complete_s = m->now / 1e6;
	trace(m, n);
	if (held_by_campaign(m, n->id) || (m->sc->max_installing && m->installing >= m->sc->max_installing)) {
		n->st = N_WAIT_INSTALL;
		return;
	}
	m->installing++;
	start_phase(m, n, N_INSTALLING);
}

/* A new scheduler for n: at fetch start, and when its daemon restarts. */
static void fetch_open(struct model *m, struct node *n)
{
	struct perr err;

	if (sched_new(&m->sp, m->n_chunks, m->len, NULL, m->seed ^ ((uint64_t)n->id << 20) ^ n->restarts, &n->s, &err) < 0) {
		m->err = -ENOMEM;
		return;
	}
	/* what is here already: reused from version 1, or verified before a restart */
	for (uint32_t i = 0; i < m->n_chunks; i++)
		if (has_chunk(n, i))
			sched_have(n->s, i);
	if (sched_done(n->s)) {
		fetch_complete(m, n);
		return;
	}
	for (uint32_t i = 0; i < n->n_nb; i++) {
		struct half *h = &n->nb[i];
		struct node *o = &m->nodes[h->other];

		add_to_sched(m, n, i);
		/* our RELEASES now offer it: a fetching peer asks for our bitfield */
		if (h->up && o->s)
			add_to_sched(m, o, h->back);
	}
	if (!n->ticking) {
		n->ticking = true;
		push(m, m->now + TICK_US, EV_TICK, n->id, 0, 0, 0, 0);
	}
	pump_all(m, n);
}

static void mark_have(struct model *m, struct node *n, uint32_t i)
{
	n->have[i / 8] |= (uint8_t)(1u << (i % 8));
	n->have_bytes += m->len[i];
	n->have_n++;
}

static void on_chunk(struct model *m, struct node *n, uint32_t hi, uint32_t idx, bool corrupt)
{
	struct half *h = &n->nb[hi];
	struct node *o = &m->nodes[h->other];
	struct marks mk = { .n = 0 };
	struct sched_stats st;
	int r;

	if (!n->s || !h->in_sched)
		return; /* late: after completion or a restart */
	if (corrupt) {
		sched_on_chunk(n->s, h->sp, idx, false, now_ms(m));
		h->banned_until = m->now + m->sc->ban_ms * 1000;
		n->banned++;
		drain_events(m, n);
		disconnect(m, n, hi); /* GOODBYE(bad chunk), close */
		pump_all(m, n);
		return;
	}
	r = sched_on_chunk(n->s, h->sp, idx, true, now_ms(m));
	if (r < 0) {
		m->err = r;
		return;
	}
	if (r == 1) {
		mark_have(m, n, idx);
		m->received += m->len[idx];
		if (o->is_gw)
			n->from_seed += m->len[idx];
		else
			n->from_peers += m->len[idx];
		trace(m, n);
		/* HAVE to every peer, nearest first: with the others verified
		 * within HAVE_DELAY_US of the first (swarm.c batches them), at
		 * once for the last */
		if (n->have_flush_at <= m->now)
			n->have_flush_at = m->now + HAVE_DELAY_US;
		push(m, n->have_n == m->n_chunks ? m->now : n->have_flush_at, EV_HAVE, n->id, 0, idx, 0, 0);
	}
	drain_events_mark(m, n, &mk);
	if (sched_done(n->s)) {
		fetch_complete(m, n);
		return;
	}
	/* shoald pumps every peer here. A pick can only have changed for the
	 * sender (room for one more), the peers that had a request cancelled,
	 * the seeds (offload may ask an idle seed) and, in endgame, everyone
	 * (duplicates are allowed now): the others were full or had nothing
	 * to ask for before this chunk and still do. */
	sched_get_stats(n->s, &st);
	if (st.endgame || mk.overflow) {
		pump_all(m, n);
		return;
	}
	pump_peer(m, n, hi);
	for (uint32_t i = 0; i < mk.n; i++)
		pump_peer(m, n, mk.hi[i]);
	pump_seeds(m, n);
}

/* One HAVE of n's arrives at its peer nb[i]. */
static void have_deliver(struct model *m, struct node *n, uint32_t i, uint32_t idx)
{
	struct half *h = &n->nb[i];
	struct node *o = &m->nodes[h->other];
	struct marks mk = { .n = 0 };
	int r;

	/* A unit the receiver holds already: shoald calls sched_peer_has()
	 * all the same, but for a held unit that only updates counts that no
	 * decision reads again (a held unit is never wanted), and skipping it
	 * halves the model's cost. */
	if (!h->tracked || has_chunk(o, idx))
		return;
	r = sched_peer_has(o->s, o->nb[h->back].sp, idx);
	if (r < 0) {
		m->err = r;
		return;
	}
	if (r != 1)
		return;
	/* the announcer may have a candidate now; a seed that yielded a
	 * request (CANCEL) has room */
	drain_events_mark(m, o, &mk);
	pump_peer(m, o, h->back);
	for (uint32_t j = 0; j < mk.n; j++)
		pump_peer(m, o, mk.hi[j]);
	if (mk.overflow)
		pump_all(m, o);
}

/* HAVE: delivered to the peers whose path latency has passed, then the
 * event moves on to the next latency. nb is sorted by latency. */
static void on_have(struct model *m, const struct event *ev)
{
	struct node *n = &m->nodes[ev->a];
	uint64_t sent = ev->t - ev->x; /* x: how long it has been travelling */
	uint32_t i = ev->b;

	if (!n->alive)
		return;
	/* A HAVE is not held back by the chunk bytes ahead of it on its
	 * connection, as requests are (msg_due()): measured, that changes
	 * small-4 at 10 Mbit/s by 0.6%, and costs 1000 devices half again
	 * their CPU time (an event per peer instead of one per latency). */
	for (; i < n->n_nb; i++) {
		struct half *h = &n->nb[i];
		uint64_t due = sent + path_latency(m, n->id, h->other);

		if (due > m->now) {
			push(m, due, EV_HAVE, n->id, i, ev->c, 0, due - sent);
			return;
		}
		have_deliver(m, n, i, ev->c);
	}
}

/* ---- the serving side (swarm.c's serve_pump) ---- */

static void release_slot(struct model *m, struct node *n, struct half *h)
{
	if (h->wants_slot) {
		h->wants_slot = false;
		upslots_done(&n->slots, h->other, now_ms(m));
	}
}

static void serve_one(struct model *m, struct node *n, uint32_t hi);

static void serve_pump(struct model *m, struct node *n)
{
	struct upslots_event uev;

	if (!n->alive || !n->link_ok)
		return;
	upslots_tick(&n->slots, now_ms(m));
	while (upslots_event_next(&n->slots, &uev) > 0)
		;
	for (uint32_t hi = 0; hi < n->n_nb; hi++) {
		struct half *h = &n->nb[hi];

		/* as swarm.c: the connection takes chunks while little waits in it */
		while (h->qn && h->up && h->cq_bytes < SEND_AHEAD && h->cqn < m->cq_max &&
		       upslots_may_send(&n->slots, h->other))
			serve_one(m, n, hi);
	}
}

/* Commits the next chunk of h's queue to the connection (or answers it). */
static void serve_one(struct model *m, struct node *n, uint32_t hi)
{
	struct half *h = &n->nb[hi];
	uint32_t pick = UINT32_MAX, fresh = UINT32_MAX, idx;

	/* swarm.c's pick_queued: the oldest request for a chunk that never
	 * went out, else the oldest for one that did not go out lately; a
	 * gateway answers "later" (NOT_FOUND) for a chunk it sent another
	 * node that is still there moments ago (super-seeding) */
	for (uint32_t j = 0; j < h->qn && fresh == UINT32_MAX;) {
		uint32_t c = h->q[(h->qh + j) % UPQ_MAX];

		if (!n->sent_us[c]) {
			fresh = j;
		} else if (m->now - n->sent_us[c] >= RECENT_US) {
			if (pick == UINT32_MAX)
				pick = j;
		} else if (n->is_gw && n->sent_to[c] != h->other && m->nodes[n->sent_to[c]].alive &&
			   m->nodes[n->sent_to[c]].link_ok) {
			push(m, msg_due(m, n, h), EV_NOT_FOUND, h->other, h->back, c, h->epoch, 0);
			for (uint32_t k = j; k + 1 < h->qn; k++)
				h->q[(h->qh + k) % UPQ_MAX] = h->q[(h->qh + k + 1) % UPQ_MAX];
			h->qn--;
			continue;
		}
		j++;
	}
	if (!h->qn) {
		release_slot(m, n, h);
		return;
	}
	if (fresh != UINT32_MAX)
		pick = fresh;
	if (pick == UINT32_MAX)
		pick = 0;
	if (pick) {
		uint32_t *a = &h->q[h->qh], *b = &h->q[(h->qh + pick) % UPQ_MAX], t = *a;

		*a = *b;
		*b = t;
	}
	idx = h->q[h->qh];
	h->qh = (h->qh + 1) % UPQ_MAX;
	h->qn--;
	if (!has_chunk(n, idx)) {
		push(m, msg_due(m, n, h), EV_NOT_FOUND, h->other, h->back, idx, h->epoch, 0);
	} else {
		n->sent_us[idx] = m->now ? m->now : 1;
		n->sent_to[idx] = h->other;
		h->cq[(h->cqh + h->cqn++) % m->cq_max] = idx;
		h->cq_bytes += m->len[idx];
		if (!h->flow)
			flow_start(m, n->id, hi, idx);
		upslots_sent(&n->slots, h->other, m->len[idx], now_ms(m));
	}
	if (!h->qn)
		release_slot(m, n, h);
}

static void on_request(struct model *m, struct node *n, uint32_t hi, const struct batch *b)
{
	struct half *h = &n->nb[hi];

	for (uint32_t i = 0; i < b->n; i++) {
		if (!has_chunk(n, b->idx[i]) || h->qn >= UPQ_MAX) {
			push(m, msg_due(m, n, h), EV_NOT_FOUND, h->other, h->back, b->idx[i], h->epoch, 0);
			continue;
		}
		h->q[(h->qh + h->qn) % UPQ_MAX] = b->idx[i];
		h->qn++;
	}
	if (h->qn && !h->wants_slot) {
		h->wants_slot = true;
		upslots_want(&n->slots, h->other, now_ms(m));
	}
	serve_pump(m, n);
}

static void on_cancel(struct model *m, struct node *n, uint32_t hi, uint32_t idx)
{
	struct half *h = &n->nb[hi];

	for (uint32_t j = 0; j < h->qn; j++) {
		if (h->q[(h->qh + j) % UPQ_MAX] != idx)
			continue;
		for (uint32_t k = j; k + 1 < h->qn; k++)
			h->q[(h->qh + k) % UPQ_MAX] = h->q[(h->qh + k + 1) % UPQ_MAX];
		h->qn--;
		break;
	}
	if (!h->qn)
		release_slot(m, n, h);
	serve_pump(m, n);
}

static void on_flow_done(struct model *m, struct flow *f)
{
	struct node *a = &m->nodes[f->from];
	struct half *h = &a->nb[f->half];
	uint32_t len = m->len[f->idx];

	if (a->is_gw)
		m->seed_sent += len;
	else
		m->peer_sent += len;
	a->sent += len;
	push(m, m->now + path_latency(m, f->from, f->to) + f->extra_us, EV_CHUNK, f->to, h->back, f->idx, f->epoch,
	     f->corrupt);
	flow_end(m, f);
	/* the connection goes on with what was committed to it */
	h->cqh = (h->cqh + 1) % m->cq_max;
	h->cqn--;
	h->cq_bytes -= len;
	if (h->cqn)
		flow_start(m, a->id, (uint32_t)(h - a->nb), h->cq[h->cqh]);
	serve_pump(m, a);
}

/* ---- connections ---- */

/* Closes the connection on both sides: requests return to the pools (no
 * CANCELs: the connection is gone), queues and transfers are dropped. */
static void disconnect(struct model *m, struct node *n, uint32_t hi)
{
	struct half *h = &n->nb[hi];
	struct node *o = &m->nodes[h->other];
	struct half *hb = &o->nb[h->back];
	struct half *side[2] = { h, hb };
	struct node *owner[2] = { n, o };

	if (!h->up)
		return;
	for (int s = 0; s < 2; s++) {
		struct half *x = side[s];
		struct node *xn = owner[s];

		x->up = false;
		x->epoch++;
		if (x->in_sched && xn->s)
			sched_peer_remove(xn->s, x->sp);
		set_in_sched(m, xn, s ? h->back : hi, false);
		x->qn = 0;
		x->cqn = 0;
		x->cq_bytes = 0;
		release_slot(m, xn, x);
		if (x->flow)
			flow_end(m, x->flow);
	}
}

static bool may_connect(const struct model *m, const struct node *n, const struct half *h)
{
	const struct node *o = &m->nodes[h->other];

	return n->alive && n->link_ok && o->alive && o->link_ok && h->banned_until <= m->now &&
	       o->nb[h->back].banned_until <= m->now;
}

static void connect_half(struct model *m, struct node *n, uint32_t hi)
{
	struct half *h = &n->nb[hi];
	struct node *o = &m->nodes[h->other];

	if (h->up || !may_connect(m, n, h))
		return;
	h->up = o->nb[h->back].up = true;
	add_to_sched(m, n, hi);
	add_to_sched(m, o, h->back);
	if (n->s && h->in_sched)
		pump_peer(m, n, hi);
	if (o->s && o->nb[h->back].in_sched)
		pump_peer(m, o, h->back);
}

static void disconnect_all(struct model *m, struct node *n)
{
	for (uint32_t i = 0; i < n->n_nb; i++) {
		struct node *o = &m->nodes[n->nb[i].other];
		bool was_up = n->nb[i].up;

		disconnect(m, n, i);
		if (was_up && o->s)
			pump_all(m, o);
	}
	for (uint32_t i = 0; i < n->n_nb; i++)
		if (n->nb[i].up == false && m->nodes[n->nb[i].other].alive)
			serve_pump(m, &m->nodes[n->nb[i].other]);
}

static void connect_all(struct model *m, struct node *n)
{
	for (uint32_t i = 0; i < n->n_nb; i++)
		connect_half(m, n, i);
}

/* After our state changed what we offer (completed a reboot, rolled back):
 * peers learn it from RELEASES, i.e. when the connections come up again. */

/* ---- devices: rollout and install ---- */

static void settle(struct model *m, struct node *n, enum ntype st)
{
	n->st = st;
	n->settled_s = m->now / 1e6;
	m->settled++;
	if (m->installing)
		m->installing--;
	/* an install slot is free: the next waiting device takes it */
	for (uint32_t i = 0; i < m->n_dev && (!m->sc->max_installing || m->installing < m->sc->max_installing); i++)
		if (m->nodes[i].st == N_WAIT_INSTALL && m->nodes[i].alive && !held_by_campaign(m, i)) {
			m->installing++;
			start_phase(m, &m->nodes[i], N_INSTALLING);
		}
}

static uint64_t phase_us(const struct model *m, enum ntype st)
{
	switch (st) {
	case N_INSTALLING:
		return m->sc->install_ms * 1000;
	case N_REBOOTING:
	case N_ROLLING_BACK:
		return m->sc->reboot_ms * 1000;
	case N_HEALTH:
		return m->sc->health_ms * 1000;
	case N_IDLE:
	case N_FETCHING:
	case N_WAIT_INSTALL:
	case N_COMMITTED:
	case N_ROLLED_BACK:
	case N_FAILED:
		break;
	}
	return 0;
}

static void start_phase(struct model *m, struct node *n, enum ntype st)
{
	n->st = st;
	n->phase_epoch++;
	if (st == N_REBOOTING || st == N_ROLLING_BACK) {
		disconnect_all(m, n);
		n->alive = false;
	}
	if (st == N_INSTALLING && n->power_cut_pending)
		push(m, m->now + m->sc->faults[n->power_cut_fault].at_ms * 1000, EV_POWER_CUT, n->id, 0, 0,
		     n->phase_epoch, 0);
	push(m, m->now + phase_us(m, st), EV_PHASE, n->id, 0, 0, n->phase_epoch, 0);
}

static void on_phase_end(struct model *m, struct node *n)
{
	switch (n->st) {
	case N_INSTALLING:
		start_phase(m, n, N_REBOOTING);
		break;
	case N_REBOOTING:
		n->alive = true;
		start_phase(m, n, N_HEALTH);
		connect_all(m, n);
		break;
	case N_HEALTH:
		if (n->health_fail) {
			start_phase(m, n, N_ROLLING_BACK);
		} else {
			settle(m, n, N_COMMITTED);
		}
		break;
	case N_ROLLING_BACK:
		n->alive = true;
		settle(m, n, N_ROLLED_BACK);
		connect_all(m, n);
		break;
	case N_IDLE:
	case N_FETCHING:
	case N_WAIT_INSTALL:
	case N_COMMITTED:
	case N_ROLLED_BACK:
	case N_FAILED:
		break;
	}
}

static void start_fetch(struct model *m, struct node *n)
{
	if (n->st != N_IDLE)
		return;
	n->st = N_FETCHING;
	if (n->alive)
		fetch_open(m, n);
}

/* From "fetch version 2" to the first request: the manifest's round trips,
 * then copying what the active slot holds (REUSE_BPS). */
static uint64_t start_delay_us(const struct model *m, uint32_t i)
{
	return MANIFEST_RTTS * 2 * path_latency(m, i, m->n_dev) + (uint64_t)(m->nodes[i].reused / REUSE_BPS * 1e6);
}

/* Campaign: the second wave starts once every canary settled, unless one
 * failed (the campaign pauses: the rest stay on version 1). */
static void campaign_check(struct model *m)
{
	bool all = true, bad = false;

	if (m->sc->rollout != SCN_ROLLOUT_CAMPAIGN || m->wave2_started)
		return;
	for (uint32_t i = 0; i < m->n_dev; i++) {
		const struct node *n = &m->nodes[i];

		if (!m->sc->nodes[i].canary)
			continue;
		if (n->st != N_COMMITTED && n->st != N_ROLLED_BACK && n->st != N_FAILED)
			all = false;
		if (n->st == N_ROLLED_BACK || n->st == N_FAILED)
			bad = true;
	}
	if (!all || bad)
		return;
	m->wave2_started = true;
	/* the rest install, those that hold the release already first */
	for (uint32_t i = 0; i < m->n_dev && (!m->sc->max_installing || m->installing < m->sc->max_installing); i++)
		if (!m->sc->nodes[i].canary && m->nodes[i].st == N_WAIT_INSTALL && m->nodes[i].alive) {
			m->installing++;
			start_phase(m, &m->nodes[i], N_INSTALLING);
		}
}

/* ---- faults ---- */

static void node_down(struct model *m, struct node *n)
{
	disconnect_all(m, n);
	n->alive = false;
	if (n->s) {
		/* verified chunks survive: they are in the slot and in the state database */
		sched_free(n->s);
		n->s = NULL;
	}
	n->phase_epoch++; /* the step in progress does not end while it is down */
}

static void node_up(struct model *m, struct node *n)
{
	n->alive = true;
	n->restarts++;
	connect_all(m, n);
	switch (n->st) {
	case N_FETCHING:
		fetch_open(m, n);
		break;
	case N_INSTALLING:
	case N_HEALTH:
		start_phase(m, n, n->st); /* the step starts over */
		break;
	case N_REBOOTING:
	case N_ROLLING_BACK:
		on_phase_end(m, n);
		break;
	case N_IDLE:
	case N_WAIT_INSTALL:
	case N_COMMITTED:
	case N_ROLLED_BACK:
	case N_FAILED:
		break;
	}
}

static void on_fault(struct model *m, uint32_t fi, bool end)
{
	const struct scn_fault *f = &m->sc->faults[fi];
	struct node *n = &m->nodes[f->node == SCN_GATEWAY ? m->n_dev : f->node];

	switch (f->kind) {
	case SCN_FAULT_KILL:
	case SCN_FAULT_GATEWAY_DOWN:
		if (!end && n->alive) {
			node_down(m, n);
			if (f->duration_ms)
				push(m, m->now + f->duration_ms * 1000, EV_FAULT_END, 0, 0, fi, 0, 0);
		} else if (end) {
			node_up(m, n);
		}
		break;
	case SCN_FAULT_LINK_CUT:
		if (!end) {
			disconnect_all(m, n);
			n->link_ok = false;
			push(m, m->now + f->duration_ms * 1000, EV_FAULT_END, 0, 0, fi, 0, 0);
		} else {
			/* shoald hears the carrier and dials at once; those dials
			 * fail on the stale neighbour entries (REARP_US) and the
			 * next tick's succeed */
			n->link_ok = true;
			for (uint32_t i = 0; i < n->n_nb; i++)
				push(m, m->now + REARP_US + rnd(&m->rng) % TICK_US +
						HANDSHAKE_RTTS * 2 * path_latency(m, n->id, n->nb[i].other),
				     EV_REDIAL, n->id, i, 0, 0, 0);
		}
		break;
	case SCN_FAULT_MALICIOUS:
		n->malicious = true;
		break;
	case SCN_FAULT_POWER_CUT_INSTALL:
		if (end) /* it boots its old slot; the daemon installs again */
			node_up(m, n);
		break;
	case SCN_FAULT_HEALTH_FAIL:
		break;
	}
}

static void on_power_cut(struct model *m, struct node *n)
{
	n->power_cut_pending = false;
	node_down(m, n);
	push(m, m->now + m->sc->faults[n->power_cut_fault].duration_ms * 1000, EV_FAULT_END, 0, 0, n->power_cut_fault,
	     0, 0);
}

/* ---- setup ---- */

static int lat_cmp(const void *a, const void *b, void *ud)
{
	const struct model *m = ud;
	uint32_t la = m->nodes[((const struct half *)a)->other].link.latency_us;
	uint32_t lb = m->nodes[((const struct half *)b)->other].link.latency_us;

	return la < lb ? -1 : la > lb;
}

static bool linked(const struct node *n, uint32_t o)
{
	for (uint32_t i = 0; i < n->n_nb; i++)
		if (n->nb[i].other == o)
			return true;
	return false;
}

/* Every device talks to the gateway and to up to max_connections - 1
 * other devices, a random graph (with mDNS each would dial all it sees,
 * up to its limit). */
static int build_graph(struct model *m)
{
	uint32_t deg = m->sc->max_connections - 1, N = m->n_dev;
	uint32_t *cap = calloc(m->n_nodes, sizeof(*cap));

	if (!cap)
		return -ENOMEM;
	if (deg > N - 1)
		deg = N - 1;
	for (uint32_t i = 0; i < m->n_nodes; i++) {
		cap[i] = i == N ? N : deg + 1;
		if (!(m->nodes[i].nb = calloc(cap[i], sizeof(struct half)))) {
			free(cap);
			return -ENOMEM;
		}
	}
#define LINK(x, y)                                                                       \
	do {                                                                             \
		struct node *nx = &m->nodes[x], *ny = &m->nodes[y];                      \
		nx->nb[nx->n_nb] = (struct half){ .other = (y), .back = ny->n_nb };      \
		ny->nb[ny->n_nb] = (struct half){ .other = (x), .back = nx->n_nb };      \
		nx->n_nb++;                                                              \
		ny->n_nb++;                                                              \
	} while (0)
	for (uint32_t i = 0; i < N; i++)
		LINK(i, N);
	if (deg == N - 1) {
		for (uint32_t i = 0; i < N; i++)
			for (uint32_t j = i + 1; j < N; j++)
				LINK(i, j);
	} else {
		/* each device in turn fills up with random partners that have room */
		for (uint32_t i = 0; i < N; i++) {
			for (uint32_t tries = 0; m->nodes[i].n_nb < deg + 1 && tries < 50 * deg; tries++) {
				uint32_t j = (uint32_t)(rnd(&m->rng) % N);

				if (j == i || m->nodes[j].n_nb >= deg + 1 || linked(&m->nodes[i], j))
					continue;
				LINK(i, j);
			}
		}
	}
#undef LINK
	free(cap);
	/* nearest first, for HAVE delivery; the back indexes move with it */
	for (uint32_t i = 0; i < m->n_nodes; i++) {
		struct node *n = &m->nodes[i];

		qsort_r(n->nb, n->n_nb, sizeof(*n->nb), lat_cmp, m);
		for (uint32_t k = 0; k < n->n_nb; k++) {
			m->nodes[n->nb[k].other].nb[n->nb[k].back].back = k;
			if (n->nb[k].other == N)
				n->gw_half = k;
		}
	}
	for (uint32_t i = 0; i < m->n_nodes; i++) {
		struct node *n = &m->nodes[i];

		for (uint32_t k = 0; k < n->n_nb; k++)
			if (!(n->nb[k].q = malloc(UPQ_MAX * sizeof(uint32_t))) ||
			    !(n->nb[k].cq = malloc(m->cq_max * sizeof(uint32_t))))
				return -ENOMEM;
	}
	return 0;
}

static int make_image(struct model *m)
{
	const struct scenario *sc = m->sc;
	uint64_t img_rng = sc->image_seed, left = sc->image_size, cap = 0;
	uint32_t n = 0, n_changed, avg = sc->chunk_avg;

	/* content-defined chunks: lengths spread around the average */
	while (left) {
		uint64_t l = avg / 2 + rnd(&img_rng) % (avg + 1);

		if (l > left || left - l < avg / 4)
			l = left;
		if (array_reserve((void **)&m->len, &cap, n + 1, sizeof(*m->len), 1024) < 0)
			return -ENOMEM;
		m->len[n++] = (uint32_t)l;
		left -= l;
	}
	if (n > SCHED_MAX_CHUNKS)
		return -E2BIG;
	m->n_chunks = n;
	{
		uint32_t min = UINT32_MAX;

		for (uint32_t i = 0; i < n; i++)
			if (m->len[i] < min)
				min = m->len[i];
		m->cq_max = SEND_AHEAD / min + 2;
	}
	m->image_bytes = sc->image_size;
	if (!(m->changed = calloc(n, sizeof(*m->changed))) || !(m->all_bits = calloc((n + 7) / 8, 1)))
		return -ENOMEM;
	for (uint32_t i = 0; i < n; i++)
		m->all_bits[i / 8] |= (uint8_t)(1u << (i % 8));
	/* which chunks version 2 changed: an exact share, picked by the seed */
	n_changed = sc->base_v1 ? (uint32_t)llround((double)n * sc->changed_ppm / 1e6) : n;
	if (sc->base_v1 && sc->changed_ppm > 0 && n_changed == 0)
		n_changed = 1;
	for (uint32_t k = 0; k < n_changed;) {
		uint32_t i = (uint32_t)(rnd(&img_rng) % n);

		if (!m->changed[i]) {
			m->changed[i] = true;
			m->fetch_bytes += m->len[i];
			k++;
		}
	}
	return 0;
}

static void set_params(struct model *m)
{
	const struct scenario *sc = m->sc;

	sched_params_default(&m->sp);
	/* as fetch_start() in daemon/swarm.c */
	m->sp.ban_ms = sc->ban_ms;
	m->sp.timeout_floor_ms = (uint32_t)sc->request_timeout_ms;
	m->sp.seed_policy = sc->seed_policy == SCN_SEED_OFFLOAD ? SCHED_SEED_OFFLOAD
			    : sc->seed_policy == SCN_SEED_PEER  ? SCHED_SEED_PEER
								: SCHED_SEED_STRICT;
	if (m->sp.max_peers < sc->max_connections)
		m->sp.max_peers = sc->max_connections;
}

static int setup(struct model *m)
{
	const struct scenario *sc = m->sc;
	struct upslots_params up;
	int k;

	m->n_dev = sc->n_devices;
	m->n_nodes = m->n_dev + 1;
	m->rng = m->seed * UINT64_C(0x2545f4914f6cdd1d) + 1;
	if ((k = make_image(m)) < 0)
		return k;
	set_params(m);
	if (!(m->nodes = calloc(m->n_nodes, sizeof(*m->nodes))))
		return -ENOMEM;
	upslots_params_default(&up);
	up.slots = sc->upload_slots;
	for (uint32_t i = 0; i < m->n_nodes; i++) {
		struct node *n = &m->nodes[i];

		n->id = i;
		n->is_gw = i == m->n_dev;
		n->link = n->is_gw ? sc->gateway : sc->nodes[i].link;
		n->alive = n->link_ok = true;
		n->complete_s = n->settled_s = -1;
		if (upslots_init(&n->slots, &up) < 0 || !(n->sent_us = calloc(m->n_chunks, sizeof(*n->sent_us))) ||
		    !(n->sent_to = calloc(m->n_chunks, sizeof(*n->sent_to))) ||
		    !(n->half_of_sp = malloc(m->sp.max_peers * sizeof(uint32_t))))
			return -ENOMEM;
		memset(n->half_of_sp, 0xff, m->sp.max_peers * sizeof(uint32_t));
		if (n->is_gw) {
			n->st = N_COMMITTED;
			continue;
		}
		if (!(n->have = calloc((m->n_chunks + 7) / 8, 1)))
			return -ENOMEM;
		if (sc->base_v1)
			for (uint32_t c = 0; c < m->n_chunks; c++)
				if (!m->changed[c]) {
					mark_have(m, n, c);
					n->reused += m->len[c];
				}
	}
	if ((k = build_graph(m)) < 0)
		return k;
	for (uint32_t i = 0; i < m->n_nodes; i++)
		for (uint32_t h = 0; h < m->nodes[i].n_nb; h++)
			m->nodes[i].nb[h].up = false;
	for (uint32_t i = 0; i < m->n_nodes; i++)
		for (uint32_t h = 0; h < m->nodes[i].n_nb; h++)
			connect_half(m, &m->nodes[i], h);
	for (uint32_t i = 0; i < m->n_dev; i++) {
		trace(m, &m->nodes[i]);
		push(m, start_delay_us(m, i), EV_START, i, 0, 0, 0, 0);
	}
	if (sc->rollout == SCN_ROLLOUT_CAMPAIGN && sc->n_canaries == 0)
		m->wave2_started = true;
	for (uint32_t fi = 0; fi < sc->n_faults; fi++) {
		const struct scn_fault *f = &sc->faults[fi];

		if (f->kind == SCN_FAULT_HEALTH_FAIL) {
			m->nodes[f->node].health_fail = true;
		} else if (f->kind == SCN_FAULT_POWER_CUT_INSTALL) {
			m->nodes[f->node].power_cut_pending = true;
			m->nodes[f->node].power_cut_fault = fi;
		} else {
			push(m, f->at_ms * 1000, EV_FAULT, 0, 0, fi, 0, 0);
		}
	}
	return m->err;
}

static void teardown(struct model *m)
{
	struct flow *f;

	for (uint32_t i = 0; m->nodes && i < m->n_nodes; i++) {
		struct node *n = &m->nodes[i];

		sched_free(n->s);
		free(n->have);
		for (uint32_t h = 0; h < n->n_nb; h++) {
			free(n->nb[h].q);
			free(n->nb[h].cq);
		}
		free(n->nb);
		free(n->half_of_sp);
		upslots_deinit(&n->slots);
		free(n->sent_us);
		free(n->sent_to);
		for (uint32_t k = 0; k < n->n_out; k++)
			free(n->out[k]);
		free(n->out);
		free(n->in);
	}
	while ((f = m->free_flows)) {
		m->free_flows = f->next_free;
		free(f);
	}
	while (m->free_batches) {
		struct batch *b = m->free_batches;

		m->free_batches = b->next_free;
		free(b);
	}
	for (size_t i = 0; i < m->n_heap; i++)
		if (m->heap[i].type == EV_REQUEST)
			free((void *)(uintptr_t)m->heap[i].x);
	free(m->heap);
	free(m->nodes);
	free(m->len);
	free(m->changed);
	free(m->all_bits);
	free(m->live_nodes);
}

/* ---- the loop ---- */

static bool half_current(const struct model *m, uint32_t node, uint32_t hi, uint32_t epoch)
{
	const struct node *n = &m->nodes[node];

	return hi < n->n_nb && n->nb[hi].epoch == epoch && n->nb[hi].up && n->alive;
}

static void live_update(struct model *m, bool force)
{
	struct sim_live_state st;

	if (!m->live)
		return;
	if (m->now > m->live_last_t + 1000000 || force) {
		double dt = (m->now - m->live_last_t) / 1e6;

		if (dt > 0)
			m->live_rate = (m->received - m->live_last_rx) / dt;
		m->live_last_t = m->now;
		m->live_last_rx = m->received;
	}
	for (uint32_t i = 0; i < m->n_dev; i++)
		m->live_nodes[i] = (struct sim_live_node){ m->sc->nodes[i].name,
							   (double)m->nodes[i].have_bytes / m->image_bytes,
							   nstate_names[m->nodes[i].st] };
	st = (struct sim_live_state){ .t_s = m->now / 1e6, .swarm_rate_bps = m->live_rate, .seed_bytes = m->seed_sent,
				      .peer_bytes = m->peer_sent, .n_nodes = m->n_dev, .nodes = m->live_nodes };
	sim_live_update(m->live, &st, force);
}

static void dispatch(struct model *m, const struct event *ev)
{
	struct node *n = ev->type == EV_FLOW_DONE || ev->type == EV_FAULT || ev->type == EV_FAULT_END ? NULL
										 : &m->nodes[ev->a];

	switch ((enum evtype)ev->type) {
	case EV_FLOW_DONE: {
		struct flow *f = (struct flow *)(uintptr_t)ev->x;

		/* the flow's own latest event: its version counts pushes */
		if (f->rate < 0 || ev->e != (uint32_t)f->ver)
			return;
		f->event_t = 0;
		flow_advance(m, f);
		if (f->remaining > 0.5) {
			flow_schedule(m, f);
			return;
		}
		on_flow_done(m, f);
		return;
	}
	case EV_CHUNK:
		if (half_current(m, ev->a, ev->b, ev->e))
			on_chunk(m, n, ev->b, ev->c, ev->x != 0);
		return;
	case EV_REQUEST:
		if (half_current(m, ev->a, ev->b, ev->e))
			on_request(m, n, ev->b, (const struct batch *)(uintptr_t)ev->x);
		((struct batch *)(uintptr_t)ev->x)->next_free = m->free_batches;
		m->free_batches = (struct batch *)(uintptr_t)ev->x;
		return;
	case EV_CANCEL:
		if (half_current(m, ev->a, ev->b, ev->e))
			on_cancel(m, n, ev->b, ev->c);
		return;
	case EV_NOT_FOUND:
		if (half_current(m, ev->a, ev->b, ev->e) && n->s && n->nb[ev->b].in_sched) {
			sched_on_not_found(n->s, n->nb[ev->b].sp, ev->c, now_ms(m));
			pump_peer(m, n, ev->b);
		}
		return;
	case EV_HAVE:
		on_have(m, ev);
		return;
	case EV_TICK:
		if (!n->s || !n->alive) {
			n->ticking = false;
			return;
		}
		sched_tick(n->s, now_ms(m));
		drain_events(m, n);
		if (n->s) {
			pump_all(m, n);
			push(m, m->now + TICK_US, EV_TICK, n->id, 0, 0, 0, 0);
		} else {
			n->ticking = false;
		}
		return;
	case EV_START:
		start_fetch(m, n);
		return;
	case EV_PHASE:
		if (ev->e == n->phase_epoch) {
			on_phase_end(m, n);
			if (n->st == N_COMMITTED || n->st == N_ROLLED_BACK)
				campaign_check(m);
		}
		return;
	case EV_REDIAL:
		connect_half(m, n, ev->b);
		return;
	case EV_FAULT:
		on_fault(m, ev->c, false);
		return;
	case EV_FAULT_END:
		on_fault(m, ev->c, true);
		return;
	case EV_POWER_CUT:
		if (ev->e == n->phase_epoch && n->st == N_INSTALLING && n->alive)
			on_power_cut(m, n);
		return;
	}
}

static double wall(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void collect(struct model *m, struct sim_results *r, struct sim_node_result *nr)
{
	const struct scenario *sc = m->sc;
	double all_complete = 0, all_settled = 0;

	for (uint32_t i = 0; i < m->n_dev; i++) {
		struct node *n = &m->nodes[i];
		struct sim_node_result *x = &nr[i];
		enum scn_state st = n->st == N_COMMITTED ? SCN_STATE_COMMITTED
				    : n->st == N_ROLLED_BACK ? SCN_STATE_ROLLED_BACK
							     : SCN_STATE_FAILED;

		*x = (struct sim_node_result){ .final_state = st, .bytes_from_seed = n->from_seed,
					       .bytes_from_peers = n->from_peers, .bytes_reused = n->reused,
					       .bytes_sent = n->sent, .banned_peers = n->banned,
					       .complete_s = n->complete_s, .committed_s = st == SCN_STATE_FAILED ? -1 : n->settled_s,
					       .expect_set = sc->nodes[i].has_expect, .expect = sc->nodes[i].expect };
		snprintf(x->name, sizeof(x->name), "%s", sc->nodes[i].name);
		snprintf(x->release, sizeof(x->release), "%s", st == SCN_STATE_COMMITTED ? sc->version : sc->from_version);
		if (all_complete >= 0)
			all_complete = n->complete_s < 0 ? -1 : fmax(all_complete, n->complete_s);
		if (all_settled >= 0)
			all_settled = x->committed_s < 0 ? -1 : fmax(all_settled, x->committed_s);
		r->local_bytes_reused += n->reused;
	}
	if (sc->rollout == SCN_ROLLOUT_CAMPAIGN) {
		/* the campaign as the gateway would show it (failure threshold
		 * 1): a device that did not commit pauses it; if that was a
		 * canary, the rest stay pending */
		bool every = true;
		double last_bad = -1;

		for (uint32_t i = 0; i < m->n_dev; i++) {
			const struct node *n = &m->nodes[i];
			struct sim_node_result *x = &nr[i];
			bool bad = n->st == N_ROLLED_BACK || (n->st == N_FAILED && n->complete_s >= 0);

			snprintf(x->campaign_phase, sizeof(x->campaign_phase), "%s",
				 sc->nodes[i].canary || sc->n_canaries == 0 ? "canary" : "rest");
			snprintf(x->campaign_target, sizeof(x->campaign_target), "%s",
				 n->st == N_COMMITTED ? "done"
				 : bad		      ? "failed"
				 : n->st == N_IDLE || (n->st == N_WAIT_INSTALL && !m->wave2_started) ? "pending"
						      : "installing");
			if (bad) {
				r->campaign_failures++;
				if (n->settled_s >= last_bad) {
					last_bad = n->settled_s;
					snprintf(r->campaign_reason, sizeof(r->campaign_reason),
						 "paused: %u failure(s), the last on %s (threshold 1)", r->campaign_failures,
						 sc->nodes[i].name);
				}
			}
			every &= n->st == N_COMMITTED || bad;
		}
		snprintf(r->campaign_state, sizeof(r->campaign_state), "%s",
			 r->campaign_failures ? "paused" : every ? "done" : "running");
	}
	r->nodes = m->n_dev;
	r->image_bytes = m->image_bytes;
	r->fetch_bytes = m->fetch_bytes;
	r->seed_bytes_sent = m->seed_sent;
	r->peer_bytes_sent = m->peer_sent;
	r->time_all_complete_s = all_complete;
	r->time_all_committed_s = all_settled;
	r->kumar_ross_bound_s = scenario_kumar_ross_s(sc, m->fetch_bytes);
	r->end_s = m->now / 1e6;
	r->node = nr;
}

int model_run(const struct scenario *s, const struct model_opts *o, struct sim_results *ret,
	      struct sim_trace **ret_trace, struct perr *err)
{
	struct model m = { .sc = s };
	_cleanup_(sim_trace_freep) struct sim_trace *tr = NULL;
	_cleanup_(freep) struct sim_node_result *nr = NULL;
	double t0 = wall();
	uint64_t limit = s->time_limit_ms * 1000, steps = 0;
	int k;

	m.seed = o && o->seed_set ? o->seed : s->seed;
	if (sim_trace_new(s->n_devices, &tr) < 0 || !(nr = calloc(s->n_devices, sizeof(*nr))))
		return perr_set(err, -ENOMEM, "out of memory");
	m.trace = tr;
	if (o && o->live && sim_live_new(o->live, &m.live) < 0)
		return perr_set(err, -ENOMEM, "out of memory");
	if (m.live && !(m.live_nodes = calloc(s->n_devices, sizeof(*m.live_nodes)))) {
		sim_live_free(m.live);
		return perr_set(err, -ENOMEM, "out of memory");
	}
	if ((k = setup(&m)) < 0) {
		teardown(&m);
		sim_live_free(m.live);
		return perr_set(err, k, k == -E2BIG ? "the image has more than %u chunks" : "out of memory", SCHED_MAX_CHUNKS);
	}
	while (m.n_heap && m.settled < m.n_dev && m.err == 0) {
		struct event ev = pop(&m);

		if (ev.t > limit)
			break;
		m.now = ev.t;
		dispatch(&m, &ev);
		if (m.live && (++steps & 1023) == 0)
			live_update(&m, false);
	}
	if (m.live) {
		live_update(&m, true);
		sim_live_free(m.live);
		m.live = NULL;
	}
	if ((k = m.err) < 0) {
		teardown(&m);
		return perr_set(err, k, "model: %s", strerror(-k));
	}
	*ret = (struct sim_results){ .scenario = s->path, .mode = "model", .seed = m.seed };
	collect(&m, ret, nr);
	teardown(&m);
	ret->wall_s = wall() - t0;
	nr = NULL;
	*ret_trace = TAKE_PTR(tr);
	return 0;
}
