/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The peer protocol's messages (docs/protocol.md, "Frames"): one struct per
 * message type, a decoder that enforces every bound of the message table,
 * and an encoder that refuses what the decoder would refuse. Pure: no I/O,
 * no allocation in the decoder.
 *
 * A frame's plaintext is `u8 type || payload`; session.h moves it through
 * the encrypted stream and this module gives it meaning. Encodings are
 * canonical: each message has exactly one encoding, so
 * wire_encode(wire_decode(p)) gives back p byte for byte.
 *
 * Where the spec is silent this module decides, and says so at the field:
 * lists of at most a few KiB (RELEASES, HAVE, REQUEST) are copied into the
 * struct; byte runs of variable length point into the decoded input. */
#pragma once

#include "chunker.h"
#include "codec.h"
#include "fleet.h"
#include "keyring.h"
#include "manifest.h"
#include "sig.h"

#define WIRE_VERSION 1u

/* The largest frame plaintext (type byte + payload): a whole chunk of the
 * largest allowed size and its header fit in one frame. */
#define FRAME_MAX (4u * 1024 * 1024 + 4u * 1024)
/* What secretstream adds to every frame: 1 tag byte and a 16-byte MAC. */
#define FRAME_ABYTES 17u
/* Bounds of the u32 length prefix in front of each frame's ciphertext. */
#define FRAME_LEN_MIN (FRAME_ABYTES + 1u)
#define FRAME_LEN_MAX (FRAME_MAX + FRAME_ABYTES)

#define WIRE_PRODUCT_MAX MANIFEST_PRODUCT_MAX /* 64: HELLO product is a manifest product */
#define WIRE_NAME_MAX 64u
#define WIRE_RELEASES_MAX 64u
#define WIRE_MANIFEST_TOTAL_MAX MANIFEST_MAX_SIZE     /* 40 MiB */
#define WIRE_MANIFEST_PART_MAX (256u * 1024)
#define WIRE_KEYRING_MAX ((uint32_t)KEYRING_MAX_SIZE) /* "keyring limit" */
#define WIRE_BITFIELD_CHUNKS_MAX MANIFEST_MAX_CHUNKS  /* 2^20 */
#define WIRE_HAVE_MAX 1024u
#define WIRE_REQUEST_MAX 64u
#define WIRE_CHUNK_MAX CHUNKER_MAX_LIMIT /* 4 MiB of plain bytes */
#define WIRE_GOODBYE_TEXT_MAX 256u

enum msg_type {
	MSG_IDENT = 0x01,
	MSG_HELLO = 0x02,
	MSG_RELEASES = 0x03,
	MSG_GET_MANIFEST = 0x04,
	MSG_MANIFEST_PART = 0x05,
	MSG_GET_KEYRING = 0x06,
	MSG_KEYRING = 0x07,
	MSG_BITFIELD = 0x08,
	MSG_HAVE = 0x09,
	MSG_REQUEST = 0x0a,
	MSG_CHUNK = 0x0b,
	MSG_NOT_FOUND = 0x0c,
	MSG_CANCEL = 0x0d,
	MSG_REPORT = 0x0e,
	MSG_COMMAND = 0x0f,
	MSG_PING = 0x10,
	MSG_PONG = 0x11,
	MSG_GOODBYE = 0x12,
};

#define MSG_TYPE_FIRST MSG_IDENT
#define MSG_TYPE_LAST MSG_GOODBYE

enum hello_role {
	HELLO_ROLE_DEVICE = 0,
	HELLO_ROLE_GATEWAY = 1,
};

enum goodbye_reason {
	GOODBYE_SHUTDOWN = 0,
	GOODBYE_PROTOCOL_ERROR = 1,
	GOODBYE_BAD_CHUNK = 2,
	GOODBYE_BANNED = 3,
	GOODBYE_TOO_MANY_PEERS = 4,
	GOODBYE_IDLE = 5,
	GOODBYE_INCOMPATIBLE = 6,
};

#define GOODBYE_REASON_LAST GOODBYE_INCOMPATIBLE

/* Only the session sends and checks IDENT; the codec knows its layout. */
struct msg_ident {
	uint8_t pub[PUBKEY_SIZE];
	uint8_t sig[SIG_SIZE];
};

/* Strings are not NUL-terminated. product: 1..64 characters of the
 * manifest product set (A-Z a-z 0-9 . _ + : -), so that it compares byte
 * for byte with a manifest's; name: 0..64 bytes of UTF-8 text without
 * control characters (it ends up in logs). version >= 1. */
struct msg_hello {
	uint16_t version;
	uint8_t role; /* enum hello_role */
	uint16_t port; /* 0: does not accept connections */
	uint32_t load;
	const char *product;
	size_t product_len;
	const char *name;
	size_t name_len;
};

