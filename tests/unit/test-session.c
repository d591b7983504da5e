/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The peer session (proto/session.h): handshake, framing, encryption.
 *
 * Two sessions are wired back to back through byte queues (what one sends,
 * the other is fed), and talk through a fixed conversation script. With
 * seeded ephemeral keys the whole exchange is deterministic, so it is
 * recorded once and then replayed into fresh sessions whole, byte by byte,
 * split at every point, and with every byte altered. A second, hand-made
 * implementation of the handshake (`struct ref`, straight from
 * docs/protocol.md with raw libsodium calls) checks the session's bytes
 * against the spec and plays the misbehaving peer.
 *
 *   test-session CORPUS-DIR              run the tests; CORPUS-DIR is
 *                                        tests/fuzz/corpus/handshake, whose
 *                                        recorded transcripts must still be
 *                                        the ones this binary makes
 *   test-session --write-corpus DIR      (re)write those seeds and exit */
#include <stdio.h>

#include "chunk.h"
#include "helpers.h"
#include "session.h"
#include "wire.h"

/* The fixed keys of the recorded transcripts. tests/fuzz/fuzz-handshake.c
 * uses the same fleet key and ephemeral seeds (it has to, for the recorded
 * transcripts to get past the handshake there): change them together, then
 * rewrite the corpus. */
#define HS_FLEET "shoal handshake test fleet key.!"
#define HS_FLEET_WRONG "shoal handshake other fleet key!"
#define HS_SEED_I "shoal handshake initiator eph..!"
#define HS_SEED_R "shoal handshake responder eph..!"
#define HS_DEVICE_A "shoal handshake device A key...!"
#define HS_DEVICE_B "shoal handshake device B key...!"

_Static_assert(sizeof(HS_FLEET) - 1 == 32 && sizeof(HS_FLEET_WRONG) - 1 == 32, "key size");
_Static_assert(sizeof(HS_SEED_I) - 1 == 32 && sizeof(HS_SEED_R) - 1 == 32, "seed size");
_Static_assert(sizeof(HS_DEVICE_A) - 1 == 32 && sizeof(HS_DEVICE_B) - 1 == 32, "seed size");

#define U8(s) ((const uint8_t *)(s))

/* The size of the IDENT frame on the wire, and where the initiator's
 * transcript has its first frame after IDENT. */
#define IDENT_WIRE (4 + FRAME_ABYTES + 1 + PUBKEY_SIZE + SIG_SIZE)
#define AFTER_IDENT (SESSION_HS_SIZE + SESSION_HEADER_SIZE + IDENT_WIRE)

static struct test_key dev_a, dev_b;
static const char *corpus_dir;

/* --- byte buffers ------------------------------------------------------------ */

struct blob {
	uint8_t *p;
	size_t n;
	size_t cap;
};

static void blob_put(struct blob *b, const void *p, size_t n)
{
	if (b->cap - b->n < n) {
		size_t cap = b->cap ? b->cap : 256;

		while (cap - b->n < n)
			cap *= 2;
		b->p = realloc(b->p, cap);
		assert_non_null(b->p);
		b->cap = cap;
	}
	if (n)
		memcpy(b->p + b->n, p, n);
	b->n += n;
}

static void blob_free(struct blob *b)
{
	free(b->p);
	*b = (struct blob){ 0 };
}

static bool blob_eq(const struct blob *a, const uint8_t *p, size_t n)
{
	return a->n == n && (n == 0 || memcmp(a->p, p, n) == 0);
}

/* --- an endpoint: one session and what it did ------------------------------- */

#define FRAMES_MAX 64

struct ep {
	struct session *s;
	bool initiator;
	bool script; /* run the conversation below */
	struct blob out; /* everything it sent */
	size_t delivered; /* of out, fed to the peer so far */
	unsigned sends;
	unsigned n_established;
	uint8_t peer_pub[PUBKEY_SIZE];
	struct blob frames[FRAMES_MAX];
	size_t n_frames;
	int feed_rc; /* the first error feeding it returned */
	/* what the callbacks return when the script does not decide */
	int send_rc, established_rc, frame_rc;
	bool send_in_frame; /* on_frame calls session_send (PONG) and returns 0 */
};

static int send_msg(struct ep *e, const struct msg *m)
{
	struct wbuf w = { 0 };
	int k;

	assert_int_equal(wire_encode(m, &w), 0);
	k = session_send(e->s, w.p, w.len, m->type == MSG_GOODBYE);
	wbuf_free(&w);
	return k;
}

static const uint8_t manifest_bytes[100] = { 1, 2, 3 };
static const uint8_t chunk_bytes[200] = { 4, 5, 6 };

static void id_of(uint8_t b, uint8_t id[HASH_SIZE])
{
	memset(id, b, HASH_SIZE);
}

/* The conversation: every message a device and a gateway exchange in a
 * short update, each sent in answer to the one before, so that both
 * transcripts depend only on the keys. */
static int script_established(struct ep *e)
{
	struct msg m = { .type = MSG_HELLO };
	int k;

	m.hello = (struct msg_hello){ .version = WIRE_VERSION, .role = e->initiator ? 0 : 1, .port = 7441,
				      .product = "shoal-test", .product_len = 10,
				      .name = e->initiator ? "device-a" : "gateway-b", .name_len = e->initiator ? 8 : 9 };
	if ((k = send_msg(e, &m)) < 0 || !e->initiator)
		return k;
	m = (struct msg){ .type = MSG_RELEASES, .releases.n = 2 };
	m.releases.v[0] = (struct release_info){ .counter = 41, .held = 10, .total = 10 };
	id_of(0x11, m.releases.v[0].id);
	m.releases.v[1] = (struct release_info){ .counter = 42, .held = 0, .total = 12 };
	id_of(0x12, m.releases.v[1].id);
	if ((k = send_msg(e, &m)) < 0)
		return k;
	m = (struct msg){ .type = MSG_PING, .ping.nonce = 7 };
	return send_msg(e, &m);
}

static int script_frame(struct ep *e, const uint8_t *p, size_t n)
{
	struct perr err = { "" };
	struct msg in, m = { 0 };

	assert_int_equal(wire_decode(p, n, &in, &err), 0);
	switch (in.type) {
	case MSG_PING:
		m = (struct msg){ .type = MSG_PONG, .pong.nonce = in.ping.nonce };
		break;
	case MSG_PONG:
		m = (struct msg){ .type = MSG_GET_MANIFEST };
		id_of(0x12, m.get_manifest.id);
		break;
	case MSG_GET_MANIFEST:
		m = (struct msg){ .type = MSG_MANIFEST_PART,
				  .manifest_part = { .total = sizeof(manifest_bytes), .bytes = manifest_bytes,
						     .len = sizeof(manifest_bytes) } };
		memcpy(m.manifest_part.id, in.get_manifest.id, HASH_SIZE);
		break;
	case MSG_MANIFEST_PART:
		m = (struct msg){ .type = MSG_REQUEST, .request.n = 1 };
		id_of(0x21, m.request.ids[0]);
		break;
	case MSG_REQUEST:
		m = (struct msg){ .type = MSG_CHUNK,
				  .chunk = { .enc = 0, .plain_len = sizeof(chunk_bytes), .stored = chunk_bytes,
					     .stored_len = sizeof(chunk_bytes) } };
		memcpy(m.chunk.id, in.request.ids[0], HASH_SIZE);
		break;
	case MSG_CHUNK: {
		int k;

		m = (struct msg){ .type = MSG_HAVE, .have = { .n = 3, .idx = { 0, 5, 11 } } };
		id_of(0x12, m.have.id);
		if ((k = send_msg(e, &m)) < 0)
			return k;
		m = (struct msg){ .type = MSG_REPORT };
		fixture_report(&m.report);
		if ((k = send_msg(e, &m)) < 0)
			return k;
		m = (struct msg){ .type = MSG_GOODBYE, .goodbye = { .reason = GOODBYE_SHUTDOWN, .text = "done",
								    .text_len = 4 } };
		break;
	}
	case MSG_GOODBYE:
		if (e->initiator)
			return 0;
		m = (struct msg){ .type = MSG_GOODBYE, .goodbye.reason = GOODBYE_SHUTDOWN };
		break;
	case MSG_IDENT:
	case MSG_HELLO:
	case MSG_RELEASES:
	case MSG_GET_KEYRING:
	case MSG_KEYRING:
	case MSG_BITFIELD:
	case MSG_HAVE:
	case MSG_NOT_FOUND:
	case MSG_CANCEL:
	case MSG_REPORT:
	case MSG_COMMAND:
		return 0;
	}
	return send_msg(e, &m);
}

