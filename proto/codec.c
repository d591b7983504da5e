/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "codec.h"

int rd_bytes(struct rd *r, size_t n, const uint8_t **ret, const char *what)
{
	if (rd_left(r) < n)
		return perr_set(r->err, -EBADMSG, "truncated at byte %zu: %s needs %zu bytes, %zu left",
				r->base + r->off, what, n, rd_left(r));
	*ret = r->p + r->off;
	r->off += n;
	return 0;
}

int rd_u8(struct rd *r, uint8_t *ret, const char *what)
{
	const uint8_t *p;
	int k = rd_bytes(r, 1, &p, what);

	if (k < 0)
		return k;
	*ret = p[0];
	return 0;
}

int rd_u16(struct rd *r, uint16_t *ret, const char *what)
{
	const uint8_t *p;
	int k = rd_bytes(r, 2, &p, what);

	if (k < 0)
		return k;
	*ret = rd_le16(p);
	return 0;
}

int rd_u32(struct rd *r, uint32_t *ret, const char *what)
{
	const uint8_t *p;
	int k = rd_bytes(r, 4, &p, what);

	if (k < 0)
		return k;
	*ret = rd_le32(p);
	return 0;
}

int rd_u64(struct rd *r, uint64_t *ret, const char *what)
{
	const uint8_t *p;
	int k = rd_bytes(r, 8, &p, what);

	if (k < 0)
		return k;
	*ret = rd_le64(p);
	return 0;
}

int rd_str(struct rd *r, size_t min, size_t max, const char **ret, size_t *ret_len, const char *what)
{
	size_t at = r->off;
	const uint8_t *p;
	uint16_t n;
	int k;

	k = rd_u16(r, &n, what);
	if (k < 0)
		return k;
	if (n < min || n > max) {
		r->off = at;
		return perr_set(r->err, -EBADMSG, "%s at byte %zu has length %u, allowed %zu..%zu",
				what, r->base + at, n, min, max);
	}
	k = rd_bytes(r, n, &p, what);
	if (k < 0) {
		r->off = at;
		return k;
	}
	*ret = (const char *)p;
	*ret_len = n;
	return 0;
}

void wbuf_free(struct wbuf *w)
{
	free(w->p);
	*w = (struct wbuf){ 0 };
}

static int wbuf_grow(struct wbuf *w, size_t n)
{
	size_t want;
	uint8_t *p;

	if (w->err)
		return w->err;
	if (n <= w->cap - w->len)
		return 0;
	if (__builtin_add_overflow(w->len, n, &want))
		return w->err = -ENOMEM;
	if (want < 256)
		want = 256;
	if (want < w->cap * 2)
		want = w->cap * 2;
	p = realloc(w->p, want);
	if (!p)
		return w->err = -ENOMEM;
	w->p = p;
	w->cap = want;
	return 0;
}

int wbuf_put(struct wbuf *w, const void *p, size_t n)
{
	if (wbuf_grow(w, n) < 0)
		return w->err;
	if (n)
		memcpy(w->p + w->len, p, n);
	w->len += n;
	return 0;
}

int wbuf_u8(struct wbuf *w, uint8_t v)
{
	return wbuf_put(w, &v, 1);
}

int wbuf_u16(struct wbuf *w, uint16_t v)
{
	uint8_t b[2];

	wr_le16(b, v);
	return wbuf_put(w, b, sizeof(b));
}

int wbuf_u32(struct wbuf *w, uint32_t v)
{
	uint8_t b[4];

	wr_le32(b, v);
	return wbuf_put(w, b, sizeof(b));
}

int wbuf_u64(struct wbuf *w, uint64_t v)
{
	uint8_t b[8];

	wr_le64(b, v);
	return wbuf_put(w, b, sizeof(b));
}

int wbuf_str(struct wbuf *w, const char *s)
{
	size_t n = strlen(s);

	if (n > UINT16_MAX)
		return w->err = -E2BIG;
	wbuf_u16(w, (uint16_t)n);
	return wbuf_put(w, s, n);
}

size_t wbuf_reserve(struct wbuf *w, size_t n)
{
	size_t at = w->len;

	if (wbuf_grow(w, n) < 0)
		return 0;
	memset(w->p + w->len, 0, n);
	w->len += n;
	return at;
}

uint8_t *wbuf_steal(struct wbuf *w, size_t *ret_len)
{
	uint8_t *p = w->p;

	*ret_len = w->len;
	*w = (struct wbuf){ 0 };
	return p;
}
