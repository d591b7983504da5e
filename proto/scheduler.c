/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The transfer scheduler (see sched.h for the policies).
 *
 * Internally every unit (distinct chunk) is named by its rank: its place in
 * a random permutation drawn from the seed. All bit sets are in rank order,
 * so that "the first candidate" is the random tie-break for free.
 *
 * want[k] holds the units that are missing, not in flight, and have k usable
 * holders (k capped at rarity_cap). For each peer p and level k, cand[p][k]
 * is a hierarchical bit set over 64-unit words: bit w is set iff
 * want[k][w] & has[p][w] != 0. A pick walks p's lowest non-empty level, word
 * by word, and never looks at a word where p holds nothing useful. Keeping
 * cand exact costs one AND per holder whenever a unit enters, leaves or
 * changes level, and holders[] (chunk-major holder masks) lists them. */
#include "scheduler.h"

#define NONE UINT32_MAX
#define HB_MAX_LEVELS 6

/* Shape of a hierarchical bit set: level 0 has `bits` bits, each higher
 * level one bit per word of the level below, up to a single word. */
struct hb_layout {
	uint32_t levels;
	uint32_t bits[HB_MAX_LEVELS];
	uint32_t off[HB_MAX_LEVELS];
	uint32_t words;
};

struct req {
	uint32_t r;
	uint64_t sent_ms;
};

/* A unit in flight and the peers asked for it (more than one in endgame). */
struct ifl {
	uint32_t r;
	uint16_t n;
	uint16_t peer[SCHED_MAX_COPIES];
};

struct speer {
	bool used;
	bool seed;
	bool banned;
	uint64_t key;
	uint64_t *has;  /* uw words */
	uint64_t *cand; /* n_levels hierarchical sets */
	struct req *req; /* depth_max, oldest first */
	uint32_t n_req;
	uint32_t consec;
	uint64_t req_bytes;
	uint64_t banned_until;
	uint64_t snub_until;
	uint64_t last_answer_ms;
	uint64_t busy_mark; /* while n_req > 0: busy time is counted up to here */
	uint64_t win_bytes;
	uint64_t win_ms;
	uint64_t rate; /* bytes per second, 0: not measured */
	uint64_t bytes, chunks, holds, timeouts, not_found, bad;
};

struct ban {
	uint64_t key;
	uint64_t until;
};

struct sched {
	struct sched_params p;
	uint32_t n_idx;
	uint32_t n_units;
	uint32_t uw;       /* words of a unit bit set */
	uint32_t hw;       /* words of a holder mask */
	uint32_t n_levels; /* rarity_cap + 1 */
	uint32_t *rank_of; /* index -> rank */
	uint32_t *idx_of;  /* rank -> first index */
	uint32_t *len;     /* by rank */
	uint16_t *avail;   /* usable holders, by rank */
	uint32_t *ifl_pos; /* by rank: position in ifl, or NONE */
	uint64_t *held;    /* uw */
	uint64_t *want;    /* n_levels * uw */
	uint64_t *holders; /* n_units * hw */
	uint64_t *counts;  /* hw: peers whose holdings count as availability */
	uint64_t *later;   /* by rank: seeds are not asked before then (NULL until a seed says NOT_FOUND) */
	struct hb_layout hl;

	struct speer *peers;
	uint32_t n_peers;

	struct ifl *ifl;
	uint32_t n_ifl, cap_ifl;

	struct ban *bans;
	size_t n_bans, cap_bans;

	struct sched_event *ev;
	size_t ev_head, ev_n, ev_cap;

	uint32_t n_held, n_wanted;
	uint32_t n_reqs;
	uint64_t bytes_total, bytes_held, bytes_peers, bytes_seeds, bytes_wasted;
	uint64_t requests, duplicates, timeouts, bad_chunks, not_found, seed_yields, seed_laters;
	uint64_t work;
	uint64_t now;
};

/* ---- small helpers ---- */

static inline bool bit_get(const uint64_t *b, uint32_t i)
{
	return (b[i >> 6] >> (i & 63)) & 1;
}

static inline void bit_set(uint64_t *b, uint32_t i)
{
	b[i >> 6] |= UINT64_C(1) << (i & 63);
}

static inline void bit_clear(uint64_t *b, uint32_t i)
{
	b[i >> 6] &= ~(UINT64_C(1) << (i & 63));
}

static inline uint32_t ctz64(uint64_t v)
{
	return (uint32_t)__builtin_ctzll(v);
}

static void hb_layout_init(struct hb_layout *L, uint32_t nbits)
{
	uint32_t off = 0;

	*L = (struct hb_layout){ 0 };
	if (nbits == 0)
		nbits = 1;
	for (;;) {
		uint32_t words = (nbits + 63) / 64;

		L->bits[L->levels] = nbits;
		L->off[L->levels] = off;
		L->levels++;
		off += words;
		if (words == 1 || L->levels == HB_MAX_LEVELS)
			break;
		nbits = words;
	}
	L->words = off;
}

static void hb_set(const struct hb_layout *L, uint64_t *b, uint32_t i)
{
	for (uint32_t lv = 0; lv < L->levels; lv++, i >>= 6) {
		uint64_t *w = &b[L->off[lv] + (i >> 6)];
		uint64_t old = *w;

		*w = old | UINT64_C(1) << (i & 63);
		if (old)
			return;
	}
}

static void hb_clear(const struct hb_layout *L, uint64_t *b, uint32_t i)
{
	for (uint32_t lv = 0; lv < L->levels; lv++, i >>= 6) {
		uint64_t *w = &b[L->off[lv] + (i >> 6)];

		*w &= ~(UINT64_C(1) << (i & 63));
		if (*w)
			return;
	}
}

static bool hb_empty(const struct hb_layout *L, const uint64_t *b)
{
	return b[L->off[L->levels - 1]] == 0;
}

/* The first set bit at or after i, or NONE: up until a word holds one, then
 * straight down. */