static int cb_send(void *ud, const uint8_t *p, size_t n)
{
	struct ep *e = ud;

	e->sends++;
	blob_put(&e->out, p, n);
	return e->send_rc;
}

static int cb_established(void *ud, const uint8_t pub[32])
{
	struct ep *e = ud;

	e->n_established++;
	assert_int_equal(e->n_frames, 0);
	assert_true(session_established(e->s));
	assert_memory_equal(session_peer_pub(e->s), pub, PUBKEY_SIZE);
	memcpy(e->peer_pub, pub, PUBKEY_SIZE);
	if (e->established_rc)
		return e->established_rc;
	return e->script ? script_established(e) : 0;
}

static int cb_frame(void *ud, const uint8_t *p, size_t n)
{
	struct ep *e = ud;

	assert_true(n >= 1);
	assert_true(e->n_established == 1);
	assert_true(e->n_frames < FRAMES_MAX);
	e->frames[e->n_frames] = (struct blob){ 0 };
	blob_put(&e->frames[e->n_frames++], p, n);
	if (e->send_in_frame) {
		struct msg m = { .type = MSG_PONG };

		(void)send_msg(e, &m);
		return 0;
	}
	if (e->frame_rc)
		return e->frame_rc;
	return e->script ? script_frame(e, p, n) : 0;
}

static const struct session_ops ops = {
	.send = cb_send,
	.on_established = cb_established,
	.on_frame = cb_frame,
};

static void ep_init(struct ep *e, bool initiator, const char *fleet, const char *seed, bool script)
{
	const struct test_key *dev = initiator ? &dev_a : &dev_b;

	*e = (struct ep){ .initiator = initiator, .script = script };
	if (seed)
		assert_int_equal(session_new_seeded(initiator, U8(fleet), dev->sk, &ops, e, U8(seed), &e->s), 0);
	else
		assert_int_equal(session_new(initiator, U8(fleet), dev->sk, &ops, e, &e->s), 0);
	assert_null(session_peer_pub(e->s));
	assert_false(session_established(e->s));
}

static void ep_free(struct ep *e)
{
	session_free(e->s);
	blob_free(&e->out);
	for (size_t i = 0; i < e->n_frames; i++)
		blob_free(&e->frames[i]);
	*e = (struct ep){ 0 };
}

static int ep_feed(struct ep *e, const uint8_t *p, size_t n)
{
	int k = session_feed(e->s, p, n);

	if (k < 0 && !e->feed_rc)
		e->feed_rc = k;
	return k;
}

/* Feeds `to` what `from` sent and `to` has not seen yet, `piece` bytes per
 * call (0: all at once). Stops at the first error. */
static bool deliver(struct ep *from, struct ep *to, size_t piece)
{
	bool moved = false;

	while (from->delivered < from->out.n && !to->feed_rc) {
		size_t n = from->out.n - from->delivered;

		if (piece && n > piece)
			n = piece;
		/* from->out does not move while `to` runs: only `to` sends */
		(void)ep_feed(to, from->out.p + from->delivered, n);
		from->delivered += n;
		moved = true;
	}
	return moved;
}

static void pump(struct ep *a, struct ep *b, size_t piece)
{
	bool moved;

	do {
		moved = deliver(a, b, piece);
		moved = deliver(b, a, piece) || moved;
	} while (moved);
}

/* Two sessions, started and pumped until nothing moves. */
static void connect_pair(struct ep *a, struct ep *b, const char *seed_a, const char *seed_b, bool script,
			 size_t piece)
{
	ep_init(a, true, HS_FLEET, seed_a, script);
	ep_init(b, false, HS_FLEET, seed_b, script);
	assert_int_equal(session_start(a->s), 0);
	assert_int_equal(session_start(b->s), 0);
	pump(a, b, piece);
}

static void assert_same_frames(const struct ep *got, const struct ep *want, size_t n)
{
	assert_true(n <= want->n_frames && n <= got->n_frames);
	for (size_t i = 0; i < n; i++)
		assert_true(blob_eq(&got->frames[i], want->frames[i].p, want->frames[i].n));
}

/* --- the recorded conversation -------------------------------------------- */

struct recording {
	struct ep a, b; /* a: initiator (device A), b: responder (device B) */
};

static void record(struct recording *r, size_t piece)
{
	connect_pair(&r->a, &r->b, HS_SEED_I, HS_SEED_R, true, piece);
	assert_int_equal(r->a.feed_rc, 0);
	assert_int_equal(r->b.feed_rc, 0);
}

static void recording_free(struct recording *r)
{
	ep_free(&r->a);
	ep_free(&r->b);
}

/* A fresh seeded session with the script, fed `in` in two pieces split at
 * `cut` (or byte by byte when cut is SIZE_MAX). Returns the last result. */
static int replay(struct ep *e, bool initiator, const uint8_t *in, size_t n, size_t cut)
{
	int k = 0;

	ep_init(e, initiator, HS_FLEET, initiator ? HS_SEED_I : HS_SEED_R, true);
	assert_int_equal(session_start(e->s), 0);
	if (cut == SIZE_MAX) {
		for (size_t i = 0; i < n && k == 0; i++)
			k = ep_feed(e, in + i, 1);
		return k;
	}
	k = ep_feed(e, in, cut);
	if (k == 0)
		k = ep_feed(e, in + cut, n - cut);
	return k;
}

/* --- the reference: the handshake by hand, from the spec ------------------ */

struct ref {
	bool initiator;
	uint8_t fleet[32];
	uint8_t eph_pk[32], eph_sk[32];
	uint8_t m1[SESSION_HS_SIZE], m2[SESSION_HS_SIZE];
	uint8_t h[32];
	uint8_t tx_key[32], rx_key[32];
	crypto_secretstream_xchacha20poly1305_state tx, rx;
};

static void keyed_hash(const uint8_t key[32], const uint8_t *a, size_t an, const uint8_t *b, size_t bn,
		       const uint8_t *c, size_t cn, uint8_t out[32])
{
	crypto_generichash_state st;

	assert_int_equal(crypto_generichash_init(&st, key, key ? 32 : 0, 32), 0);
	crypto_generichash_update(&st, a, an);
	crypto_generichash_update(&st, b, bn);
	crypto_generichash_update(&st, c, cn);
	crypto_generichash_final(&st, out, 32);
}

static void ref_init(struct ref *r, bool initiator, const char *fleet, uint8_t eph_seed_byte)
{
	uint8_t seed[32];

	*r = (struct ref){ .initiator = initiator };
	memcpy(r->fleet, fleet, 32);
	memset(seed, eph_seed_byte, sizeof(seed));
	assert_int_equal(crypto_kx_seed_keypair(r->eph_pk, r->eph_sk, seed), 0);
}

/* M1 = "SHP1" 01 00 0000 e_A mac1, mac1 = BLAKE2b-256(K, "shoal hs m1" || M1[0..40)).
 * M2 = "SHP1" 01 00 0000 e_B mac2, mac2 = BLAKE2b-256(K, "shoal hs m2" || M1 || M2[0..40)). */
static void ref_hs(struct ref *r, const uint8_t pk[32], uint8_t out[SESSION_HS_SIZE])
{
	memcpy(out, "SHP1\x01\x00\x00\x00", 8);
	memcpy(out + 8, pk, 32);
	if (r->initiator)
		keyed_hash(r->fleet, U8("shoal hs m1"), 11, out, 40, NULL, 0, out + 40);
	else
		keyed_hash(r->fleet, U8("shoal hs m2"), 11, r->m1, SESSION_HS_SIZE, out, 40, out + 40);
}

