/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A bounded read cursor and a growing write buffer: the only way the binary
 * formats touch bytes, so that no parser does its own pointer arithmetic. */
#pragma once

#include "util.h"

/* Reading: every call checks the bytes left first and returns -EBADMSG
 * (with `what` named in err) when the input ends early. Outputs are written
 * only on success. Pointers returned point into the input. */
struct rd {
	const uint8_t *p;
	size_t len;
	size_t off;
	size_t base; /* where p lies in the file: error messages give file offsets */
	struct perr *err;
};

static inline void rd_init(struct rd *r, const uint8_t *p, size_t len, struct perr *err)
{
	*r = (struct rd){ .p = p, .len = len, .off = 0, .err = err };
}

/* A cursor over a section that starts at byte `base` of the file. */
static inline void rd_init_at(struct rd *r, const uint8_t *p, size_t len, size_t base, struct perr *err)
{
	*r = (struct rd){ .p = p, .len = len, .off = 0, .base = base, .err = err };
}

static inline size_t rd_left(const struct rd *r)
{
	return r->len - r->off;
}

int rd_bytes(struct rd *r, size_t n, const uint8_t **ret, const char *what);
int rd_u8(struct rd *r, uint8_t *ret, const char *what);
int rd_u16(struct rd *r, uint16_t *ret, const char *what);
int rd_u32(struct rd *r, uint32_t *ret, const char *what);
int rd_u64(struct rd *r, uint64_t *ret, const char *what);
/* A string encoded as u16 length + bytes, no NUL. Lengths outside
 * [min, max] are -EBADMSG. *ret points into the input, not terminated. */
int rd_str(struct rd *r, size_t min, size_t max, const char **ret, size_t *ret_len, const char *what);

/* Writing: appends grow the buffer; the first allocation failure is kept in
 * w->err and later appends do nothing, so a writer checks once at the end. */
struct wbuf {
	uint8_t *p;
	size_t len;
	size_t cap;
	int err;
};

void wbuf_free(struct wbuf *w);
/* Returns w->err (0 or -ENOMEM). */
int wbuf_put(struct wbuf *w, const void *p, size_t n);
int wbuf_u8(struct wbuf *w, uint8_t v);
int wbuf_u16(struct wbuf *w, uint16_t v);
int wbuf_u32(struct wbuf *w, uint32_t v);
int wbuf_u64(struct wbuf *w, uint64_t v);
int wbuf_str(struct wbuf *w, const char *s);
/* Reserves n zero bytes and returns their offset (for lengths patched later). */
size_t wbuf_reserve(struct wbuf *w, size_t n);
/* Hands the bytes to the caller (free() them) and resets w. */
uint8_t *wbuf_steal(struct wbuf *w, size_t *ret_len);
