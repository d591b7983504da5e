/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* txt_parse on a TXT record from anyone on the LAN. The input is the
 * record in DNS wire form (length byte, bytes, ...), split with txt_split
 * into the list of strings Avahi would hand over; each string is copied
 * into a block of exactly its length, so ASan sees any read past one. A
 * record that parses must hold only what the header promises, format
 * again, and parse back to the same values. A record that does not parse
 * must leave *ret alone and say why.
 *
 * Seeds: tests/fuzz/corpus/txt/, written by
 *   build/tests/unit/test-txt --write-corpus tests/fuzz/corpus/txt */
#include <stdio.h>

#include "fuzz.h"
#include "txt.h"

#define MAX_STRINGS 64

static void check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz-txt: invariant broken: %s\n", what);
		abort();
	}
}

static bool lower_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct txt_string raw[MAX_STRINGS], v[MAX_STRINGS], again[TXT_N_STRINGS];
	struct txt_info t, back, sentinel;
	struct perr err = { "" };
	struct txt_wire w;
	size_t n = 0, n2;
	int k;

	if (txt_split(data, size, raw, MAX_STRINGS, &n) < 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		uint8_t *p = malloc(raw[i].len ? raw[i].len : 1);

		if (!p)
			abort();
		memcpy(p, raw[i].p, raw[i].len);
		v[i] = (struct txt_string){ .p = p, .len = raw[i].len };
	}

	memset(&sentinel, 0xa5, sizeof(sentinel));
	memcpy(&t, &sentinel, sizeof(t));
	k = txt_parse(v, n, &t, &err);
	if (k < 0) {
		check(k == -EPROTONOSUPPORT || k == -EBADMSG, "refusal is EPROTONOSUPPORT or EBADMSG");
		check(err.msg[0] != '\0', "a refusal says why");
		check(text_is_clean(err.msg, strlen(err.msg)), "the reason is clean text");
		check(!memcmp(&t, &sentinel, sizeof(t)), "*ret untouched on failure");
		check(txt_parse(v, n, &t, NULL) == k, "the same refusal without err");
		goto out;
	}
	check(strlen(t.id) == TXT_ID_LEN && lower_hex(t.id, TXT_ID_LEN), "id is 16 lowercase hex digits");
	check(strlen(t.fleet) >= 1 && strlen(t.fleet) <= TXT_FLEET_MAX && text_is_clean(t.fleet, strlen(t.fleet)),
	      "fleet is 1..63 bytes of clean text");
	check(t.role == TXT_ROLE_DEVICE || t.role == TXT_ROLE_GATEWAY, "role is known");

	check(txt_format(&t, &w, NULL) == 0, "what parsed formats");
	check(w.len <= TXT_RECORD_MAX, "formatted record within bounds");
	check(txt_split(w.buf, w.len, again, TXT_N_STRINGS, &n2) == 0 && n2 == TXT_N_STRINGS, "formatted splits");
	check(txt_parse(again, n2, &back, NULL) == 0, "formatted parses");
	check(!strcmp(back.id, t.id) && !strcmp(back.fleet, t.fleet) && back.proto == t.proto && back.role == t.role &&
		      back.rel == t.rel && back.load == t.load,
	      "parse(format(parse(x))) == parse(x)");
out:
	for (size_t i = 0; i < n; i++)
		free((void *)v[i].p);
	return 0;
}
