/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "codec.h"
#include "manifest.h"

struct manifest *manifest_new(void)
{
	struct manifest *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	m->chunking = (struct chunker_params){ CHUNKER_MIN_DEFAULT, CHUNKER_AVG_DEFAULT, CHUNKER_MAX_DEFAULT };
	return m;
}

void manifest_free(struct manifest *m)
{
	if (!m)
		return;
	free(m->product);
	free(m->version);
	free(m->payload_type);
	for (size_t i = 0; i < m->n_meta; i++) {
		free(m->meta[i].key);
		free(m->meta[i].value);
	}
	free(m->meta);
	free(m->chunks);
	sigset_clear(&m->sigs);
	free(m->signed_bytes);
	free(m);
}

static bool charset_ok(const char *s, size_t n, const char *extra, bool upper)
{
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (upper && c >= 'A' && c <= 'Z'))
			continue;
		if (c && strchr(extra, c))
			continue;
		return false;
	}
	return true;
}

static int check_product(const char *s, size_t n, struct perr *err)
{
	if (n < 1 || n > MANIFEST_PRODUCT_MAX || !charset_ok(s, n, "._+:-", true))
		return perr_set(err, -EINVAL,
				"product must be 1..%u characters of A-Z a-z 0-9 . _ + : -", MANIFEST_PRODUCT_MAX);
	return 0;
}

static int check_version(const char *s, size_t n, struct perr *err)
{
	if (n < 1 || n > MANIFEST_VERSION_MAX || !text_is_clean(s, n))
		return perr_set(err, -EINVAL, "version must be 1..%u bytes of UTF-8 text without control characters",
				MANIFEST_VERSION_MAX);
	return 0;
}

static int check_payload(const char *s, size_t n, struct perr *err)
{
	if (n < 1 || n > MANIFEST_PAYLOAD_MAX || !charset_ok(s, n, "._-", false))
		return perr_set(err, -EINVAL, "payload type must be 1..%u characters of a-z 0-9 . _ -",
				MANIFEST_PAYLOAD_MAX);
	return 0;
}

static int check_meta_key(const char *s, size_t n, struct perr *err)
{
	if (n < 1 || n > MANIFEST_META_KEY_MAX || !charset_ok(s, n, "._-", true))
		return perr_set(err, -EINVAL, "metadata key must be 1..%u characters of A-Z a-z 0-9 . _ -",
				MANIFEST_META_KEY_MAX);
	return 0;
}

static int check_meta_value(const char *s, size_t n, struct perr *err)
{
	if (n > MANIFEST_META_VALUE_MAX || !text_is_clean(s, n))
		return perr_set(err, -EINVAL,
				"metadata value must be at most %u bytes of UTF-8 text without control characters",
				MANIFEST_META_VALUE_MAX);
	return 0;
}

static int key_cmp(const char *a, size_t an, const char *b, size_t bn)
{
	int c = memcmp(a, b, an < bn ? an : bn);

	if (c)
		return c;
	return an < bn ? -1 : an > bn;
}

static int replace_str(char **dst, const char *s, size_t n)
{
	char *p = strndup(s, n);

	if (!p)
		return -ENOMEM;
	free(*dst);
	*dst = p;
	return 0;
}

int manifest_set_strings(struct manifest *m, const char *product, const char *version,
			 const char *payload_type, struct perr *err)
{
	int k;

	if ((k = check_product(product, strlen(product), err)) < 0 ||
	    (k = check_version(version, strlen(version), err)) < 0 ||
	    (k = check_payload(payload_type, strlen(payload_type), err)) < 0)
		return k;
	if (replace_str(&m->product, product, strlen(product)) < 0 ||
	    replace_str(&m->version, version, strlen(version)) < 0 ||
	    replace_str(&m->payload_type, payload_type, strlen(payload_type)) < 0)
		return perr_set(err, -ENOMEM, "out of memory");
	return 0;
}

int manifest_add_meta(struct manifest *m, const char *key, const char *value, struct perr *err)
{
	size_t kn = strlen(key), vn = strlen(value), at;
	struct manifest_meta *p;
	int k;

	if ((k = check_meta_key(key, kn, err)) < 0 || (k = check_meta_value(value, vn, err)) < 0)
		return k;
	for (at = 0; at < m->n_meta; at++) {
		int c = key_cmp(key, kn, m->meta[at].key, strlen(m->meta[at].key));

		if (c == 0)
			return perr_set(err, -EEXIST, "metadata key '%s' given twice", key);
		if (c < 0)
			break;
	}
	if (m->n_meta >= MANIFEST_MAX_META)
		return perr_set(err, -E2BIG, "more than %u metadata entries", MANIFEST_MAX_META);
	p = realloc(m->meta, (m->n_meta + 1) * sizeof(*p));
	if (!p)
		return perr_set(err, -ENOMEM, "out of memory");
	m->meta = p;
	{
		char *kd = strdup(key), *vd = strdup(value);

		if (!kd || !vd) {
			free(kd);
			free(vd);
			return perr_set(err, -ENOMEM, "out of memory");
		}
		memmove(p + at + 1, p + at, (m->n_meta - at) * sizeof(*p));
		p[at] = (struct manifest_meta){ kd, vd };
		m->n_meta++;
	}
	return 0;
}

