/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* One peer connection's handshake, framing and encryption
 * (docs/protocol.md, "Handshake" and "Frames"), as a caller-driven state
 * machine: the caller feeds it the bytes that arrived, in pieces of any
 * size, and it hands back bytes to write and decrypted frames through
 * callbacks. No sockets, no clock: timeouts belong to the caller.
 *
 *   initiator                                responder
 *   session_start(): send M1           --->  M1 checked (a bad one: nothing is sent)
 *   M2 checked                         <---  M2 | header | IDENT   (one send)
 *   header | IDENT                     --->
 *   IDENT checked: on_established()          IDENT checked: on_established()
 *   session_send() <-> on_frame() ...
 *
 * Decisions where the spec is silent:
 * - Each side sends its secretstream header and its IDENT as soon as it has
 *   its keys, so the responder answers M1 with M2, header and IDENT in one
 *   write: the handshake takes one round trip. The two directions are
 *   independent streams, so this is the exchange the spec draws, overlapped.
 * - Frames carry no secretstream additional data; the length prefix is not
 *   authenticated separately (a changed one makes the frame fail to decrypt).
 * - Only the tags MESSAGE and FINAL occur. A FINAL frame must be a GOODBYE
 *   and a GOODBYE must be FINAL, in both directions.
 * - IDENT appears exactly once per direction, as the first frame; the
 *   session consumes it. Any other frame before it, or an IDENT after it,
 *   is malformed (-EBADMSG).
 * - The handshake's reserved fields (flags, the u16 after them) must be 0.
 * - Memory: a frame's ciphertext buffer grows with the bytes that arrived
 *   (at least doubling, from 4 KiB, never past the announced length) and is
 *   given back after its frame if it grew past 64 KiB; the plaintext gets
 *   its own buffer while on_frame runs, so a full frame peaks at twice
 *   FRAME_MAX.
 * - Errors are final: once session_feed() has failed, or a callback has,
 *   every later session_feed() returns the same error, and so does
 *   session_send() for anything but one GOODBYE: the spec answers a
 *   misbehaving peer with GOODBYE(protocol error) "if possible", and our
 *   stream is intact unless send itself failed (then nothing more goes out).
 *   Misuse (a call in the wrong state or with bad arguments) is reported
 *   but changes nothing. */
#pragma once

#include <sodium.h>

#include "util.h"

#define SESSION_KEY_SIZE 32u   /* the fleet secret */
#define SESSION_HS_SIZE 72u    /* M1, M2 */
#define SESSION_HEADER_SIZE 24u /* crypto_secretstream_xchacha20poly1305_HEADERBYTES */

struct session;

/* The callbacks. Each returns 0 or a negative errno; an error stops the
 * session and is what session_feed()/session_send() return. They may call
 * session_send() (on_established and on_frame typically do), never
 * session_feed() or session_free(): to drop the connection, return an
 * error and free the session after session_feed() returns. */
struct session_ops {
	/* Bytes to write to the peer, in order. p is valid during the call only. */
	int (*send)(void *userdata, const uint8_t *p, size_t n);
	/* The peer proved it holds the fleet secret and the device key whose
	 * public half is given (its device id). Called once, before any
	 * on_frame. session_send() works from here on. */
	int (*on_established)(void *userdata, const uint8_t peer_device_pub[32]);
	/* One decrypted frame: the type byte and its payload (n >= 1), not yet
	 * decoded (run wire_decode()). Valid during the call only. The last
	 * frame is the peer's GOODBYE; no frame follows it. */
	int (*on_frame)(void *userdata, const uint8_t *plain, size_t n);
};

/* A session for one connection. fleet_key (32 bytes) and device_sk
 * (libsodium's 64-byte Ed25519 secret key) are copied into guarded memory,
 * and each copy is wiped as soon as the handshake no longer needs it; ops
 * is copied. Returns 0, -EINVAL (a NULL callback) or -ENOMEM; *ret (free it
 * with session_free()) is written only on success. */
int session_new(bool initiator, const uint8_t fleet_key[SESSION_KEY_SIZE], const uint8_t device_sk[64],
		const struct session_ops *ops, void *userdata, struct session **ret);

/* For tests and fuzzing only: like session_new(), but the ephemeral X25519
 * key pair comes from crypto_kx_seed_keypair(seed) and the secretstream
 * header from the seed too, so that transcripts are reproducible. A seed
 * used twice repeats keys and nonces: never use this on a real connection. */
int session_new_seeded(bool initiator, const uint8_t fleet_key[SESSION_KEY_SIZE], const uint8_t device_sk[64],
		       const struct session_ops *ops, void *userdata, const uint8_t seed[32],
		       struct session **ret);

/* Wipes every key and frees everything. NULL is fine. */
void session_free(struct session *s);
static inline void session_freep(struct session **s)
{
	session_free(*s);
}

/* Call once, before feeding: an initiator sends M1 (returns what send
 * returned); a responder does nothing. -EALREADY the second time. */
int session_start(struct session *s);

/* Consumes n bytes from the peer, in any split (one byte at a time works):
 * may call send, on_established and on_frame. Returns 0 when every byte was
 * taken, or a negative errno, after which the connection must be closed:
 *   -EBADMSG      malformed: bad magic, version or reserved bits, a length
 *                 prefix outside 18..FRAME_MAX+17, a missing or repeated
 *                 IDENT, a bad tag, a GOODBYE not FINAL or the reverse
 *   -EACCES       the peer does not hold the fleet secret (mac1 or mac2)
 *   -EKEYREJECTED a frame that does not decrypt, an IDENT signature that
 *                 does not verify over this handshake, a bad X25519 key
 *   -EPIPE        bytes after the peer's GOODBYE
 *   -ENOMEM, or whatever a callback returned.
 * -EINVAL, changing nothing, before session_start(). A frame is buffered
 * as its bytes arrive: an announced length allocates nothing by itself. */
int session_feed(struct session *s, const uint8_t *p, size_t n);

/* Encrypts one frame (a type byte and its payload, 1..FRAME_MAX bytes, as
 * wire_encode() writes it) and sends it. final must be true exactly for a
 * GOODBYE, which ends this direction. Returns 0, or what send returned (the
 * session is then dead), or without sending anything: the session's error
 * after a failure (except for a GOODBYE, see above), -ENOTCONN before
 * on_established, -EPIPE after our GOODBYE, -EINVAL for an IDENT (the
 * session sends its own), an empty frame or final not matching GOODBYE,
 * -EMSGSIZE over FRAME_MAX, -ENOMEM. */
int session_send(struct session *s, const uint8_t *plain, size_t n, bool final);

/* True from on_established on (and still after a GOODBYE). */
bool session_established(const struct session *s);

/* The peer's device public key (32 bytes) once established, else NULL.
 * Owned by the session. */
const uint8_t *session_peer_pub(const struct session *s);

/* Why the last failing call failed, in words for a log ("" if nothing
 * failed). Owned by the session, valid until the next call. */
const char *session_error(const struct session *s);

/* For tests: the bytes the receive buffer holds allocated right now. */
size_t session_rx_capacity(const struct session *s);