/* H, then (rx, tx) from crypto_kx, each replaced by
 * BLAKE2b-256(K, "shoal session" || key || H). */
static void ref_keys(struct ref *r)
{
	uint8_t rx[32], tx[32];
	const uint8_t *peer = r->initiator ? r->m2 + 8 : r->m1 + 8;

	keyed_hash(NULL, r->m1, SESSION_HS_SIZE, r->m2, SESSION_HS_SIZE, NULL, 0, r->h);
	if (r->initiator)
		assert_int_equal(crypto_kx_client_session_keys(rx, tx, r->eph_pk, r->eph_sk, peer), 0);
	else
		assert_int_equal(crypto_kx_server_session_keys(rx, tx, r->eph_pk, r->eph_sk, peer), 0);
	keyed_hash(r->fleet, U8("shoal session"), 13, rx, 32, r->h, 32, r->rx_key);
	keyed_hash(r->fleet, U8("shoal session"), 13, tx, 32, r->h, 32, r->tx_key);
}

static void ref_push_header(struct ref *r, struct blob *out)
{
	uint8_t hdr[SESSION_HEADER_SIZE];

	assert_int_equal(crypto_secretstream_xchacha20poly1305_init_push(&r->tx, hdr, r->tx_key), 0);
	blob_put(out, hdr, sizeof(hdr));
}

static void ref_pull_header(struct ref *r, const uint8_t *hdr)
{
	assert_int_equal(crypto_secretstream_xchacha20poly1305_init_pull(&r->rx, hdr, r->rx_key), 0);
}

/* u32 LE length, then the secretstream ciphertext of plain. */
static void ref_frame(struct ref *r, const uint8_t *plain, size_t n, uint8_t tag, struct blob *out)
{
	uint8_t *c = malloc(4 + n + FRAME_ABYTES);

	assert_non_null(c);
	wr_le32(c, (uint32_t)(n + FRAME_ABYTES));
	assert_int_equal(crypto_secretstream_xchacha20poly1305_push(&r->tx, c + 4, NULL, plain, n, NULL, 0, tag), 0);
	blob_put(out, c, 4 + n + FRAME_ABYTES);
	free(c);
}

static void ref_msg(struct ref *r, const struct msg *m, uint8_t tag, struct blob *out)
{
	struct wbuf w = { 0 };

	assert_int_equal(wire_encode(m, &w), 0);
	ref_frame(r, w.p, w.len, tag, out);
	wbuf_free(&w);
}

/* Opens the frame at *off of what a session sent. */
static void ref_open(struct ref *r, const struct blob *in, size_t *off, struct blob *plain, uint8_t *tag)
{
	unsigned long long n;
	uint32_t len;

	assert_true(in->n - *off >= 4);
	len = rd_le32(in->p + *off);
	assert_true(len >= FRAME_LEN_MIN && len <= in->n - *off - 4);
	plain->n = 0;
	blob_put(plain, in->p, len - FRAME_ABYTES); /* room */
	assert_int_equal(crypto_secretstream_xchacha20poly1305_pull(&r->rx, plain->p, &n, tag, in->p + *off + 4, len,
								    NULL, 0),
			 0);
	plain->n = (size_t)n;
	*off += 4 + len;
}

/* An IDENT frame's plaintext: type, public key, signature over
 * "shoal ident" || H || role. */
static void ref_ident(const struct test_key *signer, const uint8_t pub[32], const uint8_t h[32], uint8_t role,
		      uint8_t out[1 + 32 + 64])
{
	uint8_t msg[11 + 32 + 1];

	memcpy(msg, "shoal ident", 11);
	memcpy(msg + 11, h, 32);
	msg[43] = role;
	out[0] = MSG_IDENT;
	memcpy(out + 1, pub, 32);
	assert_int_equal(crypto_sign_detached(out + 33, NULL, msg, sizeof(msg), signer->sk), 0);
}

/* A responder session (seeded with `seed`) and a hand-made initiator that
 * has sent M1, checked M2, derived the keys and opened the responder's
 * header and IDENT. Nothing of the initiator's stream is sent yet. */
static void ref_vs_responder(struct ref *r, struct ep *e, const char *seed, uint8_t ref_seed)
{
	struct blob plain = { 0 };
	size_t off = SESSION_HS_SIZE + SESSION_HEADER_SIZE;
	uint8_t tag, want_mac[32];

	ref_init(r, true, HS_FLEET, ref_seed);
	ref_hs(r, r->eph_pk, r->m1);
	ep_init(e, false, HS_FLEET, seed, false);
	assert_int_equal(session_start(e->s), 0);
	assert_int_equal(ep_feed(e, r->m1, SESSION_HS_SIZE), 0);
	assert_int_equal(e->sends, 1);
	assert_int_equal(e->out.n, SESSION_HS_SIZE + SESSION_HEADER_SIZE + IDENT_WIRE);
	memcpy(r->m2, e->out.p, SESSION_HS_SIZE);
	keyed_hash(r->fleet, U8("shoal hs m2"), 11, r->m1, SESSION_HS_SIZE, r->m2, 40, want_mac);
	assert_memory_equal(r->m2 + 40, want_mac, 32);
	ref_keys(r);
	ref_pull_header(r, e->out.p + SESSION_HS_SIZE);
	ref_open(r, &e->out, &off, &plain, &tag);
	assert_int_equal(tag, crypto_secretstream_xchacha20poly1305_TAG_MESSAGE);
	assert_int_equal(plain.n, 1 + 32 + 64);
	assert_int_equal(plain.p[0], MSG_IDENT);
	assert_memory_equal(plain.p + 1, dev_b.pk, 32);
	blob_free(&plain);
	assert_false(session_established(e->s));
}

/* --- tests: the spec, byte for byte ------------------------------------------ */

