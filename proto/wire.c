/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "wire.h"

static const char *const type_names[] = {
	[MSG_IDENT] = "IDENT",
	[MSG_HELLO] = "HELLO",
	[MSG_RELEASES] = "RELEASES",
	[MSG_GET_MANIFEST] = "GET_MANIFEST",
	[MSG_MANIFEST_PART] = "MANIFEST_PART",
	[MSG_GET_KEYRING] = "GET_KEYRING",
	[MSG_KEYRING] = "KEYRING",
	[MSG_BITFIELD] = "BITFIELD",
	[MSG_HAVE] = "HAVE",
	[MSG_REQUEST] = "REQUEST",
	[MSG_CHUNK] = "CHUNK",
	[MSG_NOT_FOUND] = "NOT_FOUND",
	[MSG_CANCEL] = "CANCEL",
	[MSG_REPORT] = "REPORT",
	[MSG_COMMAND] = "COMMAND",
	[MSG_PING] = "PING",
	[MSG_PONG] = "PONG",
	[MSG_GOODBYE] = "GOODBYE",
};

const char *msg_type_name(unsigned type)
{
	if (type < MSG_TYPE_FIRST || type > MSG_TYPE_LAST)
		return NULL;
	return type_names[type];
}

/* The manifest's product alphabet: a HELLO product that could never equal a
 * manifest's is malformed, not merely unknown. */
bool wire_product_ok(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
			continue;
		if (c && strchr("._+:-", c))
			continue;
		return false;
	}
	return true;
}

int wire_rd_id(struct rd *r, uint8_t ret[HASH_SIZE], const char *what)
{
	const uint8_t *p;
	int k = rd_bytes(r, HASH_SIZE, &p, what);

	if (k < 0)
		return k;
	memcpy(ret, p, HASH_SIZE);
	return 0;
}

/* The rest of the payload as a byte run of min..max bytes. */
static int rd_rest(struct rd *r, size_t min, size_t max, const uint8_t **ret, size_t *ret_len, const char *what)
{
	size_t n = rd_left(r);

	if (n < min || n > max)
		return perr_set(r->err, -EBADMSG, "%s at byte %zu has length %zu, allowed %zu..%zu", what,
				r->base + r->off, n, min, max);
	*ret = r->p + r->off;
	*ret_len = n;
	r->off += n;
	return 0;
}

static int dec_ident(struct rd *r, struct msg_ident *m)
{
	const uint8_t *p;
	int k;

	k = rd_bytes(r, PUBKEY_SIZE, &p, "public key");
	if (k < 0)
		return k;
	memcpy(m->pub, p, PUBKEY_SIZE);
	k = rd_bytes(r, SIG_SIZE, &p, "signature");
	if (k < 0)
		return k;
	memcpy(m->sig, p, SIG_SIZE);
	return 0;
}

static int dec_hello(struct rd *r, struct msg_hello *m)
{
	size_t at;
	int k;

	if ((k = rd_u16(r, &m->version, "protocol version")) < 0)
		return k;
	if (m->version < 1)
		return perr_set(r->err, -EBADMSG, "protocol version 0 does not exist");
	at = r->base + r->off;
	if ((k = rd_u8(r, &m->role, "role")) < 0)
		return k;
	if (m->role > HELLO_ROLE_GATEWAY)
		return perr_set(r->err, -EBADMSG, "role at byte %zu is %u, allowed 0 (device) or 1 (gateway)", at,
				m->role);
	if ((k = rd_u16(r, &m->port, "listen port")) < 0 || (k = rd_u32(r, &m->load, "load")) < 0)
		return k;
	at = r->base + r->off;
	if ((k = rd_str(r, 1, WIRE_PRODUCT_MAX, &m->product, &m->product_len, "product")) < 0)
		return k;
	if (!wire_product_ok(m->product, m->product_len))
		return perr_set(r->err, -EBADMSG, "product at byte %zu is not made of A-Z a-z 0-9 . _ + : -", at);
	at = r->base + r->off;
	if ((k = rd_str(r, 0, WIRE_NAME_MAX, &m->name, &m->name_len, "name")) < 0)
		return k;
	if (!text_is_clean(m->name, m->name_len))
		return perr_set(r->err, -EBADMSG, "name at byte %zu is not UTF-8 text without control characters", at);
	return 0;
}

