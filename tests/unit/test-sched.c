/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The transfer scheduler, driven by a small discrete-event harness:
 * simulated peers with bitfields, rates (bytes per ms) and latencies serve
 * the requests the scheduler makes, one after the other, on a virtual
 * clock. Nothing sleeps; every run is reproducible from its seeds.
 *
 * `test-sched --bench [CHUNKS [PEERS]]` runs the large schedule once and
 * prints how many scheduler calls per second it sustained (not a test). */
#include <stdio.h>
#include <time.h>

#include "helpers.h"
#include "scheduler.h"

#define KIB 1024u
#define MAX_SIM_PEERS 80
#define PICK_MAX 64

/* ---- bitfields in index order ---- */

static uint8_t *bf_new(size_t n)
{
	uint8_t *b = calloc((n + 7) / 8 + 1, 1);

	assert_non_null(b);
	return b;
}

static void bf_set(uint8_t *b, size_t i)
{
	b[i / 8] |= (uint8_t)(1u << (i % 8));
}

static bool bf_get(const uint8_t *b, size_t i)
{
	return (b[i / 8] >> (i % 8)) & 1;
}

static uint8_t *bf_all(size_t n)
{
	uint8_t *b = bf_new(n);

	for (size_t i = 0; i < n; i++)
		bf_set(b, i);
	return b;
}

/* ---- the harness ---- */

struct sq {
	uint32_t idx;
	uint64_t at; /* when the reply arrives */
};

struct simpeer {
	uint32_t h;
	uint64_t key;
	bool seed;
	bool silent; /* never answers */
	bool gone;
	uint32_t rate;      /* bytes per ms */
	uint32_t latency;   /* ms */
	uint64_t bad_reply; /* this reply (1-based) does not match its id; 0: none */
	uint8_t *has;       /* index order, may be NULL */
	struct sq *q;
	size_t nq, cap;
	uint64_t free_at;
	uint64_t replies;
	uint64_t asked;
	size_t max_q;
	bool dirty;
};

struct sim {
	struct sched *s;
	size_t n;
	uint32_t *lens;
	uint64_t now;
	struct simpeer p[MAX_SIM_PEERS];
	size_t np;
	bool pick_all;   /* pick for every peer at every step; else only for the ones that changed */
	size_t cancels;
	size_t stalls;
	uint64_t steps;
	uint64_t calls;  /* scheduler calls made */
	uint64_t have_seed; /* nonzero: after each delivery one random peer gains one random chunk */
	bool timed;      /* --bench: measure the time spent in scheduler calls */
	uint64_t sched_ns;
};

static uint64_t clock_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000 + (uint64_t)t.tv_nsec;
}

static uint64_t sim_clock(const struct sim *m)
{
	return m->timed ? clock_ns() : 0;
}

static void sim_clocked(struct sim *m, uint64_t t0)
{
	if (m->timed)
		m->sched_ns += clock_ns() - t0;
}

static void sim_init(struct sim *m, size_t n, const uint32_t *lens, uint32_t len, const uint32_t *same_as,
		     const struct sched_params *p, uint64_t seed)
{
	struct perr err = { "" };

	*m = (struct sim){ .n = n, .pick_all = true };
	m->lens = calloc(n ? n : 1, sizeof(uint32_t));
	assert_non_null(m->lens);
	for (size_t i = 0; i < n; i++)
		m->lens[i] = lens ? lens[i] : len;
	assert_err(sched_new(p, n, m->lens, same_as, seed, &m->s, &err), 0, &err, NULL);
}

static void sim_free(struct sim *m)
{
	for (size_t i = 0; i < m->np; i++) {
		free(m->p[i].has);
		free(m->p[i].q);
	}
	free(m->lens);
	sched_free(m->s);
}

/* Adds a peer that holds what `has` says (taken over; NULL: nothing). */
static struct simpeer *sim_add(struct sim *m, uint64_t key, bool seed, uint32_t rate, uint32_t latency, uint8_t *has)
{
	struct simpeer *p = &m->p[m->np++];
	uint64_t t0;
	int k;

	assert_true(m->np <= MAX_SIM_PEERS);
	*p = (struct simpeer){ .key = key, .seed = seed, .rate = rate, .latency = latency, .has = has, .dirty = true };
	t0 = sim_clock(m);
	k = sched_peer_add(m->s, key, seed, &p->h);
	if (k == 0 && has)
		k = sched_peer_bitfield(m->s, p->h, has, m->n);
	sim_clocked(m, t0);
	assert_int_equal(k, 0);
	m->calls += 2;
	return p;
}

static struct simpeer *sim_by_handle(struct sim *m, uint32_t h)
{
	for (size_t i = 0; i < m->np; i++)
		if (!m->p[i].gone && m->p[i].h == h)
			return &m->p[i];
	fail_msg("no peer with handle %u", h);
	return NULL;
}

static void sim_enqueue(struct sim *m, struct simpeer *p, uint32_t idx)
{
	uint64_t start = m->now + p->latency;

	if (p->has)
		assert_true(bf_get(p->has, idx)); /* only ever asked for what it has */
	if (p->free_at > start)
		start = p->free_at;
	p->free_at = start + (m->lens[idx] + p->rate - 1) / p->rate;
	if (p->nq == p->cap) {
		p->cap = p->cap ? 2 * p->cap : 64;
		p->q = realloc(p->q, p->cap * sizeof(*p->q));
		assert_non_null(p->q);
	}
	p->q[p->nq++] = (struct sq){ .idx = idx, .at = p->free_at };
	if (p->nq > p->max_q)
		p->max_q = p->nq;
}

static size_t sim_pick(struct sim *m, struct simpeer *p)
{
	uint32_t out[PICK_MAX];
	uint64_t t0 = sim_clock(m);
	size_t k;
	int r = sched_pick(m->s, p->h, m->now, out, PICK_MAX, &k);

	sim_clocked(m, t0);
	assert_int_equal(r, 0);
	m->calls++;
	for (size_t i = 0; i < k; i++)
		sim_enqueue(m, p, out[i]);
	p->asked += k;
	return k;
}

static void sim_drain(struct sim *m)
{
	struct sched_event ev;

	for (;;) {
		uint64_t t0 = sim_clock(m);
		int got = sched_event_next(m->s, &ev);
		struct simpeer *p;

		sim_clocked(m, t0);
		if (!got)
			break;
		p = sim_by_handle(m, ev.peer);
		assert_int_equal(ev.peer_key, p->key);
		switch (ev.type) {
		case SCHED_EV_CANCEL:
			m->cancels++;
			for (size_t i = 0; i < p->nq; i++)
				if (p->q[i].idx == ev.idx) {
					memmove(p->q + i, p->q + i + 1, (p->nq - i - 1) * sizeof(*p->q));
					p->nq--;
					break;
				}
			break;
		case SCHED_EV_PEER_STALLED:
			m->stalls++;
			break;
		default:
			fail_msg("unknown event %d", (int)ev.type);
		}
	}
}

static void sim_deliver(struct sim *m, struct simpeer *p)
{
	struct sq r = p->q[0];
	uint64_t t0;
	bool valid;
	int k;

	memmove(p->q, p->q + 1, (p->nq - 1) * sizeof(*p->q));
	p->nq--;
	p->replies++;
	valid = p->replies != p->bad_reply;
	t0 = sim_clock(m);
	k = sched_on_chunk(m->s, p->h, r.idx, valid, m->now);
	sim_clocked(m, t0);
	m->calls++;
	assert_true(k == 0 || k == 1);
	if (!valid)
		p->nq = 0; /* it is dropped, as the daemon would */
	p->dirty = true;
}

static void sim_mark_all(struct sim *m)
{
	for (size_t i = 0; i < m->np; i++)
		m->p[i].dirty = true;
}

/* One round: pick, jump to the next reply or deadline, deliver, tick.
 * False when nothing can happen any more. */
