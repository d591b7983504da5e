/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "keyring.h"

struct keyring *keyring_new(void)
{
	struct keyring *kr = calloc(1, sizeof(*kr));

	if (kr) {
		kr->version = 1;
		kr->threshold = 1;
	}
	return kr;
}

void keyring_free(struct keyring *kr)
{
	if (!kr)
		return;
	for (size_t i = 0; i < kr->n_keys; i++)
		free(kr->keys[i].name);
	free(kr->keys);
	sigset_clear(&kr->sigs);
	free(kr->signed_bytes);
	free(kr);
}

static int check_key(const struct keyring_key *k, const char *name, size_t nlen, struct perr *err)
{
	char id[17];

	if (k->not_after && k->not_after <= k->not_before)
		return perr_set(err, -EBADMSG, "key %s: validity ends (%" PRIu64 ") before it starts (%" PRIu64 ")",
				key_short_id(k->pub, id), k->not_after, k->not_before);
	if (nlen > KEYRING_NAME_MAX || !text_is_clean(name, nlen))
		return perr_set(err, -EBADMSG, "key %s: name must be at most %u bytes of text",
				key_short_id(k->pub, id), KEYRING_NAME_MAX);
	return 0;
}

int keyring_add_key(struct keyring *kr, const uint8_t pub[PUBKEY_SIZE], uint64_t not_before,
		    uint64_t not_after, const char *name, struct perr *err)
{
	struct keyring_key key = { .not_before = not_before, .not_after = not_after }, *p;
	size_t at;
	int k;

	memcpy(key.pub, pub, PUBKEY_SIZE);
	if (!name)
		name = "";
	if ((k = check_key(&key, name, strlen(name), err)) < 0)
		return -EINVAL;
	for (at = 0; at < kr->n_keys; at++) {
		int c = memcmp(pub, kr->keys[at].pub, PUBKEY_SIZE);
		char id[17];

		if (c == 0)
			return perr_set(err, -EEXIST, "key %s is listed twice", key_short_id(pub, id));
		if (c < 0)
			break;
	}
	if (kr->n_keys >= KEYRING_MAX_KEYS)
		return perr_set(err, -E2BIG, "more than %u keys", KEYRING_MAX_KEYS);
	key.name = strdup(name);
	p = realloc(kr->keys, (kr->n_keys + 1) * sizeof(*p));
	if (!key.name || !p) {
		free(key.name);
		if (p)
			kr->keys = p;
		return perr_set(err, -ENOMEM, "out of memory");
	}
	memmove(p + at + 1, p + at, (kr->n_keys - at) * sizeof(*p));
	p[at] = key;
	kr->keys = p;
	kr->n_keys++;
	return 0;
}

static int check_consistency(const struct keyring *kr, struct perr *err)
{
	if (kr->version == 0)
		return perr_set(err, -EBADMSG, "keyring version must be at least 1");
	if (kr->expires && kr->expires <= kr->created)
		return perr_set(err, -EBADMSG, "keyring expiry is not after its creation");
	if (kr->n_keys == 0)
		return perr_set(err, -EBADMSG, "keyring lists no key");
	if (kr->threshold == 0 || kr->threshold > kr->n_keys)
		return perr_set(err, -EBADMSG, "threshold %u is outside 1..%zu (the number of keys)",
				kr->threshold, kr->n_keys);
	return 0;
}

int keyring_seal(struct keyring *kr, struct perr *err)
{
	_cleanup_(wbuf_free) struct wbuf w = { 0 };
	size_t at;
	int k;

	if ((k = check_consistency(kr, err)) < 0)
		return k;
	wbuf_put(&w, KEYRING_MAGIC, 8);
	wbuf_u32(&w, KEYRING_FORMAT);
	at = wbuf_reserve(&w, 4);
	wbuf_u64(&w, kr->version);
	wbuf_u64(&w, kr->created);
	wbuf_u64(&w, kr->expires);
	wbuf_u8(&w, kr->threshold);
	wbuf_u16(&w, (uint16_t)kr->n_keys);
	for (size_t i = 0; i < kr->n_keys; i++) {
		wbuf_put(&w, kr->keys[i].pub, PUBKEY_SIZE);
		wbuf_u64(&w, kr->keys[i].not_before);
		wbuf_u64(&w, kr->keys[i].not_after);
		wbuf_str(&w, kr->keys[i].name);
	}
	if (w.err)
		return perr_set(err, w.err, "out of memory");
	wr_le32(w.p + at, (uint32_t)(w.len - KEYRING_HEADER_SIZE));
	free(kr->signed_bytes);
	kr->signed_bytes = wbuf_steal(&w, &kr->signed_len);
	sigset_clear(&kr->sigs);
	return 0;
}

int keyring_sign(struct keyring *kr, const uint8_t sk[SECKEY_SIZE], struct perr *err)
{
	if (!kr->signed_bytes)
		return perr_set(err, -EINVAL, "keyring must be sealed before signing");
	return sigset_sign(&kr->sigs, KEYRING_SIG_DOMAIN, kr->signed_bytes, kr->signed_len, sk, err);
}

