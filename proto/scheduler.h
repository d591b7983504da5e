/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The transfer scheduler: which chunk of a release to ask which peer for,
 * and when to give up on a request. One struct sched per release being
 * downloaded.
 *
 * It is a caller-driven state machine with no I/O: no sockets, no files, no
 * clock. The caller (shoald's event loop, or the simulator's model mode)
 * tells it what happened (a peer connected, announced chunks, delivered
 * one, went silent) and passes the time as `now_ms` on a monotonic clock of
 * its choice; it answers with the chunks to request and with events to act
 * on (sched_event_next()). Given the same seed and the same calls it makes
 * the same decisions on every machine.
 *
 * Chunks are named by their index in the release's chunk table; the caller
 * maps indexes to ids and back. Chunks that share an id are fetched once:
 * pass a "same-as" table to sched_new() (sched_dedup() builds it from the
 * ids) and the scheduler treats every index of an id as one unit. It always
 * names a unit by its first index; any index of it is accepted as input.
 * When the unit arrives the caller writes it at every offset of that id.
 *
 * Policies (the parameters are in struct sched_params):
 *
 *  - Rarest first. A unit's rarity is the number of usable holders: connected,
 *    not banned, not seeds (a seed is the fallback, never what makes a chunk
 *    common). Counts at or above rarity_cap are all "common". A peer is
 *    asked for the rarest units it holds that we lack and nobody is fetching;
 *    ties are broken by a random order of the units drawn once from the seed.
 *  - Pipelining. Each peer's rate is measured (bytes over the time it had
 *    requests outstanding, smoothed); a peer gets new requests while less
 *    than rate * pipeline_ms bytes are in flight to it, within
 *    [depth_min, depth_max] requests (depth_initial before a measurement).
 *  - Timeouts. The oldest request of a peer must complete within
 *    max(timeout_floor_ms, timeout_base_ms + timeout_factor * len / rate),
 *    counted from when it was sent or from the peer's last answer, whichever
 *    is later. When it does not, every request to that peer returns to the
 *    pool (CANCEL events), its rate estimate is halved and it is snubbed (no
 *    new requests) for snub_ms, doubling with each consecutive timeout up to
 *    snub_max_ms. After stall_timeouts in a row a PEER_STALLED event says
 *    the caller should drop it.
 *  - Bans. A peer that sends a chunk that does not match its id is banned for
 *    ban_ms: never asked for anything, its chunks no longer count as
 *    available, its requests go back to the pool. The ban is kept by peer
 *    key, so it survives the peer reconnecting.
 *  - Seed offload (seed_policy). With SCHED_SEED_OFFLOAD (the default) a seed
 *    is asked for (a) units that no usable non-seed peer holds, and (b) while
 *    fewer than seed_assist requests are in flight to it ("idle"), units whose
 *    every usable non-seed holder is saturated: snubbed, or unable to take a
 *    request and with more than seed_assist_wait_ms of work queued at its
 *    measured rate. A peer that merely keeps up with its pipeline is never
 *    saturated, so a swarm that works leaves the seed alone. When a usable
 *    peer announces a unit that is queued at a seed, that request is
 *    withdrawn (CANCEL) and the unit goes back to the pool, unless it is the
 *    seed's oldest request from us (probably on the wire already): devices
 *    that asked the seed for the same rare chunk at about the same time do
 *    not all get it from there. SCHED_SEED_STRICT is (a) and the
 *    withdrawal; SCHED_SEED_PEER treats seeds as ordinary peers.
 *  - Seed "later". A seed that super-seeds answers NOT_FOUND for a unit it
 *    has just sent to another peer: that peer will announce it. Unlike a
 *    peer's NOT_FOUND this does not mean the seed lacks it: the request
 *    returns to the pool, and that seed is not asked for the unit again for
 *    seed_later_ms (whoever announces it meanwhile is asked instead).
 *  - Endgame. When no missing unit is left to ask for (all are in flight) and
 *    at most endgame_threshold units are missing, a peer with room may be
 *    asked for units already in flight elsewhere, up to endgame_copies
 *    requests per unit, the least duplicated first. The first valid reply
 *    wins; the other requests become CANCEL events. Seeds follow the same
 *    offload rule for duplicates.
 *  - Score. Per peer: chunks delivered - 4 * timeouts - 2 * not-found -
 *    100 * bad chunks. The scheduler acts on rates, timeouts and bans; the
 *    score summarises them for the caller's choice of peers to keep.
 *
 * Cost: memory is about n * (22 + max_peers / 8) + peers * n / 8 bytes
 * (1M chunks, 64 peers: 38 MB). Adding or losing a holder of a unit, or a
 * unit entering or leaving the pool, costs O(holders of that unit) small
 * steps; a pick costs O(rarity_cap + chunks picked * holders), plus, in
 * endgame, O(units in flight) (at most endgame_threshold); an answer costs
 * O(depth) for finding its request; timeouts are checked per peer, not per
 * request. Nothing scans all chunks except a bitfield, a ban or a peer
 * leaving, which walk that peer's own bits. stats.work counts the inner steps.
 */