static bool sim_step(struct sim *m)
{
	uint64_t t = SCHED_NEVER;
	bool delivered = false;
	int k;

	for (size_t i = 0; i < m->np; i++) {
		struct simpeer *p = &m->p[i];

		if (!p->gone && (m->pick_all || p->dirty)) {
			p->dirty = false;
			sim_pick(m, p);
		}
	}
	sim_drain(m);
	for (size_t i = 0; i < m->np; i++) {
		struct simpeer *p = &m->p[i];

		if (!p->gone && !p->silent && p->nq && p->q[0].at < t)
			t = p->q[0].at;
	}
	{
		uint64_t t0 = sim_clock(m);
		uint64_t d = sched_next_deadline(m->s, m->now);

		sim_clocked(m, t0);
		m->calls++;
		if (d < t)
			t = d;
	}
	if (t == SCHED_NEVER)
		return false;
	if (t > m->now)
		m->now = t;
	for (size_t i = 0; i < m->np; i++) {
		struct simpeer *p = &m->p[i];

		while (!p->gone && !p->silent && p->nq && p->q[0].at <= m->now) {
			sim_deliver(m, p);
			delivered = true;
			if (m->have_seed) {
				struct simpeer *g = &m->p[prng_next(&m->have_seed) % m->np];
				uint32_t idx = (uint32_t)(prng_next(&m->have_seed) % m->n);

				if (!g->gone && !bf_get(g->has, idx)) {
					uint64_t t0 = sim_clock(m);
					int x = sched_peer_has(m->s, g->h, idx);

					sim_clocked(m, t0);
					bf_set(g->has, idx);
					assert_int_equal(x, 1);
					m->calls++;
					g->dirty = true;
				}
			}
		}
	}
	sim_drain(m);
	{
		uint64_t t0 = sim_clock(m);

		k = sched_tick(m->s, m->now);
		sim_clocked(m, t0);
	}
	m->calls++;
	assert_true(k >= 0);
	sim_drain(m);
	if (k > 0 || !delivered || m->steps % 64 == 0)
		sim_mark_all(m);
	m->steps++;
	return true;
}

static void sim_run(struct sim *m, uint64_t max_steps)
{
	while (!sched_done(m->s)) {
		assert_true(m->steps < max_steps);
		assert_true(sim_step(m));
	}
}

static void check_done(struct sim *m)
{
	struct sched_stats st;

	sched_get_stats(m->s, &st);
	assert_true(sched_done(m->s));
	assert_int_equal(st.chunks_held, st.chunks_total);
	assert_int_equal(st.bytes_held, st.bytes_total);
	assert_int_equal(st.chunks_in_flight, 0);
	assert_int_equal(st.requests_in_flight, 0);
	assert_int_equal(st.chunks_wanted, 0);
}

static struct sched_params params(void)
{
	struct sched_params p;

	sched_params_default(&p);
	return p;
}

/* ---- tests ---- */

static void test_params(void **state)
{
	struct sched_params p = params();
	struct perr err = { "" };
	uint32_t lens[4] = { 10, 10, 20, 10 };
	struct sched *s = NULL;

	(void)state;
	assert_err(sched_params_check(&p, &err), 0, &err, NULL);
	p.depth_min = 0;
	assert_err(sched_params_check(&p, &err), -EINVAL, &err, "depth_min");
	p = params();
	p.depth_max = SCHED_MAX_DEPTH + 1;
	assert_err(sched_params_check(&p, &err), -EINVAL, &err, "depth_max");
	p = params();
	p.endgame_copies = SCHED_MAX_COPIES + 1;
	assert_err(sched_params_check(&p, &err), -EINVAL, &err, "endgame_copies");
	p = params();
	p.rarity_cap = 0;
	assert_err(sched_params_check(&p, &err), -EINVAL, &err, "rarity_cap");
	p = params();
	p.seed_policy = (enum sched_seed_policy)7;
	assert_err(sched_params_check(&p, &err), -EINVAL, &err, "seed policy");
	p = params();
	p.max_peers = SCHED_MAX_PEERS + 1;
	assert_err(sched_new(&p, 4, lens, NULL, 1, &s, &err), -EINVAL, &err, "max_peers");
	assert_null(s);

	lens[1] = 0;
	assert_err(sched_new(NULL, 4, lens, NULL, 1, &s, &err), -EINVAL, &err, "length 0");
	lens[1] = 10;
	assert_err(sched_new(NULL, 4, lens, (const uint32_t[]){ 0, 0, 1, 3 }, 1, &s, &err), -EINVAL, &err,
		   "first chunk");
	assert_err(sched_new(NULL, 4, lens, (const uint32_t[]){ 0, 2, 2, 3 }, 1, &s, &err), -EINVAL, &err,
		   "first chunk");
	assert_err(sched_new(NULL, 4, lens, (const uint32_t[]){ 0, 1, 0, 3 }, 1, &s, &err), -EINVAL, &err,
		   "different lengths");
	assert_err(sched_new(NULL, (size_t)SCHED_MAX_CHUNKS + 1, lens, NULL, 1, &s, &err), -E2BIG, &err, "chunks");
	assert_null(s);

	/* nothing to fetch is done at once */
	assert_err(sched_new(NULL, 0, NULL, NULL, 1, &s, &err), 0, &err, NULL);
	assert_true(sched_done(s));
	sched_free(s);
}