/* held <= total and 1 <= total <= 2^20 (a manifest's chunk count). */
struct release_info {
	uint8_t id[HASH_SIZE];
	uint64_t counter;
	uint32_t held;
	uint32_t total;
};

struct msg_releases {
	uint16_t n; /* 0..64 */
	struct release_info v[WIRE_RELEASES_MAX];
};

/* offset < 40 MiB (no manifest is longer). */
struct msg_get_manifest {
	uint8_t id[HASH_SIZE];
	uint32_t offset;
};

/* total 1..40 MiB; bytes: the rest of the payload, 1..256 KiB, and
 * offset + len <= total. */
struct msg_manifest_part {
	uint8_t id[HASH_SIZE];
	uint32_t total;
	uint32_t offset;
	const uint8_t *bytes;
	size_t len;
};

struct msg_get_keyring {
	uint64_t min_version;
};

/* The rest of the payload: a keyring file, 1..KEYRING_MAX_SIZE bytes. */
struct msg_keyring {
	const uint8_t *bytes;
	size_t len;
};

/* count 1..2^20; bits: ceil(count/8) bytes, bit i (LSB first) is chunk i,
 * the unused high bits of the last byte are 0. */
struct msg_bitfield {
	uint8_t id[HASH_SIZE];
	uint32_t count;
	const uint8_t *bits;
};

/* n 1..1024; every index < 2^20 (no manifest has more chunks). */
struct msg_have {
	uint8_t id[HASH_SIZE];
	uint16_t n;
	uint32_t idx[WIRE_HAVE_MAX];
};

struct msg_request {
	uint16_t n; /* 1..64 */
	uint8_t ids[WIRE_REQUEST_MAX][HASH_SIZE];
};

/* plain_len 1..4 MiB; stored: the rest of the payload, at least 1 byte.
 * For CHUNK_ENC_PLAIN (0) stored_len == plain_len; for CHUNK_ENC_ZSTD (1)
 * only the frame bounds it (chunk_decode() checks the rest). */
struct msg_chunk {
	uint8_t id[HASH_SIZE];
	uint8_t enc; /* enum chunk_enc: 0 plain, 1 zstd */
	uint32_t plain_len;
	const uint8_t *stored;
	size_t stored_len;
};

struct msg_chunk_ref { /* NOT_FOUND, CANCEL */
	uint8_t id[HASH_SIZE];
};

/* REPORT and COMMAND: struct msg_report and struct msg_command, fleet.h. */

struct msg_ping { /* PING, PONG */
	uint64_t nonce;
};

/* reason: one of enum goodbye_reason (an unknown reason is malformed);
 * text: 0..256 bytes of UTF-8 without control characters. */
struct msg_goodbye {
	uint8_t reason;
	const char *text;
	size_t text_len;
};

/* One decoded frame. The union member is the one `type` names. */
struct msg {
	enum msg_type type;
	union {
		struct msg_ident ident;
		struct msg_hello hello;
		struct msg_releases releases;
		struct msg_get_manifest get_manifest;
		struct msg_manifest_part manifest_part;
		struct msg_get_keyring get_keyring;
		struct msg_keyring keyring;
		struct msg_bitfield bitfield;
		struct msg_have have;
		struct msg_request request;
		struct msg_chunk chunk;
		struct msg_chunk_ref not_found;
		struct msg_chunk_ref cancel;
		struct msg_report report;
		struct msg_command command;
		struct msg_ping ping;
		struct msg_ping pong;
		struct msg_goodbye goodbye;
	};
};

/* Shared with fleet.c: the manifest's product alphabet, and a release or
 * chunk id read into ret. */
bool wire_product_ok(const char *s, size_t n);
int wire_rd_id(struct rd *r, uint8_t ret[HASH_SIZE], const char *what);

/* "HELLO", ..., or NULL for a type outside the table. */
const char *msg_type_name(unsigned type);

/* Decodes one frame plaintext p[0..n): the type byte and its payload,
 * which must be consumed exactly. Returns 0, or -EBADMSG with err naming
 * the message and the field: unknown type, truncation, trailing bytes, any
 * value outside its bound. *ret is written only on success; its pointers
 * (strings, bytes, bits, stored) point into p, which must outlive it.
 * Never allocates. */
int wire_decode(const uint8_t *p, size_t n, struct msg *ret, struct perr *err);

/* Appends the encoding of m (type byte and payload) to w. A message that
 * wire_decode would refuse is not written: -EINVAL, w unchanged. -ENOMEM
 * when w cannot grow (w->err keeps it, as for every wbuf writer). */
int wire_encode(const struct msg *m, struct wbuf *w);