static int dec_releases(struct rd *r, struct msg_releases *m)
{
	int k;

	if ((k = rd_u16(r, &m->n, "release count")) < 0)
		return k;
	if (m->n > WIRE_RELEASES_MAX)
		return perr_set(r->err, -EBADMSG, "release count %u exceeds %u", m->n, WIRE_RELEASES_MAX);
	for (size_t i = 0; i < m->n; i++) {
		struct release_info *e = &m->v[i];

		if ((k = wire_rd_id(r, e->id, "release id")) < 0 || (k = rd_u64(r, &e->counter, "release counter")) < 0 ||
		    (k = rd_u32(r, &e->held, "chunks held")) < 0 || (k = rd_u32(r, &e->total, "chunks total")) < 0)
			return k;
		if (e->total < 1 || e->total > MANIFEST_MAX_CHUNKS)
			return perr_set(r->err, -EBADMSG, "release %zu: chunks total %" PRIu32 ", allowed 1..%u", i,
					e->total, MANIFEST_MAX_CHUNKS);
		if (e->held > e->total)
			return perr_set(r->err, -EBADMSG, "release %zu: chunks held %" PRIu32 " exceeds total %" PRIu32,
					i, e->held, e->total);
	}
	return 0;
}

static int dec_get_manifest(struct rd *r, struct msg_get_manifest *m)
{
	int k;

	if ((k = wire_rd_id(r, m->id, "release id")) < 0 || (k = rd_u32(r, &m->offset, "offset")) < 0)
		return k;
	if (m->offset >= WIRE_MANIFEST_TOTAL_MAX)
		return perr_set(r->err, -EBADMSG, "offset %" PRIu32 " is past the largest manifest (%u bytes)",
				m->offset, WIRE_MANIFEST_TOTAL_MAX);
	return 0;
}

static int dec_manifest_part(struct rd *r, struct msg_manifest_part *m)
{
	int k;

	if ((k = wire_rd_id(r, m->id, "release id")) < 0 || (k = rd_u32(r, &m->total, "total length")) < 0)
		return k;
	if (m->total < 1 || m->total > WIRE_MANIFEST_TOTAL_MAX)
		return perr_set(r->err, -EBADMSG, "total length %" PRIu32 ", allowed 1..%u", m->total,
				WIRE_MANIFEST_TOTAL_MAX);
	if ((k = rd_u32(r, &m->offset, "offset")) < 0)
		return k;
	if ((k = rd_rest(r, 1, WIRE_MANIFEST_PART_MAX, &m->bytes, &m->len, "manifest bytes")) < 0)
		return k;
	/* both terms are bounded far below 2^32, but say it in 64 bits anyway */
	if ((uint64_t)m->offset + m->len > m->total)
		return perr_set(r->err, -EBADMSG,
				"manifest bytes %" PRIu32 "..%" PRIu64 " run past the total length %" PRIu32, m->offset,
				(uint64_t)m->offset + m->len, m->total);
	return 0;
}

static int dec_bitfield(struct rd *r, struct msg_bitfield *m)
{
	size_t nbytes;
	int k;

	if ((k = wire_rd_id(r, m->id, "release id")) < 0 || (k = rd_u32(r, &m->count, "chunk count")) < 0)
		return k;
	if (m->count < 1 || m->count > WIRE_BITFIELD_CHUNKS_MAX)
		return perr_set(r->err, -EBADMSG, "chunk count %" PRIu32 ", allowed 1..%u", m->count,
				WIRE_BITFIELD_CHUNKS_MAX);
	nbytes = (m->count + 7) / 8;
	if ((k = rd_bytes(r, nbytes, &m->bits, "bits")) < 0)
		return k;
	if (m->count % 8 && (m->bits[nbytes - 1] >> (m->count % 8)))
		return perr_set(r->err, -EBADMSG, "bits: unused high bits of the last byte (0x%02x) are set",
				m->bits[nbytes - 1]);
	return 0;
}

