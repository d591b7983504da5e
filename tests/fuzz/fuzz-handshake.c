/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The session state machine fed arbitrary bytes as the peer's stream: once
 * into a responder, once into an initiator after session_start(). Each runs
 * twice, with the input whole and in small pieces; both runs must do exactly
 * the same (the same bytes sent, the same frames delivered, the same
 * result), and a failure must be one of the documented errors with a
 * message.
 *
 * Keys are fixed and the ephemeral keys seeded (session_new_seeded), the
 * same as in tests/unit/test-session.c, so that its recorded transcripts
 * (the seeds in corpus/handshake/, written by
 *   build/tests/unit/test-session --write-corpus tests/fuzz/corpus/handshake)
 * get through the handshake here and the fuzzer can mutate the frames
 * behind it. A mutated frame fails to decrypt, so what this target mostly
 * explores is the handshake, the length prefixes and the framing around
 * them. */
#include <stdio.h>

#include "fuzz.h"
#include "session.h"
#include "wire.h"

/* Must match tests/unit/test-session.c. */
#define HS_FLEET "shoal handshake test fleet key.!"
#define HS_SEED_I "shoal handshake initiator eph..!"
#define HS_SEED_R "shoal handshake responder eph..!"
#define HS_DEVICE_A "shoal handshake device A key...!"
#define HS_DEVICE_B "shoal handshake device B key...!"

#define U8(s) ((const uint8_t *)(s))

static void check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz-handshake: invariant broken: %s\n", what);
		abort();
	}
}

struct run {
	struct session *s;
	crypto_generichash_state log; /* everything observable, in order */
	bool established;
	bool sent_goodbye;
};

static void log_event(struct run *r, uint8_t what, const uint8_t *p, size_t n)
{
	uint8_t len[8];

	wr_le64(len, n);
	crypto_generichash_update(&r->log, &what, 1);
	crypto_generichash_update(&r->log, len, sizeof(len));
	if (n)
		crypto_generichash_update(&r->log, p, n);
}

static int send_msg(struct run *r, const struct msg *m)
{
	struct wbuf w = { 0 };
	int k;

	check(wire_encode(m, &w) == 0, "wire_encode of a fixed message");
	k = session_send(r->s, w.p, w.len, m->type == MSG_GOODBYE);
	wbuf_free(&w);
	return k;
}

static int cb_send(void *ud, const uint8_t *p, size_t n)
{
	log_event(ud, 's', p, n);
	return 0;
}

static int cb_established(void *ud, const uint8_t pub[32])
{
	struct run *r = ud;
	struct msg m = { .type = MSG_HELLO,
			 .hello = { .version = 1, .product = "fuzz", .product_len = 4 } };

	check(!r->established, "on_established once");
	r->established = true;
	log_event(r, 'e', pub, 32);
	return send_msg(r, &m);
}

/* Answers as a daemon would: PONG to PING, GOODBYE to GOODBYE, a
 * protocol error to a frame that does not decode. */
static int cb_frame(void *ud, const uint8_t *p, size_t n)
{
	struct run *r = ud;
	struct msg in, out;
	int k;

	check(r->established, "no frame before on_established");
	check(n >= 1 && p[0] != MSG_IDENT, "frames are typed, IDENT is the session's");
	log_event(r, 'f', p, n);
	if (wire_decode(p, n, &in, NULL) < 0) {
		out = (struct msg){ .type = MSG_GOODBYE, .goodbye.reason = GOODBYE_PROTOCOL_ERROR };
		if (!r->sent_goodbye && (k = send_msg(r, &out)) < 0)
			return k;
		r->sent_goodbye = true;
		return -EBADMSG;
	}
	switch (in.type) {
	case MSG_PING:
		out = (struct msg){ .type = MSG_PONG, .pong.nonce = in.ping.nonce };
		return r->sent_goodbye ? 0 : send_msg(r, &out);
	case MSG_GOODBYE:
		if (r->sent_goodbye)
			return 0;
		r->sent_goodbye = true;
		out = (struct msg){ .type = MSG_GOODBYE, .goodbye.reason = GOODBYE_SHUTDOWN };
		return send_msg(r, &out);
	case MSG_IDENT:
	case MSG_HELLO:
	case MSG_RELEASES:
	case MSG_GET_MANIFEST:
	case MSG_MANIFEST_PART:
	case MSG_GET_KEYRING:
	case MSG_KEYRING:
	case MSG_BITFIELD:
	case MSG_HAVE:
	case MSG_REQUEST:
	case MSG_CHUNK:
	case MSG_NOT_FOUND:
	case MSG_CANCEL:
	case MSG_REPORT:
	case MSG_COMMAND:
	case MSG_PONG:
		break;
	}
	return 0;
}

static const struct session_ops ops = {
	.send = cb_send,
	.on_established = cb_established,
	.on_frame = cb_frame,
};

/* Piece sizes from a fixed sequence: mostly tiny, sometimes a few hundred. */
static size_t next_piece(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return 1 + (size_t)(*x % ((*x >> 32) % 4 == 0 ? 300 : 5));
}

static int run_one(bool initiator, const uint8_t *data, size_t size, bool pieces, uint8_t digest[32])
{
	static uint8_t sk_a[SECKEY_SIZE], sk_b[SECKEY_SIZE];
	static bool keys_done;
	struct run r = { 0 };
	uint64_t x = 0x9e3779b97f4a7c15u ^ size;
	size_t at = 0;
	int k;

	if (!keys_done) {
		uint8_t pk[PUBKEY_SIZE];

		check(sodium_init() >= 0, "sodium_init");
		crypto_sign_seed_keypair(pk, sk_a, U8(HS_DEVICE_A));
		crypto_sign_seed_keypair(pk, sk_b, U8(HS_DEVICE_B));
		keys_done = true;
	}
	crypto_generichash_init(&r.log, NULL, 0, 32);
	check(session_new_seeded(initiator, U8(HS_FLEET), initiator ? sk_a : sk_b, &ops, &r,
				 U8(initiator ? HS_SEED_I : HS_SEED_R), &r.s) == 0,
	      "session_new_seeded");
	check(session_start(r.s) == 0, "session_start");
	k = 0;
	while (at < size && k == 0) {
		size_t n = pieces ? next_piece(&x) : size;

		if (n > size - at)
			n = size - at;
		k = session_feed(r.s, data + at, n);
		at += n;
	}
	if (k < 0) {
		check(k == -EBADMSG || k == -EACCES || k == -EKEYREJECTED || k == -EPIPE, "a documented error");
		check(session_error(r.s)[0] != '\0', "an error says why");
		check(session_feed(r.s, U8(""), 1) == k, "errors stick");
	}
	check(session_established(r.s) == r.established, "established as reported");
	log_event(&r, 'r', (const uint8_t *)&k, sizeof(k));
	crypto_generichash_final(&r.log, digest, 32);
	session_free(r.s);
	return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	for (int role = 0; role < 2; role++) {
		uint8_t whole[32], split[32];
		int k1 = run_one(role == 1, data, size, false, whole);
		int k2 = run_one(role == 1, data, size, true, split);

		check(k1 == k2, "the same result whatever the split");
		check(!memcmp(whole, split, 32), "the same bytes sent and frames seen whatever the split");
	}
	return 0;
}
