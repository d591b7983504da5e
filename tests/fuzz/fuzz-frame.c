/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* wire_decode on an arbitrary frame plaintext (type byte and payload), as
 * session_feed hands it to the daemon. A frame that decodes must come back
 * byte for byte from wire_encode (one encoding per message), decode again
 * to the same message, and respect every bound of the message table. A
 * frame that does not decode must leave *ret alone and say why.
 *
 * Seeds: tests/fuzz/corpus/frame/, written by
 *   build/tests/unit/test-wire --write-corpus tests/fuzz/corpus/frame */
#include <stdio.h>

#include "fuzz.h"
#include "wire.h"

static void check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz-frame: invariant broken: %s\n", what);
		abort();
	}
}

static bool within(const void *p, size_t n, const uint8_t *data, size_t size)
{
	const uint8_t *q = p;

	return n == 0 || (q >= data && q + n <= data + size);
}

/* The bounds the table promises a caller, re-checked independently of
 * the decoder's own code. */
static void check_bounds(const struct msg *m, const uint8_t *data, size_t size)
{
	switch (m->type) {
	case MSG_IDENT:
		check(size == 1 + PUBKEY_SIZE + SIG_SIZE, "IDENT size");
		break;
	case MSG_HELLO:
		check(m->hello.version >= 1 && m->hello.role <= 1, "HELLO version, role");
		check(m->hello.product_len >= 1 && m->hello.product_len <= WIRE_PRODUCT_MAX, "HELLO product length");
		check(m->hello.name_len <= WIRE_NAME_MAX, "HELLO name length");
		check(within(m->hello.product, m->hello.product_len, data, size) &&
			      within(m->hello.name, m->hello.name_len, data, size),
		      "HELLO strings point into the input");
		break;
	case MSG_RELEASES:
		check(m->releases.n <= WIRE_RELEASES_MAX, "RELEASES count");
		for (size_t i = 0; i < m->releases.n; i++)
			check(m->releases.v[i].held <= m->releases.v[i].total && m->releases.v[i].total >= 1 &&
				      m->releases.v[i].total <= MANIFEST_MAX_CHUNKS,
			      "RELEASES held/total");
		break;
	case MSG_GET_MANIFEST:
		check(m->get_manifest.offset < WIRE_MANIFEST_TOTAL_MAX, "GET_MANIFEST offset");
		break;
	case MSG_MANIFEST_PART:
		check(m->manifest_part.total >= 1 && m->manifest_part.total <= WIRE_MANIFEST_TOTAL_MAX,
		      "MANIFEST_PART total");
		check(m->manifest_part.len >= 1 && m->manifest_part.len <= WIRE_MANIFEST_PART_MAX,
		      "MANIFEST_PART length");
		check((uint64_t)m->manifest_part.offset + m->manifest_part.len <= m->manifest_part.total,
		      "MANIFEST_PART within total");
		check(within(m->manifest_part.bytes, m->manifest_part.len, data, size), "MANIFEST_PART bytes");
		break;
	case MSG_GET_KEYRING:
		break;
	case MSG_KEYRING:
		check(m->keyring.len >= 1 && m->keyring.len <= WIRE_KEYRING_MAX, "KEYRING length");
		check(within(m->keyring.bytes, m->keyring.len, data, size), "KEYRING bytes");
		break;
	case MSG_BITFIELD: {
		size_t nb = (m->bitfield.count + 7) / 8;

		check(m->bitfield.count >= 1 && m->bitfield.count <= WIRE_BITFIELD_CHUNKS_MAX, "BITFIELD count");
		check(within(m->bitfield.bits, nb, data, size), "BITFIELD bits");
		for (uint32_t i = m->bitfield.count; i < nb * 8; i++)
			check(!(m->bitfield.bits[i / 8] & (1u << (i % 8))), "BITFIELD unused bits clear");
		break;
	}
	case MSG_HAVE:
		check(m->have.n >= 1 && m->have.n <= WIRE_HAVE_MAX, "HAVE count");
		for (size_t i = 0; i < m->have.n; i++)
			check(m->have.idx[i] < MANIFEST_MAX_CHUNKS, "HAVE index");
		break;
	case MSG_REQUEST:
		check(m->request.n >= 1 && m->request.n <= WIRE_REQUEST_MAX, "REQUEST count");
		break;
	case MSG_CHUNK:
		check(m->chunk.enc <= 1, "CHUNK encoding");
		check(m->chunk.plain_len >= 1 && m->chunk.plain_len <= WIRE_CHUNK_MAX, "CHUNK plain length");
		check(m->chunk.stored_len >= 1 && (m->chunk.enc || m->chunk.stored_len == m->chunk.plain_len),
		      "CHUNK stored length");
		check(within(m->chunk.stored, m->chunk.stored_len, data, size), "CHUNK stored bytes");
		break;
	case MSG_NOT_FOUND:
	case MSG_CANCEL:
		break;
	case MSG_REPORT: {
		const struct msg_report *r = &m->report;

		check(r->version >= 1 && (r->version > 1 || !r->ext_len), "REPORT version, ext only past version 1");
		check(r->product.len >= 1 && r->product.len <= MANIFEST_PRODUCT_MAX &&
			      within(r->product.s, r->product.len, data, size), "REPORT product");
		check(r->name.len <= 64 && text_is_clean(r->name.s, r->name.len), "REPORT name");
		check(r->n_tags <= REPORT_TAGS_MAX && r->n_health <= REPORT_HEALTH_MAX &&
			      r->n_inv <= REPORT_INVENTORY_MAX, "REPORT list counts");
		for (size_t i = 0; i < r->n_tags; i++)
			check(r->tags[i].key.len >= 1 && r->tags[i].key.len <= REPORT_TAG_KEY_MAX &&
				      fleet_key_ok(r->tags[i].key.s, r->tags[i].key.len) &&
				      r->tags[i].value.len <= REPORT_TAG_VALUE_MAX &&
				      within(r->tags[i].value.s, r->tags[i].value.len, data, size),
			      "REPORT tag");
		for (size_t i = 0; i < r->n_health; i++)
			check(r->health[i].ok <= 1 && r->health[i].output.len <= REPORT_HEALTH_OUTPUT_MAX &&
				      fleet_output_ok(r->health[i].output.s, r->health[i].output.len) &&
				      within(r->health[i].output.s, r->health[i].output.len, data, size),
			      "REPORT health check");
		for (size_t i = 0; i < r->n_inv; i++)
			check(r->inv[i].key.len >= 1 && r->inv[i].key.len <= REPORT_INV_KEY_MAX &&
				      r->inv[i].value.len <= REPORT_INV_VALUE_MAX &&
				      text_is_clean(r->inv[i].value.s, r->inv[i].value.len),
			      "REPORT inventory");
		check(r->state <= REPORT_STATE_LAST && r->progress_done <= r->progress_total &&
			      (r->booted_slot < REPORT_SLOTS_MAX || r->booted_slot == REPORT_SLOT_NONE),
		      "REPORT state, progress, slot");
		check(r->last_error.len <= REPORT_ERROR_MAX && r->phase.len <= REPORT_PHASE_MAX, "REPORT error, phase");
		check(within(r->ext, r->ext_len, data, size), "REPORT ext");
		break;
	}
	case MSG_COMMAND:
		check(m->command.version >= 1 && command_action_name(m->command.action) && m->command.campaign >= 1,
		      "COMMAND version, action, campaign");
		check(m->command.version > 1 || !m->command.ext_len, "COMMAND ext only past version 1");
		check(within(m->command.ext, m->command.ext_len, data, size), "COMMAND ext");
		break;
	case MSG_PING:
	case MSG_PONG:
		check(size == 9, "PING/PONG size");
		break;
	case MSG_GOODBYE:
		check(m->goodbye.reason <= GOODBYE_REASON_LAST, "GOODBYE reason");
		check(m->goodbye.text_len <= WIRE_GOODBYE_TEXT_MAX, "GOODBYE text length");
		check(text_is_clean(m->goodbye.text, m->goodbye.text_len), "GOODBYE text clean");
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct perr err = { "" };
	struct wbuf w = { 0 }, w2 = { 0 };
	struct msg m, again, sentinel;

	memset(&sentinel, 0xa5, sizeof(sentinel));
	memcpy(&m, &sentinel, sizeof(m));
	if (wire_decode(data, size, &m, &err) < 0) {
		check(err.msg[0] != '\0', "a refusal says why");
		check(!memcmp(&m, &sentinel, sizeof(m)), "*ret untouched on failure");
		/* the same refusal without an error report */
		check(wire_decode(data, size, &m, NULL) < 0, "refusal without err");
		return 0;
	}
	check(size >= 1 && m.type == data[0] && msg_type_name(m.type), "type is the first byte and known");
	check_bounds(&m, data, size);

	check(wire_encode(&m, &w) == 0, "wire_encode of a decoded message");
	check(w.len == size && !memcmp(w.p, data, size), "wire_encode gives back the input");
	check(wire_decode(w.p, w.len, &again, &err) == 0, "decode(encode(m))");
	check(wire_encode(&again, &w2) == 0, "encode(decode(encode(m)))");
	check(w2.len == w.len && !memcmp(w2.p, w.p, w.len), "decode(encode(m)) == m");

	/* every strict prefix of a self-delimiting message is refused; the
	 * ones that end in "the rest" only need the frame layer's length */
	if (m.type != MSG_MANIFEST_PART && m.type != MSG_KEYRING && !(m.type == MSG_REPORT && m.report.version > 1) &&
	    !(m.type == MSG_COMMAND && m.command.version > 1) && !(m.type == MSG_CHUNK && m.chunk.enc == 1))
		check(wire_decode(data, size - 1, &again, NULL) < 0, "a truncated message is refused");

	wbuf_free(&w);
	wbuf_free(&w2);
	return 0;
}