/* The session as initiator against the reference responder. */
static void test_spec_initiator(void **state)
{
	uint8_t seed[32], pk[32], sk[32], m1[SESSION_HS_SIZE], ident[97], signed_msg[44];
	struct blob to_i = { 0 }, plain = { 0 };
	struct msg hello = { .type = MSG_HELLO,
			     .hello = { .version = 1, .role = 1, .product = "p", .product_len = 1 } };
	struct ref r;
	struct ep e;
	size_t off;
	uint8_t tag;

	(void)state;
	/* M1 is exactly what the spec says, with e_A from the seed */
	memcpy(seed, HS_SEED_I, 32);
	assert_int_equal(crypto_kx_seed_keypair(pk, sk, seed), 0);
	ref_init(&r, true, HS_FLEET, 0); /* only to compute M1 */
	ref_hs(&r, pk, m1);
	ep_init(&e, true, HS_FLEET, HS_SEED_I, false);
	assert_int_equal(session_start(e.s), 0);
	assert_int_equal(e.sends, 1);
	assert_true(blob_eq(&e.out, m1, sizeof(m1)));
	assert_memory_equal(e.out.p, "SHP1\x01\x00\x00\x00", 8);

	/* the reference answers as responder: M2 | header | IDENT | HELLO */
	ref_init(&r, false, HS_FLEET, 0x77);
	memcpy(r.m1, e.out.p, SESSION_HS_SIZE);
	ref_hs(&r, r.eph_pk, r.m2);
	ref_keys(&r);
	blob_put(&to_i, r.m2, SESSION_HS_SIZE);
	ref_push_header(&r, &to_i);
	ref_ident(&dev_b, dev_b.pk, r.h, 1, ident);
	ref_frame(&r, ident, sizeof(ident), crypto_secretstream_xchacha20poly1305_TAG_MESSAGE, &to_i);
	ref_msg(&r, &hello, crypto_secretstream_xchacha20poly1305_TAG_MESSAGE, &to_i);
	assert_int_equal(ep_feed(&e, to_i.p, to_i.n), 0);
	assert_int_equal(e.n_established, 1);
	assert_memory_equal(e.peer_pub, dev_b.pk, 32);
	assert_int_equal(e.n_frames, 1);
	assert_int_equal(e.frames[0].n, 1 + 2 + 1 + 2 + 4 + 2 + 1 + 2);

	/* the initiator's header and IDENT: signed over H with role 0 */
	assert_int_equal(e.sends, 2);
	assert_int_equal(e.out.n, SESSION_HS_SIZE + SESSION_HEADER_SIZE + IDENT_WIRE);
	ref_pull_header(&r, e.out.p + SESSION_HS_SIZE);
	off = SESSION_HS_SIZE + SESSION_HEADER_SIZE;
	assert_int_equal(rd_le32(e.out.p + off), 1 + 32 + 64 + 17);
	ref_open(&r, &e.out, &off, &plain, &tag);
	assert_int_equal(tag, crypto_secretstream_xchacha20poly1305_TAG_MESSAGE);
	assert_int_equal(plain.n, 97);
	assert_int_equal(plain.p[0], MSG_IDENT);
	assert_memory_equal(plain.p + 1, dev_a.pk, 32);
	memcpy(signed_msg, "shoal ident", 11);
	memcpy(signed_msg + 11, r.h, 32);
	signed_msg[43] = 0;
	assert_int_equal(crypto_sign_verify_detached(plain.p + 33, signed_msg, 44, dev_a.pk), 0);
	signed_msg[43] = 1;
	assert_int_not_equal(crypto_sign_verify_detached(plain.p + 33, signed_msg, 44, dev_a.pk), 0);

	/* frames both ways; GOODBYE is FINAL */
	{
		struct msg ping = { .type = MSG_PING, .ping.nonce = 99 };
		struct msg bye = { .type = MSG_GOODBYE, .goodbye.reason = GOODBYE_IDLE };

		assert_int_equal(send_msg(&e, &ping), 0);
		ref_open(&r, &e.out, &off, &plain, &tag);
		assert_int_equal(tag, crypto_secretstream_xchacha20poly1305_TAG_MESSAGE);
		assert_true(blob_eq(&plain, U8("\x10\x63\0\0\0\0\0\0\0"), 9));
		assert_int_equal(send_msg(&e, &bye), 0);
		ref_open(&r, &e.out, &off, &plain, &tag);
		assert_int_equal(tag, crypto_secretstream_xchacha20poly1305_TAG_FINAL);
		assert_true(blob_eq(&plain, U8("\x12\x05\0\0"), 4));
		assert_int_equal(off, e.out.n);
	}
	blob_free(&to_i);
	blob_free(&plain);
	ep_free(&e);
}

/* The session as responder against the reference initiator. */
static void test_spec_responder(void **state)
{
	uint8_t seed[32], pk[32], sk[32], ident[97];
	struct blob to_r = { 0 };
	struct ref r;
	struct ep e;

	(void)state;
	ref_vs_responder(&r, &e, HS_SEED_R, 0x55);
	/* M2 carries the seeded e_B */
	memcpy(seed, HS_SEED_R, 32);
	assert_int_equal(crypto_kx_seed_keypair(pk, sk, seed), 0);
	assert_memory_equal(e.out.p, "SHP1\x01\x00\x00\x00", 8);
	assert_memory_equal(e.out.p + 8, pk, 32);

	ref_push_header(&r, &to_r);
	ref_ident(&dev_a, dev_a.pk, r.h, 0, ident);
	ref_frame(&r, ident, sizeof(ident), crypto_secretstream_xchacha20poly1305_TAG_MESSAGE, &to_r);
	assert_int_equal(ep_feed(&e, to_r.p, to_r.n), 0);
	assert_int_equal(e.n_established, 1);
	assert_memory_equal(e.peer_pub, dev_a.pk, 32);
	assert_memory_equal(session_peer_pub(e.s), dev_a.pk, 32);
	assert_int_equal(e.sends, 1); /* nothing more until it is asked to */
	blob_free(&to_r);
	ep_free(&e);
}

/* --- tests: two sessions ------------------------------------------------------ */

static void test_back_to_back(void **state)
{
	struct ep a, b;
	struct msg m = { .type = MSG_PING, .ping.nonce = 1 };
	struct wbuf w = { 0 };
	uint8_t *big;

	(void)state;
	connect_pair(&a, &b, NULL, NULL, false, 0);
	assert_int_equal(a.feed_rc, 0);
	assert_int_equal(b.feed_rc, 0);
	assert_int_equal(a.n_established, 1);
	assert_int_equal(b.n_established, 1);
	assert_memory_equal(a.peer_pub, dev_b.pk, 32);
	assert_memory_equal(b.peer_pub, dev_a.pk, 32);
	/* one round trip: M1; then M2 | header | IDENT; then header | IDENT */
	assert_int_equal(a.sends, 2);
	assert_int_equal(b.sends, 1);

	assert_int_equal(send_msg(&a, &m), 0);
	m.ping.nonce = 2;
	assert_int_equal(send_msg(&b, &m), 0);
	pump(&a, &b, 0);
	assert_int_equal(a.n_frames, 1);
	assert_int_equal(b.n_frames, 1);
	assert_int_equal(a.frames[0].p[1], 2);
	assert_int_equal(b.frames[0].p[1], 1);

	/* the largest chunk both ways, and a frame of exactly FRAME_MAX */
	big = prng_image(7, FRAME_MAX);
	m = (struct msg){ .type = MSG_CHUNK,
			  .chunk = { .enc = 0, .plain_len = WIRE_CHUNK_MAX, .stored = big, .stored_len = WIRE_CHUNK_MAX } };
	chunk_id(big, WIRE_CHUNK_MAX, m.chunk.id);
	assert_int_equal(wire_encode(&m, &w), 0);
	assert_int_equal(w.len, 1 + 32 + 1 + 4 + WIRE_CHUNK_MAX);
	assert_int_equal(session_send(a.s, w.p, w.len, false), 0);
	assert_int_equal(session_send(b.s, w.p, w.len, false), 0);
	big[0] = MSG_CHUNK;
	assert_int_equal(session_send(a.s, big, FRAME_MAX, false), 0);
	pump(&a, &b, 65521);
	assert_int_equal(a.feed_rc, 0);
	assert_int_equal(b.feed_rc, 0);
	assert_int_equal(b.n_frames, 3);
	assert_int_equal(a.n_frames, 2);
	assert_true(blob_eq(&b.frames[1], w.p, w.len));
	assert_true(blob_eq(&a.frames[1], w.p, w.len));
	assert_true(blob_eq(&b.frames[2], big, FRAME_MAX));
	/* a big buffer is given back once its frame is delivered */
	assert_int_equal(session_rx_capacity(a.s), 0);
	assert_int_equal(session_rx_capacity(b.s), 0);

	/* GOODBYE ends one direction; the other still works */
	m = (struct msg){ .type = MSG_GOODBYE, .goodbye.reason = GOODBYE_SHUTDOWN };
	assert_int_equal(send_msg(&a, &m), 0);
	m.type = MSG_PING;
	assert_int_equal(send_msg(&a, &m), -EPIPE);
	assert_int_equal(send_msg(&a, &m), -EPIPE);
	pump(&a, &b, 0);
	assert_int_equal(b.n_frames, 4);
	assert_int_equal(b.frames[3].p[0], MSG_GOODBYE);
	assert_int_equal(send_msg(&b, &m), 0);
	m = (struct msg){ .type = MSG_GOODBYE, .goodbye.reason = GOODBYE_SHUTDOWN };
	assert_int_equal(send_msg(&b, &m), 0);
	pump(&a, &b, 0);
	assert_int_equal(a.feed_rc, 0);
	assert_int_equal(a.n_frames, 4);
	assert_int_equal(a.frames[3].p[0], MSG_GOODBYE);
	/* anything after a GOODBYE is an error, and stays one */
	assert_int_equal(ep_feed(&b, U8("x"), 1), -EPIPE);
	assert_non_null(strstr(session_error(b.s), "after the peer's GOODBYE"));
	assert_int_equal(ep_feed(&b, U8("x"), 1), -EPIPE);
	assert_int_equal(send_msg(&b, &m), -EPIPE);

	free(big);
	wbuf_free(&w);
	ep_free(&a);
	ep_free(&b);
}