#pragma once

#include "util.h"

#define SCHED_MAX_PEERS 1024u
#define SCHED_MAX_DEPTH 1024u
#define SCHED_MAX_COPIES 4u
#define SCHED_MAX_RARITY 63u
#define SCHED_MAX_CHUNKS (1u << 24)

/* "No such time" for sched_next_deadline(). */
#define SCHED_NEVER UINT64_MAX

enum sched_seed_policy {
	SCHED_SEED_OFFLOAD = 0, /* what no usable peer holds, plus idle assist */
	SCHED_SEED_STRICT = 1,  /* only what no usable peer holds */
	SCHED_SEED_PEER = 2,    /* no special treatment */
};

struct sched_params {
	uint32_t max_peers;           /* 64: peers connected at once, <= SCHED_MAX_PEERS */
	uint32_t depth_min;           /* 2: requests a peer always gets in flight */
	uint32_t depth_initial;       /* 4: before its rate is measured */
	uint32_t depth_max;           /* 64, <= SCHED_MAX_DEPTH */
	uint32_t pipeline_ms;         /* 400: keep this much of a peer's rate in flight */
	uint32_t rate_window_ms;      /* 100: shortest busy time one rate sample covers */
	uint32_t rate_alpha_pct;      /* 25: weight of a new sample, 1..100 */
	uint64_t rate_initial_bps;    /* 262144: assumed for timeouts before a measurement */
	uint32_t timeout_floor_ms;    /* 2000 */
	uint32_t timeout_base_ms;     /* 1000 */
	uint32_t timeout_factor;      /* 4: times the expected transfer time, >= 1 */
	uint32_t snub_ms;             /* 2000: no new requests after a timeout ... */
	uint32_t snub_max_ms;         /* 60000: ... doubling up to this */
	uint32_t stall_timeouts;      /* 3: consecutive timeouts before PEER_STALLED, >= 1 */
	uint64_t ban_ms;              /* 600000 (10 min) */
	uint32_t endgame_threshold;   /* 512: missing units at most, for endgame */
	uint32_t endgame_copies;      /* 3: requests per unit in endgame, 1..SCHED_MAX_COPIES (1: no endgame) */
	uint32_t rarity_cap;          /* 16: holders from which a unit counts as common, 1..SCHED_MAX_RARITY */
	enum sched_seed_policy seed_policy; /* SCHED_SEED_OFFLOAD */
	uint32_t seed_assist;         /* 1: requests to an idle seed for saturated units (0: never) */
	uint32_t seed_assist_wait_ms; /* 2000 */
	uint32_t seed_later_ms;       /* 1000: a seed's NOT_FOUND means "not from me for this long" */
};

/* The defaults above. */
void sched_params_default(struct sched_params *ret);

/* Checks the ranges above. 0 or -EINVAL with err filled. */
int sched_params_check(const struct sched_params *p, struct perr *err);

struct sched;