static uint32_t hb_next(struct sched *s, const uint64_t *b, uint32_t i)
{
	const struct hb_layout *L = &s->hl;
	uint32_t lv = 0;

	for (;;) {
		uint64_t m;

		if (i >= L->bits[lv])
			return NONE;
		s->work++;
		m = b[L->off[lv] + (i >> 6)] & (~UINT64_C(0) << (i & 63));
		if (m) {
			i = (i & ~UINT32_C(63)) + ctz64(m);
			break;
		}
		if (lv + 1 == L->levels)
			return NONE;
		i = (i >> 6) + 1;
		lv++;
	}
	while (lv > 0) {
		lv--;
		s->work++;
		i = (i << 6) + ctz64(b[L->off[lv] + i]);
	}
	return i;
}

static inline uint64_t *cand_of(const struct sched *s, const struct speer *p, uint32_t k)
{
	return p->cand + (size_t)k * s->hl.words;
}

static inline uint64_t *want_of(const struct sched *s, uint32_t k)
{
	return s->want + (size_t)k * s->uw;
}

static inline const uint64_t *holders_of(const struct sched *s, uint32_t r)
{
	return s->holders + (size_t)r * s->hw;
}

static inline uint32_t level_of(const struct sched *s, uint32_t r)
{
	return s->avail[r] < s->p.rarity_cap ? s->avail[r] : s->p.rarity_cap;
}

static inline bool is_wanted(const struct sched *s, uint32_t r)
{
	return !bit_get(s->held, r) && s->ifl_pos[r] == NONE;
}

static inline bool counts_as_holder(const struct sched *s, const struct speer *p)
{
	return !p->banned && (!p->seed || s->p.seed_policy == SCHED_SEED_PEER);
}

static inline bool seed_mode(const struct sched *s, const struct speer *p)
{
	return p->seed && s->p.seed_policy != SCHED_SEED_PEER;
}

/* Re-derives bit w of cand[q][k] after want[k] or has[q] lost a bit there. */
static void cand_refresh(struct sched *s, struct speer *q, uint32_t k, uint32_t w)
{
	if (want_of(s, k)[w] & q->has[w])
		hb_set(&s->hl, cand_of(s, q, k), w);
	else
		hb_clear(&s->hl, cand_of(s, q, k), w);
}

/* ---- the pool of wanted units ---- */

static void want_add(struct sched *s, uint32_t r)
{
	uint32_t k = level_of(s, r), w = r >> 6;
	const uint64_t *h = holders_of(s, r);

	bit_set(want_of(s, k), r);
	for (uint32_t j = 0; j < s->hw; j++)
		for (uint64_t m = h[j]; m; m &= m - 1) {
			s->work++;
			hb_set(&s->hl, cand_of(s, &s->peers[j * 64 + ctz64(m)], k), w);
		}
	s->n_wanted++;
}

static void want_del(struct sched *s, uint32_t r)
{
	uint32_t k = level_of(s, r), w = r >> 6;
	const uint64_t *h = holders_of(s, r);

	bit_clear(want_of(s, k), r);
	for (uint32_t j = 0; j < s->hw; j++)
		for (uint64_t m = h[j]; m; m &= m - 1) {
			s->work++;
			cand_refresh(s, &s->peers[j * 64 + ctz64(m)], k, w);
		}
	s->n_wanted--;
}

/* A wanted unit's rarity went from level a to level b. */
static void level_move(struct sched *s, uint32_t r, uint32_t a, uint32_t b)
{
	uint32_t w = r >> 6;
	const uint64_t *h = holders_of(s, r);

	bit_clear(want_of(s, a), r);
	bit_set(want_of(s, b), r);
	for (uint32_t j = 0; j < s->hw; j++)
		for (uint64_t m = h[j]; m; m &= m - 1) {
			struct speer *q = &s->peers[j * 64 + ctz64(m)];

			s->work++;
			cand_refresh(s, q, a, w);
			hb_set(&s->hl, cand_of(s, q, b), w);
		}
}

static void avail_change(struct sched *s, uint32_t r, int delta)
{
	if (is_wanted(s, r)) {
		uint32_t a = level_of(s, r), b;

		s->avail[r] = (uint16_t)(s->avail[r] + delta);
		b = level_of(s, r);
		if (a != b)
			level_move(s, r, a, b);
	} else {
		s->avail[r] = (uint16_t)(s->avail[r] + delta);
	}
}

static uint32_t peer_slot(const struct sched *s, const struct speer *p)
{
	return (uint32_t)(p - s->peers);
}

/* Adds p as a holder of r. Returns false if it was one; *queued_at_seed
 * tells the caller that r is in flight and now has a usable holder, so a
 * request queued at a seed for it may yield (seed_yield()). */
static bool holder_add(struct sched *s, struct speer *p, uint32_t r, bool *queued_at_seed)
{
	uint32_t slot = peer_slot(s, p);

	*queued_at_seed = false;
	if (bit_get(p->has, r))
		return false;
	bit_set(p->has, r);
	bit_set(s->holders + (size_t)r * s->hw, slot);
	p->holds++;
	if (!is_wanted(s, r)) {
		if (counts_as_holder(s, p)) {
			s->avail[r]++;
			*queued_at_seed = s->ifl_pos[r] != NONE;
		}
		return true;
	}
	if (counts_as_holder(s, p)) {
		uint32_t a = level_of(s, r), b;

		s->avail[r]++;
		b = level_of(s, r);
		if (a != b) {
			level_move(s, r, a, b); /* p is a holder already: covered */
			return true;
		}
	}
	hb_set(&s->hl, cand_of(s, p, level_of(s, r)), r >> 6);
	return true;
}

static bool holder_del(struct sched *s, struct speer *p, uint32_t r)
{
	uint32_t slot = peer_slot(s, p);
	bool wanted;

	if (!bit_get(p->has, r))
		return false;
	bit_clear(p->has, r);
	bit_clear(s->holders + (size_t)r * s->hw, slot);
	p->holds--;
	wanted = is_wanted(s, r);
	if (wanted)
		cand_refresh(s, p, level_of(s, r), r >> 6);
	if (counts_as_holder(s, p))
		avail_change(s, r, -1);
	return true;
}

/* Adds (+1) or removes (-1) everything p holds from the availability
 * counts; p's status has already changed. */
static void peer_avail_all(struct sched *s, struct speer *p, int delta)
{
	for (uint32_t w = 0; w < s->uw; w++)
		for (uint64_t m = p->has[w]; m; m &= m - 1) {
			s->work++;
			avail_change(s, w * 64 + ctz64(m), delta);
		}
}