static int dec_have(struct rd *r, struct msg_have *m)
{
	int k;

	if ((k = wire_rd_id(r, m->id, "release id")) < 0 || (k = rd_u16(r, &m->n, "index count")) < 0)
		return k;
	if (m->n < 1 || m->n > WIRE_HAVE_MAX)
		return perr_set(r->err, -EBADMSG, "index count %u, allowed 1..%u", m->n, WIRE_HAVE_MAX);
	for (size_t i = 0; i < m->n; i++) {
		if ((k = rd_u32(r, &m->idx[i], "chunk index")) < 0)
			return k;
		if (m->idx[i] >= MANIFEST_MAX_CHUNKS)
			return perr_set(r->err, -EBADMSG, "chunk index %" PRIu32 " is beyond any manifest (%u chunks)",
					m->idx[i], MANIFEST_MAX_CHUNKS);
	}
	return 0;
}

static int dec_request(struct rd *r, struct msg_request *m)
{
	int k;

	if ((k = rd_u16(r, &m->n, "chunk id count")) < 0)
		return k;
	if (m->n < 1 || m->n > WIRE_REQUEST_MAX)
		return perr_set(r->err, -EBADMSG, "chunk id count %u, allowed 1..%u", m->n, WIRE_REQUEST_MAX);
	for (size_t i = 0; i < m->n; i++)
		if ((k = wire_rd_id(r, m->ids[i], "chunk id")) < 0)
			return k;
	return 0;
}

static int dec_chunk(struct rd *r, struct msg_chunk *m)
{
	size_t at;
	int k;

	if ((k = wire_rd_id(r, m->id, "chunk id")) < 0)
		return k;
	at = r->base + r->off;
	if ((k = rd_u8(r, &m->enc, "encoding")) < 0)
		return k;
	if (m->enc > 1)
		return perr_set(r->err, -EBADMSG, "encoding at byte %zu is %u, allowed 0 (plain) or 1 (zstd)", at,
				m->enc);
	if ((k = rd_u32(r, &m->plain_len, "plain length")) < 0)
		return k;
	if (m->plain_len < 1 || m->plain_len > WIRE_CHUNK_MAX)
		return perr_set(r->err, -EBADMSG, "plain length %" PRIu32 ", allowed 1..%u", m->plain_len,
				WIRE_CHUNK_MAX);
	if (m->enc == 0)
		return rd_rest(r, m->plain_len, m->plain_len, &m->stored, &m->stored_len, "stored bytes (plain)");
	return rd_rest(r, 1, FRAME_MAX, &m->stored, &m->stored_len, "stored bytes (zstd)");
}

static int dec_goodbye(struct rd *r, struct msg_goodbye *m)
{
	size_t at = r->base + r->off;
	int k;

	if ((k = rd_u8(r, &m->reason, "reason")) < 0)
		return k;
	if (m->reason > GOODBYE_REASON_LAST)
		return perr_set(r->err, -EBADMSG, "reason at byte %zu is %u, allowed 0..%u", at, m->reason,
				GOODBYE_REASON_LAST);
	at = r->base + r->off;
	if ((k = rd_str(r, 0, WIRE_GOODBYE_TEXT_MAX, &m->text, &m->text_len, "text")) < 0)
		return k;
	if (!text_is_clean(m->text, m->text_len))
		return perr_set(r->err, -EBADMSG, "text at byte %zu is not UTF-8 text without control characters", at);
	return 0;
}

