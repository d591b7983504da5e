/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The TXT record shoald announces with its `_shoal._tcp` mDNS service
 * (RFC 6763 key=value strings):
 *
 *   txtvers=1  id=<16 hex: device id short>  fleet=<tag>  proto=1
 *   role=device|gateway  rel=<newest release counter>  load=<connected peers>
 *
 * txtvers comes first; keys are at most 9 characters; the whole record stays
 * well under 200 bytes. A record is a hint only: the handshake decides who a
 * peer is, signatures decide what it sends.
 *
 * Parsing never trusts the strings (they come from anyone on the LAN): keys
 * are matched without regard to case, unknown keys and empty strings are
 * ignored, the first occurrence of a key wins and later ones are ignored
 * entirely (RFC 6763 6.4), a missing or different txtvers is refused, and so
 * is a malformed value of a key we know. */
#pragma once

#include "util.h"

#define TXT_VERSION 1u
#define TXT_STRING_MAX 255u /* one string, without its length byte */
#define TXT_KEY_MAX 9u
#define TXT_ID_LEN 16u      /* hex digits of the first 8 bytes of the device key */
#define TXT_FLEET_MAX 63u
#define TXT_N_STRINGS 7u    /* strings txt_format writes */
#define TXT_RECORD_MAX 200u /* txt_format's output never exceeds this */

enum txt_role {
	TXT_ROLE_DEVICE = 0,
	TXT_ROLE_GATEWAY = 1,
};

struct txt_info {
	char id[TXT_ID_LEN + 1];       /* lowercase hex, NUL-terminated */
	char fleet[TXT_FLEET_MAX + 1]; /* 1..63 bytes of clean UTF-8, NUL-terminated */
	uint32_t proto;                /* peer protocol version */
	enum txt_role role;            /* default: device */
	uint64_t rel;                  /* newest release counter held, 0: none (default) */
	uint32_t load;                 /* default 0 */
};

/* One TXT string as Avahi hands it over: bytes, not NUL-terminated. */
struct txt_string {
	const uint8_t *p;
	size_t len;
};

/* A record in DNS wire form: each string is a length byte and its bytes. */
struct txt_wire {
	uint8_t buf[TXT_RECORD_MAX];
	size_t len;
};

/* Writes t as a record, txtvers first. Refuses (-EINVAL, with err) an id
 * that is not 16 lowercase hex digits, a fleet tag that is empty, longer
 * than TXT_FLEET_MAX or not clean text, and an unknown role. *ret is
 * written only on success. */
int txt_format(const struct txt_info *t, struct txt_wire *ret, struct perr *err);

/* Parses n strings. Returns 0, -EPROTONOSUPPORT when txtvers is missing or
 * not 1, -EBADMSG when a field is missing (id, fleet, proto) or malformed
 * (err says which). id is returned in lowercase. Never allocates; *ret is
 * written only on success. */
int txt_parse(const struct txt_string *v, size_t n, struct txt_info *ret, struct perr *err);

/* Splits a record in wire form into at most cap strings pointing into
 * wire. Returns 0 and sets *ret_n, -EBADMSG when a length runs past the
 * end, -E2BIG when there are more than cap strings. */
int txt_split(const uint8_t *wire, size_t len, struct txt_string *v, size_t cap, size_t *ret_n);

/* The role's name in the record ("device", "gateway"), NULL if unknown. */
const char *txt_role_name(enum txt_role role);
