/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Seeded pseudo-random bytes for tests and benchmarks: the same seed gives
 * the same bytes on every machine, so test vectors and images are pinned. */
#pragma once

#include <stddef.h>
#include <stdint.h>

static inline uint64_t prng_next(uint64_t *s)
{
	uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static inline void prng_fill(uint64_t *s, uint8_t *p, size_t n)
{
	while (n >= 8) {
		uint64_t v = prng_next(s);

		for (int i = 0; i < 8; i++)
			p[i] = (uint8_t)(v >> (8 * i));
		p += 8;
		n -= 8;
	}
	if (n) {
		uint64_t v = prng_next(s);

		for (size_t i = 0; i < n; i++)
			p[i] = (uint8_t)(v >> (8 * i));
	}
}
