/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>

#include "session.h"
#include "wire.h"

#define HS_MAGIC "SHP1"
#define HS_VERSION 1u
#define HS_BODY_SIZE 40u /* what the mac covers of its own message */

/* The spec's domain strings, used without a terminating NUL. */
#define LABEL_MAC1 "shoal hs m1"
#define LABEL_MAC2 "shoal hs m2"
#define LABEL_SESSION "shoal session"
#define LABEL_IDENT "shoal ident"
#define LABEL_TEST_HEADER "shoal test header" /* session_new_seeded() only */

#define IDENT_FRAME_SIZE (1u + PUBKEY_SIZE + SIG_SIZE)
#define IDENT_SIGNED_SIZE (sizeof(LABEL_IDENT) - 1 + HASH_SIZE + 1)

/* The receive buffer grows with what has arrived (at least doubling, at
 * least RX_CAP_MIN, never past the announced length), and a buffer larger
 * than RX_CAP_KEEP is given back after its frame: an idle connection that
 * once carried a 4 MiB chunk holds no 4 MiB. A chunk of the default
 * maximum (256 KiB) and its header fit the kept buffer, so a stream of
 * them costs no allocation per frame. */
#define RX_CAP_MIN 4096u
#define RX_CAP_KEEP (256u * 1024 + 8192)

_Static_assert(SESSION_HEADER_SIZE == crypto_secretstream_xchacha20poly1305_HEADERBYTES, "header size");
_Static_assert(FRAME_ABYTES == crypto_secretstream_xchacha20poly1305_ABYTES, "frame overhead");
_Static_assert(SESSION_KEY_SIZE == crypto_generichash_KEYBYTES, "fleet key is a BLAKE2b key");
_Static_assert(HASH_SIZE == crypto_kx_SESSIONKEYBYTES, "session key size");
_Static_assert(32 == crypto_kx_PUBLICKEYBYTES && 32 == crypto_kx_SECRETKEYBYTES && 32 == crypto_kx_SEEDBYTES,
	       "X25519 sizes");
_Static_assert(PUBKEY_SIZE == crypto_sign_PUBLICKEYBYTES && SECKEY_SIZE == crypto_sign_SECRETKEYBYTES &&
		       SIG_SIZE == crypto_sign_BYTES,
	       "Ed25519 sizes");
_Static_assert(SESSION_HS_SIZE == HS_BODY_SIZE + HASH_SIZE, "M1/M2 size");
_Static_assert(FRAME_LEN_MAX <= UINT32_MAX, "a length prefix is a u32");

/* Everything secret, in one guarded allocation that sodium_free() wipes.
 * Each key is also wiped as soon as the handshake is done with it. */
struct secrets {
	uint8_t fleet[SESSION_KEY_SIZE];
	uint8_t device_sk[SECKEY_SIZE];
	uint8_t eph_sk[crypto_kx_SECRETKEYBYTES];
	uint8_t rx_key[crypto_kx_SESSIONKEYBYTES]; /* until the peer's header arrives */
	uint8_t seed[32];                          /* session_new_seeded() only */
	crypto_secretstream_xchacha20poly1305_state tx;
	crypto_secretstream_xchacha20poly1305_state rx;
};

enum rx_phase {
	RX_HANDSHAKE, /* M1 (responder) or M2 (initiator) */
	RX_HEADER,
	RX_LENGTH,
	RX_BODY,
	RX_CLOSED, /* after the peer's GOODBYE */
};

struct session {
	struct session_ops ops;
	void *userdata;
	struct secrets *k;
	bool initiator;
	bool seeded;
	bool started;
	bool established; /* the peer's IDENT verified */
	bool tx_closed;   /* we sent GOODBYE */
	int error;        /* sticky: once set, session_feed() returns it */
	bool tx_broken;   /* send failed: our stream is lost too */

	uint8_t eph_pk[crypto_kx_PUBLICKEYBYTES];
	uint8_t m1[SESSION_HS_SIZE];
	uint8_t m2[SESSION_HS_SIZE];
	uint8_t h[HASH_SIZE]; /* the transcript hash H(M1 || M2) */
	uint8_t peer_pub[PUBKEY_SIZE];

	enum rx_phase phase;
	uint8_t small[SESSION_HS_SIZE]; /* M1/M2, header or length prefix being gathered */
	size_t small_got;
	uint32_t frame_len;
	uint8_t *buf; /* the ciphertext of the frame being gathered */
	size_t buf_got;
	size_t buf_cap;
	uint64_t rx_offset; /* bytes of the peer's stream consumed: for messages */
	uint64_t rx_frames;