static void counts_update(struct sched *s, struct speer *p)
{
	uint32_t slot = peer_slot(s, p);

	if (counts_as_holder(s, p))
		bit_set(s->counts, slot);
	else
		bit_clear(s->counts, slot);
}

static void peer_set_banned(struct sched *s, struct speer *p, bool banned)
{
	bool before = counts_as_holder(s, p);

	p->banned = banned;
	counts_update(s, p);
	if (before != counts_as_holder(s, p))
		peer_avail_all(s, p, before ? -1 : +1);
}

/* ---- requests in flight ---- */

static int reserve(void **arr, size_t *cap, size_t need, size_t size)
{
	return array_reserve(arr, cap, need, size, 16);
}

static int ifl_reserve(struct sched *s, size_t more)
{
	size_t cap = s->cap_ifl;
	void *a = s->ifl;
	int r = reserve(&a, &cap, (size_t)s->n_ifl + more, sizeof(struct ifl));

	s->ifl = a;
	s->cap_ifl = (uint32_t)cap;
	return r;
}

static int ev_reserve(struct sched *s, size_t more)
{
	void *a = s->ev;

	if (s->ev_head == s->ev_n)
		s->ev_head = s->ev_n = 0;
	if (s->ev_n + more > s->ev_cap && s->ev_head > 0) {
		memmove(s->ev, s->ev + s->ev_head, (s->ev_n - s->ev_head) * sizeof(*s->ev));
		s->ev_n -= s->ev_head;
		s->ev_head = 0;
	}
	if (reserve(&a, &s->ev_cap, s->ev_n + more, sizeof(*s->ev)) < 0)
		return -ENOMEM;
	s->ev = a;
	return 0;
}

/* Capacity was reserved by the caller. */
static void ev_push(struct sched *s, enum sched_event_type type, const struct speer *p, uint32_t idx)
{
	s->ev[s->ev_n++] = (struct sched_event){
		.type = type,
		.peer = peer_slot(s, p),
		.peer_key = p->key,
		.idx = idx,
	};
}

static void ifl_remove(struct sched *s, uint32_t r)
{
	uint32_t pos = s->ifl_pos[r];

	s->ifl[pos] = s->ifl[--s->n_ifl];
	s->ifl_pos[s->ifl[pos].r] = pos;
	s->ifl_pos[r] = NONE;
}

static bool ifl_has_peer(const struct ifl *e, uint32_t slot)
{
	for (uint32_t i = 0; i < e->n; i++)
		if (e->peer[i] == slot)
			return true;
	return false;
}

static int req_find(struct sched *s, const struct speer *p, uint32_t r)
{
	for (uint32_t i = 0; i < p->n_req; i++) {
		s->work++;
		if (p->req[i].r == r)
			return (int)i;
	}
	return -1;
}

static void req_del_at(struct sched *s, struct speer *p, uint32_t i)
{
	s->work += p->n_req - i;
	p->req_bytes -= s->len[p->req[i].r];
	memmove(p->req + i, p->req + i + 1, (p->n_req - i - 1) * sizeof(*p->req));
	p->n_req--;
	s->n_reqs--;
}

static void req_add(struct sched *s, struct speer *p, uint32_t r, uint64_t now)
{
	if (p->n_req == 0)
		p->busy_mark = now;
	p->req[p->n_req++] = (struct req){ .r = r, .sent_ms = now };
	p->req_bytes += s->len[r];
	s->n_reqs++;
	s->requests++;
}

/* Drops request i of p; the unit returns to the pool unless someone else
 * is fetching it. */
static void req_drop(struct sched *s, struct speer *p, uint32_t i, bool cancel)
{
	uint32_t r = p->req[i].r, slot = peer_slot(s, p);
	struct ifl *e = &s->ifl[s->ifl_pos[r]];

	req_del_at(s, p, i);
	for (uint32_t j = 0; j < e->n; j++)
		if (e->peer[j] == slot) {
			e->peer[j] = e->peer[--e->n];
			break;
		}
	if (e->n == 0) {
		ifl_remove(s, r);
		if (!bit_get(s->held, r))
			want_add(s, r);
	}
	if (cancel)
		ev_push(s, SCHED_EV_CANCEL, p, s->idx_of[r]);
}

/* r is in flight and a usable peer has just announced it: requests for it
 * queued at seeds are withdrawn (CANCEL events; the caller reserved
 * SCHED_MAX_COPIES) so that the gateway does not upload what the swarm can,
 * and r returns to the pool if nobody else is fetching it. A seed's oldest
 * request is kept: it is probably on the wire already. */
static void seed_yield(struct sched *s, uint32_t r)
{
	uint32_t j = 0;

	if (s->p.seed_policy == SCHED_SEED_PEER)
		return;
	while (s->ifl_pos[r] != NONE) {
		struct ifl *e = &s->ifl[s->ifl_pos[r]];
		struct speer *q;
		int i;

		if (j >= e->n)
			return;
		q = &s->peers[e->peer[j]];
		if (!q->seed || q->req[0].r == r) {
			j++;
			continue;
		}
		i = req_find(s, q, r);
		req_drop(s, q, (uint32_t)i, true); /* removes e->peer[j] */
		s->seed_yields++;
	}
}

static void req_drop_all(struct sched *s, struct speer *p, bool cancel)
{
	while (p->n_req > 0)
		req_drop(s, p, 0, cancel);
	p->win_bytes = p->win_ms = 0;
}

/* The unit is held now: every request for it is dropped with a CANCEL
 * (the caller reserved SCHED_MAX_COPIES events), except except's. */
static void unit_arrived(struct sched *s, uint32_t r, const struct speer *except)
{
	if (s->ifl_pos[r] != NONE) {
		struct ifl e = s->ifl[s->ifl_pos[r]];

		ifl_remove(s, r);
		for (uint32_t j = 0; j < e.n; j++) {
			struct speer *q = &s->peers[e.peer[j]];
			int i;

			if (q == except)
				continue;
			i = req_find(s, q, r);
			if (i >= 0)
				req_del_at(s, q, (uint32_t)i);
			ev_push(s, SCHED_EV_CANCEL, q, s->idx_of[r]);
		}
	} else if (!bit_get(s->held, r)) {
		want_del(s, r);
	}
	bit_set(s->held, r);
	s->n_held++;
	s->bytes_held += s->len[r];
}