/* Recording twice gives the same bytes, and they are the ones in the
 * fuzzer's corpus: the handshake and framing are pinned byte for byte. */
static void test_golden_transcript(void **state)
{
	struct recording r1, r2;
	static const char *const names[2] = { "initiator-transcript", "responder-transcript" };

	(void)state;
	record(&r1, 0);
	record(&r2, 0);
	assert_true(blob_eq(&r1.a.out, r2.a.out.p, r2.a.out.n));
	assert_true(blob_eq(&r1.b.out, r2.b.out.p, r2.b.out.n));
	/* the whole conversation happened */
	assert_int_equal(r1.a.n_frames, 5); /* HELLO PONG MANIFEST_PART CHUNK GOODBYE */
	assert_int_equal(r1.b.n_frames, 8); /* HELLO RELEASES PING GET_MANIFEST REQUEST HAVE REPORT GOODBYE */
	assert_int_equal(r1.a.frames[r1.a.n_frames - 1].p[0], MSG_GOODBYE);
	assert_int_equal(r1.b.frames[r1.b.n_frames - 1].p[0], MSG_GOODBYE);
	print_message("initiator %zu bytes, responder %zu bytes\n", r1.a.out.n, r1.b.out.n);

	for (int i = 0; i < 2; i++) {
		const struct blob *got = i ? &r1.b.out : &r1.a.out;
		_cleanup_(freep) uint8_t *want = NULL;
		char path[4096];
		size_t n;

		snprintf(path, sizeof(path), "%s/%s", corpus_dir, names[i]);
		assert_int_equal(read_file(path, &want, &n), 0);
		if (!blob_eq(got, want, n))
			print_error("%s is not what this build records: rewrite it with --write-corpus\n", path);
		assert_true(blob_eq(got, want, n));
	}
	recording_free(&r1);
	recording_free(&r2);
}

static void test_byte_by_byte(void **state)
{
	struct recording r, s;

	(void)state;
	record(&r, 0);
	record(&s, 1);
	assert_true(blob_eq(&s.a.out, r.a.out.p, r.a.out.n));
	assert_true(blob_eq(&s.b.out, r.b.out.p, r.b.out.n));
	assert_int_equal(s.a.n_frames, r.a.n_frames);
	assert_int_equal(s.b.n_frames, r.b.n_frames);
	assert_same_frames(&s.a, &r.a, r.a.n_frames);
	assert_same_frames(&s.b, &r.b, r.b.n_frames);
	recording_free(&s);

	/* and a lone session fed its peer's transcript one byte at a time */
	for (int role = 0; role < 2; role++) {
		const struct ep *peer = role ? &r.a : &r.b, *self = role ? &r.b : &r.a;
		struct ep e;

		assert_int_equal(replay(&e, role == 0, peer->out.p, peer->out.n, SIZE_MAX), 0);
		assert_true(blob_eq(&e.out, self->out.p, self->out.n));
		assert_int_equal(e.n_frames, self->n_frames);
		assert_same_frames(&e, self, self->n_frames);
		ep_free(&e);
	}
	recording_free(&r);
}

static void test_every_split(void **state)
{
	struct recording r;

	(void)state;
	record(&r, 0);
	for (int role = 0; role < 2; role++) {
		const struct ep *peer = role ? &r.a : &r.b, *self = role ? &r.b : &r.a;

		for (size_t cut = 0; cut <= peer->out.n; cut++) {
			struct ep e;

			assert_int_equal(replay(&e, role == 0, peer->out.p, peer->out.n, cut), 0);
			assert_true(blob_eq(&e.out, self->out.p, self->out.n));
			assert_int_equal(e.n_established, 1);
			assert_int_equal(e.n_frames, self->n_frames);
			assert_same_frames(&e, self, self->n_frames);
			ep_free(&e);
		}
	}
	recording_free(&r);
}

/* Every byte of each recorded transcript, one bit flipped: the session
 * fails, and whatever it delivered before failing is the unaltered
 * conversation. A flip that makes a length prefix larger leaves the session
 * waiting; the bytes that then arrive do not decrypt. */
static void test_bit_flips(void **state)
{
	struct recording r;
	uint8_t *zeros = calloc(1, 65536);
	unsigned by_code[4] = { 0 };

	(void)state;
	assert_non_null(zeros);
	record(&r, 0);
	for (int role = 0; role < 2; role++) {
		const struct ep *peer = role ? &r.a : &r.b, *self = role ? &r.b : &r.a;
		uint8_t *in = malloc(peer->out.n);

		assert_non_null(in);
		for (size_t i = 0; i < peer->out.n; i++) {
			size_t padded = 0;
			struct ep e;
			int k;

			memcpy(in, peer->out.p, peer->out.n);
			in[i] ^= (uint8_t)(1u << (i % 8));
			k = replay(&e, role == 0, in, peer->out.n, 0);
			while (k == 0 && padded <= FRAME_LEN_MAX) {
				k = ep_feed(&e, zeros, 65536);
				padded += 65536;
			}
			if (k >= 0)
				print_error("role %d byte %zu: no error\n", role, i);
			assert_true(k < 0);
			assert_true(k == -EBADMSG || k == -EACCES || k == -EKEYREJECTED || k == -EPIPE);
			by_code[k == -EBADMSG ? 0 : k == -EACCES ? 1 : k == -EKEYREJECTED ? 2 : 3]++;
			/* frames delivered so far are the real ones */
			assert_same_frames(&e, self, e.n_frames);
			if (e.n_established)
				assert_memory_equal(e.peer_pub, role ? dev_a.pk : dev_b.pk, 32);
			/* a bad M1 gets no answer at all */
			if (role == 1 && i < SESSION_HS_SIZE)
				assert_int_equal(e.sends, 0);
			/* after a bad M2 the initiator sent M1 only */
			if (role == 0 && i < SESSION_HS_SIZE)
				assert_int_equal(e.out.n, SESSION_HS_SIZE);
			ep_free(&e);
		}
		free(in);
	}
	print_message("EBADMSG %u, EACCES %u, EKEYREJECTED %u, EPIPE %u\n", by_code[0], by_code[1], by_code[2],
		      by_code[3]);
	assert_true(by_code[0] && by_code[1] && by_code[2]);
	free(zeros);
	recording_free(&r);
}

/* --- tests: wrong fleet, malformed handshake ---------------------------------- */

static void test_wrong_fleet_initiator(void **state)
{
	struct ep a, b;

	(void)state;
	ep_init(&a, true, HS_FLEET_WRONG, HS_SEED_I, false);
	ep_init(&b, false, HS_FLEET, HS_SEED_R, false);
	assert_int_equal(session_start(a.s), 0);
	assert_int_equal(session_start(b.s), 0);
	/* byte by byte: the mac is checked when the 72nd byte arrives */
	for (size_t i = 0; i + 1 < a.out.n; i++)
		assert_int_equal(ep_feed(&b, a.out.p + i, 1), 0);
	assert_int_equal(ep_feed(&b, a.out.p + a.out.n - 1, 1), -EACCES);
	assert_non_null(strstr(session_error(b.s), "mac1"));
	assert_int_equal(b.sends, 0);
	assert_int_equal(b.out.n, 0);
	assert_int_equal(ep_feed(&b, a.out.p, 1), -EACCES);
	assert_int_equal(b.sends, 0);
	ep_free(&a);
	ep_free(&b);

	/* a real responder with another fleet key: the same, so a real
	 * initiator never sees an M2 and just waits (its caller times out) */
	connect_pair(&a, &b, NULL, NULL, false, 0);
	ep_free(&a);
	ep_free(&b);
	ep_init(&a, true, HS_FLEET, NULL, false);
	ep_init(&b, false, HS_FLEET_WRONG, NULL, false);
	assert_int_equal(session_start(a.s), 0);
	assert_int_equal(session_start(b.s), 0);
	pump(&a, &b, 0);
	assert_int_equal(b.feed_rc, -EACCES);
	assert_int_equal(b.sends, 0);
	assert_int_equal(a.feed_rc, 0);
	assert_false(session_established(a.s));
	ep_free(&a);
	ep_free(&b);
}