	struct perr err;
};

_printf_(3, 4) static int say(struct session *s, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->err.msg, sizeof(s->err.msg), fmt, ap);
	va_end(ap);
	return code;
}

/* An error that ends the session. The first one wins: a callback that
 * failed inside session_send() called from on_frame has already set it. */
_printf_(3, 4) static int fail(struct session *s, int code, const char *fmt, ...)
{
	va_list ap;

	if (s->error)
		return s->error;
	va_start(ap, fmt);
	vsnprintf(s->err.msg, sizeof(s->err.msg), fmt, ap);
	va_end(ap);
	s->error = code;
	return code;
}

static int callback_failed(struct session *s, int k, const char *which)
{
	return fail(s, k, "%s callback failed: %s", which, strerror(-k));
}

/* After send failed, the peer's decryption is out of step with ours (or the
 * connection is gone): not even a GOODBYE can follow. */
static int send_failed(struct session *s, int k)
{
	s->tx_broken = true;
	return callback_failed(s, k, "send");
}

static int session_new_internal(bool initiator, const uint8_t fleet_key[SESSION_KEY_SIZE],
				const uint8_t device_sk[SECKEY_SIZE], const struct session_ops *ops, void *userdata,
				const uint8_t *seed, struct session **ret)
{
	_cleanup_(session_freep) struct session *s = NULL;

	if (!ops || !ops->send || !ops->on_established || !ops->on_frame)
		return -EINVAL;
	/* sodium_malloc() needs it; it is cheap after the first call */
	if (sodium_init() < 0)
		return -EIO;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->k = sodium_malloc(sizeof(*s->k));
	if (!s->k)
		return -ENOMEM;
	memset(s->k, 0, sizeof(*s->k));
	s->ops = *ops;
	s->userdata = userdata;
	s->initiator = initiator;
	s->phase = RX_HANDSHAKE;
	memcpy(s->k->fleet, fleet_key, SESSION_KEY_SIZE);
	memcpy(s->k->device_sk, device_sk, SECKEY_SIZE);
	if (seed) {
		s->seeded = true;
		memcpy(s->k->seed, seed, sizeof(s->k->seed));
		crypto_kx_seed_keypair(s->eph_pk, s->k->eph_sk, seed);
	} else {
		crypto_kx_keypair(s->eph_pk, s->k->eph_sk);
	}
	*ret = TAKE_PTR(s);
	return 0;
}

int session_new(bool initiator, const uint8_t fleet_key[SESSION_KEY_SIZE], const uint8_t device_sk[64],
		const struct session_ops *ops, void *userdata, struct session **ret)
{
	return session_new_internal(initiator, fleet_key, device_sk, ops, userdata, NULL, ret);
}

int session_new_seeded(bool initiator, const uint8_t fleet_key[SESSION_KEY_SIZE], const uint8_t device_sk[64],
		       const struct session_ops *ops, void *userdata, const uint8_t seed[32],
		       struct session **ret)
{
	return session_new_internal(initiator, fleet_key, device_sk, ops, userdata, seed, ret);
}

void session_free(struct session *s)
{
	if (!s)
		return;
	sodium_free(s->k); /* wipes */
	free(s->buf);
	free(s);
}

bool session_established(const struct session *s)
{
	return s->established;
}

const uint8_t *session_peer_pub(const struct session *s)
{
	return s->established ? s->peer_pub : NULL;
}

const char *session_error(const struct session *s)
{
	return s->err.msg;
}

size_t session_rx_capacity(const struct session *s)
{
	return s->buf_cap;
}

/* BLAKE2b-256 keyed with the fleet secret over label || a || b. */
static void fleet_mac(const struct session *s, const char *label, const uint8_t *a, size_t a_len,
		      const uint8_t *b, size_t b_len, uint8_t out[HASH_SIZE])
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, s->k->fleet, SESSION_KEY_SIZE, HASH_SIZE);
	crypto_generichash_update(&st, (const uint8_t *)label, strlen(label));
	crypto_generichash_update(&st, a, a_len);
	if (b_len)
		crypto_generichash_update(&st, b, b_len);
	crypto_generichash_final(&st, out, HASH_SIZE);
	sodium_memzero(&st, sizeof(st));
}