/* ---- per-peer measures ---- */

static uint64_t budget_bytes(const struct sched *s, const struct speer *p)
{
	return p->rate * s->p.pipeline_ms / 1000;
}

static bool has_room(const struct sched *s, const struct speer *p)
{
	if (p->n_req >= s->p.depth_max)
		return false;
	if (p->n_req < s->p.depth_min)
		return true;
	if (p->rate == 0)
		return p->n_req < s->p.depth_initial;
	return p->req_bytes < budget_bytes(s, p);
}

static uint64_t rate_or_assumed(const struct sched *s, const struct speer *p)
{
	return p->rate ? p->rate : s->p.rate_initial_bps;
}

static uint64_t timeout_ms(const struct sched *s, const struct speer *p, uint32_t len)
{
	uint64_t expect = (uint64_t)len * 1000 / rate_or_assumed(s, p);
	uint64_t t = s->p.timeout_base_ms + (uint64_t)s->p.timeout_factor * expect;

	return t > s->p.timeout_floor_ms ? t : s->p.timeout_floor_ms;
}

static uint64_t head_deadline(const struct sched *s, const struct speer *p)
{
	const struct req *h = &p->req[0];
	uint64_t since = h->sent_ms > p->last_answer_ms ? h->sent_ms : p->last_answer_ms;

	return since + timeout_ms(s, p, s->len[h->r]);
}

/* Busy time since the last mark goes into the current sample; the sample is
 * folded into the rate once it spans rate_window_ms (or at once while there
 * is no rate yet). */
static void rate_update(struct sched *s, struct speer *p, uint32_t len, uint64_t now)
{
	uint64_t a = s->p.rate_alpha_pct;

	if (now > p->busy_mark)
		p->win_ms += now - p->busy_mark;
	p->busy_mark = now;
	p->win_bytes += len;
	if (p->win_ms == 0 || (p->rate && p->win_ms < s->p.rate_window_ms))
		return;
	{
		uint64_t sample = p->win_bytes * 1000 / p->win_ms;

		p->rate = p->rate ? (p->rate * (100 - a) + sample * a) / 100 : sample;
		if (p->rate == 0)
			p->rate = 1;
	}
	p->win_bytes = p->win_ms = 0;
}

/* Cannot take a request now and has more than seed_assist_wait_ms of work
 * queued, or is snubbed. */
static bool saturated(const struct sched *s, const struct speer *q, uint64_t now)
{
	if (q->snub_until > now)
		return true;
	if (has_room(s, q))
		return false;
	return q->req_bytes * 1000 / rate_or_assumed(s, q) >= s->p.seed_assist_wait_ms;
}

static bool all_holders_saturated(struct sched *s, uint32_t r, uint64_t now)
{
	const uint64_t *h = holders_of(s, r);

	for (uint32_t j = 0; j < s->hw; j++)
		for (uint64_t m = h[j] & s->counts[j]; m; m &= m - 1) {
			s->work++;
			if (!saturated(s, &s->peers[j * 64 + ctz64(m)], now))
				return false;
		}
	return true;
}

static struct speer *peer_get(struct sched *s, uint32_t peer)
{
	if (peer >= s->p.max_peers || !s->peers[peer].used)
		return NULL;
	return &s->peers[peer];
}

static void now_seen(struct sched *s, uint64_t now)
{
	if (now > s->now)
		s->now = now;
}

static void ban_lift_if_over(struct sched *s, struct speer *p, uint64_t now)
{
	if (p->banned && p->banned_until <= now)
		peer_set_banned(s, p, false);
}

static struct ban *ban_find(const struct sched *s, uint64_t key)
{
	for (size_t i = 0; i < s->n_bans; i++)
		if (s->bans[i].key == key)
			return &s->bans[i];
	return NULL;
}

/* ---- parameters, life cycle ---- */

void sched_params_default(struct sched_params *ret)
{
	*ret = (struct sched_params){
		.max_peers = 64,
		.depth_min = 2,
		.depth_initial = 4,
		.depth_max = 64,
		.pipeline_ms = 400,
		.rate_window_ms = 100,
		.rate_alpha_pct = 25,
		.rate_initial_bps = 256 * 1024,
		.timeout_floor_ms = 2000,
		.timeout_base_ms = 1000,
		.timeout_factor = 4,
		.snub_ms = 2000,
		.snub_max_ms = 60000,
		.stall_timeouts = 3,
		.ban_ms = 10 * 60 * 1000,
		.endgame_threshold = 512,
		.endgame_copies = 3,
		.rarity_cap = 16,
		.seed_policy = SCHED_SEED_OFFLOAD,
		.seed_assist = 1,
		.seed_assist_wait_ms = 2000,
		.seed_later_ms = 1000,
	};
}

int sched_params_check(const struct sched_params *p, struct perr *err)
{
	if (p->max_peers < 1 || p->max_peers > SCHED_MAX_PEERS)
		return perr_set(err, -EINVAL, "sched: max_peers %" PRIu32 " not in 1..%u", p->max_peers,
				SCHED_MAX_PEERS);
	if (p->depth_min < 1 || p->depth_min > p->depth_max || p->depth_max > SCHED_MAX_DEPTH)
		return perr_set(err, -EINVAL, "sched: need 1 <= depth_min (%" PRIu32 ") <= depth_max (%" PRIu32
				") <= %u", p->depth_min, p->depth_max, SCHED_MAX_DEPTH);
	if (p->depth_initial < p->depth_min || p->depth_initial > p->depth_max)
		return perr_set(err, -EINVAL, "sched: depth_initial %" PRIu32 " not in depth_min..depth_max",
				p->depth_initial);
	if (p->rate_alpha_pct < 1 || p->rate_alpha_pct > 100)
		return perr_set(err, -EINVAL, "sched: rate_alpha_pct %" PRIu32 " not in 1..100", p->rate_alpha_pct);
	if (p->rate_initial_bps < 1)
		return perr_set(err, -EINVAL, "sched: rate_initial_bps must be at least 1");
	if (p->timeout_factor < 1 || p->timeout_factor > 1000)
		return perr_set(err, -EINVAL, "sched: timeout_factor %" PRIu32 " not in 1..1000", p->timeout_factor);
	if (p->snub_max_ms < p->snub_ms)
		return perr_set(err, -EINVAL, "sched: snub_max_ms is below snub_ms");
	if (p->stall_timeouts < 1)
		return perr_set(err, -EINVAL, "sched: stall_timeouts must be at least 1");
	if (p->endgame_copies < 1 || p->endgame_copies > SCHED_MAX_COPIES)
		return perr_set(err, -EINVAL, "sched: endgame_copies %" PRIu32 " not in 1..%u", p->endgame_copies,
				SCHED_MAX_COPIES);
	if (p->rarity_cap < 1 || p->rarity_cap > SCHED_MAX_RARITY)
		return perr_set(err, -EINVAL, "sched: rarity_cap %" PRIu32 " not in 1..%u", p->rarity_cap,
				SCHED_MAX_RARITY);
	switch (p->seed_policy) {
	case SCHED_SEED_OFFLOAD:
	case SCHED_SEED_STRICT:
	case SCHED_SEED_PEER:
		break;
	default:
		return perr_set(err, -EINVAL, "sched: unknown seed policy %d", (int)p->seed_policy);
	}
	return 0;
}

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