int manifest_add_chunk(struct manifest *m, const uint8_t id[HASH_SIZE], uint32_t len, struct perr *err)
{
	struct manifest_chunk *c;
	size_t cap;

	if (m->n_chunks >= MANIFEST_MAX_CHUNKS)
		return perr_set(err, -E2BIG, "image needs more than %u chunks; use a larger chunk size",
				MANIFEST_MAX_CHUNKS);
	if (m->n_chunks == m->chunks_cap) {
		cap = m->chunks_cap < 64 ? 64 : m->chunks_cap * 2;
		c = realloc(m->chunks, cap * sizeof(*c));
		if (!c)
			return perr_set(err, -ENOMEM, "out of memory");
		m->chunks = c;
		m->chunks_cap = cap;
	}
	c = &m->chunks[m->n_chunks];
	memcpy(c->id, id, HASH_SIZE);
	c->len = len;
	c->offset = m->n_chunks ? m->chunks[m->n_chunks - 1].offset + m->chunks[m->n_chunks - 1].len : 0;
	m->n_chunks++;
	return 0;
}

/* The rules that tie fields together, shared by seal (before signing) and
 * parse (after reading), so a manifest we write is one we would accept. */
static int check_consistency(const struct manifest *m, struct perr *err)
{
	uint64_t sum = 0;
	int k;

	if ((k = chunker_params_check(&m->chunking, err)) < 0)
		return perr_prefix(err, -EBADMSG, "chunker parameters: ");
	if (m->image_size == 0)
		return perr_set(err, -EBADMSG, "image size is zero");
	if (m->n_chunks == 0)
		return perr_set(err, -EBADMSG, "chunk table is empty");
	if (m->expires && m->expires <= m->created)
		return perr_set(err, -EBADMSG, "expiry %" PRIu64 " is not after creation %" PRIu64,
				m->expires, m->created);
	for (size_t i = 0; i < m->n_chunks; i++) {
		uint32_t len = m->chunks[i].len;

		if (len == 0 || len > m->chunking.max)
			return perr_set(err, -EBADMSG, "chunk %zu has length %u, outside 1..%u", i, len,
					m->chunking.max);
		if (len < m->chunking.min && i + 1 < m->n_chunks)
			return perr_set(err, -EBADMSG,
					"chunk %zu has length %u, below the minimum %u, and is not the last",
					i, len, m->chunking.min);
		if (!add_u64(sum, len, &sum))
			return perr_set(err, -EBADMSG, "chunk lengths overflow");
	}
	if (sum != m->image_size)
		return perr_set(err, -EBADMSG, "chunk lengths add up to %" PRIu64 " bytes, image size says %" PRIu64,
				sum, m->image_size);
	return 0;
}

int manifest_seal(struct manifest *m, struct perr *err)
{
	_cleanup_(wbuf_free) struct wbuf w = { 0 };
	size_t at;
	int k;

	if (!m->product || !m->version || !m->payload_type)
		return perr_set(err, -EINVAL, "product, version and payload type must be set");
	if ((k = check_consistency(m, err)) < 0)
		return k;

	wbuf_put(&w, MANIFEST_MAGIC, 8);
	wbuf_u32(&w, MANIFEST_FORMAT);
	at = wbuf_reserve(&w, 4);
	wbuf_str(&w, m->product);
	wbuf_str(&w, m->version);
	wbuf_u64(&w, m->counter);
	wbuf_u64(&w, m->created);
	wbuf_u64(&w, m->expires);
	wbuf_str(&w, m->payload_type);
	wbuf_u64(&w, m->image_size);
	wbuf_put(&w, m->image_hash, HASH_SIZE);
	wbuf_u32(&w, m->chunking.min);
	wbuf_u32(&w, m->chunking.avg);
	wbuf_u32(&w, m->chunking.max);
	wbuf_u16(&w, (uint16_t)m->n_meta);
	for (size_t i = 0; i < m->n_meta; i++) {
		wbuf_str(&w, m->meta[i].key);
		wbuf_str(&w, m->meta[i].value);
	}
	wbuf_u32(&w, (uint32_t)m->n_chunks);
	for (size_t i = 0; i < m->n_chunks; i++) {
		wbuf_put(&w, m->chunks[i].id, HASH_SIZE);
		wbuf_u32(&w, m->chunks[i].len);
	}
	if (w.err)
		return perr_set(err, w.err, "out of memory encoding the manifest");
	if (w.len + 1 + SIGSET_MAX * (PUBKEY_SIZE + SIG_SIZE) > MANIFEST_MAX_SIZE)
		return perr_set(err, -E2BIG, "manifest would exceed %u bytes", MANIFEST_MAX_SIZE);
	wr_le32(w.p + at, (uint32_t)(w.len - MANIFEST_HEADER_SIZE));

	free(m->signed_bytes);
	m->signed_bytes = wbuf_steal(&w, &m->signed_len);
	sigset_clear(&m->sigs);
	return 0;
}

