/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The payloads of REPORT (device -> gateway) and COMMAND (gateway ->
 * device), docs/protocol.md "Reports and commands". Pure: wire.c calls
 * these to decode and encode the two messages; the daemon fills and reads
 * the structs.
 *
 * Both payloads start with a u8 version. This module writes version 1. A
 * decoder reads a higher version's version-1 fields (later versions only
 * append fields) and keeps what follows as `ext`, so that an older gateway
 * still understands a newer device; encode(decode(p)) gives back p byte
 * for byte, ext included. Version 0 is malformed.
 *
 * Every list and string is bounded below; strings point into the decoded
 * input and are not NUL-terminated. */
#pragma once

#include "codec.h"
#include "manifest.h"

#define FLEET_VERSION 1u

#define REPORT_TAGS_MAX 32u
#define REPORT_TAG_KEY_MAX 32u
#define REPORT_TAG_VALUE_MAX 64u
#define REPORT_SLOT_NONE 0xffu
#define REPORT_SLOTS_MAX 16u
#define REPORT_PHASE_MAX 32u
#define REPORT_ERROR_MAX 512u
#define REPORT_HEALTH_MAX 16u
#define REPORT_HEALTH_NAME_MAX 64u
#define REPORT_HEALTH_OUTPUT_MAX 2048u
#define REPORT_INVENTORY_MAX 64u
#define REPORT_INV_KEY_MAX 64u
#define REPORT_INV_VALUE_MAX 256u

/* What a device is doing about updates. */
enum report_state {
	REPORT_IDLE = 0,           /* nothing in progress */
	REPORT_FETCHING = 1,       /* the target release's chunks are coming */
	REPORT_INSTALLING = 2,     /* the installer runs (phase says where) */
	REPORT_REBOOT_PENDING = 3, /* written, boots on trial next */
	REPORT_TRIAL = 4,          /* running the new slot on trial */
	REPORT_FAILED = 5,         /* the last attempt failed or rolled back (last_error says why) */
};
#define REPORT_STATE_LAST REPORT_FAILED

/* "idle", "fetching", ...; NULL outside the enum. */
const char *report_state_name(unsigned s);

struct report_str {
	const char *s;
	size_t len;
};

struct report_tag {
	struct report_str key, value;
};

struct report_health {
	struct report_str name;
	uint8_t ok; /* 0 failed (or timed out), 1 passed */
	struct report_str output;
};

struct report_inv {
	struct report_str key, value;
};

/* id fields of all zeroes mean "none". */
struct msg_report {
	uint8_t version;                /* >= 1 */
	uint64_t seq;                   /* counts up from 1 in every run of the device's daemon */
	uint64_t uptime_s;              /* of the daemon */
	uint64_t free_bytes;            /* free space of the state directory */
	uint64_t rx_gateway, rx_peers;  /* bytes of chunks received from gateways and from peers, ever */
	struct report_str product;      /* 1..64, the manifest product alphabet */
	struct report_str name;         /* 0..64 text */
	uint8_t n_tags;
	struct report_tag tags[REPORT_TAGS_MAX];
	uint8_t booted_slot;            /* the installed release's slot, 0..15, or REPORT_SLOT_NONE */
	uint8_t installed[HASH_SIZE];   /* the committed release (a trial is the target until committed) */
	uint64_t installed_counter;
	struct report_str installed_version; /* 0..64 text */
	uint8_t state;                  /* enum report_state */
	struct report_str phase;        /* 0..32 text: the installer phase, or "" */
	uint8_t target[HASH_SIZE];      /* the release being fetched or installed */
	uint64_t target_counter;
	uint64_t progress_done, progress_total; /* done <= total */
	struct report_str last_error;   /* 0..512 text */
	uint8_t n_health;
	struct report_health health[REPORT_HEALTH_MAX];
	uint8_t n_inv;
	struct report_inv inv[REPORT_INVENTORY_MAX];
	const uint8_t *ext;             /* a newer version's fields (version > 1 only) */
	size_t ext_len;
};

enum command_action {
	COMMAND_INSTALL = 1, /* fetch and install this release (the device still checks it) */
	COMMAND_CANCEL = 2,  /* forget an install asked for and not begun */
};
#define COMMAND_ACTION_LAST COMMAND_CANCEL

/* "install", "cancel"; NULL outside the enum. */
const char *command_action_name(unsigned a);

/* The gateway names a release; the device fetches it from the swarm,
 * checks signatures, product and floors itself, and says what happened
 * in its next REPORT. There is no way to name an image or a downgrade. */
struct msg_command {
	uint8_t version;   /* >= 1 */
	uint8_t action;    /* enum command_action */
	uint64_t campaign; /* the gateway's campaign id (>= 1), echoed in logs */
	uint8_t release[HASH_SIZE];
	uint64_t counter;  /* the release's counter, as the gateway knows it */
	const uint8_t *ext;
	size_t ext_len;
};

/* Decode from r (the rest of the frame payload, consumed exactly) into
 * *m; -EBADMSG naming the field. Encode: writes the fields (wire_encode
 * checks the result with the decoder). */
int report_decode(struct rd *r, struct msg_report *m);
int report_encode(const struct msg_report *m, struct wbuf *w);
int command_decode(struct rd *r, struct msg_command *m);
int command_encode(const struct msg_command *m, struct wbuf *w);

/* Character classes the codec enforces, for those filling a report. */
bool fleet_key_ok(const char *s, size_t n);      /* A-Z a-z 0-9 . _ - */
bool fleet_output_ok(const char *s, size_t n);   /* text, plus \n and \t */

/* Parses "customer=acme line=3" (whitespace-separated key=value, keys as
 * fleet_key_ok, 1..32 bytes, values 0..64 bytes of text without spaces)
 * into tags pointing into s. Returns the count, or -EINVAL with err
 * naming the bad word; a repeated key is an error. */
int fleet_tags_parse(const char *s, struct report_tag tags[REPORT_TAGS_MAX], struct perr *err);

/* True when every "key=value" of sel is among the tags (an empty
 * selector matches every device). sel as for fleet_tags_parse. */
bool fleet_tags_match(const struct report_tag *sel, size_t n_sel, const struct report_tag *tags, size_t n_tags);

/* Rewrites s[0..n) in place into what fleet_output_ok (or, when
 * one_line, text_is_clean) accepts: bytes that are not valid UTF-8 text
 * become '?'. Returns n. */
size_t fleet_sanitize(char *s, size_t n, bool one_line);

/* Parses what installer_boot_check writes into its report, one line per
 * check: "health NAME: ok|failed|timed out[: first line of output]";
 * other lines are skipped. Cuts text at every newline (in place); the
 * entries point into it. Returns how many (at most REPORT_HEALTH_MAX). */
size_t fleet_health_parse(char *text, struct report_health h[REPORT_HEALTH_MAX]);