/* Uniform in [0, bound) on every platform: rejection, no 128-bit math. */
static uint32_t rand_below(uint64_t *x, uint32_t bound)
{
	uint64_t lim = UINT64_MAX - UINT64_MAX % bound;

	for (;;) {
		uint64_t v = splitmix64(x);

		if (v < lim)
			return (uint32_t)(v % bound);
	}
}

static void peer_release(struct speer *p)
{
	free(p->has);
	free(p->cand);
	free(p->req);
	*p = (struct speer){ 0 };
}

void sched_free(struct sched *s)
{
	if (!s)
		return;
	if (s->peers)
		for (uint32_t i = 0; i < s->p.max_peers; i++)
			peer_release(&s->peers[i]);
	free(s->peers);
	free(s->rank_of);
	free(s->idx_of);
	free(s->len);
	free(s->avail);
	free(s->ifl_pos);
	free(s->held);
	free(s->want);
	free(s->holders);
	free(s->counts);
	free(s->later);
	free(s->ifl);
	free(s->bans);
	free(s->ev);
	free(s);
}

static int check_table(size_t n, const uint32_t *lens, const uint32_t *same_as, struct perr *err)
{
	for (size_t i = 0; i < n; i++) {
		if (lens[i] == 0)
			return perr_set(err, -EINVAL, "sched: chunk %zu has length 0", i);
		if (!same_as)
			continue;
		if (same_as[i] > i || same_as[same_as[i]] != same_as[i])
			return perr_set(err, -EINVAL, "sched: same-as entry %zu -> %" PRIu32
					" does not name the first chunk with that id", i, same_as[i]);
		if (lens[same_as[i]] != lens[i])
			return perr_set(err, -EINVAL, "sched: chunks %zu and %" PRIu32
					" have the same id but different lengths", i, same_as[i]);
	}
	return 0;
}

int sched_new(const struct sched_params *p, size_t n_chunks, const uint32_t *chunk_lens, const uint32_t *same_as,
	      uint64_t seed, struct sched **ret, struct perr *err)
{
	_cleanup_(sched_freep) struct sched *s = NULL;
	struct sched_params def;
	uint32_t n_units = 0;
	uint64_t rng = seed;
	int k;

	if (!p) {
		sched_params_default(&def);
		p = &def;
	}
	if ((k = sched_params_check(p, err)) < 0)
		return k;
	if (n_chunks > SCHED_MAX_CHUNKS)
		return perr_set(err, -E2BIG, "sched: %zu chunks, at most %u", n_chunks, SCHED_MAX_CHUNKS);
	if (n_chunks && !chunk_lens)
		return perr_set(err, -EINVAL, "sched: no chunk lengths");
	if ((k = check_table(n_chunks, chunk_lens, same_as, err)) < 0)
		return k;

	s = calloc(1, sizeof(*s));
	if (!s)
		return perr_set(err, -ENOMEM, "out of memory");
	s->p = *p;
	s->n_idx = (uint32_t)n_chunks;
	for (size_t i = 0; i < n_chunks; i++)
		if (!same_as || same_as[i] == i)
			n_units++;
	s->n_units = n_units;
	s->uw = (n_units + 63) / 64;
	if (s->uw == 0)
		s->uw = 1;
	s->hw = (p->max_peers + 63) / 64;
	s->n_levels = p->rarity_cap + 1;
	hb_layout_init(&s->hl, s->uw);

	s->rank_of = calloc(n_chunks ? n_chunks : 1, sizeof(uint32_t));
	s->idx_of = calloc(n_units ? n_units : 1, sizeof(uint32_t));
	s->len = calloc(n_units ? n_units : 1, sizeof(uint32_t));
	s->avail = calloc(n_units ? n_units : 1, sizeof(uint16_t));
	s->ifl_pos = calloc(n_units ? n_units : 1, sizeof(uint32_t));
	s->held = calloc(s->uw, sizeof(uint64_t));
	s->want = calloc((size_t)s->n_levels * s->uw, sizeof(uint64_t));
	s->holders = calloc((size_t)(n_units ? n_units : 1) * s->hw, sizeof(uint64_t));
	s->counts = calloc(s->hw, sizeof(uint64_t));
	s->peers = calloc(p->max_peers, sizeof(struct speer));
	if (!s->rank_of || !s->idx_of || !s->len || !s->avail || !s->ifl_pos || !s->held || !s->want ||
	    !s->holders || !s->counts || !s->peers)
		return perr_set(err, -ENOMEM, "out of memory");

	/* idx_of: the first indexes in a random order (Fisher-Yates). */
	n_units = 0;
	for (size_t i = 0; i < n_chunks; i++)
		if (!same_as || same_as[i] == i)
			s->idx_of[n_units++] = (uint32_t)i;
	for (uint32_t i = n_units; i > 1; i--) {
		uint32_t j = rand_below(&rng, i), t = s->idx_of[i - 1];

		s->idx_of[i - 1] = s->idx_of[j];
		s->idx_of[j] = t;
	}
	for (uint32_t r = 0; r < n_units; r++) {
		s->rank_of[s->idx_of[r]] = r;
		s->len[r] = chunk_lens[s->idx_of[r]];
		s->ifl_pos[r] = NONE;
		s->bytes_total += s->len[r];
	}
	if (same_as)
		for (size_t i = 0; i < n_chunks; i++)
			s->rank_of[i] = s->rank_of[same_as[i]];
	/* Nobody holds anything yet: every unit is wanted at level 0. */
	for (uint32_t r = 0; r < n_units; r++)
		bit_set(want_of(s, 0), r);
	s->n_wanted = n_units;

	*ret = TAKE_PTR(s);
	return 0;
}

