/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Rate limits and upload slots: what keeps a device's own work and its
 * network usable while it serves a swarm. Pure state machines: time is the
 * caller's `now_ms` (monotonic), nothing here sleeps or reads a clock.
 *
 * A token bucket limits bytes per second with a burst; a send must pass the
 * node's bucket and the peer's (tbucket_take_all()). Upload slots bound how
 * many peers are served at once and rotate them fairly when others wait. */
#pragma once

#include "util.h"

/* Largest single take: keeps the millibyte arithmetic far from overflow. */
#define TBUCKET_MAX_TAKE (UINT64_C(1) << 40)
#define TBUCKET_MAX_RATE (UINT64_C(1) << 40)

/* Tokens are counted in thousandths of a byte, so that refilling by whole
 * milliseconds is exact at any rate: after t ms the bucket has gained
 * exactly rate_bps * t / 1000 bytes, fractions included. A take of n bytes
 * needs min(n, burst) bytes of tokens and then removes n: a message larger
 * than the burst passes when the bucket is full and leaves a debt, so the
 * long-run rate still holds. The fields are public for inspection only. */
struct tbucket {
	uint64_t rate_bps; /* bytes per second; 0: unlimited */
	uint64_t burst;    /* bytes a full bucket holds */
	int64_t tokens;    /* millibytes; negative: debt */
	uint64_t last_ms;  /* refilled up to here */
};

/* A full bucket. -EINVAL when rate_bps > TBUCKET_MAX_RATE, or a limited
 * bucket has no burst, or burst > TBUCKET_MAX_TAKE. */
int tbucket_init(struct tbucket *b, uint64_t rate_bps, uint64_t burst, uint64_t now_ms);

/* Changes the limits, keeping the tokens (clamped to the new burst). */
int tbucket_set(struct tbucket *b, uint64_t rate_bps, uint64_t burst, uint64_t now_ms);

/* Takes n bytes if the bucket allows it now: 0, or -EAGAIN (nothing
 * taken; tbucket_delay_ms() says how long to wait), -EINVAL (n >
 * TBUCKET_MAX_TAKE). A time before last_ms counts as last_ms. */
int tbucket_take(struct tbucket *b, uint64_t n, uint64_t now_ms);

/* Removes n bytes whatever the bucket holds, for bytes that already
 * moved (a download whose size was not known before): the debt delays
 * the next takes, so the long-run rate holds. n is capped at
 * TBUCKET_MAX_TAKE. */
void tbucket_charge(struct tbucket *b, uint64_t n, uint64_t now_ms);
/* Milliseconds from now_ms until a take of n would succeed (0: now). */
uint64_t tbucket_delay_ms(const struct tbucket *b, uint64_t n, uint64_t now_ms);

/* All or none: takes n from every bucket (NULL entries are skipped) or
 * from none of them. 0, -EAGAIN, -EINVAL. */
int tbucket_take_all(struct tbucket *const *b, size_t n_b, uint64_t n, uint64_t now_ms);

/* The longest tbucket_delay_ms() of them. */
uint64_t tbucket_delay_all_ms(struct tbucket *const *b, size_t n_b, uint64_t n, uint64_t now_ms);

/* Upload slots. A peer that has requests for us calls want; up to `slots`
 * peers hold a slot (are served), the others wait in a FIFO queue. A slot
 * holder keeps its slot while nobody waits; when someone does, it yields
 * after slice_ms or slice_bytes (whichever comes first, 0 disables one),
 * goes to the back of the queue, and the head of the queue takes the slot.
 * Every change of a peer's slot is an event (upslots_event_next()). */
struct upslots_params {
	uint32_t slots;       /* 4 */
	uint64_t slice_ms;    /* 10000 */
	uint64_t slice_bytes; /* 8 MiB */
};

#define UPSLOTS_NEVER UINT64_MAX

enum upslots_event_type {
	UPSLOTS_EV_UNCHOKE = 1, /* the peer holds a slot now: serve it */
	UPSLOTS_EV_CHOKE = 2,   /* the peer yielded its slot: stop after the chunk being sent */
};

struct upslots_event {
	enum upslots_event_type type;
	uint64_t key;
};

struct upslot {
	uint64_t key;
	uint64_t since_ms;
	uint64_t bytes;
};

/* The fields are private; the struct is public so that it can be embedded. */
struct upslots {
	struct upslots_params p;
	struct upslot *act; /* p.slots entries, n_act used */
	size_t n_act;
	uint64_t *wait; /* FIFO, oldest first */
	size_t n_wait, cap_wait;
	struct upslots_event *ev;
	size_t ev_head, ev_n, ev_cap;
};

void upslots_params_default(struct upslots_params *ret);

/* p NULL: the defaults. 0, -EINVAL (no slots), -ENOMEM. */
int upslots_init(struct upslots *u, const struct upslots_params *p);
void upslots_deinit(struct upslots *u);

/* The peer has requests: 1 if it holds a slot (now or before), 0 if it
 * waits, -ENOMEM. */
int upslots_want(struct upslots *u, uint64_t key, uint64_t now_ms);

/* The peer has nothing more to ask (or is gone): its slot goes to the head
 * of the queue, or it leaves the queue. 0, -ENOENT (unknown), -ENOMEM. */
int upslots_done(struct upslots *u, uint64_t key, uint64_t now_ms);

/* Bytes sent to a slot holder; rotates when its slice is over and someone
 * waits. 0, -ENOENT (not a holder), -ENOMEM. */
int upslots_sent(struct upslots *u, uint64_t key, uint64_t bytes, uint64_t now_ms);

/* Rotates the holders whose time slice is over while others wait. Returns
 * how many yielded, or -ENOMEM. */
int upslots_tick(struct upslots *u, uint64_t now_ms);

/* When a slice ends with someone waiting, or UPSLOTS_NEVER. */
uint64_t upslots_next_deadline(const struct upslots *u);

bool upslots_may_send(const struct upslots *u, uint64_t key);

/* 1 and the oldest event in *ret, or 0. */
int upslots_event_next(struct upslots *u, struct upslots_event *ret);
