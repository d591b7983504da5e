/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "ratelimit.h"

/* ---- token bucket ---- */

static int64_t cap_mb(const struct tbucket *b)
{
	return (int64_t)(b->burst * 1000);
}

/* The tokens b holds at now, without changing it. A full bucket stays full
 * however long it idles: the step that would overflow is never taken. */
static int64_t tokens_at(const struct tbucket *b, uint64_t now)
{
	int64_t cap = cap_mb(b);
	uint64_t dt, need;

	if (b->rate_bps == 0)
		return cap;
	if (now <= b->last_ms || b->tokens >= cap)
		return b->tokens < cap ? b->tokens : cap;
	dt = now - b->last_ms;
	need = (uint64_t)(cap - b->tokens);
	if (dt >= (need + b->rate_bps - 1) / b->rate_bps)
		return cap;
	return b->tokens + (int64_t)(b->rate_bps * dt);
}

static void refill(struct tbucket *b, uint64_t now)
{
	b->tokens = tokens_at(b, now);
	if (now > b->last_ms)
		b->last_ms = now;
}

static int check_limits(uint64_t rate_bps, uint64_t burst)
{
	if (rate_bps > TBUCKET_MAX_RATE || burst > TBUCKET_MAX_TAKE || (rate_bps && !burst))
		return -EINVAL;
	return 0;
}

int tbucket_init(struct tbucket *b, uint64_t rate_bps, uint64_t burst, uint64_t now_ms)
{
	if (check_limits(rate_bps, burst) < 0)
		return -EINVAL;
	*b = (struct tbucket){ .rate_bps = rate_bps, .burst = burst, .last_ms = now_ms };
	b->tokens = cap_mb(b);
	return 0;
}

int tbucket_set(struct tbucket *b, uint64_t rate_bps, uint64_t burst, uint64_t now_ms)
{
	if (check_limits(rate_bps, burst) < 0)
		return -EINVAL;
	refill(b, now_ms);
	b->rate_bps = rate_bps;
	b->burst = burst;
	if (b->tokens > cap_mb(b))
		b->tokens = cap_mb(b);
	return 0;
}

static int64_t need_mb(const struct tbucket *b, uint64_t n)
{
	return (int64_t)((n < b->burst ? n : b->burst) * 1000);
}

int tbucket_take(struct tbucket *b, uint64_t n, uint64_t now_ms)
{
	struct tbucket *one = b;

	return tbucket_take_all(&one, 1, n, now_ms);
}

void tbucket_charge(struct tbucket *b, uint64_t n, uint64_t now_ms)
{
	if (b->rate_bps == 0)
		return;
	refill(b, now_ms);
	b->tokens -= (int64_t)((n < TBUCKET_MAX_TAKE ? n : TBUCKET_MAX_TAKE) * 1000);
}

uint64_t tbucket_delay_ms(const struct tbucket *b, uint64_t n, uint64_t now_ms)
{
	int64_t have, need;
	uint64_t wait = 0;

	if (b->rate_bps == 0 || n == 0)
		return 0;
	if (n > TBUCKET_MAX_TAKE)
		n = TBUCKET_MAX_TAKE;
	if (now_ms < b->last_ms) {
		wait = b->last_ms - now_ms;
		now_ms = b->last_ms;
	}
	have = tokens_at(b, now_ms);
	need = need_mb(b, n);
	if (have >= need)
		return wait;
	return wait + ((uint64_t)(need - have) + b->rate_bps - 1) / b->rate_bps;
}

int tbucket_take_all(struct tbucket *const *b, size_t n_b, uint64_t n, uint64_t now_ms)
{
	if (n > TBUCKET_MAX_TAKE)
		return -EINVAL;
	for (size_t i = 0; i < n_b; i++) {
		if (!b[i] || b[i]->rate_bps == 0)
			continue;
		refill(b[i], now_ms);
		if (b[i]->tokens < need_mb(b[i], n))
			return -EAGAIN;
	}
	for (size_t i = 0; i < n_b; i++)
		if (b[i] && b[i]->rate_bps)
			b[i]->tokens -= (int64_t)(n * 1000);
	return 0;
}

uint64_t tbucket_delay_all_ms(struct tbucket *const *b, size_t n_b, uint64_t n, uint64_t now_ms)
{
	uint64_t d = 0;

	for (size_t i = 0; i < n_b; i++)
		if (b[i]) {
			uint64_t x = tbucket_delay_ms(b[i], n, now_ms);

			if (x > d)
				d = x;
		}
	return d;
}

/* ---- upload slots ---- */

void upslots_params_default(struct upslots_params *ret)
{
	*ret = (struct upslots_params){
		.slots = 4,
		.slice_ms = 10000,
		.slice_bytes = 8 * 1024 * 1024,
	};
}

int upslots_init(struct upslots *u, const struct upslots_params *p)
{
	struct upslots_params def;

	if (!p) {
		upslots_params_default(&def);
		p = &def;
	}
	if (p->slots == 0)
		return -EINVAL;
	*u = (struct upslots){ .p = *p };
	u->act = calloc(p->slots, sizeof(*u->act));
	if (!u->act)
		return -ENOMEM;
	return 0;
}

void upslots_deinit(struct upslots *u)
{
	free(u->act);
	free(u->wait);
	free(u->ev);
	*u = (struct upslots){ 0 };
}

static int grow(void **arr, size_t *cap, size_t need, size_t size)
{
	return array_reserve(arr, cap, need, size, 8);
}