int keyring_format(const struct keyring *kr, uint8_t **ret, size_t *ret_len, struct perr *err)
{
	_cleanup_(wbuf_free) struct wbuf w = { 0 };

	if (!kr->signed_bytes)
		return perr_set(err, -EINVAL, "keyring must be sealed before it is written");
	wbuf_put(&w, kr->signed_bytes, kr->signed_len);
	if (sigset_format(&kr->sigs, &w) < 0)
		return perr_set(err, w.err, "out of memory");
	*ret = wbuf_steal(&w, ret_len);
	return 0;
}

static int parse_body(struct rd *r, struct keyring *kr)
{
	uint16_t n;
	int k;

	if ((k = rd_u64(r, &kr->version, "keyring version")) < 0 ||
	    (k = rd_u64(r, &kr->created, "creation time")) < 0 ||
	    (k = rd_u64(r, &kr->expires, "expiry time")) < 0 ||
	    (k = rd_u8(r, &kr->threshold, "threshold")) < 0 ||
	    (k = rd_u16(r, &n, "key count")) < 0)
		return k;
	if (n > KEYRING_MAX_KEYS)
		return perr_set(r->err, -EBADMSG, "key count %u exceeds %u", n, KEYRING_MAX_KEYS);
	if ((size_t)n * (PUBKEY_SIZE + 18) > rd_left(r))
		return perr_set(r->err, -EBADMSG, "key count %u does not fit in the %zu bytes left", n, rd_left(r));
	kr->keys = calloc(n ? n : 1, sizeof(*kr->keys));
	if (!kr->keys)
		return perr_set(r->err, -ENOMEM, "out of memory");
	for (; kr->n_keys < n; kr->n_keys++) {
		struct keyring_key *e = &kr->keys[kr->n_keys];
		const uint8_t *pub;
		const char *name;
		size_t nlen;
		char id[17];

		if ((k = rd_bytes(r, PUBKEY_SIZE, &pub, "key")) < 0 ||
		    (k = rd_u64(r, &e->not_before, "key validity start")) < 0 ||
		    (k = rd_u64(r, &e->not_after, "key validity end")) < 0 ||
		    (k = rd_str(r, 0, KEYRING_NAME_MAX, &name, &nlen, "key name")) < 0)
			return k;
		memcpy(e->pub, pub, PUBKEY_SIZE);
		if ((k = check_key(e, name, nlen, r->err)) < 0)
			return k;
		if (kr->n_keys > 0 && memcmp(kr->keys[kr->n_keys - 1].pub, e->pub, PUBKEY_SIZE) >= 0)
			return perr_set(r->err, -EBADMSG, "key %s is duplicated or out of order",
					key_short_id(e->pub, id));
		e->name = strndup(name, nlen);
		if (!e->name)
			return perr_set(r->err, -ENOMEM, "out of memory");
	}
	if (rd_left(r))
		return perr_set(r->err, -EBADMSG, "%zu unexpected bytes after the last key", rd_left(r));
	return check_consistency(kr, r->err);
}

int keyring_parse(const uint8_t *buf, size_t len, struct keyring **ret, struct perr *err)
{
	_cleanup_(keyring_freep) struct keyring *kr = NULL;
	const uint8_t *magic;
	uint32_t format, body_len;
	struct rd r, body;
	int k;

	if (len > KEYRING_MAX_SIZE)
		return perr_set(err, -EFBIG, "keyring is %zu bytes, the limit is %zu", len, (size_t)KEYRING_MAX_SIZE);
	rd_init(&r, buf, len, err);
	if ((k = rd_bytes(&r, 8, &magic, "magic")) < 0)
		return k;
	if (memcmp(magic, KEYRING_MAGIC, 8) != 0)
		return perr_set(err, -EBADMSG, "not a shoal keyring (bad magic)");
	if ((k = rd_u32(&r, &format, "format version")) < 0)
		return k;
	if (format != KEYRING_FORMAT)
		return perr_set(err, -EPROTONOSUPPORT, "keyring format %u is not supported (this build reads %u)",
				format, KEYRING_FORMAT);
	if ((k = rd_u32(&r, &body_len, "body length")) < 0)
		return k;
	if (body_len > rd_left(&r))
		return perr_set(err, -EBADMSG, "body length %u exceeds the %zu bytes left", body_len, rd_left(&r));
	kr = calloc(1, sizeof(*kr));
	if (!kr)
		return perr_set(err, -ENOMEM, "out of memory");
	rd_init_at(&body, buf + r.off, body_len, r.off, err);
	if ((k = parse_body(&body, kr)) < 0)
		return k;
	r.off += body_len;
	if ((k = sigset_parse(&r, &kr->sigs)) < 0)
		return k;
	kr->signed_len = KEYRING_HEADER_SIZE + body_len;
	kr->signed_bytes = malloc(kr->signed_len);
	if (!kr->signed_bytes)
		return perr_set(err, -ENOMEM, "out of memory");
	memcpy(kr->signed_bytes, buf, kr->signed_len);
	*ret = TAKE_PTR(kr);
	return 0;
}

const struct keyring_key *keyring_find(const struct keyring *kr, const uint8_t pub[PUBKEY_SIZE])
{
	for (size_t i = 0; i < kr->n_keys; i++)
		if (memcmp(kr->keys[i].pub, pub, PUBKEY_SIZE) == 0)
			return &kr->keys[i];
	return NULL;
}