struct dedup_ent {
	const uint8_t *id;
	uint32_t idx;
	uint32_t len; /* the same in every entry: qsort_r is not everywhere */
};

static int dedup_cmp(const void *a, const void *b)
{
	const struct dedup_ent *x = a, *y = b;
	int c = memcmp(x->id, y->id, x->len);

	if (c)
		return c;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

int sched_dedup(const uint8_t *ids, size_t id_len, size_t stride, size_t n, uint32_t **ret)
{
	_cleanup_(freep) struct dedup_ent *e = NULL;
	_cleanup_(freep) uint32_t *same = NULL;

	if (n > SCHED_MAX_CHUNKS || id_len == 0 || id_len > UINT32_MAX || stride < id_len || (n && !ids))
		return -EINVAL;
	e = calloc(n ? n : 1, sizeof(*e));
	same = calloc(n ? n : 1, sizeof(*same));
	if (!e || !same)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		e[i] = (struct dedup_ent){ .id = ids + i * stride, .idx = (uint32_t)i, .len = (uint32_t)id_len };
	qsort(e, n, sizeof(*e), dedup_cmp);
	for (size_t i = 0; i < n; i++) {
		bool same_id = i > 0 && memcmp(e[i].id, e[i - 1].id, id_len) == 0;

		same[e[i].idx] = same_id ? same[e[i - 1].idx] : e[i].idx;
	}
	*ret = TAKE_PTR(same);
	return 0;
}

/* ---- local state ---- */

int sched_have(struct sched *s, uint32_t idx)
{
	uint32_t r;

	if (idx >= s->n_idx)
		return -EINVAL;
	r = s->rank_of[idx];
	if (bit_get(s->held, r))
		return 0;
	if (ev_reserve(s, SCHED_MAX_COPIES) < 0)
		return -ENOMEM;
	unit_arrived(s, r, NULL);
	return 1;
}

/* ---- peers ---- */

int sched_peer_add(struct sched *s, uint64_t peer_key, bool is_seed, uint32_t *ret)
{
	struct speer *p = NULL;
	const struct ban *b;

	for (uint32_t i = 0; i < s->p.max_peers; i++) {
		if (s->peers[i].used && s->peers[i].key == peer_key)
			return -EEXIST;
		if (!s->peers[i].used && !p)
			p = &s->peers[i];
	}
	if (!p)
		return -ENOSPC;
	p->has = calloc(s->uw, sizeof(uint64_t));
	p->cand = calloc((size_t)s->n_levels * s->hl.words, sizeof(uint64_t));
	p->req = calloc(s->p.depth_max, sizeof(struct req));
	if (!p->has || !p->cand || !p->req) {
		peer_release(p);
		return -ENOMEM;
	}
	p->used = true;
	p->key = peer_key;
	p->seed = is_seed;
	b = ban_find(s, peer_key);
	if (b && b->until > s->now) {
		p->banned = true;
		p->banned_until = b->until;
	}
	counts_update(s, p);
	s->n_peers++;
	*ret = peer_slot(s, p);
	return 0;
}

int sched_peer_remove(struct sched *s, uint32_t peer)
{
	struct speer *p = peer_get(s, peer);
	int n;

	if (!p)
		return -ENOENT;
	n = (int)p->n_req;
	req_drop_all(s, p, false);
	for (uint32_t w = 0; w < s->uw; w++)
		while (p->has[w]) {
			s->work++;
			holder_del(s, p, w * 64 + ctz64(p->has[w]));
		}
	bit_clear(s->counts, peer);
	peer_release(p);
	s->n_peers--;
	return n;
}

int sched_peer_bitfield(struct sched *s, uint32_t peer, const uint8_t *bits, size_t n_bits)
{
	struct speer *p = peer_get(s, peer);

	if (!p)
		return -ENOENT;
	if (n_bits != s->n_idx || (n_bits && !bits))
		return -EINVAL;
	if (ev_reserve(s, s->n_reqs) < 0)
		return -ENOMEM;
	if (p->holds)
		for (uint32_t w = 0; w < s->uw; w++)
			while (p->has[w]) {
				s->work++;
				holder_del(s, p, w * 64 + ctz64(p->has[w]));
			}
	for (size_t i = 0; i < n_bits; i += 8) {
		uint8_t byte = bits[i / 8];

		s->work++;
		for (; byte; byte &= (uint8_t)(byte - 1)) {
			size_t at = i + (size_t)__builtin_ctz(byte);

			bool yield;

			if (at >= n_bits)
				break;
			holder_add(s, p, s->rank_of[at], &yield);
			if (yield)
				seed_yield(s, s->rank_of[at]);
		}
	}
	return 0;
}

int sched_peer_has(struct sched *s, uint32_t peer, uint32_t idx)
{
	struct speer *p = peer_get(s, peer);
	bool yield;

	if (!p)
		return -ENOENT;
	if (idx >= s->n_idx)
		return -EINVAL;
	if (ev_reserve(s, SCHED_MAX_COPIES) < 0)
		return -ENOMEM;
	if (!holder_add(s, p, s->rank_of[idx], &yield))
		return 0;
	if (yield)
		seed_yield(s, s->rank_of[idx]);
	return 1;
}

/* ---- picking ---- */

struct pick {
	uint32_t *out;
	size_t max;
	size_t n;
	uint64_t now;
	bool assist;      /* only units whose usable holders are all saturated */
	uint32_t budget;  /* candidates an assist pick may look at */
};

static bool pick_more(const struct sched *s, const struct speer *p, const struct pick *k)
{
	if (k->n >= k->max || !has_room(s, p))
		return false;
	return !k->assist || (p->n_req < s->p.seed_assist && k->budget > 0);
}

static void pick_issue(struct sched *s, struct speer *p, struct pick *k, uint32_t r)
{
	want_del(s, r);
	s->ifl[s->n_ifl] = (struct ifl){ .r = r, .n = 1, .peer = { (uint16_t)peer_slot(s, p) } };
	s->ifl_pos[r] = s->n_ifl++;
	req_add(s, p, r, k->now);
	k->out[k->n++] = s->idx_of[r];
}

/* A seed said "later" for r, and later has not come yet. */
static bool seed_deferred(const struct sched *s, const struct speer *p, uint32_t r, uint64_t now)
{
	return s->later && seed_mode(s, p) && s->later[r] > now;
}

/* Takes p's candidates at rarity level lv, in rank order. */
static void pick_level(struct sched *s, struct speer *p, uint32_t lv, struct pick *k)
{
	const uint64_t *want = want_of(s, lv);
	uint64_t *cand = cand_of(s, p, lv);

	for (uint32_t w = hb_next(s, cand, 0); w != NONE; w = hb_next(s, cand, w + 1))
		for (uint64_t m = want[w] & p->has[w]; m; m &= m - 1) {
			uint32_t r = w * 64 + ctz64(m);

			if (!pick_more(s, p, k))
				return;
			s->work++;
			if (seed_deferred(s, p, r, k->now))
				continue;
			if (k->assist) {
				k->budget--;
				if (!all_holders_saturated(s, r, k->now))
					continue;
			}
			pick_issue(s, p, k, r);
		}
}

static bool endgame(const struct sched *s)
{
	uint32_t missing = s->n_units - s->n_held;

	return s->n_wanted == 0 && missing > 0 && missing <= s->p.endgame_threshold &&
	       s->p.endgame_copies > 1;
}

/* Duplicates of units in flight elsewhere, the least duplicated first. */
static void pick_endgame(struct sched *s, struct speer *p, struct pick *k)
{
	uint32_t slot = peer_slot(s, p);

	for (uint32_t copies = 1; copies < s->p.endgame_copies; copies++)
		for (uint32_t i = 0; i < s->n_ifl; i++) {
			struct ifl *e = &s->ifl[i];

			if (!pick_more(s, p, k))
				return;
			s->work++;
			if (e->n != copies || !bit_get(p->has, e->r) || ifl_has_peer(e, slot) ||
			    seed_deferred(s, p, e->r, k->now))
				continue;
			if (seed_mode(s, p) && s->avail[e->r] > 0) {
				if (s->p.seed_policy != SCHED_SEED_OFFLOAD || p->n_req >= s->p.seed_assist ||
				    !all_holders_saturated(s, e->r, k->now))
					continue;
			}
			e->peer[e->n++] = (uint16_t)slot;
			req_add(s, p, e->r, k->now);
			s->duplicates++;
			k->out[k->n++] = s->idx_of[e->r];
		}
}

#define ASSIST_SCAN 64

int sched_pick(struct sched *s, uint32_t peer, uint64_t now_ms, uint32_t *out, size_t max, size_t *n)
{
	struct speer *p = peer_get(s, peer);
	struct pick k = { .out = out, .max = max, .now = now_ms };
	uint32_t top;

	if (!p)
		return -ENOENT;
	if (k.max > s->p.depth_max)
		k.max = s->p.depth_max;
	if (ifl_reserve(s, k.max) < 0)
		return -ENOMEM;
	now_seen(s, now_ms);
	ban_lift_if_over(s, p, now_ms);
	if (p->banned || p->snub_until > now_ms || s->n_held == s->n_units) {
		*n = 0;
		return 0;
	}

	top = seed_mode(s, p) ? 0 : s->p.rarity_cap;
	for (uint32_t lv = 0; lv <= top && pick_more(s, p, &k); lv++) {
		s->work++;
		if (!hb_empty(&s->hl, cand_of(s, p, lv)))
			pick_level(s, p, lv, &k);
	}
	if (seed_mode(s, p) && s->p.seed_policy == SCHED_SEED_OFFLOAD && s->p.seed_assist > 0) {
		k.assist = true;
		k.budget = ASSIST_SCAN;
		for (uint32_t lv = 1; lv <= s->p.rarity_cap && pick_more(s, p, &k); lv++) {
			s->work++;
			if (!hb_empty(&s->hl, cand_of(s, p, lv)))
				pick_level(s, p, lv, &k);
		}
		k.assist = false;
	}
	if (endgame(s))
		pick_endgame(s, p, &k);
	*n = k.n;
	return 0;
}

/* ---- answers and time ---- */

static int ban_reserve(struct sched *s)
{
	void *a = s->bans;
	int r = reserve(&a, &s->cap_bans, s->n_bans + 1, sizeof(*s->bans));

	s->bans = a;
	return r;
}

static void ban_set(struct sched *s, uint64_t key, uint64_t until)
{
	struct ban *b = ban_find(s, key);

	if (!b) {
		b = &s->bans[s->n_bans++];
		*b = (struct ban){ .key = key };
	}
	if (until > b->until)
		b->until = until;
}

int sched_on_chunk(struct sched *s, uint32_t peer, uint32_t idx, bool valid, uint64_t now_ms)
{
	struct speer *p = peer_get(s, peer);
	uint32_t r;
	int i;

	if (!p)
		return -ENOENT;
	if (idx >= s->n_idx)
		return -EINVAL;
	if (valid ? ev_reserve(s, SCHED_MAX_COPIES) < 0 : ban_reserve(s) < 0)
		return -ENOMEM;
	now_seen(s, now_ms);
	r = s->rank_of[idx];
	p->last_answer_ms = now_ms;

	if (!valid) {
		p->bad++;
		s->bad_chunks++;
		s->bytes_wasted += s->len[r];
		p->banned_until = now_ms + s->p.ban_ms;
		ban_set(s, p->key, p->banned_until);
		req_drop_all(s, p, false);
		if (!p->banned)
			peer_set_banned(s, p, true);
		return 0;
	}

	i = req_find(s, p, r);
	if (i >= 0) {
		rate_update(s, p, s->len[r], now_ms);
		req_del_at(s, p, (uint32_t)i);
	}
	p->consec = 0;
	p->chunks++;
	p->bytes += s->len[r];
	if (bit_get(s->held, r)) {
		s->bytes_wasted += s->len[r];
		return 0;
	}
	unit_arrived(s, r, p);
	if (p->seed)
		s->bytes_seeds += s->len[r];
	else
		s->bytes_peers += s->len[r];
	return 1;
}

int sched_on_not_found(struct sched *s, uint32_t peer, uint32_t idx, uint64_t now_ms)
{
	struct speer *p = peer_get(s, peer);
	uint32_t r;
	int i;

	if (!p)
		return -ENOENT;
	if (idx >= s->n_idx)
		return -EINVAL;
	now_seen(s, now_ms);
	r = s->rank_of[idx];
	p->last_answer_ms = now_ms;
	if (seed_mode(s, p)) {
		if (!s->later && !(s->later = calloc(s->n_units ? s->n_units : 1, sizeof(*s->later))))
			return -ENOMEM;
		s->later[r] = now_ms + s->p.seed_later_ms;
		s->seed_laters++;
	} else {
		p->not_found++;
		s->not_found++;
		holder_del(s, p, r);
	}
	i = req_find(s, p, r);
	if (i >= 0)
		req_drop(s, p, (uint32_t)i, false);
	return 0;
}

static void peer_timed_out(struct sched *s, struct speer *p, uint64_t now)
{
	uint32_t shift = p->consec < 31 ? p->consec : 31;
	uint64_t snub = (uint64_t)s->p.snub_ms << shift;

	req_drop_all(s, p, true);
	p->timeouts++;
	s->timeouts++;
	p->consec++;
	if (p->rate > 1)
		p->rate /= 2;
	if (snub > s->p.snub_max_ms)
		snub = s->p.snub_max_ms;
	p->snub_until = now + snub;
	if (p->consec >= s->p.stall_timeouts)
		ev_push(s, SCHED_EV_PEER_STALLED, p, 0);
}

int sched_tick(struct sched *s, uint64_t now_ms)
{
	size_t need = s->n_reqs + s->p.max_peers;
	int n = 0;

	if (ev_reserve(s, need) < 0)
		return -ENOMEM;
	now_seen(s, now_ms);
	for (uint32_t i = 0; i < s->p.max_peers; i++) {
		struct speer *p = &s->peers[i];

		s->work++;
		if (!p->used)
			continue;
		ban_lift_if_over(s, p, now_ms);
		if (p->n_req > 0 && now_ms >= head_deadline(s, p)) {
			peer_timed_out(s, p, now_ms);
			n++;
		}
	}
	for (size_t i = 0; i < s->n_bans;) {
		if (s->bans[i].until <= now_ms)
			s->bans[i] = s->bans[--s->n_bans];
		else
			i++;
	}
	return n;
}

uint64_t sched_next_deadline(const struct sched *s, uint64_t now_ms)
{
	uint64_t t = SCHED_NEVER;

	for (uint32_t i = 0; i < s->p.max_peers; i++) {
		const struct speer *p = &s->peers[i];

		if (!p->used)
			continue;
		if (p->n_req > 0 && head_deadline(s, p) < t)
			t = head_deadline(s, p);
		if (p->snub_until > now_ms && p->snub_until < t)
			t = p->snub_until;
		if (p->banned && p->banned_until < t)
			t = p->banned_until;
	}
	return t;
}

int sched_event_next(struct sched *s, struct sched_event *ret)
{
	if (s->ev_head == s->ev_n)
		return 0;
	*ret = s->ev[s->ev_head++];
	return 1;
}

uint64_t sched_peer_banned_until(const struct sched *s, uint64_t peer_key)
{
	const struct ban *b = ban_find(s, peer_key);

	return b ? b->until : 0;
}

/* ---- reports ---- */

void sched_get_stats(const struct sched *s, struct sched_stats *ret)
{
	*ret = (struct sched_stats){
		.chunks_total = s->n_units,
		.chunks_held = s->n_held,
		.chunks_in_flight = s->n_ifl,
		.chunks_wanted = s->n_wanted,
		.requests_in_flight = s->n_reqs,
		.peers = s->n_peers,
		.bytes_total = s->bytes_total,
		.bytes_held = s->bytes_held,
		.bytes_from_peers = s->bytes_peers,
		.bytes_from_seeds = s->bytes_seeds,
		.bytes_wasted = s->bytes_wasted,
		.requests = s->requests,
		.duplicates = s->duplicates,
		.timeouts = s->timeouts,
		.bad_chunks = s->bad_chunks,
		.not_found = s->not_found,
		.seed_yields = s->seed_yields,
		.seed_laters = s->seed_laters,
		.endgame = endgame(s),
		.work = s->work,
	};
}

int sched_get_peer_stats(const struct sched *s, uint32_t peer, struct sched_peer_stats *ret)
{
	const struct speer *p;
	uint64_t depth;

	if (peer >= s->p.max_peers || !s->peers[peer].used)
		return -ENOENT;
	p = &s->peers[peer];
	if (p->rate == 0) {
		depth = s->p.depth_initial;
	} else {
		uint64_t avg = s->n_units ? s->bytes_total / s->n_units : 1;

		depth = (budget_bytes(s, p) + avg - 1) / (avg ? avg : 1);
		if (depth < s->p.depth_min)
			depth = s->p.depth_min;
		if (depth > s->p.depth_max)
			depth = s->p.depth_max;
	}
	*ret = (struct sched_peer_stats){
		.key = p->key,
		.seed = p->seed,
		.banned = p->banned,
		.banned_until = p->banned_until,
		.snubbed_until = p->snub_until,
		.rate_bps = p->rate,
		.depth = (uint32_t)depth,
		.in_flight = p->n_req,
		.bytes_in_flight = p->req_bytes,
		.bytes = p->bytes,
		.chunks = p->chunks,
		.holds = p->holds,
		.timeouts = p->timeouts,
		.timeouts_in_a_row = p->consec,
		.not_found = p->not_found,
		.bad_chunks = p->bad,
		.score = (int64_t)p->chunks - 4 * (int64_t)p->timeouts - 2 * (int64_t)p->not_found -
			 100 * (int64_t)p->bad,
	};
	return 0;
}

bool sched_done(const struct sched *s)
{
	return s->n_held == s->n_units;
}