int manifest_sign(struct manifest *m, const uint8_t sk[SECKEY_SIZE], struct perr *err)
{
	if (!m->signed_bytes)
		return perr_set(err, -EINVAL, "manifest must be sealed before signing");
	return sigset_sign(&m->sigs, MANIFEST_SIG_DOMAIN, m->signed_bytes, m->signed_len, sk, err);
}

int manifest_format(const struct manifest *m, uint8_t **ret, size_t *ret_len, struct perr *err)
{
	_cleanup_(wbuf_free) struct wbuf w = { 0 };

	if (!m->signed_bytes)
		return perr_set(err, -EINVAL, "manifest must be sealed before it is written");
	wbuf_put(&w, m->signed_bytes, m->signed_len);
	if (sigset_format(&m->sigs, &w) < 0)
		return perr_set(err, w.err, "out of memory");
	*ret = wbuf_steal(&w, ret_len);
	return 0;
}

static int rd_checked_str(struct rd *r, size_t min, size_t max,
			  int (*check)(const char *, size_t, struct perr *), char **ret, const char *what)
{
	const char *s;
	size_t n;
	int k;

	k = rd_str(r, min, max, &s, &n, what);
	if (k < 0)
		return k;
	k = check(s, n, r->err);
	if (k < 0)
		return perr_prefix(r->err, -EBADMSG, "%s at byte %zu: ", what, r->base + r->off - n - 2);
	*ret = strndup(s, n);
	if (!*ret)
		return perr_set(r->err, -ENOMEM, "out of memory");
	return 0;
}

static int parse_body(struct rd *r, struct manifest *m)
{
	const uint8_t *p;
	uint16_t n_meta;
	uint32_t n_chunks;
	int k;

	if ((k = rd_checked_str(r, 1, MANIFEST_PRODUCT_MAX, check_product, &m->product, "product")) < 0 ||
	    (k = rd_checked_str(r, 1, MANIFEST_VERSION_MAX, check_version, &m->version, "version")) < 0 ||
	    (k = rd_u64(r, &m->counter, "release counter")) < 0 ||
	    (k = rd_u64(r, &m->created, "creation time")) < 0 ||
	    (k = rd_u64(r, &m->expires, "expiry time")) < 0 ||
	    (k = rd_checked_str(r, 1, MANIFEST_PAYLOAD_MAX, check_payload, &m->payload_type, "payload type")) < 0 ||
	    (k = rd_u64(r, &m->image_size, "image size")) < 0 ||
	    (k = rd_bytes(r, HASH_SIZE, &p, "image hash")) < 0)
		return k;
	memcpy(m->image_hash, p, HASH_SIZE);
	if ((k = rd_u32(r, &m->chunking.min, "chunk minimum")) < 0 ||
	    (k = rd_u32(r, &m->chunking.avg, "chunk average")) < 0 ||
	    (k = rd_u32(r, &m->chunking.max, "chunk maximum")) < 0 ||
	    (k = rd_u16(r, &n_meta, "metadata count")) < 0)
		return k;

	if (n_meta > MANIFEST_MAX_META)
		return perr_set(r->err, -EBADMSG, "metadata count %u exceeds %u", n_meta, MANIFEST_MAX_META);
	/* each entry takes at least 5 bytes: never allocate for what is not there */
	if ((size_t)n_meta * 5 > rd_left(r))
		return perr_set(r->err, -EBADMSG, "metadata count %u does not fit in the %zu bytes left",
				n_meta, rd_left(r));
	m->meta = calloc(n_meta ? n_meta : 1, sizeof(*m->meta));
	if (!m->meta)
		return perr_set(r->err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < n_meta; i++) {
		struct manifest_meta *e = &m->meta[i];

		if ((k = rd_checked_str(r, 1, MANIFEST_META_KEY_MAX, check_meta_key, &e->key, "metadata key")) < 0)
			return k;
		m->n_meta++;
		if ((k = rd_checked_str(r, 0, MANIFEST_META_VALUE_MAX, check_meta_value, &e->value, "metadata value")) < 0)
			return k;
		if (i > 0 && strcmp(m->meta[i - 1].key, e->key) >= 0)
			return perr_set(r->err, -EBADMSG, "metadata key '%s' is duplicated or out of order", e->key);
	}

	if ((k = rd_u32(r, &n_chunks, "chunk count")) < 0)
		return k;
	if (n_chunks > MANIFEST_MAX_CHUNKS)
		return perr_set(r->err, -EBADMSG, "chunk count %u exceeds %u", n_chunks, MANIFEST_MAX_CHUNKS);
	if ((uint64_t)n_chunks * (HASH_SIZE + 4) != rd_left(r))
		return perr_set(r->err, -EBADMSG, "chunk count %u needs %llu bytes, the body has %zu left",
				n_chunks, (unsigned long long)n_chunks * (HASH_SIZE + 4), rd_left(r));
	m->chunks = malloc((n_chunks ? n_chunks : 1) * sizeof(*m->chunks));
	if (!m->chunks)
		return perr_set(r->err, -ENOMEM, "out of memory");
	m->chunks_cap = n_chunks;
	for (uint64_t off = 0; m->n_chunks < n_chunks; m->n_chunks++) {
		struct manifest_chunk *c = &m->chunks[m->n_chunks];

		if ((k = rd_bytes(r, HASH_SIZE, &p, "chunk id")) < 0 || (k = rd_u32(r, &c->len, "chunk length")) < 0)
			return k;
		memcpy(c->id, p, HASH_SIZE);
		c->offset = off;
		off += c->len; /* cannot overflow: at most 2^20 * 2^32 */
	}
	return check_consistency(m, r->err);
}