/* The first 40 bytes of M1 or M2: magic, version, flags, reserved, key. */
static void hs_body(const struct session *s, uint8_t out[SESSION_HS_SIZE])
{
	memcpy(out, HS_MAGIC, 4);
	out[4] = HS_VERSION;
	out[5] = 0; /* flags */
	wr_le16(out + 6, 0);
	memcpy(out + 8, s->eph_pk, crypto_kx_PUBLICKEYBYTES);
}

static int hs_check_form(struct session *s, const uint8_t *m, const char *name)
{
	if (memcmp(m, HS_MAGIC, 4) != 0)
		return fail(s, -EBADMSG, "%s: bad magic (not a shoal peer)", name);
	if (m[4] != HS_VERSION)
		return fail(s, -EBADMSG, "%s: handshake version %u, this side speaks %u", name, m[4], HS_VERSION);
	if (m[5] != 0 || rd_le16(m + 6) != 0)
		return fail(s, -EBADMSG, "%s: reserved flags 0x%02x 0x%04x are not zero", name, m[5], rd_le16(m + 6));
	return 0;
}

/* tx/rx = BLAKE2b-256(key = K_fleet, "shoal session" || kx key || H). */
static void session_key(const struct session *s, const uint8_t kx_key[HASH_SIZE], uint8_t out[HASH_SIZE])
{
	fleet_mac(s, LABEL_SESSION, kx_key, HASH_SIZE, s->h, HASH_SIZE, out);
}

/* Appends one encrypted frame (length prefix and ciphertext) to out, which
 * has room for 4 + n + FRAME_ABYTES bytes. */
static void frame_seal(struct session *s, const uint8_t *plain, size_t n, uint8_t tag, uint8_t *out)
{
	wr_le32(out, (uint32_t)(n + FRAME_ABYTES));
	crypto_secretstream_xchacha20poly1305_push(&s->k->tx, out + 4, NULL, plain, n, NULL, 0, tag);
}

/* With both M1 and M2 known: H, the session keys, our push stream and our
 * IDENT, written to out (header, then the IDENT frame). The fleet secret,
 * the ephemeral key and the device key are wiped here: nothing after the
 * handshake needs them. */
static int derive(struct session *s, const uint8_t peer_eph[crypto_kx_PUBLICKEYBYTES], uint8_t *out)
{
	uint8_t kx_rx[crypto_kx_SESSIONKEYBYTES], kx_tx[crypto_kx_SESSIONKEYBYTES], tx_key[HASH_SIZE];
	uint8_t signed_msg[IDENT_SIGNED_SIZE], ident[IDENT_FRAME_SIZE];
	crypto_generichash_state st;
	int k;

	crypto_generichash_init(&st, NULL, 0, HASH_SIZE);
	crypto_generichash_update(&st, s->m1, SESSION_HS_SIZE);
	crypto_generichash_update(&st, s->m2, SESSION_HS_SIZE);
	crypto_generichash_final(&st, s->h, HASH_SIZE);

	if (s->initiator)
		k = crypto_kx_client_session_keys(kx_rx, kx_tx, s->eph_pk, s->k->eph_sk, peer_eph);
	else
		k = crypto_kx_server_session_keys(kx_rx, kx_tx, s->eph_pk, s->k->eph_sk, peer_eph);
	sodium_memzero(s->k->eph_sk, sizeof(s->k->eph_sk));
	if (k != 0)
		return fail(s, -EKEYREJECTED, "%s: the peer's ephemeral key is not a usable X25519 key",
			    s->initiator ? "M2" : "M1");
	session_key(s, kx_rx, s->k->rx_key);
	session_key(s, kx_tx, tx_key);
	sodium_memzero(kx_rx, sizeof(kx_rx));
	sodium_memzero(kx_tx, sizeof(kx_tx));
	sodium_memzero(s->k->fleet, sizeof(s->k->fleet));

	if (s->seeded) {
		/* init_pull with a header is exactly init_push having drawn
		 * that header: the state is HChaCha20(key, header) either way */
		crypto_generichash(out, SESSION_HEADER_SIZE, (const uint8_t *)LABEL_TEST_HEADER,
				   sizeof(LABEL_TEST_HEADER) - 1, s->k->seed, sizeof(s->k->seed));
		crypto_secretstream_xchacha20poly1305_init_pull(&s->k->tx, out, tx_key);
	} else {
		crypto_secretstream_xchacha20poly1305_init_push(&s->k->tx, out, tx_key);
	}
	sodium_memzero(tx_key, sizeof(tx_key));

	memcpy(signed_msg, LABEL_IDENT, sizeof(LABEL_IDENT) - 1);
	memcpy(signed_msg + sizeof(LABEL_IDENT) - 1, s->h, HASH_SIZE);
	signed_msg[IDENT_SIGNED_SIZE - 1] = s->initiator ? 0 : 1;
	ident[0] = MSG_IDENT;
	memcpy(ident + 1, s->k->device_sk + 32, PUBKEY_SIZE); /* libsodium's sk is seed || pk */
	crypto_sign_detached(ident + 1 + PUBKEY_SIZE, NULL, signed_msg, sizeof(signed_msg), s->k->device_sk);
	sodium_memzero(s->k->device_sk, sizeof(s->k->device_sk));
	frame_seal(s, ident, sizeof(ident), crypto_secretstream_xchacha20poly1305_TAG_MESSAGE,
		   out + SESSION_HEADER_SIZE);
	return 0;
}