static int dec_payload(struct rd *r, struct msg *m)
{
	switch (m->type) {
	case MSG_IDENT:
		return dec_ident(r, &m->ident);
	case MSG_HELLO:
		return dec_hello(r, &m->hello);
	case MSG_RELEASES:
		return dec_releases(r, &m->releases);
	case MSG_GET_MANIFEST:
		return dec_get_manifest(r, &m->get_manifest);
	case MSG_MANIFEST_PART:
		return dec_manifest_part(r, &m->manifest_part);
	case MSG_GET_KEYRING:
		return rd_u64(r, &m->get_keyring.min_version, "lowest version");
	case MSG_KEYRING:
		return rd_rest(r, 1, WIRE_KEYRING_MAX, &m->keyring.bytes, &m->keyring.len, "keyring bytes");
	case MSG_BITFIELD:
		return dec_bitfield(r, &m->bitfield);
	case MSG_HAVE:
		return dec_have(r, &m->have);
	case MSG_REQUEST:
		return dec_request(r, &m->request);
	case MSG_CHUNK:
		return dec_chunk(r, &m->chunk);
	case MSG_NOT_FOUND:
		return wire_rd_id(r, m->not_found.id, "chunk id");
	case MSG_CANCEL:
		return wire_rd_id(r, m->cancel.id, "chunk id");
	case MSG_REPORT:
		return report_decode(r, &m->report);
	case MSG_COMMAND:
		return command_decode(r, &m->command);
	case MSG_PING:
		return rd_u64(r, &m->ping.nonce, "nonce");
	case MSG_PONG:
		return rd_u64(r, &m->pong.nonce, "nonce");
	case MSG_GOODBYE:
		return dec_goodbye(r, &m->goodbye);
	}
	return perr_set(r->err, -EBADMSG, "unknown message type");
}

int wire_decode(const uint8_t *p, size_t n, struct msg *ret, struct perr *err)
{
	struct msg m;
	struct rd r;
	const char *name;
	int k;

	if (n < 1)
		return perr_set(err, -EBADMSG, "empty frame: no message type");
	if (n > FRAME_MAX)
		return perr_set(err, -EBADMSG, "frame of %zu bytes exceeds %u", n, FRAME_MAX);
	name = msg_type_name(p[0]);
	if (!name)
		return perr_set(err, -EBADMSG, "unknown message type 0x%02x", p[0]);
	m.type = (enum msg_type)p[0];
	/* Offsets in messages count from the type byte, so that they are
	 * offsets into the frame plaintext. */
	rd_init_at(&r, p + 1, n - 1, 1, err);
	k = dec_payload(&r, &m);
	if (k < 0)
		return perr_prefix(err, k, "%s: ", name);
	if (rd_left(&r))
		return perr_set(err, -EBADMSG, "%s: %zu unexpected bytes after the payload, at byte %zu", name,
				rd_left(&r), r.base + r.off);
	*ret = m;
	return 0;
}

/* Writes the fields without judging them: wire_encode() runs the result
 * through wire_decode(), so that there is one definition of "valid". Only
 * what would make this function read out of bounds or lose bits is
 * refused here. */