int manifest_parse(const uint8_t *buf, size_t len, struct manifest **ret, struct perr *err)
{
	_cleanup_(manifest_freep) struct manifest *m = NULL;
	const uint8_t *magic;
	uint32_t format, body_len;
	struct rd r, body;
	int k;

	if (len > MANIFEST_MAX_SIZE)
		return perr_set(err, -EFBIG, "manifest is %zu bytes, the limit is %u", len, MANIFEST_MAX_SIZE);
	rd_init(&r, buf, len, err);
	if ((k = rd_bytes(&r, 8, &magic, "magic")) < 0)
		return k;
	if (memcmp(magic, MANIFEST_MAGIC, 8) != 0)
		return perr_set(err, -EBADMSG, "not a shoal manifest (bad magic)");
	if ((k = rd_u32(&r, &format, "format version")) < 0)
		return k;
	if (format != MANIFEST_FORMAT)
		return perr_set(err, -EPROTONOSUPPORT, "manifest format %u is not supported (this build reads %u)",
				format, MANIFEST_FORMAT);
	if ((k = rd_u32(&r, &body_len, "body length")) < 0)
		return k;
	if (body_len > rd_left(&r))
		return perr_set(err, -EBADMSG, "body length %u exceeds the %zu bytes left", body_len, rd_left(&r));

	m = calloc(1, sizeof(*m));
	if (!m)
		return perr_set(err, -ENOMEM, "out of memory");
	rd_init_at(&body, buf + r.off, body_len, r.off, err);
	if ((k = parse_body(&body, m)) < 0)
		return k;
	r.off += body_len;

	if ((k = sigset_parse(&r, &m->sigs)) < 0)
		return k;

	m->signed_len = MANIFEST_HEADER_SIZE + body_len;
	m->signed_bytes = malloc(m->signed_len);
	if (!m->signed_bytes)
		return perr_set(err, -ENOMEM, "out of memory");
	memcpy(m->signed_bytes, buf, m->signed_len);
	*ret = TAKE_PTR(m);
	return 0;
}

static int id_cmp(const void *a, const void *b)
{
	return memcmp(a, b, HASH_SIZE);
}

size_t manifest_unique_chunks(const struct manifest *m)
{
	_cleanup_(freep) uint8_t *ids = NULL;
	size_t n = 0;

	if (m->n_chunks == 0)
		return 0;
	ids = malloc(m->n_chunks * HASH_SIZE);
	if (!ids)
		return m->n_chunks;
	for (size_t i = 0; i < m->n_chunks; i++)
		memcpy(ids + i * HASH_SIZE, m->chunks[i].id, HASH_SIZE);
	qsort(ids, m->n_chunks, HASH_SIZE, id_cmp);
	for (size_t i = 0; i < m->n_chunks; i++)
		if (i == 0 || memcmp(ids + i * HASH_SIZE, ids + (i - 1) * HASH_SIZE, HASH_SIZE))
			n++;
	return n;
}