#define FLIGHT_MAX (SESSION_HS_SIZE + SESSION_HEADER_SIZE + 4 + IDENT_FRAME_SIZE + FRAME_ABYTES)

static int send_flight(struct session *s, const uint8_t *p, size_t n)
{
	int k = s->ops.send(s->userdata, p, n);

	if (k < 0)
		return send_failed(s, k);
	return 0;
}

int session_start(struct session *s)
{
	uint8_t mac[HASH_SIZE];

	if (s->started)
		return say(s, -EALREADY, "session already started");
	s->started = true;
	if (!s->initiator)
		return 0;
	hs_body(s, s->m1);
	fleet_mac(s, LABEL_MAC1, s->m1, HS_BODY_SIZE, NULL, 0, mac);
	memcpy(s->m1 + HS_BODY_SIZE, mac, HASH_SIZE);
	return send_flight(s, s->m1, SESSION_HS_SIZE);
}

/* The responder got M1: check it, answer M2 | header | IDENT. Nothing is
 * sent unless M1 proves the fleet secret. */
static int got_m1(struct session *s)
{
	uint8_t mac[HASH_SIZE], flight[FLIGHT_MAX];
	int k;

	if ((k = hs_check_form(s, s->small, "M1")) < 0)
		return k;
	fleet_mac(s, LABEL_MAC1, s->small, HS_BODY_SIZE, NULL, 0, mac);
	if (sodium_memcmp(mac, s->small + HS_BODY_SIZE, HASH_SIZE) != 0)
		return fail(s, -EACCES, "M1: wrong mac1, the peer does not hold this fleet's secret");
	memcpy(s->m1, s->small, SESSION_HS_SIZE);
	hs_body(s, s->m2);
	fleet_mac(s, LABEL_MAC2, s->m1, SESSION_HS_SIZE, s->m2, HS_BODY_SIZE, mac);
	memcpy(s->m2 + HS_BODY_SIZE, mac, HASH_SIZE);
	memcpy(flight, s->m2, SESSION_HS_SIZE);
	if ((k = derive(s, s->m1 + 8, flight + SESSION_HS_SIZE)) < 0)
		return k;
	return send_flight(s, flight, sizeof(flight));
}

/* The initiator got M2: check it, answer header | IDENT. */
static int got_m2(struct session *s)
{
	uint8_t mac[HASH_SIZE], flight[FLIGHT_MAX - SESSION_HS_SIZE];
	int k;

	if ((k = hs_check_form(s, s->small, "M2")) < 0)
		return k;
	fleet_mac(s, LABEL_MAC2, s->m1, SESSION_HS_SIZE, s->small, HS_BODY_SIZE, mac);
	if (sodium_memcmp(mac, s->small + HS_BODY_SIZE, HASH_SIZE) != 0)
		return fail(s, -EACCES, "M2: wrong mac2, the peer does not hold this fleet's secret");
	memcpy(s->m2, s->small, SESSION_HS_SIZE);
	if ((k = derive(s, s->m2 + 8, flight)) < 0)
		return k;
	return send_flight(s, flight, sizeof(flight));
}

static int got_header(struct session *s)
{
	crypto_secretstream_xchacha20poly1305_init_pull(&s->k->rx, s->small, s->k->rx_key);
	sodium_memzero(s->k->rx_key, sizeof(s->k->rx_key));
	return 0;
}