/* A responder that does not hold the fleet secret, answering anyway. */
static void test_wrong_fleet_responder(void **state)
{
	uint8_t m2[SESSION_HS_SIZE];
	struct ref r;
	struct ep a;

	(void)state;
	ep_init(&a, true, HS_FLEET, HS_SEED_I, false);
	assert_int_equal(session_start(a.s), 0);
	ref_init(&r, false, HS_FLEET_WRONG, 0x66);
	memcpy(r.m1, a.out.p, SESSION_HS_SIZE);
	ref_hs(&r, r.eph_pk, m2);
	assert_int_equal(ep_feed(&a, m2, sizeof(m2)), -EACCES);
	assert_non_null(strstr(session_error(a.s), "mac2"));
	assert_int_equal(a.out.n, SESSION_HS_SIZE);
	assert_false(session_established(a.s));
	ep_free(&a);

	/* the right key over another M1 (a replayed M2) fails the same way */
	ep_init(&a, true, HS_FLEET, NULL, false);
	assert_int_equal(session_start(a.s), 0);
	ref_init(&r, true, HS_FLEET, 0x67);
	ref_hs(&r, r.eph_pk, r.m1);
	r.initiator = false;
	ref_hs(&r, r.eph_pk, m2);
	assert_int_equal(ep_feed(&a, m2, sizeof(m2)), -EACCES);
	assert_int_equal(a.out.n, SESSION_HS_SIZE);
	ep_free(&a);
}

/* M1 with a valid mac over a body the responder must refuse anyway. */
static void test_bad_m1(void **state)
{
	static const struct {
		size_t at;
		uint8_t value;
		int want;
		const char *needle;
	} cases[] = {
		{ 0, 'X', -EBADMSG, "bad magic" },
		{ 3, '2', -EBADMSG, "bad magic" },
		{ 4, 2, -EBADMSG, "handshake version 2" },
		{ 4, 0, -EBADMSG, "handshake version 0" },
		{ 5, 1, -EBADMSG, "reserved" },
		{ 7, 0x80, -EBADMSG, "reserved" },
	};
	struct ref r;
	struct ep e;

	(void)state;
	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		ref_init(&r, true, HS_FLEET, 0x44);
		memcpy(r.m1, "SHP1\x01\x00\x00\x00", 8);
		memcpy(r.m1 + 8, r.eph_pk, 32);
		r.m1[cases[i].at] = cases[i].value;
		keyed_hash(r.fleet, U8("shoal hs m1"), 11, r.m1, 40, NULL, 0, r.m1 + 40);
		ep_init(&e, false, HS_FLEET, NULL, false);
		assert_int_equal(session_start(e.s), 0);
		assert_int_equal(ep_feed(&e, r.m1, SESSION_HS_SIZE), cases[i].want);
		assert_non_null(strstr(session_error(e.s), cases[i].needle));
		assert_int_equal(e.sends, 0);
		ep_free(&e);
	}

	/* a low-order X25519 key with a valid mac (a fleet member misbehaving) */
	ref_init(&r, true, HS_FLEET, 0x44);
	memset(r.eph_pk, 0, 32);
	ref_hs(&r, r.eph_pk, r.m1);
	ep_init(&e, false, HS_FLEET, NULL, false);
	assert_int_equal(session_start(e.s), 0);
	assert_int_equal(ep_feed(&e, r.m1, SESSION_HS_SIZE), -EKEYREJECTED);
	assert_non_null(strstr(session_error(e.s), "X25519"));
	assert_int_equal(e.sends, 0);
	ep_free(&e);
}

/* --- tests: IDENT and tags --------------------------------------------------- */

/* The reference initiator's header and frames, fed to a fresh responder. */
struct ident_case {
	const char *what;
	int want;
	const char *needle;
};

static void test_ident_replay(void **state)
{
	uint8_t ident1[97], ident[97];
	struct blob s = { 0 };
	struct ref r;
	struct ep e;

	(void)state;
	/* connection 1: a valid IDENT, kept */
	ref_vs_responder(&r, &e, HS_SEED_R, 0x55);
	ref_ident(&dev_a, dev_a.pk, r.h, 0, ident1);
	ref_push_header(&r, &s);
	ref_frame(&r, ident1, sizeof(ident1), crypto_secretstream_xchacha20poly1305_TAG_MESSAGE, &s);
	assert_int_equal(ep_feed(&e, s.p, s.n), 0);
	assert_int_equal(e.n_established, 1);
	ep_free(&e);
	s.n = 0;

	/* connection 2 (another responder key, so another H): the captured
	 * IDENT, re-encrypted by a fleet member who is not device A */
	ref_vs_responder(&r, &e, "shoal handshake responder eph #2", 0x55);
	ref_push_header(&r, &s);
	ref_frame(&r, ident1, sizeof(ident1), crypto_secretstream_xchacha20poly1305_TAG_MESSAGE, &s);
	assert_int_equal(ep_feed(&e, s.p, s.n), -EKEYREJECTED);
	assert_non_null(strstr(session_error(e.s), "IDENT"));
	assert_int_equal(e.n_established, 0);
	assert_int_equal(e.n_frames, 0);
	ep_free(&e);
	s.n = 0;

	/* the right H with the responder's role byte (a reflected IDENT) */
	ref_vs_responder(&r, &e, HS_SEED_R, 0x55);
	ref_ident(&dev_a, dev_a.pk, r.h, 1, ident);
	ref_push_header(&r, &s);
	ref_frame(&r, ident, sizeof(ident), crypto_secretstream_xchacha20poly1305_TAG_MESSAGE, &s);
	assert_int_equal(ep_feed(&e, s.p, s.n), -EKEYREJECTED);
	ep_free(&e);
	s.n = 0;

	/* signed by A, claiming to be B */
	ref_vs_responder(&r, &e, HS_SEED_R, 0x55);
	ref_ident(&dev_a, dev_b.pk, r.h, 0, ident);
	ref_push_header(&r, &s);
	ref_frame(&r, ident, sizeof(ident), crypto_secretstream_xchacha20poly1305_TAG_MESSAGE, &s);
	assert_int_equal(ep_feed(&e, s.p, s.n), -EKEYREJECTED);
	ep_free(&e);
	blob_free(&s);
}

enum bad_stream {
	FIRST_NOT_IDENT,
	IDENT_FINAL,
	IDENT_TRAILING,
	IDENT_SHORT,
	SECOND_IDENT,
	GOODBYE_NOT_FINAL,
	FINAL_NOT_GOODBYE,
	TAG_PUSH,
	TAG_REKEY,
	AFTER_GOODBYE,
	UNKNOWN_TYPE_PASSES, /* the session does not decode: wire_decode is the caller's */
};