/* A scheduler for n_chunks chunks of the given lengths (each >= 1), all
 * missing. same_as (NULL: all distinct) maps each index to the first index
 * with the same id: same_as[i] <= i, same_as[same_as[i]] == same_as[i], equal
 * lengths. p NULL means the defaults. The seed fixes the random tie-break
 * order. The arrays are copied. *ret (caller frees with sched_free) is
 * written only on success; -EINVAL (bad parameters or table, err says which),
 * -E2BIG (more than SCHED_MAX_CHUNKS), -ENOMEM. */
int sched_new(const struct sched_params *p, size_t n_chunks, const uint32_t *chunk_lens, const uint32_t *same_as,
	      uint64_t seed, struct sched **ret, struct perr *err);
void sched_free(struct sched *s);
static inline void sched_freep(struct sched **s)
{
	sched_free(*s);
}

/* Builds the same-as table for sched_new() from n ids of id_len bytes, the
 * i-th at ids + i * stride (so a struct manifest_chunk array can be passed
 * as is). *ret is malloc'ed (caller frees), written only on success. */
int sched_dedup(const uint8_t *ids, size_t id_len, size_t stride, size_t n, uint32_t **ret);

/* The unit of idx is held locally (reused from the active slot, resumed
 * after a restart, or fetched outside the scheduler). Requests in flight for
 * it become CANCEL events. 1 if it was missing, 0 if already held, -EINVAL. */
int sched_have(struct sched *s, uint32_t idx);

/* Peers. A handle is a small integer (below max_peers), reused after
 * sched_peer_remove(). The key is the caller's (a device id prefix, a
 * connection number) and comes back in events; bans are kept by key. A peer
 * added while its key is banned starts banned. -ENOSPC when max_peers are
 * connected, -EEXIST when the key is, -ENOMEM. */
int sched_peer_add(struct sched *s, uint64_t peer_key, bool is_seed, uint32_t *ret);

/* The peer is gone: its requests return to the pool (no CANCEL events: the
 * connection is) and its chunks stop counting. Returns how many requests it
 * had in flight, or -ENOENT. */
int sched_peer_remove(struct sched *s, uint32_t peer);

/* A BITFIELD: bit i (LSB first) of bits says the peer holds chunk i;
 * n_bits must be n_chunks; bits beyond are ignored. Replaces what was known
 * about the peer. Requests queued at seeds may yield (CANCEL events, see
 * seed offload). 0, -EINVAL, -ENOENT, -ENOMEM (nothing changed then). */
int sched_peer_bitfield(struct sched *s, uint32_t peer, const uint8_t *bits, size_t n_bits);

/* A HAVE for one index. 1 if new, 0 if known, -EINVAL, -ENOENT, -ENOMEM.
 * Like a bitfield, it may withdraw requests queued at seeds. */
int sched_peer_has(struct sched *s, uint32_t peer, uint32_t idx);

/* The chunks to request from the peer now, written to out (up to max, as
 * first indexes of their units), most wanted first; *n how many (0: nothing
 * for this peer now: it is banned, snubbed, full, or holds nothing
 * useful). The requests count as sent at now_ms. 0, -ENOENT, -ENOMEM (nothing
 * changed then). */
int sched_pick(struct sched *s, uint32_t peer, uint64_t now_ms, uint32_t *out, size_t max, size_t *n);

/* A CHUNK from the peer for idx, checked against its id by the caller.
 * Valid: the unit is held; the peer's rate and score are updated; other
 * requests for it become CANCEL events. Returns 1 when the unit was missing
 * (write it), 0 when it was already held (discard it). A valid chunk that was
 * not asked for (a reply after a timeout) is taken too. Invalid: the peer is
 * banned until now_ms + ban_ms and its requests return to the pool; returns
 * 0. -EINVAL, -ENOENT, -ENOMEM (nothing changed then). */
int sched_on_chunk(struct sched *s, uint32_t peer, uint32_t idx, bool valid, uint64_t now_ms);