static int got_length(struct session *s)
{
	uint32_t len = rd_le32(s->small);

	if (len < FRAME_LEN_MIN || len > FRAME_LEN_MAX)
		return fail(s, -EBADMSG, "frame %" PRIu64 " at byte %" PRIu64 ": length %" PRIu32
			    " outside %u..%u", s->rx_frames + 1, s->rx_offset - 4, len, FRAME_LEN_MIN, FRAME_LEN_MAX);
	s->frame_len = len;
	s->buf_got = 0;
	return 0;
}

static int got_ident(struct session *s, const uint8_t *plain, size_t n)
{
	uint8_t signed_msg[IDENT_SIGNED_SIZE];
	struct perr err = { "" };
	struct msg m;
	int k;

	if (plain[0] != MSG_IDENT)
		return fail(s, -EBADMSG, "the peer's first frame is %s, not IDENT",
			    msg_type_name(plain[0]) ?: "of an unknown type");
	if (wire_decode(plain, n, &m, &err) < 0)
		return fail(s, -EBADMSG, "%s", err.msg);
	memcpy(signed_msg, LABEL_IDENT, sizeof(LABEL_IDENT) - 1);
	memcpy(signed_msg + sizeof(LABEL_IDENT) - 1, s->h, HASH_SIZE);
	signed_msg[IDENT_SIGNED_SIZE - 1] = s->initiator ? 1 : 0; /* the peer's role */
	if (crypto_sign_verify_detached(m.ident.sig, signed_msg, sizeof(signed_msg), m.ident.pub) != 0)
		return fail(s, -EKEYREJECTED, "IDENT: the signature does not verify over this handshake");
	memcpy(s->peer_pub, m.ident.pub, PUBKEY_SIZE);
	s->established = true;
	k = s->ops.on_established(s->userdata, s->peer_pub);
	if (k < 0)
		return callback_failed(s, k, "on_established");
	return 0;
}

static void rx_buffer_release(struct session *s)
{
	if (s->buf_cap > RX_CAP_KEEP) {
		free(s->buf);
		s->buf = NULL;
		s->buf_cap = 0;
	}
	s->buf_got = 0;
}

static int got_frame(struct session *s)
{
	_cleanup_(freep) uint8_t *plain = NULL;
	unsigned long long n;
	uint8_t tag;
	bool final;
	int k;

	s->rx_frames++;
	plain = malloc(s->frame_len - FRAME_ABYTES);
	if (!plain)
		return fail(s, -ENOMEM, "out of memory for a frame of %" PRIu32 " bytes", s->frame_len);
	if (crypto_secretstream_xchacha20poly1305_pull(&s->k->rx, plain, &n, &tag, s->buf, s->frame_len, NULL, 0) !=
	    0)
		return fail(s, -EKEYREJECTED, "frame %" PRIu64 " (ending at byte %" PRIu64 ") does not decrypt",
			    s->rx_frames, s->rx_offset);
	rx_buffer_release(s);
	if (tag != crypto_secretstream_xchacha20poly1305_TAG_MESSAGE &&
	    tag != crypto_secretstream_xchacha20poly1305_TAG_FINAL)
		return fail(s, -EBADMSG, "frame %" PRIu64 " has the secretstream tag 0x%02x", s->rx_frames, tag);
	final = tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL;
	if (final != (plain[0] == MSG_GOODBYE))
		return fail(s, -EBADMSG, "frame %" PRIu64 ": %s", s->rx_frames,
			    final ? "a FINAL frame that is not GOODBYE" : "a GOODBYE that is not FINAL");
	if (!s->established)
		return got_ident(s, plain, (size_t)n);
	if (plain[0] == MSG_IDENT)
		return fail(s, -EBADMSG, "frame %" PRIu64 " is a second IDENT", s->rx_frames);
	if (final)
		s->phase = RX_CLOSED;
	k = s->ops.on_frame(s->userdata, plain, (size_t)n);
	if (k < 0)
		return callback_failed(s, k, "on_frame");
	return 0;
}

