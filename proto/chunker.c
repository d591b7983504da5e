/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "chunker.h"

/* The gear table is part of the format: changing it moves every cut point.
 * It is the first 256 outputs of splitmix64 seeded with "shoalgea". */
#define GEAR_SEED UINT64_C(0x73686f616c676561)

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

int chunker_params_check(const struct chunker_params *p, struct perr *err)
{
	if (p->min < CHUNKER_MIN_LIMIT)
		return perr_set(err, -EINVAL, "chunk minimum %u is below %u", p->min, CHUNKER_MIN_LIMIT);
	if (p->avg < CHUNKER_AVG_MIN_LIMIT || (p->avg & (p->avg - 1)))
		return perr_set(err, -EINVAL, "chunk average %u is not a power of two of at least %u",
				p->avg, CHUNKER_AVG_MIN_LIMIT);
	if (p->max > CHUNKER_MAX_LIMIT)
		return perr_set(err, -EINVAL, "chunk maximum %u is above %u", p->max, CHUNKER_MAX_LIMIT);
	if (p->min > p->avg || p->avg > p->max)
		return perr_set(err, -EINVAL, "chunk sizes must satisfy min <= avg <= max (got %u/%u/%u)",
				p->min, p->avg, p->max);
	return 0;
}

int chunker_init(struct chunker *c, const struct chunker_params *p, struct perr *err)
{
	uint64_t s = GEAR_SEED;
	unsigned bits;
	int k;

	k = chunker_params_check(p, err);
	if (k < 0)
		return k;
	*c = (struct chunker){ .p = *p };
	bits = (unsigned)__builtin_ctz(p->avg);
	/* Normalisation level 2: two more bits below avg, two fewer above it.
	 * The mask takes the top bits, which depend on the last 64 bytes. */
	c->mask_s = ~UINT64_C(0) << (64 - (bits + 2));
	c->mask_l = ~UINT64_C(0) << (64 - (bits - 2));
	for (unsigned i = 0; i < 256; i++)
		c->gear[i] = splitmix64(&s);
	return 0;
}

size_t chunker_scan(struct chunker *c, const uint8_t *buf, size_t n)
{
	const uint64_t *g = c->gear;
	const uint64_t base = c->pos;
	const uint64_t min = c->p.min, avg = c->p.avg, max = c->p.max;
	uint64_t h = c->h;
	size_t i = 0, end;

	/* A cut may follow byte j of the chunk for j >= min - 1; the bytes
	 * before that are not even hashed. */
	if (base < min - 1) {
		uint64_t skip = min - 1 - base;

		if (skip >= n) {
			c->pos = base + n;
			return CHUNKER_NO_CUT;
		}
		i = (size_t)skip;
	}

	if (base + i < avg - 1) {
		end = (avg - 1 - base) < n ? (size_t)(avg - 1 - base) : n;
		for (; i < end; i++) {
			h = (h << 1) + g[buf[i]];
			if (!(h & c->mask_s)) {
				i++;
				goto cut;
			}
		}
	}

	end = (max - base) < n ? (size_t)(max - base) : n;
	for (; i < end; i++) {
		h = (h << 1) + g[buf[i]];
		if (!(h & c->mask_l)) {
			i++;
			goto cut;
		}
	}
	if (base + i == max)
		goto cut;

	c->h = h;
	c->pos = base + n;
	return CHUNKER_NO_CUT;
cut:
	c->h = 0;
	c->pos = 0;
	return i;
}