static void test_peer_table(void **state)
{
	struct sched_params p = params();
	uint32_t lens[3] = { 10, 10, 10 }, h[3], out[4];
	struct sched_peer_stats ps;
	struct sched *s;
	size_t n;

	(void)state;
	p.max_peers = 2;
	assert_int_equal(sched_new(&p, 3, lens, NULL, 1, &s, NULL), 0);
	assert_int_equal(sched_peer_add(s, 100, false, &h[0]), 0);
	assert_int_equal(sched_peer_add(s, 100, false, &h[1]), -EEXIST);
	assert_int_equal(sched_peer_add(s, 200, true, &h[1]), 0);
	assert_int_equal(sched_peer_add(s, 300, false, &h[2]), -ENOSPC);
	assert_int_equal(sched_peer_has(s, h[0], 3), -EINVAL);
	assert_int_equal(sched_peer_has(s, h[0], 2), 1);
	assert_int_equal(sched_peer_has(s, h[0], 2), 0);
	assert_int_equal(sched_peer_bitfield(s, h[0], (const uint8_t[]){ 7 }, 4), -EINVAL);
	assert_int_equal(sched_pick(s, 5, 0, out, 4, &n), -ENOENT);
	assert_int_equal(sched_on_chunk(s, h[0], 9, true, 0), -EINVAL);
	assert_int_equal(sched_get_peer_stats(s, h[1], &ps), 0);
	assert_int_equal(ps.key, 200);
	assert_true(ps.seed);
	assert_int_equal(sched_peer_remove(s, h[1]), 0);
	assert_int_equal(sched_peer_remove(s, h[1]), -ENOENT);
	assert_int_equal(sched_get_peer_stats(s, h[1], &ps), -ENOENT);
	/* the freed handle is reused */
	assert_int_equal(sched_peer_add(s, 300, false, &h[2]), 0);
	assert_int_equal(h[2], h[1]);
	/* a replacing bitfield forgets what it replaces */
	assert_int_equal(sched_peer_bitfield(s, h[0], (const uint8_t[]){ 1 }, 3), 0);
	assert_int_equal(sched_get_peer_stats(s, h[0], &ps), 0);
	assert_int_equal(ps.holds, 1);
	assert_int_equal(sched_pick(s, h[0], 0, out, 4, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(out[0], 0);
	sched_free(s);
}

/* Several peers and a seed with random holdings: everything arrives, each
 * chunk counted once, and the same seeds give the same run. */
static void run_mixed(uint64_t seed, struct sched_stats *ret, uint64_t *ret_now)
{
	struct sim m;
	uint64_t r = seed;
	size_t n = 500;

	sim_init(&m, n, NULL, 64 * KIB, NULL, NULL, seed);
	for (int k = 0; k < 5; k++) {
		uint8_t *b = bf_new(n);

		for (size_t i = 0; i < n; i++)
			if (prng_next(&r) % 3 == 0)
				bf_set(b, i);
		sim_add(&m, 10 + (uint64_t)k, false, 200 + 300 * (uint32_t)k, 2, b);
	}
	sim_add(&m, 1, true, 2000, 1, bf_all(n));
	sim_run(&m, 100000);
	check_done(&m);
	sched_get_stats(m.s, ret);
	*ret_now = m.now;
	sim_free(&m);
}

static void test_complete_mixed(void **state)
{
	struct sched_stats a, b;
	uint64_t ta, tb;

	(void)state;
	run_mixed(42, &a, &ta);
	run_mixed(42, &b, &tb);
	assert_int_equal(ta, tb);
	assert_int_equal(a.requests, b.requests);
	assert_int_equal(a.work, b.work);
	assert_int_equal(a.bytes_from_seeds, b.bytes_from_seeds);
	assert_int_equal(a.bytes_from_peers + a.bytes_from_seeds, a.bytes_total);
	/* about (2/3)^5 = 13 % of the chunks are on no peer: those and only
	 * those come from the seed */
	assert_in_range(a.bytes_from_seeds / (64 * KIB), 40, 100);
}

/* Eight nodes hold disjoint eighths; we are one of them, the other seven
 * are our peers, and the seed has everything: the swarm has it all, so the
 * seed is asked for nothing. */
static void test_seed_not_asked_when_swarm_has_all(void **state)
{
	struct sim m;
	struct simpeer *seed;
	struct sched_stats st;
	size_t n = 800;

	(void)state;
	sim_init(&m, n, NULL, 64 * KIB, NULL, NULL, 7);
	for (size_t i = 0; i < n; i += 8)
		assert_int_equal(sched_have(m.s, (uint32_t)i), 1);
	for (uint32_t k = 1; k < 8; k++) {
		uint8_t *b = bf_new(n);

		for (size_t i = k; i < n; i += 8)
			bf_set(b, i);
		sim_add(&m, k, false, 1000, 2, b);
	}
	seed = sim_add(&m, 99, true, 10000, 1, bf_all(n));
	sim_run(&m, 100000);
	check_done(&m);
	sched_get_stats(m.s, &st);
	assert_int_equal(seed->asked, 0);
	assert_int_equal(st.bytes_from_seeds, 0);
	assert_int_equal(st.bytes_from_peers, (uint64_t)n * 7 / 8 * 64 * KIB);
	sim_free(&m);
}

/* Alone with the seed, a downloader must get everything from it, each
 * chunk exactly once. */
static void test_seed_serves_lone_downloader(void **state)
{
	struct sim m;
	struct simpeer *seed;
	struct sched_stats st;
	size_t n = 300;

	(void)state;
	sim_init(&m, n, NULL, 64 * KIB, NULL, NULL, 3);
	seed = sim_add(&m, 99, true, 5000, 1, bf_all(n));
	sim_run(&m, 100000);
	check_done(&m);
	sched_get_stats(m.s, &st);
	assert_int_equal(seed->asked, n);
	assert_int_equal(st.requests, n);
	assert_int_equal(st.bytes_from_seeds, st.bytes_total);
	assert_int_equal(st.bytes_wasted, 0);
	sim_free(&m);
}

static bool in(const uint32_t *v, size_t n, uint32_t x)
{
	for (size_t i = 0; i < n; i++)
		if (v[i] == x)
			return true;
	return false;
}

/* Super-seeding: a seed's NOT_FOUND means "a peer will have it", not "I
 * lack it". The unit returns to the pool, the seed is not asked for it
 * again until seed_later_ms have passed, a peer that announces it meanwhile
 * is asked instead, and after that the seed is asked again. A peer's
 * NOT_FOUND still means it lacks the chunk. */
static void test_seed_later(void **state)
{
	struct sched_params p = params();
	uint32_t lens[4], out[PICK_MAX], a, seed;
	struct sched_stats st;
	struct sched *s;
	size_t n;

	(void)state;
	for (int i = 0; i < 4; i++)
		lens[i] = 64 * KIB;
	p.depth_initial = p.depth_max = 16;
	p.seed_policy = SCHED_SEED_STRICT;
	p.seed_later_ms = 1000;
	assert_int_equal(sched_new(&p, 4, lens, NULL, 9, &s, NULL), 0);
	assert_int_equal(sched_peer_add(s, 1, false, &a), 0);
	assert_int_equal(sched_peer_add(s, 2, true, &seed), 0);
	assert_int_equal(sched_peer_bitfield(s, seed, (const uint8_t[]){ 0x0f }, 4), 0);
	assert_int_equal(sched_pick(s, seed, 0, out, PICK_MAX, &n), 0);
	assert_int_equal(n, 4);

	/* "later" for 2 and 3: not asked of the seed again before t = 1100 */
	assert_int_equal(sched_on_not_found(s, seed, 2, 100), 0);
	assert_int_equal(sched_on_not_found(s, seed, 3, 100), 0);
	sched_get_stats(s, &st);
	assert_int_equal(st.seed_laters, 2);
	assert_int_equal(st.not_found, 0);
	assert_int_equal(st.chunks_wanted, 2);
	assert_int_equal(sched_pick(s, seed, 500, out, PICK_MAX, &n), 0);
	assert_int_equal(n, 0);

	/* the peer that got 2 from the seed announces it: asked at once */
	assert_int_equal(sched_peer_has(s, a, 2), 1);
	assert_int_equal(sched_pick(s, a, 600, out, PICK_MAX, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(out[0], 2);

	/* nobody announced 3: the seed is asked again once later has come */
	assert_int_equal(sched_pick(s, seed, 1099, out, PICK_MAX, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(sched_pick(s, seed, 1100, out, PICK_MAX, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(out[0], 3);

	/* a peer's NOT_FOUND: it lacks the chunk, the seed may have it now */
	assert_int_equal(sched_on_not_found(s, a, 2, 1200), 0);
	sched_get_stats(s, &st);
	assert_int_equal(st.not_found, 1);
	assert_int_equal(sched_pick(s, seed, 1200, out, PICK_MAX, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(out[0], 2);
	for (uint32_t i = 0; i < 4; i++)
		assert_true(sched_on_chunk(s, seed, i, true, 1300) >= 0);
	assert_true(sched_done(s));
	sched_free(s);
}

/* The policy itself: a seed gets only what no usable non-seed holds; a
 * chunk becomes the seed's when its last usable holder leaves, is banned or
 * says NOT_FOUND. With SCHED_SEED_PEER the seed is just a peer. */
static void test_seed_offload_policy(void **state)
{
	struct sched_params p = params();
	uint32_t lens[10], out[PICK_MAX], a, seed;
	struct sched *s;
	size_t n;

	(void)state;
	for (int i = 0; i < 10; i++)
		lens[i] = 64 * KIB;
	p.depth_initial = p.depth_max = 16;
	assert_int_equal(sched_new(&p, 10, lens, NULL, 5, &s, NULL), 0);
	assert_int_equal(sched_peer_add(s, 1, false, &a), 0);
	assert_int_equal(sched_peer_add(s, 2, true, &seed), 0);
	assert_int_equal(sched_peer_bitfield(s, a, (const uint8_t[]){ 0x1f, 0 }, 10), 0); /* 0..4 */
	assert_int_equal(sched_peer_bitfield(s, seed, (const uint8_t[]){ 0xff, 0x03 }, 10), 0);

	/* the seed first, with room for everything: it gets 5..9 only */
	assert_int_equal(sched_pick(s, seed, 0, out, PICK_MAX, &n), 0);
	assert_int_equal(n, 5);
	for (uint32_t i = 5; i < 10; i++)
		assert_true(in(out, n, i));
	assert_int_equal(sched_pick(s, seed, 0, out, PICK_MAX, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(sched_pick(s, a, 0, out, 2, &n), 0);
	assert_int_equal(n, 2);
	assert_true(out[0] < 5 && out[1] < 5);

	/* A says it does not have one of the others after all: the seed's now */
	{
		uint32_t mine[2] = { out[0], out[1] }, other = 0;

		while (in(mine, 2, other))
			other++;
		assert_int_equal(sched_on_not_found(s, a, other, 1), 0);
		assert_int_equal(sched_pick(s, seed, 1, out, PICK_MAX, &n), 0);
		assert_int_equal(n, 1);
		assert_int_equal(out[0], other);

		/* A sends a bad chunk: banned, its chunks count no more, and the
		 * seed is asked for the remaining two and A's returned two */
		assert_int_equal(sched_on_chunk(s, a, mine[0], false, 2), 0);
		assert_int_equal(sched_pick(s, seed, 2, out, PICK_MAX, &n), 0);
		assert_int_equal(n, 4);
		assert_true(in(out, n, mine[0]));
		assert_true(in(out, n, mine[1]));
	}
	sched_free(s);

	/* as an ordinary peer the seed takes whatever it is asked first */
	p.seed_policy = SCHED_SEED_PEER;
	assert_int_equal(sched_new(&p, 10, lens, NULL, 5, &s, NULL), 0);
	assert_int_equal(sched_peer_add(s, 1, false, &a), 0);
	assert_int_equal(sched_peer_add(s, 2, true, &seed), 0);
	assert_int_equal(sched_peer_bitfield(s, a, (const uint8_t[]){ 0x1f, 0 }, 10), 0);
	assert_int_equal(sched_peer_bitfield(s, seed, (const uint8_t[]){ 0xff, 0x03 }, 10), 0);
	assert_int_equal(sched_pick(s, seed, 0, out, PICK_MAX, &n), 0);
	assert_int_equal(n, 10);
	/* still rarest first: what only the seed has comes first */
	for (size_t i = 0; i < 5; i++)
		assert_true(out[i] >= 5);
	sched_free(s);
}

/* Two devices asked the seed for the same rare chunk; one got it and said
 * so: the other's request, still queued at the seed, is withdrawn and the
 * chunk is fetched from the peer. The seed's oldest request stays. */
static void test_seed_yield(void **state)
{
	uint32_t lens[8], out[PICK_MAX], a, seed;
	struct sched_event ev;
	struct sched_stats st;
	struct sched *s;
	size_t n;

	(void)state;
	for (int i = 0; i < 8; i++)
		lens[i] = 64 * KIB;
	assert_int_equal(sched_new(NULL, 8, lens, NULL, 3, &s, NULL), 0);
	assert_int_equal(sched_peer_add(s, 1, false, &a), 0);
	assert_int_equal(sched_peer_add(s, 2, true, &seed), 0);
	assert_int_equal(sched_peer_bitfield(s, seed, (const uint8_t[]){ 0xff }, 8), 0);
	assert_int_equal(sched_pick(s, seed, 0, out, PICK_MAX, &n), 0);
	assert_int_equal(n, 4);
	/* A announces the second and the first (oldest) of them */
	assert_int_equal(sched_peer_has(s, a, out[1]), 1);
	assert_int_equal(sched_event_next(s, &ev), 1);
	assert_int_equal(ev.type, SCHED_EV_CANCEL);
	assert_int_equal(ev.peer, seed);
	assert_int_equal(ev.idx, out[1]);
	assert_int_equal(sched_peer_has(s, a, out[0]), 1);
	assert_int_equal(sched_event_next(s, &ev), 0);
	sched_get_stats(s, &st);
	assert_int_equal(st.seed_yields, 1);
	assert_int_equal(st.requests_in_flight, 3);
	/* A is asked for the one the seed gave up, not for the one in progress */
	{
		uint32_t got[PICK_MAX];

		assert_int_equal(sched_pick(s, a, 1, got, PICK_MAX, &n), 0);
		assert_int_equal(n, 1);
		assert_int_equal(got[0], out[1]);
	}
	/* a bitfield does the same */
	assert_int_equal(sched_peer_bitfield(s, a, (const uint8_t[]){ 0xff }, 8), 0);
	while (sched_event_next(s, &ev))
		assert_int_equal(ev.peer, seed);
	sched_get_stats(s, &st);
	assert_int_equal(st.seed_yields, 3);
	sched_free(s);

	/* a seed that is an ordinary peer keeps its requests */
	{
		struct sched_params p = params();

		p.seed_policy = SCHED_SEED_PEER;
		assert_int_equal(sched_new(&p, 8, lens, NULL, 3, &s, NULL), 0);
		assert_int_equal(sched_peer_add(s, 1, false, &a), 0);
		assert_int_equal(sched_peer_add(s, 2, true, &seed), 0);
		assert_int_equal(sched_peer_bitfield(s, seed, (const uint8_t[]){ 0xff }, 8), 0);
		assert_int_equal(sched_pick(s, seed, 0, out, PICK_MAX, &n), 0);
		assert_int_equal(sched_peer_has(s, a, out[1]), 1);
		assert_int_equal(sched_event_next(s, &ev), 0);
		sched_free(s);
	}
}

/* The assist rule: an idle seed may take a chunk whose every usable holder
 * is saturated (a slow peer with more than seed_assist_wait_ms queued, or
 * one snubbed after a timeout), one request at a time; not when the holder
 * keeps up, and never under SCHED_SEED_STRICT or with seed_assist = 0. */
static void assist_case(enum sched_seed_policy pol, uint32_t assist, bool slow, size_t want)
{
	struct sched_params p = params();
	uint32_t lens[20], out[PICK_MAX], a, seed;
	struct sched *s;
	size_t n;

	for (int i = 0; i < 20; i++)
		lens[i] = 64 * KIB;
	p.seed_policy = pol;
	p.seed_assist = assist;
	assert_int_equal(sched_new(&p, 20, lens, NULL, 9, &s, NULL), 0);
	assert_int_equal(sched_peer_add(s, 1, false, &a), 0);
	assert_int_equal(sched_peer_add(s, 2, true, &seed), 0);
	assert_int_equal(sched_peer_bitfield(s, a, (const uint8_t[]){ 0xff, 0xff, 0x0f }, 20), 0);
	assert_int_equal(sched_peer_bitfield(s, seed, (const uint8_t[]){ 0xff, 0xff, 0x0f }, 20), 0);
	/* A's rate: 64 KiB in 16 s (slow: 4 KiB/s) or in 16 ms (4 MiB/s) */
	assert_int_equal(sched_pick(s, a, 0, out, 1, &n), 0);
	assert_int_equal(sched_on_chunk(s, a, out[0], true, slow ? 16000 : 16), 1);
	assert_int_equal(sched_pick(s, a, slow ? 16000 : 16, out, PICK_MAX, &n), 0);
	assert_true(n > 0);
	assert_int_equal(sched_pick(s, seed, 16000, out, PICK_MAX, &n), 0);
	assert_int_equal(n, want);
	if (want) {
		/* one at a time: not while that one is in flight */
		assert_int_equal(sched_pick(s, seed, 16000, out, PICK_MAX, &n), 0);
		assert_int_equal(n, 0);
	}
	sched_free(s);
}

static void test_seed_assist(void **state)
{
	(void)state;
	assist_case(SCHED_SEED_OFFLOAD, 1, true, 1);
	assist_case(SCHED_SEED_OFFLOAD, 1, false, 0);
	assist_case(SCHED_SEED_OFFLOAD, 0, true, 0);
	assist_case(SCHED_SEED_STRICT, 1, true, 0);
}

static void test_seed_assist_snubbed(void **state)
{
	uint32_t lens[8], out[PICK_MAX], a, seed;
	struct sched *s;
	size_t n;

	(void)state;
	for (int i = 0; i < 8; i++)
		lens[i] = 64 * KIB;
	assert_int_equal(sched_new(NULL, 8, lens, NULL, 9, &s, NULL), 0);
	assert_int_equal(sched_peer_add(s, 1, false, &a), 0);
	assert_int_equal(sched_peer_add(s, 2, true, &seed), 0);
	assert_int_equal(sched_peer_bitfield(s, a, (const uint8_t[]){ 0xff }, 8), 0);
	assert_int_equal(sched_peer_bitfield(s, seed, (const uint8_t[]){ 0xff }, 8), 0);
	assert_int_equal(sched_pick(s, a, 0, out, PICK_MAX, &n), 0);
	assert_int_equal(n, 4);
	assert_int_equal(sched_pick(s, seed, 0, out, PICK_MAX, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(sched_tick(s, 2000), 1); /* A timed out: snubbed */
	assert_int_equal(sched_pick(s, a, 2000, out, PICK_MAX, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(sched_pick(s, seed, 2000, out, PICK_MAX, &n), 0);
	assert_int_equal(n, 1);
	sched_free(s);
}

/* A chunk held by one peer is picked before one held by two, before one
 * held by three, before those held by all five. */
static void test_rarest_first(void **state)
{
	struct sched_params p = params();
	uint32_t lens[10], out[PICK_MAX], h[5];
	struct sched *s;
	size_t n;

	(void)state;
	for (int i = 0; i < 10; i++)
		lens[i] = 1000;
	p.depth_initial = p.depth_max = 16;
	p.endgame_copies = 1; /* no duplicates at the end, to see the plain order */
	assert_int_equal(sched_new(&p, 10, lens, NULL, 11, &s, NULL), 0);
	for (uint32_t k = 0; k < 5; k++) {
		assert_int_equal(sched_peer_add(s, k, false, &h[k]), 0);
		for (uint32_t i = 0; i < 10; i++) {
			bool holds = (i == 3 && k > 0) ? false : (i == 7 && k > 1) ? false : (i == 5 && k > 2) ? false : true;

			if (holds)
				assert_int_equal(sched_peer_has(s, h[k], i), 1);
		}
	}
	assert_int_equal(sched_pick(s, h[0], 0, out, 1, &n), 0);
	assert_int_equal(out[0], 3);
	assert_int_equal(sched_pick(s, h[0], 0, out, 1, &n), 0);
	assert_int_equal(out[0], 7);
	assert_int_equal(sched_pick(s, h[0], 0, out, 1, &n), 0);
	assert_int_equal(out[0], 5);
	/* HAVEs change the order: chunk 0 lost to three of its holders ... */
	for (uint32_t k = 1; k < 4; k++)
		assert_int_equal(sched_on_not_found(s, h[k], 0, 0), 0);
	assert_int_equal(sched_pick(s, h[4], 0, out, 1, &n), 0);
	assert_int_equal(out[0], 0);
	/* ... and B, who lacks 3, is never asked for it */
	assert_int_equal(sched_pick(s, h[1], 0, out, PICK_MAX, &n), 0);
	assert_int_equal(n, 6);
	assert_false(in(out, n, 3));
	sched_free(s);
}

/* A peer that holds a few chunks scattered among many of the same rarity,
 * next to a peer that holds many rarer ones: picking for it must not wade
 * through the chunks it does not have. The scheduler counts its inner
 * steps; per call they stay small. */
static void test_no_scan_for_sparse_peer(void **state)
{
	const uint32_t n = 200000, half = n / 2;
	uint32_t *lens = calloc(n, sizeof(uint32_t)), out[PICK_MAX], h[5];
	uint8_t *bf[5];
	struct sched_stats st;
	struct sched *s;
	uint64_t before, calls = 0, now = 0, got_c = 0, max_c = 0;

	(void)state;
	assert_non_null(lens);
	for (uint32_t i = 0; i < n; i++)
		lens[i] = 1000;
	assert_int_equal(sched_new(NULL, n, lens, NULL, 8, &s, NULL), 0);
	for (int k = 0; k < 5; k++) {
		bf[k] = bf_new(n);
		assert_int_equal(sched_peer_add(s, (uint64_t)k, false, &h[k]), 0);
	}
	/* A: the first half alone (rarity 1). D, E: the second half. B: the
	 * second half but its last 100, which C holds instead: the whole
	 * second half has rarity 3, and C's 100 are scattered in it */
	for (uint32_t i = 0; i < n; i++) {
		if (i < half) {
			bf_set(bf[0], i);
			continue;
		}
		bf_set(bf[3], i);
		bf_set(bf[4], i);
		bf_set(i >= n - 100 ? bf[2] : bf[1], i);
	}
	for (int k = 0; k < 5; k++)
		assert_int_equal(sched_peer_bitfield(s, h[k], bf[k], n), 0);

	sched_get_stats(s, &st);
	before = st.work;
	for (int round = 0; round < 200; round++) {
		for (int k = 1; k <= 2; k++) {
			uint64_t w0;
			size_t got;

			sched_get_stats(s, &st);
			w0 = st.work;
			assert_int_equal(sched_pick(s, h[k], now, out, PICK_MAX, &got), 0);
			sched_get_stats(s, &st);
			if (k == 2 && st.work - w0 > max_c)
				max_c = st.work - w0;
			calls++;
			for (size_t i = 0; i < got; i++) {
				assert_true(out[i] >= half);
				if (k == 2) {
					assert_true(out[i] >= n - 100);
					got_c++;
				}
				assert_int_equal(sched_on_chunk(s, h[k], out[i], true, now + 1), 1);
				calls++;
			}
		}
		now += 10;
	}
	sched_get_stats(s, &st);
	assert_int_equal(got_c, 100); /* all of C's */
	print_message("sparse peer: %.1f inner steps per call, at most %" PRIu64 " in one of C's picks\n",
		      (double)(st.work - before) / (double)calls, max_c);
	/* a scan of the rarity level would cost tens of thousands of steps
	 * to find C's first 64 */
	assert_true(max_c < 2000);
	assert_true(st.work - before < 100 * calls);
	sched_free(s);
	free(lens);
	for (int k = 0; k < 5; k++)
		free(bf[k]);
}

static void order_for(uint64_t seed, uint32_t *out)
{
	struct sched_params p = params();
	uint32_t lens[64], h;
	struct sched *s;
	size_t n;

	for (int i = 0; i < 64; i++)
		lens[i] = 100;
	p.depth_initial = p.depth_max = 64;
	assert_int_equal(sched_new(&p, 64, lens, NULL, seed, &s, NULL), 0);
	assert_int_equal(sched_peer_add(s, 1, false, &h), 0);
	assert_int_equal(sched_peer_bitfield(s, h, (const uint8_t[]){ 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff }, 64),
			 0);
	assert_int_equal(sched_pick(s, h, 0, out, 64, &n), 0);
	assert_int_equal(n, 64);
	sched_free(s);
}

static void test_tiebreak_seeded(void **state)
{
	uint32_t a[64], b[64], c[64];
	bool seen[64] = { false }, ordered = true;

	(void)state;
	order_for(1, a);
	order_for(1, b);
	order_for(2, c);
	assert_memory_equal(a, b, sizeof(a));
	assert_memory_not_equal(a, c, sizeof(a));
	for (int i = 0; i < 64; i++) {
		assert_false(seen[a[i]]);
		seen[a[i]] = true;
		if (a[i] != (uint32_t)i)
			ordered = false;
	}
	assert_false(ordered);
}

/* A fast peer (2 MB/s) ends up with a deep pipeline, a slow one (64 KB/s)
 * with depth_min, and the measured rates are close to the true ones. */
static void test_pipeline_depth(void **state)
{
	struct sim m;
	struct simpeer *fast, *slow;
	struct sched_peer_stats fs, ss;
	size_t n = 600;

	(void)state;
	sim_init(&m, n, NULL, 64 * KIB, NULL, NULL, 5);
	fast = sim_add(&m, 1, false, 2000, 2, bf_all(n));
	slow = sim_add(&m, 2, false, 64, 2, bf_all(n));
	while (m.now < 15000)
		assert_true(sim_step(&m));
	assert_int_equal(sched_get_peer_stats(m.s, fast->h, &fs), 0);
	assert_int_equal(sched_get_peer_stats(m.s, slow->h, &ss), 0);
	assert_in_range(fs.rate_bps, 1600000, 2100000);
	assert_in_range(ss.rate_bps, 50000, 66000);
	assert_in_range(fs.depth, 10, 14);  /* 2 MB/s * 400 ms / 64 KiB */
	assert_int_equal(ss.depth, 2);
	assert_true(fast->max_q >= 10);
	assert_in_range(fast->nq, 8, 16);
	assert_int_equal(slow->nq, 2);
	assert_int_equal(fs.timeouts + ss.timeouts, 0);
	sim_run(&m, 100000);
	check_done(&m);
	assert_true(fast->replies > 10 * slow->replies);
	sim_free(&m);
}

/* A peer that never answers: its requests time out (CANCEL events), it is
 * snubbed for 2 s, 4 s, 8 s, flagged as stalled after three timeouts in a
 * row, and its chunks complete elsewhere. */
static void test_timeout_reassign(void **state)
{
	struct sim m;
	struct simpeer *a, *b;
	struct sched_peer_stats ps;
	struct sched_stats st;
	struct sched_event ev;
	uint32_t first[4];
	size_t n = 40;

	(void)state;
	sim_init(&m, n, NULL, 64 * KIB, NULL, NULL, 13);
	a = sim_add(&m, 1, false, 1000, 1, bf_all(n));
	a->silent = true;
	assert_int_equal(sim_pick(&m, a), 4);
	for (int i = 0; i < 4; i++)
		first[i] = a->q[i].idx;
	/* 1000 ms + 4 x (64 KiB at the assumed 256 KiB/s) = 2000 ms */
	assert_int_equal(sched_next_deadline(m.s, 0), 2000);
	assert_int_equal(sched_tick(m.s, 1999), 0);
	assert_int_equal(sched_tick(m.s, 2000), 1);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(sched_event_next(m.s, &ev), 1);
		assert_int_equal(ev.type, SCHED_EV_CANCEL);
		assert_int_equal(ev.peer, a->h);
		assert_int_equal(ev.idx, first[i]);
	}
	assert_int_equal(sched_event_next(m.s, &ev), 0);
	assert_int_equal(sched_get_peer_stats(m.s, a->h, &ps), 0);
	assert_int_equal(ps.timeouts, 1);
	assert_int_equal(ps.in_flight, 0);
	assert_int_equal(ps.snubbed_until, 4000);
	assert_true(ps.score < 0);
	a->nq = 0;
	m.now = 2000;
	assert_int_equal(sim_pick(&m, a), 0);
	assert_int_equal(sched_next_deadline(m.s, 2000), 4000);

	/* again after the snub, and again: stalled on the third */
	m.now = 4000;
	assert_int_equal(sim_pick(&m, a), 4);
	assert_int_equal(sched_tick(m.s, 6000), 1);
	sim_drain(&m);
	assert_int_equal(m.stalls, 0);
	m.now = 9999; /* snubbed 4 s after the second */
	assert_int_equal(sim_pick(&m, a), 0);
	m.now = 10000;
	assert_int_equal(sched_get_peer_stats(m.s, a->h, &ps), 0);
	assert_int_equal(ps.snubbed_until, 10000);
	assert_int_equal(sim_pick(&m, a), 4);
	assert_int_equal(sched_tick(m.s, 12000), 1);
	sim_drain(&m);
	assert_int_equal(m.stalls, 1);
	assert_int_equal(sched_get_peer_stats(m.s, a->h, &ps), 0);
	assert_int_equal(ps.timeouts_in_a_row, 3);
	assert_int_equal(ps.snubbed_until, 12000 + 8000);
	sched_get_stats(m.s, &st);
	assert_int_equal(st.timeouts, 3);
	assert_int_equal(st.chunks_wanted, n);

	/* B arrives and everything, A's chunks included, comes from it */
	m.now = 12000;
	b = sim_add(&m, 2, false, 1000, 1, bf_all(n));
	sim_run(&m, 100000);
	check_done(&m);
	assert_int_equal(b->replies, n);
	sched_get_stats(m.s, &st);
	assert_int_equal(st.bytes_from_peers, n * 64 * KIB);
	sim_free(&m);
}

/* A bad chunk bans its sender: never picked until the ban ends, its
 * requests go elsewhere, the ban outlives a reconnect, and it is picked
 * again once the ban is over. */
static void test_bad_chunk_ban(void **state)
{
	struct sched_params p = params();
	uint32_t lens[12], out[PICK_MAX], a_got[4], a, b;
	struct sched_peer_stats ps;
	struct sched_stats st;
	struct sched *s;
	uint64_t until;
	size_t n;

	(void)state;
	for (int i = 0; i < 12; i++)
		lens[i] = 64 * KIB;
	assert_int_equal(sched_new(&p, 12, lens, NULL, 21, &s, NULL), 0);
	assert_int_equal(sched_peer_add(s, 0xa, false, &a), 0);
	assert_int_equal(sched_peer_add(s, 0xb, false, &b), 0);
	assert_int_equal(sched_peer_bitfield(s, a, (const uint8_t[]){ 0xff, 0x0f }, 12), 0);
	assert_int_equal(sched_peer_bitfield(s, b, (const uint8_t[]){ 0xff, 0x0f }, 12), 0);
	assert_int_equal(sched_pick(s, a, 0, a_got, 4, &n), 0);
	assert_int_equal(n, 4);
	assert_int_equal(sched_pick(s, b, 0, out, PICK_MAX, &n), 0);
	assert_int_equal(n, 4);

	assert_int_equal(sched_on_chunk(s, a, a_got[0], false, 5), 0);
	until = 5 + p.ban_ms;
	assert_int_equal(sched_peer_banned_until(s, 0xa), until);
	assert_int_equal(sched_peer_banned_until(s, 0xb), 0);
	sched_get_stats(s, &st);
	assert_int_equal(st.bad_chunks, 1);
	assert_int_equal(st.requests_in_flight, 4); /* B's */
	assert_int_equal(st.chunks_wanted, 8);      /* A's four are back */
	assert_int_equal(sched_get_peer_stats(s, a, &ps), 0);
	assert_true(ps.banned);
	assert_int_equal(ps.in_flight, 0);
	assert_true(ps.score <= -100);
	assert_int_equal(sched_pick(s, a, 6, out, PICK_MAX, &n), 0);
	assert_int_equal(n, 0);

	/* B finishes its four and is asked for the rest, A's four included */
	for (int i = 0; i < 4; i++)
		assert_int_equal(sched_on_chunk(s, b, out[i], true, 10 + 10 * (uint64_t)i), 1);
	assert_int_equal(sched_pick(s, b, 40, out, PICK_MAX, &n), 0);
	assert_int_equal(n, 8);
	for (int i = 0; i < 4; i++)
		assert_true(in(out, n, a_got[i]));

	/* reconnecting does not lift the ban */
	assert_int_equal(sched_peer_remove(s, a), 0);
	assert_int_equal(sched_peer_add(s, 0xa, false, &a), 0);
	assert_int_equal(sched_peer_bitfield(s, a, (const uint8_t[]){ 0xff, 0x0f }, 12), 0);
	assert_int_equal(sched_get_peer_stats(s, a, &ps), 0);
	assert_true(ps.banned);
	assert_int_equal(sched_pick(s, a, until - 1, out, PICK_MAX, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(sched_next_deadline(s, until - 1) <= until, true);
	/* over: everything is in flight to B, so A is asked for duplicates */
	assert_int_equal(sched_pick(s, a, until, out, PICK_MAX, &n), 0);
	assert_int_equal(n, 4);
	assert_int_equal(sched_get_peer_stats(s, a, &ps), 0);
	assert_false(ps.banned);
	/* forgotten at the next tick */
	assert_true(sched_tick(s, until) >= 0);
	assert_int_equal(sched_peer_banned_until(s, 0xa), 0);
	sched_free(s);
}

/* A whole run where one peer corrupts its third reply: everything still
 * completes, from the others. */
static void test_bad_chunk_run(void **state)
{
	struct sim m;
	struct simpeer *bad;
	struct sched_stats st;
	size_t n = 200;

	(void)state;
	sim_init(&m, n, NULL, 64 * KIB, NULL, NULL, 8);
	bad = sim_add(&m, 1, false, 3000, 1, bf_all(n));
	bad->bad_reply = 3;
	sim_add(&m, 2, false, 1000, 1, bf_all(n));
	sim_add(&m, 3, false, 1000, 1, bf_all(n));
	sim_run(&m, 100000);
	check_done(&m);
	sched_get_stats(m.s, &st);
	assert_int_equal(st.bad_chunks, 1);
	/* a peer here answers all it is asked: no reply after the bad one
	 * means it was never asked again */
	assert_int_equal(bad->replies, 3);
	sim_free(&m);
}

/* Endgame: once every missing chunk is in flight, idle peers get
 * duplicates (at most endgame_copies requests per chunk), the first valid
 * reply wins and the others become CANCEL events. */
static void test_endgame(void **state)
{
	struct sched_params p = params();
	uint32_t lens[6], out[PICK_MAX], a_got[4], b_got[4], h[4];
	struct sched_stats st;
	struct sched_event ev;
	struct sched *s;
	size_t n, nb;

	(void)state;
	for (int i = 0; i < 6; i++)
		lens[i] = 64 * KIB;
	p.endgame_copies = 2;
	assert_int_equal(sched_new(&p, 6, lens, NULL, 4, &s, NULL), 0);
	for (uint32_t k = 0; k < 4; k++) {
		assert_int_equal(sched_peer_add(s, k, false, &h[k]), 0);
		assert_int_equal(sched_peer_bitfield(s, h[k], (const uint8_t[]){ 0x3f }, 6), 0);
	}
	assert_int_equal(sched_pick(s, h[0], 0, a_got, 4, &n), 0);
	assert_int_equal(n, 4);
	sched_get_stats(s, &st);
	assert_false(st.endgame);
	/* B takes the last two wanted ones, then duplicates two of A's */
	assert_int_equal(sched_pick(s, h[1], 0, b_got, 4, &nb), 0);
	assert_int_equal(nb, 4);
	assert_false(in(a_got, 4, b_got[0]) || in(a_got, 4, b_got[1]));
	assert_true(in(a_got, 4, b_got[2]) && in(a_got, 4, b_got[3]));
	sched_get_stats(s, &st);
	assert_true(st.endgame);
	assert_int_equal(st.duplicates, 2);
	assert_int_equal(st.requests_in_flight, 8);
	assert_int_equal(st.chunks_in_flight, 6);

	/* C gets the four with one request each; D nothing: all have two */
	assert_int_equal(sched_pick(s, h[2], 0, out, PICK_MAX, &n), 0);
	assert_int_equal(n, 4);
	for (size_t i = 0; i < n; i++)
		assert_false(in(b_got + 2, 2, out[i]));
	assert_int_equal(sched_pick(s, h[3], 0, out, PICK_MAX, &n), 0);
	assert_int_equal(n, 0);

	/* B's duplicate arrives first: A's request for it is cancelled */
	assert_int_equal(sched_on_chunk(s, h[1], b_got[2], true, 10), 1);
	assert_int_equal(sched_event_next(s, &ev), 1);
	assert_int_equal(ev.type, SCHED_EV_CANCEL);
	assert_int_equal(ev.peer, h[0]);
	assert_int_equal(ev.peer_key, 0);
	assert_int_equal(ev.idx, b_got[2]);
	assert_int_equal(sched_event_next(s, &ev), 0);
	/* A's copy, too late, is discarded */
	assert_int_equal(sched_on_chunk(s, h[0], b_got[2], true, 20), 0);
	sched_get_stats(s, &st);
	assert_int_equal(st.bytes_wasted, 64 * KIB);
	assert_int_equal(st.chunks_held, 1);
	/* C leaves: its four duplicates drop to one request each and D, idle,
	 * takes them over */
	assert_int_equal(sched_peer_remove(s, h[2]), 4);
	assert_int_equal(sched_pick(s, h[3], 20, out, PICK_MAX, &n), 0);
	assert_int_equal(n, 4);
	sched_get_stats(s, &st);
	assert_int_equal(st.requests_in_flight, 10);
	assert_int_equal(st.chunks_in_flight, 5);
	sched_free(s);
}

/* A whole run with one slow peer: endgame finishes its last chunks from
 * the fast ones instead of waiting for it. */
static void test_endgame_run(void **state)
{
	struct sim m;
	struct simpeer *slow;
	struct sched_stats st;
	size_t n = 100;

	(void)state;
	sim_init(&m, n, NULL, 64 * KIB, NULL, NULL, 17);
	slow = sim_add(&m, 1, false, 20, 1, bf_all(n)); /* 3.3 s per chunk */
	sim_add(&m, 2, false, 2000, 1, bf_all(n));
	sim_add(&m, 3, false, 2000, 1, bf_all(n));
	sim_run(&m, 100000);
	check_done(&m);
	sched_get_stats(m.s, &st);
	assert_true(st.duplicates > 0);
	assert_true(m.cancels > 0);
	/* the fast ones move 100 chunks in about 1.7 s; the slow one's queue
	 * would have taken 13 s */
	assert_true(m.now < 4000);
	assert_true(slow->replies < 2);
	sim_free(&m);
}

/* A peer that leaves gives its requests back and its chunks stop counting:
 * the ones only it had become the seed's. */
static void test_peer_remove(void **state)
{
	struct sched_params p = params();
	uint32_t lens[10], out[PICK_MAX], got[PICK_MAX], a, b, seed;
	struct sched_stats st;
	struct sched *s;
	size_t n, na;

	(void)state;
	for (int i = 0; i < 10; i++)
		lens[i] = 1000;
	p.depth_initial = 6;
	assert_int_equal(sched_new(&p, 10, lens, NULL, 6, &s, NULL), 0);
	assert_int_equal(sched_peer_add(s, 1, false, &a), 0);
	assert_int_equal(sched_peer_add(s, 2, false, &b), 0);
	assert_int_equal(sched_peer_add(s, 3, true, &seed), 0);
	assert_int_equal(sched_peer_bitfield(s, a, (const uint8_t[]){ 0xff, 0x03 }, 10), 0); /* all */
	assert_int_equal(sched_peer_bitfield(s, b, (const uint8_t[]){ 0x1f, 0x00 }, 10), 0); /* 0..4 */
	assert_int_equal(sched_peer_bitfield(s, seed, (const uint8_t[]){ 0xff, 0x03 }, 10), 0);
	assert_int_equal(sched_pick(s, seed, 0, out, PICK_MAX, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(sched_pick(s, a, 0, got, PICK_MAX, &na), 0);
	assert_int_equal(na, 6);
	/* rarest first: A's own five (5..9) before the shared ones */
	for (uint32_t i = 5; i < 10; i++)
		assert_true(in(got, 5, i));

	assert_int_equal(sched_peer_remove(s, a), 6);
	sched_get_stats(s, &st);
	assert_int_equal(st.requests_in_flight, 0);
	assert_int_equal(st.chunks_wanted, 10);
	assert_int_equal(st.peers, 2);
	assert_int_equal(sched_pick(s, b, 0, out, PICK_MAX, &n), 0);
	assert_int_equal(n, 5);
	for (size_t i = 0; i < n; i++)
		assert_true(out[i] < 5);
	assert_int_equal(sched_pick(s, seed, 0, out, PICK_MAX, &n), 0);
	assert_int_equal(n, 5); /* the five only A had */
	for (size_t i = 0; i < n; i++)
		assert_true(out[i] >= 5);
	sched_free(s);
}

/* Indexes with the same id are one unit: asked for once, by its first
 * index; any of its indexes completes it. */
static void test_same_id(void **state)
{
	/* ids: 0 A, 1 B, 2 A, 3 C, 4 B, 5 A, 6 D, 7 C */
	static const char ids[] = "ABACBADC";
	static const uint32_t want_same[8] = { 0, 1, 0, 3, 1, 0, 6, 3 };
	uint32_t lens[8], out[PICK_MAX], h, *same = NULL;
	uint8_t idbuf[8][32];
	struct sched_stats st;
	struct sched *s;
	size_t n;

	(void)state;
	for (int i = 0; i < 8; i++) {
		memset(idbuf[i], ids[i], 32);
		lens[i] = 100 + (uint32_t)(ids[i] - 'A');
	}
	assert_int_equal(sched_dedup(&idbuf[0][0], 32, 32, 8, &same), 0);
	assert_memory_equal(same, want_same, sizeof(want_same));
	assert_int_equal(sched_new(NULL, 8, lens, same, 1, &s, NULL), 0);
	sched_get_stats(s, &st);
	assert_int_equal(st.chunks_total, 4);
	assert_int_equal(st.bytes_total, 100 + 101 + 102 + 103);

	/* the peer announces later copies only; that is enough */
	assert_int_equal(sched_peer_add(s, 1, false, &h), 0);
	assert_int_equal(sched_peer_bitfield(s, h, (const uint8_t[]){ 0xe4 }, 8), 0); /* 2, 5, 6, 7 */
	assert_int_equal(sched_pick(s, h, 0, out, PICK_MAX, &n), 0);
	assert_int_equal(n, 3); /* A, C, D */
	assert_true(in(out, n, 0) && in(out, n, 3) && in(out, n, 6));
	assert_int_equal(sched_on_chunk(s, h, 5, true, 1), 1); /* A by another index */
	assert_int_equal(sched_on_chunk(s, h, 2, true, 1), 0);
	assert_int_equal(sched_have(s, 4), 1); /* B from the local slot */
	assert_int_equal(sched_have(s, 1), 0);
	assert_int_equal(sched_on_chunk(s, h, 7, true, 2), 1);
	assert_false(sched_done(s));
	assert_int_equal(sched_on_chunk(s, h, 6, true, 3), 1);
	assert_true(sched_done(s));
	sched_get_stats(s, &st);
	assert_int_equal(st.bytes_held, st.bytes_total);
	assert_int_equal(st.bytes_wasted, 100);
	sched_free(s);
	free(same);
}

/* Chunks already held locally are never asked for; one that arrives from
 * elsewhere while in flight cancels its request. */
static void test_have_local(void **state)
{
	uint32_t lens[8], out[PICK_MAX], h;
	struct sched_event ev;
	struct sched_stats st;
	struct sched *s;
	size_t n;

	(void)state;
	for (int i = 0; i < 8; i++)
		lens[i] = 100;
	assert_int_equal(sched_new(NULL, 8, lens, NULL, 2, &s, NULL), 0);
	for (uint32_t i = 0; i < 8; i += 2)
		assert_int_equal(sched_have(s, i), 1);
	assert_int_equal(sched_have(s, 8), -EINVAL);
	assert_int_equal(sched_peer_add(s, 1, false, &h), 0);
	assert_int_equal(sched_peer_bitfield(s, h, (const uint8_t[]){ 0xff }, 8), 0);
	assert_int_equal(sched_pick(s, h, 0, out, PICK_MAX, &n), 0);
	assert_int_equal(n, 4);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(out[i] % 2, 1);
	assert_int_equal(sched_have(s, out[1]), 1);
	assert_int_equal(sched_event_next(s, &ev), 1);
	assert_int_equal(ev.type, SCHED_EV_CANCEL);
	assert_int_equal(ev.idx, out[1]);
	sched_get_stats(s, &st);
	assert_int_equal(st.requests_in_flight, 3);
	assert_int_equal(st.chunks_held, 5);
	assert_int_equal(st.bytes_from_peers, 0);
	sched_free(s);
}

/* ---- a fleet: several schedulers and a seed serving one another ---- */

struct fnode {
	struct sched *s;
	uint8_t *has;
	bool seed;
	uint32_t handle[16]; /* this node's handle for node j */
	struct fq {
		uint32_t to, idx;
		uint64_t at;
	} *q;
	size_t nq, cap;
	uint64_t free_at;
	uint64_t uploaded;
};

static void fleet_enqueue(struct fnode *from, uint32_t to, uint32_t idx, uint64_t now, uint32_t len, uint32_t rate)
{
	uint64_t start = now + 1 > from->free_at ? now + 1 : from->free_at;

	from->free_at = start + len / rate;
	if (from->nq == from->cap) {
		from->cap = from->cap ? 2 * from->cap : 64;
		from->q = realloc(from->q, from->cap * sizeof(*from->q));
		assert_non_null(from->q);
	}
	from->q[from->nq++] = (struct fq){ .to = to, .idx = idx, .at = from->free_at };
}

/* Eight devices that start with nothing and a seed that has everything,
 * all connected to all, each device with its own scheduler and seed: the
 * seed uploads each chunk about once, the devices trade the rest. */
static void test_fleet_seed_uploads_once(void **state)
{
	enum { N = 9, SEED = 8 };
	const size_t n = 512;
	const uint32_t len = 64 * KIB, rate = 1000;
	struct fnode f[N] = { 0 };
	uint64_t now = 0, steps = 0, seed_up = 0;
	uint32_t *lens = calloc(n, sizeof(uint32_t));
	bool all_done;

	(void)state;
	assert_non_null(lens);
	for (size_t i = 0; i < n; i++)
		lens[i] = len;
	f[SEED].seed = true;
	f[SEED].has = bf_all(n);
	for (uint32_t i = 0; i < SEED; i++)
		f[i].has = bf_new(n);
	for (uint32_t i = 0; i < SEED; i++) {
		assert_int_equal(sched_new(NULL, n, lens, NULL, 1000 + i, &f[i].s, NULL), 0);
		for (uint32_t j = 0; j < N; j++) {
			if (j == i)
				continue;
			assert_int_equal(sched_peer_add(f[i].s, j, j == SEED, &f[i].handle[j]), 0);
			assert_int_equal(sched_peer_bitfield(f[i].s, f[i].handle[j], f[j].has, n), 0);
		}
	}
	do {
		uint64_t t = SCHED_NEVER;

		assert_true(++steps < 200000);
		/* every device picks from every peer, then cancels are applied */
		for (uint32_t i = 0; i < SEED; i++) {
			struct sched_event ev;

			for (uint32_t j = 0; j < N; j++) {
				uint32_t out[PICK_MAX];
				size_t k;

				if (j == i)
					continue;
				assert_int_equal(sched_pick(f[i].s, f[i].handle[j], now, out, PICK_MAX, &k), 0);
				for (size_t x = 0; x < k; x++)
					fleet_enqueue(&f[j], i, out[x], now, len, rate);
			}
			while (sched_event_next(f[i].s, &ev)) {
				struct fnode *from = &f[ev.peer_key];

				if (ev.type != SCHED_EV_CANCEL)
					continue;
				for (size_t x = 0; x < from->nq; x++)
					if (from->q[x].to == i && from->q[x].idx == ev.idx) {
						memmove(from->q + x, from->q + x + 1, (from->nq - x - 1) * sizeof(*from->q));
						from->nq--;
						break;
					}
			}
		}
		for (uint32_t j = 0; j < N; j++)
			if (f[j].nq && f[j].q[0].at < t)
				t = f[j].q[0].at;
		for (uint32_t i = 0; i < SEED; i++) {
			uint64_t d = sched_next_deadline(f[i].s, now);

			if (d < t)
				t = d;
		}
		assert_true(t != SCHED_NEVER);
		if (t > now)
			now = t;
		/* deliveries: the receiver takes it and tells everyone (HAVE) */
		for (uint32_t j = 0; j < N; j++)
			while (f[j].nq && f[j].q[0].at <= now) {
				struct fq r = f[j].q[0];
				int k;

				memmove(f[j].q, f[j].q + 1, (f[j].nq - 1) * sizeof(*f[j].q));
				f[j].nq--;
				f[j].uploaded++;
				if (j == SEED)
					seed_up++;
				k = sched_on_chunk(f[r.to].s, f[r.to].handle[j], r.idx, true, now);
				assert_true(k == 0 || k == 1);
				if (k == 1) {
					bf_set(f[r.to].has, r.idx);
					for (uint32_t o = 0; o < SEED; o++)
						if (o != r.to)
							assert_int_equal(sched_peer_has(f[o].s, f[o].handle[r.to], r.idx), 1);
				}
			}
		all_done = true;
		for (uint32_t i = 0; i < SEED; i++) {
			assert_true(sched_tick(f[i].s, now) >= 0);
			all_done = all_done && sched_done(f[i].s);
		}
	} while (!all_done);

	print_message("fleet: the seed uploaded %" PRIu64 " chunks for %zu\n", seed_up, n);
	/* 512 chunks: the seed sent each about once (a few collide when two
	 * devices ask for the same chunk before either has it) */
	assert_in_range(seed_up, n, n + n / 10);
	for (uint32_t i = 0; i < SEED; i++) {
		struct sched_stats st;

		sched_get_stats(f[i].s, &st);
		assert_int_equal(st.bytes_held, (uint64_t)n * len);
		sched_free(f[i].s);
	}
	for (uint32_t j = 0; j < N; j++) {
		free(f[j].has);
		free(f[j].q);
	}
	free(lens);
}

/* ---- the large schedule ---- */

struct big_result {
	uint64_t setup_ns; /* of sched_ns: sched_new and the 64 bitfields */
	uint64_t sched_ns;
	uint64_t calls;
	uint64_t work;
	uint64_t steps;
	uint64_t now;
	struct sched_stats st;
};

/* n chunks of 4 KiB, peers - 1 devices that each hold a random 1/16 and a
 * seed with everything; after every delivery one random device gains one
 * random chunk (a HAVE), so availability keeps changing. */
static void run_big(size_t n, size_t peers, bool timed, struct big_result *ret)
{
	struct sim m;
	uint64_t r = 77;

	uint64_t t0 = timed ? clock_ns() : 0;

	sim_init(&m, n, NULL, 4 * KIB, NULL, NULL, 99);
	m.sched_ns = timed ? clock_ns() - t0 : 0;
	m.timed = timed;
	m.pick_all = false;
	m.have_seed = 5;
	for (size_t k = 0; k + 1 < peers; k++) {
		uint8_t *b = bf_new(n);

		for (size_t i = 0; i < n; i++)
			if ((prng_next(&r) & 15) == 0)
				bf_set(b, i);
		sim_add(&m, 100 + k, false, 4096, 1, b);
	}
	sim_add(&m, 1, true, 8192, 1, bf_all(n));
	ret->setup_ns = m.sched_ns;
	sim_run(&m, 20 * (uint64_t)n);
	check_done(&m);
	sched_get_stats(m.s, &ret->st);
	ret->calls = m.calls;
	ret->sched_ns = m.sched_ns;
	ret->work = ret->st.work;
	ret->steps = m.steps;
	ret->now = m.now;
	sim_free(&m);
}

/* 1,000,000 chunks, 64 peers, to the end. No timing: the scheduler's own
 * count of inner steps must stay within a constant per call, which a
 * quadratic algorithm (scanning chunks per pick) would exceed by far. */
static void test_million(void **state)
{
	struct big_result b;
	const size_t n = 1000000;

	(void)state;
	run_big(n, 64, false, &b);
	print_message("1M chunks, 64 peers: %" PRIu64 " scheduler calls, %" PRIu64 " inner steps (%.1f per call), "
		      "%" PRIu64 " requests, %" PRIu64 " from the seed\n",
		      b.calls, b.work, (double)b.work / (double)b.calls, b.st.requests,
		      b.st.bytes_from_seeds / (4 * KIB));
	assert_true(b.calls < 4 * (uint64_t)n);
	assert_true(b.work < 100 * b.calls);
	/* about (15/16)^63 = 1.7 % of the chunks are on no device */
	assert_in_range(b.st.bytes_from_seeds / (4 * KIB), n / 200, n / 20);
}

static int bench(int argc, char **argv)
{
	size_t n = argc > 2 ? strtoul(argv[2], NULL, 10) : 1000000;
	size_t peers = argc > 3 ? strtoul(argv[3], NULL, 10) : 64;
	struct big_result b;
	uint64_t t0, t1;
	double sec, in;

	if (n == 0 || n > SCHED_MAX_CHUNKS || peers < 2 || peers > MAX_SIM_PEERS) {
		fprintf(stderr, "usage: test-sched --bench [CHUNKS (1..%u) [PEERS (2..%d)]]\n", SCHED_MAX_CHUNKS,
			MAX_SIM_PEERS);
		return 2;
	}
	t0 = clock_ns();
	run_big(n, peers, true, &b);
	t1 = clock_ns();
	sec = (double)(t1 - t0) / 1e9;
	in = (double)b.sched_ns / 1e9;
	printf("%zu chunks of 4 KiB, %zu peers (one a seed), to completion\n", n, peers);
	printf("  wall time %.2f s, of which %.2f s in the scheduler (clock reads included):\n", sec, in);
	printf("  setup (sched_new, %zu bitfields): %.2f s\n", peers, (double)b.setup_ns / 1e9);
	in -= (double)b.setup_ns / 1e9;
	printf("  run: %.2f s for %" PRIu64 " calls: %.2f M calls/s, %.0f ns per call\n", in, b.calls,
	       (double)b.calls / in / 1e6, in * 1e9 / (double)b.calls);
	printf("  %" PRIu64 " requests (%" PRIu64 " endgame duplicates): %.2f M requests/s\n", b.st.requests,
	       b.st.duplicates, (double)b.st.requests / in / 1e6);
	printf("  %" PRIu64 " inner steps (%.1f per call), %" PRIu64 " harness steps, %" PRIu64 " ms simulated\n",
	       b.work, (double)b.work / (double)b.calls, b.steps, b.now);
	return 0;
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_params),
		cmocka_unit_test(test_peer_table),
		cmocka_unit_test(test_complete_mixed),
		cmocka_unit_test(test_seed_not_asked_when_swarm_has_all),
		cmocka_unit_test(test_seed_serves_lone_downloader),
		cmocka_unit_test(test_seed_offload_policy),
		cmocka_unit_test(test_seed_later),
		cmocka_unit_test(test_seed_yield),
		cmocka_unit_test(test_seed_assist),
		cmocka_unit_test(test_seed_assist_snubbed),
		cmocka_unit_test(test_rarest_first),
		cmocka_unit_test(test_tiebreak_seeded),
		cmocka_unit_test(test_no_scan_for_sparse_peer),
		cmocka_unit_test(test_pipeline_depth),
		cmocka_unit_test(test_timeout_reassign),
		cmocka_unit_test(test_bad_chunk_ban),
		cmocka_unit_test(test_bad_chunk_run),
		cmocka_unit_test(test_endgame),
		cmocka_unit_test(test_endgame_run),
		cmocka_unit_test(test_peer_remove),
		cmocka_unit_test(test_same_id),
		cmocka_unit_test(test_have_local),
		cmocka_unit_test(test_fleet_seed_uploads_once),
		cmocka_unit_test(test_million),
	};

	if (argc > 1 && strcmp(argv[1], "--bench") == 0)
		return bench(argc, argv);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
