/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Small helpers shared by every module: cleanup attributes, little-endian
 * access, hex, and the error report that parsers fill in. */
#pragma once

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _unused_ __attribute__((unused))

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

/* Hands ownership of p to the caller: returns p and leaves NULL behind, so
 * that a _cleanup_ on the variable no longer frees it. */
#define TAKE_PTR(p) ({ __typeof__(p) _tp = (p); (p) = NULL; _tp; })

#ifndef container_of
#define container_of(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))
#endif

static inline void freep(void *p)
{
	free(*(void **)p);
}

static inline uint16_t rd_le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (uint16_t)p[1] << 8);
}

static inline uint32_t rd_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t rd_le64(const uint8_t *p)
{
	return (uint64_t)rd_le32(p) | (uint64_t)rd_le32(p + 4) << 32;
}

static inline void wr_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline void wr_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline void wr_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* What went wrong, in words a person can act on. Every parser and verifier
 * takes an optional one (NULL is fine) and fills it when it fails. It lives
 * with the caller: there is no global error buffer. */
struct perr {
	char msg[256];
};

/* Formats the message into err (if any) and returns code, which should be a
 * negative errno, so that a failure path reads `return perr_set(err, -EBADMSG, ...)`. */
int perr_set(struct perr *err, int code, const char *fmt, ...) _printf_(3, 4);

/* Prefixes an existing message with more context ("manifest: " + msg). */
int perr_prefix(struct perr *err, int code, const char *fmt, ...) _printf_(3, 4);

/* Lowercase hex of n bytes into out, which must hold 2n+1 bytes. Returns out. */
char *hex_encode(const uint8_t *in, size_t n, char *out);

/* "2027-01-31T12:00:00Z" (UTC) into buf (at least 32 bytes); 0 prints "never". */
const char *time_format(uint64_t t, char *buf, size_t size);

/* Parses exactly 2n hex digits (either case) into out. Returns 0 or -EINVAL. */
int hex_decode(const char *in, size_t n, uint8_t *out);

/* True when s[0..n) is valid UTF-8 without control characters (below 0x20
 * or 0x7f): safe to show on a terminal and to put into JSON. */
bool text_is_clean(const char *s, size_t n);

/* Grows *arr (of *cap elements of size bytes) by doubling, from `first`,
 * until it holds need elements. Returns 0 or -ENOMEM (*arr unchanged). */
int array_reserve(void **arr, size_t *cap, size_t need, size_t size, size_t first);

/* The checked arithmetic that length fields need. Both return false on overflow. */
static inline bool add_u64(uint64_t a, uint64_t b, uint64_t *ret)
{
	return !__builtin_add_overflow(a, b, ret);
}

static inline bool mul_u64(uint64_t a, uint64_t b, uint64_t *ret)
{
	return !__builtin_mul_overflow(a, b, ret);
}