static int ev_reserve(struct upslots *u, size_t more)
{
	void *a = u->ev;
	int r;

	if (u->ev_head == u->ev_n)
		u->ev_head = u->ev_n = 0;
	if (u->ev_n + more > u->ev_cap && u->ev_head > 0) {
		memmove(u->ev, u->ev + u->ev_head, (u->ev_n - u->ev_head) * sizeof(*u->ev));
		u->ev_n -= u->ev_head;
		u->ev_head = 0;
	}
	r = grow(&a, &u->ev_cap, u->ev_n + more, sizeof(*u->ev));
	u->ev = a;
	return r;
}

static void ev_push(struct upslots *u, enum upslots_event_type type, uint64_t key)
{
	u->ev[u->ev_n++] = (struct upslots_event){ .type = type, .key = key };
}

static struct upslot *act_find(const struct upslots *u, uint64_t key)
{
	for (size_t i = 0; i < u->n_act; i++)
		if (u->act[i].key == key)
			return &u->act[i];
	return NULL;
}

static size_t wait_find(const struct upslots *u, uint64_t key)
{
	for (size_t i = 0; i < u->n_wait; i++)
		if (u->wait[i] == key)
			return i;
	return SIZE_MAX;
}

static uint64_t wait_pop(struct upslots *u)
{
	uint64_t key = u->wait[0];

	memmove(u->wait, u->wait + 1, (u->n_wait - 1) * sizeof(*u->wait));
	u->n_wait--;
	return key;
}

/* Slot a goes to the head of the queue; capacity for one event reserved. */
static void promote(struct upslots *u, struct upslot *a, uint64_t now)
{
	*a = (struct upslot){ .key = wait_pop(u), .since_ms = now };
	ev_push(u, UPSLOTS_EV_UNCHOKE, a->key);
}

static bool slice_over(const struct upslots *u, const struct upslot *a, uint64_t now)
{
	if (u->p.slice_bytes && a->bytes >= u->p.slice_bytes)
		return true;
	return u->p.slice_ms && now >= a->since_ms && now - a->since_ms >= u->p.slice_ms;
}

/* The holder of a yields to the head of the queue and queues behind it;
 * capacity for two events reserved. */
static void rotate(struct upslots *u, struct upslot *a, uint64_t now)
{
	uint64_t key = a->key;

	promote(u, a, now);
	u->wait[u->n_wait++] = key; /* the pop made room */
	ev_push(u, UPSLOTS_EV_CHOKE, key);
}

int upslots_want(struct upslots *u, uint64_t key, uint64_t now_ms)
{
	void *a = u->wait;

	if (act_find(u, key))
		return 1;
	if (wait_find(u, key) != SIZE_MAX)
		return 0;
	if (ev_reserve(u, 1) < 0)
		return -ENOMEM;
	if (u->n_act < u->p.slots) {
		u->act[u->n_act++] = (struct upslot){ .key = key, .since_ms = now_ms };
		ev_push(u, UPSLOTS_EV_UNCHOKE, key);
		return 1;
	}
	if (grow(&a, &u->cap_wait, u->n_wait + 1, sizeof(*u->wait)) < 0)
		return -ENOMEM;
	u->wait = a;
	u->wait[u->n_wait++] = key;
	return 0;
}

int upslots_done(struct upslots *u, uint64_t key, uint64_t now_ms)
{
	struct upslot *a = act_find(u, key);
	size_t i;

	if (a) {
		if (ev_reserve(u, 1) < 0)
			return -ENOMEM;
		if (u->n_wait > 0) {
			promote(u, a, now_ms);
		} else {
			*a = u->act[--u->n_act];
		}
		return 0;
	}
	i = wait_find(u, key);
	if (i == SIZE_MAX)
		return -ENOENT;
	memmove(u->wait + i, u->wait + i + 1, (u->n_wait - i - 1) * sizeof(*u->wait));
	u->n_wait--;
	return 0;
}

int upslots_sent(struct upslots *u, uint64_t key, uint64_t bytes, uint64_t now_ms)
{
	struct upslot *a = act_find(u, key);

	if (!a)
		return -ENOENT;
	if (ev_reserve(u, 2) < 0)
		return -ENOMEM;
	a->bytes += bytes;
	if (u->n_wait > 0 && slice_over(u, a, now_ms))
		rotate(u, a, now_ms);
	return 0;
}

/* The holders whose slices are over yield, the longest-served first, but
 * at most as many as were waiting: one that just yielded must not take
 * another expired slot straight back. */
int upslots_tick(struct upslots *u, uint64_t now_ms)
{
	size_t waiting = u->n_wait;
	int n = 0;

	if (ev_reserve(u, 2 * u->n_act) < 0)
		return -ENOMEM;
	for (; (size_t)n < waiting; n++) {
		struct upslot *oldest = NULL;

		for (size_t i = 0; i < u->n_act; i++) {
			struct upslot *a = &u->act[i];

			if (slice_over(u, a, now_ms) && (!oldest || a->since_ms < oldest->since_ms))
				oldest = a;
		}
		if (!oldest)
			break;
		rotate(u, oldest, now_ms);
	}
	return n;
}

uint64_t upslots_next_deadline(const struct upslots *u)
{
	uint64_t t = UPSLOTS_NEVER;

	if (u->n_wait == 0 || u->p.slice_ms == 0)
		return t;
	for (size_t i = 0; i < u->n_act; i++)
		if (u->act[i].since_ms + u->p.slice_ms < t)
			t = u->act[i].since_ms + u->p.slice_ms;
	return t;
}

bool upslots_may_send(const struct upslots *u, uint64_t key)
{
	return act_find(u, key) != NULL;
}

int upslots_event_next(struct upslots *u, struct upslots_event *ret)
{
	if (u->ev_head == u->ev_n)
		return 0;
	*ret = u->ev[u->ev_head++];
	return 1;
}