static int enc_payload(const struct msg *m, struct wbuf *w)
{
	switch (m->type) {
	case MSG_IDENT:
		wbuf_put(w, m->ident.pub, PUBKEY_SIZE);
		return wbuf_put(w, m->ident.sig, SIG_SIZE);
	case MSG_HELLO:
		if (m->hello.product_len > UINT16_MAX || m->hello.name_len > UINT16_MAX)
			return -EINVAL;
		wbuf_u16(w, m->hello.version);
		wbuf_u8(w, m->hello.role);
		wbuf_u16(w, m->hello.port);
		wbuf_u32(w, m->hello.load);
		wbuf_u16(w, (uint16_t)m->hello.product_len);
		wbuf_put(w, m->hello.product, m->hello.product_len);
		wbuf_u16(w, (uint16_t)m->hello.name_len);
		return wbuf_put(w, m->hello.name, m->hello.name_len);
	case MSG_RELEASES:
		if (m->releases.n > WIRE_RELEASES_MAX)
			return -EINVAL;
		wbuf_u16(w, m->releases.n);
		for (size_t i = 0; i < m->releases.n; i++) {
			const struct release_info *e = &m->releases.v[i];

			wbuf_put(w, e->id, HASH_SIZE);
			wbuf_u64(w, e->counter);
			wbuf_u32(w, e->held);
			wbuf_u32(w, e->total);
		}
		return w->err;
	case MSG_GET_MANIFEST:
		wbuf_put(w, m->get_manifest.id, HASH_SIZE);
		return wbuf_u32(w, m->get_manifest.offset);
	case MSG_MANIFEST_PART:
		if (m->manifest_part.len > WIRE_MANIFEST_PART_MAX)
			return -EINVAL;
		wbuf_put(w, m->manifest_part.id, HASH_SIZE);
		wbuf_u32(w, m->manifest_part.total);
		wbuf_u32(w, m->manifest_part.offset);
		return wbuf_put(w, m->manifest_part.bytes, m->manifest_part.len);
	case MSG_GET_KEYRING:
		return wbuf_u64(w, m->get_keyring.min_version);
	case MSG_KEYRING:
		if (m->keyring.len > WIRE_KEYRING_MAX)
			return -EINVAL;
		return wbuf_put(w, m->keyring.bytes, m->keyring.len);
	case MSG_BITFIELD:
		if (m->bitfield.count > WIRE_BITFIELD_CHUNKS_MAX)
			return -EINVAL;
		wbuf_put(w, m->bitfield.id, HASH_SIZE);
		wbuf_u32(w, m->bitfield.count);
		return wbuf_put(w, m->bitfield.bits, (m->bitfield.count + 7) / 8);
	case MSG_HAVE:
		if (m->have.n > WIRE_HAVE_MAX)
			return -EINVAL;
		wbuf_put(w, m->have.id, HASH_SIZE);
		wbuf_u16(w, m->have.n);
		for (size_t i = 0; i < m->have.n; i++)
			wbuf_u32(w, m->have.idx[i]);
		return w->err;
	case MSG_REQUEST:
		if (m->request.n > WIRE_REQUEST_MAX)
			return -EINVAL;
		wbuf_u16(w, m->request.n);
		return wbuf_put(w, m->request.ids, (size_t)m->request.n * HASH_SIZE);
	case MSG_CHUNK:
		if (m->chunk.stored_len > FRAME_MAX)
			return -EINVAL;
		wbuf_put(w, m->chunk.id, HASH_SIZE);
		wbuf_u8(w, m->chunk.enc);
		wbuf_u32(w, m->chunk.plain_len);
		return wbuf_put(w, m->chunk.stored, m->chunk.stored_len);
	case MSG_NOT_FOUND:
		return wbuf_put(w, m->not_found.id, HASH_SIZE);
	case MSG_CANCEL:
		return wbuf_put(w, m->cancel.id, HASH_SIZE);
	case MSG_REPORT:
		return report_encode(&m->report, w);
	case MSG_COMMAND:
		return command_encode(&m->command, w);
	case MSG_PING:
		return wbuf_u64(w, m->ping.nonce);
	case MSG_PONG:
		return wbuf_u64(w, m->pong.nonce);
	case MSG_GOODBYE:
		if (m->goodbye.text_len > UINT16_MAX)
			return -EINVAL;
		wbuf_u8(w, m->goodbye.reason);
		wbuf_u16(w, (uint16_t)m->goodbye.text_len);
		return wbuf_put(w, m->goodbye.text, m->goodbye.text_len);
	}
	return -EINVAL;
}

int wire_encode(const struct msg *m, struct wbuf *w)
{
	size_t start = w->len;
	struct msg check;
	int k;

	if (w->err)
		return w->err;
	if (!msg_type_name((unsigned)m->type))
		return -EINVAL;
	wbuf_u8(w, (uint8_t)m->type);
	k = enc_payload(m, w);
	if (k == 0 && w->err)
		k = w->err;
	if (k == 0 && wire_decode(w->p + start, w->len - start, &check, NULL) < 0)
		k = -EINVAL;
	if (k < 0) {
		/* an -ENOMEM also stays in w->err, as for every wbuf writer */
		w->len = start;
		return k;
	}
	return 0;
}