static void test_bad_frames(void **state)
{
	static const struct {
		enum bad_stream what;
		int want;
		const char *needle;
		size_t frames;
	} cases[] = {
		{ FIRST_NOT_IDENT, -EBADMSG, "first frame is HELLO, not IDENT", 0 },
		{ IDENT_FINAL, -EBADMSG, "FINAL frame that is not GOODBYE", 0 },
		{ IDENT_TRAILING, -EBADMSG, "unexpected bytes", 0 },
		{ IDENT_SHORT, -EBADMSG, "truncated", 0 },
		{ SECOND_IDENT, -EBADMSG, "second IDENT", 0 },
		{ GOODBYE_NOT_FINAL, -EBADMSG, "GOODBYE that is not FINAL", 0 },
		{ FINAL_NOT_GOODBYE, -EBADMSG, "FINAL frame that is not GOODBYE", 0 },
		{ TAG_PUSH, -EBADMSG, "secretstream tag 0x01", 0 },
		{ TAG_REKEY, -EBADMSG, "secretstream tag 0x02", 0 },
		{ AFTER_GOODBYE, -EPIPE, "after the peer's GOODBYE", 1 },
		{ UNKNOWN_TYPE_PASSES, 0, NULL, 1 },
	};
	const uint8_t msg_tag = crypto_secretstream_xchacha20poly1305_TAG_MESSAGE;
	const uint8_t final_tag = crypto_secretstream_xchacha20poly1305_TAG_FINAL;

	(void)state;
	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		struct msg hello = { .type = MSG_HELLO,
				     .hello = { .version = 1, .product = "p", .product_len = 1 } };
		struct msg bye = { .type = MSG_GOODBYE };
		struct msg ping = { .type = MSG_PING };
		uint8_t ident[98];
		struct blob s = { 0 };
		struct ref r;
		struct ep e;

		ref_vs_responder(&r, &e, HS_SEED_R, 0x55);
		ref_push_header(&r, &s);
		ref_ident(&dev_a, dev_a.pk, r.h, 0, ident);
		ident[97] = 0;
		switch (cases[i].what) {
		case FIRST_NOT_IDENT:
			ref_msg(&r, &hello, msg_tag, &s);
			break;
		case IDENT_FINAL:
			ref_frame(&r, ident, 97, final_tag, &s);
			break;
		case IDENT_TRAILING:
			ref_frame(&r, ident, 98, msg_tag, &s);
			break;
		case IDENT_SHORT:
			ref_frame(&r, ident, 96, msg_tag, &s);
			break;
		case SECOND_IDENT:
			ref_frame(&r, ident, 97, msg_tag, &s);
			ref_frame(&r, ident, 97, msg_tag, &s);
			break;
		case GOODBYE_NOT_FINAL:
			ref_frame(&r, ident, 97, msg_tag, &s);
			ref_msg(&r, &bye, msg_tag, &s);
			break;
		case FINAL_NOT_GOODBYE:
			ref_frame(&r, ident, 97, msg_tag, &s);
			ref_msg(&r, &ping, final_tag, &s);
			break;
		case TAG_PUSH:
			ref_frame(&r, ident, 97, msg_tag, &s);
			ref_msg(&r, &ping, crypto_secretstream_xchacha20poly1305_TAG_PUSH, &s);
			break;
		case TAG_REKEY:
			ref_frame(&r, ident, 97, msg_tag, &s);
			ref_msg(&r, &ping, crypto_secretstream_xchacha20poly1305_TAG_REKEY, &s);
			break;
		case AFTER_GOODBYE:
			ref_frame(&r, ident, 97, msg_tag, &s);
			ref_msg(&r, &bye, final_tag, &s);
			ref_msg(&r, &ping, msg_tag, &s);
			break;
		case UNKNOWN_TYPE_PASSES:
			ref_frame(&r, ident, 97, msg_tag, &s);
			ref_frame(&r, U8("\x7f"), 1, msg_tag, &s);
			break;
		}
		assert_int_equal(ep_feed(&e, s.p, s.n), cases[i].want);
		if (cases[i].needle && !strstr(session_error(e.s), cases[i].needle))
			print_error("case %zu: \"%s\"\n", i, session_error(e.s));
		if (cases[i].needle)
			assert_non_null(strstr(session_error(e.s), cases[i].needle));
		assert_int_equal(e.n_frames, cases[i].frames);
		blob_free(&s);
		ep_free(&e);
	}
}

/* --- tests: length prefixes and memory ---------------------------------------- */

/* A responder that has taken the recorded initiator's handshake and IDENT. */
static void established_responder(struct ep *e, struct recording *r)
{
	assert_int_equal(replay(e, false, r->a.out.p, AFTER_IDENT, 0), 0);
	assert_int_equal(e->n_established, 1);
}

static void test_length_prefix(void **state)
{
	static const uint32_t bad[] = { 0, 1, FRAME_LEN_MIN - 1, FRAME_LEN_MAX + 1, FRAME_MAX + 18, 0x7fffffff,
					0xffffffff };
	uint8_t le[4], *junk = prng_image(3, 1 << 20);
	struct recording r;
	struct ep e;
	size_t got = 0;

	(void)state;
	record(&r, 0);
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		established_responder(&e, &r);
		wr_le32(le, bad[i]);
		/* byte by byte: refused on the 4th, before anything else */
		assert_int_equal(ep_feed(&e, le, 3), 0);
		assert_int_equal(ep_feed(&e, le + 3, 1), -EBADMSG);
		assert_non_null(strstr(session_error(e.s), "outside 18..4198417"));
		assert_true(session_rx_capacity(e.s) <= 4096);
		ep_free(&e);
	}

	/* the largest length allowed: memory follows the bytes that arrive */
	established_responder(&e, &r);
	wr_le32(le, FRAME_LEN_MAX);
	assert_int_equal(ep_feed(&e, le, 4), 0);
	assert_true(session_rx_capacity(e.s) <= 4096);
	assert_int_equal(ep_feed(&e, junk, 1), 0);
	got = 1;
	assert_true(session_rx_capacity(e.s) <= 4096);
	while (got < (1u << 20)) {
		size_t n = got < 8192 ? 1000 : 50000;

		if (n > (1u << 20) - got)
			n = (1u << 20) - got;
		assert_int_equal(ep_feed(&e, junk + got, n), 0);
		got += n;
		assert_true(session_rx_capacity(e.s) >= got);
		assert_true(session_rx_capacity(e.s) <= (got > 2048 ? 2 * got : 4096));
	}
	assert_true(session_rx_capacity(e.s) < FRAME_LEN_MAX);
	ep_free(&e);

	/* the smallest length allowed holds one byte of plaintext */
	established_responder(&e, &r);
	wr_le32(le, FRAME_LEN_MIN);
	assert_int_equal(ep_feed(&e, le, 4), 0);
	assert_int_equal(ep_feed(&e, junk, FRAME_LEN_MIN), -EKEYREJECTED);
	assert_non_null(strstr(session_error(e.s), "does not decrypt"));
	ep_free(&e);

	free(junk);
	recording_free(&r);
}

/* --- tests: misuse and callbacks ----------------------------------------------- */

static void test_misuse(void **state)
{
	struct session_ops no_frame = ops;
	struct session *s = (struct session *)&s;
	struct msg m = { .type = MSG_PING };
	uint8_t *big;
	struct ep a, b;

	(void)state;
	no_frame.on_frame = NULL;
	assert_int_equal(session_new(true, U8(HS_FLEET), dev_a.sk, &no_frame, NULL, &s), -EINVAL);
	assert_ptr_equal(s, (struct session *)&s);
	session_free(NULL);

	ep_init(&a, true, HS_FLEET, NULL, false);
	ep_init(&b, false, HS_FLEET, NULL, false);
	assert_int_equal(send_msg(&a, &m), -ENOTCONN);
	assert_int_equal(ep_feed(&b, U8("SHP1"), 4), -EINVAL);
	assert_int_equal(b.feed_rc, -EINVAL);
	b.feed_rc = 0;
	assert_int_equal(session_start(a.s), 0);
	assert_int_equal(session_start(a.s), -EALREADY);
	assert_int_equal(session_start(b.s), 0);
	assert_int_equal(session_start(b.s), -EALREADY);
	assert_int_equal(a.sends, 1);
	assert_int_equal(b.sends, 0);
	assert_int_equal(send_msg(&a, &m), -ENOTCONN);
	/* the responder has its keys after M1, but no IDENT from the peer */
	deliver(&a, &b, 0);
	assert_int_equal(b.sends, 1);
	assert_int_equal(send_msg(&b, &m), -ENOTCONN);
	assert_non_null(strstr(session_error(b.s), "before the handshake"));
	pump(&a, &b, 0);
	assert_true(session_established(a.s) && session_established(b.s));

	assert_int_equal(session_send(a.s, U8("\x10"), 0, false), -EINVAL);
	assert_int_equal(session_send(a.s, U8("\x01"), 1, false), -EINVAL);
	assert_int_equal(session_send(a.s, U8("\x12\x00\x00\x00"), 4, false), -EINVAL);
	assert_int_equal(session_send(a.s, U8("\x10\x00\x00\x00\x00\x00\x00\x00\x00"), 9, true), -EINVAL);
	big = calloc(1, FRAME_MAX + 1);
	assert_non_null(big);
	big[0] = MSG_CHUNK;
	assert_int_equal(session_send(a.s, big, FRAME_MAX + 1, false), -EMSGSIZE);
	free(big);
	/* none of that was sent or broke anything */
	assert_int_equal(a.sends, 2);
	assert_int_equal(send_msg(&a, &m), 0);
	pump(&a, &b, 0);
	assert_int_equal(b.n_frames, 1);
	assert_int_equal(b.feed_rc, 0);
	ep_free(&a);
	ep_free(&b);
}