/* A NOT_FOUND: the peer does not hold idx after all. Its bit is cleared and
 * a request to it for idx returns to the pool. From a seed (not with
 * SCHED_SEED_PEER) it means "later": the bit stays, and seeds are not asked
 * for idx until now_ms + seed_later_ms. 0, -EINVAL, -ENOENT, -ENOMEM. */
int sched_on_not_found(struct sched *s, uint32_t peer, uint32_t idx, uint64_t now_ms);

/* Time passes: requests past their timeout return to the pool (CANCEL
 * events), their peers are snubbed (PEER_STALLED after stall_timeouts in a
 * row), bans that ended are lifted. Returns how many peers timed out, or
 * -ENOMEM (nothing changed then). */
int sched_tick(struct sched *s, uint64_t now_ms);

/* When something changes with time alone: the earliest request deadline,
 * snub end or ban end after now_ms, or SCHED_NEVER. The caller ticks (and
 * picks again) then. */
uint64_t sched_next_deadline(const struct sched *s, uint64_t now_ms);

enum sched_event_type {
	SCHED_EV_CANCEL = 1,       /* send CANCEL for idx to peer: the request is dropped */
	SCHED_EV_PEER_STALLED = 2, /* the peer timed out stall_timeouts times in a row */
};

struct sched_event {
	enum sched_event_type type;
	uint32_t peer;
	uint64_t peer_key;
	uint32_t idx; /* CANCEL only */
};

/* Pops the oldest event into *ret: 1, or 0 when there is none. Drain after
 * every call that changes state. An event may name a peer removed since
 * (and its handle may be reused): match peer_key too. */
int sched_event_next(struct sched *s, struct sched_event *ret);

/* The end of the key's ban (active while now < it), or 0 if not banned.
 * Expired bans are forgotten at the next tick. */
uint64_t sched_peer_banned_until(const struct sched *s, uint64_t peer_key);

struct sched_stats {
	uint32_t chunks_total;       /* units (distinct ids) */
	uint32_t chunks_held;
	uint32_t chunks_in_flight;   /* units with at least one request */
	uint32_t chunks_wanted;      /* units missing and not in flight */
	uint32_t requests_in_flight; /* including endgame duplicates */
	uint32_t peers;
	uint64_t bytes_total;        /* of the units */
	uint64_t bytes_held;
	uint64_t bytes_from_peers;   /* new units from non-seeds */
	uint64_t bytes_from_seeds;   /* new units from seeds */
	uint64_t bytes_wasted;       /* duplicates and bad chunks */
	uint64_t requests;           /* sent, including duplicates */
	uint64_t duplicates;         /* endgame duplicates sent */
	uint64_t timeouts;           /* peers that timed out (each drops all its requests) */
	uint64_t bad_chunks;
	uint64_t not_found;
	uint64_t seed_yields;        /* seed requests withdrawn because a peer announced the chunk */
	uint64_t seed_laters;        /* NOT_FOUNDs from seeds: "get it from a peer" */
	bool endgame;
	uint64_t work;               /* inner-loop steps so far, to watch the cost */
};

void sched_get_stats(const struct sched *s, struct sched_stats *ret);

struct sched_peer_stats {
	uint64_t key;
	bool seed;
	bool banned;           /* as of the last call that passed a time */
	uint64_t banned_until;
	uint64_t snubbed_until;
	uint64_t rate_bps;     /* 0 until measured */
	uint32_t depth;        /* requests the pipeline aims for at that rate */
	uint32_t in_flight;
	uint64_t bytes_in_flight;
	uint64_t bytes;        /* valid chunk bytes received, new or not */
	uint64_t chunks;
	uint64_t holds;        /* units it holds */
	uint64_t timeouts;
	uint32_t timeouts_in_a_row;
	uint64_t not_found;
	uint64_t bad_chunks;
	int64_t score;
};

/* 0 or -ENOENT. */
int sched_get_peer_stats(const struct sched *s, uint32_t peer, struct sched_peer_stats *ret);

/* Every unit is held. */
bool sched_done(const struct sched *s);