/* Makes room for `need` bytes of the current frame (need <= frame_len). */
static int rx_reserve(struct session *s, size_t need)
{
	size_t cap;
	uint8_t *p;

	if (need <= s->buf_cap)
		return 0;
	cap = s->buf_cap * 2;
	if (cap < RX_CAP_MIN)
		cap = RX_CAP_MIN;
	if (cap < need)
		cap = need;
	if (cap > s->frame_len)
		cap = s->frame_len;
	p = realloc(s->buf, cap);
	if (!p)
		return fail(s, -ENOMEM, "out of memory for a frame of %" PRIu32 " bytes", s->frame_len);
	s->buf = p;
	s->buf_cap = cap;
	return 0;
}

/* Gathers a fixed-size piece (M1/M2, header, length prefix) in s->small.
 * Returns the bytes taken; *done says whether the piece is complete. */
static size_t take_small(struct session *s, size_t want, const uint8_t *p, size_t n, bool *done)
{
	size_t take = want - s->small_got;

	if (take > n)
		take = n;
	memcpy(s->small + s->small_got, p, take);
	s->small_got += take;
	*done = s->small_got == want;
	if (*done)
		s->small_got = 0;
	return take;
}

int session_feed(struct session *s, const uint8_t *p, size_t n)
{
	if (s->error)
		return s->error;
	if (!s->started)
		return say(s, -EINVAL, "session_feed before session_start");

	while (n > 0) {
		size_t take = 0;
		bool done = false;
		int k = 0;

		switch (s->phase) {
		case RX_HANDSHAKE:
			take = take_small(s, SESSION_HS_SIZE, p, n, &done);
			s->rx_offset += take;
			if (done) {
				k = s->initiator ? got_m2(s) : got_m1(s);
				s->phase = RX_HEADER;
			}
			break;
		case RX_HEADER:
			take = take_small(s, SESSION_HEADER_SIZE, p, n, &done);
			s->rx_offset += take;
			if (done) {
				k = got_header(s);
				s->phase = RX_LENGTH;
			}
			break;
		case RX_LENGTH:
			take = take_small(s, 4, p, n, &done);
			s->rx_offset += take;
			if (done) {
				k = got_length(s);
				s->phase = RX_BODY;
			}
			break;
		case RX_BODY:
			take = s->frame_len - s->buf_got;
			if (take > n)
				take = n;
			k = rx_reserve(s, s->buf_got + take);
			if (k < 0)
				break;
			memcpy(s->buf + s->buf_got, p, take);
			s->buf_got += take;
			s->rx_offset += take;
			if (s->buf_got == s->frame_len) {
				s->phase = RX_LENGTH; /* got_frame() may close it */
				k = got_frame(s);
			}
			break;
		case RX_CLOSED:
			return fail(s, -EPIPE, "%zu bytes after the peer's GOODBYE", n);
		}
		if (k < 0)
			return k;
		/* a callback may have failed inside a session_send() it made */
		if (s->error)
			return s->error;
		p += take;
		n -= take;
	}
	return 0;
}

int session_send(struct session *s, const uint8_t *plain, size_t n, bool final)
{
	_cleanup_(freep) uint8_t *out = NULL;
	int k;

	if (s->tx_broken)
		return s->error;
	if (s->error && !(final && n >= 1 && plain[0] == MSG_GOODBYE && s->established && !s->tx_closed))
		return s->error; /* only the GOODBYE that says why can follow a failure */
	if (!s->established)
		return say(s, -ENOTCONN, "session_send before the handshake completed");
	if (s->tx_closed)
		return say(s, -EPIPE, "session_send after our GOODBYE");
	if (n < 1)
		return say(s, -EINVAL, "session_send of an empty frame");
	if (n > FRAME_MAX)
		return say(s, -EMSGSIZE, "frame of %zu bytes exceeds %u", n, FRAME_MAX);
	if (plain[0] == MSG_IDENT)
		return say(s, -EINVAL, "IDENT is the session's to send");
	if (final != (plain[0] == MSG_GOODBYE))
		return say(s, -EINVAL, "%s", final ? "only GOODBYE is FINAL" : "GOODBYE must be FINAL");
	out = malloc(4 + n + FRAME_ABYTES);
	if (!out)
		return say(s, -ENOMEM, "out of memory for a frame of %zu bytes", n);
	frame_seal(s, plain, n,
		   final ? crypto_secretstream_xchacha20poly1305_TAG_FINAL
			 : crypto_secretstream_xchacha20poly1305_TAG_MESSAGE,
		   out);
	if (final)
		s->tx_closed = true;
	k = s->ops.send(s->userdata, out, 4 + n + FRAME_ABYTES);
	if (k < 0)
		return send_failed(s, k);
	return 0;
}