static void test_callback_errors(void **state)
{
	struct msg m = { .type = MSG_PING };
	struct msg bye = { .type = MSG_GOODBYE, .goodbye.reason = GOODBYE_PROTOCOL_ERROR };
	struct ep a, b;

	(void)state;
	/* send fails on M1 */
	ep_init(&a, true, HS_FLEET, NULL, false);
	a.send_rc = -EIO;
	assert_int_equal(session_start(a.s), -EIO);
	assert_int_equal(ep_feed(&a, U8("S"), 1), -EIO);
	assert_non_null(strstr(session_error(a.s), "send callback failed"));
	ep_free(&a);

	/* on_established refuses the peer (banned, say): no frame follows */
	ep_init(&a, true, HS_FLEET, NULL, false);
	ep_init(&b, false, HS_FLEET, NULL, false);
	b.established_rc = -EPERM;
	assert_int_equal(session_start(a.s), 0);
	assert_int_equal(session_start(b.s), 0);
	deliver(&a, &b, 0);
	deliver(&b, &a, 0);
	assert_int_equal(send_msg(&a, &m), 0);
	assert_int_equal(ep_feed(&b, a.out.p + a.delivered, a.out.n - a.delivered), -EPERM);
	assert_int_equal(b.n_established, 1);
	assert_int_equal(b.n_frames, 0);
	ep_free(&a);
	ep_free(&b);

	/* on_frame fails: the error sticks */
	connect_pair(&a, &b, NULL, NULL, false, 0);
	b.frame_rc = -ECANCELED;
	assert_int_equal(send_msg(&a, &m), 0);
	assert_int_equal(send_msg(&a, &m), 0);
	pump(&a, &b, 0);
	assert_int_equal(b.feed_rc, -ECANCELED);
	assert_int_equal(b.n_frames, 1);
	assert_int_equal(session_feed(b.s, U8("x"), 1), -ECANCELED);
	assert_int_equal(send_msg(&b, &m), -ECANCELED);
	assert_non_null(strstr(session_error(b.s), "on_frame callback failed"));
	/* ... but the GOODBYE that says why still goes out, once */
	assert_int_equal(send_msg(&b, &bye), 0);
	assert_int_equal(send_msg(&b, &bye), -ECANCELED);
	assert_int_equal(send_msg(&b, &m), -ECANCELED);
	pump(&a, &b, 0);
	assert_int_equal(a.feed_rc, 0);
	assert_int_equal(a.n_frames, 1);
	assert_int_equal(a.frames[0].p[0], MSG_GOODBYE);
	assert_int_equal(a.frames[0].p[1], GOODBYE_PROTOCOL_ERROR);
	ep_free(&a);
	ep_free(&b);

	/* the same after the session itself refused the peer's bytes */
	connect_pair(&a, &b, NULL, NULL, false, 0);
	assert_int_equal(ep_feed(&b, U8("\xff\xff\xff\xff"), 4), -EBADMSG);
	assert_int_equal(send_msg(&b, &m), -EBADMSG);
	assert_int_equal(send_msg(&b, &bye), 0);
	pump(&a, &b, 0);
	assert_int_equal(a.n_frames, 1);
	assert_int_equal(a.frames[0].p[1], GOODBYE_PROTOCOL_ERROR);
	ep_free(&a);
	ep_free(&b);

	/* a send made from on_frame fails while on_frame returns 0 */
	connect_pair(&a, &b, NULL, NULL, false, 0);
	b.send_in_frame = true;
	b.send_rc = -ECONNRESET;
	assert_int_equal(send_msg(&a, &m), 0);
	assert_int_equal(send_msg(&a, &m), 0);
	pump(&a, &b, 0);
	assert_int_equal(b.feed_rc, -ECONNRESET);
	assert_int_equal(b.n_frames, 1);
	/* our stream is lost with the failed send: not even a GOODBYE */
	b.send_rc = 0;
	assert_int_equal(send_msg(&b, &bye), -ECONNRESET);
	assert_int_equal(b.sends, 2);
	ep_free(&a);
	ep_free(&b);
}

/* --- the fuzzer's seeds ---------------------------------------------------------- */

static int write_seed(const char *dir, const char *name, const uint8_t *p, size_t n)
{
	char path[4096];
	int k;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	k = write_file(path, p, n);
	if (k < 0) {
		fprintf(stderr, "%s: %s\n", path, strerror(-k));
		return k;
	}
	printf("%-50s %6zu bytes\n", path, n);
	return 0;
}

/* Runs outside cmocka's runner: the asserts in record() still work (they
 * print and exit). */
static int write_corpus(const char *dir)
{
	struct recording r;
	struct blob b = { 0 };
	int k = 0;

	record(&r, 0);
	if (r.a.out.n > 65536 || r.b.out.n > 65536)
		return 1;
	k = write_seed(dir, "initiator-transcript", r.a.out.p, r.a.out.n);
	if (!k)
		k = write_seed(dir, "responder-transcript", r.b.out.p, r.b.out.n);
	if (!k)
		k = write_seed(dir, "initiator-m1", r.a.out.p, SESSION_HS_SIZE);
	if (!k)
		k = write_seed(dir, "initiator-until-ident", r.a.out.p, AFTER_IDENT);
	if (!k)
		k = write_seed(dir, "responder-until-ident", r.b.out.p, AFTER_IDENT);
	blob_put(&b, r.a.out.p, AFTER_IDENT);
	blob_put(&b, "\xff\xff\xff\xff", 4);
	if (!k)
		k = write_seed(dir, "initiator-length-huge", b.p, b.n);
	b.n = 0;
	blob_put(&b, r.a.out.p, r.a.out.n);
	b.p[50] ^= 1;
	if (!k)
		k = write_seed(dir, "initiator-bad-mac1", b.p, b.n);
	b.n = 0;
	blob_put(&b, r.a.out.p, r.a.out.n);
	blob_put(&b, "\0", 1);
	if (!k)
		k = write_seed(dir, "initiator-after-goodbye", b.p, b.n);
	blob_free(&b);
	recording_free(&r);
	return k < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_spec_initiator),
		cmocka_unit_test(test_spec_responder),
		cmocka_unit_test(test_back_to_back),
		cmocka_unit_test(test_golden_transcript),
		cmocka_unit_test(test_byte_by_byte),
		cmocka_unit_test(test_every_split),
		cmocka_unit_test(test_bit_flips),
		cmocka_unit_test(test_wrong_fleet_initiator),
		cmocka_unit_test(test_wrong_fleet_responder),
		cmocka_unit_test(test_bad_m1),
		cmocka_unit_test(test_ident_replay),
		cmocka_unit_test(test_bad_frames),
		cmocka_unit_test(test_length_prefix),
		cmocka_unit_test(test_misuse),
		cmocka_unit_test(test_callback_errors),
	};

	if (sodium_init() < 0)
		return 1;
	assert_int_equal(crypto_sign_seed_keypair(dev_a.pk, dev_a.sk, U8(HS_DEVICE_A)), 0);
	assert_int_equal(crypto_sign_seed_keypair(dev_b.pk, dev_b.sk, U8(HS_DEVICE_B)), 0);
	if (argc == 3 && !strcmp(argv[1], "--write-corpus"))
		return write_corpus(argv[2]);
	if (argc != 2) {
		fprintf(stderr, "usage: %s CORPUS-DIR | --write-corpus DIR\n", argv[0]);
		return 2;
	}
	corpus_dir = argv[1];
	return cmocka_run_group_tests(tests, NULL, NULL);
}
